/* test_bpe_train — dm_bpe_train against a naive trainer written here (full
 * pair recount before every merge, the textbook algorithm) on a small text:
 * the merge lists must be identical, order included. On the ~1 MB corpus:
 * determinism, the tokenizer.json layout the brief fixes, vocab size and
 * special-token ids, round trips (NFC applied, as the trained tokenizer
 * normalizes), compression, time, and argument errors.
 *
 * With DM_TOK_BENCH=1 it also trains an 8192 vocab on the first 10 MB of
 * the Python 3.11 stdlib sources and reports training time and encode throughput
 * (a benchmark, not part of the normal run). */
#include <cjson/cJSON.h>
#include <glob.h>
#include <utf8proc.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_test_util.h"

#define TRAIN_VOCAB 4096
#define NAIVE_TEXT_BYTES 30000       /* the naive trainer's corpus: first bytes of the corpus */
#define NAIVE_VOCAB (256 + 400)
#define SHORT_TEXT_BYTES 3000        /* so short that every pair gets merged away */
#define SHORT_VOCAB 20000
#define MAX_TRAIN_SEC 20.0           /* 1 MB must train well within this (Release takes < 1 s) */
#define MAX_TOKENS_PER_BYTE 0.40     /* a 4k vocab on its own training text compresses better */

/* ---- naive trainer ---------------------------------------------------------------- */

typedef struct nword {
    int32_t *s;
    int n;
    int64_t f;
} nword;

typedef struct naive {
    nword *w;
    int nw, cw;
    uint8_t **tok;
    int *tok_len, n_tok;
    int32_t (*merges)[2];
    int n_merges;
} naive;

static void naive_word(void *ctx, const uint8_t *s, size_t n)
{
    naive *nv = ctx;
    for (int i = 0; i < nv->nw; i++)
        if (nv->w[i].n == (int)n) {
            bool eq = true;
            for (size_t k = 0; k < n && eq; k++)
                eq = nv->w[i].s[k] == s[k];
            if (eq) {
                nv->w[i].f++;
                return;
            }
        }
    if (nv->nw == nv->cw)
        nv->w = realloc(nv->w, (size_t)(nv->cw = nv->cw ? 2 * nv->cw : 256) * sizeof *nv->w);
    nword *w = &nv->w[nv->nw++];
    w->s = malloc(n * sizeof *w->s);
    for (size_t k = 0; k < n; k++)
        w->s[k] = s[k];
    w->n = (int)n;
    w->f = 1;
}

static void naive_added(void *ctx, int32_t id)
{
    (void)ctx, (void)id;
}

typedef struct npair {
    int32_t a, b;
    int64_t f;
} npair;

static int npair_cmp(const void *x, const void *y)
{
    const npair *p = x, *q = y;
    return p->a != q->a ? (p->a < q->a ? -1 : 1) : p->b != q->b ? (p->b < q->b ? -1 : 1) : 0;
}

/* One step: count every adjacent pair from scratch, take the most frequent
 * (ties: smallest (a, b)). Returns false when no pair is left. */
static bool naive_best(const naive *nv, int32_t *a, int32_t *b)
{
    size_t n = 0;
    for (int i = 0; i < nv->nw; i++)
        n += nv->w[i].n > 1 ? (size_t)nv->w[i].n - 1 : 0;
    npair *p = malloc((n + 1) * sizeof *p);
    n = 0;
    for (int i = 0; i < nv->nw; i++)
        for (int k = 0; k + 1 < nv->w[i].n; k++)
            p[n++] = (npair){nv->w[i].s[k], nv->w[i].s[k + 1], nv->w[i].f};
    qsort(p, n, sizeof *p, npair_cmp);
    int64_t best = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i;
        int64_t f = 0;
        while (j < n && p[j].a == p[i].a && p[j].b == p[i].b)
            f += p[j++].f;
        if (f > best) {   /* strictly greater: the first (smallest) pair wins ties */
            best = f;
            *a = p[i].a;
            *b = p[i].b;
        }
        i = j;
    }
    free(p);
    return best >= 1;
}

static int32_t naive_token(naive *nv, const uint8_t *s, int n)
{
    for (int i = 0; i < nv->n_tok; i++)
        if (nv->tok_len[i] == n && memcmp(nv->tok[i], s, (size_t)n) == 0)
            return i;
    nv->tok = realloc(nv->tok, (size_t)(nv->n_tok + 1) * sizeof *nv->tok);
    nv->tok_len = realloc(nv->tok_len, (size_t)(nv->n_tok + 1) * sizeof *nv->tok_len);
    nv->tok[nv->n_tok] = malloc((size_t)n);
    memcpy(nv->tok[nv->n_tok], s, (size_t)n);
    nv->tok_len[nv->n_tok] = n;
    return nv->n_tok++;
}

static void naive_train(naive *nv, const dm_tokenizer *base, const char *text, size_t len, int target)
{
    tok_sink sink = {.word = naive_word, .added = naive_added, .ctx = nv};
    tok_pipeline(base, (const uint8_t *)text, len, true, &sink);
    for (int b = 0; b < 256; b++)
        naive_token(nv, &(uint8_t){(uint8_t)b}, 1);
    int32_t A, B;
    while (nv->n_tok < target && naive_best(nv, &A, &B)) {
        uint8_t cat[4096];
        memcpy(cat, nv->tok[A], (size_t)nv->tok_len[A]);
        memcpy(cat + nv->tok_len[A], nv->tok[B], (size_t)nv->tok_len[B]);
        int32_t X = naive_token(nv, cat, nv->tok_len[A] + nv->tok_len[B]);
        nv->merges = realloc(nv->merges, (size_t)(nv->n_merges + 1) * sizeof *nv->merges);
        nv->merges[nv->n_merges][0] = A;
        nv->merges[nv->n_merges++][1] = B;
        for (int i = 0; i < nv->nw; i++) {
            nword *w = &nv->w[i];
            int o = 0;
            for (int k = 0; k < w->n;)
                if (k + 1 < w->n && w->s[k] == A && w->s[k + 1] == B)
                    w->s[o++] = X, k += 2;
                else
                    w->s[o++] = w->s[k++];
            w->n = o;
        }
    }
}

static void naive_free(naive *nv)
{
    for (int i = 0; i < nv->nw; i++)
        free(nv->w[i].s);
    for (int i = 0; i < nv->n_tok; i++)
        free(nv->tok[i]);
    free(nv->w), free(nv->tok), free(nv->tok_len), free(nv->merges);
}

/* GPT-2 byte -> character, written again as the test's own table. */
static void bl_append(char *out, const uint8_t *s, int n)
{
    out += strlen(out);
    for (int i = 0; i < n; i++) {
        int b = s[i], cp = b;
        if (!((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae))) {
            int k = 0;
            for (int x = 0; x < b; x++)
                k += !((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae));
            cp = 256 + k;
        }
        out += utf8proc_encode_char(cp, (utf8proc_uint8_t *)out);
    }
    *out = 0;
}

/* Both trainers on the first `bytes` of the corpus up to `vocab`. */
static void test_against_naive(const char *corpus, size_t bytes, int vocab)
{
    char *json;
    dm_err err;
    dm_tokenizer *base;
    DM_ASSERT(dm_bpe_train("", 0, 256 + N_GLM_SPECIALS, glm_specials, N_GLM_SPECIALS, &json, &err) == 0);
    DM_ASSERT(dm_tokenizer_load_json(&base, json, strlen(json), "base", &err) == 0);
    free(json);
    naive nv = {0};
    naive_train(&nv, base, corpus, bytes, vocab - N_GLM_SPECIALS);
    dm_tokenizer_free(base);
    DM_ASSERT(dm_bpe_train(corpus, bytes, vocab, glm_specials, N_GLM_SPECIALS, &json, &err) == 0);
    cJSON *root = cJSON_Parse(json);
    cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"), "merges");
    int n = cJSON_GetArraySize(merges), i = 0;
    CHECK(n == nv.n_merges, "naive trainer made %d merges, dm_bpe_train %d", nv.n_merges, n);
    for (const cJSON *m = merges->child; m && i < nv.n_merges; m = m->next, i++) {
        char want[1024] = "";
        bl_append(want, nv.tok[nv.merges[i][0]], nv.tok_len[nv.merges[i][0]]);
        strcat(want, " ");
        bl_append(want, nv.tok[nv.merges[i][1]], nv.tok_len[nv.merges[i][1]]);
        if (strcmp(m->valuestring, want) != 0) {
            failf("merge %d: dm_bpe_train \"%s\", naive \"%s\"", i, m->valuestring, want);
            break;
        }
    }
    printf("  %zu bytes, vocab %d: naive trainer agrees on %d of %d merges (%d new tokens)\n", bytes, vocab, i,
           nv.n_merges, nv.n_tok - 256);
    cJSON_Delete(root);
    free(json);
    naive_free(&nv);
}

/* ---- the trained file -------------------------------------------------------------- */

static const char *jstr(const cJSON *o, const char *k)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(j) ? j->valuestring : "";
}

static void test_layout(const char *json)
{
    cJSON *r = cJSON_Parse(json);
    DM_ASSERT(r);
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(r, "pre_tokenizer");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(pt, "pretokenizers");
    const cJSON *split = cJSON_GetArrayItem(steps, 0), *bl = cJSON_GetArrayItem(steps, 1);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(r, "model");
    CHECK(strcmp(jstr(r, "version"), "1.0") == 0, "version \"%s\"", jstr(r, "version"));
    CHECK(strcmp(jstr(cJSON_GetObjectItemCaseSensitive(r, "normalizer"), "type"), "NFC") == 0, "normalizer");
    CHECK(strcmp(jstr(pt, "type"), "Sequence") == 0 && cJSON_GetArraySize(steps) == 2, "pre_tokenizer shape");
    CHECK(strcmp(jstr(split, "type"), "Split") == 0 && strcmp(jstr(split, "behavior"), "Isolated") == 0 &&
              strcmp(jstr(cJSON_GetObjectItemCaseSensitive(split, "pattern"), "Regex"), tok_glm_pattern) == 0,
          "Split step");
    CHECK(strcmp(jstr(bl, "type"), "ByteLevel") == 0 &&
              cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(bl, "add_prefix_space")) &&
              cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(bl, "use_regex")),
          "ByteLevel step");
    CHECK(strcmp(jstr(cJSON_GetObjectItemCaseSensitive(r, "decoder"), "type"), "ByteLevel") == 0, "decoder");
    CHECK(strcmp(jstr(model, "type"), "BPE") == 0 &&
              cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "vocab")) == TRAIN_VOCAB - N_GLM_SPECIALS,
          "model: type %s, %d vocab entries", jstr(model, "type"),
          cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(model, "vocab")));
    const cJSON *added = cJSON_GetObjectItemCaseSensitive(r, "added_tokens");
    int i = 0;
    for (const cJSON *a = added ? added->child : NULL; a; a = a->next, i++)
        CHECK(cJSON_GetObjectItemCaseSensitive(a, "id")->valueint == TRAIN_VOCAB - N_GLM_SPECIALS + i &&
                  strcmp(jstr(a, "content"), glm_specials[i]) == 0 &&
                  cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(a, "special")),
              "added_tokens[%d]", i);
    CHECK(i == N_GLM_SPECIALS, "%d added tokens", i);
    cJSON_Delete(r);
}

/* s with every valid UTF-8 run put in NFC: what decode(encode(s)) gives for
 * a tokenizer with an NFC normalizer. */
static char *nfc_expected(const char *s, size_t n, size_t *m)
{
    char *out = malloc(4 * n + 1);
    *m = 0;
    for (size_t i = 0; i < n;) {
        size_t v = tok_utf8_run((const uint8_t *)s + i, n - i, true);
        if (v) {
            utf8proc_uint8_t *r;
            utf8proc_ssize_t k = utf8proc_map((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)v, &r,
                                              UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            DM_ASSERT(k >= 0);
            memcpy(out + *m, r, (size_t)k);
            *m += (size_t)k;
            free(r);
            i += v;
        }
        size_t bad = tok_utf8_run((const uint8_t *)s + i, n - i, false);
        memcpy(out + *m, s + i, bad);
        *m += bad;
        i += bad;
    }
    return out;
}

static void check_round_trip(const dm_tokenizer *t, const char *s, size_t n, bool special, const char *what)
{
    int k;
    int32_t *ids = dm_tokenize(t, s, n, special, &k);
    size_t m, e;
    char *back = dm_detokenize(t, ids, k, &m), *want = nfc_expected(s, n, &e);
    CHECK(m == e && memcmp(back, want, m) == 0, "%s: round trip gives %zu bytes, want %zu", what, m, e);
    free(want);
    free(back);
    free(ids);
}

static void test_trained(const char *json, const char *corpus, size_t len)
{
    dm_tokenizer *t;
    dm_err err;
    if (dm_tokenizer_load_json(&t, json, strlen(json), "trained", &err)) {
        failf("trained tokenizer does not load: %s", err.msg);
        return;
    }
    CHECK(dm_tokenizer_n_vocab(t) == TRAIN_VOCAB, "n_vocab %d", dm_tokenizer_n_vocab(t));
    for (int i = 0; i < N_GLM_SPECIALS; i++)
        CHECK(dm_token_id(t, glm_specials[i]) == TRAIN_VOCAB - N_GLM_SPECIALS + i &&
                  dm_token_is_special(t, TRAIN_VOCAB - N_GLM_SPECIALS + i),
              "special %s has id %d", glm_specials[i], dm_token_id(t, glm_specials[i]));
    char buf[401];
    for (int i = 0; i < N_TOK_TEXTS; i++)
        check_round_trip(t, tok_texts[i], strlen(tok_texts[i]), true, tok_texts[i]);
    for (int i = 0; i < 1000; i++) {
        size_t n = (i & 1) ? random_bytes(buf, 400) : random_text(buf, 400);
        check_round_trip(t, buf, n, i & 2, "random string");
    }
    double t0 = dm_time_sec();
    int k;
    int32_t *ids = dm_tokenize(t, corpus, len, false, &k);
    double dt = dm_time_sec() - t0;
    printf("  corpus: %zu bytes -> %d tokens (%.3f per byte), encoded at %.1f MB/s\n", len, k, (double)k / (double)len,
           (double)len / dt / 1e6);
    CHECK((double)k / (double)len < MAX_TOKENS_PER_BYTE, "%.3f tokens per byte", (double)k / (double)len);
    free(ids);
    dm_tokenizer_free(t);
}

static void test_errors(void)
{
    char *json;
    dm_err err;
    static const char *const dup[] = {"<a>", "<a>"}, *const empty[] = {""};
    CHECK(dm_bpe_train("x", 1, 255, NULL, 0, &json, &err) == -1 && strstr(err.msg, "vocab_size"), "small vocab");
    CHECK(dm_bpe_train("x", 1, 300, dup, 2, &json, &err) == -1 && strstr(err.msg, "twice"), "duplicate special");
    CHECK(dm_bpe_train("x", 1, 300, empty, 1, &json, &err) == -1 && strstr(err.msg, "empty"), "empty special");
    /* no text: only the byte tokens and the specials */
    CHECK(dm_bpe_train("", 0, 1000, dup, 1, &json, &err) == 0, "empty text: %s", err.msg);
    dm_tokenizer *t;
    CHECK(dm_tokenizer_load_json(&t, json, strlen(json), "empty", &err) == 0 && dm_tokenizer_n_vocab(t) == 257,
          "empty-text tokenizer");
    dm_tokenizer_free(t);
    free(json);
}

/* ---- benchmark (DM_TOK_BENCH=1) --------------------------------------------------------- */

static void bench(void)
{
    glob_t g;
    if (glob("/usr/lib/python3.11/*.py", 0, NULL, &g) != 0)
        return;
    glob("/usr/lib/python3.11/*/*.py", GLOB_APPEND, NULL, &g);
    glob("/usr/lib/python3.11/*/*/*.py", GLOB_APPEND, NULL, &g);
    size_t cap = 11u << 20, n = 0;
    char *text = malloc(cap);
    for (size_t i = 0; i < g.gl_pathc && n < (10u << 20); i++) {
        char *s;
        size_t m;
        dm_err err;
        if (dm_read_file(g.gl_pathv[i], &s, &m, &err) == 0) {
            m = m < cap - n ? m : cap - n;
            memcpy(text + n, s, m);
            n += m;
            free(s);
        }
    }
    globfree(&g);
    char *json;
    dm_err err;
    double t0 = dm_time_sec();
    DM_ASSERT(dm_bpe_train(text, n, 8192, glm_specials, N_GLM_SPECIALS, &json, &err) == 0);
    double t_train = dm_time_sec() - t0;
    dm_tokenizer *t;
    DM_ASSERT(dm_tokenizer_load_json(&t, json, strlen(json), "bench", &err) == 0);
    for (int pass = 0; pass < 2; pass++) {
        t0 = dm_time_sec();
        int k;
        int32_t *ids = dm_tokenize(t, text, n, false, &k);
        double dt = dm_time_sec() - t0;
        printf("bench: encode %.1f MB (%s cache): %d tokens, %.2f s, %.1f MB/s\n", (double)n / 1e6,
               pass ? "warm" : "cold", k, dt, (double)n / dt / 1e6);
        free(ids);
    }
    printf("bench: train vocab 8192 on %.1f MB: %.2f s\n", (double)n / 1e6, t_train);
    dm_tokenizer_free(t);
    free(json);
    free(text);
}

int main(void)
{
    size_t len;
    char *corpus = training_corpus(&len);
    if (!corpus) {
        fprintf(stderr, "FAIL: training corpus missing\n");
        return 1;
    }
    test_against_naive(corpus, NAIVE_TEXT_BYTES, NAIVE_VOCAB);
    test_against_naive(corpus, SHORT_TEXT_BYTES, SHORT_VOCAB);
    char *json1, *json2;
    dm_err err;
    double t0 = dm_time_sec();
    DM_ASSERT(dm_bpe_train(corpus, len, TRAIN_VOCAB, glm_specials, N_GLM_SPECIALS, &json1, &err) == 0);
    double dt = dm_time_sec() - t0;
    printf("  trained vocab %d on %zu bytes in %.2f s\n", TRAIN_VOCAB, len, dt);
    CHECK(dt < MAX_TRAIN_SEC, "training took %.1f s", dt);
    DM_ASSERT(dm_bpe_train(corpus, len, TRAIN_VOCAB, glm_specials, N_GLM_SPECIALS, &json2, &err) == 0);
    CHECK(strcmp(json1, json2) == 0, "training is not deterministic");
    test_layout(json1);
    test_trained(json1, corpus, len);
    test_errors();
    free(json1);
    free(json2);
    free(corpus);
    if (getenv("DM_TOK_BENCH"))
        bench();
    if (g_fail) {
        fprintf(stderr, "test_bpe_train: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_bpe_train: ok\n");
    return 0;
}
