/* test_sampler_draw — the sampler as a whole: seeded reproducibility, a
 * chi-square test that draws follow dm_sampler_probs, agreement with the
 * float64 reference (sample_check.h, full qsort) on a GLM-sized vocabulary
 * where top-k / top-p / min-p take the partial-sort paths, and parameter
 * validation. */
#include "sample/sample_check.h"

#include "core/core.h"

/* See test_sampler_transforms: float logits and float results. */
#define PROB_TOL 1e-6
/* Sum of a returned distribution: up to V float roundings of ~6e-8 each
 * relative, on values summing to 1. */
#define SUM_TOL 1e-5

/* Upper 1e-6 tail of the chi-square distribution, by degrees of freedom
 * (scipy.stats.chi2.isf(1e-6, df)). With a fixed seed the test is
 * deterministic; a correct sampler would exceed this once in a million seeds. */
static const double CHI2_CRIT_1E6[] = { 0, 23.928, 27.631, 30.665, 33.377, 35.888, 38.258, 40.522, 42.701 };

#define V_BIG 155000

/* Gaussian logits (Box-Muller over dm_rng) times scale. */
static void random_logits(float *l, int V, uint64_t seed, double scale)
{
    dm_rng r;
    dm_rng_seed(&r, seed);
    for (int i = 0; i < V; i++) {
        double u1 = dm_rng_uniform(&r), u2 = dm_rng_uniform(&r);
        l[i] = (float)(scale * sqrt(-2 * log(1 - u1)) * cos(6.283185307179586 * u2));
    }
}

/* Draws n tokens from logits[V], accepting each as output; fills seq[n]. */
static void run_seq(dm_sampler *s, const float *logits, int V, int n, int32_t *seq, float *scratch,
                    float *probs)
{
    for (int i = 0; i < n; i++) {
        if (probs)
            dm_sampler_probs(s, logits, probs);   /* must not disturb the draw */
        memcpy(scratch, logits, (size_t)V * sizeof *scratch);
        seq[i] = dm_sampler_sample(s, scratch);
        dm_sampler_accept(s, seq[i], false);
    }
}

static void test_reproducible(void)
{
    enum { V = 1000, N = 300 };
    static float logits[V], scratch[V], probs[V];
    static int32_t a[N], b[N], c[N], d[N];
    random_logits(logits, V, 5, 2.0);
    dm_sampler_params p = dm_sampler_defaults();
    p.top_k = 50;
    p.top_p = 0.9f;
    p.repeat_penalty = 1.1f;
    p.seed = 7;
    dm_sampler *s1 = dm_sampler_new(&p, V), *s2 = dm_sampler_new(&p, V);
    p.seed = 8;
    dm_sampler *s3 = dm_sampler_new(&p, V);
    run_seq(s1, logits, V, N, a, scratch, NULL);
    run_seq(s2, logits, V, N, b, scratch, probs);
    dm_sampler_reset(s1);
    run_seq(s1, logits, V, N, c, scratch, NULL);
    run_seq(s3, logits, V, N, d, scratch, NULL);
    int diff_ab = 0, diff_ac = 0, diff_ad = 0;
    for (int i = 0; i < N; i++) {
        diff_ab += a[i] != b[i];
        diff_ac += a[i] != c[i];
        diff_ad += a[i] != d[i];
        CHECK(a[i] >= 0 && a[i] < V, "token %d out of range at %d", (int)a[i], i);
    }
    CHECK(diff_ab == 0, "same seed (probs calls interleaved): %d of %d tokens differ", diff_ab, N);
    CHECK(diff_ac == 0, "same seed after reset: %d of %d tokens differ", diff_ac, N);
    CHECK(diff_ad > N / 2, "seeds 7 and 8 agree on %d of %d tokens", N - diff_ad, N);
    dm_sampler_free(s1);
    dm_sampler_free(s2);
    dm_sampler_free(s3);
}

/* chi-square of observed counts against probabilities p (only p > 0). */
static double chi2(const long *obs, const double *p, int V, long n, int *df)
{
    double x = 0;
    *df = -1;
    for (int i = 0; i < V; i++) {
        if (p[i] > 0) {
            double e = (double)n * p[i];
            x += (obs[i] - e) * (obs[i] - e) / e;
            (*df)++;
        }
    }
    return x;
}

/* 200k draws on 8 tokens through temperature, top-k and top-p (so two
 * tokens have probability 0) must match dm_sampler_probs; the same counts
 * against a distribution with 1% of mass moved between two tokens must fail,
 * which shows the threshold can catch a real error. */
static void test_chi_square(void)
{
    enum { V = 8 };
    const long N = 200000;
    const float l[V] = { 1.0f, 0.5f, 0.2f, 0.0f, -0.3f, -1.0f, -2.0f, -4.0f };
    dm_sampler_params p = dm_sampler_defaults();
    p.temperature = 0.9f;
    p.top_k = 7;
    p.top_p = 0.97f;
    p.seed = 12345;
    dm_sampler *s = dm_sampler_new(&p, V);
    if (!s) {
        CHECK(0, "dm_sampler_new failed");
        return;
    }
    float pf[V], scratch[V];
    double pd[V], want[V];
    long obs[V] = { 0 };
    dm_sampler_probs(s, l, pf);
    ref_seq h = { NULL, NULL, 0 };
    ref_probs(&p, &h, l, V, want);
    check_dist("chi2 setup vs reference", pf, want, V, PROB_TOL);
    for (int i = 0; i < V; i++)
        pd[i] = pf[i];
    for (long k = 0; k < N; k++) {
        memcpy(scratch, l, sizeof scratch);
        int32_t t = dm_sampler_sample(s, scratch);
        if (t >= 0 && t < V)
            obs[t]++;
        else
            CHECK(0, "draw %ld returned %d", k, (int)t);
    }
    for (int i = 0; i < V; i++)
        CHECK(pd[i] > 0 || obs[i] == 0, "token %d has p = 0 but was drawn %ld times", i, obs[i]);
    int df;
    double x = chi2(obs, pd, V, N, &df);
    CHECK(df >= 1 && df <= 8 && x < CHI2_CRIT_1E6[df], "chi2 = %.2f with %d df >= %.2f", x, df,
          CHI2_CRIT_1E6[df]);
    printf("chi-square: %.2f with %d df (critical %.2f at 1e-6)\n", x, df, CHI2_CRIT_1E6[df]);
    pd[0] -= 0.01;
    pd[1] += 0.01;
    double xbad = chi2(obs, pd, V, N, &df);
    CHECK(xbad > CHI2_CRIT_1E6[df], "chi2 against a wrong distribution only %.2f", xbad);
    dm_sampler_free(s);
}

/* dm_sampler_probs on 155k random logits against the float64 reference,
 * for parameter sets that exercise each pruning path. */
static void test_big_vocab(void)
{
    float *l = dm_malloc(V_BIG * sizeof *l), *got = dm_malloc(V_BIG * sizeof *got);
    double *want = dm_malloc(V_BIG * sizeof *want);
    random_logits(l, V_BIG, 11, 3.0);
    enum { NH = 400 };
    int32_t seq[NH];
    bool isp[NH];
    dm_rng r;
    dm_rng_seed(&r, 3);
    for (int i = 0; i < NH; i++) {
        seq[i] = (int32_t)(dm_rng_next(&r) % 2000);   /* small ids: repeats */
        isp[i] = i < NH / 2;
    }
    ref_seq h = { seq, isp, NH };
    static const struct {
        const char *what;
        float T, top_p, min_p, rep, freq;
        int top_k;
        dm_rep_scope scope;
    } cases[] = {
        { "top-p 0.9 (many chunks)", 1.0f, 0.9f, 0, 1, 0, 0, DM_REP_SCOPE_ALL },
        { "top-k 40 + top-p 0.95", 0.7f, 0.95f, 0, 1, 0, 40, DM_REP_SCOPE_ALL },
        { "min-p 0.05 + window rep + freq", 1.0f, 1, 0.05f, 1.3f, 0.1f, 0, DM_REP_SCOPE_WINDOW },
        { "no pruning, T 1.3, rep output", 1.3f, 1, 0, 1.2f, 0, 0, DM_REP_SCOPE_OUTPUT },
        { "top-k 5000 + top-p 0.5", 2.0f, 0.5f, 0, 1, 0, 5000, DM_REP_SCOPE_ALL },
        { "greedy with rep", 0, 1, 0, 2.0f, 0, 0, DM_REP_SCOPE_ALL },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        dm_sampler_params p = dm_sampler_defaults();
        p.temperature = cases[k].T;
        p.top_p = cases[k].top_p;
        p.min_p = cases[k].min_p;
        p.top_k = cases[k].top_k;
        p.repeat_penalty = cases[k].rep;
        p.frequency_penalty = cases[k].freq;
        p.repeat_scope = cases[k].scope;
        p.repeat_last_n = 64;
        dm_sampler *s = dm_sampler_new(&p, V_BIG);
        if (!s) {
            CHECK(0, "%s: dm_sampler_new failed", cases[k].what);
            continue;
        }
        for (int i = 0; i < NH; i++)
            dm_sampler_accept(s, seq[i], isp[i]);
        dm_sampler_probs(s, l, got);
        ref_probs(&p, &h, l, V_BIG, want);
        check_dist(cases[k].what, got, want, V_BIG, PROB_TOL);
        double sum = 0;
        int kept = 0;
        for (int i = 0; i < V_BIG; i++) {
            sum += got[i];
            kept += got[i] > 0;
        }
        CHECK(fabs(sum - 1) <= SUM_TOL, "%s: probabilities sum to %.9f", cases[k].what, sum);
        /* time the per-token call (informational; not a pass/fail bound) */
        const int reps = 20;
        double t0 = dm_time_sec();
        for (int i = 0; i < reps; i++) {
            memcpy(got, l, V_BIG * sizeof *got);
            dm_sampler_sample(s, got);
        }
        printf("%-34s kept %6d tokens, %.3f ms per sample (V = %d)\n", cases[k].what, kept,
               1e3 * (dm_time_sec() - t0) / reps, V_BIG);
        dm_sampler_free(s);
    }
    free(l);
    free(got);
    free(want);
}

static void test_params_check(void)
{
    const dm_logit_bias bad_tok[] = { { 6, 1.0f } }, bad_nan[] = { { 1, NAN } },
                        bad_inf[] = { { 1, INFINITY } }, ok_ban[] = { { 5, -INFINITY } };
    dm_sampler_params base = dm_sampler_defaults(), p;
    dm_err err;
    CHECK(dm_sampler_params_check(&base, 6, &err) == 0, "defaults refused: %s", err.msg);
#define BAD(field_stmt, what)                                                             \
    do {                                                                                  \
        p = base;                                                                         \
        field_stmt;                                                                       \
        err.msg[0] = 0;                                                                   \
        CHECK(dm_sampler_params_check(&p, 6, &err) == -1 && err.msg[0], "%s accepted", what); \
        dm_sampler *s_ = dm_sampler_new(&p, 6);                                           \
        CHECK(s_ == NULL, "dm_sampler_new accepted %s", what);                            \
        dm_sampler_free(s_);                                                              \
    } while (0)
    BAD(p.temperature = -0.1f, "negative temperature");
    BAD(p.temperature = NAN, "NaN temperature");
    BAD(p.top_k = -1, "negative top_k");
    BAD(p.top_p = 1.5f, "top_p 1.5");
    BAD(p.min_p = -0.1f, "min_p -0.1");
    BAD(p.repeat_penalty = 0, "repeat_penalty 0");
    BAD(p.presence_penalty = INFINITY, "infinite presence penalty");
    BAD(p.repeat_scope = (dm_rep_scope)7, "scope 7");
    BAD((p.repeat_scope = DM_REP_SCOPE_WINDOW, p.repeat_last_n = 1 << 30), "a 2^30 window");
    BAD((p.bias = bad_tok, p.n_bias = 1), "bias token 6 of 6");
    BAD((p.bias = bad_nan, p.n_bias = 1), "NaN bias");
    BAD((p.bias = bad_inf, p.n_bias = 1), "+inf bias");
    BAD(p.n_bias = 2, "bias count without a list");
#undef BAD
    p = base;
    p.bias = ok_ban;
    p.n_bias = 1;
    CHECK(dm_sampler_params_check(&p, 6, &err) == 0, "-inf ban refused: %s", err.msg);
    CHECK(dm_sampler_params_check(&base, 0, &err) == -1, "vocabulary 0 accepted");
    /* the bias list is copied: changing the caller's array later has no effect */
    dm_logit_bias mine[] = { { 0, -INFINITY } };
    p.bias = mine;
    p.temperature = 0;
    dm_sampler *s = dm_sampler_new(&p, 2);
    mine[0].token = 1;
    float l[2] = { 5.0f, 1.0f };
    CHECK(s && dm_sampler_sample(s, l) == 1, "bias list was not copied");
    dm_sampler_free(s);
}

int main(void)
{
    test_reproducible();
    test_chi_square();
    test_big_vocab();
    test_params_check();
    return check_exit("test_sampler_draw");
}
