/* safetensors — the checkpoint reader. Opens one .safetensors file, a
 * sharded checkpoint through its model.safetensors.index.json, or a model
 * directory holding either; maps every file read-only and hands out tensors as
 * pointers into the mappings (the model stage wraps them in dm_wmat views).
 *
 * File layout: u64 little-endian header length N, N bytes of JSON
 *   {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "string", ...}}
 * padded with spaces, then the data section; offsets are relative to its start.
 *
 * Every number read from a header is checked before it is used (offsets
 * inside the data section, shape x element size = byte length, no overlap), so
 * a hostile file yields a one-line error naming the file and the tensor, never
 * an out-of-bounds read. Checkpoints hold ~100k tensors: everything here is
 * O(n log n) (sort + binary search), never quadratic. */
#include "formats/formats.h"
#include "formats/st_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ST_MAX_EXACT 9007199254740992.0   /* 2^53: JSON numbers are parsed as double */

/* A name or string from a file, fit to quote in a one-line message. */
#define SHOW(x) (dm_st_show(x).s)

dm_st_shown dm_st_show(const char *s)
{
    dm_st_shown r;
    size_t i = 0, n = sizeof r.s - 4;
    for (; s[i] && i < n; i++)
        r.s[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
    if (s[i]) {
        memcpy(r.s + i, "...", 3);
        i += 3;
    }
    r.s[i] = 0;
    return r;
}

/* ---- helpers -------------------------------------------------------------- */

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* A JSON number that is a non-negative integer a double holds exactly. */
static bool json_uint(const cJSON *j, int64_t *out)
{
    if (!cJSON_IsNumber(j))
        return false;
    double d = j->valuedouble;
    if (!(d >= 0 && d <= ST_MAX_EXACT) || d != floor(d))
        return false;
    *out = (int64_t)d;
    return true;
}

static void add_tensor(dm_safetensors *st, int *cap, const dm_st_tensor *t)
{
    if (st->n_tensors == *cap) {
        *cap = *cap ? 2 * *cap : 64;
        st->tensors = dm_realloc(st->tensors, (size_t)*cap * sizeof *st->tensors);
    }
    st->tensors[st->n_tensors++] = *t;
}

/* ---- one header entry ------------------------------------------------------ */

/* Parses "shape": [d0, d1, ...] into t (ndim, shape, numel). */
static int parse_shape(const char *path, const char *name, const cJSON *shape, dm_st_tensor *t, dm_err *err)
{
    if (!cJSON_IsArray(shape))
        return dm_errorf(err, "%s: tensor \"%s\": shape missing or not an array", path, SHOW(name));
    int n = cJSON_GetArraySize(shape);
    if (n > DM_ST_MAX_DIMS)
        return dm_errorf(err, "%s: tensor \"%s\": %d dimensions (at most %d supported)", path,
                         SHOW(name), n, DM_ST_MAX_DIMS);
    t->ndim = n;
    t->numel = 1;
    int d = 0;
    for (const cJSON *e = shape->child; e; e = e->next, d++) {
        int64_t v;
        if (!json_uint(e, &v))
            return dm_errorf(err, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path,
                             SHOW(name), d);
        t->shape[d] = v;
        if (__builtin_mul_overflow(t->numel, v, &t->numel))
            return dm_errorf(err, "%s: tensor \"%s\": shape product overflows", path, SHOW(name));
    }
    return 0;
}

/* Parses "data_offsets": [begin, end] and checks them against the data
 * section (data_size bytes) and the byte length the shape implies. */
static int parse_offsets(const char *path, const char *name, const cJSON *offs, size_t data_size,
                         dm_st_tensor *t, size_t *begin, dm_err *err)
{
    int64_t b, e;
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_uint(offs->child, &b) ||
        !json_uint(offs->child->next, &e))
        return dm_errorf(err, "%s: tensor \"%s\": data_offsets missing or not two non-negative integers",
                         path, SHOW(name));
    if (b > e)
        return dm_errorf(err, "%s: tensor \"%s\": data_offsets begin %lld > end %lld", path, SHOW(name),
                         (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return dm_errorf(err, "%s: tensor \"%s\": data ends at %lld, beyond the data section (%zu bytes)",
                         path, SHOW(name), (long long)e, data_size);
    int64_t want;
    if (__builtin_mul_overflow(t->numel, (int64_t)dm_dtype_size(t->dtype), &want))
        return dm_errorf(err, "%s: tensor \"%s\": shape x %s size overflows", path, SHOW(name),
                         dm_dtype_name(t->dtype));
    if (want != e - b)
        return dm_errorf(err, "%s: tensor \"%s\": %lld bytes of data, but shape x %s size needs %lld", path,
                         SHOW(name), (long long)(e - b), dm_dtype_name(t->dtype), (long long)want);
    *begin = (size_t)b;
    t->nbytes = (size_t)(e - b);
    return 0;
}

/* Parses one {"dtype", "shape", "data_offsets"} entry of file fi. */
static int parse_entry(dm_safetensors *st, int fi, const cJSON *it, dm_st_tensor *t, dm_err *err)
{
    const dm_st_file *f = &st->files[fi];
    const char *name = it->string;
    memset(t, 0, sizeof *t);
    if (!cJSON_IsObject(it))
        return dm_errorf(err, "%s: tensor \"%s\": entry is not an object", f->path, SHOW(name));
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
    if (!cJSON_IsString(dt))
        return dm_errorf(err, "%s: tensor \"%s\": dtype missing or not a string", f->path, SHOW(name));
    t->dtype = dm_dtype_from_name(dt->valuestring);
    if (t->dtype == DM_DTYPE_INVALID)
        return dm_errorf(err, "%s: tensor \"%s\": unknown dtype \"%s\"", f->path, SHOW(name),
                         SHOW(dt->valuestring));
    if (parse_shape(f->path, name, cJSON_GetObjectItemCaseSensitive(it, "shape"), t, err) != 0)
        return -1;
    size_t begin = 0;
    size_t data_size = f->map.size - f->data_start;
    if (parse_offsets(f->path, name, cJSON_GetObjectItemCaseSensitive(it, "data_offsets"), data_size, t, &begin,
                      err) != 0)
        return -1;
    t->data = f->map.data + f->data_start + begin;
    t->file = fi;
    t->name = dm_strdup(name);
    return 0;
}

static int parse_metadata(dm_st_file *f, const cJSON *meta, dm_err *err)
{
    if (f->meta_keys)
        return dm_errorf(err, "%s: __metadata__ appears twice", f->path);
    if (!cJSON_IsObject(meta))
        return dm_errorf(err, "%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = dm_calloc((size_t)n + 1, sizeof(char *));
    f->meta_values = dm_calloc((size_t)n + 1, sizeof(char *));
    for (const cJSON *e = meta->child; e; e = e->next) {
        if (!cJSON_IsString(e))
            return dm_errorf(err, "%s: __metadata__ value of \"%s\" is not a string", f->path, SHOW(e->string));
        f->meta_keys[f->n_meta] = dm_strdup(e->string);
        f->meta_values[f->n_meta++] = dm_strdup(e->valuestring);
    }
    return 0;
}

/* ---- one file -------------------------------------------------------------- */

static int cmp_by_begin(const void *a, const void *b)
{
    const dm_st_tensor *x = *(const dm_st_tensor *const *)a, *y = *(const dm_st_tensor *const *)b;
    return x->data < y->data ? -1 : x->data > y->data ? 1 : 0;
}

/* Tensors [first, n_tensors) all come from one file: no two may share a byte.
 * Empty tensors occupy no bytes and overlap nothing. */
static int check_overlap(const dm_safetensors *st, int first, dm_err *err)
{
    int n = 0;
    const dm_st_tensor **v = dm_malloc((size_t)(st->n_tensors - first + 1) * sizeof *v);
    for (int i = first; i < st->n_tensors; i++)
        if (st->tensors[i].nbytes)
            v[n++] = &st->tensors[i];
    qsort(v, (size_t)n, sizeof *v, cmp_by_begin);
    int rc = 0;
    for (int i = 1; i < n && rc == 0; i++)
        if (v[i]->data < v[i - 1]->data + v[i - 1]->nbytes)
            rc = dm_errorf(err, "%s: tensor \"%s\" overlaps tensor \"%s\"", st->files[v[i]->file].path,
                           SHOW(v[i]->name), SHOW(v[i - 1]->name));
    free(v);
    return rc;
}

/* Checks the length prefix of file f and parses its JSON header; returns the
 * tree (the caller deletes it) or NULL after filling err. */
static cJSON *parse_header_json(dm_st_file *f, dm_err *err)
{
    const size_t size = f->map.size;
    if (size < 8) {
        dm_errorf(err, "%s: too short for a safetensors file (%zu bytes)", f->path, size);
        return NULL;
    }
    uint64_t n = load_le64(f->map.data);
    if (n > DM_ST_MAX_HEADER) {
        dm_errorf(err, "%s: header length %llu is absurd (limit %llu): not a safetensors file?", f->path,
                  (unsigned long long)n, (unsigned long long)DM_ST_MAX_HEADER);
        return NULL;
    }
    if (n > size - 8) {
        dm_errorf(err, "%s: header length %llu runs past the end of the file (%zu bytes)", f->path,
                  (unsigned long long)n, size);
        return NULL;
    }
    f->data_start = 8 + (size_t)n;
    /* a private NUL-terminated copy: cJSON never sees the mapping */
    char *text = dm_strndup((const char *)f->map.data + 8, (size_t)n);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, (size_t)n, &end, 0);
    size_t at = end ? (size_t)(end - text) : 0;
    while (root && at < n && text[at] && strchr(" \t\r\n", text[at]))
        at++;
    free(text);
    if (!root)
        dm_errorf(err, "%s: header is not valid JSON (near byte %zu)", f->path, at);
    else if (at != n)
        dm_errorf(err, "%s: header has bytes after its JSON (at byte %zu)", f->path, at);
    else if (!cJSON_IsObject(root))
        dm_errorf(err, "%s: header is not a JSON object", f->path);
    else
        return root;
    cJSON_Delete(root);
    return NULL;
}

/* Validates the header of file fi (already mapped) and appends its tensors. */
static int parse_file(dm_safetensors *st, int fi, int *cap, dm_err *err)
{
    cJSON *root = parse_header_json(&st->files[fi], err);
    if (!root)
        return -1;
    int first = st->n_tensors, rc = 0;
    for (const cJSON *it = root->child; it && rc == 0; it = it->next) {
        if (!strcmp(it->string, "__metadata__")) {
            rc = parse_metadata(&st->files[fi], it, err);
            continue;
        }
        dm_st_tensor t;
        rc = parse_entry(st, fi, it, &t, err);
        if (rc == 0)
            add_tensor(st, cap, &t);
    }
    cJSON_Delete(root);
    return rc == 0 ? check_overlap(st, first, err) : -1;
}

/* Appends a file slot (path owned by st from now on). */
static int add_file(dm_safetensors *st, char *path)
{
    st->files = dm_realloc(st->files, (size_t)(st->n_files + 1) * sizeof *st->files);
    dm_st_file *f = &st->files[st->n_files];
    memset(f, 0, sizeof *f);
    f->path = path;
    return st->n_files++;
}

static int map_and_parse(dm_safetensors *st, char *path, int *cap, dm_err *err)
{
    int fi = add_file(st, path);
    if (dm_map_file(&st->files[fi].map, path, err) != 0)
        return -1;
    return parse_file(st, fi, cap, err);
}

/* ---- the whole checkpoint ----------------------------------------------------- */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(((const dm_st_tensor *)a)->name, ((const dm_st_tensor *)b)->name);
}

/* Sorts the tensors by name and rejects a name seen twice (in one file or across shards). */
static int sort_and_check_names(dm_safetensors *st, dm_err *err)
{
    if (st->n_tensors > 1)
        qsort(st->tensors, (size_t)st->n_tensors, sizeof *st->tensors, cmp_tensor_name);
    for (int i = 1; i < st->n_tensors; i++) {
        const dm_st_tensor *a = &st->tensors[i - 1], *b = &st->tensors[i];
        if (strcmp(a->name, b->name) != 0)
            continue;
        if (a->file == b->file)
            return dm_errorf(err, "%s: tensor \"%s\" appears twice", st->files[a->file].path, SHOW(a->name));
        return dm_errorf(err, "%s: tensor \"%s\" also appears in %s", st->files[b->file].path, SHOW(a->name),
                         st->files[a->file].path);
    }
    return 0;
}

static int open_single(dm_safetensors *st, const char *path, dm_err *err)
{
    int cap = 0;
    if (map_and_parse(st, dm_strdup(path), &cap, err) != 0)
        return -1;
    return sort_and_check_names(st, err);
}

/* ---- sharded checkpoints: model.safetensors.index.json ----------------------- */

typedef struct idx_entry {
    const char *tensor, *shard;   /* point into the parsed index JSON */
} idx_entry;

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Shards live beside the index: a relative path that never climbs out. */
static bool shard_name_ok(const char *s)
{
    if (!*s || s[0] == '/')
        return false;
    for (const char *p = s; *p;) {
        size_t n = strcspn(p, "/");
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += n + (p[n] == '/');
    }
    return true;
}

static char *dir_of(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? dm_strndup(path, s == path ? 1 : (size_t)(s - path)) : dm_strdup(".");
}

/* Reads weight_map into entries[*n] (allocated). */
static int read_weight_map(const char *path, const cJSON *root, idx_entry **out, int *n, dm_err *err)
{
    const cJSON *wm = cJSON_IsObject(root) ? cJSON_GetObjectItemCaseSensitive(root, "weight_map") : NULL;
    if (!cJSON_IsObject(wm))
        return dm_errorf(err, "%s: no \"weight_map\" object: not a safetensors index", path);
    int cnt = cJSON_GetArraySize(wm);
    if (cnt == 0)
        return dm_errorf(err, "%s: weight_map is empty", path);
    idx_entry *e = dm_malloc((size_t)cnt * sizeof *e);
    int i = 0;
    for (const cJSON *it = wm->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !shard_name_ok(it->valuestring)) {
            free(e);
            return dm_errorf(err, "%s: tensor \"%s\": shard is not a file name beside the index", path,
                             SHOW(it->string));
        }
        e[i] = (idx_entry){ it->string, it->valuestring };
    }
    *out = e;
    *n = cnt;
    return 0;
}

/* The distinct shard names of entries, sorted; file i of st is shard i. */
static const char **distinct_shards(const idx_entry *e, int n, int *n_out)
{
    const char **v = dm_malloc((size_t)n * sizeof *v);
    for (int i = 0; i < n; i++)
        v[i] = e[i].shard;
    qsort(v, (size_t)n, sizeof *v, cmp_str_ptr);
    int u = 0;
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(v[u - 1], v[i]) != 0)
            v[u++] = v[i];
    *n_out = u;
    return v;
}

static const char *first_tensor_of(const idx_entry *e, int n, const char *shard)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].shard, shard))
            return e[i].tensor;
    return "?";
}

/* Every weight_map entry must name a tensor its shard really holds. */
static int check_entries(const dm_safetensors *st, const char *path, const idx_entry *e, int n,
                         const char **shards, int n_shards, dm_err *err)
{
    for (int i = 0; i < n; i++) {
        const dm_st_tensor *t = dm_st_find(st, e[i].tensor);
        const char **s = bsearch(&e[i].shard, shards, (size_t)n_shards, sizeof *shards, cmp_str_ptr);
        DM_ASSERT(s);
        if (!t || t->file != (int)(s - shards))
            return dm_errorf(err, "%s: tensor \"%s\" is listed in shard %s, which does not hold it", path,
                             SHOW(e[i].tensor), SHOW(*s));
    }
    return 0;
}

/* Opens every shard the index names. Tensors present in a shard but missing
 * from weight_map are kept (the shard is the truth about its own content). */
static int open_index(dm_safetensors *st, const char *path, dm_err *err)
{
    char *text;
    size_t len;
    if (dm_read_file(path, &text, &len, err) != 0)
        return -1;
    cJSON *root = cJSON_ParseWithLength(text, len);
    idx_entry *e = NULL;
    const char **shards = NULL;
    int n = 0, n_shards = 0, cap = 0, rc = 0;
    if (!root)
        rc = dm_errorf(err, "%s: not valid JSON", path);
    else
        rc = read_weight_map(path, root, &e, &n, err);
    if (rc == 0) {
        char *dir = dir_of(path);
        shards = distinct_shards(e, n, &n_shards);
        for (int i = 0; i < n_shards && rc == 0; i++) {
            int fi = add_file(st, dm_path_join(dir, shards[i]));
            if (dm_map_file(&st->files[fi].map, st->files[fi].path, err) != 0)
                rc = dm_err_prefix(err, "%s: tensor \"%s\" is in shard %s, which cannot be read", path,
                                   SHOW(first_tensor_of(e, n, shards[i])), SHOW(shards[i]));
            else
                rc = parse_file(st, fi, &cap, err);
        }
        free(dir);
    }
    if (rc == 0)
        rc = sort_and_check_names(st, err);
    if (rc == 0)
        rc = check_entries(st, path, e, n, shards, n_shards, err);
    free(shards);
    free(e);
    cJSON_Delete(root);
    free(text);
    return rc;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && !strcmp(s + n - m, suffix);
}

static int open_any(dm_safetensors *st, const char *path, dm_err *err)
{
    if (!dm_is_dir(path))
        return ends_with(path, ".json") ? open_index(st, path, err) : open_single(st, path, err);
    char *file = dm_path_join(path, "model.safetensors");
    char *index = dm_path_join(path, "model.safetensors.index.json");
    int rc;
    if (dm_path_exists(file))
        rc = open_single(st, file, err);
    else if (dm_path_exists(index))
        rc = open_index(st, index, err);
    else
        rc = dm_errorf(err, "%s: no model.safetensors or model.safetensors.index.json in this directory", path);
    free(file);
    free(index);
    return rc;
}

int dm_st_open(dm_safetensors *st, const char *path, dm_err *err)
{
    memset(st, 0, sizeof *st);
    if (open_any(st, path, err) != 0) {
        dm_st_close(st);
        return -1;
    }
    return 0;
}

int dm_st_open_buffer(dm_safetensors *st, const char *name, const uint8_t *buf, size_t size, dm_err *err)
{
    memset(st, 0, sizeof *st);
    int fi = add_file(st, dm_strdup(name)), cap = 0;
    st->files[fi].map.data = buf;
    st->files[fi].map.size = size;
    if (parse_file(st, fi, &cap, err) != 0 || sort_and_check_names(st, err) != 0) {
        dm_st_close_buffer(st);
        return -1;
    }
    return 0;
}

void dm_st_close_buffer(dm_safetensors *st)
{
    for (int i = 0; i < st->n_files; i++)
        st->files[i].map = (dm_map){ NULL, 0 };   /* borrowed: nothing to unmap */
    dm_st_close(st);
}

void dm_st_close(dm_safetensors *st)
{
    for (int i = 0; i < st->n_tensors; i++)
        free(st->tensors[i].name);
    for (int i = 0; i < st->n_files; i++) {
        dm_st_file *f = &st->files[i];
        for (int k = 0; k < f->n_meta; k++) {
            free(f->meta_keys[k]);
            free(f->meta_values[k]);
        }
        free(f->meta_keys);
        free(f->meta_values);
        dm_unmap_file(&f->map);
        free(f->path);
    }
    free(st->tensors);
    free(st->files);
    memset(st, 0, sizeof *st);
}

const dm_st_tensor *dm_st_find(const dm_safetensors *st, const char *name)
{
    int lo = 0, hi = st->n_tensors;   /* binary search over [lo, hi) */
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->tensors[mid].name, name);
        if (c == 0)
            return &st->tensors[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *dm_st_metadata(const dm_safetensors *st, const char *key)
{
    if (st->n_files == 0)
        return NULL;
    const dm_st_file *f = &st->files[0];
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta_keys[i], key))
            return f->meta_values[i];
    return NULL;
}

const char *dm_st_file_of(const dm_safetensors *st, const dm_st_tensor *t)
{
    DM_ASSERT(t->file >= 0 && t->file < st->n_files);
    return st->files[t->file].path;
}
