/* test_topk — dm_topk against a full sort (qsort with the same order: larger
 * value first, ties to the lower index, NaN after everything, NaNs by index):
 * random values, heavy ties, ±inf, NaN, k = 0, 1, k = n, all-equal and
 * all-NaN inputs, and the DSA indexer's size (n = 200000, k = 2048). The
 * result must equal the sort's first k indices exactly. */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int g_fail;
static const float *g_x;

static uint64_t g_rng = 0xD1B54A32D192ED03ull;
static double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1p-53;
}

static int cmp_rank(const void *pa, const void *pb)
{
    int a = *(const int *)pa, b = *(const int *)pb;
    float xa = g_x[a], xb = g_x[b];
    bool na = isnan(xa), nb = isnan(xb);
    if (na != nb)
        return na ? 1 : -1;
    if (!na && xa != xb)
        return xa > xb ? -1 : 1;
    return a < b ? -1 : a > b;
}

static void check(const char *what, const float *x, int64_t n, int k)
{
    int *all = malloc((size_t)n * sizeof(int) + 1), *got = malloc((size_t)k * sizeof(int) + 1);
    for (int64_t i = 0; i < n; i++)
        all[i] = (int)i;
    g_x = x;
    qsort(all, (size_t)n, sizeof(int), cmp_rank);
    dm_topk(x, n, k, got);
    for (int i = 0; i < k; i++)
        if (got[i] != all[i]) {
            printf("FAIL %s n=%lld k=%d: position %d is index %d (%g), want %d (%g)\n", what,
                   (long long)n, k, i, got[i], x[got[i]], all[i], x[all[i]]);
            g_fail++;
            break;
        }
    free(all);
    free(got);
}

int main(void)
{
    const int64_t n = 1000;
    float *x = malloc(200000 * sizeof(float));
    static const int ks[] = { 0, 1, 2, 8, 100, 999, 1000 };

    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(urand() * 2 - 1);
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
        check("random", x, n, ks[j]);

    for (int64_t i = 0; i < n; i++)   /* 7 distinct values: ties everywhere */
        x[i] = (float)(int)(urand() * 7);
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
        check("ties", x, n, ks[j]);

    for (int64_t i = 0; i < n; i++) {
        double u = urand();
        x[i] = u < 0.1 ? NAN : u < 0.15 ? INFINITY : u < 0.2 ? -INFINITY : (float)(u * 3);
    }
    for (size_t j = 0; j < sizeof ks / sizeof ks[0]; j++)
        check("nan/inf", x, n, ks[j]);

    for (int64_t i = 0; i < n; i++)
        x[i] = 0.5f;
    check("all equal", x, n, 10);
    for (int64_t i = 0; i < n; i++)
        x[i] = NAN;
    check("all nan", x, n, 10);
    x[500] = -INFINITY;
    check("nan but one -inf", x, n, 3);

    for (int64_t i = 0; i < 200000; i++)
        x[i] = (float)(urand() * 100 - 50);
    check("indexer size", x, 200000, 2048);
    for (int64_t i = 0; i < 200000; i++)   /* ascending: every element replaces the root */
        x[i] = (float)i;
    check("ascending", x, 200000, 2048);

    free(x);
    if (g_fail) {
        printf("test_topk: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_topk: all passed\n");
    return 0;
}
