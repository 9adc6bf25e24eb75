/* t_indexer — the DSA lightning indexer in training (DeepSeek-V3.2 recipe,
 * train contract): its scores pick the keys the attention may use (sparse
 * stage), and it learns to imitate the attention: KL(p ‖ q) with p the
 * attention probabilities averaged over heads (a detached target) and
 * q = softmax of its scores over the same keys. Its inputs (the layer's normed
 * input and the q latent) are detached, so the loss's backward touches the
 * indexer weights only and runs right away, inside the forward pass.
 *
 *   kI = RoPE(LayerNorm(wk·a))   qI_j = RoPE(wq_b·cq)_j   w_j = (weights_proj·a)_j·IH^-0.5
 *   D_j(s,t) = qI_j(s)·kI(t)·ID^-0.5      I(s,t) = Σ_j w_j(s)·ReLU(D_j(s,t))
 *   dI = scale·(q − p);  dw_j = Σ_t dI·ReLU(D_j);  dD_j = dI·w_j·[D_j > 0] */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct idims {
    int M, n, B, D, Q, IH, ID, P, topk;
} idims;

static idims idims_of(const t_model *tm, int l)
{
    const dm_config *c = tm->c;
    const t_lacts *A = &tm->acts[l];
    idims d = { A->M, A->n, tm->B, c->hidden_size, c->q_lora_rank, c->index_n_heads, c->index_head_dim,
                c->qk_rope_dim, c->index_topk };
    return d;
}

/* Scores I(s,t) of window b, row s, into out[0..s]. */
static void row_scores(const t_lacts *A, const idims *d, int b, int s, float *out)
{
    const size_t nn = (size_t)d->n * d->n;
    const float *w = A->iw + ((size_t)b * d->n + s) * d->IH;
    for (int t = 0; t <= s; t++)
        out[t] = 0;
    for (int j = 0; j < d->IH; j++) {
        const float *dot = A->idot + ((size_t)b * d->IH + j) * nn + (size_t)s * d->n;
        for (int t = 0; t <= s; t++)
            out[t] += w[j] * (dot[t] > 0 ? dot[t] : 0.0f);
    }
}

void t_indexer_select(t_model *tm, int l, dm_stage_mode mode)
{
    const dm_config *c = tm->c;
    const idims d = idims_of(tm, l);
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    t_linear_forward(A->ik_raw, A->a, W->i_wk, d.M, d.D, d.ID);
    t_linear_forward(A->iq, A->cq, W->i_wq_b, d.M, d.Q, d.IH * d.ID);
    t_linear_forward(A->iw, A->a, W->i_w, d.M, d.D, d.IH);
    dm_scale(A->iw, (float)(1.0 / sqrt((double)d.IH)), (int64_t)d.M * d.IH);
    for (int r = 0; r < d.M; r++) {
        const int pos = r % d.n;
        float *k = A->ik + (size_t)r * d.ID;
        dm_layernorm(k, A->ik_raw + (size_t)r * d.ID, W->i_kn_w, W->i_kn_b, d.ID, 1e-6f);
        dm_rope_apply(k, &c->index_rope, tm->rope_inv_freq, pos);
        for (int j = 0; j < d.IH; j++)
            dm_rope_apply(A->iq + ((size_t)r * d.IH + j) * d.ID, &c->index_rope, tm->rope_inv_freq, pos);
    }
    const size_t nn = (size_t)d.n * d.n;
    const float sc = (float)(1.0 / sqrt((double)d.ID));
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < d.B; b++)
        for (int j = 0; j < d.IH; j++)
            dm_sgemm(d.n, d.n, d.ID, sc, A->iq + ((size_t)b * d.n * d.IH + j) * d.ID, d.IH * d.ID,
                     A->ik + (size_t)b * d.n * d.ID, d.ID, true, 0.0f, A->idot + ((size_t)b * d.IH + j) * nn, d.n);
    /* the mask: every causal key, or in the sparse stage the top-k of them (ties to the lower position) */
    #pragma omp parallel for schedule(dynamic, 4)
    for (int r = 0; r < d.M; r++) {
        const int b = r / d.n, s = r % d.n;
        uint8_t *mrow = A->mask_buf + ((size_t)b * d.n + s) * d.n;
        memset(mrow, 0, (size_t)d.n);
        if (mode != DM_STAGE_SPARSE || s + 1 <= d.topk) {
            memset(mrow, 1, (size_t)s + 1);
            continue;
        }
        float *score = t_thread_scratch(tm);
        int *keep = (int *)(score + d.n);
        row_scores(A, &d, b, s, score);
        dm_topk(score, s + 1, d.topk, keep);
        for (int i = 0; i < d.topk; i++)
            mrow[keep[i]] = 1;
    }
    A->mask = mode == DM_STAGE_SPARSE ? A->mask_buf : NULL;
}

/* KL of row (b, s) over its mask; writes dI = scale·(q − p) into grad[0..s]. */
static double row_kl(const t_lacts *A, const idims *d, int H, int b, int s, float scale, float *score, float *grad)
{
    const uint8_t *mrow = A->mask_buf + ((size_t)b * d->n + s) * d->n;
    row_scores(A, d, b, s, score);
    double mx = -INFINITY, zq = 0, zp = 0;
    for (int t = 0; t <= s; t++)
        if (mrow[t] && score[t] > mx)
            mx = score[t];
    for (int t = 0; t <= s; t++) {
        double p = 0;
        if (mrow[t]) {
            zq += exp(score[t] - mx);
            for (int h = 0; h < H; h++)
                p += A->probs[(((size_t)b * H + h) * d->n + s) * d->n + t];
        }
        grad[t] = (float)p;   /* p before normalization, for now */
        zp += p;
    }
    double kl = 0, logzq = log(zq);
    for (int t = 0; t <= s; t++) {
        if (!mrow[t]) {
            grad[t] = 0;
            continue;
        }
        double p = grad[t] / zp, logq = score[t] - mx - logzq;
        if (p > 0)
            kl += p * (log(p) - logq);
        grad[t] = (float)(scale * (exp(logq) - p));
    }
    return scale * kl;
}

double t_indexer_distill(t_model *tm, int l, dm_stage_mode mode, float scale)
{
    const dm_config *c = tm->c;
    const idims d = idims_of(tm, l);
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    t_layer *G = &tm->g.layers[l];
    (void)mode;
    const size_t nn = (size_t)d.n * d.n;
    float *dI = A->iprob;                      /* [B][n][n] */
    double *row_loss = (double *)tm->d_big;    /* [M] */
    #pragma omp parallel for schedule(dynamic, 4)
    for (int r = 0; r < d.M; r++) {
        const int b = r / d.n, s = r % d.n;
        float *g = dI + ((size_t)b * d.n + s) * d.n;
        memset(g, 0, (size_t)d.n * sizeof(float));
        row_loss[r] = row_kl(A, &d, c->n_heads, b, s, scale, t_thread_scratch(tm), g);
    }
    double loss = 0;
    for (int r = 0; r < d.M; r++)
        loss += row_loss[r];

    /* back to the indexer weights: through w, D_j, qI and kI */
    float *d_iq = tm->d_q, *d_ik = tm->d_kvx, *d_iw = tm->d_att;
    memset(d_iq, 0, (size_t)d.M * d.IH * d.ID * sizeof(float));
    memset(d_ik, 0, (size_t)d.M * d.ID * sizeof(float));
    memset(d_iw, 0, (size_t)d.M * d.IH * sizeof(float));
    const float sc = (float)(1.0 / sqrt((double)d.ID));
    #pragma omp parallel for schedule(dynamic, 1)
    for (int b = 0; b < d.B; b++) {
        float *dD = t_thread_scratch(tm);     /* [n][n] */
        for (int j = 0; j < d.IH; j++) {
            const float *dot = A->idot + ((size_t)b * d.IH + j) * nn;
            for (int s = 0; s < d.n; s++) {
                const float *gI = dI + ((size_t)b * d.n + s) * d.n;
                const float wj = A->iw[((size_t)b * d.n + s) * d.IH + j];
                double dw = 0;
                for (int t = 0; t < d.n; t++) {
                    const float x = dot[(size_t)s * d.n + t];
                    const bool pos = t <= s && x > 0;
                    dw += pos ? (double)gI[t] * x : 0.0;
                    dD[(size_t)s * d.n + t] = pos ? gI[t] * wj : 0.0f;
                }
                d_iw[((size_t)b * d.n + s) * d.IH + j] = (float)dw;
            }
            const float *iq = A->iq + ((size_t)b * d.n * d.IH + j) * d.ID, *ik = A->ik + (size_t)b * d.n * d.ID;
            dm_sgemm(d.n, d.ID, d.n, sc, dD, d.n, ik, d.ID, false, 1.0f,
                     d_iq + ((size_t)b * d.n * d.IH + j) * d.ID, d.IH * d.ID);
            t_gemm(true, false, d.n, d.ID, d.n, sc, dD, d.n, iq, d.IH * d.ID, 1.0f, d_ik + (size_t)b * d.n * d.ID,
                        d.ID);
        }
    }
    float *d_ik_raw = tm->d_kv;   /* [M][ID] */
    memset(d_ik_raw, 0, (size_t)d.M * d.ID * sizeof(float));
    for (int r = 0; r < d.M; r++) {
        const int pos = r % d.n;
        dm_rope_backward(d_ik + (size_t)r * d.ID, &c->index_rope, tm->rope_inv_freq, pos);
        for (int j = 0; j < d.IH; j++)
            dm_rope_backward(d_iq + ((size_t)r * d.IH + j) * d.ID, &c->index_rope, tm->rope_inv_freq, pos);
        dm_layernorm_backward(d_ik_raw + (size_t)r * d.ID, G->i_kn_w, G->i_kn_b, d_ik + (size_t)r * d.ID,
                              A->ik_raw + (size_t)r * d.ID, W->i_kn_w, W->i_kn_b, d.ID, 1e-6f);
    }
    dm_scale(d_iw, (float)(1.0 / sqrt((double)d.IH)), (int64_t)d.M * d.IH);
    t_linear_backward(NULL, G->i_wk, d_ik_raw, A->a, W->i_wk, d.M, d.D, d.ID);
    t_linear_backward(NULL, G->i_wq_b, d_iq, A->cq, W->i_wq_b, d.M, d.Q, d.IH * d.ID);
    t_linear_backward(NULL, G->i_w, d_iw, A->a, W->i_w, d.M, d.D, d.IH);
    return loss;
}
