/* matmul_scalar — the portable kernel table (DM_NO_SIMD=1, or a CPU without
 * AVX2): plain C versions of rowdot, the exact row-segment decoder and the
 * f32 micro-kernel, with the contracts of ops_isa.h. They are what the SIMD
 * tables must agree with, and they must stay readable more than fast. */
#include "ops/ops_isa.h"

#include <string.h>

/* E2M1 code of element k of a packed FP4 row. */
static int fp4_code(const uint8_t *row, int64_t k)
{
    uint8_t b = row[k / 2];
    return (k & 1) ? b >> 4 : b & 15;
}

void dm_mm_dec_f32_scalar(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    DM_ASSERT(r >= 0 && r < w->rows && k0 >= 0 && k0 + n <= w->cols);
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    switch (w->fmt) {
    case DM_WFMT_F32:
        memcpy(dst, row + 4 * k0, (size_t)n * 4);
        break;
    case DM_WFMT_F16:
        for (int64_t j = 0; j < n; j++)
            dst[j] = dm_f16_to_f32(dm_load_u16(row + 2 * (k0 + j)));
        break;
    case DM_WFMT_BF16:
        for (int64_t j = 0; j < n; j++)
            dst[j] = dm_bf16_to_f32(dm_load_u16(row + 2 * (k0 + j)));
        break;
    case DM_WFMT_FP8: {
        const uint8_t *srow = w->scale + (size_t)((w->row0 + r) / DM_FP8_BLOCK) * w->scale_stride;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = k0 + j;
            dst[j] = lut4[row[k]] * dm_load_f32(srow + 4 * (size_t)(k / DM_FP8_BLOCK));
        }
        break;
    }
    case DM_WFMT_NVFP4: {
        const uint8_t *srow = w->scale + (size_t)r * w->scale_stride;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = k0 + j;
            dst[j] = dm_e2m1_values[fp4_code(row, k)] * (lut4[srow[k / DM_NVFP4_BLOCK]] * w->scale2);
        }
        break;
    }
    case DM_WFMT_MXFP4: {
        const uint8_t *srow = w->scale + (size_t)r * w->scale_stride;
        for (int64_t j = 0; j < n; j++) {
            int64_t k = k0 + j;
            dst[j] = dm_e2m1_values[fp4_code(row, k)] * lut8[srow[k / DM_MXFP4_BLOCK]];
        }
        break;
    }
    default:
        DM_ASSERT(!"unknown weight format");
    }
}

/* Row by row: decode 256 columns at a time, dot with every token, 8 partial
 * sums per token so the adds are independent. */
static void rowdot_scalar(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx, int T,
                          float *y, int64_t ldy, float *xs)
{
    (void)xs;
    enum { SEG = 256 };
    DM_ASSERT(T >= 1 && T <= DM_MM_DECODE_T);
    float buf[SEG];
    const int64_t K = w->cols;
    for (int64_t i = 0; i < nr; i++) {
        float acc[DM_MM_DECODE_T][8] = { { 0 } };
        for (int64_t k0 = 0; k0 < K; k0 += SEG) {
            int64_t n = K - k0 < SEG ? K - k0 : SEG;
            dm_mm_dec_f32_scalar(w, r0 + i, k0, n, buf);
            for (int t = 0; t < T; t++) {
                const float *xt = x + t * ldx + k0;
                for (int64_t j = 0; j < n; j++)
                    acc[t][j & 7] += buf[j] * xt[j];
            }
        }
        for (int t = 0; t < T; t++) {
            float s = 0;
            for (int l = 0; l < 8; l++)
                s += acc[t][l];
            y[t * ldy + i] = s;
        }
    }
}

#define SC_LANES 8
#define SC_NV 2
#define SC_MR 4

static void gemm_f32_scalar(int m, int nv, int64_t kc, const float *A, int64_t lda, const float *B,
                            int64_t ldb, float *C, int64_t ldc, const float *s, bool accumulate, int ncols)
{
    DM_ASSERT(m >= 1 && m <= SC_MR && nv >= 1 && nv <= SC_NV);
    int nc = nv * SC_LANES < ncols ? nv * SC_LANES : ncols;
    for (int i = 0; i < m; i++) {
        float acc[SC_LANES * SC_NV] = { 0 };
        for (int64_t p = 0; p < kc; p++) {
            float a = A[i * lda + p];
            for (int c = 0; c < nc; c++)
                acc[c] += a * B[p * ldb + c];
        }
        float sc = s ? s[i] : 1.0f;
        for (int c = 0; c < nc; c++)
            C[i * ldc + c] = (accumulate ? C[i * ldc + c] : 0.0f) + acc[c] * sc;
    }
}

const dm_mm_isa dm_mm_isa_scalar = {
    .name = "scalar", .lanes = SC_LANES, .mr = SC_MR, .nv = SC_NV,
    .rowdot = rowdot_scalar, .dec_f32 = dm_mm_dec_f32_scalar, .dec_bf16 = NULL,
    .gemm_f32 = gemm_f32_scalar, .gemm_bf16 = NULL,
};
