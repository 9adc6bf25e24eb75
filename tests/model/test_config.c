/* test_config — config.json parsing: Hugging Face defaults, the derived
 * per-layer tables (MoE/dense, experts, indexer full/shared, including the
 * GLM-5.2 sharing rule), and one error case per kind of bad value, each of
 * which must name the file and the field. */
#include "model/model.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* A GLM-5.2-shaped config (arch.md §6.1), small enough to parse quickly. */
static const char *glm52 =
    "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], \"model_type\": \"glm_moe_dsa\", \"head_dim\": 192,"
    " \"num_hidden_layers\": 78, \"num_nextn_predict_layers\": 1,"
    " \"rope_parameters\": {\"rope_theta\": 8000000, \"rope_type\": \"default\"},"
    " \"index_topk_freq\": 4, \"index_skip_topk_offset\": 3, \"max_position_embeddings\": 1048576,"
    " \"eos_token_id\": [154820, 154827, 154829], \"mlp_layer_types\": [\"dense\", \"dense\", \"dense\"%s]}";

static char *glm52_text(void)
{
    char sparse[78 * 12] = "";
    for (int i = 3; i < 78; i++)
        strcat(sparse, ", \"sparse\"");
    char *t = dm_malloc(strlen(glm52) + strlen(sparse) + 1);
    sprintf(t, glm52, sparse);
    return t;
}

static void test_glm52_defaults(void)
{
    dm_config c;
    dm_err err;
    char *text = glm52_text();
    int rc = dm_config_parse(&c, text, "glm52.json", &err);
    free(text);
    CHECK(rc == 0, "parse failed: %s", err.msg);
    if (rc)
        return;
    CHECK(c.hidden_size == 6144 && c.n_heads == 64 && c.q_lora_rank == 2048 && c.kv_lora_rank == 512,
          "GLM defaults");
    CHECK(c.qk_head_dim == 256, "qk_head_dim %d (head_dim in the file must be ignored)", c.qk_head_dim);
    CHECK(c.rope.theta == 8e6, "nested rope_theta: %g", c.rope.theta);
    CHECK(c.rope.interleaved && c.index_rope.interleaved, "GLM RoPE is interleaved in MLA and indexer");
    CHECK(c.has_indexer && c.index_topk == 2048 && c.index_n_heads == 32, "indexer defaults");
    int full = 0;
    for (int l = 0; l < 78; l++)
        full += c.layer_index_full[l];
    CHECK(full == 21, "GLM-5.2 has 21 full indexer layers, got %d", full);
    CHECK(c.layer_index_full[0] && c.layer_index_full[2] && !c.layer_index_full[3] && !c.layer_index_full[5] &&
              c.layer_index_full[6] && c.layer_index_full[74] && !c.layer_index_full[77],
          "full layers are {0,1,2,6,10,...,74}");
    CHECK(c.layer_index_full[78], "the MTP layer always owns an indexer");
    CHECK(!c.layer_moe[2] && c.layer_moe[3] && c.layer_moe[78], "mlp_layer_types");
    CHECK(c.layer_experts[3] == 256 && c.layer_experts[0] == 0, "experts per layer");
    CHECK(c.n_eos == 3 && c.eos_token_ids[2] == 154829, "eos list");
    CHECK(c.scoring == DM_SCORING_SIGMOID && c.topk_method == DM_TOPK_NOAUX_TC && c.norm_topk_prob &&
              c.routed_scaling_factor == 2.5f,
          "routing defaults");
    CHECK(c.rms_norm_eps == 1e-5f, "GLM rms_norm_eps default");
    dm_config_free(&c);
}

static void test_deepseek_v3_defaults(void)
{
    dm_config c;
    dm_err err;
    const char *t = "{\"model_type\": \"deepseek_v3\", \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 40,"
                    " \"original_max_position_embeddings\": 4096, \"beta_fast\": 32, \"beta_slow\": 1,"
                    " \"mscale\": 1.0, \"mscale_all_dim\": 1.0}, \"max_position_embeddings\": 163840}";
    int rc = dm_config_parse(&c, t, "v3.json", &err);
    CHECK(rc == 0, "parse failed: %s", err.msg);
    if (rc)
        return;
    CHECK(!c.has_indexer, "DeepSeek-V3 has no indexer");
    CHECK(c.n_group == 8 && c.topk_group == 4 && c.qk_head_dim == 192 && c.hidden_size == 7168, "V3 defaults");
    CHECK(c.rope.yarn && c.rope.factor == 40 && c.rope.original_max_position == 4096, "yarn parsed");
    /* softmax scale = 192^-0.5 · (0.1·ln 40 + 1)² (arch.md §2.5) */
    double m = 0.1 * log(40.0) + 1.0;
    double want = m * m / sqrt(192.0);
    CHECK(fabs(c.softmax_scale - want) < 1e-6 * want, "softmax scale %g, want %g", c.softmax_scale, want);
    CHECK(c.rms_norm_eps == 1e-6f, "V3 rms_norm_eps default");
    dm_config_free(&c);
}

static void test_presets_parse(void)
{
    int n;
    const dm_preset *p = dm_preset_list(&n);
    for (int i = 0; i < n; i++) {
        dm_config c;
        dm_err err;
        int rc = dm_config_parse(&c, p[i].config_json, p[i].name, &err);
        CHECK(rc == 0, "preset %s: %s", p[i].name, err.msg);
        if (rc == 0)
            dm_config_free(&c);
    }
    dm_config c;
    dm_err err;
    if (dm_config_parse(&c, dm_preset_find("tiny")->config_json, "tiny", &err) == 0) {
        CHECK(c.layer_experts[2] == 12 && c.layer_experts[3] == 8 && c.layer_experts[4] == 12,
              "per-layer expert counts");
        CHECK(c.layer_index_full[0] && !c.layer_index_full[1] && c.layer_index_full[2] && !c.layer_index_full[3] &&
                  c.layer_index_full[4],
              "indexer_types");
        dm_config_free(&c);
    }
    if (dm_config_parse(&c, dm_preset_find("tiny-softmax")->config_json, "tiny-softmax", &err) == 0) {
        /* freq 2, offset 1: full iff max(l,0) % 2 == 0 */
        CHECK(c.layer_index_full[0] && !c.layer_index_full[1] && c.layer_index_full[2] && !c.layer_index_full[3],
              "derived indexer layout");
        CHECK(c.layer_moe[0] && !c.layer_moe[1] && c.layer_moe[2] && !c.layer_moe[3], "moe_layer_freq 2");
        dm_config_free(&c);
    }
}

/* Each bad config must fail with a message naming the file and the field. */
static void test_errors(void)
{
    static const struct {
        const char *json;
        const char *field;
    } cases[] = {
        { "{\"model_type\": \"llama\"}", "llama" },
        { "{\"hidden_size\": 64}", "model_type" },
        { "{\"model_type\": \"glm_moe_dsa\", \"rms_norm_eps\": NaN}", "rms_norm_eps" },
        { "{\"model_type\": \"glm_moe_dsa\", \"rms_norm_eps\": Infinity}", "rms_norm_eps" },
        { "{\"model_type\": \"glm_moe_dsa\", \"hidden_size\": \"big\"}", "hidden_size" },
        { "{\"model_type\": \"glm_moe_dsa\", \"hidden_size\": 64.5}", "hidden_size" },
        { "{\"model_type\": \"glm_moe_dsa\", \"num_hidden_layers\": -1}", "num_hidden_layers" },
        { "{\"model_type\": \"glm_moe_dsa\", \"scoring_func\": \"relu\"}", "scoring_func" },
        { "{\"model_type\": \"glm_moe_dsa\", \"topk_method\": \"magic\"}", "topk_method" },
        { "{\"model_type\": \"glm_moe_dsa\", \"rope_parameters\": {\"rope_type\": \"longrope\"}}", "longrope" },
        { "{\"model_type\": \"glm_moe_dsa\", \"hidden_act\": \"gelu\"}", "hidden_act" },
        { "{\"model_type\": \"glm_moe_dsa\", \"attention_bias\": true}", "attention_bias" },
        { "{\"model_type\": \"glm_moe_dsa\", \"num_hidden_layers\": 2, \"num_nextn_predict_layers\": 0,"
          " \"num_routed_experts_per_layer\": [8]}", "num_routed_experts_per_layer" },
        { "{\"model_type\": \"glm_moe_dsa\", \"num_hidden_layers\": 4, \"num_nextn_predict_layers\": 0,"
          " \"first_k_dense_replace\": 1, \"num_routed_experts_per_layer\": [0, 4, 4, 4]}",
          "num_experts_per_tok" },
        { "{\"model_type\": \"glm_moe_dsa\", \"num_hidden_layers\": 2, \"indexer_types\": [\"full\", \"half\"]}",
          "indexer_types" },
        { "{\"model_type\": \"glm_moe_dsa\", \"num_hidden_layers\": 2, \"indexer_types\": [\"shared\", \"full\"]}",
          "layer 0" },
        { "{\"model_type\": \"deepseek_v3\", \"topk_group\": 9}", "topk_group" },
        { "{\"model_type\": \"deepseek_v3\", \"eos_token_id\": [1, \"x\"]}", "eos_token_id" },
        { "[1, 2]", "object" },
        { "{\"model_type\": \"glm_moe_dsa\",", "invalid JSON" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dm_config c;
        dm_err err = { "" };
        int rc = dm_config_parse(&c, cases[i].json, "bad.json", &err);
        CHECK(rc != 0, "case %zu should fail: %s", i, cases[i].json);
        if (rc == 0) {
            dm_config_free(&c);
            continue;
        }
        CHECK(strstr(err.msg, "bad.json") && strstr(err.msg, cases[i].field),
              "case %zu: message '%s' should name the file and '%s'", i, err.msg, cases[i].field);
        CHECK(!strchr(err.msg, '\n'), "case %zu: message is not one line", i);
    }
}

int main(void)
{
    test_glm52_defaults();
    test_deepseek_v3_defaults();
    test_presets_parse();
    test_errors();
    return check_finish("test_config");
}
