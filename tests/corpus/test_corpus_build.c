/* test_corpus_build — dm_corpus_build on small fake source trees written
 * here (tests/corpus/corpus_test_util.h):
 *  - every fake document appears once, in the split dm_split_of(id) names,
 *    with its text byte for byte (read back with cJSON, an independent JSON
 *    decoder; texts hold quotes, backslashes, tabs, CR and control bytes), a
 *    .rst.gz inflated; what must stay out stays out (dist-packages,
 *    __pycache__, translations/, a non-UTF-8 file, an empty file, a symlink,
 *    other suffixes), and the skip counters say so;
 *  - reasoning records sit in the split of their question; stats.json and
 *    the returned counts agree with the files;
 *  - determinism: the same seed gives byte-identical files; another seed
 *    changes the reasoning but not where code and prose go;
 *  - split stability: adding files moves no existing document;
 *  - dm_reasoning_heldout(seed, split, n) yields exactly the corpus's
 *    reasoning problems of that split, in stream order;
 *  - an existing output needs force; a missing source directory is an error
 *    naming it and the Debian package; no partial directory is left behind. */
#include <cjson/cJSON.h>
#include <dirent.h>

#include "corpus/corpus_test_util.h"

#define SEED 7
#define N_REASONING 60

typedef struct corpus_view {
    dm_docs split[DM_SPLIT_COUNT];
} corpus_view;

static void view_load(corpus_view *v, const char *dir)
{
    for (int s = 0; s < DM_SPLIT_COUNT; s++) {
        char *path = dm_corpus_split_path(dir, (dm_split)s);
        dm_err err;
        if (dm_docs_load(&v->split[s], path, &err)) {
            CHECK(0, "%s", err.msg);
            memset(&v->split[s], 0, sizeof v->split[s]);
        }
        free(path);
    }
}

static void view_free(corpus_view *v)
{
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        dm_docs_free(&v->split[s]);
}

/* The record with this id and its split, or NULL. */
static const dm_doc *view_find(const corpus_view *v, const char *id, int *split)
{
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        for (size_t i = 0; i < v->split[s].n; i++)
            if (!strcmp(v->split[s].doc[i].id, id)) {
                *split = s;
                return &v->split[s].doc[i];
            }
    return NULL;
}

static size_t question_len(const char *text)
{
    const char *p = strstr(text, "\n<think>\n");
    return p ? (size_t)(p - text) : strlen(text);
}

static void check_fake_docs(const corpus_view *v, const fake_doc *docs, size_t n, const char *source)
{
    for (size_t i = 0; i < n; i++) {
        int s;
        const dm_doc *d = view_find(v, docs[i].id, &s);
        CHECK(d, "%s missing", docs[i].id);
        if (!d)
            continue;
        CHECK(s == (int)dm_split_of(docs[i].id, strlen(docs[i].id)), "%s in split %d, rule says %d", docs[i].id, s,
              (int)dm_split_of(docs[i].id, strlen(docs[i].id)));
        CHECK(d->len == strlen(docs[i].text) && !memcmp(d->text, docs[i].text, d->len), "%s: text differs: '%s'",
              docs[i].id, d->text);
        CHECK(!strcmp(d->source, source), "%s: source '%s'", docs[i].id, d->source);
    }
}

static const char *const left_out[] = { "dist-packages", "__pycache__", "latin1", "empty", "link", "translations",
                                        "conf.py", "README.txt", "notes" };

static void check_contents(const char *dir, const dm_corpus_stats *st)
{
    corpus_view v;
    view_load(&v, dir);
    check_fake_docs(&v, fake_code, N_FAKE_CODE, "code");
    check_fake_docs(&v, fake_prose, N_FAKE_PROSE, "prose");
    int64_t n_reason = 0, per[DM_SPLIT_COUNT][DM_DOMAIN_COUNT] = { { 0 } };
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        for (size_t i = 0; i < v.split[s].n; i++) {
            const dm_doc *d = &v.split[s].doc[i];
            for (size_t k = 0; k < sizeof left_out / sizeof left_out[0]; k++)
                CHECK(!strstr(d->id, left_out[k]), "%s should have been left out", d->id);
            int dom = dm_domain_parse(d->source);
            CHECK(dom >= 0, "%s: unknown source '%s'", d->id, d->source);
            if (dom < 0)
                continue;
            per[s][dom]++;
            if (dom != DM_DOMAIN_REASONING)
                continue;
            n_reason++;
            size_t q = question_len(d->text);
            CHECK(s == (int)dm_split_of(d->text, q), "%s: split %d, its question's is %d", d->id, s,
                  (int)dm_split_of(d->text, q));
        }
    CHECK(n_reason == N_REASONING, "%lld reasoning records, want %d", (long long)n_reason, N_REASONING);
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        for (int d = 0; d < DM_DOMAIN_COUNT; d++)
            CHECK(per[s][d] == st->docs[s][d], "split %d domain %d: %lld records, stats say %lld", s, d,
                  (long long)per[s][d], (long long)st->docs[s][d]);
    CHECK(st->skipped_not_utf8 == 1 && st->skipped_empty == 1, "skipped %lld not-UTF-8, %lld empty (want 1, 1)",
          (long long)st->skipped_not_utf8, (long long)st->skipped_empty);
    size_t len;
    char *text = slurp(dir, "stats.json", &len);
    cJSON *j = cJSON_Parse(text);
    cJSON *c = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "splits"),
                                                                           "train"), "reasoning"), "documents");
    CHECK(cJSON_IsNumber(c) && c->valuedouble == (double)per[DM_SPLIT_TRAIN][DM_DOMAIN_REASONING],
          "stats.json train reasoning documents wrong");
    cJSON_Delete(j);
    free(text);
    view_free(&v);
}

static bool same_file(const char *a, const char *b, const char *name)
{
    size_t la, lb;
    char *x = slurp(a, name, &la), *y = slurp(b, name, &lb);
    bool same = la == lb && !memcmp(x, y, la);
    free(x), free(y);
    return same;
}

/* Every document of old is in the same split of new, with the same text. */
static void check_stable(const char *old_dir, const char *new_dir, bool reasoning_too)
{
    corpus_view a, b;
    view_load(&a, old_dir);
    view_load(&b, new_dir);
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        for (size_t i = 0; i < a.split[s].n; i++) {
            const dm_doc *d = &a.split[s].doc[i];
            if (!reasoning_too && !strcmp(d->source, "reasoning"))
                continue;
            int s2;
            const dm_doc *e = view_find(&b, d->id, &s2);
            CHECK(e && s2 == s && e->len == d->len && !memcmp(e->text, d->text, d->len), "%s moved or changed",
                  d->id);
        }
    view_free(&a);
    view_free(&b);
}

static int id_index(const char *id)
{
    const char *slash = strrchr(id, '/');
    return slash ? atoi(slash + 1) : -1;
}

static int by_index(const void *a, const void *b)
{
    return id_index(((const dm_doc *)a)->id) - id_index(((const dm_doc *)b)->id);
}

static void check_heldout(const char *dir)
{
    corpus_view v;
    view_load(&v, dir);
    for (int s = 0; s < DM_SPLIT_COUNT; s++) {
        dm_doc *r = dm_calloc(v.split[s].n + 1, sizeof *r);
        int n = 0;
        for (size_t i = 0; i < v.split[s].n; i++)
            if (!strcmp(v.split[s].doc[i].source, "reasoning"))
                r[n++] = v.split[s].doc[i];
        qsort(r, (size_t)n, sizeof *r, by_index);
        dm_reasoning_doc *h = dm_reasoning_heldout(SEED, (dm_split)s, n);
        for (int i = 0; i < n; i++) {
            CHECK(!strcmp(h[i].id, r[i].id) && !strcmp(h[i].text, r[i].text), "split %d problem %d: heldout %s, "
                  "corpus %s", s, i, h[i].id, r[i].id);
            dm_reasoning_doc_free(&h[i]);
        }
        free(h);
        free(r);
    }
    view_free(&v);
}

static bool partial_left(const char *root)
{
    DIR *d = opendir(root);
    struct dirent *e;
    bool found = false;
    while (d && (e = readdir(d)))
        found |= strstr(e->d_name, "partial") != NULL;
    if (d)
        closedir(d);
    return found;
}

int main(void)
{
    char *root = scratch_dir("corpus_build");
    make_fake_trees(root);
    dm_corpus_stats st, st2;
    dm_err err;
    CHECK(build_fake(root, "c1", SEED, N_REASONING, false, &st, &err) == 0, "build: %s", err.msg);
    char *c1 = dm_path_join(root, "c1"), *c2 = dm_path_join(root, "c2"), *c3 = dm_path_join(root, "c3");
    char *c4 = dm_path_join(root, "c4");
    check_contents(c1, &st);
    check_heldout(c1);

    CHECK(build_fake(root, "c2", SEED, N_REASONING, false, &st2, &err) == 0, "build 2: %s", err.msg);
    static const char *const files[] = { "train.jsonl", "val.jsonl", "test.jsonl", "stats.json" };
    for (int i = 0; i < 4; i++)
        CHECK(same_file(c1, c2, files[i]), "same seed, %s differs", files[i]);

    CHECK(build_fake(root, "c3", SEED + 1, N_REASONING, false, &st2, &err) == 0, "build 3: %s", err.msg);
    CHECK(!same_file(c1, c3, "train.jsonl"), "another seed gave the same train.jsonl");
    check_stable(c1, c3, false);

    put_text(root, "code/zzz/new_module.py", "print('new')\n");
    put_text(root, "prose/aaa/new.rst", "New\n===\n");
    CHECK(build_fake(root, "c4", SEED, N_REASONING + 5, false, &st2, &err) == 0, "build 4: %s", err.msg);
    check_stable(c1, c4, true);

    CHECK(build_fake(root, "c1", SEED, N_REASONING, false, &st2, &err) != 0 && strstr(err.msg, "already exists"),
          "an existing output was replaced without force");
    CHECK(build_fake(root, "c1", SEED, 3, true, &st2, &err) == 0, "force: %s", err.msg);
    CHECK(st2.docs[0][DM_DOMAIN_REASONING] + st2.docs[1][DM_DOMAIN_REASONING] + st2.docs[2][DM_DOMAIN_REASONING] == 3,
          "force did not rebuild");
    char *nope = dm_path_join(root, "nope");
    dm_corpus_opts o = { .out_dir = c4, .code_dir = nope, .prose_dir = nope, .force = true };
    CHECK(dm_corpus_build(&o, NULL, &err) != 0 && strstr(err.msg, nope) && strstr(err.msg, "not found") &&
              strstr(err.msg, "apt-get install libpython3.11-stdlib"), "missing source directory: '%s'", err.msg);
    CHECK(!partial_left(root), "a partial directory was left behind");
    free(nope);
    free(c1), free(c2), free(c3), free(c4);
    free(root);
    return check_finish("test_corpus_build");
}
