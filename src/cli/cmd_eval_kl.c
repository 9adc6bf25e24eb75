/* cmd_eval_kl — `demolish eval kl TEACHER STUDENT...`: how far each student
 * (a pruned or quantized model) has moved from its teacher on held-out text:
 * KL(teacher ‖ student) per prediction (mean ± standard error, median, p90,
 * p99, p99.9, max), top-1 agreement, both perplexities and their ratio,
 * overall and per source (src/eval/kl.c). The teacher's distributions can be
 * cached (--cache) so later students need no teacher run (TEACHER "-"). A
 * cache read back must match the options given (--ctx, --top-k / --full),
 * frame the data the same way (and --max-tokens), and, when the teacher is
 * named, come from it (same header hash and the same first window;
 * dm_kl_teacher_cache in src/eval/kl_teacher.c). */
#include "cli/cli.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_STUDENTS 64

static double top1(const dm_kl_sum *s) { return s->n ? (double)s->top1_agree / (double)s->n : 0; }

static double top1_se(const dm_kl_sum *s)
{
    const double p = top1(s);
    return s->n > 1 ? sqrt(p * (1 - p) / (double)(s->n - 1)) : 0;
}

static double ppl(double nll, int64_t n) { return n ? exp(nll / (double)n) : 0; }

static cJSON *sum_json(const dm_kl_sum *s)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "predictions", (double)s->n);
    cJSON_AddNumberToObject(o, "kl_mean", dm_kl_mean(s));
    cJSON_AddNumberToObject(o, "kl_mean_se", dm_kl_mean_se(s));
    cJSON_AddNumberToObject(o, "kl_max", s->kl_max);
    cJSON_AddNumberToObject(o, "top1_agreement", top1(s));
    cJSON_AddNumberToObject(o, "top1_agreement_se", top1_se(s));
    cJSON_AddNumberToObject(o, "ppl_teacher", ppl(s->nll_teacher, s->n));
    cJSON_AddNumberToObject(o, "ppl_student", ppl(s->nll_student, s->n));
    cJSON_AddNumberToObject(o, "ppl_ratio", dm_kl_ppl_ratio(s));
    cJSON_AddNumberToObject(o, "ln_ppl_ratio_se", dm_kl_ln_ratio_se(s));
    return o;
}

static cJSON *report_json(const char *student, const dm_kl_report *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "model", student);
    cJSON_AddItemToObject(o, "total", sum_json(&r->total));
    cJSON *kl = cJSON_AddObjectToObject(o, "kl_quantiles");
    cJSON_AddNumberToObject(kl, "median", r->median);
    cJSON_AddNumberToObject(kl, "p90", r->p90);
    cJSON_AddNumberToObject(kl, "p99", r->p99);
    cJSON_AddNumberToObject(kl, "p99.9", r->p999);
    cJSON *src = cJSON_AddObjectToObject(o, "sources");
    for (int g = 0; g < r->n_groups; g++)
        if (r->groups[g].n)
            cJSON_AddItemToObject(src, r->group[g], sum_json(&r->groups[g]));
    return o;
}

static void print_row(const char *name, const dm_kl_sum *s)
{
    printf("  %-14s %9lld %10.5f %8.2f %% %11.3f %11.3f %8.4f\n", name, (long long)s->n, dm_kl_mean(s),
           100 * top1(s), ppl(s->nll_teacher, s->n), ppl(s->nll_student, s->n), dm_kl_ppl_ratio(s));
}

static void report_text(const char *student, const dm_kl_report *r)
{
    const dm_kl_sum *t = &r->total;
    printf("student %s\n", student);
    printf("  KL(teacher||student)  mean %.5f ± %.5f   median %.5f   p90 %.5f   p99 %.5f   p99.9 %.5f   max %.4f\n",
           dm_kl_mean(t), dm_kl_mean_se(t), r->median, r->p90, r->p99, r->p999, t->kl_max);
    printf("  top-1 agreement       %.2f %% ± %.2f\n", 100 * top1(t), 100 * top1_se(t));
    printf("  perplexity            teacher %.4f   student %.4f   ratio %.4f (ln ratio ± %.4f)\n",
           ppl(t->nll_teacher, t->n), ppl(t->nll_student, t->n), dm_kl_ppl_ratio(t), dm_kl_ln_ratio_se(t));
    if (r->n_groups) {
        printf("  %-14s %9s %10s %10s %11s %11s %8s\n", "source", "tokens", "mean KL", "top-1", "ppl teacher",
               "ppl student", "ratio");
        for (int g = 0; g < r->n_groups; g++)
            if (r->groups[g].n)
                print_row(r->group[g], &r->groups[g]);
    }
}

/* Scores one student against the cache (named cache_name in errors): the
 * vocabulary must be the teacher's, the windows must fit the student, and the
 * data must frame to the cache's positions (max_tokens: the request's, else
 * the cache's own cut). */
static int score_student(const char *dir, const dm_docs *docs, const dm_kl_cache *c, const char *cache_name,
                         int64_t max_tokens, dm_kl_report *r, dm_err *err)
{
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    int rc = dm_model_load(&m, dir, err) || dm_tokenizer_load(&tok, dir, err) ? -1 : 0;
    /* checked before framing: another vocabulary also means another tokenizer,
     * and "other data" would hide the real cause */
    if (rc == 0 && m->cfg.vocab_size != c->V)
        rc = dm_errorf(err, "the student's vocabulary (%d) differs from the teacher's (%d)", m->cfg.vocab_size, c->V);
    if (rc == 0 && (int64_t)m->cfg.max_position_embeddings < c->ctx)
        rc = dm_errorf(err, "windows of %d predictions exceed the student's %lld positions", c->ctx,
                       (long long)m->cfg.max_position_embeddings);
    if (rc == 0) {
        dm_evaluator *ev = dm_evaluator_new(m, tok, c->ctx);
        char hash[65];
        rc = dm_kl_data_hash(ev, docs, max_tokens ? max_tokens : c->truncated ? c->n_pos : 0, hash, err);
        if (rc == 0 && strcmp(hash, c->data_hash) != 0)
            rc = dm_errorf(err, "the teacher cache (%s) was made from other data, another tokenizer or another "
                                "--max-tokens than this student sees",
                           cache_name);
        if (rc == 0)
            rc = dm_kl_eval(ev, c, r, err);
        dm_evaluator_free(ev);
    }
    if (rc)
        dm_err_prefix(err, "%s", dir);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    return rc;
}

int cmd_eval_kl(int argc, char **argv)
{
    const char *data = NULL, *cache = NULL;
    int ctx = 0, top_k = -1;
    uint64_t max_tokens = 0;
    bool json = false, full = false;
    const cli_opt opts[] = {
        { "--data", "-d", CLI_STR, &data, "PATH", "held-out file.txt, file.jsonl (text, source) or CORPUS_DIR[:split]" },
        { "--cache", NULL, CLI_STR, &cache, "FILE", "teacher distributions: read if FILE exists, else written" },
        { "--top-k", NULL, CLI_INT, &top_k, "K", "cache the teacher's top K tokens + an 'other' bucket (default 64)" },
        { "--full", NULL, CLI_FLAG, &full, NULL, "cache full distributions (exact KL; vocab x 4 bytes per token)" },
        { "--ctx", NULL, CLI_INT, &ctx, "N", "window length in predictions (default min(512, max positions))" },
        { "--max-tokens", NULL, CLI_U64, &max_tokens, "N", "stop after N predictions (default: all)" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the report as JSON" },
    };
    const cli_spec spec = { "eval kl", "TEACHER_DIR|- STUDENT_DIR... ",
                            "KL(teacher||student) per prediction on held-out text (mean, quantiles, max), top-1\n"
                            "agreement, perplexities and their ratio, overall and per source. Windows are those of\n"
                            "`eval ppl`. Top-k caching bounds the KL from below (exact with --full).",
                            opts, (int)(sizeof opts / sizeof opts[0]), 2, 1 + MAX_STUDENTS };
    const char *pos[1 + MAX_STUDENTS];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!data || ctx < 0 || top_k == 0 || top_k < -1 || (full && top_k > 0))
        return fprintf(stderr, "demolish eval kl: need --data PATH, --ctx >= 1, --top-k >= 1, and at most one of "
                               "--top-k / --full\n"), DM_EXIT_USAGE;
    const dm_kl_request req = { ctx, full ? 0 : top_k, (int64_t)max_tokens };
    dm_err err;
    dm_docs docs = { 0 };
    dm_kl_cache c = { 0 };
    if (dm_eval_load_data(data, &docs, &err) ||
        dm_kl_teacher_cache(pos[0], &docs, cache, &req, &c, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    cJSON *all = cJSON_CreateObject(), *students = NULL;
    cJSON_AddStringToObject(all, "teacher", pos[0]);
    cJSON_AddStringToObject(all, "data", data);
    cJSON_AddNumberToObject(all, "ctx", c.ctx);
    cJSON_AddNumberToObject(all, "top_k", c.top_k);
    cJSON_AddNumberToObject(all, "predictions", (double)c.n_pos);
    cJSON_AddBoolToObject(all, "truncated", c.truncated);
    students = cJSON_AddArrayToObject(all, "students");
    if (!json)
        printf("teacher %s   %lld predictions (windows of %d)   %s\n", pos[0], (long long)c.n_pos, c.ctx,
               c.top_k ? "top-k + other bucket (KL is a lower bound)" : "full distributions");
    rc = DM_EXIT_OK;
    for (int i = 1; i < n_pos && rc == DM_EXIT_OK; i++) {
        dm_kl_report r;
        double t0 = dm_time_sec();
        if (score_student(pos[i], &docs, &c, cache ? cache : "in memory", req.max_tokens, &r, &err)) {
            rc = cli_fail(&err);
            break;
        }
        dm_log(1, "%s: %lld predictions in %.1f s\n", pos[i], (long long)r.total.n, dm_time_sec() - t0);
        if (json)
            cJSON_AddItemToArray(students, report_json(pos[i], &r));
        else
            report_text(pos[i], &r);
        dm_kl_report_free(&r);
    }
    if (json && rc == DM_EXIT_OK) {
        char *s = cJSON_Print(all);
        printf("%s\n", s);
        free(s);
    }
    cJSON_Delete(all);
out:
    dm_kl_cache_free(&c);
    dm_docs_free(&docs);
    return rc;
}
