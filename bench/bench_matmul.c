/* bench_matmul — how fast dm_matmul runs, per weight format, against the
 * machine's memory bandwidth (decode) and its arithmetic (prefill).
 *
 *   bench_matmul [-f fmt]... [-q]
 *
 * Prints: the memory-read bandwidth (a sum over 512 MiB read as four
 * streams per thread, 1 and 2 threads); decode (T = 1) GB/s of weight bytes
 * and % of that bandwidth for a 4096×4096 matrix and MoE-expert-sized ones
 * (2048×6144 gate/up, 6144×2048 down), rotating over copies that total
 * >= 512 MiB so weights come from DRAM ("cold") as in a real model, plus the
 * same matrix repeated ("hot", cache-resident); prefill (T = 128, 512)
 * GFLOP/s of dm_matmul and, where the CPU has AVX512_BF16, of the bf16-dot
 * kernel; and OpenBLAS sgemm on an f32 matrix of the same size.
 * -q: fewer repetitions. */
#include "ops/ops_isa.h"

#include <cblas.h>
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define COLD_BYTES ((size_t)512 << 20)

static int g_reps = 5;

static uint64_t g_rng = 88172645463325252ull;
static float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) * 0x1p-53 * 2 - 1);
}

/* Sum of n 64-bit words (n a multiple of 32) read as four concurrent
 * sequential streams (the quarters of the range), with AVX2 loads when the
 * CPU has them. One stream per core stays short of what the memory system
 * delivers (the prefetcher runs only so far ahead of each stream); the
 * matmul kernels read four rows at once, so this is the fair comparison. */
__attribute__((target("avx2"))) static uint64_t sum_avx2(const uint64_t *p, size_t n)
{
    const size_t q = n / 4;
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    for (size_t i = 0; i < q; i += 8) {
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + q + i)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + 2 * q + i)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + 3 * q + i)));
        a = _mm256_add_epi64(a, _mm256_load_si256((const __m256i *)(p + i + 4)));
        b = _mm256_add_epi64(b, _mm256_load_si256((const __m256i *)(p + q + i + 4)));
        c = _mm256_add_epi64(c, _mm256_load_si256((const __m256i *)(p + 2 * q + i + 4)));
        d = _mm256_add_epi64(d, _mm256_load_si256((const __m256i *)(p + 3 * q + i + 4)));
    }
    uint64_t out[4];
    _mm256_storeu_si256((__m256i *)out, _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d)));
    return out[0] + out[1] + out[2] + out[3];
}

static uint64_t sum_words(const uint64_t *p, size_t n)
{
    if (dm_cpu()->avx2)
        return sum_avx2(p, n);
    uint64_t s = 0;
    for (size_t i = 0; i < n; i++)
        s += p[i];
    return s;
}

/* Best-of-reps GB/s of summing a COLD_BYTES buffer with nth threads. */
static double read_bandwidth(int nth)
{
    size_t n = COLD_BYTES / 8;
    uint64_t *buf = dm_aligned_alloc(n * 8);
    for (size_t i = 0; i < n; i++)
        buf[i] = i;
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < g_reps; rep++) {
        double t0 = dm_time_sec();
        uint64_t total = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nth) reduction(+ : total)
#endif
        {
            int id = 0, nt = 1;
#ifdef _OPENMP
            id = omp_get_thread_num(), nt = omp_get_num_threads();
#endif
            size_t part = n / (size_t)nt / 32 * 32;
            total += sum_words(buf + part * (size_t)id, id == nt - 1 ? n - part * (size_t)id : part);
        }
        double dt = dm_time_sec() - t0;
        sink += total;
        if (n * 8 / dt / 1e9 > best)
            best = n * 8 / dt / 1e9;
    }
    (void)sink;
    dm_aligned_free(buf);
    return best;
}

typedef struct wcopy {
    uint8_t *data, *scale;
    dm_wmat w;
} wcopy;

/* ncopy copies of one random [N][K] matrix in format f. */
static wcopy *make_copies(dm_wfmt f, int64_t N, int64_t K, int ncopy)
{
    float *src = malloc((size_t)(N * K) * 4);
    for (int64_t i = 0; i < N * K; i++)
        src[i] = frand() * 0.05f;
    size_t db = dm_wfmt_data_bytes(f, N, K), sb = dm_wfmt_scale_bytes(f, N, K);
    wcopy *c = calloc((size_t)ncopy, sizeof *c);
    float s2;
    for (int i = 0; i < ncopy; i++) {
        c[i].data = dm_aligned_alloc(db);
        c[i].scale = dm_aligned_alloc(sb ? sb : 64);
        if (i == 0)
            dm_wmat_encode(f, src, N, K, c[i].data, c[i].scale, &s2);
        else {
            memcpy(c[i].data, c[0].data, db);
            memcpy(c[i].scale, c[0].scale, sb);
        }
        c[i].w = dm_wmat_make(f, N, K, c[i].data, sb ? c[i].scale : NULL, s2);
    }
    free(src);
    return c;
}

static void free_copies(wcopy *c, int ncopy)
{
    for (int i = 0; i < ncopy; i++) {
        dm_aligned_free(c[i].data);
        dm_aligned_free(c[i].scale);
    }
    free(c);
}

static size_t wbytes(const dm_wmat *w)
{
    return dm_wfmt_data_bytes(w->fmt, w->rows, w->cols) + dm_wfmt_scale_bytes(w->fmt, w->rows, w->cols);
}

/* Seconds per call of dm_matmul over the copies in turn (best of reps). */
/* Seconds per call (best of reps) of dm_matmul, or with isa set of
 * dm_matmul_isa(isa, act), over the copies in turn. */
static double time_matmul_isa(const dm_mm_isa *isa, dm_mm_act act, wcopy *c, int ncopy, int T, float *y,
                              const float *x, int calls)
{
    double best = 1e30;
    for (int rep = 0; rep < g_reps; rep++) {
        double t0 = dm_time_sec();
        for (int i = 0; i < calls; i++) {
            if (isa)
                dm_matmul_isa(isa, act, y, x, &c[i % ncopy].w, T);
            else
                dm_matmul(y, x, &c[i % ncopy].w, T);
        }
        double dt = (dm_time_sec() - t0) / calls;
        best = dt < best ? dt : best;
    }
    return best;
}

static double time_matmul(wcopy *c, int ncopy, int T, float *y, const float *x, int calls)
{
    return time_matmul_isa(NULL, DM_MM_ACT_F32, c, ncopy, T, y, x, calls);
}

static void bench_decode(dm_wfmt f, int64_t N, int64_t K, const double bw[3])
{
    wcopy *hot = make_copies(f, N, K, 1);
    size_t b = wbytes(&hot->w);
    int ncold = (int)((COLD_BYTES + b - 1) / b);
    wcopy *cold = make_copies(f, N, K, ncold);
    float *x = malloc((size_t)K * 4), *y = malloc((size_t)N * 4);
    for (int64_t k = 0; k < K; k++)
        x[k] = frand();
    for (int nth = 1; nth <= 2; nth++) {
        dm_threads_set(nth);
        double th = time_matmul(hot, 1, 1, y, x, 20);
        double tc = time_matmul(cold, ncold, 1, y, x, ncold);
        printf("decode %-5s %5lldx%-5lld T=1 thr=%d  hot %6.1f GB/s  cold %6.1f GB/s = %3.0f%% of read bw  (%.3f ms)\n",
               dm_wfmt_name(f), (long long)N, (long long)K, nth, b / th / 1e9, b / tc / 1e9,
               100.0 * b / tc / 1e9 / bw[nth], tc * 1e3);
    }
    free(x), free(y);
    free_copies(hot, 1);
    free_copies(cold, ncold);
}

/* dm_matmul, and (where the CPU has AVX512_BF16 and the format an exact
 * bf16 form) the bf16-dot kernel with bf16 activations for comparison. */
static void bench_prefill(dm_wfmt f, int64_t N, int64_t K, int T)
{
    wcopy *c = make_copies(f, N, K, 1);
    float *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4);
    for (int64_t i = 0; i < T * K; i++)
        x[i] = frand();
    double flop = 2.0 * T * N * K;
    const dm_mm_isa *bf = dm_mm_isa_get(DM_MM_ISA_AVX512BF16);
    bool has_bf16 = bf && f != DM_WFMT_F32 && f != DM_WFMT_F16;
    for (int nth = 1; nth <= 2; nth++) {
        dm_threads_set(nth);
        double t = time_matmul(c, 1, T, y, x, 1);
        printf("prefill %-5s %5lldx%-5lld T=%-3d thr=%d  %6.1f GFLOP/s", dm_wfmt_name(f), (long long)N,
               (long long)K, T, nth, flop / t / 1e9);
        if (has_bf16) {
            double tb = time_matmul_isa(bf, DM_MM_ACT_BF16_ALL, c, 1, T, y, x, 1);
            printf("   (bf16-dot kernel: %6.1f GFLOP/s)", flop / tb / 1e9);
        }
        printf("\n");
    }
    free(x), free(y);
    free_copies(c, 1);
}

static void bench_openblas(int64_t N, int64_t K, int T)
{
    float *w = malloc((size_t)(N * K) * 4), *x = malloc((size_t)(T * K) * 4), *y = malloc((size_t)(T * N) * 4);
    for (int64_t i = 0; i < N * K; i++)
        w[i] = frand();
    for (int64_t i = 0; i < T * K; i++)
        x[i] = frand();
    for (int nth = 1; nth <= 2; nth++) {
        openblas_set_num_threads(nth);
        double best = 1e30;
        for (int rep = 0; rep < g_reps; rep++) {
            double t0 = dm_time_sec();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, (int)N, (int)K, 1.0f, x, (int)K, w,
                        (int)K, 0.0f, y, (int)N);
            double dt = dm_time_sec() - t0;
            best = dt < best ? dt : best;
        }
        printf("openblas sgemm f32 %5lldx%-5lld T=%-3d thr=%d  %6.1f GFLOP/s\n", (long long)N, (long long)K,
               T, nth, 2.0 * T * N * K / best / 1e9);
    }
    free(w), free(x), free(y);
}

int main(int argc, char **argv)
{
    bool want[DM_WFMT_COUNT] = { false };
    bool any = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-q"))
            g_reps = 2;
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) {
            dm_wfmt f = dm_wfmt_from_name(argv[++i]);
            if (f == DM_WFMT_COUNT) {
                fprintf(stderr, "bench_matmul: unknown format %s\n", argv[i]);
                return 2;
            }
            want[f] = any = true;
        } else {
            fprintf(stderr, "usage: bench_matmul [-f fmt]... [-q]\n");
            return 2;
        }
    }
    for (int f = 0; f < DM_WFMT_COUNT; f++)
        want[f] = want[f] || !any;
    printf("kernels: %s\n", dm_mm_isa_best()->name);
    double bw[3] = { 0, read_bandwidth(1), read_bandwidth(2) };
    printf("memory read bandwidth (512 MiB sum): 1 thread %.1f GB/s, 2 threads %.1f GB/s\n", bw[1], bw[2]);
    static const int64_t dshapes[][2] = { { 4096, 4096 }, { 2048, 6144 }, { 6144, 2048 } };
    for (int f = 0; f < DM_WFMT_COUNT; f++)
        if (want[f])
            for (int s = 0; s < 3; s++)
                bench_decode((dm_wfmt)f, dshapes[s][0], dshapes[s][1], bw);
    for (int f = 0; f < DM_WFMT_COUNT; f++)
        if (want[f]) {
            bench_prefill((dm_wfmt)f, 4096, 4096, 128);
            bench_prefill((dm_wfmt)f, 4096, 4096, 512);
        }
    bench_openblas(4096, 4096, 128);
    bench_openblas(4096, 4096, 512);
    return 0;
}
