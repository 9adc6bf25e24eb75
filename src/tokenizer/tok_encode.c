/* tok_encode — the BPE model and the id <-> text functions of tokenizer.h.
 *
 * BPE follows the tokenizers library's Word::merge_all: a word starts as one
 * symbol per byte (the ByteLevel character's vocab id), candidate merges sit
 * in a min-heap keyed by (rank, position), and the lowest-rank, leftmost
 * candidate is applied first; stale heap entries are skipped when popped.
 * That is O(n log n) per word, so a long run of letters costs no rescans.
 *
 * Finished words go into a bounded cache (word bytes -> ids), flushed whole
 * when full. dm_tokenize uses the cache only if it can take its lock without
 * waiting, so concurrent callers never serialize on it. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---- BPE over one word -------------------------------------------------------- */

typedef struct bpe_work {
    int32_t *id, *prev, *next;   /* [n] symbols as a linked list; id -1: merged away */
    uint64_t *heap;              /* [3n] (rank << 32 | position), min at [0] */
    size_t cap;
    char *bl;                    /* [2n] ByteLevel text, for ignore_merges */
} bpe_work;

static void work_reserve(bpe_work *w, size_t n)
{
    if (n <= w->cap)
        return;
    w->cap = n < 64 ? 64 : n * 2;
    w->id = dm_realloc(w->id, w->cap * sizeof *w->id);
    w->prev = dm_realloc(w->prev, w->cap * sizeof *w->prev);
    w->next = dm_realloc(w->next, w->cap * sizeof *w->next);
    w->heap = dm_realloc(w->heap, 3 * w->cap * sizeof *w->heap);
    w->bl = dm_realloc(w->bl, 2 * w->cap);
}

static void work_free(bpe_work *w)
{
    free(w->id);
    free(w->prev);
    free(w->next);
    free(w->heap);
    free(w->bl);
}

static void heap_push(uint64_t *h, size_t *n, uint64_t v)
{
    size_t i = (*n)++;
    while (i > 0 && h[(i - 1) / 2] > v) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = v;
}

static uint64_t heap_pop(uint64_t *h, size_t *n)
{
    uint64_t top = h[0], v = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && h[c + 1] < h[c])
            c++;
        if (h[c] >= v)
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n)
        h[i] = v;
    return top;
}

/* Queues the merge of the symbol at pos with its right neighbour, if any. */
static void push_pair(const dm_tokenizer *t, bpe_work *w, size_t *hn, int32_t pos)
{
    if (pos < 0 || w->next[pos] < 0)
        return;
    int32_t nx = w->next[pos];
    const tok_pairmap_slot *m = tok_pairmap_get(&t->merges, TOK_PAIR(w->id[pos], w->id[nx]));
    if (m)
        heap_push(w->heap, hn, ((uint64_t)(uint32_t)m->rank << 32) | (uint32_t)pos);
}

/* Appends the BPE ids of the raw word s[0..n) to out. */
static void bpe_word(const dm_tokenizer *t, const uint8_t *s, size_t n, bpe_work *w, tok_ids *out)
{
    work_reserve(w, n);
    for (size_t i = 0; i < n; i++) {
        w->id[i] = t->byte_id[s[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    size_t hn = 0;
    for (size_t i = 0; i + 1 < n; i++)
        push_pair(t, w, &hn, (int32_t)i);
    while (hn) {
        uint64_t e = heap_pop(w->heap, &hn);
        int32_t pos = (int32_t)(uint32_t)e, nx = w->next[pos];
        if (w->id[pos] < 0 || nx < 0)
            continue;
        const tok_pairmap_slot *m = tok_pairmap_get(&t->merges, TOK_PAIR(w->id[pos], w->id[nx]));
        if (!m || (uint64_t)(uint32_t)m->rank != e >> 32)
            continue;   /* stale: one side was merged since this entry was queued */
        w->id[pos] = m->id;
        w->id[nx] = -1;
        w->next[pos] = w->next[nx];
        if (w->next[nx] >= 0)
            w->prev[w->next[nx]] = pos;
        push_pair(t, w, &hn, w->prev[pos]);
        push_pair(t, w, &hn, pos);
    }
    for (int32_t i = n ? 0 : -1; i >= 0; i = w->next[i])
        tok_ids_push(out, w->id[i]);
}

/* ---- word cache -------------------------------------------------------------------- */

static void cache_flush(tok_cache *c)
{
    memset(c->slots, 0, (size_t)c->cap * sizeof *c->slots);
    c->n = 0;
    c->keys.n = 0;
    c->ids.n = 0;
}

/* The slot holding word s, or the empty slot where it would go. */
static tok_cache_slot *cache_find(tok_cache *c, const uint8_t *s, size_t n, uint64_t h)
{
    uint32_t mask = c->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        tok_cache_slot *e = &c->slots[i];
        if (!e->hash || (e->hash == h && e->key_len == n && memcmp(c->keys.p + e->key_off, s, n) == 0))
            return e;
    }
}

/* Stores word s -> ids in slot e (from cache_find with the same key and hash);
 * a full cache is emptied first. */
static void cache_put(tok_cache *c, tok_cache_slot *e, const uint8_t *s, size_t n, uint64_t h,
                      const int32_t *ids, size_t k)
{
    if (c->n + 1 > c->cap / 2) {   /* full: start over rather than track recency */
        cache_flush(c);
        e = cache_find(c, s, n, h);
    }
    *e = (tok_cache_slot){.hash = h, .key_off = (uint32_t)c->keys.n, .ids_off = (uint32_t)c->ids.n,
                          .key_len = (uint16_t)n, .n_ids = (uint16_t)k};
    tok_buf_add(&c->keys, s, n);
    for (size_t i = 0; i < k; i++)
        tok_ids_push(&c->ids, ids[i]);
    c->n++;
}

/* ---- dm_tokenize ---------------------------------------------------------------------- */

typedef struct enc_ctx {
    const dm_tokenizer *t;
    tok_cache *cache;            /* NULL: another thread holds it */
    bpe_work w;
    tok_ids out;
} enc_ctx;

/* Sink for one pre-token: ignore_merges lookup, then the cache, then BPE. */
static void enc_word(void *ctx, const uint8_t *s, size_t n)
{
    enc_ctx *e = ctx;
    const dm_tokenizer *t = e->t;
    if (t->ignore_merges) {
        work_reserve(&e->w, n);
        size_t m = tok_bytes_to_bl(s, n, e->w.bl);
        int32_t id = tok_strmap_get(&t->vocab, e->w.bl, (uint32_t)m);
        if (id >= 0) {
            tok_ids_push(&e->out, id);
            return;
        }
    }
    tok_cache *c = n <= TOK_CACHE_MAX_WORD ? e->cache : NULL;
    tok_cache_slot *slot = NULL;
    uint64_t h = 0;
    if (c) {
        h = tok_hash(s, n) | 1;   /* 0 marks an empty slot */
        slot = cache_find(c, s, n, h);
        if (slot->hash) {
            for (uint32_t i = 0; i < slot->n_ids; i++)
                tok_ids_push(&e->out, c->ids.p[slot->ids_off + i]);
            return;
        }
    }
    size_t start = e->out.n;
    bpe_word(t, s, n, &e->w, &e->out);
    if (c)
        cache_put(c, slot, s, n, h, e->out.p + start, e->out.n - start);
}

static void enc_added(void *ctx, int32_t id)
{
    tok_ids_push(&((enc_ctx *)ctx)->out, id);
}

int32_t *dm_tokenize(const dm_tokenizer *t, const char *text, size_t len, bool allow_special, int *n)
{
    /* the cache is the one mutable part of a loaded tokenizer */
    tok_cache *c = (tok_cache *)&t->cache;
    enc_ctx e = {.t = t};
    if (pthread_mutex_trylock(&c->mu) == 0) {
        if (!c->slots) {
            c->cap = TOK_CACHE_SLOTS;
            c->slots = dm_calloc(c->cap, sizeof *c->slots);
        }
        e.cache = c;
    }
    tok_sink sink = {.word = enc_word, .added = enc_added, .ctx = &e};
    tok_pipeline(t, (const uint8_t *)text, len, allow_special, &sink);
    if (e.cache)
        pthread_mutex_unlock(&c->mu);
    work_free(&e.w);
    DM_ASSERT(e.out.n <= INT32_MAX);
    *n = (int)e.out.n;
    return e.out.p ? e.out.p : dm_malloc(sizeof(int32_t));
}

/* ---- ids -> text ------------------------------------------------------------------------ */

int dm_tokenizer_n_vocab(const dm_tokenizer *t)
{
    return t->n_vocab;
}

int dm_token_max_bytes(const dm_tokenizer *t)
{
    return (int)t->max_bytes;
}

static bool known(const dm_tokenizer *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->id_str[id];
}

int dm_token_to_bytes(const dm_tokenizer *t, int32_t id, char *buf, int cap)
{
    if (!known(t, id))
        return -1;
    int len = (int)t->bytes_len[id];
    if (cap > 0)
        memcpy(buf, t->bytes + t->bytes_off[id], (size_t)(len < cap ? len : cap));
    return len;
}

char *dm_detokenize(const dm_tokenizer *t, const int32_t *ids, int n, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += known(t, ids[i]) ? t->bytes_len[ids[i]] : 0;
    char *s = dm_malloc(total + 1), *p = s;
    for (int i = 0; i < n; i++)
        if (known(t, ids[i])) {
            memcpy(p, t->bytes + t->bytes_off[ids[i]], t->bytes_len[ids[i]]);
            p += t->bytes_len[ids[i]];
        }
    *p = 0;
    if (len)
        *len = total;
    return s;
}

int32_t dm_token_id(const dm_tokenizer *t, const char *token)
{
    for (int i = 0; i < t->n_added; i++)
        if (strcmp(t->added[i].content, token) == 0)
            return t->added[i].id;
    return tok_strmap_get(&t->vocab, token, (uint32_t)strlen(token));
}

const char *dm_token_str(const dm_tokenizer *t, int32_t id)
{
    return known(t, id) ? t->id_str[id] : NULL;
}

bool dm_token_is_special(const dm_tokenizer *t, int32_t id)
{
    return known(t, id) && (t->id_flags[id] & TOK_F_SPECIAL);
}
