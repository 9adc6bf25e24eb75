/* cmd_prune — `demolish prune`: applies a plan to a checkpoint, byte-exact
 * and streaming (prune/surgery.c), into a new model directory. */
#include "cli/cli.h"
#include "prune/prune.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* A plan written by `demolish plan` names (in its .meta sidecar) the model its
 * stats were measured on; applied to another checkpoint, its ids would pick
 * experts by someone else's saliency. Plans without a sidecar (the published
 * tool's format) cannot be checked. */
static int check_stats_model(const dm_plan *p, const char *plan_path, const char *model_dir, dm_err *err)
{
    cJSON *meta = p->meta[0] ? cJSON_Parse(p->meta) : NULL;
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(meta, "stats_model_hash");
    int rc = 0;
    if (cJSON_IsString(h) && h->valuestring[0]) {
        dm_model *m;
        char hash[65];
        rc = dm_model_load(&m, model_dir, err);
        if (rc == 0) {
            rc = dm_model_hash(m, hash, err);
            dm_model_free(m);
        }
        if (rc == 0 && strcmp(hash, h->valuestring) != 0)
            rc = dm_errorf(err, "%s: made from the stats of another model (sha256 %.12s..., %s is %.12s...); "
                           "--any-model applies it anyway", plan_path, h->valuestring, model_dir, hash);
    }
    cJSON_Delete(meta);
    return rc;
}

int cmd_prune(int argc, char **argv)
{
    const char *plan_path = NULL, *out = NULL;
    size_t shard = 0;
    bool force = false, any_model = false;
    const cli_opt opts[] = {
        { "--plan", "-p", CLI_STR, &plan_path, "FILE", "plan JSON from `demolish plan` (or the GLM-5.2 tool's format)" },
        { "--out", "-o", CLI_STR, &out, "DIR", "pruned model directory to write" },
        { "--shard-mb", NULL, CLI_SIZE_MB, &shard, "MB", "output shard size (default: the input's largest shard)" },
        { "--force", "-f", CLI_FLAG, &force, NULL, "replace DIR if it exists" },
        { "--any-model", NULL, CLI_FLAG, &any_model, NULL,
          "apply a plan made from another model's stats (e.g. the same model in another weight format)" },
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
    dm_config c;   /* the plan against the model first, so that its errors name the plan file */
    rc = dm_config_load(&c, pos[0], &err);
    if (rc == 0) {
        if ((rc = dm_plan_check(&p, &c, pos[0], &err)) != 0)
            dm_err_prefix(&err, "%s", plan_path);
        dm_config_free(&c);
    }
    if (rc == 0 && !any_model)
        rc = check_stats_model(&p, plan_path, pos[0], &err);
    if (rc == 0)
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
