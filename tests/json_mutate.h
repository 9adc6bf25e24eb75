/* json_mutate — seeded mutations of JSON text for the parser fuzz tests
 * (config.json, tokenizer.json): byte flips, deletions, truncation, inserted
 * JSON tokens and hostile numbers (NaN, huge, negative), duplicated chunks.
 * Deterministic for a seed; the mutant is a fresh malloc'd exact-size string,
 * so AddressSanitizer catches any over-read. */
#ifndef DM_TESTS_JSON_MUTATE_H
#define DM_TESTS_JSON_MUTATE_H

#include <stdlib.h>
#include <stdint.h>
#include <string.h>

/* splitmix64: the fuzz tests' own generator (no dependency on a stage). */
typedef struct jm_rng {
    uint64_t s;
} jm_rng;

static inline uint64_t jm_next(jm_rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *const JM_TOKENS[] = {
    "0", "-1", "1e308", "-1e308", "NaN", "Infinity", "1.5", "99999999999999999999", "2147483648", "null", "true",
    "false", "\"\"", "\"x\"", "[]", "{}", "[[[[", "]]", "}", "{", ",", ":", "\"\\u0000\"", "\"\\ud800\"", "\"\xff\"",
    "\"sigmoid\"", "\"yarn\"", "\"full\"", "\"shared\"", "\"BPE\"", "\"Split\"", "\"ByteLevel\"", "\"Sequence\"",
    "\"(\"", "\"[\"", "\"\\\\p{L}\"", "\"a b\"", "[\"a\", \"b\"]",
};
#define JM_N_TOKENS (int)(sizeof JM_TOKENS / sizeof JM_TOKENS[0])

/* Returns a mutant of text (len bytes) after 1-4 random edits. */
static char *jm_mutate(jm_rng *r, const char *text, size_t len)
{
    size_t cap = len + 4096, n = len;
    char *b = malloc(cap);
    memcpy(b, text, len);
    int edits = 1 + (int)(jm_next(r) % 4);
    for (int e = 0; e < edits && n > 0; e++) {
        size_t at = jm_next(r) % n;
        switch (jm_next(r) % 6) {
        case 0: b[at] ^= (char)(1 << (jm_next(r) % 8)); break;                   /* bit flip */
        case 1: {                                                                       /* delete a run */
            size_t k = 1 + jm_next(r) % 16;
            if (k > n - at)
                k = n - at;
            memmove(b + at, b + at + k, n - at - k);
            n -= k;
            break;
        }
        case 2: n = at; break;                                                          /* truncate */
        case 3: case 4: {                                                               /* insert a token */
            const char *t = JM_TOKENS[jm_next(r) % JM_N_TOKENS];
            size_t k = strlen(t);
            if (n + k < cap) {
                memmove(b + at + k, b + at, n - at);
                memcpy(b + at, t, k);
                n += k;
            }
            break;
        }
        default: {                                                                      /* duplicate a chunk */
            size_t k = 1 + jm_next(r) % 64, from = jm_next(r) % n;
            if (k > n - from)
                k = n - from;
            if (n + k < cap) {
                memmove(b + at + k, b + at, n - at);
                memmove(b + at, b + (from >= at ? from + k : from), k);
                n += k;
            }
        }
        }
    }
    char *out = malloc(n + 1);
    memcpy(out, b, n);
    out[n] = 0;
    free(b);
    return out;
}

#endif
