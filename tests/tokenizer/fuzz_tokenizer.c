/* fuzz_tokenizer — libFuzzer target for the tokenizer.json loader (and, for
 * inputs that load, encode/decode). Not part of the normal build:
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/tokenizer/fuzz_tokenizer.c \
 *     src/tokenizer/*.c src/core/*.c -lcjson -lpcre2-8 -lutf8proc -lm -o /tmp/fuzz_tokenizer
 *   /tmp/fuzz_tokenizer -max_total_time=60 tests/data/   (the fixture as seed) */
#include "tokenizer/tokenizer.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dm_tokenizer *t;
    dm_err err;
    if (dm_tokenizer_load_json(&t, (const char *)data, size, "fuzz.json", &err) == 0) {
        int n;
        int32_t *ids = dm_tokenize(t, "hello <think> world \xff", 20, true, &n);
        size_t len;
        free(dm_detokenize(t, ids, n, &len));
        free(ids);
        dm_tokenizer_free(t);
    }
    return 0;
}
