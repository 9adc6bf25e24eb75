/* cmd_info — `demolish info MODEL_DIR`: what a model is: architecture,
 * parameters (total and active), bytes by dtype, experts per layer, the
 * indexer layout and the KV cache cost. Loading it validates every tensor. */
#include "cli/cli.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct dtype_bytes {
    int64_t bytes[DM_DTYPE_COUNT];
    int count[DM_DTYPE_COUNT];
    int64_t total;
} dtype_bytes;

static void tally(const dm_model *m, dtype_bytes *b)
{
    memset(b, 0, sizeof *b);
    for (int i = 0; i < m->st.n_tensors; i++) {
        const dm_st_tensor *t = &m->st.tensors[i];
        b->bytes[t->dtype] += (int64_t)t->nbytes;
        b->count[t->dtype]++;
        b->total += (int64_t)t->nbytes;
    }
}

static const char *rope_desc(const dm_rope *r, char *buf, size_t n)
{
    if (r->yarn)
        snprintf(buf, n, "theta %g, YaRN factor %g (orig %lld), %s", r->theta, r->factor,
                 (long long)r->original_max_position, r->interleaved ? "interleaved" : "half-split");
    else
        snprintf(buf, n, "theta %g, %s", r->theta, r->interleaved ? "interleaved" : "half-split");
    return buf;
}

static void print_text(const dm_model *m, const dtype_bytes *b)
{
    const dm_config *c = &m->cfg;
    char rb[160];
    printf("model          %s\n", m->dir);
    printf("architecture   %s (model_type %s)\n", c->architecture, c->model_type);
    printf("parameters     %.3f B total, %.3f B active per token (MTP layer not counted)\n", m->n_params / 1e9,
           m->n_params_active / 1e9);
    printf("files          %d safetensors, %d tensors (%d not used by the model), %.2f GiB\n", m->st.n_files,
           m->st.n_tensors, m->n_tensors_unused, (double)b->total / (1 << 30));
    printf("dtypes        ");
    for (int d = 0; d < DM_DTYPE_COUNT; d++)
        if (b->count[d])
            printf(" %s %.2f GiB (%d)", dm_dtype_name((dm_dtype)d), (double)b->bytes[d] / (1 << 30), b->count[d]);
    printf("\n");
    printf("layers         %d + %d MTP; hidden %d; vocab %d; %s embeddings\n", c->n_layers, c->n_mtp,
           c->hidden_size, c->vocab_size, c->tie_word_embeddings ? "tied" : "untied");
    printf("attention      MLA: %d heads, q_lora %d, kv_lora %d, nope/rope/v %d/%d/%d; RoPE %s\n", c->n_heads,
           c->q_lora_rank, c->kv_lora_rank, c->qk_nope_dim, c->qk_rope_dim, c->v_head_dim,
           rope_desc(&c->rope, rb, sizeof rb));
    if (c->has_indexer) {
        int full = 0;
        for (int l = 0; l < c->n_layers; l++)
            full += c->layer_index_full[l];
        printf("indexer        DSA: %d heads x %d, top-k %d, %s RoPE; %d of %d layers full, others shared\n",
               c->index_n_heads, c->index_head_dim, c->index_topk, c->index_rope.interleaved ? "interleaved" : "half-split",
               full, c->n_layers);
    } else {
        printf("indexer        none (dense attention)\n");
    }
    printf("moe            %s routing, %s, top-%d, groups %d/%d, norm %s, scale %g, %d shared; width %d (dense %d)\n",
           c->scoring == DM_SCORING_SIGMOID ? "sigmoid" : "softmax",
           c->topk_method == DM_TOPK_NOAUX_TC ? "noaux_tc" : c->topk_method == DM_TOPK_GREEDY ? "greedy"
                                                                                           : "group_limited_greedy",
           c->n_experts_per_tok, c->topk_group, c->n_group, c->norm_topk_prob ? "yes" : "no", c->routed_scaling_factor,
           c->n_shared_experts, c->moe_intermediate_size, c->intermediate_size);
    printf("experts/layer ");
    for (int l = 0; l < dm_config_total_layers(c); l++)
        printf(" %s%d", l == c->n_layers ? "| mtp " : "", c->layer_moe[l] ? c->layer_experts[l] : 0);
    printf("   (0 = dense)\n");
    printf("kv cache       %.1f KiB per token (latent %d + rope %d floats per layer%s)\n",
           dm_seq_bytes_per_token(m) / 1024.0, c->kv_lora_rank, c->qk_rope_dim,
           c->has_indexer ? " + indexer keys in full layers" : "");
    printf("eos ids       ");
    for (int i = 0; i < c->n_eos; i++)
        printf(" %d", c->eos_token_ids[i]);
    printf("\n");
}

static void print_json(const dm_model *m, const dtype_bytes *b)
{
    const dm_config *c = &m->cfg;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", m->dir);
    cJSON_AddStringToObject(o, "architecture", c->architecture);
    cJSON_AddStringToObject(o, "model_type", c->model_type);
    cJSON_AddNumberToObject(o, "params", (double)m->n_params);
    cJSON_AddNumberToObject(o, "params_active", (double)m->n_params_active);
    cJSON_AddNumberToObject(o, "files", m->st.n_files);
    cJSON_AddNumberToObject(o, "tensors", m->st.n_tensors);
    cJSON_AddNumberToObject(o, "tensors_unused", m->n_tensors_unused);
    cJSON_AddNumberToObject(o, "bytes", (double)b->total);
    cJSON *bd = cJSON_AddObjectToObject(o, "bytes_by_dtype");
    for (int d = 0; d < DM_DTYPE_COUNT; d++)
        if (b->count[d])
            cJSON_AddNumberToObject(bd, dm_dtype_name((dm_dtype)d), (double)b->bytes[d]);
    cJSON_AddNumberToObject(o, "layers", c->n_layers);
    cJSON_AddNumberToObject(o, "mtp_layers", c->n_mtp);
    cJSON_AddNumberToObject(o, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(o, "vocab_size", c->vocab_size);
    cJSON *ex = cJSON_AddArrayToObject(o, "experts_per_layer");
    for (int l = 0; l < dm_config_total_layers(c); l++)
        cJSON_AddItemToArray(ex, cJSON_CreateNumber(c->layer_moe[l] ? c->layer_experts[l] : 0));
    cJSON_AddNumberToObject(o, "experts_per_token", c->n_experts_per_tok);
    cJSON_AddBoolToObject(o, "indexer", c->has_indexer);
    if (c->has_indexer) {
        cJSON *it = cJSON_AddArrayToObject(o, "indexer_types");
        for (int l = 0; l < dm_config_total_layers(c); l++)
            cJSON_AddItemToArray(it, cJSON_CreateString(c->layer_index_full[l] ? "full" : "shared"));
        cJSON_AddNumberToObject(o, "index_topk", c->index_topk);
    }
    cJSON_AddNumberToObject(o, "kv_bytes_per_token", (double)dm_seq_bytes_per_token(m));
    char *s = cJSON_Print(o);
    puts(s);
    free(s);
    cJSON_Delete(o);
}

int cmd_info(int argc, char **argv)
{
    bool json = false;
    const cli_opt opts[] = {
        { "--json", NULL, CLI_FLAG, &json, NULL, "print a JSON report" },
    };
    const cli_spec spec = { "info", "MODEL_DIR ", "Describes a model directory (and validates all its tensors).",
                            opts, 1, 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    dm_err err;
    dm_model *m;
    if (dm_model_load(&m, pos[0], &err))
        return cli_fail(&err);
    dtype_bytes b;
    tally(m, &b);
    if (json)
        print_json(m, &b);
    else
        print_text(m, &b);
    dm_model_free(m);
    return DM_EXIT_OK;
}
