/* tokenizer — Hugging Face tokenizer.json byte-level BPE: load, encode,
 * decode; chat templates; and a small BPE trainer that writes tokenizer.json
 * files (for `demolish init`, and later the reference model).
 *
 * Encoding follows the tokenizers library: split out added/special tokens,
 * normalize (NFC if the file asks), pre-tokenize with the file's Split
 * regexes (PCRE2, Unicode properties) and ByteLevel mapping, then apply BPE
 * merges by rank. Decoding maps ByteLevel characters back to raw bytes, so
 * decode(encode(s)) == s for any byte string, valid UTF-8 or not. */
#ifndef DM_TOKENIZER_H
#define DM_TOKENIZER_H

#include "core/core.h"

typedef struct dm_tokenizer dm_tokenizer;

/* path: a tokenizer.json, or a model directory containing one. */
int dm_tokenizer_load(dm_tokenizer **out, const char *path, dm_err *err);
/* Same, from the JSON text in memory (name is used in error messages). */
int dm_tokenizer_load_json(dm_tokenizer **out, const char *json, size_t len, const char *name, dm_err *err);
void dm_tokenizer_free(dm_tokenizer *t);

/* Largest token id + 1 (vocab and added tokens). */
int dm_tokenizer_n_vocab(const dm_tokenizer *t);

/* Encodes len bytes of text. With allow_special, added tokens marked special
 * (and all added tokens) are recognized in the text; otherwise special tokens'
 * text is encoded as ordinary text. Returns a malloc'd array, count in *n.
 * Any bytes are accepted (invalid UTF-8 is kept byte for byte). No BOS/EOS is
 * added (post_processor is ignored). Safe to call from several threads. */
int32_t *dm_tokenize(const dm_tokenizer *t, const char *text, size_t len, bool allow_special, int *n);

/* The raw bytes token `id` stands for (ByteLevel-decoded; an added token's
 * own text). Returns the token's full byte count (may be a partial UTF-8
 * sequence), or -1 for an unknown id. Writes at most cap bytes: a return value
 * above cap means the output was cut (size buffers with dm_token_max_bytes). */
int dm_token_to_bytes(const dm_tokenizer *t, int32_t id, char *buf, int cap);
/* The longest byte count dm_token_to_bytes can return for this tokenizer. */
int dm_token_max_bytes(const dm_tokenizer *t);
/* Decodes ids into a malloc'd NUL-terminated byte string (length in *len). */
char *dm_detokenize(const dm_tokenizer *t, const int32_t *ids, int n, size_t *len);

/* id of an exact token string (vocab entry or added token), or -1. */
int32_t dm_token_id(const dm_tokenizer *t, const char *token);
/* The token's string as written in tokenizer.json, or NULL. */
const char *dm_token_str(const dm_tokenizer *t, int32_t id);
bool dm_token_is_special(const dm_tokenizer *t, int32_t id);

/* ---- chat templates ------------------------------------------------------ */

typedef enum dm_chat_style {
    DM_CHAT_GLM,      /* [gMASK]<sop><|system|>…<|user|>…<|assistant|><think>…</think>… */
    DM_CHAT_GENERIC,  /* ChatML-style <|im_start|>role\n…<|im_end|>\n, or plain text when the
                         tokenizer has no such tokens */
} dm_chat_style;

typedef struct dm_chat_msg {
    const char *role;     /* "system", "user", "assistant" */
    const char *content;
} dm_chat_msg;

/* GLM if the tokenizer has [gMASK] and <|assistant|>, else GENERIC. */
dm_chat_style dm_chat_style_for(const dm_tokenizer *t);
/* Renders messages as prompt text (to be encoded with allow_special). With
 * add_generation_prompt the text ends where the assistant's reply begins;
 * thinking=false closes the think block up front (GLM: "<think></think>"). */
char *dm_chat_render(const dm_tokenizer *t, dm_chat_style style, const dm_chat_msg *msgs, int n,
                     bool add_generation_prompt, bool thinking);

/* ---- training -------------------------------------------------------------- */

/* Trains a byte-level BPE with up to vocab_size entries (256 byte tokens +
 * merges + the special tokens, which get the last ids) on text, using a
 * GPT-2/GLM-style pre-tokenizer split, and returns tokenizer.json text
 * (malloc'd). Deterministic. */
int dm_bpe_train(const char *text, size_t len, int vocab_size, const char *const *special, int n_special,
                 char **json_out, dm_err *err);

#endif
