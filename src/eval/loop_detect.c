/* loop_detect — per-generation termination and degeneration metrics for
 * `demolish eval loops` (issue 5), and their aggregation overall and per
 * prompt source. Works on token ids only; no model, no text.
 *
 * Input: ids[n], the generated tokens WITHOUT the stop token, and how the
 * generation ended (hit_eos, hit_cap). Definitions (defaults in brackets,
 * every one a field of dm_loop_params):
 *
 *   loop_exact (criterion a, "attractor"): for a period p in 1..P [128], let
 *     cover(p) be the length of the longest suffix of ids with period p, i.e.
 *     the largest L <= n with ids[j] == ids[j-p] for every j in [n-L+p, n).
 *     The tail loops with period p when cover(p) >= R·p [R 3] and
 *     cover(p) >= C [C 64]: some block of p tokens is repeated back-to-back at
 *     least R times (the last copy may be partial) over at least C tokens.
 *     We report the smallest such p and its cover; n - cover is where the
 *     loop began. Consequences of the defaults: a period-1 loop needs 64
 *     equal tokens, period 2 needs 32 copies, period 22 or more needs 3
 *     copies, and periods above 128 (a loop of paragraphs) are left to
 *     criterion b, which sees them while two copies fit in W (p < ~255).
 *   loop_rep (criterion b, near-loops): over the last min(n, W) tokens
 *     [W 512], provided that is at least rep_min_len tokens [128],
 *     seq-rep-4 = 1 - distinct 4-grams / 4-grams exceeds rep4_max [0.5].
 *     This catches a block that comes back with small changes (a counter, a
 *     word swapped every few copies), which breaks the exact test.
 *   loop = loop_exact || loop_rep. It does not look at how the generation
 *     ended: a tail that repeated 64 times and then emitted EOS looped too.
 *   runaway = hit_cap && !hit_eos, reported separately; fail = loop || runaway
 *     is the "looped or failed to terminate" rate of the GLM-5.2-504B report.
 *   eos = hit_eos (natural end).
 *   Reasoning (only when the </think> id is given): think_closed = some
 *     </think> occurs; think_restarts = max(number of <think> after the first
 *     </think>, number of </think> - 1), so "<think>..</think><think>..</think>"
 *     counts one restart, as does a lone second </think>.
 *   distinct-4 = distinct 4-grams / 4-grams over the whole output (Li et al.
 *     2016's distinct-n per response; undefined below 4 tokens: such outputs
 *     are left out of the mean).
 *   length: median and p90 over generations, linear interpolation between
 *     ranks (numpy's default, as kl.c).
 *
 * Why these defaults: reap.md §7.1 "Our definition" (suffix with period p
 * repeated >= 3 times; seq-rep-4 over the last 512 tokens above ~0.5); C = 64
 * keeps short legitimate runs (indentation, "very very", table rules, closing
 * braces) out; all should be re-calibrated on the teacher's outputs. What
 * the defaults miss and flag on constructed sequences is measured in
 * tests/eval/test_loop_detect.c. */
#include "eval/eval.h"

#include <stdlib.h>
#include <string.h>

_Static_assert(DM_EVAL_MAX_GROUPS <= 127, "len_group is an int8_t");

void dm_loop_params_default(dm_loop_params *p)
{
    *p = (dm_loop_params){
        .max_period = 128, .min_repeats = 3, .min_cover = 64, .rep_window = 512, .rep_min_len = 128, .rep4_max = 0.5,
    };
}

int dm_loop_params_check(const dm_loop_params *p, dm_err *err)
{
    if (p->max_period < 1 || p->min_repeats < 2)
        return dm_errorf(err, "loop detector: max_period (%d) must be >= 1 and min_repeats (%d) >= 2", p->max_period,
                         p->min_repeats);
    if (p->min_cover < 4 || p->rep_min_len < 4 || p->rep_window < p->rep_min_len)
        return dm_errorf(err, "loop detector: min_cover (%d) and rep_min_len (%d) must be >= 4, rep_window (%d) >= rep_min_len",
                         p->min_cover, p->rep_min_len, p->rep_window);
    if (!(p->rep4_max > 0 && p->rep4_max < 1))
        return dm_errorf(err, "loop detector: rep4_max (%g) must be in (0, 1)", p->rep4_max);
    return 0;
}

/* ---- 4-grams ---- */

typedef struct gram4 {
    uint64_t hi, lo;            /* ids 0,1 and 2,3 as uint32 pairs: exact, no hashing */
} gram4;

static int cmp_gram4(const void *a, const void *b)
{
    const gram4 *x = a, *y = b;
    if (x->hi != y->hi)
        return x->hi < y->hi ? -1 : 1;
    return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Distinct 4-grams of ids[n] (n >= 4), using scratch[n - 3]. */
static int64_t count_distinct4(const int32_t *ids, int64_t n, gram4 *scratch)
{
    const int64_t m = n - 3;
    for (int64_t i = 0; i < m; i++) {
        const uint32_t *u = (const uint32_t *)(ids + i);
        scratch[i] = (gram4){((uint64_t)u[0] << 32) | u[1], ((uint64_t)u[2] << 32) | u[3]};
    }
    qsort(scratch, (size_t)m, sizeof *scratch, cmp_gram4);
    int64_t d = 1;
    for (int64_t i = 1; i < m; i++)
        d += cmp_gram4(&scratch[i - 1], &scratch[i]) != 0;
    return d;
}

/* ---- criterion a ---- */

/* Length of the longest suffix of ids[n] with period p (p < n), i.e. p plus
 * the number of trailing positions j with ids[j] == ids[j - p]. */
static int64_t periodic_cover(const int32_t *ids, int64_t n, int p)
{
    int64_t j = n - 1;
    while (j >= p && ids[j] == ids[j - p])
        j--;
    return (n - 1 - j) + p;
}

/* Smallest period satisfying criterion a; writes it and its cover. */
static void find_exact_loop(const int32_t *ids, int64_t n, const dm_loop_params *p, dm_gen_metrics *m)
{
    for (int per = 1; per <= p->max_period && per < n; per++) {
        const int64_t cover = periodic_cover(ids, n, per);
        if (cover >= (int64_t)p->min_repeats * per && cover >= p->min_cover) {
            m->loop_exact = true;
            m->period = per;
            m->cover = cover;
            return;
        }
    }
}

/* ---- reasoning markers ---- */

static void measure_think(const int32_t *ids, int64_t n, int32_t open, int32_t close, dm_gen_metrics *m)
{
    int64_t closes = 0, reopens = 0;
    for (int64_t i = 0; i < n; i++) {
        if (ids[i] == close)
            closes++;
        else if (ids[i] == open && closes > 0)
            reopens++;
    }
    m->think = true;
    m->think_closed = closes > 0;
    const int64_t r = reopens > closes - 1 ? reopens : closes - 1;
    m->think_restarts = r > 0 ? (int)(r < INT32_MAX ? r : INT32_MAX) : 0;
}

int dm_gen_measure(const int32_t *ids, int64_t n, bool hit_eos, bool hit_cap, int32_t think_open, int32_t think_close,
                   const dm_loop_params *p, dm_gen_metrics *m, dm_err *err)
{
    DM_ASSERT(n >= 0 && (ids || n == 0));
    memset(m, 0, sizeof *m);
    if (dm_loop_params_check(p, err))
        return -1;
    m->len = n;
    m->eos = hit_eos;
    m->runaway = hit_cap && !hit_eos;
    find_exact_loop(ids, n, p, m);
    if (n >= 4) {
        gram4 *scratch = dm_malloc((size_t)(n - 3) * sizeof *scratch);
        m->n4 = n - 3;
        m->distinct4 = count_distinct4(ids, n, scratch);
        const int64_t w = n < p->rep_window ? n : p->rep_window;
        const int64_t dw = w == n ? m->distinct4 : count_distinct4(ids + n - w, w, scratch);
        m->tail_rep4 = 1.0 - (double)dw / (double)(w - 3);
        m->loop_rep = w >= p->rep_min_len && m->tail_rep4 > p->rep4_max;
        free(scratch);
    }
    m->loop = m->loop_exact || m->loop_rep;
    if (think_close >= 0)
        measure_think(ids, n, think_open, think_close, m);
    return 0;
}

double dm_gen_distinct4(const dm_gen_metrics *m)
{
    return m->n4 > 0 ? (double)m->distinct4 / (double)m->n4 : 0.0;
}

/* ---- aggregation ---- */

double dm_loop_counts_d4_mean(const dm_loop_counts *c)
{
    return c->n_d4 > 0 ? c->d4_sum / (double)c->n_d4 : 0.0;
}

void dm_loop_agg_init(dm_loop_agg *a)
{
    memset(a, 0, sizeof *a);
}

static void counts_add(dm_loop_counts *c, const dm_gen_metrics *m)
{
    c->n++;
    c->loop += m->loop;
    c->loop_exact += m->loop_exact;
    c->loop_rep += m->loop_rep;
    c->runaway += m->runaway;
    c->loop_runaway += m->loop && m->runaway;
    c->fail += m->loop || m->runaway;
    c->eos += m->eos;
    c->n_think += m->think;
    c->think_closed += m->think && m->think_closed;
    c->think_restart += m->think && m->think_restarts > 0;
    if (m->n4 > 0) {
        c->n_d4++;
        c->d4_sum += dm_gen_distinct4(m);
    }
    c->tokens += m->len;
}

/* The group of source, created on first sight; -1 for none, -2 when full. */
static int agg_group(dm_loop_agg *a, const char *source, dm_err *err)
{
    if (!source || !source[0])
        return -1;
    for (int g = 0; g < a->n_groups; g++)
        if (!strcmp(a->group[g], source))
            return g;
    if (a->n_groups == DM_EVAL_MAX_GROUPS)
        return dm_errorf(err, "more than %d distinct prompt sources", DM_EVAL_MAX_GROUPS), -2;
    a->group[a->n_groups] = dm_strdup(source);
    return a->n_groups++;
}

int dm_loop_agg_add(dm_loop_agg *a, const char *source, const dm_gen_metrics *m, dm_err *err)
{
    const int g = agg_group(a, source, err);
    if (g == -2)
        return -1;
    if (a->n_len == a->cap_len) {
        a->cap_len = a->cap_len ? 2 * a->cap_len : 256;
        a->len = dm_realloc(a->len, (size_t)a->cap_len * sizeof *a->len);
        a->len_group = dm_realloc(a->len_group, (size_t)a->cap_len * sizeof *a->len_group);
    }
    a->len[a->n_len] = m->len;
    a->len_group[a->n_len++] = (int8_t)g;
    counts_add(&a->total, m);
    if (g >= 0)
        counts_add(&a->groups[g], m);
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of sorted[n] (n >= 1), linear interpolation between ranks. */
static double quantile_i64(const int64_t *sorted, int64_t n, double q)
{
    const double at = q * (double)(n - 1);
    const int64_t i = (int64_t)at;
    return i + 1 < n ? (double)sorted[i] + (at - (double)i) * (double)(sorted[i + 1] - sorted[i]) : (double)sorted[n - 1];
}

/* Median and p90 of the lengths in group g (-1: all generations). */
static void len_quantiles(const dm_loop_agg *a, int g, int64_t *scratch, dm_loop_counts *c)
{
    int64_t k = 0;
    for (int64_t i = 0; i < a->n_len; i++)
        if (g < 0 || a->len_group[i] == g)
            scratch[k++] = a->len[i];
    c->len_median = c->len_p90 = 0;
    if (k == 0)
        return;
    qsort(scratch, (size_t)k, sizeof *scratch, cmp_i64);
    c->len_median = quantile_i64(scratch, k, 0.5);
    c->len_p90 = quantile_i64(scratch, k, 0.9);
}

void dm_loop_agg_finish(dm_loop_agg *a)
{
    int64_t *scratch = dm_malloc((size_t)(a->n_len > 0 ? a->n_len : 1) * sizeof *scratch);
    len_quantiles(a, -1, scratch, &a->total);
    for (int g = 0; g < a->n_groups; g++)
        len_quantiles(a, g, scratch, &a->groups[g]);
    free(scratch);
}

void dm_loop_agg_free(dm_loop_agg *a)
{
    for (int g = 0; g < a->n_groups; g++)
        free(a->group[g]);
    free(a->len);
    free(a->len_group);
    memset(a, 0, sizeof *a);
}
