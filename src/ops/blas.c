/* blas — the one door to OpenBLAS. demolish parallelizes with OpenMP around
 * its BLAS calls (per row, per head block), so OpenBLAS must run each call on
 * the calling thread; its own thread pool busy-waits (sched_yield) against
 * OpenMP's and, measured on the 0.9B benchmark model, took a third of the
 * prefill time. */
#include "ops/ops.h"

#include <cblas.h>
#include <pthread.h>

static pthread_once_t g_blas_once = PTHREAD_ONCE_INIT;

static void blas_init(void) { openblas_set_num_threads(1); }

void dm_sgemm(int M, int N, int K, float alpha, const float *A, int lda, const float *B, int ldb, bool trans_b,
              float beta, float *C, int ldc)
{
    pthread_once(&g_blas_once, blas_init);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb,
                beta, C, ldc);
}
