/* test_vec — the vector ops (dot, axpy, scale, add, RMSNorm, LayerNorm,
 * softmax, silu_mul, sigmoid) against float64 formulas written here, the
 * AVX2 twins of dot/axpy against the same oracle (when the CPU has AVX2),
 * aliasing (y == x, h == g) and the edge values (±inf, large magnitudes,
 * fully masked softmax rows).
 *
 * Tolerances (relative to the scale of the computation):
 *   TOL_SUM   f32 accumulation of n products: |err| <= TOL_SUM · Σ|a·b|
 *   TOL_ULP   one or two float roundings:      |err| <= TOL_ULP · magnitude
 *   TOL_FUNC  expf-based results (libm expf is within 1 ulp, then 2-3 ops) */
#include "ops/ops_isa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_SUM 1e-5
#define TOL_ULP 2.5e-7
#define TOL_FUNC 1e-6

static int g_fail;

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1p-53;
}

static float *rand_vec(int64_t n, double lo, double hi)
{
    float *v = malloc((size_t)(n + 1) * 4);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * urand());
    return v;
}

/* |got − want| <= tol · mag, NaN never passes. */
static void expect(const char *what, int64_t i, double got, double want, double tol, double mag)
{
    if (!(fabs(got - want) <= tol * mag + 1e-38)) {
        printf("FAIL %s [%lld]: got %.9g, want %.9g (err %.3g > %.3g)\n", what, (long long)i, got, want,
               fabs(got - want), tol * mag);
        g_fail++;
    }
}

static void test_dot_axpy(void)
{
    static const int64_t ns[] = { 0, 1, 7, 8, 31, 32, 33, 1000, 4099 };
    const bool avx2 = dm_mm_isa_get(DM_MM_ISA_AVX2) != NULL;
    for (size_t c = 0; c < sizeof ns / sizeof ns[0]; c++) {
        int64_t n = ns[c];
        float *a = rand_vec(n, -2, 2), *b = rand_vec(n, -2, 2), *y = rand_vec(n, -1, 1);
        float *y1 = malloc((size_t)(n + 1) * 4), *y2 = malloc((size_t)(n + 1) * 4);
        double s = 0, m = 0;
        for (int64_t i = 0; i < n; i++)
            s += (double)a[i] * b[i], m += fabs((double)a[i] * b[i]);
        expect("dm_dot", n, dm_dot(a, b, n), s, TOL_SUM, m);
        expect("dm_dot_ref", n, dm_dot_ref(a, b, n), s, TOL_ULP, m);
        if (avx2)
            expect("dm_dot_avx2", n, dm_dot_avx2(a, b, n), s, TOL_SUM, m);
        const float alpha = -0.37f;
        memcpy(y1, y, (size_t)n * 4);
        memcpy(y2, y, (size_t)n * 4);
        dm_axpy(y1, alpha, a, n);
        dm_axpy_ref(y2, alpha, a, n);
        for (int64_t i = 0; i < n; i++) {
            double want = y[i] + (double)alpha * a[i], mag = fabs(y[i]) + fabs((double)alpha * a[i]);
            expect("dm_axpy", i, y1[i], want, TOL_ULP, mag);
            expect("dm_axpy_ref", i, y2[i], want, TOL_ULP, mag);
        }
        if (avx2) {
            memcpy(y1, y, (size_t)n * 4);
            dm_axpy_avx2(y1, alpha, a, n);
            for (int64_t i = 0; i < n; i++)
                expect("dm_axpy_avx2", i, y1[i], y[i] + (double)alpha * a[i], TOL_ULP,
                       fabs(y[i]) + fabs((double)alpha * a[i]));
        }
        memcpy(y1, y, (size_t)n * 4);
        dm_scale(y1, alpha, n);
        for (int64_t i = 0; i < n; i++)
            expect("dm_scale", i, y1[i], (double)alpha * y[i], TOL_ULP, fabs((double)alpha * y[i]));
        memcpy(y1, y, (size_t)n * 4);
        dm_add(y1, a, n);
        for (int64_t i = 0; i < n; i++)
            expect("dm_add", i, y1[i], (double)y[i] + a[i], TOL_ULP, fabs(y[i]) + fabs(a[i]));
        free(a), free(b), free(y), free(y1), free(y2);
    }
}

static void test_rmsnorm(void)
{
    const int64_t D = 6144;
    const float eps = 1e-5f;
    float *x = rand_vec(D, -3, 3), *w = rand_vec(D, 0.5, 1.5), *y = malloc(D * 4);
    double ss = 0;
    for (int64_t i = 0; i < D; i++)
        ss += (double)x[i] * x[i];
    double inv = 1.0 / sqrt(ss / D + eps);
    dm_rmsnorm(y, x, w, D, eps);
    for (int64_t i = 0; i < D; i++)
        expect("dm_rmsnorm", i, y[i], w[i] * x[i] * inv, TOL_FUNC, fabs(w[i] * x[i] * inv));
    dm_rmsnorm(y, x, NULL, D, eps);
    for (int64_t i = 0; i < D; i++)
        expect("dm_rmsnorm w=NULL", i, y[i], x[i] * inv, TOL_FUNC, fabs(x[i] * inv));
    memcpy(y, x, D * 4);
    dm_rmsnorm(y, y, w, D, eps);   /* in place */
    for (int64_t i = 0; i < D; i++)
        expect("dm_rmsnorm in place", i, y[i], w[i] * x[i] * inv, TOL_FUNC, fabs(w[i] * x[i] * inv));
    /* all zeros: eps keeps it finite */
    memset(x, 0, D * 4);
    dm_rmsnorm(y, x, w, D, eps);
    for (int64_t i = 0; i < D; i++)
        expect("dm_rmsnorm zeros", i, y[i], 0.0, 0, 1);
    free(x), free(w), free(y);
}

static void test_layernorm(void)
{
    const int64_t D = 128;
    const float eps = 1e-6f;
    /* a large common offset: the two-pass variance must not cancel */
    float *x = rand_vec(D, 999, 1001), *w = rand_vec(D, 0.5, 1.5), *b = rand_vec(D, -1, 1);
    float *y = malloc(D * 4);
    double mean = 0, var = 0;
    for (int64_t i = 0; i < D; i++)
        mean += x[i];
    mean /= D;
    for (int64_t i = 0; i < D; i++)
        var += (x[i] - mean) * (x[i] - mean);
    var /= D;   /* biased, as torch.nn.LayerNorm */
    double inv = 1.0 / sqrt(var + eps);
    dm_layernorm(y, x, w, b, D, eps);
    for (int64_t i = 0; i < D; i++) {
        double z = (x[i] - mean) * inv;
        expect("dm_layernorm", i, y[i], w[i] * z + b[i], TOL_FUNC, fabs(w[i] * z) + fabs(b[i]));
    }
    memcpy(y, x, D * 4);
    dm_layernorm(y, y, NULL, NULL, D, eps);
    for (int64_t i = 0; i < D; i++) {
        double z = (x[i] - mean) * inv;
        expect("dm_layernorm in place, no affine", i, y[i], z, TOL_FUNC, fabs(z) + 1e-3);
    }
    free(x), free(w), free(b), free(y);
}

static void test_softmax(void)
{
    const int64_t n = 1000;
    float *x = rand_vec(n, -20, 20), *y = malloc(n * 4);
    x[3] = 1000.0f;   /* would overflow expf without the max shift */
    x[4] = 999.0f;
    x[7] = -INFINITY; /* masked */
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, x[i]);
    for (int64_t i = 0; i < n; i++)
        sum += exp((double)x[i] - mx);
    memcpy(y, x, n * 4);
    dm_softmax(y, n);
    double total = 0;
    for (int64_t i = 0; i < n; i++) {
        double want = exp((double)x[i] - mx) / sum;
        expect("dm_softmax", i, y[i], want, TOL_FUNC, want + 1e-30);
        total += y[i];
    }
    expect("dm_softmax sum", 0, total, 1.0, TOL_FUNC, 1.0);
    for (int64_t i = 0; i < n; i++)
        y[i] = -INFINITY;
    dm_softmax(y, n);
    for (int64_t i = 0; i < n; i++)
        expect("dm_softmax all -inf -> 0", i, y[i], 0.0, 0, 1);
    float one = 5.0f;
    dm_softmax(&one, 1);
    expect("dm_softmax n=1", 0, one, 1.0, 0, 1);
    free(x), free(y);
}

static void test_silu_sigmoid(void)
{
    const int64_t n = 513;
    float *g = rand_vec(n, -12, 12), *u = rand_vec(n, -3, 3), *h = malloc(n * 4);
    g[0] = -100.0f, g[1] = 100.0f, g[2] = -1000.0f, g[3] = 0.0f;
    dm_silu_mul(h, g, u, n);
    for (int64_t i = 0; i < n; i++) {
        double want = (double)g[i] / (1.0 + exp(-(double)g[i])) * u[i];
        expect("dm_silu_mul", i, h[i], want, TOL_FUNC, fabs(want) + 1e-30);
    }
    float *g2 = malloc(n * 4);
    memcpy(g2, g, n * 4);
    dm_silu_mul(g2, g2, u, n);   /* h aliases g */
    for (int64_t i = 0; i < n; i++)
        expect("dm_silu_mul h == g", i, g2[i], h[i], 0, 1);
    static const float xs[] = { 0, 1, -1, 4.5f, -7.25f, 30, -30, 100, -100, 1000, -1000 };
    for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) {
        double want = 1.0 / (1.0 + exp(-(double)xs[i]));
        expect("dm_sigmoid", (int64_t)i, dm_sigmoid(xs[i]), want, TOL_FUNC, want + 1e-30);
    }
    free(g), free(u), free(h), free(g2);
}

int main(void)
{
    test_dot_axpy();
    test_rmsnorm();
    test_layernorm();
    test_softmax();
    test_silu_sigmoid();
    if (g_fail) {
        printf("test_vec: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_vec: all passed\n");
    return 0;
}
