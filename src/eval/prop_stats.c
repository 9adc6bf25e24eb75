/* prop_stats — statistics on rates (loop rate, EOS rate, ...) for
 * `demolish eval loops / compare / report` (issue 5): Wilson intervals,
 * Newcombe's interval of a difference, the unpaired two-proportion z-test,
 * McNemar's paired test, and the per-arm sample size to detect a difference.
 *
 * Formulas (k successes out of n, p = k/n, z the normal quantile):
 *   Wilson: the roots x of (p - x)^2 = z^2 x (1 - x) / n,
 *     center = (p + z^2/2n) / a, half = (z/a) sqrt(p(1-p)/n + z^2/4n^2),
 *     a = 1 + z^2/n; hi = center + half and lo = p^2 / (a hi) (the product of
 *     the roots is p^2/a, which avoids the cancellation in center - half).
 *   Newcombe (1998, method 10) for d = p2 - p1 from the Wilson intervals:
 *     [d - sqrt((p2-l2)^2 + (u1-p1)^2), d + sqrt((u2-p2)^2 + (p1-l1)^2)].
 *   z-test: pbar = (k1+k2)/(n1+n2), se = sqrt(pbar(1-pbar)(1/n1+1/n2)),
 *     z = (p2 - p1)/se, p = erfc(|z|/sqrt 2).
 *   McNemar (b, c discordant pairs): for b + c < DM_MCNEMAR_EXACT_BELOW (25,
 *     the usual rule) the exact conditional test, p = min(1, 2 P(X <= min(b,c)))
 *     with X ~ Bin(b+c, 1/2) (what scipy.stats.binomtest gives for p = 1/2);
 *     otherwise the normal approximation z = (c-b)/sqrt(b+c), p = erfc(|z|/sqrt 2),
 *     which is the chi-square test (b-c)^2/(b+c) on 1 df WITHOUT continuity
 *     correction.
 *   Sample size: see dm_prop_min_n in eval.h.
 * The normal tail is libm's erfc; its inverse (dm_norm_isf) is found by
 * bisection on erfc polished by one Newton step. */
#include "eval/eval.h"

#include <math.h>
#include <string.h>

double dm_norm_p2(double z)
{
    return erfc(fabs(z) / M_SQRT2);
}

static double norm_sf(double z)
{
    return 0.5 * erfc(z / M_SQRT2);
}

double dm_norm_isf(double q)
{
    DM_ASSERT(q > 0 && q < 1);
    if (q > 0.5)
        return -dm_norm_isf(1.0 - q);   /* 1 - q is exact for q in (0.5, 1) */
    double lo = 0, hi = 40;             /* sf(40) underflows: q down to ~1e-300 */
    for (int it = 0; it < 200 && hi - lo > 0; it++) {
        const double mid = 0.5 * (lo + hi);
        if (mid == lo || mid == hi)
            break;
        if (norm_sf(mid) > q)
            lo = mid;
        else
            hi = mid;
    }
    double z = 0.5 * (lo + hi);
    const double pdf = exp(-0.5 * z * z) / sqrt(2 * M_PI);
    if (pdf > 0)
        z += (norm_sf(z) - q) / pdf;   /* Newton on sf(z) - q; sf' = -pdf */
    return z;
}

void dm_wilson(int64_t k, int64_t n, double z, double *lo, double *hi)
{
    DM_ASSERT(k >= 0 && k <= n && z > 0);
    if (n == 0) {
        *lo = 0, *hi = 1;
        return;
    }
    const double nn = (double)n, p = (double)k / nn, z2 = z * z;
    const double a = 1 + z2 / nn;
    const double center = (p + z2 / (2 * nn)) / a;
    const double half = z / a * sqrt(p * (1 - p) / nn + z2 / (4 * nn * nn));
    *hi = k == n ? 1.0 : fmin(1.0, center + half);
    *lo = k == 0 ? 0.0 : p * p / (a * *hi);
}

static int check_counts(int64_t k, int64_t n, const char *arm, dm_err *err)
{
    if (n < 1 || k < 0 || k > n)
        return dm_errorf(err, "%s: %lld successes out of %lld is not a proportion", arm, (long long)k, (long long)n);
    return 0;
}

int dm_prop_ztest(int64_t k1, int64_t n1, int64_t k2, int64_t n2, dm_prop_test *t, dm_err *err)
{
    memset(t, 0, sizeof *t);
    if (check_counts(k1, n1, "arm 1", err) || check_counts(k2, n2, "arm 2", err))
        return -1;
    t->p1 = (double)k1 / (double)n1;
    t->p2 = (double)k2 / (double)n2;
    t->diff = t->p2 - t->p1;
    double l1, u1, l2, u2;
    dm_wilson(k1, n1, DM_Z95, &l1, &u1);
    dm_wilson(k2, n2, DM_Z95, &l2, &u2);
    t->diff_lo = t->diff - hypot(t->p2 - l2, u1 - t->p1);
    t->diff_hi = t->diff + hypot(u2 - t->p2, t->p1 - l1);
    const double pbar = (double)(k1 + k2) / (double)(n1 + n2);
    t->se = sqrt(pbar * (1 - pbar) * (1.0 / (double)n1 + 1.0 / (double)n2));
    /* All successes or all failures in both arms: no evidence of a difference. */
    t->z = t->se > 0 ? t->diff / t->se : 0.0;
    t->p = t->se > 0 ? dm_norm_p2(t->z) : 1.0;
    return 0;
}

double dm_mcnemar_exact_p(int64_t b, int64_t c)
{
    DM_ASSERT(b >= 0 && c >= 0);
    const int64_t N = b + c, k = b < c ? b : c;
    if (2 * k >= N)
        return 1.0;
    /* P(X <= k) = t_k (1 + t_{k-1}/t_k + ...), t_i = C(N,i) 2^-N, summed from
     * the largest term down with the ratio t_{i-1}/t_i = i / (N - i + 1) < 1:
     * no overflow and no cancellation; only log t_k uses lgamma. */
    const double log_tk = lgamma((double)N + 1) - lgamma((double)k + 1) - lgamma((double)(N - k) + 1) - (double)N * M_LN2;
    double r = 1, sum = 1;
    for (int64_t i = k; i >= 1; i--) {
        r *= (double)i / (double)(N - i + 1);
        sum += r;
        if (r < 1e-18 * sum)
            break;
    }
    return fmin(1.0, 2 * exp(log_tk + log(sum)));
}

int dm_mcnemar_test(int64_t b, int64_t c, dm_mcnemar *t, dm_err *err)
{
    memset(t, 0, sizeof *t);
    if (b < 0 || c < 0)
        return dm_errorf(err, "McNemar: negative discordant count (b %lld, c %lld)", (long long)b, (long long)c);
    t->b = b, t->c = c;
    const int64_t N = b + c;
    t->z = N > 0 ? (double)(c - b) / sqrt((double)N) : 0.0;
    t->exact = N < DM_MCNEMAR_EXACT_BELOW;
    t->p = t->exact ? dm_mcnemar_exact_p(b, c) : dm_norm_p2(t->z);
    return 0;
}

int dm_prop_min_n(double p1, double p2, double alpha, double power, int64_t *n_arm, double *n_real, dm_err *err)
{
    if (!(p1 > 0 && p1 < 1 && p2 > 0 && p2 < 1) || p1 == p2)
        return dm_errorf(err, "sample size: rates %g and %g must differ and lie in (0, 1)", p1, p2);
    if (!(alpha > 0 && alpha < 1 && power >= 0.5 && power < 1))
        return dm_errorf(err, "sample size: alpha %g must lie in (0, 1) and power %g in [0.5, 1)", alpha, power);
    const double za = dm_norm_isf(alpha / 2), zb = dm_norm_isf(1 - power);
    const double pbar = 0.5 * (p1 + p2), d = p1 - p2;
    const double s = za * sqrt(2 * pbar * (1 - pbar)) + zb * sqrt(p1 * (1 - p1) + p2 * (1 - p2));
    const double n = s * s / (d * d);
    if (!(n < 1e15))
        return dm_errorf(err, "sample size: rates %g and %g are too close to tell apart", p1, p2);
    if (n_real)
        *n_real = n;
    *n_arm = (int64_t)ceil(n);
    return 0;
}
