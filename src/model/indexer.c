/* indexer — the DeepSeek Sparse Attention "lightning indexer" (arch.md §3).
 * For each query it scores every visible key cheaply and keeps the top
 * index_topk, which the MLA attention of this layer (and of the following
 * "shared" layers, GLM-5.2) then attends to:
 *
 *   kI_t = RoPE(LayerNorm(wk·a_t))           cached per token (ID floats), rope on the first P dims
 *   qI_j = RoPE(wq_b·cq)_j                   per indexer head j
 *   w_j  = (weights_proj·a)_j · IH^-0.5
 *   I(s,t) = Σ_j w_j · ReLU(qI_j·kI_t · ID^-0.5),   t <= s
 *
 * Selection keeps the min(index_topk, s+1) best keys, ties to the lower
 * position (so the choice is reproducible across implementations). All of it
 * runs with f32 activations: top-k is discontinuous (arch.md §8.13). */
#include "model/forward_internal.h"

#include <math.h>
#include <string.h>

void dm_indexer_select_all(dm_ctx *c, int T)
{
    for (int i = 0; i < T; i++)
        c->n_sel[i] = -1;
}

/* The indexer's projections (one batch), then keys normalized, rotated
 * and cached, queries rotated, head weights scaled. */
static void project(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_attn_w *a = &c->m->layers[l].attn;
    const int IH = cfg->index_n_heads, ID = cfg->index_head_dim, D = cfg->hidden_size;
    dm_observe_linear(c, l, DM_LIN_IDX_WK, -1, c->a, T, D);
    dm_observe_linear(c, l, DM_LIN_IDX_WEIGHTS, -1, c->a, T, D);
    dm_observe_linear(c, l, DM_LIN_IDX_WQ_B, -1, c->cq, T, cfg->q_lora_rank);
    dm_mm_job jobs[3] = {
        { c->ik, c->a, &a->idx_wk, T, true },
        { c->iw, c->a, &a->idx_weights, T, true },
        { c->iq, c->cq, &a->idx_wq_b, T, true },
    };
    dm_matmul_many(jobs, 3);
    for (int i = 0; i < T; i++) {
        float *k = c->ik + (size_t)i * ID;
        dm_layernorm(k, k, a->idx_k_norm_w, a->idx_k_norm_b, ID, 1e-6f);   /* LayerNorm, eps 1e-6 (arch.md §8.4) */
        dm_rope_apply(k, &cfg->index_rope, c->m->rope_inv_freq, c->row_pos[i]);
        memcpy(c->row_seq[i]->idx_k[l] + (size_t)c->row_pos[i] * ID, k, (size_t)ID * sizeof(float));
        for (int j = 0; j < IH; j++)
            dm_rope_apply(c->iq + ((size_t)i * IH + j) * ID, &cfg->index_rope, c->m->rope_inv_freq, c->row_pos[i]);
    }
    dm_scale(c->iw, (float)(1.0 / sqrt((double)IH)), (int64_t)T * IH);
}

/* Scores of row i over keys 0..pos and its top-k. */
static void select_row(dm_ctx *c, int l, int i)
{
    const dm_config *cfg = &c->m->cfg;
    const int IH = cfg->index_n_heads, ID = cfg->index_head_dim, topk = cfg->index_topk;
    const int pos = c->row_pos[i], n = pos + 1;
    if (n <= topk) {
        c->n_sel[i] = -1;
        return;
    }
    float *head_scores = dm_ctx_thread_scratch(c);      /* [IH][n] */
    float *score = head_scores + (size_t)IH * n;        /* [n] */
    const float *keys = c->row_seq[i]->idx_k[l];
    const float *q = c->iq + (size_t)i * IH * ID;
    const float *w = c->iw + (size_t)i * IH;
    dm_sgemm(IH, n, ID, (float)(1.0 / sqrt((double)ID)), q, ID, keys, ID, true, 0.0f, head_scores, n);
    for (int t = 0; t < n; t++)
        score[t] = 0;
    for (int j = 0; j < IH; j++) {
        const float *hs = head_scores + (size_t)j * n;
        for (int t = 0; t < n; t++)
            score[t] += w[j] * (hs[t] > 0 ? hs[t] : 0.0f);
    }
    dm_topk(score, n, topk, c->sel + (size_t)i * topk);
    c->n_sel[i] = topk;
}

void dm_indexer_forward(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    project(c, l, T);
    int max_pos = 0;
    for (int i = 0; i < T; i++)
        max_pos = c->row_pos[i] > max_pos ? c->row_pos[i] : max_pos;
    dm_ctx_reserve_scratch(c, (size_t)(cfg->index_n_heads + 1) * (size_t)(max_pos + 1));
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < T; i++)
        select_row(c, l, i);
}
