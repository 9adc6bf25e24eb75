/* fuzz_safetensors — a libFuzzer target for the safetensors header parser
 * (dm_st_open_buffer: the same validation as dm_st_open, from memory). Not
 * part of the CMake build; test_st_fuzz.c is its deterministic CTest
 * counterpart. Build and run from the repository root (clang 14 works;
 * `apt-get install clang` if missing):
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
 *         -Isrc tests/formats/fuzz_safetensors.c src/formats/safetensors.c \
 *         src/formats/dtype.c src/core/err.c src/core/file.c src/core/mem.c \
 *         src/core/sys.c $(pkg-config --cflags --libs libcjson) -lm -o /tmp/fuzz_st
 *   mkdir -p /tmp/fuzz_st_corpus
 *   /tmp/fuzz_st -dict=tests/formats/safetensors.dict -max_total_time=60 /tmp/fuzz_st_corpus
 *
 * Any small .safetensors file (e.g. one written by test_st_roundtrip) is a
 * good seed: copy it into the corpus directory first. An input is accepted or
 * rejected; either way nothing may crash, leak or trip a sanitizer, and an
 * accepted input's tensors must lie inside it. */
#include "formats/st_internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dm_safetensors st;
    dm_err err;
    if (dm_st_open_buffer(&st, "fuzz", data, size, &err) != 0) {
        DM_ASSERT(err.msg[0] && !strchr(err.msg, '\n'));
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int i = 0; i < st.n_tensors; i++) {
        const dm_st_tensor *t = &st.tensors[i];
        DM_ASSERT(t->data >= data && (size_t)(t->data - data) + t->nbytes <= size);
        DM_ASSERT((size_t)t->numel * dm_dtype_size(t->dtype) == t->nbytes);
        DM_ASSERT(dm_st_find(&st, t->name) == t);
        for (size_t k = 0; k < t->nbytes; k++)
            sink ^= t->data[k];
    }
    (void)dm_st_metadata(&st, "format");
    dm_st_close_buffer(&st);
    return 0;
}
