/* kl_teacher — the teacher side of KL evaluation and Router-KD: a teacher's
 * cached distributions, read back from a cache file (checked against the
 * request and, when the teacher is named, against the teacher itself) or
 * computed and saved. `eval kl` and `heal router` share it, so a cache made
 * by either serves the other. */
#include "eval/eval.h"

#include <math.h>
#include <string.h>

/* A cache file read back must be what the options ask for: a cache of other
 * windows or another top-k would silently answer another question. (Data and
 * --max-tokens are checked per student through the data hash.) */
static int check_cache_request(const dm_kl_cache *c, const char *cache, const dm_kl_request *q, dm_err *err)
{
    if (q->ctx && q->ctx != c->ctx)
        return dm_errorf(err, "%s: the cache has windows of %d predictions, not --ctx %d (delete it to rebuild)",
                         cache, c->ctx, q->ctx);
    if (q->top_k >= 0 && q->top_k != c->top_k) {
        char have[32] = "full distributions";
        if (c->top_k)
            snprintf(have, sizeof have, "the top %d tokens", c->top_k);
        return q->top_k ? dm_errorf(err, "%s: the cache holds %s, not --top-k %d (delete it to rebuild)", cache, have,
                                    q->top_k)
                        : dm_errorf(err, "%s: the cache holds %s, not --full (delete it to rebuild)", cache, have);
    }
    return 0;
}

/* nats: the same weights re-predict the cached log-probabilities to f32
 * rounding (~1e-6), even on another SIMD path; another checkpoint misses by
 * orders of magnitude more. */
#define TEACHER_LOGP_TOL 1e-3

/* *same: model m re-predicts the cache's first window (the actual next
 * tokens' log-probabilities) within TEACHER_LOGP_TOL. dm_model_hash covers
 * config.json and the tensor headers only, so it cannot tell two checkpoints
 * of one architecture (another seed, another training step) apart. */
static int same_predictions(const dm_model *m, const dm_kl_cache *c, bool *same, dm_err *err)
{
    int d = 0;
    while (d < c->n_docs && c->doc_start[d + 1] - c->doc_start[d] < 2)   /* windows skip such documents */
        d++;
    DM_ASSERT(d < c->n_docs);   /* a loaded cache has n_pos >= 1 predictions */
    int64_t T = c->doc_start[d + 1] - c->doc_start[d] - 1;
    T = T < c->ctx ? T : c->ctx;
    T = T < c->n_pos ? T : c->n_pos;
    const int32_t *ids = c->tokens + c->doc_start[d];
    dm_evaluator *ev = dm_evaluator_new(m, NULL, (int)T);
    int rc = dm_evaluator_logits(ev, ids, (int)T, ev->logits, err);
    *same = rc == 0;
    for (int t = 0; t < T && *same; t++) {
        const double lp = -dm_token_nll(ev->logits + (size_t)t * c->V, c->V, ids[t + 1]);
        *same = fabs(lp - c->target_logp[t]) <= TEACHER_LOGP_TOL;   /* false for NaN */
    }
    dm_evaluator_free(ev);
    return rc;
}

int dm_kl_teacher_cache(const char *teacher, const dm_docs *docs, const char *cache, const dm_kl_request *q,
                         dm_kl_cache *c, dm_err *err)
{
    if (cache && dm_path_exists(cache)) {
        if (dm_kl_cache_load(c, cache, err) || check_cache_request(c, cache, q, err))
            return -1;
        if (!strcmp(teacher, "-"))
            return 0;
        dm_model *m;
        char hash[65];
        bool same = false;
        if (dm_model_load(&m, teacher, err))
            return -1;
        int rc = dm_model_hash(m, hash, err);
        if (rc == 0 && !strcmp(hash, c->teacher_hash) && m->cfg.vocab_size == c->V &&
            m->cfg.max_position_embeddings >= c->ctx)
            rc = same_predictions(m, c, &same, err);
        dm_model_free(m);
        if (rc == 0 && !same)
            rc = dm_errorf(err, "%s: the cache was made by another teacher than %s (delete it to rebuild)", cache,
                           teacher);
        return rc;
    }
    if (!strcmp(teacher, "-"))
        return cache ? dm_errorf(err, "%s: no such cache file (TEACHER '-' needs an existing --cache)", cache)
                     : dm_errorf(err, "TEACHER '-' needs an existing --cache file");
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    int rc = dm_model_load(&m, teacher, err) || dm_tokenizer_load(&tok, teacher, err) ? -1 : 0;
    if (rc == 0) {
        const int max_pos = (int)m->cfg.max_position_embeddings;
        dm_evaluator *ev = dm_evaluator_new(m, tok, q->ctx ? q->ctx : max_pos < 512 ? max_pos : 512);
        rc = dm_kl_cache_build(ev, docs, q->top_k < 0 ? DM_KL_DEFAULT_TOP_K : q->top_k, q->max_tokens, c, err);
        dm_evaluator_free(ev);
    }
    if (rc == 0 && cache)
        rc = dm_kl_cache_save(c, cache, err);
    if (rc == 0 && cache)
        dm_log(1, "teacher distributions cached in %s\n", cache);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    return rc;
}

