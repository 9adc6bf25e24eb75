/* test_dataset — the tokenized dataset and its cache, on a fake corpus and a
 * small tokenizer trained here:
 *  - round trip: each domain's stream equals the concatenation, in file
 *    order, of dm_tokenize(text, allow_special) + <|endoftext|> of that
 *    domain's records (computed here one document at a time), with document
 *    and byte counts; <think> arrives as its special token;
 *  - the first open writes cache-<hash>/ (streams + <split>.json), the
 *    second maps it (from_cache) with identical tokens; dm_dataset_tokenize
 *    gives the same streams; 1 and 2 threads give the same streams;
 *  - a changed .jsonl (another size) rebuilds the cache; another tokenizer
 *    gets its own cache directory;
 *  - errors: unknown split, missing split file, tokenizer without
 *    <|endoftext|>. */
#include <dirent.h>

#include "corpus/corpus_test_util.h"

static const char *const specials[] = { "<|endoftext|>", "<think>", "</think>" };

static char *train_tokenizer(const char *dir, const char *name, int vocab, int n_special)
{
    static const char text[] = "def f(x):\n    return x + 1\nThe kernel boots. What is 12 + 34? col 1: 2+4+0=6, "
                               "write 6, carry 0\nclass JSONDecoder: pass\n";
    char *json;
    dm_err err;
    DM_ASSERT(dm_bpe_train(text, sizeof text - 1, vocab, specials, n_special, &json, &err) == 0);
    char *path = dm_path_join(dir, name);
    DM_ASSERT(dm_write_file_atomic(path, json, strlen(json), &err) == 0);
    free(json);
    return path;
}

/* What the dataset must hold, computed document by document. */
static void expected_stream(const char *corpus, const char *split, const dm_tokenizer *tok, const char *domain,
                            uint32_t **out, size_t *n, int64_t *docs, int64_t *bytes)
{
    char *path = dm_corpus_split_path(corpus, (dm_split)dm_split_parse(split));
    dm_docs d;
    dm_err err;
    DM_ASSERT(dm_docs_load(&d, path, &err) == 0);
    free(path);
    uint32_t eos = (uint32_t)dm_token_id(tok, "<|endoftext|>");
    size_t cap = 1024;
    *out = dm_malloc(cap * sizeof **out);
    *n = 0;
    *docs = *bytes = 0;
    for (size_t i = 0; i < d.n; i++) {
        if (strcmp(d.doc[i].source, domain))
            continue;
        int k;
        int32_t *ids = dm_tokenize(tok, d.doc[i].text, d.doc[i].len, true, &k);
        while (*n + (size_t)k + 1 > cap)
            *out = dm_realloc(*out, (cap *= 2) * sizeof **out);
        for (int j = 0; j < k; j++)
            (*out)[(*n)++] = (uint32_t)ids[j];
        (*out)[(*n)++] = eos;
        free(ids);
        (*docs)++;
        *bytes += (int64_t)d.doc[i].len;
    }
    dm_docs_free(&d);
}

static void check_streams(const dm_dataset *ds, const char *corpus, const char *split, const dm_tokenizer *tok,
                          const char *what)
{
    static const char *const order[] = { "code", "prose", "reasoning" };
    int k = 0;
    for (int o = 0; o < 3; o++) {
        uint32_t *want;
        size_t n_want, n;
        int64_t docs, bytes;
        expected_stream(corpus, split, tok, order[o], &want, &n_want, &docs, &bytes);
        if (docs == 0) {
            CHECK(dm_dataset_find(ds, order[o]) < 0, "%s: empty domain %s listed", what, order[o]);
            free(want);
            continue;
        }
        CHECK(k < dm_dataset_n_domains(ds) && !strcmp(dm_dataset_domain(ds, k), order[o]),
              "%s: domain %d is not %s", what, k, order[o]);
        if (k >= dm_dataset_n_domains(ds)) {
            free(want);
            continue;
        }
        const uint32_t *got = dm_dataset_tokens(ds, k, &n);
        CHECK(n == n_want && !memcmp(got, want, n * sizeof *got), "%s: %s stream differs (%zu vs %zu tokens)", what,
              order[o], n, n_want);
        CHECK(ds->n_docs[k] == docs && ds->n_bytes[k] == bytes, "%s: %s counts %lld docs %lld bytes, want %lld %lld",
              what, order[o], (long long)ds->n_docs[k], (long long)ds->n_bytes[k], (long long)docs,
              (long long)bytes);
        free(want);
        k++;
    }
    CHECK(k == dm_dataset_n_domains(ds), "%s: %d domains, want %d", what, dm_dataset_n_domains(ds), k);
}

static bool same_streams(const dm_dataset *a, const dm_dataset *b)
{
    if (a->n_domains != b->n_domains)
        return false;
    for (int d = 0; d < a->n_domains; d++)
        if (strcmp(a->domain[d], b->domain[d]) || a->n_tokens[d] != b->n_tokens[d] ||
            memcmp(a->tokens[d], b->tokens[d], a->n_tokens[d] * sizeof(uint32_t)))
            return false;
    return true;
}

static int count_cache_dirs(const char *corpus)
{
    DIR *d = opendir(corpus);
    struct dirent *e;
    int n = 0;
    while (d && (e = readdir(d)))
        n += !strncmp(e->d_name, "cache-", 6);
    if (d)
        closedir(d);
    return n;
}

int main(void)
{
    char *root = scratch_dir("dataset");
    make_fake_trees(root);
    dm_err err;
    CHECK(build_fake(root, "corpus", 3, 40, false, NULL, &err) == 0, "build: %s", err.msg);
    char *corpus = dm_path_join(root, "corpus");
    char *tok_path = train_tokenizer(root, "tok.json", 300, 3);
    dm_tokenizer *tok;
    DM_ASSERT(dm_tokenizer_load(&tok, tok_path, &err) == 0);

    dm_dataset ds, ds2, mem;
    CHECK(dm_dataset_open(&ds, corpus, "train", tok_path, &err) == 0, "open: %s", err.msg);
    CHECK(!ds.from_cache, "first open claims a cache");
    check_streams(&ds, corpus, "train", tok, "first open");
    int r = dm_dataset_find(&ds, "reasoning");
    size_t n = 0;
    const uint32_t *rt = r >= 0 ? dm_dataset_tokens(&ds, r, &n) : NULL;
    bool has_think = false;
    for (size_t i = 0; i < n; i++)
        has_think |= rt[i] == (uint32_t)dm_token_id(tok, "<think>");
    CHECK(has_think, "no <think> special token in the reasoning stream");
    char *meta = dm_path_join(ds.cache_dir, "train.json");
    CHECK(dm_path_exists(meta), "%s not written", meta);
    free(meta);

    CHECK(dm_dataset_open(&ds2, corpus, "train", tok_path, &err) == 0, "reopen: %s", err.msg);
    CHECK(ds2.from_cache, "second open did not use the cache");
    CHECK(same_streams(&ds, &ds2), "cached streams differ");
    dm_dataset_close(&ds2);

    dm_threads_set(1);
    CHECK(dm_dataset_tokenize(&mem, corpus, "train", tok, &err) == 0, "tokenize: %s", err.msg);
    CHECK(same_streams(&ds, &mem) && mem.cache_dir == NULL, "in-memory streams differ (1 thread)");
    dm_dataset_close(&mem);
    dm_threads_set(2);
    CHECK(dm_dataset_tokenize(&mem, corpus, "train", tok, &err) == 0, "tokenize: %s", err.msg);
    CHECK(same_streams(&ds, &mem), "in-memory streams differ (2 threads)");
    dm_dataset_close(&mem);
    dm_threads_set(0);
    dm_dataset_close(&ds);

    /* a changed split file rebuilds the cache */
    char *train = dm_path_join(corpus, "train.jsonl");
    FILE *f = fopen(train, "ab");
    fputs("{\"id\":\"prose/extra.rst\",\"source\":\"prose\",\"text\":\"An extra <think> line.\"}\n", f);
    fclose(f);
    CHECK(dm_dataset_open(&ds, corpus, "train", tok_path, &err) == 0, "open after change: %s", err.msg);
    CHECK(!ds.from_cache, "a stale cache was used");
    check_streams(&ds, corpus, "train", tok, "after change");
    dm_dataset_close(&ds);

    char *tok2 = train_tokenizer(root, "tok2.json", 280, 3);
    CHECK(dm_dataset_open(&ds, corpus, "val", tok2, &err) == 0, "open tok2: %s", err.msg);
    dm_dataset_close(&ds);
    CHECK(count_cache_dirs(corpus) == 2, "%d cache directories, want 2", count_cache_dirs(corpus));

    CHECK(dm_dataset_open(&ds, corpus, "dev", tok_path, &err) != 0 && strstr(err.msg, "dev"), "bad split accepted");
    CHECK(dm_dataset_open(&ds, root, "train", tok_path, &err) != 0 && strstr(err.msg, "train.jsonl"),
          "missing split file: '%s'", err.msg);
    char *tok3 = train_tokenizer(root, "tok3.json", 280, 0);
    CHECK(dm_dataset_open(&ds, corpus, "test", tok3, &err) != 0 && strstr(err.msg, "<|endoftext|>"),
          "tokenizer without <|endoftext|>: '%s'", err.msg);

    dm_tokenizer_free(tok);
    free(tok_path), free(tok2), free(tok3), free(train), free(corpus), free(root);
    return check_finish("test_dataset");
}
