/* attention — Multi-head Latent Attention (MLA) in its absorbed form, the
 * one DeepSeek and GLM decode with (arch.md §2.6):
 *
 *   cq   = RMSNorm(q_a·a)                 q = q_b·cq  ([H][N+P]; rope on the last P)
 *   kv   = kv_a·a: c = RMSNorm(kv[:R]), k_pe = RoPE(kv[R:])    -> cached, R+P floats/token
 *   q̃_h  = W_UK[h]ᵀ·q_nope_h             (W_UK[h] = the N key rows of kv_b's head block)
 *   s_ht = scale·(q̃_h·c_t + q_pe_h·k_pe_t)   over the selected keys t (causal ∩ DSA top-k)
 *   z_h  = Σ_t softmax(s_h)_t · c_t        o_h = W_UV[h]·z_h     out = o_proj·[o_h]
 *
 * Every head shares the same 576-wide key per token, so this is multi-query
 * attention: per row, scores for all heads are one matrix product with the
 * cached keys, and z is a second one. Prefill and decode share this code;
 * the scale stays (N+P)^-0.5 (times YaRN's mscale²), not (R+P)^-0.5. */
#include "model/forward_internal.h"

#include <math.h>
#include <string.h>

/* Queries, the latent and the rope key for the T rows; caches c and k_pe. */
static void project_qkv(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_attn_w *a = &c->m->layers[l].attn;
    const int D = cfg->hidden_size, H = cfg->n_heads, R = cfg->kv_lora_rank, P = cfg->qk_rope_dim;
    const int N = cfg->qk_nope_dim, QH = N + P;

    /* the projections that read `a` go out as one batch */
    dm_observe_linear(c, l, DM_LIN_KV_A, -1, c->a, T, D);
    if (cfg->q_lora_rank > 0) {
        const int Q = cfg->q_lora_rank;
        dm_observe_linear(c, l, DM_LIN_Q_A, -1, c->a, T, D);
        dm_mm_job jobs[2] = { { c->cq, c->a, &a->q_a, T, false }, { c->kv, c->a, &a->kv_a, T, false } };
        dm_matmul_many(jobs, 2);
        for (int i = 0; i < T; i++)   /* HF builds the latent norms with eps 1e-6 (arch.md §2.2) */
            dm_rmsnorm(c->cq + (size_t)i * Q, c->cq + (size_t)i * Q, a->q_a_norm, Q, 1e-6f);
        dm_observe_linear(c, l, DM_LIN_Q_B, -1, c->cq, T, Q);
        dm_matmul(c->q, c->cq, &a->q_b, T);
    } else {
        dm_observe_linear(c, l, DM_LIN_Q_PROJ, -1, c->a, T, D);
        dm_mm_job jobs[2] = { { c->q, c->a, &a->q_proj, T, false }, { c->kv, c->a, &a->kv_a, T, false } };
        dm_matmul_many(jobs, 2);
    }
    for (int i = 0; i < T; i++) {
        float *kv = c->kv + (size_t)i * (R + P);
        dm_rmsnorm(kv, kv, a->kv_a_norm, R, 1e-6f);
        dm_rope_apply(kv + R, &cfg->rope, c->m->rope_inv_freq, c->row_pos[i]);
        memcpy(c->row_seq[i]->kv[l] + (size_t)c->row_pos[i] * (R + P), kv, (size_t)(R + P) * sizeof(float));
        for (int h = 0; h < H; h++)
            dm_rope_apply(c->q + ((size_t)i * H + h) * QH + N, &cfg->rope, c->m->rope_inv_freq, c->row_pos[i]);
    }
}

/* qcat[i][h] = [W_UK[h]ᵀ·q_nope[i][h] ; q_pe[i][h]]. Heads are spread over
 * the threads: one head's product is too small to split (192×512 in GLM-5). */
static void absorb_queries(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_attn_w *a = &c->m->layers[l].attn;
    const int H = cfg->n_heads, R = cfg->kv_lora_rank, P = cfg->qk_rope_dim;
    const int N = cfg->qk_nope_dim, Dv = cfg->v_head_dim, QH = N + P;

    #pragma omp parallel for schedule(dynamic, 1)
    for (int h = 0; h < H; h++) {
        float *qn = dm_ctx_thread_scratch(c), *qa = qn + (size_t)T * N;   /* [T][N], [T][R] */
        dm_wmat w_uk = dm_wmat_rows(&a->kv_b, (int64_t)h * (N + Dv), N);
        for (int i = 0; i < T; i++)
            memcpy(qn + (size_t)i * N, c->q + ((size_t)i * H + h) * QH, (size_t)N * sizeof(float));
        if (N > 0)
            dm_matmul_xw(qa, qn, &w_uk, T);
        else
            memset(qa, 0, (size_t)T * R * sizeof(float));
        for (int i = 0; i < T; i++) {
            float *dst = c->qcat + ((size_t)i * H + h) * (R + P);
            memcpy(dst, qa + (size_t)i * R, (size_t)R * sizeof(float));
            memcpy(dst + R, c->q + ((size_t)i * H + h) * QH + N, (size_t)P * sizeof(float));
        }
    }
}

/* Attention of row i, heads [h0, h1): scores against the row's selected keys,
 * softmax, and z = p·C. Keys are the cached [c ; k_pe] rows. */
static void attend_row(dm_ctx *c, int l, int i, int h0, int h1, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const int H = cfg->n_heads, R = cfg->kv_lora_rank, P = cfg->qk_rope_dim, KD = R + P;
    const dm_seq *seq = c->row_seq[i];
    const int pos = c->row_pos[i];
    const float *cache = seq->kv[l];
    const int n_sel = c->n_sel[i];
    const int n = n_sel < 0 ? pos + 1 : n_sel;
    const int nh = h1 - h0;

    float *scores = dm_ctx_thread_scratch(c);          /* [nh][n] */
    const float *keys = cache;                          /* [n][KD] */
    if (n_sel >= 0) {                                   /* DSA: gather the selected keys */
        float *gathered = scores + (size_t)nh * (pos + 1);
        const int *sel = c->sel + (size_t)i * cfg->index_topk;
        for (int j = 0; j < n; j++)
            memcpy(gathered + (size_t)j * KD, cache + (size_t)sel[j] * KD, (size_t)KD * sizeof(float));
        keys = gathered;
    }
    const float *q = c->qcat + ((size_t)i * H + h0) * KD;
    dm_sgemm(nh, n, KD, cfg->softmax_scale, q, KD, keys, KD, true, 0.0f, scores, n);
    for (int h = 0; h < nh; h++)
        dm_softmax(scores + (size_t)h * n, n);
    float *z = c->z + ((size_t)i * H + h0) * R;
    dm_sgemm(nh, R, n, 1.0f, scores, n, keys, KD, false, 0.0f, z, R);
    (void)T;
}

static void attend(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const int H = cfg->n_heads, KD = cfg->kv_lora_rank + cfg->qk_rope_dim;
    int max_pos = 0;
    for (int i = 0; i < T; i++)
        max_pos = c->row_pos[i] > max_pos ? c->row_pos[i] : max_pos;
    /* With few rows, split heads so both cores work during decode. */
    const int hb = (T >= 2 * c->n_threads || H <= 8) ? H : 8;
    const int n_hblocks = (H + hb - 1) / hb;
    size_t need = (size_t)hb * (size_t)(max_pos + 1) + (cfg->has_indexer ? (size_t)cfg->index_topk * KD : 0);
    dm_ctx_reserve_scratch(c, need);
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int i = 0; i < T; i++)
        for (int b = 0; b < n_hblocks; b++) {
            int h0 = b * hb, h1 = h0 + hb < H ? h0 + hb : H;
            attend_row(c, l, i, h0, h1, T);
        }
}

/* o_in[i][h] = W_UV[h]·z[i][h] (heads spread over the threads), then
 * out = o_proj·o_in. */
static void project_out(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_attn_w *a = &c->m->layers[l].attn;
    const int H = cfg->n_heads, R = cfg->kv_lora_rank, N = cfg->qk_nope_dim, Dv = cfg->v_head_dim;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int h = 0; h < H; h++) {
        float *zh = dm_ctx_thread_scratch(c), *oh = zh + (size_t)T * R;   /* [T][R], [T][Dv] */
        dm_wmat w_uv = dm_wmat_rows(&a->kv_b, (int64_t)h * (N + Dv) + N, Dv);
        for (int i = 0; i < T; i++)
            memcpy(zh + (size_t)i * R, c->z + ((size_t)i * H + h) * R, (size_t)R * sizeof(float));
        dm_matmul(oh, zh, &w_uv, T);
        for (int i = 0; i < T; i++)
            memcpy(c->o_in + ((size_t)i * H + h) * Dv, oh + (size_t)i * Dv, (size_t)Dv * sizeof(float));
    }
    dm_observe_linear(c, l, DM_LIN_O, -1, c->o_in, T, H * Dv);
    dm_matmul(c->blk_out, c->o_in, &a->o, T);
}

/* The latent each row contributes, as kv_b's input, for observers
 * (the expanded form applies kv_b to exactly these vectors). */
static void observe_kv_b(dm_ctx *c, int l, int T)
{
    if (!c->obs.linear_in)
        return;
    const int R = c->m->cfg.kv_lora_rank, P = c->m->cfg.qk_rope_dim;
    for (int i = 0; i < T; i++)
        memcpy(c->z + (size_t)i * R, c->kv + (size_t)i * (R + P), (size_t)R * sizeof(float));
    dm_observe_linear(c, l, DM_LIN_KV_B, -1, c->z, T, R);
}

void dm_attention_forward(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    project_qkv(c, l, T);
    observe_kv_b(c, l, T);
    if (c->dense_attention)
        dm_indexer_select_all(c, T);
    else if (c->m->layers[l].attn.has_indexer)
        dm_indexer_forward(c, l, T);
    else if (!cfg->has_indexer)
        dm_indexer_select_all(c, T);
    /* else: a shared layer keeps the selection of the last full layer (arch.md §3.5) */
    const size_t per_head = (size_t)T * (size_t)(cfg->qk_nope_dim + cfg->kv_lora_rank + cfg->v_head_dim);
    dm_ctx_reserve_scratch(c, per_head);
    absorb_queries(c, l, T);
    attend(c, l, T);
    project_out(c, l, T);
}
