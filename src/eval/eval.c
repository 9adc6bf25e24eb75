/* eval — the loss arithmetic and the window loop (eval.h), and a loaded
 * model as a logits source (dm_forward with every row's logits). */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EOS_TOKEN "<|endoftext|>"

void dm_nll_add(dm_nll *acc, const dm_nll *x)
{
    acc->nll += x->nll;
    acc->n_tokens += x->n_tokens;
    acc->n_bytes += x->n_bytes;
    acc->n_docs += x->n_docs;
}

double dm_nll_loss(const dm_nll *a)
{
    return a->n_tokens > 0 ? a->nll / (double)a->n_tokens : NAN;
}

double dm_nll_ppl(const dm_nll *a)
{
    return exp(dm_nll_loss(a));
}

double dm_nll_bpb(const dm_nll *a)
{
    return a->n_bytes > 0 ? a->nll / (M_LN2 * (double)a->n_bytes) : NAN;
}

double dm_token_nll(const float *logits, int V, int32_t target)
{
    DM_ASSERT(target >= 0 && target < V);
    double m = -INFINITY;
    for (int i = 0; i < V; i++)
        if (logits[i] > m)
            m = logits[i];
    if (!isfinite(m))
        return NAN;
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)logits[i] - m);   /* every term <= 1, the largest exactly 1 */
    double nll = m + log(s) - (double)logits[target];
    return isfinite(nll) && isfinite((double)logits[target]) ? nll : NAN;
}

int dm_eval_windows(dm_logits_fn fn, void *user, int V, const int32_t *ids, size_t n, int ctx, int64_t max_targets,
                    const int *token_bytes, float *scratch, dm_nll *acc, dm_err *err)
{
    DM_ASSERT(ctx > 0 && V > 0);
    double *row_nll = dm_malloc((size_t)ctx * sizeof(double));
    int64_t done_targets = 0;   /* predictions made by this call */
    int rc = 0;
    for (size_t start = 0; start + 1 < n; start += (size_t)ctx) {
        size_t left = n - 1 - start;
        int T = left < (size_t)ctx ? (int)left : ctx;
        if (max_targets > 0 && done_targets + T > max_targets)
            T = (int)(max_targets - done_targets);
        if (T <= 0)
            break;
        for (int t = 0; t <= T && t + start < n; t++)
            if (ids[start + t] < 0 || ids[start + t] >= V) {
                rc = dm_errorf(err, "token id %d at position %zu is outside the vocabulary (%d)", ids[start + t],
                               start + t, V);
                goto done;
            }
        if ((rc = fn(user, ids + start, T, scratch, err)))
            break;
        #pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            row_nll[t] = dm_token_nll(scratch + (size_t)t * V, V, ids[start + t + 1]);
        for (int t = 0; t < T; t++) {   /* summed in order: thread-count independent */
            if (!isfinite(row_nll[t])) {
                rc = dm_errorf(err, "non-finite logits at position %zu", start + t);
                goto done;
            }
            acc->nll += row_nll[t];
            acc->n_tokens++;
            done_targets++;
            if (token_bytes)
                acc->n_bytes += token_bytes[ids[start + t + 1]];
        }
    }
done:
    free(row_nll);
    return rc;
}

/* ---- the model ---- */

dm_evaluator *dm_evaluator_new(const dm_model *m, const dm_tokenizer *tok, int ctx)
{
    DM_ASSERT(ctx > 0);
    dm_evaluator *ev = dm_calloc(1, sizeof *ev);
    ev->model = m;
    ev->tok = tok;
    ev->ctx = ctx;
    ev->V = m->cfg.vocab_size;
    ev->c = dm_ctx_new(m, ctx);
    ev->seq = dm_seq_new(m, ctx);
    ev->logits = dm_malloc((size_t)ctx * ev->V * sizeof(float));
    ev->eos = -1;
    if (tok) {
        ev->eos = dm_token_id(tok, EOS_TOKEN);
        if (ev->eos >= ev->V)
            ev->eos = -1;
        ev->token_bytes = dm_calloc((size_t)ev->V, sizeof(int));
        char buf[8];
        for (int id = 0; id < ev->V; id++) {
            int k = dm_token_to_bytes(tok, id, buf, sizeof buf);   /* the full count, whatever fits */
            ev->token_bytes[id] = k > 0 && id != ev->eos ? k : 0;
        }
    }
    return ev;
}

void dm_evaluator_free(dm_evaluator *ev)
{
    if (!ev)
        return;
    dm_seq_free(ev->seq);
    dm_ctx_free(ev->c);
    free(ev->logits);
    free(ev->token_bytes);
    free(ev);
}

int dm_evaluator_logits(void *user, const int32_t *ids, int T, float *logits, dm_err *err)
{
    dm_evaluator *ev = user;
    DM_ASSERT(T <= ev->ctx);
    dm_seq_reset(ev->seq);
    return dm_forward(ev->c, ev->seq, ids, T, true, logits, NULL, err);
}

int dm_eval_stream(dm_evaluator *ev, const int32_t *ids, size_t n, int64_t max_targets, dm_nll *acc, dm_err *err)
{
    return dm_eval_windows(dm_evaluator_logits, ev, ev->V, ids, n, ev->ctx, max_targets, ev->token_bytes,
                           ev->logits, acc, err);
}
