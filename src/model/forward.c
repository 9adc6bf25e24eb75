/* forward — the model's forward pass, top to bottom: embedding, the decoder
 * layers (attention block, then dense or MoE feed-forward), final norm and
 * lm_head; plus the workspace (dm_ctx) and the per-sequence KV cache
 * (dm_seq). Rows of a call may come from one sequence (prefill, decode) or
 * from many (batched decode); every op below works on "T rows", each with
 * its own sequence and position. */
#include "model/forward_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- sequences (KV cache) ------------------------------------------------ */

static int index_dim(const dm_model *m) { return m->cfg.has_indexer ? m->cfg.index_head_dim : 0; }

dm_seq *dm_seq_new(const dm_model *m, int n_ctx)
{
    const dm_config *c = &m->cfg;
    dm_seq *s = dm_calloc(1, sizeof *s);
    s->n_layers_total = dm_config_total_layers(c);
    s->kv_dim = c->kv_lora_rank + c->qk_rope_dim;
    s->idx_dim = index_dim(m);
    s->kv = dm_calloc((size_t)s->n_layers_total, sizeof(float *));
    s->idx_k = dm_calloc((size_t)s->n_layers_total, sizeof(float *));
    /* Only layers that own an indexer cache its keys; a non-NULL idx_k[l]
     * marks them, and dm_seq_reserve grows exactly those. */
    for (int l = 0; l < s->n_layers_total; l++)
        if (s->idx_dim > 0 && c->layer_index_full[l])
            s->idx_k[l] = dm_malloc(sizeof(float));
    dm_seq_reserve(s, n_ctx > 0 ? n_ctx : 1);
    return s;
}

void dm_seq_reserve(dm_seq *s, int n_ctx)
{
    if (n_ctx <= s->n_ctx)
        return;
    for (int l = 0; l < s->n_layers_total; l++) {
        s->kv[l] = dm_realloc(s->kv[l], (size_t)n_ctx * (size_t)s->kv_dim * sizeof(float));
        if (s->idx_k[l])
            s->idx_k[l] = dm_realloc(s->idx_k[l], (size_t)n_ctx * (size_t)s->idx_dim * sizeof(float));
    }
    s->n_ctx = n_ctx;
}

void dm_seq_free(dm_seq *s)
{
    if (!s)
        return;
    for (int l = 0; l < s->n_layers_total; l++) {
        free(s->kv[l]);
        free(s->idx_k[l]);
    }
    free(s->kv);
    free(s->idx_k);
    free(s);
}

void dm_seq_reset(dm_seq *s)
{
    s->n_past = 0;
    s->n_past_mtp = 0;
}

void dm_seq_truncate(dm_seq *s, int n)
{
    if (n < s->n_past)
        s->n_past = n < 0 ? 0 : n;
    if (n < s->n_past_mtp)
        s->n_past_mtp = n < 0 ? 0 : n;
}

size_t dm_seq_bytes_per_token(const dm_model *m)
{
    const dm_config *c = &m->cfg;
    size_t per = 0;
    for (int l = 0; l < dm_config_total_layers(c); l++)
        per += (size_t)(c->kv_lora_rank + c->qk_rope_dim) +
               (c->has_indexer && c->layer_index_full[l] ? (size_t)c->index_head_dim : 0);
    return per * sizeof(float);
}

/* Makes room for `extra` more tokens at position `from` (doubling). */
static int seq_make_room(const dm_model *m, dm_seq *s, int from, int extra, dm_err *err)
{
    int64_t need = (int64_t)from + extra;
    if (need > m->cfg.max_position_embeddings)
        return dm_errorf(err, "context of %lld tokens exceeds max_position_embeddings = %lld", (long long)need,
                         (long long)m->cfg.max_position_embeddings);
    if (need > s->n_ctx) {
        int64_t cap = s->n_ctx;
        while (cap < need)
            cap *= 2;
        if (cap > m->cfg.max_position_embeddings)
            cap = m->cfg.max_position_embeddings;
        dm_seq_reserve(s, (int)cap);
    }
    return 0;
}

/* ---- workspace ------------------------------------------------------------ */

static void *ws(size_t count, size_t size) { return dm_aligned_alloc(count * size); }

dm_ctx *dm_ctx_new(const dm_model *m, int max_batch)
{
    const dm_config *c = &m->cfg;
    dm_ctx *x = dm_calloc(1, sizeof *x);
    const size_t B = (size_t)(max_batch > 0 ? max_batch : 1);
    const size_t D = (size_t)c->hidden_size, H = (size_t)c->n_heads, R = (size_t)c->kv_lora_rank;
    const size_t P = (size_t)c->qk_rope_dim, N = (size_t)c->qk_nope_dim, Dv = (size_t)c->v_head_dim;
    const size_t K = (size_t)c->n_experts_per_tok, E = (size_t)c->n_routed_experts;
    const size_t I = (size_t)c->moe_intermediate_size;
    size_t ffn = (size_t)c->intermediate_size;
    if (I * (size_t)c->n_shared_experts > ffn)
        ffn = I * (size_t)c->n_shared_experts;
    x->m = m;
    x->B = (int)B;
    x->n_threads = dm_threads_get();
    x->row_seq = dm_calloc(B, sizeof(dm_seq *));
    x->row_pos = dm_calloc(B, sizeof(int));
    x->row_id = dm_calloc(B, sizeof(int));
    x->x = ws(B * D, 4);
    x->a = ws(B * D, 4);
    x->cq = ws(B * (size_t)(c->q_lora_rank > 0 ? c->q_lora_rank : 1), 4);
    x->q = ws(B * H * (N + P), 4);
    x->kv = ws(B * (R + P), 4);
    x->qcat = ws(B * H * (R + P), 4);
    x->z = ws(B * H * R, 4);
    x->o_in = ws(B * H * Dv, 4);
    x->blk_out = ws(B * D, 4);
    if (c->has_indexer) {
        const size_t IH = (size_t)c->index_n_heads, ID = (size_t)c->index_head_dim;
        x->iq = ws(B * IH * ID, 4);
        x->iw = ws(B * IH, 4);
        x->ik = ws(B * ID, 4);
        x->sel = ws(B * (size_t)c->index_topk, sizeof(int));
    }
    x->n_sel = ws(B, sizeof(int));
    x->h1 = ws(B * ffn, 4);
    x->h2 = ws(B * ffn, 4);
    x->r_logits = ws(B * E, 4);
    x->r_scores = ws(B * E, 4);
    x->r_tmp = ws((size_t)x->n_threads * (E + (size_t)c->n_group), 4);
    x->r_sel = ws(B * K, sizeof(int));
    x->r_gate = ws(B * K, 4);
    x->ex_count = ws(E + 1, sizeof(int));
    x->ex_slot = ws(B * K, sizeof(int));
    x->ex_row = ws(B * K, sizeof(int));
    x->ex_x = ws(B * K * D, 4);
    x->ex_h1 = ws(B * K * I, 4);
    x->ex_h2 = ws(B * K * I, 4);
    x->ex_y = ws(B * K * D, 4);
    x->emb2 = ws(B * 2 * D, 4);
    x->jobs = ws(3 * (E + 1), sizeof(dm_mm_job));
    x->job_expert = ws(E + 1, sizeof(int));
    dm_ctx_reserve_scratch(x, 1024);
    return x;
}

void dm_ctx_free(dm_ctx *x)
{
    if (!x)
        return;
    void *bufs[] = { x->x, x->a, x->cq, x->q, x->kv, x->qcat, x->z, x->o_in, x->blk_out,
                     x->iq, x->iw, x->ik, x->sel, x->n_sel, x->scratch, x->h1, x->h2, x->r_logits,
                     x->r_scores, x->r_tmp, x->r_sel, x->r_gate, x->ex_count, x->ex_slot, x->ex_row,
                     x->ex_x, x->ex_h1, x->ex_h2, x->ex_y, x->obs_out, x->emb2, x->jobs, x->job_expert };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
        dm_aligned_free(bufs[i]);
    if (x->expert_keep)
        for (int l = 0; l < dm_config_total_layers(&x->m->cfg); l++)
            free(x->expert_keep[l]);
    free(x->expert_keep);
    free(x->row_seq);
    free(x->row_pos);
    free(x->row_id);
    free(x);
}

void dm_ctx_set_observer(dm_ctx *x, const dm_observer *obs)
{
    memset(&x->obs, 0, sizeof x->obs);
    if (obs)
        x->obs = *obs;
    if (x->obs.moe && !x->obs_out) {
        const dm_config *c = &x->m->cfg;
        x->obs_out = ws((size_t)x->B * (size_t)c->n_experts_per_tok * (size_t)c->hidden_size, 4);
    }
}

void dm_ctx_set_dense_attention(dm_ctx *x, bool dense) { x->dense_attention = dense; }

void dm_ctx_set_expert_mask(dm_ctx *x, int layer, const uint8_t *keep)
{
    const dm_config *c = &x->m->cfg;
    const int L = dm_config_total_layers(c);
    DM_ASSERT(layer >= 0 && layer < L && c->layer_moe[layer]);
    if (!x->expert_keep)
        x->expert_keep = dm_calloc((size_t)L, sizeof(uint8_t *));
    free(x->expert_keep[layer]);
    x->expert_keep[layer] = NULL;
    if (keep) {
        x->expert_keep[layer] = dm_malloc((size_t)c->layer_experts[layer]);
        memcpy(x->expert_keep[layer], keep, (size_t)c->layer_experts[layer]);
    }
}

void dm_ctx_reserve_scratch(dm_ctx *x, size_t n)
{
    if (n <= x->scratch_cap)
        return;
    dm_aligned_free(x->scratch);
    x->scratch_cap = (n + 15) & ~(size_t)15;
    x->scratch = ws((size_t)x->n_threads * x->scratch_cap, 4);
}

float *dm_ctx_thread_scratch(dm_ctx *x)
{
    const int t = dm_thread_id();
    DM_ASSERT(t < x->n_threads);
    return x->scratch + (size_t)t * x->scratch_cap;
}

/* ---- the layers -------------------------------------------------------------- */

static void norm_rows(float *y, const float *x, const float *w, int T, int D, float eps)
{
    for (int i = 0; i < T; i++)
        dm_rmsnorm(y + (size_t)i * D, x + (size_t)i * D, w, D, eps);
}

void dm_layer_forward(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_layer_w *lw = &c->m->layers[l];
    const int D = cfg->hidden_size;

    norm_rows(c->a, c->x, lw->attn_norm, T, D, cfg->rms_norm_eps);
    dm_attention_forward(c, l, T);
    dm_add(c->x, c->blk_out, (int64_t)T * D);

    norm_rows(c->a, c->x, lw->ffn_norm, T, D, cfg->rms_norm_eps);
    if (lw->is_moe)
        dm_moe_forward(c, l, T);
    else
        dm_mlp_forward(c, l, &lw->mlp, DM_LIN_MLP_GATE, T, c->blk_out);
    dm_add(c->x, c->blk_out, (int64_t)T * D);
}

/* Final norm of the requested rows, then lm_head. */
static void output_rows(dm_ctx *c, const dm_wmat *head, const float *norm_w, int first, int n, float *logits,
                        float *hidden, int layer_for_obs)
{
    const dm_config *cfg = &c->m->cfg;
    const int D = cfg->hidden_size;
    float *h = c->a + (size_t)first * D;   /* c->a is free after the last layer */
    norm_rows(h, c->x + (size_t)first * D, norm_w, n, D, cfg->rms_norm_eps);
    if (hidden)
        memcpy(hidden, h, (size_t)n * D * sizeof(float));
    if (logits) {
        dm_observe_linear_rows(c, layer_for_obs, DM_LIN_LM_HEAD, -1, h, n, D, NULL, first);
        dm_matmul(logits, h, head, n);
    }
}

static int check_tokens(const dm_model *m, const int32_t *tokens, int T, dm_err *err)
{
    for (int i = 0; i < T; i++)
        if (tokens[i] < 0 || tokens[i] >= m->cfg.vocab_size)
            return dm_errorf(err, "token id %d at index %d is outside the vocabulary [0, %d)", tokens[i], i,
                             m->cfg.vocab_size);
    return 0;
}

static void embed_rows(dm_ctx *c, const dm_wmat *embed, const int32_t *tokens, int T, float *out)
{
    for (int i = 0; i < T; i++)
        dm_wmat_row_f32(embed, tokens[i], out + (size_t)i * c->m->cfg.hidden_size);
}

/* Runs rows [0, T) already set up in c->row_* through the main layers. */
static void run_main_layers(dm_ctx *c, int T)
{
    for (int l = 0; l < c->m->cfg.n_layers; l++)
        dm_layer_forward(c, l, T);
}

int dm_forward(dm_ctx *c, dm_seq *seq, const int32_t *tokens, int T, bool all_rows, float *logits, float *hidden,
               dm_err *err)
{
    const dm_model *m = c->m;
    const int D = m->cfg.hidden_size, V = m->cfg.vocab_size;
    if (T <= 0)
        return dm_errorf(err, "forward called with %d tokens", T);
    if (check_tokens(m, tokens, T, err) || seq_make_room(m, seq, seq->n_past, T, err))
        return -1;
    for (int done = 0; done < T;) {
        int n = T - done < c->B ? T - done : c->B;
        for (int i = 0; i < n; i++) {
            c->row_seq[i] = seq;
            c->row_pos[i] = seq->n_past + i;
            c->row_id[i] = done + i;
        }
        embed_rows(c, &m->embed, tokens + done, n, c->x);
        run_main_layers(c, n);
        seq->n_past += n;
        bool last_chunk = done + n == T;
        if (all_rows)
            output_rows(c, &m->lm_head, m->final_norm, 0, n, logits ? logits + (size_t)done * V : NULL,
                        hidden ? hidden + (size_t)done * D : NULL, m->cfg.n_layers);
        else if (last_chunk)
            output_rows(c, &m->lm_head, m->final_norm, n - 1, 1, logits, hidden, m->cfg.n_layers);
        done += n;
    }
    return 0;
}

int dm_forward_batch(dm_ctx *c, dm_seq **seqs, const int32_t *tokens, int n, float *logits, dm_err *err)
{
    const dm_model *m = c->m;
    if (n <= 0 || n > c->B)
        return dm_errorf(err, "batched decode of %d rows (workspace holds %d)", n, c->B);
    if (check_tokens(m, tokens, n, err))
        return -1;
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i])
                return dm_errorf(err, "batched decode: rows %d and %d share a sequence", j, i);
        if (seq_make_room(m, seqs[i], seqs[i]->n_past, 1, err))
            return -1;
        c->row_seq[i] = seqs[i];
        c->row_pos[i] = seqs[i]->n_past;
        c->row_id[i] = i;
    }
    embed_rows(c, &m->embed, tokens, n, c->x);
    run_main_layers(c, n);
    for (int i = 0; i < n; i++)
        seqs[i]->n_past++;
    output_rows(c, &m->lm_head, m->final_norm, 0, n, logits, NULL, m->cfg.n_layers);
    return 0;
}

/* ---- MTP ---------------------------------------------------------------------- */

int dm_forward_mtp(dm_ctx *c, dm_seq *seq, const float *hidden, const int32_t *next_tokens, int T, bool all_rows,
                   float *logits, float *hidden_out, dm_err *err)
{
    const dm_model *m = c->m;
    const dm_config *cfg = &m->cfg;
    const int D = cfg->hidden_size, V = cfg->vocab_size, L = cfg->n_layers;
    if (cfg->n_mtp < 1)
        return dm_errorf(err, "%s: the model has no MTP layer (num_nextn_predict_layers = 0)", m->dir);
    if (T <= 0)
        return dm_errorf(err, "MTP forward called with %d rows", T);
    if (check_tokens(m, next_tokens, T, err) || seq_make_room(m, seq, seq->n_past_mtp, T, err))
        return -1;
    const dm_layer_w *lw = &m->layers[L];
    for (int done = 0; done < T;) {
        int n = T - done < c->B ? T - done : c->B;
        for (int i = 0; i < n; i++) {
            c->row_seq[i] = seq;
            c->row_pos[i] = seq->n_past_mtp + i;
            c->row_id[i] = done + i;
        }
        /* u = eh_proj([enorm(E[t+1]); hnorm(h)]), embedding first (arch.md §1.3) */
        embed_rows(c, &lw->mtp_embed, next_tokens + done, n, c->a);
        for (int i = 0; i < n; i++) {
            float *e2 = c->emb2 + (size_t)i * 2 * D;
            dm_rmsnorm(e2, c->a + (size_t)i * D, lw->enorm, D, cfg->rms_norm_eps);
            dm_rmsnorm(e2 + D, hidden + (size_t)(done + i) * D, lw->hnorm, D, cfg->rms_norm_eps);
        }
        dm_observe_linear(c, L, DM_LIN_EH_PROJ, -1, c->emb2, n, 2 * D);
        dm_matmul(c->x, c->emb2, &lw->eh_proj, n);
        dm_layer_forward(c, L, n);
        seq->n_past_mtp += n;
        bool last_chunk = done + n == T;
        if (all_rows || last_chunk) {
            int first = all_rows ? 0 : n - 1, cnt = all_rows ? n : 1;
            size_t at = all_rows ? (size_t)done : 0;
            if (hidden_out)
                memcpy(hidden_out + at * D, c->x + (size_t)first * D, (size_t)cnt * D * sizeof(float));
            output_rows(c, &lw->mtp_head, lw->head_norm, first, cnt, logits ? logits + at * V : NULL, NULL, L);
        }
        done += n;
    }
    return 0;
}
