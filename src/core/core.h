/* core — what every stage of demolish leans on: error reporting, memory,
 * files (read-only mmap, atomic writes, output directories that appear only
 * when complete), progress bars, timing, threads and CPU feature detection.
 *
 * Error convention (see shared/STYLE.md): library functions that can fail on
 * the world's input return 0 on success and -1 on failure, after writing a
 * one-line message into a dm_err. Only the CLI prints and exits. Programming
 * bugs are caught by DM_ASSERT, which is always on. */
#ifndef DM_CORE_H
#define DM_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

/* ---- errors ------------------------------------------------------------ */

typedef struct dm_err {
    char msg[1024];
} dm_err;

/* Writes a formatted message into err (if not NULL) and returns -1, so a
 * failing function can `return dm_errorf(err, "...")`. */
int dm_errorf(dm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message: "prefix: old message". Returns -1. */
int dm_err_prefix(dm_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void dm_assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));
#define DM_ASSERT(x) ((x) ? (void)0 : dm_assert_fail(#x, __FILE__, __LINE__))

/* ---- memory ------------------------------------------------------------ */

/* Allocation failure is not recoverable here: these print and abort. */
void *dm_malloc(size_t n);
void *dm_calloc(size_t count, size_t size);
void *dm_realloc(void *p, size_t n);
char *dm_strdup(const char *s);
char *dm_strndup(const char *s, size_t n);
/* 64-byte aligned, zeroed; free with dm_aligned_free. */
void *dm_aligned_alloc(size_t n);
void dm_aligned_free(void *p);
/* Returns a malloc'd string built from printf-style arguments. */
char *dm_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- files ------------------------------------------------------------- */

typedef struct dm_map {
    const uint8_t *data; /* read-only view of the whole file (NULL when size 0) */
    size_t size;
} dm_map;

/* Maps a file read-only. An input is never modified. */
int dm_map_file(dm_map *map, const char *path, dm_err *err);
void dm_unmap_file(dm_map *map);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer. */
int dm_read_file(const char *path, char **out, size_t *out_len, dm_err *err);

/* Writes data to path via path.tmp-<pid> + fsync + rename: readers see either
 * the old file or the complete new one, never a prefix. */
int dm_write_file_atomic(const char *path, const void *data, size_t len, dm_err *err);

bool dm_path_exists(const char *path);
bool dm_is_dir(const char *path);
/* Joins two path parts with exactly one '/'. Returns a malloc'd string. */
char *dm_path_join(const char *a, const char *b);
/* Copies a file byte for byte (through a temp name, then rename). */
int dm_copy_file(const char *src, const char *dst, dm_err *err);
/* Copies every regular file of src_dir (not hidden, not subdirectories)
 * into dst_dir, except those skip(name) names (skip may be NULL). */
int dm_copy_dir_files(const char *src_dir, const char *dst_dir, bool (*skip)(const char *name), dm_err *err);
/* mkdir -p. Returns 0 if the directory exists afterwards. */
int dm_make_dirs(const char *path);
/* rm -rf, for our own temporary directories only. */
int dm_remove_tree(const char *path);

/* An output directory that becomes visible under its final name only when
 * complete: everything is written into a sibling ".<name>.partial-<pid>"
 * directory, which dm_outdir_commit renames into place. A crash leaves only the
 * hidden partial directory behind, never something that looks complete. */
typedef struct dm_outdir {
    char *final_path;
    char *tmp_path;   /* write here */
} dm_outdir;

/* force: replace an existing final_path on commit. Without it an existing
 * final_path is an error (checked up front, so no work is wasted). */
int dm_outdir_begin(dm_outdir *od, const char *final_path, bool force, dm_err *err);
int dm_outdir_commit(dm_outdir *od, dm_err *err);
void dm_outdir_abort(dm_outdir *od);   /* removes the partial directory */

/* ---- progress and time --------------------------------------------------- */

double dm_time_sec(void);              /* monotonic seconds */
size_t dm_peak_rss_bytes(void);        /* this process's peak resident set */

/* A one-line progress bar on stderr with rate and ETA, redrawn at most ~10
 * times a second. Silent when stderr is not a terminal unless DM_PROGRESS=1. */
typedef struct dm_progress {
    const char *label;
    const char *unit;
    int64_t total, done;
    double t_start, t_last;
    bool enabled;
} dm_progress;

void dm_progress_begin(dm_progress *p, const char *label, const char *unit, int64_t total);
void dm_progress_update(dm_progress *p, int64_t done);
void dm_progress_end(dm_progress *p);

/* ---- logging ------------------------------------------------------------- */

extern int dm_verbosity;   /* 0 quiet, 1 normal (default), 2 verbose */
void dm_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- hashing --------------------------------------------------------------- */

/* 64-bit FNV-1a: stable identities (per-tensor random seeds, corpus splits).
 * Not for hash tables on hostile input. */
uint64_t dm_fnv1a64(const void *p, size_t n);

/* SHA-256 (nettle): incremental and one-shot; dm_sha256_hex writes 64 hex
 * digits and a NUL. */
typedef struct dm_sha256_ctx {
    uint64_t state[16];          /* large enough for nettle's sha256_ctx */
} dm_sha256_ctx;

void dm_sha256_init(dm_sha256_ctx *c);
void dm_sha256_update(dm_sha256_ctx *c, const void *p, size_t n);
void dm_sha256_final(dm_sha256_ctx *c, uint8_t out[32]);
void dm_sha256_hex(const uint8_t digest[32], char out[65]);
/* SHA-256 of a whole file, read in bounded chunks (never mapped). */
int dm_sha256_file(const char *path, uint8_t out[32], dm_err *err);

/* ---- threads and CPU ------------------------------------------------------ */

void dm_threads_set(int n);   /* n <= 0: all cores */
int dm_threads_get(void);
/* The calling thread's index in the current OpenMP team (0 outside one, or
 * without OpenMP): the slot of its per-thread scratch. */
int dm_thread_id(void);

typedef struct dm_cpu_features {
    bool avx2, fma, f16c, avx512f, avx512bw, avx512vl, avx512bf16;
} dm_cpu_features;

/* What the CPU offers, masked by the environment: DM_NO_SIMD=1 forces the
 * portable scalar paths everywhere; DM_NO_AVX512=1 stops at AVX2. */
const dm_cpu_features *dm_cpu(void);

#endif
