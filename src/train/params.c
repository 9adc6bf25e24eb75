/* params — the trainable model as llm.c keeps it: one flat fp32 buffer each
 * for weights, gradients and AdamW's two moments, and a table (from
 * dm_tensor_specs, so the names are the checkpoint's HF names) giving each
 * tensor its slice. Views (t_weights) point the training code at the slices
 * of either buffer with the same layout. */
#include "train/train_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

enum { INIT_STD_PERMILLE = 20 };   /* std 0.02, GPT-2/DeepSeek-style init */

/* Each tensor's random stream is seeded with seed ^ tensor_seed(name). The
 * constant is not FNV-1a's offset basis (a digit short): it is what trained
 * the committed reference model, so it stays, for the recipe to reproduce it. */
static uint64_t tensor_seed(const char *name)
{
    uint64_t h = 1469598103934665603ull;
    for (; *name; name++)
        h = (h ^ (uint8_t)*name) * 1099511628211ull;
    return h;
}

static void fill_normal(dm_rng *r, float *x, size_t n, double std)
{
    for (size_t i = 0; i < n; i += 2) {
        double u1 = dm_rng_uniform(r), u2 = dm_rng_uniform(r);
        double rad = sqrt(-2.0 * log(1.0 - u1)), th = 2.0 * M_PI * u2;
        x[i] = (float)(std * rad * cos(th));
        if (i + 1 < n)
            x[i + 1] = (float)(std * rad * sin(th));
    }
}

/* Initial values: Linear weights ~ N(0, 0.02²), the ones writing into the
 * residual stream scaled by 1/sqrt(2·layers) (GPT-2); norms 1; biases 0. */
static void init_tensor(const t_param *p, float *w, const dm_config *c, uint64_t seed)
{
    const dm_tensor_spec *s = &p->spec;
    if (s->role == DM_TENSOR_NORM) {
        for (size_t i = 0; i < p->n; i++)
            w[i] = 1.0f;
        return;
    }
    if (s->role == DM_TENSOR_BIAS || s->role == DM_TENSOR_ROUTER_BIAS) {
        memset(w, 0, p->n * sizeof(float));
        return;
    }
    double std = INIT_STD_PERMILLE / 1000.0;
    if (s->residual_out)
        std /= sqrt(2.0 * dm_config_total_layers(c));
    dm_rng r;
    dm_rng_seed(&r, seed ^ tensor_seed(s->name));
    fill_normal(&r, w, p->n, std);
}

int t_params_init(t_params *ps, const dm_config *c, uint64_t seed)
{
    memset(ps, 0, sizeof *ps);
    dm_tensor_spec *specs;
    ps->n = dm_tensor_specs(c, &specs);
    ps->p = dm_calloc((size_t)ps->n, sizeof(t_param));
    size_t off = 0;
    for (int i = 0; i < ps->n; i++) {
        t_param *p = &ps->p[i];
        p->spec = specs[i];
        p->off = off;
        p->n = (size_t)specs[i].rows * (size_t)(specs[i].cols > 0 ? specs[i].cols : 1);
        off += (p->n + 15) & ~(size_t)15;   /* keep every tensor 64-byte aligned */
    }
    free(specs);
    ps->total = off;
    ps->w = dm_aligned_alloc(off * sizeof(float));
    ps->g = dm_aligned_alloc(off * sizeof(float));
    ps->m = dm_aligned_alloc(off * sizeof(float));
    ps->v = dm_aligned_alloc(off * sizeof(float));
    for (int i = 0; i < ps->n; i++)
        init_tensor(&ps->p[i], ps->w + ps->p[i].off, c, seed);
    return 0;
}

void t_params_free(t_params *ps)
{
    free(ps->p);
    dm_aligned_free(ps->w);
    dm_aligned_free(ps->g);
    dm_aligned_free(ps->m);
    dm_aligned_free(ps->v);
    memset(ps, 0, sizeof *ps);
}

t_param *t_params_find(t_params *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i].spec.name, name))
            return &ps->p[i];
    return NULL;
}

bool t_param_trains(const t_param *p, dm_stage_mode mode)
{
    if (p->frozen || p->spec.role == DM_TENSOR_ROUTER_BIAS)
        return false;
    if (p->spec.indexer)
        return mode != DM_STAGE_DENSE;
    return mode != DM_STAGE_INDEXER_WARMUP;
}

/* ---- views ---------------------------------------------------------------------- */

typedef struct binder {
    t_params *ps;
    float *base;
    bool skip_frozen;           /* frozen tensors get NULL views */
} binder;

static float *at(const binder *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static float *at(const binder *b, const char *fmt, ...)
{
    char name[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    t_param *p = t_params_find(b->ps, name);
    return p && !(b->skip_frozen && p->frozen) ? b->base + p->off : NULL;
}

static void bind_mlp(const binder *b, t_mlp *m, const char *prefix)
{
    m->gate = at(b, "%s.gate_proj.weight", prefix);
    m->up = at(b, "%s.up_proj.weight", prefix);
    m->down = at(b, "%s.down_proj.weight", prefix);
}

static void bind_layer(const binder *b, const dm_config *c, int l, t_layer *L)
{
    char p[96];
    L->attn_norm = at(b, "model.layers.%d.input_layernorm.weight", l);
    L->ffn_norm = at(b, "model.layers.%d.post_attention_layernorm.weight", l);
    snprintf(p, sizeof p, "model.layers.%d.self_attn", l);
    L->q_a = at(b, "%s.q_a_proj.weight", p);
    L->q_a_norm = at(b, "%s.q_a_layernorm.weight", p);
    L->q_b = at(b, "%s.q_b_proj.weight", p);
    L->q_proj = at(b, "%s.q_proj.weight", p);
    L->kv_a = at(b, "%s.kv_a_proj_with_mqa.weight", p);
    L->kv_a_norm = at(b, "%s.kv_a_layernorm.weight", p);
    L->kv_b = at(b, "%s.kv_b_proj.weight", p);
    L->o = at(b, "%s.o_proj.weight", p);
    L->i_wq_b = at(b, "%s.indexer.wq_b.weight", p);
    L->i_wk = at(b, "%s.indexer.wk.weight", p);
    L->i_kn_w = at(b, "%s.indexer.k_norm.weight", p);
    L->i_kn_b = at(b, "%s.indexer.k_norm.bias", p);
    L->i_w = at(b, "%s.indexer.weights_proj.weight", p);
    if (!c->layer_moe[l]) {
        snprintf(p, sizeof p, "model.layers.%d.mlp", l);
        bind_mlp(b, &L->mlp, p);
    } else {
        L->router = at(b, "model.layers.%d.mlp.gate.weight", l);
        L->bias = at(b, "model.layers.%d.mlp.gate.e_score_correction_bias", l);
        L->experts = dm_calloc((size_t)c->layer_experts[l], sizeof(t_mlp));
        for (int e = 0; e < c->layer_experts[l]; e++) {
            snprintf(p, sizeof p, "model.layers.%d.mlp.experts.%d", l, e);
            bind_mlp(b, &L->experts[e], p);
        }
        snprintf(p, sizeof p, "model.layers.%d.mlp.shared_experts", l);
        bind_mlp(b, &L->shared, p);
    }
    L->enorm = at(b, "model.layers.%d.enorm.weight", l);
    L->hnorm = at(b, "model.layers.%d.hnorm.weight", l);
    L->head_norm = at(b, "model.layers.%d.shared_head.norm.weight", l);
    L->eh_proj = at(b, "model.layers.%d.eh_proj.weight", l);
}

static void bind_all(t_weights *tw, const binder *bd, const dm_config *c)
{
    const binder b = *bd;
    tw->embed = at(&b, "model.embed_tokens.weight");
    tw->final_norm = at(&b, "model.norm.weight");
    tw->lm_head = c->tie_word_embeddings ? tw->embed : at(&b, "lm_head.weight");
    int total = dm_config_total_layers(c);
    tw->layers = dm_calloc((size_t)total, sizeof(t_layer));
    for (int l = 0; l < total; l++)
        bind_layer(&b, c, l, &tw->layers[l]);
    tw->n_layers = total;
}

void t_weights_bind(t_weights *tw, const t_params *ps, const dm_config *c, float *base)
{
    const binder b = { (t_params *)ps, base, false };
    bind_all(tw, &b, c);
}

void t_weights_bind_grads(t_weights *tw, const t_params *ps, const dm_config *c)
{
    const binder b = { (t_params *)ps, ps->g, true };
    bind_all(tw, &b, c);
}

void t_weights_free(t_weights *tw)
{
    for (int l = 0; l < tw->n_layers; l++)
        free(tw->layers[l].experts);
    free(tw->layers);
    memset(tw, 0, sizeof *tw);
}
