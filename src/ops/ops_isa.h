/* ops_isa — private to the ops stage (and its tests): the per-instruction-set
 * kernel tables behind dm_matmul / dm_matmul_xw and the SIMD twins of the
 * vector ops. matmul.c owns the loops, threads and scratch; each
 * matmul_<isa>.c fills one dm_mm_isa table with the same four kernels, and
 * the tests run every table the CPU can execute against the `_ref` twins.
 *
 * Shapes (as in ops.h): T tokens, K inputs, N outputs. In the gemm kernels the
 * letters are generic: C[m][v] = A[m][p] · B[p][v], p the contracted index,
 * A the operand that is broadcast (one scalar or bf16 pair at a time) and B
 * the operand loaded as vectors of `lanes` floats. */
#ifndef DM_OPS_ISA_H
#define DM_OPS_ISA_H

#include "ops/ops.h"

/* Tokens per rowdot call. R = 4 rows × 4 tokens of accumulators is the
 * most that fits in registers; with more tokens each x load from L2 feeds
 * fewer FMAs, and two passes of 4 measured faster than one of 8. */
#define DM_MM_DECODE_T 4
/* dm_matmul with T up to this many tokens streams the weights in passes of
 * <= DM_MM_DECODE_T tokens; above it, the blocked GEMM. Measured on bf16
 * 4096x4096, one thread: a 4-token pass costs ~1.8 ms, the GEMM ~13 ms flat
 * for T = 17..32 (its 64-token groups run half empty), so the crossover is
 * near 28; FP8/FP4 passes re-read fewer bytes. */
#define DM_MM_STREAM_T 24
/* Row stride of rowdot's x scratch for K columns. */
#define DM_MM_XS_LD(K) (((K) + 15) & ~(int64_t)15)

typedef enum dm_mm_isa_id {
    DM_MM_ISA_SCALAR,
    DM_MM_ISA_AVX2,
    DM_MM_ISA_AVX512,      /* AVX-512 F/BW/VL/DQ + F16C, f32 kernels only */
    DM_MM_ISA_AVX512BF16,  /* the above plus the bf16 dot kernel */
    DM_MM_ISA_COUNT
} dm_mm_isa_id;

/* rowdot: y[t*ldy + i] = Σ_k x[t*ldx + k] · w[r0+i][k] for i < nr, t < T
 *   (1 <= T <= DM_MM_DECODE_T), f32 activations, weights decoded exactly.
 *   xs: the caller's scratch of T·DM_MM_XS_LD(K) floats, 64-byte aligned, in
 *   which a kernel may re-lay x (the AVX-512 FP4 kernel permutes it).
 * dec_f32: dst[0..n) = w[r][k0 .. k0+n) exactly as dm_wmat_row_f32 decodes it;
 *   k0 a multiple of 16.
 * dec_bf16 (NULL unless the table has gemm_bf16): dst[0..n) = w[r][k0..k0+n)/s
 *   as bf16 bits, exact (no rounding) for BF16/FP8/NVFP4/MXFP4 in their normal
 *   range, returning s; for FP8 the span must lie inside one 128-column block.
 *   Odd n is padded with one zero element.
 * gemm_f32: C[i*ldc + c] (= or +=) s[i] · Σ_{p<kc} A[i*lda + p] · B[p*ldb + c]
 *   for i < m <= mr, c < min(nv*lanes, ncols), nv <= the table's nv; s NULL
 *   means 1; accumulate false overwrites C.
 * gemm_bf16: the same over bf16 pairs: kcp pairs, A[i*lda + 2p + {0,1}] and
 *   B[p*ldb + 2c + {0,1}] (B in "VNNI" layout: for each p, lanes × pair).
 * xw_tile (may be NULL: dec_f32 + gemm_f32 then do its job): gemm_f32 with B
 *   = w[n0 + p][c0 + c] decoded on the fly: y[i*ldy + c] (= or +=)
 *   Σ_{p<nn} x[i*ldx + n0 + p] · w[n0+p][c0+c], i < m <= mr, c < nc <=
 *   lanes·nv, c0 a multiple of 16. For dm_matmul_xw with few tokens. */
typedef struct dm_mm_isa {
    const char *name;
    int lanes;   /* floats per vector */
    int mr;      /* max A rows per gemm call */
    int nv;      /* max B vectors per gemm call */
    void (*rowdot)(const dm_wmat *w, int64_t r0, int64_t nr, const float *x, int64_t ldx, int T,
                   float *y, int64_t ldy, float *xs);
    void (*dec_f32)(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst);
    float (*dec_bf16)(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, uint16_t *dst);
    void (*gemm_f32)(int m, int nv, int64_t kc, const float *A, int64_t lda, const float *B,
                     int64_t ldb, float *C, int64_t ldc, const float *s, bool accumulate, int ncols);
    void (*gemm_bf16)(int m, int nv, int64_t kcp, const uint16_t *A, int64_t lda, const uint16_t *B,
                      int64_t ldb, float *C, int64_t ldc, const float *s, bool accumulate, int ncols);
    void (*xw_tile)(const dm_wmat *w, int64_t n0, int64_t nn, int64_t c0, int nc, const float *x,
                    int64_t ldx, int m, float *y, int64_t ldy, bool accumulate);
} dm_mm_isa;

/* The tables; a table exists whether or not this CPU can run it. */
extern const dm_mm_isa dm_mm_isa_scalar, dm_mm_isa_avx2, dm_mm_isa_avx512, dm_mm_isa_avx512bf16;

/* Table for an id, or NULL if this CPU (ignoring DM_NO_* variables) cannot run it. */
const dm_mm_isa *dm_mm_isa_get(dm_mm_isa_id id);
/* The table dm_matmul uses: the best one dm_cpu() allows. */
const dm_mm_isa *dm_mm_isa_best(void);

/* Which activations the blocked GEMM may round to bf16 (tables with gemm_bf16 only). */
typedef enum dm_mm_act {
    DM_MM_ACT_F32,        /* never (dm_ops_precise(), and the default dispatch) */
    DM_MM_ACT_BF16,       /* for BF16 weights, as ops.h allows (DM_BF16_DOT=1) */
    DM_MM_ACT_BF16_ALL,   /* for BF16/FP8/NVFP4/MXFP4 weights: tests, and the form an AMX path would use */
} dm_mm_act;

/* dm_matmul / dm_matmul_xw with an explicit table and activation policy (tests). */
void dm_matmul_isa(const dm_mm_isa *isa, dm_mm_act act, float *y, const float *x, const dm_wmat *w, int T);
void dm_matmul_xw_isa(const dm_mm_isa *isa, float *y, const float *x, const dm_wmat *w, int T);

/* Scalar decode of one FP8 E4M3 / E8M0 byte through 256-entry tables built
 * once (bit-identical to dm_e4m3_to_f32 / dm_e8m0_to_f32). */
const float *dm_mm_e4m3_lut(void);
const float *dm_mm_e8m0_lut(void);

/* Portable exact row-segment decoder (dec_f32 of the scalar table); SIMD
 * kernels use it for the few columns past their last full vector. */
void dm_mm_dec_f32_scalar(const dm_wmat *w, int64_t r, int64_t k0, int64_t n, float *dst);

/* Threads for an op with `work` units: 1 below min_work or inside an OpenMP
 * parallel region, else dm_threads_get() (vec.c). */
int dm_ops_threads(double work, double min_work);

/* ---- vector-op twins (vec.c, vec_avx2.c) ---- */
float dm_dot_ref(const float *a, const float *b, int64_t n);     /* float64 accumulation */
float dm_dot_avx2(const float *a, const float *b, int64_t n);
void dm_axpy_ref(float *y, float a, const float *x, int64_t n);
void dm_axpy_avx2(float *y, float a, const float *x, int64_t n);

#endif
