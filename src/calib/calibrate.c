/* calibrate — runs calibration documents through the model with the
 * saliency and imatrix observers attached. Each document is tokenized,
 * given per-token weights (its weighted byte ranges; the </think> rule), cut
 * into windows of ctx tokens (each a fresh sequence, like `eval ppl`) and
 * run through the main model and, when the model has one, the MTP head (row
 * i: hidden state i with token i+1), so the MTP layer's experts are measured
 * like the others. */
#include "calib/calib_internal.h"

#include <stdlib.h>
#include <string.h>

static const char *const gate_names[DM_GATE_COUNT] = { "model", "cerebras", "cerebras-renorm" };

const char *dm_gate_mode_name(dm_gate_mode g) { return g >= 0 && g < DM_GATE_COUNT ? gate_names[g] : "?"; }

int dm_gate_mode_parse(const char *s)
{
    for (int i = 0; i < DM_GATE_COUNT; i++)
        if (!strcmp(s, gate_names[i]))
            return i;
    return -1;
}

dm_calib_opts dm_calib_defaults(void)
{
    dm_calib_opts o = { .gate = DM_GATE_MODEL, .ctx = 512, .imatrix = true, .mtp = true, .max_tokens = 0,
                        .think_close_weight = 1.0, .think_close_window = 4 };
    return o;
}

/* Per-token weights of a document: 1, its weighted byte ranges (a token
 * takes the weight of the last range it overlaps), times the </think> rule. */
static void token_weights(const dm_tokenizer *tok, const dm_calib_doc *doc, const int32_t *ids, int n,
                          const dm_calib_opts *o, double *w)
{
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        char buf[256];
        int b = dm_token_to_bytes(tok, ids[i], buf, sizeof buf);
        size_t end = at + (size_t)(b > 0 ? b : 0);
        w[i] = 1.0;
        for (int r = 0; r < doc->n_regions; r++)
            if (doc->region[2 * r] < end && at < doc->region[2 * r + 1])
                w[i] = doc->region_weight[r];
        at = end;
    }
    const int32_t close = dm_token_id(tok, "</think>");
    if (o->think_close_weight == 1.0 || close < 0)
        return;
    /* A token within ±window of any </think> is multiplied once, however many
     * </think> are that near (overlapping windows must not square the weight). */
    const int64_t win = o->think_close_window;
    int64_t last = INT64_MIN / 2;   /* the last </think> at or before j + win */
    int64_t ahead = 0;
    for (int j = 0; j < n; j++) {
        for (; ahead < n && ahead <= j + win; ahead++)
            if (ids[ahead] == close)
                last = ahead;
        if (last >= j - win)
            w[j] *= o->think_close_weight;
    }
}

typedef struct driver {
    const dm_model *m;
    dm_ctx *ctx;
    dm_seq *seq;
    float *hidden;              /* [ctx][D] */
    calib_run run;
} driver;

/* One window of tokens (weights w) through the main model and the MTP head. */
static int run_window(driver *dr, const int32_t *ids, const double *w, int T, bool mtp, dm_err *err)
{
    dm_seq_reset(dr->seq);
    dr->run.row_weight = w;
    if (dm_forward(dr->ctx, dr->seq, ids, T, true, NULL, mtp ? dr->hidden : NULL, err))
        return -1;
    if (!mtp || T < 2)
        return 0;
    dr->run.row_weight = w + 1;   /* MTP row i embeds token i+1 */
    return dm_forward_mtp(dr->ctx, dr->seq, dr->hidden, ids + 1, T - 1, true, NULL, NULL, err);
}

int dm_calibrate(const dm_model *m, const dm_tokenizer *tok, const dm_calib_data *data, const dm_calib_opts *o,
                 dm_calib_stats *st, dm_err *err)
{
    const dm_config *c = &m->cfg;
    if (o->ctx < 2)
        return dm_errorf(err, "calibration windows need ctx >= 2");
    if (dm_model_hash(m, st->model_hash, err))
        return -1;
    snprintf(st->data_hash, sizeof st->data_hash, "%s", data->hash);
    snprintf(st->gate_mode, sizeof st->gate_mode, "%s", dm_gate_mode_name(o->gate));
    st->n_runs = 1;
    const bool mtp = o->mtp && c->n_mtp > 0;
    driver dr = { .m = m, .ctx = dm_ctx_new(m, o->ctx), .seq = dm_seq_new(m, o->ctx) };
    dr.hidden = dm_malloc((size_t)o->ctx * c->hidden_size * sizeof(float));
    dr.run = (calib_run){ .model = m, .st = st, .gate = o->gate };
    dr.run.scratch = dm_malloc((size_t)2 * c->moe_intermediate_size * sizeof(float) + 64);
    dr.run.fbuf = dm_malloc((size_t)c->hidden_size * sizeof(float));
    dr.run.itmp = dm_malloc((size_t)c->n_experts_per_tok * sizeof(int));
    dm_observer obs = { .user = &dr.run, .moe = calib_on_moe, .linear_in = o->imatrix ? calib_on_linear : NULL };
    dm_ctx_set_observer(dr.ctx, &obs);
    dm_progress p;
    dm_progress_begin(&p, "calibrate", "docs", data->n);
    int rc = 0;
    for (int d = 0; d < data->n && rc == 0 && (o->max_tokens <= 0 || st->tokens < o->max_tokens); d++) {
        const dm_calib_doc *doc = &data->doc[d];
        dr.run.source = doc->source[0] ? dm_calib_source(st, doc->source) : 0;
        if (dr.run.source < 0) {
            rc = dm_errorf(err, "more than %d calibration sources", DM_CALIB_MAX_SOURCES - 1);
            break;
        }
        int n;
        int32_t *ids = dm_tokenize(tok, doc->text, doc->len, true, &n);
        double *w = dm_malloc((size_t)(n > 0 ? n : 1) * sizeof(double));
        token_weights(tok, doc, ids, n, o, w);
        for (int at = 0; at < n && rc == 0; at += o->ctx) {
            int T = n - at < o->ctx ? n - at : o->ctx;
            if (o->max_tokens > 0 && st->tokens + T > o->max_tokens)
                T = (int)(o->max_tokens - st->tokens);
            if (T <= 0)
                break;
            rc = run_window(&dr, ids + at, w + at, T, mtp, err);
            st->tokens += T;
            for (int i = 0; i < T; i++)
                st->weight_sum += w[at + i];
        }
        free(ids);
        free(w);
        dm_progress_update(&p, d + 1);
    }
    dm_progress_end(&p);
    dm_ctx_free(dr.ctx);
    dm_seq_free(dr.seq);
    free(dr.hidden);
    free(dr.run.scratch);
    free(dr.run.fbuf);
    free(dr.run.itmp);
    return rc;
}

int dm_calib_self_traces(const dm_model *m, const dm_tokenizer *tok, const dm_calib_data *prompts, int n,
                         int max_new, float temp, uint64_t seed, dm_calib_data *out, dm_err *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->hash, sizeof out->hash, "%s", prompts->hash);
    dm_ctx *ctx = dm_ctx_new(m, 512);
    int32_t *gen = dm_malloc((size_t)(max_new > 0 ? max_new : 1) * sizeof(int32_t));
    int rc = 0;
    dm_progress p;
    dm_progress_begin(&p, "self-traces", "completions", n < prompts->n ? n : prompts->n);
    for (int i = 0; i < n && i < prompts->n && rc == 0; i++) {
        const dm_calib_doc *doc = &prompts->doc[i];
        int np;
        int32_t *ids = dm_tokenize(tok, doc->text, doc->len, true, &np);
        dm_sampler_params sp = dm_sampler_defaults();
        sp.temperature = temp;
        sp.top_p = 0.95f;
        sp.seed = seed + (uint64_t)i;
        dm_sampler *s = dm_sampler_new(&sp, m->cfg.vocab_size);
        dm_seq *seq = dm_seq_new(m, np + max_new + 1);
        dm_gen_request req = { .prompt = ids, .n_prompt = np, .n_predict = max_new, .out_tokens = gen };
        dm_gen_stats gs;
        rc = np > 0 ? dm_generate(ctx, seq, tok, s, &req, &gs, err) : 0;
        if (rc == 0 && np > 0) {
            size_t clen;
            char *completion = dm_detokenize(tok, gen, gs.n_gen, &clen);
            if (out->n == out->cap) {
                out->cap = out->cap ? 2 * out->cap : 64;
                out->doc = dm_realloc(out->doc, (size_t)out->cap * sizeof(dm_calib_doc));
            }
            dm_calib_doc *d = &out->doc[out->n++];
            memset(d, 0, sizeof *d);
            d->text = dm_asprintf("%.*s%s", (int)doc->len, doc->text, completion);
            d->len = strlen(d->text);
            d->source = dm_asprintf("self:%s", doc->source);
            free(completion);
        }
        dm_seq_free(seq);
        dm_sampler_free(s);
        free(ids);
        dm_progress_update(&p, i + 1);
    }
    dm_progress_end(&p);
    free(gen);
    dm_ctx_free(ctx);
    if (rc)
        dm_calib_data_free(out);
    return rc;
}
