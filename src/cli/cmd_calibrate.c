/* cmd_calibrate — `demolish calibrate`: expert saliency (REAP and the
 * baselines) and the imatrix over calibration text, saved as a stats file;
 * `--merge` adds stats files of the same model together. */
#include "calib/calib.h"
#include "cli/cli.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MERGE 256   /* stats files one --merge takes */

static int merge(const cli_strlist *inputs, const char *out)
{
    dm_err err;
    dm_calib_stats acc, s;
    if (dm_calib_load(&acc, inputs->items[0], &err))
        return cli_fail(&err);
    int rc = 0;
    for (int i = 1; i < inputs->n && rc == 0; i++) {
        if (dm_calib_load(&s, inputs->items[i], &err)) {
            rc = -1;
            break;
        }
        rc = dm_calib_merge(&acc, &s, &err);
        dm_calib_stats_free(&s);
        if (rc)
            dm_err_prefix(&err, "%s", inputs->items[i]);
    }
    if (rc == 0)
        rc = dm_calib_save(&acc, out, &err);
    if (rc == 0)
        dm_log(1, "merged %d stats files (%d runs, %lld tokens) into %s\n", inputs->n, acc.n_runs,
               (long long)acc.tokens, out);
    dm_calib_stats_free(&acc);
    return rc ? cli_fail(&err) : DM_EXIT_OK;
}

int cmd_calibrate(int argc, char **argv)
{
    const char *data = NULL, *out = NULL, *wfield = NULL, *sources = NULL, *gate = "model";
    int ctx = 512, self = 0, self_max = 256, close_window = 4;
    uint64_t max_tokens = 0, seed = 1;
    float close_weight = 1.0f, self_temp = 0.6f;
    bool no_imatrix = false, no_mtp = false, precise = false;
    cli_strlist merge_in = { 0 };
    const cli_opt opts[] = {
        { "--data", "-d", CLI_STR, &data, "PATH", "calibration .jsonl (text or messages, source), CORPUS_DIR[:split], or text" },
        { "--out", "-o", CLI_STR, &out, "FILE", "stats file to write (safetensors)" },
        { "--gate", NULL, CLI_STR, &gate, "G", "model (the gate the model applies), cerebras, cerebras-renorm" },
        { "--source", NULL, CLI_STR, &sources, "S[,S]", "calibrate only on the documents of these sources" },
        { "--weights-from", NULL, CLI_STR, &wfield, "FIELD", "record field of [start, end, weight] byte ranges" },
        { "--think-close-weight", NULL, CLI_FLOAT, &close_weight, "W", "weight of the tokens around </think> (default 1)" },
        { "--think-close-window", NULL, CLI_INT, &close_window, "N", "tokens on each side of </think> (default 4)" },
        { "--self-traces", NULL, CLI_INT, &self, "N", "calibrate on N completions the model writes from the data's texts" },
        { "--self-max-tokens", NULL, CLI_INT, &self_max, "N", "tokens per self-trace completion (default 256)" },
        { "--self-temp", NULL, CLI_FLOAT, &self_temp, "T", "temperature of the self-traces (default 0.6)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "self-trace sampling seed (default 1)" },
        { "--ctx", NULL, CLI_INT, &ctx, "N", "window length in tokens (default 512)" },
        { "--max-tokens", NULL, CLI_U64, &max_tokens, "N", "stop after N tokens (default: all)" },
        { "--no-imatrix", NULL, CLI_FLAG, &no_imatrix, NULL, "skip the per-channel importance matrix" },
        { "--no-mtp", NULL, CLI_FLAG, &no_mtp, NULL, "do not run the MTP head (its experts get no statistics)" },
        { "--precise", NULL, CLI_FLAG, &precise, NULL, "keep activations in f32 in every matmul (reference tests)" },
        { "--merge", NULL, CLI_STR_LIST, &merge_in, "FILE", "merge stats files into --out instead: --merge A B ..." },
    };
    const cli_spec spec = { "calibrate", "[MODEL_DIR | --merge STATS...] ",
                            "Measures expert saliency (REAP = mean of gate x ||expert output|| over routed tokens,\n"
                            "frequency, EAN, soft frequency) and the imatrix over calibration text.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 0, MAX_MERGE };
    const char *pos[MAX_MERGE];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED) {
        free(merge_in.items);
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    }
    if (!out) {
        free(merge_in.items);
        return fprintf(stderr, "demolish calibrate: need --out FILE\n"), DM_EXIT_USAGE;
    }
    if (merge_in.n) {   /* --merge A B C, or --merge A --merge B: the positionals are inputs too */
        merge_in.items = dm_realloc(merge_in.items, (size_t)(merge_in.n + n_pos) * sizeof(char *));
        for (int i = 0; i < n_pos; i++)
            merge_in.items[merge_in.n++] = pos[i];
        rc = merge_in.n >= 2 ? merge(&merge_in, out)
                             : (fprintf(stderr, "demolish calibrate: --merge takes >= 2 stats files\n"), DM_EXIT_USAGE);
        free(merge_in.items);
        return rc;
    }
    const int gm = dm_gate_mode_parse(gate);
    if (n_pos != 1 || !data || gm < 0 || ctx < 2 || self < 0 || self_max < 1 || close_window < 0 || !(close_weight >= 0))
        return fprintf(stderr, "demolish calibrate: need MODEL_DIR, --data and valid options (see --help)\n"),
               DM_EXIT_USAGE;
    dm_ops_set_precise(precise);
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    dm_calib_data cd = { 0 }, traces = { 0 };
    if (dm_model_load(&m, pos[0], &err) || dm_tokenizer_load(&tok, pos[0], &err) ||
        dm_calib_data_load(&cd, data, tok, wfield, &err) ||
        (sources && dm_calib_data_filter_sources(&cd, sources, data, &err)) ||
        (self > 0 && dm_calib_self_traces(m, tok, &cd, self, self_max, self_temp, seed, &traces, &err))) {
        rc = cli_fail(&err);
        goto out;
    }
    dm_calib_opts o = dm_calib_defaults();
    o.gate = (dm_gate_mode)gm;
    o.ctx = ctx;
    o.imatrix = !no_imatrix;
    o.mtp = !no_mtp;
    o.max_tokens = (int64_t)max_tokens;
    o.think_close_weight = close_weight;
    o.think_close_window = close_window;
    dm_calib_stats st;
    dm_calib_stats_init(&st, m);
    double t0 = dm_time_sec();
    rc = dm_calibrate(m, tok, self > 0 ? &traces : &cd, &o, &st, &err);
    if (rc == 0)
        rc = dm_calib_save(&st, out, &err);
    if (rc == 0)
        dm_log(1, "calibrated on %lld tokens (%d documents, gate %s) in %.1f s -> %s\n", (long long)st.tokens,
               self > 0 ? traces.n : cd.n, st.gate_mode, dm_time_sec() - t0, out);
    dm_calib_stats_free(&st);
    rc = rc ? cli_fail(&err) : DM_EXIT_OK;
out:
    dm_calib_data_free(&cd);
    dm_calib_data_free(&traces);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    free(merge_in.items);
    return rc;
}
