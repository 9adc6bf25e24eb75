/* t_ffn — the feed-forward blocks in training: the dense SwiGLU MLP and the
 * MoE (router, grouped experts, shared expert), forward and backward.
 *
 * Router gradient (train contract): the selection (top-k over scores + bias,
 * with group limits) is a constant; the gates are g_k = s_k / (Σ_sel s + 1e-20)
 * · scale, so d s_j = scale·(dg_j − Σ_k dg_k·g_k/scale) / (Σ_sel s + 1e-20) for
 * the selected j, then d logits = d s·s(1−s) for sigmoid scores (the softmax
 * Jacobian otherwise). The sequence-wise balance loss α/B·Σ_e f_e·P_e adds
 * d s'_{t,e} = α/B·f_e/n on every expert, through s' = s/Σ_all s. */
#include "train/train_internal.h"

#include <math.h>
#include <string.h>

/* ---- dense SwiGLU ----------------------------------------------------------------- */

/* y = down(silu(x·gateᵀ) ⊙ x·upᵀ) over M rows; keeps h1, h2 for the backward. */
static void swiglu_forward(const t_mlp *w, const float *x, int M, int D, int I, float *h1, float *h2, float *hm,
                           float *y)
{
    t_linear_forward(h1, x, w->gate, M, D, I);
    t_linear_forward(h2, x, w->up, M, D, I);
    dm_silu_mul(hm, h1, h2, (int64_t)M * I);
    t_linear_forward(y, hm, w->down, M, I, D);
}

/* Backward of swiglu_forward: dx += ..., weight grads +=. hm, dh1, dh2 are scratch [M][I]. */
static void swiglu_backward(const t_mlp *w, t_mlp *g, const float *x, const float *h1, const float *h2, const float *dy,
                            int M, int D, int I, float *hm, float *dh1, float *dh2, float *dx)
{
    dm_silu_mul(hm, h1, h2, (int64_t)M * I);
    memset(dh1, 0, (size_t)M * I * sizeof(float));   /* dh1 first holds d hm */
    memset(dh2, 0, (size_t)M * I * sizeof(float));
    t_linear_backward(dh1, g->down, dy, hm, w->down, M, I, D);
    memcpy(hm, dh1, (size_t)M * I * sizeof(float));   /* hm := d hm */
    memset(dh1, 0, (size_t)M * I * sizeof(float));
    dm_silu_mul_backward(dh1, dh2, hm, h1, h2, (int64_t)M * I);
    t_linear_backward(dx, g->gate, dh1, x, w->gate, M, D, I);
    t_linear_backward(dx, g->up, dh2, x, w->up, M, D, I);
}

/* ---- MoE forward ---------------------------------------------------------------------- */

static void route(t_model *tm, int l, int M)
{
    t_lacts *A = &tm->acts[l];
    const t_layer *W = &tm->w.layers[l];
    const dm_router_params p = dm_router_params_for(tm->c, l);
    t_linear_forward(A->r_logits, A->f, W->router, M, tm->c->hidden_size, p.E);
    #pragma omp parallel for schedule(static)
    for (int r = 0; r < M; r++) {
        float *tmp = t_thread_scratch(tm);
        dm_route_token(&p, A->r_logits + (size_t)r * p.E, W->bias, A->r_scores + (size_t)r * p.E,
                       A->sel + (size_t)r * p.K, A->gate + (size_t)r * p.K, tmp);
    }
}

/* Counting sort of the (row, k) pairs by expert; gathers the expert inputs. */
static void group(t_model *tm, int l, int M, int E, int K)
{
    t_lacts *A = &tm->acts[l];
    const int D = tm->c->hidden_size;
    int64_t *load = tm->load + (size_t)l * tm->c->n_routed_experts;
    memset(A->ex_start, 0, (size_t)(E + 1) * sizeof(int));
    for (int j = 0; j < M * K; j++)
        A->ex_start[A->sel[j] + 1]++;
    for (int e = 0; e < E; e++) {
        load[e] += A->ex_start[e + 1];
        A->ex_start[e + 1] += A->ex_start[e];
    }
    int *fill = (int *)t_thread_scratch(tm);
    memcpy(fill, A->ex_start, (size_t)E * sizeof(int));
    for (int j = 0; j < M * K; j++) {
        const int s = fill[A->sel[j]]++;
        A->slot[j] = s;
        A->slot_row[s] = j / K;
        memcpy(A->ex_x + (size_t)s * D, A->f + (size_t)(j / K) * D, (size_t)D * sizeof(float));
    }
}

/* α/B·Σ_e f_e·P_e for each window (train contract), summed. */
static double balance_loss(const t_model *tm, int l, int E, int K)
{
    const t_lacts *A = &tm->acts[l];
    const int n = A->n;
    const double alpha = tm->hp->balance_alpha / tm->B;
    double total = 0;
    for (int b = 0; b < tm->B; b++) {
        double count[E], P[E];
        for (int e = 0; e < E; e++)
            count[e] = P[e] = 0;
        for (int i = 0; i < n; i++) {
            const size_t r = (size_t)b * n + i;
            const float *s = A->r_scores + r * E;
            double sum = 0;
            for (int e = 0; e < E; e++)
                sum += s[e];
            for (int e = 0; e < E; e++)
                P[e] += s[e] / sum / n;
            for (int k = 0; k < K; k++)
                count[A->sel[r * K + k]] += 1;
        }
        for (int e = 0; e < E; e++)
            total += alpha * ((double)E / ((double)K * n) * count[e]) * P[e];
    }
    return total;
}

static void moe_forward(t_model *tm, int l, float *y, double *bal)
{
    t_lacts *A = &tm->acts[l];
    const dm_config *c = tm->c;
    const t_layer *W = &tm->w.layers[l];
    const int M = A->M, D = c->hidden_size, I = c->moe_intermediate_size, E = c->layer_experts[l];
    const int K = c->n_experts_per_tok, Is = I * c->n_shared_experts;
    route(tm, l, M);
    group(tm, l, M, E, K);
    float *hm = tm->d_h1;   /* scratch, [M·K][I] */
    for (int e = 0; e < E; e++) {
        const int s0 = A->ex_start[e], ne = A->ex_start[e + 1] - s0;
        if (ne > 0)
            swiglu_forward(&W->experts[e], A->ex_x + (size_t)s0 * D, ne, D, I, A->ex_h1 + (size_t)s0 * I,
                           A->ex_h2 + (size_t)s0 * I, hm, A->ex_y + (size_t)s0 * D);
    }
    if (c->n_shared_experts > 0)
        swiglu_forward(&W->shared, A->f, M, D, Is, A->h1, A->h2, hm, y);
    else
        memset(y, 0, (size_t)M * D * sizeof(float));
    for (int r = 0; r < M; r++)
        for (int k = 0; k < K; k++)
            dm_axpy(y + (size_t)r * D, A->gate[(size_t)r * K + k], A->ex_y + (size_t)A->slot[(size_t)r * K + k] * D, D);
    if (tm->hp->balance_alpha > 0)
        *bal += balance_loss(tm, l, E, K);
}

void t_ffn_forward(t_model *tm, int l, float *y, double *bal)
{
    t_lacts *A = &tm->acts[l];
    const dm_config *c = tm->c;
    if (c->layer_moe[l]) {
        moe_forward(tm, l, y, bal);
        return;
    }
    swiglu_forward(&tm->w.layers[l].mlp, A->f, A->M, c->hidden_size, c->intermediate_size, A->h1, A->h2, tm->d_h1, y);
}

/* ---- MoE backward ----------------------------------------------------------------------- */

/* d logits of row r from the gate gradients dg[K] and the balance loss. */
static void router_row_backward(const t_model *tm, int l, int r, const float *dg, const double *dsp, float *dlogit)
{
    const t_lacts *A = &tm->acts[l];
    const dm_router_params p = dm_router_params_for(tm->c, l);
    const int E = p.E, K = p.K;
    const float *s = A->r_scores + (size_t)r * E;
    const int *sel = A->sel + (size_t)r * K;
    const float *gate = A->gate + (size_t)r * K;
    double ds[E];
    for (int e = 0; e < E; e++)
        ds[e] = 0;
    if (p.norm_topk_prob) {
        double sum = 1e-20, dot = 0;
        for (int k = 0; k < K; k++) {
            sum += s[sel[k]];
            dot += (double)dg[k] * gate[k];   /* gate = s/sum·scale */
        }
        for (int k = 0; k < K; k++)
            ds[sel[k]] += (p.scaling * dg[k] - dot) / sum;
    } else {
        for (int k = 0; k < K; k++)
            ds[sel[k]] += p.scaling * dg[k];
    }
    if (dsp) {   /* balance: through s' = s / Σ s */
        double sum = 0, dot = 0;
        for (int e = 0; e < E; e++)
            sum += s[e];
        for (int e = 0; e < E; e++)
            dot += dsp[e] * s[e] / sum;
        for (int e = 0; e < E; e++)
            ds[e] += (dsp[e] - dot) / sum;
    }
    if (p.scoring == DM_SCORING_SIGMOID) {
        for (int e = 0; e < E; e++)
            dlogit[e] = (float)(ds[e] * s[e] * (1.0 - s[e]));
    } else {
        double dot = 0;
        for (int e = 0; e < E; e++)
            dot += ds[e] * s[e];
        for (int e = 0; e < E; e++)
            dlogit[e] = (float)(s[e] * (ds[e] - dot));
    }
}

/* Balance-loss gradient on s' for window b: α/B·f_e/n (f from the selection counts). */
static void balance_grad(const t_model *tm, int l, int b, double *dsp)
{
    const t_lacts *A = &tm->acts[l];
    const int E = tm->c->layer_experts[l], K = tm->c->n_experts_per_tok, n = A->n;
    const double alpha = tm->hp->balance_alpha / tm->B;
    for (int e = 0; e < E; e++)
        dsp[e] = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++)
            dsp[A->sel[((size_t)b * n + i) * K + k]] += 1;
    for (int e = 0; e < E; e++)
        dsp[e] = alpha * ((double)E / ((double)K * n) * dsp[e]) / n;
}

static void moe_backward(t_model *tm, int l, const float *d_y, float *d_f)
{
    t_lacts *A = &tm->acts[l];
    const dm_config *c = tm->c;
    const t_layer *W = &tm->w.layers[l];
    t_layer *G = &tm->g.layers[l];
    const int M = A->M, D = c->hidden_size, I = c->moe_intermediate_size, E = c->layer_experts[l];
    const int K = c->n_experts_per_tok, Is = I * c->n_shared_experts;
    float *d_gate = tm->d_r;                  /* [M][K] */
    float *d_logit = tm->d_r + (size_t)M * K; /* [M][E] */
    /* gates and expert outputs */
    for (int r = 0; r < M; r++)
        for (int k = 0; k < K; k++) {
            const int s = A->slot[(size_t)r * K + k];
            d_gate[(size_t)r * K + k] = dm_dot(d_y + (size_t)r * D, A->ex_y + (size_t)s * D, D);
            float *dy = tm->d_ex_y + (size_t)s * D;
            memcpy(dy, d_y + (size_t)r * D, (size_t)D * sizeof(float));
            dm_scale(dy, A->gate[(size_t)r * K + k], D);
        }
    if (c->n_shared_experts > 0)
        swiglu_backward(&W->shared, &G->shared, A->f, A->h1, A->h2, d_y, M, D, Is, tm->d_h1, tm->d_h2, tm->d_ex_h1, d_f);
    memset(tm->d_ex_x, 0, (size_t)M * K * D * sizeof(float));
    for (int e = 0; e < E; e++) {
        const int s0 = A->ex_start[e], ne = A->ex_start[e + 1] - s0;
        if (ne > 0)
            swiglu_backward(&W->experts[e], &G->experts[e], A->ex_x + (size_t)s0 * D, A->ex_h1 + (size_t)s0 * I,
                            A->ex_h2 + (size_t)s0 * I, tm->d_ex_y + (size_t)s0 * D, ne, D, I, tm->d_h1, tm->d_h2,
                            tm->d_ex_h1, tm->d_ex_x + (size_t)s0 * D);
    }
    for (int r = 0; r < M; r++)       /* the experts' input gradients, summed in k order */
        for (int k = 0; k < K; k++)
            dm_add(d_f + (size_t)r * D, tm->d_ex_x + (size_t)A->slot[(size_t)r * K + k] * D, D);
    const bool bal = tm->hp->balance_alpha > 0;
    #pragma omp parallel for schedule(static)
    for (int b = 0; b < tm->B; b++) {
        double *dsp = (double *)t_thread_scratch(tm);
        if (bal)
            balance_grad(tm, l, b, dsp);
        for (int i = 0; i < A->n; i++) {
            const int r = b * A->n + i;
            router_row_backward(tm, l, r, d_gate + (size_t)r * K, bal ? dsp : NULL, d_logit + (size_t)r * E);
        }
    }
    t_linear_backward(d_f, G->router, d_logit, A->f, W->router, M, D, E);
}

void t_ffn_backward(t_model *tm, int l, const float *d_y, float *d_f)
{
    t_lacts *A = &tm->acts[l];
    const dm_config *c = tm->c;
    if (c->layer_moe[l]) {
        moe_backward(tm, l, d_y, d_f);
        return;
    }
    swiglu_backward(&tm->w.layers[l].mlp, &tm->g.layers[l].mlp, A->f, A->h1, A->h2, d_y, A->M, c->hidden_size,
                    c->intermediate_size, tm->d_h1, tm->d_h2, tm->d_ex_h1, d_f);
}
