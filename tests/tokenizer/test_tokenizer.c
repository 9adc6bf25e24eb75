/* test_tokenizer — the tokenizer's behaviour on the hand-written fixture
 * (tests/data/tokenizer_gpt2like.json) and on small trained tokenizers:
 * hand-derived encodings, the ByteLevel table, exact round trips on random
 * bytes (invalid UTF-8 included), allow_special on/off, lstrip / rstrip /
 * single_word, the id <-> text API, very long runs, chat templates (exact
 * strings), and one loader error per malformed-file case (message must name
 * the file). Comparisons against the Python reference are in
 * test_tokenizer_ref.c. */
#include <cjson/cJSON.h>
#include <pthread.h>

#include "tokenizer/tok_test_util.h"

#define FIXTURE "tests/data/tokenizer_gpt2like.json"
#define N_RANDOM 3000   /* random byte strings per allow_special mode */
#define RANDOM_MAX 300  /* their maximum length */

static dm_tokenizer *load_fixture(void)
{
    dm_tokenizer *t;
    dm_err err;
    if (dm_tokenizer_load(&t, FIXTURE, &err)) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        exit(1);
    }
    return t;
}

/* GPT-2's bytes_to_unicode, written out again here as the test's own oracle. */
static int gpt2_cp(int b)
{
    if ((b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff))
        return b;
    int k = 0;
    for (int x = 0; x < b; x++)
        if (!((x >= '!' && x <= '~') || (x >= 0xa1 && x <= 0xac) || (x >= 0xae && x <= 0xff)))
            k++;
    return 256 + k;
}

static void utf8_put(char *out, int cp)
{
    if (cp < 0x80)
        out[0] = (char)cp, out[1] = 0;
    else
        out[0] = (char)(0xc0 | (cp >> 6)), out[1] = (char)(0x80 | (cp & 0x3f)), out[2] = 0;
}

static void test_byte_table(const dm_tokenizer *t)
{
    for (int b = 0; b < 256; b++) {
        char s[4], out[8];
        utf8_put(s, gpt2_cp(b));
        int32_t id = dm_token_id(t, s);
        int n = id >= 0 ? dm_token_to_bytes(t, id, out, sizeof out) : -1;
        CHECK(n == 1 && (uint8_t)out[0] == b, "byte 0x%02x: token \"%s\" id %d decodes to %d bytes", b, s, id, n);
        int k;
        int32_t *ids = dm_tokenize(t, (const char *)&(char){(char)b}, 1, true, &k);
        CHECK(k == 1 && ids[0] == id, "byte 0x%02x alone encodes to %d ids (first %d), want [%d]", b, k,
              k ? ids[0] : -1, id);
        free(ids);
    }
}

/* Encodes text and compares the token strings with the expected list. */
static void expect_tokens(const dm_tokenizer *t, const char *text, bool special, const char *const *want, int nw)
{
    int n;
    int32_t *ids = dm_tokenize(t, text, strlen(text), special, &n);
    bool ok = n == nw;
    for (int i = 0; ok && i < n; i++)
        ok = dm_token_str(t, ids[i]) && strcmp(dm_token_str(t, ids[i]), want[i]) == 0;
    if (!ok) {
        failf("\"%s\" (allow_special=%d): got %d tokens, want %d:", text, special, n, nw);
        for (int i = 0; i < n; i++)
            fprintf(stderr, "  got [%d] %d \"%s\"%s%s\n", i, ids[i], dm_token_str(t, ids[i]), i < nw ? " want " : "",
                    i < nw ? want[i] : "");
    }
    free(ids);
}

#define EXPECT(t, text, special, ...)                                                   \
    do {                                                                                \
        static const char *const w_[] = {__VA_ARGS__};                                  \
        expect_tokens(t, text, special, w_, (int)(sizeof w_ / sizeof w_[0]));          \
    } while (0)

/* Encodings worked out by hand from the fixture's merge list. */
static void test_hand_encodings(const dm_tokenizer *t)
{
    /* "Hello" " world": (e,l) is the only merge in "Hello"; (Ġ,w) then (o,r) in " world" */
    EXPECT(t, "Hello world", true, "H", "el", "l", "o", "Ġw", "or", "l", "d");
    /* (Ġ,t) r0, (h,e) r2, (Ġt,he) r6 */
    EXPECT(t, " the", true, "Ġthe");
    EXPECT(t, "the", true, "t", "he");
    /* (a,b) ranks before (b,c), then (ab,c): "abc" is also reachable as (a,bc) */
    EXPECT(t, "abc", true, "abc");
    /* GPT-2 regex keeps digit runs whole; (1,2) then (12,3) */
    EXPECT(t, "123456", true, "123", "4", "5", "6");
    EXPECT(t, "\u4e2d", true, "ä¸Ń");
    EXPECT(t, "\U0001F600", true, "ðŁĺĢ");
    /* "   a": \s+(?!\S) leaves one space for " a"; (Ġ,Ġ) merges the first two */
    EXPECT(t, "   a", true, "ĠĠ", "Ġa");
    EXPECT(t, "self", true, "self");
}

static void test_round_trip(const dm_tokenizer *t)
{
    char buf[RANDOM_MAX + 1];
    for (int mode = 0; mode < 2; mode++)
        for (int i = 0; i < N_RANDOM; i++) {
            size_t n = (i & 1) ? random_bytes(buf, RANDOM_MAX) : random_text(buf, RANDOM_MAX);
            buf[n] = 0;
            /* <mask> (lstrip) and <sep> (rstrip) swallow whitespace on purpose */
            if (mode && (strstr(buf, "<mask>") || strstr(buf, "<sep>")))
                continue;
            int k;
            int32_t *ids = dm_tokenize(t, buf, n, mode, &k);
            size_t m;
            char *back = dm_detokenize(t, ids, k, &m);
            if (m != n || memcmp(back, buf, n) != 0) {
                size_t d = 0;
                while (d < n && d < m && back[d] == buf[d])
                    d++;
                failf("round trip %d (allow_special=%d): %zu bytes in, %zu out, first difference at %zu", i, mode,
                      n, m, d);
            }
            free(back);
            free(ids);
        }
    for (int i = 0; i < N_TOK_TEXTS; i++) {
        int k;
        int32_t *ids = dm_tokenize(t, tok_texts[i], strlen(tok_texts[i]), true, &k);
        char *back = dm_detokenize(t, ids, k, NULL);
        /* <mask> and <sep> strip whitespace next to them: the one text with them differs */
        CHECK(strcmp(back, tok_texts[i]) == 0 || strstr(tok_texts[i], "<mask>"), "text %d does not round-trip", i);
        free(back);
        free(ids);
    }
}

static int count_id(const int32_t *ids, int n, int32_t id)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += ids[i] == id;
    return c;
}

static void test_allow_special(const dm_tokenizer *t)
{
    int32_t think = dm_token_id(t, "<think>"), eot = dm_token_id(t, "<|endoftext|>");
    int32_t think_x = dm_token_id(t, "<think>x");
    CHECK(think >= 0 && eot >= 0 && think_x >= 0, "fixture lacks its added tokens");
    CHECK(dm_token_is_special(t, think) && !dm_token_is_special(t, think_x), "special flags wrong");
    static const char text[] = "a<think>b</think><|endoftext|>";
    for (int mode = 0; mode < 2; mode++) {
        int n;
        int32_t *ids = dm_tokenize(t, text, strlen(text), mode, &n);
        CHECK(count_id(ids, n, think) == mode && count_id(ids, n, eot) == mode,
              "allow_special=%d: <think> x%d, <|endoftext|> x%d", mode, count_id(ids, n, think),
              count_id(ids, n, eot));
        char *back = dm_detokenize(t, ids, n, NULL);
        CHECK(strcmp(back, text) == 0, "allow_special=%d: decodes to \"%s\"", mode, back);
        free(back);
        free(ids);
    }
    /* leftmost-longest: the non-special "<think>x" wins over "<think>" either way */
    EXPECT(t, "<think>x", true, "<think>x");
    EXPECT(t, "<think>x", false, "<think>x");
    /* with specials off, the skipped "<think>" is not searched again for shorter tokens */
    EXPECT(t, "<think>y", false, "<", "t", "h", "in", "k", ">", "y");
    EXPECT(t, "<think>y", true, "<think>", "y");
}

static void test_strip_and_single_word(const dm_tokenizer *t)
{
    EXPECT(t, "a  <mask> b", true, "a", "<mask>", "Ġb");          /* lstrip eats "  " */
    EXPECT(t, "<sep>   z", true, "<sep>", "z");                   /* rstrip eats "   " */
    EXPECT(t, "x<sep>\u3000\u00a0y", true, "x", "<sep>", "y");     /* Unicode White_Space too */
    EXPECT(t, "say hello.", true, "s", "a", "y", "Ġ", "hello", "."); /* single word: matched */
    EXPECT(t, "hellos", true, "he", "l", "l", "o", "s");          /* inside a word: not matched */
    EXPECT(t, "\u00e9hello", true, "Ã", "©", "he", "l", "l", "o");     /* é is a word character */
    EXPECT(t, "[[note]]x", true, "[[note]]", "x");
}

static void test_token_api(const dm_tokenizer *t)
{
    int V = dm_tokenizer_n_vocab(t);
    int32_t last = dm_token_id(t, "<think>x");
    CHECK(V == last + 1, "n_vocab %d, want %d", V, last + 1);
    char buf[64];
    CHECK(dm_token_to_bytes(t, -1, buf, 8) == -1 && dm_token_to_bytes(t, V, buf, 8) == -1, "unknown ids accepted");
    CHECK(dm_token_str(t, V) == NULL && dm_token_id(t, "no such token") == -1, "lookup of missing token");
    int32_t eot = dm_token_id(t, "<|endoftext|>");
    int n = dm_token_to_bytes(t, eot, buf, 4);
    CHECK(n == 13 && memcmp(buf, "<|en", 4) == 0, "cut-off token_to_bytes returned %d", n);
    CHECK(dm_token_max_bytes(t) >= 13, "max_bytes %d", dm_token_max_bytes(t));
    /* streaming: a 4-byte emoji split over ids concatenates back */
    int k;
    int32_t *ids = dm_tokenize(t, "\U0001F601", 4, true, &k);
    size_t m = 0;
    for (int i = 0; i < k; i++)
        m += (size_t)dm_token_to_bytes(t, ids[i], buf + m, (int)(sizeof buf - m));
    CHECK(k > 1 && m == 4 && memcmp(buf, "\U0001F601", 4) == 0, "partial UTF-8 streaming: %d ids, %zu bytes", k, m);
    free(ids);
}

/* Megabyte runs of one character class go through the regex and BPE whole. */
static void test_long_runs(const dm_tokenizer *t)
{
    static const char *const unit[] = {" ", "a", "\U0001F600", "\n", "7", "\xff"};
    for (size_t u = 0; u < sizeof unit / sizeof *unit; u++) {
        size_t k = strlen(unit[u]), reps = (1u << 20) / k;
        char *s = malloc(reps * k);
        for (size_t i = 0; i < reps; i++)
            memcpy(s + i * k, unit[u], k);
        double t0 = dm_time_sec();
        int n;
        int32_t *ids = dm_tokenize(t, s, reps * k, true, &n);
        size_t m;
        char *back = dm_detokenize(t, ids, n, &m);
        CHECK(m == reps * k && memcmp(back, s, m) == 0, "1 MiB run of \"%s\" does not round-trip", unit[u]);
        printf("  1 MiB run of unit %zu: %d ids, %.2f s\n", u, n, dm_time_sec() - t0);
        free(back);
        free(ids);
        free(s);
    }
}

/* Four threads encode the text set at once (one holds the word cache, the
 * others run without it) and must get the single-threaded ids. */
#define N_THREADS 4
#define THREAD_ROUNDS 200

typedef struct thr_arg {
    const dm_tokenizer *t;
    int32_t *want[N_TOK_TEXTS];
    int nwant[N_TOK_TEXTS];
    int bad;
} thr_arg;

static void *thread_main(void *p)
{
    thr_arg *a = p;
    for (int r = 0; r < THREAD_ROUNDS; r++)
        for (int i = 0; i < N_TOK_TEXTS; i++) {
            int n;
            int32_t *ids = dm_tokenize(a->t, tok_texts[i], strlen(tok_texts[i]), true, &n);
            a->bad += n != a->nwant[i] || memcmp(ids, a->want[i], (size_t)n * sizeof *ids) != 0;
            free(ids);
        }
    return NULL;
}

static void test_threads(const dm_tokenizer *t)
{
    thr_arg a[N_THREADS] = {{0}};
    pthread_t th[N_THREADS];
    for (int k = 0; k < N_THREADS; k++) {
        a[k].t = t;
        for (int i = 0; i < N_TOK_TEXTS; i++)
            a[k].want[i] = dm_tokenize(t, tok_texts[i], strlen(tok_texts[i]), true, &a[k].nwant[i]);
        pthread_create(&th[k], NULL, thread_main, &a[k]);
    }
    for (int k = 0; k < N_THREADS; k++) {
        pthread_join(th[k], NULL);
        CHECK(a[k].bad == 0, "thread %d: %d encodings differ from the single-threaded ones", k, a[k].bad);
        for (int i = 0; i < N_TOK_TEXTS; i++)
            free(a[k].want[i]);
    }
}

/* ---- chat templates ------------------------------------------------------------- */

static dm_tokenizer *train_small(const char *const *special, int n_special)
{
    static const char text[] = "hello there, how are you? I am fine, thanks. hello hello there there.";
    char *json;
    dm_err err;
    dm_tokenizer *t = NULL;
    if (dm_bpe_train(text, sizeof text - 1, 256 + n_special + 20, special, n_special, &json, &err) ||
        dm_tokenizer_load_json(&t, json, strlen(json), "small", &err)) {
        fprintf(stderr, "FAIL: %s\n", err.msg);
        exit(1);
    }
    free(json);
    return t;
}

static void expect_chat(const dm_tokenizer *t, dm_chat_style st, const dm_chat_msg *m, int n, bool gen,
                        bool think, const char *want)
{
    char *got = dm_chat_render(t, st, m, n, gen, think);
    CHECK(strcmp(got, want) == 0, "chat render:\n  got  \"%s\"\n  want \"%s\"", got, want);
    free(got);
}

static void test_chat(const dm_tokenizer *fixture)
{
    dm_tokenizer *glm = train_small(glm_specials, N_GLM_SPECIALS);
    static const char *const chatml_sp[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"};
    dm_tokenizer *qwen = train_small(chatml_sp, 5);
    CHECK(dm_chat_style_for(glm) == DM_CHAT_GLM, "GLM tokenizer not detected");
    CHECK(dm_chat_style_for(qwen) == DM_CHAT_GENERIC && dm_chat_style_for(fixture) == DM_CHAT_GENERIC,
          "generic style not detected");
    const dm_chat_msg conv[] = {
        {"system", "You are helpful."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"},
    };
    expect_chat(glm, DM_CHAT_GLM, conv, 4, true, true,
                "[gMASK]<sop><|system|>You are helpful.<|user|>Hi<|assistant|><think></think>Hello!"
                "<|user|>2+2?<|assistant|><think>");
    expect_chat(glm, DM_CHAT_GLM, conv, 4, true, false,
                "[gMASK]<sop><|system|>You are helpful.<|user|>Hi<|assistant|><think></think>Hello!"
                "<|user|>2+2?<|assistant|><think></think>");
    const dm_chat_msg tools[] = {
        {"user", "Add"}, {"assistant", "<think>use the tool</think><tool_call>add</tool_call>"},
        {"tool", "42"}, {"tool", "43"}, {"user", "ok"},
    };
    expect_chat(glm, DM_CHAT_GLM, tools, 5, false, true,
                "[gMASK]<sop><|user|>Add<|assistant|><think>use the tool</think><tool_call>add</tool_call>"
                "<|observation|><tool_response>42</tool_response><tool_response>43</tool_response><|user|>ok");
    expect_chat(qwen, DM_CHAT_GENERIC, conv + 1, 2, true, true,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>assistant\n");
    expect_chat(qwen, DM_CHAT_GENERIC, conv + 1, 1, true, false,
                "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n");
    expect_chat(fixture, DM_CHAT_GENERIC, conv, 3, true, true,
                "System: You are helpful.\n\nUser: Hi\n\nAssistant: Hello!\n\nAssistant:");
    /* the rendered GLM prompt encodes to the special ids where the tags are */
    char *p = dm_chat_render(glm, DM_CHAT_GLM, conv + 1, 1, true, true);
    int n;
    int32_t *ids = dm_tokenize(glm, p, strlen(p), true, &n);
    CHECK(n >= 6 && ids[0] == dm_token_id(glm, "[gMASK]") && ids[1] == dm_token_id(glm, "<sop>") &&
              ids[2] == dm_token_id(glm, "<|user|>") && ids[n - 2] == dm_token_id(glm, "<|assistant|>") &&
              ids[n - 1] == dm_token_id(glm, "<think>"),
          "GLM prompt ids wrong");
    free(ids);
    free(p);
    dm_tokenizer_free(glm);
    dm_tokenizer_free(qwen);
}

/* ---- loader errors ------------------------------------------------------------------ */

static const struct {
    const char *field;   /* top-level key, or "model.<key>" */
    const char *value;   /* JSON put there */
    const char *expect;  /* part of the message */
} bad_files[] = {
    {"model", "null", "no \"model\""},
    {"model.type", "\"WordPiece\"", "model type \"WordPiece\""},
    {"model.vocab", "[]", "model.vocab must be"},
    {"model.vocab", "{\"a\": -1}", "id must be"},
    {"model.vocab", "{\"a\": 1.5}", "id must be"},
    {"model.vocab", "{\"!\": 0}", "no token for byte 0x00"},
    {"model.merges", "{}", "merges must be an array"},
    {"model.merges", "[\"ab\"]", "merges[0]"},
    {"model.merges", "[\"a b c\"]", "one space"},
    {"model.merges", "[[\"a\"]]", "merges[0] must be"},
    {"model.merges", "[[\"a\", \"QQQ\"]]", "\"QQQ\" is not in the vocab"},
    {"model.merges", "[\"Q Q\"]", "\"QQ\" is not in the vocab"},
    {"model.dropout", "0.1", "dropout"},
    {"model.byte_fallback", "true", "byte_fallback"},
    {"model.continuing_subword_prefix", "\"##\"", "continuing_subword_prefix"},
    {"model.end_of_word_suffix", "\"</w>\"", "end_of_word_suffix"},
    {"model.ignore_merges", "\"yes\"", "ignore_merges"},
    {"added_tokens", "{}", "added_tokens must be"},
    {"added_tokens", "[{\"content\": \"x\"}]", "added_tokens[0]: id"},
    {"added_tokens", "[{\"id\": 5}]", "added_tokens[0] needs a string"},
    {"added_tokens", "[{\"id\": 5, \"content\": \"x\", \"lstrip\": 1}]", "lstrip"},
    {"normalizer", "{\"type\": \"NFKC\"}", "normalizer \"NFKC\""},
    {"normalizer", "{\"type\": \"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}",
     "normalizer \"Lowercase\""},
    {"normalizer", "{\"type\": \"Sequence\"}", "normalizers"},
    {"pre_tokenizer", "null", "no pre_tokenizer"},
    {"pre_tokenizer", "{\"type\": \"Whitespace\"}", "pre_tokenizer \"Whitespace\""},
    {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"ByteLevel\"}, {\"type\": \"Split\", "
                      "\"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}]}",
     "end with exactly one ByteLevel"},
    {"pre_tokenizer", "{\"type\": \"Split\", \"pattern\": {\"String\": \" \"}, \"behavior\": \"Isolated\"}",
     "end with exactly one ByteLevel"},
    {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                      "\"(\"}, \"behavior\": \"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
     "Split pattern \"(\""},
    {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": "
                      "\"a\"}, \"behavior\": \"Sideways\"}, {\"type\": \"ByteLevel\"}]}",
     "behavior \"Sideways\""},
    {"pre_tokenizer", "{\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"behavior\": "
                      "\"Isolated\"}, {\"type\": \"ByteLevel\"}]}",
     "needs pattern"},
    {"pre_tokenizer", "{\"type\": \"ByteLevel\", \"use_regex\": 3}", "use_regex"},
    {"decoder", "{\"type\": \"WordPiece\"}", "decoder \"WordPiece\""},
};

static char *fixture_with(const char *fixture_json, const char *field, const char *value)
{
    cJSON *root = cJSON_Parse(fixture_json), *v = cJSON_Parse(value), *obj = root;
    DM_ASSERT(root && v);
    const char *key = field;
    if (strncmp(field, "model.", 6) == 0) {
        obj = cJSON_GetObjectItemCaseSensitive(root, "model");
        key = field + 6;
    }
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, v);
    else
        cJSON_AddItemToObject(obj, key, v);
    char *s = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return s;
}

static void test_load_errors(void)
{
    char *fx;
    dm_err err;
    DM_ASSERT(dm_read_file(FIXTURE, &fx, NULL, &err) == 0);
    for (size_t i = 0; i < sizeof bad_files / sizeof *bad_files; i++) {
        char *json = fixture_with(fx, bad_files[i].field, bad_files[i].value), name[32];
        snprintf(name, sizeof name, "bad-%zu.json", i);
        dm_tokenizer *t = NULL;
        err.msg[0] = 0;
        int rc = dm_tokenizer_load_json(&t, json, strlen(json), name, &err);
        CHECK(rc == -1 && !t && strstr(err.msg, name) && strstr(err.msg, bad_files[i].expect),
              "%s (%s = %s): rc %d, message \"%s\", want it to name the file and say \"%s\"", name,
              bad_files[i].field, bad_files[i].value, rc, err.msg, bad_files[i].expect);
        dm_tokenizer_free(t);
        free(json);
    }
    dm_tokenizer *t = NULL;
    CHECK(dm_tokenizer_load_json(&t, "{\"model\": ", 10, "trunc.json", &err) == -1 && strstr(err.msg, "trunc.json"),
          "truncated JSON: \"%s\"", err.msg);
    /* a directory is searched for tokenizer.json */
    char *dir = dm_path_join(tmp_dir(), "tokdir"), *file = dm_path_join(dir, "tokenizer.json");
    dm_remove_tree(dir);
    mkdir(dir, 0755);
    CHECK(dm_tokenizer_load(&t, dir, &err) == -1 && strstr(err.msg, file), "missing tokenizer.json: \"%s\"", err.msg);
    DM_ASSERT(dm_write_file_atomic(file, fx, strlen(fx), &err) == 0);
    CHECK(dm_tokenizer_load(&t, dir, &err) == 0, "loading a model directory: %s", err.msg);
    dm_tokenizer_free(t);
    dm_remove_tree(dir);
    free(dir);
    free(file);
    free(fx);
}

int main(void)
{
    dm_tokenizer *t = load_fixture();
    test_byte_table(t);
    test_hand_encodings(t);
    test_round_trip(t);
    test_allow_special(t);
    test_strip_and_single_word(t);
    test_token_api(t);
    test_long_runs(t);
    test_threads(t);
    test_chat(t);
    test_load_errors();
    dm_tokenizer_free(t);
    if (g_fail) {
        fprintf(stderr, "test_tokenizer: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_tokenizer: ok\n");
    return 0;
}
