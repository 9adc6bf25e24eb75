/* matmul — y = x·Wᵀ (dm_matmul) and y = x·W (dm_matmul_xw) over weight
 * matrices in every checkpoint format: picks the kernel table (ops_isa.h),
 * splits the work over OpenMP threads and owns the per-thread scratch.
 *
 * Two regimes for dm_matmul (T tokens, K inputs, N outputs):
 *   decode  (T <= DM_MM_STREAM_T): memory-bound. Threads take chunks of
 *           contiguous rows; rowdot streams every weight row once per pass
 *           of <= DM_MM_DECODE_T tokens and dots it with their activation
 *           rows in f32.
 *   prefill (T larger): compute-bound, blocked GEMM. Per block of up to
 *           TB_MAX tokens the activations are packed once, transposed into
 *           groups of G = lanes·nv tokens ([k][G] f32, or [k/2][G][2] bf16
 *           pairs), so a micro-kernel keeps 6 weight rows × G tokens of
 *           outputs in registers with the weights as the broadcast operand.
 *           Threads take tiles of TILE_N rows; a tile is decoded whole (each
 *           row read start to end) into per-thread scratch, multiplied slab
 *           by slab, and its C[rows][tokens] transposed into y at the end.
 *
 * The bf16 kernel (AVX512_BF16 vdpbf16ps) rounds activations to bf16 (round
 * to nearest even) but never the weights. It is used, as ops.h allows, only
 * for BF16 weights, only when !dm_ops_precise(), and only if the environment
 * sets DM_BF16_DOT=1: on the Sapphire Rapids this was written on, vdpbf16ps
 * retires one per two cycles (32 flop/cycle) against two f32 FMAs per cycle
 * (64 flop/cycle), and the f32 kernel on exactly decoded tiles measured
 * 1.3-1.6x faster for T >= 64, so f32 activations are the default everywhere.
 * (dec_bf16 also gives exact bf16 forms of FP8/NVFP4/MXFP4 rows, a scale
 * factored out per row × k-slab and applied to the f32 partial sums; the
 * loops below support it as DM_MM_ACT_BF16_ALL, which the tests exercise and
 * the dispatch does not use.)
 *
 * dm_matmul_xw: threads over panels of G output columns; for each panel the
 * weight columns are decoded (exact f32) slab by slab into [n][G] and the
 * f32 micro-kernel runs with A = x rows, no transposes anywhere.
 *
 * No allocation per call beyond growing the calling thread's scratch; calls
 * made from inside an OpenMP parallel region run on one thread. */
#include "ops/ops_isa.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#define OMP(directive) _Pragma(directive)
#else
#define OMP(directive)   /* built without OpenMP: everything runs on the caller's thread */
#endif

enum {
    TILE_N = 48,         /* rows per prefill tile (a multiple of every table's mr) */
    TB_MAX = 256,        /* tokens per packed activation block */
    KC_F32 = 128,        /* k-slab of the f32 kernel (FP8 needs multiples of 128) */
    KC_BF16 = 256,       /* k-slab of the bf16 kernel, FP8 uses 128 */
    KC_XW = 256,         /* rows of W per slab in dm_matmul_xw */
    XW_FEW_T = 8,        /* dm_matmul_xw with at most this many tokens: */
    XW_WIDE = 512,       /* ... panel width */
    XW_SLAB_FEW = 32,    /* ... and its row slab */
};
/* Rows per streaming chunk (the unit of work of the decode regime): about
 * this many bytes of weights. */
#define STREAM_CHUNK_BYTES ((size_t)256 << 10)
/* Below this many multiply-adds a call stays on one thread. */
#define MM_MIN_PARALLEL_MACS (1 << 17)

/* ---- precision policy and lookup tables ------------------------------------ */

static bool g_precise;

void dm_ops_set_precise(bool precise) { __atomic_store_n(&g_precise, precise, __ATOMIC_RELAXED); }
bool dm_ops_precise(void) { return __atomic_load_n(&g_precise, __ATOMIC_RELAXED); }

static float g_e4m3[256], g_e8m0[256];
static pthread_once_t g_lut_once = PTHREAD_ONCE_INIT;

static void lut_init(void)
{
    for (int b = 0; b < 256; b++) {
        g_e4m3[b] = dm_e4m3_to_f32((uint8_t)b);
        g_e8m0[b] = dm_e8m0_to_f32((uint8_t)b);
    }
}

const float *dm_mm_e4m3_lut(void)
{
    pthread_once(&g_lut_once, lut_init);
    return g_e4m3;
}

const float *dm_mm_e8m0_lut(void)
{
    pthread_once(&g_lut_once, lut_init);
    return g_e8m0;
}

/* ---- kernel tables ----------------------------------------------------------- */

const dm_mm_isa *dm_mm_isa_get(dm_mm_isa_id id)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    bool bf16 = avx512 && __builtin_cpu_supports("avx512bf16");
#else
    bool avx2 = false, avx512 = false, bf16 = false;
#endif
    switch (id) {
    case DM_MM_ISA_SCALAR: return &dm_mm_isa_scalar;
    case DM_MM_ISA_AVX2: return avx2 ? &dm_mm_isa_avx2 : NULL;
    case DM_MM_ISA_AVX512: return avx512 ? &dm_mm_isa_avx512 : NULL;
    case DM_MM_ISA_AVX512BF16: return bf16 ? &dm_mm_isa_avx512bf16 : NULL;
    default: return NULL;
    }
}

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

const dm_mm_isa *dm_mm_isa_best(void)
{
    static int cached = -1;   /* DM_BF16_DOT, read once; racing first calls store the same value */
    int bf16_dot = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (bf16_dot < 0) {
        bf16_dot = env_flag("DM_BF16_DOT");
        __atomic_store_n(&cached, bf16_dot, __ATOMIC_RELAXED);
    }
    const dm_cpu_features *f = dm_cpu();
    if (f->avx512f && f->avx512bw && f->avx512vl && f->f16c && f->fma)
        return f->avx512bf16 && bf16_dot ? &dm_mm_isa_avx512bf16 : &dm_mm_isa_avx512;
    if (f->avx2 && f->fma && f->f16c)
        return &dm_mm_isa_avx2;
    return &dm_mm_isa_scalar;
}

/* ---- per-thread scratch -------------------------------------------------------- */

enum { SCR_X, SCR_A, SCR_C, SCR_S, SCR_JOBS, SCR_COUNT };

static _Thread_local struct { void *p; size_t n; } tls_scr[SCR_COUNT];

/* A buffer of at least n bytes owned by the calling thread, 64-byte aligned;
 * grows (contents lost) but is never freed, so steady state allocates nothing. */
static void *scratch(int slot, size_t n)
{
    if (tls_scr[slot].n < n) {
        dm_aligned_free(tls_scr[slot].p);
        size_t grown = n + n / 4;
        tls_scr[slot].p = dm_aligned_alloc(grown);
        tls_scr[slot].n = grown;
    }
    return tls_scr[slot].p;
}

/* Threads for a call of `macs` multiply-adds: 1 inside a parallel region. */
static int mm_threads(double macs)
{
#ifdef _OPENMP
    if (omp_in_parallel())
        return 1;
#endif
    if (macs < MM_MIN_PARALLEL_MACS)
        return 1;
    return dm_threads_get();
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

/* ---- decode regime ------------------------------------------------------------- */

/* Threads take chunks of rows dynamically (a thread slowed by another
 * process on its core then costs only its current chunk); each chunk is a
 * few hundred KB of contiguous rows, long enough for the prefetchers. With
 * T above DM_MM_DECODE_T every chunk gets several passes of <= that many
 * tokens (sizes as equal as possible) while it sits in L2, so the weights
 * still come from memory once. */
/* Rows per streaming chunk of w: about STREAM_CHUNK_BYTES, a multiple of 4. */
static int64_t stream_chunk_rows(const dm_wmat *w)
{
    int64_t chunk = (int64_t)(STREAM_CHUNK_BYTES / (w->row_stride ? w->row_stride : 1));
    return (chunk < 16 ? 16 : chunk + 3) & ~(int64_t)3;
}

/* Rows [r, r+nr) of y = x·Wᵀ, in passes of <= DM_MM_DECODE_T tokens. */
static void stream_rows(const dm_mm_isa *isa, float *y, const float *x, const dm_wmat *w, int T, int64_t r,
                        int64_t nr, float *xs)
{
    const int64_t N = w->rows, K = w->cols;
    const int passes = (T + DM_MM_DECODE_T - 1) / DM_MM_DECODE_T;
    for (int p = 0, t0 = 0; p < passes; p++) {
        const int tp = (T - t0) / (passes - p);
        isa->rowdot(w, r, nr, x + (size_t)t0 * (size_t)K, K, tp, y + (size_t)t0 * (size_t)N + r, N, xs);
        t0 += tp;
    }
}

static void matmul_decode(const dm_mm_isa *isa, float *y, const float *x, const dm_wmat *w, int T)
{
    const int64_t N = w->rows, K = w->cols;
    const int64_t chunk = stream_chunk_rows(w);
    const int64_t nchunk = (N + chunk - 1) / chunk;
    int nth = mm_threads((double)N * (double)K * T);
    if (nth > nchunk)
        nth = (int)nchunk;
OMP("omp parallel num_threads(nth) if (nth > 1)")
    {
        float *xs = scratch(SCR_X, (size_t)(DM_MM_DECODE_T * DM_MM_XS_LD(K)) * 4);
OMP("omp for schedule(dynamic, 1)")
        for (int64_t c = 0; c < nchunk; c++) {
            const int64_t r = c * chunk;
            stream_rows(isa, y, x, w, T, r, min64(chunk, N - r), xs);
        }
    }
}

/* ---- prefill regime -------------------------------------------------------------- */

/* Round to nearest even like dm_f32_to_bf16, inlined for the packing loop. */
static inline uint16_t bf16_rne(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

typedef struct prefill {
    const dm_mm_isa *isa;
    const dm_wmat *w;
    bool bf16;       /* bf16 kernel, else f32 */
    int64_t kc;      /* columns per k-slab (even) */
    int64_t nslab;   /* k-slabs per row */
    int64_t lda;     /* row stride of the decoded tile, elements (even, >= K + 1) */
    int gw;          /* tokens per packed group */
    int64_t np;      /* packed length along k: K (f32) or ceil(K/2) pairs */
    const float *x;  /* this token block, [tb][K] */
    int tb, ng;      /* tokens in the block, groups */
    void *xp;        /* packed groups, each np·gw·4 bytes */
    float *y;        /* row t0 of the output, [tb][N] */
} prefill;

/* Packs group g of the token block: f32 [k][gw] or bf16 [k/2][gw][2];
 * tokens past the block are zero. */
static void pack_group(const prefill *pf, int g)
{
    const int64_t K = pf->w->cols, gw = pf->gw;
    const int t0 = g * pf->gw, nt = (int)min64(gw, pf->tb - t0);
    if (!pf->bf16) {
        float *dst = (float *)pf->xp + (size_t)g * (size_t)(pf->np * gw);
        for (int j = 0; j < gw; j++) {
            const float *src = j < nt ? pf->x + (size_t)(t0 + j) * (size_t)K : NULL;
            for (int64_t k = 0; k < K; k++)
                dst[k * gw + j] = src ? src[k] : 0.0f;
        }
        return;
    }
    uint16_t *dst = (uint16_t *)pf->xp + (size_t)g * (size_t)(pf->np * gw * 2);
    for (int j = 0; j < gw; j++) {
        const float *src = j < nt ? pf->x + (size_t)(t0 + j) * (size_t)K : NULL;
        for (int64_t k = 0; k < 2 * pf->np; k++)
            dst[(k / 2 * gw + j) * 2 + (k & 1)] = src && k < K ? bf16_rne(src[k]) : 0;
    }
}

/* Decodes rows [r0, r0+nt) whole into A (row stride pf->lda elements): each
 * row is read start to end, which the hardware prefetcher streams well
 * (short per-slab pieces of 48 rows ran latency-bound). For the bf16 kernel
 * s[slab·nt + i] receives the scale factored out of row i's slab. */
static void decode_tile(const prefill *pf, int64_t r0, int nt, void *A, float *s)
{
    const int64_t K = pf->w->cols;
    for (int i = 0; i < nt; i++) {
        if (!pf->bf16) {
            pf->isa->dec_f32(pf->w, r0 + i, 0, K, (float *)A + i * pf->lda);
            continue;
        }
        for (int64_t sl = 0; sl < pf->nslab; sl++) {
            const int64_t k0 = sl * pf->kc, kn = min64(pf->kc, K - k0);
            s[sl * nt + i] = pf->isa->dec_bf16(pf->w, r0 + i, k0, kn, (uint16_t *)A + i * pf->lda + k0);
        }
    }
}

/* One k-slab of one tile: every token group × every mr rows. */
static void slab_gemm(const prefill *pf, const void *A, int nt, int64_t k0, int64_t kn, const float *s,
                      float *CT, int64_t ldc)
{
    const dm_mm_isa *isa = pf->isa;
    const int64_t gsz = pf->np * pf->gw, lda = pf->lda;   /* one packed group, in floats or pairs */
    for (int g = 0; g < pf->ng; g++) {
        int left = pf->tb - g * pf->gw;
        int nvg = (int)min64(isa->nv, (left + isa->lanes - 1) / isa->lanes);
        for (int i = 0; i < nt; i += isa->mr) {
            int m = (int)min64(isa->mr, nt - i);
            float *c = CT + i * ldc + g * pf->gw;
            if (pf->bf16) {
                const uint16_t *B = (const uint16_t *)pf->xp + 2 * (g * gsz + k0 / 2 * pf->gw);
                isa->gemm_bf16(m, nvg, (kn + 1) / 2, (const uint16_t *)A + i * lda + k0, lda, B,
                               2 * pf->gw, c, ldc, s + i, k0 > 0, pf->gw);
            } else {
                const float *B = (const float *)pf->xp + g * gsz + k0 * pf->gw;
                isa->gemm_f32(m, nvg, kn, (const float *)A + i * lda + k0, lda, B, pf->gw, c, ldc,
                              NULL, k0 > 0, pf->gw);
            }
        }
    }
}

/* Rows [r0, r0+nt) for every token of the block. */
static void prefill_tile(const prefill *pf, int64_t r0, int nt)
{
    const int64_t K = pf->w->cols, N = pf->w->rows, ldc = (int64_t)pf->ng * pf->gw;
    float *CT = scratch(SCR_C, (size_t)nt * (size_t)ldc * 4);
    float *s = pf->bf16 ? scratch(SCR_S, (size_t)(nt * pf->nslab) * 4) : NULL;
    void *A = scratch(SCR_A, (size_t)nt * (size_t)pf->lda * (pf->bf16 ? 2 : 4));
    decode_tile(pf, r0, nt, A, s);
    for (int64_t sl = 0; sl < pf->nslab; sl++)
        slab_gemm(pf, A, nt, sl * pf->kc, min64(pf->kc, K - sl * pf->kc), s ? s + sl * nt : NULL, CT, ldc);
    for (int t = 0; t < pf->tb; t++)
        for (int i = 0; i < nt; i++)
            pf->y[(size_t)t * (size_t)N + (size_t)(r0 + i)] = CT[i * ldc + t];
}

static void matmul_prefill(const dm_mm_isa *isa, dm_mm_act act, float *y, const float *x,
                           const dm_wmat *w, int T)
{
    const int64_t N = w->rows, K = w->cols;
    prefill pf = { .isa = isa, .w = w, .gw = isa->lanes * isa->nv };
    const dm_wfmt f = w->fmt;
    pf.bf16 = isa->gemm_bf16 && ((act == DM_MM_ACT_BF16 && f == DM_WFMT_BF16) ||
                                 (act == DM_MM_ACT_BF16_ALL && f != DM_WFMT_F32 && f != DM_WFMT_F16));
    pf.kc = pf.bf16 && w->fmt != DM_WFMT_FP8 ? KC_BF16 : KC_F32;
    pf.nslab = (K + pf.kc - 1) / pf.kc;
    pf.lda = (K + 2) & ~(int64_t)1;
    pf.np = pf.bf16 ? (K + 1) / 2 : K;
    const int64_t ntiles = (N + TILE_N - 1) / TILE_N;
    for (int t0 = 0; t0 < T; t0 += TB_MAX) {
        pf.tb = (int)min64(TB_MAX, T - t0);
        pf.ng = (pf.tb + pf.gw - 1) / pf.gw;
        pf.x = x + (size_t)t0 * (size_t)K;
        pf.y = y + (size_t)t0 * (size_t)N;
        pf.xp = scratch(SCR_X, (size_t)pf.ng * (size_t)(pf.np * pf.gw) * 4);
        int nth = mm_threads((double)N * (double)K * pf.tb);
        (void)nth;
OMP("omp parallel num_threads(nth) if (nth > 1)")
        {
OMP("omp for schedule(static)")
            for (int g = 0; g < pf.ng; g++)
                pack_group(&pf, g);
OMP("omp for schedule(dynamic, 1)")
            for (int64_t tile = 0; tile < ntiles; tile++)
                prefill_tile(&pf, tile * TILE_N, (int)min64(TILE_N, N - tile * TILE_N));
        }
    }
}

/* ---- entry points -------------------------------------------------------------- */

void dm_matmul_isa(const dm_mm_isa *isa, dm_mm_act act, float *y, const float *x, const dm_wmat *w, int T)
{
    DM_ASSERT(T >= 0 && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT && dm_wfmt_cols_ok(w->fmt, w->cols));
    if (T == 0 || w->rows == 0)
        return;
    if (T <= DM_MM_STREAM_T)
        matmul_decode(isa, y, x, w, T);
    else
        matmul_prefill(isa, act, y, x, w, T);
}

void dm_matmul(float *y, const float *x, const dm_wmat *w, int T)
{
    dm_matmul_isa(dm_mm_isa_best(), dm_ops_precise() ? DM_MM_ACT_F32 : DM_MM_ACT_BF16, y, x, w, T);
}

void dm_matmul_exact(float *y, const float *x, const dm_wmat *w, int T)
{
    dm_matmul_isa(dm_mm_isa_best(), DM_MM_ACT_F32, y, x, w, T);
}

typedef struct job_chunk {
    int job;
    int64_t r, nr;
} job_chunk;

/* The decode-regime jobs share one parallel region: all their row chunks go
 * into one dynamic loop, so n products cost one barrier instead of n (MoE
 * decode runs ~20 small products per layer). Each chunk runs exactly as in
 * matmul_decode, so results are identical to separate calls. Larger jobs go
 * through dm_matmul_isa one by one. */
void dm_matmul_many(const dm_mm_job *jobs, int n)
{
    const dm_mm_isa *isa = dm_mm_isa_best();
    int64_t nchunk = 0, max_k = 1;
    double macs = 0;
    for (int j = 0; j < n; j++) {
        const dm_mm_job *jb = &jobs[j];
        DM_ASSERT(jb->T >= 0 && dm_wfmt_cols_ok(jb->w->fmt, jb->w->cols));
        if (jb->T == 0 || jb->w->rows == 0)
            continue;
        if (jb->T > DM_MM_STREAM_T) {
            dm_mm_act act = jb->exact || dm_ops_precise() ? DM_MM_ACT_F32 : DM_MM_ACT_BF16;
            dm_matmul_isa(isa, act, jb->y, jb->x, jb->w, jb->T);
            continue;
        }
        const int64_t chunk = stream_chunk_rows(jb->w);
        nchunk += (jb->w->rows + chunk - 1) / chunk;
        max_k = jb->w->cols > max_k ? jb->w->cols : max_k;
        macs += (double)jb->w->rows * (double)jb->w->cols * jb->T;
    }
    if (nchunk == 0)
        return;
    job_chunk *list = scratch(SCR_JOBS, (size_t)nchunk * sizeof(job_chunk));
    int64_t c = 0;
    for (int j = 0; j < n; j++) {
        const dm_mm_job *jb = &jobs[j];
        if (jb->T == 0 || jb->w->rows == 0 || jb->T > DM_MM_STREAM_T)
            continue;
        const int64_t chunk = stream_chunk_rows(jb->w);
        for (int64_t r = 0; r < jb->w->rows; r += chunk)
            list[c++] = (job_chunk){ j, r, min64(chunk, jb->w->rows - r) };
    }
    int nth = mm_threads(macs);
    if (nth > nchunk)
        nth = (int)nchunk;
OMP("omp parallel num_threads(nth) if (nth > 1)")
    {
        float *xs = scratch(SCR_X, (size_t)(DM_MM_DECODE_T * DM_MM_XS_LD(max_k)) * 4);
OMP("omp for schedule(dynamic, 1)")
        for (int64_t i = 0; i < nchunk; i++) {
            const dm_mm_job *jb = &jobs[list[i].job];
            stream_rows(isa, jb->y, jb->x, jb->w, jb->T, list[i].r, list[i].nr, xs);
        }
    }
}

void dm_matmul_ref(float *y, const float *x, const dm_wmat *w, int T)
{
    const int64_t N = w->rows, K = w->cols;
    float *row = dm_malloc((size_t)K * 4);
    for (int64_t n = 0; n < N; n++) {
        dm_wmat_row_f32(w, n, row);
        for (int t = 0; t < T; t++) {
            const float *xt = x + (size_t)t * (size_t)K;
            double acc = 0;
            for (int64_t k = 0; k < K; k++)
                acc += (double)xt[k] * (double)row[k];
            y[(size_t)t * (size_t)N + (size_t)n] = (float)acc;
        }
    }
    free(row);
}

/* Output columns [c0, c0+pw) for all T tokens: W's rows are decoded kcx at
 * a time over the panel's columns into B[kcx][pw], then the micro-kernel
 * runs on each gw-wide sub-panel (nc valid columns). */
static void xw_panel(const dm_mm_isa *isa, float *y, const float *x, const dm_wmat *w, int T, int64_t c0,
                     int64_t pw, int64_t kcx)
{
    const int64_t N = w->rows, K = w->cols, gw = isa->lanes * isa->nv;
    const int64_t ncp = min64(pw, K - c0), ldb = (ncp + gw - 1) / gw * gw;
    float *B = scratch(SCR_A, (size_t)(kcx * ldb) * 4);
    for (int64_t n0 = 0; n0 < N; n0 += kcx) {
        const int64_t nn = min64(kcx, N - n0);
        for (int64_t p = 0; p < nn; p++) {
            isa->dec_f32(w, n0 + p, c0, ncp, B + p * ldb);
            memset(B + p * ldb + ncp, 0, (size_t)(ldb - ncp) * 4);
        }
        for (int64_t sub = 0; sub < ncp; sub += gw) {
            const int nc = (int)min64(gw, ncp - sub), nv = (nc + isa->lanes - 1) / isa->lanes;
            for (int t = 0; t < T; t += isa->mr) {
                int m = (int)min64(isa->mr, T - t);
                isa->gemm_f32(m, nv, nn, x + (size_t)t * (size_t)N + n0, N, B + sub, ldb,
                              y + (size_t)t * (size_t)K + c0 + sub, K, NULL, n0 > 0, nc);
            }
        }
    }
}

/* Panels: for few tokens, wide panels and short row slabs (one decode call
 * per row covers many columns; the slab stays in L1/L2); for many tokens,
 * one micro-kernel width per panel so the threads have work to share. */
void dm_matmul_xw_isa(const dm_mm_isa *isa, float *y, const float *x, const dm_wmat *w, int T)
{
    DM_ASSERT(T >= 0 && w->fmt >= 0 && w->fmt < DM_WFMT_COUNT && dm_wfmt_cols_ok(w->fmt, w->cols));
    const int64_t N = w->rows, K = w->cols;
    if (T == 0)
        return;
    if (N == 0) {
        memset(y, 0, (size_t)T * (size_t)K * 4);
        return;
    }
    const int64_t gw = isa->lanes * isa->nv;
    if (isa->xw_tile && T <= isa->mr) {
        const int64_t npan = (K + gw - 1) / gw;
        int nth = mm_threads((double)N * (double)K * T);
        (void)nth;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(static)")
        for (int64_t pan = 0; pan < npan; pan++)
            isa->xw_tile(w, 0, N, pan * gw, (int)min64(gw, K - pan * gw), x, N, T, y + pan * gw, K, false);
        return;
    }
    const bool few = T <= XW_FEW_T;
    const int64_t pw = few ? XW_WIDE : gw, kcx = few ? XW_SLAB_FEW : KC_XW;
    const int64_t npan = (K + pw - 1) / pw;
    int nth = mm_threads((double)N * (double)K * T);
    (void)nth;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(dynamic, 1)")
    for (int64_t pan = 0; pan < npan; pan++)
        xw_panel(isa, y, x, w, T, pan * pw, pw, kcx);
}

void dm_matmul_xw(float *y, const float *x, const dm_wmat *w, int T)
{
    dm_matmul_xw_isa(dm_mm_isa_best(), y, x, w, T);
}

void dm_matmul_xw_ref(float *y, const float *x, const dm_wmat *w, int T)
{
    const int64_t N = w->rows, K = w->cols;
    float *row = dm_malloc((size_t)K * 4);
    double *acc = dm_calloc((size_t)T * (size_t)K, sizeof(double));
    for (int64_t n = 0; n < N; n++) {
        dm_wmat_row_f32(w, n, row);
        for (int t = 0; t < T; t++) {
            double a = x[(size_t)t * (size_t)N + (size_t)n];
            double *at = acc + (size_t)t * (size_t)K;
            for (int64_t k = 0; k < K; k++)
                at[k] += a * (double)row[k];
        }
    }
    for (size_t i = 0; i < (size_t)T * (size_t)K; i++)
        y[i] = (float)acc[i];
    free(acc);
    free(row);
}
