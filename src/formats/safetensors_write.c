/* safetensors_write — the streaming checkpoint writer used by prune and
 * quantize to emit checkpoints of any size (300 GB in, tens of GB out).
 *
 * Life cycle: declare every tensor (name, dtype, shape) -> begin (assigns
 * shards in declaration order, lays each shard out, writes the headers into
 * <final>.tmp-<pid> files) -> write / write_part in any order (pwrite at the
 * computed offsets) -> finish (checks every byte of every tensor was written,
 * fsyncs, renames into place, writes model.safetensors.index.json when there
 * are several shards) -> free (removes the temporary files unless finish
 * succeeded).
 *
 * Layout within a shard: tensors by decreasing element size, declaration order
 * otherwise, with no holes; the header is padded with spaces to a multiple of
 * 8, so every tensor starts aligned to its element size (as Python
 * safetensors does). Memory is O(tensors + written pieces), never O(bytes):
 * coverage is tracked as merged byte intervals per tensor. */
#define _GNU_SOURCE   /* copy_file_range */
#include "formats/formats.h"
#include "formats/st_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define ST_MAX_OFFSET ((size_t)1 << 53)   /* readers parse offsets as double */
#define SHOW(x) (dm_st_show(x).s)         /* a name fit for a one-line message */

typedef struct wiv {
    size_t a, b;                /* written bytes [a, b) of a tensor */
} wiv;

typedef struct wtensor {
    char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_ST_MAX_DIMS];
    size_t nbytes;
    int shard;
    size_t pos;                 /* file offset of byte 0 (set by begin) */
    wiv *iv;                    /* sorted, disjoint, non-touching */
    size_t n_iv, cap_iv;
} wtensor;

typedef struct wshard {
    char *final_path, *tmp_path;
    int first, count;           /* its tensors: a run in declaration order */
    size_t data_bytes;
    bool created;               /* tmp_path exists on disk */
} wshard;

enum { WS_DECLARE, WS_BEGUN, WS_DONE };

struct dm_st_writer {
    char *dir;
    char *file_path;            /* single-file mode: the one file to write */
    size_t max_shard_bytes;
    int n_meta;
    char **meta_keys, **meta_values;
    wtensor *t;
    int n, cap;
    int *slot;                  /* name hash table: tensor index + 1, 0 = empty */
    size_t n_slot;              /* power of two */
    wshard *shards;
    int n_shards;
    int state;
    int fd, fd_shard;           /* the one shard file kept open (-1 none) */
};

/* ---- a growing string for the JSON we emit ---------------------------------- */

typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_add(sbuf *s, const char *data, size_t n)
{
    if (s->n + n + 1 > s->cap) {
        s->cap = (s->n + n + 1) * 2;
        s->p = dm_realloc(s->p, s->cap);
    }
    memcpy(s->p + s->n, data, n);
    s->n += n;
    s->p[s->n] = 0;
}

static void sb_printf(sbuf *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *s, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    DM_ASSERT(n >= 0 && (size_t)n < sizeof buf);
    sb_add(s, buf, (size_t)n);
}

/* A JSON string literal; bytes >= 0x80 pass through (checked UTF-8). */
static void sb_json_str(sbuf *s, const char *str)
{
    sb_add(s, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)str; *c; c++) {
        if (*c == '"' || *c == '\\') {
            char e[2] = { '\\', (char)*c };
            sb_add(s, e, 2);
        } else if (*c < 0x20) {
            sb_printf(s, "\\u%04x", *c);
        } else {
            sb_add(s, (const char *)c, 1);
        }
    }
    sb_add(s, "\"", 1);
}

/* Whether s is well-formed UTF-8 (JSON text must be). */
static bool utf8_ok(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p >> 5) == 6 ? 1 : (*p >> 4) == 14 ? 2 : (*p >> 3) == 30 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xc2))
            return false;
        uint32_t cp = *p & (0x7f >> n);
        for (int i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3f);
        }
        static const uint32_t min_cp[4] = { 0, 0x80, 0x800, 0x10000 };
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

/* ---- names -> tensors ------------------------------------------------------- */

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Slot of name in the table: holding it, or the empty slot where it goes. */
static size_t find_slot(const dm_st_writer *w, const char *name)
{
    size_t m = w->n_slot - 1, i = (size_t)hash_name(name) & m;
    while (w->slot[i] && strcmp(w->t[w->slot[i] - 1].name, name) != 0)
        i = (i + 1) & m;
    return i;
}

static void grow_slots(dm_st_writer *w)
{
    free(w->slot);
    w->n_slot = w->n_slot ? 2 * w->n_slot : 256;
    w->slot = dm_calloc(w->n_slot, sizeof *w->slot);
    for (int k = 0; k < w->n; k++)
        w->slot[find_slot(w, w->t[k].name)] = k + 1;
}

static wtensor *lookup(dm_st_writer *w, const char *name)
{
    if (!w->n_slot)
        return NULL;
    int k = w->slot[find_slot(w, name)];
    return k ? &w->t[k - 1] : NULL;
}

/* ---- declaring -------------------------------------------------------------- */

dm_st_writer *dm_st_writer_new(const char *dir, size_t max_shard_bytes)
{
    dm_st_writer *w = dm_calloc(1, sizeof *w);
    w->dir = dm_strdup(dir);
    w->max_shard_bytes = max_shard_bytes;
    w->fd = w->fd_shard = -1;
    return w;
}

dm_st_writer *dm_st_writer_new_file(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? dm_strndup(path, (size_t)(slash - path) + (slash == path)) : dm_strdup(".");
    dm_st_writer *w = dm_st_writer_new(dir, 0);
    free(dir);
    w->file_path = dm_strdup(path);
    return w;
}

void dm_st_writer_set_metadata(dm_st_writer *w, const char *key, const char *value)
{
    DM_ASSERT(w->state == WS_DECLARE);
    for (int i = 0; i < w->n_meta; i++)
        if (!strcmp(w->meta_keys[i], key)) {
            free(w->meta_values[i]);
            w->meta_values[i] = dm_strdup(value);
            return;
        }
    w->meta_keys = dm_realloc(w->meta_keys, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_values = dm_realloc(w->meta_values, (size_t)(w->n_meta + 1) * sizeof(char *));
    w->meta_keys[w->n_meta] = dm_strdup(key);
    w->meta_values[w->n_meta++] = dm_strdup(value);
}

int dm_st_writer_declare(dm_st_writer *w, const char *name, dm_dtype dtype, int ndim, const int64_t *shape,
                         dm_err *err)
{
    DM_ASSERT(w->state == WS_DECLARE);
    if (!*name || !strcmp(name, "__metadata__") || !utf8_ok(name))
        return dm_errorf(err, "%s: tensor \"%s\": not a usable tensor name", w->dir, SHOW(name));
    if (dtype < 0 || dtype >= DM_DTYPE_COUNT)
        return dm_errorf(err, "%s: tensor \"%s\": invalid dtype %d", w->dir, SHOW(name), (int)dtype);
    if (ndim < 0 || ndim > DM_ST_MAX_DIMS)
        return dm_errorf(err, "%s: tensor \"%s\": %d dimensions", w->dir, SHOW(name), ndim);
    if (lookup(w, name))
        return dm_errorf(err, "%s: tensor \"%s\" declared twice", w->dir, SHOW(name));
    wtensor t = { .name = NULL, .dtype = dtype, .ndim = ndim };
    size_t nbytes = dm_dtype_size(dtype);
    for (int d = 0; d < ndim; d++) {
        if (shape[d] < 0 || __builtin_mul_overflow(nbytes, (size_t)shape[d], &nbytes) || nbytes > ST_MAX_OFFSET)
            return dm_errorf(err, "%s: tensor \"%s\": bad shape", w->dir, SHOW(name));
        t.shape[d] = shape[d];
    }
    t.nbytes = nbytes;
    t.name = dm_strdup(name);
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 64;
        w->t = dm_realloc(w->t, (size_t)w->cap * sizeof *w->t);
    }
    w->t[w->n++] = t;
    if ((size_t)w->n * 2 > w->n_slot)
        grow_slots(w);
    else
        w->slot[find_slot(w, name)] = w->n;
    return 0;
}

/* ---- begin: shards, layout, headers ---------------------------------------- */

/* Greedy in declaration order: a new shard when the next tensor would push a
 * non-empty shard past max_shard_bytes. */
static void assign_shards(dm_st_writer *w)
{
    size_t cur = 0;
    int s = 0;
    for (int i = 0; i < w->n; i++) {
        size_t nb = w->t[i].nbytes;
        if (w->max_shard_bytes && cur > 0 && (cur > w->max_shard_bytes || nb > w->max_shard_bytes - cur)) {
            s++;
            cur = 0;
        }
        w->t[i].shard = s;
        cur += nb;
    }
    w->n_shards = s + 1;
    w->shards = dm_calloc((size_t)w->n_shards, sizeof *w->shards);
    for (int i = w->n - 1; i >= 0; i--) {
        w->shards[w->t[i].shard].first = i;
        w->shards[w->t[i].shard].count++;
    }
    for (int k = 0; k < w->n_shards; k++) {
        char *base = w->n_shards == 1 ? dm_strdup("model.safetensors")
                                      : dm_asprintf("model-%05d-of-%05d.safetensors", k + 1, w->n_shards);
        w->shards[k].final_path = w->file_path ? dm_strdup(w->file_path) : dm_path_join(w->dir, base);
        w->shards[k].tmp_path = dm_asprintf("%s.tmp-%d", w->shards[k].final_path, (int)getpid());
        free(base);
    }
}

/* The tensors of shard s in layout order: decreasing element size, stable. */
static int *shard_order(const dm_st_writer *w, int s, int *n_out)
{
    const wshard *sh = &w->shards[s];
    int *ord = dm_malloc((size_t)(sh->count + 1) * sizeof *ord), n = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (int i = sh->first; i < sh->first + sh->count; i++)
            if (dm_dtype_size(w->t[i].dtype) == es)
                ord[n++] = i;
    DM_ASSERT(n == sh->count);   /* every element size is 8, 4, 2 or 1 */
    *n_out = n;
    return ord;
}

/* Sets each tensor's position and builds the shard's header JSON, padded
 * with spaces to a multiple of 8 bytes. */
static void layout_shard(dm_st_writer *w, int s, sbuf *hdr)
{
    int n;
    int *ord = shard_order(w, s, &n);
    sb_add(hdr, "{", 1);
    if (w->n_meta) {
        sb_add(hdr, "\"__metadata__\":{", 16);
        for (int i = 0; i < w->n_meta; i++) {
            if (i)
                sb_add(hdr, ",", 1);
            sb_json_str(hdr, w->meta_keys[i]);
            sb_add(hdr, ":", 1);
            sb_json_str(hdr, w->meta_values[i]);
        }
        sb_add(hdr, "}", 1);
    }
    size_t off = 0;
    for (int k = 0; k < n; k++) {
        wtensor *t = &w->t[ord[k]];
        if (k || w->n_meta)
            sb_add(hdr, ",", 1);
        sb_json_str(hdr, t->name);
        sb_printf(hdr, ":{\"dtype\":\"%s\",\"shape\":[", dm_dtype_name(t->dtype));
        for (int d = 0; d < t->ndim; d++)
            sb_printf(hdr, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        sb_printf(hdr, "],\"data_offsets\":[%zu,%zu]}", off, off + t->nbytes);
        t->pos = off;   /* made absolute once the header length is known */
        off += t->nbytes;
    }
    sb_add(hdr, "}", 1);
    while (hdr->n % 8)
        sb_add(hdr, " ", 1);
    for (int k = 0; k < n; k++)
        w->t[ord[k]].pos += 8 + hdr->n;
    w->shards[s].data_bytes = off;
    free(ord);
}

static int pwrite_all(int fd, const void *data, size_t n, size_t pos)
{
    const uint8_t *p = data;
    while (n) {
        ssize_t r = pwrite(fd, p, n, (off_t)pos);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;   /* no progress and no reason given */
            return -1;
        }
        p += r;
        n -= (size_t)r;
        pos += (size_t)r;
    }
    return 0;
}

static void close_cached(dm_st_writer *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = w->fd_shard = -1;
}

/* The open descriptor of shard s (one is cached: writes mostly go in order). */
static int shard_fd(dm_st_writer *w, int s, dm_err *err)
{
    if (w->fd_shard == s)
        return w->fd;
    close_cached(w);
    int fd = open(w->shards[s].tmp_path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return dm_errorf(err, "%s: cannot open: %s", w->shards[s].tmp_path, strerror(errno));
    w->fd = fd;
    w->fd_shard = s;
    return fd;
}

static int create_shard(dm_st_writer *w, int s, const sbuf *hdr, dm_err *err)
{
    wshard *sh = &w->shards[s];
    close_cached(w);
    int fd = open(sh->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dm_errorf(err, "%s: cannot create: %s", sh->tmp_path, strerror(errno));
    sh->created = true;
    w->fd = fd;
    w->fd_shard = s;
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)hdr->n >> (8 * i));
    size_t total = 8 + hdr->n + sh->data_bytes;
    if (total > ST_MAX_OFFSET || hdr->n > DM_ST_MAX_HEADER)
        return dm_errorf(err, "%s: shard of %zu bytes with a %zu-byte header is too large", sh->final_path, total,
                         hdr->n);
    if (pwrite_all(fd, len, 8, 0) != 0 || pwrite_all(fd, hdr->p, hdr->n, 8) != 0 ||
        ftruncate(fd, (off_t)total) != 0)
        return dm_errorf(err, "%s: cannot write header: %s", sh->tmp_path, strerror(errno));
    return 0;
}

int dm_st_writer_begin(dm_st_writer *w, dm_err *err)
{
    DM_ASSERT(w->state == WS_DECLARE);
    if (!dm_is_dir(w->dir))
        return dm_errorf(err, "%s: output directory does not exist", w->dir);
    for (int i = 0; i < w->n_meta; i++)
        if (!utf8_ok(w->meta_keys[i]) || !utf8_ok(w->meta_values[i]))
            return dm_errorf(err, "%s: metadata \"%s\" is not valid UTF-8", w->dir, SHOW(w->meta_keys[i]));
    w->state = WS_BEGUN;
    assign_shards(w);
    for (int s = 0; s < w->n_shards; s++) {
        sbuf hdr = { 0 };
        layout_shard(w, s, &hdr);
        int rc = create_shard(w, s, &hdr, err);
        free(hdr.p);
        if (rc != 0)
            return -1;
    }
    return 0;
}

/* ---- writing ----------------------------------------------------------------- */

/* Records bytes [a, b) of t as written, merging with touching intervals. */
static void cover(wtensor *t, size_t a, size_t b)
{
    if (a == b)
        return;
    wiv *last = t->n_iv ? &t->iv[t->n_iv - 1] : NULL;
    if (last && last->a <= a && a <= last->b) {   /* the common case: in order */
        if (b > last->b)
            last->b = b;
        return;
    }
    size_t i = 0;
    while (i < t->n_iv && t->iv[i].b < a)
        i++;
    size_t j = i;
    while (j < t->n_iv && t->iv[j].a <= b) {
        if (t->iv[j].a < a)
            a = t->iv[j].a;
        if (t->iv[j].b > b)
            b = t->iv[j].b;
        j++;
    }
    if (i == j) {   /* nothing to merge with: insert at i */
        if (t->n_iv == t->cap_iv) {
            t->cap_iv = t->cap_iv ? 2 * t->cap_iv : 4;
            t->iv = dm_realloc(t->iv, t->cap_iv * sizeof *t->iv);
        }
        memmove(t->iv + i + 1, t->iv + i, (t->n_iv - i) * sizeof *t->iv);
        t->n_iv++;
    } else {        /* [i, j) collapse into slot i */
        memmove(t->iv + i + 1, t->iv + j, (t->n_iv - j) * sizeof *t->iv);
        t->n_iv -= j - i - 1;
    }
    t->iv[i] = (wiv){ a, b };
}

static size_t covered_bytes(const wtensor *t)
{
    size_t sum = 0;
    for (size_t i = 0; i < t->n_iv; i++)
        sum += t->iv[i].b - t->iv[i].a;
    return sum;
}

/* The open shard of a declared tensor for bytes [offset, offset+nbytes), or -1. */
static int part_fd(dm_st_writer *w, const char *name, size_t offset, size_t nbytes, const char *verb, wtensor **tp,
                   dm_err *err)
{
    DM_ASSERT(w->state == WS_BEGUN);
    wtensor *t = *tp = lookup(w, name);
    if (!t)
        return dm_errorf(err, "%s: tensor \"%s\" was not declared", w->dir, SHOW(name));
    if (offset > t->nbytes || nbytes > t->nbytes - offset)
        return dm_errorf(err, "%s: tensor \"%s\": %s of bytes [%zu, +%zu) past its %zu bytes",
                         w->shards[t->shard].tmp_path, SHOW(name), verb, offset, nbytes, t->nbytes);
    return shard_fd(w, t->shard, err);
}

int dm_st_writer_write_part(dm_st_writer *w, const char *name, size_t offset, const void *data, size_t nbytes,
                            dm_err *err)
{
    wtensor *t;
    const int fd = part_fd(w, name, offset, nbytes, "write", &t, err);
    if (fd < 0)
        return -1;
    const char *path = w->shards[t->shard].tmp_path;
    if (pwrite_all(fd, data, nbytes, t->pos + offset) != 0)
        return dm_errorf(err, "%s: tensor \"%s\": write failed: %s", path, SHOW(name), strerror(errno));
    cover(t, offset, offset + nbytes);
    return 0;
}

/* Copies [src_off, src_off+nbytes) of src_fd to bytes [offset, ...) of a tensor:
 * in the kernel (copy_file_range) where it can, else through a bounded buffer. */
int dm_st_writer_copy(dm_st_writer *w, const char *name, size_t offset, int src_fd, size_t src_off, size_t nbytes,
                      dm_err *err)
{
    wtensor *t;
    const int fd = part_fd(w, name, offset, nbytes, "copy", &t, err);
    if (fd < 0)
        return -1;
    const char *path = w->shards[t->shard].tmp_path;
    loff_t in = (loff_t)src_off, out = (loff_t)(t->pos + offset);
    size_t left = nbytes;
    while (left > 0) {
        ssize_t r = copy_file_range(src_fd, &in, fd, &out, left, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;   /* unsupported here (or a short source): finish through a buffer */
        left -= (size_t)r;
    }
    enum { CHUNK = 8 << 20 };
    uint8_t *buf = left ? dm_malloc(CHUNK) : NULL;
    while (left > 0) {
        size_t n = left < CHUNK ? left : CHUNK;
        ssize_t r = pread(src_fd, buf, n, (off_t)in);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0 || pwrite_all(fd, buf, (size_t)r, (size_t)out) != 0) {
            free(buf);
            return dm_errorf(err, "%s: tensor \"%s\": copy failed: %s", path, SHOW(name),
                             r == 0 ? "source too short" : strerror(errno));
        }
        in += r;
        out += r;
        left -= (size_t)r;
    }
    free(buf);
    cover(t, offset, offset + nbytes);
    return 0;
}

int dm_st_writer_write(dm_st_writer *w, const char *name, const void *data, size_t nbytes, dm_err *err)
{
    const wtensor *t = lookup(w, name);
    if (t && nbytes != t->nbytes)
        return dm_errorf(err, "%s: tensor \"%s\": %zu bytes given, it has %zu", w->dir, SHOW(name), nbytes,
                         t->nbytes);
    return dm_st_writer_write_part(w, name, 0, data, nbytes, err);
}

/* ---- finishing ---------------------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const wtensor *const *)a)->name, (*(const wtensor *const *)b)->name);
}

/* model.safetensors.index.json: total tensor bytes and name -> shard file, sorted. */
static int write_index(dm_st_writer *w, dm_err *err)
{
    const wtensor **v = dm_malloc((size_t)(w->n + 1) * sizeof *v);
    size_t total = 0;
    for (int i = 0; i < w->n; i++) {
        v[i] = &w->t[i];
        total += w->t[i].nbytes;
    }
    qsort(v, (size_t)w->n, sizeof *v, cmp_tensor_name);
    sbuf s = { 0 };
    sb_printf(&s, "{\n  \"metadata\": {\n    \"total_size\": %zu\n  },\n  \"weight_map\": {", total);
    for (int i = 0; i < w->n; i++) {
        const char *path = w->shards[v[i]->shard].final_path;
        const char *slash = strrchr(path, '/');
        sb_add(&s, i ? ",\n    " : "\n    ", i ? 6 : 5);
        sb_json_str(&s, v[i]->name);
        sb_add(&s, ": ", 2);
        sb_json_str(&s, slash ? slash + 1 : path);
    }
    sb_add(&s, "\n  }\n}\n", 7);
    char *path = dm_path_join(w->dir, "model.safetensors.index.json");
    int rc = dm_write_file_atomic(path, s.p, s.n, err);
    free(path);
    free(s.p);
    free(v);
    return rc;
}

static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int dm_st_writer_finish(dm_st_writer *w, dm_err *err)
{
    DM_ASSERT(w->state == WS_BEGUN);
    for (int i = 0; i < w->n; i++) {
        const wtensor *t = &w->t[i];
        size_t got = covered_bytes(t);
        if (got != t->nbytes)
            return dm_errorf(err, "%s: tensor \"%s\": %zu of its %zu bytes were never written",
                             w->shards[t->shard].final_path, SHOW(t->name), t->nbytes - got, t->nbytes);
    }
    close_cached(w);
    for (int s = 0; s < w->n_shards; s++)
        if (fsync_path(w->shards[s].tmp_path, O_WRONLY) != 0)
            return dm_errorf(err, "%s: fsync failed: %s", w->shards[s].tmp_path, strerror(errno));
    for (int s = 0; s < w->n_shards; s++) {
        if (rename(w->shards[s].tmp_path, w->shards[s].final_path) != 0)
            return dm_errorf(err, "%s: cannot rename into place: %s", w->shards[s].final_path, strerror(errno));
        w->shards[s].created = false;
    }
    fsync_path(w->dir, O_RDONLY);   /* make the renames durable; best effort */
    if (w->n_shards > 1 && write_index(w, err) != 0)
        return -1;
    w->state = WS_DONE;
    return 0;
}

void dm_st_writer_free(dm_st_writer *w)
{
    if (!w)
        return;
    close_cached(w);
    for (int s = 0; s < w->n_shards; s++) {
        if (w->shards[s].created)
            unlink(w->shards[s].tmp_path);
        free(w->shards[s].final_path);
        free(w->shards[s].tmp_path);
    }
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        free(w->t[i].iv);
    }
    for (int i = 0; i < w->n_meta; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->meta_keys);
    free(w->meta_values);
    free(w->shards);
    free(w->t);
    free(w->slot);
    free(w->dir);
    free(w->file_path);
    free(w);
}
