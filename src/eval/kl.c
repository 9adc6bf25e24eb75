/* kl — KL divergence of a student to its teacher (`demolish eval kl`): the
 * teacher's distributions are computed once into a cache (dm_kl_cache_build,
 * saved by kl_cache_io.c), then each student is scored at the same
 * positions (dm_kl_eval). See eval.h for what is measured.
 *
 * Positions are the predictions of dm_eval_docs: every framed document cut
 * into non-overlapping windows of ctx predictions, each a fresh sequence.
 * Per-row work (log-softmax, top-k, KL) is done in double, rows in parallel;
 * sums are taken in position order, so results do not depend on threads. */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- windows over the cached token stream ---- */

bool dm_kl_next_window(const dm_kl_cache *c, dm_kl_window *w)
{
    if (!w->started) {
        w->started = true;
        w->start = c->n_docs ? c->doc_start[0] : 0;
    } else {
        w->pos += w->T;
        w->start += w->T;
    }
    for (; w->doc < c->n_docs; w->doc++) {
        const int64_t end = c->doc_start[w->doc + 1];
        if (w->start < c->doc_start[w->doc])
            w->start = c->doc_start[w->doc];
        if (w->start + 1 < end) {
            int64_t left = end - 1 - w->start, cap = c->n_pos - w->pos;
            int64_t T = left < c->ctx ? left : c->ctx;
            if (T > cap)
                T = cap;
            w->T = (int)T;
            return T > 0;
        }
    }
    return false;
}

/* ---- one row ---- */

/* log Σ exp(x) in double, and the argmax (the first of equal maxima). */
static double log_sum_exp(const float *x, int V, int *argmax)
{
    int am = 0;
    for (int j = 1; j < V; j++)
        if (x[j] > x[am])
            am = j;
    double s = 0;
    for (int j = 0; j < V; j++)
        s += exp((double)x[j] - x[am]);
    if (argmax)
        *argmax = am;
    return x[am] + log(s);
}

static int cmp_int32(const void *a, const void *b) { return *(const int32_t *)a - *(const int32_t *)b; }

/* Σ exp(x_j − lse) over the j not among ids[k] (sorted ascending in tmp). */
static double mass_outside(const float *x, int V, double lse, const int32_t *ids, int k, int32_t *tmp)
{
    memcpy(tmp, ids, (size_t)k * sizeof *tmp);
    qsort(tmp, (size_t)k, sizeof *tmp, cmp_int32);
    double s = 0;
    int i = 0;
    for (int j = 0; j < V; j++) {
        if (i < k && tmp[i] == j) {
            i++;
            continue;
        }
        s += exp((double)x[j] - lse);
    }
    return s;
}

/* "a ranks above b": larger logit, then lower id. */
static bool above(const float *x, int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); }

/* The k highest logits' ids, best first: a min-heap of the best k so far. */
static void top_k(const float *x, int V, int k, int32_t *out)
{
    int n = 0;
    for (int32_t j = 0; j < V; j++) {
        int i;
        if (n < k) {
            i = n++;
            while (i > 0 && above(x, out[(i - 1) / 2], j)) {   /* sift up: parent must be the worse one */
                out[i] = out[(i - 1) / 2];
                i = (i - 1) / 2;
            }
            out[i] = j;
            continue;
        }
        if (!above(x, j, out[0]))
            continue;
        i = 0;   /* replace the worst, sift down */
        for (;;) {
            int c = 2 * i + 1;
            if (c >= n)
                break;
            if (c + 1 < n && above(x, out[c], out[c + 1]))
                c++;
            if (!above(x, j, out[c]))
                break;
            out[i] = out[c];
            i = c;
        }
        out[i] = j;
    }
    for (int end = n - 1; end > 0; end--) {   /* heap sort: worst to the back */
        int32_t t = out[0];
        out[0] = out[end];
        out[end] = t;
        for (int i = 0;;) {
            int c = 2 * i + 1;
            if (c >= end)
                break;
            if (c + 1 < end && above(x, out[c], out[c + 1]))
                c++;
            if (!above(x, out[i], out[c]))
                break;
            t = out[i];
            out[i] = out[c];
            out[c] = t;
            i = c;
        }
    }
}

/* The teacher's row at position p of the cache. */
static void teacher_row(dm_kl_cache *c, int64_t p, const float *x, int32_t target, int32_t *tmp)
{
    const int V = c->V, k = c->top_k;
    const double lse = log_sum_exp(x, V, NULL);
    c->target_logp[p] = (float)((double)x[target] - lse);
    if (k == 0) {
        float *lp = c->logp + (size_t)p * V;
        for (int j = 0; j < V; j++)
            lp[j] = (float)((double)x[j] - lse);
        return;
    }
    int32_t *ids = c->top_id + (size_t)p * k;
    top_k(x, V, k, ids);
    for (int i = 0; i < k; i++)
        c->logp[(size_t)p * k + i] = (float)((double)x[ids[i]] - lse);
    const double other = mass_outside(x, V, lse, ids, k, tmp);
    c->other_logp[p] = other > 0 ? (float)log(other) : -INFINITY;
}

typedef struct row_result {
    double kl, nll_student;
    bool agree;
} row_result;

/* The student's row x at cached position p. */
static row_result student_row(const dm_kl_cache *c, int64_t p, const float *x, int32_t target, int32_t *tmp)
{
    const int V = c->V, k = c->top_k;
    int am;
    const double lse = log_sum_exp(x, V, &am);
    row_result r = { 0, lse - x[target], false };
    if (k == 0) {
        const float *lp = c->logp + (size_t)p * V;
        int tam = 0;
        for (int j = 0; j < V; j++) {
            if (lp[j] > lp[tam])
                tam = j;
            if (lp[j] > -INFINITY)
                r.kl += exp((double)lp[j]) * ((double)lp[j] - ((double)x[j] - lse));
        }
        r.agree = am == tam;
        return r;
    }
    const int32_t *ids = c->top_id + (size_t)p * k;
    const float *lp = c->logp + (size_t)p * k;
    for (int i = 0; i < k; i++)
        if (lp[i] > -INFINITY)   /* p = 0 adds nothing (0 · -inf would be NaN) */
            r.kl += exp((double)lp[i]) * ((double)lp[i] - ((double)x[ids[i]] - lse));
    const double lo = c->other_logp[p];
    if (lo > -INFINITY) {
        double q = mass_outside(x, V, lse, ids, k, tmp);
        r.kl += exp(lo) * (lo - log(q > 1e-300 ? q : 1e-300));
    }
    r.agree = am == ids[0];
    return r;
}

/* ---- teacher: the cache ---- */

static int group_index(dm_kl_cache *c, const char *source, dm_err *err)
{
    if (!source[0])
        return -1;
    for (int g = 0; g < c->n_groups; g++)
        if (!strcmp(c->group[g], source))
            return g;
    if (c->n_groups == DM_EVAL_MAX_GROUPS)
        return dm_errorf(err, "more than %d distinct sources", DM_EVAL_MAX_GROUPS), -2;
    c->group[c->n_groups] = dm_strdup(source);
    return c->n_groups++;
}

/* The documents framed and concatenated; n_pos counted (capped). */
static int frame_all(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, dm_kl_cache *c, dm_err *err)
{
    size_t cap = 1024, n = 0;
    c->tokens = dm_malloc(cap * sizeof(int32_t));
    c->doc_start = dm_malloc((docs->n + 1) * sizeof(int64_t));
    c->doc_group = dm_malloc((docs->n + 1) * sizeof(int32_t));
    for (size_t d = 0; d < docs->n; d++) {
        if (max_tokens > 0 && c->n_pos >= max_tokens) {
            c->truncated = true;
            break;
        }
        int g = group_index(c, docs->doc[d].source, err);
        if (g < -1)
            return -1;
        size_t k;
        int32_t *ids = dm_eval_frame_doc(ev, &docs->doc[d], &k);
        if (n + k > cap) {
            cap = (n + k) * 2;
            c->tokens = dm_realloc(c->tokens, cap * sizeof(int32_t));
        }
        memcpy(c->tokens + n, ids, k * sizeof(int32_t));
        free(ids);
        c->doc_start[c->n_docs] = (int64_t)n;
        c->doc_group[c->n_docs++] = g;
        n += k;
        c->n_pos += k > 1 ? (int64_t)k - 1 : 0;
    }
    c->doc_start[c->n_docs] = (int64_t)n;
    if (max_tokens > 0 && c->n_pos > max_tokens) {
        c->n_pos = max_tokens;
        c->truncated = true;
    }
    for (size_t i = 0; i < n; i++)
        if (c->tokens[i] < 0 || c->tokens[i] >= c->V)
            return dm_errorf(err, "token id %d is outside the vocabulary (%d)", c->tokens[i], c->V);
    if (c->n_pos == 0)
        return dm_errorf(err, "the data has no token to predict");
    return 0;
}

/* sha256 of what the positions are: the tokens, document bounds, sources, ctx. */
static void data_identity(dm_kl_cache *c)
{
    dm_sha256_ctx h;
    dm_sha256_init(&h);
    dm_sha256_update(&h, c->tokens, (size_t)c->doc_start[c->n_docs] * sizeof(int32_t));
    dm_sha256_update(&h, c->doc_start, ((size_t)c->n_docs + 1) * sizeof(int64_t));
    dm_sha256_update(&h, c->doc_group, (size_t)c->n_docs * sizeof(int32_t));
    for (int g = 0; g < c->n_groups; g++)
        dm_sha256_update(&h, c->group[g], strlen(c->group[g]) + 1);
    const int64_t shape[2] = { c->ctx, c->n_pos };
    dm_sha256_update(&h, shape, sizeof shape);
    uint8_t dg[32];
    dm_sha256_final(&h, dg);
    dm_sha256_hex(dg, c->data_hash);
}

int dm_kl_data_hash(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, char out[65], dm_err *err)
{
    dm_kl_cache c = { .V = ev->V, .ctx = ev->ctx };
    int rc = frame_all(ev, docs, max_tokens, &c, err);
    if (rc == 0) {
        data_identity(&c);
        memcpy(out, c.data_hash, 65);
    }
    dm_kl_cache_free(&c);
    return rc;
}

int dm_kl_cache_build(dm_evaluator *ev, const dm_docs *docs, int top_k, int64_t max_tokens, dm_kl_cache *c,
                      dm_err *err)
{
    DM_ASSERT(ev->tok);
    memset(c, 0, sizeof *c);
    c->V = ev->V;
    c->ctx = ev->ctx;
    c->top_k = top_k;
    if (top_k < 0 || top_k >= c->V)
        return dm_errorf(err, "top-k %d must be between 1 and the vocabulary size - 1 (%d), or 0 for full", top_k,
                         c->V - 1);
    if (dm_model_hash(ev->model, c->teacher_hash, err) || frame_all(ev, docs, max_tokens, c, err)) {
        dm_kl_cache_free(c);
        return -1;
    }
    data_identity(c);
    const size_t row = top_k ? (size_t)top_k : (size_t)c->V;
    c->logp = dm_malloc((size_t)c->n_pos * row * sizeof(float));
    c->target_logp = dm_malloc((size_t)c->n_pos * sizeof(float));
    if (top_k) {
        c->top_id = dm_malloc((size_t)c->n_pos * top_k * sizeof(int32_t));
        c->other_logp = dm_malloc((size_t)c->n_pos * sizeof(float));
    }
    const int nt = dm_threads_get();
    int32_t *tmp = dm_malloc((size_t)nt * (top_k + 1) * sizeof(int32_t));
    dm_progress prog;
    dm_progress_begin(&prog, "teacher", "tok", c->n_pos);
    int rc = 0;
    dm_kl_window w = { 0 };
    while (rc == 0 && dm_kl_next_window(c, &w)) {
        const int32_t *ids = c->tokens + w.start;
        if ((rc = dm_evaluator_logits(ev, ids, w.T, ev->logits, err)))
            break;
        #pragma omp parallel for schedule(static)
        for (int t = 0; t < w.T; t++)
            teacher_row(c, w.pos + t, ev->logits + (size_t)t * c->V, ids[t + 1], tmp + (size_t)dm_thread_id() * (top_k + 1));
        for (int t = 0; t < w.T && rc == 0; t++)
            if (!isfinite(c->target_logp[w.pos + t]))
                rc = dm_errorf(err, "the teacher's logits are not finite at prediction %lld", (long long)(w.pos + t));
        dm_progress_update(&prog, w.pos + w.T);
    }
    dm_progress_end(&prog);
    free(tmp);
    if (rc)
        dm_kl_cache_free(c);
    return rc;
}

void dm_kl_cache_free(dm_kl_cache *c)
{
    for (int g = 0; g < c->n_groups; g++)
        free(c->group[g]);
    free(c->doc_start);
    free(c->doc_group);
    free(c->tokens);
    free(c->top_id);
    free(c->logp);
    free(c->other_logp);
    free(c->target_logp);
    memset(c, 0, sizeof *c);
}

/* ---- student: the report ---- */

static void sum_add(dm_kl_sum *s, const row_result *r, double nll_teacher)
{
    s->n++;
    s->kl += r->kl;
    s->kl2 += r->kl * r->kl;
    s->kl_max = s->n == 1 || r->kl > s->kl_max ? r->kl : s->kl_max;   /* rounding can make a KL of ~0 negative */
    s->top1_agree += r->agree;
    s->nll_teacher += nll_teacher;
    s->nll_student += r->nll_student;
    const double d = r->nll_student - nll_teacher;
    s->dnll2 += d * d;
}

static int cmp_float(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* The q-quantile of sorted[n] (linear interpolation between ranks). */
static double quantile(const float *sorted, int64_t n, double q)
{
    const double at = q * (double)(n - 1);
    const int64_t i = (int64_t)at;
    return i + 1 < n ? sorted[i] + (at - (double)i) * (sorted[i + 1] - sorted[i]) : sorted[n - 1];
}

static void percentiles(dm_kl_report *r)
{
    const int64_t n = r->total.n;
    float *s = dm_malloc((size_t)n * sizeof(float));
    memcpy(s, r->kl, (size_t)n * sizeof(float));
    qsort(s, (size_t)n, sizeof(float), cmp_float);
    r->median = quantile(s, n, 0.5);
    r->p90 = quantile(s, n, 0.9);
    r->p99 = quantile(s, n, 0.99);
    r->p999 = quantile(s, n, 0.999);
    free(s);
}

int dm_kl_eval(dm_evaluator *ev, const dm_kl_cache *c, dm_kl_report *r, dm_err *err)
{
    memset(r, 0, sizeof *r);
    if (ev->V != c->V)
        return dm_errorf(err, "the student's vocabulary (%d) differs from the teacher's (%d)", ev->V, c->V);
    if (ev->ctx < c->ctx)
        return dm_errorf(err, "the student's context (%d) is shorter than the cache's windows (%d)", ev->ctx, c->ctx);
    r->n_groups = c->n_groups;
    for (int g = 0; g < c->n_groups; g++)
        r->group[g] = dm_strdup(c->group[g]);
    r->kl = dm_malloc((size_t)c->n_pos * sizeof(float));
    row_result *rows = dm_malloc((size_t)c->ctx * sizeof(row_result));
    const int nt = dm_threads_get(), k1 = c->top_k + 1;
    int32_t *tmp = dm_malloc((size_t)nt * k1 * sizeof(int32_t));
    dm_progress prog;
    dm_progress_begin(&prog, "student", "tok", c->n_pos);
    int rc = 0;
    dm_kl_window w = { 0 };
    while (rc == 0 && dm_kl_next_window(c, &w)) {
        const int32_t *ids = c->tokens + w.start;
        if ((rc = dm_evaluator_logits(ev, ids, w.T, ev->logits, err)))
            break;
        #pragma omp parallel for schedule(static)
        for (int t = 0; t < w.T; t++)
            rows[t] = student_row(c, w.pos + t, ev->logits + (size_t)t * c->V, ids[t + 1],
                                  tmp + (size_t)dm_thread_id() * k1);
        const int g = c->doc_group[w.doc];
        for (int t = 0; t < w.T; t++) {
            if (!isfinite(rows[t].kl) || !isfinite(rows[t].nll_student)) {
                rc = dm_errorf(err, "the student's logits are not finite at prediction %lld", (long long)(w.pos + t));
                break;
            }
            const double nll_t = -(double)c->target_logp[w.pos + t];
            r->kl[w.pos + t] = (float)rows[t].kl;
            sum_add(&r->total, &rows[t], nll_t);
            if (g >= 0)
                sum_add(&r->groups[g], &rows[t], nll_t);
        }
        dm_progress_update(&prog, w.pos + w.T);
    }
    dm_progress_end(&prog);
    free(tmp);
    free(rows);
    if (rc == 0 && r->total.n != c->n_pos)
        rc = dm_errorf(err, "the cache's windows cover %lld of its %lld predictions", (long long)r->total.n,
                       (long long)c->n_pos);
    if (rc == 0)
        percentiles(r);
    else
        dm_kl_report_free(r);
    return rc;
}

void dm_kl_report_free(dm_kl_report *r)
{
    for (int g = 0; g < r->n_groups; g++)
        free(r->group[g]);
    free(r->kl);
    memset(r, 0, sizeof *r);
}

double dm_kl_mean(const dm_kl_sum *s) { return s->n ? s->kl / (double)s->n : 0; }

static double se_of(double sum, double sum2, int64_t n)
{
    if (n < 2)
        return 0;
    const double mean = sum / (double)n, var = (sum2 - mean * sum) / (double)(n - 1);
    return var > 0 ? sqrt(var / (double)n) : 0;
}

double dm_kl_mean_se(const dm_kl_sum *s) { return se_of(s->kl, s->kl2, s->n); }

double dm_kl_ppl_ratio(const dm_kl_sum *s)
{
    return s->n ? exp((s->nll_student - s->nll_teacher) / (double)s->n) : 1;
}

double dm_kl_ln_ratio_se(const dm_kl_sum *s) { return se_of(s->nll_student - s->nll_teacher, s->dnll2, s->n); }
