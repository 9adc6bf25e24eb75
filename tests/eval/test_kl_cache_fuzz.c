/* test_kl_cache_fuzz — the `eval kl` teacher cache file (kl_cache_io.c) as a
 * parser of untrusted input, on caches built by dm_kl_cache_build on a tiny
 * random model made here (a top-k cache, and a full one cut by max_tokens;
 * documents with two sources, one without a source, one empty):
 *  - round trip: save -> load gives every field and array bit for bit, and
 *    saving the loaded cache writes the same bytes;
 *  - targeted corruptions, each of which must be refused (rc -1, a one-line
 *    message naming the file): out-of-range token ids, top ids, doc offsets
 *    and source indices, a top id listed twice, top-k log-probabilities out
 *    of order, NaN / positive log-probabilities, a -inf target log-prob,
 *    n_pos beyond the documents' predictions, doc_start not ending at the
 *    token count, and metadata edits (format, version, vocab, ctx, top_k,
 *    n_pos, truncated, sources, hashes, a tensor renamed or retyped). A -inf
 *    log-probability in a full cache (probability 0) is accepted;
 *  - N_MUTANTS seeded mutants (bit flips, byte sets, inserts, deletes,
 *    truncation, the header length, and JSON-level edits of the header with
 *    tests/json_mutate.h): no crash and no sanitizer report (run it in the
 *    Sanitize build: no leak either), every refusal one line naming the file,
 *    every accepted cache consistent (rechecked here, independently of the
 *    loader), and the first N_EVAL accepted ones scored by dm_kl_eval against
 *    the model (no crash; success or a clean error). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/eval.h"
#include "json_mutate.h"

#define CTX 8
#define TOP_K 4
#define N_MUTANTS 3000
#define N_EVAL 24               /* accepted mutants also scored (a forward pass each) */
#define MAX_PRINTED 20          /* failures printed per kind */

typedef struct buf {
    uint8_t *p;
    size_t n;
} buf;

static char *g_tmp;             /* scratch directory */
static dm_evaluator *g_ev;      /* the tiny model, ctx CTX */

/* ---- files ---- */

static void write_bytes(const char *path, const uint8_t *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    DM_ASSERT(f && fwrite(p, 1, n, f) == n && fclose(f) == 0);
}

static buf read_bytes(const char *path)
{
    char *text;
    size_t len;
    dm_err err;
    DM_ASSERT(dm_read_file(path, &text, &len, &err) == 0);
    return (buf){ (uint8_t *)text, len };
}

static uint64_t header_len(const buf *b)
{
    uint64_t h = 0;
    for (int i = 0; i < 8 && i < (int)b->n; i++)
        h |= (uint64_t)b->p[i] << (8 * i);
    return h;
}

static void set_header_len(buf *b, uint64_t h)
{
    for (int i = 0; i < 8 && i < (int)b->n; i++)
        b->p[i] = (uint8_t)(h >> (8 * i));
}

/* b with [at, at + k) of the header replaced by rep (the length field follows). */
static buf splice(const buf *b, size_t at, size_t k, const char *rep)
{
    const size_t r = strlen(rep);
    buf o = { malloc(b->n - k + r), b->n - k + r };
    memcpy(o.p, b->p, at);
    memcpy(o.p + at, rep, r);
    memcpy(o.p + at + r, b->p + at + k, b->n - at - k);
    set_header_len(&o, header_len(b) - k + r);
    return o;
}

/* Replaces the first occurrence of `from` inside the header by `to`. */
static buf patch_header(const buf *b, const char *from, const char *to)
{
    const size_t hl = header_len(b), k = strlen(from);
    for (size_t i = 8; i + k <= 8 + hl; i++)
        if (!memcmp(b->p + i, from, k))
            return splice(b, i, k, to);
    DM_ASSERT(!"patch target not in the header");
    return *b;
}

/* ---- what a refusal and an acceptance must look like ---- */

static int g_printed;

static bool refused_cleanly(int rc, const dm_err *err, const char *path, const char *what)
{
    const bool ok = rc == -1 && err->msg[0] && strstr(err->msg, path) && !strchr(err->msg, '\n');
    if (!ok && g_printed++ < MAX_PRINTED)
        CHECK(0, "%s: rc %d, message \"%s\" (want -1, one line naming %s)", what, rc, rc ? err->msg : "", path);
    else if (!ok)
        check_failures++;
    return ok;
}

/* Rechecks an accepted cache's invariants here, without the loader's code. */
static bool consistent(const dm_kl_cache *c, char *why, size_t n)
{
    if (c->V < 1 || c->ctx < 1 || c->top_k < 0 || c->top_k >= c->V || c->n_pos < 1 || c->n_docs < 0 ||
        c->n_groups < 0 || c->n_groups > DM_EVAL_MAX_GROUPS)
        return snprintf(why, n, "header V %d ctx %d top_k %d n_pos %lld", c->V, c->ctx, c->top_k,
                        (long long)c->n_pos), false;
    if (c->doc_start[0] != 0)
        return snprintf(why, n, "doc_start[0] %lld", (long long)c->doc_start[0]), false;
    int64_t preds = 0;
    for (int d = 0; d < c->n_docs; d++) {
        const int64_t len = c->doc_start[d + 1] - c->doc_start[d];
        if (len < 0 || c->doc_group[d] < -1 || c->doc_group[d] >= c->n_groups)
            return snprintf(why, n, "document %d: length %lld, group %d", d, (long long)len, c->doc_group[d]), false;
        preds += len > 1 ? len - 1 : 0;
    }
    if (preds < c->n_pos)
        return snprintf(why, n, "n_pos %lld > %lld predictions", (long long)c->n_pos, (long long)preds), false;
    for (int64_t i = 0; i < c->doc_start[c->n_docs]; i++)
        if (c->tokens[i] < 0 || c->tokens[i] >= c->V)
            return snprintf(why, n, "token %lld = %d", (long long)i, c->tokens[i]), false;
    const int64_t row = c->top_k ? c->top_k : c->V;
    for (int64_t p = 0; p < c->n_pos; p++) {
        if (!(c->target_logp[p] <= 0 && isfinite(c->target_logp[p])) || (c->top_k && !(c->other_logp[p] <= 0)))
            return snprintf(why, n, "position %lld: target/other log-prob", (long long)p), false;
        for (int64_t i = 0; i < row; i++) {
            const float lp = c->logp[p * row + i];
            if (!(lp <= 0) || (c->top_k && i > 0 && lp > c->logp[p * row + i - 1]))
                return snprintf(why, n, "position %lld: logp[%lld] %g", (long long)p, (long long)i, lp), false;
            if (!c->top_k)
                continue;
            const int32_t id = c->top_id[p * row + i];
            if (id < 0 || id >= c->V)
                return snprintf(why, n, "position %lld: top id %d", (long long)p, id), false;
            for (int64_t j = 0; j < i; j++)
                if (c->top_id[p * row + j] == id)
                    return snprintf(why, n, "position %lld: top id %d twice", (long long)p, id), false;
        }
    }
    return true;
}

/* ---- round trip ---- */

static bool same_array(const void *a, const void *b, size_t bytes) { return (!a && !b) || (a && b && !memcmp(a, b, bytes)); }

static void check_round_trip(const dm_kl_cache *c, const char *name)
{
    char *p1 = dm_path_join(g_tmp, "rt1.klc"), *p2 = dm_path_join(g_tmp, "rt2.klc");
    dm_err err;
    dm_kl_cache b;
    CHECK(dm_kl_cache_save(c, p1, &err) == 0, "%s: save: %s", name, err.msg);
    if (dm_kl_cache_load(&b, p1, &err)) {
        CHECK(0, "%s: load: %s", name, err.msg);
        free(p1), free(p2);
        return;
    }
    const size_t n_tok = (size_t)c->doc_start[c->n_docs], row = (size_t)(c->top_k ? c->top_k : c->V);
    bool groups = b.n_groups == c->n_groups;
    for (int g = 0; groups && g < c->n_groups; g++)
        groups = !strcmp(b.group[g], c->group[g]);
    CHECK(!strcmp(b.teacher_hash, c->teacher_hash) && !strcmp(b.data_hash, c->data_hash) && b.V == c->V &&
              b.ctx == c->ctx && b.top_k == c->top_k && b.n_docs == c->n_docs && b.n_pos == c->n_pos &&
              b.truncated == c->truncated && groups,
          "%s: header fields differ after the round trip", name);
    if (b.n_pos == c->n_pos && b.n_docs == c->n_docs && b.top_k == c->top_k && b.V == c->V &&
        b.doc_start[b.n_docs] == (int64_t)n_tok) {
        const size_t np = (size_t)c->n_pos;
        CHECK(same_array(b.doc_start, c->doc_start, ((size_t)c->n_docs + 1) * 8) &&
                  same_array(b.doc_group, c->doc_group, (size_t)c->n_docs * 4) &&
                  same_array(b.tokens, c->tokens, n_tok * 4) && same_array(b.logp, c->logp, np * row * 4) &&
                  same_array(b.target_logp, c->target_logp, np * 4) &&
                  (!c->top_k || (same_array(b.top_id, c->top_id, np * row * 4) &&
                                 same_array(b.other_logp, c->other_logp, np * 4))),
              "%s: arrays differ after the round trip", name);
    }
    CHECK(dm_kl_cache_save(&b, p2, &err) == 0, "%s: save again: %s", name, err.msg);
    buf f1 = read_bytes(p1), f2 = read_bytes(p2);
    CHECK(f1.n == f2.n && !memcmp(f1.p, f2.p, f1.n), "%s: re-saving the loaded cache changes the file", name);
    free(f1.p), free(f2.p);
    dm_kl_cache_free(&b);
    free(p1), free(p2);
}

/* ---- targeted corruptions ---- */

typedef void (*corrupt_fn)(dm_kl_cache *c);

static void bad_token_neg(dm_kl_cache *c) { c->tokens[5] = -1; }
static void bad_token_v(dm_kl_cache *c) { c->tokens[c->doc_start[c->n_docs] - 1] = c->V; }
static void bad_top_neg(dm_kl_cache *c) { c->top_id[3] = -1; }
static void bad_top_v(dm_kl_cache *c) { c->top_id[(size_t)c->n_pos * c->top_k - 1] = c->V; }
static void bad_top_twice(dm_kl_cache *c) { c->top_id[TOP_K + 2] = c->top_id[TOP_K + 1]; }
static void bad_top_order(dm_kl_cache *c)
{
    float t = c->logp[0];
    c->logp[0] = c->logp[TOP_K - 1];
    c->logp[TOP_K - 1] = t;
}
static void bad_logp_nan(dm_kl_cache *c) { c->logp[2] = NAN; }
static void bad_logp_pos(dm_kl_cache *c) { c->logp[0] = 0.5f; }
static void bad_logp_pos_full(dm_kl_cache *c) { c->logp[(size_t)c->n_pos * c->V - 1] = 1e-3f; }
static void bad_target_nan(dm_kl_cache *c) { c->target_logp[1] = NAN; }
static void bad_target_pos(dm_kl_cache *c) { c->target_logp[c->n_pos - 1] = 0.25f; }
static void bad_target_inf(dm_kl_cache *c) { c->target_logp[0] = -INFINITY; }
static void bad_other_nan(dm_kl_cache *c) { c->other_logp[0] = NAN; }
static void bad_other_pos(dm_kl_cache *c) { c->other_logp[2] = 1e-3f; }
static void bad_start_order(dm_kl_cache *c) { c->doc_start[1] = c->doc_start[2] + 1; }
static void bad_start_neg(dm_kl_cache *c) { c->doc_start[1] = -3; }
static void bad_group_big(dm_kl_cache *c) { c->doc_group[0] = c->n_groups; }
static void bad_group_neg(dm_kl_cache *c) { c->doc_group[1] = -2; }
static void bad_no_groups(dm_kl_cache *c)
{
    for (int g = 0; g < c->n_groups; g++)
        free(c->group[g]);
    c->n_groups = 0;
}
/* One more position than the documents hold (arrays grown to match). */
static void bad_n_pos(dm_kl_cache *c)
{
    int64_t preds = 0;
    for (int d = 0; d < c->n_docs; d++)
        preds += c->doc_start[d + 1] - c->doc_start[d] > 1 ? c->doc_start[d + 1] - c->doc_start[d] - 1 : 0;
    const size_t n = (size_t)preds + 1, row = (size_t)(c->top_k ? c->top_k : c->V);
    c->logp = dm_realloc(c->logp, n * row * sizeof(float));
    c->target_logp = dm_realloc(c->target_logp, n * sizeof(float));
    for (size_t p = (size_t)c->n_pos; p < n; p++) {
        memcpy(c->logp + p * row, c->logp, row * sizeof(float));
        c->target_logp[p] = c->target_logp[0];
    }
    if (c->top_k) {
        c->top_id = dm_realloc(c->top_id, n * row * sizeof(int32_t));
        c->other_logp = dm_realloc(c->other_logp, n * sizeof(float));
        for (size_t p = (size_t)c->n_pos; p < n; p++) {
            memcpy(c->top_id + p * row, c->top_id, row * sizeof(int32_t));
            c->other_logp[p] = c->other_logp[0];
        }
    }
    c->n_pos = (int64_t)n;
}

static const struct {
    const char *name;
    corrupt_fn fn;
    bool full;                  /* applies to the full cache (else the top-k one) */
} CORRUPT[] = {
    { "token id -1", bad_token_neg, false },          { "token id V", bad_token_v, false },
    { "token id V (full)", bad_token_v, true },       { "top id -1", bad_top_neg, false },
    { "top id V", bad_top_v, false },                 { "top id listed twice", bad_top_twice, false },
    { "top-k log-probs out of order", bad_top_order, false },
    { "logp NaN", bad_logp_nan, false },              { "logp positive", bad_logp_pos, false },
    { "logp NaN (full)", bad_logp_nan, true },        { "logp positive (full)", bad_logp_pos_full, true },
    { "target_logp NaN", bad_target_nan, false },     { "target_logp positive", bad_target_pos, false },
    { "target_logp -inf", bad_target_inf, true },     { "other_logp NaN", bad_other_nan, false },
    { "other_logp positive", bad_other_pos, false },  { "doc_start descending", bad_start_order, false },
    { "doc_start negative", bad_start_neg, true },    { "doc_group past the sources", bad_group_big, false },
    { "doc_group -2", bad_group_neg, false },         { "sources dropped", bad_no_groups, false },
    { "n_pos beyond the documents", bad_n_pos, false }, { "n_pos beyond the documents (full)", bad_n_pos, true },
};

/* Header edits of the top-k cache file: {text in the header, its replacement}. */
static const char *const PATCH[][2] = {
    { "\"demolish-kl-cache\"", "\"demolish-kl-cachf\"" },
    { "\"version\":\"1\"", "\"version\":\"2\"" },
    { "\"version\":\"1\",", "" },
    { "\"vocab\":\"384\"", "\"vocab\":\"0\"" },
    { "\"vocab\":\"384\"", "\"vocab\":\"38x\"" },
    { "\"vocab\":\"384\"", "\"vocab\":\"-384\"" },
    { "\"vocab\":\"384\"", "\"vocab\":\"300\"" },
    { "\"vocab\":\"384\"", "\"vocab\":\"99999999999999999999\"" },
    { "\"ctx\":\"8\"", "\"ctx\":\"0\"" },
    { "\"ctx\":\"8\"", "\"ctx\":\"\"" },
    { "\"top_k\":\"4\"", "\"top_k\":\"384\"" },
    { "\"top_k\":\"4\"", "\"top_k\":\"3\"" },
    { "\"top_k\":\"4\"", "\"top_k\":\"0\"" },
    { "\"top_k\":\"4\"", "\"top_k\":\"-1\"" },
    { "\"n_pos\":\"", "\"n_pos\":\"-" },
    { "\"n_pos\":\"", "\"n_pos\":\"9" },
    { "\"truncated\":\"0\"", "\"truncated\":\"2\"" },
    { "\"sources\":\"[", "\"sources\":\"[1," },
    { "\"sources\":\"[", "\"sources\":\"{\\\"a\\\":[" },
    { "\"sources\":\"[", "\"sources\":\"[\\\"a\\\",\\\"b\\\",\\\"c\\\",\\\"d\\\",\\\"e\\\",\\\"f\\\",\\\"g\\\",\\\"h\\\","
                         "\\\"i\\\",\\\"j\\\",\\\"k\\\",\\\"l\\\",\\\"m\\\",\\\"n\\\",\\\"o\\\",\\\"p\\\"," },
    { "\"teacher_hash\":\"", "\"teacher_hash\":\"0" },
    { "\"data_hash\"", "\"data_hasx\"" },
    { "\"top_id\"", "\"top_iq\"" },
    { "\"other_logp\"", "\"other_logq\"" },
    { "\"tokens\":{\"dtype\":\"I32\"", "\"tokens\":{\"dtype\":\"F32\"" },
    { "\"doc_start\":{\"dtype\":\"I64\"", "\"doc_start\":{\"dtype\":\"F64\"" },
    { "\"logp\":{\"dtype\":\"F32\"", "\"logp\":{\"dtype\":\"I32\"" },
};

static void check_corruptions(const char *seed_topk, const char *seed_full)
{
    char *path = dm_path_join(g_tmp, "corrupt.klc");
    dm_err err;
    for (size_t i = 0; i < sizeof CORRUPT / sizeof CORRUPT[0]; i++) {
        dm_kl_cache c;
        DM_ASSERT(dm_kl_cache_load(&c, CORRUPT[i].full ? seed_full : seed_topk, &err) == 0);
        CORRUPT[i].fn(&c);
        CHECK(dm_kl_cache_save(&c, path, &err) == 0, "%s: save: %s", CORRUPT[i].name, err.msg);
        dm_kl_cache_free(&c);
        refused_cleanly(dm_kl_cache_load(&c, path, &err), &err, path, CORRUPT[i].name);
    }
    buf seed = read_bytes(seed_topk);
    for (size_t i = 0; i < sizeof PATCH / sizeof PATCH[0]; i++) {
        buf m = patch_header(&seed, PATCH[i][0], PATCH[i][1]);
        write_bytes(path, m.p, m.n);
        free(m.p);
        dm_kl_cache c;
        char what[160];
        snprintf(what, sizeof what, "header edit %s -> %s", PATCH[i][0], PATCH[i][1]);
        refused_cleanly(dm_kl_cache_load(&c, path, &err), &err, path, what);
    }
    /* doc_start's last entry past the token count (data section edit) */
    dm_safetensors st;
    DM_ASSERT(dm_st_open(&st, seed_topk, &err) == 0);
    const dm_st_tensor *t = dm_st_find(&st, "doc_start");
    const size_t at = (size_t)(t->data - st.files[t->file].map.data) + t->nbytes - 8;
    dm_st_close(&st);
    int64_t v;
    memcpy(&v, seed.p + at, 8);
    v += 5;
    memcpy(seed.p + at, &v, 8);
    write_bytes(path, seed.p, seed.n);
    dm_kl_cache c;
    refused_cleanly(dm_kl_cache_load(&c, path, &err), &err, path, "doc_start ending past the tokens");
    free(seed.p);
    /* a -inf log-probability (probability 0) in a full cache is legal */
    DM_ASSERT(dm_kl_cache_load(&c, seed_full, &err) == 0);
    c.logp[7] = -INFINITY;
    CHECK(dm_kl_cache_save(&c, path, &err) == 0, "save: %s", err.msg);
    dm_kl_cache_free(&c);
    CHECK(dm_kl_cache_load(&c, path, &err) == 0, "a -inf log-probability in a full cache refused: %s", err.msg);
    dm_kl_cache_free(&c);
    CHECK(dm_kl_cache_load(&c, "/nonexistent/kl.klc", &err) == -1 && strstr(err.msg, "/nonexistent/kl.klc"),
          "a missing file: %s", err.msg);
    free(path);
}

/* ---- random mutants ---- */

static jm_rng g_rng = { 2025 };

static uint64_t below(uint64_t n) { return n ? jm_next(&g_rng) % n : 0; }

/* A byte-level mutant of seed (1-4 edits; the length field mostly kept in step). */
static buf byte_mutant(const buf *seed)
{
    buf b = { malloc(seed->n + 64), seed->n };
    memcpy(b.p, seed->p, seed->n);
    uint64_t hl = header_len(seed);
    const int edits = 1 + (int)below(4);
    for (int e = 0; e < edits && b.n > 8; e++) {
        /* half the edits inside the header, where the structure is */
        const size_t at = below(2) && hl > 0 && 8 + hl <= b.n ? 8 + below(hl) : below(b.n);
        switch (below(6)) {
        case 0: b.p[at] ^= (uint8_t)(1u << below(8)); break;
        case 1: b.p[at] = (uint8_t)jm_next(&g_rng); break;
        case 2: {
            const size_t k = 1 + below(8);
            memmove(b.p + at + k, b.p + at, b.n - at);
            for (size_t i = 0; i < k; i++)
                b.p[at + i] = below(2) ? (uint8_t)jm_next(&g_rng) : (uint8_t)"0123456789\"[]{},:-"[below(18)];
            b.n += k;
            if (at >= 8 && at < 8 + hl)
                hl += k;
            break;
        }
        case 3: {
            size_t k = 1 + below(8);
            k = k < b.n - at ? k : b.n - at;
            memmove(b.p + at, b.p + at + k, b.n - at - k);
            b.n -= k;
            if (at >= 8 && at < 8 + hl)
                hl -= k < 8 + hl - at ? k : 8 + hl - at;
            break;
        }
        case 4: b.n = at; break;
        default: hl = below(2) ? below(b.n + 16) : jm_next(&g_rng); break;
        }
    }
    if (b.n >= 8)
        set_header_len(&b, hl);
    return b;
}

/* A JSON-level mutant of seed's header (json_mutate.h), the data kept. */
static buf json_mutant(const buf *seed)
{
    const size_t hl = header_len(seed);
    char *h = jm_mutate(&g_rng, (const char *)seed->p + 8, hl);
    const size_t k = strlen(h), data = seed->n - 8 - hl;
    buf b = { malloc(8 + k + data), 8 + k + data };
    memcpy(b.p + 8, h, k);
    memcpy(b.p + 8 + k, seed->p + 8 + hl, data);
    set_header_len(&b, k);
    free(h);
    return b;
}

static void fuzz(const buf *seeds, int n_seeds)
{
    char *path = dm_path_join(g_tmp, "mutant.klc");
    int accepted = 0, scored = 0, score_errors = 0;
    for (int it = 0; it < N_MUTANTS; it++) {
        const buf *seed = &seeds[below((uint64_t)n_seeds)];
        buf m = below(3) ? byte_mutant(seed) : json_mutant(seed);
        write_bytes(path, m.p, m.n);
        free(m.p);
        dm_kl_cache c;
        dm_err err;
        const int rc = dm_kl_cache_load(&c, path, &err);
        if (rc) {
            refused_cleanly(rc, &err, path, "mutant");
            continue;
        }
        accepted++;
        char why[160];
        if (!consistent(&c, why, sizeof why) && g_printed++ < MAX_PRINTED)
            CHECK(0, "mutant %d accepted but inconsistent: %s", it, why);
        if (scored < N_EVAL && c.V == g_ev->V && c.ctx <= CTX) {
            dm_kl_report r;
            scored++;
            if (dm_kl_eval(g_ev, &c, &r, &err) == 0)
                dm_kl_report_free(&r);
            else
                score_errors++;
        }
        dm_kl_cache_free(&c);
    }
    printf("  %d mutants, %d accepted, %d of those scored (%d refused by dm_kl_eval)\n", N_MUTANTS, accepted, scored,
           score_errors);
    free(path);
}

/* ---- the model and the seeds ---- */

int main(void)
{
    const char *base = getenv("DM_TEST_TMP");
    char *root = dm_strdup(base && *base ? base : "/tmp/dm-test");
    dm_make_dirs(root);
    g_tmp = dm_path_join(root, "kl_cache_fuzz");
    dm_remove_tree(g_tmp);
    dm_make_dirs(g_tmp);
    char *mdir = dm_path_join(g_tmp, "model");
    dm_init_opts o = { .config_json = dm_preset_find("tiny")->config_json, .dtype = DM_WFMT_F32, .seed = 5 };
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    if (dm_init_model(mdir, &o, &err) || dm_model_load(&m, mdir, &err) || dm_tokenizer_load(&tok, mdir, &err)) {
        CHECK(0, "tiny model: %s", err.msg);
        return check_finish("test_kl_cache_fuzz");
    }
    dm_threads_set(1);   /* scoring mutants: tiny forward passes, where OpenMP barriers would dominate */
    g_ev = dm_evaluator_new(m, tok, CTX);
    static char *texts[] = { "def f(x):\n    return x + 1\n", "", "The kernel boots in stages.", "x = 1" };
    static char *sources[] = { "code", "prose", "", "code" };
    dm_doc d[4];
    for (int i = 0; i < 4; i++)
        d[i] = (dm_doc){ "id", sources[i], texts[i], strlen(texts[i]) };
    dm_docs docs = { d, 4 };
    dm_kl_cache topk, full;
    CHECK(dm_kl_cache_build(g_ev, &docs, TOP_K, 0, &topk, &err) == 0, "build top-k: %s", err.msg);
    CHECK(dm_kl_cache_build(g_ev, &docs, 0, 20, &full, &err) == 0 && full.truncated && full.n_pos == 20,
          "build full, 20 predictions: %s", err.msg);
    char *seed_topk = dm_path_join(g_tmp, "seed_topk.klc"), *seed_full = dm_path_join(g_tmp, "seed_full.klc");
    if (check_failures == 0) {
        char why[160];
        CHECK(consistent(&topk, why, sizeof why) && consistent(&full, why, sizeof why), "a built cache: %s", why);
        check_round_trip(&topk, "top-k cache");
        check_round_trip(&full, "full cache (truncated)");
        DM_ASSERT(dm_kl_cache_save(&topk, seed_topk, &err) == 0 && dm_kl_cache_save(&full, seed_full, &err) == 0);
        check_corruptions(seed_topk, seed_full);
        buf seeds[2] = { read_bytes(seed_topk), read_bytes(seed_full) };
        double t0 = dm_time_sec();
        fuzz(seeds, 2);
        printf("  fuzzing took %.2f s\n", dm_time_sec() - t0);
        free(seeds[0].p), free(seeds[1].p);
        dm_kl_cache_free(&topk);
        dm_kl_cache_free(&full);
    }
    dm_evaluator_free(g_ev);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    dm_remove_tree(g_tmp);
    free(seed_topk), free(seed_full), free(mdir), free(g_tmp), free(root);
    return check_finish("test_kl_cache_fuzz");
}
