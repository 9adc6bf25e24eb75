/* cmd_logits — `demolish logits`: every position's logits for a text or a
 * list of token ids, written as .npy [T][V] — the engine's output in the form
 * the Python reference tests compare against. --decode computes them one
 * token at a time through the KV cache instead of one batched prefill;
 * --mtp-out adds the MTP head's logits. */
#include "cli/cli.h"
#include "model/model.h"
#include "prune/prune.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int parse_ids(const char *s, int32_t **out, int *n)
{
    int cap = 64;
    int32_t *ids = dm_malloc((size_t)cap * sizeof(int32_t));
    *n = 0;
    while (*s) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (end == s || errno || v < 0 || v > 2147483647L) {
            free(ids);
            return -1;
        }
        if (*n == cap)
            ids = dm_realloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
        ids[(*n)++] = (int32_t)v;
        s = end;
        while (*s == ',' || *s == ' ')
            s++;
    }
    *out = ids;
    return *n > 0 ? 0 : -1;
}

typedef struct logits_job {
    dm_ctx *ctx;
    dm_seq *seq;
    const int32_t *ids;
    int T, V, D;
    int decode_from;   /* positions before it are one batched prefill; the rest one token at a time */
} logits_job;

/* Main-model logits and final hidden states of every position. */
static int run_main(const logits_job *j, float *logits, float *hidden, dm_err *err)
{
    int p = j->decode_from < j->T ? j->decode_from : j->T;
    if (p > 0 && dm_forward(j->ctx, j->seq, j->ids, p, true, logits, hidden, err))
        return -1;
    for (int i = p; i < j->T; i++)
        if (dm_forward(j->ctx, j->seq, j->ids + i, 1, true, logits + (size_t)i * j->V,
                       hidden ? hidden + (size_t)i * j->D : NULL, err))
            return -1;
    return 0;
}

/* MTP logits of rows 0..T-2 (hidden state i with token i+1). */
static int run_mtp(const logits_job *j, const float *hidden, float *logits, dm_err *err)
{
    int p = j->decode_from < j->T - 1 ? j->decode_from : j->T - 1;
    if (p > 0 && dm_forward_mtp(j->ctx, j->seq, hidden, j->ids + 1, p, true, logits, NULL, err))
        return -1;
    for (int i = p; i + 1 < j->T; i++)
        if (dm_forward_mtp(j->ctx, j->seq, hidden + (size_t)i * j->D, j->ids + i + 1, 1, true,
                           logits + (size_t)i * j->V, NULL, err))
            return -1;
    return 0;
}

static int apply_mask(const char *path, dm_ctx *ctx, const dm_model *m, dm_err *err)
{
    dm_plan p;
    if (dm_plan_load(&p, path, err))
        return -1;
    int rc = dm_plan_mask(&p, ctx, m, err);
    if (rc)
        dm_err_prefix(err, "%s", path);
    dm_plan_free(&p);
    return rc;
}

int cmd_logits(int argc, char **argv)
{
    const char *text = NULL, *ids_arg = NULL, *out = NULL, *mtp_out = NULL, *mask_plan = NULL;
    bool decode = false, precise = false, no_special = false;
    int batch = 512, decode_from = -1, last = 0;
    const cli_opt opts[] = {
        { "--text", NULL, CLI_STR, &text, "TEXT", "text to tokenize (special tokens recognized)" },
        { "--ids", NULL, CLI_STR, &ids_arg, "1,2,3", "token ids instead of text" },
        { "--out", "-o", CLI_STR, &out, "FILE", "output .npy, float32 [T][V] (required)" },
        { "--decode", NULL, CLI_FLAG, &decode, NULL, "one token at a time through the KV cache" },
        { "--decode-from", NULL, CLI_INT, &decode_from, "N", "prefill the first N tokens, then decode the rest" },
        { "--precise", NULL, CLI_FLAG, &precise, NULL, "keep activations in f32 in every matmul" },
        { "--mtp-out", NULL, CLI_STR, &mtp_out, "FILE", "also write the MTP head's logits [T-1][V]" },
        { "--batch", NULL, CLI_INT, &batch, "N", "rows per prefill chunk (default 512)" },
        { "--last", NULL, CLI_INT, &last, "N", "write only the last N positions (default: all)" },
        { "--no-special", NULL, CLI_FLAG, &no_special, NULL, "treat special-token text as plain text" },
        { "--mask-plan", NULL, CLI_STR, &mask_plan, "PLAN", "mask the experts a prune plan drops out of the router" },
    };
    const cli_spec spec = { "logits", "MODEL_DIR ", "Writes the logits of every position as a NumPy .npy file.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!out || !text == !ids_arg || batch < 1 || last < 0 || (decode && decode_from >= 0))
        return fprintf(stderr, "demolish logits: need --out, exactly one of --text or --ids, --batch >= 1, and "
                               "at most one of --decode / --decode-from\n"), DM_EXIT_USAGE;
    if (decode)
        decode_from = 0;
    dm_ops_set_precise(precise);

    dm_err err;
    dm_model *m;
    if (dm_model_load(&m, pos[0], &err))
        return cli_fail(&err);
    int32_t *ids = NULL;
    int T = 0;
    if (ids_arg) {
        if (parse_ids(ids_arg, &ids, &T)) {
            dm_model_free(m);
            return fprintf(stderr, "demolish logits: --ids must be comma-separated non-negative integers\n"),
                   DM_EXIT_USAGE;
        }
    } else {
        dm_tokenizer *tok;
        if (dm_tokenizer_load(&tok, pos[0], &err)) {
            dm_model_free(m);
            return cli_fail(&err);
        }
        ids = dm_tokenize(tok, text, strlen(text), !no_special, &T);
        dm_tokenizer_free(tok);
    }
    if (T == 0 || (mtp_out && (T < 2 || m->cfg.n_mtp < 1))) {
        free(ids);
        dm_model_free(m);
        return cli_failf(T == 0 ? "nothing to evaluate (empty input)"
                                : "--mtp-out needs at least 2 tokens and a model with an MTP layer");
    }
    const int V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    float *logits = dm_malloc((size_t)T * V * sizeof(float));
    float *hidden = mtp_out ? dm_malloc((size_t)T * D * sizeof(float)) : NULL;
    float *mtp = mtp_out ? dm_malloc((size_t)(T - 1) * V * sizeof(float)) : NULL;
    dm_ctx *ctx = dm_ctx_new(m, batch);
    dm_seq *seq = dm_seq_new(m, T);
    logits_job job = { ctx, seq, ids, T, V, D, decode_from < 0 ? T : decode_from };
    double t0 = dm_time_sec();
    rc = mask_plan ? apply_mask(mask_plan, ctx, m, &err) : 0;
    if (rc == 0)
        rc = run_main(&job, logits, hidden, &err);
    if (rc == 0 && mtp_out)
        rc = run_mtp(&job, hidden, mtp, &err);
    double dt = dm_time_sec() - t0;
    int keep = last > 0 && last < T ? last : T, keep_mtp = last > 0 && last < T - 1 ? last : T - 1;
    int64_t shape[2] = { keep, V }, mshape[2] = { keep_mtp, V };
    if (rc == 0)
        rc = dm_npy_write(out, DM_DTYPE_F32, 2, shape, logits + (size_t)(T - keep) * V, &err);
    if (rc == 0 && mtp_out)
        rc = dm_npy_write(mtp_out, DM_DTYPE_F32, 2, mshape, mtp + (size_t)(T - 1 - keep_mtp) * V, &err);
    if (rc == 0)
        dm_log(1, "%d tokens (%d prefill, %d decode), %.3f s (%.1f tok/s)\n", T, job.decode_from < T ? job.decode_from : T,
               T - (job.decode_from < T ? job.decode_from : T), dt, T / dt);
    dm_seq_free(seq);
    dm_ctx_free(ctx);
    free(logits);
    free(hidden);
    free(mtp);
    free(ids);
    dm_model_free(m);
    return rc ? cli_fail(&err) : DM_EXIT_OK;
}
