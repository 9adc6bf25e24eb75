/* sample — turning logits into the next token, shared by every tool that
 * generates (generate, eval loops, serve). Each transform is one function
 * over a logits vector, applied in a fixed, documented order, so a run is
 * reproducible from its seed and its parameters.
 *
 * Order (vLLM v1 / HF warpers; shared/research/reap.md §7.2):
 *   1. repetition penalty on the raw logits (HF semantics: every distinct
 *      token in scope, ℓ>0: ℓ/r, ℓ<0: ℓ·r), then presence/frequency penalties
 *      (OpenAI: counts over output tokens only), then the logit bias list,
 *      then the hesitation penalty (ℓ -= λ on the listed ids);
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
    /* Hesitation-marker penalty (the GLM-5.2 serving stack's; issue 5):
     * hesitation_penalty λ is subtracted from the raw logit of each distinct
     * id in hesitation_ids, after the bias list. The ids are the first tokens
     * of words such as "wait" / " Wait" (dm_hesitation_resolve in
     * src/model/hesitation.h fills them from a tokenizer). */
    float hesitation_penalty;      /* λ >= 0, 0 = off */
    const int32_t *hesitation_ids; /* copied (and deduplicated) by dm_sampler_new */
    int n_hesitation;
} dm_sampler_params;

/* The defaults: temperature 1, everything else off, seed 0
 * (repeat_last_n 64, used only with DM_REP_SCOPE_WINDOW). */
dm_sampler_params dm_sampler_defaults(void);

/* The hesitation words used when none are given (comma-separated). Each is
 * tried as written, with a leading space, capitalised, and capitalised with
 * a leading space. "but wait" is not listed: its first token is "but" /
 * "But", far too common to penalise; " wait" (a variant of "wait") already
 * covers the token after "But". */
#define DM_HESITATION_WORDS_DEFAULT "wait,hmm,alternatively"

/* Guardrail presets (--guardrail NAME), after the GLM-5.2-504B report's
 * vLLM guardrail (reap.md §7.2): they set exactly
 *   gentle: min_p = 0.05, repeat_penalty = 1.05, repeat_scope = all;
 *   strong: min_p = 0.05, repeat_penalty = 1.10, repeat_scope = all;
 *   none:   leaves p unchanged.
 * Every other field is left as it is. Returns 0, or -1 for an unknown name. */
int dm_sampler_guardrail(dm_sampler_params *p, const char *name, dm_err *err);
/* One line per preset, "  NAME  what it sets\n", for --help. Static string. */
const char *dm_sampler_guardrail_help(void);

/* Parses a sampler spec "key=value,key=value,..." into p (fields not named
 * keep their value; a key given twice: the last wins). Keys (src/sample/spec.c):
 *   temp (or temperature), top_k, top_p, min_p, repeat_penalty,
 *   rep_scope (all | window | output), repeat_last_n, presence_penalty,
 *   frequency_penalty, hesitation_penalty, seed.
 * The bias and hesitation id lists are not part of a spec. Numbers must be
 * finite and parse completely; the result must pass dm_sampler_params_check
 * (bias and hesitation lists aside). On error p is unchanged and err names
 * the item. The empty string is a valid spec (changes nothing). */
int dm_sampler_parse_spec(dm_sampler_params *p, const char *spec, dm_err *err);
/* The canonical spec of p: every key above in the order listed, floats with
 * the shortest %g of 6 to 9 digits that reads back as the same float (so
 * parsing it back gives the same floats bit for bit; 0.6f prints "0.6"). Writes at most
 * cap bytes with a NUL; returns the full length (as snprintf). */
int dm_sampler_format_spec(const dm_sampler_params *p, char *buf, size_t cap);
#define DM_SAMPLER_SPEC_MAX 512   /* a buffer this size always holds a canonical spec */

/* Details fixed by the implementation (src/sample/sampler.c):
 *  - Each distinct token in scope is penalised once; a logit of exactly 0
 *    stays 0. DM_REP_SCOPE_WINDOW with repeat_last_n < 0 is the whole history,
 *    with repeat_last_n == 0 it penalises nothing (llama.cpp's -1 / 0).
 *  - Bias entries are added in list order; a token listed twice gets both.
 *  - The hesitation penalty hits each distinct listed id once (a list with
 *    repeats penalises by λ, not a multiple), after the bias.
 *  - Greedy and every tie are broken towards the lower token id; top-k keeps
 *    exactly k tokens.
 *  - min-p keeps p >= min_p * p_max, compared in the log domain in double.
 *  - top-p keeps the shortest prefix of the sorted distribution whose mass is
 *    >= top_p - 1e-6 (the slack makes exact mass ties, which float logits
 *    can only approximate, resolve as ties); top_p >= 1 is off, and the top
 *    token is always kept.
 *  - Logits must be finite or -inf (NaN is never picked). A token whose
 *    logit is -inf after bias has probability 0.
 *  - Greedy draws no random number; any temperature > 0 draws exactly one
 *    per dm_sampler_sample, so a run replays from seed + parameters +
 *    the accepted tokens. */

/* Checks parameters against a vocabulary size: temperature >= 0, top_k >= 0,
 * 0 <= top_p <= 1, 0 <= min_p <= 1, repeat_penalty > 0, finite penalties, a
 * known scope, repeat_last_n <= 2^24 for a window, bias tokens in
 * [0, n_vocab) with biases not NaN or +inf, hesitation_penalty finite and
 * >= 0 with hesitation ids in [0, n_vocab). Returns 0, or -1 with a message
 * in err. (Added to the fixed API.) */
int dm_sampler_params_check(const dm_sampler_params *p, int n_vocab, dm_err *err);

typedef struct dm_sampler dm_sampler;

/* One sampler per sequence, used by one thread at a time. All memory is
 * allocated here (O(n_vocab) plus the window); sampling and accepting
 * never allocate. Returns NULL when dm_sampler_params_check fails
 * (call it first to get the message). */
dm_sampler *dm_sampler_new(const dm_sampler_params *p, int n_vocab);
void dm_sampler_free(dm_sampler *s);
/* Forgets the history and reseeds. */
void dm_sampler_reset(dm_sampler *s);
/* Records a token of the sequence (is_prompt: part of the prompt). The
 * sampler never records on its own: the caller accepts every prompt token
 * and then every token it keeps from dm_sampler_sample. */
void dm_sampler_accept(dm_sampler *s, int32_t token, bool is_prompt);
/* Picks the next token. logits[n_vocab] is used as scratch (modified).
 * Returns -1 when no token is possible (every logit -inf after bias). */
int32_t dm_sampler_sample(dm_sampler *s, float *logits);
/* The distribution step 7 would draw from, into probs[n_vocab] (zeros for
 * removed tokens; for greedy a one-hot). For tests and eval tools. Does not
 * advance the RNG; all zeros when no token is possible. */
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
/* Releases whatever is still held back (end of generation without a stop);
 * nothing after a stop. */
void dm_stop_flush(dm_stop *s, const char **emit, size_t *emit_len);
/* Details (src/sample/stop.c): empty stop strings are ignored; n == 0 passes
 * everything through; the stop string that completes first wins (on a tie,
 * the one starting earlier), so the output does not depend on how the text
 * is cut into pieces; once a stop has appeared, every later feed emits
 * nothing and returns true. Bytes are held back whole, so a multi-byte UTF-8 character can still
 * be split across two emits: the caller owns UTF-8 reassembly. */

#endif
