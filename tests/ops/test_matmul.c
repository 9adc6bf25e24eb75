/* test_matmul — dm_matmul / dm_matmul_xw (and their _ref twins) in every
 * weight format against a float64 oracle computed here from the formats
 * stage's reference row decoder (dm_wmat_row_f32), for every kernel table
 * this CPU can run (scalar, AVX2, AVX-512, AVX-512 BF16: DM_NO_SIMD,
 * DM_NO_AVX512 and DM_BF16_DOT select these same tables), both regimes
 * (T = 1, 3, 4, 5, 9, 24 stream the weights in passes of up to 4 tokens,
 * T = 25, 64 take the blocked GEMM), every activation policy (f32, bf16 for
 * BF16 weights, bf16 for every exact format), odd N
 * and K, row views whose FP8 row0 is not a multiple of 128, FP8 blocks with
 * scales >= 2^8 and subnormal codes, FP8 NaN codes, a matrix large enough
 * for multi-chunk streaming, and calls from inside an OpenMP parallel region.
 *
 * Error is measured against the scale of the sum, S = Σ_k |x_k|·|w_k|:
 *   TOL_F32      f32 activations: |y − ref| <= TOL_F32 · S
 *   TOL_REF      the _ref twins (double accumulation, one rounding)
 *   TOL_BF16_ACT bf16 activations (AVX512_BF16 table, DM_MM_ACT_BF16 with
 *                BF16 weights or DM_MM_ACT_BF16_ALL, T above the streaming range):
 *                rounding x to bf16 moves each product by <= 2^-9 relative,
 *                so the bound is 2^-8 · S; in addition the result must match,
 *                within TOL_F32, an oracle that rounds x to bf16 itself (so no
 *                weight was rounded).
 * Tile decoders (dec_f32) must reproduce dm_wmat_row_f32 bit for bit;
 * dec_bf16 too, except NVFP4 within one rounding (see bf16_matches). */
#include "ops/ops_isa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define TOL_F32 1e-5
#define TOL_REF 1e-6
#define TOL_BF16_ACT (1.0 / 256)

static int g_fail;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void)   /* [0, 1) */
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1p-53;
}

typedef struct mat {
    uint8_t *data, *scale;
    float scale2;
    dm_wmat w;   /* the whole matrix */
} mat;

/* Random [N][K] matrix in format f; rows get magnitudes spread over three
 * decades so FP8 / NVFP4 / MXFP4 block scales differ. */
static void mat_encode(mat *m, dm_wfmt f, int64_t N, int64_t K, const float *src)
{
    m->data = malloc(dm_wfmt_data_bytes(f, N, K) + 1);
    m->scale = malloc(dm_wfmt_scale_bytes(f, N, K) + 1);
    dm_wmat_encode(f, src, N, K, m->data, m->scale, &m->scale2);
    m->w = dm_wmat_make(f, N, K, m->data, dm_wfmt_scale_bytes(f, N, K) ? m->scale : NULL, m->scale2);
}

/* Row i gets magnitude mag(i) (10^[-2, 1) at random when mag is NULL). */
static void mat_make_mag(mat *m, dm_wfmt f, int64_t N, int64_t K, double (*mag)(int64_t))
{
    float *src = malloc((size_t)(N * K) * 4);
    for (int64_t i = 0; i < N; i++) {
        double mg = mag ? mag(i) : pow(10.0, -2.0 + 3.0 * urand());
        for (int64_t j = 0; j < K; j++)
            src[i * K + j] = (float)((2 * urand() - 1) * mg);
    }
    mat_encode(m, f, N, K, src);
    free(src);
}

static void mat_make(mat *m, dm_wfmt f, int64_t N, int64_t K) { mat_make_mag(m, f, N, K, NULL); }

static void mat_free(mat *m)
{
    free(m->data);
    free(m->scale);
}

static float *rand_vec(int64_t n)
{
    float *v = malloc((size_t)n * 4 + 4);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(2 * urand() - 1);
    return v;
}

static float to_bf16(float f) { return dm_bf16_to_f32(dm_f32_to_bf16(f)); }

/* ref[t][n] = Σ_k x[t][k]·w[n][k] in double (x rounded to bf16 if asked),
 * mag[t][n] = Σ_k |x|·|w|. */
static void oracle_xwt(const dm_wmat *w, const float *x, int T, bool bf16, double *ref, double *mag)
{
    const int64_t N = w->rows, K = w->cols;
    float *row = malloc((size_t)K * 4);
    for (int64_t n = 0; n < N; n++) {
        dm_wmat_row_f32(w, n, row);
        for (int t = 0; t < T; t++) {
            double s = 0, a = 0;
            for (int64_t k = 0; k < K; k++) {
                double xv = bf16 ? to_bf16(x[t * K + k]) : x[t * K + k];
                s += xv * row[k];
                a += fabs(xv * row[k]);
            }
            ref[t * N + n] = s;
            mag[t * N + n] = a;
        }
    }
    free(row);
}

/* Worst |y − ref| / (tol·mag) over n outputs; reports and counts a failure if > 1. */
static void check(const char *what, const float *y, const double *ref, const double *mag, int64_t n, double tol)
{
    double worst = 0;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        double bound = tol * mag[i] + 1e-30;
        double e = fabs((double)y[i] - ref[i]) / bound;
        if (!(e <= worst))   /* NaN counts as worst */
            worst = e, at = i;
        if (isnan(e))
            break;
    }
    if (worst > 1.0) {
        printf("FAIL %s: element %lld = %.9g, want %.9g (err %.3g > tol %.3g * |x||w| %.3g)\n", what,
               (long long)at, y[at], ref[at], fabs((double)y[at] - ref[at]), tol, mag[at]);
        g_fail++;
    }
}

static bool uses_bf16(const dm_mm_isa *isa, dm_mm_act act, dm_wfmt f, int T)
{
    if (!isa->gemm_bf16 || T <= DM_MM_STREAM_T)
        return false;
    return act == DM_MM_ACT_BF16_ALL ? f != DM_WFMT_F32 && f != DM_WFMT_F16
                                     : act == DM_MM_ACT_BF16 && f == DM_WFMT_BF16;
}

static const dm_mm_isa *g_isa[DM_MM_ISA_COUNT];
static int g_nisa;

static const int g_Ts_all[] = { 1, 3, 4, 5, 9, 24, 25, 64, 0 };

static void test_matmul_view_T(const dm_wmat *w, const char *label, const int *Ts)
{
    const int64_t N = w->rows, K = w->cols;
    for (size_t ti = 0; Ts[ti]; ti++) {
        const int T = Ts[ti];
        float *x = rand_vec(T * K), *y = malloc((size_t)(T * N) * 4);
        double *ref = malloc((size_t)(T * N) * 8), *mag = malloc((size_t)(T * N) * 8);
        double *refb = malloc((size_t)(T * N) * 8), *magb = malloc((size_t)(T * N) * 8);
        oracle_xwt(w, x, T, false, ref, mag);
        oracle_xwt(w, x, T, true, refb, magb);
        char what[256];
        snprintf(what, sizeof what, "%s T=%d dm_matmul_ref", label, T);
        dm_matmul_ref(y, x, w, T);
        check(what, y, ref, mag, T * N, TOL_REF);
        for (int v = 0; v < g_nisa; v++) {
            for (int act = 0; act <= DM_MM_ACT_BF16_ALL; act++) {
                const dm_mm_isa *isa = g_isa[v];
                memset(y, 0xff, (size_t)(T * N) * 4);   /* NaN: every output must be written */
                if (act != DM_MM_ACT_F32 && !isa->gemm_bf16)
                    continue;
                dm_matmul_isa(isa, (dm_mm_act)act, y, x, w, T);
                snprintf(what, sizeof what, "%s T=%d isa=%s act=%d", label, T, isa->name, act);
                if (uses_bf16(isa, (dm_mm_act)act, w->fmt, T)) {
                    check(what, y, ref, mag, T * N, TOL_BF16_ACT);
                    strncat(what, " (vs bf16-rounded x)", sizeof what - strlen(what) - 1);
                    check(what, y, refb, magb, T * N, TOL_F32);
                } else {
                    check(what, y, ref, mag, T * N, TOL_F32);
                }
            }
        }
        dm_matmul(y, x, w, T);
        snprintf(what, sizeof what, "%s T=%d dm_matmul", label, T);
        check(what, y, ref, mag, T * N, dm_ops_precise() ? TOL_F32 : TOL_BF16_ACT);
        free(x), free(y), free(ref), free(mag), free(refb), free(magb);
    }
}

static void test_matmul_view(const dm_wmat *w, const char *label) { test_matmul_view_T(w, label, g_Ts_all); }

static void test_matmul_xw_view(const dm_wmat *w, const char *label)
{
    static const int Ts[] = { 1, 3, 17, 64 };
    const int64_t N = w->rows, K = w->cols;
    float *row = malloc((size_t)K * 4);
    for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++) {
        const int T = Ts[ti];
        float *x = rand_vec(T * N), *y = malloc((size_t)(T * K) * 4);
        double *ref = calloc((size_t)(T * K), 8), *mag = calloc((size_t)(T * K), 8);
        for (int64_t n = 0; n < N; n++) {
            dm_wmat_row_f32(w, n, row);
            for (int t = 0; t < T; t++)
                for (int64_t k = 0; k < K; k++) {
                    ref[t * K + k] += (double)x[t * N + n] * row[k];
                    mag[t * K + k] += fabs((double)x[t * N + n] * row[k]);
                }
        }
        char what[256];
        snprintf(what, sizeof what, "%s T=%d dm_matmul_xw_ref", label, T);
        dm_matmul_xw_ref(y, x, w, T);
        check(what, y, ref, mag, T * K, TOL_REF);
        for (int v = 0; v < g_nisa; v++) {
            memset(y, 0xff, (size_t)(T * K) * 4);
            dm_matmul_xw_isa(g_isa[v], y, x, w, T);
            snprintf(what, sizeof what, "%s T=%d xw isa=%s", label, T, g_isa[v]->name);
            check(what, y, ref, mag, T * K, TOL_F32);
        }
        dm_matmul_xw(y, x, w, T);
        snprintf(what, sizeof what, "%s T=%d dm_matmul_xw", label, T);
        check(what, y, ref, mag, T * K, TOL_F32);
        free(x), free(y), free(ref), free(mag);
    }
    free(row);
}

static bool same_float(float a, float b)
{
    return (isnan(a) && isnan(b)) || memcmp(&a, &b, 4) == 0;
}

/* v·s against the reference value r: exact, except that for NVFP4 the
 * reference rounds e4m3(block scale)·scale2 before multiplying by the E2M1
 * value while dec_bf16 keeps e2m1·e4m3 exact and scales once: one rounding
 * apart (TOL_NVFP4_ULP). */
#define TOL_NVFP4_ULP 0x1p-23
static bool bf16_matches(float v, float s, float r, dm_wfmt f)
{
    if (f != DM_WFMT_NVFP4)
        return same_float(v * s, r);
    return fabs((double)v * s - r) <= TOL_NVFP4_ULP * fabs(r);
}

/* dec_f32 of every table must equal dm_wmat_row_f32 bit for bit; dec_bf16
 * times its scale must give the same values exactly. Segments start at
 * multiples of 16 and have odd lengths where the format allows. */
static void test_decoders(const dm_wmat *w, const char *label)
{
    const int64_t K = w->cols;
    float *row = malloc((size_t)K * 4), *seg = malloc((size_t)K * 4 + 64);
    uint16_t *bseg = malloc((size_t)K * 2 + 64);
    bool fp4 = w->fmt == DM_WFMT_NVFP4 || w->fmt == DM_WFMT_MXFP4;
    for (int64_t r = 0; r < w->rows; r += 7) {
        dm_wmat_row_f32(w, r, row);
        for (int v = 0; v < g_nisa; v++) {
            const dm_mm_isa *isa = g_isa[v];
            for (int64_t k0 = 0; k0 < K; k0 += 128) {
                int64_t n = K - k0 < 128 ? K - k0 : 128;
                if (!fp4 && n > 5)
                    n -= 5;   /* odd tails */
                isa->dec_f32(w, r, k0, n, seg);
                for (int64_t j = 0; j < n; j++)
                    if (!same_float(seg[j], row[k0 + j])) {
                        printf("FAIL %s isa=%s dec_f32 row %lld col %lld: %.9g, want %.9g\n", label,
                               isa->name, (long long)r, (long long)(k0 + j), seg[j], row[k0 + j]);
                        g_fail++;
                        break;
                    }
                if (!isa->dec_bf16 || w->fmt == DM_WFMT_F32 || w->fmt == DM_WFMT_F16)
                    continue;
                float s = isa->dec_bf16(w, r, k0, n, bseg);
                for (int64_t j = 0; j < n; j++)
                    if (!bf16_matches(dm_bf16_to_f32(bseg[j]), s, row[k0 + j], w->fmt)) {
                        printf("FAIL %s isa=%s dec_bf16 row %lld col %lld: %.9g * %.9g, want %.9g\n",
                               label, isa->name, (long long)r, (long long)(k0 + j),
                               dm_bf16_to_f32(bseg[j]), s, row[k0 + j]);
                        g_fail++;
                        break;
                    }
            }
        }
    }
    free(row), free(seg), free(bseg);
}

/* dm_matmul called from every thread of a parallel region must run serially
 * in each and still be right. */
static void test_nested(const dm_wmat *w)
{
#ifdef _OPENMP
    const int T = 17;
    const int64_t N = w->rows, K = w->cols;
    float *x = rand_vec(T * K);
    double *ref = malloc((size_t)(T * N) * 8), *mag = malloc((size_t)(T * N) * 8);
    oracle_xwt(w, x, T, false, ref, mag);
    int fails = 0;
#pragma omp parallel num_threads(2) reduction(+ : fails)
    {
        float *y = malloc((size_t)(T * N) * 4);
        dm_matmul_isa(dm_mm_isa_best(), DM_MM_ACT_F32, y, x, w, T);
        for (int64_t i = 0; i < T * N; i++)
            if (fabs(y[i] - ref[i]) > TOL_F32 * mag[i] + 1e-30)
                fails++;
        free(y);
    }
    if (fails) {
        printf("FAIL nested dm_matmul: %d wrong outputs\n", fails);
        g_fail++;
    }
    free(x), free(ref), free(mag);
#else
    (void)w;
#endif
}

/* An FP8 matrix with the two NaN codes must give NaN in exactly those outputs. */
static void test_fp8_nan(void)
{
    mat m;
    mat_make(&m, DM_WFMT_FP8, 5, 40);
    m.data[1 * 40 + 3] = 0x7f;
    m.data[3 * 40 + 39] = 0xff;
    float x[40], y[5];
    for (int k = 0; k < 40; k++)
        x[k] = 1.0f;
    float yk[3 * 40], xn[3 * 5];
    for (int i = 0; i < 15; i++)
        xn[i] = 1.0f;
    for (int v = 0; v < g_nisa; v++) {
        dm_matmul_isa(g_isa[v], DM_MM_ACT_F32, y, x, &m.w, 1);
        for (int n = 0; n < 5; n++)
            if (isnan(y[n]) != (n == 1 || n == 3)) {
                printf("FAIL fp8 NaN codes isa=%s: y[%d] = %g\n", g_isa[v]->name, n, y[n]);
                g_fail++;
            }
        dm_matmul_xw_isa(g_isa[v], yk, xn, &m.w, 3);   /* columns 3 and 39 hold the NaNs */
        for (int i = 0; i < 3 * 40; i++)
            if (isnan(yk[i]) != (i % 40 == 3 || i % 40 == 39)) {
                printf("FAIL fp8 NaN codes xw isa=%s: y[%d][%d] = %g\n", g_isa[v]->name, i / 40, i % 40, yk[i]);
                g_fail++;
            }
    }
    mat_free(&m);

    /* K = 263: NaN codes inside a full 128-column block and in the partial last block */
    mat_make(&m, DM_WFMT_FP8, 9, 263);
    m.data[2 * 263 + 200] = 0xff;
    m.data[7 * 263 + 262] = 0x7f;
    float xb[5 * 263], yb[5 * 9];
    for (int i = 0; i < 5 * 263; i++)
        xb[i] = 0.5f;
    for (int v = 0; v < g_nisa; v++) {
        dm_matmul_isa(g_isa[v], DM_MM_ACT_F32, yb, xb, &m.w, 5);
        for (int i = 0; i < 5 * 9; i++)
            if (isnan(yb[i]) != (i % 9 == 2 || i % 9 == 7)) {
                printf("FAIL fp8 NaN codes K=263 isa=%s: y[%d][%d] = %g\n", g_isa[v]->name, i / 9, i % 9, yb[i]);
                g_fail++;
            }
    }
    mat_free(&m);
}

/* FP8 row blocks whose scales exceed 2^8 (the streaming kernel's "alt"
 * decode), and blocks mixing huge and small rows so many weights land on
 * E4M3 subnormal codes: rows 0..127 ~1e6, 128..255 ~1, 256.. alternate 1e6 / 20. */
static double fp8_mag(int64_t i)
{
    return i < 128 ? 1e6 : i < 256 ? 1.0 : (i & 1) ? 1e6 : 20.0;
}

static void test_fp8_scales(void)
{
    mat m;
    mat_make_mag(&m, DM_WFMT_FP8, 300, 263, fp8_mag);
    test_decoders(&m.w, "fp8 big/subnormal scales");
    test_matmul_view(&m.w, "fp8 big/subnormal scales");
    test_matmul_xw_view(&m.w, "fp8 big/subnormal scales");
    dm_wmat v = dm_wmat_rows(&m.w, 100, 190);
    test_matmul_view(&v, "fp8 big/subnormal scales rows[100,290)");
    mat_free(&m);
}

/* A matrix big enough (2.4 MB) that multi-pass streaming splits each
 * thread's band into several row chunks. */
static void test_stream_chunks(void)
{
    static const int Ts[] = { 9, 24, 0 };
    mat m;
    mat_make(&m, DM_WFMT_F32, 600, 1031);
    test_matmul_view_T(&m.w, "f32 N=600 K=1031", Ts);
    mat_free(&m);
}

int main(int argc, char **argv)
{
    /* The float64 oracles run serially between the parallel calls; with the
     * default OMP_WAIT_POLICY the idle OpenMP worker spins meanwhile, which
     * on a shared 2-core machine slows this test several times over. libgomp
     * reads the variable when it loads, so set it and start again. */
    if (argc >= 1 && !getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);   /* returns only on failure: then just go on */
    }
    for (int id = 0; id < DM_MM_ISA_COUNT; id++)
        if (dm_mm_isa_get((dm_mm_isa_id)id))
            g_isa[g_nisa++] = dm_mm_isa_get((dm_mm_isa_id)id);
    printf("kernel tables:");
    for (int v = 0; v < g_nisa; v++)
        printf(" %s", g_isa[v]->name);
    printf(" (dm_matmul uses %s)\n", dm_mm_isa_best()->name);

    /* {N, K for F32/F16/BF16/FP8 (odd), K for FP4 (multiple of 32)} */
    static const int64_t shapes[][3] = { { 37, 97, 96 }, { 261, 391, 352 } };
    for (int f = 0; f < DM_WFMT_COUNT; f++) {
        bool fp4 = f == DM_WFMT_NVFP4 || f == DM_WFMT_MXFP4;
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int64_t N = shapes[s][0], K = fp4 ? shapes[s][2] : shapes[s][1];
            mat m;
            mat_make(&m, (dm_wfmt)f, N, K);
            char label[128];
            snprintf(label, sizeof label, "%s N=%lld K=%lld", dm_wfmt_name((dm_wfmt)f), (long long)N,
                     (long long)K);
            test_decoders(&m.w, label);
            test_matmul_view(&m.w, label);
            test_matmul_xw_view(&m.w, label);
            if (s == 1) {
                /* rows [45, 45+203): row0 = 45 and a 128-row block boundary inside */
                dm_wmat v = dm_wmat_rows(&m.w, 45, 203);
                strncat(label, " rows[45,248)", sizeof label - strlen(label) - 1);
                test_decoders(&v, label);
                test_matmul_view(&v, label);
                test_matmul_xw_view(&v, label);
                if (f == DM_WFMT_BF16)
                    test_nested(&v);
            }
            mat_free(&m);
        }
    }
    test_fp8_nan();
    test_fp8_scales();
    test_stream_chunks();
    if (g_fail) {
        printf("test_matmul: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_matmul: all passed\n");
    return 0;
}
