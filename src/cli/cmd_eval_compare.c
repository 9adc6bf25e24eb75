/* cmd_eval_compare — `demolish eval compare A.jsonl B.jsonl`: two `eval
 * loops` runs side by side (A the reference, e.g. the teacher; B the
 * candidate). Per rate: both rates with Wilson 95% intervals, the difference
 * B - A with Newcombe's 95% interval, the pooled two-proportion z and its
 * two-sided p (src/eval/prop_stats.c). When the runs used the same base seed
 * and hold the same prompts (matched by prompt id at the same index, so the
 * same per-prompt seed), McNemar's paired test on the matched prompts too.
 * Then the guidance line: how many prompts per arm a z-test at α = 0.05
 * needs to detect the observed loop / fail difference with 80% power (a
 * doubling of A's rate when the observed one cannot be sized). */
#include "cli/cli.h"
#include "cli/loops_run.h"

#include <stdlib.h>
#include <string.h>

#define ALPHA 0.05
#define POWER 0.8

/* The metric's outcome for one record; -1 when the record has no say
 * (think metrics without think ids). */
static int outcome(const loops_metric *mt, const dm_gen_metrics *m)
{
    dm_loop_counts c = { 0 };
    dm_loop_agg a;
    dm_loop_agg_init(&a);
    DM_ASSERT(dm_loop_agg_add(&a, NULL, m, NULL) == 0);
    c = a.total;
    dm_loop_agg_free(&a);
    return loops_metric_n(mt, &c) ? (int)loops_metric_k(mt, &c) : -1;
}

typedef struct paired {
    int64_t pairs;              /* prompts matched in both runs */
    int64_t b, c;               /* A yes / B no, A no / B yes */
} paired;

/* Discordant pairs of metric mt over the prompts both runs hold (same id at
 * the same index). Returns false when the runs are not paired (other seeds,
 * or no prompt in common). */
static bool pair_up(const loops_run *A, const loops_run *B, const loops_metric *mt, paired *p)
{
    memset(p, 0, sizeof *p);
    if (A->h.seed != B->h.seed)
        return false;
    for (int64_t k = 0; k < A->n; k++) {
        const loops_rec *ra = &A->rec[k], *rb = loops_run_find(B, ra->i);
        if (!rb || strcmp(ra->id, rb->id))
            continue;
        p->pairs++;
        const int x = outcome(mt, &ra->m), y = outcome(mt, &rb->m);
        if (x < 0 || y < 0)
            continue;
        p->b += x && !y;
        p->c += !x && y;
    }
    return p->pairs > 0;
}

static cJSON *test_json(const dm_loop_counts *a, const dm_loop_counts *b, const loops_metric *mt, const dm_prop_test *t)
{
    cJSON *o = cJSON_CreateObject();
    double lo, hi;
    const int64_t k1 = loops_metric_k(mt, a), n1 = loops_metric_n(mt, a), k2 = loops_metric_k(mt, b),
                  n2 = loops_metric_n(mt, b);
    cJSON_AddNumberToObject(o, "k1", (double)k1);
    cJSON_AddNumberToObject(o, "n1", (double)n1);
    cJSON_AddNumberToObject(o, "k2", (double)k2);
    cJSON_AddNumberToObject(o, "n2", (double)n2);
    cJSON_AddNumberToObject(o, "p1", t->p1);
    dm_wilson(k1, n1, DM_Z95, &lo, &hi);
    cJSON_AddNumberToObject(o, "p1_lo", lo);
    cJSON_AddNumberToObject(o, "p1_hi", hi);
    cJSON_AddNumberToObject(o, "p2", t->p2);
    dm_wilson(k2, n2, DM_Z95, &lo, &hi);
    cJSON_AddNumberToObject(o, "p2_lo", lo);
    cJSON_AddNumberToObject(o, "p2_hi", hi);
    cJSON_AddNumberToObject(o, "diff", t->diff);
    cJSON_AddNumberToObject(o, "diff_lo", t->diff_lo);
    cJSON_AddNumberToObject(o, "diff_hi", t->diff_hi);
    cJSON_AddNumberToObject(o, "z", t->z);
    cJSON_AddNumberToObject(o, "p", t->p);
    return o;
}

/* Compares counts a and b over every metric: rows into text (when out != NULL)
 * and JSON (returned). With A/B given, adds McNemar per metric. */
static cJSON *compare_counts(const dm_loop_counts *a, const dm_loop_counts *b, const loops_run *A, const loops_run *B,
                             FILE *out)
{
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < loops_n_metrics; i++) {
        const loops_metric *mt = &loops_metrics[i];
        dm_prop_test t;
        if (dm_prop_ztest(loops_metric_k(mt, a), loops_metric_n(mt, a), loops_metric_k(mt, b), loops_metric_n(mt, b), &t,
                          NULL))
            continue;   /* a rate without generations (think metrics without think ids) */
        cJSON *r = test_json(a, b, mt, &t);
        cJSON_AddItemToObject(o, mt->name, r);
        char mc[96] = "";
        paired pr;
        if (A && pair_up(A, B, mt, &pr)) {
            dm_mcnemar mn;
            DM_ASSERT(dm_mcnemar_test(pr.b, pr.c, &mn, NULL) == 0);
            cJSON *m = cJSON_AddObjectToObject(r, "mcnemar");
            cJSON_AddNumberToObject(m, "pairs", (double)pr.pairs);
            cJSON_AddNumberToObject(m, "b", (double)pr.b);
            cJSON_AddNumberToObject(m, "c", (double)pr.c);
            cJSON_AddBoolToObject(m, "exact", mn.exact);
            cJSON_AddNumberToObject(m, "z", mn.z);
            cJSON_AddNumberToObject(m, "p", mn.p);
            snprintf(mc, sizeof mc, "b %lld c %lld p %.4g%s", (long long)pr.b, (long long)pr.c, mn.p,
                     mn.exact ? " (exact)" : "");
        }
        if (out)
            fprintf(out, "  %-14s %6.2f%% %6.2f%% %+7.2f [%+6.2f, %+6.2f] %7.2f %9.3g   %s\n", mt->name, 100 * t.p1,
                    100 * t.p2, 100 * t.diff, 100 * t.diff_lo, 100 * t.diff_hi, t.z, t.p, mc);
    }
    return o;
}

/* Per-arm n to detect a difference from the reference rate p1: the observed
 * p1 -> p2 when both lie in (0, 1) and differ; else a doubling p1 -> 2 p1;
 * else p2/2 -> p2 (rates of 0 or 1 leave no observed difference to size). */
static cJSON *min_n(const char *name, double p1, double p2, FILE *out)
{
    const double cand[3][2] = { { p1, p2 }, { p1, 2 * p1 }, { p2 / 2, p2 } };
    static const char *const basis[3] = { "observed", "doubling of A", "halving of B" };
    cJSON *o = cJSON_CreateObject();
    for (int c = 0; c < 3; c++) {
        const double a = cand[c][0], b = cand[c][1];
        int64_t n = 0;
        if (!(a > 0 && a < 1 && b > 0 && b < 1 && a != b) || dm_prop_min_n(a, b, ALPHA, POWER, &n, NULL, NULL))
            continue;
        cJSON_AddNumberToObject(o, "p1", a);
        cJSON_AddNumberToObject(o, "p2", b);
        cJSON_AddStringToObject(o, "basis", basis[c]);
        cJSON_AddNumberToObject(o, "n_per_arm", (double)n);
        if (out)
            fprintf(out, "  %s: %lld prompts per arm to detect %.2f%% -> %.2f%% (%s; two-sided z-test, alpha %.2f, "
                         "power %.0f%%)\n", name, (long long)n, 100 * a, 100 * b, basis[c], ALPHA, 100 * POWER);
        return o;
    }
    if (out)
        fprintf(out, "  %s: no estimate (both rates are 0 or 1)\n", name);
    cJSON_AddNullToObject(o, "n_per_arm");
    return o;
}

static const dm_loop_counts *group_of(const dm_loop_agg *a, const char *name)
{
    for (int g = 0; g < a->n_groups; g++)
        if (!strcmp(a->group[g], name))
            return &a->groups[g];
    return NULL;
}

/* Rates measured under another detector or token cap are not comparable:
 * say so (text and "warnings" in JSON) rather than refuse. */
static void add_warnings(cJSON *o, const loops_header *a, const loops_header *b, FILE *out)
{
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    const char *msg[2] = { memcmp(&a->det, &b->det, sizeof a->det) ? "the detector parameters differ" : NULL,
                           a->max_tokens != b->max_tokens ? "max_tokens differs (runaway and fail rates shift)" : NULL };
    for (int i = 0; i < 2; i++) {
        if (!msg[i])
            continue;
        cJSON_AddItemToArray(w, cJSON_CreateString(msg[i]));
        if (out)
            fprintf(out, "warning: %s\n", msg[i]);
    }
}

static const char *const head = "  %-14s %7s %7s %7s %16s %7s %9s   %s\n";

int cmd_eval_compare(int argc, char **argv)
{
    bool json = false;
    int first = 0;
    const cli_opt opts[] = {
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the comparison as JSON" },
        { "--n", NULL, CLI_INT, &first, "N",
          "only the first N prompts (by index) of each run: what a smaller eval would have said" },
    };
    const cli_spec spec = { "eval compare", "A.jsonl B.jsonl",
                            "Compares two eval loops runs (A reference, B candidate): B - A per rate, Newcombe 95% CI, "
                            "z-test p, McNemar when paired, and the n needed.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 2, 2 };
    const char *pos[2];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    loops_run A, B;
    dm_loop_agg aa, ab;
    dm_err err;
    memset(&A, 0, sizeof A), memset(&B, 0, sizeof B);
    dm_loop_agg_init(&aa), dm_loop_agg_init(&ab);
    rc = DM_EXIT_FAIL;
    if (first < 0) {
        fprintf(stderr, "demolish eval compare: --n must be >= 0\n");
        return DM_EXIT_USAGE;
    }
    if (loops_run_read(pos[0], &A, &err) || loops_run_read(pos[1], &B, &err) ||
        (loops_run_keep_first(&A, first), loops_run_keep_first(&B, first), loops_run_agg(&A, &aa, &err)) ||
        loops_run_agg(&B, &ab, &err) || (aa.total.n == 0 && dm_errorf(&err, "%s holds no generations", pos[0])) ||
        (ab.total.n == 0 && dm_errorf(&err, "%s holds no generations", pos[1]))) {
        cli_fail(&err);
        goto out;
    }
    FILE *tf = json ? NULL : stdout;
    if (tf) {
        printf("A %s: n %lld, sampler %s\nB %s: n %lld, sampler %s\n", pos[0], (long long)aa.total.n, A.h.sampler, pos[1],
               (long long)ab.total.n, B.h.sampler);
        if (strcmp(A.h.model_hash, B.h.model_hash) == 0 && strcmp(A.h.sampler, B.h.sampler) == 0)
            printf("(same model and sampler)\n");
        printf("\nall prompts (diff = B - A in points, Newcombe 95%% CI; McNemar on prompts in both with the same seed)\n");
        printf(head, "rate", "A", "B", "diff", "95% CI", "z", "p", "McNemar");
    }
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "a", pos[0]);
    cJSON_AddStringToObject(o, "b", pos[1]);
    add_warnings(o, &A.h, &B.h, tf);
    cJSON_AddItemToObject(o, "total", compare_counts(&aa.total, &ab.total, &A, &B, tf));
    cJSON *src = cJSON_AddObjectToObject(o, "sources");
    for (int g = 0; g < aa.n_groups; g++) {
        const dm_loop_counts *cb = group_of(&ab, aa.group[g]);
        if (!cb)
            continue;
        if (tf)
            printf("\nsource %s (unpaired)\n", aa.group[g]);
        cJSON_AddItemToObject(src, aa.group[g], compare_counts(&aa.groups[g], cb, NULL, NULL, tf));
    }
    if (tf)
        printf("\nsample size guidance:\n");
    cJSON *mn = cJSON_AddObjectToObject(o, "min_n");
    cJSON_AddItemToObject(mn, "loop", min_n("loop", (double)aa.total.loop / (double)aa.total.n,
                                            (double)ab.total.loop / (double)ab.total.n, tf));
    cJSON_AddItemToObject(mn, "fail", min_n("fail", (double)aa.total.fail / (double)aa.total.n,
                                            (double)ab.total.fail / (double)ab.total.n, tf));
    if (json) {
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(o);
    rc = DM_EXIT_OK;
out:
    dm_loop_agg_free(&aa), dm_loop_agg_free(&ab);
    loops_run_free(&A), loops_run_free(&B);
    return rc;
}
