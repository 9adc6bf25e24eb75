/* matmul_avx512 — the AVX-512 kernels behind dm_matmul (see ops_isa.h for
 * their contracts and matmul.c for the loops that drive them):
 *   rowdot     decode regime: 4 weight rows streamed once, decoded 16 columns
 *              at a time into f32 and dotted with T <= 4 activation rows;
 *   dec_f32    exact row-segment decode into a tile buffer;
 *   dec_bf16   row segment as bf16 values that are exact for every format we
 *              feed to the bf16 kernel, with the scale that was factored out;
 *   gemm_f32   register-blocked micro-kernel, up to 6 A rows × 4 vectors;
 *   gemm_bf16  the same with AVX512_BF16 vdpbf16ps over (k, k+1) pairs;
 *   xw_tile    gemm_f32 with the weight decode fused in (dm_matmul_xw, T <= 6).
 *
 * Decoding for the tile decoders, 16 elements per step (rowdot and xw_tile
 * use cheaper variants, described at rd_chunk):
 *   BF16  zero-extend to 32 bits and shift left 16;  F16  vcvtph2ps;
 *   FP8   E4M3 byte b -> f16 bits (sext(b) << 7) & 0xBFFF, which is the value
 *         / 256 for every code (subnormals included); vcvtph2ps; the 256 is
 *         folded into the block scale; codes 0x7f/0xff are patched to NaN;
 *   FP4   byte b holds elements 2i (low nibble) and 2i+1 (high): duplicate each
 *         byte, widen to dwords, shift odd lanes by 4, vpermps into the E2M1
 *         value table (vpermps reads only the index's low 4 bits).
 * Every decode equals dm_wmat_row_f32 bit for bit: each weight is (an exact
 * value) × (the block scale) rounded once, as the reference computes it. */
#include "ops/ops_isa.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define AI static inline __attribute__((always_inline))

/* ---- decoding ------------------------------------------------------------ */

AI __mmask16 tail_mask(int64_t left)
{
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1);
}

/* Columns sharing one scale (for unscaled formats just a loop length). */
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

/* The multiplier chunk() applies to the block holding column k. FP8 carries
 * the extra 256 of the f16 trick: (e4m3/256)·(256·s) rounds like e4m3·s. */
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

/* E2M1 codes of the 16 elements starting at (even) column j, one per dword. */
AI __m512i fp4_idx(const uint8_t *row, int64_t j)
{
    const __m128i b = _mm_loadl_epi64((const __m128i *)(row + j / 2));
    const __m512i wide = _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(b, b));
    return _mm512_srlv_epi32(wide, _mm512_set_epi32(4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0, 4, 0));
}

/* E4M3 bytes at column j as value/256 (exact), and which lanes are NaN codes. */
AI __m512 fp8_raw(const uint8_t *row, int64_t j, __mmask16 m, __mmask16 *nan)
{
    const __m128i b = _mm_maskz_loadu_epi8(m, row + j);
    const __m256i h = _mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7),
                                       _mm256_set1_epi16((short)0xBFFF));
    *nan = _mm_cmpeq_epi8_mask(_mm_or_si128(b, _mm_set1_epi8((char)0x80)), _mm_set1_epi8(-1));
    return _mm512_cvtph_ps(h);
}

/* Weights [j, j+16) of `row` (lanes outside m read as 0), times s for the
 * scaled formats: exactly dm_wmat_row_f32's values. */
AI __m512 chunk(const int fmt, const uint8_t *row, int64_t j, __mmask16 m, __m512 s, __m512 e2m1)
{
    switch (fmt) {
    case DM_WFMT_F32: return _mm512_maskz_loadu_ps(m, row + 4 * j);
    case DM_WFMT_F16: return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, row + 2 * j));
    case DM_WFMT_BF16: {
        const __m512i u = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, row + 2 * j));
        return _mm512_castsi512_ps(_mm512_slli_epi32(u, 16));
    }
    case DM_WFMT_FP8: {
        __mmask16 nan;
        const __m512 v = _mm512_mul_ps(fp8_raw(row, j, m, &nan), s);
        return _mm512_mask_mov_ps(v, nan, _mm512_set1_ps(NAN));
    }
    default: /* NVFP4, MXFP4 */
        return _mm512_mul_ps(_mm512_permutexvar_ps(fp4_idx(row, j), e2m1), s);
    }
}

/* ---- decode regime: rowdot -----------------------------------------------
 * The streaming kernel has its own, cheaper decoders (the port-5 shuffles
 * are what limits it once the weights come from cache):
 *   FP8  byte b -> f32 bits sign | (b & 0x7f) << 20, which is e4m3(b)·2^-120
 *        for every code (subnormal codes become f32 subnormals, still exact);
 *        the 2^120 goes into the block scale. A 128-column block is first
 *        checked for the NaN codes (two 64-byte compares per row); a block
 *        that has one, or whose scale is >= 2^8 (its ·2^120 would overflow),
 *        takes the general route ("alt": the f16 trick, NaN merged per chunk
 *        by a masked multiply), so the common chunk costs sign-extend, shift,
 *        and, multiply (~14 GB/s per core from cache).
 *   FP4  the 8 bytes of 16 elements are broadcast as a qword and lane l
 *        shifted right by 4·(l/2): even lanes then hold elements 0..7, odd
 *        lanes 8..15 (order 0,8,1,9,...), looked up in an E2M1 table already
 *        multiplied by the block scale. x is permuted to the same order once
 *        per call (into xs), so no per-chunk shuffle is needed. */

AI __m128i load_b16(const uint8_t *p, const bool masked, __mmask16 m)
{
    return masked ? _mm_maskz_loadu_epi8(m, p) : _mm_loadu_si128((const __m128i *)p);
}

AI __m512i load_h16(const uint8_t *p, const bool masked, __mmask16 m)
{
    const __m256i h = masked ? _mm256_maskz_loadu_epi16(m, p) : _mm256_loadu_si256((const __m256i *)p);
    return _mm512_cvtepu16_epi32(h);
}

/* Chunk j of a row in rowdot's lane order, times its block multiplier s
 * (for FP4, s is the scaled E2M1 table). */
AI __m512 rd_chunk(const int fmt, const bool masked, const bool alt, const uint8_t *row, int64_t j,
                   __mmask16 m, __m512 s)
{
    /* alt: f16 route and NaN codes merged; else neither (see above) */
    switch (fmt) {
    case DM_WFMT_F32:
        return masked ? _mm512_maskz_loadu_ps(m, row + 4 * j) : _mm512_loadu_ps(row + 4 * j);
    case DM_WFMT_F16:
        return _mm512_cvtph_ps(masked ? _mm256_maskz_loadu_epi16(m, row + 2 * j)
                                      : _mm256_loadu_si256((const __m256i *)(row + 2 * j)));
    case DM_WFMT_BF16:
        return _mm512_castsi512_ps(_mm512_slli_epi32(load_h16(row + 2 * j, masked, m), 16));
    case DM_WFMT_FP8: {
        const __m128i b = load_b16(row + j, masked, m);
        if (!alt) {
            const __m512i d = _mm512_slli_epi32(_mm512_cvtepi8_epi32(b), 20);
            return _mm512_mul_ps(_mm512_castsi512_ps(_mm512_and_si512(d, _mm512_set1_epi32((int)0x87F00000u))), s);
        }
        const __mmask16 nan = _mm_cmpeq_epi8_mask(_mm_or_si128(b, _mm_set1_epi8((char)0x80)), _mm_set1_epi8(-1));
        const __m512 v = _mm512_cvtph_ps(_mm256_and_si256(_mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7),
                                                          _mm256_set1_epi16((short)0xBFFF)));
        return _mm512_mask_mul_ps(_mm512_set1_ps(NAN), (__mmask16)~nan, v, s);
    }
    default: { /* NVFP4, MXFP4: full chunks only (K % 16 == 0) */
        uint64_t q;
        memcpy(&q, row + j / 2, 8);
        const __m512i idx = _mm512_srlv_epi32(_mm512_set1_epi64((long long)q),
                                              _mm512_set_epi32(28, 28, 24, 24, 20, 20, 16, 16,
                                                               12, 12, 8, 8, 4, 4, 0, 0));
        return _mm512_permutexvar_ps(idx, s);
    }
    }
}

/* The multiplier rd_chunk wants for the block at column kb of a row. */
AI __m512 rd_scale(const int fmt, const bool alt, const uint8_t *srow, int64_t kb, const float *lut4s,
                   const float *lut8, __m512 e2m1)
{
    float g;
    switch (fmt) {
    case DM_WFMT_FP8:
        memcpy(&g, srow + 4 * (size_t)(kb / DM_FP8_BLOCK), 4);
        return _mm512_set1_ps(g * (alt ? 256.0f : 0x1p120f));
    case DM_WFMT_NVFP4: return _mm512_mul_ps(e2m1, _mm512_set1_ps(lut4s[srow[kb / DM_NVFP4_BLOCK]]));
    case DM_WFMT_MXFP4: return _mm512_mul_ps(e2m1, _mm512_set1_ps(lut8[srow[kb / DM_MXFP4_BLOCK]]));
    default: return _mm512_set1_ps(1.0f);
    }
}

/* FP8 only: whether the block [kb, ke) of any of the R rows needs the alt
 * decode: a scale >= 2^8 or a NaN code (0x7f / 0xff) among its bytes. */
AI bool rd_alt(const int fmt, const int R, const uint8_t *const *row, const uint8_t *const *srow,
               int64_t kb, int64_t ke)
{
    if (fmt != DM_WFMT_FP8)
        return false;
    bool alt = false;
    __mmask64 nan = 0;
    const __m512i hi = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(-1);
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        float g;
        memcpy(&g, srow[i] + 4 * (size_t)(kb / DM_FP8_BLOCK), 4);
        alt |= fabsf(g) >= 0x1p8f;
        for (int64_t j = kb; j < ke; j += 64) {
            const __mmask64 m = ke - j >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (ke - j)) - 1;
            const __m512i b = _mm512_maskz_loadu_epi8(m, row[i] + j);
            nan |= _mm512_mask_cmpeq_epi8_mask(m, _mm512_or_si512(b, hi), ones);
        }
    }
    return alt || nan;
}

#ifndef RD_PF_BYTES
#define RD_PF_BYTES 512
#endif
/* Bytes of one 16-column chunk of a row. */
AI int64_t chunk_bytes(const int fmt)
{
    return fmt == DM_WFMT_F32 ? 64 : fmt == DM_WFMT_F16 || fmt == DM_WFMT_BF16 ? 32
         : fmt == DM_WFMT_FP8 ? 16 : 8;
}

/* Software prefetch RD_PF_BYTES ahead on each row into L1, once per cache
 * line. Measured with weights from DRAM, 2 threads: FP8 +30%, bf16 +0-8%;
 * 512 bytes beat 0, 1024, 2048 and 4096 (into L2). */
AI void rd_prefetch(const int fmt, const int R, const uint8_t *const *row, int64_t j)
{
    const int64_t off = j / 16 * chunk_bytes(fmt);
    if (RD_PF_BYTES == 0 || (off & 63) >= chunk_bytes(fmt))
        return;
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
        _mm_prefetch((const char *)row[i] + off + RD_PF_BYTES, _MM_HINT_T0);
}

/* R rows × T tokens of accumulators (R·T + R + a few fit in 32 zmm). */
#define RD_R(T) 4

/* acc[i][t] += Σ_{j in [kb, ke)} w[i][j]·x[t][j] for one block. */
#define RD_STEP(MASKED, ALT, J, M)                                                                 \
    do {                                                                                           \
        __m512 wv[4];                                                                              \
        _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                       \
            wv[i] = rd_chunk(fmt, MASKED, ALT, row[i], J, M, s[i]);                                \
        _Pragma("GCC unroll 8") for (int t = 0; t < T; t++) {                                     \
            const __m512 xv = MASKED ? _mm512_maskz_loadu_ps(M, x + t * ldx + (J))                \
                                     : _mm512_loadu_ps(x + t * ldx + (J));                         \
            _Pragma("GCC unroll 4") for (int i = 0; i < R; i++)                                   \
                acc[i][t] = _mm512_fmadd_ps(wv[i], xv, acc[i][t]);                                 \
        }                                                                                          \
    } while (0)

AI void rowdot_group(const int fmt, const int R, const int T, const dm_wmat *w, int64_t r,
                     const float *x, int64_t ldx, float *y, int64_t ldy, const float *lut4s,
                     const float *lut8)
{
    const int64_t K = w->cols, B = blk_len(fmt);
    const __m512 e2m1 = _mm512_loadu_ps(dm_e2m1_values);
    const uint8_t *row[4], *srow[4];
    __m512 acc[4][DM_MM_DECODE_T];
#pragma GCC unroll 4
    for (int i = 0; i < R; i++) {
        row[i] = w->data + (size_t)(r + i) * w->row_stride;
        srow[i] = scale_row(fmt, w, r + i);
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            acc[i][t] = _mm512_setzero_ps();
    }
    for (int64_t kb = 0; kb < K; kb += B) {
        const int64_t ke = kb + B < K ? kb + B : K;
        const bool alt = rd_alt(fmt, R, row, srow, kb, ke);
        __m512 s[4];
#pragma GCC unroll 4
        for (int i = 0; i < R; i++)
            s[i] = rd_scale(fmt, alt, srow[i], kb, lut4s, lut8, e2m1);
        int64_t j = kb;
        if (alt) {
            for (; j + 16 <= ke; j += 16) {
                rd_prefetch(fmt, R, row, j);
                RD_STEP(false, true, j, 0xffff);
            }
            if (j < ke)
                RD_STEP(true, true, j, tail_mask(ke - j));
        } else {
            for (; j + 16 <= ke; j += 16) {
                rd_prefetch(fmt, R, row, j);
                RD_STEP(false, false, j, 0xffff);
            }
            if (j < ke)
                RD_STEP(true, false, j, tail_mask(ke - j));
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < R; i++)
#pragma GCC unroll 8
        for (int t = 0; t < T; t++)
            y[t * ldy + i] = _mm512_reduce_add_ps(acc[i][t]);
}

/* xs[t][16c + l] = x[t][16c + perm(l)], perm = 0,8,1,9,...,7,15: the lane
 * order of the FP4 rowdot decode. K % 16 == 0 for FP4. */
static void fp4_permute_x(const float *x, int64_t ldx, int T, int64_t K, float *xs)
{
    const __m512i perm = _mm512_set_epi32(15, 7, 14, 6, 13, 5, 12, 4, 11, 3, 10, 2, 9, 1, 8, 0);
    for (int t = 0; t < T; t++)
        for (int64_t j = 0; j < K; j += 16)
            _mm512_storeu_ps(xs + t * DM_MM_XS_LD(K) + j,
                             _mm512_permutexvar_ps(perm, _mm512_loadu_ps(x + t * ldx + j)));
}

AI void rowdot_tmpl(const int fmt, const int T, const dm_wmat *w, int64_t r0, int64_t nr,
                    const float *x, int64_t ldx, float *y, int64_t ldy, float *xs)
{
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    float lut4s[256];   /* NVFP4: e4m3(block scale)·scale2, as the reference rounds it */
    if (fmt == DM_WFMT_NVFP4)
        for (int b = 0; b < 256; b++)
            lut4s[b] = lut4[b] * w->scale2;
    if (fmt == DM_WFMT_NVFP4 || fmt == DM_WFMT_MXFP4) {
        fp4_permute_x(x, ldx, T, w->cols, xs);
        x = xs;
        ldx = DM_MM_XS_LD(w->cols);
    }
    int64_t i = 0;
    for (; i + RD_R(T) <= nr; i += RD_R(T))
        rowdot_group(fmt, RD_R(T), T, w, r0 + i, x, ldx, y + i, ldy, lut4s, lut8);
    for (; i < nr; i++)
        rowdot_group(fmt, 1, T, w, r0 + i, x, ldx, y + i, ldy, lut4s, lut8);
}

typedef void rowdot_fn(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx,
                       float *y, int64_t ldy, float *xs);

#define RD_INST(F, T)                                                                              \
    static void rowdot_##F##_##T(const dm_wmat *w, int64_t r0, int64_t nr, const float *x,        \
                                 int64_t ldx, float *y, int64_t ldy, float *xs)                    \
    {                                                                                              \
        rowdot_tmpl(DM_WFMT_##F, T, w, r0, nr, x, ldx, y, ldy, xs);                                \
    }
#define RD_FMT(F) RD_INST(F, 1) RD_INST(F, 2) RD_INST(F, 3) RD_INST(F, 4)
#define RD_ROW(F)                                                                                  \
    [DM_WFMT_##F] = { rowdot_##F##_1, rowdot_##F##_2, rowdot_##F##_3, rowdot_##F##_4 }

RD_FMT(F32) RD_FMT(F16) RD_FMT(BF16) RD_FMT(FP8) RD_FMT(NVFP4) RD_FMT(MXFP4)

static rowdot_fn *const rowdot_tab[DM_WFMT_COUNT][DM_MM_DECODE_T] = {
    RD_ROW(F32), RD_ROW(F16), RD_ROW(BF16), RD_ROW(FP8), RD_ROW(NVFP4), RD_ROW(MXFP4),
};

static void rowdot_avx512(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx,
                          int T, float *y, int64_t ldy, float *xs)
{
    DM_ASSERT(T >= 1 && T <= DM_MM_DECODE_T && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT);
    rowdot_tab[w->fmt][T - 1](w, r0, nr, x, ldx, y, ldy, xs);
}

/* ---- tile decoders ---------------------------------------------------------- */

AI void dec_f32_tmpl(const int fmt, const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    const __m512 e2m1 = _mm512_loadu_ps(dm_e2m1_values);
    const uint8_t *row = w->data + (size_t)r * w->row_stride, *srow = scale_row(fmt, w, r);
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t k = k0 + j;
        const __mmask16 m = tail_mask(n - j);
        const __m512 s = _mm512_set1_ps(blk_scale(fmt, w, srow, k, lut4, lut8));
        _mm512_mask_storeu_ps(dst + j, m, chunk(fmt, row, k, m, s, e2m1));
    }
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

static void dec_f32_avx512(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst)
{
    DM_ASSERT(k0 % 16 == 0 && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT);
    dec_f32_tab[w->fmt](w, r, k0, n, dst);
}

/* bf16 values w/s, exact: FP8 e4m3/256 (s = 256·grid scale), NVFP4
 * e2m1·e4m3(block scale) (s = scale2; the product has at most 6 significant
 * bits), MXFP4 e2m1·2^(e-127) (s = 1), BF16 itself. vdpbf16ps flushes bf16
 * subnormals to zero, so MXFP4 exponents below 2^-126 would be lost; real
 * checkpoints never come near. */
static float dec_bf16_avx512(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, uint16_t *dst)
{
    DM_ASSERT(k0 % 16 == 0);
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    const uint8_t *srow = w->fmt == DM_WFMT_BF16 ? NULL : scale_row(w->fmt, w, r);
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    const __m512 e2m1 = _mm512_loadu_ps(dm_e2m1_values);
    float ret = 1.0f;
    if (n & 1)
        dst[n] = 0;
    switch (w->fmt) {
    case DM_WFMT_BF16:
        memcpy(dst, row + 2 * k0, (size_t)n * 2);
        return 1.0f;
    case DM_WFMT_FP8:
        DM_ASSERT(k0 / DM_FP8_BLOCK == (k0 + n - 1) / DM_FP8_BLOCK);
        ret = blk_scale(DM_WFMT_FP8, w, srow, k0, lut4, lut8);
        for (int64_t j = 0; j < n; j += 16) {
            const __mmask16 m = tail_mask(n - j);
            __mmask16 nan;
            __m512 v = fp8_raw(row, k0 + j, m, &nan);
            v = _mm512_mask_mov_ps(v, nan, _mm512_set1_ps(NAN));
            _mm256_mask_storeu_epi16(dst + j, m, (__m256i)_mm512_cvtneps_pbh(v));
        }
        return ret;
    case DM_WFMT_NVFP4:
    case DM_WFMT_MXFP4:
        for (int64_t j = 0; j < n; j += 16) {
            const int64_t k = k0 + j;
            const float s = w->fmt == DM_WFMT_NVFP4 ? lut4[srow[k / DM_NVFP4_BLOCK]]
                                                     : lut8[srow[k / DM_MXFP4_BLOCK]];
            const __m512 v = _mm512_mul_ps(_mm512_permutexvar_ps(fp4_idx(row, k), e2m1), _mm512_set1_ps(s));
            _mm256_mask_storeu_epi16(dst + j, tail_mask(n - j), (__m256i)_mm512_cvtneps_pbh(v));
        }
        return w->fmt == DM_WFMT_NVFP4 ? w->scale2 : 1.0f;
    default:
        DM_ASSERT(!"dec_bf16: format has no exact bf16 form");
        return 0;
    }
}

/* ---- micro-kernels ---------------------------------------------------------- */

/* C[i][16v..] (= or +=) s[i]·acc[i][v], columns limited to ncols. */
AI void store_tile(const int M, const int NV, __m512 acc[6][4], float *C, int64_t ldc, const float *s,
                   bool accumulate, int ncols)
{
#pragma GCC unroll 6
    for (int i = 0; i < M; i++) {
        const __m512 sc = _mm512_set1_ps(s ? s[i] : 1.0f);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            if (ncols <= 16 * v)
                break;
            const __mmask16 m = tail_mask(ncols - 16 * v);
            float *c = C + i * ldc + 16 * v;
            const __m512 old = accumulate ? _mm512_maskz_loadu_ps(m, c) : _mm512_setzero_ps();
            _mm512_mask_storeu_ps(c, m, _mm512_fmadd_ps(acc[i][v], sc, old));
        }
    }
}

AI void gemm_f32_tmpl(const int M, const int NV, int64_t kc, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float *C, int64_t ldc, const float *s, bool accumulate, int ncols)
{
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kc; p++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = _mm512_loadu_ps(B + p * ldb + 16 * v);
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m512 a = _mm512_set1_ps(A[i * lda + p]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
    store_tile(M, NV, acc, C, ldc, s, accumulate, ncols);
}

AI __m512bh bcast_pair(const uint16_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return (__m512bh)_mm512_set1_epi32(v);
}

AI void gemm_bf16_tmpl(const int M, const int NV, int64_t kcp, const uint16_t *A, int64_t lda,
                       const uint16_t *B, int64_t ldb, float *C, int64_t ldc, const float *s,
                       bool accumulate, int ncols)
{
    __m512 acc[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < kcp; p++) {
        __m512bh b[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            b[v] = (__m512bh)_mm512_loadu_si512(B + p * ldb + 32 * v);
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m512bh a = bcast_pair(A + i * lda + 2 * p);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++)
                acc[i][v] = _mm512_dpbf16_ps(acc[i][v], a, b[v]);
        }
    }
    store_tile(M, NV, acc, C, ldc, s, accumulate, ncols);
}

#define GEMM_ARGS_F32 int64_t kc, const float *A, int64_t lda, const float *B, int64_t ldb, float *C, \
                      int64_t ldc, const float *s, bool accumulate, int ncols
#define GEMM_ARGS_BF16 int64_t kc, const uint16_t *A, int64_t lda, const uint16_t *B, int64_t ldb,  \
                       float *C, int64_t ldc, const float *s, bool accumulate, int ncols
#define GEMM_PASS kc, A, lda, B, ldb, C, ldc, s, accumulate, ncols

#define GEMM_INST(M, NV)                                                                           \
    static void gf32_##M##_##NV(GEMM_ARGS_F32) { gemm_f32_tmpl(M, NV, GEMM_PASS); }                \
    static void gbf16_##M##_##NV(GEMM_ARGS_BF16) { gemm_bf16_tmpl(M, NV, GEMM_PASS); }
#define GEMM_M(M) GEMM_INST(M, 1) GEMM_INST(M, 2) GEMM_INST(M, 3) GEMM_INST(M, 4)
GEMM_M(1) GEMM_M(2) GEMM_M(3) GEMM_M(4) GEMM_M(5) GEMM_M(6)

#define GEMM_ROW(P, M) { P##_##M##_1, P##_##M##_2, P##_##M##_3, P##_##M##_4 }
static void (*const gf32_tab[6][4])(GEMM_ARGS_F32) = {
    GEMM_ROW(gf32, 1), GEMM_ROW(gf32, 2), GEMM_ROW(gf32, 3),
    GEMM_ROW(gf32, 4), GEMM_ROW(gf32, 5), GEMM_ROW(gf32, 6),
};
static void (*const gbf16_tab[6][4])(GEMM_ARGS_BF16) = {
    GEMM_ROW(gbf16, 1), GEMM_ROW(gbf16, 2), GEMM_ROW(gbf16, 3),
    GEMM_ROW(gbf16, 4), GEMM_ROW(gbf16, 5), GEMM_ROW(gbf16, 6),
};

static void gemm_f32_avx512(int m, int nv, GEMM_ARGS_F32)
{
    DM_ASSERT(m >= 1 && m <= 6 && nv >= 1 && nv <= 4);
    gf32_tab[m - 1][nv - 1](GEMM_PASS);
}

static void gemm_bf16_avx512(int m, int nv, GEMM_ARGS_BF16)
{
    DM_ASSERT(m >= 1 && m <= 6 && nv >= 1 && nv <= 4);
    gbf16_tab[m - 1][nv - 1](GEMM_PASS);
}

/* ---- dm_matmul_xw with few tokens: decode fused into the micro-kernel ---- */

AI void xw_tmpl(const int fmt, const int M, const dm_wmat *w, int64_t n0, int64_t nn, int64_t c0, int nc,
                const float *x, int64_t ldx, float *y, int64_t ldy, bool accumulate)
{
    const float *lut4 = dm_mm_e4m3_lut(), *lut8 = dm_mm_e8m0_lut();
    const __m512 e2m1 = _mm512_loadu_ps(dm_e2m1_values);
    __m512 acc[6][4];
    __mmask16 m[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; v++)
        m[v] = nc > 16 * v ? tail_mask(nc - 16 * v) : 0;
#pragma GCC unroll 6
    for (int i = 0; i < M; i++)
#pragma GCC unroll 4
        for (int v = 0; v < 4; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int64_t p = 0; p < nn; p++) {
        const uint8_t *row = w->data + (size_t)(n0 + p) * w->row_stride, *srow = scale_row(fmt, w, n0 + p);
        __m512 b[4];
        if (fmt == DM_WFMT_FP8) {   /* the streaming decode; one scale: c0..c0+63 is in one block */
            float g;
            memcpy(&g, srow + 4 * (size_t)(c0 / DM_FP8_BLOCK), 4);
            const __mmask64 m64 = nc >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << nc) - 1;
            const __m512i bytes = _mm512_maskz_loadu_epi8(m64, row + c0);
            const bool alt = fabsf(g) >= 0x1p8f ||
                             _mm512_mask_cmpeq_epi8_mask(m64, _mm512_or_si512(bytes, _mm512_set1_epi8((char)0x80)),
                                                         _mm512_set1_epi8(-1));
            const __m512 s = _mm512_set1_ps(g * (alt ? 256.0f : 0x1p120f));
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                b[v] = alt ? rd_chunk(fmt, true, true, row, c0 + 16 * v, m[v], s)
                           : rd_chunk(fmt, true, false, row, c0 + 16 * v, m[v], s);
        } else if (fmt == DM_WFMT_NVFP4 || fmt == DM_WFMT_MXFP4) {
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++) {
                if (!m[v]) {   /* FP4 chunks are never partial, but may be absent */
                    b[v] = _mm512_setzero_ps();
                    continue;
                }
                const __m512 s = _mm512_set1_ps(blk_scale(fmt, w, srow, c0 + 16 * v, lut4, lut8));
                b[v] = chunk(fmt, row, c0 + 16 * v, m[v], s, e2m1);
            }
        } else {
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                b[v] = rd_chunk(fmt, true, false, row, c0 + 16 * v, m[v], e2m1);
        }
#pragma GCC unroll 6
        for (int i = 0; i < M; i++) {
            const __m512 a = _mm512_set1_ps(x[i * ldx + n0 + p]);
#pragma GCC unroll 4
            for (int v = 0; v < 4; v++)
                acc[i][v] = _mm512_fmadd_ps(a, b[v], acc[i][v]);
        }
    }
    store_tile(M, 4, acc, y, ldy, NULL, accumulate, nc);
}

#define XW_ARGS const dm_wmat *w, int64_t n0, int64_t nn, int64_t c0, int nc, const float *x, \
                int64_t ldx, float *y, int64_t ldy, bool accumulate
#define XW_PASS w, n0, nn, c0, nc, x, ldx, y, ldy, accumulate
#define XW_INST(F, M) static void xw_##F##_##M(XW_ARGS) { xw_tmpl(DM_WFMT_##F, M, XW_PASS); }
#define XW_FMT(F) XW_INST(F, 1) XW_INST(F, 2) XW_INST(F, 3) XW_INST(F, 4) XW_INST(F, 5) XW_INST(F, 6)
#define XW_ROW(F) [DM_WFMT_##F] = { xw_##F##_1, xw_##F##_2, xw_##F##_3, xw_##F##_4, xw_##F##_5, xw_##F##_6 }
XW_FMT(F32) XW_FMT(F16) XW_FMT(BF16) XW_FMT(FP8) XW_FMT(NVFP4) XW_FMT(MXFP4)

static void (*const xw_tab[DM_WFMT_COUNT][6])(XW_ARGS) = {
    XW_ROW(F32), XW_ROW(F16), XW_ROW(BF16), XW_ROW(FP8), XW_ROW(NVFP4), XW_ROW(MXFP4),
};

static void xw_tile_avx512(const dm_wmat *w, int64_t n0, int64_t nn, int64_t c0, int nc, const float *x,
                           int64_t ldx, int m, float *y, int64_t ldy, bool accumulate)
{
    DM_ASSERT(m >= 1 && m <= 6 && nc >= 1 && nc <= 64 && c0 % 16 == 0);
    xw_tab[w->fmt][m - 1](XW_PASS);
}

const dm_mm_isa dm_mm_isa_avx512 = {
    .name = "avx512", .lanes = 16, .mr = 6, .nv = 4,
    .rowdot = rowdot_avx512, .dec_f32 = dec_f32_avx512, .dec_bf16 = NULL,
    .gemm_f32 = gemm_f32_avx512, .gemm_bf16 = NULL, .xw_tile = xw_tile_avx512,
};

const dm_mm_isa dm_mm_isa_avx512bf16 = {
    .name = "avx512bf16", .lanes = 16, .mr = 6, .nv = 4,
    .rowdot = rowdot_avx512, .dec_f32 = dec_f32_avx512, .dec_bf16 = dec_bf16_avx512,
    .gemm_f32 = gemm_f32_avx512, .gemm_bf16 = gemm_bf16_avx512, .xw_tile = xw_tile_avx512,
};
