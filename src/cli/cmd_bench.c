/* cmd_bench — `demolish bench MODEL_DIR`: prefill and decode speed the way
 * llama-bench measures them, so the two engines can be run side by side:
 *   pp N : one batched forward of N random tokens from an empty cache;
 *   tg N : N single-token forwards from an empty cache (each samples nothing,
 *          the next token is random, like llama-bench's tg test).
 * Each test runs --reps times after one warm-up; the median and the spread
 * are reported, with peak RSS and the model's weight bytes. */
#include "cli/cli.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct bench_result {
    double median, lo, hi;   /* tokens per second */
} bench_result;

static bench_result summarize(double *tps, int n)
{
    qsort(tps, (size_t)n, sizeof(double), cmp_double);
    bench_result r = { n % 2 ? tps[n / 2] : 0.5 * (tps[n / 2 - 1] + tps[n / 2]), tps[0], tps[n - 1] };
    return r;
}

/* One timed test; returns tokens per second, or -1 on error. */
static double run_once(dm_ctx *ctx, dm_seq *seq, const int32_t *ids, int n, bool prefill, float *logits, dm_err *err)
{
    dm_seq_reset(seq);
    double t0 = dm_time_sec();
    if (prefill) {
        if (dm_forward(ctx, seq, ids, n, false, logits, NULL, err))
            return -1;
    } else {
        for (int i = 0; i < n; i++)
            if (dm_forward(ctx, seq, ids + i, 1, false, logits, NULL, err))
                return -1;
    }
    return n / (dm_time_sec() - t0);
}

static int run_test(dm_ctx *ctx, dm_seq *seq, const int32_t *ids, int n, bool prefill, int reps, float *logits,
                    bench_result *res, dm_err *err)
{
    double *tps = dm_malloc((size_t)reps * sizeof(double));
    int rc = run_once(ctx, seq, ids, n, prefill, logits, err) < 0 ? -1 : 0;   /* warm-up */
    for (int r = 0; rc == 0 && r < reps; r++)
        if ((tps[r] = run_once(ctx, seq, ids, n, prefill, logits, err)) < 0)
            rc = -1;
    if (rc == 0)
        *res = summarize(tps, reps);
    free(tps);
    return rc;
}

static int64_t weight_bytes(const dm_model *m)
{
    int64_t b = 0;
    for (int i = 0; i < m->st.n_tensors; i++)
        b += (int64_t)m->st.tensors[i].nbytes;
    return b;
}

int cmd_bench(int argc, char **argv)
{
    int pp = 512, tg = 128, reps = 5, batch = 512;
    bool json = false, precise = false;
    uint64_t seed = 1;
    const cli_opt opts[] = {
        { "--prompt", "-p", CLI_INT, &pp, "N", "prefill test size in tokens, 0 = skip (default 512)" },
        { "--n-gen", "-n", CLI_INT, &tg, "N", "decode test size in tokens, 0 = skip (default 128)" },
        { "--reps", "-r", CLI_INT, &reps, "N", "timed repetitions after a warm-up (default 5)" },
        { "--batch", NULL, CLI_INT, &batch, "N", "rows per prefill chunk (default 512)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "seed of the random token ids (default 1)" },
        { "--precise", NULL, CLI_FLAG, &precise, NULL, "keep activations in f32 in every matmul" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print a JSON report" },
    };
    const cli_spec spec = { "bench", "MODEL_DIR ", "Measures prefill (pp) and decode (tg) speed like llama-bench.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (pp < 0 || tg < 0 || reps < 1 || batch < 1 || (pp == 0 && tg == 0))
        return fprintf(stderr, "demolish bench: need -p >= 0, -n >= 0 (not both 0), -r >= 1, --batch >= 1\n"),
               DM_EXIT_USAGE;
    dm_ops_set_precise(precise);
    dm_err err;
    dm_model *m;
    double t0 = dm_time_sec();
    if (dm_model_load(&m, pos[0], &err))
        return cli_fail(&err);
    double t_load = dm_time_sec() - t0;
    const int n = pp > tg ? pp : tg;
    int32_t *ids = dm_malloc((size_t)n * sizeof(int32_t));
    dm_rng r;
    dm_rng_seed(&r, seed);
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)(dm_rng_next(&r) % (uint64_t)m->cfg.vocab_size);
    float *logits = dm_malloc((size_t)m->cfg.vocab_size * sizeof(float));
    dm_ctx *ctx = dm_ctx_new(m, batch);
    dm_seq *seq = dm_seq_new(m, n + 1);
    bench_result rp = { 0 }, rt = { 0 };
    rc = (pp && run_test(ctx, seq, ids, pp, true, reps, logits, &rp, &err)) ||
         (tg && run_test(ctx, seq, ids, tg, false, reps, logits, &rt, &err));
    if (rc == 0) {
        double gib = weight_bytes(m) / (double)(1 << 30);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "model", pos[0]);
            cJSON_AddNumberToObject(o, "params", (double)m->n_params);
            cJSON_AddNumberToObject(o, "params_active", (double)m->n_params_active);
            cJSON_AddNumberToObject(o, "weight_bytes", (double)weight_bytes(m));
            cJSON_AddNumberToObject(o, "threads", dm_threads_get());
            cJSON_AddNumberToObject(o, "load_seconds", t_load);
            cJSON_AddNumberToObject(o, "reps", reps);
            if (pp) {
                cJSON_AddNumberToObject(o, "pp", pp);
                cJSON_AddNumberToObject(o, "pp_tok_per_s", rp.median);
                cJSON_AddNumberToObject(o, "pp_tok_per_s_min", rp.lo);
                cJSON_AddNumberToObject(o, "pp_tok_per_s_max", rp.hi);
            }
            if (tg) {
                cJSON_AddNumberToObject(o, "tg", tg);
                cJSON_AddNumberToObject(o, "tg_tok_per_s", rt.median);
                cJSON_AddNumberToObject(o, "tg_tok_per_s_min", rt.lo);
                cJSON_AddNumberToObject(o, "tg_tok_per_s_max", rt.hi);
            }
            cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)dm_peak_rss_bytes());
            char *s = cJSON_Print(o);
            puts(s);
            free(s);
            cJSON_Delete(o);
        } else {
            printf("model %s: %.3f B params (%.3f B active), %.2f GiB weights, %d threads, load %.2f s\n", pos[0],
                   m->n_params / 1e9, m->n_params_active / 1e9, gib, dm_threads_get(), t_load);
            if (pp)
                printf("pp%-5d %8.1f tok/s  (min %.1f, max %.1f, %d reps)\n", pp, rp.median, rp.lo, rp.hi, reps);
            if (tg)
                printf("tg%-5d %8.2f tok/s  (min %.2f, max %.2f, %d reps)\n", tg, rt.median, rt.lo, rt.hi, reps);
            printf("peak RSS %.0f MiB\n", dm_peak_rss_bytes() / 1048576.0);
        }
    }
    dm_seq_free(seq);
    dm_ctx_free(ctx);
    free(logits);
    free(ids);
    dm_model_free(m);
    return rc ? cli_fail(&err) : DM_EXIT_OK;
}
