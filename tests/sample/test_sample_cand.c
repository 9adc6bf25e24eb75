/* test_sample_cand — the sampler's candidate ordering (src/sample/cand.h, internal
 * to the stage) against qsort: select, sort and the streaming top-k heap on
 * random logits, many exact ties, ascending and descending input (the
 * patterns that hurt naive quickselect and heaps), and n = 1, 2. */
#include "sample/sample_check.h"
#include "sample/cand.h"

static int cmp_cand(const void *a, const void *b)
{
    const dm_cand *x = a, *y = b;
    return dm_cand_before(x, y) ? -1 : dm_cand_before(y, x) ? 1 : 0;
}

/* the id set of c[0..m) equals that of want[0..m) */
static bool same_set(const dm_cand *c, const dm_cand *want, int m, int n)
{
    static char seen[1 << 16];
    DM_ASSERT(n <= (1 << 16));
    memset(seen, 0, (size_t)n);
    for (int i = 0; i < m; i++)
        seen[want[i].id] = 1;
    for (int i = 0; i < m; i++)
        if (!seen[c[i].id]--)
            return false;
    return true;
}

static void fill(dm_cand *c, int n, int pattern, dm_rng *r)
{
    for (int i = 0; i < n; i++) {
        float l = 0;
        switch (pattern) {
        case 0: l = (float)(dm_rng_uniform(r) * 20 - 10); break;   /* random */
        case 1: l = (float)(dm_rng_next(r) % 4); break;            /* heavy ties */
        case 2: l = (float)i; break;                                 /* ascending */
        case 3: l = (float)(n - i); break;                           /* descending */
        case 4: l = 1.0f; break;                                     /* all equal */
        }
        c[i] = (dm_cand){ .w = 0, .l = l, .id = i };
    }
}

int main(void)
{
    enum { NMAX = 5000 };
    static dm_cand a[NMAX], ref[NMAX], heap[NMAX];
    static const int sizes[] = { 1, 2, 3, 17, 100, 1000, NMAX };
    static const char *names[] = { "random", "ties", "ascending", "descending", "equal" };
    dm_rng r;
    dm_rng_seed(&r, 1);
    for (int pat = 0; pat < 5; pat++) {
        for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
            int n = sizes[si];
            fill(ref, n, pat, &r);
            memcpy(a, ref, (size_t)n * sizeof *a);
            qsort(ref, (size_t)n, sizeof *ref, cmp_cand);
            dm_cand_sort(a, n);
            CHECK(memcmp(a, ref, (size_t)n * sizeof *a) == 0, "sort %s n=%d differs from qsort", names[pat], n);
            static const int ms[] = { 1, 2, 7, 40, 999 };
            for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
                int m = ms[mi] < n ? ms[mi] : n;
                fill(a, n, pat, &r);   /* same values: fill is deterministic except pattern 0/1 */
                if (pat <= 1) {         /* re-derive the reference for the fresh random values */
                    memcpy(ref, a, (size_t)n * sizeof *a);
                    qsort(ref, (size_t)n, sizeof *ref, cmp_cand);
                }
                int hn = 0;
                for (int i = 0; i < n; i++)
                    dm_cand_heap_offer(heap, &hn, m, a[i]);
                dm_cand_select(a, n, m);
                CHECK(same_set(a, ref, m, n), "select %s n=%d m=%d: wrong set", names[pat], n, m);
                CHECK(hn == m && same_set(heap, ref, m, n), "heap %s n=%d m=%d: wrong set", names[pat], n, m);
            }
        }
    }
    return check_exit("test_sample_cand");
}
