/* fuzz_config — libFuzzer target for the config.json parser. Not part of the
 * normal build. Build and run (clang from Debian's clang package):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc tests/model/fuzz_config.c \
 *     src/model/config.c src/ops/rope.c src/core/*.c -lcjson -lm -o /tmp/fuzz_config
 *   /tmp/fuzz_config -max_total_time=60
 * (a seed corpus: the config.json files `demolish init` writes). */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    memcpy(text, data, size);
    text[size] = 0;
    dm_config c;
    dm_err err;
    if (dm_config_parse(&c, text, "fuzz.json", &err) == 0)
        dm_config_free(&c);
    free(text);
    return 0;
}
