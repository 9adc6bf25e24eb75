/* t_attention — MLA for training, in its expanded form (arch.md §2.3): the
 * latent is projected back to per-head keys and values, so attention and its
 * backward are ordinary per-head matrix products. Numerically it is the same
 * function as the absorbed form the engine decodes with (the PyTorch oracle
 * and the engine tests check both).
 *
 *   cq = RMSNorm(q_a·a), q = q_b·cq           rope on each head's last P dims
 *   kv = kv_a·a: c = RMSNorm(kv[:R]), kpe = RoPE(kv[R:])
 *   [k_nope | v] = kv_b·c per head
 *   S = scale·(q_nope·k_nopeᵀ + q_pe·kpeᵀ), masked (causal; DSA selection), P = softmax, O = P·V
 *
 * Forward keeps P; backward: dP = dO·Vᵀ, dV = Pᵀ·dO, dS = P⊙(dP − rowsum(P⊙dP))·scale,
 * dq = dS·K, dK = dSᵀ·q; the shared rope key's gradient sums over heads. */
#include "train/train_internal.h"

#include <math.h>
#include <string.h>

typedef struct dims {
    int M, n, B, D, H, Q, R, P, N, Dv, QH, KVH;
} dims;

static dims dims_of(const t_model *tm, int l)
{
    const dm_config *c = tm->c;
    const t_lacts *A = &tm->acts[l];
    dims d = { A->M, A->n, tm->B, c->hidden_size, c->n_heads, c->q_lora_rank, c->kv_lora_rank, c->qk_rope_dim,
               c->qk_nope_dim, c->v_head_dim, 0, 0 };
    d.QH = d.N + d.P;
    d.KVH = d.N + d.Dv;
    return d;
}

/* ---- projections ----------------------------------------------------------------- */

static void project_forward(t_model *tm, int l, const dims *d)
{
    const dm_config *c = tm->c;
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    if (d->Q > 0) {
        t_linear_forward(A->cq_raw, A->a, W->q_a, d->M, d->D, d->Q);
        for (int r = 0; r < d->M; r++)   /* latent norms use eps 1e-6 as HF builds them */
            dm_rmsnorm(A->cq + (size_t)r * d->Q, A->cq_raw + (size_t)r * d->Q, W->q_a_norm, d->Q, 1e-6f);
        t_linear_forward(A->q, A->cq, W->q_b, d->M, d->Q, d->H * d->QH);
    } else {
        t_linear_forward(A->q, A->a, W->q_proj, d->M, d->D, d->H * d->QH);
    }
    t_linear_forward(A->kv_raw, A->a, W->kv_a, d->M, d->D, d->R + d->P);
    for (int r = 0; r < d->M; r++) {
        const int pos = r % d->n;
        const float *kv = A->kv_raw + (size_t)r * (d->R + d->P);
        dm_rmsnorm(A->c + (size_t)r * d->R, kv, W->kv_a_norm, d->R, 1e-6f);
        float *kpe = A->kpe + (size_t)r * d->P;
        memcpy(kpe, kv + d->R, (size_t)d->P * sizeof(float));
        dm_rope_apply(kpe, &c->rope, tm->rope_inv_freq, pos);
        for (int h = 0; h < d->H; h++)
            dm_rope_apply(A->q + ((size_t)r * d->H + h) * d->QH + d->N, &c->rope, tm->rope_inv_freq, pos);
    }
    t_linear_forward(A->kvx, A->c, W->kv_b, d->M, d->R, d->H * d->KVH);
}

static void project_backward(t_model *tm, int l, const dims *d, float *d_a)
{
    const dm_config *c = tm->c;
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    t_layer *G = &tm->g.layers[l];
    /* kv_b: d_c = d_kvx · kv_b */
    memset(tm->d_kv, 0, (size_t)d->M * (d->R + d->P) * sizeof(float));
    memset(tm->d_cq, 0, (size_t)d->M * d->R * sizeof(float));
    t_linear_backward(tm->d_cq, G->kv_b, tm->d_kvx, A->c, W->kv_b, d->M, d->R, d->H * d->KVH);
    for (int r = 0; r < d->M; r++) {
        const int pos = r % d->n;
        float *dkv = tm->d_kv + (size_t)r * (d->R + d->P);
        dm_rmsnorm_backward(dkv, G->kv_a_norm, tm->d_cq + (size_t)r * d->R, A->kv_raw + (size_t)r * (d->R + d->P),
                            W->kv_a_norm, d->R, 1e-6f);
        memcpy(dkv + d->R, tm->d_x2 + (size_t)r * d->P, (size_t)d->P * sizeof(float));   /* d_kpe */
        dm_rope_backward(dkv + d->R, &c->rope, tm->rope_inv_freq, pos);
        for (int h = 0; h < d->H; h++)
            dm_rope_backward(tm->d_q + ((size_t)r * d->H + h) * d->QH + d->N, &c->rope, tm->rope_inv_freq, pos);
    }
    t_linear_backward(d_a, G->kv_a, tm->d_kv, A->a, W->kv_a, d->M, d->D, d->R + d->P);
    if (d->Q > 0) {
        float *d_cq = tm->d_cq, *d_cq_raw = tm->d_h1;   /* free at this point */
        memset(d_cq, 0, (size_t)d->M * d->Q * sizeof(float));
        memset(d_cq_raw, 0, (size_t)d->M * d->Q * sizeof(float));
        t_linear_backward(d_cq, G->q_b, tm->d_q, A->cq, W->q_b, d->M, d->Q, d->H * d->QH);
        for (int r = 0; r < d->M; r++)
            dm_rmsnorm_backward(d_cq_raw + (size_t)r * d->Q, G->q_a_norm, d_cq + (size_t)r * d->Q,
                                A->cq_raw + (size_t)r * d->Q, W->q_a_norm, d->Q, 1e-6f);
        t_linear_backward(d_a, G->q_a, d_cq_raw, A->a, W->q_a, d->M, d->D, d->Q);
    } else {
        t_linear_backward(d_a, G->q_proj, tm->d_q, A->a, W->q_proj, d->M, d->D, d->H * d->QH);
    }
}

/* ---- the attention core, per (window, head) ---------------------------------------- */

/* Row s of window b may attend key t? */
static inline bool allowed(const uint8_t *mask, int n, int b, int s, int t)
{
    return t <= s && (!mask || mask[((size_t)b * n + s) * n + t]);
}

static void core_forward(t_model *tm, int l, const dims *d, float scale)
{
    t_lacts *A = &tm->acts[l];
    const int n = d->n;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            const float *qn = A->q + ((size_t)b * n * d->H + h) * d->QH;
            const float *kn = A->kvx + ((size_t)b * n * d->H + h) * d->KVH;
            const float *kp = A->kpe + (size_t)b * n * d->P;
            float *S = A->probs + ((size_t)b * d->H + h) * n * n;
            const int ldq = d->H * d->QH, ldk = d->H * d->KVH;
            if (d->N > 0)
                dm_sgemm(n, n, d->N, scale, qn, ldq, kn, ldk, true, 0.0f, S, n);
            else
                memset(S, 0, (size_t)n * n * sizeof(float));
            dm_sgemm(n, n, d->P, scale, qn + d->N, ldq, kp, d->P, true, 1.0f, S, n);
            for (int s = 0; s < n; s++) {
                float *row = S + (size_t)s * n;
                float mx = -INFINITY;
                for (int t = 0; t <= s; t++)
                    if (allowed(A->mask, n, b, s, t) && row[t] > mx)
                        mx = row[t];
                double sum = 0;
                for (int t = 0; t < n; t++) {
                    float e = allowed(A->mask, n, b, s, t) ? expf(row[t] - mx) : 0.0f;
                    row[t] = e;
                    sum += e;
                }
                const float inv = (float)(1.0 / sum);
                for (int t = 0; t <= s; t++)
                    row[t] *= inv;
            }
            dm_sgemm(n, d->Dv, n, 1.0f, S, n, kn + d->N, ldk, false, 0.0f,
                     A->att + ((size_t)b * n * d->H + h) * d->Dv, d->H * d->Dv);
        }
}

/* d_att -> d_q, d_kvx, d_kpe (tm->d_x2, [M][P]) */
static void core_backward(t_model *tm, int l, const dims *d, float scale)
{
    t_lacts *A = &tm->acts[l];
    const int n = d->n, ldq = d->H * d->QH, ldk = d->H * d->KVH, ldo = d->H * d->Dv;
    float *dkp_all = tm->d_big;   /* [B][H][n][P] per-head rope-key grads, summed after */
    memset(tm->d_q, 0, (size_t)d->M * ldq * sizeof(float));
    memset(tm->d_kvx, 0, (size_t)d->M * ldk * sizeof(float));
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++) {
            const size_t row0 = (size_t)b * n;
            const float *P = A->probs + ((size_t)b * d->H + h) * n * n;
            const float *dO = tm->d_att + row0 * ldo + (size_t)h * d->Dv;
            const float *qn = A->q + row0 * ldq + (size_t)h * d->QH;
            const float *kn = A->kvx + row0 * ldk + (size_t)h * d->KVH;
            const float *kp = A->kpe + row0 * d->P;
            float *dkn = tm->d_kvx + row0 * ldk + (size_t)h * d->KVH, *dqn = tm->d_q + row0 * ldq + (size_t)h * d->QH;
            float *dP = t_thread_scratch(tm);                      /* [n][n] */
            float *dkp = dkp_all + ((size_t)b * d->H + h) * n * d->P;
            dm_sgemm(n, n, d->Dv, 1.0f, dO, ldo, kn + d->N, ldk, true, 0.0f, dP, n);     /* dP = dO·Vᵀ */
            t_gemm(true, false, n, d->Dv, n, 1.0f, P, n, dO, ldo, 0.0f, dkn + d->N, ldk);   /* dV = Pᵀ·dO */
            for (int s = 0; s < n; s++) {
                const float *p = P + (size_t)s * n;
                float *g = dP + (size_t)s * n;
                double dot = 0;
                for (int t = 0; t <= s; t++)
                    dot += (double)p[t] * g[t];
                for (int t = 0; t < n; t++)
                    g[t] = t <= s ? p[t] * (g[t] - (float)dot) * scale : 0.0f;   /* masked keys have p = 0 */
            }
            if (d->N > 0) {
                dm_sgemm(n, d->N, n, 1.0f, dP, n, kn, ldk, false, 0.0f, dqn, ldq);            /* dq_nope = dS·K */
                t_gemm(true, false, n, d->N, n, 1.0f, dP, n, qn, ldq, 0.0f, dkn, ldk);   /* dK = dSᵀ·q */
            }
            dm_sgemm(n, d->P, n, 1.0f, dP, n, kp, d->P, false, 0.0f, dqn + d->N, ldq);
            t_gemm(true, false, n, d->P, n, 1.0f, dP, n, qn + d->N, ldq, 0.0f, dkp, d->P);
        }
    /* the rope key is shared by the heads: sum their gradients in head order */
    memset(tm->d_x2, 0, (size_t)d->M * d->P * sizeof(float));
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            dm_add(tm->d_x2 + (size_t)b * n * d->P, dkp_all + ((size_t)b * d->H + h) * n * d->P, (int64_t)n * d->P);
}

/* ---- the block ------------------------------------------------------------------------- */

/* The mask this layer attends with: none in the dense stages; in the sparse
 * stage its own indexer's selection, or (shared layers) the previous full layer's. */
static void choose_mask(t_model *tm, int l, dm_stage_mode mode)
{
    const dm_config *c = tm->c;
    t_lacts *A = &tm->acts[l];
    A->mask = NULL;
    if (!c->has_indexer || mode == DM_STAGE_DENSE)
        return;
    if (c->layer_index_full[l]) {
        t_indexer_select(tm, l, mode);
    } else if (mode == DM_STAGE_SPARSE) {
        int f = l - 1;
        while (f > 0 && !c->layer_index_full[f])
            f--;
        A->mask = tm->acts[f].mask;
    }
}

void t_attention_forward(t_model *tm, int l, dm_stage_mode mode, float *o)
{
    const dims d = dims_of(tm, l);
    t_lacts *A = &tm->acts[l];
    project_forward(tm, l, &d);
    choose_mask(tm, l, mode);
    core_forward(tm, l, &d, tm->c->softmax_scale);
    t_linear_forward(o, A->att, tm->w.layers[l].o, d.M, d.H * d.Dv, d.D);
    if (tm->c->has_indexer && tm->c->layer_index_full[l] && mode != DM_STAGE_DENSE)
        tm->idx_loss += t_indexer_distill(tm, l, mode, tm->idx_scale);
}

void t_attention_backward(t_model *tm, int l, dm_stage_mode mode, const float *d_o, float *d_a)
{
    const dims d = dims_of(tm, l);
    t_lacts *A = &tm->acts[l];
    (void)mode;
    memset(tm->d_att, 0, (size_t)d.M * d.H * d.Dv * sizeof(float));
    t_linear_backward(tm->d_att, tm->g.layers[l].o, d_o, A->att, tm->w.layers[l].o, d.M, d.H * d.Dv, d.D);
    core_backward(tm, l, &d, tm->c->softmax_scale);
    project_backward(tm, l, &d, d_a);
}
