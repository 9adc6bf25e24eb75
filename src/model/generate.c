/* generate — the decode loop every generating tool shares: prefill the
 * prompt in one batched forward, then one token at a time through the KV
 * cache: sample, check end-of-sequence ids and stop strings, stream text.
 * Timing separates prefill from decode, as llama.cpp reports them. */
#include "model/forward_internal.h"

#include <stdlib.h>
#include <string.h>

static bool emit(const dm_gen_request *r, const char *bytes, size_t n)
{
    return !r->emit || n == 0 || r->emit(r->user, bytes, n);
}

int dm_generate(dm_ctx *c, dm_seq *seq, const dm_tokenizer *tok, dm_sampler *s, const dm_gen_request *r,
                dm_gen_stats *st, dm_err *err)
{
    const dm_model *m = c->m;
    const int V = m->cfg.vocab_size;
    memset(st, 0, sizeof *st);
    st->n_prompt = r->n_prompt;
    st->stop = DM_STOP_LENGTH;
    if (r->n_prompt <= 0)
        return dm_errorf(err, "the prompt is empty");
    float *logits = dm_malloc((size_t)V * sizeof(float));
    dm_stop *stop = dm_stop_new(r->stop, r->n_stop);
    for (int i = 0; i < r->n_prompt; i++)
        dm_sampler_accept(s, r->prompt[i], true);

    double t0 = dm_time_sec();
    int rc = dm_forward(c, seq, r->prompt, r->n_prompt, false, logits, NULL, err);
    st->t_prefill = dm_time_sec() - t0;

    double t1 = dm_time_sec();
    char piece[256];
    for (int i = 0; rc == 0 && i < r->n_predict; i++) {
        int32_t t = dm_sampler_sample(s, logits);
        if (t < 0) {
            rc = dm_errorf(err, "no token can be sampled: every token is banned by the logit bias");
            break;
        }
        if (dm_config_is_eos(&m->cfg, t)) {
            st->stop = DM_STOP_EOS;
            break;
        }
        dm_sampler_accept(s, t, false);
        if (r->out_tokens)
            r->out_tokens[i] = t;
        st->n_gen++;
        int nb = tok ? dm_token_to_bytes(tok, t, piece, sizeof piece) : 0;
        const char *out;
        size_t out_len;
        bool hit = dm_stop_feed(stop, piece, nb > 0 ? (size_t)nb : 0, &out, &out_len);
        if (!emit(r, out, out_len)) {
            st->stop = DM_STOP_CALLER;
            break;
        }
        if (hit) {
            st->stop = DM_STOP_STRING;
            break;
        }
        if (i + 1 < r->n_predict) {
            rc = dm_forward(c, seq, &t, 1, false, logits, NULL, err);
            st->n_eval++;
        }
    }
    st->t_decode = dm_time_sec() - t1;
    if (rc == 0 && st->stop != DM_STOP_STRING && st->stop != DM_STOP_CALLER) {
        const char *out;
        size_t out_len;
        dm_stop_flush(stop, &out, &out_len);
        emit(r, out, out_len);
    }
    dm_stop_free(stop);
    free(logits);
    return rc;
}
