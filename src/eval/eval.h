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

/* A document's ids framed by <|endoftext|> (when the tokenizer has it), *n of them. */
int32_t *dm_eval_frame_doc(const dm_evaluator *ev, const dm_doc *d, size_t *n);

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

/* ---- KL divergence to a teacher (kl.c) ----
 *
 * The teacher's next-token distributions over held-out documents (framed and
 * windowed exactly as dm_eval_docs does) are computed once and cached; each
 * student is then scored against the cache at the same positions:
 *   KL(teacher ‖ student) per position, in nats;
 *   top-1 agreement (student argmax == teacher argmax);
 *   both models' loss on the actual next token (their perplexity ratio).
 * The cache keeps, per position, either the full log-distribution or the
 * teacher's top-k tokens and the log of the mass of all others (an "other"
 * bucket). KL over (top-k, other) coarse-grains both distributions, so it is
 * a lower bound of the full KL (by the log-sum inequality) and equals it when
 * the bucket's mass is negligible. */
typedef struct dm_kl_cache {
    char teacher_hash[65];      /* dm_model_hash of the teacher */
    char data_hash[65];         /* sha256 of the framed token stream, documents and sources */
    int V, ctx, top_k;          /* top_k 0: full distributions */
    int n_docs;
    int64_t *doc_start;         /* [n_docs + 1] offsets into tokens */
    int32_t *doc_group;         /* [n_docs] index into group, -1: no source */
    int32_t *tokens;            /* framed documents, concatenated */
    int n_groups;
    char *group[DM_EVAL_MAX_GROUPS];
    int64_t n_pos;              /* predictions */
    bool truncated;             /* max_tokens cut the documents short */
    int32_t *top_id;            /* [n_pos][top_k] teacher's most likely tokens, most likely first */
    float *logp;                /* [n_pos][top_k] their log-probabilities, or [n_pos][V] (full) */
    float *other_logp;          /* [n_pos] log of the rest's mass (top-k only; -inf if none) */
    float *target_logp;         /* [n_pos] log-probability of the actual next token */
} dm_kl_cache;

/* The cache's windows, in order: each document's framed tokens cut into
 * non-overlapping windows of up to ctx predictions (the last one shorter),
 * each a fresh sequence. A zeroed window before the first call. */
typedef struct dm_kl_window {
    bool started;
    int doc;                    /* its document */
    int64_t start;              /* first token id of the window, index into tokens */
    int T;                      /* predictions: tokens[start .. start+T] are its T+1 ids */
    int64_t pos;                /* index of its first prediction in the per-position arrays */
} dm_kl_window;
/* Advances w to the next window; false when every position is covered. */
bool dm_kl_next_window(const dm_kl_cache *c, dm_kl_window *w);

/* Runs the teacher (ev, with a tokenizer) over the documents, up to max_tokens
 * predictions (0: all), keeping top_k tokens per position (0: full). */
int dm_kl_cache_build(dm_evaluator *teacher, const dm_docs *docs, int top_k, int64_t max_tokens, dm_kl_cache *c,
                      dm_err *err);
/* What a caller asks of a teacher's distributions; 0 / -1 where not given
 * (then a cache file decides). */
typedef struct dm_kl_request {
    int ctx;                    /* window length in predictions, 0: not given (512, or the model's max) */
    int top_k;                  /* top-k tokens, 0: full distributions, -1: not given (DM_KL_DEFAULT_TOP_K) */
    int64_t max_tokens;         /* predictions, 0: all */
} dm_kl_request;

#define DM_KL_DEFAULT_TOP_K 64

/* The teacher's distributions over docs: read from the file `cache` when it
 * exists — it must match the request (windows, top-k) and, unless teacher is
 * "-", come from that teacher (same model hash and the same predictions on
 * its first window) — else computed with the teacher and saved to `cache`
 * (when not NULL). (Whether the cache frames these docs is checked per
 * student through dm_kl_data_hash.) */
int dm_kl_teacher_cache(const char *teacher, const dm_docs *docs, const char *cache, const dm_kl_request *q,
                        dm_kl_cache *c, dm_err *err);

/* The data_hash a cache built from these documents would have (checks that a
 * cache was made from the data at hand). */
int dm_kl_data_hash(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, char out[65], dm_err *err);
int dm_kl_cache_save(const dm_kl_cache *c, const char *path, dm_err *err);
int dm_kl_cache_load(dm_kl_cache *c, const char *path, dm_err *err);
void dm_kl_cache_free(dm_kl_cache *c);

/* Accumulated comparison over a set of positions. */
typedef struct dm_kl_sum {
    int64_t n;
    double kl, kl2, kl_max;     /* Σ KL, Σ KL², max */
    int64_t top1_agree;
    double nll_teacher, nll_student;
    double dnll2;               /* Σ (nll_student − nll_teacher)² */
} dm_kl_sum;

typedef struct dm_kl_report {
    dm_kl_sum total;
    int n_groups;
    char *group[DM_EVAL_MAX_GROUPS];
    dm_kl_sum groups[DM_EVAL_MAX_GROUPS];
    double median, p90, p99, p999;   /* of the per-position KL */
    float *kl;                  /* [total.n] per-position KL, in position order */
} dm_kl_report;

/* Scores the student (same vocabulary) at every cached position. */
int dm_kl_eval(dm_evaluator *student, const dm_kl_cache *c, dm_kl_report *r, dm_err *err);
void dm_kl_report_free(dm_kl_report *r);
double dm_kl_mean(const dm_kl_sum *s);
double dm_kl_mean_se(const dm_kl_sum *s);        /* standard error of the mean KL */
double dm_kl_ppl_ratio(const dm_kl_sum *s);      /* exp(mean nll_student − mean nll_teacher) */
double dm_kl_ln_ratio_se(const dm_kl_sum *s);    /* standard error of its log */

/* Reads what `--data` names: "CORPUS_DIR[:split]" (a corpus directory, split
 * val by default), a .jsonl file, or any other file as one plain-text
 * document (source ""). */
int dm_eval_load_data(const char *data, dm_docs *out, dm_err *err);


/* ==== loop-rate evaluation: per-generation metrics (loop_detect.c) ====
 * (added for issue 5; the definitions are in loop_detect.c's top comment)
 *
 * A generation is the token ids a model produced for one prompt, WITHOUT the
 * stop token, plus how it ended: hit_eos (it emitted EOS / a stop token) and
 * hit_cap (it reached the per-sequence token cap). */
typedef struct dm_loop_params {
    int max_period;             /* P: longest period the exact detector tries (128) */
    int min_repeats;            /* R: the periodic tail covers at least R periods (3) */
    int min_cover;              /* C: ... and at least C tokens (64) */
    int rep_window;             /* W: tail window for seq-rep-4 (512) */
    int rep_min_len;            /* the window must hold at least this many tokens (128) */
    double rep4_max;            /* flag when seq-rep-4 of the window exceeds this (0.5) */
} dm_loop_params;

void dm_loop_params_default(dm_loop_params *p);
/* Checks the ranges: max_period >= 1, min_repeats >= 2, min_cover and
 * rep_min_len >= 4, rep_window >= rep_min_len, 0 < rep4_max < 1. */
int dm_loop_params_check(const dm_loop_params *p, dm_err *err);

typedef struct dm_gen_metrics {
    int64_t len;                /* generated tokens, stop token excluded */
    bool eos;                   /* ended naturally (hit_eos) */
    bool runaway;               /* hit the cap without EOS */
    bool loop;                  /* loop_exact || loop_rep */
    bool loop_exact;            /* the tail is exactly periodic (criterion a) */
    bool loop_rep;              /* the tail window's seq-rep-4 is too high (criterion b) */
    int period;                 /* smallest qualifying period, 0 if none */
    int64_t cover;              /* tokens of the periodic tail of that period (0 if none) */
    double tail_rep4;           /* seq-rep-4 of the last min(len, W) tokens (0 if < 4 tokens) */
    int64_t n4, distinct4;      /* 4-grams in the whole output, distinct ones */
    bool think;                 /* think ids were given (the think fields below are meaningful) */
    bool think_closed;          /* at least one </think> */
    int think_restarts;         /* max(<think> after the first </think>, </think> count - 1) */
} dm_gen_metrics;

/* Measures one generation. think_open/think_close: the <think> and </think>
 * ids, or -1 (think_close < 0: the think fields are not measured). Fails only
 * on invalid parameters. */
int dm_gen_measure(const int32_t *ids, int64_t n, bool hit_eos, bool hit_cap, int32_t think_open, int32_t think_close,
                   const dm_loop_params *p, dm_gen_metrics *m, dm_err *err);
double dm_gen_distinct4(const dm_gen_metrics *m);   /* distinct4 / n4, or 0 without 4-grams */

/* Counts over a set of generations. */
typedef struct dm_loop_counts {
    int64_t n;                  /* generations */
    int64_t loop, loop_exact, loop_rep;
    int64_t runaway;
    int64_t loop_runaway;       /* loop && runaway */
    int64_t fail;               /* loop || runaway: looped or did not terminate */
    int64_t eos;
    int64_t n_think, think_closed, think_restart;   /* n_think: generations with think ids */
    int64_t n_d4;               /* generations with at least one 4-gram */
    double d4_sum;              /* Σ distinct-4 over those */
    int64_t tokens;             /* Σ len */
    double len_median, len_p90; /* set by dm_loop_agg_finish (linear interpolation between ranks) */
} dm_loop_counts;

double dm_loop_counts_d4_mean(const dm_loop_counts *c);   /* 0 when n_d4 == 0 */

typedef struct dm_loop_agg {
    dm_loop_counts total;
    int n_groups;               /* distinct non-empty sources, in order of appearance */
    char *group[DM_EVAL_MAX_GROUPS];
    dm_loop_counts groups[DM_EVAL_MAX_GROUPS];
    int64_t *len;               /* [n_len] every generation's length, in order added */
    int8_t *len_group;          /* [n_len] its group, -1: no source */
    int64_t n_len, cap_len;
} dm_loop_agg;

void dm_loop_agg_init(dm_loop_agg *a);
/* Adds one generation under source (NULL or "": overall only). Fails when a
 * (DM_EVAL_MAX_GROUPS+1)-th distinct source appears; nothing is added then. */
int dm_loop_agg_add(dm_loop_agg *a, const char *source, const dm_gen_metrics *m, dm_err *err);
/* Fills len_median / len_p90 of the total and every group (may be called again after more adds). */
void dm_loop_agg_finish(dm_loop_agg *a);
void dm_loop_agg_free(dm_loop_agg *a);

/* ==== proportion statistics (prop_stats.c) ====
 * Wilson intervals, the two-proportion z-test, McNemar's paired test and the
 * sample size to detect a difference. Arm 1 is the reference (teacher),
 * arm 2 the candidate: differences are p2 - p1. */

/* Wilson score interval of k successes in n at normal quantile z (1.96 ->
 * 95%); n == 0 gives [0, 1]. Needs 0 <= k <= n, z > 0 (asserted). */
void dm_wilson(int64_t k, int64_t n, double z, double *lo, double *hi);
#define DM_Z95 1.959963984540054    /* norm.isf(0.025) */

/* Two-sided normal tail P(|Z| >= |z|) = erfc(|z|/sqrt 2). */
double dm_norm_p2(double z);
/* The upper quantile z with P(Z >= z) = q, 0 < q < 1 (norm.isf). */
double dm_norm_isf(double q);

typedef struct dm_prop_test {
    double p1, p2, diff;        /* k1/n1, k2/n2, p2 - p1 */
    double diff_lo, diff_hi;    /* Newcombe hybrid score 95% interval of diff (from Wilson intervals) */
    double se;                  /* pooled standard error of diff under H0 */
    double z;                   /* diff / se (0 when se == 0) */
    double p;                   /* two-sided p-value (1 when se == 0) */
} dm_prop_test;

/* Unpaired two-proportion z-test with pooled SE. Needs n1, n2 >= 1 and
 * 0 <= k <= n (else -1 and a message). */
int dm_prop_ztest(int64_t k1, int64_t n1, int64_t k2, int64_t n2, dm_prop_test *t, dm_err *err);

/* McNemar's test for paired outcomes (same prompts and seeds in both arms):
 * b = pairs with arm 1 yes / arm 2 no, c = arm 1 no / arm 2 yes. */
#define DM_MCNEMAR_EXACT_BELOW 25   /* b + c below this: exact binomial test */
typedef struct dm_mcnemar {
    int64_t b, c;
    bool exact;                 /* p from the exact binomial test (else the normal approximation) */
    double z;                   /* (c - b) / sqrt(b + c), 0 when b + c == 0 */
    double p;                   /* two-sided p-value */
} dm_mcnemar;

int dm_mcnemar_test(int64_t b, int64_t c, dm_mcnemar *t, dm_err *err);
/* Exact two-sided McNemar p-value: min(1, 2 P(X <= min(b, c))), X ~ Bin(b + c, 1/2). */
double dm_mcnemar_exact_p(int64_t b, int64_t c);

/* Sample size per arm (equal arms) for a two-sided unpaired z-test at level
 * alpha to detect p1 vs p2 with the given power (normal approximation, no
 * continuity correction):
 *   n = (z_{a/2} sqrt(2 pbar (1 - pbar)) + z_b sqrt(p1 q1 + p2 q2))^2 / (p1 - p2)^2,
 * pbar = (p1 + p2)/2, z_{a/2} = isf(alpha/2), z_b = isf(1 - power);
 * 0 < alpha < 1, 0.5 <= power < 1.
 * *n_real gets n (may be NULL), *n_arm gets ceil(n). */
int dm_prop_min_n(double p1, double p2, double alpha, double power, int64_t *n_arm, double *n_real, dm_err *err);

#endif
