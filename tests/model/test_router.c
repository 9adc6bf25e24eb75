/* test_router — MoE routing (src/model/router.c) against a float64
 * reference written here from arch.md §4.2, over every scoring function,
 * top-k method, group setting and normalization, plus a hand-computed case:
 * the correction bias must change which experts are chosen but never the
 * gate values, which come from the unbiased scores. */
#include "model/forward_internal.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GATE_TOL 1e-6   /* relative: f32 sigmoid/softmax vs float64 */


/* Indices of the k largest of v[n] by (value desc, index asc). */
static void ref_topk(const double *v, int n, int k, int *out)
{
    bool *taken = calloc((size_t)n, 1);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!taken[i] && (best < 0 || v[i] > v[best]))
                best = i;
        taken[best] = true;
        out[j] = best;
    }
    free(taken);
}

static void ref_route(const dm_router_params *p, const float *logits, const float *bias, int *sel, double *gates)
{
    const int E = p->E;
    double s[256], b[256];
    if (p->scoring == DM_SCORING_SIGMOID) {
        for (int e = 0; e < E; e++)
            s[e] = 1.0 / (1.0 + exp(-(double)logits[e]));
    } else {
        double mx = -INFINITY, sum = 0;
        for (int e = 0; e < E; e++)
            mx = fmax(mx, logits[e]);
        for (int e = 0; e < E; e++)
            sum += (s[e] = exp((double)logits[e] - mx));
        for (int e = 0; e < E; e++)
            s[e] /= sum;
    }
    for (int e = 0; e < E; e++)
        b[e] = s[e] + (bias ? bias[e] : 0.0);
    if (p->n_group > 1 && p->method != DM_TOPK_GREEDY) {
        int per = E / p->n_group, keep[64];
        double gs[64];
        for (int g = 0; g < p->n_group; g++) {
            int two[2];
            ref_topk(b + g * per, per, 2, two);
            gs[g] = p->method == DM_TOPK_NOAUX_TC ? b[g * per + two[0]] + b[g * per + two[1]] : b[g * per + two[0]];
        }
        ref_topk(gs, p->n_group, p->topk_group, keep);
        for (int g = 0; g < p->n_group; g++) {
            bool kept = false;
            for (int i = 0; i < p->topk_group; i++)
                kept |= keep[i] == g;
            if (!kept)
                for (int j = 0; j < per; j++)
                    b[g * per + j] = -INFINITY;
        }
    }
    ref_topk(b, E, p->K, sel);
    double sum = 0;
    for (int k = 0; k < p->K; k++)
        sum += gates[k] = s[sel[k]];
    for (int k = 0; k < p->K; k++)
        gates[k] = (p->norm_topk_prob ? gates[k] / (sum + 1e-20) : gates[k]) * p->scaling;
}

static void compare(const dm_router_params *p, const float *logits, const float *bias, const char *what)
{
    float scores[256], gates[64], tmp[256 + 64];
    int sel[64], rsel[64];
    double rg[64];
    dm_route_token(p, logits, bias, scores, sel, gates, tmp);
    ref_route(p, logits, bias, rsel, rg);
    /* the selection is a set; compare sorted by expert id */
    for (int k = 0; k < p->K; k++) {
        int j = 0;
        while (j < p->K && rsel[j] != sel[k])
            j++;
        CHECK(j < p->K, "%s: expert %d selected but not by the reference", what, sel[k]);
        if (j < p->K)
            CHECK(fabs(gates[k] - rg[j]) <= GATE_TOL * fmax(1.0, fabs(rg[j])), "%s: gate of expert %d: %g vs %g",
                  what, sel[k], gates[k], rg[j]);
    }
}

static void test_random(void)
{
    dm_rng r;
    dm_rng_seed(&r, 42);
    const dm_scoring scorings[] = { DM_SCORING_SIGMOID, DM_SCORING_SOFTMAX };
    const dm_topk_method methods[] = { DM_TOPK_NOAUX_TC, DM_TOPK_GROUP_LIMITED_GREEDY, DM_TOPK_GREEDY };
    for (int si = 0; si < 2; si++)
        for (int mi = 0; mi < 3; mi++)
            for (int norm = 0; norm < 2; norm++)
                for (int trial = 0; trial < 200; trial++) {
                    dm_router_params p = { .E = 64, .K = 6, .n_group = 8, .topk_group = 3,
                                           .scoring = scorings[si], .method = methods[mi],
                                           .norm_topk_prob = norm, .scaling = 2.5f };
                    if (trial % 3 == 0)
                        p.n_group = p.topk_group = 1;
                    float logits[64], bias[64];
                    for (int e = 0; e < p.E; e++) {
                        logits[e] = (float)(4 * dm_rng_uniform(&r) - 2);
                        bias[e] = (float)(0.2 * dm_rng_uniform(&r) - 0.1);
                    }
                    char what[96];
                    snprintf(what, sizeof what, "scoring %d method %d norm %d trial %d", si, mi, norm, trial);
                    compare(&p, logits, trial % 2 ? bias : NULL, what);
                }
}

/* Hand case: 4 experts, top-2, sigmoid. Logits 0 give score 0.5 for all; the
 * bias makes experts 2 and 3 win; gates stay 0.5/(0.5+0.5)·2 = 1 each. */
static void test_bias_selects_only(void)
{
    dm_router_params p = { .E = 4, .K = 2, .n_group = 1, .topk_group = 1, .scoring = DM_SCORING_SIGMOID,
                           .method = DM_TOPK_NOAUX_TC, .norm_topk_prob = true, .scaling = 2.0f };
    float logits[4] = { 0, 0, 0, 0 }, bias[4] = { 0, 0.01f, 0.3f, 0.2f }, scores[4], gates[2], tmp[8];
    int sel[2];
    dm_route_token(&p, logits, bias, scores, sel, gates, tmp);
    CHECK(sel[0] == 2 && sel[1] == 3, "bias decides the selection: got %d %d", sel[0], sel[1]);
    CHECK(fabsf(gates[0] - 1.0f) < 1e-6f && fabsf(gates[1] - 1.0f) < 1e-6f, "gates from unbiased scores: %g %g",
          gates[0], gates[1]);
    /* ties without bias: the lower expert id wins */
    dm_route_token(&p, logits, NULL, scores, sel, gates, tmp);
    CHECK(sel[0] == 0 && sel[1] == 1, "ties go to the lower id: got %d %d", sel[0], sel[1]);
}

int main(void)
{
    test_bias_selects_only();
    test_random();
    return check_finish("test_router");
}
