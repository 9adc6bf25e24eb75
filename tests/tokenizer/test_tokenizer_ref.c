/* test_tokenizer_ref — token ids from the C tokenizer against the Python
 * reference (tests/reference/tokenizer_ref.py, run with /usr/bin/python3 and
 * its `regex` module). Tolerance: none, every id of every case must match.
 *
 * Tokenizers compared:
 *   - the hand-written fixture (pair-form merges, ByteLevel's GPT-2 regex) and
 *     variants of it: NFC + a Split(GPT-2 regex) + ByteLevel sequence with a
 *     normalized added token; every Split behaviour with and without invert;
 *     a DeepSeek-V3-style three-Split sequence; ignore_merges;
 *     add_prefix_space;
 *   - a tokenizer trained by dm_bpe_train (GLM specials, vocab 4096) on about
 *     1 MB of license texts and Python sources.
 * Cases: the fixed text set and random valid texts, each with specials
 * allowed and not, random byte strings (invalid UTF-8), and for the trained
 * tokenizer two held-out Python files and 100 KB of the training text. */
#include <cjson/cJSON.h>

#include "tokenizer/tok_internal.h"
#include "tokenizer/tok_test_util.h"

#define FIXTURE "tests/data/tokenizer_gpt2like.json"
#define REF "tests/reference/tokenizer_ref.py"
#define PYTHON "/usr/bin/python3"
#define N_RANDOM_TEXT 150    /* random valid texts per tokenizer (each in both modes) */
#define N_RANDOM_BYTES 150   /* random byte strings per tokenizer */
#define RANDOM_MAX 400
#define TRAIN_VOCAB 4096

typedef struct tcase {
    char *s;
    size_t n;
    bool special;
} tcase;

typedef struct caseset {
    tcase *c;
    int n, cap;
} caseset;

static void add_case(caseset *cs, const char *s, size_t n, bool special)
{
    if (cs->n == cs->cap) {
        cs->cap = cs->cap ? cs->cap * 2 : 256;
        cs->c = realloc(cs->c, (size_t)cs->cap * sizeof *cs->c);
    }
    char *p = malloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    cs->c[cs->n++] = (tcase){p, n, special};
}

static void add_common_cases(caseset *cs)
{
    char buf[RANDOM_MAX + 1];
    for (int i = 0; i < N_TOK_TEXTS; i++)
        for (int m = 0; m < 2; m++)
            add_case(cs, tok_texts[i], strlen(tok_texts[i]), m);
    for (int i = 0; i < N_RANDOM_TEXT; i++) {
        size_t n = random_text(buf, RANDOM_MAX);
        add_case(cs, buf, n, true);
        add_case(cs, buf, n, false);
    }
    for (int i = 0; i < N_RANDOM_BYTES; i++) {
        size_t n = random_bytes(buf, RANDOM_MAX);
        add_case(cs, buf, n, i & 1);
    }
}

static void free_cases(caseset *cs)
{
    for (int i = 0; i < cs->n; i++)
        free(cs->c[i].s);
    free(cs->c);
}

/* Runs the reference on every case; returns its output (one line per case). */
static char *run_reference(const char *label, const char *json, const caseset *cs)
{
    char *jpath = dm_asprintf("%s/ref_%s.json", tmp_dir(), label);
    char *cpath = dm_asprintf("%s/ref_%s.cases", tmp_dir(), label);
    FILE *f = fopen(jpath, "w");
    DM_ASSERT(f);
    fputs(json, f);
    fclose(f);
    f = fopen(cpath, "w");
    DM_ASSERT(f);
    for (int i = 0; i < cs->n; i++) {
        fprintf(f, "%d ", cs->c[i].special);
        for (size_t k = 0; k < cs->c[i].n; k++)
            fprintf(f, "%02x", (uint8_t)cs->c[i].s[k]);
        fputc('\n', f);
    }
    fclose(f);
    char *cmd = dm_asprintf("%s %s '%s' '%s'", PYTHON, REF, jpath, cpath);
    FILE *p = popen(cmd, "r");
    size_t cap = 1 << 16, n = 0;
    char *out = malloc(cap);
    size_t got;
    while (p && (got = fread(out + n, 1, cap - n - 1, p)) > 0)
        if ((n += got) + 1 >= cap)
            out = realloc(out, cap *= 2);
    out[n] = 0;
    int rc = p ? pclose(p) : -1;
    if (rc != 0) {
        failf("%s: `%s` failed (status %d)", label, cmd, rc);
        free(out);
        out = NULL;
    }
    free(cmd);
    free(jpath);
    free(cpath);
    return out;
}

static void print_text(const tcase *c)
{
    fprintf(stderr, "    text (%zu bytes, allow_special=%d): \"", c->n, c->special);
    for (size_t k = 0; k < c->n && k < 120; k++) {
        uint8_t b = (uint8_t)c->s[k];
        fprintf(stderr, b >= 0x20 && b < 0x7f && b != '"' ? "%c" : "\\x%02x", b);
    }
    fprintf(stderr, "%s\"\n", c->n > 120 ? "..." : "");
}

/* Compares one tokenizer's ids with the reference's on all cases. */
static void compare(const char *label, const char *json, const caseset *cs)
{
    dm_tokenizer *t;
    dm_err err;
    if (dm_tokenizer_load_json(&t, json, strlen(json), label, &err)) {
        failf("%s", err.msg);
        return;
    }
    char *out = run_reference(label, json, cs);
    char *line = out;
    int bad = 0;
    long total = 0;
    for (int i = 0; out && i < cs->n; i++) {
        int n;
        int32_t *ids = dm_tokenize(t, cs->c[i].s, cs->c[i].n, cs->c[i].special, &n);
        char *end = strchr(line, '\n');
        if (!end) {
            failf("%s: the reference printed %d lines for %d cases", label, i, cs->n);
            free(ids);
            break;
        }
        *end = 0;
        int k = 0, first_diff = -1;
        for (char *q = line; *q;) {
            long v = strtol(q, &q, 10);
            if (first_diff < 0 && (k >= n || ids[k] != v))
                first_diff = k;
            k++;
            while (*q == ' ')
                q++;
        }
        if (first_diff < 0 && k != n)
            first_diff = k < n ? k : n;
        if (first_diff >= 0 && bad++ < 5) {
            failf("%s case %d: C gives %d ids, reference %d, first difference at id %d", label, i, n, k, first_diff);
            print_text(&cs->c[i]);
            fprintf(stderr, "    C:   ");
            print_ids(stderr, ids + (first_diff > 3 ? first_diff - 3 : 0), n - (first_diff > 3 ? first_diff - 3 : 0));
            fprintf(stderr, "\n    ref: %.200s\n", line);
        }
        total += n;
        line = end + 1;
        free(ids);
    }
    if (out)
        printf("  %-28s %4d cases, %7ld ids, %d mismatching\n", label, cs->n, total, bad);
    free(out);
    dm_tokenizer_free(t);
}

/* ---- fixture variants ----------------------------------------------------------- */

static cJSON *jparse(const char *s)
{
    cJSON *j = cJSON_Parse(s);
    DM_ASSERT(j);
    return j;
}

static void set_field(cJSON *obj, const char *key, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
}

/* One Split step as JSON text; kind is "Regex" or "String". */
static char *split_json(const char *kind, const char *pattern, const char *behavior, bool invert)
{
    cJSON *j = cJSON_CreateObject(), *pat = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "type", "Split");
    cJSON_AddStringToObject(pat, kind, pattern);
    cJSON_AddItemToObject(j, "pattern", pat);
    cJSON_AddStringToObject(j, "behavior", behavior);
    cJSON_AddBoolToObject(j, "invert", invert);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static char *split_seq(const char *const *splits, int n, bool prefix, bool regex)
{
    char *s = dm_strdup("{\"type\": \"Sequence\", \"pretokenizers\": [");
    for (int i = 0; i < n; i++) {
        char *t = dm_asprintf("%s%s, ", s, splits[i]);
        free(s);
        s = t;
    }
    char *t = dm_asprintf("%s{\"type\": \"ByteLevel\", \"add_prefix_space\": %s, \"use_regex\": %s}]}", s,
                          prefix ? "true" : "false", regex ? "true" : "false");
    free(s);
    return t;
}

static char *variant(const char *fixture, const char *normalizer, const char *pretok, bool ignore_merges)
{
    cJSON *root = jparse(fixture);
    if (normalizer)
        set_field(root, "normalizer", jparse(normalizer));
    if (pretok)
        set_field(root, "pre_tokenizer", jparse(pretok));
    cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (ignore_merges) {
        set_field(model, "ignore_merges", cJSON_CreateTrue());
        /* a word only ignore_merges can produce: no merge path leads to it */
        cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
        cJSON_AddNumberToObject(vocab, "Ġquick", 1000);
    }
    if (normalizer) {   /* a normalized added token written decomposed: it must match "café" */
        cJSON *added = cJSON_GetObjectItemCaseSensitive(root, "added_tokens");
        cJSON_AddItemToArray(added, jparse("{\"id\": 1001, \"content\": \"cafe\u0301\", \"single_word\": false, "
                                           "\"lstrip\": false, \"rstrip\": false, \"normalized\": true, "
                                           "\"special\": false}"));
    }
    char *s = cJSON_Print(root);
    cJSON_Delete(root);
    return s;
}

static void compare_fixture_variants(const caseset *cs)
{
    char *fx;
    dm_err err;
    DM_ASSERT(dm_read_file(FIXTURE, &fx, NULL, &err) == 0);
    compare("fixture", fx, cs);

    char *gpt2 = split_json("Regex", tok_gpt2_pattern, "Isolated", false);
    char *pt = split_seq((const char *const *)&gpt2, 1, false, false);
    char *v = variant(fx, "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}]}", pt, false);
    compare("nfc-split-gpt2", v, cs);
    free(v), free(pt), free(gpt2);

    static const char *const behaviors[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                            "Contiguous"};
    for (int b = 0; b < 5; b++)
        for (int inv = 0; inv < 2; inv++) {
            char *sp = inv ? split_json("Regex", "\\p{L}+", behaviors[b], true)
                           : split_json("String", " ", behaviors[b], false);
            char *p = split_seq((const char *const *)&sp, 1, true, false), label[64];
            char *vv = variant(fx, NULL, p, false);
            snprintf(label, sizeof label, "split-%s%s", behaviors[b], inv ? "-invert" : "");
            compare(label, vv, cs);
            free(vv), free(p), free(sp);
        }

    /* DeepSeek-V3's layout: digits, then CJK runs, then a Qwen-style pattern */
    char *deepseek[3] = {
        split_json("Regex", "\\p{N}{1,3}", "Isolated", false),
        split_json("Regex", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+", "Isolated", false),
        split_json("Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                            "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+",
                   "Isolated", false),
    };
    pt = split_seq((const char *const *)deepseek, 3, false, false);
    v = variant(fx, NULL, pt, false);
    compare("deepseek-style", v, cs);
    free(v), free(pt), free(deepseek[0]), free(deepseek[1]), free(deepseek[2]);

    v = variant(fx, NULL, NULL, true);
    compare("ignore_merges", v, cs);
    free(v);
    v = variant(fx, NULL, "{\"type\": \"ByteLevel\", \"add_prefix_space\": true, \"use_regex\": true}", false);
    compare("bytelevel-prefix-space", v, cs);
    free(v);
    free(fx);
}

/* ---- trained tokenizer ------------------------------------------------------------ */

static void compare_trained(caseset *cs)
{
    size_t len;
    char *corpus = training_corpus(&len);
    if (!corpus) {
        failf("no training corpus");
        return;
    }
    char *json;
    dm_err err;
    double t0 = dm_time_sec();
    if (dm_bpe_train(corpus, len, TRAIN_VOCAB, glm_specials, N_GLM_SPECIALS, &json, &err)) {
        failf("%s", err.msg);
        free(corpus);
        return;
    }
    printf("  trained vocab %d on %zu bytes in %.2f s\n", TRAIN_VOCAB, len, dm_time_sec() - t0);
    static const char *const held_out[] = {"/usr/lib/python3.11/textwrap.py", "/usr/lib/python3.11/statistics.py"};
    for (int i = 0; i < 2; i++) {
        char *s;
        size_t n;
        if (dm_read_file(held_out[i], &s, &n, &err) == 0) {
            add_case(cs, s, n, true);
            free(s);
        } else
            failf("%s", err.msg);
    }
    add_case(cs, corpus + len / 3, 100000, true);
    compare("trained-glm", json, cs);
    free(json);
    free(corpus);
}

int main(void)
{
    if (system(PYTHON " -c 'import regex' 2>/dev/null") != 0) {
        fprintf(stderr, "FAIL: %s with the `regex` module is needed (Debian: apt-get install python3-regex)\n",
                PYTHON);
        return 1;
    }
    caseset cs = {0};
    add_common_cases(&cs);
    compare_fixture_variants(&cs);
    compare_trained(&cs);
    free_cases(&cs);
    if (g_fail) {
        fprintf(stderr, "test_tokenizer_ref: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_tokenizer_ref: ok\n");
    return 0;
}
