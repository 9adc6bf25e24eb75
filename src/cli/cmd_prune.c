/* cmd_prune — `demolish prune`: applies a plan to a checkpoint, byte-exact
 * and streaming (prune/surgery.c), into a new model directory. */
#include "cli/cli.h"
#include "prune/prune.h"

#include <stdlib.h>

int cmd_prune(int argc, char **argv)
{
    const char *plan_path = NULL, *out = NULL;
    size_t shard = 0;
    bool force = false;
    const cli_opt opts[] = {
        { "--plan", "-p", CLI_STR, &plan_path, "FILE", "plan JSON from `demolish plan` (or the GLM-5.2 tool's format)" },
        { "--out", "-o", CLI_STR, &out, "DIR", "pruned model directory to write" },
        { "--shard-mb", NULL, CLI_SIZE_MB, &shard, "MB", "output shard size (default: the input's largest shard)" },
        { "--force", "-f", CLI_FLAG, &force, NULL, "replace DIR if it exists" },
    };
    const cli_spec spec = { "prune", "MODEL_DIR",
                            "Removes the experts a plan drops: kept experts' bytes are copied verbatim (any dtype)\n"
                            "and renumbered, router rows and biases sliced, config.json rewritten. Streams; the\n"
                            "output directory appears only when complete.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!plan_path || !out)
        return fprintf(stderr, "demolish prune: need --plan FILE and --out DIR\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_plan p;
    if (dm_plan_load(&p, plan_path, &err))
        return cli_fail(&err);
    dm_prune_opts o = { .shard_bytes = shard, .force = force };
    double t0 = dm_time_sec();
    rc = dm_prune(pos[0], &p, out, &o, &err);
    if (rc == 0) {
        int kept = 0, layers = 0;
        for (int l = 0; l < p.n_layers; l++)
            if (p.keep[l]) {
                kept += p.keep[l];
                layers++;
            }
        dm_log(1, "pruned %d layers to %d experts in all in %.1f s -> %s\n", layers, kept, dm_time_sec() - t0, out);
    }
    dm_plan_free(&p);
    return rc ? cli_fail(&err) : DM_EXIT_OK;
}
