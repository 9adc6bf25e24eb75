/* sources — the file side of the corpus: listing a source tree in a
 * deterministic order (sorted relative paths, symlinks not followed, so a
 * tree gives the same list on every machine) and reading each document,
 * inflating gzip files (the Debian kernel docs ship as .rst.gz) with zlib. */
#include "corpus/corpus_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define READ_CHUNK (1u << 16)
#define MAX_DOC_BYTES ((size_t)1 << 30)   /* a "document" beyond 1 GiB is a mistake */

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static bool in_list(const char *s, const char *const *list, int n)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(s, list[i]))
            return true;
    return false;
}

static void files_push(cp_files *fs, const char *rel, const char *path)
{
    if (fs->n == fs->cap) {
        fs->cap = fs->cap ? fs->cap * 2 : 256;
        fs->f = dm_realloc(fs->f, fs->cap * sizeof *fs->f);
    }
    size_t k = strlen(rel);
    if (ends_with(rel, ".gz"))
        k -= 3;
    fs->f[fs->n].rel = dm_strndup(rel, k);
    fs->f[fs->n].path = dm_strdup(path);
    fs->n++;
}

typedef struct walk {
    const char *const *suffixes, *const *skip;
    int n_suffixes, n_skip;
    cp_files *out;
} walk;

/* Visits dir (full path) whose path relative to the root is rel ("" at the root). */
static int walk_dir(const walk *w, const char *dir, const char *rel, dm_err *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return dm_errorf(err, "%s: cannot open directory: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        char *path = dm_path_join(dir, e->d_name);
        char *r = rel[0] ? dm_path_join(rel, e->d_name) : dm_strdup(e->d_name);
        struct stat st;
        if (lstat(path, &st) != 0)
            rc = dm_errorf(err, "%s: cannot stat: %s", path, strerror(errno));
        else if (S_ISDIR(st.st_mode) && !in_list(e->d_name, w->skip, w->n_skip))
            rc = walk_dir(w, path, r, err);
        else if (S_ISREG(st.st_mode)) {
            for (int i = 0; i < w->n_suffixes; i++)
                if (ends_with(e->d_name, w->suffixes[i])) {
                    files_push(w->out, r, path);
                    break;
                }
        }
        free(path);
        free(r);
    }
    closedir(d);
    return rc;
}

static int file_cmp(const void *a, const void *b)
{
    const cp_file *x = a, *y = b;
    int c = strcmp(x->rel, y->rel);
    return c ? c : strcmp(x->path, y->path);
}

int cp_list_files(const char *root, const char *const *suffixes, int n_suffixes, const char *const *skip_dirs,
                  int n_skip, cp_files *out, dm_err *err)
{
    memset(out, 0, sizeof *out);
    walk w = { suffixes, skip_dirs, n_suffixes, n_skip, out };
    if (walk_dir(&w, root, "", err)) {
        cp_files_free(out);
        return -1;
    }
    qsort(out->f, out->n, sizeof *out->f, file_cmp);
    /* x.rst and x.rst.gz are one document: keep the first (the plain file) */
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (k > 0 && !strcmp(out->f[k - 1].rel, out->f[i].rel)) {
            free(out->f[i].rel);
            free(out->f[i].path);
            continue;
        }
        out->f[k++] = out->f[i];
    }
    out->n = k;
    return 0;
}

void cp_files_free(cp_files *fs)
{
    for (size_t i = 0; i < fs->n; i++) {
        free(fs->f[i].rel);
        free(fs->f[i].path);
    }
    free(fs->f);
    memset(fs, 0, sizeof *fs);
}

int cp_read_doc(const char *path, char **out, size_t *len, dm_err *err)
{
    *out = NULL;
    *len = 0;
    gzFile g = gzopen(path, "rb");   /* reads plain files unchanged */
    if (!g)
        return dm_errorf(err, "%s: cannot open: %s", path, strerror(errno));
    cp_str s = { 0 };
    char *buf = dm_malloc(READ_CHUNK);
    int rc = 0;
    for (;;) {
        int got = gzread(g, buf, READ_CHUNK);
        if (got < 0) {
            int code;
            const char *msg = gzerror(g, &code);
            rc = dm_errorf(err, "%s: cannot read (zlib: %s)", path, msg);
            break;
        }
        if (got == 0)
            break;
        cp_str_add(&s, buf, (size_t)got);
        if (s.n > MAX_DOC_BYTES) {
            rc = dm_errorf(err, "%s: larger than %zu bytes", path, MAX_DOC_BYTES);
            break;
        }
    }
    free(buf);
    gzclose(g);
    if (rc) {
        free(s.p);
        return -1;
    }
    *out = s.p ? s.p : dm_strdup("");
    *len = s.n;
    return 0;
}

/* Length of the well-formed UTF-8 sequence at s (Unicode Table 3-7), or 0. */
static int utf8_len(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    int k = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (k == 0 || c > 0xf4 || (size_t)k > n)
        return 0;
    uint8_t lo = 0x80, hi = 0xbf;   /* the second byte's range */
    if (c == 0xe0)
        lo = 0xa0;
    else if (c == 0xed)
        hi = 0x9f;
    else if (c == 0xf0)
        lo = 0x90;
    else if (c == 0xf4)
        hi = 0x8f;
    if (s[1] < lo || s[1] > hi)
        return 0;
    for (int i = 2; i < k; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    return k;
}

bool cp_text_ok(const char *text, size_t n)
{
    const uint8_t *s = (const uint8_t *)text;
    for (size_t i = 0; i < n;) {
        if (s[i] == 0)
            return false;
        int k = utf8_len(s + i, n - i);
        if (k == 0)
            return false;
        i += (size_t)k;
    }
    return true;
}
