/* test_generate_batch — dm_generate_batch (continuous batching) against the
 * one-sequence loop dm_generate, which is the oracle here:
 *   - every job gets exactly dm_generate's tokens, stop reason and count,
 *     with 1, 5 and 12 sequences in flight (below the 24-row GEMM threshold
 *     rows are computed independently, so batching changes no bit);
 *   - jobs are taken in order and each is finished exactly once; some stop at
 *     eos (its logit is raised for half the jobs) and some at their cap;
 *   - a finished() failure stops the run with its message; more sequences
 *     than the workspace holds is an error.
 * Tiny preset, f32 weights. */
#include "model/model.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

enum { N_JOBS = 12, MAX_PREDICT = 40 };

typedef struct fixture {
    dm_model *m;
    int32_t *prompt[N_JOBS];
    int n_prompt[N_JOBS], n_predict[N_JOBS];
    dm_logit_bias eos_bias;
    /* the oracle's results */
    int32_t want[N_JOBS][MAX_PREDICT];
    int want_n[N_JOBS];
    dm_stop_reason want_stop[N_JOBS];
} fixture;

static dm_sampler *make_sampler(const fixture *f, int j)
{
    dm_sampler_params p = dm_sampler_defaults();
    p.temperature = 0.9f;
    p.top_p = 0.95f;
    p.seed = 1000 + (uint64_t)j;
    if (j % 2) {
        p.bias = &f->eos_bias;
        p.n_bias = 1;
    }
    return dm_sampler_new(&p, f->m->cfg.vocab_size);
}

static void make_fixture(fixture *f, const char *tmp)
{
    char *dir = dm_asprintf("%s/test_generate_batch", tmp);
    dm_init_opts o = { .config_json = dm_preset_find("tiny")->config_json, .dtype = DM_WFMT_F32, .seed = 11,
                       .force = true };
    dm_err err;
    f->m = NULL;
    if (dm_init_model(dir, &o, &err) || dm_model_load(&f->m, dir, &err))
        CHECK(0, "cannot make the model: %s", err.msg);
    free(dir);
    if (!f->m)
        return;
    const int V = f->m->cfg.vocab_size;
    f->eos_bias = (dm_logit_bias){ f->m->cfg.eos_token_ids[0], 6.0f };
    dm_rng r;
    dm_rng_seed(&r, 3);
    for (int j = 0; j < N_JOBS; j++) {
        f->n_prompt[j] = 1 + (int)(dm_rng_next(&r) % 30);
        f->n_predict[j] = 1 + (int)(dm_rng_next(&r) % MAX_PREDICT);
        f->prompt[j] = dm_malloc((size_t)f->n_prompt[j] * sizeof(int32_t));
        for (int t = 0; t < f->n_prompt[j]; t++)
            f->prompt[j][t] = (int32_t)(dm_rng_next(&r) % (uint64_t)V);
    }
}

/* The oracle: each job alone through dm_generate. */
static void run_oracle(fixture *f)
{
    dm_ctx *ctx = dm_ctx_new(f->m, 64);
    dm_seq *seq = dm_seq_new(f->m, 1);
    dm_err err;
    int n_eos = 0;
    for (int j = 0; j < N_JOBS; j++) {
        dm_sampler *s = make_sampler(f, j);
        dm_seq_reset(seq);
        dm_gen_request req = { .prompt = f->prompt[j], .n_prompt = f->n_prompt[j], .n_predict = f->n_predict[j],
                               .out_tokens = f->want[j] };
        dm_gen_stats st;
        CHECK(dm_generate(ctx, seq, NULL, s, &req, &st, &err) == 0, "dm_generate: %s", err.msg);
        f->want_n[j] = st.n_gen;
        f->want_stop[j] = st.stop;
        n_eos += st.stop == DM_STOP_EOS;
        dm_sampler_free(s);
    }
    CHECK(n_eos > 0 && n_eos < N_JOBS, "the fixture should mix eos and cap stops (%d of %d at eos)", n_eos, N_JOBS);
    dm_seq_free(seq);
    dm_ctx_free(ctx);
}

typedef struct queue_state {
    fixture *f;
    dm_gen_job jobs[N_JOBS];
    int32_t out[N_JOBS][MAX_PREDICT];
    int taken, finished[N_JOBS];
    int fail_at;                /* finished() fails on this job (-1: never) */
} queue_state;

static dm_gen_job *q_next(void *user)
{
    queue_state *q = user;
    if (q->taken == N_JOBS)
        return NULL;
    const int j = q->taken++;
    q->jobs[j] = (dm_gen_job){ .prompt = q->f->prompt[j], .n_prompt = q->f->n_prompt[j],
                               .n_predict = q->f->n_predict[j], .sampler = make_sampler(q->f, j),
                               .out_tokens = q->out[j], .user = (void *)(intptr_t)j };
    return &q->jobs[j];
}

static int q_finished(void *user, dm_gen_job *g, dm_err *err)
{
    queue_state *q = user;
    const int j = (int)(intptr_t)g->user;
    CHECK(g == &q->jobs[j], "finished() got a job it was not given");
    q->finished[j]++;
    dm_sampler_free(g->sampler);
    g->sampler = NULL;
    return j == q->fail_at ? dm_errorf(err, "job %d refused", j) : 0;
}

static void test_batch(fixture *f, int max_active)
{
    queue_state q = { .f = f, .fail_at = -1 };
    dm_ctx *ctx = dm_ctx_new(f->m, 16);
    dm_gen_queue queue = { &q, q_next, q_finished };
    dm_gen_batch_stats st;
    dm_err err;
    CHECK(dm_generate_batch(ctx, max_active, &queue, &st, &err) == 0, "batch %d: %s", max_active, err.msg);
    int64_t total = 0;
    for (int j = 0; j < N_JOBS; j++) {
        CHECK(q.finished[j] == 1, "batch %d: job %d finished %d times", max_active, j, q.finished[j]);
        const dm_gen_job *g = &q.jobs[j];
        CHECK(g->n_gen == f->want_n[j] && g->stop == f->want_stop[j] &&
                  !memcmp(g->out_tokens, f->want[j], (size_t)g->n_gen * sizeof(int32_t)),
              "batch %d: job %d: %d tokens (stop %d), dm_generate %d (stop %d)%s", max_active, j, g->n_gen, g->stop,
              f->want_n[j], f->want_stop[j], g->n_gen == f->want_n[j] ? ", different ids" : "");
        total += g->n_gen;
    }
    CHECK(st.jobs == N_JOBS && st.gen_tokens == total, "batch %d: stats say %lld jobs, %lld tokens (want %d, %lld)",
          max_active, (long long)st.jobs, (long long)st.gen_tokens, N_JOBS, (long long)total);
    printf("  %2d in flight: %lld tokens in %lld decode steps\n", max_active, (long long)total, (long long)st.steps);
    dm_ctx_free(ctx);
}

static void test_errors(fixture *f)
{
    queue_state q = { .f = f, .fail_at = 4 };
    dm_ctx *ctx = dm_ctx_new(f->m, 8);
    dm_gen_queue queue = { &q, q_next, q_finished };
    dm_err err;
    CHECK(dm_generate_batch(ctx, 9, &queue, NULL, &err) != 0 && q.taken == 0,
          "9 sequences in a workspace of 8 were accepted");
    CHECK(dm_generate_batch(ctx, 3, &queue, NULL, &err) != 0 && strstr(err.msg, "job 4 refused"),
          "a failing finished() did not stop the run (%s)", err.msg);
    for (int j = 0; j < q.taken; j++)   /* jobs still in flight keep their samplers */
        dm_sampler_free(q.jobs[j].sampler);
    dm_ctx_free(ctx);
}

int main(void)
{
    const char *tmp = getenv("DM_TEST_TMP") ? getenv("DM_TEST_TMP") : "/tmp";
    dm_make_dirs(tmp);
    fixture f;
    memset(&f, 0, sizeof f);
    make_fixture(&f, tmp);
    if (f.m) {
        run_oracle(&f);
        test_batch(&f, 1);
        test_batch(&f, 5);
        test_batch(&f, N_JOBS);
        test_errors(&f);
        for (int j = 0; j < N_JOBS; j++)
            free(f.prompt[j]);
        dm_model_free(f.m);
    }
    return check_finish("test_generate_batch");
}
