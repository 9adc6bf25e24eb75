/* cmd_train — `demolish train`: trains a model from a training config
 * ({"model": HF config, "train": hyperparameters and stages}) on a corpus
 * (or a raw token stream), resumable, writing a Hugging Face model directory. */
#include "cli/cli.h"
#include "train/train.h"

#include <stdlib.h>
#include <string.h>

int cmd_train(int argc, char **argv)
{
    const char *config = NULL, *data = NULL, *raw = NULL, *out = NULL, *tokenizer = NULL, *dump = NULL;
    bool resume = false;
    int steps = 0, dump_steps = 0;
    const cli_opt opts[] = {
        { "--config", "-c", CLI_STR, &config, "FILE", "training config (model + train sections)" },
        { "--data", NULL, CLI_STR, &data, "DIR", "a `demolish corpus build` directory" },
        { "--data-raw", NULL, CLI_STR, &raw, "FILE", "or a raw little-endian uint32 token stream" },
        { "--tokenizer", NULL, CLI_STR, &tokenizer, "FILE", "tokenizer.json (default: OUT/tokenizer.json if present)" },
        { "--out", "-o", CLI_STR, &out, "DIR", "model directory to write (checkpoints in DIR.ckpt, log in DIR.log.jsonl)" },
        { "--resume", NULL, CLI_FLAG, &resume, NULL, "continue from DIR.ckpt" },
        { "--steps", NULL, CLI_INT, &steps, "N", "stop (checkpointed) after N steps in total; --resume continues" },
        { "--dump", NULL, CLI_STR, &dump, "DIR", "write oracle dumps (init, step-0 gradients, batches, losses)" },
        { "--dump-steps", NULL, CLI_INT, &dump_steps, "N", "steps to dump (default: all)" },
    };
    const cli_spec spec = { "train", "", "Trains a GLM-MoE-DSA model (full backward pass, AdamW, exact resume).", opts,
                            (int)(sizeof opts / sizeof opts[0]), 0, 0 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!config || !out || !data == !raw || steps < 0 || dump_steps < 0)
        return fprintf(stderr, "demolish train: need --config, --out and exactly one of --data/--data-raw "
                               "(see --help)\n"), DM_EXIT_USAGE;
    char *default_tok = NULL;
    if (!tokenizer) {
        default_tok = dm_path_join(out, "tokenizer.json");
        if (dm_path_exists(default_tok))
            tokenizer = default_tok;
    }
    dm_err err;
    dm_train_config tc;
    if (dm_train_config_load(&tc, config, &err)) {
        free(default_tok);
        return cli_fail(&err);
    }
    dm_train_opts o = { .out_dir = out, .corpus_dir = data, .tokenizer = tokenizer, .data_raw = raw,
                        .resume = resume, .stop_after = steps, .dump_dir = dump, .config_path = config, .dump_steps = dump_steps > 0 ? dump_steps : 1 << 30 };
    double t0 = dm_time_sec();
    rc = dm_train_run(&tc, &o, &err);
    dm_train_config_free(&tc);
    free(default_tok);
    if (rc)
        return cli_fail(&err);
    dm_log(1, "training finished in %.1f s\n", dm_time_sec() - t0);
    return DM_EXIT_OK;
}
