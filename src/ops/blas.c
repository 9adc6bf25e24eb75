/* blas — the one door to OpenBLAS. demolish parallelizes with OpenMP around
 * its BLAS calls (per row, per head block), so OpenBLAS must run each call on
 * the calling thread; its own thread pool busy-waits (sched_yield) against
 * OpenMP's and, measured on the 0.9B benchmark model, took a third of the
 * prefill time.
 *
 * dm_sgemm_mt (training) is the multithreaded product: C is cut into a grid
 * of tiles and each tile is one single-threaded cblas_sgemm call, tiles
 * handed to OpenMP threads dynamically. The grid depends only on (M, N, K),
 * never on the thread count, so every element of C comes from the same BLAS
 * call on the same operands whichever thread runs it: results are bitwise
 * identical for any thread count (tests/ops/test_backward.c checks 1/2/3). */
#include "ops/ops_isa.h"

#include <cblas.h>
#include <pthread.h>
#ifdef _OPENMP
#define OMP(directive) _Pragma(directive)
#else
#define OMP(directive)
#endif

static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void) { openblas_set_num_threads(1); }

void dm_sgemm(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, bool trans_b,
              float beta, float *C, int ldc)
{
    pthread_once(&g_blas_once, blas_init);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}

/* Tiling of dm_sgemm_mt. A tile is split in two (along its longer side,
 * keeping multiples of MT_ALIGN) while the grid has fewer than
 * MT_TARGET_TILES tiles, the side is at least 2·MT_MIN_SIDE and the halves
 * keep MT_MIN_TILE_MACS each. Every tile call packs its own MB×K and K×NB
 * panels (one whole-matrix call packs each operand once), so tiles cost
 * speed: measured on this 2-core machine, one thread over the tiles of
 * training shapes (M, N, K in 512..4096) ran at ~85% of one whole-matrix
 * cblas_sgemm with 16 tiles of side >= 128, ~80% with 32, ~72% with 64 of
 * side >= 64. 16 tiles under dynamic scheduling serve up to ~8 threads
 * well; for many more cores raise MT_TARGET_TILES (results then change by
 * rounding once, and stay independent of the thread count). */
enum { MT_TARGET_TILES = 16, MT_MIN_SIDE = 128, MT_ALIGN = 16 };
#define MT_MIN_TILE_MACS (1 << 20)
#define MT_MIN_MACS (1 << 21)   /* products below this: one tile, one thread */

static int cdiv(int a, int b) { return (a + b - 1) / b; }

static int half_side(int s) { return cdiv(cdiv(s, 2), MT_ALIGN) * MT_ALIGN; }

/* Tile sides (mb, nb) for C[M][N] with K terms: a function of the shape only. */
static void mt_tiles(int M, int N, int K, int *mb, int *nb)
{
    *mb = M, *nb = N;
    if ((double)M * N * K < MT_MIN_MACS)
        return;
    while (cdiv(M, *mb) * cdiv(N, *nb) < MT_TARGET_TILES) {
        const bool can_m = *mb >= 2 * MT_MIN_SIDE, can_n = *nb >= 2 * MT_MIN_SIDE;
        int m2 = *mb, n2 = *nb;
        if (can_m && (*mb >= *nb || !can_n))
            m2 = half_side(*mb);
        else if (can_n)
            n2 = half_side(*nb);
        else
            break;
        if ((double)m2 * n2 * K < MT_MIN_TILE_MACS)
            break;
        *mb = m2, *nb = n2;
    }
}

void dm_sgemm_mt(int M, int N, int K, float alpha, const float *A, int lda, bool trans_a, const float *B, int ldb,
                 bool trans_b, float beta, float *C, int ldc)
{
    DM_ASSERT(M >= 0 && N >= 0 && K >= 0);
    DM_ASSERT(lda >= (trans_a ? M : K) && lda >= 1 && ldb >= (trans_b ? K : N) && ldb >= 1 && ldc >= N && ldc >= 1);
    if (M == 0 || N == 0)
        return;
    pthread_once(&g_blas_once, blas_init);
    int mb, nb;
    mt_tiles(M, N, K, &mb, &nb);
    const int tm = cdiv(M, mb), tn = cdiv(N, nb), ntile = tm * tn;
    int nth = dm_ops_threads((double)M * N * K, MT_MIN_MACS);
    if (nth > ntile)
        nth = ntile;
OMP("omp parallel for num_threads(nth) if (nth > 1) schedule(dynamic, 1)")
    for (int tile = 0; tile < ntile; tile++) {
        const int i0 = tile / tn * mb, j0 = tile % tn * nb;
        const int m = M - i0 < mb ? M - i0 : mb, n = N - j0 < nb ? N - j0 : nb;
        const float *a = trans_a ? A + i0 : A + (size_t)i0 * lda;    /* A [K][M] or [M][K] */
        const float *b = trans_b ? B + (size_t)j0 * ldb : B + j0;    /* B [N][K] or [K][N] */
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, m, n,
                    K, alpha, a, lda, b, ldb, beta, C + (size_t)i0 * ldc + j0, ldc);
    }
}
