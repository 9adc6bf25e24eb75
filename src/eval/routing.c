/* routing — which experts a model uses, per document source: runs documents
 * through the forward pass (the same framing and windows as the loss
 * evaluation) with an MoE observer that counts, for every main MoE layer, how
 * many tokens select each expert. From the counts come the load balance
 * (max/mean load per layer) and how differently sources route. */
#include "eval/eval.h"

#include <stdlib.h>
#include <string.h>

typedef struct counter {
    dm_routing_stats *st;
    int group;
} counter;

static void on_moe(void *user, const dm_moe_obs *o)
{
    counter *c = user;
    dm_routing_stats *st = c->st;
    if (o->layer >= st->n_layers)
        return;
    int64_t *row = st->count + ((size_t)c->group * st->n_layers + o->layer) * st->n_experts;
    for (int i = 0; i < o->T * o->K; i++)
        row[o->selected[i]]++;
}

static int group_of(dm_routing_stats *st, const char *source)
{
    for (int g = 0; g < st->n_groups; g++)
        if (!strcmp(st->group[g], source))
            return g;
    if (st->n_groups == DM_EVAL_MAX_GROUPS)
        return -1;
    st->group[st->n_groups] = dm_strdup(source);
    return st->n_groups++;
}

int dm_eval_routing(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, dm_routing_stats *st, dm_err *err)
{
    const dm_config *c = &ev->model->cfg;
    memset(st, 0, sizeof *st);
    st->n_layers = c->n_layers;
    st->n_experts = c->n_routed_experts;
    st->count = dm_calloc((size_t)DM_EVAL_MAX_GROUPS * st->n_layers * st->n_experts, sizeof(int64_t));
    counter cnt = { st, 0 };
    dm_observer obs = { .user = &cnt, .moe = on_moe };
    dm_ctx_set_observer(ev->c, &obs);
    int rc = 0;
    int64_t done = 0;
    for (size_t d = 0; d < docs->n && rc == 0 && (max_tokens <= 0 || done < max_tokens); d++) {
        const dm_doc *doc = &docs->doc[d];
        int g = group_of(st, doc->source ? doc->source : "");
        if (g < 0) {
            rc = dm_errorf(err, "more than %d document sources", DM_EVAL_MAX_GROUPS);
            break;
        }
        cnt.group = g;
        int n;
        int32_t *ids = dm_tokenize(ev->tok, doc->text, doc->len, true, &n);
        for (int at = 0; at < n && rc == 0; at += ev->ctx) {
            int T = n - at < ev->ctx ? n - at : ev->ctx;
            if (max_tokens > 0 && done + T > max_tokens)
                T = (int)(max_tokens - done);
            if (T <= 0)
                break;
            dm_seq_reset(ev->seq);
            rc = dm_forward(ev->c, ev->seq, ids + at, T, false, NULL, NULL, err);
            st->tokens[g] += T;
            done += T;
        }
        free(ids);
    }
    dm_ctx_set_observer(ev->c, NULL);
    if (rc)
        dm_routing_stats_free(st);
    return rc;
}

const int64_t *dm_routing_counts(const dm_routing_stats *st, int group, int layer)
{
    return st->count + ((size_t)group * st->n_layers + layer) * st->n_experts;
}

void dm_routing_stats_free(dm_routing_stats *st)
{
    for (int g = 0; g < st->n_groups; g++)
        free(st->group[g]);
    free(st->count);
    memset(st, 0, sizeof *st);
}
