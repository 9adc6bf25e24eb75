/* load — binds a model directory's safetensors to the dm_model weight
 * structs. Weights stay where they lie in the mapped files: a dm_wmat is a
 * view (data + scales). Only small vectors (norm weights, biases) are
 * converted to owned f32 arrays.
 *
 * A Linear weight X may be stored as (shared/research/quant.md §2):
 *   X.weight  F32 | F16 | BF16                        plain
 *   X.weight  F8_E4M3 + X.weight_scale_inv F32 grid   DeepSeek block FP8
 *   X.weight  U8 + X.weight_scale F8_E4M3 + X.weight_scale_2 F32   NVFP4 (ModelOpt)
 *   X.weight_blocks U8 + X.weight_scales U8|F8_E8M0   MXFP4
 * Every expected tensor is checked for presence, dtype and shape. */
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

typedef struct loader {
    dm_model *m;
    bool *used;           /* [n_tensors]: read by the model */
    const char *dir;
} loader;

static void *own(dm_model *m, void *p)
{
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = dm_realloc(m->owned, (size_t)m->cap_owned * sizeof(void *));
    }
    m->owned[m->n_owned++] = p;
    return p;
}

static const dm_st_tensor *find(loader *ld, const char *name)
{
    const dm_st_tensor *t = dm_st_find(&ld->m->st, name);
    if (t)
        ld->used[t - ld->m->st.tensors] = true;
    return t;
}

static const char *where(loader *ld, const dm_st_tensor *t)
{
    return t ? dm_st_file_of(&ld->m->st, t) : ld->dir;
}

static int expect_shape(loader *ld, const dm_st_tensor *t, int ndim, const int64_t *shape, dm_err *err)
{
    bool ok = t->ndim == ndim;
    for (int i = 0; ok && i < ndim; i++)
        ok = t->shape[i] == shape[i];
    if (ok)
        return 0;
    char got[128] = "", want[128] = "";
    for (int i = 0; i < t->ndim; i++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    for (int i = 0; i < ndim; i++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%lld", i ? ", " : "", (long long)shape[i]);
    return dm_errorf(err, "%s: tensor '%s' has shape [%s], expected [%s]", where(ld, t), t->name, got, want);
}

/* Returns a pointer the kernels may read as an array of its element type:
 * the mapping itself, or an aligned copy when the file misaligns it. */
static const uint8_t *aligned_data(loader *ld, const dm_st_tensor *t)
{
    size_t a = dm_dtype_size(t->dtype);
    if (a <= 1 || ((uintptr_t)t->data % a) == 0)
        return t->data;
    dm_log(2, "note: %s: tensor '%s' is misaligned in the file; using a copy\n", where(ld, t), t->name);
    uint8_t *copy = own(ld->m, dm_aligned_alloc(t->nbytes));
    memcpy(copy, t->data, t->nbytes);
    return copy;
}

/* A float vector of n elements in any float dtype, as an owned f32 array.
 * Missing tensors are an error unless optional (then *out = NULL). */
static int load_vec(loader *ld, const char *name, int64_t n, bool optional, float **out, dm_err *err)
{
    *out = NULL;
    const dm_st_tensor *t = find(ld, name);
    if (!t) {
        if (optional)
            return 0;
        return dm_errorf(err, "%s: missing tensor '%s'", ld->dir, name);
    }
    if (expect_shape(ld, t, 1, &n, err))
        return -1;
    if (t->dtype != DM_DTYPE_F32 && t->dtype != DM_DTYPE_BF16 && t->dtype != DM_DTYPE_F16 && t->dtype != DM_DTYPE_F64)
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, expected a float type", where(ld, t), name,
                         dm_dtype_name(t->dtype));
    float *v = own(ld->m, dm_aligned_alloc((size_t)n * sizeof(float)));
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)dm_dtype_read(t->dtype, t->data, i);
    *out = v;
    return 0;
}

static int load_fp8(loader *ld, const dm_st_tensor *t, const char *base, int64_t N, int64_t K, dm_wmat *w, dm_err *err)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight_scale_inv", base);
    const dm_st_tensor *s = find(ld, name);
    if (!s)
        return dm_errorf(err, "%s: FP8 tensor '%s' has no '%s'", where(ld, t), t->name, name);
    int64_t grid[2] = { (N + DM_FP8_BLOCK - 1) / DM_FP8_BLOCK, (K + DM_FP8_BLOCK - 1) / DM_FP8_BLOCK };
    if (s->dtype != DM_DTYPE_F32)
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, expected F32", where(ld, s), name, dm_dtype_name(s->dtype));
    if (expect_shape(ld, s, 2, grid, err))
        return -1;
    *w = dm_wmat_make(DM_WFMT_FP8, N, K, t->data, aligned_data(ld, s), 1.0f);
    return 0;
}

static int load_nvfp4(loader *ld, const dm_st_tensor *t, const char *base, int64_t N, int64_t K, dm_wmat *w,
                      dm_err *err)
{
    char sname[512], s2name[512];
    snprintf(sname, sizeof sname, "%s.weight_scale", base);
    snprintf(s2name, sizeof s2name, "%s.weight_scale_2", base);
    const dm_st_tensor *s = find(ld, sname), *s2 = find(ld, s2name);
    if (!s || !s2)
        return dm_errorf(err, "%s: U8 tensor '%s' is not NVFP4: '%s' missing", where(ld, t), t->name,
                         s ? s2name : sname);
    if (!dm_wfmt_cols_ok(DM_WFMT_NVFP4, K))
        return dm_errorf(err, "%s: NVFP4 tensor '%s': %lld input columns is not a multiple of 16", where(ld, t),
                         t->name, (long long)K);
    int64_t shape[2] = { N, K / 2 }, sshape[2] = { N, K / DM_NVFP4_BLOCK };
    if (expect_shape(ld, t, 2, shape, err) || expect_shape(ld, s, 2, sshape, err))
        return -1;
    if (s->dtype != DM_DTYPE_F8_E4M3 && s->dtype != DM_DTYPE_U8)
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, expected F8_E4M3", where(ld, s), sname,
                         dm_dtype_name(s->dtype));
    if (s2->numel != 1 || (s2->dtype != DM_DTYPE_F32 && s2->dtype != DM_DTYPE_BF16))
        return dm_errorf(err, "%s: tensor '%s' must be one F32 value", where(ld, s2), s2name);
    *w = dm_wmat_make(DM_WFMT_NVFP4, N, K, t->data, s->data, (float)dm_dtype_read(s2->dtype, s2->data, 0));
    return 0;
}

static int load_mxfp4(loader *ld, const dm_st_tensor *b, const char *base, int64_t N, int64_t K, dm_wmat *w,
                      dm_err *err)
{
    char sname[512];
    snprintf(sname, sizeof sname, "%s.weight_scales", base);
    const dm_st_tensor *s = find(ld, sname);
    if (!s)
        return dm_errorf(err, "%s: MXFP4 tensor '%s' has no '%s'", where(ld, b), b->name, sname);
    if (!dm_wfmt_cols_ok(DM_WFMT_MXFP4, K))
        return dm_errorf(err, "%s: MXFP4 tensor '%s': %lld input columns is not a multiple of 32", where(ld, b),
                         b->name, (long long)K);
    int64_t shape[3] = { N, K / DM_MXFP4_BLOCK, 16 }, sshape[2] = { N, K / DM_MXFP4_BLOCK };
    if (b->dtype != DM_DTYPE_U8)
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, expected U8", where(ld, b), b->name, dm_dtype_name(b->dtype));
    if (expect_shape(ld, b, 3, shape, err) || expect_shape(ld, s, 2, sshape, err))
        return -1;
    if (s->dtype != DM_DTYPE_U8 && s->dtype != DM_DTYPE_F8_E8M0)
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, expected U8 or F8_E8M0", where(ld, s), sname,
                         dm_dtype_name(s->dtype));
    *w = dm_wmat_make(DM_WFMT_MXFP4, N, K, b->data, s->data, 1.0f);
    return 0;
}

/* The weight of Linear `base` (name without ".weight"), shape [N][K]. */
static int load_linear(loader *ld, const char *base, int64_t N, int64_t K, dm_wmat *w, dm_err *err)
{
    char name[512];
    snprintf(name, sizeof name, "%s.weight", base);
    const dm_st_tensor *t = find(ld, name);
    if (!t) {
        snprintf(name, sizeof name, "%s.weight_blocks", base);
        const dm_st_tensor *b = find(ld, name);
        if (b)
            return load_mxfp4(ld, b, base, N, K, w, err);
        return dm_errorf(err, "%s: missing tensor '%s.weight'", ld->dir, base);
    }
    int64_t shape[2] = { N, K };
    switch (t->dtype) {
    case DM_DTYPE_F32:
    case DM_DTYPE_F16:
    case DM_DTYPE_BF16: {
        if (expect_shape(ld, t, 2, shape, err))
            return -1;
        dm_wfmt f = t->dtype == DM_DTYPE_F32 ? DM_WFMT_F32 : t->dtype == DM_DTYPE_F16 ? DM_WFMT_F16 : DM_WFMT_BF16;
        *w = dm_wmat_make(f, N, K, aligned_data(ld, t), NULL, 1.0f);
        return 0;
    }
    case DM_DTYPE_F8_E4M3:
        if (expect_shape(ld, t, 2, shape, err))
            return -1;
        return load_fp8(ld, t, base, N, K, w, err);
    case DM_DTYPE_U8:
        return load_nvfp4(ld, t, base, N, K, w, err);
    default:
        return dm_errorf(err, "%s: tensor '%s' has dtype %s, which is not a supported weight format", where(ld, t),
                         name, dm_dtype_name(t->dtype));
    }
}

static int load_mlp(loader *ld, const char *prefix, int64_t D, int64_t I, dm_mlp_w *mlp, dm_err *err)
{
    char b[512];
    snprintf(b, sizeof b, "%s.gate_proj", prefix);
    if (load_linear(ld, b, I, D, &mlp->gate, err))
        return -1;
    snprintf(b, sizeof b, "%s.up_proj", prefix);
    if (load_linear(ld, b, I, D, &mlp->up, err))
        return -1;
    snprintf(b, sizeof b, "%s.down_proj", prefix);
    return load_linear(ld, b, D, I, &mlp->down, err);
}

static int load_attention(loader *ld, int l, dm_attn_w *a, dm_err *err)
{
    const dm_config *c = &ld->m->cfg;
    const int64_t D = c->hidden_size, H = c->n_heads, R = c->kv_lora_rank, P = c->qk_rope_dim;
    char b[96], n[160];
    snprintf(b, sizeof b, "model.layers.%d.self_attn", l);
#define LIN(sub, N_, K_, field)                                  \
    do {                                                         \
        snprintf(n, sizeof n, "%s.%s", b, sub);                  \
        if (load_linear(ld, n, N_, K_, field, err))              \
            return -1;                                           \
    } while (0)
#define VEC(sub, len, field)                                     \
    do {                                                         \
        snprintf(n, sizeof n, "%s.%s", b, sub);                  \
        if (load_vec(ld, n, len, false, field, err))             \
            return -1;                                           \
    } while (0)
    if (c->q_lora_rank > 0) {
        LIN("q_a_proj", c->q_lora_rank, D, &a->q_a);
        VEC("q_a_layernorm.weight", c->q_lora_rank, &a->q_a_norm);
        LIN("q_b_proj", H * c->qk_head_dim, c->q_lora_rank, &a->q_b);
    } else {
        LIN("q_proj", H * c->qk_head_dim, D, &a->q_proj);
    }
    LIN("kv_a_proj_with_mqa", R + P, D, &a->kv_a);
    VEC("kv_a_layernorm.weight", R, &a->kv_a_norm);
    LIN("kv_b_proj", H * (c->qk_nope_dim + c->v_head_dim), R, &a->kv_b);
    LIN("o_proj", D, H * c->v_head_dim, &a->o);
    a->has_indexer = c->layer_index_full[l];
    if (a->has_indexer) {
        const int64_t IH = c->index_n_heads, ID = c->index_head_dim;
        LIN("indexer.wq_b", IH * ID, c->q_lora_rank, &a->idx_wq_b);
        LIN("indexer.wk", ID, D, &a->idx_wk);
        VEC("indexer.k_norm.weight", ID, &a->idx_k_norm_w);
        VEC("indexer.k_norm.bias", ID, &a->idx_k_norm_b);
        LIN("indexer.weights_proj", IH, D, &a->idx_weights);
    }
#undef LIN
#undef VEC
    return 0;
}

static int load_moe(loader *ld, int l, dm_moe_w *moe, dm_err *err)
{
    const dm_config *c = &ld->m->cfg;
    const int64_t D = c->hidden_size, I = c->moe_intermediate_size;
    const int E = c->layer_experts[l];
    char b[512];
    moe->n_experts = E;
    snprintf(b, sizeof b, "model.layers.%d.mlp.gate", l);
    if (load_linear(ld, b, E, D, &moe->router, err))
        return -1;
    snprintf(b, sizeof b, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
    if (load_vec(ld, b, E, true, &moe->bias, err))
        return -1;
    moe->experts = own(ld->m, dm_calloc((size_t)E, sizeof(dm_mlp_w)));
    for (int e = 0; e < E; e++) {
        snprintf(b, sizeof b, "model.layers.%d.mlp.experts.%d", l, e);
        if (load_mlp(ld, b, D, I, &moe->experts[e], err))
            return -1;
    }
    /* an extra expert beyond the config is a mismatch, not something to ignore */
    snprintf(b, sizeof b, "model.layers.%d.mlp.experts.%d.gate_proj.weight", l, E);
    if (dm_st_find(&ld->m->st, b))
        return dm_errorf(err, "%s: layer %d has more routed experts than the config's %d ('%s' exists)", ld->dir,
                         l, E, b);
    moe->has_shared = c->n_shared_experts > 0;
    if (moe->has_shared) {
        snprintf(b, sizeof b, "model.layers.%d.mlp.shared_experts", l);
        if (load_mlp(ld, b, D, I * c->n_shared_experts, &moe->shared, err))
            return -1;
    }
    return 0;
}

static int load_mtp_extras(loader *ld, int l, dm_layer_w *lw, dm_err *err)
{
    const dm_config *c = &ld->m->cfg;
    const int64_t D = c->hidden_size;
    char n[512];
    snprintf(n, sizeof n, "model.layers.%d.enorm.weight", l);
    if (load_vec(ld, n, D, false, &lw->enorm, err))
        return -1;
    snprintf(n, sizeof n, "model.layers.%d.hnorm.weight", l);
    if (load_vec(ld, n, D, false, &lw->hnorm, err))
        return -1;
    snprintf(n, sizeof n, "model.layers.%d.shared_head.norm.weight", l);
    if (load_vec(ld, n, D, false, &lw->head_norm, err))
        return -1;
    snprintf(n, sizeof n, "model.layers.%d.eh_proj", l);
    if (load_linear(ld, n, D, 2 * D, &lw->eh_proj, err))
        return -1;
    /* DeepSeek-V3 ships copies of the embedding and head inside the MTP layer; GLM-5 shares them. */
    lw->mtp_embed = ld->m->embed;
    lw->mtp_head = ld->m->lm_head;
    snprintf(n, sizeof n, "model.layers.%d.embed_tokens.weight", l);
    if (dm_st_find(&ld->m->st, n)) {
        snprintf(n, sizeof n, "model.layers.%d.embed_tokens", l);
        if (load_linear(ld, n, c->vocab_size, D, &lw->mtp_embed, err))
            return -1;
    }
    snprintf(n, sizeof n, "model.layers.%d.shared_head.head.weight", l);
    if (dm_st_find(&ld->m->st, n)) {
        snprintf(n, sizeof n, "model.layers.%d.shared_head.head", l);
        if (load_linear(ld, n, c->vocab_size, D, &lw->mtp_head, err))
            return -1;
    }
    return 0;
}

static int load_layer(loader *ld, int l, dm_layer_w *lw, dm_err *err)
{
    const dm_config *c = &ld->m->cfg;
    char n[512];
    snprintf(n, sizeof n, "model.layers.%d.input_layernorm.weight", l);
    if (load_vec(ld, n, c->hidden_size, false, &lw->attn_norm, err))
        return -1;
    snprintf(n, sizeof n, "model.layers.%d.post_attention_layernorm.weight", l);
    if (load_vec(ld, n, c->hidden_size, false, &lw->ffn_norm, err))
        return -1;
    if (load_attention(ld, l, &lw->attn, err))
        return -1;
    lw->is_moe = c->layer_moe[l];
    if (lw->is_moe) {
        if (load_moe(ld, l, &lw->moe, err))
            return -1;
    } else {
        snprintf(n, sizeof n, "model.layers.%d.mlp", l);
        if (load_mlp(ld, n, c->hidden_size, c->intermediate_size, &lw->mlp, err))
            return -1;
    }
    if (l >= c->n_layers && load_mtp_extras(ld, l, lw, err))
        return -1;
    return 0;
}

static int64_t mlp_params(const dm_mlp_w *w)
{
    return w->gate.rows * w->gate.cols + w->up.rows * w->up.cols + w->down.rows * w->down.cols;
}

/* Logical parameter counts over the main layers (MTP excluded, as model
 * cards count them), total and active per token. */
static void count_params(dm_model *m)
{
    const dm_config *c = &m->cfg;
    int64_t D = c->hidden_size, total = m->embed.rows * D, active = total;
    if (!c->tie_word_embeddings) {
        total += m->lm_head.rows * D;
        active += m->lm_head.rows * D;
    }
    for (int l = 0; l < c->n_layers; l++) {
        const dm_layer_w *lw = &m->layers[l];
        const dm_attn_w *a = &lw->attn;
        const dm_wmat *mats[] = { &a->q_a, &a->q_b, &a->q_proj, &a->kv_a, &a->kv_b, &a->o,
                                  &a->idx_wq_b, &a->idx_wk, &a->idx_weights };
        int64_t p = 2 * D;
        for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++)
            p += mats[i]->rows * mats[i]->cols;
        total += p;
        active += p;
        if (!lw->is_moe) {
            total += mlp_params(&lw->mlp);
            active += mlp_params(&lw->mlp);
            continue;
        }
        int64_t router = lw->moe.router.rows * D, shared = lw->moe.has_shared ? mlp_params(&lw->moe.shared) : 0;
        int64_t one = mlp_params(&lw->moe.experts[0]);
        total += router + shared + one * lw->moe.n_experts;
        active += router + shared + one * c->n_experts_per_tok;
    }
    m->n_params = total;
    m->n_params_active = active;
}

static int load_all(loader *ld, dm_err *err)
{
    dm_model *m = ld->m;
    const dm_config *c = &m->cfg;
    if (load_linear(ld, "model.embed_tokens", c->vocab_size, c->hidden_size, &m->embed, err) ||
        load_vec(ld, "model.norm.weight", c->hidden_size, false, &m->final_norm, err))
        return -1;
    if (c->tie_word_embeddings)
        m->lm_head = m->embed;
    else if (load_linear(ld, "lm_head", c->vocab_size, c->hidden_size, &m->lm_head, err))
        return -1;
    int total = dm_config_total_layers(c);
    m->layers = own(m, dm_calloc((size_t)total, sizeof(dm_layer_w)));
    for (int l = 0; l < total; l++)
        if (load_layer(ld, l, &m->layers[l], err))
            return -1;
    return 0;
}

int dm_model_load(dm_model **out, const char *dir, dm_err *err)
{
    *out = NULL;
    dm_model *m = dm_calloc(1, sizeof *m);
    m->dir = dm_strdup(dir);
    if (dm_config_load(&m->cfg, dir, err)) {
        free(m->dir);
        free(m);
        return -1;
    }
    if (dm_st_open(&m->st, dir, err)) {
        dm_config_free(&m->cfg);
        free(m->dir);
        free(m);
        return -1;
    }
    loader ld = { .m = m, .used = dm_calloc((size_t)m->st.n_tensors + 1, sizeof(bool)), .dir = dir };
    int rc = load_all(&ld, err);
    if (rc == 0) {
        for (int i = 0; i < m->st.n_tensors; i++)
            m->n_tensors_unused += !ld.used[i];
        const dm_config *c = &m->cfg;
        m->rope_inv_freq = own(m, dm_calloc((size_t)c->qk_rope_dim / 2, sizeof(double)));
        dm_rope_inv_freq(&c->rope, m->rope_inv_freq);
        count_params(m);
    }
    free(ld.used);
    if (rc) {
        dm_model_free(m);
        return -1;
    }
    *out = m;
    return 0;
}

void dm_model_free(dm_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    dm_st_close(&m->st);
    dm_config_free(&m->cfg);
    free(m->dir);
    free(m);
}

/* ---- tensor names ---- */

static const char *const linear_names[DM_LIN_COUNT] = {
    [DM_LIN_Q_A] = "self_attn.q_a_proj", [DM_LIN_Q_B] = "self_attn.q_b_proj",
    [DM_LIN_Q_PROJ] = "self_attn.q_proj", [DM_LIN_KV_A] = "self_attn.kv_a_proj_with_mqa",
    [DM_LIN_KV_B] = "self_attn.kv_b_proj", [DM_LIN_O] = "self_attn.o_proj",
    [DM_LIN_IDX_WQ_B] = "self_attn.indexer.wq_b", [DM_LIN_IDX_WK] = "self_attn.indexer.wk",
    [DM_LIN_IDX_WEIGHTS] = "self_attn.indexer.weights_proj",
    [DM_LIN_MLP_GATE] = "mlp.gate_proj", [DM_LIN_MLP_UP] = "mlp.up_proj", [DM_LIN_MLP_DOWN] = "mlp.down_proj",
    [DM_LIN_ROUTER] = "mlp.gate",
    [DM_LIN_EXP_GATE] = "gate_proj", [DM_LIN_EXP_UP] = "up_proj", [DM_LIN_EXP_DOWN] = "down_proj",
    [DM_LIN_SHEXP_GATE] = "mlp.shared_experts.gate_proj", [DM_LIN_SHEXP_UP] = "mlp.shared_experts.up_proj",
    [DM_LIN_SHEXP_DOWN] = "mlp.shared_experts.down_proj",
    [DM_LIN_EH_PROJ] = "eh_proj", [DM_LIN_LM_HEAD] = "lm_head",
};

void dm_linear_name(int layer, dm_linear which, int expert, char *buf, size_t cap)
{
    DM_ASSERT(which >= 0 && which < DM_LIN_COUNT);
    if (which == DM_LIN_LM_HEAD)
        snprintf(buf, cap, "lm_head.weight");
    else if (which == DM_LIN_EXP_GATE || which == DM_LIN_EXP_UP || which == DM_LIN_EXP_DOWN)
        snprintf(buf, cap, "model.layers.%d.mlp.experts.%d.%s.weight", layer, expert, linear_names[which]);
    else
        snprintf(buf, cap, "model.layers.%d.%s.weight", layer, linear_names[which]);
}

int dm_model_hash(const dm_model *m, char out[65], dm_err *err)
{
    char *path = dm_path_join(m->dir, "config.json");
    char *cfg;
    size_t len;
    int rc = dm_read_file(path, &cfg, &len, err);
    free(path);
    if (rc)
        return -1;
    dm_sha256_ctx c;
    dm_sha256_init(&c);
    dm_sha256_update(&c, cfg, len);
    free(cfg);
    for (int f = 0; f < m->st.n_files; f++)   /* the headers name every tensor, its dtype, shape and place */
        dm_sha256_update(&c, m->st.files[f].map.data, m->st.files[f].data_start);
    for (int i = 0; i < m->st.n_tensors; i++) {   /* and a sample of the bytes: one page read per tensor */
        const dm_st_tensor *t = &m->st.tensors[i];
        dm_sha256_update(&c, t->data, t->nbytes < 64 ? t->nbytes : 64);
    }
    uint8_t dg[32];
    dm_sha256_final(&c, dg);
    dm_sha256_hex(dg, out);
    return 0;
}
