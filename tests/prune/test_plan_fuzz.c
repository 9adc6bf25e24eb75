/* test_plan_fuzz — deterministic mutation fuzzing of the plan-file parser and
 * its check against a model (dm_plan_load + dm_plan_check), the way `demolish
 * prune` and `logits --mask-plan` use them: thousands of seeded mutants
 * (tests/json_mutate.h) of valid plans — ours with the extra keys, and the
 * published tool's bare {"<layer>": {"kept": [...], "keep": k}} — are loaded
 * and checked against the configs of the "tiny" preset (4 routing groups,
 * 16/12/8 experts, MTP) and the "small" preset (no groups, 32 experts).
 * Half the mutants are byte-level (mostly invalid JSON), half are generated
 * plans with hostile values (layer keys out of range, dense, "01", huge;
 * ids repeated, negative, fractional, past E; keep not the list's length;
 * odd "experts" counts), so that many reach the check.
 * Each must either be refused with a one-line message naming the plan file
 * (load) or the model (check), or be accepted as a plan the router can run:
 * every planned layer exists and is MoE, ids ascending, distinct and below the
 * layer's expert count, at least top-k kept, groups even. Run it in the
 * Sanitize build for memory errors and leaks. */
#include "check.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include "json_mutate.h"
#include "prune/prune.h"

#define N_MUTANTS 6000

/* Appends to a growing string. */
static void cat(char **s, size_t *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void cat(char **s, size_t *n, const char *fmt, ...)
{
    char piece[256];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(piece, sizeof piece, fmt, ap);
    va_end(ap);
    *s = realloc(*s, *n + (size_t)k + 1);
    memcpy(*s + *n, piece, (size_t)k + 1);
    *n += (size_t)k;
}

/* A generated plan: 1-4 layers, mostly plausible, with hostile values mixed in. */
static char *gen_plan(jm_rng *r)
{
    static const char *const keys[] = { "0", "1", "2", "3", "4", "5", "6", "7", "01", "100000", "100001", "-1", "1.0" };
    static const char *const ids[] = { "-1", "1.5", "1e308", "16", "32", "null", "\"3\"", "[]", "1e7" };
    char *s = NULL;
    size_t n = 0;
    cat(&s, &n, "{");
    const int layers = 1 + (int)(jm_next(r) % 4);
    for (int i = 0; i < layers; i++) {
        const char *key = jm_next(r) % 4 ? keys[1 + jm_next(r) % 6] : keys[jm_next(r) % 13];
        const int E = jm_next(r) % 2 ? 12 : jm_next(r) % 2 ? 16 : 32, K = 1 + (int)(jm_next(r) % (uint64_t)E);
        const int stride = 1 + (int)(jm_next(r) % 3);
        cat(&s, &n, "%s\"%s\": {\"kept\": [", i ? ", " : "", key);
        for (int k = 0; k < K; k++) {
            if (jm_next(r) % 40 == 0)
                cat(&s, &n, "%s%s", k ? ", " : "", ids[jm_next(r) % 9]);
            else
                cat(&s, &n, "%s%d", k ? ", " : "", (k * stride + (jm_next(r) % 8 == 0 ? 1 : 0)) % (E + 1));
        }
        const int keep = jm_next(r) % 10 ? K : K + 1 - (int)(jm_next(r) % 3);
        cat(&s, &n, "], \"keep\": %d", keep);
        if (jm_next(r) % 3 == 0)
            cat(&s, &n, ", \"experts\": %d", jm_next(r) % 4 ? E : (int)(jm_next(r) % 40) - 3);
        if (jm_next(r) % 3 == 0)
            cat(&s, &n, ", \"criterion\": \"%s\", \"score_kept\": 0.5", jm_next(r) % 2 ? "reap" : "x");
        cat(&s, &n, "}");
    }
    cat(&s, &n, "}");
    return s;
}

/* The plan file, written plainly: no fsync, and a fresh file each time (ext4
 * flushes a file truncated and rewritten on close; thousands would crawl). */
static int write_plan(const char *path, const char *text)
{
    remove(path);
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    size_t len = strlen(text);
    int rc = fwrite(text, 1, len, f) == len ? 0 : -1;
    return fclose(f) || rc ? -1 : 0;
}

static const char *const SEEDS[] = {
    /* tiny: 2 per group of 4 (layer 1), of 3 (layers 2 and 4, the MTP layer) */
    "{\"1\": {\"kept\": [0, 1, 4, 5, 8, 9, 12, 13], \"keep\": 8, \"criterion\": \"reap\", \"score_kept\": 0.61, "
    "\"experts\": 16},\n \"2\": {\"kept\": [0, 1, 3, 4, 6, 7, 9, 10], \"keep\": 8, \"criterion\": \"reap\", "
    "\"score_kept\": 0.7, \"experts\": 12},\n \"4\": {\"kept\": [1, 2, 3, 5, 6, 8, 10, 11], \"keep\": 8}}",
    /* small: the published format */
    "{\"1\": {\"kept\": [0, 2, 4, 6, 8, 10, 12, 14, 16, 18], \"keep\": 10}, \"3\": {\"kept\": [31, 30, 29, 28, 1], "
    "\"keep\": 5}, \"6\": {\"kept\": [5, 6, 7, 8], \"keep\": 4}}",
    "{\"2\": {\"kept\": [3, 4, 5, 6, 7], \"keep\": 5, \"experts\": 32}}",
};
#define N_SEEDS (int)(sizeof SEEDS / sizeof SEEDS[0])

/* The invariants a checked plan guarantees to surgery and the router mask. */
static void check_accepted(const dm_plan *p, const dm_config *c, int i)
{
    const int L = dm_config_total_layers(c);
    for (int l = 0; l < p->n_layers; l++) {
        if (!p->keep[l])
            continue;
        CHECK(l < L && c->layer_moe[l], "mutant %d: layer %d is not a MoE layer", i, l);
        if (l >= L)
            return;
        const int E = c->layer_experts[l];
        CHECK(p->n_experts[l] == E && p->keep[l] >= c->n_experts_per_tok && p->keep[l] <= E,
              "mutant %d: layer %d keeps %d of %d", i, l, p->keep[l], p->n_experts[l]);
        for (int k = 0; k < p->keep[l]; k++)
            CHECK(p->kept[l][k] >= 0 && p->kept[l][k] < E && (k == 0 || p->kept[l][k] > p->kept[l][k - 1]),
                  "mutant %d: layer %d kept[%d] = %d", i, l, k, p->kept[l][k]);
        if (c->n_group > 1) {
            int per_group[64] = { 0 };
            for (int k = 0; k < p->keep[l]; k++)
                per_group[p->kept[l][k] / (E / c->n_group)]++;
            for (int g = 1; g < c->n_group; g++)
                CHECK(per_group[g] == per_group[0] && per_group[0] >= 2, "mutant %d: layer %d groups uneven", i, l);
        }
    }
}

int main(void)
{
    const char *base = getenv("DM_TEST_TMP");
    if (!base)
        base = "/tmp";
    dm_make_dirs(base);
    char *path = dm_asprintf("%s/fuzz_plan.json", base), *meta = dm_asprintf("%s.meta", path);
    remove(meta);
    dm_config cfg[2];
    const char *model[2] = { "tiny-model", "small-model" };
    dm_err err = { "" };
    if (dm_config_parse(&cfg[0], dm_preset_find("tiny")->config_json, model[0], &err) ||
        dm_config_parse(&cfg[1], dm_preset_find("small")->config_json, model[1], &err)) {
        fprintf(stderr, "presets: %s\n", err.msg);
        return 1;
    }
    jm_rng r = { 77 };
    int loaded = 0, accepted = 0;
    for (int i = 0; i < N_MUTANTS; i++) {
        const char *src = SEEDS[i % N_SEEDS];
        char *m = i < N_SEEDS ? strdup(src) : i % 2 ? jm_mutate(&r, src, strlen(src)) : gen_plan(&r);
        if (write_plan(path, m)) {
            CHECK(0, "cannot write %s", path);
            free(m);
            break;
        }
        dm_plan p;
        err.msg[0] = 0;
        if (dm_plan_load(&p, path, &err) != 0) {
            CHECK(strstr(err.msg, path) && !strchr(err.msg, '\n'), "mutant %d: load message '%s'", i, err.msg);
            CHECK(i >= N_SEEDS, "seed %d refused: %s", i, err.msg);
            free(m);
            continue;
        }
        loaded++;
        for (int k = 0; k < 2; k++) {
            int *saved = dm_malloc((size_t)(p.n_layers + 1) * sizeof(int));   /* each check sees the file's counts */
            memcpy(saved, p.n_experts, (size_t)p.n_layers * sizeof(int));
            if (dm_plan_check(&p, &cfg[k], model[k], &err) == 0) {
                accepted++;
                check_accepted(&p, &cfg[k], i);
            } else {
                CHECK(strstr(err.msg, model[k]) && !strchr(err.msg, '\n'), "mutant %d vs %s: check message '%s'", i,
                      model[k], err.msg);
            }
            memcpy(p.n_experts, saved, (size_t)p.n_layers * sizeof(int));
            free(saved);
        }
        if (i < N_SEEDS)   /* the seeds are valid for their model */
            CHECK(dm_plan_check(&p, &cfg[i == 0 ? 0 : 1], model[i == 0 ? 0 : 1], &err) == 0, "seed %d: %s", i,
                  err.msg);
        dm_plan_free(&p);
        free(m);
    }
    printf("  %d mutants, %d loaded, %d (plan, model) pairs accepted\n", N_MUTANTS, loaded, accepted);
    dm_config_free(&cfg[0]);
    dm_config_free(&cfg[1]);
    remove(path);
    free(path);
    free(meta);
    return check_finish("test_plan_fuzz");
}
