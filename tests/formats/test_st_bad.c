/* test_st_bad — the reader on broken checkpoints. One constructed file (or
 * index) per failure the reader must catch; each must fail with -1, leave the
 * dm_safetensors empty, and give a one-line message that names the file, the
 * tensor where there is one, and the problem (a keyword per case, so the
 * right check is known to have fired). Also checks what must stay accepted:
 * holes and trailing bytes in the data section, empty tensors anywhere,
 * whitespace padding, tensors a shard holds but the index does not list. */
#include "ft_util.h"

#include <fcntl.h>

static char *g_dir;   /* scratch directory */

static char *path_of(const char *name) { return dm_path_join(g_dir, name); }

/* Writes a safetensors file: u64 header length (declared), header bytes, then
 * data_bytes bytes of data. Returns the path (malloc'd). */
static char *write_raw(const char *name, const char *hdr, size_t hdr_len, uint64_t declared, size_t data_bytes)
{
    size_t n = 8 + hdr_len + data_bytes;
    uint8_t *b = dm_calloc(n, 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(declared >> (8 * i));
    memcpy(b + 8, hdr, hdr_len);
    char *path = path_of(name);
    ft_check(ft_write_bytes(path, b, n) == 0, "cannot write %s", path);
    free(b);
    return path;
}

static char *write_st(const char *name, const char *hdr, size_t data_bytes)
{
    return write_raw(name, hdr, strlen(hdr), strlen(hdr), data_bytes);
}

/* Opens path expecting failure with a message holding every non-NULL needle. */
static void expect_fail(const char *path, const char *what, const char *n1, const char *n2, const char *n3)
{
    dm_safetensors st;
    dm_err err = { "" };
    int rc = dm_st_open(&st, path, &err);
    if (!ft_check(rc == -1, "%s: opening %s succeeded", what, path)) {
        dm_st_close(&st);
        return;
    }
    ft_check(st.n_tensors == 0 && st.n_files == 0 && !st.tensors && !st.files, "%s: st not left empty", what);
    ft_check(strchr(err.msg, '\n') == NULL && err.msg[0], "%s: message not one line: %s", what, err.msg);
    const char *needles[3] = { n1, n2, n3 };
    for (int i = 0; i < 3; i++)
        if (needles[i])
            ft_check(strstr(err.msg, needles[i]) != NULL, "%s: message lacks \"%s\": %s", what, needles[i], err.msg);
    if (getenv("DM_TEST_VERBOSE"))
        printf("  %-28s %s\n", what, err.msg);
}

#define F32_W(offs) "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":" offs "}}"

/* Header-content failures: each is one file with a tensor named in `tensor`. */
static const struct {
    const char *what, *header;
    size_t data;
    const char *tensor, *keyword;
} HEADER_CASES[] = {
    { "invalid json", "{\"w\": {\"dtype\": ", 0, NULL, "not valid JSON" },
    { "empty header", "", 0, NULL, "not valid JSON" },
    { "not an object", "[1, 2, 3]", 0, NULL, "not a JSON object" },
    { "trailing bytes", "{} x", 0, NULL, "bytes after its JSON" },
    { "entry not object", "{\"w\": 5}", 0, "\"w\"", "not an object" },
    { "dtype missing", "{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\"", "dtype" },
    { "dtype not string", "{\"w\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"w\"", "dtype" },
    { "unknown dtype", "{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, "\"w\"", "unknown dtype" },
    { "shape missing", "{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"w\"", "shape" },
    { "shape negative", "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "\"w\"", "shape[0]" },
    { "shape fraction", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,4]}}", 4, "\"w\"",
      "shape[1]" },
    { "shape string", "{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,8]}}", 8, "\"w\"", "shape[0]" },
    { "shape huge dim", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1e300],\"data_offsets\":[0,8]}}", 8, "\"w\"", "shape[0]" },
    { "too many dims", "{\"w\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1,
      "\"w\"", "dimensions" },
    { "shape overflow", "{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,1]}}",
      1, "\"w\"", "overflows" },
    { "shape x size overflow", "{\"w\":{\"dtype\":\"F64\",\"shape\":[4294967296,1073741824],\"data_offsets\":[0,1]}}",
      1, "\"w\"", "overflows" },
    { "offsets missing", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "\"w\"", "data_offsets" },
    { "offsets one number", F32_W("[0]"), 8, "\"w\"", "data_offsets" },
    { "offsets three numbers", F32_W("[0,8,9]"), 9, "\"w\"", "data_offsets" },
    { "offsets negative", F32_W("[-8,0]"), 8, "\"w\"", "data_offsets" },
    { "offsets fraction", F32_W("[0,8.5]"), 9, "\"w\"", "data_offsets" },
    { "offsets beyond 2^53", F32_W("[9007199254740994,9007199254741002]"), 8, "\"w\"", "data_offsets" },
    { "offsets strings", F32_W("[\"0\",\"8\"]"), 8, "\"w\"", "data_offsets" },
    { "begin > end", F32_W("[8,0]"), 8, "\"w\"", "begin" },
    { "end beyond data", F32_W("[0,8]"), 4, "\"w\"", "beyond the data section" },
    { "end beyond data (huge)", F32_W("[1099511627776,1099511627784]"), 8, "\"w\"", "beyond the data section" },
    { "size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 12, "\"w\"", "needs 12" },
    { "overlap", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "\"b\"", "overlaps" },
    { "same bytes twice", "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},"
                          "\"b\":{\"dtype\":\"I8\",\"shape\":[4],\"data_offsets\":[0,4]}}", 4, "\"b\"", "overlaps" },
    { "name twice", "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                    "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "\"w\"", "appears twice" },
    { "metadata value not string", "{\"__metadata__\":{\"format\":\"pt\",\"k\":5}}", 0, "\"k\"", "not a string" },
    { "metadata not object", "{\"__metadata__\":\"pt\"}", 0, NULL, "__metadata__" },
    { "metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, NULL, "twice" },
    { "NUL in header", "{}\0   ", 0, NULL, "bytes after its JSON" },
};

static void test_header_cases(void)
{
    for (size_t i = 0; i < sizeof HEADER_CASES / sizeof *HEADER_CASES; i++) {
        char name[64];
        snprintf(name, sizeof name, "case%02zu.safetensors", i);
        const char *h = HEADER_CASES[i].header;
        size_t len = strlen(h) + (strstr(HEADER_CASES[i].what, "NUL") ? 4 : 0);
        char *path = write_raw(name, h, len, len, HEADER_CASES[i].data);
        expect_fail(path, HEADER_CASES[i].what, path, HEADER_CASES[i].tensor, HEADER_CASES[i].keyword);
        free(path);
    }
}

static void test_container_cases(void)
{
    char *p = write_raw("short.safetensors", "", 0, 0, 0);
    ft_check(truncate(p, 5) == 0, "truncate");
    expect_fail(p, "file of 5 bytes", p, "too short", NULL);
    ft_check(truncate(p, 0) == 0, "truncate");
    expect_fail(p, "empty file", p, "too short", NULL);
    free(p);
    p = write_raw("past_end.safetensors", "{}", 2, 1000, 30);
    expect_fail(p, "header past end", p, "runs past the end", NULL);
    free(p);
    p = write_raw("absurd.safetensors", "{}", 2, (uint64_t)1 << 62, 0);
    expect_fail(p, "absurd header length", p, "absurd", NULL);
    free(p);
    /* absurd even though the file is long enough: a sparse 160 MB file */
    p = write_raw("absurd_big.safetensors", "{}", 2, 150000000, 0);
    ft_check(truncate(p, 160000000) == 0, "truncate up");
    expect_fail(p, "absurd header, big file", p, "absurd", NULL);
    free(p);
    p = path_of("no_such_file.safetensors");
    expect_fail(p, "missing file", p, "cannot open", NULL);
    free(p);
    p = path_of("empty_dir");
    ft_mkdir_p(p);
    expect_fail(p, "directory without model", p, "no model.safetensors", NULL);
    free(p);
}

/* A two-shard checkpoint whose index is given as text; shard 1 holds a (and
 * whatever shard1 says), shard 2 holds b. */
static char *make_sharded(const char *sub, const char *shard1, const char *shard2, const char *index)
{
    char *dir = path_of(sub);
    ft_mkdir_p(dir);
    char *a = dm_path_join(dir, "model-00001-of-00002.safetensors");
    char *b = dm_path_join(dir, "model-00002-of-00002.safetensors");
    char *ix = dm_path_join(dir, "model.safetensors.index.json");
    char *tmp = write_st("tmp1", shard1, 64);
    ft_check(rename(tmp, a) == 0, "rename");
    free(tmp);
    tmp = write_st("tmp2", shard2, 64);
    ft_check(rename(tmp, b) == 0, "rename");
    free(tmp);
    ft_check(ft_write_bytes(ix, index, strlen(index)) == 0, "write index");
    free(a);
    free(b);
    free(dir);
    return ix;
}

#define SHARD_A "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define SHARD_B "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}"
#define SHARD_AB "{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," \
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}"
#define WM(x) "{\"metadata\":{\"total_size\":16},\"weight_map\":{" x "}}"
#define S1 "\"model-00001-of-00002.safetensors\""
#define S2 "\"model-00002-of-00002.safetensors\""

static void test_index_cases(void)
{
    char *ix = make_sharded("ok", SHARD_A, SHARD_B, WM("\"a\":" S1 ",\"b\":" S2));
    dm_safetensors st;
    dm_err err;
    ft_check(dm_st_open(&st, ix, &err) == 0, "valid sharded checkpoint: %s", err.msg);
    dm_st_close(&st);
    free(ix);

    ix = make_sharded("dup", SHARD_A, SHARD_AB, WM("\"a\":" S1 ",\"b\":" S2));
    expect_fail(ix, "tensor in two shards", "model-00001-of-00002", "model-00002-of-00002", "\"a\" also appears");
    free(ix);
    ix = make_sharded("lacks", SHARD_A, SHARD_B, WM("\"a\":" S1 ",\"b\":" S2 ",\"c\":" S2));
    expect_fail(ix, "shard lacks tensor", ix, "\"c\"", "does not hold it");
    free(ix);
    ix = make_sharded("wrong", SHARD_A, SHARD_B, WM("\"a\":" S2 ",\"b\":" S2));
    expect_fail(ix, "tensor in another shard", ix, "\"a\"", "does not hold it");
    free(ix);
    ix = make_sharded("missing", SHARD_A, SHARD_B,
                      WM("\"a\":" S1 ",\"b\":" S2 ",\"z\":\"model-00003-of-00003.safetensors\""));
    expect_fail(ix, "shard file missing", ix, "\"z\"", "model-00003-of-00003.safetensors");
    free(ix);
    ix = make_sharded("badshard", SHARD_A, "{\"b\":{\"dtype\":\"X9\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                      WM("\"a\":" S1 ",\"b\":" S2));
    expect_fail(ix, "bad tensor inside a shard", "model-00002-of-00002.safetensors", "\"b\"", "unknown dtype");
    free(ix);
    static const struct { const char *what, *index, *keyword, *tensor; } cases[] = {
        { "index not JSON", "{\"weight_map\": {", "not valid JSON", NULL },
        { "index without weight_map", "{\"metadata\":{}}", "weight_map", NULL },
        { "index weight_map empty", WM(""), "empty", NULL },
        { "index value not string", WM("\"a\":1"), "shard", "\"a\"" },
        { "index shard climbs out", WM("\"a\":\"../model-00001-of-00002.safetensors\""), "shard", "\"a\"" },
        { "index shard absolute", WM("\"a\":\"/etc/passwd\""), "shard", "\"a\"" },
        { "index shard empty name", WM("\"a\":\"\""), "shard", "\"a\"" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "ix%zu", i);
        ix = make_sharded(sub, SHARD_A, SHARD_B, cases[i].index);
        expect_fail(ix, cases[i].what, ix, cases[i].keyword, cases[i].tensor);
        free(ix);
    }
}

/* What must stay accepted. */
static void test_lenient(void)
{
    static const char *const ok[] = {
        /* a hole before b, 4 trailing bytes after it */
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[0,2]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}",
        /* empty tensors inside another's bytes, at its start and at the very end */
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
        "\"e\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[4,4]},"
        "\"f\":{\"dtype\":\"F64\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"g\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[12,12]}} \t\r\n  ",
        /* integers written as floats, extra keys ignored, 0-d tensor */
        "{\"s\":{\"dtype\":\"BF16\",\"shape\":[],\"data_offsets\":[0.0,2e0],\"extra\":[1]}}",
    };
    static const size_t data[] = { 12, 12, 2 };
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "ok%d.safetensors", i);
        char *p = write_st(name, ok[i], data[i]);
        dm_safetensors st;
        dm_err err;
        if (ft_check(dm_st_open(&st, p, &err) == 0, "lenient case %d rejected: %s", i, err.msg))
            dm_st_close(&st);
        free(p);
    }
    /* a tensor the shard holds but the index does not list is kept */
    char *ix = make_sharded("extra", SHARD_AB, "{}", WM("\"a\":" S1));
    dm_safetensors st;
    dm_err err;
    if (ft_check(dm_st_open(&st, ix, &err) == 0, "unlisted tensor: %s", err.msg)) {
        ft_check(dm_st_find(&st, "b") != NULL && st.n_files == 1, "unlisted tensor b not kept");
        dm_st_close(&st);
    }
    free(ix);
}

int main(void)
{
    g_dir = ft_scratch("st_bad");
    test_header_cases();
    test_container_cases();
    test_index_cases();
    test_lenient();
    dm_remove_tree(g_dir);
    free(g_dir);
    return ft_finish("test_st_bad");
}
