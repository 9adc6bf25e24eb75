/* matmul_avx2 — the AVX2/FMA/F16C kernel table (DM_NO_AVX512=1, or a CPU
 * without AVX-512): rowdot, the exact row-segment decoder and an f32
 * micro-kernel of up to 6 rows × 2 ymm vectors. Same decoding tricks as
 * matmul_avx512.c, 8 elements per step; FP4 looks up the 8 magnitudes with
 * vpermps and ORs the sign bit (code bit 3) into place. Columns past the last
 * full vector (only F32/F16/BF16/FP8 rows can have them) go through the
 * portable decoder. Contracts in ops_isa.h. */
#include "ops/ops_isa.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

AI int64_t blk_len(const int fmt)
{
    return fmt == DM_WFMT_FP8 ? DM_FP8_BLOCK : fmt == DM_WFMT_NVFP4 ? DM_NVFP4_BLOCK
         : fmt == DM_WFMT_MXFP4 ? DM_MXFP4_BLOCK : 256;
}

AI const uint8_t *scale_row(const int fmt, const dm_wmat *w, int64_t r)
{
    if (fmt == DM_WFMT_FP8)
        return w->scale + (size_t)((w->row0 + r) / DM_FP8_BLOCK) * w->scale_stride;
    if (fmt == DM_WFMT_NVFP4 || fmt == DM_WFMT_MXFP4)
        return w->scale + (size_t)r * w->scale_stride;
    return NULL;
}

/* See matmul_avx512.c: FP8 carries the 256 of the e4m3 -> f16 trick. */
AI float blk_scale(const int fmt, const dm_wmat *w, const uint8_t *srow, int64_t k, const float *lut4,
                   const float *lut8)
{
    float s;
    switch (fmt) {
    case DM_WFMT_FP8:
        memcpy(&s, srow + 4 * (size_t)(k / DM_FP8_BLOCK), 4);
        return s * 256.0f;
    case DM_WFMT_NVFP4: return lut4[srow[k / DM_NVFP4_BLOCK]] * w->scale2;
    case DM_WFMT_MXFP4: return lut8[srow[k / DM_MXFP4_BLOCK]];
    default: return 1.0f;
    }
}

/* Weights [j, j+8) of `row`, times s for the scaled formats (exact). */
AI __m256 chunk8(const int fmt, const uint8_t *row, int64_t j, __m256 s, __m256 mag)
{
    switch (fmt) {
    case DM_WFMT_F32: return _mm256_loadu_ps((const float *)(row + 4 * j));
    case DM_WFMT_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * j)));
    case DM_WFMT_BF16: {
        const __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(row + 2 * j)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
    }
    case DM_WFMT_FP8: {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(row + j));
        const __m128i h = _mm_and_si128(_mm_slli_epi16(_mm_cvtepi8_epi16(b), 7), _mm_set1_epi16((short)0xBFFF));
        const __m128i nan8 = _mm_cmpeq_epi8(_mm_or_si128(b, _mm_set1_epi8((char)0x80)), _mm_set1_epi8(-1));
        const __m256 v = _mm256_mul_ps(_mm256_cvtph_ps(h), s);
        return _mm256_blendv_ps(v, _mm256_set1_ps(NAN), _mm256_castsi256_ps(_mm256_cvtepi8_epi32(nan8)));
    }
    default: { /* NVFP4, MXFP4 */
        uint32_t four;
        memcpy(&four, row + j / 2, 4);
        const __m128i b = _mm_cvtsi32_si128((int)four);
        const __m256i idx = _mm256_srlv_epi32(_mm256_cvtepu8_epi32(_mm_unpacklo_epi8(b, b)),
                                              _mm256_set_epi32(4, 0, 4, 0, 4, 0, 4, 0));
        const __m256 m = _mm256_permutevar8x32_ps(mag, idx);
        const __m256i sign = _mm256_and_si256(_mm256_slli_epi32(idx, 28), _mm256_set1_epi32((int)0x80000000u));
        return _mm256_mul_ps(_mm256_or_ps(m, _mm256_castsi256_ps(sign)), s);
    }
    }
}

AI __m256i lanes_below(int64_t left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ---- decode regime ------------------------------------------------------------ */

#define RD_R(T) ((T) == 1 ? 4 : 2)

AI void rowdot_group(const int fmt, const int R, const int T, const dm_wmat *w, int64_t r,
                     const float *x, int64_t ldx, float *y, int64_t ldy, const float *lut4,
                     const float *lut8)
{
    const int64_t K = w->cols, B = blk_len(fmt);
    const __m256 mag = _mm256_loadu_ps(dm_e2m1_values);
    const uint8_t *row[4], *srow[4];
    __m256 acc[4][DM_MM_DECODE_T];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        row[i] = w->data + (size_t)(r + i) * w->row_stride;
        srow[i] = scale_row(fmt, w, r + i);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[i][t] = _mm256_setzero_ps();
    }
    for (int64_t kb = 0; kb < K; kb += B) {
        __m256 s[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            s[i] = _mm256_set1_ps(blk_scale(fmt, w, srow[i], kb, lut4, lut8));
        const int64_t ke = kb + B < K ? kb + B : K;
        int64_t j = kb;
        for (; j + 8 <= ke; j += 8) {
            __m256 wv[4];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++)
                wv[i] = chunk8(fmt, row[i], j, s[i], mag);
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m256 xv = _mm256_loadu_ps(x + t * ldx + j);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++)
                    acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
            }
        }
        if (j < ke) {   /* fewer than 8 columns left: only at the end of a row */
            const __m256i m = lanes_below(ke - j);
            __m256 wv[4];
#pragma GCC unroll 4
            for (int i = 0; i < R; i++) {
                float buf[8] = { 0 };
                dm_mm_dec_f32_scalar(w, r + i, j, ke - j, buf);
                wv[i] = _mm256_loadu_ps(buf);
            }
#pragma GCC unroll 8
            for (int t = 0; t < T; t++) {
                const __m256 xv = _mm256_maskload_ps(x + t * ldx + j, m);
#pragma GCC unroll 4
                for (int i = 0; i < R; i++)
                    acc[i][t] = _mm256_fmadd_ps(wv[i], xv, acc[i][t]);
            }
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++) {
            const __m128 h = _mm_add_ps(_mm256_castps256_ps128(acc[i][t]), _mm256_extractf128_ps(acc[i][t], 1));
            const __m128 q = _mm_add_ps(h, _mm_movehl_ps(h, h));
            y[t * ldy + i] = _mm_cvtss_f32(_mm_add_ss(q, _mm_movehdup_ps(q)));
        }
}

AI void rowdot_tmpl(const int fmt, const int T, const dm_wmat *w, int64_t r0, int64_t nr,
                    const float *x, int64_t ldx, float *y, int64_t ldy)
{
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    int64_t i = 0;
    for (; i + RD_R(T) <= nr; i += RD_R(T))
        rowdot_group(fmt, RD_R(T), T, w, r0 + i, x, ldx, y + i, ldy, lut4, lut8);
    for (; i < nr; i++)
        rowdot_group(fmt, 1, T, w, r0 + i, x, ldx, y + i, ldy, lut4, lut8);
}

typedef void rowdot_fn(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx,
                       float *y, int64_t ldy);

#define RD_INST(F, T)                                                                              \
    static void rowdot_##F##_##T(const dm_wmat *w, int64_t r0, int64_t nr, const float *x,        \
                                 int64_t ldx, float *y, int64_t ldy)                               \
    {                                                                                              \
        rowdot_tmpl(DM_WFMT_##F, T, w, r0, nr, x, ldx, y, ldy);                                    \
    }
#define RD_FMT(F) RD_INST(F, 1) RD_INST(F, 2) RD_INST(F, 3) RD_INST(F, 4)
#define RD_ROW(F)                                                                                  \
    [DM_WFMT_##F] = { rowdot_##F##_1, rowdot_##F##_2, rowdot_##F##_3, rowdot_##F##_4 }

RD_FMT(F32) RD_FMT(F16) RD_FMT(BF16) RD_FMT(FP8) RD_FMT(NVFP4) RD_FMT(MXFP4)

static rowdot_fn *const rowdot_tab[DM_WFMT_COUNT][DM_MM_DECODE_T] = {
    RD_ROW(F32), RD_ROW(F16), RD_ROW(BF16), RD_ROW(FP8), RD_ROW(NVFP4), RD_ROW(MXFP4),
};

static void rowdot_avx2(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx, int T,
                        float *y, int64_t ldy, float *xs)
{
    (void)xs;
    DM_ASSERT(T >= 1 && T <= DM_MM_DECODE_T && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT);
    rowdot_tab[w->fmt][T - 1](w, r0, nr, x, ldx, y, ldy);
}

/* ---- tile decoder ------------------------------------------------------------- */

AI void dec_f32_tmpl(const int fmt, const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    const __m256 mag = _mm256_loadu_ps(dm_e2m1_values);
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *srow = scale_row(fmt, w, r);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m256 s = _mm256_set1_ps(blk_scale(fmt, w, srow, k0 + j, lut4, lut8));
        _mm256_storeu_ps(dst + j, chunk8(fmt, row, k0 + j, s, mag));
    }
    if (j < n)
        dm_mm_dec_f32_scalar(w, r, k0 + j, n - j, dst + j);
}

#define DEC_INST(F)                                                                                \
    static void dec_f32_##F(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)       \
    {                                                                                              \
        dec_f32_tmpl(DM_WFMT_##F, w, r, k0, n, dst);                                               \
    }
DEC_INST(F32) DEC_INST(F16) DEC_INST(BF16) DEC_INST(FP8) DEC_INST(NVFP4) DEC_INST(MXFP4)

static void (*const dec_f32_tab[DM_WFMT_COUNT])(const dm_wmat *, int64_t, int64_t, int64_t, float *) = {
    [DM_WFMT_F32] = dec_f32_F32, [DM_WFMT_F16] = dec_f32_F16, [DM_WFMT_BF16] = dec_f32_BF16,
    [DM_WFMT_FP8] = dec_f32_FP8, [DM_WFMT_NVFP4] = dec_f32_NVFP4, [DM_WFMT_MXFP4] = dec_f32_MXFP4,
};

static void dec_f32_avx2(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    DM_ASSERT(k0 % 16 == 0 && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT);
    dec_f32_tab[w->fmt](w, r, k0, n, dst);
}

/* ---- micro-kernel -------------------------------------------------------------- */

AI void gemm_tmpl(const int M, const int NV, int64_t kc, const float *A, int64_t lda, const float *B,
                  int64_t ldb, float *C, int64_t ldc, const float *s, bool accumulate, int ncols)
{
    __m256 acc[6][2];
#pragma GCC unroll 6
    for (int i = 0; i < M; i++)
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm256_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m256 b[2];
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++)
            b[v] = _mm256_loadu_ps(B + p * ldb + 8 * v);
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m256 a = _mm256_broadcast_ss(A + i * lda + p);
#pragma GCC unroll 2
            for (int v = 0; v < NV; v++)
                acc[i][v] = _mm256_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        const __m256 sc = _mm256_set1_ps(s ? s[i] : 1.0f);
#pragma GCC unroll 2
        for (int v = 0; v < NV; v++) {
            if (ncols <= 8 * v)
                break;
            float *c = C + i * ldc + 8 * v;
            const __m256i m = lanes_below(ncols - 8 * v);
            const __m256 old = accumulate ? _mm256_maskload_ps(c, m) : _mm256_setzero_ps();
            _mm256_maskstore_ps(c, m, _mm256_fmadd_ps(acc[i][v], sc, old));
        }
    }
}

#define GEMM_ARGS int64_t kc, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,   \
                  int64_t ldc, const float *s, bool accumulate, int ncols
#define GEMM_PASS kc, A, lda, B, ldb, C, ldc, s, accumulate, ncols
#define GEMM_INST(M, NV) static void g_##M##_##NV(GEMM_ARGS) { gemm_tmpl(M, NV, GEMM_PASS); }
#define GEMM_M(M) GEMM_INST(M, 1) GEMM_INST(M, 2)
GEMM_M(1) GEMM_M(2) GEMM_M(3) GEMM_M(4) GEMM_M(5) GEMM_M(6)

static void (*const gemm_tab[6][2])(GEMM_ARGS) = {
    { g_1_1, g_1_2 }, { g_2_1, g_2_2 }, { g_3_1, g_3_2 },
    { g_4_1, g_4_2 }, { g_5_1, g_5_2 }, { g_6_1, g_6_2 },
};

static void gemm_f32_avx2(int m, int nv, GEMM_ARGS)
{
    DM_ASSERT(m >= 1 && m <= 6 && nv >= 1 && nv <= 2);
    gemm_tab[m - 1][nv - 1](GEMM_PASS);
}

const dm_mm_isa dm_mm_isa_avx2 = {
    .name = "avx2", .lanes = 8, .mr = 6, .nv = 2,
    .rowdot = rowdot_avx2, .dec_f32 = dec_f32_avx2, .dec_bf16 = NULL,
    .gemm_f32 = gemm_f32_avx2, .gemm_bf16 = NULL,
};
