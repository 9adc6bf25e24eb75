/* vec — the elementwise and reduction ops of the forward pass: dot, axpy,
 * scale, add, RMSNorm, LayerNorm, softmax, SiLU-gating and the sigmoid.
 * Reductions accumulate in double (D is at most a few thousand, and the
 * norms and softmax feed routing decisions where f32 summation order would
 * show up as flipped near-ties). dm_dot and dm_axpy have AVX2 twins
 * (vec_avx2.c) chosen at run time; the `_ref` versions here are the oracle. */
#include "ops/ops_isa.h"

#include <math.h>

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

void dm_rmsnorm(float *y, const float *x, const float *w, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    const float inv = (float)(1.0 / sqrt(sum_sq(x, D) / (double)D + (double)eps));
    for (int64_t i = 0; i < D; i++)
        y[i] = x[i] * inv * (w ? w[i] : 1.0f);
}

/* w or b may be NULL (ones / zeros). Two passes: mean, then the biased
 * variance of the centred values (no E[x²]−E[x]² cancellation). */
void dm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t D, float eps)
{
    DM_ASSERT(D > 0);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < D; i++)
        mean += x[i];
    mean /= (double)D;
    for (int64_t i = 0; i < D; i++)
        var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)D;
    const double inv = 1.0 / sqrt(var + (double)eps);
    for (int64_t i = 0; i < D; i++)
        y[i] = (float)(((double)x[i] - mean) * inv) * (w ? w[i] : 1.0f) + (b ? b[i] : 0.0f);
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
