/* lm — the two ends of a language model for training: the token embedding
 * lookup (a gather) with its backward (a scatter-add), and the cross-entropy
 * loss of one row of logits with its gradient, fused. f32 tables (training
 * keeps fp32 master weights); the model's inference path reads embeddings
 * from the checkpoint itself.
 *
 * Shapes: T tokens, D hidden, V vocabulary. */
#include "ops/ops_isa.h"

#include <math.h>
#include <string.h>
#ifdef _OPENMP
#define OMP(directive) _Pragma(directive)
#else
#define OMP(directive)
#endif

enum { EMB_COL_CHUNK = 64 };         /* columns per scatter-add task */
#define EMB_MIN_PARALLEL 65536.0     /* T·D below which the scatter-add stays on one thread */

void dm_embedding(float *x, const float *E, const int *tokens, int64_t T, int64_t D)
{
    for (int64_t t = 0; t < T; t++) {
        DM_ASSERT(tokens[t] >= 0);
        memcpy(x + t * D, E + (int64_t)tokens[t] * D, (size_t)D * sizeof(float));
    }
}

/* Threads over column chunks; every column adds its rows in the order
 * t = 0..T-1, so repeated tokens accumulate exactly as the sequential loop
 * would, for any thread count (bitwise). */
void dm_embedding_backward(float *dE, const float *dx, const int *tokens, int64_t T, int64_t D)
{
    const int64_t nchunk = (D + EMB_COL_CHUNK - 1) / EMB_COL_CHUNK;
    int nth = dm_ops_threads((double)T * (double)D, EMB_MIN_PARALLEL);
    if (nth > nchunk)
        nth = (int)nchunk;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(dynamic, 1)")
    for (int64_t c = 0; c < nchunk; c++) {
        const int64_t c0 = c * EMB_COL_CHUNK, nc = D - c0 < EMB_COL_CHUNK ? D - c0 : EMB_COL_CHUNK;
        for (int64_t t = 0; t < T; t++) {
            DM_ASSERT(tokens[t] >= 0);
            float *dst = dE + (int64_t)tokens[t] * D + c0;
            const float *src = dx + t * D + c0;
            for (int64_t i = 0; i < nc; i++)
                dst[i] += src[i];
        }
    }
}

/* Pass 1 finds the max m and the target's logit; pass 2 forms e_i =
 * exp(l_i − m) in double, sums them (S) and the non-target ones (S_o), and
 * parks (float)e_i in dlogits (which is why dlogits may alias logits); pass 3
 * scales. The loss, log S − (l_t − m), is taken as log1p(S_o/e_t) when the
 * target dominates (e_t > S_o), where log S would lose the small loss to
 * rounding; the target's gradient is −scale·S_o/S for the same reason
 * (p_t − 1 would cancel). */
void dm_cross_entropy(float *dlogits, double *loss, const float *logits, int target, int64_t V, float scale)
{
    DM_ASSERT(V > 0 && target < V);
    if (target < 0) {                       /* ignored position */
        *loss = 0.0;
        if (dlogits)
            memset(dlogits, 0, (size_t)V * sizeof(float));
        return;
    }
    double m = logits[0];
    for (int64_t i = 1; i < V; i++)
        m = logits[i] > m ? logits[i] : m;
    const double lt = logits[target];
    double S = 0, S_o = 0, e_t = 0;
    for (int64_t i = 0; i < V; i++) {
        const double e = exp((double)logits[i] - m);
        S += e;
        if (i == target)
            e_t = e;
        else
            S_o += e;
        if (dlogits)
            dlogits[i] = (float)e;
    }
    *loss = e_t > S_o ? log1p(S_o / e_t) : log(S) - (lt - m);
    if (!dlogits)
        return;
    const double k = (double)scale / S;
    for (int64_t i = 0; i < V; i++)
        dlogits[i] = (float)(k * dlogits[i]);
    dlogits[target] = (float)(-(double)scale * S_o / S);
}
