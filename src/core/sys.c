/* sys — time, memory use, progress bars, logging, threads and CPU features:
 * the small OS-facing services the rest of demolish reports with. */
#include "core/core.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

int dm_verbosity = 1;

double dm_time_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

size_t dm_peak_rss_bytes(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (size_t)ru.ru_maxrss * 1024; /* Linux reports KiB */
}

void dm_log(int level, const char *fmt, ...)
{
    if (level > dm_verbosity)
        return;
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

/* ---- progress bar ---- */

static void format_seconds(char *buf, size_t n, double s)
{
    if (s < 0 || s > 1e7)
        snprintf(buf, n, "--:--");
    else if (s >= 3600)
        snprintf(buf, n, "%d:%02d:%02d", (int)(s / 3600), (int)(s / 60) % 60, (int)s % 60);
    else
        snprintf(buf, n, "%02d:%02d", (int)(s / 60), (int)s % 60);
}

static void progress_draw(dm_progress *p, double now, bool final)
{
    double el = now - p->t_start;
    double rate = el > 0 ? (double)p->done / el : 0;
    char eta[32], elapsed[32];
    format_seconds(elapsed, sizeof eta, el);
    format_seconds(eta, sizeof eta, rate > 0 && p->total > 0 ? (double)(p->total - p->done) / rate : -1);
    int width = 30, filled = 0;
    if (p->total > 0)
        filled = (int)((double)width * (double)p->done / (double)p->total);
    if (filled > width)
        filled = width;
    char bar[64];
    for (int i = 0; i < width; i++)
        bar[i] = i < filled ? '#' : '.';
    bar[width] = 0;
    if (p->total > 0)
        fprintf(stderr, "\r%s [%s] %lld/%lld %s  %.1f %s/s  %s elapsed, ETA %s ", p->label, bar,
                (long long)p->done, (long long)p->total, p->unit, rate, p->unit, elapsed, eta);
    else
        fprintf(stderr, "\r%s %lld %s  %.1f %s/s  %s elapsed ", p->label, (long long)p->done, p->unit,
                rate, p->unit, elapsed);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

void dm_progress_begin(dm_progress *p, const char *label, const char *unit, int64_t total)
{
    memset(p, 0, sizeof *p);
    p->label = label;
    p->unit = unit;
    p->total = total;
    p->t_start = p->t_last = dm_time_sec();
    const char *env = getenv("DM_PROGRESS");
    p->enabled = dm_verbosity > 0 && (env ? atoi(env) != 0 : isatty(STDERR_FILENO));
}

void dm_progress_update(dm_progress *p, int64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = dm_time_sec();
    if (now - p->t_last < 0.1 && done != p->total)
        return;
    p->t_last = now;
    progress_draw(p, now, false);
}

void dm_progress_end(dm_progress *p)
{
    if (p->enabled)
        progress_draw(p, dm_time_sec(), true);
    p->enabled = false;
}

/* ---- threads ---- */

static int g_threads = 0;

void dm_threads_set(int n)
{
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    g_threads = n;
#ifdef _OPENMP
    omp_set_num_threads(n);
#endif
}

int dm_threads_get(void)
{
    if (g_threads <= 0)
        dm_threads_set(0);
    return g_threads;
}

int dm_thread_id(void)
{
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

uint64_t dm_fnv1a64(const void *p, size_t n)
{
    const uint8_t *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;   /* offset basis */
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;            /* FNV prime */
    }
    return h;
}

/* ---- CPU features ---- */

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

const dm_cpu_features *dm_cpu(void)
{
    static dm_cpu_features f;
    static int done = 0;
    if (done)
        return &f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = f.avx2; /* every AVX2 CPU we target has F16C; no builtin name for it */
    f.avx512f = __builtin_cpu_supports("avx512f");
    f.avx512bw = __builtin_cpu_supports("avx512bw");
    f.avx512vl = __builtin_cpu_supports("avx512vl");
    f.avx512bf16 = __builtin_cpu_supports("avx512bf16");
#endif
    if (env_flag("DM_NO_AVX512") || env_flag("DM_NO_SIMD"))
        f.avx512f = f.avx512bw = f.avx512vl = f.avx512bf16 = false;
    if (env_flag("DM_NO_SIMD"))
        f.avx2 = f.fma = f.f16c = false;
    done = 1;
    return &f;
}
