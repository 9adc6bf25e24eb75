/* mem — allocation wrappers. Running out of memory is not something the
 * library can recover from meaningfully, so these abort with a message. */
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static void *check(void *p, size_t n)
{
    if (!p && n) {
        fprintf(stderr, "demolish: out of memory (asked for %zu bytes)\n", n);
        abort();
    }
    return p;
}

void *dm_malloc(size_t n) { return check(malloc(n ? n : 1), n); }
void *dm_calloc(size_t count, size_t size) { return check(calloc(count ? count : 1, size ? size : 1), count * size); }
void *dm_realloc(void *p, size_t n) { return check(realloc(p, n ? n : 1), n); }

char *dm_strdup(const char *s) { return dm_strndup(s, strlen(s)); }

char *dm_strndup(const char *s, size_t n)
{
    char *d = dm_malloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void *dm_aligned_alloc(size_t n)
{
    size_t rounded = (n + 63) & ~(size_t)63;
    void *p = NULL;
    if (posix_memalign(&p, 64, rounded ? rounded : 64) != 0)
        check(NULL, n);
    memset(p, 0, rounded ? rounded : 64);
    return p;
}

void dm_aligned_free(void *p) { free(p); }

char *dm_asprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    DM_ASSERT(n >= 0);
    char *s = dm_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}
