/* check — the tiny harness C tests share: CHECK records a failure with its
 * location and message and carries on, so one run reports every failure;
 * check_finish prints the verdict and gives main its exit code. */
#ifndef DM_TESTS_CHECK_H
#define DM_TESTS_CHECK_H

#include <stdio.h>

static int check_failures = 0;

#define CHECK(cond, ...)                                                 \
    do {                                                                 \
        if (!(cond)) {                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);         \
            fprintf(stderr, __VA_ARGS__);                                \
            fputc('\n', stderr);                                         \
            check_failures++;                                            \
        }                                                                \
    } while (0)

static inline int check_finish(const char *name)
{
    if (check_failures) {
        fprintf(stderr, "%s: %d failure(s)\n", name, check_failures);
        return 1;
    }
    printf("%s: ok\n", name);
    return 0;
}

#endif
