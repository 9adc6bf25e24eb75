/* forward_internal — private to src/model: the forward pass's workspace and
 * the per-block entry points (attention, indexer, router, MoE) that
 * forward.c calls layer by layer. Not part of the public API. */
#ifndef DM_FORWARD_INTERNAL_H
#define DM_FORWARD_INTERNAL_H

#include "model/model.h"

/* Rows of a batch: row i belongs to sequence seq[i] at position pos[i]. A
 * prefill is T rows of one sequence at consecutive positions; a batched
 * decode is one row from each of T sequences. */
struct dm_ctx {
    const dm_model *m;
    int B;                      /* max rows per chunk */
    dm_observer obs;            /* callbacks NULL when not observing */
    bool dense_attention;       /* ignore the indexer's selection */
    uint8_t **expert_keep;      /* [layers] router masks (dm_ctx_set_expert_mask), NULL: none */
    int n_threads;

    dm_seq **row_seq;           /* [B] */
    int *row_pos;               /* [B] */
    int *row_id;                /* [B] row index in the caller's batch */

    float *x;                   /* [B][D] residual stream */
    float *a;                   /* [B][D] normed block input */
    float *cq;                  /* [B][q_lora] q latent after q_a_layernorm */
    float *q;                   /* [B][H][N+P] queries */
    float *kv;                  /* [B][R+P] kv_a output (latent normed in place, rope key rotated) */
    float *qcat;                /* [B][H][R+P] per row: absorbed queries then rotated q_pe */
    float *z;                   /* [B][H][R] attention-weighted latents */
    float *o_in;                /* [B][H·Dv] o_proj input */
    float *blk_out;             /* [B][D] attention or FFN output */

    float *iq;                  /* [B][IH·ID] indexer queries */
    float *iw;                  /* [B][IH] indexer head weights */
    float *ik;                  /* [B][ID] indexer keys */
    int *sel;                   /* [B][topk] selected key positions */
    int *n_sel;                 /* [B] number selected, or -1: every key 0..pos */

    float *scratch;             /* [n_threads][scratch_cap] per-thread scores */
    size_t scratch_cap;

    float *h1, *h2;             /* [B][max FFN width] */
    float *r_logits, *r_scores; /* [B][Emax] */
    float *r_tmp;               /* [n_threads][Emax + n_group] routing scratch */
    int *r_sel;                 /* [B][K] */
    float *r_gate;              /* [B][K] */
    int *ex_count;              /* [Emax + 1] */
    int *ex_slot;               /* [B·K] slot of (row, k) in the expert-sorted order */
    int *ex_row;                /* [B·K] row of each slot */
    float *ex_x;                /* [B·K][D] expert inputs, grouped by expert */
    float *ex_h1, *ex_h2;       /* [B·K][I] */
    float *ex_y;                /* [B·K][D] expert outputs */
    float *obs_out;             /* [B][K][D] expert outputs by (row, k), only when observing */
    dm_mm_job *jobs;            /* [3·(Emax+1)] batched expert products */
    int *job_expert;            /* [Emax+1] */

    float *emb2;                /* [B][2D] MTP: [enorm(e); hnorm(h)] */
};

/* Rows in batch order (rows NULL, first_row 0): the common case. */
static inline void dm_observe_linear(dm_ctx *c, int layer, dm_linear which, int expert, const float *x, int T,
                                     int K)
{
    if (c->obs.linear_in)
        c->obs.linear_in(c->obs.user, layer, which, expert, x, T, K, NULL, 0);
}

static inline void dm_observe_linear_rows(dm_ctx *c, int layer, dm_linear which, int expert, const float *x, int T,
                                          int K, const int *rows, int first_row)
{
    if (c->obs.linear_in)
        c->obs.linear_in(c->obs.user, layer, which, expert, x, T, K, rows, first_row);
}

/* Per-thread scratch of at least n floats (n <= c->scratch_cap). */
float *dm_ctx_thread_scratch(dm_ctx *c);

/* Grows every per-thread scratch to hold n floats (called outside parallel regions). */
void dm_ctx_reserve_scratch(dm_ctx *c, size_t n);

/* Attention block of layer l over the T rows: reads c->a, writes c->blk_out,
 * appends the rows' latents (and indexer keys) to their sequences' caches. */
void dm_attention_forward(dm_ctx *c, int l, int T);

/* DSA indexer of layer l (a layer that owns one): computes c->sel/c->n_sel
 * for the T rows from c->a and c->cq, appending indexer keys to the caches. */
void dm_indexer_forward(dm_ctx *c, int l, int T);

/* Marks every row as attending to all its visible keys (no indexer). */
void dm_indexer_select_all(dm_ctx *c, int T);

/* Feed-forward blocks: read f = c->a ([T][D]), write c->blk_out. */
void dm_mlp_forward(dm_ctx *c, int l, const dm_mlp_w *w, dm_linear first, int T, float *out);
void dm_moe_forward(dm_ctx *c, int l, int T);

/* One decoder layer over the T rows in c->x (in place). */
void dm_layer_forward(dm_ctx *c, int l, int T);

#endif
