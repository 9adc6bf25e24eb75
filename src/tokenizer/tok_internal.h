/* tok_internal — the tokenizer stage's private pieces, shared by its files:
 *
 *   tok_util.c    hash maps, UTF-8 helpers, the GPT-2 byte<->char table
 *   tok_load.c    tokenizer.json -> struct dm_tokenizer (all validation)
 *   tok_pretok.c  added-token split, NFC, Split/ByteLevel pre-tokenization
 *   tok_encode.c  BPE by merge rank, word cache, dm_tokenize, decoding
 *   tok_chat.c    chat templates
 *   tok_train.c   byte-level BPE trainer writing tokenizer.json
 *
 * Text is handled as raw bytes end to end. A pre-token ("word") is the raw
 * byte string a BPE run starts from; the ByteLevel mapping is folded into the
 * first BPE step (byte b -> id of the vocab token for bytes_to_unicode[b]).
 *
 * Invalid UTF-8 (our extension; the tokenizers library only sees valid
 * strings): a byte that does not belong to a well-formed UTF-8 sequence is
 * "invalid". Normalization and every regex step work on maximal valid runs
 * only; a maximal run of invalid bytes is never matched, removed or merged
 * with its neighbours and travels on as a piece of its own. So no byte is ever
 * lost and decode(encode(s)) == s for a tokenizer without normalizer. */
#ifndef DM_TOK_INTERNAL_H
#define DM_TOK_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "tokenizer/tokenizer.h"

/* ---- hash maps ------------------------------------------------------------ */

uint64_t tok_hash(const void *p, size_t n);

/* Bytes -> int32. Keys are not copied: they must outlive the map. */
typedef struct tok_strmap_slot {
    const char *key;   /* NULL: empty */
    uint32_t len;
    int32_t val;
    uint64_t hash;
} tok_strmap_slot;

typedef struct tok_strmap {
    tok_strmap_slot *slots;
    uint32_t cap, n;   /* cap: power of two */
} tok_strmap;

void tok_strmap_init(tok_strmap *m, uint32_t expected);
void tok_strmap_free(tok_strmap *m);
/* Inserts key (or finds it). Returns the slot; *added tells which. */
tok_strmap_slot *tok_strmap_put(tok_strmap *m, const char *key, uint32_t len, int32_t val, bool *added);
/* Returns the value or -1. */
int32_t tok_strmap_get(const tok_strmap *m, const char *key, uint32_t len);

/* (left id, right id) -> (rank, merged id), for BPE merges. */
typedef struct tok_pairmap_slot {
    uint64_t key;      /* TOK_PAIR_EMPTY: empty */
    int32_t rank, id;
} tok_pairmap_slot;

#define TOK_PAIR_EMPTY UINT64_MAX
#define TOK_PAIR(a, b) (((uint64_t)(uint32_t)(a) << 32) | (uint32_t)(b))

typedef struct tok_pairmap {
    tok_pairmap_slot *slots;
    uint32_t cap, n;
} tok_pairmap;

void tok_pairmap_init(tok_pairmap *m, uint32_t expected);
void tok_pairmap_free(tok_pairmap *m);
/* Inserts or overwrites (a later duplicate merge wins, as in tokenizers). */
void tok_pairmap_set(tok_pairmap *m, uint64_t key, int32_t rank, int32_t id);
const tok_pairmap_slot *tok_pairmap_get(const tok_pairmap *m, uint64_t key);

/* ---- UTF-8 and character classes ------------------------------------------ */

/* Length of the well-formed UTF-8 sequence at s[0..n) (1..4), or 0 when s[0]
 * starts no well-formed sequence (Unicode Table 3-7: no overlongs, no
 * surrogates, nothing above U+10FFFF). *cp gets the code point. */
int tok_utf8_seq(const uint8_t *s, size_t n, int32_t *cp);
/* Length of the valid (want_valid) or invalid run that starts at s. */
size_t tok_utf8_run(const uint8_t *s, size_t n, bool want_valid);
/* Start of the code point that ends at s[end) (end > 0), or end-1 if s[end-1]
 * is not the end of a valid sequence. */
size_t tok_utf8_prev(const uint8_t *s, size_t end, int32_t *cp);
/* Unicode White_Space (what \s means in the tokenizers library's Rust regexes). */
bool tok_is_space(int32_t cp);
/* Rust regex \w: letters, marks, Nd, Nl, Pc, ZWNJ, ZWJ. */
bool tok_is_word(int32_t cp);

/* GPT-2 bytes_to_unicode: byte b is written as code point tok_byte_cp[b]. */
extern const uint16_t tok_byte_cp[256];
/* Inverse: code point -> byte, or -1 (cp < 0x144 covers the whole table). */
int tok_cp_byte(int32_t cp);
/* Appends the UTF-8 of tok_byte_cp[b] for each byte; returns bytes written
 * (at most 2*n). */
size_t tok_bytes_to_bl(const uint8_t *s, size_t n, char *out);

/* ---- growable buffers ------------------------------------------------------ */

typedef struct tok_buf {
    uint8_t *p;
    size_t n, cap;
} tok_buf;

void tok_buf_reserve(tok_buf *b, size_t extra);
void tok_buf_add(tok_buf *b, const void *p, size_t n);

typedef struct tok_ids {
    int32_t *p;
    size_t n, cap;
} tok_ids;

void tok_ids_push(tok_ids *v, int32_t id);

/* ---- the tokenizer ---------------------------------------------------------- */

typedef enum tok_behavior {
    TOK_REMOVED,
    TOK_ISOLATED,
    TOK_MERGED_PREV,
    TOK_MERGED_NEXT,
    TOK_CONTIGUOUS,
} tok_behavior;

/* One pre-tokenizer step. ByteLevel (always the last step) may prepend a
 * space and, with use_regex, splits with the GPT-2 pattern (Isolated). */
typedef struct tok_pretok {
    bool byte_level;
    pcre2_code *re;          /* NULL: ByteLevel without use_regex */
    tok_behavior behavior;
    bool invert;
    bool add_prefix_space;
} tok_pretok;

#define TOK_MAX_PRETOK 16

typedef struct tok_added {
    char *content;           /* as in the file */
    uint32_t len;
    char *match;             /* what is searched for: content, NFC'd when normalized */
    uint32_t match_len;
    int32_t id;
    bool special, single_word, lstrip, rstrip, normalized;
} tok_added;

/* Byte trie over added-token texts for leftmost-longest matching. */
typedef struct tok_trie_node {
    int32_t child, sibling;  /* node indices, -1: none */
    int32_t token;           /* index into t->added, -1: none */
    uint8_t byte;
} tok_trie_node;

typedef struct tok_trie {
    tok_trie_node *nodes;
    int32_t n, cap;
    uint8_t first[256];      /* 1 if some token starts with this byte */
} tok_trie;

/* Bounded word -> ids cache, flushed whole when full. */
typedef struct tok_cache_slot {
    uint64_t hash;           /* 0: empty */
    uint32_t key_off, ids_off;
    uint16_t key_len, n_ids;
} tok_cache_slot;

typedef struct tok_cache {
    pthread_mutex_t mu;
    tok_cache_slot *slots;
    uint32_t cap, n;
    tok_buf keys;
    tok_ids ids;
} tok_cache;

#define TOK_CACHE_SLOTS (1u << 17)
#define TOK_CACHE_MAX_WORD 255   /* longer words are not cached */

struct dm_tokenizer {
    char *name;                     /* for messages */
    int32_t n_vocab;                /* largest id + 1 */

    /* per id (n_vocab): the token string as written, and its raw bytes */
    char **id_str;                  /* NULL: no token has this id */
    uint32_t *bytes_off, *bytes_len;
    uint8_t *bytes;                 /* arena */
    uint32_t max_bytes;
    uint8_t *id_flags;              /* TOK_F_* */

    tok_strmap vocab;               /* model vocab: token string -> id */
    char *vocab_arena;              /* the vocab's strings (map keys, id_str) */
    tok_pairmap merges;             /* (a,b) -> (rank, vocab[a+b]) */
    int32_t byte_id[256];           /* id of the vocab token for each raw byte */
    bool ignore_merges;

    tok_added *added;
    int n_added;
    tok_trie trie_raw, trie_norm;   /* normalized=false / normalized=true tokens */

    bool nfc;
    tok_pretok pretok[TOK_MAX_PRETOK];
    int n_pretok;

    tok_cache cache;
};

#define TOK_F_ADDED 1
#define TOK_F_SPECIAL 2

/* ---- tok_pretok.c -------------------------------------------------------------- */

/* Receives the output of the pipeline in text order: either a pre-token to
 * run BPE on, or an added token's id. */
typedef struct tok_sink {
    void (*word)(void *ctx, const uint8_t *s, size_t n);
    void (*added)(void *ctx, int32_t id);
    void *ctx;
} tok_sink;

/* Runs everything before BPE on text[0..len): added-token split (specials
 * skipped unless allow_special), NFC, the pre-tokenizer steps. */
void tok_pipeline(const dm_tokenizer *t, const uint8_t *text, size_t len, bool allow_special,
                  const tok_sink *sink);

void tok_trie_add(tok_trie *tr, const char *s, uint32_t n, int32_t token);
void tok_trie_free(tok_trie *tr);
/* NFC of the valid runs of s (invalid bytes copied through) into out (reset).
 * Returns false only if utf8proc fails (out then holds a copy of s). */
bool tok_nfc(const uint8_t *s, size_t n, tok_buf *out);

/* ---- tok_load.c / tok_encode.c ------------------------------------------------------ */

/* GPT-2's pattern, used by ByteLevel(use_regex=true). */
extern const char tok_gpt2_pattern[];
/* GLM-4.5 / Qwen2-style pattern, used by the trainer. */
extern const char tok_glm_pattern[];

/* Compiles a Split pattern (UTF, UCP; literal for String patterns, JIT when
 * available). On failure writes the PCRE2 message into msg. */
pcre2_code *tok_regex_compile(const char *pat, bool literal, char *msg, size_t cap);

#endif
