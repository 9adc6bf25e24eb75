/* sample_check — shared helpers for the sample stage's tests: a failure
 * counter, a CHECK that prints what failed, and a comparison of a
 * distribution from dm_sampler_probs with a float64 one computed in the
 * test. Header-only; each test_*.c is its own program. */
#ifndef DM_TEST_SAMPLE_CHECK_H
#define DM_TEST_SAMPLE_CHECK_H

#include "sample/sample.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_fail __attribute__((unused));

#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            g_fail++;                                                      \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

/* got[i] (float) against want[i] (double): exact zeros where want is 0
 * (removed tokens must have probability 0, not merely a small one), |diff|
 * <= tol elsewhere. Prints every mismatch. */
static inline void check_dist(const char *what, const float *got, const double *want, int n, double tol)
{
    for (int i = 0; i < n; i++) {
        bool bad = want[i] == 0 ? got[i] != 0 : !(fabs(got[i] - want[i]) <= tol);
        CHECK(!bad, "%s: token %d: p = %.9g, want %.9g (diff %.3g, tol %.1g)", what, i,
              (double)got[i], want[i], fabs(got[i] - want[i]), tol);
    }
}

/* want[i] = softmax(l / T) over the tokens with keep[i] (all when keep is
 * NULL), 0 for the rest; l is float64 here, computed by the test. */
static inline void softmax_d(const double *l, const bool *keep, int n, double T, double *want)
{
    double mx = -INFINITY, sum = 0;
    for (int i = 0; i < n; i++)
        if ((!keep || keep[i]) && l[i] > mx)
            mx = l[i];
    for (int i = 0; i < n; i++) {
        want[i] = (!keep || keep[i]) ? exp((l[i] - mx) / T) : 0;
        sum += want[i];
    }
    for (int i = 0; i < n; i++)
        want[i] /= sum;
}

/* ---- a float64 reference of the whole pipeline ---------------------------
 * Written from the semantics in sample.h, independently of sampler.c: it
 * marks the repetition set from the raw sequence, applies min-p in the
 * probability domain (q >= min_p * q_max), and fully sorts with qsort. */


#define REF_TOP_P_SLACK 1e-6   /* the slack sample.h documents for top-p */

typedef struct ref_seq {
    const int32_t *tok;        /* [n] the sequence, prompt first */
    const bool *is_prompt;     /* [n] */
    int n;
} ref_seq;

static const double *g_ref_l __attribute__((unused));   /* logits the qsort comparator reads */

static inline int ref_cmp(const void *a, const void *b)
{
    int i = *(const int *)a, j = *(const int *)b;
    if (g_ref_l[i] != g_ref_l[j])
        return g_ref_l[i] > g_ref_l[j] ? -1 : 1;
    return i < j ? -1 : 1;
}

/* Step 1 in float64: repetition penalty over the distinct tokens in scope,
 * presence/frequency over output counts, bias. l[V] in, modified. */
static inline void ref_penalise(const dm_sampler_params *p, const ref_seq *h, int V, double *l)
{
    bool *in = calloc((size_t)V, 1);
    int *cnt = calloc((size_t)V, sizeof *cnt);
    int first = 0;
    if (p->repeat_scope == DM_REP_SCOPE_WINDOW && p->repeat_last_n >= 0)
        first = h->n - p->repeat_last_n < 0 ? 0 : h->n - p->repeat_last_n;
    for (int i = 0; i < h->n; i++) {
        bool scoped = p->repeat_scope == DM_REP_SCOPE_OUTPUT ? !h->is_prompt[i] : i >= first;
        if (p->repeat_scope == DM_REP_SCOPE_WINDOW && p->repeat_last_n == 0)
            scoped = false;
        if (scoped)
            in[h->tok[i]] = true;
        if (!h->is_prompt[i])
            cnt[h->tok[i]]++;
    }
    for (int t = 0; t < V; t++) {
        if (in[t])
            l[t] = l[t] > 0 ? l[t] / p->repeat_penalty : l[t] * p->repeat_penalty;
        if (cnt[t])
            l[t] -= p->frequency_penalty * cnt[t] + p->presence_penalty;
    }
    for (int i = 0; i < p->n_bias; i++)
        l[p->bias[i].token] += p->bias[i].bias;
    free(in);
    free(cnt);
}

/* want[V]: the distribution the sampler should draw from, in float64. */
static inline void ref_probs(const dm_sampler_params *p, const ref_seq *h, const float *logits, int V,
                      double *want)
{
    double *l = malloc((size_t)V * sizeof *l);
    int *idx = malloc((size_t)V * sizeof *idx);
    for (int i = 0; i < V; i++)
        l[i] = logits[i];
    ref_penalise(p, h, V, l);
    for (int i = 0; i < V; i++)
        idx[i] = i;
    g_ref_l = l;
    qsort(idx, (size_t)V, sizeof *idx, ref_cmp);   /* best first, ties lower id */
    memset(want, 0, (size_t)V * sizeof *want);
    if (p->temperature == 0) {
        want[idx[0]] = 1;
    } else {
        /* tempered distribution over the finite logits */
        double sum = 0;
        for (int i = 0; i < V; i++)
            sum += want[i] = exp((l[i] - l[idx[0]]) / p->temperature);
        double qmax = want[idx[0]] / sum;
        int n = 0;   /* kept: idx[0..n), in sorted order */
        while (n < V && want[idx[n]] / sum >= p->min_p * qmax && want[idx[n]] > 0)
            n++;
        if (p->top_k > 0 && n > p->top_k)
            n = p->top_k;
        if (p->top_p < 1) {
            double mass = 0, cum = 0;
            for (int i = 0; i < n; i++)
                mass += want[idx[i]];
            int m = 0;
            while (m < n && cum < (p->top_p - REF_TOP_P_SLACK) * mass)
                cum += want[idx[m++]];
            n = m > 0 ? m : 1;
        }
        double kept = 0;
        for (int i = 0; i < n; i++)
            kept += want[idx[i]];
        double *w = malloc((size_t)V * sizeof *w);
        memcpy(w, want, (size_t)V * sizeof *w);
        memset(want, 0, (size_t)V * sizeof *want);
        for (int i = 0; i < n; i++)
            want[idx[i]] = w[idx[i]] / kept;
        free(w);
    }
    free(l);
    free(idx);
}

static inline int check_exit(const char *name)
{
    if (g_fail)
        fprintf(stderr, "%s: %d check(s) failed\n", name, g_fail);
    else
        printf("%s: all checks passed\n", name);
    return g_fail ? 1 : 0;
}

#endif
