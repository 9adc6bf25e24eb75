/* moe — the feed-forward blocks: dense SwiGLU MLP and the routed MoE with its
 * shared expert. The MoE groups the batch by expert (a counting sort of the
 * (row, k) pairs), so each expert runs one matrix product over all the rows
 * routed to it and its weights are read once per batch, not once per token.
 * Results are combined per row in k order, so the sum is the same whatever
 * the threading. The observer (REAP, imatrix) sees router logits, scores,
 * the selection, the applied gates and each expert's ungated output. */
#include "model/forward_internal.h"

#include <string.h>

/* The dense MLP: out[T][D] = down(silu(gate·a) ⊙ up·a), gate and up as one batch. */
void dm_mlp_forward(dm_ctx *c, int l, const dm_mlp_w *w, dm_linear first, int T, float *out)
{
    const int64_t I = w->gate.rows, D = w->gate.cols;
    dm_observe_linear(c, l, first, -1, c->a, T, (int)D);
    dm_observe_linear(c, l, (dm_linear)(first + 1), -1, c->a, T, (int)D);
    dm_mm_job jobs[2] = { { c->h1, c->a, &w->gate, T, false }, { c->h2, c->a, &w->up, T, false } };
    dm_matmul_many(jobs, 2);
    dm_silu_mul(c->h1, c->h1, c->h2, (int64_t)T * I);
    dm_observe_linear(c, l, (dm_linear)(first + 2), -1, c->h1, T, (int)I);
    dm_matmul(out, c->h1, &w->down, T);
}

/* Router logits, scores, selection and gates for the T rows. */
static void route(dm_ctx *c, int l, int T)
{
    const dm_moe_w *moe = &c->m->layers[l].moe;
    dm_router_params p = dm_router_params_for(&c->m->cfg, l);
    p.keep = c->expert_keep ? c->expert_keep[l] : NULL;
    const int D = c->m->cfg.hidden_size, E = p.E, K = p.K, G = p.n_group;
    dm_observe_linear(c, l, DM_LIN_ROUTER, -1, c->a, T, D);
    dm_matmul_exact(c->r_logits, c->a, &moe->router, T);
    #pragma omp parallel for schedule(static)
    for (int i = 0; i < T; i++) {
        const int t = dm_thread_id();
        float *tmp = c->r_tmp + (size_t)t * (size_t)(c->m->cfg.n_routed_experts + G);
        dm_route_token(&p, c->r_logits + (size_t)i * E, moe->bias, c->r_scores + (size_t)i * E,
                       c->r_sel + (size_t)i * K, c->r_gate + (size_t)i * K, tmp);
    }
}

/* Counting sort of the T·K (row, k) pairs by expert: ex_count[e] becomes the
 * first slot of expert e, ex_slot[i·K+k] the slot of the pair, ex_row[slot]
 * its row; ex_x[slot] the row's input. */
static void group_by_expert(dm_ctx *c, int E, int K, int T)
{
    const int D = c->m->cfg.hidden_size;
    int *start = c->ex_count;
    memset(start, 0, (size_t)(E + 1) * sizeof(int));
    for (int j = 0; j < T * K; j++)
        start[c->r_sel[j] + 1]++;
    for (int e = 0; e < E; e++)
        start[e + 1] += start[e];
    int fill[E];
    memcpy(fill, start, (size_t)E * sizeof(int));
    for (int j = 0; j < T * K; j++) {
        int slot = fill[c->r_sel[j]]++;
        c->ex_slot[j] = slot;
        c->ex_row[slot] = j / K;
        memcpy(c->ex_x + (size_t)slot * D, c->a + (size_t)(j / K) * D, (size_t)D * sizeof(float));
    }
}

static void observe_moe(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const int E = cfg->layer_experts[l], K = cfg->n_experts_per_tok, D = cfg->hidden_size;
    for (int j = 0; j < T * K; j++)
        memcpy(c->obs_out + (size_t)j * D, c->ex_y + (size_t)c->ex_slot[j] * D, (size_t)D * sizeof(float));
    dm_moe_obs o = {
        .layer = l, .T = T, .E = E, .K = K, .D = D, .I = cfg->moe_intermediate_size,
        .router_logits = c->r_logits, .scores = c->r_scores, .selected = c->r_sel, .gates = c->r_gate,
        .expert_in = c->a, .expert_out = c->obs_out, .positions = c->row_pos, .row_ids = c->row_id,
    };
    c->obs.moe(c->obs.user, &o);
}

/* Every routed expert with rows, plus the shared expert, as one batch of
 * products: all gate/up projections in one dm_matmul_many, then all down
 * projections in another (decode runs ~20 small products per layer; one
 * barrier each instead of one per product). */
static void run_experts(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_moe_w *moe = &c->m->layers[l].moe;
    const int E = moe->n_experts, D = cfg->hidden_size, I = cfg->moe_intermediate_size;
    const int Is = I * cfg->n_shared_experts;
    dm_mm_job *up = c->jobs, *down = c->jobs + 2 * (E + 1);
    int *expert_of = c->job_expert;   /* expert id of down[j], -1 for the shared expert */
    const int *down_rows[E + 1];      /* batch rows of down[j]'s input rows, NULL: in order */
    int n_up = 0, n_down = 0;
    for (int e = 0; e <= E; e++) {
        bool shared = e == E;
        if (shared && !moe->has_shared)
            break;
        const int s0 = shared ? 0 : c->ex_count[e], n = shared ? T : c->ex_count[e + 1] - s0;
        if (n == 0)
            continue;
        const dm_mlp_w *w = shared ? &moe->shared : &moe->experts[e];
        const float *x = shared ? c->a : c->ex_x + (size_t)s0 * D;
        float *h1 = shared ? c->h1 : c->ex_h1 + (size_t)s0 * I, *h2 = shared ? c->h2 : c->ex_h2 + (size_t)s0 * I;
        float *y = shared ? c->blk_out : c->ex_y + (size_t)s0 * D;
        dm_linear first = shared ? DM_LIN_SHEXP_GATE : DM_LIN_EXP_GATE;
        const int *rows = shared ? NULL : c->ex_row + s0;   /* expert inputs are grouped by expert */
        dm_observe_linear_rows(c, l, first, shared ? -1 : e, x, n, D, rows, 0);
        dm_observe_linear_rows(c, l, (dm_linear)(first + 1), shared ? -1 : e, x, n, D, rows, 0);
        up[n_up++] = (dm_mm_job){ h1, x, &w->gate, n, false };
        up[n_up++] = (dm_mm_job){ h2, x, &w->up, n, false };
        expert_of[n_down] = shared ? -1 : e;
        down_rows[n_down] = rows;
        down[n_down++] = (dm_mm_job){ y, h1, &w->down, n, false };
    }
    dm_matmul_many(up, n_up);
    for (int j = 0; j < n_down; j++) {
        dm_silu_mul(up[2 * j].y, up[2 * j].y, up[2 * j + 1].y, (int64_t)up[2 * j].T * up[2 * j].w->rows);
        bool shared = expert_of[j] < 0;
        dm_observe_linear_rows(c, l, shared ? DM_LIN_SHEXP_DOWN : DM_LIN_EXP_DOWN, expert_of[j], down[j].x,
                               down[j].T, shared ? Is : I, down_rows[j], 0);
    }
    dm_matmul_many(down, n_down);
    if (!moe->has_shared)
        memset(c->blk_out, 0, (size_t)T * D * sizeof(float));
}

void dm_moe_forward(dm_ctx *c, int l, int T)
{
    const dm_config *cfg = &c->m->cfg;
    const dm_moe_w *moe = &c->m->layers[l].moe;
    const int E = moe->n_experts, K = cfg->n_experts_per_tok, D = cfg->hidden_size;

    route(c, l, T);
    group_by_expert(c, E, K, T);
    run_experts(c, l, T);
    if (c->obs.moe)
        observe_moe(c, l, T);
    float *out = c->blk_out;
    for (int i = 0; i < T; i++)
        for (int k = 0; k < K; k++)
            dm_axpy(out + (size_t)i * D, c->r_gate[(size_t)i * K + k],
                    c->ex_y + (size_t)c->ex_slot[(size_t)i * K + k] * D, D);
}
