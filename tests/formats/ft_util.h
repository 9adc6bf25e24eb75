/* ft_util — small helpers shared by the formats tests: a failure counter that
 * prints what failed, a seeded PRNG, and scratch directories under
 * $DM_TEST_TMP. Header-only (static functions): each test is one program. */
#ifndef FT_UTIL_H
#define FT_UTIL_H

#include "formats/formats.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int ft_failures;

/* Records a failure when !cond, printing the formatted reason. */
static inline bool ft_check(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline bool ft_check(bool cond, const char *fmt, ...)
{
    if (cond)
        return true;
    fflush(stdout);
    if (ft_failures < 50) {
        va_list ap;
        va_start(ap, fmt);
        fprintf(stderr, "FAIL: ");
        vfprintf(stderr, fmt, ap);
        fputc('\n', stderr);
        va_end(ap);
    } else if (ft_failures == 50) {
        fprintf(stderr, "FAIL: (further failures not printed)\n");
    }
    ft_failures++;
    return false;
}

static inline int ft_finish(const char *name)
{
    if (ft_failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", name, ft_failures);
        return 1;
    }
    printf("%s: all checks passed\n", name);
    return 0;
}

/* splitmix64: a seeded generator, so every run tests the same values. */
static uint64_t ft_rng_state = 0x9e3779b97f4a7c15ull;
static inline void ft_seed(uint64_t s) { ft_rng_state = s; }
static inline uint64_t ft_rand(void)
{
    uint64_t z = (ft_rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline double ft_uniform(void) { return (double)(ft_rand() >> 11) * 0x1p-53; }   /* [0, 1) */
static inline uint64_t ft_below(uint64_t n) { return n ? ft_rand() % n : 0; }

static inline void ft_mkdir_p(const char *path)
{
    char *p = dm_strdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
    free(p);
}

/* A fresh, empty scratch directory $DM_TEST_TMP/<name> (malloc'd path). */
static inline char *ft_scratch(const char *name)
{
    const char *root = getenv("DM_TEST_TMP");
    char *base = dm_strdup(root && *root ? root : "/tmp/dm_test_formats");
    char *dir = dm_path_join(base, name);
    dm_remove_tree(dir);
    ft_mkdir_p(dir);
    free(base);
    return dir;
}

static inline int ft_write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return (fclose(f) == 0 && w == n) ? 0 : -1;
}

#endif
