/* sampler — logits to the next token (the fixed order is in sample.h):
 * penalties and bias on the raw logits, greedy argmax, then temperature,
 * min-p, top-k and top-p on a candidate list, and a seeded draw.
 *
 * Cost per token, V = vocabulary: one O(V) pass for the argmax and one that
 * gathers the candidates min-p lets through (no exp for the rest), keeping
 * only the top k in a bounded heap; then an exp per candidate. top-p drops
 * the tokens too light to matter and sorts only the head of the rest, in
 * doubling chunks, until the mass is reached. The history is kept as
 * per-token counts plus the list of distinct tokens, so the penalties touch
 * only tokens that occurred. Everything is allocated in dm_sampler_new;
 * nothing on the per-token path allocates. */
#include "sample/sample.h"
#include "sample/cand.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* top-p keeps the prefix whose mass reaches top_p minus this: float logits
 * cannot hold values like ln 2 exactly, so a mass tie computed by hand would
 * otherwise fall either side of top_p by ~1e-8 (see sample.h). */
#define DM_TOP_P_SLACK 1e-6
/* The window ring is allocated up front: cap it (64 MiB) so a request
 * cannot ask for an absurd allocation. */
#define DM_MAX_REPEAT_LAST_N (1 << 24)
/* top-p sorts the head of the candidate list in chunks of this size,
 * doubling; peaked distributions finish inside the first. */
#define DM_TOP_P_CHUNK 32

/* A multiset of token ids: a count per id and the list of distinct ids with
 * a non-zero count, with each id's place in that list so removal is O(1). */
typedef struct tokset {
    int32_t *cnt;   /* [V] occurrences */
    int32_t *list;  /* [V] distinct ids; the first n are valid */
    int32_t *pos;   /* [V] index of an id in list, valid while cnt > 0 */
    int n;
} tokset;

struct dm_sampler {
    dm_sampler_params p;   /* p.bias points at bias */
    dm_logit_bias *bias;   /* [p.n_bias] own copy */
    int32_t *hes;          /* [p.n_hesitation] own copy, sorted, distinct */
    int V;
    double min_p_log;      /* ln(min_p); -inf when min-p is off */
    dm_rng rng;
    tokset rep;            /* tokens in the repetition-penalty scope */
    tokset out;            /* output tokens, for presence/frequency */
    int32_t *ring;         /* [win] last tokens when the scope is a window */
    int win;               /* window size; < 0: unbounded, 0: empty */
    int ring_head, ring_len;
    float *scratch;        /* [V] logits copy for dm_sampler_probs */
    dm_cand *cand;         /* [V] candidate list */
};

/* ---- token multisets --------------------------------------------------- */

static void tokset_init(tokset *t, int V)
{
    t->cnt = dm_calloc((size_t)V, sizeof *t->cnt);
    t->list = dm_malloc((size_t)V * sizeof *t->list);
    t->pos = dm_malloc((size_t)V * sizeof *t->pos);
    t->n = 0;
}

static void tokset_free(tokset *t)
{
    free(t->cnt);
    free(t->list);
    free(t->pos);
}

static void tokset_add(tokset *t, int32_t id)
{
    if (t->cnt[id]++ == 0) {
        t->pos[id] = t->n;
        t->list[t->n++] = id;
    }
}

static void tokset_remove(tokset *t, int32_t id)
{
    DM_ASSERT(t->cnt[id] > 0);
    if (--t->cnt[id] == 0) {
        int32_t last = t->list[--t->n];
        t->list[t->pos[id]] = last;
        t->pos[last] = t->pos[id];
    }
}

/* O(distinct ids), not O(V). */
static void tokset_clear(tokset *t)
{
    for (int i = 0; i < t->n; i++)
        t->cnt[t->list[i]] = 0;
    t->n = 0;
}

/* ---- parameters and lifetime -------------------------------------------- */

dm_sampler_params dm_sampler_defaults(void)
{
    return (dm_sampler_params){
        .temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0.0f,
        .repeat_penalty = 1.0f, .repeat_scope = DM_REP_SCOPE_ALL, .repeat_last_n = 64,
        .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
        .bias = NULL, .n_bias = 0, .seed = 0,
        .hesitation_penalty = 0.0f, .hesitation_ids = NULL, .n_hesitation = 0,
    };
}

/* Checks the bias list: ids in range, biases a number below +inf. */
static int check_bias(const dm_sampler_params *p, int n_vocab, dm_err *err)
{
    if (p->n_bias < 0 || (p->n_bias > 0 && !p->bias))
        return dm_errorf(err, "sampler: bias list of %d entries is invalid", p->n_bias);
    for (int i = 0; i < p->n_bias; i++) {
        const dm_logit_bias *b = &p->bias[i];
        if (b->token < 0 || b->token >= n_vocab)
            return dm_errorf(err, "sampler: bias token %d is outside the vocabulary [0, %d)",
                             (int)b->token, n_vocab);
        if (isnan(b->bias) || b->bias == INFINITY)
            return dm_errorf(err, "sampler: bias %g for token %d is not allowed (NaN or +inf)",
                             (double)b->bias, (int)b->token);
    }
    return 0;
}

/* Checks the hesitation penalty: λ finite and >= 0, ids in range. */
static int check_hesitation(const dm_sampler_params *p, int n_vocab, dm_err *err)
{
    if (!(p->hesitation_penalty >= 0) || isinf(p->hesitation_penalty))
        return dm_errorf(err, "sampler: hesitation_penalty %g must be finite and >= 0",
                         (double)p->hesitation_penalty);
    if (p->n_hesitation < 0 || (p->n_hesitation > 0 && !p->hesitation_ids))
        return dm_errorf(err, "sampler: hesitation list of %d ids is invalid", p->n_hesitation);
    for (int i = 0; i < p->n_hesitation; i++)
        if (p->hesitation_ids[i] < 0 || p->hesitation_ids[i] >= n_vocab)
            return dm_errorf(err, "sampler: hesitation token %d is outside the vocabulary [0, %d)",
                             (int)p->hesitation_ids[i], n_vocab);
    return 0;
}

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Copies ids[n] into s->hes sorted and without repeats; sets p.n_hesitation. */
static void copy_hesitation(dm_sampler *s, const int32_t *ids, int n)
{
    s->hes = dm_malloc((size_t)(n > 0 ? n : 1) * sizeof *s->hes);
    if (n > 0)
        memcpy(s->hes, ids, (size_t)n * sizeof *s->hes);
    qsort(s->hes, (size_t)n, sizeof *s->hes, cmp_i32);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || s->hes[m - 1] != s->hes[i])
            s->hes[m++] = s->hes[i];
    s->p.hesitation_ids = s->hes;
    s->p.n_hesitation = m;
}

int dm_sampler_params_check(const dm_sampler_params *p, int n_vocab, dm_err *err)
{
    if (n_vocab <= 0)
        return dm_errorf(err, "sampler: vocabulary size %d is not positive", n_vocab);
    if (!(p->temperature >= 0) || isinf(p->temperature))
        return dm_errorf(err, "sampler: temperature %g must be finite and >= 0",
                         (double)p->temperature);
    if (p->top_k < 0)
        return dm_errorf(err, "sampler: top_k %d is negative", p->top_k);
    if (!(p->top_p >= 0 && p->top_p <= 1))
        return dm_errorf(err, "sampler: top_p %g is outside [0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0 && p->min_p <= 1))
        return dm_errorf(err, "sampler: min_p %g is outside [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0) || isinf(p->repeat_penalty))
        return dm_errorf(err, "sampler: repeat_penalty %g must be finite and > 0",
                         (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return dm_errorf(err, "sampler: presence/frequency penalties must be finite");
    if (p->repeat_scope == DM_REP_SCOPE_WINDOW && p->repeat_last_n > DM_MAX_REPEAT_LAST_N)
        return dm_errorf(err, "sampler: repeat_last_n %d exceeds %d (use -1 for the whole history)",
                         p->repeat_last_n, DM_MAX_REPEAT_LAST_N);
    if ((unsigned)p->repeat_scope > (unsigned)DM_REP_SCOPE_OUTPUT)
        return dm_errorf(err, "sampler: unknown repetition scope %d", (int)p->repeat_scope);
    if (check_bias(p, n_vocab, err))
        return -1;
    return check_hesitation(p, n_vocab, err);
}

dm_sampler *dm_sampler_new(const dm_sampler_params *p, int n_vocab)
{
    if (dm_sampler_params_check(p, n_vocab, NULL) != 0)
        return NULL;
    dm_sampler *s = dm_calloc(1, sizeof *s);
    s->p = *p;
    s->V = n_vocab;
    s->bias = dm_malloc((size_t)p->n_bias * sizeof *s->bias);
    if (p->n_bias > 0)
        memcpy(s->bias, p->bias, (size_t)p->n_bias * sizeof *s->bias);
    s->p.bias = s->bias;
    copy_hesitation(s, p->hesitation_ids, p->n_hesitation);
    s->min_p_log = p->min_p > 0 ? log((double)p->min_p) : -INFINITY;
    tokset_init(&s->rep, n_vocab);
    tokset_init(&s->out, n_vocab);
    s->win = p->repeat_scope == DM_REP_SCOPE_WINDOW ? p->repeat_last_n : -1;
    if (s->win > 0)
        s->ring = dm_malloc((size_t)s->win * sizeof *s->ring);
    s->scratch = dm_malloc((size_t)n_vocab * sizeof *s->scratch);
    s->cand = dm_malloc((size_t)n_vocab * sizeof *s->cand);
    dm_rng_seed(&s->rng, p->seed);
    return s;
}

void dm_sampler_free(dm_sampler *s)
{
    if (!s)
        return;
    tokset_free(&s->rep);
    tokset_free(&s->out);
    free(s->bias);
    free(s->hes);
    free(s->ring);
    free(s->scratch);
    free(s->cand);
    free(s);
}

void dm_sampler_reset(dm_sampler *s)
{
    tokset_clear(&s->rep);
    tokset_clear(&s->out);
    s->ring_head = s->ring_len = 0;
    dm_rng_seed(&s->rng, s->p.seed);
}

/* ---- history ----------------------------------------------------------- */

/* WINDOW scope: the ring holds the last `win` tokens; the one pushed out
 * leaves the repetition set. */
static void window_push(dm_sampler *s, int32_t token)
{
    if (s->win < 0) {
        tokset_add(&s->rep, token);
        return;
    }
    if (s->win == 0)
        return;
    if (s->ring_len == s->win)
        tokset_remove(&s->rep, s->ring[s->ring_head]);   /* full: head is the oldest */
    else
        s->ring_len++;
    s->ring[s->ring_head] = token;
    s->ring_head = (s->ring_head + 1) % s->win;
    tokset_add(&s->rep, token);
}

void dm_sampler_accept(dm_sampler *s, int32_t token, bool is_prompt)
{
    DM_ASSERT(token >= 0 && token < s->V);
    if (!is_prompt)
        tokset_add(&s->out, token);
    switch (s->p.repeat_scope) {
    case DM_REP_SCOPE_ALL:
        tokset_add(&s->rep, token);
        break;
    case DM_REP_SCOPE_WINDOW:
        window_push(s, token);
        break;
    case DM_REP_SCOPE_OUTPUT:
        if (!is_prompt)
            tokset_add(&s->rep, token);
        break;
    }
}

/* ---- the transforms ---------------------------------------------------- */

/* Step 1, in place on l[V]: the repetition penalty once per distinct token
 * in scope (ℓ>0: ℓ/r, ℓ<0: ℓ·r, 0 stays), presence/frequency over output
 * counts, then the bias list in order, then λ off each hesitation id. */
static void apply_penalties(const dm_sampler *s, float *l)
{
    const float r = s->p.repeat_penalty;
    if (r != 1.0f) {
        for (int i = 0; i < s->rep.n; i++) {
            int32_t t = s->rep.list[i];
            if (l[t] > 0)
                l[t] /= r;
            else if (l[t] < 0)
                l[t] *= r;
        }
    }
    const double fp = s->p.frequency_penalty, pp = s->p.presence_penalty;
    if (fp != 0 || pp != 0) {
        for (int i = 0; i < s->out.n; i++) {
            int32_t t = s->out.list[i];
            l[t] = (float)((double)l[t] - fp * s->out.cnt[t] - pp);
        }
    }
    for (int i = 0; i < s->p.n_bias; i++)
        l[s->bias[i].token] += s->bias[i].bias;
    if (s->p.hesitation_penalty != 0.0f)
        for (int i = 0; i < s->p.n_hesitation; i++)
            l[s->hes[i]] -= s->p.hesitation_penalty;
}

/* The first index of the largest logit (NaN never wins); -1 when every
 * logit is -inf or NaN. */
static int32_t argmax(const float *l, int V)
{
    int32_t best = -1;
    float bl = -INFINITY;
    for (int i = 0; i < V; i++) {
        if (l[i] > bl) {
            bl = l[i];
            best = i;
        }
    }
    return best;
}

/* Steps 3-5: gathers into s->cand the tokens with p >= min_p·p_max under
 * temperature T, i.e. (ℓ - ℓmax)/T >= ln(min_p), without computing any
 * exp; -inf and NaN logits never enter. With top-k on, only the k first
 * survive, kept in a bounded heap as they stream past. Returns how many. */
static int gather(dm_sampler *s, const float *l, float lmax)
{
    const double min_d = (double)s->p.temperature * s->min_p_log;   /* -inf when off */
    const int k = s->p.top_k > 0 && s->p.top_k < s->V ? s->p.top_k : 0;
    dm_cand *c = s->cand;
    int n = 0;
    for (int i = 0; i < s->V; i++) {
        if (!(l[i] > -INFINITY && (double)l[i] - lmax >= min_d))
            continue;
        dm_cand x = { .w = 0, .l = l[i], .id = i };
        if (k)
            dm_cand_heap_offer(c, &n, k, x);
        else
            c[n++] = x;
    }
    return n;
}

/* Weights exp((ℓ - ℓmax)/T) of c[0..n); returns their sum. */
static double weigh(dm_cand *c, int n, float lmax, double T)
{
    double sum = 0;
    for (int i = 0; i < n; i++) {
        c[i].w = exp(((double)c[i].l - lmax) / T);
        sum += c[i].w;
    }
    return sum;
}

/* Step 6: sorts the head of c[0..n) just far enough to find the shortest
 * prefix whose weight reaches (top_p - slack) of *wsum. Returns the prefix
 * length (>= 1) and leaves its weight in *wsum. */
static int nucleus(dm_cand *c, int n, double top_p, double *wsum)
{
    const double target = (top_p - DM_TOP_P_SLACK) * *wsum;
    /* Pre-filter: if n·w < (1 - top_p)·W, every token weighing <= w fits in
     * a tail lighter than W - target, so the prefix before it already
     * reaches the target and it cannot be in the nucleus. The top token
     * (w = 1 >= W/n) always survives. Order among survivors is unchanged. */
    const double drop_below = (1.0 - top_p) * *wsum / n;
    int kept = 0;
    for (int i = 0; i < n; i++)
        if (!(c[i].w < drop_below))
            c[kept++] = c[i];
    n = kept;
    double cum = 0;
    int done = 0;
    for (int chunk = DM_TOP_P_CHUNK; done < n; chunk *= 2) {
        int m = n - done < chunk ? n - done : chunk;
        dm_cand_select(c + done, n - done, m);
        dm_cand_sort(c + done, m);
        for (int i = done; i < done + m; i++) {
            cum += c[i].w;
            if (cum >= target) {
                *wsum = cum;
                return i + 1;
            }
        }
        done += m;
    }
    *wsum = cum;
    return n;
}

/* Steps 1-6 on l[V] (modified): leaves the surviving tokens and their
 * weights in s->cand[0..n) and returns n, with the weight sum in *wsum.
 * n == 0: no token is possible. Greedy gives the argmax alone. */
static int build(dm_sampler *s, float *l, double *wsum)
{
    apply_penalties(s, l);
    int32_t best = argmax(l, s->V);
    if (best < 0)
        return 0;
    const double T = s->p.temperature;
    if (T == 0 || isinf(l[best])) {
        s->cand[0] = (dm_cand){ .w = 1.0, .l = l[best], .id = best };
        *wsum = 1.0;
        return 1;
    }
    int n = gather(s, l, l[best]);
    *wsum = weigh(s->cand, n, l[best], T);
    if (s->p.top_p < 1.0f)
        n = nucleus(s->cand, n, s->p.top_p, wsum);
    return n;
}

/* Step 7: one uniform draw over c[0..n) with weights summing to wsum (added
 * in the same order, so the walk ends at wsum exactly). */
static int32_t draw(dm_sampler *s, int n, double wsum)
{
    const dm_cand *c = s->cand;
    double u = dm_rng_uniform(&s->rng) * wsum;
    double acc = 0;
    for (int i = 0; i < n; i++) {
        acc += c[i].w;
        if (u < acc)
            return c[i].id;
    }
    /* u rounded up to wsum: the last token with weight takes it */
    int i = n - 1;
    while (i > 0 && c[i].w == 0)
        i--;
    return c[i].id;
}

int32_t dm_sampler_sample(dm_sampler *s, float *logits)
{
    double wsum;
    int n = build(s, logits, &wsum);
    if (n == 0)
        return -1;
    if (s->p.temperature == 0)
        return s->cand[0].id;   /* greedy uses no random numbers */
    return draw(s, n, wsum);
}

void dm_sampler_probs(dm_sampler *s, const float *logits, float *probs)
{
    memcpy(s->scratch, logits, (size_t)s->V * sizeof *logits);
    double wsum;
    int n = build(s, s->scratch, &wsum);
    memset(probs, 0, (size_t)s->V * sizeof *probs);
    for (int i = 0; i < n; i++)
        probs[s->cand[i].id] = (float)(s->cand[i].w / wsum);
}
