/* build — `demolish corpus build`: reads the code and prose trees, generates
 * the reasoning problems, assigns every document its split (split.c) and
 * writes the three .jsonl files and stats.json into an output directory that
 * appears only when complete.
 *
 * Choices (README "Corpus"):
 *  - code: regular *.py files under the Python root, dist-packages and
 *    site-packages left out (third-party, differ between machines), symlinks
 *    not followed. Debian's libpython3.11-stdlib ships only a small test/
 *    (regrtest and test.support, ~0.3 MB of ordinary library code, not the
 *    fixture-heavy test suite, which is libpython3.11-testsuite): kept.
 *  - prose: *.rst and *.rst.gz under Documentation/, translations/ left out
 *    (Chinese, Japanese, Korean, Italian: 12 % of the bytes, and not the
 *    English kernel-doc prose the model is meant to learn).
 *  - a file that is not UTF-8 or holds a NUL byte is skipped (and counted).
 *  - records are ordered by a seeded hash of their id, so each file is a
 *    shuffle of its split (training can read it front to back). */
#define _GNU_SOURCE   /* strverscmp */
#include "corpus/corpus_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <glob.h>
#include <stdlib.h>
#include <string.h>

#define PROSE_FALLBACK_GLOB "/usr/share/doc/linux-doc-*/Documentation"

typedef struct doc {
    char *id;
    dm_domain domain;
    dm_split split;
    uint64_t order;             /* seeded hash of the id: the record order */
    char *text;
    size_t len;
} doc;

typedef struct doc_list {
    doc *d;
    size_t n, cap;
} doc_list;

static void docs_push(doc_list *l, doc d)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4096;
        l->d = dm_realloc(l->d, l->cap * sizeof *l->d);
    }
    l->d[l->n++] = d;
}

static void docs_free(doc_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->d[i].id);
        free(l->d[i].text);
    }
    free(l->d);
}

/* ---- sources ---- */

typedef struct source {
    dm_domain domain;
    const char *package;        /* the Debian package that provides the default tree */
    const char *suffixes[2];
    int n_suffixes;
    const char *skip[3];
    int n_skip;
} source;

static const source sources[] = {
    { DM_DOMAIN_CODE, "libpython3.11-stdlib", { ".py" }, 1, { "dist-packages", "site-packages", "__pycache__" }, 3 },
    { DM_DOMAIN_PROSE, "linux-doc-6.1", { ".rst", ".rst.gz" }, 2, { "translations" }, 1 },
};

/* The prose default falls back to another kernel version's linux-doc (the
 * newest version) when linux-doc-6.1 is not there. Returns a malloc'd path,
 * or NULL with an error naming the Debian package. */
static char *resolve_dir(const char *given, const source *s, dm_err *err)
{
    const char *dflt = s->domain == DM_DOMAIN_CODE ? DM_CORPUS_CODE_DIR : DM_CORPUS_PROSE_DIR;
    const char *dir = given ? given : dflt;
    if (dm_is_dir(dir))
        return dm_strdup(dir);
    if (!given && s->domain == DM_DOMAIN_PROSE) {
        glob_t g;
        const char *best = NULL;
        if (glob(PROSE_FALLBACK_GLOB, GLOB_ONLYDIR, NULL, &g) == 0)
            for (size_t i = 0; i < g.gl_pathc; i++)
                if (!best || strverscmp(g.gl_pathv[i], best) > 0)   /* 6.12 after 6.9 */
                    best = g.gl_pathv[i];
        char *found = best ? dm_strdup(best) : NULL;
        globfree(&g);
        if (found)
            return found;
    }
    dm_errorf(err, "%s: %s source directory not found (the default %s comes with the Debian package %s: "
                   "apt-get install %s)", dir, dm_domain_name(s->domain), dflt, s->package, s->package);
    return NULL;
}

static uint64_t order_key(uint64_t seed, const char *id)
{
    return cp_mix64(dm_corpus_hash(id, strlen(id)) ^ cp_mix64(seed + 0x0dde5eedULL));
}

/* Reads every document of one tree into docs. */
static int read_tree(const source *s, const char *root, uint64_t seed, doc_list *docs, dm_corpus_stats *st,
                     dm_progress *prog, dm_err *err)
{
    cp_files fs;
    if (cp_list_files(root, s->suffixes, s->n_suffixes, s->skip, s->n_skip, &fs, err))
        return -1;
    int rc = 0;
    for (size_t i = 0; i < fs.n && rc == 0; i++) {
        char *text;
        size_t len;
        if ((rc = cp_read_doc(fs.f[i].path, &text, &len, err)))
            break;
        if (len == 0 || !cp_text_ok(text, len)) {
            dm_log(2, "corpus: skipping %s (%s)\n", fs.f[i].path, len ? "not UTF-8 text" : "empty");
            *(len ? &st->skipped_not_utf8 : &st->skipped_empty) += 1;
            free(text);
            continue;
        }
        char *id = dm_asprintf("%s/%s", dm_domain_name(s->domain), fs.f[i].rel);
        doc d = { id, s->domain, dm_split_of(id, strlen(id)), order_key(seed, id), text, len };
        docs_push(docs, d);
        dm_progress_update(prog, prog->done + 1);
    }
    cp_files_free(&fs);
    return rc;
}

/* The first n distinct problems of stream `seed` (the same sequence
 * dm_reasoning_heldout walks, so its first test problems are this corpus's). */
static void make_reasoning(uint64_t seed, int n, doc_list *docs, dm_progress *prog)
{
    cp_hashset seen = { 0 };
    int got = 0;
    for (uint64_t i = 0; got < n; i++) {
        dm_reasoning_doc r;
        dm_reasoning_make(seed, i, &r);
        size_t qn = strlen(r.question);
        if (cp_hashset_add(&seen, dm_corpus_hash(r.question, qn))) {
            doc d = { dm_strdup(r.id), DM_DOMAIN_REASONING, dm_split_of(r.question, qn), order_key(seed, r.id),
                      r.text, strlen(r.text) };
            r.text = NULL;
            docs_push(docs, d);
            got++;
            dm_progress_update(prog, prog->done + 1);
        }
        dm_reasoning_doc_free(&r);
    }
    cp_hashset_free(&seen);
}

static int doc_cmp(const void *a, const void *b)
{
    const doc *x = a, *y = b;
    if (x->order != y->order)
        return x->order < y->order ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* ---- output ---- */

static int write_split(const char *dir, dm_split s, const doc_list *docs, dm_corpus_stats *st, dm_err *err)
{
    char *path = dm_corpus_split_path(dir, s);
    FILE *f = fopen(path, "wb");
    if (!f) {
        dm_errorf(err, "%s: cannot create: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    cp_str line = { 0 };
    int rc = 0;
    for (size_t i = 0; i < docs->n && rc == 0; i++) {
        const doc *d = &docs->d[i];
        if (d->split != s)
            continue;
        line.n = 0;
        CP_STR_LIT(&line, "{\"id\":");
        cp_json_string(&line, d->id, strlen(d->id));
        CP_STR_LIT(&line, ",\"source\":");
        const char *src = dm_domain_name(d->domain);
        cp_json_string(&line, src, strlen(src));
        CP_STR_LIT(&line, ",\"text\":");
        cp_json_string(&line, d->text, d->len);
        CP_STR_LIT(&line, "}\n");
        if (fwrite(line.p, 1, line.n, f) != line.n)
            rc = dm_errorf(err, "%s: write failed: %s", path, strerror(errno));
        st->docs[s][d->domain]++;
        st->bytes[s][d->domain] += (int64_t)d->len;
    }
    if (fclose(f) != 0 && rc == 0)
        rc = dm_errorf(err, "%s: write failed: %s", path, strerror(errno));
    free(line.p);
    free(path);
    return rc;
}

static cJSON *counts_json(int64_t docs, int64_t bytes)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "documents", (double)docs);
    cJSON_AddNumberToObject(o, "bytes", (double)bytes);
    return o;
}

static int write_stats(const char *dir, const dm_corpus_opts *o, char *const *roots, const dm_corpus_stats *st,
                       dm_err *err)
{
    cJSON *root = cJSON_CreateObject();
    char seed[32];   /* a u64 seed exactly (a JSON number written as a double would round above 2^53) */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddRawToObject(root, "seed", seed);
    cJSON_AddNumberToObject(root, "reasoning_documents", o->reasoning_docs);
    cJSON *src = cJSON_AddObjectToObject(root, "sources");
    cJSON_AddStringToObject(src, "code", roots[DM_DOMAIN_CODE]);
    cJSON_AddStringToObject(src, "prose", roots[DM_DOMAIN_PROSE]);
    cJSON_AddStringToObject(src, "reasoning", "generated (src/corpus/reasoning.c)");
    cJSON_AddStringToObject(root, "split_rule", "fnv1a64+fmix64(identity) % 1000: <940 train, <970 val, else test; "
                                                "identity = id (code, prose) or question text (reasoning)");
    cJSON *splits = cJSON_AddObjectToObject(root, "splits");
    for (int s = 0; s < DM_SPLIT_COUNT; s++) {
        cJSON *js = cJSON_AddObjectToObject(splits, dm_split_name((dm_split)s));
        int64_t td = 0, tb = 0;
        for (int d = 0; d < DM_DOMAIN_COUNT; d++) {
            cJSON_AddItemToObject(js, dm_domain_name((dm_domain)d), counts_json(st->docs[s][d], st->bytes[s][d]));
            td += st->docs[s][d];
            tb += st->bytes[s][d];
        }
        cJSON_AddItemToObject(js, "total", counts_json(td, tb));
    }
    cJSON *sk = cJSON_AddObjectToObject(root, "skipped");
    cJSON_AddNumberToObject(sk, "not_utf8", (double)st->skipped_not_utf8);
    cJSON_AddNumberToObject(sk, "empty", (double)st->skipped_empty);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    char *path = dm_path_join(dir, "stats.json");
    cp_str body = { 0 };
    cp_str_add(&body, text, strlen(text));
    CP_STR_LIT(&body, "\n");
    int rc = dm_write_file_atomic(path, body.p, body.n, err);
    free(body.p);
    free(text);
    free(path);
    return rc;
}

int dm_corpus_build(const dm_corpus_opts *o, dm_corpus_stats *st_out, dm_err *err)
{
    if (!o->out_dir || o->reasoning_docs < 0)
        return dm_errorf(err, "corpus build: need an output directory and reasoning_docs >= 0");
    char *roots[DM_DOMAIN_COUNT] = { 0 };
    for (int i = 0; i < 2; i++) {
        roots[sources[i].domain] = resolve_dir(i == 0 ? o->code_dir : o->prose_dir, &sources[i], err);
        if (!roots[sources[i].domain]) {
            free(roots[0]);
            return -1;
        }
    }
    dm_outdir od;
    if (dm_outdir_begin(&od, o->out_dir, o->force, err)) {
        free(roots[0]), free(roots[1]);
        return -1;
    }
    dm_corpus_stats st = { 0 };
    doc_list docs = { 0 };
    dm_progress prog;
    dm_progress_begin(&prog, "corpus", "docs", 0);
    int rc = 0;
    for (int i = 0; i < 2 && rc == 0; i++)
        rc = read_tree(&sources[i], roots[sources[i].domain], o->seed, &docs, &st, &prog, err);
    if (rc == 0) {
        make_reasoning(o->seed, o->reasoning_docs, &docs, &prog);
        qsort(docs.d, docs.n, sizeof *docs.d, doc_cmp);
        for (int s = 0; s < DM_SPLIT_COUNT && rc == 0; s++)
            rc = write_split(od.tmp_path, (dm_split)s, &docs, &st, err);
    }
    dm_progress_end(&prog);
    if (rc == 0)
        rc = write_stats(od.tmp_path, o, roots, &st, err);
    if (rc == 0)
        rc = dm_outdir_commit(&od, err);
    if (rc)
        dm_outdir_abort(&od);   /* nothing left behind (a no-op after a commit) */
    docs_free(&docs);
    free(roots[0]), free(roots[1]);
    if (rc == 0 && st_out)
        *st_out = st;
    return rc;
}
