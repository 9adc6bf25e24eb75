/* sample — turning logits into the next token, shared by every tool that
 * generates (generate, eval loops, serve). Each transform is one function
 * over a logits vector, applied in a fixed, documented order, so a run is
 * reproducible from its seed and its parameters.
 *
 * Order (vLLM v1 / HF warpers; shared/research/reap.md §7.2):
 *   1. repetition penalty on the raw logits (HF semantics: every distinct
 *      token in scope, ℓ>0: ℓ/r, ℓ<0: ℓ·r), then presence/frequency penalties
 *      (OpenAI: counts over output tokens only), then the logit bias list;
 *   2. greedy (temperature 0) picks the argmax here;
 *   3. temperature; 4. min-p (p < min_p·max p removed, on the tempered
 *      distribution); 5. top-k; 6. top-p; 7. draw with the seeded RNG. */
#ifndef DM_SAMPLE_H
#define DM_SAMPLE_H

#include "core/core.h"

/* ---- RNG: xoshiro256**, seeded through splitmix64 ---------------------- */

typedef struct dm_rng {
    uint64_t s[4];
} dm_rng;

void dm_rng_seed(dm_rng *r, uint64_t seed);
uint64_t dm_rng_next(dm_rng *r);
double dm_rng_uniform(dm_rng *r);   /* [0, 1) with 53 random bits */

/* ---- sampler ----------------------------------------------------------- */

typedef enum dm_rep_scope {
    DM_REP_SCOPE_ALL,     /* prompt + output, whole history (HF, vLLM) */
    DM_REP_SCOPE_WINDOW,  /* the last repeat_last_n tokens of prompt + output (llama.cpp) */
    DM_REP_SCOPE_OUTPUT,  /* output tokens only */
} dm_rep_scope;

typedef struct dm_logit_bias {
    int32_t token;
    float bias;           /* added to the logit; -INFINITY bans the token */
} dm_logit_bias;

typedef struct dm_sampler_params {
    float temperature;         /* 0 = greedy */
    int top_k;                 /* 0 = off */
    float top_p;               /* 1 = off */
    float min_p;               /* 0 = off */
    float repeat_penalty;      /* 1 = off */
    dm_rep_scope repeat_scope;
    int repeat_last_n;         /* window size for DM_REP_SCOPE_WINDOW */
    float presence_penalty;    /* 0 = off */
    float frequency_penalty;   /* 0 = off */
    const dm_logit_bias *bias; /* copied by dm_sampler_new */
    int n_bias;
    uint64_t seed;
} dm_sampler_params;

/* The defaults: temperature 1, everything else off, seed 0. */
dm_sampler_params dm_sampler_defaults(void);

typedef struct dm_sampler dm_sampler;

dm_sampler *dm_sampler_new(const dm_sampler_params *p, int n_vocab);
void dm_sampler_free(dm_sampler *s);
/* Forgets the history and reseeds. */
void dm_sampler_reset(dm_sampler *s);
/* Records a token of the sequence (is_prompt: part of the prompt). */
void dm_sampler_accept(dm_sampler *s, int32_t token, bool is_prompt);
/* Picks the next token. logits[n_vocab] is used as scratch (modified). */
int32_t dm_sampler_sample(dm_sampler *s, float *logits);
/* The distribution step 7 would draw from, into probs[n_vocab] (zeros for
 * removed tokens; for greedy a one-hot). For tests and eval tools. */
void dm_sampler_probs(dm_sampler *s, const float *logits, float *probs);

/* ---- stop conditions ------------------------------------------------------ */

/* Watches generated text for stop strings. Text is fed as it is produced;
 * dm_stop_feed returns how many of the bytes held so far are safe to show
 * (not a prefix of a stop string) and whether a stop string completed (in
 * which case the safe bytes end right before it). */
typedef struct dm_stop dm_stop;
dm_stop *dm_stop_new(const char *const *stop_strings, int n);
void dm_stop_free(dm_stop *s);
/* Appends bytes; returns true when a stop string has appeared. *emit gets the
 * newly releasable bytes (pointer into internal storage, valid until the next
 * call) and *emit_len their count. */
bool dm_stop_feed(dm_stop *s, const char *bytes, size_t len, const char **emit, size_t *emit_len);
/* Releases whatever is still held back (end of generation without a stop). */
void dm_stop_flush(dm_stop *s, const char **emit, size_t *emit_len);

#endif
