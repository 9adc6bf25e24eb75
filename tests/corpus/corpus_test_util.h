/* corpus_test_util — what the corpus tests share: a scratch directory under
 * DM_TEST_TMP, small fake source trees (a Python tree and a kernel
 * Documentation/ tree with .rst, .rst.gz and the things the build must
 * leave out), building a corpus from them, and file helpers. Each test
 * program includes it once. */
#ifndef CORPUS_TEST_UTIL_H
#define CORPUS_TEST_UTIL_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "check.h"
#include "corpus/corpus.h"

/* DM_TEST_TMP/<name>, emptied. */
static inline char *scratch_dir(const char *name)
{
    const char *base = getenv("DM_TEST_TMP");
    char *root = dm_strdup(base && *base ? base : "/tmp/dm-test");
    dm_make_dirs(root);
    char *dir = dm_path_join(root, name);
    free(root);
    dm_remove_tree(dir);
    dm_make_dirs(dir);
    return dir;
}

static inline void put_file(const char *dir, const char *rel, const char *text, size_t len)
{
    char *path = dm_path_join(dir, rel);
    char *parent = dm_strdup(path);
    *strrchr(parent, '/') = 0;
    dm_make_dirs(parent);
    FILE *f = fopen(path, "wb");
    DM_ASSERT(f);
    fwrite(text, 1, len, f);
    fclose(f);
    free(parent);
    free(path);
}

static inline void put_text(const char *dir, const char *rel, const char *text)
{
    put_file(dir, rel, text, strlen(text));
}

static inline void put_gz(const char *dir, const char *rel, const char *text)
{
    char *path = dm_path_join(dir, rel);
    char *parent = dm_strdup(path);
    *strrchr(parent, '/') = 0;
    dm_make_dirs(parent);
    gzFile g = gzopen(path, "wb9");
    DM_ASSERT(g);
    gzwrite(g, text, (unsigned)strlen(text));
    gzclose(g);
    free(parent);
    free(path);
}

/* The documents every fake tree holds (id -> text). */
typedef struct fake_doc {
    const char *id, *text;
} fake_doc;

static const fake_doc fake_code[] = {
    { "code/abc.py", "def f(x):\n    return x + 1\n" },
    { "code/json/__init__.py", "\"\"\"JSON.\"\"\"\nfrom .decoder import JSONDecoder\n" },
    { "code/json/decoder.py", "class JSONDecoder:\n    def decode(self, s):\n        return s  # \u00e9t\u00e9\n" },
    { "code/test/support.py", "import os\n\ndef fixture():\n    return os.getcwd()\n\t\"quoted\\\\ \"\n" },
};
static const fake_doc fake_prose[] = {
    { "prose/index.rst", "The Linux kernel\r\n================\n\nWelcome.\x01\x1f\n" },
    { "prose/admin-guide/README.rst", "Booting\n-------\n\nUse ``make`` then reboot.\n" },
    { "prose/filesystems/ext4.rst", "ext4\n====\n\nThe fourth extended file system. Journal \u2014 yes.\n" },
};
#define N_FAKE_CODE (sizeof fake_code / sizeof fake_code[0])
#define N_FAKE_PROSE (sizeof fake_prose / sizeof fake_prose[0])

/* root/code and root/prose with the fake documents plus what must be left
 * out: dist-packages, __pycache__, a non-UTF-8 file, an empty file, a
 * symlink, other suffixes, translations/. ext4.rst is stored gzipped. */
static inline void make_fake_trees(const char *root)
{
    char *code = dm_path_join(root, "code"), *prose = dm_path_join(root, "prose");
    for (size_t i = 0; i < N_FAKE_CODE; i++)
        put_text(code, fake_code[i].id + 5, fake_code[i].text);
    put_text(code, "dist-packages/numpy/core.py", "import numpy\n");
    put_text(code, "__pycache__/abc.py", "cached\n");
    put_file(code, "latin1.py", "x = '\xe9'\n", 9);
    put_text(code, "empty.py", "");
    put_text(code, "README.txt", "not python\n");
    char *link = dm_path_join(code, "link.py"), *target = dm_path_join(code, "abc.py");
    DM_ASSERT(symlink(target, link) == 0);
    free(link), free(target);
    put_text(prose, "index.rst", fake_prose[0].text);
    put_text(prose, "admin-guide/README.rst", fake_prose[1].text);
    put_gz(prose, "filesystems/ext4.rst.gz", fake_prose[2].text);
    put_gz(prose, "translations/zh_CN/index.rst.gz", "\u4e2d\u6587\n");
    put_gz(prose, "conf.py.gz", "project = 'x'\n");
    put_text(prose, "notes.txt", "plain notes\n");
    free(code), free(prose);
}

/* Builds root/<name> from root/code and root/prose. Returns dm_corpus_build's result. */
static inline int build_fake(const char *root, const char *name, uint64_t seed, int reasoning, bool force,
                      dm_corpus_stats *st, dm_err *err)
{
    char *out = dm_path_join(root, name), *code = dm_path_join(root, "code"), *prose = dm_path_join(root, "prose");
    dm_corpus_opts o = { .out_dir = out, .code_dir = code, .prose_dir = prose, .seed = seed,
                         .reasoning_docs = reasoning, .force = force };
    int rc = dm_corpus_build(&o, st, err);
    free(out), free(code), free(prose);
    return rc;
}

/* Reads a whole file (must exist). */
static inline char *slurp(const char *dir, const char *name, size_t *len)
{
    char *path = dm_path_join(dir, name), *text;
    dm_err err;
    if (dm_read_file(path, &text, len, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        text = dm_strdup("");
        *len = 0;
    }
    free(path);
    return text;
}

#endif
