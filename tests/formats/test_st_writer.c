/* test_st_writer — the safetensors writer's promises beyond the round trip:
 *   - crash safety: until finish, only <name>.tmp-<pid> files exist; a writer
 *     freed without finish (or after a failed finish) removes them; a process
 *     killed mid-write (SIGKILL) leaves no file whose name looks final;
 *   - coverage: finish fails, naming the shard and the tensor and the missing
 *     byte count, when any byte was never written; writing the rest then
 *     finishing works; bytes written in 1-byte pieces in random order,
 *     repeated, are all accounted for;
 *   - errors for bad declarations (duplicate, reserved or non-UTF-8 names,
 *     bad dtype, ndim, shape) and bad writes (undeclared, out of range, wrong
 *     size), a missing output directory and non-UTF-8 metadata;
 *   - sharding: a tensor bigger than max_shard_bytes gets a shard of its own;
 *     rewriting an existing checkpoint replaces it. */
#include "ft_util.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>

static int64_t SHAPE_10[1] = { 10 };

/* Counts entries of dir; *final_like gets those whose names look finished
 * (end in .safetensors or .json). */
static int list_dir(const char *dir, int *final_like, int *tmp_like)
{
    DIR *d = opendir(dir);
    int n = 0;
    *final_like = *tmp_like = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        size_t l = strlen(e->d_name);
        n++;
        if ((l > 12 && !strcmp(e->d_name + l - 12, ".safetensors")) || (l > 5 && !strcmp(e->d_name + l - 5, ".json")))
            (*final_like)++;
        if (strstr(e->d_name, ".tmp-"))
            (*tmp_like)++;
    }
    if (d)
        closedir(d);
    return n;
}

/* A writer with tensors a (F32[10]) and b (U8[40]) begun in dir. */
static dm_st_writer *begun_writer(const char *dir, size_t max_shard)
{
    dm_err err = { "" };
    dm_st_writer *w = dm_st_writer_new(dir, max_shard);
    const int64_t s40[1] = { 40 };
    ft_check(dm_st_writer_declare(w, "a", DM_DTYPE_F32, 1, SHAPE_10, &err) == 0 &&
                 dm_st_writer_declare(w, "b", DM_DTYPE_U8, 1, s40, &err) == 0 && dm_st_writer_begin(w, &err) == 0,
             "begun_writer: %s", err.msg);
    return w;
}

static void test_free_without_finish(void)
{
    char *dir = ft_scratch("stw_free");
    uint8_t buf[40] = { 1 };
    dm_err err;
    for (int shards = 0; shards < 2; shards++) {
        dm_st_writer *w = begun_writer(dir, shards ? 40 : 0);
        int fin, tmp, n = list_dir(dir, &fin, &tmp);
        ft_check(n == (shards ? 2 : 1) && tmp == n && fin == 0, "after begin: %d files, %d temporary, %d final", n,
                 tmp, fin);
        ft_check(dm_st_writer_write(w, "a", buf, 40, &err) == 0, "write a: %s", err.msg);
        dm_st_writer_free(w);
        n = list_dir(dir, &fin, &tmp);
        ft_check(n == 0, "free without finish left %d files", n);
    }
    /* a failed finish, then free */
    dm_st_writer *w = begun_writer(dir, 0);
    ft_check(dm_st_writer_write(w, "a", buf, 40, &err) == 0, "write a: %s", err.msg);
    ft_check(dm_st_writer_finish(w, &err) == -1, "finish with b unwritten succeeded");
    dm_st_writer_free(w);
    int fin, tmp;
    ft_check(list_dir(dir, &fin, &tmp) == 0, "free after failed finish left files");
    dm_remove_tree(dir);
    free(dir);
}

/* A child killed with SIGKILL between begin and finish. */
static void test_killed(void)
{
    char *dir = ft_scratch("stw_killed");
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        dm_st_writer *w = begun_writer(dir, 40);
        uint8_t buf[40] = { 0 };
        dm_st_writer_write(w, "a", buf, 40, NULL);
        raise(SIGKILL);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ft_check(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, "child was not killed (status %d)", status);
    int fin, tmp, n = list_dir(dir, &fin, &tmp);
    ft_check(n == 2 && tmp == 2 && fin == 0, "after SIGKILL: %d files, %d temporary, %d look final", n, tmp, fin);
    dm_remove_tree(dir);
    free(dir);
}

static void test_coverage(void)
{
    char *dir = ft_scratch("stw_cover");
    dm_err err = { "" };
    uint8_t a[40], b[40];
    for (int i = 0; i < 40; i++)
        a[i] = (uint8_t)i, b[i] = (uint8_t)(100 + i);
    dm_st_writer *w = begun_writer(dir, 0);
    ft_check(dm_st_writer_write(w, "a", a, 40, &err) == 0, "write a: %s", err.msg);
    ft_check(dm_st_writer_write_part(w, "b", 0, b, 10, &err) == 0, "write b[0,10): %s", err.msg);
    ft_check(dm_st_writer_write_part(w, "b", 20, b + 20, 20, &err) == 0, "write b[20,40): %s", err.msg);
    ft_check(dm_st_writer_write_part(w, "b", 5, b + 5, 5, &err) == 0, "rewrite b[5,10): %s", err.msg);
    ft_check(dm_st_writer_finish(w, &err) == -1, "finish with b[10,20) missing succeeded");
    ft_check(strstr(err.msg, "\"b\"") && strstr(err.msg, "10 of its 40 bytes") && strstr(err.msg, "model.safetensors"),
             "missing-bytes message: %s", err.msg);
    ft_check(dm_st_writer_write_part(w, "b", 10, b + 10, 10, &err) == 0, "write b[10,20): %s", err.msg);
    ft_check(dm_st_writer_finish(w, &err) == 0, "finish after completing b: %s", err.msg);
    dm_st_writer_free(w);
    dm_safetensors st;
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "open: %s", err.msg)) {
        const dm_st_tensor *ta = dm_st_find(&st, "a"), *tb = dm_st_find(&st, "b");
        ft_check(ta && tb && !memcmp(ta->data, a, 40) && !memcmp(tb->data, b, 40), "coverage: bytes differ");
        dm_st_close(&st);
    }
    /* 1-byte pieces, shuffled, each written twice */
    enum { NB = 4096 };
    uint8_t *big = dm_malloc(NB);
    int *ord = dm_malloc(2 * NB * sizeof *ord);
    for (int i = 0; i < NB; i++)
        big[i] = (uint8_t)ft_rand(), ord[i] = ord[NB + i] = i;
    for (int i = 2 * NB - 1; i > 0; i--) {
        int j = (int)ft_below((uint64_t)i + 1), t = ord[i];
        ord[i] = ord[j];
        ord[j] = t;
    }
    w = dm_st_writer_new(dir, 0);
    const int64_t shape[1] = { NB };
    ft_check(dm_st_writer_declare(w, "big", DM_DTYPE_U8, 1, shape, &err) == 0 && dm_st_writer_begin(w, &err) == 0,
             "big: %s", err.msg);
    for (int k = 0; k < 2 * NB - 1; k++)   /* all but the last piece */
        dm_st_writer_write_part(w, "big", (size_t)ord[k], big + ord[k], 1, &err);
    bool last_is_dup = false;
    for (int k = 0; k < 2 * NB - 1; k++)
        last_is_dup |= ord[k] == ord[2 * NB - 1];
    ft_check((dm_st_writer_finish(w, &err) == 0) == last_is_dup, "finish with one piece left: %s", err.msg);
    if (!last_is_dup) {
        dm_st_writer_write_part(w, "big", (size_t)ord[2 * NB - 1], big + ord[2 * NB - 1], 1, &err);
        ft_check(dm_st_writer_finish(w, &err) == 0, "finish after all pieces: %s", err.msg);
    }
    dm_st_writer_free(w);
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "open big: %s", err.msg)) {
        const dm_st_tensor *t = dm_st_find(&st, "big");
        ft_check(t && t->nbytes == NB && !memcmp(t->data, big, NB), "1-byte pieces: bytes differ");
        dm_st_close(&st);
    }
    free(big);
    free(ord);
    dm_remove_tree(dir);
    free(dir);
}

static void test_declare_errors(void)
{
    char *dir = ft_scratch("stw_declare");
    dm_err err;
    dm_st_writer *w = dm_st_writer_new(dir, 0);
    ft_check(dm_st_writer_declare(w, "x", DM_DTYPE_F32, 1, SHAPE_10, &err) == 0, "declare x: %s", err.msg);
    const int64_t neg[1] = { -1 }, huge[2] = { (int64_t)1 << 40, (int64_t)1 << 40 };
    static const int64_t nine[9] = { 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    const struct { const char *name; dm_dtype t; int ndim; const int64_t *shape; const char *needle; } bad[] = {
        { "x", DM_DTYPE_F32, 1, SHAPE_10, "declared twice" },
        { "", DM_DTYPE_F32, 1, SHAPE_10, "name" },
        { "__metadata__", DM_DTYPE_F32, 1, SHAPE_10, "__metadata__" },
        { "bad\xff", DM_DTYPE_F32, 1, SHAPE_10, "name" },
        { "overlong\xc0\xaf", DM_DTYPE_F32, 1, SHAPE_10, "name" },
        { "surrogate\xed\xa0\x80", DM_DTYPE_F32, 1, SHAPE_10, "name" },
        { "cut\xe2\x82", DM_DTYPE_F32, 1, SHAPE_10, "name" },
        { "dt", (dm_dtype)99, 1, SHAPE_10, "dtype" },
        { "dt2", DM_DTYPE_INVALID, 1, SHAPE_10, "dtype" },
        { "nd", DM_DTYPE_F32, 9, nine, "dimensions" },
        { "nd2", DM_DTYPE_F32, -1, SHAPE_10, "dimensions" },
        { "neg", DM_DTYPE_F32, 1, neg, "shape" },
        { "huge", DM_DTYPE_F32, 2, huge, "shape" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err.msg[0] = 0;
        ft_check(dm_st_writer_declare(w, bad[i].name, bad[i].t, bad[i].ndim, bad[i].shape, &err) == -1,
                 "declare case %zu accepted", i);
        ft_check(strstr(err.msg, bad[i].needle) != NULL, "declare case %zu message: %s", i, err.msg);
    }
    const char *good[] = { "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "a.b/c:d e" };
    for (size_t i = 0; i < 4; i++)
        ft_check(dm_st_writer_declare(w, good[i], DM_DTYPE_U8, 0, NULL, &err) == 0, "valid name %zu rejected: %s", i,
                 err.msg);
    ft_check(dm_st_writer_begin(w, &err) == 0, "begin: %s", err.msg);
    uint8_t buf[64] = { 0 };
    ft_check(dm_st_writer_write(w, "nope", buf, 4, &err) == -1 && strstr(err.msg, "\"nope\""), "undeclared: %s",
             err.msg);
    ft_check(dm_st_writer_write(w, "x", buf, 39, &err) == -1 && strstr(err.msg, "\"x\""), "wrong size: %s", err.msg);
    ft_check(dm_st_writer_write_part(w, "x", 36, buf, 8, &err) == -1 && strstr(err.msg, "\"x\""), "past end: %s",
             err.msg);
    ft_check(dm_st_writer_write_part(w, "x", SIZE_MAX, buf, 2, &err) == -1, "offset overflow accepted");
    dm_st_writer_free(w);

    char *missing = dm_path_join(dir, "no/such/dir");
    w = dm_st_writer_new(missing, 0);
    ft_check(dm_st_writer_begin(w, &err) == -1 && strstr(err.msg, missing), "missing dir: %s", err.msg);
    dm_st_writer_free(w);
    w = dm_st_writer_new(dir, 0);
    dm_st_writer_set_metadata(w, "k", "\xff");
    ft_check(dm_st_writer_begin(w, &err) == -1 && strstr(err.msg, "\"k\""), "bad metadata: %s", err.msg);
    dm_st_writer_free(w);
    int fin, tmp;
    ft_check(list_dir(dir, &fin, &tmp) == 0, "failed writers left files");
    free(missing);
    dm_remove_tree(dir);
    free(dir);
}

/* Writes tensors of the given byte sizes (U8) with max_shard; returns the
 * number of shards seen by the reader and each tensor's shard in shard_of. */
static int shards_for(const char *dir, size_t max_shard, const int *sizes, int n, int *shard_of)
{
    dm_err err = { "" };
    dm_st_writer *w = dm_st_writer_new(dir, max_shard);
    char name[16];
    uint8_t buf[512];
    memset(buf, 7, sizeof buf);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        snprintf(name, sizeof name, "t%d", i);
        int64_t s = sizes[i];
        rc = dm_st_writer_declare(w, name, DM_DTYPE_U8, 1, &s, &err);
    }
    rc = rc ? rc : dm_st_writer_begin(w, &err);
    for (int i = 0; i < n && rc == 0; i++) {
        snprintf(name, sizeof name, "t%d", i);
        rc = dm_st_writer_write(w, name, buf, (size_t)sizes[i], &err);
    }
    rc = rc ? rc : dm_st_writer_finish(w, &err);
    dm_st_writer_free(w);
    ft_check(rc == 0, "shards_for: %s", err.msg);
    dm_safetensors st;
    if (!ft_check(dm_st_open(&st, dir, &err) == 0, "shards_for open: %s", err.msg))
        return -1;
    for (int i = 0; i < n; i++) {
        snprintf(name, sizeof name, "t%d", i);
        const dm_st_tensor *t = dm_st_find(&st, name);
        shard_of[i] = t ? t->file : -1;
    }
    int nf = st.n_files;
    dm_st_close(&st);
    return nf;
}

static void test_sharding(void)
{
    char *dir = ft_scratch("stw_shards");
    const int sizes[] = { 40, 40, 300, 40, 0, 60, 100 };
    const int want[] = { 0, 0, 1, 2, 2, 2, 3 };   /* max 100: the 300 alone; 40+0+60 fill one */
    int got[7];
    int nf = shards_for(dir, 100, sizes, 7, got);
    ft_check(nf == 4, "shards: %d, want 4", nf);
    for (int i = 0; i < 7; i++)
        ft_check(got[i] == want[i], "tensor t%d in shard %d, want %d", i, got[i], want[i]);
    /* rewriting the same directory as one file replaces the checkpoint */
    dm_remove_tree(dir);
    ft_mkdir_p(dir);
    nf = shards_for(dir, 0, sizes, 3, got);
    nf = shards_for(dir, 0, sizes + 4, 3, got);
    dm_safetensors st;
    dm_err err;
    if (ft_check(dm_st_open(&st, dir, &err) == 0, "reopen: %s", err.msg)) {
        const dm_st_tensor *t = dm_st_find(&st, "t2");
        ft_check(st.n_tensors == 3 && t && t->nbytes == 100, "rewritten checkpoint holds the old content");
        dm_st_close(&st);
    }
    dm_remove_tree(dir);
    free(dir);
}

int main(void)
{
    ft_seed(5);
    test_free_without_finish();
    test_killed();
    test_coverage();
    test_declare_errors();
    test_sharding();
    return ft_finish("test_st_writer");
}
