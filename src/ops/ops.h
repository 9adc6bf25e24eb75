/* ops — the numeric kernels of the forward (and later backward) pass. Every
 * function takes raw pointers and sizes and never sees a model, so each can be
 * tested alone against a float64 reference (tests/ops/).
 *
 * Shapes: T rows (tokens), K inputs, N outputs; matrices row-major.
 * Kernels with SIMD variants keep a scalar `_ref` twin forever; the fast
 * version is chosen at run time (dm_cpu()) and tested against the twin. */
#ifndef DM_OPS_H
#define DM_OPS_H

#include "formats/formats.h"

/* ---- matrix products over weight matrices in any checkpoint format ------ */

/* y[T][N] = x[T][K] · Wᵀ, W = w ([N][K], any dm_wfmt). Multithreaded over N.
 * Weights are read where they lie; quantized rows are decoded tile by tile. */
void dm_matmul(float *y, const float *x, const dm_wmat *w, int T);
/* dm_matmul that never rounds activations, whatever the precision policy:
 * for products feeding a discontinuous choice (router, indexer top-k), which
 * must see exactly what the reference sees. */
void dm_matmul_exact(float *y, const float *x, const dm_wmat *w, int T);
/* One of several independent products for dm_matmul_many. */
typedef struct dm_mm_job {
    float *y;                 /* [T][N] */
    const float *x;           /* [T][K] */
    const dm_wmat *w;         /* [N][K] */
    int T;
    bool exact;               /* as dm_matmul_exact */
} dm_mm_job;

/* Runs the jobs as dm_matmul (or dm_matmul_exact) would, with identical
 * results, but schedules the small ones together: one parallel region and
 * one barrier for all of them (MoE decode: every selected expert's gate and
 * up projection in one call). Outputs must not overlap inputs. */
void dm_matmul_many(const dm_mm_job *jobs, int n);
/* Scalar reference of dm_matmul (decode each row, float64 accumulation). */
void dm_matmul_ref(float *y, const float *x, const dm_wmat *w, int T);

/* y[T][K] = x[T][N] · W (note: W not transposed), W = w ([N][K]). Used by
 * absorbed MLA (q · W_UK). Overwrites y. */
void dm_matmul_xw(float *y, const float *x, const dm_wmat *w, int T);
void dm_matmul_xw_ref(float *y, const float *x, const dm_wmat *w, int T);

/* Precision policy: by default a bf16 (or f16) weight matrix times a batch of
 * T > 1 rows may round the activations to bf16 and use the CPU's bf16 dot
 * instructions (as llama.cpp does). dm_ops_set_precise(true) keeps
 * activations in f32 everywhere (used by the reference-comparison tests). */
void dm_ops_set_precise(bool precise);
bool dm_ops_precise(void);

/* C[M][N] = alpha·A[M][K]·B + beta·C (row-major), where B is stored [N][K]
 * (trans_b) or [K][N]. OpenBLAS on the calling thread only: callers
 * parallelize around it, and OpenBLAS's own pool would spin against
 * OpenMP's. */
void dm_sgemm(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, bool trans_b,
              float beta, float *C, int ldc);

/* ---- vector ops ----------------------------------------------------------- */

float dm_dot(const float *a, const float *b, int64_t n);
void dm_axpy(float *y, float a, const float *x, int64_t n);      /* y += a·x */
void dm_scale(float *x, float a, int64_t n);                      /* x *= a */
void dm_add(float *y, const float *x, int64_t n);                 /* y += x */

/* y = w ⊙ x / sqrt(mean(x²) + eps) over D (w may be NULL = ones). y may alias x. */
void dm_rmsnorm(float *y, const float *x, const float *w, int64_t D, float eps);
/* y = w ⊙ (x − mean)/sqrt(var + eps) + b (biased variance). y may alias x. */
void dm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t D, float eps);
/* In-place numerically stable softmax over n. */
void dm_softmax(float *x, int64_t n);
/* h = silu(g) ⊙ u, silu(z) = z·σ(z). h may alias g or u. */
void dm_silu_mul(float *h, const float *g, const float *u, int64_t n);
float dm_sigmoid(float x);

/* Indices of the k largest values of x[n] (k <= n), in descending order of
 * value; ties go to the lower index. NaN counts as smallest. */
void dm_topk(const float *x, int64_t n, int k, int *idx);

/* ---- rotary position embedding ------------------------------------------- */

typedef struct dm_rope {
    int dim;              /* rotary dims (qk_rope_head_dim), even */
    double theta;         /* base */
    bool interleaved;     /* true: pairs (2i, 2i+1) (GLM, DeepSeek MLA); false: (i, i+dim/2) */
    /* YaRN (rope_scaling type "yarn"); factor <= 1 or !yarn means none */
    bool yarn;
    double factor, beta_fast, beta_slow, mscale, mscale_all_dim;
    int64_t original_max_position;
} dm_rope;

/* inv_freq[dim/2] (YaRN-corrected when enabled), as HF computes it. */
void dm_rope_inv_freq(const dm_rope *r, double *inv_freq);
/* The cos/sin multiplier YaRN applies (HF attention_factor
 * = get_mscale(factor, mscale) / get_mscale(factor, mscale_all_dim)); 1 if no YaRN. */
double dm_rope_cos_sin_scale(const dm_rope *r);
/* YaRN softmax-scale multiplier get_mscale(factor, mscale_all_dim)²; 1 if no YaRN. */
double dm_rope_softmax_mscale(const dm_rope *r);
/* YaRN's ramp bounds (low, high) over pair index i, as HF computes them
 * (floor/ceil, clamped to [0, dim-1], high += 0.001 if equal). Only
 * meaningful when YaRN is on. (Addition by the ops stage.) */
void dm_rope_yarn_range(const dm_rope *r, double *low, double *high);
/* Rotates x[dim] in place for position pos. */
void dm_rope_apply(float *x, const dm_rope *r, const double *inv_freq, int64_t pos);

#endif
