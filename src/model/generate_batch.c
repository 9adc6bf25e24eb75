/* generate_batch — continuous batching for offline generation (eval loops
 * and anything else that samples many independent continuations).
 *
 * A fixed set of slots, each holding one job's sequence (KV cache), its
 * pending logits and its sampler. One step:
 *   1. every empty slot takes the next job and prefills its prompt (one
 *      dm_forward over the prompt: prefill is already a batch of rows);
 *   2. every active slot samples its next token from its logits (slots in
 *      parallel: each sampler is private to its slot);
 *   3. in slot order, a slot that sampled an eos id or reached its cap is
 *      finished and handed back; the rest form the batch;
 *   4. one dm_forward_batch over the batch gives every slot its next logits.
 * Decode therefore reads each expert's weights once per step for all the
 * sequences routed to it, instead of once per sequence.
 *
 * The token loop mirrors dm_generate (generate.c): the prompt is accepted by
 * the sampler, the eos token is not emitted, and no forward runs after the
 * last token allowed by the cap — so with one slot the two agree token for
 * token. */
#include "model/forward_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct slot {
    dm_gen_job *job;            /* NULL: free */
    dm_seq *seq;
    float *logits;              /* [V] logits of the next position */
    int32_t next;               /* token sampled this step */
} slot;

typedef struct batch_state {
    dm_ctx *c;
    const dm_gen_queue *q;
    dm_gen_batch_stats *st;
    slot *slots;
    int n_slots;
    bool queue_empty;
    /* one decode step's batch */
    dm_seq **seqs;
    int32_t *tokens;
    int *rows;                  /* slot of each batch row */
    float *logits;              /* [n_slots][V] */
} batch_state;

/* Fills every free slot from the queue, prefilling each new prompt. */
static int refill(batch_state *b, dm_err *err)
{
    for (int i = 0; i < b->n_slots && !b->queue_empty; i++) {
        slot *s = &b->slots[i];
        if (s->job)
            continue;
        dm_gen_job *j = b->q->next(b->q->user);
        if (!j) {
            b->queue_empty = true;
            break;
        }
        if (j->n_prompt < 1 || j->n_predict < 1 || !j->sampler || !j->out_tokens)
            return dm_errorf(err, "generation job %lld: empty prompt, cap < 1 or no sampler/output",
                             (long long)b->st->jobs);
        j->n_gen = 0;
        j->stop = DM_STOP_LENGTH;
        for (int t = 0; t < j->n_prompt; t++)
            dm_sampler_accept(j->sampler, j->prompt[t], true);
        dm_seq_reset(s->seq);
        dm_seq_reserve(s->seq, j->n_prompt + j->n_predict);
        double t0 = dm_time_sec();
        int rc = dm_forward(b->c, s->seq, j->prompt, j->n_prompt, false, s->logits, NULL, err);
        b->st->t_prefill += dm_time_sec() - t0;
        if (rc)
            return dm_err_prefix(err, "generation job %lld", (long long)b->st->jobs);
        b->st->jobs++;
        b->st->prompt_tokens += j->n_prompt;
        s->job = j;
    }
    return 0;
}

/* Samples every active slot's next token (slots are independent). */
static int sample_all(batch_state *b, dm_err *err)
{
    int bad = -1;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < b->n_slots; i++) {
        slot *s = &b->slots[i];
        if (!s->job)
            continue;
        s->next = dm_sampler_sample(s->job->sampler, s->logits);
        if (s->next < 0) {
            #pragma omp critical(dm_gen_batch_bad)
            bad = i;
        }
    }
    if (bad >= 0)
        return dm_errorf(err, "no token can be sampled: every token is banned by the logit bias");
    return 0;
}

/* Records the sampled tokens; finishes jobs at eos or the cap and gathers
 * the rest into the step's batch. Returns the batch size, or -1. */
static int collect(batch_state *b, dm_err *err)
{
    const dm_config *cfg = &b->c->m->cfg;
    int n = 0;
    for (int i = 0; i < b->n_slots; i++) {
        slot *s = &b->slots[i];
        dm_gen_job *j = s->job;
        if (!j)
            continue;
        bool done = dm_config_is_eos(cfg, s->next);
        if (done) {
            j->stop = DM_STOP_EOS;
        } else {
            dm_sampler_accept(j->sampler, s->next, false);
            j->out_tokens[j->n_gen++] = s->next;
            b->st->gen_tokens++;
            done = j->n_gen == j->n_predict;
        }
        if (done) {
            s->job = NULL;
            if (b->q->finished(b->q->user, j, err))
                return -1;
            continue;
        }
        b->seqs[n] = s->seq;
        b->tokens[n] = s->next;
        b->rows[n++] = i;
    }
    return n;
}

/* One decode forward over the batch; each slot gets its row of logits. */
static int decode(batch_state *b, int n, dm_err *err)
{
    const size_t V = (size_t)b->c->m->cfg.vocab_size;
    if (dm_forward_batch(b->c, b->seqs, b->tokens, n, b->logits, err))
        return -1;
    for (int r = 0; r < n; r++)
        memcpy(b->slots[b->rows[r]].logits, b->logits + (size_t)r * V, V * sizeof(float));
    b->st->steps++;
    return 0;
}

static bool any_active(const batch_state *b)
{
    for (int i = 0; i < b->n_slots; i++)
        if (b->slots[i].job)
            return true;
    return false;
}

static int run(batch_state *b, dm_err *err)
{
    for (;;) {
        if (refill(b, err))
            return -1;
        if (!any_active(b))
            return 0;
        double t0 = dm_time_sec();
        int n = sample_all(b, err) ? -1 : collect(b, err);
        int rc = n < 0 ? -1 : n > 0 ? decode(b, n, err) : 0;
        b->st->t_decode += dm_time_sec() - t0;
        if (rc)
            return -1;
    }
}

int dm_generate_batch(dm_ctx *c, int max_active, const dm_gen_queue *q, dm_gen_batch_stats *st, dm_err *err)
{
    if (max_active < 1 || max_active > c->B)
        return dm_errorf(err, "batched generation with %d sequences (the workspace holds %d)", max_active, c->B);
    dm_gen_batch_stats local;
    if (!st)
        st = &local;
    memset(st, 0, sizeof *st);
    const size_t V = (size_t)c->m->cfg.vocab_size;
    batch_state b = {
        .c = c, .q = q, .st = st, .n_slots = max_active,
        .slots = dm_calloc((size_t)max_active, sizeof(slot)),
        .seqs = dm_calloc((size_t)max_active, sizeof(dm_seq *)),
        .tokens = dm_calloc((size_t)max_active, sizeof(int32_t)),
        .rows = dm_calloc((size_t)max_active, sizeof(int)),
        .logits = dm_malloc((size_t)max_active * V * sizeof(float)),
    };
    for (int i = 0; i < max_active; i++) {
        b.slots[i].seq = dm_seq_new(c->m, 1);
        b.slots[i].logits = dm_malloc(V * sizeof(float));
    }
    int rc = run(&b, err);
    for (int i = 0; i < max_active; i++) {
        dm_seq_free(b.slots[i].seq);
        free(b.slots[i].logits);
    }
    free(b.slots);
    free(b.seqs);
    free(b.tokens);
    free(b.rows);
    free(b.logits);
    return rc;
}
