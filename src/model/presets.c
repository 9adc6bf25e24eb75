/* presets — named model configurations for `demolish init`: tiny ones that
 * switch every architectural feature on (for the reference tests) and
 * larger ones for benchmarks. Each is the config.json init writes (plus the
 * token ids init fills in from the tokenizer it trains). */
#include "model/model.h"

#include <string.h>

static const dm_preset presets[] = {
    { "tiny", "GLM-MoE-DSA, every feature on: MLA+YaRN, indexer (top-k 8, shared layers), "
              "group routing, per-layer expert counts, shared expert, dense layer, MTP",
      "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], \"model_type\": \"glm_moe_dsa\","
      " \"vocab_size\": 384, \"hidden_size\": 64, \"num_hidden_layers\": 4, \"num_nextn_predict_layers\": 1,"
      " \"intermediate_size\": 96, \"moe_intermediate_size\": 32, \"first_k_dense_replace\": 1,"
      " \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"head_dim\": 999,"
      " \"q_lora_rank\": 64, \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 16,"
      " \"v_head_dim\": 16, \"n_routed_experts\": 16, \"num_experts_per_tok\": 4, \"n_shared_experts\": 1,"
      " \"n_group\": 4, \"topk_group\": 2, \"topk_method\": \"noaux_tc\", \"scoring_func\": \"sigmoid\","
      " \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5,"
      " \"num_routed_experts_per_layer\": [16, 16, 12, 8, 12],"
      " \"rms_norm_eps\": 1e-05, \"rope_interleave\": true,"
      " \"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"yarn\", \"factor\": 4.0,"
      " \"original_max_position_embeddings\": 32, \"beta_fast\": 32.0, \"beta_slow\": 1.0,"
      " \"mscale\": 1.0, \"mscale_all_dim\": 0.8},"
      " \"index_n_heads\": 4, \"index_head_dim\": 32, \"index_topk\": 8, \"indexer_rope_interleave\": true,"
      " \"indexer_types\": [\"full\", \"shared\", \"full\", \"shared\"],"
      " \"max_position_embeddings\": 512, \"tie_word_embeddings\": false, \"attention_bias\": false,"
      " \"hidden_act\": \"silu\"}" },
    { "tiny-v3", "DeepSeek-V3 style: no indexer, q_proj without q_lora, YaRN, 8 groups of routing, MTP",
      "{\"architectures\": [\"DeepseekV3ForCausalLM\"], \"model_type\": \"deepseek_v3\","
      " \"vocab_size\": 384, \"hidden_size\": 64, \"num_hidden_layers\": 3, \"num_nextn_predict_layers\": 1,"
      " \"intermediate_size\": 96, \"moe_intermediate_size\": 32, \"first_k_dense_replace\": 1,"
      " \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"q_lora_rank\": null, \"kv_lora_rank\": 32,"
      " \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 16, \"v_head_dim\": 32,"
      " \"n_routed_experts\": 16, \"num_experts_per_tok\": 4, \"n_shared_experts\": 1,"
      " \"n_group\": 8, \"topk_group\": 4, \"topk_method\": \"noaux_tc\", \"scoring_func\": \"sigmoid\","
      " \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5, \"rms_norm_eps\": 1e-06,"
      " \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\", \"factor\": 8.0,"
      " \"original_max_position_embeddings\": 32, \"beta_fast\": 32, \"beta_slow\": 1, \"mscale\": 1.0,"
      " \"mscale_all_dim\": 1.0}, \"max_position_embeddings\": 512, \"tie_word_embeddings\": false}" },
    { "tiny-v32", "DeepSeek-V3.2 style: indexer with half-split RoPE in every layer, YaRN",
      "{\"architectures\": [\"DeepseekV32ForCausalLM\"], \"model_type\": \"deepseek_v32\","
      " \"vocab_size\": 384, \"hidden_size\": 64, \"num_hidden_layers\": 3, \"num_nextn_predict_layers\": 1,"
      " \"intermediate_size\": 96, \"moe_intermediate_size\": 32, \"first_k_dense_replace\": 1,"
      " \"num_attention_heads\": 4, \"num_key_value_heads\": 4, \"q_lora_rank\": 64, \"kv_lora_rank\": 32,"
      " \"qk_nope_head_dim\": 16, \"qk_rope_head_dim\": 16, \"v_head_dim\": 16,"
      " \"n_routed_experts\": 16, \"num_experts_per_tok\": 4, \"n_shared_experts\": 1,"
      " \"n_group\": 4, \"topk_group\": 2, \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5,"
      " \"rms_norm_eps\": 1e-06, \"rope_theta\": 10000.0, \"rope_scaling\": {\"type\": \"yarn\","
      " \"factor\": 4.0, \"original_max_position_embeddings\": 32, \"beta_fast\": 32, \"beta_slow\": 1,"
      " \"mscale\": 1.0, \"mscale_all_dim\": 1.0},"
      " \"index_n_heads\": 4, \"index_head_dim\": 32, \"index_topk\": 8,"
      " \"max_position_embeddings\": 512, \"tie_word_embeddings\": false}" },
    { "tiny-softmax", "GLM variant: softmax scoring, group_limited_greedy, no shared expert, tied "
                      "embeddings, MoE every 2nd layer, indexer layout from index_topk_freq, no MTP",
      "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], \"model_type\": \"glm_moe_dsa\","
      " \"vocab_size\": 320, \"hidden_size\": 64, \"num_hidden_layers\": 4, \"num_nextn_predict_layers\": 0,"
      " \"intermediate_size\": 64, \"moe_intermediate_size\": 32, \"first_k_dense_replace\": 0,"
      " \"moe_layer_freq\": 2, \"num_attention_heads\": 2, \"num_key_value_heads\": 2, \"q_lora_rank\": 32,"
      " \"kv_lora_rank\": 32, \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 8, \"v_head_dim\": 16,"
      " \"n_routed_experts\": 8, \"num_experts_per_tok\": 2, \"n_shared_experts\": 0,"
      " \"n_group\": 2, \"topk_group\": 1, \"topk_method\": \"group_limited_greedy\","
      " \"scoring_func\": \"softmax\", \"norm_topk_prob\": false, \"routed_scaling_factor\": 1.5,"
      " \"rms_norm_eps\": 1e-05, \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"},"
      " \"index_n_heads\": 2, \"index_head_dim\": 16, \"index_topk\": 6, \"index_topk_freq\": 2,"
      " \"index_skip_topk_offset\": 1, \"max_position_embeddings\": 512, \"tie_word_embeddings\": true}" },
    { "small", "GLM-MoE-DSA, ~25M parameters: quick generation and CLI tests",
      "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], \"model_type\": \"glm_moe_dsa\","
      " \"vocab_size\": 2048, \"hidden_size\": 256, \"num_hidden_layers\": 6, \"num_nextn_predict_layers\": 1,"
      " \"intermediate_size\": 768, \"moe_intermediate_size\": 128, \"first_k_dense_replace\": 1,"
      " \"num_attention_heads\": 8, \"num_key_value_heads\": 8, \"q_lora_rank\": 128, \"kv_lora_rank\": 64,"
      " \"qk_nope_head_dim\": 32, \"qk_rope_head_dim\": 32, \"v_head_dim\": 32,"
      " \"n_routed_experts\": 32, \"num_experts_per_tok\": 4, \"n_shared_experts\": 1,"
      " \"n_group\": 1, \"topk_group\": 1, \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5,"
      " \"rms_norm_eps\": 1e-05, \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"},"
      " \"index_n_heads\": 4, \"index_head_dim\": 64, \"index_topk\": 64, \"indexer_rope_interleave\": true,"
      " \"max_position_embeddings\": 4096, \"tie_word_embeddings\": false}" },
    { "bench-0.9b", "GLM-MoE-DSA with ~0.9B parameters (bf16 ~1.8 GB): the speed benchmark model",
      "{\"architectures\": [\"GlmMoeDsaForCausalLM\"], \"model_type\": \"glm_moe_dsa\","
      " \"vocab_size\": 32768, \"hidden_size\": 1024, \"num_hidden_layers\": 12, \"num_nextn_predict_layers\": 1,"
      " \"intermediate_size\": 3072, \"moe_intermediate_size\": 512, \"first_k_dense_replace\": 1,"
      " \"num_attention_heads\": 16, \"num_key_value_heads\": 16, \"q_lora_rank\": 512, \"kv_lora_rank\": 256,"
      " \"qk_nope_head_dim\": 64, \"qk_rope_head_dim\": 32, \"v_head_dim\": 64,"
      " \"n_routed_experts\": 48, \"num_experts_per_tok\": 6, \"n_shared_experts\": 1,"
      " \"n_group\": 1, \"topk_group\": 1, \"norm_topk_prob\": true, \"routed_scaling_factor\": 2.5,"
      " \"rms_norm_eps\": 1e-05, \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"default\"},"
      " \"index_n_heads\": 8, \"index_head_dim\": 64, \"index_topk\": 512, \"indexer_rope_interleave\": true,"
      " \"max_position_embeddings\": 32768, \"tie_word_embeddings\": false}" },
};

const dm_preset *dm_preset_find(const char *name)
{
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name))
            return &presets[i];
    return NULL;
}

const dm_preset *dm_preset_list(int *n)
{
    *n = (int)(sizeof presets / sizeof presets[0]);
    return presets;
}
