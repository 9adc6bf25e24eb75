/* loops_run — writing and reading `eval loops` run files (format in
 * loops_run.h), and the rate table shared by `eval loops`, `eval compare`
 * and `eval report`. */
#include "cli/loops_run.h"

#include <stdlib.h>
#include <string.h>

#define M(name, k, n) { name, offsetof(dm_loop_counts, k), offsetof(dm_loop_counts, n) }
const loops_metric loops_metrics[] = {
    M("loop", loop, n),          M("loop_exact", loop_exact, n),     M("loop_rep", loop_rep, n),
    M("runaway", runaway, n),    M("fail", fail, n),                 M("eos", eos, n),
    M("think_closed", think_closed, n_think), M("think_restart", think_restart, n_think),
};
#undef M
const int loops_n_metrics = (int)(sizeof loops_metrics / sizeof loops_metrics[0]);

int64_t loops_metric_k(const loops_metric *mt, const dm_loop_counts *c)
{
    return *(const int64_t *)((const char *)c + mt->k_off);
}

int64_t loops_metric_n(const loops_metric *mt, const dm_loop_counts *c)
{
    return *(const int64_t *)((const char *)c + mt->n_off);
}

/* ---- header ---------------------------------------------------------------- */

/* cJSON_CreateIntArray gives NULL for an empty list; this gives []. */
static cJSON *ids_array(const int32_t *ids, int64_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (int64_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
    return a;
}

void loops_header_free(loops_header *h)
{
    free(h->model);
    free(h->sampler);
    free(h->hesitation_words);
    free(h->hesitation_ids);
    memset(h, 0, sizeof *h);
}

cJSON *loops_header_json(const loops_header *h)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "type", "header");
    cJSON_AddNumberToObject(o, "version", LOOPS_RUN_VERSION);
    cJSON_AddStringToObject(o, "model", h->model);
    cJSON_AddStringToObject(o, "model_hash", h->model_hash);
    cJSON_AddStringToObject(o, "sampler", h->sampler);
    cJSON_AddStringToObject(o, "hesitation_words", h->hesitation_words);
    cJSON_AddItemToObject(o, "hesitation_ids", ids_array(h->hesitation_ids, h->n_hesitation));
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)h->seed);   /* a string: doubles lose 64-bit seeds */
    cJSON_AddStringToObject(o, "seed", seed);
    cJSON_AddNumberToObject(o, "max_tokens", h->max_tokens);
    cJSON_AddNumberToObject(o, "batch", h->batch);
    cJSON_AddBoolToObject(o, "chat", h->chat);
    const int32_t think[2] = { h->think_open, h->think_close };
    cJSON_AddItemToObject(o, "think_ids", ids_array(think, 2));
    cJSON *d = cJSON_AddObjectToObject(o, "detector");
    cJSON_AddNumberToObject(d, "max_period", h->det.max_period);
    cJSON_AddNumberToObject(d, "min_repeats", h->det.min_repeats);
    cJSON_AddNumberToObject(d, "min_cover", h->det.min_cover);
    cJSON_AddNumberToObject(d, "rep_window", h->det.rep_window);
    cJSON_AddNumberToObject(d, "rep_min_len", h->det.rep_min_len);
    cJSON_AddNumberToObject(d, "rep4_max", h->det.rep4_max);
    return o;
}

static const cJSON *need(const cJSON *o, const char *key, cJSON_bool (*is)(const cJSON *), dm_err *err)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!x || !is(x))
        dm_errorf(err, "'%s' is missing or of the wrong type", key);
    return x && is(x) ? x : NULL;
}

static int need_int(const cJSON *o, const char *key, int *out, dm_err *err)
{
    const cJSON *x = need(o, key, cJSON_IsNumber, err);
    if (!x || x->valuedouble != (double)(int)x->valuedouble)
        return dm_errorf(err, "'%s' is missing or not an integer", key);
    *out = (int)x->valuedouble;
    return 0;
}

static int parse_ids(const cJSON *a, int32_t *out, int max, int *n, dm_err *err)
{
    int k = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, a) {
        if (!cJSON_IsNumber(x) || k == max || x->valuedouble != (double)(int32_t)x->valuedouble)
            return dm_errorf(err, "bad token id list");
        out[k++] = (int32_t)x->valuedouble;
    }
    *n = k;
    return 0;
}

static int header_parse(const cJSON *o, loops_header *h, dm_err *err)
{
    memset(h, 0, sizeof *h);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(o, "type");
    int version = 0;
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "header") || need_int(o, "version", &version, err))
        return dm_errorf(err, "the first line is not an eval loops header");
    if (version != LOOPS_RUN_VERSION)
        return dm_errorf(err, "run file version %d, this build reads %d", version, LOOPS_RUN_VERSION);
    const cJSON *model = need(o, "model", cJSON_IsString, err), *hash = need(o, "model_hash", cJSON_IsString, err),
                *spec = need(o, "sampler", cJSON_IsString, err), *hw = need(o, "hesitation_words", cJSON_IsString, err),
                *hid = need(o, "hesitation_ids", cJSON_IsArray, err), *seed = need(o, "seed", cJSON_IsString, err),
                *chat = need(o, "chat", cJSON_IsBool, err), *think = need(o, "think_ids", cJSON_IsArray, err),
                *det = need(o, "detector", cJSON_IsObject, err);
    if (!model || !hash || !spec || !hw || !hid || !seed || !chat || !think || !det || strlen(hash->valuestring) != 64 ||
        need_int(o, "max_tokens", &h->max_tokens, err))
        return dm_err_prefix(err, "header");
    h->batch = 1;
    if (cJSON_GetObjectItemCaseSensitive(o, "batch") && (need_int(o, "batch", &h->batch, err) || h->batch < 1))
        return dm_errorf(err, "header: 'batch' is not a positive integer");
    h->model = dm_strdup(model->valuestring);
    memcpy(h->model_hash, hash->valuestring, 65);
    h->sampler = dm_strdup(spec->valuestring);
    h->hesitation_words = dm_strdup(hw->valuestring);
    h->n_hesitation = cJSON_GetArraySize(hid);
    h->hesitation_ids = dm_malloc((size_t)(h->n_hesitation + 1) * sizeof(int32_t));
    h->seed = strtoull(seed->valuestring, NULL, 10);
    h->chat = cJSON_IsTrue(chat);
    int32_t t[2];
    int nt = 0;
    if (parse_ids(hid, h->hesitation_ids, h->n_hesitation, &h->n_hesitation, err) ||
        parse_ids(think, t, 2, &nt, err) || nt != 2)
        return dm_errorf(err, "header: bad hesitation_ids or think_ids");
    h->think_open = t[0], h->think_close = t[1];
    const cJSON *r4 = need(det, "rep4_max", cJSON_IsNumber, err);
    if (!r4 || need_int(det, "max_period", &h->det.max_period, err) ||
        need_int(det, "min_repeats", &h->det.min_repeats, err) || need_int(det, "min_cover", &h->det.min_cover, err) ||
        need_int(det, "rep_window", &h->det.rep_window, err) || need_int(det, "rep_min_len", &h->det.rep_min_len, err))
        return dm_err_prefix(err, "header detector");
    h->det.rep4_max = r4->valuedouble;
    return dm_loop_params_check(&h->det, err);
}

int loops_header_match(const loops_header *a, const loops_header *b, dm_err *err)
{
    const char *what = strcmp(a->model_hash, b->model_hash) ? "model (hash)"
                       : strcmp(a->sampler, b->sampler)      ? "sampler"
                       : a->seed != b->seed                  ? "seed"
                       : a->max_tokens != b->max_tokens      ? "max_tokens"
                       : a->batch != b->batch                ? "batch"
                       : a->chat != b->chat                  ? "chat"
                       : a->n_hesitation != b->n_hesitation ||
                               (a->n_hesitation > 0 && memcmp(a->hesitation_ids, b->hesitation_ids,
                                                              (size_t)a->n_hesitation * sizeof(int32_t)))
                           ? "hesitation ids"
                       : a->think_open != b->think_open || a->think_close != b->think_close ? "think ids"
                       : memcmp(&a->det, &b->det, sizeof a->det) ? "detector parameters"
                                                                  : NULL;
    return what ? dm_errorf(err, "the %s differ", what) : 0;
}

/* ---- records ----------------------------------------------------------------- */

char *loops_rec_line(const loops_rec *r, const int32_t *tokens, int64_t n_tokens, bool eos, bool cap)
{
    const dm_gen_metrics *m = &r->m;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "i", (double)r->i);
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "source", r->source);
    cJSON_AddNumberToObject(o, "prompt_tokens", r->n_prompt);
    cJSON_AddNumberToObject(o, "len", (double)m->len);
    cJSON_AddBoolToObject(o, "eos", eos);
    cJSON_AddBoolToObject(o, "cap", cap);
    cJSON_AddBoolToObject(o, "runaway", m->runaway);
    cJSON_AddBoolToObject(o, "loop", m->loop);
    cJSON_AddBoolToObject(o, "loop_exact", m->loop_exact);
    cJSON_AddBoolToObject(o, "loop_rep", m->loop_rep);
    cJSON_AddNumberToObject(o, "period", m->period);
    cJSON_AddNumberToObject(o, "cover", (double)m->cover);
    cJSON_AddNumberToObject(o, "tail_rep4", m->tail_rep4);
    cJSON_AddNumberToObject(o, "distinct4", dm_gen_distinct4(m));
    if (m->think) {
        cJSON_AddBoolToObject(o, "think_closed", m->think_closed);
        cJSON_AddNumberToObject(o, "think_restarts", m->think_restarts);
    }
    cJSON_AddItemToObject(o, "tokens", ids_array(tokens, n_tokens));
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

/* Parses one record line and recomputes its metrics with the header's detector. */
static int rec_parse(const cJSON *o, const loops_header *h, loops_rec *r, dm_err *err)
{
    memset(r, 0, sizeof *r);
    const cJSON *id = need(o, "id", cJSON_IsString, err), *src = need(o, "source", cJSON_IsString, err),
                *eos = need(o, "eos", cJSON_IsBool, err), *cap = need(o, "cap", cJSON_IsBool, err),
                *tok = need(o, "tokens", cJSON_IsArray, err), *ix = need(o, "i", cJSON_IsNumber, err);
    if (!id || !src || !eos || !cap || !tok || !ix || ix->valuedouble < 0 || need_int(o, "prompt_tokens", &r->n_prompt, err))
        return -1;
    r->i = (int64_t)ix->valuedouble;
    int n = cJSON_GetArraySize(tok);
    int32_t *ids = dm_malloc((size_t)(n + 1) * sizeof *ids);
    int rc = parse_ids(tok, ids, n, &n, err);
    if (rc == 0)
        rc = dm_gen_measure(ids, n, cJSON_IsTrue(eos), cJSON_IsTrue(cap), h->think_open, h->think_close, &h->det, &r->m,
                            err);
    free(ids);
    if (rc)
        return -1;
    r->id = dm_strdup(id->valuestring);
    r->source = dm_strdup(src->valuestring);
    return 0;
}

static void run_push(loops_run *run, const loops_rec *r)
{
    if (run->n == run->cap) {
        run->cap = run->cap ? 2 * run->cap : 64;
        run->rec = dm_realloc(run->rec, (size_t)run->cap * sizeof *run->rec);
    }
    run->rec[run->n++] = *r;
}

/* Parses the complete lines of text[len] (header first) into run. */
static int run_parse(char *text, size_t len, loops_run *run, dm_err *err)
{
    int64_t line_no = 0;
    for (size_t at = 0; at < len;) {
        char *nl = memchr(text + at, '\n', len - at);
        if (!nl) {
            run->partial_tail = true;   /* cut short by a kill: ignored, rewritten on resume */
            break;
        }
        *nl = '\0';
        line_no++;
        cJSON *o = cJSON_Parse(text + at);
        int rc = !o ? dm_errorf(err, "not JSON")
                 : line_no == 1 ? header_parse(o, &run->h, err)
                                : 0;
        if (rc == 0 && line_no > 1) {
            loops_rec r;
            rc = rec_parse(o, &run->h, &r, err);
            if (rc == 0 && loops_run_find(run, r.i))
                rc = dm_errorf(err, "prompt index %lld appears twice", (long long)r.i);
            if (rc == 0)
                run_push(run, &r);
            else
                free(r.id), free(r.source);
        }
        cJSON_Delete(o);
        if (rc)
            return dm_err_prefix(err, "%s: line %lld", run->path, (long long)line_no);
        at = (size_t)(nl - text) + 1;
        run->valid_bytes = (int64_t)at;
    }
    if (line_no == 0)
        return dm_errorf(err, "%s: no header line", run->path);
    return 0;
}

int loops_run_read(const char *path, loops_run *run, dm_err *err)
{
    memset(run, 0, sizeof *run);
    run->path = dm_strdup(path);
    char *text = NULL;
    size_t len = 0;
    int rc = dm_read_file(path, &text, &len, err);
    if (rc == 0)
        rc = run_parse(text, len, run, err);
    free(text);
    return rc;
}

void loops_run_free(loops_run *run)
{
    for (int64_t i = 0; i < run->n; i++) {
        free(run->rec[i].id);
        free(run->rec[i].source);
    }
    free(run->rec);
    free(run->path);
    loops_header_free(&run->h);
    memset(run, 0, sizeof *run);
}

void loops_run_keep_first(loops_run *run, int64_t n)
{
    if (n <= 0)
        return;
    int64_t kept = 0;
    for (int64_t k = 0; k < run->n; k++) {
        if (run->rec[k].i < n) {
            run->rec[kept++] = run->rec[k];
            continue;
        }
        free(run->rec[k].id);
        free(run->rec[k].source);
    }
    run->n = kept;
}

/* Linear: run files are read once per command, and records come in index
 * order, so the common lookup (the last index) is checked first. */
const loops_rec *loops_run_find(const loops_run *run, int64_t i)
{
    if (run->n && run->rec[run->n - 1].i == i)
        return &run->rec[run->n - 1];
    for (int64_t k = 0; k < run->n; k++)
        if (run->rec[k].i == i)
            return &run->rec[k];
    return NULL;
}

int loops_run_agg(const loops_run *run, dm_loop_agg *a, dm_err *err)
{
    dm_loop_agg_init(a);
    for (int64_t k = 0; k < run->n; k++)
        if (dm_loop_agg_add(a, run->rec[k].source, &run->rec[k].m, err))
            return dm_err_prefix(err, "%s", run->path);
    dm_loop_agg_finish(a);
    return 0;
}

/* ---- rate tables ------------------------------------------------------------------ */

cJSON *loops_counts_json(const dm_loop_counts *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "n", (double)c->n);
    for (int i = 0; i < loops_n_metrics; i++) {
        const int64_t k = loops_metric_k(&loops_metrics[i], c), n = loops_metric_n(&loops_metrics[i], c);
        double lo, hi;
        dm_wilson(k, n, DM_Z95, &lo, &hi);
        cJSON *r = cJSON_AddObjectToObject(o, loops_metrics[i].name);
        cJSON_AddNumberToObject(r, "k", (double)k);
        cJSON_AddNumberToObject(r, "n", (double)n);
        cJSON_AddNumberToObject(r, "rate", n ? (double)k / (double)n : 0);
        cJSON_AddNumberToObject(r, "lo", lo);
        cJSON_AddNumberToObject(r, "hi", hi);
    }
    cJSON_AddNumberToObject(o, "distinct4_mean", dm_loop_counts_d4_mean(c));
    cJSON_AddNumberToObject(o, "len_median", c->len_median);
    cJSON_AddNumberToObject(o, "len_p90", c->len_p90);
    cJSON_AddNumberToObject(o, "tokens", (double)c->tokens);
    return o;
}

/* The rates printed in text tables (the rest are in --json). */
static const char *const text_metrics[] = { "loop", "fail", "runaway", "eos", "think_closed", "think_restart" };
#define N_TEXT (sizeof text_metrics / sizeof text_metrics[0])

const loops_metric *loops_metric_named(const char *name)
{
    for (int i = 0; i < loops_n_metrics; i++)
        if (!strcmp(loops_metrics[i].name, name))
            return &loops_metrics[i];
    DM_ASSERT(!"unknown metric");
    return NULL;
}

void loops_print_table_head(FILE *f)
{
    fprintf(f, "%-14s %6s", "", "n");
    for (size_t i = 0; i < N_TEXT; i++)
        fprintf(f, " %-22s", text_metrics[i]);
    fprintf(f, " %8s %8s %8s\n", "dist-4", "len-med", "len-p90");
}

void loops_print_row(FILE *f, const char *name, const dm_loop_counts *c)
{
    fprintf(f, "%-14.14s %6lld", name, (long long)c->n);
    for (size_t i = 0; i < N_TEXT; i++) {
        const loops_metric *mt = loops_metric_named(text_metrics[i]);
        const int64_t k = loops_metric_k(mt, c), n = loops_metric_n(mt, c);
        if (n == 0) {
            fprintf(f, " %-22s", "-");
            continue;
        }
        double lo, hi;
        dm_wilson(k, n, DM_Z95, &lo, &hi);
        char cell[64];
        snprintf(cell, sizeof cell, "%5.1f%% [%4.1f,%5.1f]", 100.0 * (double)k / (double)n, 100 * lo, 100 * hi);
        fprintf(f, " %-22s", cell);
    }
    fprintf(f, " %8.4f %8.1f %8.1f\n", dm_loop_counts_d4_mean(c), c->len_median, c->len_p90);
}
