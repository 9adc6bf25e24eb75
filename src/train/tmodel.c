/* tmodel — one training step, top to bottom and back (train contract):
 *   embedding → layers (attention, FFN) → model.norm → lm_head + cross-entropy
 *   → MTP: eh_proj([enorm(E[t+1]); hnorm(h)]) → MTP layer → shared_head.norm
 *   → lm_head + cross-entropy (weighted) ;  then every backward in reverse.
 * The heads' forward and backward are fused per chunk of rows (logits never
 * exist for the whole batch). All buffers are allocated once in t_model_init. */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { HEAD_CHUNK = 256 };   /* rows of logits alive at a time */

float *t_thread_scratch(t_model *tm)
{
    const int t = dm_thread_id();
    DM_ASSERT(t < tm->n_threads);
    return tm->scratch + (size_t)t * tm->scratch_per_thread;
}

static void *buf(size_t count) { return dm_aligned_alloc((count ? count : 1) * sizeof(float)); }

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

/* Activations of layer l for rows = B·n. */
static void lacts_alloc(t_lacts *A, const dm_config *c, int l, int B, int n)
{
    const size_t M = (size_t)B * n, D = (size_t)c->hidden_size, H = (size_t)c->n_heads;
    const size_t Q = (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1), R = (size_t)c->kv_lora_rank;
    const size_t P = (size_t)c->qk_rope_dim, QH = (size_t)c->qk_head_dim;
    const size_t KVH = (size_t)(c->qk_nope_dim + c->v_head_dim), Dv = (size_t)c->v_head_dim;
    A->n = n;
    A->M = (int)M;
    A->x_in = buf(M * D);
    A->a = buf(M * D);
    A->cq_raw = buf(M * Q);
    A->cq = buf(M * Q);
    A->q = buf(M * H * QH);
    A->kv_raw = buf(M * (R + P));
    A->c = buf(M * R);
    A->kpe = buf(M * P);
    A->kvx = buf(M * H * KVH);
    A->probs = buf((size_t)B * H * n * n);
    A->att = buf(M * H * Dv);
    A->x_mid = buf(M * D);
    A->f = buf(M * D);
    if (c->layer_moe[l]) {
        const size_t E = (size_t)c->layer_experts[l], K = (size_t)c->n_experts_per_tok;
        const size_t I = (size_t)c->moe_intermediate_size, Is = I * (size_t)c->n_shared_experts;
        A->h1 = buf(M * Is);
        A->h2 = buf(M * Is);
        A->r_logits = buf(M * E);
        A->r_scores = buf(M * E);
        A->sel = buf(M * K);
        A->gate = buf(M * K);
        A->slot = buf(M * K);
        A->slot_row = buf(M * K);
        A->ex_start = buf(E + 1);
        A->ex_x = buf(M * K * D);
        A->ex_h1 = buf(M * K * I);
        A->ex_h2 = buf(M * K * I);
        A->ex_y = buf(M * K * D);
    } else {
        A->h1 = buf(M * (size_t)c->intermediate_size);
        A->h2 = buf(M * (size_t)c->intermediate_size);
    }
    if (c->has_indexer && c->layer_index_full[l]) {
        const size_t IH = (size_t)c->index_n_heads, ID = (size_t)c->index_head_dim;
        A->iq = buf(M * IH * ID);
        A->ik_raw = buf(M * ID);
        A->ik = buf(M * ID);
        A->iw = buf(M * IH);
        A->idot = buf((size_t)B * IH * n * n);
        A->iprob = buf((size_t)B * n * n);
        A->mask_buf = dm_aligned_alloc((size_t)B * n * n);
    }
}

static void lacts_free(t_lacts *A)
{
    void *p[] = { A->x_in, A->a, A->cq_raw, A->cq, A->q, A->kv_raw, A->c, A->kpe, A->kvx, A->probs, A->att,
                  A->x_mid, A->f, A->h1, A->h2, A->r_logits, A->r_scores, A->sel, A->gate, A->slot, A->slot_row,
                  A->ex_start, A->ex_x, A->ex_h1, A->ex_h2, A->ex_y, A->iq, A->ik_raw, A->ik, A->iw, A->idot,
                  A->iprob, A->mask_buf };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        dm_aligned_free(p[i]);
}

int t_model_init(t_model *tm, const dm_config *c, const dm_train_hparams *hp, dm_err *err)
{
    memset(tm, 0, sizeof *tm);
    if (hp->seq_len < 2 || hp->batch_seqs < 1)
        return dm_errorf(err, "training needs seq_len >= 2 and batch_seqs >= 1");
    tm->c = c;
    tm->hp = hp;
    tm->B = hp->batch_seqs;
    tm->T = hp->seq_len;
    t_params_init(&tm->ps, c, hp->seed);
    t_weights_bind(&tm->w, &tm->ps, c, tm->ps.w);
    t_weights_bind(&tm->g, &tm->ps, c, tm->ps.g);
    tm->rope_inv_freq = dm_calloc((size_t)c->qk_rope_dim / 2, sizeof(double));
    dm_rope_inv_freq(&c->rope, tm->rope_inv_freq);

    const int L = c->n_layers, total = dm_config_total_layers(c), B = tm->B, T = tm->T;
    tm->acts = dm_calloc((size_t)total, sizeof(t_lacts));
    for (int l = 0; l < total; l++)
        lacts_alloc(&tm->acts[l], c, l, B, l < L ? T : T - 1);

    const size_t M = (size_t)B * T, D = (size_t)c->hidden_size, H = (size_t)c->n_heads;
    const size_t K = (size_t)c->n_experts_per_tok, E = (size_t)c->n_routed_experts;
    const size_t I = (size_t)c->moe_intermediate_size, Is = I * (size_t)c->n_shared_experts;
    const size_t Q = (size_t)c->q_lora_rank, R = (size_t)c->kv_lora_rank, P = (size_t)c->qk_rope_dim;
    const size_t IH = (size_t)c->index_n_heads, ID = (size_t)c->index_head_dim;
    const size_t V = (size_t)c->vocab_size, n = (size_t)T;
    tm->x_final = buf(M * D);
    tm->h_final = buf(M * D);
    tm->mtp_in = buf(M * 2 * D);
    tm->mtp_e = buf(M * D);
    tm->mtp_out = buf(M * D);
    tm->mtp_hn = buf(M * D);
    tm->d_x = buf(M * D);
    tm->d_x2 = buf(M * (D > P ? D : P));
    tm->d_a = buf(M * D);
    tm->d_hfinal = buf(M * D);
    tm->d_mtp_in = buf(M * 2 * D);
    tm->d_mtp = buf(M * D);
    tm->d_q = buf(M * max3(H * (size_t)c->qk_head_dim, IH * ID, 1));
    tm->d_kv = buf(M * max3(R + P, ID, 1));
    tm->d_kvx = buf(M * max3(H * (size_t)(c->qk_nope_dim + c->v_head_dim), ID, 1));
    tm->d_att = buf(M * max3(H * (size_t)c->v_head_dim, IH, 1));
    tm->d_cq = buf(M * max3(Q, R, 1));
    const size_t wide = max3(M * K * I, M * Is, M * max3((size_t)c->intermediate_size, Q, 1));
    tm->d_h1 = buf(wide);
    tm->d_h2 = buf(wide);
    tm->d_ex_h1 = buf(wide);
    tm->d_ex_x = buf(M * K * D);
    tm->d_ex_y = buf(M * K * D);
    tm->d_r = buf(M * (K + E));
    tm->d_big = buf(max3((size_t)B * H * n * P, 2 * M, (size_t)HEAD_CHUNK * V * 2));
    tm->n_threads = dm_threads_get();
    tm->scratch_per_thread = max3(n * n + 2 * n, 2 * (E + (size_t)c->n_group) + 64, (size_t)HEAD_CHUNK * 4);
    tm->scratch = buf((size_t)tm->n_threads * tm->scratch_per_thread);
    tm->load = dm_calloc((size_t)total * E, sizeof(int64_t));
    return 0;
}

void t_model_free(t_model *tm)
{
    const int total = dm_config_total_layers(tm->c);
    for (int l = 0; l < total; l++)
        lacts_free(&tm->acts[l]);
    free(tm->acts);
    void *p[] = { tm->x_final, tm->h_final, tm->mtp_in, tm->mtp_e, tm->mtp_out, tm->mtp_hn, tm->d_x, tm->d_x2,
                  tm->d_a, tm->d_hfinal, tm->d_mtp_in, tm->d_mtp, tm->d_q, tm->d_kv, tm->d_kvx, tm->d_att, tm->d_cq,
                  tm->d_h1, tm->d_h2, tm->d_ex_h1, tm->d_ex_x, tm->d_ex_y, tm->d_r, tm->d_big, tm->scratch };
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
        dm_aligned_free(p[i]);
    free(tm->load);
    free(tm->rope_inv_freq);
    t_weights_free(&tm->w);
    t_weights_free(&tm->g);
    t_params_free(&tm->ps);
    memset(tm, 0, sizeof *tm);
}

/* ---- pieces ------------------------------------------------------------------------------ */

static void norm_rows(float *y, const float *x, const float *w, int M, int D, float eps)
{
    dm_rmsnorm_rows(y, x, w, M, D, eps);
}

/* dx[r] += RMSNorm backward (dw accumulates). */
static void norm_rows_backward(float *dx, float *dw, const float *dy, const float *x, const float *w, int M, int D,
                               float eps)
{
    dm_rmsnorm_backward_rows(dx, dw, dy, x, w, M, D, eps);
}

/* The loss of one output row: fills dlogits[V] (the gradient of the row's
 * weighted loss, when backward) and returns the row's loss. */
typedef double (*t_row_loss)(const void *user, int row, const float *logits, float *dlogits, bool backward, int V);

/* lm_head over h[M][D] and a per-row loss; with backward, the gradients:
 * d_h[M][D] += ..., head gradient += (skipped when the head is frozen).
 * Returns the sum of the row losses. */
static double head_loss(t_model *tm, const float *h, int M, t_row_loss loss_fn, const void *user, bool backward,
                        float *d_h)
{
    const dm_config *c = tm->c;
    const int D = c->hidden_size, V = c->vocab_size;
    float *logits = tm->d_big, *dlogits = tm->d_big + (size_t)HEAD_CHUNK * V;
    double loss = 0;
    for (int r0 = 0; r0 < M; r0 += HEAD_CHUNK) {
        const int m = M - r0 < HEAD_CHUNK ? M - r0 : HEAD_CHUNK;
        t_linear_forward(logits, h + (size_t)r0 * D, tm->w.lm_head, m, D, V);
        double part[HEAD_CHUNK];
        #pragma omp parallel for schedule(static)
        for (int i = 0; i < m; i++)
            part[i] = loss_fn(user, r0 + i, logits + (size_t)i * V, dlogits + (size_t)i * V, backward, V);
        for (int i = 0; i < m; i++)
            loss += part[i];
        if (backward)
            t_linear_backward(d_h + (size_t)r0 * D, tm->g.lm_head, dlogits, h + (size_t)r0 * D, tm->w.lm_head, m, D, V);
    }
    return loss;
}

typedef struct ce_rows {
    const int32_t *targets;
    float scale;
} ce_rows;

static double ce_row(const void *user, int row, const float *logits, float *dlogits, bool backward, int V)
{
    const ce_rows *u = user;
    double loss;
    dm_cross_entropy(dlogits, &loss, logits, u->targets[row], V, u->scale);
    (void)backward;   /* the CE gradient costs nothing extra */
    return loss;
}

/* lm_head and cross-entropy against targets[M], scaled by scale in the
 * gradient; returns the plain sum of the cross-entropies. */
static double head_ce(t_model *tm, const float *h, int M, const int32_t *targets, float scale, bool backward,
                      float *d_h)
{
    const ce_rows u = { targets, scale };
    return head_loss(tm, h, M, ce_row, &u, backward, d_h);
}

typedef struct kd_rows {
    const t_kd_batch *kd;
    const int64_t *pos;         /* [rows] teacher position of each row, -1: none */
    float scale;
    double *row_kl;             /* [rows] or NULL */
} kd_rows;

static double kd_row(const void *user, int row, const float *logits, float *dlogits, bool backward, int V)
{
    const kd_rows *u = user;
    const t_kd_batch *kd = u->kd;
    const int64_t p = u->pos[row];
    if (p < 0) {
        if (backward)
            memset(dlogits, 0, (size_t)V * sizeof(float));
        if (u->row_kl)
            u->row_kl[row] = NAN;
        return 0;
    }
    const size_t at = (size_t)p * (size_t)kd->top_k;
    const double kl = t_kd_row(logits, V, kd->top_id + at, kd->logp + at, kd->other_logp[p], kd->top_k, kd->tau,
                               u->scale, backward ? dlogits : NULL);
    if (u->row_kl)
        u->row_kl[row] = kl;
    return kl;
}

static void layer_forward(t_model *tm, int l, dm_stage_mode mode, float *x_out, double *bal)
{
    const dm_config *c = tm->c;
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    const int M = A->M, D = c->hidden_size;
    norm_rows(A->a, A->x_in, W->attn_norm, M, D, c->rms_norm_eps);
    t_attention_forward(tm, l, mode, A->x_mid);
    dm_add(A->x_mid, A->x_in, (int64_t)M * D);
    norm_rows(A->f, A->x_mid, W->ffn_norm, M, D, c->rms_norm_eps);
    t_ffn_forward(tm, l, x_out, bal);
    dm_add(x_out, A->x_mid, (int64_t)M * D);
}

/* d_x: in, the gradient of the layer output; out, of its input. */
static void layer_backward(t_model *tm, int l, dm_stage_mode mode, float *d_x)
{
    const dm_config *c = tm->c;
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    t_layer *G = &tm->g.layers[l];
    const int M = A->M, D = c->hidden_size;
    memset(tm->d_a, 0, (size_t)M * D * sizeof(float));
    t_ffn_backward(tm, l, d_x, tm->d_a);
    norm_rows_backward(d_x, G->ffn_norm, tm->d_a, A->x_mid, W->ffn_norm, M, D, c->rms_norm_eps);
    memset(tm->d_a, 0, (size_t)M * D * sizeof(float));
    t_attention_backward(tm, l, mode, d_x, tm->d_a);
    norm_rows_backward(d_x, G->attn_norm, tm->d_a, A->x_in, W->attn_norm, M, D, c->rms_norm_eps);
}

/* The number of indexer-loss queries of a step: Σ over indexer layers of B·n. */
static double indexer_queries(const t_model *tm)
{
    const dm_config *c = tm->c;
    double q = 0;
    for (int l = 0; l < dm_config_total_layers(c); l++)
        if (c->has_indexer && c->layer_index_full[l])
            q += (double)tm->acts[l].M;
    return q;
}

/* ---- the step --------------------------------------------------------------------------------- */

/* Forward of windows w[B][T+1] through the main layers, model.norm and
 * (if any) the MTP layer and shared_head.norm: fills every activation,
 * h_final and mtp_hn. Returns the weighted balance loss. */
static double forward_all(t_model *tm, const int32_t *w, dm_stage_mode mode)
{
    const dm_config *c = tm->c;
    const int B = tm->B, T = tm->T, D = c->hidden_size, L = c->n_layers, Mm = B * T, Mt = B * (T - 1);
    tm->idx_loss = 0;
    tm->idx_scale = mode == DM_STAGE_DENSE || tm->hp->idx_weight == 0
                        ? 0.0f
                        : (float)(tm->hp->idx_weight / indexer_queries(tm));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            memcpy(tm->acts[0].x_in + ((size_t)b * T + i) * D, tm->w.embed + (size_t)w[b * (T + 1) + i] * D,
                   (size_t)D * sizeof(float));
    double bal = 0;
    for (int l = 0; l < L; l++)
        layer_forward(tm, l, mode, l + 1 < L ? tm->acts[l + 1].x_in : tm->x_final, &bal);
    norm_rows(tm->h_final, tm->x_final, tm->w.final_norm, Mm, D, c->rms_norm_eps);
    if (c->n_mtp > 0) {
        const t_layer *W = &tm->w.layers[L];
        for (int b = 0; b < B; b++)
            for (int i = 0; i + 1 < T; i++) {
                const size_t r = (size_t)b * (T - 1) + i;
                memcpy(tm->mtp_e + r * D, tm->w.embed + (size_t)w[b * (T + 1) + i + 1] * D, (size_t)D * sizeof(float));
                dm_rmsnorm(tm->mtp_in + r * 2 * D, tm->mtp_e + r * D, W->enorm, D, c->rms_norm_eps);
                dm_rmsnorm(tm->mtp_in + r * 2 * D + D, tm->h_final + ((size_t)b * T + i) * D, W->hnorm, D,
                           c->rms_norm_eps);
            }
        t_linear_forward(tm->acts[L].x_in, tm->mtp_in, W->eh_proj, Mt, 2 * D, D);
        layer_forward(tm, L, mode, tm->mtp_out, &bal);
        norm_rows(tm->mtp_hn, tm->mtp_out, W->head_norm, Mt, D, c->rms_norm_eps);
    }
    return bal;
}

/* Backward of forward_all from the heads' gradients: d_hfinal [B·T][D]
 * (main head) and d_x [B(T-1)][D] (MTP head output, when the model has an
 * MTP layer). Frozen tensors (NULL gradient views) get no gradient. */
static void backward_all(t_model *tm, const int32_t *w, dm_stage_mode mode)
{
    const dm_config *c = tm->c;
    const int B = tm->B, T = tm->T, D = c->hidden_size, L = c->n_layers, Mm = B * T, Mt = B * (T - 1);
    /* MTP first (its input h_final also feeds the main head) */
    if (c->n_mtp > 0) {
        const t_layer *W = &tm->w.layers[L];
        t_layer *G = &tm->g.layers[L];
        float *d_u = tm->d_mtp;   /* its own buffer: the blocks' backward use the other d_* as scratch */
        memset(d_u, 0, (size_t)Mt * D * sizeof(float));
        norm_rows_backward(d_u, G->head_norm, tm->d_x, tm->mtp_out, W->head_norm, Mt, D, c->rms_norm_eps);
        layer_backward(tm, L, mode, d_u);
        memset(tm->d_mtp_in, 0, (size_t)Mt * 2 * D * sizeof(float));
        t_linear_backward(tm->d_mtp_in, G->eh_proj, d_u, tm->mtp_in, W->eh_proj, Mt, 2 * D, D);
        memset(tm->d_x, 0, (size_t)Mt * D * sizeof(float));
        for (int b = 0; b < B; b++)
            for (int i = 0; i + 1 < T; i++) {
                const size_t r = (size_t)b * (T - 1) + i;
                float *de = tm->d_x + r * D;
                dm_rmsnorm_backward(de, G->enorm, tm->d_mtp_in + r * 2 * D, tm->mtp_e + r * D, W->enorm, D,
                                    c->rms_norm_eps);
                if (tm->g.embed)
                    dm_add(tm->g.embed + (size_t)w[b * (T + 1) + i + 1] * D, de, D);
                dm_rmsnorm_backward(tm->d_hfinal + ((size_t)b * T + i) * D, G->hnorm, tm->d_mtp_in + r * 2 * D + D,
                                    tm->h_final + ((size_t)b * T + i) * D, W->hnorm, D, c->rms_norm_eps);
            }
    }
    memset(tm->d_x, 0, (size_t)Mm * D * sizeof(float));
    norm_rows_backward(tm->d_x, tm->g.final_norm, tm->d_hfinal, tm->x_final, tm->w.final_norm, Mm, D, c->rms_norm_eps);
    for (int l = L - 1; l >= 0; l--)
        layer_backward(tm, l, mode, tm->d_x);
    if (tm->g.embed)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++)
                dm_add(tm->g.embed + (size_t)w[b * (T + 1) + i] * D, tm->d_x + ((size_t)b * T + i) * D, D);
}

void t_step(t_model *tm, const int32_t *w, dm_stage_mode mode, t_step_losses *out)
{
    const dm_config *c = tm->c;
    const int B = tm->B, T = tm->T, D = c->hidden_size, Mm = B * T, Mt = B * (T - 1);
    const bool backward = mode != DM_STAGE_INDEXER_WARMUP, mtp = c->n_mtp > 0;
    int32_t *targets = (int32_t *)tm->d_r;   /* [B·T] then [B·(T-1)]; d_r is free until the MoE backward */
    memset(out, 0, sizeof *out);
    const double bal = forward_all(tm, w, mode);

    /* losses, fused with the heads' backward */
    memset(tm->d_hfinal, 0, (size_t)Mm * D * sizeof(float));
    for (int b = 0; b < B; b++)
        for (int i = 0; i < T; i++)
            targets[b * T + i] = w[b * (T + 1) + i + 1];
    out->main = head_ce(tm, tm->h_final, Mm, targets, 1.0f / Mm, backward, tm->d_hfinal) / Mm;
    if (mtp) {
        for (int b = 0; b < B; b++)
            for (int i = 0; i + 1 < T; i++)
                targets[b * (T - 1) + i] = w[b * (T + 1) + i + 2];
        memset(tm->d_x, 0, (size_t)Mt * D * sizeof(float));
        out->mtp = head_ce(tm, tm->mtp_hn, Mt, targets, (float)(tm->hp->mtp_weight / Mt), backward, tm->d_x) / Mt;
    }
    out->balance = tm->hp->balance_alpha > 0 ? bal / tm->hp->balance_alpha : 0;   /* reported unscaled, as MTP */
    out->indexer = tm->idx_loss;
    out->total = out->main + tm->hp->mtp_weight * out->mtp + bal + out->indexer;
    if (backward)
        backward_all(tm, w, mode);
}

/* ---- Router-KD: the same step with KL-to-teacher heads ---------------------------------------- */

void t_step_kd(t_model *tm, const int32_t *w, const t_kd_batch *kd, bool backward, t_kd_losses *out)
{
    const dm_config *c = tm->c;
    const int B = tm->B, T = tm->T, D = c->hidden_size, Mm = B * T, Mt = B * (T - 1);
    const bool mtp = c->n_mtp > 0 && kd->mtp_weight > 0;
    DM_ASSERT(c->n_experts_per_tok + c->n_routed_experts >= 2);   /* d_r holds the MTP positions */
    memset(out, 0, sizeof *out);
    forward_all(tm, w, DM_STAGE_SPARSE);
    /* the MTP row b·(T-1)+i predicts token i+2: the teacher's distribution at window position i+1 */
    int64_t *mtp_pos = (int64_t *)tm->d_r;   /* [B(T-1)]; d_r is free until the MoE backward */
    for (int r = 0; r < Mm; r++)
        out->n_main += kd->pos[r] >= 0;
    for (int b = 0; mtp && b < B; b++)
        for (int i = 0; i + 1 < T; i++) {
            const int64_t p = kd->pos[b * T + i + 1];
            mtp_pos[b * (T - 1) + i] = p;
            out->n_mtp += p >= 0;
        }
    const double tau2 = kd->tau * kd->tau;
    memset(tm->d_hfinal, 0, (size_t)Mm * D * sizeof(float));
    /* row scales: the means; t_kd_row applies τ² itself */
    const kd_rows main_rows = { kd, kd->pos, out->n_main ? (float)(1.0 / (double)out->n_main) : 0, kd->row_kl };
    out->kl_main = head_loss(tm, tm->h_final, Mm, kd_row, &main_rows, backward, tm->d_hfinal);
    memset(tm->d_x, 0, (size_t)Mt * D * sizeof(float));
    if (out->n_mtp) {
        const kd_rows mtp_rows = { kd, mtp_pos, (float)(kd->mtp_weight / (double)out->n_mtp), NULL };
        out->kl_mtp = head_loss(tm, tm->mtp_hn, Mt, kd_row, &mtp_rows, backward, tm->d_x);
    }
    out->loss = tau2 * ((out->n_main ? out->kl_main / (double)out->n_main : 0) +
                        (out->n_mtp ? kd->mtp_weight * out->kl_mtp / (double)out->n_mtp : 0));
    if (backward)
        backward_all(tm, w, DM_STAGE_SPARSE);
}
