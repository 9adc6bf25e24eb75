/* train_internal — private to src/train: the parameter table and its views,
 * the activations a training step keeps for its backward pass, and the
 * forward/backward pairs of each block.
 *
 * Letters as in model.h, plus: B windows per step, T tokens per window,
 * n rows per window of the layer being run (T for main layers, T-1 for the
 * MTP layer), M = B·n rows. Every backward ACCUMULATES (+=) into gradients. */
#ifndef DM_TRAIN_INTERNAL_H
#define DM_TRAIN_INTERNAL_H

#include "train/train.h"

/* ---- parameters --------------------------------------------------------- */

typedef struct t_param {
    dm_tensor_spec spec;       /* name, role, shape */
    size_t off, n;             /* offset and count in the flat buffers */
    int64_t t;                 /* AdamW updates applied to it */
    bool frozen;               /* never updated, no gradient view (Router-KD freezes all but the gates) */
} t_param;

/* One allocation per purpose, as llm.c does: weights, grads, Adam m and v. */
typedef struct t_params {
    t_param *p;
    int n;
    size_t total;
    float *w, *g, *m, *v;
} t_params;

int t_params_init(t_params *ps, const dm_config *c, uint64_t seed);
void t_params_free(t_params *ps);
t_param *t_params_find(t_params *ps, const char *name);
/* Whether the stage updates this parameter (train contract). */
bool t_param_trains(const t_param *p, dm_stage_mode mode);

/* Pointers into one of the flat buffers (weights or grads), by role. */
typedef struct t_mlp {
    float *gate, *up, *down;   /* [I][D], [I][D], [D][I] */
} t_mlp;

typedef struct t_layer {
    float *attn_norm, *ffn_norm;             /* [D] */
    float *q_a, *q_a_norm, *q_b, *q_proj;    /* [Q][D], [Q], [H·QH][Q], [H·QH][D] */
    float *kv_a, *kv_a_norm, *kv_b, *o;      /* [R+P][D], [R], [H(N+Dv)][R], [D][H·Dv] */
    float *i_wq_b, *i_wk, *i_kn_w, *i_kn_b, *i_w;   /* indexer: [IH·ID][Q], [ID][D], [ID], [ID], [IH][D] */
    t_mlp mlp;                               /* dense layers */
    float *router, *bias;                    /* [E][D], [E] */
    t_mlp *experts;                          /* [E] */
    t_mlp shared;
    float *enorm, *hnorm, *head_norm, *eh_proj;   /* MTP: [D], [D], [D], [D][2D] */
} t_layer;

typedef struct t_weights {
    float *embed, *final_norm, *lm_head;     /* [V][D], [D], [V][D] (lm_head = embed when tied) */
    t_layer *layers;                         /* [layers + MTP] */
    int n_layers;
} t_weights;

/* Binds views of `base` (ps->w or ps->g) for config c. */
void t_weights_bind(t_weights *tw, const t_params *ps, const dm_config *c, float *base);
/* Gradient views of ps->g in which frozen tensors are NULL, so every
 * backward skips their (weight-gradient) products. */
void t_weights_bind_grads(t_weights *tw, const t_params *ps, const dm_config *c);
void t_weights_free(t_weights *tw);

/* ---- activations ---------------------------------------------------------- */

typedef struct t_lacts {
    int n, M;                  /* rows per window, rows */
    float *x_in;               /* [M][D] layer input */
    float *a;                  /* [M][D] normed attention input */
    float *cq_raw, *cq;        /* [M][Q] */
    float *q;                  /* [M][H][N+P] (rope applied) */
    float *kv_raw;             /* [M][R+P] */
    float *c;                  /* [M][R] normed latent */
    float *kpe;                /* [M][P] rotated rope key */
    float *kvx;                /* [M][H][N+Dv] keys (nope) and values */
    float *probs;              /* [B][H][n][n] attention probabilities */
    float *att;                /* [M][H][Dv] */
    float *x_mid;              /* [M][D] */
    float *f;                  /* [M][D] normed FFN input */
    float *h1, *h2;            /* [M][I] dense MLP or shared expert */
    float *r_logits, *r_scores;/* [M][E] */
    int *sel;                  /* [M][K] */
    float *gate;               /* [M][K] */
    int *slot;                 /* [M][K] slot of (row, k) in the expert-sorted order */
    int *slot_row;             /* [M·K] */
    int *ex_start;             /* [E+1] */
    float *ex_x;               /* [M·K][D] expert inputs */
    float *ex_h1, *ex_h2;      /* [M·K][I] */
    float *ex_y;               /* [M·K][D] expert outputs (before gating) */
    float *iq, *ik_raw, *ik, *iw;  /* indexer: [M][IH][ID], [M][ID], [M][ID], [M][IH] */
    float *idot;               /* [B][IH][n][n] indexer head dots (scaled, before ReLU) */
    float *iprob;              /* [B][n][n] indexer distribution q */
    uint8_t *mask_buf;         /* [B][n][n] this layer's own indexer mask (layers owning an indexer) */
    const uint8_t *mask;       /* the mask the attention uses (1 = key attended), or NULL = causal only */
} t_lacts;

typedef struct t_step_losses {
    double total, main, mtp, balance, indexer;
} t_step_losses;

/* Everything one training step needs, allocated once. */
typedef struct t_model {
    const dm_config *c;
    const dm_train_hparams *hp;
    t_params ps;
    t_weights w, g;            /* views of ps.w and ps.g */
    double *rope_inv_freq;
    int B, T;
    t_lacts *acts;             /* [layers + MTP] */
    float *x_final;            /* [B·T][D] residual after the last layer */
    float *h_final;            /* [B·T][D] after model.norm (the MTP's h) */
    float *mtp_in;             /* [B(T-1)][2D] [enorm(e); hnorm(h)] */
    float *mtp_e;              /* [B(T-1)][D] next-token embeddings */
    float *mtp_out;            /* [B(T-1)][D] MTP layer output */
    float *mtp_hn;             /* [B(T-1)][D] after shared_head.norm */
    /* gradient scratch */
    float *d_x, *d_x2, *d_a, *d_big, *d_q, *d_kv, *d_kvx, *d_att, *d_h1, *d_h2, *d_ex_x, *d_ex_h1, *d_ex_h2,
        *d_ex_y, *d_r, *d_cq, *d_hfinal, *d_mtp_in, *d_mtp;
    float *scratch;            /* per-thread scratch */
    size_t scratch_per_thread;
    int n_threads;
    int64_t *load;             /* [layers + MTP][Emax] expert assignments this step */
    double idx_loss;           /* indexer loss of the current step */
    float idx_scale;           /* idx_weight / (indexer queries in the step) */
} t_model;

int t_model_init(t_model *tm, const dm_config *c, const dm_train_hparams *hp, dm_err *err);
void t_model_free(t_model *tm);

/* One step's forward and backward on windows w[B][T+1]: fills the losses,
 * accumulates every gradient into tm->ps.g (zeroed by the caller) and counts
 * the expert loads. */
void t_step(t_model *tm, const int32_t *w, dm_stage_mode mode, t_step_losses *out);

/* ---- Router-KD (kd_loss.c, tmodel.c) ------------------------------------------------ */

/* KL(p ‖ q) of one position, p the teacher's cached distribution — its top k
 * tokens ids[k] with log-probabilities logp[k] plus an "other" bucket of
 * log-mass other_logp (-inf: none) — and q = softmax(z/τ) over the student
 * logits z[V], the other bucket being q's mass outside ids. At τ != 1 the
 * teacher is p_i ∝ exp(logp_i/τ) over the k + 1 buckets. Returns the KL in
 * nats; with dz, writes dz = scale·τ²·∂KL/∂z = scale·τ·(q - p̃), where p̃ is
 * p on the support and spreads p_other over the rest in proportion to q. */
double t_kd_row(const float *z, int V, const int32_t *ids, const float *logp, float other_logp, int k, double tau,
                float scale, float *dz);

/* The teacher's targets of one KD step. Main-head row r = b·T + i has the
 * cached distribution at position pos[r] (-1: none, e.g. padding); the MTP
 * row b·(T-1) + i (predicting token i+2) uses pos[b·T + i + 1]. */
typedef struct t_kd_batch {
    const int64_t *pos;        /* [B·T] */
    int top_k;
    const int32_t *top_id;     /* [positions][top_k] */
    const float *logp;         /* [positions][top_k] */
    const float *other_logp;   /* [positions] */
    double tau;
    double mtp_weight;         /* 0: the MTP head is not distilled */
    double *row_kl;            /* [B·T] per main row KL (NaN where pos < 0), or NULL */
} t_kd_batch;

typedef struct t_kd_losses {
    double loss;               /* τ²·(mean main KL + mtp_weight · mean MTP KL): what the gradient is of */
    double kl_main, kl_mtp;    /* sums of the row KLs */
    int64_t n_main, n_mtp;     /* rows with a target */
} t_kd_losses;

/* One Router-KD step: the forward in sparse mode (attention as served),
 * KL heads, and (backward) the gradients of loss into the unfrozen tensors.
 * The model must have MoE layers. */
void t_step_kd(t_model *tm, const int32_t *w, const t_kd_batch *kd, bool backward, t_kd_losses *out);

/* ---- blocks (forward/backward pairs) ------------------------------------------- */

/* GEMM on row-major f32: C = alpha·op(A)·op(B) + beta·C, multithreaded. */
void t_gemm(bool ta, bool tb, int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb,
            float beta, float *C, int ldc);
/* Linear over rows: Y[M][out] = X[M][in]·Wᵀ, and its backward (dX += dY·W; dW += dYᵀ·X). */
void t_linear_forward(float *Y, const float *X, const float *W, int M, int in, int out);
void t_linear_backward(float *dX, float *dW, const float *dY, const float *X, const float *W, int M, int in, int out);

/* The attention block of layer l: reads acts->a, writes o[M][D]; and back. */
void t_attention_forward(t_model *tm, int l, dm_stage_mode mode, float *o);
void t_attention_backward(t_model *tm, int l, dm_stage_mode mode, const float *d_o, float *d_a);

/* The indexer of layer l (one that owns an indexer), in the indexer stages:
 * t_indexer_select computes its scores and the attention mask (causal; and
 * the top-k selection in sparse mode) before the attention; after it,
 * t_indexer_distill computes the KL to the attention's head-averaged
 * probabilities (train contract) times scale, and — its inputs being
 * detached — immediately accumulates its gradient into the indexer weights.
 * Returns the (scaled) loss. */
void t_indexer_select(t_model *tm, int l, dm_stage_mode mode);
double t_indexer_distill(t_model *tm, int l, dm_stage_mode mode, float scale);

/* Feed-forward block of layer l: reads acts->f, writes y[M][D]; and back.
 * The MoE forward adds its balance loss to *bal (already scaled by alpha/B). */
void t_ffn_forward(t_model *tm, int l, float *y, double *bal);
void t_ffn_backward(t_model *tm, int l, const float *d_y, float *d_f);

/* ---- optimizer (optim.c) ---------------------------------------------------------- */

/* Learning rate of a 0-based step: linear warmup, then cosine to min_lr_ratio·lr. */
double t_lr_at(const dm_train_hparams *hp, int step);
/* Global L2 norm of the gradients of the parameters this stage trains. */
double t_grad_norm(const t_params *ps, dm_stage_mode mode);
/* Clipping (by grad_norm) and one AdamW update of the parameters the stage trains. */
void t_adamw(t_params *ps, const dm_train_hparams *hp, dm_stage_mode mode, double lr, double grad_norm);
/* The correction-bias sign update from the step's expert loads. */
void t_update_router_bias(t_model *tm);

/* Per-thread scratch of tm (size tm->scratch_per_thread floats). */
float *t_thread_scratch(t_model *tm);

#endif
