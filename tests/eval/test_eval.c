/* test_eval — the loss arithmetic and the window loop against oracles
 * written here in long double:
 *  - dm_token_nll on random logits (spread up to ±3e4, so a naive exp would
 *    overflow) within NLL_TOL relative; non-finite logits give NaN;
 *  - dm_eval_windows with a fake model whose logits depend on the whole
 *    window prefix: every call is a window starting at a multiple of ctx
 *    with at most ctx rows; every id after the first is predicted once;
 *    the summed loss and the byte count match the oracle; max_targets cuts
 *    at exactly that many predictions;
 *  - dm_nll_loss/ppl/bpb on a hand-computed case;
 *  - dm_eval_docs on a tiny random model (preset tiny): per document the
 *    framing <|endoftext|> doc <|endoftext|> (tokens = doc tokens + 1, bytes
 *    = text length), per-source groups summing to the total, the same loss
 *    as dm_eval_stream on ids framed here, --max-tokens truncation.
 * (tests/eval/check_eval_ppl.sh compares `demolish eval ppl` with numpy on
 * `demolish logits` output.) */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "eval/eval.h"

#define NLL_TOL 1e-12        /* relative: double log-sum-exp vs long double */
#define SUM_TOL 1e-12        /* relative, summed losses */
#define FAKE_V 97
#define FAKE_CTX 7

static uint64_t mix(uint64_t x)
{
    x ^= x >> 31;
    x *= 0x9e3779b97f4a7c15ULL;
    x ^= x >> 29;
    x *= 0xbf58476d1ce4e5b9ULL;
    return x ^ (x >> 32);
}

static long double oracle_nll(const float *x, int V, int t)
{
    long double m = x[0], s = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > m)
            m = x[i];
    for (int i = 0; i < V; i++)
        s += expl((long double)x[i] - m);
    return m + logl(s) - (long double)x[t];
}

static void test_token_nll(void)
{
    float x[1000];
    uint64_t r = 1;
    for (int trial = 0; trial < 200; trial++) {
        int V = 2 + trial * 5 % 998;
        float spread = trial % 3 == 0 ? 30000.0f : 8.0f;
        for (int i = 0; i < V; i++)
            x[i] = spread * ((float)((r = mix(r)) % 20001) / 10000.0f - 1.0f);
        int t = (int)(mix(r) % (uint64_t)V);
        double got = dm_token_nll(x, V, t);
        long double want = oracle_nll(x, V, t);
        CHECK(fabsl(got - want) <= NLL_TOL * fmaxl(1, fabsl(want)), "V=%d: nll %.17g, oracle %.17Lg (|d| %.3Lg)", V,
              got, want, fabsl(got - want));
    }
    x[0] = NAN;
    x[1] = 1;
    CHECK(isnan(dm_token_nll(x, 2, 1)), "NaN logits not flagged");
    x[0] = -INFINITY;
    CHECK(isnan(dm_token_nll(x, 2, 0)), "a -inf target logit not flagged");
    CHECK(fabs(dm_token_nll(x, 2, 1)) < 1e-15, "-inf elsewhere should give probability 1");
}

/* ---- a fake model ---- */

typedef struct fake {
    const int32_t *base;        /* the stream, to see where windows start */
    int calls, bad_start, bad_len;
} fake;

static float fake_logit(const int32_t *ids, int t, int v)
{
    uint64_t h = 0x1234;
    for (int i = 0; i <= t; i++)
        h = mix(h ^ (uint64_t)ids[i]);
    return (float)((mix(h ^ (uint64_t)v) % 10001) / 1000.0) - 5.0f;
}

static int fake_logits(void *user, const int32_t *ids, int T, float *logits, dm_err *err)
{
    fake *f = user;
    f->calls++;
    f->bad_start += (ids - f->base) % FAKE_CTX != 0;
    f->bad_len += T < 1 || T > FAKE_CTX;
    for (int t = 0; t < T; t++)
        for (int v = 0; v < FAKE_V; v++)
            logits[t * FAKE_V + v] = fake_logit(ids, t, v);
    return 0;
}

/* The oracle: windows of FAKE_CTX predictions, first `limit` predictions. */
static long double oracle_stream(const int32_t *ids, int n, int limit, const int *bytes, int64_t *n_bytes)
{
    long double sum = 0;
    float row[FAKE_V];
    int done = 0;
    *n_bytes = 0;
    for (int start = 0; start + 1 < n; start += FAKE_CTX)
        for (int t = 0; t < FAKE_CTX && start + t + 1 < n && done < limit; t++, done++) {
            for (int v = 0; v < FAKE_V; v++)
                row[v] = fake_logit(ids + start, t, v);
            sum += oracle_nll(row, FAKE_V, ids[start + t + 1]);
            *n_bytes += bytes[ids[start + t + 1]];
        }
    return sum;
}

static void test_windows(void)
{
    int32_t ids[60];
    int bytes[FAKE_V];
    for (int i = 0; i < 60; i++)
        ids[i] = (int32_t)(mix((uint64_t)i + 7) % FAKE_V);
    for (int v = 0; v < FAKE_V; v++)
        bytes[v] = v % 4;
    float *scratch = malloc(FAKE_CTX * FAKE_V * sizeof(float));
    static const int lengths[] = { 1, 2, 7, 8, 9, 14, 15, 60 };
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        int n = lengths[k];
        for (int limit = 0; limit <= 2; limit++) {
            int max_t = limit == 0 ? 0 : limit == 1 ? 5 : n > 10 ? n - 3 : 1;
            fake f = { ids, 0, 0, 0 };
            dm_nll acc = { 0 };
            dm_err err;
            int rc = dm_eval_windows(fake_logits, &f, FAKE_V, ids, (size_t)n, FAKE_CTX, max_t, bytes, scratch, &acc,
                                     &err);
            int want_n = n - 1 < 0 ? 0 : n - 1;
            if (max_t > 0 && want_n > max_t)
                want_n = max_t;
            int64_t want_bytes;
            long double want = oracle_stream(ids, n, want_n, bytes, &want_bytes);
            CHECK(rc == 0, "n=%d: %s", n, err.msg);
            CHECK(acc.n_tokens == want_n, "n=%d max %d: %lld predictions, want %d", n, max_t,
                  (long long)acc.n_tokens, want_n);
            CHECK(acc.n_bytes == want_bytes, "n=%d: %lld bytes, want %lld", n, (long long)acc.n_bytes,
                  (long long)want_bytes);
            CHECK(fabsl(acc.nll - want) <= SUM_TOL * fmaxl(1, fabsl(want)), "n=%d max %d: nll %.17g, oracle %.17Lg",
                  n, max_t, acc.nll, want);
            CHECK(f.bad_start == 0 && f.bad_len == 0, "n=%d: %d windows start off a multiple of ctx, %d bad lengths",
                  n, f.bad_start, f.bad_len);
            int want_calls = max_t > 0 ? (want_n + FAKE_CTX - 1) / FAKE_CTX : (n - 1 + FAKE_CTX - 1) / FAKE_CTX;
            CHECK(f.calls == want_calls, "n=%d max %d: %d windows, want %d", n, max_t, f.calls, want_calls);
        }
    }
    int32_t bad[3] = { 1, FAKE_V, 2 };
    fake f = { bad, 0, 0, 0 };
    dm_nll acc = { 0 };
    dm_err err;
    CHECK(dm_eval_windows(fake_logits, &f, FAKE_V, bad, 3, FAKE_CTX, 0, NULL, scratch, &acc, &err) != 0,
          "an id outside the vocabulary was accepted");
    free(scratch);

    dm_nll h = { .nll = 2 * M_LN2 * 10, .n_tokens = 10, .n_bytes = 5 };
    CHECK(fabs(dm_nll_loss(&h) - 2 * M_LN2) < 1e-15 && fabs(dm_nll_ppl(&h) - 4) < 1e-12 &&
              fabs(dm_nll_bpb(&h) - 4) < 1e-12, "loss/ppl/bpb arithmetic");
}

/* ---- documents on a tiny model ---- */

static void test_docs(void)
{
    const char *base = getenv("DM_TEST_TMP");
    char *tmp = dm_strdup(base && *base ? base : "/tmp/dm-test");
    dm_make_dirs(tmp);
    char *dir = dm_path_join(tmp, "eval_tiny");
    dm_remove_tree(dir);
    dm_init_opts o = { .config_json = dm_preset_find("tiny")->config_json, .dtype = DM_WFMT_F32, .seed = 3 };
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    if (dm_init_model(dir, &o, &err) || dm_model_load(&m, dir, &err) || dm_tokenizer_load(&tok, dir, &err)) {
        CHECK(0, "tiny model: %s", err.msg);
        return;
    }
    static char *texts[] = { "def f(x):\n    return x + 1\n", "The kernel boots.", "What is 2 + 2?\n<think>\n4"
                             "</think>\n4", "x" };
    static char *sources[] = { "code", "prose", "reasoning", "code" };
    dm_doc d[4];
    for (int i = 0; i < 4; i++)
        d[i] = (dm_doc){ "id", sources[i], texts[i], strlen(texts[i]) };
    dm_docs docs = { d, 4 };
    dm_evaluator *ev = dm_evaluator_new(m, tok, 8);
    dm_eval_report r;
    CHECK(dm_eval_docs(ev, &docs, 0, &r, &err) == 0, "eval docs: %s", err.msg);
    int32_t eos = dm_token_id(tok, "<|endoftext|>");
    dm_nll want = { 0 }, code = { 0 };
    int64_t want_bytes = 0;
    for (int i = 0; i < 4; i++) {
        int k;
        int32_t *t = dm_tokenize(tok, texts[i], strlen(texts[i]), true, &k);
        int32_t *f = malloc((size_t)(k + 2) * sizeof *f);
        f[0] = f[k + 1] = eos;
        memcpy(f + 1, t, (size_t)k * sizeof *f);
        dm_nll x = { 0 };
        CHECK(dm_eval_stream(ev, f, (size_t)k + 2, 0, &x, &err) == 0, "stream: %s", err.msg);
        CHECK(x.n_tokens == k + 1 && x.n_bytes == (int64_t)strlen(texts[i]), "doc %d: %lld tokens %lld bytes, want "
              "%d, %zu", i, (long long)x.n_tokens, (long long)x.n_bytes, k + 1, strlen(texts[i]));
        dm_nll_add(&want, &x);
        if (i == 0 || i == 3)
            dm_nll_add(&code, &x);
        want_bytes += (int64_t)strlen(texts[i]);
        free(t), free(f);
    }
    CHECK(r.n_groups == 3 && !strcmp(r.group[0], "code") && !strcmp(r.group[2], "reasoning"), "groups");
    CHECK(r.total.n_tokens == want.n_tokens && r.total.n_bytes == want_bytes && r.total.n_docs == 4,
          "total counts: %lld tokens %lld bytes", (long long)r.total.n_tokens, (long long)r.total.n_bytes);
    CHECK(fabs(r.total.nll - want.nll) <= SUM_TOL * want.nll, "total nll %.17g vs %.17g", r.total.nll, want.nll);
    CHECK(r.groups[0].n_tokens == code.n_tokens && fabs(r.groups[0].nll - code.nll) <= SUM_TOL * code.nll &&
              r.groups[0].n_docs == 2, "code group");
    CHECK(!r.truncated && isfinite(dm_nll_bpb(&r.total)), "not truncated, finite bpb");
    dm_eval_report_free(&r);
    CHECK(dm_eval_docs(ev, &docs, 5, &r, &err) == 0 && r.total.n_tokens == 5 && r.truncated,
          "max_tokens 5: %lld predictions", (long long)r.total.n_tokens);
    dm_eval_report_free(&r);
    dm_evaluator_free(ev);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    dm_remove_tree(dir);
    free(dir), free(tmp);
}

int main(void)
{
    test_token_nll();
    test_windows();
    test_docs();
    return check_finish("test_eval");
}
