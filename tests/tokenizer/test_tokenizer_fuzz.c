/* test_tokenizer_fuzz — deterministic mutation fuzzing of the tokenizer.json
 * loader (CTest companion of fuzz_tokenizer.c): seeded mutants of the
 * committed fixture and of a freshly trained tokenizer are loaded; each must
 * fail with a one-line message naming the file, or load into a tokenizer that
 * then encodes and decodes text without crashing (decode(encode(s)) == s must
 * still hold for any byte-level tokenizer that loads). Run in the Sanitize
 * build for memory errors. */
#include "check.h"
#include "json_mutate.h"
#include "tokenizer/tokenizer.h"

#define N_MUTANTS 1500

static const char *const SAMPLE = "def f(x):\n    return x * 2  # caf\xc3\xa9 \xf0\x9f\x98\x80 <think>ok</think>\xff";

static void exercise(const dm_tokenizer *t, int i)
{
    int n;
    int32_t *ids = dm_tokenize(t, SAMPLE, strlen(SAMPLE), false, &n);
    size_t len;
    char *back = dm_detokenize(t, ids, n, &len);
    CHECK(len == strlen(SAMPLE) && !memcmp(back, SAMPLE, len), "mutant %d: round trip broken", i);
    free(back);
    free(ids);
    ids = dm_tokenize(t, SAMPLE, strlen(SAMPLE), true, &n);   /* specials on: just no crash */
    free(ids);
}

int main(void)
{
    char *fixture;
    size_t flen;
    dm_err err;
    if (dm_read_file("tests/data/tokenizer_gpt2like.json", &fixture, &flen, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *special[] = { "<|endoftext|>", "<think>", "</think>" };
    char *trained;
    const char *text = "the quick brown fox jumps over the lazy dog; def fib(n): return n if n < 2 else fib(n-1)";
    if (dm_bpe_train(text, strlen(text), 300, special, 3, &trained, &err)) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    const char *srcs[2] = { fixture, trained };
    jm_rng r = { 7 };
    int accepted = 0;
    for (int i = 0; i < N_MUTANTS; i++) {
        const char *src = srcs[i % 2];
        char *m = jm_mutate(&r, src, strlen(src));
        dm_tokenizer *t = NULL;
        dm_err e = { "" };
        if (dm_tokenizer_load_json(&t, m, strlen(m), "fuzz.json", &e) == 0) {
            accepted++;
            exercise(t, i);
            dm_tokenizer_free(t);
        } else {
            CHECK(strstr(e.msg, "fuzz.json") && !strchr(e.msg, '\n'), "mutant %d: message '%s'", i, e.msg);
        }
        free(m);
    }
    printf("  %d mutants, %d accepted\n", N_MUTANTS, accepted);
    free(fixture);
    free(trained);
    return check_finish("test_tokenizer_fuzz");
}
