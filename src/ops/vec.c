/* vec — the elementwise and reduction ops: dot, axpy, scale, add, softmax,
 * SiLU-gating and the sigmoid, with the backward of softmax and SiLU-gating
 * beside their forwards (the norms are in norm.c). Reductions accumulate in
 * double (softmax feeds routing decisions where f32 summation order would
 * show up as flipped near-ties). dm_dot and dm_axpy have AVX2 twins
 * (vec_avx2.c) chosen at run time; the `_ref` versions here are the oracle. */
#include "ops/ops_isa.h"

#include <math.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int dm_ops_threads(double work, double min_work)
{
#ifdef _OPENMP
    if (omp_in_parallel())
        return 1;
#endif
    return work < min_work ? 1 : dm_threads_get();
}

float dm_dot_ref(const float *a, const float *b, int64_t n)
{
    double s[4] = { 0, 0, 0, 0 };
    int64_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; l++)
            s[l] += (double)a[i + l] * (double)b[i + l];
    for (; i < n; i++)
        s[0] += (double)a[i] * (double)b[i];
    return (float)((s[0] + s[1]) + (s[2] + s[3]));
}

float dm_dot(const float *a, const float *b, int64_t n)
{
    const dm_cpu_features *f = dm_cpu();
    return f->avx2 && f->fma ? dm_dot_avx2(a, b, n) : dm_dot_ref(a, b, n);
}

void dm_axpy_ref(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

void dm_axpy(float *y, float a, const float *x, int64_t n)
{
    const dm_cpu_features *f = dm_cpu();
    if (f->avx2 && f->fma)
        dm_axpy_avx2(y, a, x, n);
    else
        dm_axpy_ref(y, a, x, n);
}

void dm_scale(float *x, float a, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        x[i] *= a;
}

void dm_add(float *y, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += x[i];
}

/* exp(x − max) / Σ. A row that is entirely −inf (fully masked) becomes all
 * zeros rather than NaN; NaN inputs propagate. */
void dm_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    if (mx == -INFINITY) {
        for (int64_t i = 0; i < n; i++)
            x[i] = 0.0f;
        return;
    }
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void dm_softmax_backward(float *dx, const float *dy, const float *y, int64_t n)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)y[i] * dy[i];
    for (int64_t i = 0; i < n; i++)
        dx[i] = (float)((double)dx[i] + (double)y[i] * ((double)dy[i] - s));
}

void dm_attn_softmax_backward(float *ds, const float *dp, const float *p, int64_t n, float scale)
{
    double s = 0;
    for (int64_t i = 0; i < n; i++)
        s += (double)p[i] * dp[i];
    for (int64_t i = 0; i < n; i++)
        ds[i] = (float)((double)scale * p[i] * ((double)dp[i] - s));
}

float dm_sigmoid(float x)
{
    return 1.0f / (1.0f + expf(-x));
}

void dm_silu_mul(float *h, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], ui = u[i];
        h[i] = gi / (1.0f + expf(-gi)) * ui;
    }
}

/* h = silu(g)·u: dh/dg = u·σ(g)·(1 + g·(1 − σ(g))), dh/du = silu(g). 1 − σ(g)
 * is formed without cancellation: e·σ with e = exp(−g) where g >= 0 (e <= 1),
 * and 1 − σ directly where g < 0 (σ < 1/2; e may be inf there, e·σ NaN). */
void dm_silu_mul_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const float gi = g[i], e = expf(-gi), sig = 1.0f / (1.0f + e);
        const float one_minus = gi >= 0 ? e * sig : 1.0f - sig;
        dg[i] += dh[i] * u[i] * (sig * (1.0f + gi * one_minus));
        du[i] += dh[i] * (gi * sig);
    }
}
