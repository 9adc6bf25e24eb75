/* calib — which experts and which input channels matter, measured over
 * calibration text through the forward pass's observer hooks
 * (shared/research/reap.md §1, gguf.md §3):
 *
 *   per MoE layer l (the MTP layer included) and routed expert j, over the
 *   tokens x routed to j, each token weighted by w(x):
 *     count   Σ w                 (frequency)
 *     gate    Σ w·g_j(x)          (weighted frequency)
 *     norm    Σ w·‖f_j(x)‖        (EAN: expert activation norm)
 *     gnorm   Σ w·g_j(x)·‖f_j(x)‖ (REAP numerator; REAP = gnorm / count)
 *     soft    Σ over ALL tokens of w·s'_j(x), s' = router scores / their sum (soft frequency)
 *     maxnorm max ‖f_j(x)‖
 *   f_j(x) is the expert's output before gating; g_j(x) is the gate: by
 *   default the coefficient the model really multiplies in (sigmoid, bias-
 *   corrected selection, group limits, normalized, scaled), with the model's
 *   real selection as the token set ("model"); or the Cerebras REAP code's
 *   softmax over the raw logits with top-k on the raw logits ("cerebras"),
 *   optionally renormalized over the top-k ("cerebras-renorm").
 *
 *   per linear weight (HF name), per input channel: Σ w·x² and Σ w (the
 *   imatrix; per expert for expert tensors), as llama-imatrix accumulates.
 *
 * Accumulators are kept overall (source "all") and per document source, in
 * double, and saved as safetensors with a metadata header (stats_io.c). */
#ifndef DM_CALIB_H
#define DM_CALIB_H

#include "corpus/corpus.h"
#include "model/model.h"

typedef enum dm_gate_mode { DM_GATE_MODEL, DM_GATE_CEREBRAS, DM_GATE_CEREBRAS_RENORM, DM_GATE_COUNT } dm_gate_mode;

const char *dm_gate_mode_name(dm_gate_mode g);   /* "model", "cerebras", "cerebras-renorm" */
int dm_gate_mode_parse(const char *s);            /* a dm_gate_mode, or -1 */

enum { DM_ACC_COUNT, DM_ACC_GATE, DM_ACC_NORM, DM_ACC_GNORM, DM_ACC_SOFT, DM_ACC_MAXNORM, DM_ACC_N };

#define DM_CALIB_MAX_SOURCES 16

typedef struct dm_calib_stats {
    char model_hash[65];        /* sha256 of config.json + every safetensors header */
    char data_hash[65];         /* sha256 of the calibration data (in the order given) */
    char gate_mode[24];
    int64_t tokens;             /* main-model tokens seen */
    double weight_sum;          /* Σ token weights */
    int n_runs;                 /* calibration runs merged into these stats */
    /* the router the stats were measured on (plans must keep it runnable) */
    int top_k;                  /* experts per token */
    int n_group, topk_group;    /* group-limited routing (n_group 1: none) */
    int main_layers;            /* layers before the MTP layer(s) */
    int n_layers;               /* layers, MTP included */
    int *n_experts;             /* [n_layers] routed experts, 0 for dense layers */
    size_t *layer_off;          /* [n_layers] first expert row of the layer in acc */
    size_t n_rows;              /* Σ n_experts */
    int n_sources;              /* source 0 is "all" */
    char *source[DM_CALIB_MAX_SOURCES];
    double *acc[DM_CALIB_MAX_SOURCES];   /* [n_rows][DM_ACC_N] per source */
    int n_imat;                 /* imatrix entries */
    int cap_imat;
    char **imat_name;           /* HF tensor names */
    int *imat_k;                /* input channels */
    double **imat_sum2;         /* [n_imat][k] Σ w·x² */
    double *imat_count;         /* [n_imat] Σ w */
    int *imat_slot;             /* open-addressing index of names, [imat_slots] */
    int imat_slots;
} dm_calib_stats;

/* Empty stats shaped for model m. */
void dm_calib_stats_init(dm_calib_stats *st, const dm_model *m);
void dm_calib_stats_free(dm_calib_stats *st);
/* Accumulator row of (source, layer, expert): DM_ACC_N doubles. */
double *dm_calib_acc(const dm_calib_stats *st, int source, int layer, int expert);
int dm_calib_source(dm_calib_stats *st, const char *name);   /* index, adding it if new; -1 when full */
/* Index of the imatrix entry of tensor `name` (k input channels), created if
 * new; -1 if the name exists with another width. */
int dm_calib_imat(dm_calib_stats *st, const char *name, int k);
int dm_calib_imat_find(const dm_calib_stats *st, const char *name);   /* its index, or -1 */

/* ---- calibration data ------------------------------------------------------ */

typedef struct dm_calib_doc {
    char *text;
    size_t len;
    char *source;
    int n_regions;              /* weighted byte ranges of text */
    size_t *region;             /* [n_regions][2] start, end */
    double *region_weight;      /* [n_regions] */
} dm_calib_doc;

typedef struct dm_calib_data {
    dm_calib_doc *doc;
    int n, cap;
    char hash[65];
} dm_calib_data;

/* Reads calibration records from a .jsonl file (or a corpus directory with
 * :split): each has "text" or "messages" ([{role, content}], rendered with
 * the tokenizer's chat template), an optional "source", and, when
 * weights_field is given, that field as a list of [start, end, weight] byte
 * ranges of the text whose tokens get that weight (default weight 1). */
int dm_calib_data_load(dm_calib_data *d, const char *path, const dm_tokenizer *tok, const char *weights_field,
                       dm_err *err);
/* Keeps only the documents whose source is in the comma-separated list (the
 * data hash then names the selection too); an error if none is left. */
int dm_calib_data_filter_sources(dm_calib_data *d, const char *sources, const char *where, dm_err *err);
void dm_calib_data_free(dm_calib_data *d);

/* ---- calibration -------------------------------------------------------------- */

typedef struct dm_calib_opts {
    dm_gate_mode gate;
    int ctx;                    /* window length in tokens */
    bool imatrix;               /* collect per-channel Σx² */
    bool mtp;                   /* run the MTP head too (its layer's experts are calibrated) */
    int64_t max_tokens;         /* 0: all */
    double think_close_weight;  /* tokens near </think> get this weight (1: off) */
    int think_close_window;     /* ± tokens around </think> */
} dm_calib_opts;

dm_calib_opts dm_calib_defaults(void);

/* Runs the documents through the model (windows of ctx tokens, each a fresh
 * sequence) and accumulates into st (initialized for m). */
int dm_calibrate(const dm_model *m, const dm_tokenizer *tok, const dm_calib_data *data, const dm_calib_opts *o,
                 dm_calib_stats *st, dm_err *err);

/* Generates one completion per document (its text as the prompt; up to
 * max_new tokens; temperature temp, seeded) and returns them as calibration
 * documents (source "self:<source>"), the prompt included. */
int dm_calib_self_traces(const dm_model *m, const dm_tokenizer *tok, const dm_calib_data *prompts, int n,
                         int max_new, float temp, uint64_t seed, dm_calib_data *out, dm_err *err);

/* ---- stats files (stats_io.c) ---------------------------------------------------- */

int dm_calib_save(const dm_calib_stats *st, const char *path, dm_err *err);
int dm_calib_load(dm_calib_stats *st, const char *path, dm_err *err);
/* dst += src: same model (hash and shapes) required; maxnorm takes the max. */
int dm_calib_merge(dm_calib_stats *dst, const dm_calib_stats *src, dm_err *err);

#endif
