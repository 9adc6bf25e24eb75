/* test_forward — invariants of the C forward pass that need no external
 * oracle (the PyTorch comparison is tests/model/check_reference.sh):
 *   - prefill in chunks == prefill in one call == token-by-token decode;
 *   - batched decode across sequences == each sequence decoded alone;
 *   - rolling the cache back (dm_seq_truncate) and re-decoding reproduces the logits;
 *   - the MoE observer's data is consistent: gates normalized and scaled,
 *     distinct experts, and each reported expert output equals that expert
 *     recomputed from the reported input with the reference matmul;
 *   - the MTP head gives the same logits batched and one row at a time;
 *   - bad token ids are rejected without touching the cache.
 * Runs on the "tiny" preset (every feature on) with f32 weights, precise mode. */
#include "model/forward_internal.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_SAME_MATH 2e-5   /* same arithmetic, different batching/threading */
#define TOL_OBS 1e-4         /* observer output vs float64-accumulated recomputation */


static double max_abs_diff(const float *a, const float *b, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

static dm_model *make_model(const char *preset, const char *tmp)
{
    char *dir = dm_asprintf("%s/test_forward_%s", tmp, preset);
    dm_init_opts o = { .config_json = dm_preset_find(preset)->config_json, .dtype = DM_WFMT_F32, .seed = 7,
                       .force = true };
    dm_err err;
    dm_model *m = NULL;
    if (dm_init_model(dir, &o, &err) || dm_model_load(&m, dir, &err)) {
        fprintf(stderr, "FAIL: cannot make model %s: %s\n", preset, err.msg);
        check_failures++;
    }
    free(dir);
    return m;
}

static int32_t *make_ids(int T, int V, uint64_t seed)
{
    dm_rng r;
    dm_rng_seed(&r, seed);
    int32_t *ids = dm_malloc((size_t)T * sizeof(int32_t));
    for (int i = 0; i < T; i++)
        ids[i] = (int32_t)(dm_rng_next(&r) % (uint64_t)V);
    return ids;
}

static void test_prefill_decode(dm_model *m)
{
    const int T = 37, V = m->cfg.vocab_size;
    int32_t *ids = make_ids(T, V, 1);
    float *full = dm_malloc((size_t)T * V * 4), *chunked = dm_malloc((size_t)T * V * 4);
    float *decode = dm_malloc((size_t)T * V * 4);
    dm_err err;
    dm_ctx *big = dm_ctx_new(m, 64), *small = dm_ctx_new(m, 5);
    dm_seq *s = dm_seq_new(m, 4);   /* deliberately too small: must grow */
    CHECK(dm_forward(big, s, ids, T, true, full, NULL, &err) == 0, "prefill: %s", err.msg);
    dm_seq_reset(s);
    CHECK(dm_forward(small, s, ids, T, true, chunked, NULL, &err) == 0, "chunked prefill: %s", err.msg);
    dm_seq_reset(s);
    for (int i = 0; i < T; i++)
        CHECK(dm_forward(big, s, ids + i, 1, true, decode + (size_t)i * V, NULL, &err) == 0, "decode: %s", err.msg);
    double d1 = max_abs_diff(full, chunked, (size_t)T * V), d2 = max_abs_diff(full, decode, (size_t)T * V);
    CHECK(d1 <= TOL_SAME_MATH, "chunked prefill differs from one-call prefill by %g", d1);
    CHECK(d2 <= TOL_SAME_MATH, "token-by-token decode differs from prefill by %g", d2);
    printf("  prefill vs chunked %.2g, vs decode %.2g\n", d1, d2);

    /* roll back 10 tokens and decode them again */
    dm_seq_truncate(s, T - 10);
    float *row = dm_malloc((size_t)V * 4);
    for (int i = T - 10; i < T; i++) {
        dm_forward(big, s, ids + i, 1, true, row, NULL, &err);
        double d = max_abs_diff(row, decode + (size_t)i * V, (size_t)V);
        CHECK(d <= TOL_SAME_MATH, "re-decoded position %d after truncate differs by %g", i, d);
    }
    /* a bad id fails and leaves the cache as it was */
    int32_t bad = V;
    int before = s->n_past;
    CHECK(dm_forward(big, s, &bad, 1, false, row, NULL, &err) != 0 && strstr(err.msg, "outside"),
          "out-of-range token id accepted");
    CHECK(s->n_past == before, "a failed forward changed the cache");
    free(row);
    dm_seq_free(s);
    dm_ctx_free(big);
    dm_ctx_free(small);
    free(ids);
    free(full);
    free(chunked);
    free(decode);
}

static void test_batched_decode(dm_model *m)
{
    enum { NS = 3 };
    const int V = m->cfg.vocab_size, lens[NS] = { 5, 17, 11 }, steps = 6;
    dm_err err;
    dm_ctx *ctx = dm_ctx_new(m, 32);
    dm_seq *alone[NS], *batched[NS];
    int32_t *ids[NS];
    float *a = dm_malloc((size_t)V * 4), *b = dm_malloc((size_t)NS * V * 4);
    for (int s = 0; s < NS; s++) {
        ids[s] = make_ids(lens[s] + steps, V, 100 + s);
        alone[s] = dm_seq_new(m, 64);
        batched[s] = dm_seq_new(m, 64);
        dm_forward(ctx, alone[s], ids[s], lens[s], false, NULL, NULL, &err);
        dm_forward(ctx, batched[s], ids[s], lens[s], false, NULL, NULL, &err);
    }
    double worst = 0;
    for (int t = 0; t < steps; t++) {
        int32_t next[NS];
        for (int s = 0; s < NS; s++)
            next[s] = ids[s][lens[s] + t];
        CHECK(dm_forward_batch(ctx, batched, next, NS, b, &err) == 0, "batch: %s", err.msg);
        for (int s = 0; s < NS; s++) {
            dm_forward(ctx, alone[s], &next[s], 1, false, a, NULL, &err);
            worst = fmax(worst, max_abs_diff(a, b + (size_t)s * V, (size_t)V));
        }
    }
    CHECK(worst <= TOL_SAME_MATH, "batched decode differs from separate decode by %g", worst);
    printf("  batched vs separate decode %.2g\n", worst);
    dm_seq *dup[2] = { batched[0], batched[0] };
    int32_t two[2] = { 1, 2 };
    CHECK(dm_forward_batch(ctx, dup, two, 2, b, &err) != 0, "a batch with one sequence twice was accepted");
    for (int s = 0; s < NS; s++) {
        dm_seq_free(alone[s]);
        dm_seq_free(batched[s]);
        free(ids[s]);
    }
    free(a);
    free(b);
    dm_ctx_free(ctx);
}

typedef struct obs_state {
    const dm_model *m;
    int calls;
    double worst_expert, worst_gate_sum;
    bool distinct_ok;
} obs_state;

/* Recomputes one expert's output from the observed input with float64 math. */
static double check_expert(const dm_model *m, int layer, int e, const float *x, const float *got)
{
    const dm_mlp_w *w = &m->layers[layer].moe.experts[e];
    const int I = (int)w->gate.rows, D = (int)w->gate.cols;
    float *g = dm_malloc((size_t)I * 4), *u = dm_malloc((size_t)I * 4), *y = dm_malloc((size_t)D * 4);
    dm_matmul_ref(g, x, &w->gate, 1);
    dm_matmul_ref(u, x, &w->up, 1);
    for (int i = 0; i < I; i++)
        g[i] = (float)((double)g[i] / (1.0 + exp(-(double)g[i])) * u[i]);
    dm_matmul_ref(y, g, &w->down, 1);
    double d = 0;
    for (int i = 0; i < D; i++)
        d = fmax(d, fabs((double)y[i] - got[i]) / (1.0 + fabs(y[i])));
    free(g);
    free(u);
    free(y);
    return d;
}

static void on_moe(void *user, const dm_moe_obs *o)
{
    obs_state *st = user;
    const dm_config *c = &st->m->cfg;
    st->calls++;
    for (int i = 0; i < o->T; i++) {
        double sum = 0;
        for (int k = 0; k < o->K; k++) {
            sum += o->gates[i * o->K + k];
            for (int j = 0; j < k; j++)
                if (o->selected[i * o->K + j] == o->selected[i * o->K + k])
                    st->distinct_ok = false;
            if (i % 5 == 0)
                st->worst_expert = fmax(st->worst_expert,
                                        check_expert(st->m, o->layer, o->selected[i * o->K + k], o->expert_in + (size_t)i * o->D,
                                                     o->expert_out + ((size_t)i * o->K + k) * o->D));
        }
        if (c->norm_topk_prob)
            st->worst_gate_sum = fmax(st->worst_gate_sum, fabs(sum - c->routed_scaling_factor));
    }
}

static void test_observer(dm_model *m)
{
    const int T = 21;
    int32_t *ids = make_ids(T, m->cfg.vocab_size, 9);
    obs_state st = { .m = m, .distinct_ok = true };
    dm_observer obs = { .user = &st, .moe = on_moe };
    dm_ctx *ctx = dm_ctx_new(m, 8);
    dm_ctx_set_observer(ctx, &obs);
    dm_seq *s = dm_seq_new(m, T);
    dm_err err;
    CHECK(dm_forward(ctx, s, ids, T, false, NULL, NULL, &err) == 0, "%s", err.msg);
    int moe_layers = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        moe_layers += m->cfg.layer_moe[l];
    int chunks = (T + 7) / 8;
    CHECK(st.calls == moe_layers * chunks, "observer called %d times, expected %d", st.calls, moe_layers * chunks);
    CHECK(st.distinct_ok, "an expert was selected twice for one token");
    CHECK(st.worst_gate_sum < 1e-5, "gates do not sum to routed_scaling_factor: off by %g", st.worst_gate_sum);
    CHECK(st.worst_expert < TOL_OBS, "observed expert output differs from recomputation by %g", st.worst_expert);
    printf("  observer: %d calls, expert output vs recomputation %.2g\n", st.calls, st.worst_expert);
    dm_seq_free(s);
    dm_ctx_free(ctx);
    free(ids);
}

static void test_mtp(dm_model *m)
{
    const int T = 19, V = m->cfg.vocab_size, D = m->cfg.hidden_size;
    int32_t *ids = make_ids(T, V, 5);
    float *hidden = dm_malloc((size_t)T * D * 4), *a = dm_malloc((size_t)T * V * 4), *b = dm_malloc((size_t)T * V * 4);
    dm_ctx *ctx = dm_ctx_new(m, 16);
    dm_seq *s = dm_seq_new(m, T);
    dm_err err;
    CHECK(dm_forward(ctx, s, ids, T, true, NULL, hidden, &err) == 0, "%s", err.msg);
    CHECK(dm_forward_mtp(ctx, s, hidden, ids + 1, T - 1, true, a, NULL, &err) == 0, "mtp: %s", err.msg);
    dm_seq_reset(s);
    for (int i = 0; i + 1 < T; i++)
        CHECK(dm_forward_mtp(ctx, s, hidden + (size_t)i * D, ids + i + 1, 1, true, b + (size_t)i * V, NULL, &err) == 0,
              "mtp row %d: %s", i, err.msg);
    double d = max_abs_diff(a, b, (size_t)(T - 1) * V);
    CHECK(d <= TOL_SAME_MATH, "MTP batched vs one row at a time differs by %g", d);
    printf("  mtp batched vs rows %.2g\n", d);
    dm_seq_free(s);
    dm_ctx_free(ctx);
    free(ids);
    free(hidden);
    free(a);
    free(b);
}

int main(void)
{
    const char *tmp = getenv("DM_TEST_TMP") ? getenv("DM_TEST_TMP") : "/tmp";
    dm_make_dirs(tmp);
    dm_ops_set_precise(true);
    dm_log(1, "test_forward: tiny preset, f32 weights\n");
    dm_model *m = make_model("tiny", tmp);
    if (m) {
        test_prefill_decode(m);
        test_batched_decode(m);
        test_observer(m);
        test_mtp(m);
        dm_model_free(m);
    }
    return check_finish("test_forward");
}
