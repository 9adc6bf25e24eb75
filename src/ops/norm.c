/* norm — RMSNorm and LayerNorm over the last dimension D, for one row or T
 * contiguous rows, each forward beside its backward (llm.c style: backward
 * arguments are outputs, inputs, weights, sizes; gradients ACCUMULATE).
 *
 * Forward: the statistics in double (D is at most a few thousand, and the
 * norms feed routing decisions where f32 summation order would show up as
 * flipped near-ties); the product in f32 as before.
 * Backward: the gradient of the exact (real-number) function, recomputing
 * the row statistics in double and forming dx in double, so the cancellation
 * in x·(1 − x̂²)-like terms (small D, or eps large against the variance)
 * costs nothing. With x̂ = (x − a)·r (RMSNorm: a = 0, r = 1/rms; LayerNorm:
 * a = mean, r = 1/std) and g = dy ⊙ w:
 *   RMSNorm   dx = r·g − r³·x·Σ(g·x)/D
 *   LayerNorm dx = r·(g − mean(g) − x̂·mean(g·x̂))
 *   dw = Σ_rows dy ⊙ x̂, db = Σ_rows dy.
 * Rows variants: dx rows are independent (threads over rows); dw and db are
 * sums over rows, formed by threads over column chunks, each column summed
 * over t = 0..T-1 in order in double and added once, so the result does not
 * depend on the thread count. They therefore differ (by rounding) from
 * calling the one-row backward T times. */
#include "ops/ops_isa.h"

#include <math.h>
#include <stdlib.h>
#ifdef _OPENMP
#define OMP(directive) _Pragma(directive)
#else
#define OMP(directive)
#endif

enum { NORM_COL_CHUNK = 64 };   /* columns per dw/db reduction task (256 bytes of a row) */
#define NORM_MIN_PARALLEL 32768.0   /* T·D below which the rows variants stay on one thread */

/* Σ x², four independent double sums. */
static double sum_sq(const float *x, int64_t n)
{
    double s[4] = { 0, 0, 0, 0 };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++)
            s[l] += (double)x[i + l] * (double)x[i + l];
    for (; i < n; i++)
        s[0] += (double)x[i] * (double)x[i];
    return (s[0] + s[1]) + (s[2] + s[3]);
}

static double rms_inv(const float *x, int64_t D, float eps)
{
    return 1.0 / sqrt(sum_sq(x, D) / (double)D + (double)eps);
}

/* Mean and 1/std (biased variance) of x[D]: two passes, no E[x²]−E[x]² cancellation. */
static void ln_stats(const float *x, int64_t D, float eps, double *mean, double *rstd)
{
    double m = 0, var = 0;
    for (int64_t i = 0; i < D; i++)
        m += x[i];
    m /= (double)D;
    for (int64_t i = 0; i < D; i++)
        var += ((double)x[i] - m) * ((double)x[i] - m);
    var /= (double)D;
    *mean = m;
    *rstd = 1.0 / sqrt(var + (double)eps);
}

/* dw[i] += Σ_t dy[t][i]·(x[t][i] − a[t])·r[t], db[i] += Σ_t dy[t][i] (a NULL
 * means zeros; dw or db NULL skips it). Columns in chunks over threads, each
 * column's sum in double in row order: independent of the thread count. */
static void col_reduce(float *dw, float *db, const float *dy, const float *x, const double *a, const double *r,
                       int64_t T, int64_t D, int nth)
{
    const int64_t nchunk = (D + NORM_COL_CHUNK - 1) / NORM_COL_CHUNK;
    if (nth > nchunk)
        nth = (int)nchunk;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(dynamic, 1)")
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t c0 = c * NORM_COL_CHUNK, nc = D - c0 < NORM_COL_CHUNK ? D - c0 : NORM_COL_CHUNK;
        double sw[NORM_COL_CHUNK] = { 0 }, sb[NORM_COL_CHUNK] = { 0 };
        for (int64_t t = 0; t < T; t++) {
            const float *dyt = dy + t * D + c0, *xt = x + t * D + c0;
            const double at = a ? a[t] : 0.0, rt = r[t];
            for (int64_t i = 0; i < nc; i++) {
                sw[i] += (double)dyt[i] * (((double)xt[i] - at) * rt);
                sb[i] += dyt[i];
            }
        }
        for (int64_t i = 0; i < nc; i++) {
            if (dw)
                dw[c0 + i] = (float)((double)dw[c0 + i] + sw[i]);
            if (db)
                db[c0 + i] = (float)((double)db[c0 + i] + sb[i]);
        }
    }
}

/* ---- RMSNorm ---------------------------------------------------------------- */

void dm_rmsnorm(float *y, const float *x, const float *w, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    const float inv = (float)rms_inv(x, D, eps);
    for (int64_t i = 0; i < D; i++)
        y[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

/* dx += r·g − r³·x·Σ(g·x)/D for one row, r = 1/rms given. */
static void rms_dx(float *dx, const float *dy, const float *x, const float *w, int64_t D, double r)
{
    double s = 0;
    for (int64_t i = 0; i < D; i++)
        s += (double)dy[i] * (w ? w[i] : 1.0f) * x[i];
    const double c = r * r * r * s / (double)D;
    for (int64_t i = 0; i < D; i++)
        dx[i] = (float)((double)dx[i] + r * ((double)dy[i] * (w ? w[i] : 1.0f)) - c * x[i]);
}

void dm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    const double r = rms_inv(x, D, eps);
    rms_dx(dx, dy, x, w, D, r);
    if (w && dw)
        for (int64_t i = 0; i < D; i++)
            dw[i] = (float)((double)dw[i] + (double)dy[i] * x[i] * r);
}

void dm_rmsnorm_rows(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps)
{
    const int nth = dm_ops_threads((double)T * (double)D, NORM_MIN_PARALLEL);
    (void)nth;   /* only the pragma reads it: unused without OpenMP */
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(static)")
    for (int64_t t = 0; t < T; t++)
        dm_rmsnorm(y + t * D, x + t * D, w, D, eps);
}

void dm_rmsnorm_backward_rows(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t T,
                              int64_t D, float eps)
{
    DM_ASSERT(D > 0 && T >= 0);
    const int nth = dm_ops_threads((double)T * (double)D, NORM_MIN_PARALLEL);
    double *r = dm_malloc((size_t)(T > 0 ? T : 1) * sizeof(double));
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(static)")
    for (int64_t t = 0; t < T; t++) {
        r[t] = rms_inv(x + t * D, D, eps);
        rms_dx(dx + t * D, dy + t * D, x + t * D, w, D, r[t]);
    }
    if (w && dw)
        col_reduce(dw, NULL, dy, x, NULL, r, T, D, nth);
    free(r);
}

/* ---- LayerNorm -------------------------------------------------------------- */

/* w or b may be NULL (ones / zeros). */
void dm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    double mean, inv;
    ln_stats(x, D, eps, &mean, &inv);
    for (int64_t i = 0; i < D; i++)
        y[i] = (float)(((double)x[i] - mean) * inv) * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
}

/* dx += r·(g − mean(g) − x̂·mean(g·x̂)) for one row, mean and r = 1/std given. */
static void ln_dx(float *dx, const float *dy, const float *x, const float *w, int64_t D, double mean, double r)
{
    double sg = 0, sgx = 0;
    for (int64_t i = 0; i < D; i++) {
        const double g = (double)dy[i] * (w ? w[i] : 1.0f), xh = ((double)x[i] - mean) * r;
        sg += g;
        sgx += g * xh;
    }
    sg /= (double)D;
    sgx /= (double)D;
    for (int64_t i = 0; i < D; i++) {
        const double g = (double)dy[i] * (w ? w[i] : 1.0f), xh = ((double)x[i] - mean) * r;
        dx[i] = (float)((double)dx[i] + r * (g - sg - xh * sgx));
    }
}

void dm_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                           const float *b, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    double mean, r;
    ln_stats(x, D, eps, &mean, &r);
    ln_dx(dx, dy, x, w, D, mean, r);
    for (int64_t i = 0; i < D; i++) {
        if (w && dw)
            dw[i] = (float)((double)dw[i] + (double)dy[i] * (((double)x[i] - mean) * r));
        if (b && db)
            db[i] = (float)((double)db[i] + dy[i]);
    }
}

void dm_layernorm_rows(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t D, float eps)
{
    const int nth = dm_ops_threads((double)T * (double)D, NORM_MIN_PARALLEL);
    (void)nth;   /* only the pragma reads it: unused without OpenMP */
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(static)")
    for (int64_t t = 0; t < T; t++)
        dm_layernorm(y + t * D, x + t * D, w, b, D, eps);
}

void dm_layernorm_backward_rows(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                                const float *b, int64_t T, int64_t D, float eps)
{
    DM_ASSERT(D > 0 && T >= 0);
    const int nth = dm_ops_threads((double)T * (double)D, NORM_MIN_PARALLEL);
    double *st = dm_malloc((size_t)(T > 0 ? T : 1) * 2 * sizeof(double));   /* mean[T], r[T] */
    double *mean = st, *r = st + T;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(static)")
    for (int64_t t = 0; t < T; t++) {
        ln_stats(x + t * D, D, eps, &mean[t], &r[t]);
        ln_dx(dx + t * D, dy + t * D, x + t * D, w, D, mean[t], r[t]);
    }
    float *dw_ = w ? dw : NULL, *db_ = b ? db : NULL;
    if (dw_ || db_)
        col_reduce(dw_, db_, dy, x, mean, r, T, D, nth);
    free(st);
}
