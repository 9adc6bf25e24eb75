/* test_sampler_transforms — each sampler transform on a small vocabulary
 * against distributions written out by hand in this file (logits after the
 * transform, then a float64 softmax), and the whole chain in its documented
 * order against a hand-derived keep set and the float64 reference in
 * sample_check.h. Checks go through dm_sampler_probs, which returns the
 * distribution the draw uses. */
#include "sample/sample_check.h"

#include <stdlib.h>

/* dm_sampler_probs returns floats computed from float logits: ~1e-7
 * relative error from rounding the penalised logits, 6e-8 from the float
 * result. */
#define PROB_TOL 1e-6

#define V6 6
static const float L6[V6] = { 2.0f, -1.0f, 0.0f, 1.0f, 0.5f, -2.0f };

/* The sampler's distribution for logits[V] after accepting prompt[] then
 * out[]; false (and a failure) when the parameters were refused. */
static bool probs_after(const dm_sampler_params *p, const float *logits, int V,
                        const int32_t *prompt, int np, const int32_t *out, int no, float *probs)
{
    dm_sampler *s = dm_sampler_new(p, V);
    CHECK(s != NULL, "dm_sampler_new refused valid parameters");
    if (!s)
        return false;
    for (int i = 0; i < np; i++)
        dm_sampler_accept(s, prompt[i], true);
    for (int i = 0; i < no; i++)
        dm_sampler_accept(s, out[i], false);
    dm_sampler_probs(s, logits, probs);
    dm_sampler_free(s);
    return true;
}

/* Runs probs_after and compares with softmax(want_l / T) over keep. */
static void expect(const char *what, const dm_sampler_params *p, const float *logits, int V,
                   const int32_t *prompt, int np, const int32_t *out, int no,
                   const double *want_l, const bool *keep)
{
    float got[16];
    double want[16];
    DM_ASSERT(V <= 16);
    if (!probs_after(p, logits, V, prompt, np, out, no, got))
        return;
    softmax_d(want_l, keep, V, p->temperature > 0 ? p->temperature : 1, want);
    check_dist(what, got, want, V, PROB_TOL);
}

static void test_repetition_scopes(void)
{
    dm_sampler_params p = dm_sampler_defaults();
    p.repeat_penalty = 2.0f;
    /* ALL: prompt + output; token 0 seen three times is divided by r once;
     * -1 -> -2; the zero logit of token 2 stays 0. */
    const int32_t pr1[] = { 0, 1, 2, 0, 0 }, out1[] = { 1, 1 };
    const double w_all[V6] = { 1.0, -2.0, 0.0, 1.0, 0.5, -2.0 };
    p.repeat_scope = DM_REP_SCOPE_ALL;
    expect("rep all", &p, L6, V6, pr1, 5, out1, 2, w_all, NULL);

    /* OUTPUT: prompt tokens 0, 2, 3 untouched; 1 (twice) and 4 penalised. */
    const int32_t pr2[] = { 0, 2, 3 }, out2[] = { 1, 1, 4 };
    const double w_out[V6] = { 2.0, -2.0, 0.0, 1.0, 0.25, -2.0 };
    p.repeat_scope = DM_REP_SCOPE_OUTPUT;
    expect("rep output", &p, L6, V6, pr2, 3, out2, 3, w_out, NULL);

    /* WINDOW 3 over [1 0 3 0 | 0]: the last three are 3 0 0, so 0 (twice in
     * the window) and 3 are penalised, 1 has left the window. */
    const int32_t pr3[] = { 1, 0, 3, 0 }, out3[] = { 0 };
    const double w_win[V6] = { 1.0, -1.0, 0.0, 0.5, 0.5, -2.0 };
    p.repeat_scope = DM_REP_SCOPE_WINDOW;
    p.repeat_last_n = 3;
    expect("rep window 3", &p, L6, V6, pr3, 4, out3, 1, w_win, NULL);
    /* repeat_last_n < 0: the whole history; 0: nothing. */
    const double w_whole[V6] = { 1.0, -2.0, 0.0, 0.5, 0.5, -2.0 };
    const double w_none[V6] = { 2.0, -1.0, 0.0, 1.0, 0.5, -2.0 };
    p.repeat_last_n = -1;
    expect("rep window -1", &p, L6, V6, pr3, 4, out3, 1, w_whole, NULL);
    p.repeat_last_n = 0;
    expect("rep window 0", &p, L6, V6, pr3, 4, out3, 1, w_none, NULL);
}

/* The window slides token by token: after every accept the penalised set
 * must be exactly the distinct tokens among the last W (naive recount). */
static void test_window_slides(void)
{
    enum { W = 4, N = 300 };
    dm_sampler_params p = dm_sampler_defaults();
    p.repeat_penalty = 2.0f;
    p.repeat_scope = DM_REP_SCOPE_WINDOW;
    p.repeat_last_n = W;
    float ones[V6] = { 1, 1, 1, 1, 1, 1 }, got[V6];
    int32_t seq[N];
    dm_rng r;
    dm_rng_seed(&r, 99);
    dm_sampler *s = dm_sampler_new(&p, V6);
    for (int i = 0; i < N && s; i++) {
        seq[i] = (int32_t)(dm_rng_next(&r) % V6);
        dm_sampler_accept(s, seq[i], dm_rng_next(&r) & 1);
        double l[V6] = { 1, 1, 1, 1, 1, 1 }, want[V6];
        for (int j = i + 1 - W < 0 ? 0 : i + 1 - W; j <= i; j++)
            l[seq[j]] = 0.5;
        softmax_d(l, NULL, V6, 1, want);
        dm_sampler_probs(s, ones, got);
        char what[64];
        snprintf(what, sizeof what, "window slide step %d", i);
        check_dist(what, got, want, V6, PROB_TOL);
    }
    dm_sampler_free(s);
}

static void test_presence_frequency(void)
{
    dm_sampler_params p = dm_sampler_defaults();
    p.frequency_penalty = 0.5f;
    p.presence_penalty = 0.25f;
    /* Output counts: 3 x3, 1 x1; token 0 appears only in the prompt. */
    const int32_t pr[] = { 0, 0 }, out[] = { 3, 3, 3, 1 };
    const double w[V6] = { 2.0, -1.0 - 0.5 - 0.25, 0.0, 1.0 - 1.5 - 0.25, 0.5, -2.0 };
    expect("presence/frequency", &p, L6, V6, pr, 2, out, 4, w, NULL);
    /* With the repetition penalty first (scope ALL, r = 2): 0 -> 1,
     * 1 -> -2 - 0.75, 3 -> 0.5 - 1.75. */
    p.repeat_penalty = 2.0f;
    const double w2[V6] = { 1.0, -2.0 - 0.75, 0.0, 0.5 - 1.75, 0.5, -2.0 };
    expect("repetition then presence/frequency", &p, L6, V6, pr, 2, out, 4, w2, NULL);
}

static void test_bias(void)
{
    dm_sampler_params p = dm_sampler_defaults();
    /* token 2 listed twice (both added), token 4 banned */
    const dm_logit_bias b[] = { { 2, 1.5f }, { 4, -INFINITY }, { 2, 0.5f } };
    p.bias = b;
    p.n_bias = 3;
    const double w[V6] = { 2.0, -1.0, 2.0, 1.0, 0.0, -2.0 };
    const bool keep[V6] = { 1, 1, 1, 1, 0, 1 };
    expect("bias and ban", &p, L6, V6, NULL, 0, NULL, 0, w, keep);
    /* Bias comes after the repetition penalty: (0 / 2) + 1.5, not (0 + 1.5) / 2. */
    const dm_logit_bias b2[] = { { 2, 1.5f } };
    p.bias = b2;
    p.n_bias = 1;
    p.repeat_penalty = 2.0f;
    const int32_t pr[] = { 2 };
    const double w2[V6] = { 2.0, -1.0, 1.5, 1.0, 0.5, -2.0 };
    expect("bias after penalty", &p, L6, V6, pr, 1, NULL, 0, w2, NULL);
}

static void test_temperature(void)
{
    static const float T[] = { 0.5f, 2.0f, 1.0f };
    for (int k = 0; k < 3; k++) {
        dm_sampler_params p = dm_sampler_defaults();
        p.temperature = T[k];
        double w[V6];
        for (int i = 0; i < V6; i++)
            w[i] = L6[i];   /* softmax_d divides by T */
        char what[48];
        snprintf(what, sizeof what, "temperature %g", (double)T[k]);
        expect(what, &p, L6, V6, NULL, 0, NULL, 0, w, NULL);
    }
}

/* min-p is relative to the max of the TEMPERED distribution. With min_p
 * 0.4 (ln 0.4 = -0.916) and logit gaps to the max of 0 -3 -2 -1 -1.5 -4:
 * T = 1 keeps only token 0; T = 2 halves the gaps and keeps 0, 3, 4. */
static void test_min_p(void)
{
    double w[V6];
    for (int i = 0; i < V6; i++)
        w[i] = L6[i];
    dm_sampler_params p = dm_sampler_defaults();
    p.min_p = 0.4f;
    const bool keep1[V6] = { 1, 0, 0, 0, 0, 0 };
    expect("min-p 0.4 T 1", &p, L6, V6, NULL, 0, NULL, 0, w, keep1);
    p.temperature = 2.0f;
    const bool keep2[V6] = { 1, 0, 0, 1, 1, 0 };
    expect("min-p 0.4 T 2", &p, L6, V6, NULL, 0, NULL, 0, w, keep2);
    /* min_p = 1 keeps exactly the tokens tied at the max (p == 1 * p_max). */
    const float tie[4] = { 1.0f, 1.0f, 0.0f, -1.0f };
    const double wt[4] = { 1.0, 1.0, 0.0, -1.0 };
    const bool keept[4] = { 1, 1, 0, 0 };
    p.min_p = 1.0f;
    p.temperature = 1.0f;
    expect("min-p 1 keeps ties at max", &p, tie, 4, NULL, 0, NULL, 0, wt, keept);
}

static void test_top_k(void)
{
    double w[V6];
    for (int i = 0; i < V6; i++)
        w[i] = L6[i];
    dm_sampler_params p = dm_sampler_defaults();
    p.top_k = 2;
    const bool keep2[V6] = { 1, 0, 0, 1, 0, 0 };
    expect("top-k 2", &p, L6, V6, NULL, 0, NULL, 0, w, keep2);
    p.top_k = 1;
    const bool keep1[V6] = { 1, 0, 0, 0, 0, 0 };
    expect("top-k 1", &p, L6, V6, NULL, 0, NULL, 0, w, keep1);
    p.top_k = 6;
    expect("top-k = V", &p, L6, V6, NULL, 0, NULL, 0, w, NULL);
    p.top_k = 100;
    expect("top-k > V", &p, L6, V6, NULL, 0, NULL, 0, w, NULL);
    /* A tie at the k-th place goes to the lower id: exactly k are kept. */
    const float tie[4] = { 1.0f, 3.0f, 1.0f, 1.0f };
    const double wt[4] = { 1.0, 3.0, 1.0, 1.0 };
    const bool keept[4] = { 1, 1, 0, 0 };
    p.top_k = 2;
    expect("top-k tie at boundary", &p, tie, 4, NULL, 0, NULL, 0, wt, keept);
}

/* Probabilities 1/2 1/4 1/8 1/8 from logits ln 4, ln 2, 0, 0. */
static void test_top_p(void)
{
    const float lp[4] = { logf(4), logf(2), 0.0f, 0.0f };
    const double wl[4] = { log(4), log(2), 0.0, 0.0 };
    static const struct {
        float top_p;
        bool keep[4];
        const char *what;
    } cases[] = {
        { 0.75f, { 1, 1, 0, 0 }, "top-p 0.75: mass tie 1/2 + 1/4" },
        { 0.875f, { 1, 1, 1, 0 }, "top-p 0.875: mass tie, 1/8 tie broken to lower id" },
        { 0.74f, { 1, 1, 0, 0 }, "top-p 0.74" },
        { 0.76f, { 1, 1, 1, 0 }, "top-p 0.76" },
        { 0.5f, { 1, 0, 0, 0 }, "top-p 0.5: top token alone is a tie" },
        { 0.51f, { 1, 1, 0, 0 }, "top-p 0.51" },
        { 1e-9f, { 1, 0, 0, 0 }, "top-p tiny keeps the top token" },
        { 0.0f, { 1, 0, 0, 0 }, "top-p 0 keeps the top token" },
        { 1.0f, { 1, 1, 1, 1 }, "top-p 1 is off" },
    };
    dm_sampler_params p = dm_sampler_defaults();
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        p.top_p = cases[k].top_p;
        expect(cases[k].what, &p, lp, 4, NULL, 0, NULL, 0, wl, cases[k].keep);
    }
    /* Equal logits: each 1/4 exactly; top_p 0.5 keeps the two lowest ids. */
    const float eq[4] = { 0, 0, 0, 0 };
    const double weq[4] = { 0, 0, 0, 0 };
    const bool keq[4] = { 1, 1, 0, 0 };
    p.top_p = 0.5f;
    expect("top-p 0.5 on four equal tokens", &p, eq, 4, NULL, 0, NULL, 0, weq, keq);
    /* 7/8 and 1/8 from logits ln 7, 0: float(ln 7) is 1.3e-8 below ln 7, so
     * without the documented slack the top token's mass would fall just
     * short of 0.875 and a second token would be kept. */
    const float l7[2] = { logf(7), 0.0f };
    const double w7[2] = { log(7), 0.0 };
    const bool k7[2] = { 1, 0 };
    p.top_p = 0.875f;
    expect("top-p 0.875 on 7/8, 1/8 (mass tie under float rounding)", &p, l7, 2, NULL, 0, NULL, 0, w7, k7);
    /* top_p 1 keeps a token of probability ~1e-11. */
    const float tiny[2] = { 0.0f, -25.0f };
    const double wtiny[2] = { 0.0, -25.0 };
    p.top_p = 1.0f;
    expect("top-p 1 keeps a 1e-11 token", &p, tiny, 2, NULL, 0, NULL, 0, wtiny, NULL);
    /* top-p works on the tempered distribution: T = 2 gives weights
     * 2, sqrt 2, 1, 1 (0.369 0.261 0.185 0.185), so 0.7 needs three. */
    p.temperature = 2.0f;
    p.top_p = 0.7f;
    const bool k3[4] = { 1, 1, 1, 0 };
    expect("top-p 0.7 at T 2", &p, lp, 4, NULL, 0, NULL, 0, wl, k3);
}

/* The whole chain, in the documented order, on 8 tokens:
 *   logits       3.0  2.5  2.0  1.0  0.0 -0.5 -1.0  1.5
 *   history      prompt 1 4, output 0 0 5
 *   rep 1.5 ALL  {0,1,4,5}: 2.0 1.667 . . 0 -0.75 . .
 *   freq .25, presence .5 (output counts 0:2, 5:1): l0 1.0, l5 -1.5
 *   bias 7 +1, 6 banned: l7 2.5, l6 -inf
 *   T 1.5, min-p 0.3: keep l >= 2.5 + 1.5 ln 0.3 = 0.694: 0 1 2 3 7
 *   top-k 4: 7 2 1, then 0 over 3 (tie at 1.0, lower id)
 *   top-p 0.8: tempered 0.376 0.270 0.216 0.138 -> 7 2 1 (0.862). */
static void test_chain(void)
{
    enum { V = 8 };
    const float l8[V] = { 3.0f, 2.5f, 2.0f, 1.0f, 0.0f, -0.5f, -1.0f, 1.5f };
    const dm_logit_bias b[] = { { 7, 1.0f }, { 6, -INFINITY } };
    dm_sampler_params p = dm_sampler_defaults();
    p.repeat_penalty = 1.5f;
    p.frequency_penalty = 0.25f;
    p.presence_penalty = 0.5f;
    p.bias = b;
    p.n_bias = 2;
    p.temperature = 1.5f;
    p.min_p = 0.3f;
    p.top_k = 4;
    p.top_p = 0.8f;
    const int32_t pr[] = { 1, 4 }, out[] = { 0, 0, 5 };
    const double wl[V] = { 1.0, 2.5 / 1.5, 2.0, 1.0, 0.0, -1.5, -INFINITY, 2.5 };
    const bool keep[V] = { 0, 1, 1, 0, 0, 0, 0, 1 };
    expect("chain (hand)", &p, l8, V, pr, 2, out, 3, wl, keep);

    /* the same against the float64 reference pipeline */
    const int32_t seq[] = { 1, 4, 0, 0, 5 };
    const bool isp[] = { 1, 1, 0, 0, 0 };
    ref_seq h = { seq, isp, 5 };
    double want[V];
    float got[V];
    ref_probs(&p, &h, l8, V, want);
    if (probs_after(&p, l8, V, pr, 2, out, 3, got))
        check_dist("chain (reference)", got, want, V, PROB_TOL);
}

static void test_greedy(void)
{
    dm_sampler_params p = dm_sampler_defaults();
    p.temperature = 0;
    p.top_k = 3;    /* ignored by greedy */
    p.min_p = 0.5f;
    const double one0[V6] = { 1, 0, 0, 0, 0, 0 }, one3[V6] = { 0, 0, 0, 1, 0, 0 },
                 one4[V6] = { 0, 0, 0, 0, 1, 0 };
    float got[V6];
    if (probs_after(&p, L6, V6, NULL, 0, NULL, 0, got))
        check_dist("greedy one-hot", got, one0, V6, 0);
    /* ties go to the lowest id: bias token 2 up to 2.0 = token 0 */
    const dm_logit_bias up[] = { { 2, 2.0f } };
    p.bias = up;
    p.n_bias = 1;
    if (probs_after(&p, L6, V6, NULL, 0, NULL, 0, got))
        check_dist("greedy tie -> lowest id", got, one0, V6, 0);
    /* ban the max: the runner-up wins */
    const dm_logit_bias ban[] = { { 0, -INFINITY } };
    p.bias = ban;
    if (probs_after(&p, L6, V6, NULL, 0, NULL, 0, got))
        check_dist("greedy after ban", got, one3, V6, 0);
    /* greedy sees the penalties: r = 4 on prompt token 0 gives 0.5 < 1.0,
     * so token 3 wins; presence 2 on output 0 and 3 leaves 4 (0.5) on top. */
    p.bias = NULL;
    p.n_bias = 0;
    p.repeat_penalty = 4.0f;
    const int32_t pr[] = { 0 };
    if (probs_after(&p, L6, V6, pr, 1, NULL, 0, got))
        check_dist("greedy after repetition penalty", got, one3, V6, 0);
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 2.0f;
    const int32_t out[] = { 0, 3 };
    if (probs_after(&p, L6, V6, NULL, 0, out, 2, got))
        check_dist("greedy after presence penalty", got, one4, V6, 0);
    /* dm_sampler_sample agrees and returns -1 when every token is banned */
    dm_sampler_params q = dm_sampler_defaults();
    q.temperature = 0;
    dm_sampler *s = dm_sampler_new(&q, V6);
    float l[V6];
    memcpy(l, L6, sizeof l);
    CHECK(s && dm_sampler_sample(s, l) == 0, "greedy sample did not return token 0");
    dm_sampler_free(s);
    dm_logit_bias all[V6];
    for (int i = 0; i < V6; i++)
        all[i] = (dm_logit_bias){ i, -INFINITY };
    q.bias = all;
    q.n_bias = V6;
    q.temperature = 1;
    s = dm_sampler_new(&q, V6);
    memcpy(l, L6, sizeof l);
    CHECK(s && dm_sampler_sample(s, l) == -1, "all banned: sample should return -1");
    const double zeros[V6] = { 0 };
    if (s) {
        dm_sampler_probs(s, L6, got);
        check_dist("all banned: probs all zero", got, zeros, V6, 0);
    }
    dm_sampler_free(s);
}

int main(void)
{
    test_repetition_scopes();
    test_window_slides();
    test_presence_frequency();
    test_bias();
    test_temperature();
    test_min_p();
    test_top_k();
    test_top_p();
    test_chain();
    test_greedy();
    return check_exit("test_sampler_transforms");
}
