/* test_plan — expert plans (src/prune/plan.c) against hand-made calibration
 * stats and independent oracles:
 *   - criteria: dm_plan_scores equals each formula (reap = gnorm/count, 0 when
 *     never routed; frequency = count; ean = Σ‖f‖; soft-frequency = Σ s');
 *     random is in [0, 1), the same for a seed and different across seeds;
 *     kept sets for every K follow hand-derived rankings, ties broken by the
 *     higher count, then the lower id;
 *   - uniform: keep fraction (rounded to nearest) and count (clamped to E);
 *     --skip-mtp; score_kept;
 *   - per-group uniform (n_group > 1): the same count in every group, each
 *     group's best, rounding to whole groups, the router's floor;
 *   - non-uniform water-filling: the budget is met exactly, floors (top-k or
 *     --min) and caps (--max) hold, a layer with concentrated saliency gets
 *     fewer experts than a flat one, and on random stats the per-layer counts
 *     equal an oracle that merges every layer's normalized scores in one
 *     global float64 sort (the greedy rule's closed form) and the kept sets
 *     equal an O(E²) selection by (score, count, -id);
 *   - plan files: save -> load round trip (ids, counts, criterion, expert
 *     counts, provenance sidecar) and the published tool's format
 *     {"<layer>": {"kept": [...], "keep": k}} without our extra keys, checked
 *     against a model config. Comparisons are exact: the oracles do the same
 *     float64 operations in the same order, so no tolerance is needed. */
#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "prune/prune.h"

/* ---- hand-made stats ---- */

static void stats_make(dm_calib_stats *st, int L, int main_layers, const int *E, int top_k, int n_group,
                       int topk_group)
{
    memset(st, 0, sizeof *st);
    st->n_layers = L;
    st->main_layers = main_layers;
    st->top_k = top_k;
    st->n_group = n_group;
    st->topk_group = topk_group;
    snprintf(st->model_hash, sizeof st->model_hash, "test-model");
    snprintf(st->data_hash, sizeof st->data_hash, "test-data");
    snprintf(st->gate_mode, sizeof st->gate_mode, "model");
    st->n_experts = dm_calloc((size_t)L, sizeof(int));
    st->layer_off = dm_calloc((size_t)L, sizeof(size_t));
    for (int l = 0; l < L; l++) {
        st->n_experts[l] = E[l];
        st->layer_off[l] = st->n_rows;
        st->n_rows += (size_t)E[l];
    }
    dm_calib_source(st, "all");
}

static void set_acc(dm_calib_stats *st, int l, int e, double count, double gnorm, double norm, double soft)
{
    double *a = dm_calib_acc(st, 0, l, e);
    a[DM_ACC_COUNT] = count;
    a[DM_ACC_GNORM] = gnorm;
    a[DM_ACC_NORM] = norm;
    a[DM_ACC_SOFT] = soft;
    a[DM_ACC_GATE] = gnorm / 2;
}

static dm_plan_opts uniform_n(dm_criterion c, int keep_n)
{
    return (dm_plan_opts){ .criterion = c, .keep_n = keep_n };
}

/* kept[l] equals the ascending ids want[0..k). */
static void check_kept(const dm_plan *p, int l, const int *want, int k, const char *what)
{
    int sorted[64];
    memcpy(sorted, want, (size_t)k * sizeof(int));
    for (int i = 1; i < k; i++)   /* insertion sort: the test's own */
        for (int j = i; j > 0 && sorted[j - 1] > sorted[j]; j--) {
            int t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    CHECK(p->keep[l] == k, "%s: layer %d keeps %d, expected %d", what, l, p->keep[l], k);
    for (int i = 0; i < k && p->keep[l] == k; i++)
        CHECK(p->kept[l][i] == sorted[i], "%s: layer %d kept[%d] = %d, expected %d", what, l, i, p->kept[l][i],
              sorted[i]);
}

/* ---- criteria and ranking on one hand-made layer ---- */

/*            count gnorm norm soft    reap */
static const double HAND[8][4] = {
    { 10, 5.0, 20, 1.0 },   /* 0.5 */
    { 4, 4.0, 30, 3.0 },    /* 1.0 */
    { 0, 0.0, 0, 0.5 },     /* 0 (never routed) */
    { 8, 4.0, 10, 2.0 },    /* 0.5, fewer tokens than 0 and 4 */
    { 10, 5.0, 25, 2.5 },   /* 0.5, same count as 0: the lower id (0) first */
    { 2, 3.0, 40, 0.1 },    /* 1.5 */
    { 6, 1.2, 5, 4.0 },     /* 0.2 */
    { 1, 0.1, 1, 0.2 },     /* 0.1 */
};
/* best first, derived by hand from the table */
static const int ORDER[4][8] = {
    [DM_CRIT_REAP] = { 5, 1, 0, 4, 3, 6, 7, 2 },
    [DM_CRIT_FREQUENCY] = { 0, 4, 3, 6, 1, 5, 7, 2 },
    [DM_CRIT_EAN] = { 5, 1, 4, 0, 3, 6, 7, 2 },
    [DM_CRIT_SOFT_FREQUENCY] = { 6, 1, 4, 3, 0, 2, 7, 5 },
};

static void test_criteria(void)
{
    const int E[2] = { 0, 8 };
    dm_calib_stats st;
    stats_make(&st, 2, 2, E, 2, 1, 1);
    for (int e = 0; e < 8; e++)
        set_acc(&st, 1, e, HAND[e][0], HAND[e][1], HAND[e][2], HAND[e][3]);
    double s[8];
    dm_plan_scores(&st, 0, 1, DM_CRIT_REAP, 0, s);
    for (int e = 0; e < 8; e++) {
        double want = HAND[e][0] > 0 ? HAND[e][1] / HAND[e][0] : 0;
        CHECK(s[e] == want, "reap score of expert %d: %g, expected %g", e, s[e], want);
    }
    const int col[DM_CRIT_COUNT] = { [DM_CRIT_FREQUENCY] = 0, [DM_CRIT_EAN] = 2, [DM_CRIT_SOFT_FREQUENCY] = 3 };
    for (int c = DM_CRIT_FREQUENCY; c <= DM_CRIT_SOFT_FREQUENCY; c++) {
        dm_plan_scores(&st, 0, 1, (dm_criterion)c, 0, s);
        for (int e = 0; e < 8; e++)
            CHECK(s[e] == HAND[e][col[c]], "%s score of expert %d: %g, expected %g", dm_criterion_name(c), e, s[e],
                  HAND[e][col[c]]);
    }
    for (int c = 0; c < 4; c++)
        for (int k = 2; k <= 8; k++) {
            dm_plan p;
            dm_err err = { "" };
            dm_plan_opts o = uniform_n((dm_criterion)c, k);
            char what[64];
            snprintf(what, sizeof what, "%s keep %d", dm_criterion_name(c), k);
            if (dm_plan_make(&p, &st, &o, &err)) {
                CHECK(0, "%s: %s", what, err.msg);
                continue;
            }
            check_kept(&p, 1, ORDER[c], k, what);
            CHECK(p.keep[0] == 0, "%s: the dense layer is planned", what);
            CHECK(!strcmp(p.criterion, dm_criterion_name(c)), "%s: criterion '%s'", what, p.criterion);
            dm_plan_free(&p);
        }
    /* score_kept: share of the layer's REAP score the kept experts carry */
    dm_plan p;
    dm_err err = { "" };
    dm_plan_opts o = uniform_n(DM_CRIT_REAP, 2);
    if (dm_plan_make(&p, &st, &o, &err) == 0) {
        const double want = (1.5 + 1.0) / (0.5 + 1.0 + 0 + 0.5 + 0.5 + 1.5 + 0.2 + 0.1);
        CHECK(fabs(p.score_kept[1] - want) < 1e-15, "score_kept %.17g, expected %.17g", p.score_kept[1], want);
        dm_plan_free(&p);
    }
    /* criterion names round-trip; unknown names are refused */
    for (int c = 0; c < DM_CRIT_COUNT; c++)
        CHECK(dm_criterion_parse(dm_criterion_name(c)) == c, "criterion %d name round trip", c);
    CHECK(dm_criterion_parse("REAP") < 0 && dm_criterion_parse("") < 0, "bad criterion names accepted");
    dm_calib_stats_free(&st);
}

static void test_random(void)
{
    const int E[1] = { 64 };
    dm_calib_stats st;
    stats_make(&st, 1, 1, E, 4, 1, 1);
    double a[64], b[64], c[64];
    dm_plan_scores(&st, 0, 0, DM_CRIT_RANDOM, 42, a);
    dm_plan_scores(&st, 0, 0, DM_CRIT_RANDOM, 42, b);
    dm_plan_scores(&st, 0, 0, DM_CRIT_RANDOM, 43, c);
    int same = 0, differ = 0;
    for (int e = 0; e < 64; e++) {
        CHECK(a[e] >= 0 && a[e] < 1, "random score %g outside [0, 1)", a[e]);
        same += a[e] == b[e];
        differ += a[e] != c[e];
    }
    CHECK(same == 64, "random scores not reproducible for one seed (%d of 64 equal)", same);
    CHECK(differ >= 60, "random scores barely depend on the seed (%d of 64 differ)", differ);
    dm_plan p1, p2, p3;
    dm_err err = { "" };
    dm_plan_opts o = { .criterion = DM_CRIT_RANDOM, .seed = 7, .keep_n = 32 };
    int rc = dm_plan_make(&p1, &st, &o, &err) || dm_plan_make(&p2, &st, &o, &err);
    o.seed = 8;
    rc = rc || dm_plan_make(&p3, &st, &o, &err);
    CHECK(rc == 0, "random plans: %s", err.msg);
    if (rc == 0) {
        CHECK(!memcmp(p1.kept[0], p2.kept[0], 32 * sizeof(int)), "a random plan changes with the same seed");
        CHECK(memcmp(p1.kept[0], p3.kept[0], 32 * sizeof(int)) != 0, "a random plan ignores the seed");
        CHECK(strstr(p1.meta, "\"seed\":7") != NULL, "the seed is not in the provenance: %s", p1.meta);
        dm_plan_free(&p1);
        dm_plan_free(&p2);
        dm_plan_free(&p3);
    }
    dm_calib_stats_free(&st);
}

/* ---- uniform counts ---- */

static void test_uniform(void)
{
    const int E[3] = { 0, 10, 16 };   /* dense, MoE, MTP (main_layers = 2) */
    dm_calib_stats st;
    stats_make(&st, 3, 2, E, 2, 1, 1);
    for (int l = 1; l < 3; l++)
        for (int e = 0; e < E[l]; e++)
            set_acc(&st, l, e, 1 + e, 1 + e, 1, 1);
    const struct {
        double frac;
        int n;
        bool skip_mtp;
        int want1, want2;
    } cases[] = {
        { 0.7, 0, false, 7, 11 },    /* 11.2 -> 11 */
        { 0.75, 0, false, 8, 12 },   /* 7.5 -> 8 (half away from zero) */
        { 0, 12, false, 10, 12 },    /* a count above E keeps the whole layer */
        { 0.5, 0, true, 5, 0 },      /* --skip-mtp */
        { 0.5, 3, false, 3, 3 },     /* keep_n overrides the fraction */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dm_plan p;
        dm_err err = { "" };
        dm_plan_opts o = { .criterion = DM_CRIT_FREQUENCY, .keep_fraction = cases[i].frac, .keep_n = cases[i].n,
                           .skip_mtp = cases[i].skip_mtp };
        if (dm_plan_make(&p, &st, &o, &err)) {
            CHECK(0, "uniform case %zu: %s", i, err.msg);
            continue;
        }
        CHECK(p.keep[0] == 0 && p.keep[1] == cases[i].want1 && p.keep[2] == cases[i].want2,
              "uniform case %zu: keeps %d/%d/%d, expected 0/%d/%d", i, p.keep[0], p.keep[1], p.keep[2],
              cases[i].want1, cases[i].want2);
        for (int l = 1; l < 3; l++)   /* frequency = 1 + id: the highest ids stay */
            for (int j = 0; j < p.keep[l]; j++)
                CHECK(p.kept[l][j] == E[l] - p.keep[l] + j, "uniform case %zu: layer %d kept[%d] = %d", i, l, j,
                      p.kept[l][j]);
        dm_plan_free(&p);
    }
    dm_plan p;
    dm_err err = { "" };
    dm_plan_opts o = uniform_n(DM_CRIT_REAP, 1);
    CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "fewer than the router needs"),
          "keeping 1 < top-2 accepted (%s)", err.msg);
    o.source = "nosuch";
    o.keep_n = 4;
    CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "nosuch"), "unknown source: %s", err.msg);
    dm_calib_stats_free(&st);
}

/* ---- per-group uniform ---- */

static void test_groups(void)
{
    const int E[1] = { 16 };   /* 4 groups of 4, topk_group 2, top-4: floor 2 per group */
    const double count[16] = { 100, 99, 98, 97, 1, 5, 3, 2, 10, 30, 20, 40, 7, 6, 9, 8 };
    dm_calib_stats st;
    stats_make(&st, 1, 1, E, 4, 4, 2);
    for (int e = 0; e < 16; e++)
        set_acc(&st, 0, e, count[e], 0, 0, 0);
    CHECK(dm_plan_floor(&st) == 8, "floor with 4 groups, topk_group 2, top-4: %d, expected 8", dm_plan_floor(&st));
    dm_plan p;
    dm_err err = { "" };
    dm_plan_opts o = uniform_n(DM_CRIT_FREQUENCY, 8);
    if (dm_plan_make(&p, &st, &o, &err) == 0) {   /* each group's best two, not the global top 8 */
        const int want[8] = { 0, 1, 5, 6, 9, 11, 14, 15 };
        check_kept(&p, 0, want, 8, "per-group keep 8");
        dm_plan_free(&p);
    } else {
        CHECK(0, "per-group keep 8: %s", err.msg);
    }
    o = (dm_plan_opts){ .criterion = DM_CRIT_FREQUENCY, .keep_fraction = 0.6 };   /* 9.6 -> 10 -> 3 per group */
    if (dm_plan_make(&p, &st, &o, &err) == 0) {
        const int want[12] = { 0, 1, 2, 5, 6, 7, 9, 10, 11, 12, 14, 15 };
        check_kept(&p, 0, want, 12, "per-group keep 0.6");
        dm_plan_free(&p);
    } else {
        CHECK(0, "per-group keep 0.6: %s", err.msg);
    }
    o = uniform_n(DM_CRIT_FREQUENCY, 4);   /* one per group: below the floor */
    CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "fewer than the router needs (8"),
          "keep 4 of 4 groups accepted (%s)", err.msg);
    o = (dm_plan_opts){ .criterion = DM_CRIT_FREQUENCY, .non_uniform = true, .budget = 8 };
    CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "n_group = 1"),
          "non-uniform with groups accepted (%s)", err.msg);
    st.topk_group = 4;   /* groups of 1 would do for top-4 over 4 groups, but noaux_tc needs 2 */
    CHECK(dm_plan_floor(&st) == 8, "floor with topk_group 4: %d, expected 8", dm_plan_floor(&st));
    st.n_group = 1;
    st.topk_group = 1;
    CHECK(dm_plan_floor(&st) == 4, "floor without groups: %d, expected top-4", dm_plan_floor(&st));
    dm_calib_stats_free(&st);
}

/* ---- non-uniform ---- */

static void test_concentrated(void)
{
    const int E[2] = { 16, 16 };
    dm_calib_stats st;
    stats_make(&st, 2, 2, E, 2, 1, 1);
    for (int e = 0; e < 16; e++) {
        set_acc(&st, 0, e, 1, e == 3 ? 100 : 1, 0, 0);   /* layer 0: one expert carries the layer */
        set_acc(&st, 1, e, 1, 1, 0, 0);                  /* layer 1: flat */
    }
    dm_plan p;
    dm_err err = { "" };
    dm_plan_opts o = { .criterion = DM_CRIT_REAP, .non_uniform = true, .budget = 16 };
    if (dm_plan_make(&p, &st, &o, &err) == 0) {
        CHECK(p.keep[0] == 2 && p.keep[1] == 14, "concentrated vs flat: %d vs %d, expected 2 vs 14", p.keep[0],
              p.keep[1]);
        CHECK(p.keep[0] > 0 && (p.kept[0][0] == 3 || p.kept[0][1] == 3), "the concentrated layer lost its expert");
        dm_plan_free(&p);
    } else {
        CHECK(0, "concentrated: %s", err.msg);
    }
    o.max_per_layer = 10;   /* the flat layer is capped: the rest goes to the other */
    if (dm_plan_make(&p, &st, &o, &err) == 0) {
        CHECK(p.keep[0] == 6 && p.keep[1] == 10, "capped: %d + %d, expected 6 + 10", p.keep[0], p.keep[1]);
        dm_plan_free(&p);
    } else {
        CHECK(0, "capped: %s", err.msg);
    }
    dm_calib_stats_free(&st);
}

/* splitmix64 for the random stats */
static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The oracle's ranking: O(E²) selection by (score desc, count desc, id asc). */
static void oracle_rank(const double *score, const double *count, int E, int *order)
{
    bool *used = calloc((size_t)E, 1);
    for (int r = 0; r < E; r++) {
        int best = -1;
        for (int e = 0; e < E; e++) {
            if (used[e])
                continue;
            if (best < 0 || score[e] > score[best] || (score[e] == score[best] && count[e] > count[best]))
                best = e;   /* equal score and count: the lower id, found first, stays */
        }
        used[best] = true;
        order[r] = best;
    }
    free(used);
}

typedef struct cand {
    double v;
    int layer, pos;
} cand;

static int cmp_cand(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->layer != y->layer ? x->layer - y->layer : x->pos - y->pos;
}

enum { RL = 6, RE_MAX = 32 };

/* Water-filling's closed form: every layer starts at its floor; each layer's
 * normalized scores, best first, are non-increasing, so repeatedly giving one
 * expert to the layer with the largest next score takes the globally largest
 * remaining values: sort all candidates (positions floor .. cap-1) once. */
static void oracle_counts(const int *E, double score[RL][RE_MAX], double count[RL][RE_MAX], const bool *planned,
                          int lo, int hi, int budget, int *out, int order[RL][RE_MAX])
{
    cand *c = malloc(sizeof(cand) * RL * RE_MAX);
    int n = 0, used = 0;
    for (int l = 0; l < RL; l++) {
        out[l] = 0;
        if (!planned[l])
            continue;
        oracle_rank(score[l], count[l], E[l], order[l]);
        double norm = 0;
        for (int e = 0; e < E[l]; e++)
            norm += score[l][e];
        out[l] = lo < E[l] ? lo : E[l];
        used += out[l];
        const int cap = hi > 0 && hi < E[l] ? hi : E[l];
        for (int pos = out[l]; pos < cap; pos++)
            c[n++] = (cand){ norm > 0 ? score[l][order[l][pos]] / norm : 1.0 / E[l], l, pos };
    }
    qsort(c, (size_t)n, sizeof(cand), cmp_cand);
    for (int i = 0; i < budget - used && i < n; i++)
        out[c[i].layer]++;
    free(c);
}

static void test_water_fill_random(void)
{
    uint64_t s = 2026;
    int compared = 0;
    for (int trial = 0; trial < 300; trial++) {
        int E[RL];
        bool planned[RL];
        double score[RL][RE_MAX] = { { 0 } }, count[RL][RE_MAX] = { { 0 } };
        const int top_k = 2 + (int)(rng_next(&s) % 3);
        for (int l = 0; l < RL; l++) {
            E[l] = l == 0 ? 0 : 8 + (int)(rng_next(&s) % 25);   /* layer 0 dense, the last one MTP */
            planned[l] = E[l] > 0;
        }
        const bool skip_mtp = rng_next(&s) % 4 == 0;
        planned[RL - 1] = !skip_mtp;
        dm_calib_stats st;
        stats_make(&st, RL, RL - 1, E, top_k, 1, 1);
        const dm_criterion crit = (dm_criterion)(rng_next(&s) % 2 ? DM_CRIT_REAP : DM_CRIT_EAN);
        for (int l = 1; l < RL; l++) {
            const int shape = (int)(rng_next(&s) % 3);   /* flat-ish, skewed, or few levels (ties) */
            for (int e = 0; e < E[l]; e++) {
                double cnt = (double)(rng_next(&s) % 6), u = (double)(rng_next(&s) >> 11) * 0x1p-53;
                double v = shape == 0 ? 1 + 0.1 * u : shape == 1 ? u * u * u * u * 10 : (double)(rng_next(&s) % 3);
                set_acc(&st, l, e, cnt, v * cnt, v, 0);
                count[l][e] = cnt;
            }
            dm_plan_scores(&st, 0, l, crit, 0, score[l]);
        }
        const int floor_k = top_k;
        int lo = rng_next(&s) % 2 ? 0 : floor_k + (int)(rng_next(&s) % 3);
        int hi = rng_next(&s) % 2 ? 0 : 12 + (int)(rng_next(&s) % 10);
        const int lowest = lo > floor_k ? lo : floor_k;
        if (hi && hi < lowest)
            hi = lowest;
        int min_total = 0, max_total = 0;
        for (int l = 0; l < RL; l++)
            if (planned[l]) {
                min_total += lowest < E[l] ? lowest : E[l];
                max_total += hi && hi < E[l] ? hi : E[l];
            }
        const int budget = min_total + (int)(rng_next(&s) % (uint64_t)(max_total - min_total + 1));
        dm_plan p;
        dm_err err = { "" };
        dm_plan_opts o = { .criterion = crit, .non_uniform = true, .budget = budget, .min_per_layer = lo,
                           .max_per_layer = hi, .skip_mtp = skip_mtp };
        if (dm_plan_make(&p, &st, &o, &err)) {
            CHECK(0, "trial %d: budget %d in [%d, %d]: %s", trial, budget, min_total, max_total, err.msg);
            dm_calib_stats_free(&st);
            continue;
        }
        int want[RL], order[RL][RE_MAX], total = 0;
        oracle_counts(E, score, count, planned, lowest, hi, budget, want, order);
        for (int l = 0; l < RL; l++) {
            total += p.keep[l];
            CHECK(p.keep[l] == want[l], "trial %d: layer %d keeps %d, the oracle %d", trial, l, p.keep[l], want[l]);
            if (!planned[l])
                continue;
            const int cap = hi && hi < E[l] ? hi : E[l];
            CHECK(p.keep[l] >= (lowest < E[l] ? lowest : E[l]) && p.keep[l] <= cap,
                  "trial %d: layer %d keeps %d outside [%d, %d]", trial, l, p.keep[l], lowest, cap);
            if (p.keep[l] == want[l])
                check_kept(&p, l, order[l], want[l], "water-fill kept set");
        }
        CHECK(total == budget, "trial %d: %d experts kept, budget %d", trial, total, budget);
        compared++;
        dm_plan_free(&p);
        /* one past the capacity is refused, naming the budget */
        o.budget = max_total + 1;
        CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "exceeds"), "trial %d: budget %d > %d accepted",
              trial, max_total + 1, max_total);
        if (min_total > 0) {
            o.budget = min_total - 1;
            CHECK(dm_plan_make(&p, &st, &o, &err) != 0 && strstr(err.msg, "below the layers' floors"),
                  "trial %d: budget %d < %d accepted", trial, min_total - 1, min_total);
        }
        dm_calib_stats_free(&st);
    }
    printf("  water-filling: %d random plans compared with the oracle\n", compared);
}

/* ---- plan files ---- */

static char *scratch(const char *name)
{
    const char *base = getenv("DM_TEST_TMP");
    if (!base)
        base = "/tmp";
    dm_make_dirs(base);
    return dm_asprintf("%s/%s", base, name);
}

static void test_round_trip(void)
{
    const int E[4] = { 0, 16, 12, 16 };
    dm_calib_stats st;
    stats_make(&st, 4, 3, E, 4, 1, 1);
    uint64_t s = 5;
    for (int l = 1; l < 4; l++)
        for (int e = 0; e < E[l]; e++)
            set_acc(&st, l, e, 1 + (double)(rng_next(&s) % 9), (double)(rng_next(&s) % 1000) / 7, 1, 1);
    dm_plan p, q;
    dm_err err = { "" };
    dm_plan_opts o = { .criterion = DM_CRIT_REAP, .non_uniform = true, .budget = 30 };
    if (dm_plan_make(&p, &st, &o, &err)) {
        CHECK(0, "round trip: make: %s", err.msg);
        dm_calib_stats_free(&st);
        return;
    }
    char *path = scratch("plan_rt.json");
    if (dm_plan_save(&p, path, &err) || dm_plan_load(&q, path, &err)) {
        CHECK(0, "round trip: %s", err.msg);
    } else {
        CHECK(q.n_layers == 4, "round trip: %d layers", q.n_layers);
        for (int l = 0; l < 4 && q.n_layers == 4; l++) {
            CHECK(q.keep[l] == p.keep[l], "round trip: layer %d keep %d vs %d", l, q.keep[l], p.keep[l]);
            CHECK(q.n_experts[l] == (p.keep[l] ? E[l] : 0), "round trip: layer %d experts %d", l, q.n_experts[l]);
            for (int i = 0; i < p.keep[l] && q.keep[l] == p.keep[l]; i++)
                CHECK(q.kept[l][i] == p.kept[l][i], "round trip: layer %d kept[%d]", l, i);
        }
        CHECK(!strcmp(q.criterion, "reap"), "round trip: criterion '%s'", q.criterion);
        CHECK(!strcmp(q.meta, p.meta) && strstr(q.meta, "\"stats_model_hash\":\"test-model\""),
              "round trip: sidecar '%s'", q.meta);
        dm_plan_free(&q);
    }
    free(path);
    dm_plan_free(&p);
    dm_calib_stats_free(&st);
}

static void test_published_format(void)
{
    char *path = scratch("plan_published.json"), *meta = dm_asprintf("%s.meta", path);
    remove(meta);
    const char *text = "{\"3\": {\"kept\": [31, 1, 0, 7, 9], \"keep\": 5},\n \"1\": {\"kept\": [2, 3, 4, 5, 6, 7, 8, 9], "
                       "\"keep\": 8}}";
    dm_err err = { "" };
    dm_plan p;
    if (dm_write_file_atomic(path, text, strlen(text), &err) || dm_plan_load(&p, path, &err)) {
        CHECK(0, "published format: %s", err.msg);
    } else {
        const int want3[5] = { 0, 1, 7, 9, 31 }, want1[8] = { 2, 3, 4, 5, 6, 7, 8, 9 };
        CHECK(p.n_layers == 4 && p.keep[0] == 0 && p.keep[2] == 0, "published format: %d layers", p.n_layers);
        check_kept(&p, 3, want3, 5, "published format");
        check_kept(&p, 1, want1, 8, "published format");
        CHECK(p.n_experts[1] == 0 && p.n_experts[3] == 0, "published format: expert counts invented");
        CHECK(p.meta[0] == 0 && p.criterion[0] == 0, "published format: provenance invented");
        /* against a model: the "small" preset has 32 experts per MoE layer, no groups, top-4 */
        dm_config c;
        if (dm_config_parse(&c, dm_preset_find("small")->config_json, "small", &err) == 0) {
            CHECK(dm_plan_check(&p, &c, "small", &err) == 0, "published format vs small: %s", err.msg);
            CHECK(p.n_experts[1] == 32 && p.n_experts[3] == 32, "check did not fill the expert counts");
            dm_config_free(&c);
        } else {
            CHECK(0, "small preset: %s", err.msg);
        }
        /* against tiny (layer 3 has 8 experts in 4 routing groups): refused, one line naming the model */
        if (dm_config_parse(&c, dm_preset_find("tiny")->config_json, "tiny", &err) == 0) {
            p.n_experts[1] = p.n_experts[3] = 0;
            CHECK(dm_plan_check(&p, &c, "tiny-dir", &err) != 0 && strstr(err.msg, "tiny-dir") &&
                      !strchr(err.msg, '\n'), "published format vs tiny: '%s'", err.msg);
            dm_config_free(&c);
        }
        dm_plan_free(&p);
    }
    free(meta);
    free(path);
}

int main(void)
{
    test_criteria();
    test_random();
    test_uniform();
    test_groups();
    test_concentrated();
    test_water_fill_random();
    test_round_trip();
    test_published_format();
    return check_finish("test_plan");
}
