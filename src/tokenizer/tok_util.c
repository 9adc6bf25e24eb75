/* tok_util — small building blocks for the tokenizer stage: an open-addressing
 * string map (vocab), a pair map (BPE merge ranks), UTF-8 segmentation that
 * classifies every byte as valid or invalid, the two Unicode character classes
 * the added-token rules need, and GPT-2's bytes_to_unicode table. */
#include "tokenizer/tok_internal.h"

#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- hashing ----------------------------------------------------------------- */

static uint64_t mix64(uint64_t h)
{
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

uint64_t tok_hash(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t v;
        memcpy(&v, s, 8);
        h = (h ^ v) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t v = 0;
    memcpy(&v, s, n);
    return mix64(h ^ v);
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n)
        c *= 2;
    return c;
}

/* ---- string map ----------------------------------------------------------------- */

void tok_strmap_init(tok_strmap *m, uint32_t expected)
{
    m->cap = pow2_at_least((uint64_t)expected * 2);
    m->n = 0;
    m->slots = dm_calloc(m->cap, sizeof *m->slots);
}

void tok_strmap_free(tok_strmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static tok_strmap_slot *strmap_find(const tok_strmap *m, const char *key, uint32_t len, uint64_t h)
{
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)h & mask;; i = (i + 1) & mask) {
        tok_strmap_slot *s = &m->slots[i];
        if (!s->key || (s->hash == h && s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

static void strmap_grow(tok_strmap *m)
{
    tok_strmap old = *m;
    m->cap *= 2;
    m->slots = dm_calloc(m->cap, sizeof *m->slots);
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i].key)
            *strmap_find(m, old.slots[i].key, old.slots[i].len, old.slots[i].hash) = old.slots[i];
    free(old.slots);
}

tok_strmap_slot *tok_strmap_put(tok_strmap *m, const char *key, uint32_t len, int32_t val, bool *added)
{
    if ((m->n + 1) * 2 > m->cap)
        strmap_grow(m);
    uint64_t h = tok_hash(key, len);
    tok_strmap_slot *s = strmap_find(m, key, len, h);
    *added = !s->key;
    if (!s->key) {
        s->key = key ? key : "";
        s->len = len;
        s->val = val;
        s->hash = h;
        m->n++;
    }
    return s;
}

int32_t tok_strmap_get(const tok_strmap *m, const char *key, uint32_t len)
{
    if (!m->cap)
        return -1;
    tok_strmap_slot *s = strmap_find(m, key, len, tok_hash(key, len));
    return s->key ? s->val : -1;
}

/* ---- pair map ------------------------------------------------------------------- */

void tok_pairmap_init(tok_pairmap *m, uint32_t expected)
{
    m->cap = pow2_at_least((uint64_t)expected * 2);
    m->n = 0;
    m->slots = dm_malloc((size_t)m->cap * sizeof *m->slots);
    for (uint32_t i = 0; i < m->cap; i++)
        m->slots[i].key = TOK_PAIR_EMPTY;
}

void tok_pairmap_free(tok_pairmap *m)
{
    free(m->slots);
    m->slots = NULL;
    m->cap = m->n = 0;
}

static tok_pairmap_slot *pairmap_find(const tok_pairmap *m, uint64_t key)
{
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)mix64(key) & mask;; i = (i + 1) & mask)
        if (m->slots[i].key == key || m->slots[i].key == TOK_PAIR_EMPTY)
            return &m->slots[i];
}

void tok_pairmap_set(tok_pairmap *m, uint64_t key, int32_t rank, int32_t id)
{
    if ((m->n + 1) * 2 > m->cap) {
        tok_pairmap old = *m;
        tok_pairmap_init(m, old.cap);
        for (uint32_t i = 0; i < old.cap; i++)
            if (old.slots[i].key != TOK_PAIR_EMPTY) {
                *pairmap_find(m, old.slots[i].key) = old.slots[i];
                m->n++;
            }
        free(old.slots);
    }
    tok_pairmap_slot *s = pairmap_find(m, key);
    if (s->key == TOK_PAIR_EMPTY)
        m->n++;
    s->key = key;
    s->rank = rank;
    s->id = id;
}

const tok_pairmap_slot *tok_pairmap_get(const tok_pairmap *m, uint64_t key)
{
    if (!m->cap)
        return NULL;
    const tok_pairmap_slot *s = pairmap_find(m, key);
    return s->key == key ? s : NULL;
}

/* ---- UTF-8 ------------------------------------------------------------------------ */

static bool cont(uint8_t b, uint8_t lo, uint8_t hi)
{
    return b >= lo && b <= hi;
}

int tok_utf8_seq(const uint8_t *s, size_t n, int32_t *cp)
{
    uint8_t b = s[0];
    if (b < 0x80) {
        *cp = b;
        return 1;
    }
    /* Table 3-7: second-byte range depends on the lead byte */
    uint8_t lo = 0x80, hi = 0xbf;
    int len;
    if (b >= 0xc2 && b <= 0xdf)
        len = 2;
    else if (b >= 0xe0 && b <= 0xef) {
        len = 3;
        if (b == 0xe0)
            lo = 0xa0;
        if (b == 0xed)
            hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        len = 4;
        if (b == 0xf0)
            lo = 0x90;
        if (b == 0xf4)
            hi = 0x8f;
    } else
        return 0;
    if (n < (size_t)len || !cont(s[1], lo, hi))
        return 0;
    for (int i = 2; i < len; i++)
        if (!cont(s[i], 0x80, 0xbf))
            return 0;
    int32_t c = b & (0x7f >> len);
    for (int i = 1; i < len; i++)
        c = (c << 6) | (s[i] & 0x3f);
    *cp = c;
    return len;
}

size_t tok_utf8_run(const uint8_t *s, size_t n, bool want_valid)
{
    size_t i = 0;
    int32_t cp;
    while (i < n) {
        if (s[i] < 0x80) {   /* ASCII fast path */
            if (!want_valid)
                break;
            i++;
            continue;
        }
        int k = tok_utf8_seq(s + i, n - i, &cp);
        if ((k > 0) != want_valid)
            break;
        i += k ? (size_t)k : 1;
    }
    return i;
}

size_t tok_utf8_prev(const uint8_t *s, size_t end, int32_t *cp)
{
    for (size_t k = 1; k <= 4 && k <= end; k++)
        if (tok_utf8_seq(s + end - k, k, cp) == (int)k)
            return end - k;
    *cp = -1;
    return end - 1;
}

bool tok_is_space(int32_t cp)
{
    if (cp <= 0x20)
        return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    if (cp < 0x85)
        return false;
    return cp == 0x85 || cp == 0xa0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200a) || cp == 0x2028 ||
           cp == 0x2029 || cp == 0x202f || cp == 0x205f || cp == 0x3000;
}

bool tok_is_word(int32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || cp == '_';
    if (cp == 0x200c || cp == 0x200d)
        return true;
    switch (utf8proc_category(cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

/* ---- GPT-2 bytes_to_unicode ---------------------------------------------------------- */

/* Printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
 * themselves; the other 68 bytes get U+0100.. in byte order. */
const uint16_t tok_byte_cp[256] = {
    0x100, 0x101, 0x102, 0x103, 0x104, 0x105, 0x106, 0x107, 0x108, 0x109, 0x10a, 0x10b, 0x10c, 0x10d, 0x10e, 0x10f,
    0x110, 0x111, 0x112, 0x113, 0x114, 0x115, 0x116, 0x117, 0x118, 0x119, 0x11a, 0x11b, 0x11c, 0x11d, 0x11e, 0x11f,
    0x120, 0x021, 0x022, 0x023, 0x024, 0x025, 0x026, 0x027, 0x028, 0x029, 0x02a, 0x02b, 0x02c, 0x02d, 0x02e, 0x02f,
    0x030, 0x031, 0x032, 0x033, 0x034, 0x035, 0x036, 0x037, 0x038, 0x039, 0x03a, 0x03b, 0x03c, 0x03d, 0x03e, 0x03f,
    0x040, 0x041, 0x042, 0x043, 0x044, 0x045, 0x046, 0x047, 0x048, 0x049, 0x04a, 0x04b, 0x04c, 0x04d, 0x04e, 0x04f,
    0x050, 0x051, 0x052, 0x053, 0x054, 0x055, 0x056, 0x057, 0x058, 0x059, 0x05a, 0x05b, 0x05c, 0x05d, 0x05e, 0x05f,
    0x060, 0x061, 0x062, 0x063, 0x064, 0x065, 0x066, 0x067, 0x068, 0x069, 0x06a, 0x06b, 0x06c, 0x06d, 0x06e, 0x06f,
    0x070, 0x071, 0x072, 0x073, 0x074, 0x075, 0x076, 0x077, 0x078, 0x079, 0x07a, 0x07b, 0x07c, 0x07d, 0x07e, 0x121,
    0x122, 0x123, 0x124, 0x125, 0x126, 0x127, 0x128, 0x129, 0x12a, 0x12b, 0x12c, 0x12d, 0x12e, 0x12f, 0x130, 0x131,
    0x132, 0x133, 0x134, 0x135, 0x136, 0x137, 0x138, 0x139, 0x13a, 0x13b, 0x13c, 0x13d, 0x13e, 0x13f, 0x140, 0x141,
    0x142, 0x0a1, 0x0a2, 0x0a3, 0x0a4, 0x0a5, 0x0a6, 0x0a7, 0x0a8, 0x0a9, 0x0aa, 0x0ab, 0x0ac, 0x143, 0x0ae, 0x0af,
    0x0b0, 0x0b1, 0x0b2, 0x0b3, 0x0b4, 0x0b5, 0x0b6, 0x0b7, 0x0b8, 0x0b9, 0x0ba, 0x0bb, 0x0bc, 0x0bd, 0x0be, 0x0bf,
    0x0c0, 0x0c1, 0x0c2, 0x0c3, 0x0c4, 0x0c5, 0x0c6, 0x0c7, 0x0c8, 0x0c9, 0x0ca, 0x0cb, 0x0cc, 0x0cd, 0x0ce, 0x0cf,
    0x0d0, 0x0d1, 0x0d2, 0x0d3, 0x0d4, 0x0d5, 0x0d6, 0x0d7, 0x0d8, 0x0d9, 0x0da, 0x0db, 0x0dc, 0x0dd, 0x0de, 0x0df,
    0x0e0, 0x0e1, 0x0e2, 0x0e3, 0x0e4, 0x0e5, 0x0e6, 0x0e7, 0x0e8, 0x0e9, 0x0ea, 0x0eb, 0x0ec, 0x0ed, 0x0ee, 0x0ef,
    0x0f0, 0x0f1, 0x0f2, 0x0f3, 0x0f4, 0x0f5, 0x0f6, 0x0f7, 0x0f8, 0x0f9, 0x0fa, 0x0fb, 0x0fc, 0x0fd, 0x0fe, 0x0ff,
};

int tok_cp_byte(int32_t cp)
{
    if (cp < 0 || cp > 0x143)
        return -1;
    if (cp < 0x100)
        return tok_byte_cp[cp] == cp ? cp : -1;
    int k = cp - 0x100;   /* k-th non-printable byte: 0x00-0x20, 0x7F-0xA0, 0xAD */
    return k < 33 ? k : k < 67 ? 0x7f + (k - 33) : 0xad;
}

size_t tok_bytes_to_bl(const uint8_t *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        uint16_t c = tok_byte_cp[s[i]];
        if (c < 0x80)
            out[o++] = (char)c;
        else {
            out[o++] = (char)(0xc0 | (c >> 6));
            out[o++] = (char)(0x80 | (c & 0x3f));
        }
    }
    return o;
}

/* ---- buffers ------------------------------------------------------------------------- */

void tok_buf_reserve(tok_buf *b, size_t extra)
{
    if (b->n + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + extra)
        cap *= 2;
    b->p = dm_realloc(b->p, cap);
    b->cap = cap;
}

void tok_buf_add(tok_buf *b, const void *p, size_t n)
{
    tok_buf_reserve(b, n);
    if (n)
        memcpy(b->p + b->n, p, n);
    b->n += n;
}

void tok_ids_push(tok_ids *v, int32_t id)
{
    if (v->n == v->cap) {
        v->cap = v->cap ? v->cap * 2 : 64;
        v->p = dm_realloc(v->p, v->cap * sizeof *v->p);
    }
    v->p[v->n++] = id;
}
