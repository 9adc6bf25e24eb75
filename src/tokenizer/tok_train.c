/* tok_train — a byte-level BPE trainer that writes tokenizer.json.
 *
 * The classic algorithm (Sennrich et al. 2016, as in the tokenizers
 * library's BpeTrainer):
 *   1. run the text through the very pipeline encoding uses (special tokens
 *      split out, NFC, the GLM-4.5 Split regex, ByteLevel) and count each
 *      distinct pre-token ("word");
 *   2. the alphabet is the 256 bytes, id = byte value;
 *   3. repeatedly merge the most frequent adjacent pair of symbols over all
 *      words (ties: the smaller (left id, right id)), until the vocab plus the
 *      special tokens reaches vocab_size or no adjacent pair is left (a short
 *      text can run out: the vocab is then smaller than vocab_size, and the
 *      special tokens still follow the last merged token).
 * Pair counts are updated incrementally: a merge only visits the words that
 * contain the pair (a per-pair word list) and adjusts the counts of the pairs
 * around each occurrence. A lazy max-heap holds the candidates; an entry
 * whose count is out of date is re-queued with the current count when popped.
 *
 * A merge whose concatenation is already a token (reached another way)
 * reuses that token's id, as BpeTrainer does, so the merge list can be a
 * little longer than the vocab growth. */
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define TRAIN_MIN_COUNT 1   /* as BpeTrainer's default min_frequency: any pair that occurs */

/* Bytes that never move once stored (map keys point at them). */
typedef struct chunk_arena {
    uint8_t **blocks;
    int n;
    size_t used, size;
} chunk_arena;

static uint8_t *arena_copy(chunk_arena *a, const void *p, size_t n)
{
    if (!a->n || a->used + n > a->size) {
        a->size = n > (1u << 20) ? n : (1u << 20);
        a->blocks = dm_realloc(a->blocks, (size_t)(a->n + 1) * sizeof *a->blocks);
        a->blocks[a->n++] = dm_malloc(a->size);
        a->used = 0;
    }
    uint8_t *d = a->blocks[a->n - 1] + a->used;
    memcpy(d, p, n);
    a->used += n;
    return d;
}

static void arena_free(chunk_arena *a)
{
    for (int i = 0; i < a->n; i++)
        free(a->blocks[i]);
    free(a->blocks);
}

typedef struct tr_pair {
    int32_t a, b;
    int64_t count;
    uint32_t *where, nw, cw;     /* words that (may) contain the pair */
    uint32_t touched;            /* merge number that last raised the count */
} tr_pair;

typedef struct tr_heap_ent {
    int64_t count;
    int32_t a, b;
} tr_heap_ent;

typedef struct trainer {
    /* words */
    tok_strmap word_map;         /* raw bytes -> word index */
    chunk_arena word_bytes;
    int64_t *freq;
    uint32_t *sym_off, *sym_len;
    int32_t *syms;
    uint32_t n_words, cap_words;
    /* pairs */
    tok_pairmap pair_map;        /* (a,b) -> index in pairs (kept in .rank) */
    tr_pair *pairs;
    uint32_t n_pairs, cap_pairs;
    tr_heap_ent *heap;
    size_t n_heap, cap_heap;
    uint32_t *touched;           /* pairs raised during the current merge */
    uint32_t n_touched, cap_touched, merge_no;
    /* tokens */
    chunk_arena tok_bytes;
    tok_strmap tok_map;          /* raw bytes -> id */
    const uint8_t **tok_p;
    uint32_t *tok_len;
    int32_t n_tok, cap_tok;
    int32_t (*merges)[2];
    int n_merges, cap_merges;
} trainer;

/* ---- counting words ------------------------------------------------------------ */

static void count_word(void *ctx, const uint8_t *s, size_t n)
{
    trainer *tr = ctx;
    bool added;
    tok_strmap_slot *slot = tok_strmap_put(&tr->word_map, (const char *)s, (uint32_t)n, (int32_t)tr->n_words, &added);
    if (added) {
        slot->key = (const char *)arena_copy(&tr->word_bytes, s, n);
        if (tr->n_words == tr->cap_words) {
            tr->cap_words = tr->cap_words ? tr->cap_words * 2 : 4096;
            tr->freq = dm_realloc(tr->freq, tr->cap_words * sizeof *tr->freq);
        }
        tr->freq[tr->n_words++] = 0;
    }
    tr->freq[slot->val]++;
}

static void skip_added(void *ctx, int32_t id)
{
    (void)ctx;
    (void)id;
}

/* Words as symbol arrays: initially one symbol per byte, id = byte. */
static void words_to_symbols(trainer *tr)
{
    size_t total = 0;
    tr->sym_off = dm_malloc((tr->n_words + 1) * sizeof *tr->sym_off);
    tr->sym_len = dm_malloc((tr->n_words + 1) * sizeof *tr->sym_len);
    for (uint32_t i = 0; i < tr->word_map.cap; i++) {
        const tok_strmap_slot *s = &tr->word_map.slots[i];
        if (s->key)
            tr->sym_len[s->val] = s->len;
    }
    for (uint32_t w = 0; w < tr->n_words; w++) {
        tr->sym_off[w] = (uint32_t)total;
        total += tr->sym_len[w];
    }
    DM_ASSERT(total < UINT32_MAX);
    tr->syms = dm_malloc((total + 1) * sizeof *tr->syms);
    for (uint32_t i = 0; i < tr->word_map.cap; i++) {
        const tok_strmap_slot *s = &tr->word_map.slots[i];
        for (uint32_t k = 0; s->key && k < s->len; k++)
            tr->syms[tr->sym_off[s->val] + k] = (uint8_t)s->key[k];
    }
}

/* ---- pairs and the heap --------------------------------------------------------- */

static uint32_t pair_index(trainer *tr, int32_t a, int32_t b)
{
    const tok_pairmap_slot *s = tok_pairmap_get(&tr->pair_map, TOK_PAIR(a, b));
    if (s)
        return (uint32_t)s->rank;
    if (tr->n_pairs == tr->cap_pairs) {
        tr->cap_pairs = tr->cap_pairs ? tr->cap_pairs * 2 : 65536;
        tr->pairs = dm_realloc(tr->pairs, tr->cap_pairs * sizeof *tr->pairs);
    }
    tr->pairs[tr->n_pairs] = (tr_pair){.a = a, .b = b, .touched = UINT32_MAX};
    tok_pairmap_set(&tr->pair_map, TOK_PAIR(a, b), (int32_t)tr->n_pairs, 0);
    return tr->n_pairs++;
}

static void where_add(tr_pair *p, uint32_t w)
{
    if (p->nw && p->where[p->nw - 1] == w)
        return;
    if (p->nw == p->cw) {
        p->cw = p->cw ? p->cw * 2 : 4;
        p->where = dm_realloc(p->where, p->cw * sizeof *p->where);
    }
    p->where[p->nw++] = w;
}

/* Max-heap order: higher count first, then the smaller (a, b). */
static bool heap_before(const tr_heap_ent *x, const tr_heap_ent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    return x->a != y->a ? x->a < y->a : x->b < y->b;
}

static void heap_push(trainer *tr, tr_heap_ent e)
{
    if (tr->n_heap == tr->cap_heap) {
        tr->cap_heap = tr->cap_heap ? tr->cap_heap * 2 : 65536;
        tr->heap = dm_realloc(tr->heap, tr->cap_heap * sizeof *tr->heap);
    }
    size_t i = tr->n_heap++;
    while (i > 0 && heap_before(&e, &tr->heap[(i - 1) / 2])) {
        tr->heap[i] = tr->heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    tr->heap[i] = e;
}

static tr_heap_ent heap_pop(trainer *tr)
{
    tr_heap_ent top = tr->heap[0], v = tr->heap[--tr->n_heap];
    size_t i = 0, n = tr->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&tr->heap[c + 1], &tr->heap[c]))
            c++;
        if (!heap_before(&tr->heap[c], &v))
            break;
        tr->heap[i] = tr->heap[c];
        i = c;
    }
    if (n)
        tr->heap[i] = v;
    return top;
}

/* Adds d (the word's frequency, +/-) to pair (a,b) on behalf of word w. */
static void pair_delta(trainer *tr, int32_t a, int32_t b, int64_t d, uint32_t w)
{
    uint32_t pi = pair_index(tr, a, b);
    tr_pair *p = &tr->pairs[pi];
    p->count += d;
    if (d <= 0)
        return;
    where_add(p, w);
    if (p->touched != tr->merge_no) {
        p->touched = tr->merge_no;
        if (tr->n_touched == tr->cap_touched) {
            tr->cap_touched = tr->cap_touched ? tr->cap_touched * 2 : 1024;
            tr->touched = dm_realloc(tr->touched, tr->cap_touched * sizeof *tr->touched);
        }
        tr->touched[tr->n_touched++] = pi;
    }
}

static void count_pairs(trainer *tr)
{
    tok_pairmap_init(&tr->pair_map, 1u << 16);
    tr->merge_no = 0;
    for (uint32_t w = 0; w < tr->n_words; w++) {
        const int32_t *s = tr->syms + tr->sym_off[w];
        for (uint32_t i = 0; i + 1 < tr->sym_len[w]; i++)
            pair_delta(tr, s[i], s[i + 1], tr->freq[w], w);
    }
    for (uint32_t i = 0; i < tr->n_touched; i++) {
        const tr_pair *p = &tr->pairs[tr->touched[i]];
        heap_push(tr, (tr_heap_ent){p->count, p->a, p->b});
    }
    tr->n_touched = 0;
}

/* The most frequent pair with an up-to-date heap entry, or -1. */
static int64_t best_pair(trainer *tr)
{
    while (tr->n_heap) {
        tr_heap_ent e = heap_pop(tr);
        const tok_pairmap_slot *s = tok_pairmap_get(&tr->pair_map, TOK_PAIR(e.a, e.b));
        int64_t cur = tr->pairs[s->rank].count;
        if (cur == e.count)
            return cur >= TRAIN_MIN_COUNT ? s->rank : -1;
        if (cur > 0 && cur < e.count)   /* fell since queued; a rise always queued a fresh entry */
            heap_push(tr, (tr_heap_ent){cur, e.a, e.b});
    }
    return -1;
}

/* ---- merging -------------------------------------------------------------------- */

/* Replaces every (A,B) in word w by X, left to right, updating the counts of
 * the neighbouring pairs (the deltas of tokenizers' Word::merge). */
static void merge_word(trainer *tr, uint32_t w, int32_t A, int32_t B, int32_t X)
{
    int32_t *s = tr->syms + tr->sym_off[w];
    uint32_t n = tr->sym_len[w], out = 0;
    int64_t f = tr->freq[w];
    for (uint32_t i = 0; i < n;) {
        if (i + 1 < n && s[i] == A && s[i + 1] == B) {
            if (out > 0) {
                pair_delta(tr, s[out - 1], A, -f, w);
                pair_delta(tr, s[out - 1], X, f, w);
            }
            if (i + 2 < n) {
                pair_delta(tr, B, s[i + 2], -f, w);
                pair_delta(tr, X, s[i + 2], f, w);
            }
            s[out++] = X;
            i += 2;
        } else
            s[out++] = s[i++];
    }
    tr->sym_len[w] = out;
}

static int32_t add_token(trainer *tr, const uint8_t *p, uint32_t n)
{
    const uint8_t *stored = arena_copy(&tr->tok_bytes, p, n);
    bool added;
    tok_strmap_slot *s = tok_strmap_put(&tr->tok_map, (const char *)stored, n, tr->n_tok, &added);
    if (!added)
        return s->val;
    if (tr->n_tok == tr->cap_tok) {
        tr->cap_tok = tr->cap_tok ? tr->cap_tok * 2 : 1024;
        tr->tok_p = dm_realloc(tr->tok_p, (size_t)tr->cap_tok * sizeof *tr->tok_p);
        tr->tok_len = dm_realloc(tr->tok_len, (size_t)tr->cap_tok * sizeof *tr->tok_len);
    }
    tr->tok_p[tr->n_tok] = stored;
    tr->tok_len[tr->n_tok] = n;
    return tr->n_tok++;
}

/* Performs the merge of pair index pi: new token, merge record, words. */
static void do_merge(trainer *tr, uint32_t pi, tok_buf *cat)
{
    int32_t A = tr->pairs[pi].a, B = tr->pairs[pi].b;
    cat->n = 0;
    tok_buf_add(cat, tr->tok_p[A], tr->tok_len[A]);
    tok_buf_add(cat, tr->tok_p[B], tr->tok_len[B]);
    int32_t X = add_token(tr, cat->p, (uint32_t)cat->n);
    if (tr->n_merges == tr->cap_merges) {
        tr->cap_merges = tr->cap_merges ? tr->cap_merges * 2 : 1024;
        tr->merges = dm_realloc(tr->merges, (size_t)tr->cap_merges * sizeof *tr->merges);
    }
    tr->merges[tr->n_merges][0] = A;
    tr->merges[tr->n_merges][1] = B;
    tr->n_merges++;
    tr->merge_no++;
    /* pair_delta may grow tr->pairs and the where list we walk: copy it out */
    uint32_t nw = tr->pairs[pi].nw, *where = tr->pairs[pi].where;
    tr->pairs[pi].where = NULL;
    tr->pairs[pi].nw = tr->pairs[pi].cw = 0;
    for (uint32_t k = 0; k < nw; k++)
        merge_word(tr, where[k], A, B, X);
    free(where);
    tr->pairs[pi].count = 0;
    for (uint32_t i = 0; i < tr->n_touched; i++) {
        const tr_pair *p = &tr->pairs[tr->touched[i]];
        if (p->count > 0)
            heap_push(tr, (tr_heap_ent){p->count, p->a, p->b});
    }
    tr->n_touched = 0;
}

/* ---- tokenizer.json ------------------------------------------------------------------ */

static char *bl_string(const uint8_t *p, uint32_t n)
{
    char *s = dm_malloc(2 * (size_t)n + 1);
    s[tok_bytes_to_bl(p, n, s)] = 0;
    return s;
}

static cJSON *json_pretok(void)
{
    cJSON *seq = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(seq, "pretokenizers");
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(split, "type", "Split");
    cJSON_AddStringToObject(pat, "Regex", tok_glm_pattern);
    cJSON_AddItemToObject(split, "pattern", pat);
    cJSON_AddStringToObject(split, "behavior", "Isolated");
    cJSON_AddBoolToObject(split, "invert", false);
    cJSON_AddItemToArray(list, split);
    cJSON *bl = cJSON_CreateObject();
    cJSON_AddStringToObject(bl, "type", "ByteLevel");
    cJSON_AddBoolToObject(bl, "add_prefix_space", false);
    cJSON_AddBoolToObject(bl, "trim_offsets", true);
    cJSON_AddBoolToObject(bl, "use_regex", false);
    cJSON_AddItemToArray(list, bl);
    return seq;
}

static cJSON *json_model(const trainer *tr)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", false);
    cJSON_AddBoolToObject(m, "byte_fallback", false);
    cJSON_AddBoolToObject(m, "ignore_merges", false);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab"), *merges = cJSON_AddArrayToObject(m, "merges");
    for (int32_t id = 0; id < tr->n_tok; id++) {
        char *s = bl_string(tr->tok_p[id], tr->tok_len[id]);
        cJSON_AddNumberToObject(vocab, s, id);
        free(s);
    }
    for (int i = 0; i < tr->n_merges; i++) {
        const int32_t *mg = tr->merges[i];
        char *a = bl_string(tr->tok_p[mg[0]], tr->tok_len[mg[0]]);
        char *b = bl_string(tr->tok_p[mg[1]], tr->tok_len[mg[1]]);
        char *ab = dm_asprintf("%s %s", a, b);
        cJSON_AddItemToArray(merges, cJSON_CreateString(ab));
        free(a), free(b), free(ab);
    }
    return m;
}

/* The complete tokenizer.json for the current state: tokens 0..n_tok-1,
 * then the special tokens. */
static char *json_tokenizer(const trainer *tr, const char *const *special, int n_special)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    for (int i = 0; i < n_special; i++) {
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "id", tr->n_tok + i);
        cJSON_AddStringToObject(a, "content", special[i]);
        cJSON_AddBoolToObject(a, "single_word", false);
        cJSON_AddBoolToObject(a, "lstrip", false);
        cJSON_AddBoolToObject(a, "rstrip", false);
        cJSON_AddBoolToObject(a, "normalized", false);
        cJSON_AddBoolToObject(a, "special", true);
        cJSON_AddItemToArray(added, a);
    }
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "normalizer"), "type", "NFC");
    cJSON_AddItemToObject(root, "pre_tokenizer", json_pretok());
    cJSON_AddNullToObject(root, "post_processor");
    cJSON *dec = cJSON_AddObjectToObject(root, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", true);
    cJSON_AddBoolToObject(dec, "trim_offsets", true);
    cJSON_AddBoolToObject(dec, "use_regex", true);
    cJSON_AddItemToObject(root, "model", json_model(tr));
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    DM_ASSERT(s);
    return s;
}

/* ---- entry point ---------------------------------------------------------------------- */

static int check_args(int vocab_size, const char *const *special, int n_special, dm_err *err)
{
    if (n_special < 0 || vocab_size < 256 + n_special)
        return dm_errorf(err, "bpe train: vocab_size %d leaves no room for 256 byte tokens and %d special tokens",
                         vocab_size, n_special);
    for (int i = 0; i < n_special; i++) {
        if (!special[i] || !special[i][0])
            return dm_errorf(err, "bpe train: special token %d is empty", i);
        for (int j = 0; j < i; j++)
            if (strcmp(special[i], special[j]) == 0)
                return dm_errorf(err, "bpe train: special token \"%s\" is given twice", special[i]);
    }
    return 0;
}

static void trainer_free(trainer *tr)
{
    tok_strmap_free(&tr->word_map);
    arena_free(&tr->word_bytes);
    free(tr->freq), free(tr->sym_off), free(tr->sym_len), free(tr->syms);
    tok_pairmap_free(&tr->pair_map);
    for (uint32_t i = 0; i < tr->n_pairs; i++)
        free(tr->pairs[i].where);
    free(tr->pairs), free(tr->heap), free(tr->touched);
    arena_free(&tr->tok_bytes);
    tok_strmap_free(&tr->tok_map);
    free(tr->tok_p), free(tr->tok_len), free(tr->merges);
}

/* Counts the words of text with the pre-tokenizer of the tokenizer being
 * built (byte tokens only, no merges yet). */
static int count_words(trainer *tr, const char *text, size_t len, const char *const *special, int n_special,
                       dm_err *err)
{
    char *json = json_tokenizer(tr, special, n_special);
    dm_tokenizer *t0;
    int rc = dm_tokenizer_load_json(&t0, json, strlen(json), "bpe train (base tokenizer)", err);
    free(json);
    if (rc)
        return -1;
    tok_strmap_init(&tr->word_map, 1u << 16);
    tok_sink sink = {.word = count_word, .added = skip_added, .ctx = tr};
    tok_pipeline(t0, (const uint8_t *)text, len, true, &sink);
    dm_tokenizer_free(t0);
    return 0;
}

int dm_bpe_train(const char *text, size_t len, int vocab_size, const char *const *special, int n_special,
                 char **json_out, dm_err *err)
{
    *json_out = NULL;
    if (check_args(vocab_size, special, n_special, err))
        return -1;
    trainer tr = {0};
    tok_strmap_init(&tr.tok_map, (uint32_t)vocab_size);
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        add_token(&tr, &byte, 1);
    }
    if (count_words(&tr, text, len, special, n_special, err)) {
        trainer_free(&tr);
        return -1;
    }
    words_to_symbols(&tr);
    count_pairs(&tr);
    dm_progress prog;
    dm_progress_begin(&prog, "bpe train", "tokens", vocab_size - n_special);
    tok_buf cat = {0};
    int64_t pi;
    while (tr.n_tok < vocab_size - n_special && (pi = best_pair(&tr)) >= 0) {
        do_merge(&tr, (uint32_t)pi, &cat);
        dm_progress_update(&prog, tr.n_tok);
    }
    dm_progress_end(&prog);
    free(cat.p);
    *json_out = json_tokenizer(&tr, special, n_special);
    dm_log(2, "bpe train: %u distinct words, %d tokens, %d merges\n", tr.n_words, tr.n_tok, tr.n_merges);
    trainer_free(&tr);
    return 0;
}
