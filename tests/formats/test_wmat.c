/* test_wmat — weight matrices in every format (src/formats/wmat.c):
 *   - encode a random matrix (row magnitudes spread over 2^-6..2^6, outliers,
 *     all-zero blocks, tiny blocks) with dm_wmat_encode into deliberately
 *     unaligned buffers;
 *   - decode every row with dm_wmat_row_f32 and compare with a float64
 *     decoding written here from the format definitions (quant.md §2.1-2.4:
 *     bit-field formulas, scale indexing, nibble order), within DECODE_REL_TOL
 *     (the reference decoder multiplies in float; f32/f16/bf16 must be exact);
 *   - check the scales follow each format's recipe and each element's
 *     quantization error is at most half the gap of the element grid at its
 *     scaled value (saturation error beyond the grid's maximum), i.e. the
 *     encoder picked the nearest code; bf16/f16 within half an ulp;
 *   - row views: rows 200..330 of a 576-row tensor (FP8 scale block rows must
 *     follow the absolute row), views of views, for every format;
 *   - sizes, dm_wfmt_cols_ok and the name table. */
#include "ft_util.h"

#include <math.h>

#define DECODE_REL_TOL 1e-6       /* float products in the reference decoder vs float64 */
#define SLOP_REL 1e-5             /* rounding of x/scale in float before quantizing */
#define BF16_REL_ERR 0x1p-8       /* half an ulp of an 8-bit significand */
#define F16_REL_ERR 0x1p-11       /* half an ulp of an 11-bit significand */
#define F16_ABS_ERR 0x1p-25       /* half the f16 subnormal spacing */

/* ---- the formats, from their definitions ---- */

static double def_e4m3(uint8_t c)
{
    int e = (c >> 3) & 15, m = c & 7;
    double v = e == 0 ? ldexp(m, -9) : ldexp(8 + m, e - 10);
    return (c & 0x80) ? -v : v;
}

static double def_e2m1(int c)
{
    static const double mag[8] = { 0, 0.5, 1, 1.5, 2, 3, 4, 6 };
    return (c & 8) ? -mag[c & 7] : mag[c & 7];
}

static double def_f16(uint16_t h)
{
    int e = (h >> 10) & 31, m = h & 1023;
    double v = e == 0 ? ldexp(m, -24) : ldexp(1024 + m, e - 25);
    return (h & 0x8000) ? -v : v;
}

static double def_bf16(uint16_t h)
{
    int e = (h >> 7) & 255, m = h & 127;
    double v = e == 0 ? ldexp(m, -133) : ldexp(128 + m, e - 134);
    return (h & 0x8000) ? -v : v;
}

static float rd_f32(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

typedef struct enc {
    dm_wfmt fmt;
    int64_t N, K;
    uint8_t *data, *scale;        /* unaligned: one byte into their buffers */
    float scale2;
} enc;

/* Element (i, j) decoded from the raw bytes; *step_scale gets the factor the
 * element grid is multiplied by (1 for formats without scales). */
static double ref_elem(const enc *e, int64_t i, int64_t j, double *step_scale)
{
    const int64_t K = e->K;
    *step_scale = 1;
    switch (e->fmt) {
    case DM_WFMT_F32: return rd_f32(e->data + 4 * (i * K + j));
    case DM_WFMT_F16: return def_f16(rd_u16(e->data + 2 * (i * K + j)));
    case DM_WFMT_BF16: return def_bf16(rd_u16(e->data + 2 * (i * K + j)));
    case DM_WFMT_FP8: {
        int64_t gc = (K + 127) / 128;
        *step_scale = rd_f32(e->scale + 4 * ((i / 128) * gc + j / 128));
        return def_e4m3(e->data[i * K + j]) * *step_scale;
    }
    case DM_WFMT_NVFP4: {
        uint8_t b = e->data[i * (K / 2) + j / 2];
        *step_scale = def_e4m3(e->scale[i * (K / 16) + j / 16]) * e->scale2;
        return def_e2m1(j & 1 ? b >> 4 : b & 15) * *step_scale;
    }
    case DM_WFMT_MXFP4: {
        uint8_t b = e->data[i * (K / 2) + j / 2];
        *step_scale = ldexp(1.0, e->scale[i * (K / 32) + j / 32] - 127);
        return def_e2m1(j & 1 ? b >> 4 : b & 15) * *step_scale;
    }
    default: DM_ASSERT(0); return 0;
    }
}

/* The worst error rounding q to the nearest E2M1 value can leave. */
static double e2m1_max_err(double q)
{
    double a = fabs(q);
    if (a > 6)
        return a - 6;
    return a < 2 ? 0.25 : a < 4 ? 0.5 : 1.0;
}

/* The error bound of element x whose grid is scaled by s. */
static double err_bound(dm_wfmt f, double x, double s)
{
    switch (f) {
    case DM_WFMT_F32: return 0;
    case DM_WFMT_BF16: return BF16_REL_ERR * fabs(x);
    case DM_WFMT_F16: return fmax(F16_REL_ERR * fabs(x), F16_ABS_ERR);
    case DM_WFMT_FP8: return fmax(fabs(x) / 16, ldexp(s, -10)) * (1 + SLOP_REL);
    case DM_WFMT_NVFP4:
    case DM_WFMT_MXFP4: return e2m1_max_err(x / s) * s * (1 + SLOP_REL) + fabs(x) * SLOP_REL;
    default: return 0;
    }
}

/* ---- test matrices ---- */

static double gauss(void)
{
    double u = ft_uniform() + 1e-12, v = ft_uniform();
    return sqrt(-2 * log(u)) * cos(6.283185307179586 * v);
}

static float *random_matrix(int64_t N, int64_t K)
{
    float *x = dm_malloc((size_t)(N * K) * sizeof *x);
    for (int64_t i = 0; i < N; i++) {
        double row_scale = ldexp(1.0, (int)ft_below(13) - 6);
        for (int64_t j = 0; j < K; j++) {
            double v = gauss() * row_scale;
            if (ft_below(500) == 0)
                v *= 20;                                   /* outliers */
            x[i * K + j] = (float)v;
        }
        if (i % 37 == 5)                                   /* an all-zero block of 32 */
            memset(x + i * K + 32, 0, 32 * sizeof *x);
        if (i % 41 == 7)                                   /* a tiny block: NVFP4 2^-9 clamp */
            for (int j = 64; j < 96; j++)
                x[i * K + j] = (float)(gauss() * 1e-7);
    }
    return x;
}

static enc encode(dm_wfmt f, const float *x, int64_t N, int64_t K)
{
    enc e = { .fmt = f, .N = N, .K = K };
    e.data = (uint8_t *)dm_malloc(dm_wfmt_data_bytes(f, N, K) + 1) + 1;
    e.scale = (uint8_t *)dm_malloc(dm_wfmt_scale_bytes(f, N, K) + 1) + 1;
    dm_wmat_encode(f, x, N, K, e.data, e.scale, &e.scale2);
    return e;
}

static void enc_free(enc *e)
{
    free(e->data - 1);
    free(e->scale - 1);
}

static dm_wmat enc_view(const enc *e)
{
    return dm_wmat_make(e->fmt, e->N, e->K, e->data, e->scale, e->scale2);
}

/* ---- checks ---- */

static float block_amax(const float *x, int64_t K, int64_t i0, int64_t i1, int64_t j0, int64_t j1)
{
    float m = 0;
    for (int64_t i = i0; i < i1; i++)
        for (int64_t j = j0; j < j1; j++)
            m = fmaxf(m, fabsf(x[i * K + j]));
    return m;
}

static int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

/* The scales against each recipe (formats.h, dm_wmat_encode). */
static void check_scales(const enc *e, const float *x)
{
    const int64_t N = e->N, K = e->K;
    const char *fn = dm_wfmt_name(e->fmt);
    if (e->fmt == DM_WFMT_FP8) {
        int64_t gc = (K + 127) / 128;
        for (int64_t bi = 0; bi < (N + 127) / 128; bi++)
            for (int64_t bj = 0; bj < gc; bj++) {
                float am = block_amax(x, K, bi * 128, imin(N, bi * 128 + 128), bj * 128, imin(K, bj * 128 + 128));
                double want = am > 0 ? am / 448.0 : 1.0, got = rd_f32(e->scale + 4 * (bi * gc + bj));
                ft_check(fabs(got - want) <= 1e-6 * want, "%s block (%lld,%lld) scale %g want %g", fn,
                         (long long)bi, (long long)bj, got, want);
            }
    } else if (e->fmt == DM_WFMT_NVFP4) {
        float amax = block_amax(x, K, 0, N, 0, K);
        ft_check(fabs(e->scale2 - amax / 2688.0) <= 1e-6 * amax / 2688.0, "nvfp4 scale2 %g want amax/2688 = %g",
                 e->scale2, amax / 2688.0);
        for (int64_t i = 0; i < N; i++)
            for (int64_t b = 0; b < K / 16; b++) {
                float bm = block_amax(x, K, i, i + 1, b * 16, b * 16 + 16);
                uint8_t want = bm > 0 ? dm_f32_to_e4m3(fmaxf(bm / (6.0f * e->scale2), 0x1p-9f)) : 0x38; /* 1.0 */
                ft_check(e->scale[i * (K / 16) + b] == want, "nvfp4 row %lld block %lld scale code 0x%02x want 0x%02x",
                         (long long)i, (long long)b, e->scale[i * (K / 16) + b], want);
            }
    } else if (e->fmt == DM_WFMT_MXFP4) {
        for (int64_t i = 0; i < N; i++)
            for (int64_t b = 0; b < K / 32; b++) {
                float bm = block_amax(x, K, i, i + 1, b * 32, b * 32 + 32);
                int ex;
                frexp(bm, &ex);                       /* bm = f * 2^ex, f in [0.5, 1) */
                int want = bm > 0 ? ex - 1 - 2 + 127 : 127;
                ft_check(e->scale[i * (K / 32) + b] == want, "mxfp4 row %lld block %lld exponent %d want %d",
                         (long long)i, (long long)b, e->scale[i * (K / 32) + b], want);
            }
    }
}

/* Decodes every row, compares with ref_elem and the error bound. */
static void check_decode(const enc *e, const float *x)
{
    const int64_t N = e->N, K = e->K;
    const char *fn = dm_wfmt_name(e->fmt);
    dm_wmat w = enc_view(e);
    float *row = dm_malloc((size_t)K * sizeof *row);
    double worst_ratio = 0, se = 0, sx = 0;
    bool exact = e->fmt == DM_WFMT_F32 || e->fmt == DM_WFMT_F16 || e->fmt == DM_WFMT_BF16;
    for (int64_t i = 0; i < N; i++) {
        dm_wmat_row_f32(&w, i, row);
        for (int64_t j = 0; j < K; j++) {
            double s, ref = ref_elem(e, i, j, &s), src = x[i * K + j];
            double tol = exact ? 0 : DECODE_REL_TOL * fabs(ref);
            ft_check(fabs(row[j] - ref) <= tol, "%s decode (%lld,%lld): %.9g, definition gives %.9g (diff %g)", fn,
                     (long long)i, (long long)j, row[j], ref, fabs(row[j] - ref));
            double bound = err_bound(e->fmt, src, s), err = fabs(ref - src);
            ft_check(err <= bound, "%s quantization error at (%lld,%lld): |%.9g - %.9g| = %g > bound %g", fn,
                     (long long)i, (long long)j, ref, src, err, bound);
            if (bound > 0)
                worst_ratio = fmax(worst_ratio, err / bound);
            se += err * err;
            sx += src * src;
        }
    }
    printf("  %-6s %lldx%lld: relative RMS error %.3g, worst error / bound %.3f\n", fn, (long long)N, (long long)K,
           sqrt(se / sx), worst_ratio);
    free(row);
}

/* Rows [r0, r0+n) as a view, and a view of that view, decode exactly like the
 * same rows of the whole tensor. */
static void check_views(const enc *e, int64_t r0, int64_t n)
{
    const char *fn = dm_wfmt_name(e->fmt);
    dm_wmat w = enc_view(e), v = dm_wmat_rows(&w, r0, n), vv = dm_wmat_rows(&v, 10, n - 20);
    float *a = dm_malloc((size_t)e->K * sizeof *a), *b = dm_malloc((size_t)e->K * sizeof *b);
    ft_check(v.rows == n && v.cols == e->K, "%s view shape", fn);
    if (e->fmt == DM_WFMT_FP8)
        ft_check(v.row0 == r0 && vv.row0 == r0 + 10, "%s view row0 %lld/%lld want %lld/%lld", fn, (long long)v.row0,
                 (long long)vv.row0, (long long)r0, (long long)r0 + 10);
    for (int64_t r = 0; r < n; r++) {
        dm_wmat_row_f32(&w, r0 + r, a);
        dm_wmat_row_f32(&v, r, b);
        ft_check(!memcmp(a, b, (size_t)e->K * sizeof *a), "%s view row %lld differs from tensor row %lld", fn,
                 (long long)r, (long long)(r0 + r));
        for (int64_t j = 0; j < e->K; j++) {   /* and from the definition, at the absolute row */
            double s, ref = ref_elem(e, r0 + r, j, &s);
            if (!ft_check(fabs(b[j] - ref) <= DECODE_REL_TOL * fabs(ref), "%s view row %lld col %lld: %g want %g",
                          fn, (long long)r, (long long)j, b[j], ref))
                break;
        }
        if (r >= 10 && r < n - 10) {
            dm_wmat_row_f32(&vv, r - 10, b);
            ft_check(!memcmp(a, b, (size_t)e->K * sizeof *a), "%s view-of-view row %lld differs", fn, (long long)r);
        }
    }
    free(a);
    free(b);
}

static void check_sizes(void)
{
    static const struct { dm_wfmt f; size_t data, scale; } want[] = {
        { DM_WFMT_F32, 576 * 320 * 4, 0 }, { DM_WFMT_F16, 576 * 320 * 2, 0 }, { DM_WFMT_BF16, 576 * 320 * 2, 0 },
        { DM_WFMT_FP8, 576 * 320, 5 * 3 * 4 }, { DM_WFMT_NVFP4, 576 * 160, 576 * 20 },
        { DM_WFMT_MXFP4, 576 * 160, 576 * 10 },
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const char *fn = dm_wfmt_name(want[i].f);
        ft_check(dm_wfmt_data_bytes(want[i].f, 576, 320) == want[i].data, "%s data bytes %zu", fn,
                 dm_wfmt_data_bytes(want[i].f, 576, 320));
        ft_check(dm_wfmt_scale_bytes(want[i].f, 576, 320) == want[i].scale, "%s scale bytes %zu", fn,
                 dm_wfmt_scale_bytes(want[i].f, 576, 320));
        ft_check(dm_wfmt_from_name(fn) == want[i].f, "wfmt name round trip %s", fn);
    }
    ft_check(dm_wfmt_from_name("q4_k") == DM_WFMT_COUNT, "unknown wfmt name accepted");
    ft_check(dm_wfmt_cols_ok(DM_WFMT_FP8, 300) && !dm_wfmt_cols_ok(DM_WFMT_FP8, 0), "fp8 cols_ok");
    ft_check(dm_wfmt_cols_ok(DM_WFMT_NVFP4, 48) && !dm_wfmt_cols_ok(DM_WFMT_NVFP4, 40), "nvfp4 cols_ok");
    ft_check(dm_wfmt_cols_ok(DM_WFMT_MXFP4, 64) && !dm_wfmt_cols_ok(DM_WFMT_MXFP4, 48), "mxfp4 cols_ok");
    ft_check(dm_wfmt_scale_bytes(DM_WFMT_FP8, 129, 1) == 2 * 4, "fp8 scale grid uses ceil division");
}

int main(void)
{
    check_sizes();
    ft_seed(7);
    for (int f = 0; f < DM_WFMT_COUNT; f++) {
        /* 576 rows (4.5 FP8 blocks, as kv_a_proj_with_mqa) by 320 columns (2.5 blocks) */
        const int64_t N = 576, K = 320;
        float *x = random_matrix(N, K);
        enc e = encode((dm_wfmt)f, x, N, K);
        check_scales(&e, x);
        check_decode(&e, x);
        check_views(&e, 200, 131);
        check_views(&e, 0, 128);
        check_views(&e, 447, 129);
        enc_free(&e);
        free(x);
    }
    return ft_finish("test_wmat");
}
