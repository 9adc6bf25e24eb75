/* err — one-line error messages carried up to the CLI, and the always-on
 * assertion used for programming bugs. */
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int dm_errorf(dm_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int dm_err_prefix(dm_err *err, const char *fmt, ...)
{
    if (!err)
        return -1;
    char prefix[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    /* truncation is acceptable: the message stays a readable one-liner */
    size_t n = strlen(prefix);
    if (n > sizeof err->msg - 3)
        n = sizeof err->msg - 3;
    memcpy(err->msg, prefix, n);
    err->msg[n] = ':';
    err->msg[n + 1] = ' ';
    size_t room = sizeof err->msg - n - 3;
    size_t m = strnlen(old, room);
    memcpy(err->msg + n + 2, old, m);
    err->msg[n + 2 + m] = 0;
    return -1;
}

void dm_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "demolish: internal error: assertion '%s' failed at %s:%d\n", expr, file, line);
    abort();
}
