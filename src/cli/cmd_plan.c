/* cmd_plan — `demolish plan`: which experts each layer keeps, from a
 * calibration stats file and a criterion; writes the plan JSON (and its
 * provenance sidecar) and prints, per layer, how much of the layer's
 * saliency the kept experts carry. */
#include "cli/cli.h"
#include "prune/prune.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void print_plan(const dm_plan *p, const dm_calib_stats *st, bool json)
{
    int kept = 0, total = 0;
    for (int l = 0; l < p->n_layers; l++)
        if (p->keep[l]) {
            kept += p->keep[l];
            total += p->n_experts[l];
        }
    if (json) {
        cJSON *o = cJSON_CreateObject(), *layers = cJSON_AddArrayToObject(o, "layers");
        cJSON_AddStringToObject(o, "criterion", p->criterion);
        cJSON_AddNumberToObject(o, "experts_kept", kept);
        cJSON_AddNumberToObject(o, "experts_total", total);
        for (int l = 0; l < p->n_layers; l++) {
            if (!p->keep[l])
                continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddNumberToObject(e, "layer", l);
            cJSON_AddBoolToObject(e, "mtp", l >= st->main_layers);
            cJSON_AddNumberToObject(e, "keep", p->keep[l]);
            cJSON_AddNumberToObject(e, "experts", p->n_experts[l]);
            cJSON_AddNumberToObject(e, "score_kept", p->score_kept[l]);
            cJSON_AddItemToArray(layers, e);
        }
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("layer  keep/experts  %s kept\n", p->criterion);
    for (int l = 0; l < p->n_layers; l++)
        if (p->keep[l])
            printf("%5d%s %5d/%-7d %6.1f%%\n", l, l >= st->main_layers ? "*" : " ", p->keep[l], p->n_experts[l],
                   100 * p->score_kept[l]);
    printf("total  %d/%d experts kept (%.1f%%)%s\n", kept, total, total ? 100.0 * kept / total : 0,
           st->main_layers < st->n_layers ? "   (* MTP layer)" : "");
}

int cmd_plan(int argc, char **argv)
{
    const char *out = NULL, *crit = "reap", *source = "all";
    float keep = 0;
    int keep_n = 0, budget = 0, min_l = 0, max_l = 0;
    uint64_t seed = 0;
    bool non_uniform = false, skip_mtp = false, json = false;
    const cli_opt opts[] = {
        { "--criterion", "-c", CLI_STR, &crit, "C", "reap (default), frequency, ean, soft-frequency, random" },
        { "--keep", NULL, CLI_FLOAT, &keep, "F", "uniform: fraction of each layer's experts kept (e.g. 0.75)" },
        { "--keep-n", NULL, CLI_INT, &keep_n, "N", "uniform: keep N experts per layer" },
        { "--non-uniform", NULL, CLI_FLAG, &non_uniform, NULL, "per-layer counts by water-filling on saliency" },
        { "--budget-experts", NULL, CLI_INT, &budget, "N", "non-uniform: experts kept over all layers" },
        { "--min-per-layer", NULL, CLI_INT, &min_l, "N", "non-uniform: at least N per layer (default: top-k)" },
        { "--max-per-layer", NULL, CLI_INT, &max_l, "N", "non-uniform: at most N per layer" },
        { "--source", NULL, CLI_STR, &source, "S", "rank by the stats of this data source (default all)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "seed of the random criterion" },
        { "--skip-mtp", NULL, CLI_FLAG, &skip_mtp, NULL, "leave the MTP layer unpruned" },
        { "--out", "-o", CLI_STR, &out, "FILE", "plan JSON to write" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the summary as JSON" },
    };
    const cli_spec spec = { "plan", "STATS_FILE",
                            "Chooses the experts each MoE layer keeps (the MTP layer included, unless --skip-mtp).\n"
                            "Uniform (--keep F or --keep-n N) or non-uniform (--non-uniform --budget-experts N).",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    const int c = dm_criterion_parse(crit);
    if (c < 0)
        return fprintf(stderr, "demolish plan: unknown criterion '%s'\n", crit), DM_EXIT_USAGE;
    if (!out)
        return fprintf(stderr, "demolish plan: need --out FILE\n"), DM_EXIT_USAGE;
    if (non_uniform ? budget <= 0 || keep > 0 || keep_n > 0
                    : budget > 0 || (keep_n > 0) == (keep > 0) || !(keep < 1.0f || keep_n > 0))
        return fprintf(stderr, "demolish plan: give --keep F (0 < F < 1) or --keep-n N, or --non-uniform with "
                               "--budget-experts N\n"),
               DM_EXIT_USAGE;
    if (min_l < 0 || max_l < 0 || (max_l && min_l > max_l))
        return fprintf(stderr, "demolish plan: bad --min-per-layer / --max-per-layer\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_calib_stats st;
    if (dm_calib_load(&st, pos[0], &err))
        return cli_fail(&err);
    dm_plan_opts o = { .criterion = (dm_criterion)c, .seed = seed, .source = source, .keep_fraction = keep,
                       .keep_n = keep_n, .non_uniform = non_uniform, .budget = budget, .min_per_layer = min_l,
                       .max_per_layer = max_l, .skip_mtp = skip_mtp };
    for (int l = st.main_layers; l < st.n_layers && !skip_mtp; l++) {
        double n = 0;
        for (int e = 0; e < st.n_experts[l]; e++)
            n += dm_calib_acc(&st, 0, l, e)[DM_ACC_COUNT];
        if (n == 0 && st.n_experts[l] > 0)
            dm_log(0, "warning: the stats have no tokens for MTP layer %d (calibrated with --no-mtp?); its plan "
                      "ranks by expert id\n", l);
    }
    dm_plan p;
    rc = dm_plan_make(&p, &st, &o, &err);
    if (rc == 0) {
        rc = dm_plan_save(&p, out, &err);
        if (rc == 0) {
            if (json || dm_verbosity > 0)   /* -q: the plan file only */
                print_plan(&p, &st, json);
            dm_log(1, "wrote %s\n", out);
        }
        dm_plan_free(&p);
    }
    dm_calib_stats_free(&st);
    return rc ? cli_fail(&err) : DM_EXIT_OK;
}
