/* prune — expert pruning: plans (which experts each layer keeps, from
 * calibration stats and a criterion) and the byte-exact surgery that applies
 * a plan to a checkpoint (shared/research/reap.md §2–4).
 *
 * Plans: per MoE layer (the MTP layer included), the kept expert ids. Uniform
 * plans keep the same count in every layer; non-uniform plans distribute a
 * total expert budget by water-filling on layer-normalized saliency. Plan
 * files are {"<layer>": {"kept": [...], "keep": k, ...}} (what the published
 * GLM-5.2 non-uniform pruning tool reads; extra keys per layer are ours), with
 * the plan's provenance in a sidecar "<plan>.meta".
 *
 * Surgery streams the checkpoint tensor by tensor: kept experts' tensors are
 * copied byte for byte (whatever their format: bf16, FP8 + scale_inv, NVFP4 /
 * MXFP4 with their scales) under new contiguous ids, the router's gate.weight
 * rows and e_score_correction_bias are sliced, every other tensor is copied
 * verbatim, config.json gets the new counts, other files are copied. */
#ifndef DM_PRUNE_H
#define DM_PRUNE_H

#include "calib/calib.h"

typedef enum dm_criterion {
    DM_CRIT_REAP,            /* Σ g·‖f‖ / count: mean gate-weighted output norm over routed tokens */
    DM_CRIT_FREQUENCY,       /* count of routed tokens */
    DM_CRIT_EAN,             /* Σ ‖f‖ over routed tokens */
    DM_CRIT_SOFT_FREQUENCY,  /* Σ normalized router score over all tokens */
    DM_CRIT_RANDOM,          /* a seeded random score */
    DM_CRIT_COUNT
} dm_criterion;

const char *dm_criterion_name(dm_criterion c);   /* "reap", "frequency", "ean", "soft-frequency", "random" */
int dm_criterion_parse(const char *s);            /* a dm_criterion, or -1 */

typedef struct dm_plan_opts {
    dm_criterion criterion;
    uint64_t seed;            /* random criterion */
    const char *source;       /* stats source whose accumulators rank the experts ("all") */
    double keep_fraction;     /* uniform: fraction of each layer's experts kept */
    int keep_n;               /* uniform: or this many per layer (overrides the fraction) */
    bool non_uniform;
    int budget;               /* non-uniform: experts kept over all planned layers */
    int min_per_layer;        /* non-uniform bounds (0: the router's floor) */
    int max_per_layer;        /* (0: the layer's expert count) */
    bool skip_mtp;            /* leave the MTP layer out of the plan (copied untouched) */
} dm_plan_opts;

typedef struct dm_plan {
    int n_layers;             /* layers, MTP included */
    int *n_experts;           /* [n_layers] experts before pruning (0: dense) */
    int *keep;                /* [n_layers] kept (0: layer not in the plan) */
    int **kept;               /* [n_layers] ascending original ids */
    double *score_kept;       /* [n_layers] share of the layer's total score that is kept */
    char criterion[24];
    char meta[2048];          /* the sidecar's JSON (provenance), "" if none */
} dm_plan;

/* The experts to keep, from calibration stats (which carry the router's
 * geometry). Refuses what the router could not run (fewer than top-k
 * experts; groups left uneven). */
int dm_plan_make(dm_plan *p, const dm_calib_stats *st, const dm_plan_opts *o, dm_err *err);
/* The fewest experts a layer may keep under the stats' router. */
int dm_plan_floor(const dm_calib_stats *st);
int dm_plan_save(const dm_plan *p, const char *path, dm_err *err);
/* Reads a plan file (and its sidecar when present); n_layers from the file's
 * largest layer key, n_experts unknown (0) until checked against a model. */
int dm_plan_load(dm_plan *p, const char *path, dm_err *err);
void dm_plan_free(dm_plan *p);
/* Checks the plan against a model's config (dir names it in errors): the
 * layers exist and are MoE, the ids exist, every pruned layer keeps at least
 * top-k experts and, with group-limited routing, the same number per group.
 * Fills p->n_experts from the model. */
int dm_plan_check(dm_plan *p, const dm_config *c, const char *dir, dm_err *err);
/* Applies the plan as router masks on ctx (dm_ctx_set_expert_mask): the
 * unpruned model then computes what the pruned one must. */
int dm_plan_mask(const dm_plan *p, dm_ctx *ctx, const dm_model *m, dm_err *err);
/* Scores of layer l's experts under a criterion ([E]). */
void dm_plan_scores(const dm_calib_stats *st, int source, int l, dm_criterion crit, uint64_t seed, double *out);

typedef struct dm_prune_opts {
    size_t shard_bytes;       /* output shard size (0: as large as the input's largest shard) */
    bool force;               /* replace an existing output directory */
} dm_prune_opts;

/* Applies the plan to MODEL_DIR, writing OUT_DIR (atomically: it appears
 * only when complete). Peak memory is a bounded buffer, whatever the model size. */
int dm_prune(const char *model_dir, const dm_plan *plan, const char *out_dir, const dm_prune_opts *o, dm_err *err);

#endif
