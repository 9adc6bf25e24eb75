/* cmd_eval — `demolish eval ppl` (loss per token, perplexity, bits per byte,
 * overall and per source; src/eval/) and `demolish eval reasoning` (exact-
 * match accuracy of greedy completions on held-out reasoning problems, and
 * how many completions close their </think>; src/corpus/reasoning*.c),
 * `demolish eval routing` (expert usage per source), and the subcommand table
 * that also dispatches `eval kl` (cmd_eval_kl.c), `eval loops`, `eval compare`
 * and `eval report` (cmd_eval_loops.c, cmd_eval_compare.c, cmd_eval_report.c). */
#include "cli/cli.h"
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CTX 512

static cJSON *nll_json(const dm_nll *x)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "documents", (double)x->n_docs);
    cJSON_AddNumberToObject(o, "tokens", (double)x->n_tokens);
    cJSON_AddNumberToObject(o, "bytes", (double)x->n_bytes);
    cJSON_AddNumberToObject(o, "loss", dm_nll_loss(x));
    cJSON_AddNumberToObject(o, "ppl", dm_nll_ppl(x));
    cJSON_AddNumberToObject(o, "bits_per_byte", dm_nll_bpb(x));
    return o;
}

static void print_row(const char *name, const dm_nll *x)
{
    printf("%-12s %8lld %11lld %12lld %10.4f %11.3f %9.4f\n", name, (long long)x->n_docs, (long long)x->n_tokens,
           (long long)x->n_bytes, dm_nll_loss(x), dm_nll_ppl(x), dm_nll_bpb(x));
}

static void print_report(const dm_eval_report *r, const char *model, const char *data, bool json)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "model", model);
        cJSON_AddStringToObject(o, "data", data);
        cJSON_AddNumberToObject(o, "ctx", r->ctx);
        cJSON_AddBoolToObject(o, "truncated", r->truncated);
        cJSON_AddItemToObject(o, "total", nll_json(&r->total));
        cJSON *src = cJSON_AddObjectToObject(o, "sources");
        for (int g = 0; g < r->n_groups; g++)
            cJSON_AddItemToObject(src, r->group[g], nll_json(&r->groups[g]));
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("%-12s %8s %11s %12s %10s %11s %9s\n", "source", "docs", "tokens", "bytes", "loss/tok", "ppl",
           "bits/byte");
    for (int g = 0; g < r->n_groups; g++)
        print_row(r->group[g], &r->groups[g]);
    print_row("total", &r->total);
    if (r->truncated)
        printf("(stopped at --max-tokens)\n");
}

/* What an evaluation over documents needs: the documents --data names, the
 * model, its tokenizer; and the window length (ctx 0: the default). */
static int load_eval_inputs(const char *data, const char *dir, int *ctx, dm_docs *docs, dm_model **m,
                            dm_tokenizer **tok, dm_err *err)
{
    if (dm_eval_load_data(data, docs, err) || dm_model_load(m, dir, err) || dm_tokenizer_load(tok, dir, err))
        return -1;
    if (*ctx == 0)
        *ctx = (*m)->cfg.max_position_embeddings < DEFAULT_CTX ? (int)(*m)->cfg.max_position_embeddings : DEFAULT_CTX;
    return 0;
}

static int eval_ppl(int argc, char **argv)
{
    const char *data = NULL;
    int ctx = 0;
    uint64_t max_tokens = 0;
    bool json = false, dense = false;
    const cli_opt opts[] = {
        { "--data", "-d", CLI_STR, &data, "PATH", "file.txt, file.jsonl, or CORPUS_DIR[:split] (default split val)" },
        { "--dense-attention", NULL, CLI_FLAG, &dense, NULL, "ignore the DSA indexer: attend to every key" },
        { "--ctx", NULL, CLI_INT, &ctx, "N", "window length in predictions (default min(512, max positions))" },
        { "--max-tokens", NULL, CLI_U64, &max_tokens, "N", "stop after N predictions (default: all)" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the report as JSON" },
    };
    const cli_spec spec = { "eval ppl", "MODEL_DIR ",
                            "Loss per token (nats), perplexity and bits per byte of text, overall and per source.\n"
                            "Each document is framed <|endoftext|> … <|endoftext|> and cut into non-overlapping "
                            "windows\nof --ctx predictions, each a fresh sequence.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!data || ctx < 0)
        return fprintf(stderr, "demolish eval ppl: need --data PATH and --ctx >= 1\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    dm_docs docs = { 0 };
    if (load_eval_inputs(data, pos[0], &ctx, &docs, &m, &tok, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    dm_evaluator *ev = dm_evaluator_new(m, tok, ctx);
    dm_ctx_set_dense_attention(ev->c, dense);
    dm_eval_report r;
    double t0 = dm_time_sec();
    rc = dm_eval_docs(ev, &docs, (int64_t)max_tokens, &r, &err);
    double dt = dm_time_sec() - t0;
    dm_evaluator_free(ev);
    if (rc) {
        rc = cli_fail(&err);
        goto out;
    }
    print_report(&r, pos[0], data, json);
    dm_log(1, "%lld predictions in %.1f s (%.0f tok/s)\n", (long long)r.total.n_tokens, dt,
           dt > 0 ? r.total.n_tokens / dt : 0.0);
    dm_eval_report_free(&r);
    rc = DM_EXIT_OK;
out:
    dm_docs_free(&docs);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    return rc;
}

/* ---- reasoning accuracy ---- */

/* Collects a completion; stops it once the answer line after </think> is
 * complete (a newline after some answer text). */
typedef struct collect {
    char *p;
    size_t n, cap;
} collect;

static bool collect_piece(void *user, const char *bytes, size_t n)
{
    collect *c = user;
    if (c->n + n + 1 > c->cap) {
        c->cap = (c->n + n + 1) * 2;
        c->p = dm_realloc(c->p, c->cap);
    }
    memcpy(c->p + c->n, bytes, n);
    c->n += n;
    c->p[c->n] = 0;
    const char *a = dm_reasoning_answer_part(c->p);
    if (!a)
        return true;
    while (*a == '\n' || *a == ' ')
        a++;
    return !(*a && strchr(a, '\n'));
}

typedef struct reasoning_tally {
    int n, correct, closed;
    int kind_n[DM_REASONING_KIND_COUNT], kind_ok[DM_REASONING_KIND_COUNT];
    int64_t gen_tokens;
} reasoning_tally;

static const char *const kind_names[DM_REASONING_KIND_COUNT] = { "add", "sub", "mul", "max", "min" };

static void print_tally(const reasoning_tally *t, uint64_t seed, bool json)
{
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "problems", t->n);
        cJSON_AddNumberToObject(o, "seed", (double)seed);
        cJSON_AddNumberToObject(o, "exact_match", t->n ? (double)t->correct / t->n : 0);
        cJSON_AddNumberToObject(o, "closed_think", t->n ? (double)t->closed / t->n : 0);
        cJSON_AddNumberToObject(o, "mean_generated_tokens", t->n ? (double)t->gen_tokens / t->n : 0);
        cJSON *k = cJSON_AddObjectToObject(o, "exact_match_by_kind");
        for (int i = 0; i < DM_REASONING_KIND_COUNT; i++)
            if (t->kind_n[i])
                cJSON_AddNumberToObject(k, kind_names[i], (double)t->kind_ok[i] / t->kind_n[i]);
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("problems %d (held-out test split, stream %llu)\n", t->n, (unsigned long long)seed);
    printf("exact match   %.1f %% (%d)\n", t->n ? 100.0 * t->correct / t->n : 0.0, t->correct);
    printf("closed think  %.1f %% (%d)\n", t->n ? 100.0 * t->closed / t->n : 0.0, t->closed);
    for (int i = 0; i < DM_REASONING_KIND_COUNT; i++)
        if (t->kind_n[i])
            printf("  %-4s %5.1f %% of %d\n", kind_names[i], 100.0 * t->kind_ok[i] / t->kind_n[i], t->kind_n[i]);
}

/* Greedy completion of one problem's prompt; tallies the result. */
static int run_problem(dm_ctx *c, dm_seq *seq, const dm_tokenizer *tok, dm_sampler *s, const dm_reasoning_doc *d,
                       int max_new, int show, reasoning_tally *t, dm_err *err)
{
    int n_prompt;
    int32_t *ids = dm_tokenize(tok, d->text, d->prompt_len, true, &n_prompt);
    collect col = { 0 };
    dm_gen_request req = { .prompt = ids, .n_prompt = n_prompt, .n_predict = max_new, .emit = collect_piece,
                           .user = &col };
    dm_gen_stats st;
    dm_seq_reset(seq);
    dm_sampler_reset(s);
    int rc = dm_generate(c, seq, tok, s, &req, &st, err);
    free(ids);
    if (rc == 0) {
        const char *ans = col.p ? dm_reasoning_answer_part(col.p) : NULL;
        bool ok = ans && dm_reasoning_check(d->question, ans) == 1;
        t->n++;
        t->closed += ans != NULL;
        t->correct += ok;
        t->kind_n[d->kind]++;
        t->kind_ok[d->kind] += ok;
        t->gen_tokens += st.n_gen;
        if (!ok && show > 0 && t->n - t->correct <= show)
            fprintf(stderr, "--- wrong (want %s):\n%.*s%s\n", d->answer, (int)d->prompt_len, d->text,
                    col.p ? col.p : "");
    }
    free(col.p);
    return rc;
}

static int eval_reasoning(int argc, char **argv)
{
    int n = 200, max_new = 768, show = 0;
    uint64_t seed = 0;
    bool json = false;
    const cli_opt opts[] = {
        { "-n", NULL, CLI_INT, &n, "N", "held-out problems (default 200)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "problem stream (default 0)" },
        { "--max-new", NULL, CLI_INT, &max_new, "N", "tokens to generate at most per problem (default 768)" },
        { "--show", NULL, CLI_INT, &show, "N", "print the first N wrong completions on stderr" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the result as JSON" },
    };
    const cli_spec spec = { "eval reasoning", "MODEL_DIR ",
                            "Exact-match accuracy of greedy completions on held-out reasoning problems (the test "
                            "split's\nproblems of the stream), and the fraction of completions that close </think>.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (n < 1 || max_new < 1)
        return fprintf(stderr, "demolish eval reasoning: -n and --max-new must be >= 1\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    if (dm_model_load(&m, pos[0], &err) || dm_tokenizer_load(&tok, pos[0], &err)) {
        rc = cli_fail(&err);
        dm_model_free(m);
        return rc;
    }
    dm_sampler_params sp = dm_sampler_defaults();
    sp.temperature = 0;
    dm_sampler *s = dm_sampler_new(&sp, m->cfg.vocab_size);
    dm_ctx *c = dm_ctx_new(m, 256);
    dm_seq *seq = dm_seq_new(m, 512 + max_new);
    dm_reasoning_doc *docs = dm_reasoning_heldout(seed, DM_SPLIT_TEST, n);
    reasoning_tally t = { 0 };
    dm_progress prog;
    dm_progress_begin(&prog, "reasoning", "problems", n);
    rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        rc = run_problem(c, seq, tok, s, &docs[i], max_new, show, &t, &err);
        dm_progress_update(&prog, i + 1);
    }
    dm_progress_end(&prog);
    for (int i = 0; i < n; i++)
        dm_reasoning_doc_free(&docs[i]);
    free(docs);
    dm_seq_free(seq);
    dm_ctx_free(c);
    dm_sampler_free(s);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    if (rc)
        return cli_fail(&err);
    print_tally(&t, seed, json);
    return DM_EXIT_OK;
}

/* Max/mean load of a layer's expert counts (over its E experts). */
static double max_over_mean(const int64_t *cnt, int E)
{
    double sum = 0, mx = 0;
    for (int e = 0; e < E; e++) {
        sum += (double)cnt[e];
        mx = (double)cnt[e] > mx ? (double)cnt[e] : mx;
    }
    return sum > 0 ? mx / (sum / E) : 0;
}

static void routing_json(const dm_model *m, const dm_routing_stats *st)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *groups = cJSON_AddArrayToObject(o, "sources");
    for (int g = 0; g < st->n_groups; g++) {
        cJSON *gj = cJSON_CreateObject();
        cJSON_AddStringToObject(gj, "source", st->group[g]);
        cJSON_AddNumberToObject(gj, "tokens", (double)st->tokens[g]);
        cJSON *layers = cJSON_AddArrayToObject(gj, "counts");
        for (int l = 0; l < st->n_layers; l++) {
            cJSON *row = cJSON_CreateArray();
            const int64_t *c = dm_routing_counts(st, g, l);
            for (int e = 0; m->cfg.layer_moe[l] && e < m->cfg.layer_experts[l]; e++)
                cJSON_AddItemToArray(row, cJSON_CreateNumber((double)c[e]));
            cJSON_AddItemToArray(layers, row);
        }
        cJSON_AddItemToArray(groups, gj);
    }
    char *text = cJSON_Print(o);
    puts(text);
    free(text);
    cJSON_Delete(o);
}

static void routing_text(const dm_model *m, const dm_routing_stats *st)
{
    printf("layer  experts  max/mean load (all sources)");
    for (int g = 0; g < st->n_groups; g++)
        printf("  %s", st->group[g]);
    printf("\n");
    for (int l = 0; l < st->n_layers; l++) {
        if (!m->cfg.layer_moe[l])
            continue;
        const int E = m->cfg.layer_experts[l];
        int64_t all[E];
        memset(all, 0, sizeof all);
        for (int g = 0; g < st->n_groups; g++)
            for (int e = 0; e < E; e++)
                all[e] += dm_routing_counts(st, g, l)[e];
        printf("%5d  %7d  %27.2f", l, E, max_over_mean(all, E));
        for (int g = 0; g < st->n_groups; g++)
            printf("  %*.2f", (int)strlen(st->group[g]), max_over_mean(dm_routing_counts(st, g, l), E));
        printf("\n");
    }
}

static int eval_routing(int argc, char **argv)
{
    const char *data = NULL;
    int ctx = 0;
    uint64_t max_tokens = 0;
    bool json = false;
    const cli_opt opts[] = {
        { "--data", "-d", CLI_STR, &data, "PATH", "file.txt, file.jsonl, or CORPUS_DIR[:split] (default split val)" },
        { "--ctx", NULL, CLI_INT, &ctx, "N", "window length (default min(512, max positions))" },
        { "--max-tokens", NULL, CLI_U64, &max_tokens, "N", "stop after N tokens (default: all)" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print every layer's per-source expert counts as JSON" },
    };
    const cli_spec spec = { "eval routing", "MODEL_DIR ",
                            "Which experts each MoE layer uses, per document source: load balance (max/mean load)\n"
                            "and per-source counts (--json).",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!data || ctx < 0)
        return fprintf(stderr, "demolish eval routing: need --data PATH and --ctx >= 1\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    dm_docs docs = { 0 };
    if (load_eval_inputs(data, pos[0], &ctx, &docs, &m, &tok, &err)) {
        rc = cli_fail(&err);
    } else {
        dm_evaluator *ev = dm_evaluator_new(m, tok, ctx);
        dm_routing_stats st;
        rc = dm_eval_routing(ev, &docs, (int64_t)max_tokens, &st, &err);
        if (rc == 0) {
            if (json)
                routing_json(m, &st);
            else
                routing_text(m, &st);
            dm_routing_stats_free(&st);
        } else {
            rc = cli_fail(&err);
        }
        dm_evaluator_free(ev);
    }
    dm_docs_free(&docs);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    return rc;
}

static const cli_sub subcommands[] = {
    { "ppl", eval_ppl, "loss per token, perplexity, bits per byte (per source)" },
    { "reasoning", eval_reasoning, "exact-match accuracy on held-out reasoning problems (greedy)" },
    { "routing", eval_routing, "expert usage per layer and document source, load balance" },
    { "kl", cmd_eval_kl, "KL divergence, top-1 agreement and perplexity ratio of students to a teacher" },
    { "loops", cmd_eval_loops, "loop, runaway and EOS rates of sampled continuations (resumable run file)" },
    { "compare", cmd_eval_compare, "two loops runs: rate differences with CIs, z-test, McNemar, n needed" },
    { "report", cmd_eval_report, "loops runs to a markdown table and an SVG chart with CI whiskers" },
};

int cmd_eval(int argc, char **argv)
{
    return cli_dispatch("eval", subcommands, (int)(sizeof subcommands / sizeof subcommands[0]), argc, argv);
}
