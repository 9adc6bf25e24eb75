/* test_sgemm_mt — dm_sgemm_mt (training's multithreaded f32 GEMM) against a
 * naive float64 product written here, for all four transpose combinations,
 * odd sizes (1, primes, sizes just past a tile or SIMD width, K = 0), padded
 * leading dimensions, alpha/beta pairs including beta = 0 over a C full of
 * NaN (must be overwritten, not read) and beta = 1 (accumulate, dW += dYᵀX);
 * then the determinism contract: bitwise identical C for 1, 2 and 3 threads
 * and when called from inside an OpenMP parallel region, on shapes that are
 * cut into several tiles of unequal size.
 *
 * Tolerance: the classical bound for any summation order in f32,
 *   |C − C64| <= GEMM_U · (K + GEMM_EXTRA) · (|α|·Σ_k |a·b| + |β·c|),
 * GEMM_U the unit roundoff 2⁻²⁴ and GEMM_EXTRA the roundings outside the
 * K-term sum (alpha scaling, beta term, one partial-sum add per K block). */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define GEMM_U 0x1p-24
#define GEMM_EXTRA 8

static int g_fail;
static double g_worst;   /* worst err / bound */

static uint64_t g_rng = 0x853C49E6748FEA9Bull;
static double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1p-53;
}

static float *rand_mat(int64_t n)
{
    float *v = malloc((size_t)(n + 1) * 4);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(2 * urand() - 1);
    return v;
}

typedef struct gemm_case {
    int M, N, K;
    bool ta, tb;
    int lda, ldb, ldc;
    const float *A, *B;
} gemm_case;

static double a_at(const gemm_case *g, int i, int k) { return g->ta ? g->A[(size_t)k * g->lda + i] : g->A[(size_t)i * g->lda + k]; }
static double b_at(const gemm_case *g, int k, int j) { return g->tb ? g->B[(size_t)j * g->ldb + k] : g->B[(size_t)k * g->ldb + j]; }

/* Runs one (alpha, beta) and compares every element of C with the float64 product. */
static void check_case(const gemm_case *g, float alpha, float beta)
{
    const size_t nc = (size_t)g->M * g->ldc;
    float *C0 = rand_mat((int64_t)nc), *C = malloc((nc + 1) * 4);
    if (beta == 0.0f)
        for (size_t i = 0; i < nc; i++)
            C0[i] = NAN;
    memcpy(C, C0, nc * 4);
    dm_sgemm_mt(g->M, g->N, g->K, alpha, g->A, g->lda, g->ta, g->B, g->ldb, g->tb, beta, C, g->ldc);
    for (int i = 0; i < g->M; i++)
        for (int j = 0; j < g->ldc; j++) {
            const size_t at = (size_t)i * g->ldc + j;
            if (j >= g->N) {   /* padding columns untouched */
                if (memcmp(&C[at], &C0[at], 4) != 0) {
                    printf("FAIL padding C[%d][%d] written\n", i, j);
                    g_fail++;
                    goto out;
                }
                continue;
            }
            double s = 0, mag = 0;
            for (int k = 0; k < g->K; k++) {
                const double p = a_at(g, i, k) * b_at(g, k, j);
                s += p, mag += fabs(p);
            }
            const double c0 = beta == 0.0f ? 0.0 : C0[at];
            const double want = alpha * s + beta * c0;
            const double bound = GEMM_U * (g->K + GEMM_EXTRA) * (fabs(alpha) * mag + fabs(beta * c0));
            const double err = fabs(C[at] - want);
            g_worst = fmax(g_worst, bound > 0 ? err / bound : 0);
            if (!(err <= bound)) {
                printf("FAIL dm_sgemm_mt M %d N %d K %d ta %d tb %d alpha %g beta %g: C[%d][%d] = %.9g, want %.9g "
                       "(err %.3g > %.3g)\n",
                       g->M, g->N, g->K, g->ta, g->tb, alpha, beta, i, j, C[at], want, err, bound);
                g_fail++;
                goto out;
            }
        }
out:
    free(C0), free(C);
}

/* A and B with padded leading dimensions for the given transposes. */
static gemm_case make_case(int M, int N, int K, bool ta, bool tb, int pad)
{
    gemm_case g = { M, N, K, ta, tb, 0, 0, N + pad, NULL, NULL };
    g.lda = (ta ? M : K) + pad;
    g.ldb = (tb ? K : N) + pad;
    if (g.lda < 1)
        g.lda = 1;
    if (g.ldb < 1)
        g.ldb = 1;
    if (g.ldc < 1)
        g.ldc = 1;
    g.A = rand_mat((int64_t)(ta ? K : M) * g.lda);
    g.B = rand_mat((int64_t)(tb ? N : K) * g.ldb);
    return g;
}

static void free_case(gemm_case *g) { free((void *)g->A), free((void *)g->B); }

static void test_accuracy(void)
{
    static const int shapes[][3] = { { 1, 1, 1 },   { 3, 5, 7 },     { 17, 33, 9 },   { 65, 1, 130 },
                                     { 1, 77, 65 }, { 130, 67, 257 }, { 300, 200, 150 }, { 9, 11, 0 } };
    static const float ab[][2] = { { 1, 0 }, { -0.5f, 1 }, { 0.75f, 0.25f } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            gemm_case g = make_case(shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t & 2, (int)(s % 3) * 3);
            for (int k = 0; k < 3; k++)
                check_case(&g, ab[k][0], ab[k][1]);
            free_case(&g);
        }
}

/* C for a thread count (0: from inside an OpenMP parallel region), beta 1 on a fixed C. */
static float *run_threads(const gemm_case *g, const float *Cinit, int threads)
{
    const size_t nc = (size_t)g->M * g->ldc;
    float *C = malloc(nc * 4);
    memcpy(C, Cinit, nc * 4);
    dm_threads_set(threads > 0 ? threads : 2);
    if (threads > 0) {
        dm_sgemm_mt(g->M, g->N, g->K, 0.5f, g->A, g->lda, g->ta, g->B, g->ldb, g->tb, 1.0f, C, g->ldc);
    } else {
#pragma omp parallel num_threads(2)
        {
#ifdef _OPENMP
            if (omp_get_thread_num() == 0)
#endif
                dm_sgemm_mt(g->M, g->N, g->K, 0.5f, g->A, g->lda, g->ta, g->B, g->ldb, g->tb, 1.0f, C, g->ldc);
        }
    }
    return C;
}

static void test_determinism(void)
{
    static const int shapes[][3] = { { 300, 200, 150 }, { 513, 257, 96 }, { 200, 300, 500 }, { 33, 1000, 256 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int t = 0; t < 4; t++) {
            gemm_case g = make_case(shapes[s][0], shapes[s][1], shapes[s][2], t & 1, t & 2, 1);
            float *Cinit = rand_mat((int64_t)g.M * g.ldc);
            float *ref = run_threads(&g, Cinit, 1);
            for (int th = 0; th <= 3; th++) {
                if (th == 1)
                    continue;
                float *C = run_threads(&g, Cinit, th);
                if (memcmp(C, ref, (size_t)g.M * g.ldc * 4) != 0) {
                    printf("FAIL dm_sgemm_mt M %d N %d K %d ta %d tb %d: %s differs from 1 thread\n", g.M, g.N,
                           g.K, g.ta, g.tb, th == 0 ? "inside a parallel region" : th == 2 ? "2 threads" : "3 threads");
                    g_fail++;
                }
                free(C);
            }
            free(ref), free(Cinit), free_case(&g);
        }
    dm_threads_set(2);
}

int main(void)
{
    dm_threads_set(2);
    test_accuracy();
    test_determinism();
    printf("worst error / bound: %.3g\n", g_worst);
    if (g_fail) {
        printf("test_sgemm_mt: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_sgemm_mt: all passed\n");
    return 0;
}
