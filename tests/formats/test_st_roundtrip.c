/* test_st_roundtrip — the safetensors writer and reader together:
 *   - tensors of every dtype, odd shapes, 0-d and empty tensors, names that
 *     need JSON escaping, metadata; written in random order and in random,
 *     overlapping pieces;
 *   - one file (model.safetensors) and several shards (model-0000i-of-0000n
 *     with an index), reopened by file, by index.json and by directory;
 *   - every tensor's dtype, shape and bytes identical; every tensor aligned to
 *     its element size; the layout is decreasing element size then declaration
 *     order with no holes; the header is padded to a multiple of 8; shards are
 *     filled greedily in declaration order and respect max_shard_bytes;
 *     __metadata__ in every shard; index.json's total_size and weight_map;
 *   - the same files read by tests/formats/st_oracle.py, an independent strict
 *     reader in Python (/usr/bin/python3; skipped if absent), which must list
 *     the same names, dtypes, shapes, byte hashes and metadata;
 *   - no temporary file left behind;
 *   - 100k tensors in 3 shards open in well under a second (no O(n^2)). */
#include "ft_util.h"

#include <cjson/cJSON.h>
#include <dirent.h>

#define MANY_TENSORS 100000
#define MANY_OPEN_MAX_S 10.0   /* generous: a quadratic open would take minutes */

typedef struct spec {
    char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[DM_ST_MAX_DIMS];
    size_t nbytes;
    uint8_t *bytes;
} spec;

static const char *const META[][2] = {
    { "format", "pt" }, { "quote\"key", "back\\slash" }, { "empty", "" }, { "unicode", "\xc3\xa9t\xc3\xa9" },
};
#define N_META (sizeof META / sizeof *META)

/* The test set: every dtype in several shapes, plus special names. */
static spec *make_specs(int *n_out)
{
    static const int64_t shapes[][4] = { { 3, 5, 7, -1 }, { -1 }, { 0, 4, -1 }, { 257, 33, -1 }, { 1, -1 } };
    static const char *const extra[] = { "model.layers.0.mlp.experts.12.gate_proj.weight",
                                         ("q\"uote\\back/slash\ttab\x01" "ctl"), "\xe2\x82\xac-euro" };
    int n = DM_DTYPE_COUNT * 5 + 3;
    spec *s = dm_calloc((size_t)n, sizeof *s);
    int k = 0;
    for (int d = 0; d < DM_DTYPE_COUNT; d++)
        for (int h = 0; h < 5; h++, k++) {
            s[k].dtype = (dm_dtype)((d * 7 + h) % DM_DTYPE_COUNT);   /* interleave element sizes */
            s[k].name = dm_asprintf("t%02d.%s.%d", k, dm_dtype_name(s[k].dtype), h);
            while (shapes[h][s[k].ndim] >= 0)
                s[k].shape[s[k].ndim] = shapes[h][s[k].ndim], s[k].ndim++;
        }
    for (int e = 0; e < 3; e++, k++) {
        s[k].name = dm_strdup(extra[e]);
        s[k].dtype = e == 1 ? DM_DTYPE_F64 : DM_DTYPE_BF16;
        s[k].ndim = 2;
        s[k].shape[0] = 2 + e;
        s[k].shape[1] = 3;
    }
    for (int i = 0; i < n; i++) {
        size_t nb = dm_dtype_size(s[i].dtype);
        for (int d = 0; d < s[i].ndim; d++)
            nb *= (size_t)s[i].shape[d];
        s[i].nbytes = nb;
        s[i].bytes = dm_malloc(nb + 1);
        for (size_t b = 0; b < nb; b++)
            s[i].bytes[b] = (uint8_t)ft_rand();
    }
    *n_out = n;
    return s;
}

/* Writes specs in a shuffled order, each tensor in 1-4 random pieces that
 * may overlap. */
static int write_specs(const char *dir, size_t max_shard, spec *s, int n, dm_err *err)
{
    dm_st_writer *w = dm_st_writer_new(dir, max_shard);
    for (size_t m = 0; m < N_META; m++)
        dm_st_writer_set_metadata(w, META[m][0], META[m][1]);
    dm_st_writer_set_metadata(w, "format", "pt");   /* a repeated key replaces */
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = dm_st_writer_declare(w, s[i].name, s[i].dtype, s[i].ndim, s[i].shape, err);
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    int *ord = dm_malloc((size_t)n * sizeof *ord);
    for (int i = 0; i < n; i++)
        ord[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)ft_below((uint64_t)i + 1), t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
    for (int k = 0; k < n && rc == 0; k++) {
        const spec *t = &s[ord[k]];
        int pieces = 1 + (int)ft_below(4);
        if (pieces == 1) {
            rc = dm_st_writer_write(w, t->name, t->bytes, t->nbytes, err);
            continue;
        }
        for (int p = pieces - 1; p >= 0 && rc == 0; p--) {   /* back to front, overlapping by up to 3 bytes */
            size_t a = t->nbytes * (size_t)p / (size_t)pieces;
            size_t b = t->nbytes * (size_t)(p + 1) / (size_t)pieces + ft_below(4);
            if (b > t->nbytes)
                b = t->nbytes;
            rc = dm_st_writer_write_part(w, t->name, a, t->bytes + a, b - a, err);
        }
    }
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    free(ord);
    return rc;
}


/* Checks content, alignment and layout of an opened checkpoint. */
static void check_open(const dm_safetensors *st, const spec *s, int n, const char *how)
{
    ft_check(st->n_tensors == n, "%s: %d tensors, want %d", how, st->n_tensors, n);
    for (int i = 1; i < st->n_tensors; i++)
        ft_check(strcmp(st->tensors[i - 1].name, st->tensors[i].name) < 0, "%s: tensors not sorted", how);
    for (int i = 0; i < n; i++) {
        const dm_st_tensor *t = dm_st_find(st, s[i].name);
        if (!ft_check(t != NULL, "%s: tensor \"%s\" not found", how, s[i].name))
            continue;
        ft_check(t->dtype == s[i].dtype && t->ndim == s[i].ndim && t->nbytes == s[i].nbytes,
                 "%s: \"%s\" dtype/ndim/nbytes differ", how, s[i].name);
        int64_t numel = 1;
        for (int d = 0; d < s[i].ndim; d++) {
            ft_check(t->shape[d] == s[i].shape[d], "%s: \"%s\" shape[%d]", how, s[i].name, d);
            numel *= s[i].shape[d];
        }
        ft_check(t->numel == numel, "%s: \"%s\" numel %lld want %lld", how, s[i].name, (long long)t->numel,
                 (long long)numel);
        ft_check(!memcmp(t->data, s[i].bytes, s[i].nbytes), "%s: \"%s\" bytes differ", how, s[i].name);
        ft_check((uintptr_t)t->data % dm_dtype_size(t->dtype) == 0, "%s: \"%s\" not aligned to %zu", how, s[i].name,
                 dm_dtype_size(t->dtype));
    }
    ft_check(dm_st_find(st, "no.such.tensor") == NULL, "%s: found a tensor that does not exist", how);
    for (int f = 0; f < st->n_files; f++) {
        const dm_st_file *file = &st->files[f];
        ft_check(file->data_start % 8 == 0, "%s: %s data starts at %zu", how, file->path, file->data_start);
        ft_check(file->n_meta == (int)N_META, "%s: %s has %d metadata entries", how, file->path, file->n_meta);
        for (int m = 0; m < file->n_meta; m++)
            for (size_t k = 0; k < N_META; k++)
                if (!strcmp(file->meta_keys[m], META[k][0]))
                    ft_check(!strcmp(file->meta_values[m], META[k][1]), "%s: metadata %s", how, META[k][0]);
        /* layout: (element size descending, declaration index) order, contiguous, to the end */
        size_t pos = file->data_start, total = 0;
        for (size_t es = 8; es >= 1; es /= 2)
            for (int i = 0; i < n; i++) {
                const dm_st_tensor *t = dm_st_find(st, s[i].name);
                if (!t || t->file != f || dm_dtype_size(t->dtype) != es)
                    continue;
                ft_check((size_t)(t->data - file->map.data) == pos, "%s: \"%s\" at %zu, layout says %zu", how,
                         s[i].name, (size_t)(t->data - file->map.data), pos);
                pos += t->nbytes;
                total += t->nbytes;
            }
        ft_check(pos == file->map.size, "%s: %s has %zu bytes after its last tensor (holes or tail)", how,
                 file->path, file->map.size - pos);
        ft_check(file->data_start + total == file->map.size, "%s: %s size", how, file->path);
    }
    const char *fmt = dm_st_metadata(st, "format");
    ft_check(fmt && !strcmp(fmt, "pt"), "%s: dm_st_metadata(format)", how);
    ft_check(dm_st_metadata(st, "absent") == NULL, "%s: dm_st_metadata(absent)", how);
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- the independent reader, tests/formats/st_oracle.py ---- */

#define ORACLE_PYTHON "/usr/bin/python3"
#define ORACLE_PY "tests/formats/st_oracle.py"

static uint64_t fnv64(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static char *hex(const char *s)
{
    size_t n = strlen(s);
    char *out = dm_malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", (unsigned char)s[i]);
    out[2 * n] = 0;
    return out;
}

static int cmp_line(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The lines st_oracle.py must print for this checkpoint, sorted. */
static char **expected_lines(const dm_safetensors *st, const spec *s, int n, int *n_out)
{
    int cap = n + st->n_files * (int)N_META, k = 0;
    char **lines = dm_malloc((size_t)cap * sizeof *lines);
    for (int i = 0; i < n; i++) {
        char *h = hex(s[i].name), shape[128] = "";
        for (int d = 0; d < s[i].ndim; d++)
            snprintf(shape + strlen(shape), sizeof shape - strlen(shape), d ? ",%lld" : "%lld",
                     (long long)s[i].shape[d]);
        lines[k++] = dm_asprintf("%s\t%s\t[%s]\t%016llx", h, dm_dtype_name(s[i].dtype), shape,
                                 (unsigned long long)fnv64(s[i].bytes, s[i].nbytes));
        free(h);
    }
    for (int f = 0; f < st->n_files; f++)
        for (size_t m = 0; m < N_META; m++) {
            char *hk = hex(META[m][0]), *hv = hex(META[m][1]);
            lines[k++] = dm_asprintf("meta\t%s\t%s\t%s", base_name(st->files[f].path), hk, hv);
            free(hk);
            free(hv);
        }
    qsort(lines, (size_t)k, sizeof *lines, cmp_line);
    *n_out = k;
    return lines;
}

/* Runs the oracle on dir and compares its listing with ours. */
static void check_with_oracle(const char *dir, const spec *s, int n, const char *how)
{
    if (access(ORACLE_PYTHON, X_OK) != 0) {
        printf("  %s: oracle skipped (%s not found)\n", how, ORACLE_PYTHON);
        return;
    }
    dm_safetensors st;
    dm_err err;
    if (!ft_check(dm_st_open(&st, dir, &err) == 0, "%s: %s", how, err.msg))
        return;
    int n_lines;
    char **want = expected_lines(&st, s, n, &n_lines);
    char *cmd = dm_asprintf("%s %s '%s'", ORACLE_PYTHON, ORACLE_PY, dir);
    FILE *p = popen(cmd, "r");
    char line[4096];
    int k = 0;
    while (p && fgets(line, sizeof line, p)) {
        line[strcspn(line, "\n")] = 0;
        ft_check(k < n_lines && !strcmp(line, want[k]), "%s: oracle line %d is\n  %s\nwe expect\n  %s", how, k, line,
                 k < n_lines ? want[k] : "(nothing)");
        k++;
    }
    int status = p ? pclose(p) : -1;
    if (ft_check(status == 0 && k == n_lines, "%s: oracle exit status %d, %d lines, want %d", how, status, k,
                 n_lines))
        printf("  %s: %d lines agree with %s\n", how, k, ORACLE_PY);
    for (int i = 0; i < n_lines; i++)
        free(want[i]);
    free(want);
    free(cmd);
    dm_st_close(&st);
}

/* Names in dir that are not final checkpoint files (temporaries left behind). */
static int count_leftovers(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp-"))
            n++;
    if (d)
        closedir(d);
    return n;
}

static void open_and_check(const char *path, const spec *s, int n, const char *how)
{
    dm_safetensors st;
    dm_err err = { "" };
    if (!ft_check(dm_st_open(&st, path, &err) == 0, "%s: open %s failed: %s", how, path, err.msg))
        return;
    check_open(&st, s, n, how);
    dm_st_close(&st);
}

static void test_single(spec *s, int n)
{
    char *dir = ft_scratch("st_single");
    dm_err err = { "" };
    ft_check(write_specs(dir, 0, s, n, &err) == 0, "single: write failed: %s", err.msg);
    char *file = dm_path_join(dir, "model.safetensors"), *index = dm_path_join(dir, "model.safetensors.index.json");
    ft_check(!dm_path_exists(index), "single: index.json written for one file");
    open_and_check(file, s, n, "single by file");
    open_and_check(dir, s, n, "single by dir");
    check_with_oracle(dir, s, n, "single");
    ft_check(count_leftovers(dir) == 0, "single: temporary files left");
    /* max_shard_bytes larger than everything: still one model.safetensors */
    char *dir2 = ft_scratch("st_single_big");
    ft_check(write_specs(dir2, (size_t)1 << 40, s, n, &err) == 0, "single/big: write failed: %s", err.msg);
    open_and_check(dir2, s, n, "single/big by dir");
    dm_remove_tree(dir);
    dm_remove_tree(dir2);
    free(file);
    free(index);
    free(dir);
    free(dir2);
}

/* index.json: total_size and a weight_map naming each tensor's real shard. */
static void check_index(const char *index, const dm_safetensors *st, const spec *s, int n)
{
    char *text;
    dm_err err;
    if (!ft_check(dm_read_file(index, &text, NULL, &err) == 0, "read %s: %s", index, err.msg))
        return;
    cJSON *root = cJSON_Parse(text);
    const cJSON *total = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "metadata"),
                                                          "total_size");
    const cJSON *wm = cJSON_GetObjectItemCaseSensitive(root, "weight_map");
    size_t want_total = 0;
    for (int i = 0; i < n; i++)
        want_total += s[i].nbytes;
    ft_check(cJSON_IsNumber(total) && total->valuedouble == (double)want_total, "index total_size %g want %zu",
             total ? total->valuedouble : -1, want_total);
    ft_check(cJSON_GetArraySize(wm) == n, "index weight_map has %d entries, want %d", cJSON_GetArraySize(wm), n);
    const char *prev = "";
    for (const cJSON *e = wm ? wm->child : NULL; e; e = e->next) {
        const dm_st_tensor *t = dm_st_find(st, e->string);
        ft_check(t && cJSON_IsString(e) && !strcmp(base_name(dm_st_file_of(st, t)), e->valuestring),
                 "index maps \"%s\" to %s", e->string, cJSON_IsString(e) ? e->valuestring : "?");
        ft_check(strcmp(prev, e->string) < 0, "weight_map not sorted at \"%s\"", e->string);
        prev = e->string;
    }
    cJSON_Delete(root);
    free(text);
}

static void test_sharded(spec *s, int n)
{
    const size_t max = 4096;
    char *dir = ft_scratch("st_sharded");
    dm_err err = { "" };
    ft_check(write_specs(dir, max, s, n, &err) == 0, "sharded: write failed: %s", err.msg);
    char *index = dm_path_join(dir, "model.safetensors.index.json");
    open_and_check(index, s, n, "sharded by index");
    open_and_check(dir, s, n, "sharded by dir");
    check_with_oracle(dir, s, n, "sharded");
    ft_check(count_leftovers(dir) == 0, "sharded: temporary files left");
    dm_safetensors st;
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "sharded open: %s", err.msg)) {
        ft_check(st.n_files > 2, "sharded: only %d shards", st.n_files);
        for (int f = 0; f < st.n_files; f++) {
            char want[64];
            snprintf(want, sizeof want, "model-%05d-of-%05d.safetensors", f + 1, st.n_files);
            ft_check(!strcmp(base_name(st.files[f].path), want), "shard %d named %s", f, st.files[f].path);
        }
        /* greedy in declaration order: shard numbers never decrease; a shard
         * over max holds one tensor; the next tensor would not have fit */
        size_t bytes[64] = { 0 };
        int count[64] = { 0 }, last = 0;
        for (int i = 0; i < n; i++) {
            const dm_st_tensor *t = dm_st_find(&st, s[i].name);
            if (!t || t->file >= 64)
                continue;
            ft_check(t->file >= last, "\"%s\" in shard %d after shard %d", s[i].name, t->file, last);
            if (t->file > last && i > 0)
                ft_check(bytes[last] + s[i].nbytes > max, "\"%s\" opened shard %d but would have fit", s[i].name,
                         t->file);
            last = t->file;
            bytes[t->file] += t->nbytes;
            count[t->file]++;
        }
        for (int f = 0; f < st.n_files && f < 64; f++)
            ft_check(bytes[f] <= max || count[f] == 1, "shard %d has %zu bytes in %d tensors", f, bytes[f], count[f]);
        check_index(index, &st, s, n);
        dm_st_close(&st);
    }
    dm_remove_tree(dir);
    free(index);
    free(dir);
}

static void test_empty_checkpoint(void)
{
    char *dir = ft_scratch("st_empty");
    dm_err err = { "" };
    dm_st_writer *w = dm_st_writer_new(dir, 0);
    ft_check(dm_st_writer_begin(w, &err) == 0 && dm_st_writer_finish(w, &err) == 0, "empty: %s", err.msg);
    dm_st_writer_free(w);
    dm_safetensors st;
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "empty open: %s", err.msg)) {
        ft_check(st.n_tensors == 0 && st.n_files == 1 && st.files[0].map.size == 16, "empty checkpoint: %d tensors, %zu bytes",
                 st.n_tensors, st.files[0].map.size);
        dm_st_close(&st);
    }
    dm_remove_tree(dir);
    free(dir);
}

static void test_many(void)
{
    char *dir = ft_scratch("st_many");
    dm_err err = { "" };
    dm_st_writer *w = dm_st_writer_new(dir, MANY_TENSORS * 4 / 3 + 4);   /* 3 shards */
    int rc = 0;
    char name[64];
    const int64_t one = 1;
    for (int i = 0; i < MANY_TENSORS && rc == 0; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, (i * 7919) % MANY_TENSORS);
        rc = dm_st_writer_declare(w, name, DM_DTYPE_F32, 1, &one, &err);
    }
    rc = rc ? rc : dm_st_writer_begin(w, &err);
    for (int i = 0; i < MANY_TENSORS && rc == 0; i++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, (i * 7919) % MANY_TENSORS);
        float v = (float)i;
        rc = dm_st_writer_write(w, name, &v, 4, &err);
    }
    rc = rc ? rc : dm_st_writer_finish(w, &err);
    dm_st_writer_free(w);
    ft_check(rc == 0, "many: write failed: %s", err.msg);
    double t0 = dm_time_sec();
    dm_safetensors st;
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "many: open failed: %s", err.msg)) {
        double dt = dm_time_sec() - t0;
        printf("  opened %d tensors in %d shards in %.3f s\n", st.n_tensors, st.n_files, dt);
        ft_check(st.n_tensors == MANY_TENSORS && st.n_files == 3, "many: %d tensors %d files", st.n_tensors,
                 st.n_files);
        ft_check(dt < MANY_OPEN_MAX_S, "many: open took %.1f s", dt);
        for (int i = 0; i < MANY_TENSORS; i += 97) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.w", i / 256, (i * 7919) % MANY_TENSORS);
            const dm_st_tensor *t = dm_st_find(&st, name);
            float v = -1;
            if (t)
                memcpy(&v, t->data, 4);
            ft_check(t && v == (float)i, "many: %s holds %g want %d", name, v, i);
        }
        dm_st_close(&st);
    }
    dm_remove_tree(dir);
    free(dir);
}

int main(void)
{
    ft_seed(11);
    int n;
    spec *s = make_specs(&n);
    test_single(s, n);
    test_sharded(s, n);
    test_empty_checkpoint();
    test_many();
    for (int i = 0; i < n; i++) {
        free(s[i].name);
        free(s[i].bytes);
    }
    free(s);
    return ft_finish("test_st_roundtrip");
}
