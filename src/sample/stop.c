/* stop — stop strings for streamed generation. Text arrives in pieces (one
 * token's bytes at a time); a stop string may straddle pieces or sit inside
 * one. The matcher releases every byte that can no longer belong to a stop
 * string and holds back the longest tail that is still a proper prefix of
 * one, so a client never sees the start of a stop string that then
 * completes. Used by generate and serve after detokenisation. */
#include "sample/sample.h"

#include <stdlib.h>
#include <string.h>

struct dm_stop {
    char **str;       /* [n] the non-empty stop strings */
    size_t *len;      /* [n] their lengths */
    int n;
    size_t max_len;   /* longest stop string; 0 when there are none */
    char *buf;        /* [cap] buf[0..off) released last call, buf[off..used) held */
    size_t cap, used, off;
    bool stopped;
};

dm_stop *dm_stop_new(const char *const *stop_strings, int n)
{
    DM_ASSERT(n >= 0 && (n == 0 || stop_strings));
    dm_stop *s = dm_calloc(1, sizeof *s);
    s->str = dm_calloc((size_t)n, sizeof *s->str);
    s->len = dm_calloc((size_t)n, sizeof *s->len);
    for (int i = 0; i < n; i++) {
        DM_ASSERT(stop_strings[i]);
        size_t len = strlen(stop_strings[i]);
        if (len == 0)
            continue;   /* an empty string would stop before the first byte */
        s->str[s->n] = dm_strdup(stop_strings[i]);
        s->len[s->n++] = len;
        if (len > s->max_len)
            s->max_len = len;
    }
    s->cap = 64 + 2 * s->max_len;
    s->buf = dm_malloc(s->cap);
    return s;
}

void dm_stop_free(dm_stop *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++)
        free(s->str[i]);
    free(s->str);
    free(s->len);
    free(s->buf);
    free(s);
}

/* The first start of needle[0..k) in hay[0..n), or n when absent (memmem
 * is a GNU extension, and the haystack here is one piece plus a short tail). */
static size_t find(const char *hay, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; i + k <= n; i++) {
        const char *p = memchr(hay + i, needle[0], n - k - i + 1);
        if (!p)
            break;
        i = (size_t)(p - hay);
        if (memcmp(p, needle, k) == 0)
            return i;
    }
    return n;
}

/* Start of the stop string that completes first in buf[0..used) (ties: the
 * one that starts earlier), or used when none does. Going by the end makes
 * the result the same however the text was cut into pieces: fed byte by
 * byte, the matcher would have stopped right there. */
static size_t first_match(const dm_stop *s)
{
    size_t best = s->used, best_end = SIZE_MAX;
    for (int i = 0; i < s->n; i++) {
        size_t at = find(s->buf, s->used, s->str[i], s->len[i]);
        if (at == s->used)
            continue;
        size_t end = at + s->len[i];
        if (end < best_end || (end == best_end && at < best)) {
            best = at;
            best_end = end;
        }
    }
    return best;
}

/* The start of the longest tail of buf[0..used) that is a proper prefix of
 * some stop string (used when there is none). Only the last max_len - 1
 * bytes can start such a tail. */
static size_t hold_start(const dm_stop *s)
{
    size_t j = s->used >= s->max_len ? s->used - s->max_len + 1 : 0;
    for (; j < s->used; j++) {
        size_t tail = s->used - j;
        for (int i = 0; i < s->n; i++)
            if (s->len[i] > tail && memcmp(s->buf + j, s->str[i], tail) == 0)
                return j;
    }
    return s->used;
}

/* Drops the bytes released by the previous call (their pointer was valid
 * until now) and makes room for len more. */
static void compact(dm_stop *s, size_t len)
{
    memmove(s->buf, s->buf + s->off, s->used - s->off);
    s->used -= s->off;
    s->off = 0;
    if (s->used + len > s->cap) {
        s->cap = 2 * (s->used + len);
        s->buf = dm_realloc(s->buf, s->cap);
    }
}

bool dm_stop_feed(dm_stop *s, const char *bytes, size_t len, const char **emit, size_t *emit_len)
{
    compact(s, s->stopped ? 0 : len);
    *emit = s->buf;
    *emit_len = 0;
    if (s->stopped)
        return true;
    if (len > 0)
        memcpy(s->buf + s->used, bytes, len);
    s->used += len;
    size_t m = first_match(s);
    if (m < s->used) {
        s->stopped = true;
        *emit_len = m;
        s->off = s->used;   /* the stop string and what follows are dropped */
        return true;
    }
    s->off = hold_start(s);
    *emit_len = s->off;
    return false;
}

void dm_stop_flush(dm_stop *s, const char **emit, size_t *emit_len)
{
    *emit = s->buf + s->off;
    *emit_len = s->stopped ? 0 : s->used - s->off;
    s->off = s->used;
}
