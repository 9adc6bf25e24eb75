/* formats — bytes on disk <-> numbers: the dtype table, the scalar codecs
 * (bf16, f16, FP8 E4M3, E8M0, FP4 E2M1), weight matrices in every checkpoint
 * format we read (views into mmapped safetensors, decoded a row at a time and
 * never whole), and the safetensors reader and writer.
 *
 * Nothing here knows about models: the model stage maps tensor names to
 * dm_wmat views; the ops stage multiplies by them. */
#ifndef DM_FORMATS_H
#define DM_FORMATS_H

#include "core/core.h"

#include <string.h>

/* ---- dtypes (safetensors names) ------------------------------------------ */

typedef enum dm_dtype {
    DM_DTYPE_F64,
    DM_DTYPE_F32,
    DM_DTYPE_F16,
    DM_DTYPE_BF16,
    DM_DTYPE_F8_E4M3,
    DM_DTYPE_F8_E5M2,
    DM_DTYPE_F8_E8M0,
    DM_DTYPE_I64,
    DM_DTYPE_I32,
    DM_DTYPE_I16,
    DM_DTYPE_I8,
    DM_DTYPE_U64,
    DM_DTYPE_U32,
    DM_DTYPE_U16,
    DM_DTYPE_U8,
    DM_DTYPE_BOOL,
    DM_DTYPE_COUNT,
    DM_DTYPE_INVALID = -1
} dm_dtype;

const char *dm_dtype_name(dm_dtype t);        /* "BF16" */
dm_dtype dm_dtype_from_name(const char *name);  /* DM_DTYPE_INVALID if unknown */
size_t dm_dtype_size(dm_dtype t);             /* bytes per element */

/* ---- scalar codecs ---------------------------------------------------------
 * All conversions from float round to nearest, ties to even, and saturate
 * where the format has no infinity (E4M3 at ±448, E2M1 at ±6). */

static inline float dm_bf16_to_f32(uint16_t h)
{
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
uint16_t dm_f32_to_bf16(float f);
float dm_f16_to_f32(uint16_t h);
uint16_t dm_f32_to_f16(float f);
float dm_e4m3_to_f32(uint8_t b);        /* FP8 E4M3FN: bias 7, no inf, 0x7f/0xff NaN */
uint8_t dm_f32_to_e4m3(float f);
float dm_e5m2_to_f32(uint8_t b);
uint8_t dm_f32_to_e5m2(float f);        /* E5M2 has inf: overflow goes to ±inf (IEEE), NaN -> 0x7e */
float dm_e8m0_to_f32(uint8_t b);        /* 2^(b-127); 0xff is NaN */
uint8_t dm_f32_to_e8m0_floor(float f);  /* largest power of two <= f, clamped to [2^-127, 2^127];
                                           0 (2^-127) for f <= 0 or NaN */
extern const float dm_e2m1_values[16];  /* FP4 E2M1 code -> value */
uint8_t dm_f32_to_e2m1(float f);        /* nearest code, ties to even code */

/* Loads from mapped bytes, which need not be aligned. */
static inline float dm_load_f32(const uint8_t *p)
{
    float v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t dm_load_u16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* Reads element i of a raw array of `t` as float (any float/int dtype). */
double dm_dtype_read(dm_dtype t, const uint8_t *base, int64_t i);

/* ---- weight matrices -------------------------------------------------------
 * A weight matrix W[N][K] (PyTorch Linear layout: N outputs, K inputs) in one
 * of the checkpoint formats. A dm_wmat is a view: pointers into mapped
 * files (or into a buffer someone else owns), never an owner. */

typedef enum dm_wfmt {
    DM_WFMT_F32,
    DM_WFMT_F16,
    DM_WFMT_BF16,
    DM_WFMT_FP8,    /* DeepSeek block FP8: E4M3 [N][K] + f32 scale_inv [ceil(N/128)][ceil(K/128)] */
    DM_WFMT_NVFP4,  /* ModelOpt NVFP4: E2M1 nibbles [N][K/2] (low nibble = even element),
                       E4M3 block scales [N][K/16], f32 per-tensor scale2 */
    DM_WFMT_MXFP4,  /* OCP MXFP4: E2M1 nibbles [N][K/32][16] (low nibble = even element),
                       E8M0 block scales [N][K/32] */
    DM_WFMT_COUNT
} dm_wfmt;

#define DM_FP8_BLOCK 128
#define DM_NVFP4_BLOCK 16
#define DM_MXFP4_BLOCK 32

typedef struct dm_wmat {
    dm_wfmt fmt;
    int64_t rows, cols;       /* N, K of this view */
    const uint8_t *data;      /* row 0 of this view */
    size_t row_stride;        /* bytes from one row's data to the next */
    const uint8_t *scale;     /* FP8: scale grid of the whole tensor (block row 0);
                                 NVFP4/MXFP4: scales of row 0 of this view; else NULL */
    size_t scale_stride;      /* bytes from one scale row (FP8: block row) to the next */
    int64_t row0;             /* FP8: absolute row of this view's row 0 in its tensor */
    float scale2;             /* NVFP4 weight_scale_2; 1 for other formats */
} dm_wmat;

const char *dm_wfmt_name(dm_wfmt f);   /* "bf16", "fp8", "nvfp4", ... (CLI names) */
dm_wfmt dm_wfmt_from_name(const char *name);  /* DM_WFMT_COUNT if unknown */

/* Bytes of the data / scale tensors a [N][K] matrix needs in this format.
 * Returns 0 for scale bytes of formats without scales. */
size_t dm_wfmt_data_bytes(dm_wfmt f, int64_t N, int64_t K);
size_t dm_wfmt_scale_bytes(dm_wfmt f, int64_t N, int64_t K);
/* Whether K is a legal row length for the format (NVFP4: K%16, MXFP4: K%32). */
bool dm_wfmt_cols_ok(dm_wfmt f, int64_t K);

/* A view over a dense, contiguous matrix (row_stride derived from the format). */
dm_wmat dm_wmat_make(dm_wfmt f, int64_t N, int64_t K, const void *data, const void *scale, float scale2);
/* Rows [r0, r0+n) of w, as a view. */
dm_wmat dm_wmat_rows(const dm_wmat *w, int64_t r0, int64_t n);

/* Decodes row r of w into dst[K] as float. This is the reference decoder
 * every faster kernel is tested against. */
void dm_wmat_row_f32(const dm_wmat *w, int64_t r, float *dst);

/* Encodes a float matrix src[N][K] into format f, writing data
 * (dm_wfmt_data_bytes) and scale (dm_wfmt_scale_bytes; FP8 grid is f32) and,
 * for NVFP4, *scale2. Scale choice follows each format's reference recipe:
 * FP8 block amax/448; NVFP4 s2 = amax/(6*448), block scale amax/(6*s2) as
 * E4M3; MXFP4 shared exponent floor(log2(amax)) - 2. */
void dm_wmat_encode(dm_wfmt f, const float *src, int64_t N, int64_t K, void *data, void *scale,
                    float *scale2);

/* ---- .npy ------------------------------------------------------------------ */

/* Writes a C-order array as a NumPy .npy file (v1.0), atomically. dtype:
 * F32, F64, I32, I64, U32, U8; 1-4 dims. */
int dm_npy_write(const char *path, dm_dtype dtype, int ndim, const int64_t *shape, const void *data, dm_err *err);

/* ---- safetensors: reading ------------------------------------------------- */

#define DM_ST_MAX_DIMS 8

typedef struct dm_st_tensor {
    char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_ST_MAX_DIMS];
    int64_t numel;
    const uint8_t *data;   /* inside the file's read-only mapping */
    size_t nbytes;
    int file;              /* index into dm_safetensors.files */
} dm_st_tensor;

typedef struct dm_st_file {
    char *path;
    dm_map map;
    size_t data_start;     /* 8 + header length */
    int n_meta;
    char **meta_keys, **meta_values;  /* the header's __metadata__ (strings) */
} dm_st_file;

typedef struct dm_safetensors {
    int n_files;
    dm_st_file *files;
    int n_tensors;
    dm_st_tensor *tensors; /* sorted by name */
} dm_safetensors;

/* Opens a checkpoint: `path` may be a .safetensors file, a
 * model.safetensors.index.json (any path ending in .json), or a model
 * directory holding model.safetensors (preferred) or
 * model.safetensors.index.json. Every header is validated (header length
 * within the file and at most 100 MB, JSON well formed, dtype known, shape
 * and offsets non-negative integers below 2^53, shape x dtype size = byte
 * length, offsets inside the data section, no two tensors sharing a byte, no
 * tensor named twice in a file or across shards, metadata values strings,
 * every index entry present in its shard, shard names relative without "..");
 * a one-line error names the file and the tensor. Accepted as the format
 * allows: holes and trailing bytes in the data section, empty tensors at any
 * offset, tensors a shard holds that the index does not list (kept). Files are
 * mapped, not read. On failure st is left empty (dm_st_close is harmless). */
int dm_st_open(dm_safetensors *st, const char *path, dm_err *err);
void dm_st_close(dm_safetensors *st);
/* Binary search by exact name: O(log n). NULL if absent. */
const dm_st_tensor *dm_st_find(const dm_safetensors *st, const char *name);
/* Metadata value from the first shard's __metadata__ (shards sorted by
 * file name), or NULL. */
const char *dm_st_metadata(const dm_safetensors *st, const char *key);
const char *dm_st_file_of(const dm_safetensors *st, const dm_st_tensor *t);

/* ---- safetensors: writing -------------------------------------------------
 * A writer for checkpoints of any size: declare every tensor (name, dtype,
 * shape) first, then begin (shards are assigned in declaration order, each
 * at most max_shard_bytes unless one tensor alone is bigger; headers are
 * written), then write each tensor's bytes, whole or in pieces, in any order,
 * then finish. Files are written as <name>.tmp-<pid> and renamed at finish,
 * after every byte was written and fsynced; model.safetensors.index.json is
 * written (atomically) when there is more than one shard. Within a shard,
 * tensors are laid out by decreasing element size so each is aligned to it. */

typedef struct dm_st_writer dm_st_writer;

/* dir: output directory (must exist by begin). max_shard_bytes 0 = one file
 * "model.safetensors"; otherwise "model-%05d-of-%05d.safetensors" (tensor
 * bytes per shard, headers not counted), or "model.safetensors" when
 * everything fits in one. Never fails. */
dm_st_writer *dm_st_writer_new(const char *dir, size_t max_shard_bytes);
/* One file at exactly `path` (written as path.tmp-<pid>, renamed at finish). */
dm_st_writer *dm_st_writer_new_file(const char *path);
/* Adds (or replaces) a __metadata__ entry, written into every shard. Before
 * begin only; keys and values must be UTF-8 (checked by begin). */
void dm_st_writer_set_metadata(dm_st_writer *w, const char *key, const char *value);
/* Declares a tensor (before begin). Fails on a duplicate, empty, reserved
 * ("__metadata__") or non-UTF-8 name, a bad dtype, ndim outside [0, 8], a
 * negative dimension or a byte size above 2^53. */
int dm_st_writer_declare(dm_st_writer *w, const char *name, dm_dtype dtype, int ndim,
                         const int64_t *shape, dm_err *err);
int dm_st_writer_begin(dm_st_writer *w, dm_err *err);
/* Writes a whole tensor (nbytes must be its size). */
int dm_st_writer_write(dm_st_writer *w, const char *name, const void *data, size_t nbytes, dm_err *err);
/* Writes bytes [offset, offset+nbytes) of a tensor. Pieces may come in any
 * order and overlap (rewritten bytes simply take the last value). */
int dm_st_writer_write_part(dm_st_writer *w, const char *name, size_t offset, const void *data,
                            size_t nbytes, dm_err *err);
/* Copies nbytes from a file (src_fd at src_off) into bytes [offset, +nbytes)
 * of a tensor, in the kernel (copy_file_range) where possible: how pruning
 * moves tensors verbatim without holding them in memory. */
int dm_st_writer_copy(dm_st_writer *w, const char *name, size_t offset, int src_fd, size_t src_off, size_t nbytes,
                      dm_err *err);
/* Fails, naming the tensor, if any byte of any tensor was never written (the
 * writer stays usable: write the rest and finish again). */
int dm_st_writer_finish(dm_st_writer *w, dm_err *err);
/* Frees the writer; if finish did not succeed, removes its temporary files. */
void dm_st_writer_free(dm_st_writer *w);

#endif
