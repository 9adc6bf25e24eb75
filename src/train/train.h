/* train — training GLM-MoE-DSA models in C: the parameter table (fp32 master
 * weights with HF names), the training forward and backward of every op
 * (expanded MLA with RoPE/YaRN, the DSA indexer and its distillation loss,
 * dense and MoE feed-forward with router gradients and the sequence-wise
 * balance loss, the MTP head and its loss), AdamW with warmup + cosine and
 * clipping, auxiliary-loss-free bias balancing, checkpoints with exact resume.
 *
 * Semantics (losses, stages, optimizer) are fixed by shared notes that the
 * PyTorch oracle in tests/reference/train_ref.py implements independently. */
#ifndef DM_TRAIN_H
#define DM_TRAIN_H

#include "eval/eval.h"
#include "model/model.h"

typedef enum dm_stage_mode {
    DM_STAGE_DENSE,            /* main model, dense causal attention, indexer idle */
    DM_STAGE_INDEXER_WARMUP,   /* only the indexers train, distilled toward the dense attention */
    DM_STAGE_SPARSE,           /* everything trains; attention over the indexer's top-k */
} dm_stage_mode;

#define DM_TRAIN_MAX_STAGES 8
#define DM_TRAIN_MAX_DOMAINS 8

typedef struct dm_train_stage {
    dm_stage_mode mode;
    int steps;
} dm_train_stage;

typedef struct dm_train_hparams {
    int seq_len;               /* T: tokens per window (each window holds T+1 ids) */
    int batch_seqs;            /* B: windows per step */
    int steps;                 /* total optimizer steps (sum of the stages) */
    double lr, min_lr_ratio;
    int warmup;
    double weight_decay, beta1, beta2, eps, clip;
    double mtp_weight, balance_alpha, bias_update_rate, idx_weight;
    uint64_t seed;
    int n_stages;
    dm_train_stage stages[DM_TRAIN_MAX_STAGES];
    int n_domains;             /* data mixture (empty: proportional to domain size) */
    char domain_name[DM_TRAIN_MAX_DOMAINS][32];
    double domain_weight[DM_TRAIN_MAX_DOMAINS];
    int log_every, checkpoint_every;
} dm_train_hparams;

typedef struct dm_train_config {
    char *model_json;          /* the "model" object, as config.json text */
    dm_config model;
    dm_train_hparams hp;
} dm_train_config;

/* Reads a training config: {"model": {HF config}, "train": {...}}. Every
 * field is validated; the error names the file and the field. */
int dm_train_config_load(dm_train_config *tc, const char *path, dm_err *err);
void dm_train_config_free(dm_train_config *tc);
/* The stage of a (0-based) optimizer step. */
dm_stage_mode dm_train_stage_at(const dm_train_hparams *hp, int step);

typedef struct dm_train_opts {
    const char *out_dir;       /* model directory written at the end (and checkpoints inside it) */
    const char *corpus_dir;    /* a `demolish corpus build` directory ... */
    const char *tokenizer;     /* ... with this tokenizer.json (copied into out_dir) */
    const char *data_raw;      /* or one raw little-endian uint32 token stream (tests) */
    bool resume;               /* continue from out_dir's checkpoint */
    int stop_after;            /* stop (checkpointed) after this many steps in total; 0: run to the end */
    const char *dump_dir;      /* oracle dumps (train contract), or NULL */
    const char *config_path;   /* copied into the dump as train_config.json, or NULL */
    int dump_steps;            /* steps to dump */
} dm_train_opts;

/* Trains per the config; writes out_dir (HF layout, bf16 weights,
 * tokenizer, MODEL_CARD-ready logs) atomically at the end, checkpoints on
 * the way. */
int dm_train_run(const dm_train_config *tc, const dm_train_opts *o, dm_err *err);

/* ---- Router-KD: heal a pruned model's router gates (router_kd.c) ---------------- */

typedef struct dm_heal_opts {
    const char *student_dir;    /* the pruned model (F32/BF16/F16 weights) */
    const char *out_dir;        /* the healed copy: only gate tensors differ */
    const dm_kl_cache *train;   /* teacher's top-k distributions over the KD data (dm_kl_teacher_cache) */
    const dm_kl_cache *heldout; /* ... over held-out data (same windows), or NULL: no evaluation */
    int steps, batch;           /* optimizer steps; cache windows per step */
    double lr;                  /* AdamW (β 0.9/0.999, no weight decay, clip 1) */
    int warmup;                 /* linear warmup steps, then constant */
    double tau;                 /* temperature; the loss carries τ² */
    double mtp_weight;          /* weight of the MTP head's KL (its router trains); 0: not distilled */
    bool train_bias;            /* adapt e_score_correction_bias by the balancing rule */
    double bias_rate;           /* ... its step */
    int eval_every;             /* held-out KL every N steps (0: before and after only) */
    uint64_t seed;              /* window order */
    bool force;                 /* replace out_dir */
    const char *dump_dir;       /* oracle dump of step 0 (tests), or NULL */
} dm_heal_opts;

typedef struct dm_heal_eval {
    int step;
    double kl;                  /* mean held-out KL(teacher ‖ student), τ = 1, main head */
    int64_t n;
    double kl_group[DM_EVAL_MAX_GROUPS];   /* per source of the held-out cache */
    int64_t n_group[DM_EVAL_MAX_GROUPS];
} dm_heal_eval;

typedef struct dm_heal_result {
    dm_heal_eval *evals;        /* [n_evals] in step order; evals[best] was kept */
    int n_evals, best;
    int steps_done;
    int64_t trainable_params, total_params, tokens;
    double train_loss_last, train_seconds;
} dm_heal_result;

/* Distills the student's router gates toward the teacher caches and writes
 * out_dir (atomically) with the best evaluated gates (the last ones without
 * held-out data). */
int dm_heal_router(const dm_heal_opts *o, dm_heal_result *r, dm_err *err);
void dm_heal_result_free(dm_heal_result *r);

#endif
