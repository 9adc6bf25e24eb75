/* ops — the numeric kernels of the forward and backward passes. Every
 * function takes raw pointers and sizes and never sees a model, so each can be
 * tested alone against a float64 reference (tests/ops/).
 *
 * Backward functions (training) sit right after their forward, llm.c style:
 * arguments in the order outputs (the gradients), upstream gradient, the
 * forward's inputs, weights, sizes; they ACCUMULATE (+=) into gradient
 * buffers unless their comment says "written". Gradient buffers must not
 * overlap the other arguments unless the comment allows it. Each is checked
 * against float64 finite differences in tests/ops/test_backward.c.
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
/* C[M][N] = alpha·op(A)·op(B) + beta·C (row-major), op(A) = A [M][K] or,
 * with trans_a, Aᵀ for A stored [K][M]; op(B) as in dm_sgemm. beta = 0
 * overwrites C (old contents, even NaN, ignored); beta = 1 accumulates
 * (dW += dYᵀ·X is trans_a with beta 1). Training's product: split over
 * dm_threads_get() OpenMP threads (one inside a parallel region), each
 * running single-threaded OpenBLAS on whole tiles of C chosen from the shape
 * alone, so the result is bitwise identical for any thread count. */
void dm_sgemm_mt(int M, int N, int K, float alpha, const float *A, int lda, bool trans_a, const float *B, int ldb,
                 bool trans_b, float beta, float *C, int ldc);

/* ---- vector ops ----------------------------------------------------------- */

float dm_dot(const float *a, const float *b, int64_t n);
void dm_axpy(float *y, float a, const float *x, int64_t n);      /* y += a·x */
void dm_scale(float *x, float a, int64_t n);                      /* x *= a */
void dm_add(float *y, const float *x, int64_t n);                 /* y += x */

/* y = w ⊙ x / sqrt(mean(x²) + eps) over D (w may be NULL = ones). y may alias x. */
void dm_rmsnorm(float *y, const float *x, const float *w, int64_t D, float eps);
/* dx += ∂/∂x, dw += ∂/∂w of Σ dy·rmsnorm(x) for one row (w NULL: ones, dw
 * ignored; dw NULL: skipped). Statistics recomputed from x, in double. */
void dm_rmsnorm_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t D, float eps);
/* dm_rmsnorm over T contiguous rows [T][D], multithreaded over rows. */
void dm_rmsnorm_rows(float *y, const float *x, const float *w, int64_t T, int64_t D, float eps);
/* dm_rmsnorm_backward over T rows: dx rows as the one-row version (bitwise);
 * dw += the sum over rows, each column summed in double in row order (not
 * bitwise the one-row loop). Multithreaded; results independent of the
 * thread count. Allocates T doubles of scratch per call. */
void dm_rmsnorm_backward_rows(float *dx, float *dw, const float *dy, const float *x, const float *w, int64_t T,
                              int64_t D, float eps);
/* y = w ⊙ (x − mean)/sqrt(var + eps) + b (biased variance). y may alias x. */
void dm_layernorm(float *y, const float *x, const float *w, const float *b, int64_t D, float eps);
/* dx, dw, db += gradients of Σ dy·layernorm(x) for one row (w / b NULL:
 * ones / zeros, and dw / db ignored; dw or db NULL: skipped). */
void dm_layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                           const float *b, int64_t D, float eps);
/* Rows variants, as for RMSNorm. */
void dm_layernorm_rows(float *y, const float *x, const float *w, const float *b, int64_t T, int64_t D, float eps);
void dm_layernorm_backward_rows(float *dx, float *dw, float *db, const float *dy, const float *x, const float *w,
                                const float *b, int64_t T, int64_t D, float eps);
/* In-place numerically stable softmax over n. */
void dm_softmax(float *x, int64_t n);
/* dx += y ⊙ (dy − Σ y·dy), the backward of y = softmax(x) given its output y
 * (ACCUMULATES; dx must not overlap dy or y). */
void dm_softmax_backward(float *dx, const float *dy, const float *y, int64_t n);
/* Attention's softmax step, p = softmax(scale·s) (masked keys: s = −inf, p =
 * 0): ds = scale · p ⊙ (dp − Σ p·dp) is the gradient with respect to the raw
 * scores s. WRITTEN, not accumulated; ds may alias dp or p (one buffer turns
 * dP into dS in place). Masked entries get 0 (p = 0). */
void dm_attn_softmax_backward(float *ds, const float *dp, const float *p, int64_t n, float scale);
/* h = silu(g) ⊙ u, silu(z) = z·σ(z). h may alias g or u. */
void dm_silu_mul(float *h, const float *g, const float *u, int64_t n);
/* dg += dh ⊙ u ⊙ silu'(g), du += dh ⊙ silu(g). */
void dm_silu_mul_backward(float *dg, float *du, const float *dh, const float *g, const float *u, int64_t n);
/* σ(x); its derivative σ(1 − σ) is inlined where needed. */
float dm_sigmoid(float x);

/* Indices of the k largest values of x[n] (k <= n), in descending order of
 * value; ties go to the lower index. NaN counts as smallest. */
void dm_topk(const float *x, int64_t n, int k, int *idx);

/* ---- the ends of a language model (training, f32 tables) -------------------- */

/* x[t] = E[tokens[t]] for t < T, rows of D floats (tokens in range: the caller's check). */
void dm_embedding(float *x, const float *E, const int *tokens, int64_t T, int64_t D);
/* dE[tokens[t]] += dx[t] (scatter-add), multithreaded over columns; repeated
 * tokens add in row order, bitwise as the sequential loop, any thread count. */
void dm_embedding_backward(float *dE, const float *dx, const int *tokens, int64_t T, int64_t D);
/* Cross entropy of one row of logits[V] against target: *loss (WRITTEN) =
 * −log softmax(logits)[target], computed in double (log-sum-exp); dlogits
 * (WRITTEN, not accumulated; may be NULL for the loss alone; may alias
 * logits) = scale·(softmax(logits) − onehot(target)), scale typically
 * 1/(number of rows in the loss). target < 0 marks an ignored row: loss 0,
 * dlogits zeros. */
void dm_cross_entropy(float *dlogits, double *loss, const float *logits, int target, int64_t V, float scale);

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
/* Backward of dm_rope_apply, in place on the gradient: dx[dim] (holding dy on
 * entry) becomes its adjoint, the rotation by −angle with the same cos/sin
 * scale factor (overwrites; not an accumulation). */
void dm_rope_backward(float *dx, const dm_rope *r, const double *inv_freq, int64_t pos);

#endif
