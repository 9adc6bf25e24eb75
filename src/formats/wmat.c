/* wmat — weight matrices in checkpoint formats: sizes, views, the reference
 * row decoder and the encoders. Decoding is always per row (a tile is a few
 * rows), so a 300 GB checkpoint is never expanded in memory.
 *
 * Formats (shared/research/quant.md §2.2–2.4, arch.md §7):
 *   FP8   w[i][j] = e4m3(q[i][j]) * S[i/128][j/128]      (S = weight_scale_inv, f32)
 *   NVFP4 w[i][j] = e2m1(q) * e4m3(s[i][j/16]) * scale2   (weight_scale, weight_scale_2)
 *   MXFP4 w[i][j] = e2m1(q) * 2^(e[i][j/32] - 127)        (*_blocks, *_scales)
 * Packed FP4: byte b of a row holds element 2b in its low nibble, 2b+1 in its high. */
#include "formats/formats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const wfmt_names[DM_WFMT_COUNT] = {
    [DM_WFMT_F32] = "f32", [DM_WFMT_F16] = "f16", [DM_WFMT_BF16] = "bf16",
    [DM_WFMT_FP8] = "fp8", [DM_WFMT_NVFP4] = "nvfp4", [DM_WFMT_MXFP4] = "mxfp4",
};

const char *dm_wfmt_name(dm_wfmt f)
{
    return (f >= 0 && f < DM_WFMT_COUNT) ? wfmt_names[f] : "?";
}

dm_wfmt dm_wfmt_from_name(const char *name)
{
    for (int i = 0; i < DM_WFMT_COUNT; i++)
        if (!strcmp(wfmt_names[i], name))
            return (dm_wfmt)i;
    return DM_WFMT_COUNT;
}

static int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

static size_t row_bytes(dm_wfmt f, int64_t K)
{
    switch (f) {
    case DM_WFMT_F32: return (size_t)K * 4;
    case DM_WFMT_F16:
    case DM_WFMT_BF16: return (size_t)K * 2;
    case DM_WFMT_FP8: return (size_t)K;
    case DM_WFMT_NVFP4:
    case DM_WFMT_MXFP4: return (size_t)K / 2;
    default: DM_ASSERT(0); return 0;
    }
}

bool dm_wfmt_cols_ok(dm_wfmt f, int64_t K)
{
    if (K <= 0)
        return false;
    if (f == DM_WFMT_NVFP4)
        return K % DM_NVFP4_BLOCK == 0;
    if (f == DM_WFMT_MXFP4)
        return K % DM_MXFP4_BLOCK == 0;
    return true;
}

size_t dm_wfmt_data_bytes(dm_wfmt f, int64_t N, int64_t K)
{
    return (size_t)N * row_bytes(f, K);
}

static size_t scale_row_bytes(dm_wfmt f, int64_t K)
{
    switch (f) {
    case DM_WFMT_FP8: return (size_t)ceil_div(K, DM_FP8_BLOCK) * 4;
    case DM_WFMT_NVFP4: return (size_t)(K / DM_NVFP4_BLOCK);
    case DM_WFMT_MXFP4: return (size_t)(K / DM_MXFP4_BLOCK);
    default: return 0;
    }
}

size_t dm_wfmt_scale_bytes(dm_wfmt f, int64_t N, int64_t K)
{
    if (f == DM_WFMT_FP8)
        return (size_t)ceil_div(N, DM_FP8_BLOCK) * scale_row_bytes(f, K);
    return (size_t)N * scale_row_bytes(f, K);
}

dm_wmat dm_wmat_make(dm_wfmt f, int64_t N, int64_t K, const void *data, const void *scale, float scale2)
{
    dm_wmat w = {
        .fmt = f, .rows = N, .cols = K, .data = data, .row_stride = row_bytes(f, K),
        .scale = scale, .scale_stride = scale_row_bytes(f, K), .row0 = 0,
        .scale2 = f == DM_WFMT_NVFP4 ? scale2 : 1.0f,
    };
    return w;
}

dm_wmat dm_wmat_rows(const dm_wmat *w, int64_t r0, int64_t n)
{
    DM_ASSERT(r0 >= 0 && n >= 0 && r0 + n <= w->rows);
    dm_wmat v = *w;
    v.rows = n;
    v.data = w->data + (size_t)r0 * w->row_stride;
    if (w->fmt == DM_WFMT_FP8)
        v.row0 = w->row0 + r0;   /* the block grid is indexed by absolute row */
    else if (w->scale)
        v.scale = w->scale + (size_t)r0 * w->scale_stride;
    return v;
}

void dm_wmat_row_f32(const dm_wmat *w, int64_t r, float *dst)
{
    DM_ASSERT(r >= 0 && r < w->rows);
    const int64_t K = w->cols;
    const uint8_t *row = w->data + (size_t)r * w->row_stride;
    switch (w->fmt) {
    case DM_WFMT_F32:
        memcpy(dst, row, (size_t)K * 4);
        break;
    case DM_WFMT_F16:
        for (int64_t j = 0; j < K; j++)
            dst[j] = dm_f16_to_f32(dm_load_u16(row + 2 * j));
        break;
    case DM_WFMT_BF16:
        for (int64_t j = 0; j < K; j++)
            dst[j] = dm_bf16_to_f32(dm_load_u16(row + 2 * j));
        break;
    case DM_WFMT_FP8: {
        const uint8_t *srow = w->scale + (size_t)((w->row0 + r) / DM_FP8_BLOCK) * w->scale_stride;
        for (int64_t j = 0; j < K; j++)
            dst[j] = dm_e4m3_to_f32(row[j]) * dm_load_f32(srow + 4 * (size_t)(j / DM_FP8_BLOCK));
        break;
    }
    case DM_WFMT_NVFP4: {
        const uint8_t *srow = w->scale + (size_t)r * w->scale_stride;
        for (int64_t j = 0; j < K; j += 2) {
            uint8_t b = row[j / 2];
            float s = dm_e4m3_to_f32(srow[j / DM_NVFP4_BLOCK]) * w->scale2;
            dst[j] = dm_e2m1_values[b & 15] * s;
            dst[j + 1] = dm_e2m1_values[b >> 4] * s;
        }
        break;
    }
    case DM_WFMT_MXFP4: {
        const uint8_t *srow = w->scale + (size_t)r * w->scale_stride;
        for (int64_t j = 0; j < K; j += 2) {
            uint8_t b = row[j / 2];
            float s = dm_e8m0_to_f32(srow[j / DM_MXFP4_BLOCK]);
            dst[j] = dm_e2m1_values[b & 15] * s;
            dst[j + 1] = dm_e2m1_values[b >> 4] * s;
        }
        break;
    }
    default:
        DM_ASSERT(0);
    }
}

static float amax_of(const float *x, int64_t n)
{
    float m = 0;
    for (int64_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(x[i]));
    return m;
}

static void encode_fp8(const float *src, int64_t N, int64_t K, uint8_t *q, float *grid)
{
    int64_t gc = ceil_div(K, DM_FP8_BLOCK);
    for (int64_t bi = 0; bi < ceil_div(N, DM_FP8_BLOCK); bi++) {
        for (int64_t bj = 0; bj < gc; bj++) {
            int64_t i1 = bi * DM_FP8_BLOCK + DM_FP8_BLOCK < N ? bi * DM_FP8_BLOCK + DM_FP8_BLOCK : N;
            int64_t j0 = bj * DM_FP8_BLOCK, j1 = j0 + DM_FP8_BLOCK < K ? j0 + DM_FP8_BLOCK : K;
            float amax = 0;
            for (int64_t i = bi * DM_FP8_BLOCK; i < i1; i++)
                amax = fmaxf(amax, amax_of(src + i * K + j0, j1 - j0));
            float s = amax > 0 ? amax / 448.0f : 1.0f;
            grid[bi * gc + bj] = s;
            for (int64_t i = bi * DM_FP8_BLOCK; i < i1; i++)
                for (int64_t j = j0; j < j1; j++)
                    q[i * K + j] = dm_f32_to_e4m3(src[i * K + j] / s);
        }
    }
}

static void encode_nvfp4(const float *src, int64_t N, int64_t K, uint8_t *q, uint8_t *scales, float *scale2)
{
    float amax = amax_of(src, N * K);
    float s2 = amax > 0 ? amax / (6.0f * 448.0f) : 1.0f;
    *scale2 = s2;
    for (int64_t i = 0; i < N; i++) {
        for (int64_t b = 0; b < K / DM_NVFP4_BLOCK; b++) {
            const float *x = src + i * K + b * DM_NVFP4_BLOCK;
            float bmax = amax_of(x, DM_NVFP4_BLOCK);
            float sb = bmax > 0 ? fmaxf(bmax / (6.0f * s2), 0x1p-9f) : 1.0f;
            uint8_t sq = dm_f32_to_e4m3(sb);
            scales[i * (K / DM_NVFP4_BLOCK) + b] = sq;
            float s = dm_e4m3_to_f32(sq) * s2;
            uint8_t *out = q + i * (K / 2) + b * (DM_NVFP4_BLOCK / 2);
            for (int j = 0; j < DM_NVFP4_BLOCK; j += 2)
                out[j / 2] = (uint8_t)(dm_f32_to_e2m1(x[j] / s) | (dm_f32_to_e2m1(x[j + 1] / s) << 4));
        }
    }
}

static void encode_mxfp4(const float *src, int64_t N, int64_t K, uint8_t *q, uint8_t *scales)
{
    for (int64_t i = 0; i < N; i++) {
        for (int64_t b = 0; b < K / DM_MXFP4_BLOCK; b++) {
            const float *x = src + i * K + b * DM_MXFP4_BLOCK;
            float bmax = amax_of(x, DM_MXFP4_BLOCK);
            /* OCP MX: shared exponent floor(log2(amax)) - emax(E2M1) = ... - 2 */
            uint8_t e = 127;
            if (bmax > 0) {
                int be = (int)dm_f32_to_e8m0_floor(bmax) - 2;
                e = (uint8_t)(be < 0 ? 0 : be);
            }
            scales[i * (K / DM_MXFP4_BLOCK) + b] = e;
            float s = dm_e8m0_to_f32(e);
            uint8_t *out = q + i * (K / 2) + b * (DM_MXFP4_BLOCK / 2);
            for (int j = 0; j < DM_MXFP4_BLOCK; j += 2)
                out[j / 2] = (uint8_t)(dm_f32_to_e2m1(x[j] / s) | (dm_f32_to_e2m1(x[j + 1] / s) << 4));
        }
    }
}

void dm_wmat_encode(dm_wfmt f, const float *src, int64_t N, int64_t K, void *data, void *scale, float *scale2)
{
    DM_ASSERT(dm_wfmt_cols_ok(f, K));
    if (scale2)
        *scale2 = 1.0f;
    switch (f) {
    case DM_WFMT_F32:
        memcpy(data, src, (size_t)(N * K) * 4);
        break;
    case DM_WFMT_F16:
        for (int64_t i = 0; i < N * K; i++) {
            uint16_t h = dm_f32_to_f16(src[i]);
            memcpy((uint8_t *)data + 2 * i, &h, 2);
        }
        break;
    case DM_WFMT_BF16:
        for (int64_t i = 0; i < N * K; i++) {
            uint16_t h = dm_f32_to_bf16(src[i]);
            memcpy((uint8_t *)data + 2 * i, &h, 2);
        }
        break;
    case DM_WFMT_FP8: {
        /* the grid is written through a local copy: `scale` may be unaligned */
        size_t nb = dm_wfmt_scale_bytes(f, N, K);
        float *grid = dm_malloc(nb);
        encode_fp8(src, N, K, data, grid);
        memcpy(scale, grid, nb);
        free(grid);
        break;
    }
    case DM_WFMT_NVFP4: {
        float s2;
        encode_nvfp4(src, N, K, data, scale, &s2);
        if (scale2)
            *scale2 = s2;
        break;
    }
    case DM_WFMT_MXFP4:
        encode_mxfp4(src, N, K, data, scale);
        break;
    default:
        DM_ASSERT(0);
    }
}
