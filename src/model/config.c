/* config — config.json (+ generation_config.json) into a dm_config.
 *
 * Fields and their defaults follow Hugging Face transformers'
 * GlmMoeDsaConfig, DeepseekV3Config and DeepseekV32Config (shared/research/
 * arch.md §1.1, §6). Scalar fields are driven by one table; the derived
 * per-layer tables (MoE or dense, expert count, indexer full or shared) are
 * built after. Anything the engine cannot run is an error naming the field. */
#include "model/model.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum { ARCH_GLM, ARCH_DSV3, ARCH_DSV32, ARCH_COUNT } arch_kind;

static const struct {
    const char *model_type;
    const char *architecture;
    arch_kind kind;
} model_types[] = {
    { "glm_moe_dsa", "GlmMoeDsaForCausalLM", ARCH_GLM },
    { "deepseek_v3", "DeepseekV3ForCausalLM", ARCH_DSV3 },
    { "deepseek_v32", "DeepseekV32ForCausalLM", ARCH_DSV32 },
};

/* Integer fields: defaults per architecture (GLM-5 / DeepSeek-V3 / V3.2). */
static const struct int_field {
    const char *key;
    size_t off;
    int def[ARCH_COUNT];
    int min, max;
} int_fields[] = {
#define F(k, m, g, d3, d32, lo, hi) { k, offsetof(dm_config, m), { g, d3, d32 }, lo, hi }
    F("vocab_size", vocab_size, 154880, 129280, 129280, 1, 1 << 24),
    F("hidden_size", hidden_size, 6144, 7168, 7168, 1, 1 << 20),
    F("num_hidden_layers", n_layers, 78, 61, 61, 1, 4096),
    F("num_nextn_predict_layers", n_mtp, 0, 0, 0, 0, 16),
    F("intermediate_size", intermediate_size, 12288, 18432, 18432, 1, 1 << 22),
    F("moe_intermediate_size", moe_intermediate_size, 2048, 2048, 2048, 1, 1 << 22),
    F("num_attention_heads", n_heads, 64, 128, 128, 1, 4096),
    F("kv_lora_rank", kv_lora_rank, 512, 512, 512, 1, 1 << 16),
    F("qk_nope_head_dim", qk_nope_dim, 192, 128, 128, 0, 1 << 16),
    F("qk_rope_head_dim", qk_rope_dim, 64, 64, 64, 2, 1 << 16),
    F("v_head_dim", v_head_dim, 256, 128, 128, 1, 1 << 16),
    F("n_routed_experts", n_routed_experts, 256, 256, 256, 1, 1 << 16),
    F("num_experts_per_tok", n_experts_per_tok, 8, 8, 8, 1, 1 << 16),
    F("n_shared_experts", n_shared_experts, 1, 1, 1, 0, 64),
    F("n_group", n_group, 1, 8, 8, 1, 1 << 16),
    F("topk_group", topk_group, 1, 4, 4, 1, 1 << 16),
    F("index_n_heads", index_n_heads, 32, 0, 64, 1, 4096),
    F("index_head_dim", index_head_dim, 128, 0, 128, 1, 1 << 16),
    F("index_topk", index_topk, 2048, 0, 2048, 1, 1 << 30),
#undef F
};

static int64_t max_pos_default[ARCH_COUNT] = { 202752, 4096, 163840 };
static float rms_eps_default[ARCH_COUNT] = { 1e-5f, 1e-6f, 1e-6f };
static double rope_theta_default[ARCH_COUNT] = { 1e6, 10000.0, 10000.0 };

/* ---- small JSON accessors: each validates type and range, naming the field ---- */

static int json_number(const cJSON *o, const char *key, const char *name, double *out, bool *present, dm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *present = v && !cJSON_IsNull(v);
    if (!*present)
        return 0;
    if (!cJSON_IsNumber(v))
        return dm_errorf(err, "%s: field '%s' must be a number", name, key);
    if (!isfinite(v->valuedouble))
        return dm_errorf(err, "%s: field '%s' is not finite", name, key);
    *out = v->valuedouble;
    return 0;
}

static int json_int(const cJSON *o, const char *key, const char *name, int def, int lo, int hi, int *out, dm_err *err)
{
    double d = 0;
    bool present;
    if (json_number(o, key, name, &d, &present, err))
        return -1;
    if (!present) {
        *out = def;
        return 0;
    }
    if (d != floor(d) || d < lo || d > hi)
        return dm_errorf(err, "%s: field '%s' = %g must be an integer in [%d, %d]", name, key, d, lo, hi);
    *out = (int)d;
    return 0;
}

static int json_double(const cJSON *o, const char *key, const char *name, double def, double *out, dm_err *err)
{
    bool present;
    if (json_number(o, key, name, out, &present, err))
        return -1;
    if (!present)
        *out = def;
    return 0;
}

static int json_bool(const cJSON *o, const char *key, const char *name, bool def, bool *out, dm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return 0;
    }
    if (!cJSON_IsBool(v))
        return dm_errorf(err, "%s: field '%s' must be true or false", name, key);
    *out = cJSON_IsTrue(v);
    return 0;
}

/* A string field; *out is NULL when absent. */
static int json_string(const cJSON *o, const char *key, const char *name, const char **out, dm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsString(v))
        return dm_errorf(err, "%s: field '%s' must be a string", name, key);
    *out = v->valuestring;
    return 0;
}

/* eos_token_id: an integer or a list of integers. */
static int parse_eos(const cJSON *o, const char *name, dm_config *c, dm_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "eos_token_id");
    if (!v || cJSON_IsNull(v))
        return 0;
    const cJSON *items = cJSON_IsArray(v) ? v : NULL;
    int n = items ? cJSON_GetArraySize(items) : 1;
    if (n > DM_MAX_EOS)
        return dm_errorf(err, "%s: field 'eos_token_id' has %d entries (at most %d supported)", name, n, DM_MAX_EOS);
    c->n_eos = 0;
    for (int i = 0; i < n; i++) {
        const cJSON *e = items ? cJSON_GetArrayItem(items, i) : v;
        if (!cJSON_IsNumber(e) || e->valuedouble != floor(e->valuedouble) || e->valuedouble < 0 ||
            e->valuedouble >= 1 << 30)
            return dm_errorf(err, "%s: field 'eos_token_id' must hold non-negative integers", name);
        c->eos_token_ids[c->n_eos++] = (int)e->valuedouble;
    }
    return 0;
}

/* RoPE: rope_parameters (transformers v5, GLM) or rope_theta + rope_scaling. */
static int parse_rope(const cJSON *root, const char *name, arch_kind kind, dm_config *c, dm_err *err)
{
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    if (params && !cJSON_IsNull(params) && !cJSON_IsObject(params))
        return dm_errorf(err, "%s: field 'rope_parameters' must be an object", name);
    if (scaling && !cJSON_IsNull(scaling) && !cJSON_IsObject(scaling))
        return dm_errorf(err, "%s: field 'rope_scaling' must be an object", name);
    if (params && cJSON_IsNull(params))
        params = NULL;
    if (scaling && cJSON_IsNull(scaling))
        scaling = NULL;

    dm_rope *r = &c->rope;
    memset(r, 0, sizeof *r);
    r->dim = c->qk_rope_dim;
    double theta;
    if (json_double(root, "rope_theta", name, rope_theta_default[kind], &theta, err))
        return -1;
    if (params && json_double(params, "rope_theta", name, theta, &theta, err))
        return -1;
    if (!(theta > 1))
        return dm_errorf(err, "%s: field 'rope_theta' = %g must be > 1", name, theta);
    r->theta = theta;

    const cJSON *sc = params ? params : scaling;
    const char *type = NULL;
    if (sc) {
        if (json_string(sc, "rope_type", name, &type, err))
            return -1;
        if (!type && json_string(sc, "type", name, &type, err))
            return -1;
    }
    if (!type || !strcmp(type, "default"))
        return 0;
    if (strcmp(type, "yarn") != 0)
        return dm_errorf(err, "%s: rope type '%s' is not supported (default or yarn)", name, type);
    r->yarn = true;
    double orig;
    if (json_double(sc, "factor", name, 1.0, &r->factor, err) ||
        json_double(sc, "beta_fast", name, 32.0, &r->beta_fast, err) ||
        json_double(sc, "beta_slow", name, 1.0, &r->beta_slow, err) ||
        json_double(sc, "mscale", name, 1.0, &r->mscale, err) ||
        json_double(sc, "mscale_all_dim", name, 0.0, &r->mscale_all_dim, err) ||
        json_double(sc, "original_max_position_embeddings", name, (double)c->max_position_embeddings, &orig, err))
        return -1;
    if (!(r->factor > 0) || !(orig >= 1) || !(r->beta_fast > 0) || !(r->beta_slow > 0))
        return dm_errorf(err, "%s: yarn parameters out of range (factor %g, original_max_position_embeddings %g)",
                         name, r->factor, orig);
    r->original_max_position = (int64_t)orig;
    return 0;
}

/* Per-layer MoE/dense: mlp_layer_types if given, else first_k_dense_replace
 * and moe_layer_freq. MTP layers are MoE (as in every released checkpoint). */
static int parse_layer_kinds(const cJSON *root, const char *name, arch_kind kind, dm_config *c, dm_err *err)
{
    int total = dm_config_total_layers(c);
    c->layer_moe = dm_calloc((size_t)total, sizeof(bool));
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "mlp_layer_types");
    if (types && cJSON_IsArray(types)) {
        if (cJSON_GetArraySize(types) < c->n_layers)
            return dm_errorf(err, "%s: 'mlp_layer_types' has %d entries, expected %d", name,
                             cJSON_GetArraySize(types), c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            const cJSON *e = cJSON_GetArrayItem(types, l);
            if (!cJSON_IsString(e) || (strcmp(e->valuestring, "dense") && strcmp(e->valuestring, "sparse")))
                return dm_errorf(err, "%s: 'mlp_layer_types'[%d] must be \"dense\" or \"sparse\"", name, l);
            c->layer_moe[l] = !strcmp(e->valuestring, "sparse");
        }
    } else {
        int first_dense, freq;
        if (json_int(root, "first_k_dense_replace", name, 3, 0, 1 << 20, &first_dense, err) ||
            json_int(root, "moe_layer_freq", name, 1, 1, 1 << 20, &freq, err))
            return -1;
        for (int l = 0; l < c->n_layers; l++)
            c->layer_moe[l] = l >= first_dense && l % freq == 0;
    }
    for (int l = c->n_layers; l < total; l++)
        c->layer_moe[l] = true;
    (void)kind;
    return 0;
}

/* Per-layer routed expert counts: num_routed_experts_per_layer (written by
 * non-uniform pruning; entries for dense layers are ignored). */
static int parse_layer_experts(const cJSON *root, const char *name, dm_config *c, dm_err *err)
{
    int total = dm_config_total_layers(c);
    c->layer_experts = dm_calloc((size_t)total, sizeof(int));
    const cJSON *per = cJSON_GetObjectItemCaseSensitive(root, "num_routed_experts_per_layer");
    if (per && !cJSON_IsNull(per)) {
        if (!cJSON_IsArray(per) || cJSON_GetArraySize(per) != total)
            return dm_errorf(err, "%s: 'num_routed_experts_per_layer' must be a list of %d integers "
                             "(num_hidden_layers + num_nextn_predict_layers)", name, total);
    }
    for (int l = 0; l < total; l++) {
        if (!c->layer_moe[l])
            continue;
        int e = c->n_routed_experts;
        if (per && !cJSON_IsNull(per)) {
            const cJSON *v = cJSON_GetArrayItem(per, l);
            if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 1 ||
                v->valuedouble > c->n_routed_experts)
                return dm_errorf(err, "%s: 'num_routed_experts_per_layer'[%d] must be an integer in [1, %d]",
                                 name, l, c->n_routed_experts);
            e = (int)v->valuedouble;
        }
        if (e < c->n_experts_per_tok)
            return dm_errorf(err, "%s: layer %d has %d routed experts, fewer than num_experts_per_tok = %d",
                             name, l, e, c->n_experts_per_tok);
        if (c->topk_method != DM_TOPK_GREEDY && c->n_group > 1) {
            if (e % c->n_group != 0)
                return dm_errorf(err, "%s: layer %d has %d routed experts, not divisible by n_group = %d",
                                 name, l, e, c->n_group);
            if (c->topk_method == DM_TOPK_NOAUX_TC && e / c->n_group < 2)
                return dm_errorf(err, "%s: layer %d: noaux_tc group routing needs >= 2 experts per group",
                                 name, l);
            if (c->topk_group * (e / c->n_group) < c->n_experts_per_tok)
                return dm_errorf(err, "%s: layer %d: topk_group = %d groups of %d experts cannot hold %d "
                                 "experts per token", name, l, c->topk_group, e / c->n_group, c->n_experts_per_tok);
        }
        c->layer_experts[l] = e;
    }
    return 0;
}

/* indexer_types, else index_topk_pattern, else the freq/offset rule
 * (HF GlmMoeDsaConfig.__post_init__; arch.md §3.5). MTP layers are full. */
static int parse_indexer_layout(const cJSON *root, const char *name, dm_config *c, dm_err *err)
{
    int total = dm_config_total_layers(c);
    c->layer_index_full = dm_calloc((size_t)total, sizeof(bool));
    for (int l = 0; l < total; l++)
        c->layer_index_full[l] = c->has_indexer;
    if (!c->has_indexer)
        return 0;
    const cJSON *types = cJSON_GetObjectItemCaseSensitive(root, "indexer_types");
    const char *pattern = NULL;
    if (json_string(root, "index_topk_pattern", name, &pattern, err))
        return -1;
    if (types && !cJSON_IsNull(types)) {
        if (!cJSON_IsArray(types) || cJSON_GetArraySize(types) < c->n_layers)
            return dm_errorf(err, "%s: 'indexer_types' must be a list of %d strings", name, c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            const cJSON *e = cJSON_GetArrayItem(types, l);
            if (!cJSON_IsString(e) || (strcmp(e->valuestring, "full") && strcmp(e->valuestring, "shared")))
                return dm_errorf(err, "%s: 'indexer_types'[%d] must be \"full\" or \"shared\"", name, l);
            c->layer_index_full[l] = !strcmp(e->valuestring, "full");
        }
    } else if (pattern) {
        if ((int)strlen(pattern) < c->n_layers)
            return dm_errorf(err, "%s: 'index_topk_pattern' has %zu letters, expected %d", name, strlen(pattern),
                             c->n_layers);
        for (int l = 0; l < c->n_layers; l++) {
            if (pattern[l] != 'F' && pattern[l] != 'S')
                return dm_errorf(err, "%s: 'index_topk_pattern'[%d] must be 'F' or 'S'", name, l);
            c->layer_index_full[l] = pattern[l] == 'F';
        }
    } else {
        int freq, offset;
        if (json_int(root, "index_topk_freq", name, 1, 1, 1 << 20, &freq, err) ||
            json_int(root, "index_skip_topk_offset", name, 2, 0, 1 << 20, &offset, err))
            return -1;
        for (int l = 0; l < c->n_layers; l++) {
            int k = l - offset + 1;
            c->layer_index_full[l] = (k > 0 ? k : 0) % freq == 0;
        }
    }
    if (!c->layer_index_full[0])
        return dm_errorf(err, "%s: layer 0 must compute its own indexer top-k (it is marked shared)", name);
    return 0;
}

static int parse_moe_semantics(const cJSON *root, const char *name, dm_config *c, dm_err *err)
{
    const char *scoring, *method;
    if (json_string(root, "scoring_func", name, &scoring, err) ||
        json_string(root, "topk_method", name, &method, err))
        return -1;
    if (!scoring || !strcmp(scoring, "sigmoid"))
        c->scoring = DM_SCORING_SIGMOID;
    else if (!strcmp(scoring, "softmax"))
        c->scoring = DM_SCORING_SOFTMAX;
    else
        return dm_errorf(err, "%s: field 'scoring_func' = \"%s\" is not supported (sigmoid or softmax)", name, scoring);
    if (!method || !strcmp(method, "noaux_tc"))
        c->topk_method = DM_TOPK_NOAUX_TC;
    else if (!strcmp(method, "group_limited_greedy"))
        c->topk_method = DM_TOPK_GROUP_LIMITED_GREEDY;
    else if (!strcmp(method, "greedy"))
        c->topk_method = DM_TOPK_GREEDY;
    else
        return dm_errorf(err, "%s: field 'topk_method' = \"%s\" is not supported (noaux_tc, group_limited_greedy, greedy)",
                         name, method);
    double rsf;
    if (json_bool(root, "norm_topk_prob", name, true, &c->norm_topk_prob, err) ||
        json_double(root, "routed_scaling_factor", name, 2.5, &rsf, err))
        return -1;
    if (!(rsf > 0))
        return dm_errorf(err, "%s: field 'routed_scaling_factor' must be > 0", name);
    c->routed_scaling_factor = (float)rsf;
    if (c->topk_group > c->n_group)
        return dm_errorf(err, "%s: topk_group = %d exceeds n_group = %d", name, c->topk_group, c->n_group);
    if (c->n_routed_experts < c->n_experts_per_tok)
        return dm_errorf(err, "%s: n_routed_experts = %d is less than num_experts_per_tok = %d", name,
                         c->n_routed_experts, c->n_experts_per_tok);
    return 0;
}

/* Refuses features this engine does not implement rather than running them wrong. */
static int check_unsupported(const cJSON *root, const char *name, dm_err *err)
{
    bool b;
    const char *s;
    if (json_bool(root, "attention_bias", name, false, &b, err))
        return -1;
    if (b)
        return dm_errorf(err, "%s: field 'attention_bias' = true is not supported", name);
    if (json_bool(root, "mlp_bias", name, false, &b, err))
        return -1;
    if (b)
        return dm_errorf(err, "%s: field 'mlp_bias' = true is not supported", name);
    if (json_string(root, "hidden_act", name, &s, err))
        return -1;
    if (s && strcmp(s, "silu") != 0)
        return dm_errorf(err, "%s: field 'hidden_act' = \"%s\" is not supported (silu)", name, s);
    return 0;
}

static int parse_root(dm_config *c, const cJSON *root, const char *name, dm_err *err)
{
    const char *mt;
    if (json_string(root, "model_type", name, &mt, err))
        return -1;
    if (!mt)
        return dm_errorf(err, "%s: missing field 'model_type'", name);
    int kind = -1;
    for (size_t i = 0; i < sizeof model_types / sizeof model_types[0]; i++)
        if (!strcmp(mt, model_types[i].model_type))
            kind = (int)i;
    if (kind < 0)
        return dm_errorf(err, "%s: model_type \"%s\" is not supported (glm_moe_dsa, deepseek_v3, deepseek_v32)", name, mt);
    arch_kind ak = model_types[kind].kind;
    snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    const cJSON *archs = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    snprintf(c->architecture, sizeof c->architecture, "%s",
             cJSON_IsString(a0) ? a0->valuestring : model_types[kind].architecture);

    for (size_t i = 0; i < sizeof int_fields / sizeof int_fields[0]; i++) {
        const struct int_field *f = &int_fields[i];
        if (json_int(root, f->key, name, f->def[ak], f->min, f->max, (int *)((char *)c + f->off), err))
            return -1;
    }
    int qlr;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(root, "q_lora_rank");
    if (q && cJSON_IsNull(q))
        qlr = 0;                      /* DeepSeek-V2-Lite style: q_proj */
    else if (json_int(root, "q_lora_rank", name, ak == ARCH_GLM ? 2048 : 1536, 0, 1 << 16, &qlr, err))
        return -1;
    c->q_lora_rank = qlr;
    c->qk_head_dim = c->qk_nope_dim + c->qk_rope_dim;
    if (c->qk_rope_dim % 2)
        return dm_errorf(err, "%s: 'qk_rope_head_dim' = %d must be even", name, c->qk_rope_dim);

    double eps, maxpos;
    if (json_double(root, "rms_norm_eps", name, rms_eps_default[ak], &eps, err) ||
        json_double(root, "max_position_embeddings", name, (double)max_pos_default[ak], &maxpos, err))
        return -1;
    if (!(eps > 0 && eps < 1))
        return dm_errorf(err, "%s: field 'rms_norm_eps' = %g out of range", name, eps);
    if (!(maxpos >= 1))
        return dm_errorf(err, "%s: field 'max_position_embeddings' must be >= 1", name);
    c->rms_norm_eps = (float)eps;
    c->max_position_embeddings = (int64_t)maxpos;
    if (json_bool(root, "tie_word_embeddings", name, false, &c->tie_word_embeddings, err))
        return -1;
    if (check_unsupported(root, name, err) || parse_moe_semantics(root, name, c, err))
        return -1;

    if (parse_rope(root, name, ak, c, err))
        return -1;
    bool interleave;
    if (json_bool(root, "rope_interleave", name, true, &interleave, err))
        return -1;
    c->rope.interleaved = interleave;
    c->softmax_scale = (float)(1.0 / sqrt((double)c->qk_head_dim) * dm_rope_softmax_mscale(&c->rope));

    c->has_indexer = ak != ARCH_DSV3;
    c->index_rope = c->rope;
    if (c->has_indexer) {
        if (json_bool(root, "indexer_rope_interleave", name, ak == ARCH_GLM, &interleave, err))
            return -1;
        c->index_rope.interleaved = interleave;
        if (c->index_head_dim < c->qk_rope_dim)
            return dm_errorf(err, "%s: 'index_head_dim' = %d is smaller than qk_rope_head_dim = %d", name,
                             c->index_head_dim, c->qk_rope_dim);
        if (c->q_lora_rank == 0)
            return dm_errorf(err, "%s: the DSA indexer needs q_lora_rank > 0", name);
    }

    int bos, pad;
    if (json_int(root, "bos_token_id", name, -1, -1, 1 << 30, &bos, err) ||
        json_int(root, "pad_token_id", name, -1, -1, 1 << 30, &pad, err) || parse_eos(root, name, c, err))
        return -1;
    c->bos_token_id = bos;
    c->pad_token_id = pad;

    if (parse_layer_kinds(root, name, ak, c, err) || parse_layer_experts(root, name, c, err) ||
        parse_indexer_layout(root, name, c, err))
        return -1;
    return 0;
}

int dm_config_total_layers(const dm_config *c) { return c->n_layers + c->n_mtp; }

/* A parse error, naming the field whose value failed when there is one
 * (e.g. NaN or Infinity, which JSON does not allow). */
static int json_error(const char *json, const char *at, const char *name, dm_err *err)
{
    long off = at ? (long)(at - json) : -1;
    /* walk back over the value to the ':' and the quoted key before it */
    const char *p = at;
    while (p && p > json && *p != ':' && *p != ',' && *p != '{' && *p != '[')
        p--;
    if (p && p > json && *p == ':') {
        const char *q = p - 1;
        while (q > json && (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r'))
            q--;
        if (*q == '"') {
            const char *k = q - 1;
            while (k > json && *k != '"')
                k--;
            if (*k == '"' && q - k - 1 < 128) {
                char vbuf[24];
                snprintf(vbuf, sizeof vbuf, "%.*s", (int)strcspn(at, ",}\n"), at);
                return dm_errorf(err, "%s: field '%.*s' has an invalid value '%s' (not JSON; NaN and Infinity "
                                 "are not allowed)", name, (int)(q - k - 1), k + 1, vbuf);
            }
        }
    }
    return dm_errorf(err, "%s: invalid JSON near byte %ld", name, off);
}

int dm_config_parse(dm_config *c, const char *json, const char *name, dm_err *err)
{
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return json_error(json, cJSON_GetErrorPtr(), name, err);
    int rc = cJSON_IsObject(root) ? parse_root(c, root, name, err)
                                  : dm_errorf(err, "%s: top level must be a JSON object", name);
    cJSON_Delete(root);
    if (rc)
        dm_config_free(c);
    return rc;
}

/* generation_config.json: eos/bos/pad override config.json's when present. */
static int load_generation_config(dm_config *c, const char *dir, dm_err *err)
{
    char *path = dm_path_join(dir, "generation_config.json");
    int rc = 0;
    if (dm_path_exists(path)) {
        char *text;
        rc = dm_read_file(path, &text, NULL, err);
        if (rc == 0) {
            cJSON *root = cJSON_Parse(text);
            if (!root || !cJSON_IsObject(root))
                rc = dm_errorf(err, "%s: invalid JSON", path);
            else {
                int v;
                rc = parse_eos(root, path, c, err);
                if (!rc && cJSON_GetObjectItemCaseSensitive(root, "bos_token_id")) {
                    rc = json_int(root, "bos_token_id", path, -1, -1, 1 << 30, &v, err);
                    if (!rc)
                        c->bos_token_id = v;
                }
            }
            cJSON_Delete(root);
            free(text);
        }
    }
    free(path);
    return rc;
}

int dm_config_load(dm_config *c, const char *dir, dm_err *err)
{
    char *path = dm_path_join(dir, "config.json");
    char *text;
    int rc = dm_read_file(path, &text, NULL, err);
    if (rc == 0) {
        rc = dm_config_parse(c, text, path, err);
        free(text);
    }
    free(path);
    if (rc == 0 && load_generation_config(c, dir, err) != 0) {
        dm_config_free(c);
        rc = -1;
    }
    if (rc == 0) {
        for (int i = 0; i < c->n_eos; i++)
            if (c->eos_token_ids[i] >= c->vocab_size) {
                dm_config_free(c);
                return dm_errorf(err, "%s: eos_token_id %d is outside the vocabulary (%d)", dir,
                                 c->eos_token_ids[i], c->vocab_size);
            }
    }
    return rc;
}

void dm_config_free(dm_config *c)
{
    free(c->layer_moe);
    free(c->layer_experts);
    free(c->layer_index_full);
    c->layer_moe = NULL;
    c->layer_experts = NULL;
    c->layer_index_full = NULL;
}

bool dm_config_is_eos(const dm_config *c, int32_t token)
{
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_token_ids[i] == token)
            return true;
    return false;
}
