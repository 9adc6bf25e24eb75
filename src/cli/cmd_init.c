/* cmd_init — `demolish init`: writes a random-weight model directory from a
 * preset or a config.json, in any supported weight format. */
#include "cli/cli.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

int cmd_init(int argc, char **argv)
{
    const char *preset = NULL, *config = NULL, *dtype = "bf16";
    uint64_t seed = 0;
    size_t shard = 0;
    bool force = false, list = false;
    const cli_opt opts[] = {
        { "--preset", NULL, CLI_STR, &preset, "NAME", "a named configuration (see --list-presets)" },
        { "--config", NULL, CLI_STR, &config, "FILE", "a config.json to build instead of a preset" },
        { "--dtype", NULL, CLI_STR, &dtype, "T", "weight format: f32, f16, bf16, fp8, nvfp4, mxfp4 (default bf16)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "random seed (default 0)" },
        { "--shard-mb", NULL, CLI_SIZE_MB, &shard, "MB", "shard the safetensors at this size (default: one file)" },
        { "--force", NULL, CLI_FLAG, &force, NULL, "replace OUT_DIR if it exists" },
        { "--list-presets", NULL, CLI_FLAG, &list, NULL, "list the presets and exit" },
    };
    const cli_spec spec = { "init", "OUT_DIR ", "Writes a complete random-weight model directory (config.json, "
                            "safetensors, tokenizer.json, ...).\nThe directory appears only when complete.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 0, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (list) {
        int n;
        const dm_preset *p = dm_preset_list(&n);
        for (int i = 0; i < n; i++)
            printf("%-14s %s\n", p[i].name, p[i].summary);
        return DM_EXIT_OK;
    }
    if (n_pos != 1) {
        cli_print_help(&spec, stderr);
        return DM_EXIT_USAGE;
    }
    if (!preset == !config)
        return fprintf(stderr, "demolish init: give exactly one of --preset or --config\n"), DM_EXIT_USAGE;
    dm_init_opts o = { .seed = seed, .shard_bytes = shard, .force = force };
    o.dtype = dm_wfmt_from_name(dtype);
    if (o.dtype == DM_WFMT_COUNT)
        return fprintf(stderr, "demolish init: unknown --dtype '%s'\n", dtype), DM_EXIT_USAGE;
    char *text = NULL;
    dm_err err;
    if (preset) {
        const dm_preset *p = dm_preset_find(preset);
        if (!p)
            return fprintf(stderr, "demolish init: unknown preset '%s' (see --list-presets)\n", preset), DM_EXIT_USAGE;
        o.config_json = p->config_json;
    } else {
        if (dm_read_file(config, &text, NULL, &err))
            return cli_fail(&err);
        o.config_json = text;
    }
    double t0 = dm_time_sec();
    rc = dm_init_model(pos[0], &o, &err);
    free(text);
    if (rc)
        return cli_fail(&err);
    dm_log(1, "wrote %s (%s weights) in %.1f s\n", pos[0], dm_wfmt_name(o.dtype), dm_time_sec() - t0);
    return DM_EXIT_OK;
}
