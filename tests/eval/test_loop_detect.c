/* test_loop_detect — src/eval/loop_detect.c on constructed token sequences,
 * with the default parameters (P 128, R 3, C 64, W 512, rep_min_len 128,
 * seq-rep-4 > 0.5). Oracles: closed-form expectations for constructed
 * sequences, a brute-force periodic-tail search and a quadratic distinct
 * 4-gram count on random sequences, and hand-counted aggregates.
 *
 * Miss / false-alarm behaviour measured here (printed by the test; the
 * asserts pin it down):
 *   - exact loops (random block of period p after 200 tokens of random
 *     "prose", ending at the cap or with EOS): flagged for every p in 1..128
 *     once the loop covers max(3p, 64) tokens, never one token earlier (by
 *     criterion a; b can flag earlier). Periods 129..250 (3 copies, at least
 *     512 tokens) are caught by the seq-rep-4 window (0.75 at p 129, 0.51 at
 *     250); from p ~255 on (fewer than two copies of the block in the window)
 *     a loop is MISSED: p 260 gives seq-rep-4 0.49, p 400 0.21.
 *   - near-loops (block of p, one token replaced by a fresh id every k-th
 *     copy, 700 tokens): flagged iff p·k >= 9 for p in {1,2,7,30}, k in
 *     {1,2,3,5,10}. The window then holds about p + 4·512/(p·k) distinct
 *     4-grams, under half of its 509. Missed: p·k <= 7, e.g. "a X1 a X2"
 *     (p 1, k 2) and a 7-token block with a counter in every copy (seq-rep-4
 *     0.42): an enumeration pattern. When the replacement is the SAME id each
 *     time the sequence is an exact loop of period p·k: all flagged.
 *   - legitimate repetition, none flagged: 400 random Zipf "prose" texts of
 *     50..2000 tokens with "very very very" / "no no no" inserted; code with
 *     one token per indent level (depth <= 6, as the reference tokenizer,
 *     whose vocabulary holds space runs of 1..39) ending in 8 closing braces;
 *     a numbered list "1. yes 2. yes ..." of 300 items; a markdown table with
 *     a 16-column "| --- |" rule.
 *   - false alarms: the same code with one token per SPACE (runs of up to 24
 *     space tokens) is flagged by b (seq-rep-4 0.66); 64 or more identical
 *     tokens in a row (a dump of zeros, an "=====" underline at one token per
 *     character) are flagged by a. A BPE with merged space runs avoids both;
 *     thresholds should still be checked on the teacher's outputs. */
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define V 8192
#define MAXN 4096

static int failures;
#define EXPECT(cond, ...) \
    do { \
        if (!(cond)) { \
            printf("FAIL " __VA_ARGS__); \
            printf("\n"); \
            failures++; \
        } \
    } while (0)

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(uint32_t n)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);   /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return (uint32_t)((z ^ (z >> 31)) % n);
}

/* Zipf-like "prose": ids log-uniform over [10, V), so small ids are frequent. */
static int32_t zipf(void)
{
    const double u = rnd(1u << 30) / (double)(1u << 30);
    return 10 + (int32_t)exp(u * log(V - 10.0));
}

static int64_t put_prose(int32_t *t, int64_t n, int64_t count)
{
    for (int64_t i = 0; i < count; i++)
        t[n++] = zipf();
    return n;
}

static dm_loop_params P;

static dm_gen_metrics measure(const int32_t *t, int64_t n, bool eos)
{
    dm_gen_metrics m;
    dm_err err;
    DM_ASSERT(!dm_gen_measure(t, n, eos, !eos, -1, -1, &P, &m, &err));
    return m;
}

/* A loop of period p covering `cover` tokens after 200 prose tokens; block
 * ids from a range prose never uses, all distinct, so p is the true period. */
static int64_t make_loop(int32_t *t, int p, int64_t cover)
{
    int64_t n = put_prose(t, 0, 200);
    const int32_t base = 20000 + (int32_t)rnd(1000) * 200;
    for (int64_t i = 0; i < cover; i++)
        t[n++] = base + (int32_t)(i % p);
    return n;
}

static void test_exact_loops(void)
{
    static int32_t t[MAXN];
    static const int periods[] = {1, 2, 7, 30};
    for (size_t i = 0; i < sizeof periods / sizeof *periods; i++) {
        const int p = periods[i];
        const int64_t n = make_loop(t, p, 600);
        dm_gen_metrics m = measure(t, n, false);
        EXPECT(m.loop && m.loop_exact && m.period == p && m.cover == 600 && m.runaway && !m.eos,
               "period %d loop at cap: loop %d exact %d period %d cover %lld", p, m.loop, m.loop_exact, m.period,
               (long long)m.cover);
        m = measure(t, n, true);
        EXPECT(m.loop && !m.runaway && m.eos, "period %d loop then EOS: loop %d runaway %d", p, m.loop, m.runaway);
    }
    /* The exact threshold, every period 1..P: flagged at cover max(3p, C), not one token before. */
    int misses = 0, early = 0;
    for (int p = 1; p <= P.max_period; p++) {
        const int64_t need = 3 * p > P.min_cover ? 3 * p : P.min_cover;
        int64_t n = make_loop(t, p, need);
        misses += !measure(t, n, false).loop_exact;
        n = make_loop(t, p, need - 1);
        early += measure(t, n, false).loop_exact;
    }
    printf("exact loops p=1..%d: %d missed at cover max(3p,64), %d flagged one token early\n", P.max_period, misses,
           early);
    EXPECT(misses == 0 && early == 0, "exact threshold: %d misses, %d early", misses, early);
    /* Periods beyond P: criterion b while two copies fit in the window. */
    static const struct { int p; bool caught; } longp[] = {{129, true}, {200, true}, {250, true}, {260, false}, {400, false}};
    for (size_t i = 0; i < sizeof longp / sizeof *longp; i++) {
        const int64_t n = make_loop(t, longp[i].p, 3 * longp[i].p > 512 ? 3 * longp[i].p : 512);
        const dm_gen_metrics m = measure(t, n, false);
        printf("period %d, >= 3 copies and >= 512 tokens: loop_rep %d (tail seq-rep-4 %.3f)\n", longp[i].p, m.loop_rep, m.tail_rep4);
        EXPECT(m.loop == longp[i].caught && !m.loop_exact, "long period %d: loop %d, want %d", longp[i].p, m.loop,
               longp[i].caught);
    }
}

/* Block of p, every k-th copy has one token replaced: by a fresh id
 * (counter) or by the same id each time. */
static void test_near_loops(void)
{
    static int32_t t[MAXN];
    static const int periods[] = {1, 2, 7, 30};
    static const int every[] = {1, 2, 3, 5, 10};
    printf("near-loops, fresh replacement (. none, a exact, b seq-rep-4, X both):\n   p\\k");
    for (size_t j = 0; j < sizeof every / sizeof *every; j++)
        printf(" %3d", every[j]);
    printf("\n");
    for (size_t i = 0; i < sizeof periods / sizeof *periods; i++) {
        const int p = periods[i];
        printf("  %3d ", p);
        for (size_t j = 0; j < sizeof every / sizeof *every; j++) {
            const int k = every[j];
            for (int same = 0; same < 2; same++) {
                int64_t n = put_prose(t, 0, 200);
                for (int64_t c = 0; n < 200 + 700; c++)
                    for (int q = 0; q < p && n < 900; q++)
                        t[n++] = q == p / 2 && c % k == k - 1 ? (same ? 29999 : 30000 + (int32_t)c) : 20000 + q;
                const dm_gen_metrics m = measure(t, n, false);
                if (!same) {
                    printf("   %c", ".abX"[m.loop_exact + 2 * m.loop_rep]);
                    const bool want = p * k >= 9;   /* see the file comment */
                    EXPECT(m.loop == want, "near-loop p %d k %d fresh: loop %d (rep4 %.3f), want %d", p, k, m.loop,
                           m.tail_rep4, want);
                } else {
                    EXPECT(m.loop, "near-loop p %d k %d same token: not flagged (rep4 %.3f)", p, k, m.tail_rep4);
                    if (p * k <= P.max_period)
                        EXPECT(m.loop_exact && m.period == p * k, "near-loop p %d k %d same: exact %d period %d", p, k,
                               m.loop_exact, m.period);
                }
            }
        }
        printf("\n");
    }
}

/* Code: lines of `depth` indent units (unit tokens each) + 3..9 tokens + newline. */
static int64_t put_code(int32_t *t, int64_t n, int64_t lines, int unit)
{
    static const int32_t kw[] = {60, 61, 62, 63, 64, 65, 66, 67};   /* def return if self ( ) : = */
    int depth = 0;
    for (int64_t l = 0; l < lines; l++) {
        depth += (int)rnd(3) - 1;
        depth = depth < 0 ? 0 : depth > 6 ? 6 : depth;
        for (int d = 0; d < depth * unit; d++)
            t[n++] = unit == 1 ? 5 : 6;   /* "    " or " " */
        const int len = 3 + (int)rnd(7);
        for (int i = 0; i < len; i++)
            t[n++] = rnd(2) ? kw[rnd(8)] : zipf();
        t[n++] = 7;   /* "\n" */
    }
    return n;
}

static void test_legitimate(void)
{
    static int32_t t[MAXN * 2];
    int flagged = 0, docs = 0;
    for (int d = 0; d < 400; d++, docs++) {
        const int64_t len = 50 + rnd(1950);
        int64_t n = 0;
        while (n < len) {
            n = put_prose(t, n, 5 + rnd(40));
            const int32_t w = (int32_t)rnd(3) + 40;   /* "very", "no", "the" */
            for (int r = 2 + (int)rnd(3); r > 0; r--)
                t[n++] = w;
        }
        flagged += measure(t, n, d % 2).loop;
    }
    printf("prose with repeated words: %d of %d flagged\n", flagged, docs);
    EXPECT(flagged == 0, "prose false alarms: %d of %d", flagged, docs);
    for (int unit = 1; unit <= 4; unit += 3) {
        int64_t n = put_code(t, 0, 150, unit);
        for (int b = 0; b < 8; b++)
            t[n++] = 70, t[n++] = 7;   /* "}" "\n" */
        const dm_gen_metrics m = measure(t, n, true);
        printf("code, %d token(s) per indent level, %lld tokens: loop %d (tail seq-rep-4 %.3f)\n", unit, (long long)n,
               m.loop, m.tail_rep4);
        /* One token per level (as the reference tokenizer, whose vocabulary has
         * space runs of 1..39): clean. One token per SPACE: a false alarm of b. */
        EXPECT(m.loop == (unit == 4) && !m.loop_exact, "code with %d-token indentation: loop %d (period %d, rep4 %.3f)",
               unit, m.loop, m.period, m.tail_rep4);
    }
    int64_t n = put_prose(t, 0, 20);
    for (int item = 1; item <= 300; item++)
        t[n++] = 1000 + item, t[n++] = 50, t[n++] = 41, t[n++] = 7;   /* "N" "." "yes" "\n" */
    dm_gen_metrics m = measure(t, n, true);
    EXPECT(!m.loop, "numbered list flagged (period %d, rep4 %.3f)", m.period, m.tail_rep4);
    n = put_prose(t, 0, 100);
    for (int col = 0; col < 16; col++)
        t[n++] = 80, t[n++] = 81;   /* "|" "---" */
    t[n++] = 80, t[n++] = 7;
    for (int row = 0; row < 10; row++) {
        for (int col = 0; col < 16; col++)
            t[n++] = 80, t[n++] = zipf();
        t[n++] = 80, t[n++] = 7;
    }
    m = measure(t, n, true);
    EXPECT(!m.loop, "markdown table flagged (period %d, rep4 %.3f)", m.period, m.tail_rep4);
    n = put_prose(t, 0, 100);
    for (int i = 0; i < 70; i++)
        t[n++] = 90;
    m = measure(t, n, true);
    EXPECT(m.loop_exact && m.period == 1, "70 equal tokens not flagged (the documented false alarm)");
}

/* Brute force: some p <= P and L >= max(R p, C) with the last L tokens equal
 * to the block ids[n-L .. n-L+p) repeated. Binary alphabet → many periodic tails. */
static bool brute_exact(const int32_t *t, int64_t n, int *period)
{
    for (int p = 1; p <= P.max_period && p < n; p++) {
        const int64_t need = (int64_t)P.min_repeats * p > P.min_cover ? (int64_t)P.min_repeats * p : P.min_cover;
        if (need > n)
            continue;
        bool ok = true;
        for (int64_t i = 0; i < need && ok; i++)
            ok = t[n - need + i] == t[n - need + i % p];
        if (ok)
            return *period = p, true;
    }
    return false;
}

static void test_against_brute_force(void)
{
    static int32_t t[600];
    int mismatch = 0, periodic = 0;
    for (int trial = 0; trial < 300; trial++) {
        const int64_t n = 1 + rnd(600);
        const int p = 1 + (int)rnd(40);
        for (int64_t i = 0; i < n; i++)   /* random, then a periodic stretch with a few flips */
            t[i] = i > n / 3 && i >= p && rnd(50) ? t[i - p] : (int32_t)rnd(2);
        int bp = 0;
        const bool want = brute_exact(t, n, &bp);
        const dm_gen_metrics m = measure(t, n, false);
        periodic += want;
        mismatch += m.loop_exact != want || (want && m.period != bp);
        int64_t distinct = 0;   /* quadratic distinct 4-gram count */
        for (int64_t i = 0; i + 3 < n; i++) {
            int64_t j = 0;
            while (j < i && memcmp(t + j, t + i, 4 * sizeof *t))
                j++;
            distinct += j == i;
        }
        EXPECT(m.distinct4 == distinct && m.n4 == (n >= 4 ? n - 3 : 0), "distinct-4 %lld of %lld, want %lld of %lld",
               (long long)m.distinct4, (long long)m.n4, (long long)distinct, (long long)(n >= 4 ? n - 3 : 0));
    }
    printf("brute force: %d of 300 random tails periodic, %d mismatches\n", periodic, mismatch);
    EXPECT(mismatch == 0 && periodic > 20, "brute force: %d mismatches, %d periodic", mismatch, periodic);
}

static void test_think(void)
{
    static const struct { int32_t ids[8]; int n; bool closed; int restarts; } cases[] = {
        {{5, 6, 2, 7}, 4, true, 0},                /* (prompt opened) ... </think> answer */
        {{1, 5, 2, 7}, 4, true, 0},                /* <think> ... </think> answer */
        {{1, 5, 6, 7}, 4, false, 0},               /* never closed */
        {{1, 5, 2, 1, 5, 2, 7}, 7, true, 1},       /* closed, reopened, closed again */
        {{1, 5, 2, 7, 2, 7}, 6, true, 1},          /* a second </think> */
        {{1, 2, 1, 2, 1, 2, 1}, 7, true, 3},       /* three reopenings */
    };
    dm_err err;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dm_gen_metrics m;
        DM_ASSERT(!dm_gen_measure(cases[i].ids, cases[i].n, true, false, 1, 2, &P, &m, &err));
        EXPECT(m.think && m.think_closed == cases[i].closed && m.think_restarts == cases[i].restarts,
               "think case %zu: closed %d restarts %d, want %d %d", i, m.think_closed, m.think_restarts,
               cases[i].closed, cases[i].restarts);
    }
    dm_gen_metrics m;
    DM_ASSERT(!dm_gen_measure(cases[0].ids, 4, true, false, -1, -1, &P, &m, &err));
    EXPECT(!m.think, "think measured without ids");
    dm_loop_params bad = P;
    bad.rep4_max = 1.5;
    EXPECT(dm_gen_measure(cases[0].ids, 4, true, false, -1, -1, &bad, &m, &err) == -1, "bad params accepted");
}

static void test_aggregate(void)
{
    /* Hand-built: lengths 10, 20, ..., 100; sources alternate "code"/"prose",
     * the last one has no source; generations 3 and 8 loop at the cap. */
    static int32_t t[200];
    dm_loop_agg a;
    dm_err err;
    dm_loop_agg_init(&a);
    for (int g = 1; g <= 10; g++) {
        const int64_t n = 10 * g;
        for (int64_t i = 0; i < n; i++)
            t[i] = g == 3 || g == 8 ? 7 : (int32_t)(100 + i);   /* loops: 30 / 80 equal tokens */
        dm_gen_metrics m = measure(t, n, !(g == 3 || g == 8));
        const char *src = g == 10 ? NULL : g % 2 ? "code" : "prose";
        DM_ASSERT(!dm_loop_agg_add(&a, src, &m, &err));
    }
    dm_loop_agg_finish(&a);
    const dm_loop_counts *c = &a.total, *code = &a.groups[0], *prose = &a.groups[1];
    /* Only the 80-token run reaches C = 64; both are runaways. */
    EXPECT(c->n == 10 && c->loop == 1 && c->runaway == 2 && c->fail == 2 && c->loop_runaway == 1 && c->eos == 8,
           "totals n %lld loop %lld runaway %lld fail %lld eos %lld", (long long)c->n, (long long)c->loop,
           (long long)c->runaway, (long long)c->fail, (long long)c->eos);
    /* Lengths 10..100: median 55, p90 at rank 8.1 → 91. */
    EXPECT(c->len_median == 55 && c->len_p90 == 91 && c->tokens == 550, "length median %g p90 %g", c->len_median,
           c->len_p90);
    /* code: 10 30 50 70 90 (median 50, p90 at rank 3.6 → 82); prose: 20 40 60 80 (median 50, p90 74). */
    EXPECT(a.n_groups == 2 && !strcmp(a.group[0], "code") && code->n == 5 && prose->n == 4 && prose->loop == 1,
           "groups %d, code n %lld, prose n %lld loop %lld", a.n_groups, (long long)code->n, (long long)prose->n,
           (long long)prose->loop);
    EXPECT(code->len_median == 50 && code->len_p90 == 82 && prose->len_median == 50 && prose->len_p90 == 74,
           "group lengths: code %g/%g prose %g/%g", code->len_median, code->len_p90, prose->len_median, prose->len_p90);
    /* distinct-4: 1 for the 8 non-loops, 1/27 and 1/77 for the loops. */
    const double d4 = (8 + 1.0 / 27 + 1.0 / 77) / 10;
    EXPECT(c->n_d4 == 10 && dm_loop_counts_d4_mean(c) > d4 - 1e-12 && dm_loop_counts_d4_mean(c) < d4 + 1e-12,
           "distinct-4 mean %.15g want %.15g", dm_loop_counts_d4_mean(c), d4);
    dm_gen_metrics m = measure(t, 5, true);
    for (int s = 0; s < DM_EVAL_MAX_GROUPS - 2; s++) {
        char name[16];
        snprintf(name, sizeof name, "s%d", s);
        DM_ASSERT(!dm_loop_agg_add(&a, name, &m, &err));
    }
    EXPECT(dm_loop_agg_add(&a, "one too many", &m, &err) == -1 && a.total.n == 10 + DM_EVAL_MAX_GROUPS - 2,
           "source overflow not refused");
    dm_loop_agg_free(&a);
}

int main(void)
{
    dm_loop_params_default(&P);
    test_exact_loops();
    test_near_loops();
    test_legitimate();
    test_against_brute_force();
    test_think();
    test_aggregate();
    if (failures) {
        printf("test_loop_detect: %d failures\n", failures);
        return 1;
    }
    printf("test_loop_detect: all passed\n");
    return 0;
}
