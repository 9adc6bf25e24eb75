/* hesitation — resolves the hesitation-marker words of the sampler's
 * hesitation penalty (src/sample/sample.h) to token ids with a model's
 * tokenizer. It lives in the model stage because src/sample does not depend
 * on the tokenizer; every generating tool (generate, eval loops) calls it
 * once before building its samplers. */
#ifndef DM_HESITATION_H
#define DM_HESITATION_H

#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

/* words: comma-separated ("wait,hmm"; NULL or "" → DM_HESITATION_WORDS_DEFAULT).
 * For each word w, the variants w, " " w, Cap(w) and " " Cap(w) (Cap: first
 * byte upper-cased when it is an ASCII letter) are encoded without special
 * tokens and the FIRST token of each is kept; the distinct ids, sorted, go
 * into a malloc'd *ids (*n_ids of them). Fails on an empty word (",," or a
 * trailing comma). */
int dm_hesitation_resolve(const dm_tokenizer *tok, const char *words, int32_t **ids, int *n_ids, dm_err *err);

/* True when token id stands for fewer than 2 letters (e.g. " " or "h" as the
 * first token of " Hmm" in a small vocabulary): penalising it hits every word
 * that starts the same way. Tools warn about such ids. */
bool dm_hesitation_is_fragment(const dm_tokenizer *tok, int32_t id);
/* Logs the resolved ids: a warning (dm_log level 1) for each fragment, the
 * others at level 2 (-v). who prefixes the lines ("eval loops"). */
void dm_hesitation_log(const dm_tokenizer *tok, const int32_t *ids, int n, const char *who);

#endif
