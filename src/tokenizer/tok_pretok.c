/* tok_pretok — everything the tokenizers library does before the BPE model
 * runs, streamed: pieces are handed to a sink as soon as they are known, so a
 * 100 MB text never turns into a 100 MB list of offsets.
 *
 *   1. added tokens with normalized=false are found in the raw text
 *      (leftmost-longest; single_word, lstrip, rstrip as in
 *      AddedVocabulary::find_matches);
 *   2. each remaining gap is normalized (NFC), then added tokens with
 *      normalized=true are found in it the same way;
 *   3. each remaining gap runs through the pre-tokenizer steps in order
 *      (Split with its behaviour and invert, then ByteLevel), and every
 *      resulting non-empty piece goes to sink->word.
 *
 * Invalid UTF-8 (see tok_internal.h): regexes and NFC only see maximal valid
 * runs; invalid runs pass through as pieces of their own. Empty regex matches
 * are ignored (the search resumes one character later); the tokenizers
 * library would let them cut a gap in two, which only matters for patterns
 * that can match the empty string — none of the GPT-2/GLM/Qwen/DeepSeek ones. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct pl_ctx {
    const dm_tokenizer *t;
    const tok_sink *sink;
    bool allow_special;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *jit;
    tok_buf norm;                      /* NFC output of the current gap */
    tok_buf prefix[TOK_MAX_PRETOK];    /* ByteLevel add_prefix_space copies, per step */
} pl_ctx;

typedef void (*gap_fn)(pl_ctx *c, const uint8_t *s, size_t n);

/* ---- added-token trie -------------------------------------------------------- */

static int32_t trie_new_node(tok_trie *tr, uint8_t byte)
{
    if (tr->n == tr->cap) {
        tr->cap = tr->cap ? tr->cap * 2 : 64;
        tr->nodes = dm_realloc(tr->nodes, (size_t)tr->cap * sizeof *tr->nodes);
    }
    tr->nodes[tr->n] = (tok_trie_node){.child = -1, .sibling = -1, .token = -1, .byte = byte};
    return tr->n++;
}

static int32_t trie_child(const tok_trie *tr, int32_t node, uint8_t byte)
{
    for (int32_t c = tr->nodes[node].child; c >= 0; c = tr->nodes[c].sibling)
        if (tr->nodes[c].byte == byte)
            return c;
    return -1;
}

void tok_trie_add(tok_trie *tr, const char *s, uint32_t n, int32_t token)
{
    if (!n)
        return;
    if (!tr->n)
        trie_new_node(tr, 0);
    int32_t node = 0;
    for (uint32_t i = 0; i < n; i++) {
        int32_t c = trie_child(tr, node, (uint8_t)s[i]);
        if (c < 0) {
            c = trie_new_node(tr, (uint8_t)s[i]);
            tr->nodes[c].sibling = tr->nodes[node].child;
            tr->nodes[node].child = c;
        }
        node = c;
    }
    tr->nodes[node].token = token;   /* same text twice: the later entry wins */
    tr->first[(uint8_t)s[0]] = 1;
}

void tok_trie_free(tok_trie *tr)
{
    free(tr->nodes);
    memset(tr, 0, sizeof *tr);
}

/* Longest token starting at s[0]: its index (end in *end), or -1. */
static int32_t trie_longest(const tok_trie *tr, const uint8_t *s, size_t n, size_t *end)
{
    int32_t best = -1, node = 0;
    for (size_t j = 0; j < n; j++) {
        node = trie_child(tr, node, s[j]);
        if (node < 0)
            break;
        if (tr->nodes[node].token >= 0) {
            best = tr->nodes[node].token;
            *end = j + 1;
        }
    }
    return best;
}

/* ---- added-token split ---------------------------------------------------------- */

static bool ends_with_word(const uint8_t *s, size_t end)
{
    int32_t cp;
    tok_utf8_prev(s, end, &cp);
    return cp >= 0 && tok_is_word(cp);
}

static bool starts_with_word(const uint8_t *s, size_t n)
{
    int32_t cp;
    return tok_utf8_seq(s, n, &cp) > 0 && tok_is_word(cp);
}

static size_t strip_left(const uint8_t *s, size_t start, size_t floor)
{
    while (start > floor) {
        int32_t cp;
        size_t p = tok_utf8_prev(s, start, &cp);
        if (cp < 0 || !tok_is_space(cp))
            break;
        start = p;
    }
    return start < floor ? floor : start;
}

static size_t strip_right(const uint8_t *s, size_t stop, size_t n)
{
    int32_t cp;
    int k;
    while (stop < n && (k = tok_utf8_seq(s + stop, n - stop, &cp)) > 0 && tok_is_space(cp))
        stop += (size_t)k;
    return stop;
}

/* Splits s[0..n) on the added tokens of trie tr: gaps go to gap(), matches to
 * the sink. Mirrors find_matches: the search resumes after a match's own end
 * even when the match is then skipped (a special token with allow_special
 * off, or a single_word token inside a word), and lstrip/rstrip widen the
 * match over Unicode whitespace. */
static void split_added(pl_ctx *c, const tok_trie *tr, const uint8_t *s, size_t n, gap_fn gap)
{
    size_t start_off = 0, i = 0;
    while (tr->n && i < n) {
        size_t end = 0;
        int32_t k = tr->first[s[i]] ? trie_longest(tr, s + i, n - i, &end) : -1;
        if (k < 0) {
            i++;
            continue;
        }
        const tok_added *a = &c->t->added[k];
        size_t start = i, stop = i + end;
        i = stop;
        if (a->special && !c->allow_special)
            continue;
        if (a->single_word &&
            ((start > 0 && ends_with_word(s, start)) || (stop < n && starts_with_word(s + stop, n - stop))))
            continue;
        if (a->lstrip)
            start = strip_left(s, start, start_off);
        if (a->rstrip)
            stop = strip_right(s, stop, n);
        if (start_off < start)
            gap(c, s + start_off, start - start_off);
        c->sink->added(c->sink->ctx, a->id);
        start_off = stop;
    }
    if (start_off < n)
        gap(c, s + start_off, n - start_off);
}

/* ---- normalization ---------------------------------------------------------------- */

/* NFC of a valid run, handing utf8proc only the stretches that can change.
 * Code points below U+0300 are starters with NFC_QC=Yes that never compose
 * with what precedes them, so the text can be cut before any of them:
 * NFC(a + b) = NFC(a) + NFC(b) when b starts below U+0300. Bytes >= 0xCC are
 * exactly the lead bytes of code points >= U+0300. A stretch therefore runs
 * from the character before the first such byte (a possible base) to the
 * next character below U+0300. */
static bool nfc_valid_run(const uint8_t *s, size_t n, tok_buf *out)
{
    bool ok = true;
    size_t done = 0, i = 0;
    while (i < n) {
        if (s[i] < 0xcc) {
            i++;
            continue;
        }
        int32_t cp;
        size_t q = i > done ? tok_utf8_prev(s, i, &cp) : i, r = i;
        while (r < n && (s[r] >= 0xcc || (s[r] & 0xc0) == 0x80))
            r++;
        tok_buf_add(out, s + done, q - done);
        utf8proc_uint8_t *p = NULL;
        utf8proc_ssize_t m = utf8proc_map(s + q, (utf8proc_ssize_t)(r - q), &p, UTF8PROC_STABLE | UTF8PROC_COMPOSE);
        if (m >= 0)
            tok_buf_add(out, p, (size_t)m);
        else {
            ok = false;
            tok_buf_add(out, s + q, r - q);
        }
        free(p);
        done = i = r;
    }
    tok_buf_add(out, s + done, n - done);
    return ok;
}

bool tok_nfc(const uint8_t *s, size_t n, tok_buf *out)
{
    out->n = 0;
    tok_buf_reserve(out, n);
    bool ok = true;
    size_t i = 0;
    while (i < n) {
        size_t v = tok_utf8_run(s + i, n - i, true);
        ok &= nfc_valid_run(s + i, v, out);
        i += v;
        size_t bad = tok_utf8_run(s + i, n - i, false);
        tok_buf_add(out, s + i, bad);
        i += bad;
    }
    return ok;
}

/* ---- pre-tokenizer steps ------------------------------------------------------------ */

static void pretok_step(pl_ctx *c, int level, const uint8_t *s, size_t n);

/* Streaming form of NormalizedString::split's behaviours: two neighbouring
 * segments end up in one piece when join(previous is_match, this is_match). */
typedef struct seg_state {
    size_t ps, pe;     /* pending piece */
    bool have, pm;     /* pending exists; is_match of the previous segment */
} seg_state;

static bool seg_join(tok_behavior b, bool prev_m, bool m)
{
    switch (b) {
    case TOK_MERGED_PREV: return m && !prev_m;
    case TOK_MERGED_NEXT: return prev_m && !m;
    case TOK_CONTIGUOUS: return prev_m == m;
    default: return false;
    }
}

/* Feeds segment s[a..b) (m: regex match, before invert) of step `level` to
 * the behaviour: pieces that are complete go on to the next step. */
static void seg_feed(pl_ctx *c, int level, seg_state *st, const uint8_t *s, size_t a, size_t b, bool m)
{
    const tok_pretok *p = &c->t->pretok[level];
    if (a == b)
        return;
    m ^= p->invert;
    if (p->behavior == TOK_REMOVED) {
        if (!m)
            pretok_step(c, level + 1, s + a, b - a);
        return;
    }
    if (st->have && seg_join(p->behavior, st->pm, m))
        st->pe = b;
    else {
        if (st->have)
            pretok_step(c, level + 1, s + st->ps, st->pe - st->ps);
        *st = (seg_state){.ps = a, .pe = b, .have = true};
    }
    st->pm = m;
}

/* Runs step `level`'s regex over a valid UTF-8 run. */
static void split_regex(pl_ctx *c, int level, const uint8_t *s, size_t n)
{
    const tok_pretok *p = &c->t->pretok[level];
    seg_state st = {0};
    size_t prev = 0, pos = 0;
    while (pos < n) {
        int rc = pcre2_match(p->re, s, n, pos, PCRE2_NO_UTF_CHECK, c->md, c->mctx);
        if (rc < 0)   /* no match, or a resource limit: the rest is a gap, nothing is lost */
            break;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (me == ms) {
            int32_t cp;
            if (ms >= n)
                break;
            pos = ms + (size_t)tok_utf8_seq(s + ms, n - ms, &cp);
            continue;
        }
        seg_feed(c, level, &st, s, prev, ms, false);
        seg_feed(c, level, &st, s, ms, me, true);
        prev = pos = me;
    }
    seg_feed(c, level, &st, s, prev, n, false);
    if (st.have)
        pretok_step(c, level + 1, s + st.ps, st.pe - st.ps);
}

/* Applies pre-tokenizer steps level.. to the piece s[0..n); after the last
 * step the piece is a word for BPE. */
static void pretok_step(pl_ctx *c, int level, const uint8_t *s, size_t n)
{
    const dm_tokenizer *t = c->t;
    if (!n)
        return;
    if (level == t->n_pretok) {
        c->sink->word(c->sink->ctx, s, n);
        return;
    }
    const tok_pretok *p = &t->pretok[level];
    if (p->add_prefix_space && s[0] != ' ') {
        tok_buf *b = &c->prefix[level];
        b->n = 0;
        tok_buf_add(b, " ", 1);
        tok_buf_add(b, s, n);
        s = b->p;
        n = b->n;
    }
    if (!p->re) {
        pretok_step(c, level + 1, s, n);
        return;
    }
    size_t i = 0;
    while (i < n) {
        size_t v = tok_utf8_run(s + i, n - i, true);
        if (v)
            split_regex(c, level, s + i, v);
        i += v;
        size_t bad = tok_utf8_run(s + i, n - i, false);
        if (bad)
            pretok_step(c, level + 1, s + i, bad);
        i += bad;
    }
}

/* ---- the pipeline ---------------------------------------------------------------- */

static void gap_pretok(pl_ctx *c, const uint8_t *s, size_t n)
{
    pretok_step(c, 0, s, n);
}

static void gap_normalize(pl_ctx *c, const uint8_t *s, size_t n)
{
    if (c->t->nfc) {
        tok_nfc(s, n, &c->norm);
        s = c->norm.p;
        n = c->norm.n;
    }
    split_added(c, &c->t->trie_norm, s, n, gap_pretok);
}

void tok_pipeline(const dm_tokenizer *t, const uint8_t *text, size_t len, bool allow_special,
                  const tok_sink *sink)
{
    pl_ctx c = {.t = t, .sink = sink, .allow_special = allow_special};
    c.md = pcre2_match_data_create(1, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    /* a long run of one class (a megabyte of spaces) needs more than the
     * default 32 KiB JIT stack on some patterns */
    c.jit = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, NULL);
    DM_ASSERT(c.md && c.mctx);
    if (c.jit)
        pcre2_jit_stack_assign(c.mctx, NULL, c.jit);
    split_added(&c, &t->trie_raw, text, len, gap_normalize);
    if (c.jit)
        pcre2_jit_stack_free(c.jit);
    pcre2_match_context_free(c.mctx);
    pcre2_match_data_free(c.md);
    free(c.norm.p);
    for (int i = 0; i < TOK_MAX_PRETOK; i++)
        free(c.prefix[i].p);
}
