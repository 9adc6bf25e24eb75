/* split — names of splits and domains, the corpus hash and the split rule
 * (corpus.h): a document's split depends only on its identity, so it never
 * moves when other documents come or go, and does not depend on the seed. */
#include "corpus/corpus_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* Per-mille thresholds: [0, 940) train, [940, 970) val, [970, 1000) test. */
#define SPLIT_TRAIN_PERMILLE 940
#define SPLIT_VAL_PERMILLE 30

static const char *const split_names[DM_SPLIT_COUNT] = { "train", "val", "test" };
static const char *const domain_names[DM_DOMAIN_COUNT] = { "code", "prose", "reasoning" };

const char *dm_split_name(dm_split s)
{
    DM_ASSERT(s >= 0 && s < DM_SPLIT_COUNT);
    return split_names[s];
}

int dm_split_parse(const char *name)
{
    for (int i = 0; i < DM_SPLIT_COUNT; i++)
        if (!strcmp(name, split_names[i]))
            return i;
    return -1;
}

const char *dm_domain_name(dm_domain d)
{
    DM_ASSERT(d >= 0 && d < DM_DOMAIN_COUNT);
    return domain_names[d];
}

int dm_domain_parse(const char *name)
{
    for (int i = 0; i < DM_DOMAIN_COUNT; i++)
        if (!strcmp(name, domain_names[i]))
            return i;
    return -1;
}

uint64_t cp_mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

uint64_t dm_corpus_hash(const void *p, size_t n)
{
    return cp_mix64(dm_fnv1a64(p, n));
}

dm_split dm_split_of(const void *identity, size_t n)
{
    unsigned b = (unsigned)(dm_corpus_hash(identity, n) % 1000);
    if (b < SPLIT_TRAIN_PERMILLE)
        return DM_SPLIT_TRAIN;
    return b < SPLIT_TRAIN_PERMILLE + SPLIT_VAL_PERMILLE ? DM_SPLIT_VAL : DM_SPLIT_TEST;
}

char *dm_corpus_split_path(const char *corpus_dir, dm_split s)
{
    char *name = dm_asprintf("%s.jsonl", dm_split_name(s));
    char *p = dm_path_join(corpus_dir, name);
    free(name);
    return p;
}

/* ---- growable strings ---- */

void cp_str_add(cp_str *s, const void *p, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->n + n + 1)
            cap *= 2;
        s->p = dm_realloc(s->p, cap);
        s->cap = cap;
    }
    memcpy(s->p + s->n, p, n);
    s->n += n;
    s->p[s->n] = 0;
}

void cp_str_addf(cp_str *s, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    DM_ASSERT(k >= 0 && (size_t)k < sizeof buf);
    cp_str_add(s, buf, (size_t)k);
}

/* ---- hash sets ---- */

static void hashset_grow(cp_hashset *s)
{
    size_t cap = s->cap ? s->cap * 2 : 1024;
    uint64_t *slot = dm_calloc(cap, sizeof *slot);
    for (size_t i = 0; i < s->cap; i++) {
        uint64_t h = s->slot[i];
        if (!h)
            continue;
        size_t j = (size_t)(h & (cap - 1));
        while (slot[j])
            j = (j + 1) & (cap - 1);
        slot[j] = h;
    }
    free(s->slot);
    s->slot = slot;
    s->cap = cap;
}

bool cp_hashset_add(cp_hashset *s, uint64_t h)
{
    if (h == 0) {
        bool fresh = !s->has_zero;
        s->has_zero = true;
        return fresh;
    }
    if (2 * (s->n + 1) > s->cap)
        hashset_grow(s);
    size_t j = (size_t)(h & (s->cap - 1));
    while (s->slot[j]) {
        if (s->slot[j] == h)
            return false;
        j = (j + 1) & (s->cap - 1);
    }
    s->slot[j] = h;
    s->n++;
    return true;
}

void cp_hashset_free(cp_hashset *s)
{
    free(s->slot);
    memset(s, 0, sizeof *s);
}
