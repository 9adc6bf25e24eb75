/* init — `demolish init`: a complete random-weight model directory in the
 * Hugging Face layout, for tests and benchmarks of any size. The weights go
 * through the same safetensors writer and the same tensor names as real
 * checkpoints; Linear weights can be written in every format the loader
 * reads (bf16, f16, f32, FP8 block, NVFP4, MXFP4). The tokenizer is a small
 * byte-level BPE trained on a built-in text (init_text.c). */
#include "model/model.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

extern const char dm_init_training_text[];

/* ---- what to generate for each tensor ------------------------------------------- */

/* A tensor of the inventory (tensors.c) with the values init gives it:
 * uniform centre ± scale. */
typedef struct tspec {
    char base[192];       /* name without ".weight" for Linear weights; full name otherwise */
    bool linear;
    int64_t N, K;         /* Linear: [N][K]; vectors: N */
    float scale;          /* uniform half-width of the values */
    float centre;
    bool quantizable;     /* real releases quantize it (attention, MLPs, experts) */
    bool f32;             /* always stored as F32 (correction bias) */
} tspec;

static tspec to_tspec(const dm_tensor_spec *s, const dm_config *c)
{
    tspec t = { .linear = s->cols > 0, .N = s->rows, .K = s->cols, .quantizable = s->quantizable };
    snprintf(t.base, sizeof t.base, "%s", s->name);
    if (t.linear)
        t.base[strlen(t.base) - strlen(".weight")] = 0;
    switch (s->role) {
    case DM_TENSOR_EMBED:
        t.scale = (float)sqrt(3.0);   /* std 1: the first RMSNorm rescales it anyway */
        break;
    case DM_TENSOR_NORM:
        t.centre = 1.0f;
        t.scale = 0.25f;
        break;
    case DM_TENSOR_BIAS:
        t.scale = 0.1f;
        break;
    case DM_TENSOR_ROUTER_BIAS:
        t.f32 = true;   /* kept in fp32 by every release (arch.md §8.11) */
        /* big enough to change the selection, as the trained bias does */
        t.scale = c->scoring == DM_SCORING_SIGMOID ? 0.1f : 0.5f / (float)s->rows;
        break;
    default:
        t.scale = (float)(sqrt(3.0) / sqrt((double)s->cols));   /* uniform with std 1/sqrt(fan_in) */
    }
    return t;
}

/* ---- formats of each tensor ----------------------------------------------------- */

static dm_wfmt plain_format(dm_wfmt requested)
{
    return requested == DM_WFMT_F32 ? DM_WFMT_F32 : requested == DM_WFMT_F16 ? DM_WFMT_F16 : DM_WFMT_BF16;
}

static dm_wfmt format_of(const tspec *t, dm_wfmt requested)
{
    if (!t->linear || !t->quantizable || !dm_wfmt_cols_ok(requested, t->K))
        return plain_format(requested);
    return requested;
}

static dm_dtype plain_dtype(dm_wfmt f)
{
    return f == DM_WFMT_F32 ? DM_DTYPE_F32 : f == DM_WFMT_F16 ? DM_DTYPE_F16 : DM_DTYPE_BF16;
}

/* Declares the safetensors entries of one tensor in its format. */
static int declare(dm_st_writer *w, const tspec *t, dm_wfmt f, dm_err *err)
{
    char n[256];
    if (!t->linear) {
        dm_dtype dt = t->f32 ? DM_DTYPE_F32 : plain_dtype(f);
        return dm_st_writer_declare(w, t->base, dt, 1, &t->N, err);
    }
    int64_t s2[2] = { t->N, t->K };
    switch (f) {
    case DM_WFMT_F32:
    case DM_WFMT_F16:
    case DM_WFMT_BF16:
        snprintf(n, sizeof n, "%s.weight", t->base);
        return dm_st_writer_declare(w, n, plain_dtype(f), 2, s2, err);
    case DM_WFMT_FP8: {
        int64_t g[2] = { (t->N + DM_FP8_BLOCK - 1) / DM_FP8_BLOCK, (t->K + DM_FP8_BLOCK - 1) / DM_FP8_BLOCK };
        snprintf(n, sizeof n, "%s.weight", t->base);
        if (dm_st_writer_declare(w, n, DM_DTYPE_F8_E4M3, 2, s2, err))
            return -1;
        snprintf(n, sizeof n, "%s.weight_scale_inv", t->base);
        return dm_st_writer_declare(w, n, DM_DTYPE_F32, 2, g, err);
    }
    case DM_WFMT_NVFP4: {
        int64_t q[2] = { t->N, t->K / 2 }, s[2] = { t->N, t->K / DM_NVFP4_BLOCK };
        snprintf(n, sizeof n, "%s.weight", t->base);
        if (dm_st_writer_declare(w, n, DM_DTYPE_U8, 2, q, err))
            return -1;
        snprintf(n, sizeof n, "%s.weight_scale", t->base);
        if (dm_st_writer_declare(w, n, DM_DTYPE_F8_E4M3, 2, s, err))
            return -1;
        snprintf(n, sizeof n, "%s.weight_scale_2", t->base);
        return dm_st_writer_declare(w, n, DM_DTYPE_F32, 0, NULL, err);
    }
    case DM_WFMT_MXFP4: {
        int64_t q[3] = { t->N, t->K / DM_MXFP4_BLOCK, 16 }, s[2] = { t->N, t->K / DM_MXFP4_BLOCK };
        snprintf(n, sizeof n, "%s.weight_blocks", t->base);
        if (dm_st_writer_declare(w, n, DM_DTYPE_U8, 3, q, err))
            return -1;
        snprintf(n, sizeof n, "%s.weight_scales", t->base);
        return dm_st_writer_declare(w, n, DM_DTYPE_U8, 2, s, err);
    }
    default:
        return dm_errorf(err, "unsupported format");
    }
}

/* ---- values ----------------------------------------------------------------------- */

static void fill_uniform(dm_rng *r, float *dst, int64_t n, float centre, float scale)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = centre + scale * (float)(2.0 * dm_rng_uniform(r) - 1.0);
}

static int write_plain_rows(dm_st_writer *w, const tspec *t, dm_wfmt f, dm_rng *r, const char *name, dm_err *err)
{
    const int64_t K = t->linear ? t->K : t->N, N = t->linear ? t->N : 1;
    const size_t esz = f == DM_WFMT_F32 ? 4 : 2;
    int64_t chunk = (int64_t)(1 << 22) / K;
    if (chunk < 1)
        chunk = 1;
    float *vals = dm_malloc((size_t)(chunk * K) * sizeof(float));
    uint8_t *bytes = dm_malloc((size_t)(chunk * K) * esz);
    int rc = 0;
    for (int64_t r0 = 0; r0 < N && rc == 0; r0 += chunk) {
        int64_t n = N - r0 < chunk ? N - r0 : chunk;
        fill_uniform(r, vals, n * K, t->centre, t->scale);
        dm_wmat_encode(f, vals, n, K, bytes, NULL, NULL);
        rc = dm_st_writer_write_part(w, name, (size_t)(r0 * K) * esz, bytes, (size_t)(n * K) * esz, err);
    }
    free(vals);
    free(bytes);
    return rc;
}

static int write_quantized(dm_st_writer *w, const tspec *t, dm_wfmt f, dm_rng *r, dm_err *err)
{
    const size_t nd = dm_wfmt_data_bytes(f, t->N, t->K), ns = dm_wfmt_scale_bytes(f, t->N, t->K);
    float *vals = dm_malloc((size_t)(t->N * t->K) * sizeof(float));
    uint8_t *data = dm_malloc(nd), *scale = dm_malloc(ns);
    float scale2 = 1;
    fill_uniform(r, vals, t->N * t->K, 0, t->scale);
    dm_wmat_encode(f, vals, t->N, t->K, data, scale, &scale2);
    char n1[256], n2[256], n3[256];
    const char *data_suffix = f == DM_WFMT_MXFP4 ? "weight_blocks" : "weight";
    const char *scale_suffix = f == DM_WFMT_FP8 ? "weight_scale_inv" : f == DM_WFMT_NVFP4 ? "weight_scale"
                                                                                           : "weight_scales";
    snprintf(n1, sizeof n1, "%s.%s", t->base, data_suffix);
    snprintf(n2, sizeof n2, "%s.%s", t->base, scale_suffix);
    int rc = dm_st_writer_write(w, n1, data, nd, err) || dm_st_writer_write(w, n2, scale, ns, err);
    if (!rc && f == DM_WFMT_NVFP4) {
        snprintf(n3, sizeof n3, "%s.weight_scale_2", t->base);
        rc = dm_st_writer_write(w, n3, &scale2, 4, err);
    }
    free(vals);
    free(data);
    free(scale);
    return rc ? -1 : 0;
}

static int write_tensor(dm_st_writer *w, const tspec *t, dm_wfmt requested, uint64_t seed, dm_err *err)
{
    dm_rng r;
    dm_rng_seed(&r, seed ^ dm_fnv1a64(t->base, strlen(t->base)));
    dm_wfmt f = format_of(t, requested);
    if (!t->linear)
        return write_plain_rows(w, t, t->f32 ? DM_WFMT_F32 : f, &r, t->base, err);
    if (f == DM_WFMT_F32 || f == DM_WFMT_F16 || f == DM_WFMT_BF16) {
        char n[256];
        snprintf(n, sizeof n, "%s.weight", t->base);
        return write_plain_rows(w, t, f, &r, n, err);
    }
    return write_quantized(w, t, f, &r, err);
}

static int write_weights(const char *dir, const dm_config *c, const dm_init_opts *o, dm_err *err)
{
    dm_tensor_spec *specs;
    int n = dm_tensor_specs(c, &specs);
    tspec *inv = dm_malloc((size_t)n * sizeof(tspec));
    for (int i = 0; i < n; i++)
        inv[i] = to_tspec(&specs[i], c);
    free(specs);
    dm_st_writer *w = dm_st_writer_new(dir, o->shard_bytes);
    dm_st_writer_set_metadata(w, "format", "pt");
    dm_st_writer_set_metadata(w, "producer", "demolish init");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = declare(w, &inv[i], format_of(&inv[i], o->dtype), err);
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    dm_progress p;
    dm_progress_begin(&p, "init", "tensors", n);
    for (int i = 0; i < n && rc == 0; i++) {
        rc = write_tensor(w, &inv[i], o->dtype, o->seed, err);
        dm_progress_update(&p, i + 1);
    }
    dm_progress_end(&p);
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    free(inv);
    return rc;
}

/* ---- tokenizer and the JSON side files ---------------------------------------------- */

static const char *const special_tokens[] = {
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<think>", "</think>",
};
#define N_SPECIAL ((int)(sizeof special_tokens / sizeof special_tokens[0]))

static int write_json(const char *dir, const char *file, cJSON *obj, dm_err *err)
{
    char *text = cJSON_Print(obj);
    char *path = dm_path_join(dir, file);
    int rc = dm_write_file_atomic(path, text, strlen(text), err);
    free(path);
    free(text);
    return rc;
}

typedef struct token_ids {
    int eos, user, observation;
} token_ids;

/* Token ids a GLM-style model directory's JSON files name. */
static token_ids ids_of(const dm_tokenizer *tok)
{
    token_ids ids = { dm_token_id(tok, "<|endoftext|>"), dm_token_id(tok, "<|user|>"),
                      dm_token_id(tok, "<|observation|>") };
    return ids;
}

static int write_tokenizer(const char *dir, const dm_config *c, char **json_out, dm_err *err)
{
    int vocab = c->vocab_size < 8192 ? c->vocab_size : 8192;
    if (vocab < 256 + N_SPECIAL)
        return dm_errorf(err, "vocab_size = %d is too small for a byte-level tokenizer (need >= %d)",
                         c->vocab_size, 256 + N_SPECIAL);
    char *json;
    if (dm_bpe_train(dm_init_training_text, strlen(dm_init_training_text), vocab, special_tokens, N_SPECIAL,
                     &json, err))
        return -1;
    char *path = dm_path_join(dir, "tokenizer.json");
    int rc = dm_write_file_atomic(path, json, strlen(json), err);
    free(path);
    if (rc)
        free(json);
    else
        *json_out = json;
    return rc;
}

static cJSON *eos_list(const token_ids *ids)
{
    int v[3] = { ids->eos, ids->user, ids->observation };
    int n = 0;
    for (int i = 0; i < 3; i++)
        if (v[i] >= 0)
            v[n++] = v[i];
    return cJSON_CreateIntArray(v, n);
}

int dm_write_model_files(const char *dir, const char *config_json, const dm_tokenizer *tok, dm_err *err)
{
    cJSON *cfg_json = cJSON_Parse(config_json);
    if (!cJSON_IsObject(cfg_json)) {
        cJSON_Delete(cfg_json);
        return dm_errorf(err, "%s: the model config is not a JSON object", dir);
    }
    token_ids ids = ids_of(tok);
    if (!cJSON_GetObjectItem(cfg_json, "eos_token_id"))
        cJSON_AddItemToObject(cfg_json, "eos_token_id", eos_list(&ids));
    if (!cJSON_GetObjectItem(cfg_json, "pad_token_id") && ids.eos >= 0)
        cJSON_AddNumberToObject(cfg_json, "pad_token_id", ids.eos);
    int rc = write_json(dir, "config.json", cfg_json, err);

    cJSON *gen = cJSON_CreateObject();
    cJSON_AddItemToObject(gen, "eos_token_id", cJSON_Duplicate(cJSON_GetObjectItem(cfg_json, "eos_token_id"), 1));
    if (ids.eos >= 0)
        cJSON_AddNumberToObject(gen, "pad_token_id", ids.eos);
    cJSON_AddBoolToObject(gen, "do_sample", 1);
    cJSON_AddNumberToObject(gen, "temperature", 1.0);
    if (rc == 0)
        rc = write_json(dir, "generation_config.json", gen, err);
    cJSON_Delete(gen);

    cJSON *tc = cJSON_CreateObject();
    cJSON_AddStringToObject(tc, "tokenizer_class", "PreTrainedTokenizerFast");
    cJSON_AddStringToObject(tc, "eos_token", "<|endoftext|>");
    cJSON_AddStringToObject(tc, "pad_token", "<|endoftext|>");
    const cJSON *mp = cJSON_GetObjectItem(cfg_json, "max_position_embeddings");
    if (cJSON_IsNumber(mp))
        cJSON_AddNumberToObject(tc, "model_max_length", mp->valuedouble);
    cJSON_AddBoolToObject(tc, "clean_up_tokenization_spaces", 0);
    if (rc == 0)
        rc = write_json(dir, "tokenizer_config.json", tc, err);
    cJSON_Delete(tc);
    cJSON_Delete(cfg_json);
    return rc;
}

int dm_init_model(const char *out_dir, const dm_init_opts *o, dm_err *err)
{
    dm_config c;
    if (dm_config_parse(&c, o->config_json, "config", err))
        return -1;
    dm_outdir od;
    int rc = dm_outdir_begin(&od, out_dir, o->force, err);
    if (rc == 0) {
        char *tok_json = NULL;
        dm_tokenizer *tok = NULL;
        rc = write_tokenizer(od.tmp_path, &c, &tok_json, err);
        if (rc == 0)
            rc = dm_tokenizer_load_json(&tok, tok_json, strlen(tok_json), "tokenizer.json", err);
        if (rc == 0)
            rc = dm_write_model_files(od.tmp_path, o->config_json, tok, err);
        if (rc == 0)
            rc = write_weights(od.tmp_path, &c, o, err);
        dm_tokenizer_free(tok);
        free(tok_json);
        if (rc == 0)
            rc = dm_outdir_commit(&od, err);
        else
            dm_outdir_abort(&od);
    }
    dm_config_free(&c);
    return rc;
}
