/* cand — internal to the sample stage: the candidate list the sampler
 * prunes (top-k, top-p) and draws from, and the two orderings it needs
 * without a full sort of the vocabulary: keeping the k best in a streaming
 * heap, selecting the m best of a list, and sorting a short run of them.
 * None allocates (glibc qsort may, which is why it is not used on the
 * per-token path). */
#ifndef DM_SAMPLE_CAND_H
#define DM_SAMPLE_CAND_H

#include <stdbool.h>
#include <stdint.h>

typedef struct dm_cand {
    double w;     /* unnormalised probability exp((l - l_max) / T) */
    float l;      /* logit after penalties and bias (never NaN) */
    int32_t id;   /* token id */
} dm_cand;

/* The candidate order: higher logit first, then lower id. A strict total
 * order on distinct ids, so selection and sorting are deterministic. */
static inline bool dm_cand_before(const dm_cand *a, const dm_cand *b)
{
    return a->l > b->l || (a->l == b->l && a->id < b->id);
}

/* Reorders c[0..n) so that c[0..m) holds the m first candidates in
 * dm_cand_before order (in no particular order among themselves).
 * Expected O(n); falls back to heapsort past a recursion budget. */
void dm_cand_select(dm_cand *c, int n, int m);

/* Sorts c[0..n) into dm_cand_before order; O(n log n) worst case. */
void dm_cand_sort(dm_cand *c, int n);

/* Top-k in one streaming pass: c[0..*n) is a heap holding the (at most k)
 * first candidates offered so far, its root c[0] the last of them. Offering
 * x costs one comparison unless x displaces the root (O(log k)). */
void dm_cand_heap_offer(dm_cand *c, int *n, int k, dm_cand x);

#endif
