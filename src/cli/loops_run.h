/* loops_run — the run file of `demolish eval loops` and what `eval compare`
 * and `eval report` read back from it (CLI-internal).
 *
 * A run file is JSON lines. Line 1, the header, says how every generation
 * was made: {"type":"header","version":1,"model":PATH,"model_hash":HEX,
 * "sampler":CANONICAL_SPEC,"hesitation_words":W,"hesitation_ids":[...],
 * "seed":S,"max_tokens":M,"batch":B,"chat":C,"think_ids":[OPEN,CLOSE],"detector":{...}}.
 * Then one line per prompt: {"i":INDEX,"id":ID,"source":SRC,"prompt_tokens":N,
 * "len":..,"eos":..,"cap":..,"runaway":..,"loop":..,"loop_exact":..,
 * "loop_rep":..,"period":..,"cover":..,"tail_rep4":..,"distinct4":..,
 * "think_closed":..,"think_restarts":..,"tokens":[ids]}; prompt i was sampled
 * with seed S+i. Nothing in the file depends on time, so the same command
 * writes the same bytes. Readers recompute the metrics from "tokens", "eos"
 * and "cap" with the header's detector, so the numbers they print cannot
 * disagree with the tokens. */
#ifndef DM_CLI_LOOPS_RUN_H
#define DM_CLI_LOOPS_RUN_H

#include "eval/eval.h"

#include <cjson/cJSON.h>

#define LOOPS_RUN_VERSION 1

typedef struct loops_header {
    char *model;                /* the MODEL argument as given (informative, not compared) */
    char model_hash[65];
    char *sampler;              /* canonical sampler spec (dm_sampler_format_spec), seed = the base seed */
    char *hesitation_words;     /* "" when the penalty is off */
    int32_t *hesitation_ids;
    int n_hesitation;
    uint64_t seed;              /* prompt i uses seed + i */
    int max_tokens;
    int batch;                  /* sequences decoded together (absent in a file: 1) */
    bool chat;                  /* prompts wrapped in the chat template (thinking on) */
    int32_t think_open, think_close;   /* -1: the tokenizer has none */
    dm_loop_params det;
} loops_header;

typedef struct loops_rec {
    int64_t i;                  /* prompt index in the prompts file */
    char *id, *source;
    int n_prompt;
    dm_gen_metrics m;           /* recomputed from the tokens on reading */
} loops_rec;

typedef struct loops_run {
    char *path;
    loops_header h;
    loops_rec *rec;
    int64_t n, cap;
    int64_t valid_bytes;        /* bytes up to the end of the last complete line */
    bool partial_tail;          /* an incomplete last line was ignored (killed run) */
} loops_run;

void loops_header_free(loops_header *h);
cJSON *loops_header_json(const loops_header *h);
/* 0 when a and b would generate the same lines; else -1 naming the field. */
int loops_header_match(const loops_header *a, const loops_header *b, dm_err *err);

/* One record line (no newline), malloc'd. */
char *loops_rec_line(const loops_rec *r, const int32_t *tokens, int64_t n_tokens, bool eos, bool cap);

/* Reads a run file: the header, then every complete line (a last line cut
 * short is skipped and flagged). Fails on a bad header, a malformed complete
 * line, or a prompt index seen twice. */
int loops_run_read(const char *path, loops_run *run, dm_err *err);
void loops_run_free(loops_run *run);
/* Drops every record of prompt index >= n (n <= 0: keeps all). */
void loops_run_keep_first(loops_run *run, int64_t n);
/* The record of prompt index i, or NULL. */
const loops_rec *loops_run_find(const loops_run *run, int64_t i);
/* Aggregates every record (overall and per source) and finishes the quantiles. */
int loops_run_agg(const loops_run *run, dm_loop_agg *a, dm_err *err);

/* The rates reported for a run: numerator and denominator fields of dm_loop_counts. */
typedef struct loops_metric {
    const char *name;           /* JSON key and table column */
    size_t k_off, n_off;        /* offsetof(dm_loop_counts, ...) */
} loops_metric;
extern const loops_metric loops_metrics[];
extern const int loops_n_metrics;
/* The metric of that name (a programming error if there is none). */
const loops_metric *loops_metric_named(const char *name);
int64_t loops_metric_k(const loops_metric *mt, const dm_loop_counts *c);
int64_t loops_metric_n(const loops_metric *mt, const dm_loop_counts *c);

/* {"n":..,"loop":{"k","n","rate","lo","hi"},...,"distinct4_mean","len_median","len_p90","tokens"} */
cJSON *loops_counts_json(const dm_loop_counts *c);
/* Text: a header line and one row per counts (rate % [Wilson 95%]). */
void loops_print_table_head(FILE *f);
void loops_print_row(FILE *f, const char *name, const dm_loop_counts *c);

#endif
