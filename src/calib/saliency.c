/* saliency — the observers calibration hangs on the forward pass: the MoE
 * observer accumulates the per-expert statistics (REAP, frequency, EAN,
 * soft frequency; calib.h) under the chosen gate, and the linear-input
 * observer the imatrix. Rows carry per-token weights.
 *
 * Gates (reap.md §1.3):
 *   model            the token set and gate the forward pass really used;
 *   cerebras         top-k of the raw router logits, g = softmax(logits)_j over all experts
 *                    (the Cerebras REAP code, which ignores the correction bias);
 *   cerebras-renorm  the same, g renormalized over the top-k.
 * Under the Cerebras gates an expert the model did not select has no output
 * in the observation, so it is computed here from the expert's weights. */
#include "calib/calib_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double l2(const float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* Adds one routing event (token weight w, gate g, output norm n) to an expert's row. */
static void add_event(double *acc, double w, double g, double n)
{
    acc[DM_ACC_COUNT] += w;
    acc[DM_ACC_GATE] += w * g;
    acc[DM_ACC_NORM] += w * n;
    acc[DM_ACC_GNORM] += w * g * n;
    if (n > acc[DM_ACC_MAXNORM])
        acc[DM_ACC_MAXNORM] = n;
}

/* out[D] = expert e of layer l applied to x[D] (SwiGLU), for tokens the
 * model did not route to it. */
static void run_expert(calib_run *r, int l, int e, const float *x, float *out)
{
    const dm_mlp_w *w = &r->model->layers[l].moe.experts[e];
    const int I = (int)w->gate.rows;
    float *h1 = r->scratch, *h2 = r->scratch + I;
    dm_matmul_exact(h1, x, &w->gate, 1);
    dm_matmul_exact(h2, x, &w->up, 1);
    dm_silu_mul(h1, h1, h2, I);
    dm_matmul_exact(out, h1, &w->down, 1);
}

/* One token under a Cerebras gate: top-k of the raw logits, softmax weights. */
static void cerebras_token(calib_run *r, const dm_moe_obs *o, int i, double w, int *srcs, int n_src)
{
    const int E = o->E, K = o->K, D = o->D;
    const float *z = o->router_logits + (size_t)i * E;
    int *top = r->itmp;
    dm_topk(z, E, K, top);
    double mx = -INFINITY, sum = 0, sel_sum = 0;
    for (int e = 0; e < E; e++)
        mx = fmax(mx, z[e]);
    for (int e = 0; e < E; e++)
        sum += exp((double)z[e] - mx);
    for (int k = 0; k < K; k++)
        sel_sum += exp((double)z[top[k]] - mx) / sum;
    for (int k = 0; k < K; k++) {
        const int e = top[k];
        double g = exp((double)z[e] - mx) / sum;
        if (r->gate == DM_GATE_CEREBRAS_RENORM)
            g /= fmax(sel_sum, 1e-12);
        const float *f = NULL;   /* the model's own output of e for this token, if it ran */
        for (int kk = 0; kk < K; kk++)
            if (o->selected[(size_t)i * K + kk] == e)
                f = o->expert_out + ((size_t)i * K + kk) * D;
        if (!f) {
            run_expert(r, o->layer, e, o->expert_in + (size_t)i * D, r->fbuf);
            f = r->fbuf;
        }
        const double n = l2(f, D);
        for (int s = 0; s < n_src; s++)
            add_event(dm_calib_acc(r->st, srcs[s], o->layer, e), w, g, n);
    }
}

void calib_on_moe(void *user, const dm_moe_obs *o)
{
    calib_run *r = user;
    const int E = o->E, K = o->K, D = o->D;
    int srcs[2] = { 0, r->source };
    const int n_src = r->source > 0 ? 2 : 1;
    for (int i = 0; i < o->T; i++) {
        const double w = r->row_weight[o->row_ids[i]];
        if (w == 0)
            continue;
        const float *s = o->scores + (size_t)i * E;
        double ssum = 0;
        for (int e = 0; e < E; e++)
            ssum += s[e];
        for (int src = 0; src < n_src; src++)
            for (int e = 0; e < E; e++)
                dm_calib_acc(r->st, srcs[src], o->layer, e)[DM_ACC_SOFT] += w * s[e] / ssum;
        if (r->gate != DM_GATE_MODEL) {
            cerebras_token(r, o, i, w, srcs, n_src);
            continue;
        }
        for (int k = 0; k < K; k++) {
            const int e = o->selected[(size_t)i * K + k];
            const double g = o->gates[(size_t)i * K + k], n = l2(o->expert_out + ((size_t)i * K + k) * D, D);
            for (int src = 0; src < n_src; src++)
                add_event(dm_calib_acc(r->st, srcs[src], o->layer, e), w, g, n);
        }
    }
}

void calib_on_linear(void *user, int layer, dm_linear which, int expert, const float *x, int T, int K,
                     const int *rows, int first_row)
{
    calib_run *r = user;
    char name[256];
    dm_linear_name(layer, which, expert, name, sizeof name);
    const int i = dm_calib_imat(r->st, name, K);
    if (i < 0)
        return;
    double *sum2 = r->st->imat_sum2[i];
    double count = 0;
    for (int t = 0; t < T; t++) {
        const double w = r->row_weight[rows ? rows[t] : first_row + t];
        if (w == 0)
            continue;
        const float *xt = x + (size_t)t * K;
        for (int k = 0; k < K; k++)
            sum2[k] += w * (double)xt[k] * xt[k];
        count += w;
    }
    r->st->imat_count[i] += count;
}
