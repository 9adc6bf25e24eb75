/* test_loop_stats — src/eval/prop_stats.c against two oracles:
 *   1. values worked out by hand (closed forms: Wilson at k = 0 and k = n,
 *      exact McNemar tails as fractions of 2^N, the 504B report's z);
 *   2. scipy 1.10.1 (Debian python3-scipy), computed once with /usr/bin/python3
 *      and pasted below. The generating snippet (statsmodels is not
 *      installed, so Wilson and Newcombe are written out by hand from the
 *      textbook formulas; p-values and quantiles are scipy's):
 *
 *   from scipy.stats import norm, binomtest
 *   from math import sqrt
 *   def wilson(k, n, z):
 *       p = k / n; a = 1 + z*z/n
 *       c = (p + z*z/(2*n)) / a; h = z / a * sqrt(p*(1-p)/n + z*z/(4*n*n))
 *       return c - h, c + h
 *   z95 = norm.isf(0.025)
 *   # ztest: pb=(k1+k2)/(n1+n2); se=sqrt(pb*(1-pb)*(1/n1+1/n2)); z=(p2-p1)/se
 *   #        p=2*norm.sf(abs(z)); Newcombe: d-sqrt((p2-l2)**2+(u1-p1)**2),
 *   #        d+sqrt((u2-p2)**2+(p1-l1)**2) with Wilson (l, u) at z95
 *   # McNemar exact: binomtest(min(b,c), b+c, 0.5).pvalue
 *   # McNemar normal: z=(c-b)/sqrt(b+c); p=2*norm.sf(abs(z))
 *   # min n: za=norm.isf(a/2); zb=norm.isf(1-pw); pb=(p1+p2)/2
 *   #        n=(za*sqrt(2*pb*(1-pb))+zb*sqrt(p1*(1-p1)+p2*(1-p2)))**2/(p1-p2)**2
 *
 * Tolerance: REL_TOL 1e-9 relative everywhere. Values that are exactly 0 in
 * the oracle (or, for Wilson at k = 0, 1e-19 of cancellation noise in the
 * Python formula, which we compute as exactly 0) are compared with ABS_TOL.
 *
 * The 504B report: 3.6% vs 7.2% at n = 2000 each (72 vs 144 loops). The
 * pooled z is 0.036 / sqrt(0.054 * 0.946 * (2/2000)) = 5.0369, p = 4.7e-7:
 * the report's "z ≈ 5.0, p < 1e-4" is right (the unpooled z would be 5.05).
 * The sample size to detect that difference at alpha 0.05, power 0.8 is 618
 * per arm (617.57 before rounding up), not the ~1000 in reap.md §2.4. */
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>

#define REL_TOL 1e-9
#define ABS_TOL 1e-15

static int failures;
static double worst_rel;   /* largest relative error seen (printed) */

static void check(const char *what, double got, double want)
{
    const double d = fabs(got - want);
    const bool ok = want == 0 || fabs(want) < ABS_TOL ? d <= ABS_TOL : d <= REL_TOL * fabs(want);
    if (fabs(want) >= ABS_TOL && d / fabs(want) > worst_rel)
        worst_rel = d / fabs(want);
    if (!ok) {
        printf("FAIL %s: got %.17g want %.17g (rel %.3g)\n", what, got, want, want ? d / fabs(want) : d);
        failures++;
    }
}

#define Z95_SCIPY 1.9599639845400545
#define Z99_SCIPY 2.5758293035489008

static void test_quantiles(void)
{
    static const struct { double q, z; } cases[] = {
        {0.025, 1.9599639845400545}, {0.2, 0.84162123357291418}, {1e-10, 6.3613409024040557},
        {0.7, -0.52440051270804067}, {0.5, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[64];
        snprintf(what, sizeof what, "norm_isf(%g)", cases[i].q);
        check(what, dm_norm_isf(cases[i].q), cases[i].z);
    }
    check("DM_Z95", DM_Z95, Z95_SCIPY);
    check("norm_p2(1.96...)", dm_norm_p2(DM_Z95), 0.05);
    check("norm_p2(-1.96...)", dm_norm_p2(-DM_Z95), 0.05);
}

static void test_wilson(void)
{
    static const struct { int64_t k, n; double z, lo, hi; } cases[] = {
        {0, 2000, Z95_SCIPY, 0, 0.0019170472812529349},
        {72, 2000, Z95_SCIPY, 0.028684606722783661, 0.045094413154219047},
        {144, 2000, Z95_SCIPY, 0.061473133317261355, 0.084167859155491145},
        {1, 10, Z95_SCIPY, 0.017876213095072924, 0.40415002679523854},
        {5, 10, Z95_SCIPY, 0.23659309051256394, 0.76340690948743606},
        {10, 10, Z95_SCIPY, 0.72246720013711063, 1},
        {3, 17, Z99_SCIPY, 0.045829706544681464, 0.48875679130677474},
        {1, 1000000, Z95_SCIPY, 1.7652457674537176e-07, 5.6649118043114453e-06},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        double lo, hi;
        char what[96];
        dm_wilson(cases[i].k, cases[i].n, cases[i].z, &lo, &hi);
        snprintf(what, sizeof what, "wilson(%lld/%lld) lo", (long long)cases[i].k, (long long)cases[i].n);
        check(what, lo, cases[i].lo);
        snprintf(what, sizeof what, "wilson(%lld/%lld) hi", (long long)cases[i].k, (long long)cases[i].n);
        check(what, hi, cases[i].hi);
    }
    /* Hand: k = 0 gives [0, z²/(n+z²)], k = n gives [n/(n+z²), 1], k = n/2 is symmetric about 1/2. */
    double lo, hi;
    const double z = 1.5, z2 = z * z;
    dm_wilson(0, 40, z, &lo, &hi);
    check("wilson hand k=0 lo", lo, 0);
    check("wilson hand k=0 hi", hi, z2 / (40 + z2));
    dm_wilson(40, 40, z, &lo, &hi);
    check("wilson hand k=n lo", lo, 40 / (40 + z2));
    check("wilson hand k=n hi", hi, 1);
    dm_wilson(20, 40, z, &lo, &hi);
    check("wilson hand k=n/2 symmetric", lo + hi, 1);
    dm_wilson(0, 0, z, &lo, &hi);
    check("wilson n=0 lo", lo, 0);
    check("wilson n=0 hi", hi, 1);
}

static void test_ztest(void)
{
    static const struct { int64_t k1, n1, k2, n2; double se, z, p, lo, hi; } cases[] = {
        {72, 2000, 144, 2000, 0.0071473071852271751, 5.0368620050931456, 4.7322568416948205e-07, 0.022088735759256625,
         0.05019759751606629},
        {5, 50, 9, 50, 0.069397406291589886, 1.1527808354084699, 0.24900035245210006, -0.060279929782620173,
         0.21988884199103789},
        {0, 100, 3, 120, 0.015703213336477, 1.5920308451727834, 0.1113777740492555, -0.015490870569753588,
         0.070930033327866099},
        {30, 1000, 30, 1000, 0.0076288924491042607, 0, 1, -0.015351118962313096, 0.015351118962313096},
        {46, 2000, 144, 2000, 0.0067263474486529461, 7.2847857435335124, 3.221819174774327e-13, 0.03605068623026305,
         0.062442011406505883},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        dm_prop_test t;
        dm_err err;
        char what[96];
        if (dm_prop_ztest(cases[i].k1, cases[i].n1, cases[i].k2, cases[i].n2, &t, &err)) {
            printf("FAIL ztest case %zu: %s\n", i, err.msg);
            failures++;
            continue;
        }
        const double got[] = {t.se, t.z, t.p, t.diff_lo, t.diff_hi};
        const double want[] = {cases[i].se, cases[i].z, cases[i].p, cases[i].lo, cases[i].hi};
        static const char *names[] = {"se", "z", "p", "diff_lo", "diff_hi"};
        for (int j = 0; j < 5; j++) {
            snprintf(what, sizeof what, "ztest %lld/%lld vs %lld/%lld %s", (long long)cases[i].k1,
                     (long long)cases[i].n1, (long long)cases[i].k2, (long long)cases[i].n2, names[j]);
            check(what, got[j], want[j]);
        }
    }
    /* Hand: the 504B report, pooled pbar = 0.054. */
    dm_prop_test t;
    dm_err err;
    DM_ASSERT(!dm_prop_ztest(72, 2000, 144, 2000, &t, &err));
    check("504B z by hand", t.z, 0.036 / sqrt(0.054 * 0.946 * 0.001));
    check("504B diff", t.diff, 0.036);
    /* Degenerate: nothing in either arm → z 0, p 1; invalid counts fail. */
    DM_ASSERT(!dm_prop_ztest(0, 10, 0, 20, &t, &err));
    check("ztest all-zero z", t.z, 0);
    check("ztest all-zero p", t.p, 1);
    if (!dm_prop_ztest(11, 10, 0, 20, &t, &err) || !dm_prop_ztest(0, 0, 0, 20, &t, &err)) {
        printf("FAIL ztest accepted k > n or n = 0\n");
        failures++;
    }
}

static void test_mcnemar(void)
{
    static const struct { int64_t b, c; double p; } exact[] = {
        {0, 5, 0.0625}, {1, 9, 0.021484375}, {3, 12, 0.03515625}, {10, 14, 0.54125618934631348}, {7, 7, 1},
        {2, 20, 0.00012111663818359375}, {100, 140, 0.011664092317677691}, {2000, 2150, 0.020715456049267052},
        {0, 1, 1},
    };
    char what[96];
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++) {
        snprintf(what, sizeof what, "mcnemar exact p(%lld, %lld)", (long long)exact[i].b, (long long)exact[i].c);
        check(what, dm_mcnemar_exact_p(exact[i].b, exact[i].c), exact[i].p);
        check(what, dm_mcnemar_exact_p(exact[i].c, exact[i].b), exact[i].p);   /* symmetric */
    }
    /* Hand: P(X <= k) for Bin(N, 1/2) as a fraction of 2^N, doubled. */
    check("mcnemar hand (0,5)", dm_mcnemar_exact_p(0, 5), 2.0 / 32);
    check("mcnemar hand (1,9)", dm_mcnemar_exact_p(1, 9), 2.0 * (1 + 10) / 1024);
    check("mcnemar hand (3,12)", dm_mcnemar_exact_p(3, 12), 2.0 * (1 + 15 + 105 + 455) / 32768);

    static const struct { int64_t b, c; double z, p; } normal[] = {
        {40, 70, 2.8603877677367771, 0.0042312328997581384},
        {14, 11, -0.59999999999999998, 0.54850623550014721},
        {150, 90, -3.8729833462074166, 0.00010751117672950055},
    };
    dm_mcnemar t;
    dm_err err;
    for (size_t i = 0; i < sizeof normal / sizeof *normal; i++) {
        DM_ASSERT(!dm_mcnemar_test(normal[i].b, normal[i].c, &t, &err));
        snprintf(what, sizeof what, "mcnemar normal (%lld, %lld)", (long long)normal[i].b, (long long)normal[i].c);
        if (t.exact) {
            printf("FAIL %s used the exact test at b + c = %lld\n", what, (long long)(t.b + t.c));
            failures++;
        }
        check(what, t.z, normal[i].z);
        check(what, t.p, normal[i].p);
    }
    /* Below the threshold the test is exact; b + c = 0 gives p = 1. */
    DM_ASSERT(!dm_mcnemar_test(10, 14, &t, &err));
    if (!t.exact)
        printf("FAIL mcnemar (10, 14) not exact\n"), failures++;
    check("mcnemar test (10,14) p", t.p, 0.54125618934631348);
    DM_ASSERT(!dm_mcnemar_test(0, 0, &t, &err));
    check("mcnemar (0,0) p", t.p, 1);
    if (!dm_mcnemar_test(-1, 3, &t, &err))
        printf("FAIL mcnemar accepted a negative count\n"), failures++;
}

static void test_min_n(void)
{
    static const struct { double p1, p2, alpha, power, n; } cases[] = {
        {0.036, 0.072, 0.05, 0.8, 617.57310364312923},
        {0.05, 0.1, 0.05, 0.8, 434.43202243946882},
        {0.2, 0.25, 0.01, 0.9, 2073.2013122392214},
        {0.5, 0.4, 0.05, 0.5, 190.15221162435944},
    };
    dm_err err;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t n_arm;
        double n_real;
        char what[96];
        snprintf(what, sizeof what, "min_n(%g vs %g, a %g, power %g)", cases[i].p1, cases[i].p2, cases[i].alpha,
                 cases[i].power);
        if (dm_prop_min_n(cases[i].p1, cases[i].p2, cases[i].alpha, cases[i].power, &n_arm, &n_real, &err)) {
            printf("FAIL %s: %s\n", what, err.msg);
            failures++;
            continue;
        }
        check(what, n_real, cases[i].n);
        check(what, (double)n_arm, ceil(cases[i].n));
    }
    /* Hand: 504B case, z_{.025} = 1.959964, z_{.2} = 0.841621:
     * (1.959964·sqrt(2·.054·.946) + 0.841621·sqrt(.036·.964 + .072·.928))² / .036² = 617.6 → 618. */
    int64_t n_arm;
    DM_ASSERT(!dm_prop_min_n(0.036, 0.072, 0.05, 0.8, &n_arm, NULL, &err));
    if (n_arm != 618)
        printf("FAIL 504B min n %lld, want 618\n", (long long)n_arm), failures++;
    if (!dm_prop_min_n(0.1, 0.1, 0.05, 0.8, &n_arm, NULL, &err) || !dm_prop_min_n(0.1, 0.2, 0.05, 0.3, &n_arm, NULL, &err))
        printf("FAIL min_n accepted equal rates or power < 0.5\n"), failures++;
}

int main(void)
{
    test_quantiles();
    test_wilson();
    test_ztest();
    test_mcnemar();
    test_min_n();
    if (failures) {
        printf("test_loop_stats: %d failures\n", failures);
        return 1;
    }
    printf("test_loop_stats: all passed (largest relative error %.3g)\n", worst_rel);
    return 0;
}
