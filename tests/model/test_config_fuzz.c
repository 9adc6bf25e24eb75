/* test_config_fuzz — deterministic mutation fuzzing of the config.json parser
 * (the CTest companion of fuzz_config.c): thousands of seeded mutants of
 * every preset's config are parsed; each must either parse into a config that
 * passes its own invariants or fail with a one-line message naming the file.
 * Run it in the Sanitize build for memory errors. */
#include "check.h"

#include <math.h>
#include "json_mutate.h"
#include "model/model.h"

#define N_MUTANTS 6000

/* Invariants a parsed config guarantees to the rest of the engine. */
static void check_parsed(const dm_config *c, int i)
{
    int total = dm_config_total_layers(c);
    CHECK(c->hidden_size > 0 && c->n_heads > 0 && c->vocab_size > 0 && total > 0, "mutant %d: sizes", i);
    CHECK(c->qk_head_dim == c->qk_nope_dim + c->qk_rope_dim && c->qk_rope_dim % 2 == 0, "mutant %d: head dims", i);
    CHECK(isfinite(c->softmax_scale) && c->softmax_scale > 0, "mutant %d: softmax scale", i);
    for (int l = 0; l < total; l++)
        if (c->layer_moe[l])
            CHECK(c->layer_experts[l] >= c->n_experts_per_tok && c->layer_experts[l] <= c->n_routed_experts,
                  "mutant %d: layer %d experts %d", i, l, c->layer_experts[l]);
    if (c->has_indexer)
        CHECK(c->layer_index_full[0], "mutant %d: layer 0 must own an indexer", i);
}

int main(void)
{
    int n_presets, accepted = 0;
    const dm_preset *p = dm_preset_list(&n_presets);
    jm_rng r = { 2026 };
    for (int i = 0; i < N_MUTANTS; i++) {
        const char *src = p[i % n_presets].config_json;
        char *m = jm_mutate(&r, src, strlen(src));
        dm_config c;
        dm_err err = { "" };
        if (dm_config_parse(&c, m, "fuzz.json", &err) == 0) {
            accepted++;
            check_parsed(&c, i);
            dm_config_free(&c);
        } else {
            CHECK(strstr(err.msg, "fuzz.json") && !strchr(err.msg, '\n'), "mutant %d: message '%s'", i, err.msg);
        }
        free(m);
    }
    printf("  %d mutants, %d accepted\n", N_MUTANTS, accepted);
    return check_finish("test_config_fuzz");
}
