/* test_sampler_spec — the sampler additions of issue 5: the hesitation
 * penalty (exactly the listed ids lose exactly λ, once each), the guardrail
 * presets, the spec parser and its inverse (round trip bit for bit, clear
 * errors), and a fuzz of the parser with random mutations of valid specs
 * (must never crash; run under ASan/UBSan in the Sanitize build). */
#include "sample_check.h"

#define V 64
/* float32 softmax of 64 logits against a float64 one */
#define PROB_TOL 1e-6
#define FUZZ_ITERS 20000

static void test_hesitation_penalty(void)
{
    double l[V];
    float lf[V], got[V];
    for (int i = 0; i < V; i++) {
        l[i] = (float)(0.37 * ((i * 7) % 13) - 1.1);   /* exactly representable as float */
        lf[i] = (float)l[i];
    }
    const int32_t ids[] = { 5, 17, 5, 40, 17 };   /* repeats: still once each */
    const float lambda = 2.5f;
    dm_sampler_params p = dm_sampler_defaults();
    p.hesitation_penalty = lambda;
    p.hesitation_ids = ids;
    p.n_hesitation = 5;
    dm_err err;
    CHECK(dm_sampler_params_check(&p, V, &err) == 0, "check failed: %s", err.msg);
    dm_sampler *s = dm_sampler_new(&p, V);
    dm_sampler_probs(s, lf, got);
    double want_l[V], want[V];
    for (int i = 0; i < V; i++)
        want_l[i] = l[i] - ((i == 5 || i == 17 || i == 40) ? lambda : 0);
    softmax_d(want_l, NULL, V, 1.0, want);
    check_dist("hesitation penalty", got, want, V, PROB_TOL);
    /* greedy: the penalised top token gives way to the next best */
    float g[V];
    for (int i = 0; i < V; i++)
        g[i] = (float)i / V;
    g[40] = 10.0f;   /* best, penalised by 20 below */
    g[3] = 5.0f;     /* next */
    dm_sampler_free(s);
    p.temperature = 0;
    p.hesitation_penalty = 20.0f;
    s = dm_sampler_new(&p, V);
    int32_t t = dm_sampler_sample(s, g);
    CHECK(t == 3, "greedy with penalty picked %d, want 3", (int)t);
    dm_sampler_free(s);
    /* bad parameters are refused */
    p.hesitation_penalty = -1;
    CHECK(dm_sampler_params_check(&p, V, &err) != 0, "negative lambda accepted");
    p.hesitation_penalty = 1;
    const int32_t bad[] = { V };
    p.hesitation_ids = bad;
    p.n_hesitation = 1;
    CHECK(dm_sampler_params_check(&p, V, &err) != 0, "out-of-vocabulary hesitation id accepted");
}

static void test_guardrail(void)
{
    dm_err err;
    dm_sampler_params p = dm_sampler_defaults();
    p.temperature = 0.6f;
    p.repeat_scope = DM_REP_SCOPE_OUTPUT;
    CHECK(dm_sampler_guardrail(&p, "gentle", &err) == 0, "gentle: %s", err.msg);
    CHECK(p.min_p == 0.05f && p.repeat_penalty == 1.05f && p.repeat_scope == DM_REP_SCOPE_ALL && p.temperature == 0.6f,
          "gentle set min_p %g repeat %g scope %d temp %g", (double)p.min_p, (double)p.repeat_penalty,
          (int)p.repeat_scope, (double)p.temperature);
    CHECK(dm_sampler_guardrail(&p, "strong", &err) == 0, "strong: %s", err.msg);
    CHECK(p.min_p == 0.05f && p.repeat_penalty == 1.10f, "strong set min_p %g repeat %g", (double)p.min_p,
          (double)p.repeat_penalty);
    dm_sampler_params q = p;
    CHECK(dm_sampler_guardrail(&q, "none", &err) == 0 && !memcmp(&p, &q, sizeof p), "none changed the params");
    CHECK(dm_sampler_guardrail(&q, "loud", &err) != 0 && strstr(err.msg, "loud"), "unknown preset: '%s'", err.msg);
    CHECK(strstr(dm_sampler_guardrail_help(), "repeat_penalty=1.10"), "help text lacks the strong preset");
}

static bool same_params(const dm_sampler_params *a, const dm_sampler_params *b)
{
    return a->temperature == b->temperature && a->top_k == b->top_k && a->top_p == b->top_p && a->min_p == b->min_p &&
           a->repeat_penalty == b->repeat_penalty && a->repeat_scope == b->repeat_scope &&
           a->repeat_last_n == b->repeat_last_n && a->presence_penalty == b->presence_penalty &&
           a->frequency_penalty == b->frequency_penalty && a->hesitation_penalty == b->hesitation_penalty &&
           a->seed == b->seed;
}

static void test_parse(void)
{
    dm_err err;
    dm_sampler_params p = dm_sampler_defaults();
    const char *spec = "temp=0.6,top_p=0.95,min_p=0.05,repeat_penalty=1.10,top_k=20,rep_scope=window,"
                       "repeat_last_n=128,presence_penalty=0.25,frequency_penalty=-0.5,hesitation_penalty=3,"
                       "seed=18446744073709551615";
    CHECK(dm_sampler_parse_spec(&p, spec, &err) == 0, "parse: %s", err.msg);
    CHECK(p.temperature == 0.6f && p.top_p == 0.95f && p.min_p == 0.05f && p.repeat_penalty == 1.10f &&
              p.top_k == 20 && p.repeat_scope == DM_REP_SCOPE_WINDOW && p.repeat_last_n == 128 &&
              p.presence_penalty == 0.25f && p.frequency_penalty == -0.5f && p.hesitation_penalty == 3.0f &&
              p.seed == UINT64_MAX,
          "parsed values differ");
    char buf[DM_SAMPLER_SPEC_MAX];
    int n = dm_sampler_format_spec(&p, buf, sizeof buf);
    CHECK(n > 0 && n < (int)sizeof buf, "format length %d", n);
    dm_sampler_params q = dm_sampler_defaults();
    CHECK(dm_sampler_parse_spec(&q, buf, &err) == 0, "reparse '%s': %s", buf, err.msg);
    CHECK(same_params(&p, &q), "round trip changed the params: '%s'", buf);
    /* an awkward float survives the round trip bit for bit */
    p.temperature = nextafterf(0.7f, 1.0f);
    dm_sampler_format_spec(&p, buf, sizeof buf);
    q = dm_sampler_defaults();
    CHECK(dm_sampler_parse_spec(&q, buf, &err) == 0 && q.temperature == p.temperature, "float round trip '%s'", buf);
    /* a truncated buffer is still a string and the length is the full one */
    char small[16];
    int full = dm_sampler_format_spec(&p, small, sizeof small);
    CHECK(full == (int)strlen(buf) && strlen(small) == sizeof small - 1, "truncation: %d vs %zu", full, strlen(buf));
    /* alias, empty spec */
    q = dm_sampler_defaults();
    CHECK(dm_sampler_parse_spec(&q, "temperature=0", &err) == 0 && q.temperature == 0, "alias temperature");
    CHECK(dm_sampler_parse_spec(&q, "", &err) == 0, "empty spec refused: %s", err.msg);
    /* errors name the problem and leave p unchanged */
    static const struct { const char *spec, *want; } bad[] = {
        { "tmp=1", "unknown key 'tmp'" },  { "temp=abc", "temp=abc" },   { "temp=nan", "finite" },
        { "temp=-1", "temperature" },      { "top_k=1.5", "top_k=1.5" }, { "top_p=2", "top_p" },
        { "rep_scope=some", "all, window, output" }, { "seed=-1", "seed=-1" }, { "temp", "not key=value" },
        { "temp=1,,top_k=2", "empty item" }, { "temp=1,", "trailing" }, { "top_k=99999999999", "top_k" },
        { "hesitation_penalty=-2", "hesitation_penalty" }, { "temp=1e40", "finite" }, { "=3", "unknown key" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        dm_sampler_params before = dm_sampler_defaults(), r = before;
        err.msg[0] = 0;
        int rc = dm_sampler_parse_spec(&r, bad[i].spec, &err);
        CHECK(rc != 0, "'%s' accepted", bad[i].spec);
        CHECK(strstr(err.msg, bad[i].want), "'%s': message '%s' lacks '%s'", bad[i].spec, err.msg, bad[i].want);
        CHECK(same_params(&before, &r), "'%s': params changed on error", bad[i].spec);
    }
}

/* Random mutations of a valid spec: replace, insert, delete bytes (any byte
 * value but NUL) or splice pieces of keys; the parser must return 0 or -1
 * and, on 0, give params that format and reparse identically. */
static void test_fuzz(void)
{
    static const char *const seeds[] = {
        "temp=0.6,top_p=0.95,min_p=0.05,repeat_penalty=1.10,top_k=20",
        "rep_scope=window,repeat_last_n=64,seed=7,hesitation_penalty=1.5",
        "presence_penalty=0.1,frequency_penalty=0.2,temperature=1",
    };
    static const char pieces[] = "=,.-+e0123456789 tempkinafsd_";
    dm_rng rng;
    dm_rng_seed(&rng, 12345);
    int accepted = 0;
    for (int it = 0; it < FUZZ_ITERS; it++) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", seeds[dm_rng_next(&rng) % 3]);
        int n_mut = 1 + (int)(dm_rng_next(&rng) % 6);
        for (int m = 0; m < n_mut; m++) {
            size_t len = strlen(buf);
            size_t at = len ? dm_rng_next(&rng) % (len + 1) : 0;
            int op = (int)(dm_rng_next(&rng) % 3);
            char c = (dm_rng_next(&rng) & 1) ? pieces[dm_rng_next(&rng) % (sizeof pieces - 1)]
                                             : (char)(1 + dm_rng_next(&rng) % 255);
            if (op == 0 && at < len)
                buf[at] = c;
            else if (op == 1 && len + 1 < sizeof buf) {
                memmove(buf + at + 1, buf + at, len - at + 1);
                buf[at] = c;
            } else if (at < len)
                memmove(buf + at, buf + at + 1, len - at);
        }
        dm_sampler_params p = dm_sampler_defaults();
        dm_err err;
        int rc = dm_sampler_parse_spec(&p, buf, &err);
        CHECK(rc == 0 || rc == -1, "rc %d for '%s'", rc, buf);
        if (rc == 0) {
            accepted++;
            char out[DM_SAMPLER_SPEC_MAX];
            dm_sampler_format_spec(&p, out, sizeof out);
            dm_sampler_params q = dm_sampler_defaults();
            CHECK(dm_sampler_parse_spec(&q, out, &err) == 0 && same_params(&p, &q), "fuzz round trip '%s' -> '%s'",
                  buf, out);
        }
    }
    printf("fuzz: %d mutated specs, %d accepted\n", FUZZ_ITERS, accepted);
}

int main(void)
{
    test_hesitation_penalty();
    test_guardrail();
    test_parse();
    test_fuzz();
    if (g_fail)
        fprintf(stderr, "test_sampler_spec: %d check(s) failed\n", g_fail);
    else
        printf("test_sampler_spec: ok\n");
    return g_fail ? 1 : 0;
}
