/* model — GLM-MoE-DSA / DeepSeek-V3-family models from their Hugging Face
 * files: config.json parsing, weights as views into the mapped safetensors,
 * and the forward pass (MLA attention with the latent KV cache, the DSA
 * lightning indexer, dense and MoE feed-forward, the MTP head).
 *
 * Letters used in shape comments: T rows in a batch, D hidden, V vocab,
 * H attention heads, R kv_lora_rank (latent), P qk_rope_head_dim, N
 * qk_nope_head_dim, Dv v_head_dim, E routed experts of a layer, K experts per
 * token, I expert width, IH/ID indexer heads/head dim, C cached tokens.
 *
 * Architecture notes with sources: shared/research/arch.md. */
#ifndef DM_MODEL_H
#define DM_MODEL_H

#include "formats/formats.h"
#include "ops/ops.h"
#include "sample/sample.h"
#include "tokenizer/tokenizer.h"

#define DM_MAX_EOS 8

/* ---- config ------------------------------------------------------------- */

typedef enum dm_scoring { DM_SCORING_SIGMOID, DM_SCORING_SOFTMAX } dm_scoring;

typedef enum dm_topk_method {
    DM_TOPK_NOAUX_TC,              /* group score = sum of the top-2 biased scores */
    DM_TOPK_GROUP_LIMITED_GREEDY,  /* group score = max score in the group */
    DM_TOPK_GREEDY,                /* no group limit */
} dm_topk_method;

typedef struct dm_config {
    char model_type[64];        /* "glm_moe_dsa", "deepseek_v3", "deepseek_v32" */
    char architecture[96];      /* architectures[0] */
    int vocab_size;             /* V */
    int hidden_size;            /* D */
    int n_layers;               /* main decoder layers */
    int n_mtp;                  /* MTP (next-n) layers, stored as layers n_layers.. */
    int intermediate_size;      /* dense MLP width */
    int moe_intermediate_size;  /* I: routed (and per-shared) expert width */
    int n_heads;                /* H */
    int q_lora_rank;            /* 0: queries use q_proj directly */
    int kv_lora_rank;           /* R */
    int qk_nope_dim;            /* N */
    int qk_rope_dim;            /* P */
    int v_head_dim;             /* Dv */
    int qk_head_dim;            /* N + P (config.json head_dim is ignored: arch.md §1.1) */
    float rms_norm_eps;
    dm_rope rope;               /* main attention RoPE (+YaRN) */
    dm_rope index_rope;         /* indexer RoPE: same frequencies, own pair layout */
    float softmax_scale;        /* qk_head_dim^-0.5 · YaRN mscale² */
    int64_t max_position_embeddings;
    /* MoE */
    int n_routed_experts;       /* max over layers */
    int n_experts_per_tok;      /* K */
    int n_shared_experts;
    int n_group, topk_group;
    dm_scoring scoring;
    dm_topk_method topk_method;
    bool norm_topk_prob;
    float routed_scaling_factor;
    /* DSA indexer */
    bool has_indexer;
    int index_n_heads;          /* IH */
    int index_head_dim;         /* ID (first P dims are rotary) */
    int index_topk;
    bool tie_word_embeddings;
    /* per layer, n_layers + n_mtp entries */
    bool *layer_moe;            /* MoE or dense MLP */
    int *layer_experts;         /* routed experts (0 for dense layers) */
    bool *layer_index_full;     /* computes its own top-k (else reuses the last full layer's) */
    /* tokens (generation_config.json overrides config.json for eos) */
    int bos_token_id;           /* -1 if none */
    int n_eos;
    int eos_token_ids[DM_MAX_EOS];
    int pad_token_id;           /* -1 if none */
} dm_config;

/* Parses config.json text (name is used in messages). Validates every field
 * the architecture uses; unknown model types and unsupported values are
 * errors naming the field. */
int dm_config_parse(dm_config *c, const char *json, const char *name, dm_err *err);
/* Reads MODEL_DIR/config.json and, if present, generation_config.json. */
int dm_config_load(dm_config *c, const char *model_dir, dm_err *err);
void dm_config_free(dm_config *c);
int dm_config_total_layers(const dm_config *c);   /* n_layers + n_mtp */
bool dm_config_is_eos(const dm_config *c, int32_t token);   /* one of the eos ids */

/* ---- weights -------------------------------------------------------------- */

typedef struct dm_mlp_w {       /* SwiGLU: down(silu(gate·x) ⊙ up·x) */
    dm_wmat gate, up;           /* [I][D] */
    dm_wmat down;               /* [D][I] */
} dm_mlp_w;

typedef struct dm_attn_w {
    dm_wmat q_a;                /* [q_lora][D]   (q_lora_rank > 0) */
    float *q_a_norm;            /* [q_lora] */
    dm_wmat q_b;                /* [H(N+P)][q_lora] */
    dm_wmat q_proj;             /* [H(N+P)][D]   (q_lora_rank == 0) */
    dm_wmat kv_a;               /* [R+P][D] */
    float *kv_a_norm;           /* [R] */
    dm_wmat kv_b;               /* [H(N+Dv)][R]: per head N key rows then Dv value rows */
    dm_wmat o;                  /* [D][H·Dv] */
    bool has_indexer;
    dm_wmat idx_wq_b;           /* [IH·ID][q_lora] */
    dm_wmat idx_wk;             /* [ID][D] */
    float *idx_k_norm_w;        /* [ID] LayerNorm weight */
    float *idx_k_norm_b;        /* [ID] LayerNorm bias */
    dm_wmat idx_weights;        /* [IH][D] */
} dm_attn_w;

typedef struct dm_moe_w {
    int n_experts;              /* E */
    dm_wmat router;             /* [E][D] mlp.gate.weight */
    float *bias;                /* [E] e_score_correction_bias (selection only), or NULL */
    dm_mlp_w *experts;          /* [E] */
    bool has_shared;
    dm_mlp_w shared;            /* width I·n_shared_experts */
} dm_moe_w;

typedef struct dm_layer_w {
    float *attn_norm;           /* [D] input_layernorm */
    float *ffn_norm;            /* [D] post_attention_layernorm */
    dm_attn_w attn;
    bool is_moe;
    dm_mlp_w mlp;               /* dense layers */
    dm_moe_w moe;               /* MoE layers */
    /* MTP layers only */
    float *enorm, *hnorm;       /* [D] */
    float *head_norm;           /* [D] shared_head.norm */
    dm_wmat eh_proj;            /* [D][2D] */
    dm_wmat mtp_embed;          /* [V][D] own copy if the checkpoint has one, else the model's */
    dm_wmat mtp_head;           /* [V][D] likewise */
} dm_layer_w;

typedef struct dm_model {
    dm_config cfg;
    char *dir;
    dm_safetensors st;
    dm_wmat embed;              /* [V][D] */
    dm_wmat lm_head;            /* [V][D] (the embedding when tied) */
    float *final_norm;          /* [D] */
    dm_layer_w *layers;         /* [n_layers + n_mtp] */
    double *rope_inv_freq;      /* [P/2] */
    int64_t n_params;           /* logical parameter count (packed formats counted per element) */
    int64_t n_params_active;    /* parameters used per token (K routed experts) */
    int n_tensors_unused;       /* checkpoint tensors the model does not read */
    void **owned;               /* f32 copies of small tensors, aligned copies */
    int n_owned, cap_owned;
} dm_model;

/* Loads MODEL_DIR: config.json (+generation_config.json) and the safetensors
 * (mapped, not read). Every tensor the config implies is checked for
 * presence, dtype and shape; an error names the file and the tensor. */
int dm_model_load(dm_model **out, const char *dir, dm_err *err);
void dm_model_free(dm_model *m);
/* The model's identity: sha256 of config.json, every safetensors header
 * (which name every tensor, its dtype, shape and place) and the first 64
 * bytes of every tensor (so same-shaped models with other weights differ;
 * an identity, not an integrity check: one page read per tensor), as 64 hex
 * digits. Stats files and KL caches record it to refuse a mismatched model. */
int dm_model_hash(const dm_model *m, char out[65], dm_err *err);

/* Which linear map inside a layer, for observers and tensor naming. */
typedef enum dm_linear {
    DM_LIN_Q_A, DM_LIN_Q_B, DM_LIN_Q_PROJ, DM_LIN_KV_A, DM_LIN_KV_B, DM_LIN_O,
    DM_LIN_IDX_WQ_B, DM_LIN_IDX_WK, DM_LIN_IDX_WEIGHTS,
    DM_LIN_MLP_GATE, DM_LIN_MLP_UP, DM_LIN_MLP_DOWN,
    DM_LIN_ROUTER,
    DM_LIN_EXP_GATE, DM_LIN_EXP_UP, DM_LIN_EXP_DOWN,
    DM_LIN_SHEXP_GATE, DM_LIN_SHEXP_UP, DM_LIN_SHEXP_DOWN,
    DM_LIN_EH_PROJ, DM_LIN_LM_HEAD,
    DM_LIN_COUNT
} dm_linear;

/* The HF tensor name of a linear map's weight ("model.layers.3.mlp.experts.7.up_proj.weight");
 * expert is used only for DM_LIN_EXP_*. Writes at most cap bytes. */
void dm_linear_name(int layer, dm_linear which, int expert, char *buf, size_t cap);

/* ---- routing (router.c): shared by the forward pass, training and calibration ---- */

/* Routing parameters of one MoE layer. */
typedef struct dm_router_params {
    int E, K;                   /* experts in the layer, experts per token */
    int n_group, topk_group;
    dm_scoring scoring;
    dm_topk_method method;
    bool norm_topk_prob;
    float scaling;              /* routed_scaling_factor */
    const uint8_t *keep;        /* [E] 0: expert masked out (a pruning plan applied without
                                   pruning; dm_ctx_set_expert_mask), NULL: every expert */
} dm_router_params;

dm_router_params dm_router_params_for(const dm_config *c, int layer);

/* Routes one token (arch.md §4.2): scores = sigmoid/softmax(logits[E]);
 * selection on scores + bias (bias may be NULL) with group limits; gates =
 * the selected unbiased scores, normalized (norm_topk_prob) and scaled.
 * Writes scores[E], sel[K], gates[K]; tmp holds E + n_group floats. */
void dm_route_token(const dm_router_params *p, const float *logits, const float *bias, float *scores, int *sel,
                    float *gates, float *tmp);

/* ---- sequence state: the KV cache ------------------------------------------ */

/* One sequence's cache. Per layer and token: the MLA latent (R, after
 * kv_a_layernorm) and the rotated shared rope key (P) — R+P floats — plus,
 * in layers that own an indexer, the rotated indexer key (ID floats). */
typedef struct dm_seq {
    int n_ctx;                  /* capacity in tokens */
    int n_past;                 /* tokens already in the main layers' cache */
    int n_past_mtp;             /* tokens already in the MTP layers' cache */
    float **kv;                 /* [layers] -> [n_ctx][R+P] */
    float **idx_k;              /* [layers] -> [n_ctx][ID], NULL where the layer has no indexer */
    int n_layers_total;
    int kv_dim, idx_dim;
} dm_seq;

dm_seq *dm_seq_new(const dm_model *m, int n_ctx);
void dm_seq_free(dm_seq *s);
void dm_seq_reset(dm_seq *s);
/* Grows the capacity to at least n_ctx tokens (keeps the contents). */
void dm_seq_reserve(dm_seq *s, int n_ctx);
/* Drops tokens beyond n (main and MTP caches), e.g. rejected draft tokens. */
void dm_seq_truncate(dm_seq *s, int n);
size_t dm_seq_bytes_per_token(const dm_model *m);

/* ---- observers --------------------------------------------------------------
 * Hooks for calibration (REAP saliency, imatrix). NULL callbacks cost nothing:
 * the forward only fills observation buffers when a callback is set. */

typedef struct dm_moe_obs {
    int layer;                  /* 0-based; MTP layers are n_layers.. */
    int T, E, K, D, I;
    const float *router_logits; /* [T][E] W_g·f, before sigmoid/softmax */
    const float *scores;        /* [T][E] sigmoid/softmax scores (no bias) */
    const int *selected;        /* [T][K] expert ids (selection used the bias) */
    const float *gates;         /* [T][K] weights applied (normalized, scaled) */
    const float *expert_in;     /* [T][D] the MoE input f */
    const float *expert_out;    /* [T][K][D] each selected expert's output before gating */
    const int *positions;       /* [T] positions of the rows */
    const int *row_ids;         /* [T] index of each row in the caller's batch */
} dm_moe_obs;

typedef struct dm_observer {
    void *user;
    /* Called once per MoE layer per forward call. */
    void (*moe)(void *user, const dm_moe_obs *obs);
    /* Called with the input rows x[T][K] of every linear map, before the
     * product; expert is the routed expert (DM_LIN_EXP_*) or -1. rows[i] is
     * the batch row (index into the forward call's rows) input row i belongs
     * to — expert inputs come grouped by expert — or NULL when input row i is
     * batch row first_row + i (rows in order; first_row is 0 except for the
     * output head of a call that wants only the last row). */
    void (*linear_in)(void *user, int layer, dm_linear which, int expert, const float *x, int T, int K,
                      const int *rows, int first_row);
} dm_observer;

/* ---- the forward pass ------------------------------------------------------ */

typedef struct dm_ctx dm_ctx;

/* Workspace for batches of up to max_batch rows (longer inputs run in chunks).
 * All scratch is allocated here, none in the per-token path. */
dm_ctx *dm_ctx_new(const dm_model *m, int max_batch);
void dm_ctx_free(dm_ctx *c);
void dm_ctx_set_observer(dm_ctx *c, const dm_observer *obs);   /* NULL: none */
/* Dense attention: ignore the DSA indexer's selection (every causal key is
 * attended). For measuring what the sparse attention costs. */
void dm_ctx_set_dense_attention(dm_ctx *c, bool dense);
/* Masks experts out of layer l's router, as if pruned: they are never
 * selected and (softmax scoring) leave the normalization. keep[E]: nonzero
 * to keep; NULL removes the mask. The reference the pruned checkpoint must
 * reproduce (tests/prune/). */
void dm_ctx_set_expert_mask(dm_ctx *c, int layer, const uint8_t *keep);

/* Runs tokens[T] through the main model at positions seq->n_past.. and
 * appends them to the cache (batched prefill, or decode when T = 1).
 * logits: [T][V] when all_rows, else [1][V] for the last row; may be NULL.
 * hidden: the final hidden states (after model.norm), same rows; may be NULL.
 * Fails (nothing appended) on out-of-range token ids or a full cache. */
int dm_forward(dm_ctx *c, dm_seq *seq, const int32_t *tokens, int T, bool all_rows,
               float *logits, float *hidden, dm_err *err);

/* Batched decode across sequences: row i appends tokens[i] to seqs[i]
 * (distinct sequences). logits [n][V], may be NULL. */
int dm_forward_batch(dm_ctx *c, dm_seq **seqs, const int32_t *tokens, int n, float *logits, dm_err *err);

/* The MTP head (first next-n layer): row i combines the main model's final
 * hidden state at position seq->n_past_mtp + i (hidden[T][D]) with the
 * token at the next position (next_tokens[T]), runs the MTP decoder layer at
 * that position (appending to the MTP cache) and predicts the token after.
 * logits: [T][V] or [1][V] (all_rows false); hidden_out: the layer output
 * before shared_head.norm (for chained drafts), same rows; both may be NULL. */
int dm_forward_mtp(dm_ctx *c, dm_seq *seq, const float *hidden, const int32_t *next_tokens, int T,
                   bool all_rows, float *logits, float *hidden_out, dm_err *err);

/* ---- the tensors a config implies (tensors.c) ------------------------------- */

typedef enum dm_tensor_role {
    DM_TENSOR_LINEAR,       /* a Linear weight [rows][cols] */
    DM_TENSOR_EMBED,        /* model.embed_tokens [V][D] */
    DM_TENSOR_HEAD,         /* lm_head [V][D] */
    DM_TENSOR_ROUTER,       /* mlp.gate.weight [E][D] */
    DM_TENSOR_NORM,         /* a norm weight [rows] */
    DM_TENSOR_BIAS,         /* a bias [rows] (indexer k_norm) */
    DM_TENSOR_ROUTER_BIAS,  /* e_score_correction_bias [E]: selection only, never trained by gradient */
} dm_tensor_role;

typedef struct dm_tensor_spec {
    char name[192];         /* HF name, ".weight" included */
    dm_tensor_role role;
    int layer;              /* -1 for embedding, final norm, lm_head */
    int expert;             /* routed expert id, -1 otherwise */
    int64_t rows, cols;     /* cols 0 for vectors */
    bool quantizable;       /* real releases quantize it (attention, MLPs, experts) */
    bool indexer;           /* part of a DSA indexer */
    bool residual_out;      /* writes into the residual stream (o_proj, down_proj) */
} dm_tensor_spec;

/* Every tensor of a model with this config, in checkpoint order. Returns
 * the count; *out is malloc'd. */
int dm_tensor_specs(const dm_config *c, dm_tensor_spec **out);

/* ---- random models: `demolish init` ----------------------------------------- */

typedef struct dm_preset {
    const char *name;
    const char *summary;
    const char *config_json;    /* config.json text (token ids are filled in by init) */
} dm_preset;

const dm_preset *dm_preset_find(const char *name);
const dm_preset *dm_preset_list(int *n);

typedef struct dm_init_opts {
    const char *config_json;    /* config.json text (a preset's or a user's) */
    dm_wfmt dtype;              /* format of the Linear weights that real releases quantize */
    uint64_t seed;
    size_t shard_bytes;         /* 0: a single model.safetensors */
    bool force;                 /* replace an existing output directory */
} dm_init_opts;

/* Writes the JSON files of a model directory besides weights and tokenizer:
 * config.json (config_json with eos/pad ids from the tokenizer's GLM special
 * tokens when it has none), generation_config.json, tokenizer_config.json. */
int dm_write_model_files(const char *dir, const char *config_json, const dm_tokenizer *tok, dm_err *err);

/* Writes a complete random-weight model directory (config.json,
 * generation_config.json, tokenizer.json, tokenizer_config.json, safetensors)
 * atomically: it appears under out_dir only when complete. Weights are
 * generated tensor by tensor (plain formats in row chunks), so memory stays
 * bounded by the largest quantized tensor, whatever the model size. */
int dm_init_model(const char *out_dir, const dm_init_opts *o, dm_err *err);

/* ---- generation ------------------------------------------------------------- */

typedef enum dm_stop_reason {
    DM_STOP_LENGTH,             /* n_predict tokens generated */
    DM_STOP_EOS,                /* an end-of-sequence token (not emitted) */
    DM_STOP_STRING,             /* a stop string appeared (not emitted) */
    DM_STOP_CALLER,             /* the emit callback asked to stop */
} dm_stop_reason;

typedef struct dm_gen_stats {
    int n_prompt, n_gen;
    int n_eval;                 /* single-token forward passes in the decode phase */
    double t_prefill, t_decode; /* seconds */
    dm_stop_reason stop;
} dm_gen_stats;

/* Receives generated text as it becomes final (stop strings held back).
 * Return false to stop generating. */
typedef bool (*dm_gen_emit)(void *user, const char *bytes, size_t n);

typedef struct dm_gen_request {
    const int32_t *prompt;
    int n_prompt;
    int n_predict;              /* max new tokens */
    const char *const *stop;    /* stop strings */
    int n_stop;
    dm_gen_emit emit;           /* may be NULL */
    void *user;
    int32_t *out_tokens;        /* [n_predict] generated ids, or NULL */
} dm_gen_request;

/* Prefills the prompt into seq (appending at seq->n_past), then samples up
 * to n_predict tokens, stopping at the config's eos ids and stop strings. */
int dm_generate(dm_ctx *c, dm_seq *seq, const dm_tokenizer *tok, dm_sampler *s, const dm_gen_request *r,
                dm_gen_stats *st, dm_err *err);

/* ---- batched generation (generate_batch.c) ------------------------------------
 * Many independent generations decoded together: each step runs one
 * dm_forward_batch over every active sequence, so each expert's weights are
 * read once per step for all the rows routed to it. A finished sequence's
 * slot takes the next job at once (continuous batching). Token ids only: no
 * text, no stop strings. */

typedef struct dm_gen_job {
    const int32_t *prompt;      /* [n_prompt], n_prompt >= 1 */
    int n_prompt;
    int n_predict;              /* token cap, >= 1 */
    dm_sampler *sampler;        /* the job's own sampler (fresh: it sees the prompt here) */
    int32_t *out_tokens;        /* [n_predict] */
    void *user;                 /* the caller's */
    int n_gen;                  /* filled in: tokens generated */
    dm_stop_reason stop;        /* filled in: DM_STOP_EOS or DM_STOP_LENGTH */
} dm_gen_job;

typedef struct dm_gen_queue {
    void *user;
    /* The next job, or NULL when there are none left. Jobs are taken in
     * order, one per free slot, lowest slot first. */
    dm_gen_job *(*next)(void *user);
    /* A job has finished (called in completion order). Nonzero (with err
     * filled) stops the whole run. */
    int (*finished)(void *user, dm_gen_job *job, dm_err *err);
} dm_gen_queue;

typedef struct dm_gen_batch_stats {
    int64_t jobs, prompt_tokens, gen_tokens;
    int64_t steps;              /* batched decode forwards */
    double t_prefill, t_decode; /* seconds (sampling counts as decode) */
} dm_gen_batch_stats;

/* Runs every job of q with up to max_active sequences in flight (max_active
 * <= the ctx's max_batch). Results depend on the seeds and on max_active
 * (the batch composition changes float rounding, nothing else); with
 * max_active = 1 each job gets exactly dm_generate's tokens. st may be NULL. */
int dm_generate_batch(dm_ctx *c, int max_active, const dm_gen_queue *q, dm_gen_batch_stats *st, dm_err *err);

#endif
