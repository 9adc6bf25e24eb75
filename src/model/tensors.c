/* tensors — the list of tensors (HF names, shapes, roles) a config implies.
 * One walk of the architecture that every producer of checkpoints shares:
 * `demolish init` generates them, the trainer allocates and trains them, the
 * pruner (later) knows which are experts. The loader (load.c) binds the same
 * names to the weight structs. */
#include "model/model.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct spec_list {
    dm_tensor_spec *t;
    int n, cap;
} spec_list;

static dm_tensor_spec *add(spec_list *l, dm_tensor_role role, int layer, int64_t rows, int64_t cols,
                           const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static dm_tensor_spec *add(spec_list *l, dm_tensor_role role, int layer, int64_t rows, int64_t cols,
                           const char *fmt, ...)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->t = dm_realloc(l->t, (size_t)l->cap * sizeof(dm_tensor_spec));
    }
    dm_tensor_spec *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->role = role;
    t->layer = layer;
    t->rows = rows;
    t->cols = cols;
    t->expert = -1;
    return t;
}

/* A Linear weight: name gets ".weight"; quantizable as real releases do. */
static dm_tensor_spec *linear(spec_list *l, int layer, int64_t rows, int64_t cols, bool quantizable,
                              const char *base)
{
    dm_tensor_spec *t = add(l, DM_TENSOR_LINEAR, layer, rows, cols, "%s.weight", base);
    t->quantizable = quantizable;
    return t;
}

static void add_mlp(spec_list *l, int layer, int expert, const char *prefix, int64_t D, int64_t I)
{
    static const char *const parts[3] = { "gate_proj", "up_proj", "down_proj" };
    for (int i = 0; i < 3; i++) {
        char b[160];
        snprintf(b, sizeof b, "%s.%s", prefix, parts[i]);
        dm_tensor_spec *t = linear(l, layer, i < 2 ? I : D, i < 2 ? D : I, true, b);
        t->expert = expert;
        t->residual_out = i == 2;
    }
}

static void add_attention(spec_list *l, const dm_config *c, int layer)
{
    const int64_t D = c->hidden_size, H = c->n_heads, R = c->kv_lora_rank, P = c->qk_rope_dim;
    char p[96], b[160];
    snprintf(p, sizeof p, "model.layers.%d.self_attn", layer);
#define LIN(sub, N_, K_, q) (snprintf(b, sizeof b, "%s.%s", p, sub), linear(l, layer, N_, K_, q, b))
    if (c->q_lora_rank > 0) {
        LIN("q_a_proj", c->q_lora_rank, D, true);
        add(l, DM_TENSOR_NORM, layer, c->q_lora_rank, 0, "%s.q_a_layernorm.weight", p);
        LIN("q_b_proj", H * c->qk_head_dim, c->q_lora_rank, true);
    } else {
        LIN("q_proj", H * c->qk_head_dim, D, true);
    }
    LIN("kv_a_proj_with_mqa", R + P, D, true);
    add(l, DM_TENSOR_NORM, layer, R, 0, "%s.kv_a_layernorm.weight", p);
    LIN("kv_b_proj", H * (c->qk_nope_dim + c->v_head_dim), R, true);
    LIN("o_proj", D, H * c->v_head_dim, true)->residual_out = true;
    if (c->has_indexer && c->layer_index_full[layer]) {
        const int64_t IH = c->index_n_heads, ID = c->index_head_dim;
        LIN("indexer.wq_b", IH * ID, c->q_lora_rank, true)->indexer = true;
        LIN("indexer.wk", ID, D, true)->indexer = true;
        add(l, DM_TENSOR_NORM, layer, ID, 0, "%s.indexer.k_norm.weight", p)->indexer = true;
        add(l, DM_TENSOR_BIAS, layer, ID, 0, "%s.indexer.k_norm.bias", p)->indexer = true;
        LIN("indexer.weights_proj", IH, D, false)->indexer = true;
    }
#undef LIN
}

static void add_moe(spec_list *l, const dm_config *c, int layer)
{
    const int64_t D = c->hidden_size, I = c->moe_intermediate_size, E = c->layer_experts[layer];
    char p[96];
    snprintf(p, sizeof p, "model.layers.%d.mlp.gate", layer);
    linear(l, layer, E, D, false, p)->role = DM_TENSOR_ROUTER;
    add(l, DM_TENSOR_ROUTER_BIAS, layer, E, 0, "model.layers.%d.mlp.gate.e_score_correction_bias", layer);
    for (int64_t e = 0; e < E; e++) {
        snprintf(p, sizeof p, "model.layers.%d.mlp.experts.%lld", layer, (long long)e);
        add_mlp(l, layer, (int)e, p, D, I);
    }
    if (c->n_shared_experts > 0) {
        snprintf(p, sizeof p, "model.layers.%d.mlp.shared_experts", layer);
        add_mlp(l, layer, -1, p, D, I * c->n_shared_experts);
    }
}

int dm_tensor_specs(const dm_config *c, dm_tensor_spec **out)
{
    spec_list l = { 0 };
    const int64_t D = c->hidden_size, V = c->vocab_size;
    linear(&l, -1, V, D, false, "model.embed_tokens")->role = DM_TENSOR_EMBED;
    for (int layer = 0; layer < dm_config_total_layers(c); layer++) {
        char p[96];
        add(&l, DM_TENSOR_NORM, layer, D, 0, "model.layers.%d.input_layernorm.weight", layer);
        add(&l, DM_TENSOR_NORM, layer, D, 0, "model.layers.%d.post_attention_layernorm.weight", layer);
        add_attention(&l, c, layer);
        if (c->layer_moe[layer]) {
            add_moe(&l, c, layer);
        } else {
            snprintf(p, sizeof p, "model.layers.%d.mlp", layer);
            add_mlp(&l, layer, -1, p, D, c->intermediate_size);
        }
        if (layer >= c->n_layers) {
            add(&l, DM_TENSOR_NORM, layer, D, 0, "model.layers.%d.enorm.weight", layer);
            add(&l, DM_TENSOR_NORM, layer, D, 0, "model.layers.%d.hnorm.weight", layer);
            snprintf(p, sizeof p, "model.layers.%d.eh_proj", layer);
            linear(&l, layer, D, 2 * D, false, p);
            add(&l, DM_TENSOR_NORM, layer, D, 0, "model.layers.%d.shared_head.norm.weight", layer);
        }
    }
    add(&l, DM_TENSOR_NORM, -1, D, 0, "model.norm.weight");
    if (!c->tie_word_embeddings)
        linear(&l, -1, V, D, false, "lm_head")->role = DM_TENSOR_HEAD;
    *out = l.t;
    return l.n;
}
