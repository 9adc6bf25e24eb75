/* topk — indices of the k largest of n values, for MoE routing (k = 8 of 256)
 * and the DSA indexer (k = 2048 of up to ~200k keys). A binary heap of the k
 * best seen so far, rooted at the worst of them, costs O(n + m·log k) where
 * m is the number of replacements (small once the heap holds good values),
 * and needs no memory beyond the output array; a final heap sort puts the
 * winners in order. Order: larger value first, equal values by lower index,
 * NaN below everything (NaNs among themselves by index). */
#include "ops/ops.h"

#include <limits.h>
#include <math.h>

/* Whether element a ranks before element b. */
static bool ranks_before(const float *x, int a, int b)
{
    const float xa = x[a], xb = x[b];
    const bool na = isnan(xa), nb = isnan(xb);
    if (na || nb)
        return na && nb ? a < b : nb;
    if (xa != xb)
        return xa > xb;
    return a < b;
}

/* Restores the heap property below position i of h[0..n): every parent
 * ranks after (is worse than) its children. */
static void sift_down(const float *x, int *h, int n, int i)
{
    for (;;) {
        int worst = i, l = 2 * i + 1, r = l + 1;
        if (l < n && ranks_before(x, h[worst], h[l]))
            worst = l;
        if (r < n && ranks_before(x, h[worst], h[r]))
            worst = r;
        if (worst == i)
            return;
        int t = h[i];
        h[i] = h[worst];
        h[worst] = t;
        i = worst;
    }
}

void dm_topk(const float *x, int64_t n, int k, int *idx)
{
    DM_ASSERT(k >= 0 && k <= n && n <= INT_MAX);
    if (k == 0)
        return;
    for (int i = 0; i < k; i++)
        idx[i] = i;
    for (int i = k / 2 - 1; i >= 0; i--)
        sift_down(x, idx, k, i);
    for (int i = k; i < (int)n; i++) {
        if (ranks_before(x, i, idx[0])) {
            idx[0] = i;
            sift_down(x, idx, k, 0);
        }
    }
    /* heap sort: move the current worst to the end, shrink */
    for (int end = k - 1; end > 0; end--) {
        int t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(x, idx, end, 0);
    }
}
