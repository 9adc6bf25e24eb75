/* test_codec_oracle — bf16 and f16 conversions against an independent oracle:
 * this program converts ~5.3M float32 bit patterns with dm_f32_to_bf16 /
 * dm_f32_to_f16 and decodes all 65536 codes of each format, dumps the results
 * into $DM_TEST_TMP/codec_oracle/, and runs tests/formats/codec_oracle.py with
 * /usr/bin/python3, which redoes every conversion with PyTorch's bfloat16 and
 * numpy's float16 (both round to nearest, ties to even) and fails on any
 * difference. Exact comparison: no tolerance.
 *
 * The inputs cover every bf16 value with the rounding-relevant low 16 bits
 * set to {0, 1, 0x7fff, 0x8000, 0x8001, 0xffff} and two random patterns (so
 * every tie and near-tie of every binade and sign, NaN, inf), every f16
 * significand of every float exponent with the 13 dropped bits set to {0, 1,
 * 0xfff, 0x1000, 0x1001, 0x1fff} and a random pattern (ties, subnormals,
 * overflow to inf), and 1M random bit patterns. Skipped (exit 0, with a
 * message) only when /usr/bin/python3 does not exist. */
#include "ft_util.h"

#define ORACLE_PY "tests/formats/codec_oracle.py"
#define ORACLE_PYTHON "/usr/bin/python3"
#define N_RANDOM 1000000

static uint32_t *build_inputs(size_t *n_out)
{
    static const uint32_t bf_low[] = { 0, 1, 0x7fff, 0x8000, 0x8001, 0xffff };
    static const uint32_t f16_low[] = { 0, 1, 0xfff, 0x1000, 0x1001, 0x1fff };
    size_t cap = 65536 * 8 + 512 * 1024 * 7 + N_RANDOM, n = 0;
    uint32_t *x = dm_malloc(cap * sizeof *x);
    ft_seed(42);
    for (uint32_t hi = 0; hi < 65536; hi++) {
        for (size_t k = 0; k < 6; k++)
            x[n++] = hi << 16 | bf_low[k];
        x[n++] = hi << 16 | (uint32_t)(ft_rand() & 0xffff);
        x[n++] = hi << 16 | (uint32_t)(ft_rand() & 0xffff);
    }
    for (uint32_t se = 0; se < 512; se++)           /* sign and float exponent */
        for (uint32_t m = 0; m < 1024; m++) {       /* the kept f16 significand bits */
            for (size_t k = 0; k < 6; k++)
                x[n++] = se << 23 | m << 13 | f16_low[k];
            x[n++] = se << 23 | m << 13 | (uint32_t)(ft_rand() & 0x1fff);
        }
    for (int i = 0; i < N_RANDOM; i++)
        x[n++] = (uint32_t)ft_rand();
    DM_ASSERT(n == cap);
    *n_out = n;
    return x;
}

static void dump(const char *dir, const char *name, const void *p, size_t bytes)
{
    char *path = dm_path_join(dir, name);
    ft_check(ft_write_bytes(path, p, bytes) == 0, "cannot write %s", path);
    free(path);
}

int main(void)
{
    if (access(ORACLE_PYTHON, X_OK) != 0) {
        printf("test_codec_oracle: SKIPPED (%s not found)\n", ORACLE_PYTHON);
        return 0;
    }
    char *dir = ft_scratch("codec_oracle");
    size_t n;
    uint32_t *x = build_inputs(&n);
    uint16_t *bf = dm_malloc(n * sizeof *bf), *h = dm_malloc(n * sizeof *h);
    for (size_t i = 0; i < n; i++) {
        float f;
        memcpy(&f, &x[i], 4);
        bf[i] = dm_f32_to_bf16(f);
        h[i] = dm_f32_to_f16(f);
    }
    uint32_t *f16_dec = dm_malloc(65536 * 4), *bf16_dec = dm_malloc(65536 * 4);
    for (uint32_t c = 0; c < 65536; c++) {
        float a = dm_f16_to_f32((uint16_t)c), b = dm_bf16_to_f32((uint16_t)c);
        memcpy(&f16_dec[c], &a, 4);
        memcpy(&bf16_dec[c], &b, 4);
    }
    dump(dir, "in.u32", x, n * 4);
    dump(dir, "bf16.u16", bf, n * 2);
    dump(dir, "f16.u16", h, n * 2);
    dump(dir, "f16_dec.u32", f16_dec, 65536 * 4);
    dump(dir, "bf16_dec.u32", bf16_dec, 65536 * 4);
    char *cmd = dm_asprintf("%s %s %s", ORACLE_PYTHON, ORACLE_PY, dir);
    int rc = system(cmd);
    ft_check(rc == 0, "oracle %s reported mismatches (status %d)", ORACLE_PY, rc);
    printf("test_codec_oracle: %zu float32 inputs, 65536 codes per format compared with the oracle\n", n);
    dm_remove_tree(dir);
    free(cmd);
    free(x);
    free(bf);
    free(h);
    free(f16_dec);
    free(bf16_dec);
    free(dir);
    return ft_finish("test_codec_oracle");
}
