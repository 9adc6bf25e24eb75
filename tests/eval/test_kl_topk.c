/* test_kl_topk — the teacher cache of `eval kl` (dm_kl_cache_build) and the
 * student scoring (dm_kl_eval) against an oracle written here, on the same
 * f32 logits (dm_evaluator_logits on windows rebuilt here: each document
 * framed <|endoftext|> doc <|endoftext|>, non-overlapping windows of CTX
 * predictions):
 *  - top-k selection: all V ids sorted with qsort by (logit descending, id
 *    ascending) must give the cache's top_id rows exactly, for k = 1, 2, 8
 *    and V-1; log-probabilities, the "other" bucket's log-mass and the target
 *    token's log-probability (long double) within one f32 rounding; the full
 *    cache (k = 0) likewise;
 *  - ties: a second model is the first with its lm_head rows zeroed except
 *    TIE_KEEP ones, so most logits are exactly 0.0; the test requires
 *    positions where the k-th place falls inside the tie (it must go to the
 *    lowest ids) and where the maximum itself is tied (the teacher's top-1
 *    and the student's argmax must both be the lowest tied id);
 *  - per position KL of each model against the other's caches: the full KL
 *    and the bucket KL (long double oracle) within KL_ATOL + KL_RTOL; the
 *    bucket KL <= the full KL (log-sum inequality); at k = V-1 (a one-token
 *    bucket is that token's own term) equal to it; top-1 agreement counts;
 *  - a model against its own cache: KL ~ 0 within SELF_KL_TOL, 100 % top-1;
 *  - k = V and k < 0 are refused. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/eval.h"

#define CTX 8
#define LP_RTOL 0x1p-23         /* cached f32 log-prob vs long double: one f32 rounding (2^-24) + margin */
#define LP_ATOL 1e-9
#define KL_RTOL 1e-6            /* per-position KL: kept as f32 (2^-24) from f32-rounded teacher log-probs */
#define KL_ATOL 1e-6            /* nats: 2^-24 x the teacher's entropy (<= ln 384 ~ 6) ~ 4e-7, with margin */
#define SELF_KL_TOL 1e-6        /* a model against its own cache: only the f32 rounding of the cache */
#define SUM_KL_TOL 1e-12        /* top-k KL - full KL may exceed 0 by rounding only */

static const int TIE_KEEP[] = { 0, 3, 100, 250 };   /* lm_head rows left non-zero in the tie model */
#define N_TIE_KEEP (int)(sizeof TIE_KEEP / sizeof TIE_KEEP[0])

static const char *const TEXTS[] = { "def f(x):\n    return x + 1\n", "The kernel boots in stages. Each stage hands over." };
static const char *const SOURCES[] = { "code", "prose" };
#define N_DOCS 2

/* ---- fixtures ---- */

typedef struct fixture {
    char *dir;
    dm_model *m;
    dm_tokenizer *tok;
    dm_evaluator *ev;
    int64_t n_pos;
    float *logits;              /* [n_pos][V] every prediction's logits, in window order */
    int32_t *target;            /* [n_pos] */
} fixture;

/* Zeroes every lm_head row but TIE_KEEP's in dir's model.safetensors. */
static int zero_lm_head(const char *dir)
{
    char *path = dm_path_join(dir, "model.safetensors");
    dm_safetensors st;
    dm_err err;
    int rc = dm_st_open(&st, path, &err);
    const dm_st_tensor *t = rc ? NULL : dm_st_find(&st, "lm_head.weight");
    if (!t || t->dtype != DM_DTYPE_F32 || t->ndim != 2) {
        CHECK(0, "%s: no f32 lm_head.weight (%s)", path, rc ? err.msg : "");
        if (rc == 0)
            dm_st_close(&st);
        free(path);
        return -1;
    }
    const long off = (long)(t->data - st.files[t->file].map.data);
    const int64_t V = t->shape[0], D = t->shape[1];
    dm_st_close(&st);
    float *zero = calloc((size_t)D, sizeof(float));
    FILE *f = fopen(path, "r+b");
    rc = f ? 0 : -1;
    for (int64_t v = 0; v < V && rc == 0; v++) {
        bool keep = false;
        for (int i = 0; i < N_TIE_KEEP; i++)
            keep |= TIE_KEEP[i] == v;
        if (!keep && (fseek(f, off + (long)(v * D * 4), SEEK_SET) || fwrite(zero, 4, (size_t)D, f) != (size_t)D))
            rc = -1;
    }
    if (f && fclose(f))
        rc = -1;
    CHECK(rc == 0, "%s: could not rewrite lm_head", path);
    free(zero);
    free(path);
    return rc;
}

/* Every prediction's logits, windows rebuilt here (the oracle's positions). */
static void oracle_logits(fixture *fx)
{
    const int V = fx->ev->V;
    const int32_t eos = dm_token_id(fx->tok, "<|endoftext|>");
    size_t cap = 0;
    for (int d = 0; d < N_DOCS; d++)
        cap += strlen(TEXTS[d]) + 1;   /* a byte-level BPE gives at most one token per byte */
    fx->logits = malloc(cap * (size_t)V * sizeof(float));
    fx->target = malloc(cap * sizeof(int32_t));
    fx->n_pos = 0;
    dm_err err;
    for (int d = 0; d < N_DOCS; d++) {
        int k;
        int32_t *t = dm_tokenize(fx->tok, TEXTS[d], strlen(TEXTS[d]), true, &k);
        int32_t *ids = malloc((size_t)(k + 2) * sizeof *ids);
        ids[0] = ids[k + 1] = eos;
        memcpy(ids + 1, t, (size_t)k * sizeof *ids);
        for (int start = 0; start + 1 < k + 2; start += CTX) {
            const int T = k + 1 - start < CTX ? k + 1 - start : CTX;
            CHECK(dm_evaluator_logits(fx->ev, ids + start, T, fx->logits + (size_t)fx->n_pos * V, &err) == 0,
                  "logits: %s", err.msg);
            for (int i = 0; i < T; i++)
                fx->target[fx->n_pos + i] = ids[start + i + 1];
            fx->n_pos += T;
        }
        free(t);
        free(ids);
    }
}

static int fixture_open(fixture *fx, const char *tmp, const char *name, bool ties)
{
    memset(fx, 0, sizeof *fx);
    fx->dir = dm_path_join(tmp, name);
    dm_remove_tree(fx->dir);
    dm_init_opts o = { .config_json = dm_preset_find("tiny")->config_json, .dtype = DM_WFMT_F32, .seed = 21 };
    dm_err err;
    if (dm_init_model(fx->dir, &o, &err) || (ties && zero_lm_head(fx->dir)) || dm_model_load(&fx->m, fx->dir, &err) ||
        dm_tokenizer_load(&fx->tok, fx->dir, &err)) {
        CHECK(0, "%s: %s", name, err.msg);
        return -1;
    }
    fx->ev = dm_evaluator_new(fx->m, fx->tok, CTX);
    oracle_logits(fx);
    return 0;
}

static void fixture_close(fixture *fx)
{
    dm_evaluator_free(fx->ev);
    dm_tokenizer_free(fx->tok);
    dm_model_free(fx->m);
    if (fx->dir)
        dm_remove_tree(fx->dir);
    free(fx->dir);
    free(fx->logits);
    free(fx->target);
}

/* ---- the oracle ---- */

static const float *g_row;   /* qsort's view of the row being ranked */

static int cmp_rank(const void *a, const void *b)
{
    const int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (g_row[i] != g_row[j])
        return g_row[i] > g_row[j] ? -1 : 1;
    return (i > j) - (i < j);
}

/* order[V]: ids by (logit descending, id ascending); lp[V]: log-softmax. */
static void oracle_row(const float *x, int V, int32_t *order, long double *lp)
{
    for (int j = 0; j < V; j++)
        order[j] = j;
    g_row = x;
    qsort(order, (size_t)V, sizeof *order, cmp_rank);
    long double s = 0;
    for (int j = 0; j < V; j++)
        s += expl((long double)x[j] - x[order[0]]);
    const long double lse = x[order[0]] + logl(s);
    for (int j = 0; j < V; j++)
        lp[j] = (long double)x[j] - lse;
}

static bool lp_close(double got, long double want) { return fabsl(got - want) <= LP_RTOL * fabsl(want) + LP_ATOL; }

static int first_max(const float *x, int V)
{
    int am = 0;
    for (int j = 1; j < V; j++)
        if (x[j] > x[am])
            am = j;
    return am;
}

/* ---- checks ---- */

/* The cache of fx (top-k k, 0: full) against the oracle; counts tie cases. */
static void check_cache(const fixture *fx, const dm_kl_cache *c, int k, const char *what, int *tied_boundary,
                        int *tied_top)
{
    const int V = fx->ev->V;
    CHECK(c->n_pos == fx->n_pos && c->top_k == k && c->V == V && c->ctx == CTX && !c->truncated,
          "%s: n_pos %lld (want %lld), top_k %d, V %d, ctx %d", what, (long long)c->n_pos, (long long)fx->n_pos,
          c->top_k, c->V, c->ctx);
    if (c->n_pos != fx->n_pos)
        return;
    int32_t *order = malloc((size_t)V * sizeof *order);
    long double *lp = malloc((size_t)V * sizeof *lp);
    int bad_ids = 0, bad_lp = 0;
    for (int64_t p = 0; p < c->n_pos; p++) {
        const float *x = fx->logits + (size_t)p * V;
        oracle_row(x, V, order, lp);
        if (!lp_close(c->target_logp[p], lp[fx->target[p]]) && bad_lp++ < 3)
            CHECK(0, "%s: position %lld target_logp %.9g, oracle %.9Lg", what, (long long)p, c->target_logp[p],
                  lp[fx->target[p]]);
        if (k == 0) {
            for (int j = 0; j < V; j++)
                if (!lp_close(c->logp[(size_t)p * V + j], lp[j]) && bad_lp++ < 3)
                    CHECK(0, "%s: position %lld logp[%d] %.9g, oracle %.9Lg", what, (long long)p, j,
                          c->logp[(size_t)p * V + j], lp[j]);
            continue;
        }
        *tied_boundary += x[order[k - 1]] == x[order[k]];
        *tied_top += x[order[0]] == x[order[1]];
        const int32_t *ids = c->top_id + (size_t)p * k;
        long double other = 0;
        for (int i = k; i < V; i++)
            other += expl(lp[order[i]]);
        for (int i = 0; i < k; i++) {
            if (ids[i] != order[i] && bad_ids++ < 3)
                CHECK(0, "%s: position %lld top_id[%d] = %d (logit %.9g), oracle %d (logit %.9g)", what,
                      (long long)p, i, ids[i], x[ids[i]], order[i], x[order[i]]);
            if (!lp_close(c->logp[(size_t)p * k + i], lp[order[i]]) && bad_lp++ < 3)
                CHECK(0, "%s: position %lld logp[%d] %.9g, oracle %.9Lg", what, (long long)p, i,
                      c->logp[(size_t)p * k + i], lp[order[i]]);
        }
        if (!lp_close(c->other_logp[p], logl(other)) && bad_lp++ < 3)
            CHECK(0, "%s: position %lld other_logp %.9g, oracle %.9Lg", what, (long long)p, c->other_logp[p],
                  logl(other));
    }
    CHECK(bad_ids == 0 && bad_lp == 0, "%s: %d top-id rows and %d log-probabilities differ", what, bad_ids, bad_lp);
    free(order);
    free(lp);
}

/* Student st scored against teacher te's cache c (top-k k, 0: full): per
 * position KL and top-1 agreement against the oracle. */
static void check_scores(const fixture *te, const fixture *st, const dm_kl_cache *c, int k, const char *what)
{
    const int V = te->ev->V;
    dm_kl_report r;
    dm_err err;
    if (dm_kl_eval(st->ev, c, &r, &err)) {
        CHECK(0, "%s: dm_kl_eval: %s", what, err.msg);
        return;
    }
    int32_t *order = malloc((size_t)V * sizeof *order), *order_s = malloc((size_t)V * sizeof *order_s);
    long double *lp = malloc((size_t)V * sizeof *lp), *lq = malloc((size_t)V * sizeof *lq);
    int64_t agree = 0;
    int bad = 0;
    double worst = 0;
    for (int64_t p = 0; p < c->n_pos; p++) {
        const float *xs = st->logits + (size_t)p * V;
        oracle_row(te->logits + (size_t)p * V, V, order, lp);
        oracle_row(xs, V, order_s, lq);
        long double full = 0, top = 0, po = 0, qo = 0;
        for (int i = 0; i < V; i++) {
            const int j = order[i];
            full += expl(lp[j]) * (lp[j] - lq[j]);
            if (i < k) {
                top += expl(lp[j]) * (lp[j] - lq[j]);
            } else {
                po += expl(lp[j]);
                qo += expl(lq[j]);
            }
        }
        top += po > 0 ? po * (logl(po) - logl(qo)) : 0;
        const long double want = k ? top : full;
        agree += order[0] == first_max(xs, V);
        const double d = fabsl(r.kl[p] - want);
        worst = d > worst ? d : worst;
        if (d > KL_ATOL + KL_RTOL * fabsl(want) && bad++ < 3)
            CHECK(0, "%s: position %lld KL %.9g, oracle %.9Lg", what, (long long)p, r.kl[p], want);
        if (k && top > full + SUM_KL_TOL)
            CHECK(0, "%s: position %lld top-%d KL %.9Lg > full KL %.9Lg", what, (long long)p, k, top, full);
        if (k == V - 1 && fabsl(top - full) > SUM_KL_TOL * (1 + full))
            CHECK(0, "%s: position %lld top-(V-1) KL %.17Lg != full KL %.17Lg", what, (long long)p, top, full);
    }
    CHECK(r.total.top1_agree == agree, "%s: top-1 agreement %lld, oracle %lld", what, (long long)r.total.top1_agree,
          (long long)agree);
    if (te == st)
        CHECK(worst <= SELF_KL_TOL && fabs(r.total.kl_max) <= SELF_KL_TOL && agree == c->n_pos,
              "%s (itself): max |KL| %.3g, top-1 %lld of %lld", what, worst, (long long)agree, (long long)c->n_pos);
    printf("  %-26s mean KL %.6f, top-1 %lld/%lld, worst |d| %.2g\n", what, dm_kl_mean(&r.total),
           (long long)agree, (long long)c->n_pos, worst);
    dm_kl_report_free(&r);
    free(order), free(order_s), free(lp), free(lq);
}

static void run(fixture *fx, fixture *other, const dm_docs *docs, const char *name)
{
    const int V = fx->ev->V;
    const int ks[] = { 0, 1, 2, 8, V - 1 };
    int tied_boundary = 0, tied_top = 0;
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s k=%d", name, ks[i]);
        dm_kl_cache c;
        dm_err err;
        if (dm_kl_cache_build(fx->ev, docs, ks[i], 0, &c, &err)) {
            CHECK(0, "%s: build: %s", what, err.msg);
            continue;
        }
        int tb = 0, tt = 0;
        check_cache(fx, &c, ks[i], what, &tb, &tt);
        if (ks[i] == 8) {
            tied_boundary = tb;
            tied_top = tt;
        }
        check_scores(fx, fx, &c, ks[i], what);
        snprintf(what, sizeof what, "%s k=%d, other student", name, ks[i]);
        check_scores(fx, other, &c, ks[i], what);
        dm_kl_cache_free(&c);
    }
    printf("  %s: %lld positions, %d with the 8th place inside a tie, %d with a tied maximum\n", name,
           (long long)fx->n_pos, tied_boundary, tied_top);
    if (strstr(name, "ties"))
        CHECK(tied_boundary > 0 && tied_top > 0, "%s: the fixture gave %d tied boundaries and %d tied maxima (change "
              "TIE_KEEP)", name, tied_boundary, tied_top);
    dm_kl_cache c;
    dm_err err;
    CHECK(dm_kl_cache_build(fx->ev, docs, V, 0, &c, &err) && strstr(err.msg, "top-k"), "k = V accepted");
    CHECK(dm_kl_cache_build(fx->ev, docs, -1, 0, &c, &err) && strstr(err.msg, "top-k"), "k = -1 accepted");
}

int main(void)
{
    const char *base = getenv("DM_TEST_TMP");
    char *tmp = dm_strdup(base && *base ? base : "/tmp/dm-test");
    dm_make_dirs(tmp);
    dm_doc d[N_DOCS];
    for (int i = 0; i < N_DOCS; i++)
        d[i] = (dm_doc){ "id", (char *)SOURCES[i], (char *)TEXTS[i], strlen(TEXTS[i]) };
    dm_docs docs = { d, N_DOCS };
    fixture plain = { 0 }, ties = { 0 };
    if (fixture_open(&plain, tmp, "kl_topk_plain", false) == 0 && fixture_open(&ties, tmp, "kl_topk_ties", true) == 0) {
        CHECK(plain.n_pos == ties.n_pos, "the two models see different positions");
        run(&plain, &ties, &docs, "random model");
        run(&ties, &plain, &docs, "model with ties");
    }
    fixture_close(&plain);
    fixture_close(&ties);
    free(tmp);
    return check_finish("test_kl_topk");
}
