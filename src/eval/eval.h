/* eval — how well a model predicts text: loss per token (nats), perplexity
 * and bits per byte, overall and per document source. `demolish eval ppl`
 * and the trainer's validation loss both run through dm_eval_windows.
 *
 * Windows: a token sequence longer than the context is cut into
 * non-overlapping windows of ctx predictions: window k feeds ids
 * [k·ctx, k·ctx + ctx) as a fresh sequence (positions from 0, empty cache)
 * and scores the next id of each, so every id after the first is predicted
 * exactly once, with between 1 and ctx ids of context (the same windows of
 * ctx+1 ids the trainer trains on; a sliding window would give more context
 * per prediction at ctx times the cost).
 *
 * Documents (dm_eval_docs): each document is tokenized with special tokens
 * recognized (as the dataset does) and framed as <|endoftext|> doc
 * <|endoftext|>, the way documents follow each other in the training stream:
 * every document token and the closing <|endoftext|> is a prediction. A
 * tokenizer without <|endoftext|> frames nothing (the first token is then
 * context only).
 *
 * Numerics: per row, log-sum-exp of the f32 logits in double with the
 * maximum subtracted; losses summed in double in a fixed order (the result
 * does not depend on the thread count).
 *
 * Bytes (for bits per byte): a predicted token counts the bytes it decodes
 * to (special tokens inside a document count their text, e.g. "<think>");
 * the framing <|endoftext|> counts none. For a document evaluated whole this
 * is its text length (when the tokenizer's normalizer leaves the text as is). */
#ifndef DM_EVAL_H
#define DM_EVAL_H

#include "corpus/corpus.h"
#include "model/model.h"

/* An accumulated negative log-likelihood. */
typedef struct dm_nll {
    double nll;                 /* summed -log p, nats */
    int64_t n_tokens;           /* predictions */
    int64_t n_bytes;            /* bytes those predictions cover */
    int64_t n_docs;             /* documents (dm_eval_docs) */
} dm_nll;

void dm_nll_add(dm_nll *acc, const dm_nll *x);
double dm_nll_loss(const dm_nll *a);          /* nats per token */
double dm_nll_ppl(const dm_nll *a);           /* exp(loss) */
double dm_nll_bpb(const dm_nll *a);           /* nll / ln 2 / bytes */

/* -log softmax(logits[V])[target], in double. NaN if the logits are not finite. */
double dm_token_nll(const float *logits, int V, int32_t target);

/* Writes logits[T][V] for ids[T] evaluated as one fresh sequence at
 * positions 0..T-1 (T <= the context the callback was made for). */
typedef int (*dm_logits_fn)(void *user, const int32_t *ids, int T, float *logits, dm_err *err);

/* Adds the loss of ids[n] to acc, in windows of at most ctx predictions (see
 * above), making at most max_targets predictions when max_targets > 0.
 * token_bytes[V] (may be NULL: no bytes counted) gives each id's byte count.
 * scratch holds ctx·V floats. Fails on a callback error or non-finite logits. */
int dm_eval_windows(dm_logits_fn fn, void *user, int V, const int32_t *ids, size_t n, int ctx, int64_t max_targets,
                    const int *token_bytes, float *scratch, dm_nll *acc, dm_err *err);

/* ---- a loaded model as the logits source ---- */

typedef struct dm_evaluator {
    const dm_model *model;
    const dm_tokenizer *tok;    /* may be NULL (then no bytes are counted) */
    int ctx, V;
    dm_ctx *c;
    dm_seq *seq;
    float *logits;              /* [ctx][V] */
    int *token_bytes;           /* [V], or NULL without a tokenizer */
    int32_t eos;                /* <|endoftext|>, or -1 */
} dm_evaluator;

/* tok may be NULL when only dm_eval_stream is used. */
dm_evaluator *dm_evaluator_new(const dm_model *m, const dm_tokenizer *tok, int ctx);
void dm_evaluator_free(dm_evaluator *ev);
/* A dm_logits_fn over dm_forward (user = the evaluator). */
int dm_evaluator_logits(void *ev, const int32_t *ids, int T, float *logits, dm_err *err);

/* The loss of a token stream (e.g. a dm_dataset domain, documents already
 * separated by <|endoftext|>) in windows of ev->ctx predictions. The trainer's
 * validation loss. uint32 dataset tokens can be passed as (const int32_t *). */
int dm_eval_stream(dm_evaluator *ev, const int32_t *ids, size_t n, int64_t max_targets, dm_nll *acc, dm_err *err);

/* ---- documents ---- */

#define DM_EVAL_MAX_GROUPS 16

typedef struct dm_eval_report {
    int ctx;
    dm_nll total;
    int n_groups;               /* distinct non-empty sources, in order of appearance */
    char *group[DM_EVAL_MAX_GROUPS];
    dm_nll groups[DM_EVAL_MAX_GROUPS];
    bool truncated;             /* max_tokens stopped it early */
} dm_eval_report;

/* Evaluates documents in order (needs ev->tok), until max_tokens predictions
 * when max_tokens > 0. Per-source totals for records that name a source. */
int dm_eval_docs(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, dm_eval_report *r, dm_err *err);
void dm_eval_report_free(dm_eval_report *r);

/* ---- routing statistics (routing.c) ---- */

typedef struct dm_routing_stats {
    int n_layers;               /* main layers (entries of dense layers stay 0) */
    int n_experts;              /* max routed experts per layer */
    int n_groups;               /* document sources, in order of appearance */
    char *group[DM_EVAL_MAX_GROUPS];
    int64_t tokens[DM_EVAL_MAX_GROUPS];
    int64_t *count;             /* [group][layer][expert] tokens that selected the expert */
} dm_routing_stats;

/* Runs the documents (ev->tok needed) through the main model in windows of
 * ev->ctx tokens, counting every MoE layer's expert selections per source. */
int dm_eval_routing(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, dm_routing_stats *st, dm_err *err);
const int64_t *dm_routing_counts(const dm_routing_stats *st, int group, int layer);
void dm_routing_stats_free(dm_routing_stats *st);

/* Reads what `--data` names: "CORPUS_DIR[:split]" (a corpus directory, split
 * val by default), a .jsonl file, or any other file as one plain-text
 * document (source ""). */
int dm_eval_load_data(const char *data, dm_docs *out, dm_err *err);

#endif
