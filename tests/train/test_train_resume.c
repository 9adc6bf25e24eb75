/* test_train_resume — exact resume: training N steps straight and N/2 steps,
 * stop, then --resume for the rest must give bitwise identical weights, Adam
 * moments and step counts (the checkpoint files are compared byte for byte).
 * Runs the tiny every-feature training config through all three stages
 * (dense, indexer warm-up, sparse) on a random token stream. */
#include "check.h"
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

static int make_tokens(const char *path, int n, int V)
{
    uint32_t *t = malloc((size_t)n * 4);
    dm_rng r;
    dm_rng_seed(&r, 99);
    for (int i = 0; i < n; i++)
        t[i] = (uint32_t)(dm_rng_next(&r) % (uint64_t)V);
    dm_err err;
    int rc = dm_write_file_atomic(path, t, (size_t)n * 4, &err);
    free(t);
    return rc;
}

static long file_size(const char *path, uint8_t **data)
{
    dm_map m;
    dm_err err;
    if (dm_map_file(&m, path, &err))
        return -1;
    *data = malloc(m.size);
    memcpy(*data, m.data, m.size);
    long n = (long)m.size;
    dm_unmap_file(&m);
    return n;
}

int main(void)
{
    const char *tmp = getenv("DM_TEST_TMP") ? getenv("DM_TEST_TMP") : "/tmp";
    dm_make_dirs(tmp);
    char *tokens = dm_asprintf("%s/resume_tokens.u32", tmp), *a = dm_asprintf("%s/resume_a", tmp),
         *b = dm_asprintf("%s/resume_b", tmp);
    dm_err err;
    dm_train_config tc;
    CHECK(dm_train_config_load(&tc, "tests/reference/configs/train_tiny.json", &err) == 0, "config: %s", err.msg);
    if (check_failures)
        return check_finish("test_train_resume");
    make_tokens(tokens, 5000, tc.model.vocab_size);
    const int N = tc.hp.steps;
    dm_train_opts oa = { .out_dir = a, .data_raw = tokens };
    CHECK(dm_train_run(&tc, &oa, &err) == 0, "straight run: %s", err.msg);
    dm_train_opts ob = { .out_dir = b, .data_raw = tokens, .stop_after = N / 2 };
    CHECK(dm_train_run(&tc, &ob, &err) == 0, "first half: %s", err.msg);
    ob.stop_after = 0;
    ob.resume = true;
    CHECK(dm_train_run(&tc, &ob, &err) == 0, "resumed half: %s", err.msg);
    char *ca = dm_asprintf("%s.ckpt/model.safetensors", a), *cb = dm_asprintf("%s.ckpt/model.safetensors", b);
    uint8_t *da = NULL, *db = NULL;
    long na = file_size(ca, &da), nb = file_size(cb, &db);
    CHECK(na > 0 && na == nb, "checkpoint sizes %ld vs %ld", na, nb);
    if (na > 0 && na == nb) {
        long diff = 0;
        for (long i = 0; i < na; i++)
            diff += da[i] != db[i];
        CHECK(diff == 0, "%ld bytes differ between the straight and the resumed run's checkpoint", diff);
        printf("  %d steps (dense, indexer-warmup, sparse): checkpoints of %ld bytes identical\n", N, na);
    }
    free(da);
    free(db);
    free(ca);
    free(cb);
    free(tokens);
    free(a);
    free(b);
    dm_train_config_free(&tc);
    return check_finish("test_train_resume");
}
