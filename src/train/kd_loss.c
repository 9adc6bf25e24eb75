/* kd_loss — the Router-KD loss of one position: forward KL from the
 * teacher's cached top-k distribution (plus an "other" bucket holding the
 * rest of its mass) to the student's softmax, and its gradient with respect
 * to the student's logits. The cache is the one `eval kl` writes
 * (src/eval/kl_cache_io.c), so healing and its evaluation read the same
 * teacher numbers.
 *
 * With S the teacher's support (k ids) and o the other bucket:
 *   KL = Σ_{i∈S} p_i (log p_i − log q_i) + p_o (log p_o − log q_o),
 *   q_o = Σ_{j∉S} q_j  (summed directly: 1 − Σ_S q_i would cancel),
 *   ∂KL/∂z_j = (q_j − p̃_j)/τ,  p̃_j = p_j on S,  p_o·q_j/q_o off S,
 * which is the gradient of the coarse-grained KL (the student's own tail
 * shape is kept, only its total is pulled toward p_o). Everything in double;
 * the per-row work is O(V + k log k). */
#include "train/train_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { KD_MAX_K = 1024 };

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* The teacher's tempered log-probabilities: lp[i] for the k ids, *lp_o for
 * the bucket (-inf when it is empty). */
static void teacher_logp(const float *logp, float other_logp, int k, double tau, double *lp, double *lp_o)
{
    double mx = isfinite(other_logp) ? other_logp / tau : -INFINITY;
    for (int i = 0; i < k; i++)
        mx = fmax(mx, logp[i] / tau);
    double sum = isfinite(other_logp) ? exp(other_logp / tau - mx) : 0;
    for (int i = 0; i < k; i++)
        sum += exp(logp[i] / tau - mx);
    const double lse = mx + log(sum);
    for (int i = 0; i < k; i++)
        lp[i] = logp[i] / tau - lse;
    *lp_o = isfinite(other_logp) ? other_logp / tau - lse : -INFINITY;
}

double t_kd_row(const float *z, int V, const int32_t *ids, const float *logp, float other_logp, int k, double tau,
                float scale, float *dz)
{
    DM_ASSERT(k >= 1 && k <= KD_MAX_K && tau > 0);
    double lp[KD_MAX_K], lp_o;
    int32_t sorted[KD_MAX_K];
    teacher_logp(logp, other_logp, k, tau, lp, &lp_o);

    /* student: log-sum-exp of z/τ, then the mass outside the support */
    double mx = -INFINITY;
    for (int j = 0; j < V; j++)
        mx = fmax(mx, z[j] / tau);
    double sum = 0;
    for (int j = 0; j < V; j++)
        sum += exp(z[j] / tau - mx);
    const double lse = mx + log(sum);
    memcpy(sorted, ids, (size_t)k * sizeof *sorted);
    qsort(sorted, (size_t)k, sizeof *sorted, cmp_i32);
    double q_o = 0;   /* with dz, q_j is kept there for the gradient (one exp per token, not two) */
    for (int j = 0, s = 0; j < V; j++) {
        if (s < k && sorted[s] == j) {
            s++;
            if (dz)
                dz[j] = 0;   /* set below */
            continue;
        }
        const double q = exp(z[j] / tau - lse);
        q_o += q;
        if (dz)
            dz[j] = (float)q;
    }

    double kl = 0;
    for (int i = 0; i < k; i++)
        kl += exp(lp[i]) * (lp[i] - (z[ids[i]] / tau - lse));
    const double p_o = exp(lp_o);
    if (p_o > 0)
        kl += p_o * (lp_o - log(fmax(q_o, 1e-300)));   /* a student tail that underflowed: huge, not inf */
    if (!dz)
        return kl;

    /* dz = scale·τ·(q − p̃): off the support q_j (1 − p_o/q_o), on it q_j − p_j */
    const double g = (double)scale * tau, off = q_o > 0 ? 1.0 - p_o / q_o : 1.0;
    for (int j = 0; j < V; j++)
        dz[j] = (float)(g * dz[j] * off);   /* support entries are overwritten below */
    for (int i = 0; i < k; i++) {
        const int32_t j = ids[i];
        dz[j] = (float)(g * (exp(z[j] / tau - lse) - exp(lp[i])));
    }
    return kl;
}
