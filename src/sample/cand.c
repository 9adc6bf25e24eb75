/* cand — selection and sorting of sampler candidates (see cand.h): a
 * bounded heap for top-k while gathering, an introselect (median-of-three
 * quickselect with a heapsort fallback) for growing the sorted prefix top-p
 * needs, and a heapsort. */
#include "sample/cand.h"

static void swap(dm_cand *a, dm_cand *b)
{
    dm_cand t = *a;
    *a = *b;
    *b = t;
}

/* Restores the heap below node i of c[0..n), where the root is the candidate
 * that comes LAST in dm_cand_before order (so popping it to the end sorts). */
static void sift_down(dm_cand *c, int n, int i)
{
    for (;;) {
        int big = i, l = 2 * i + 1, r = l + 1;
        if (l < n && dm_cand_before(&c[big], &c[l]))
            big = l;
        if (r < n && dm_cand_before(&c[big], &c[r]))
            big = r;
        if (big == i)
            return;
        swap(&c[i], &c[big]);
        i = big;
    }
}

void dm_cand_sort(dm_cand *c, int n)
{
    for (int i = n / 2 - 1; i >= 0; i--)
        sift_down(c, n, i);
    for (int end = n - 1; end > 0; end--) {
        swap(&c[0], &c[end]);
        sift_down(c, end, 0);
    }
}

/* Lomuto partition of c[lo..hi] around the median of c[lo], c[mid], c[hi].
 * Returns the pivot's final index p: c[lo..p) come before it, c(p..hi] after. */
static int partition(dm_cand *c, int lo, int hi)
{
    int mid = lo + (hi - lo) / 2;
    if (dm_cand_before(&c[mid], &c[lo]))
        swap(&c[mid], &c[lo]);
    if (dm_cand_before(&c[hi], &c[lo]))
        swap(&c[hi], &c[lo]);
    if (dm_cand_before(&c[mid], &c[hi]))
        swap(&c[mid], &c[hi]);   /* the median is now at hi */
    int p = lo;
    for (int i = lo; i < hi; i++)
        if (dm_cand_before(&c[i], &c[hi]))
            swap(&c[i], &c[p++]);
    swap(&c[p], &c[hi]);
    return p;
}

void dm_cand_select(dm_cand *c, int n, int m)
{
    if (m <= 0 || m >= n)
        return;
    int lo = 0, hi = n - 1, budget = 2;
    for (int k = n; k > 1; k >>= 1)
        budget += 2;   /* 2 * log2(n): far beyond what random data needs */
    while (hi > lo) {
        if (budget-- == 0) {
            dm_cand_sort(c + lo, hi - lo + 1);
            return;
        }
        int p = partition(c, lo, hi);
        if (p == m - 1 || p == m)
            return;   /* c[0..m) are exactly the m first */
        if (p < m)
            lo = p + 1;
        else
            hi = p - 1;
    }
}

void dm_cand_heap_offer(dm_cand *c, int *n, int k, dm_cand x)
{
    if (*n == k) {
        if (dm_cand_before(&x, &c[0])) {
            c[0] = x;
            sift_down(c, k, 0);
        }
        return;
    }
    int i = (*n)++;
    c[i] = x;
    while (i > 0 && dm_cand_before(&c[(i - 1) / 2], &c[i])) {   /* sift up */
        swap(&c[i], &c[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
}
