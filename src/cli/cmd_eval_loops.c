/* cmd_eval_loops — `demolish eval loops MODEL --prompts P.jsonl --out RUN.jsonl`:
 * samples one continuation per prompt and measures how often the model
 * loops, runs away to the token cap, or ends naturally (issue 5; the
 * detector definitions are in src/eval/loop_detect.c, the run file format in
 * loops_run.h). Prompt i is sampled with seed S+i, so a run is deterministic
 * and can be resumed: rerun the same command (or a larger --n) and the
 * prompts already in the file are skipped, after the file's header is
 * checked against the model and options. At the end it prints rates with
 * Wilson 95% intervals, overall and per prompt source.
 *
 * Up to --batch sequences are decoded together (dm_generate_batch: one
 * forward per step over every active sequence, a finished one replaced by
 * the next prompt at once). Lines are written in prompt order whatever order
 * the generations finish in; the batch size is in the header, since it
 * changes float rounding and so, rarely, a sampled token. */
#include "cli/cli.h"
#include "cli/loops_run.h"
#include "model/hesitation.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct prompt {
    char *id, *source, *text;
} prompt;

typedef struct prompt_set {
    prompt *p;
    int64_t n;
} prompt_set;

static void prompts_free(prompt_set *s)
{
    for (int64_t i = 0; i < s->n; i++) {
        free(s->p[i].id);
        free(s->p[i].source);
        free(s->p[i].text);
    }
    free(s->p);
}

/* One prompts line: {"id": string or number, "source": string (optional),
 * "prompt" or "text": string}. */
static int prompt_parse(const cJSON *o, prompt *p, dm_err *err)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"), *src = cJSON_GetObjectItemCaseSensitive(o, "source"),
                *text = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (!text)
        text = cJSON_GetObjectItemCaseSensitive(o, "text");
    if (!cJSON_IsString(text) || !text->valuestring[0])
        return dm_errorf(err, "no non-empty \"prompt\" (or \"text\") string");
    if (cJSON_IsString(id))
        p->id = dm_strdup(id->valuestring);
    else if (cJSON_IsNumber(id))
        p->id = dm_asprintf("%.17g", id->valuedouble);
    else
        return dm_errorf(err, "no \"id\" (string or number)");
    if (src && !cJSON_IsString(src))
        return free(p->id), dm_errorf(err, "\"source\" is not a string");
    p->source = dm_strdup(src ? src->valuestring : "");
    p->text = dm_strdup(text->valuestring);
    return 0;
}

static int prompts_load(const char *path, prompt_set *s, dm_err *err)
{
    char *data = NULL;
    size_t len = 0;
    memset(s, 0, sizeof *s);
    if (dm_read_file(path, &data, &len, err))
        return -1;
    int64_t cap = 0, line = 0;
    int rc = 0;
    for (char *at = data, *end = data + len; rc == 0 && at < end;) {
        char *nl = memchr(at, '\n', (size_t)(end - at));
        if (nl)
            *nl = '\0';
        line++;
        if (at[strspn(at, " \t\r")]) {   /* blank lines are skipped */
            cJSON *o = cJSON_Parse(at);
            if (s->n == cap)
                s->p = dm_realloc(s->p, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *s->p);
            rc = o ? prompt_parse(o, &s->p[s->n], err) : dm_errorf(err, "not JSON");
            s->n += rc == 0;
            cJSON_Delete(o);
            if (rc)
                dm_err_prefix(err, "%s: line %lld", path, (long long)line);
        }
        at = nl ? nl + 1 : end;
    }
    free(data);
    if (rc == 0 && s->n == 0)
        rc = dm_errorf(err, "%s: no prompts", path);
    return rc;
}

/* ---- options and the run header --------------------------------------------- */

typedef struct loops_opts {
    const char *prompts, *out, *spec, *guardrail, *hes_words;
    int n, max_tokens, batch;
    float hes_penalty;          /* < 0: not given (the spec's value stands) */
    uint64_t seed;
    bool chat, json;
    dm_loop_params det;
} loops_opts;

/* Sampler parameters from --sampler, then --guardrail, then --hesitation-penalty. */
static int build_sampler(const loops_opts *o, dm_sampler_params *sp, dm_err *err)
{
    *sp = dm_sampler_defaults();
    if (dm_sampler_parse_spec(sp, o->spec, err) || (o->guardrail && dm_sampler_guardrail(sp, o->guardrail, err)))
        return -1;
    if (o->hes_penalty >= 0)
        sp->hesitation_penalty = o->hes_penalty;
    sp->seed = o->seed;
    return 0;
}

/* Fills the header this invocation would write (hash, spec, resolved ids). */
static int build_header(const loops_opts *o, const char *model_dir, const dm_model *m, const dm_tokenizer *tok,
                        dm_sampler_params *sp, loops_header *h, dm_err *err)
{
    memset(h, 0, sizeof *h);
    if (build_sampler(o, sp, err) || dm_model_hash(m, h->model_hash, err))
        return -1;
    h->model = dm_strdup(model_dir);
    char spec[DM_SAMPLER_SPEC_MAX];
    dm_sampler_format_spec(sp, spec, sizeof spec);
    h->sampler = dm_strdup(spec);
    const bool hes = sp->hesitation_penalty > 0;
    h->hesitation_words = dm_strdup(hes ? (o->hes_words ? o->hes_words : DM_HESITATION_WORDS_DEFAULT) : "");
    if (hes && dm_hesitation_resolve(tok, o->hes_words, &h->hesitation_ids, &h->n_hesitation, err))
        return -1;
    sp->hesitation_ids = h->hesitation_ids;
    sp->n_hesitation = h->n_hesitation;
    dm_hesitation_log(tok, h->hesitation_ids, h->n_hesitation, "eval loops");
    h->seed = o->seed;
    h->max_tokens = o->max_tokens;
    h->batch = o->batch;
    h->chat = o->chat;
    h->think_open = dm_token_id(tok, "<think>");
    h->think_close = dm_token_id(tok, "</think>");
    if (h->think_close < 0)
        h->think_open = -1;
    h->det = o->det;
    return dm_sampler_params_check(sp, m->cfg.vocab_size, err);
}

/* Opens --out for appending. An existing file must have the same header and
 * the same prompt ids at the indices it holds; an incomplete last line (a
 * killed run) is cut off. A new (or empty) file gets the header line. *done gets the
 * run already on disk (empty for a new file). */
static FILE *open_out(const char *path, const loops_header *h, const prompt_set *ps, loops_run *done, dm_err *err)
{
    memset(done, 0, sizeof *done);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size > 0) {   /* an empty file is started afresh */
        if (loops_run_read(path, done, err))
            return dm_err_prefix(err, "cannot resume"), NULL;
        if (loops_header_match(&done->h, h, err))
            return dm_err_prefix(err, "%s was written by another model or other options; use a new --out", path), NULL;
        for (int64_t k = 0; k < done->n; k++) {
            const loops_rec *r = &done->rec[k];
            if (r->i >= ps->n || strcmp(r->id, ps->p[r->i].id))
                return dm_errorf(err, "%s: prompt %lld is '%s' there but '%s' in the prompts file", path, (long long)r->i,
                                 r->id, r->i < ps->n ? ps->p[r->i].id : "(none)"),
                       NULL;
        }
        if (done->partial_tail && truncate(path, (off_t)done->valid_bytes))
            return dm_errorf(err, "%s: cannot cut the incomplete last line", path), NULL;
        FILE *f = fopen(path, "ab");
        if (!f)
            dm_errorf(err, "%s: cannot open for appending", path);
        return f;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return dm_errorf(err, "%s: cannot create", path), NULL;
    cJSON *o = loops_header_json(h);
    char *line = cJSON_PrintUnformatted(o);
    fprintf(f, "%s\n", line);
    fflush(f);
    free(line);
    cJSON_Delete(o);
    return f;
}

/* ---- generation ---------------------------------------------------------------- */

/* The queue dm_generate_batch pulls from: the prompts not yet in the run
 * file, in index order. Jobs finish out of order; their lines wait in
 * `lines` until every earlier prompt's line is written, so the file is in
 * index order and the same whatever the batch. */
typedef struct gen_env {
    const dm_model *m;
    const dm_tokenizer *tok;
    const loops_header *h;
    const dm_sampler_params *sp;
    const prompt_set *ps;
    FILE *f;
    int64_t *todo;              /* prompt indices to generate */
    int64_t n_todo, taken, written;
    char **lines;               /* [n_todo] finished lines not yet written */
    int64_t n_finished;
    dm_progress pg;
} gen_env;

typedef struct job {
    dm_gen_job g;
    int64_t k;                  /* position in todo */
} job;

static char *render_prompt(const gen_env *e, const prompt *p)
{
    if (!e->h->chat)
        return dm_strdup(p->text);
    dm_chat_msg msg = { "user", p->text };
    return dm_chat_render(e->tok, dm_chat_style_for(e->tok), &msg, 1, true, true);
}

static dm_gen_job *next_job(void *user)
{
    gen_env *e = user;
    if (e->taken == e->n_todo)
        return NULL;
    const int64_t k = e->taken++, i = e->todo[k];
    char *text = render_prompt(e, &e->ps->p[i]);
    int n_prompt = 0;
    job *j = dm_calloc(1, sizeof *j);
    j->k = k;
    j->g.prompt = dm_tokenize(e->tok, text, strlen(text), true, &n_prompt);
    free(text);
    dm_sampler_params sp = *e->sp;
    sp.seed = e->h->seed + (uint64_t)i;   /* prompt i: seed S+i, whatever the batch */
    j->g.n_prompt = n_prompt;
    j->g.n_predict = e->h->max_tokens;
    j->g.sampler = dm_sampler_new(&sp, e->m->cfg.vocab_size);
    j->g.out_tokens = dm_malloc((size_t)e->h->max_tokens * sizeof(int32_t));
    j->g.user = j;
    return &j->g;
}

static void job_free(job *j)
{
    free((void *)j->g.prompt);
    dm_sampler_free(j->g.sampler);
    free(j->g.out_tokens);
    free(j);
}

/* Writes the finished lines that are next in index order. */
static int flush_lines(gen_env *e, dm_err *err)
{
    for (; e->written < e->n_todo && e->lines[e->written]; e->written++) {
        char *line = e->lines[e->written];
        int rc = fprintf(e->f, "%s\n", line) < 0 ? -1 : 0;
        free(line);
        e->lines[e->written] = NULL;
        if (rc)
            return dm_errorf(err, "cannot write the run file");
    }
    return fflush(e->f) ? dm_errorf(err, "cannot write the run file") : 0;
}

/* Measures a finished generation and queues its line. */
static int job_finished(void *user, dm_gen_job *g, dm_err *err)
{
    gen_env *e = user;
    job *j = g->user;
    const int64_t i = e->todo[j->k];
    const prompt *p = &e->ps->p[i];
    const bool eos = g->stop == DM_STOP_EOS, cap = g->n_gen >= e->h->max_tokens;
    loops_rec r = { .i = i, .id = p->id, .source = p->source, .n_prompt = g->n_prompt };
    int rc = dm_gen_measure(g->out_tokens, g->n_gen, eos, cap, e->h->think_open, e->h->think_close, &e->h->det, &r.m, err);
    if (rc == 0)
        e->lines[j->k] = loops_rec_line(&r, g->out_tokens, g->n_gen, eos, cap);
    job_free(j);
    if (rc)
        return dm_err_prefix(err, "prompt %lld ('%s')", (long long)i, p->id);
    dm_progress_update(&e->pg, ++e->n_finished);
    return flush_lines(e, err);
}

/* Generates every prompt in [0, n) that the run file does not hold yet. */
static int run_prompts(gen_env *e, int64_t n, int batch, const loops_run *done, dm_gen_batch_stats *st, dm_err *err)
{
    e->todo = dm_malloc((size_t)(n + 1) * sizeof *e->todo);
    for (int64_t i = 0; i < n; i++)
        if (!loops_run_find(done, i))
            e->todo[e->n_todo++] = i;
    e->lines = dm_calloc((size_t)e->n_todo + 1, sizeof *e->lines);
    if (batch > e->n_todo)
        batch = e->n_todo > 0 ? (int)e->n_todo : 1;
    dm_ctx *ctx = dm_ctx_new(e->m, batch > 512 ? batch : 512);
    const dm_gen_queue q = { e, next_job, job_finished };
    dm_progress_begin(&e->pg, "eval loops", "prompts", e->n_todo);
    int rc = dm_generate_batch(ctx, batch, &q, st, err);
    dm_progress_end(&e->pg);
    dm_ctx_free(ctx);
    return rc;
}

static void gen_env_free(gen_env *e)
{
    for (int64_t k = 0; e->lines && k < e->n_todo; k++)
        free(e->lines[k]);
    free(e->lines);
    free(e->todo);
}

/* ---- summary ---------------------------------------------------------------------- */

static void summary(const loops_run *run, int64_t n, const dm_gen_batch_stats *g, bool json)
{
    dm_loop_agg a;
    dm_loop_agg_init(&a);
    dm_err err;
    for (int64_t k = 0; k < run->n; k++)
        if (run->rec[k].i < n)
            DM_ASSERT(dm_loop_agg_add(&a, run->rec[k].source, &run->rec[k].m, &err) == 0);
    dm_loop_agg_finish(&a);
    const double secs = g->t_prefill + g->t_decode;
    const double tps = secs > 0 ? (double)g->gen_tokens / secs : 0;
    const double mean_batch = g->steps > 0 ? (double)g->gen_tokens / (double)g->steps : 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "run", run->path);
        cJSON_AddStringToObject(o, "model_hash", run->h.model_hash);
        cJSON_AddStringToObject(o, "sampler", run->h.sampler);
        cJSON_AddNumberToObject(o, "max_tokens", run->h.max_tokens);
        cJSON_AddNumberToObject(o, "generated_tokens", (double)g->gen_tokens);
        cJSON_AddNumberToObject(o, "batch", run->h.batch);
        cJSON_AddNumberToObject(o, "prompt_tokens", (double)g->prompt_tokens);
        cJSON_AddNumberToObject(o, "seconds", secs);
        cJSON_AddNumberToObject(o, "prefill_seconds", g->t_prefill);
        cJSON_AddNumberToObject(o, "decode_seconds", g->t_decode);
        cJSON_AddNumberToObject(o, "tokens_per_s", tps);
        cJSON_AddNumberToObject(o, "mean_batch", mean_batch);
        cJSON_AddItemToObject(o, "total", loops_counts_json(&a.total));
        cJSON *src = cJSON_AddObjectToObject(o, "sources");
        for (int i = 0; i < a.n_groups; i++)
            cJSON_AddItemToObject(src, a.group[i], loops_counts_json(&a.groups[i]));
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        printf("run %s: %lld generations, sampler %s, max_tokens %d\n", run->path, (long long)a.total.n, run->h.sampler,
               run->h.max_tokens);
        printf("rates with Wilson 95%% intervals (think_* over generations with think ids: %lld)\n",
               (long long)a.total.n_think);
        loops_print_table_head(stdout);
        loops_print_row(stdout, "all", &a.total);
        for (int i = 0; i < a.n_groups; i++)
            loops_print_row(stdout, a.group[i], &a.groups[i]);
        printf("this invocation: %lld tokens generated in %.2f s (prefill %.2f s), %.1f tok/s, %d sequences at a "
               "time (%.1f tokens per decode step)\n",
               (long long)g->gen_tokens, secs, g->t_prefill, tps, run->h.batch, mean_batch);
    }
    dm_loop_agg_free(&a);
}

int cmd_eval_loops(int argc, char **argv)
{
    loops_opts o = { .spec = "", .n = 0, .max_tokens = 1024, .batch = 64, .hes_penalty = -1 };
    dm_loop_params_default(&o.det);
    const cli_opt opts[] = {
        { "--prompts", NULL, CLI_STR, &o.prompts, "FILE", "prompts, JSON lines {\"id\",\"source\",\"prompt\"|\"text\"}" },
        { "--out", "-o", CLI_STR, &o.out, "FILE", "run file (JSON lines); resumed when it exists" },
        { "--n", NULL, CLI_INT, &o.n, "N", "the first N prompts (default: all)" },
        { "--max-tokens", NULL, CLI_INT, &o.max_tokens, "M", "token cap per generation (default 1024)" },
        { "--sampler", NULL, CLI_STR, &o.spec, "SPEC",
          "temp=..,top_k=..,top_p=..,min_p=..,repeat_penalty=..,rep_scope=all|window|output,repeat_last_n=..,"
          "presence_penalty=..,frequency_penalty=..,hesitation_penalty=.. (default: temp=1, all else off)" },
        { "--guardrail", NULL, CLI_STR, &o.guardrail, "NAME", "sampler preset applied after --sampler (listed below)" },
        { "--hesitation-penalty", NULL, CLI_FLOAT, &o.hes_penalty, "L", "subtract L from hesitation words' first tokens" },
        { "--hesitation-words", NULL, CLI_STR, &o.hes_words, "W1,W2",
          "hesitation words (default " DM_HESITATION_WORDS_DEFAULT "; also with a leading space and capitalised)" },
        { "--batch", "-b", CLI_INT, &o.batch, "B",
          "sequences decoded together (default 64; results depend on it only through float rounding)" },
        { "--seed", "-s", CLI_U64, &o.seed, "S", "prompt i is sampled with seed S+i (default 0)" },
        { "--chat", NULL, CLI_FLAG, &o.chat, NULL, "wrap each prompt in the model's chat template (thinking on)" },
        { "--loop-max-period", NULL, CLI_INT, &o.det.max_period, "P", "detector: longest period tried (128)" },
        { "--loop-min-repeats", NULL, CLI_INT, &o.det.min_repeats, "R", "detector: periods the tail must cover (3)" },
        { "--loop-min-cover", NULL, CLI_INT, &o.det.min_cover, "C", "detector: tokens the tail must cover (64)" },
        { "--rep-window", NULL, CLI_INT, &o.det.rep_window, "W", "detector: seq-rep-4 tail window (512)" },
        { "--json", NULL, CLI_FLAG, &o.json, NULL, "print the summary as JSON" },
    };
    char *about = dm_asprintf("Samples one continuation per prompt; loop, runaway and EOS rates with Wilson 95%% "
                                "intervals.\n\n--guardrail presets:\n%s", dm_sampler_guardrail_help());
    const cli_spec spec = { "eval loops", "MODEL_DIR", about, opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    free(about);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    dm_err err;
    dm_sampler_params sp;
    if (!o.prompts || !o.out || o.n < 0 || o.max_tokens < 1 || o.batch < 1 || o.batch > 4096)
        return fprintf(stderr, "demolish eval loops: need --prompts, --out, --n >= 0, --max-tokens >= 1, "
                               "1 <= --batch <= 4096\n"),
               DM_EXIT_USAGE;
    if (build_sampler(&o, &sp, &err) || dm_loop_params_check(&o.det, &err))
        return fprintf(stderr, "demolish eval loops: %s\n", err.msg), DM_EXIT_USAGE;

    prompt_set ps = { 0 };
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    loops_header h = { 0 };
    loops_run done = { 0 }, final = { 0 };
    gen_env g = { 0 };
    dm_gen_batch_stats st = { 0 };
    FILE *f = NULL;
    rc = DM_EXIT_FAIL;
    if (prompts_load(o.prompts, &ps, &err) || dm_model_load(&m, pos[0], &err) || dm_tokenizer_load(&tok, pos[0], &err) ||
        build_header(&o, pos[0], m, tok, &sp, &h, &err)) {
        cli_fail(&err);
        goto out;
    }
    const int64_t n = o.n ? o.n : ps.n;
    if (n > ps.n) {
        cli_failf("--n %lld but %s holds %lld prompts", (long long)n, o.prompts, (long long)ps.n);
        goto out;
    }
    if (!(f = open_out(o.out, &h, &ps, &done, &err))) {
        cli_fail(&err);
        goto out;
    }
    g = (gen_env){ .m = m, .tok = tok, .h = &h, .sp = &sp, .ps = &ps, .f = f };
    int grc = run_prompts(&g, n, o.batch, &done, &st, &err);
    if (fclose(f) && grc == 0)
        grc = dm_errorf(&err, "%s: cannot close", o.out);
    f = NULL;
    if (grc) {
        cli_fail(&err);
        goto out;
    }
    if (loops_run_read(o.out, &final, &err)) {
        cli_fail(&err);
        goto out;
    }
    summary(&final, n, &st, o.json);
    rc = DM_EXIT_OK;
out:
    if (f)
        fclose(f);
    gen_env_free(&g);
    loops_run_free(&done);
    loops_run_free(&final);
    loops_header_free(&h);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    prompts_free(&ps);
    return rc;
}
