/* cmd_corpus — `demolish corpus build` (the reference model's training
 * corpus from Debian packages and the reasoning generator, src/corpus/),
 * `demolish corpus reasoning` (held-out reasoning problems, for a look or
 * for an evaluation harness) and `demolish corpus prompts` (a held-out prompt
 * set from a corpus's test split, for `demolish eval loops`). */
#include "cli/cli.h"
#include "corpus/corpus.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static void print_stats(const dm_corpus_stats *st)
{
    fprintf(stderr, "%-6s %-10s %10s %14s\n", "split", "domain", "documents", "bytes");
    for (int s = 0; s < DM_SPLIT_COUNT; s++)
        for (int d = 0; d < DM_DOMAIN_COUNT; d++)
            fprintf(stderr, "%-6s %-10s %10lld %14lld\n", dm_split_name((dm_split)s), dm_domain_name((dm_domain)d),
                    (long long)st->docs[s][d], (long long)st->bytes[s][d]);
    if (st->skipped_not_utf8 || st->skipped_empty)
        fprintf(stderr, "skipped: %lld not UTF-8, %lld empty\n", (long long)st->skipped_not_utf8,
                (long long)st->skipped_empty);
}

static int corpus_build(int argc, char **argv)
{
    dm_corpus_opts o = { .reasoning_docs = DM_CORPUS_REASONING_DOCS };
    const cli_opt opts[] = {
        { "--out", "-o", CLI_STR, &o.out_dir, "DIR", "output directory (required)" },
        { "--seed", NULL, CLI_U64, &o.seed, "N", "reasoning problems and record order (default 0)" },
        { "--reasoning-docs", NULL, CLI_INT, &o.reasoning_docs, "N", "reasoning problems to generate (default 40000)" },
        { "--code-dir", NULL, CLI_STR, &o.code_dir, "DIR", "Python sources (default " DM_CORPUS_CODE_DIR ")" },
        { "--prose-dir", NULL, CLI_STR, &o.prose_dir, "DIR",
          "kernel Documentation/ (default " DM_CORPUS_PROSE_DIR ")" },
        { "--force", NULL, CLI_FLAG, &o.force, NULL, "replace DIR if it exists" },
    };
    const cli_spec spec = { "corpus build", NULL,
                            "Builds the training corpus: Python standard library (code), kernel documentation "
                            "(prose),\nseeded arithmetic problems with step-by-step traces (reasoning); writes "
                            "DIR/{train,val,test}.jsonl\nand DIR/stats.json. Same inputs and seed, same bytes.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 0, 0 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!o.out_dir || o.reasoning_docs < 0)
        return fprintf(stderr, "demolish corpus build: need --out DIR and --reasoning-docs >= 0\n"), DM_EXIT_USAGE;
    dm_corpus_stats st;
    dm_err err;
    double t0 = dm_time_sec();
    if (dm_corpus_build(&o, &st, &err))
        return cli_fail(&err);
    if (dm_verbosity >= 1)
        print_stats(&st);
    dm_log(1, "wrote %s in %.1f s\n", o.out_dir, dm_time_sec() - t0);
    return DM_EXIT_OK;
}

static int corpus_reasoning(int argc, char **argv)
{
    int n = 5;
    uint64_t seed = 0;
    const char *split = "test";
    bool prompts = false;
    const cli_opt opts[] = {
        { "-n", NULL, CLI_INT, &n, "N", "how many problems (default 5)" },
        { "--seed", NULL, CLI_U64, &seed, "N", "problem stream (default 0: the corpus built with --seed 0)" },
        { "--split", NULL, CLI_STR, &split, "S", "train, val or test (default test: held out)" },
        { "--prompts", NULL, CLI_FLAG, &prompts, NULL, "print question<TAB>answer lines instead of documents" },
    };
    const cli_spec spec = { "corpus reasoning", NULL,
                            "Prints reasoning problems of a split, as the corpus holds them (the first N of the "
                            "stream\nwhose question falls in that split).",
                            opts, (int)(sizeof opts / sizeof opts[0]), 0, 0 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    int s = dm_split_parse(split);
    if (s < 0 || n < 0)
        return fprintf(stderr, "demolish corpus reasoning: --split is train, val or test; -n >= 0\n"), DM_EXIT_USAGE;
    dm_reasoning_doc *docs = dm_reasoning_heldout(seed, (dm_split)s, n);
    for (int i = 0; i < n; i++) {
        if (prompts)
            printf("%s\t%s\n", docs[i].question, docs[i].answer);
        else
            printf("%s%s\n", i ? "\n" : "", docs[i].text);
        dm_reasoning_doc_free(&docs[i]);
    }
    free(docs);
    return DM_EXIT_OK;
}

static void print_prompts_json(const dm_prompts_opts *o, const dm_prompts_stats *st)
{
    cJSON *root = cJSON_CreateObject();
    char seed[32];   /* a u64 exactly */
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(root, "out", o->out_path);
    cJSON_AddStringToObject(root, "corpus", o->corpus_dir);
    cJSON_AddRawToObject(root, "seed", seed);
    cJSON_AddNumberToObject(root, "per_source", o->per_source);
    cJSON_AddNumberToObject(root, "min_bytes", o->min_bytes);
    cJSON_AddNumberToObject(root, "max_bytes", o->max_bytes);
    cJSON *src = cJSON_AddObjectToObject(root, "sources");
    int64_t n = 0;
    for (int d = 0; d < DM_DOMAIN_COUNT; d++) {
        cJSON *s = cJSON_AddObjectToObject(src, dm_domain_name((dm_domain)d));
        cJSON_AddNumberToObject(s, "prompts", (double)st->prompts[d]);
        cJSON_AddNumberToObject(s, "mean_bytes", st->prompts[d] ? (double)st->bytes[d] / (double)st->prompts[d] : 0);
        cJSON_AddNumberToObject(s, "test_documents", (double)st->docs[d]);
        cJSON_AddNumberToObject(s, "documents_used", (double)st->docs_used[d]);
        cJSON_AddNumberToObject(s, "overlapping", (double)st->overlapping[d]);
        n += st->prompts[d];
    }
    cJSON_AddNumberToObject(root, "prompts", (double)n);
    char *text = cJSON_Print(root);
    printf("%s\n", text);
    free(text);
    cJSON_Delete(root);
}

static int corpus_prompts(int argc, char **argv)
{
    dm_prompts_opts o = { .per_source = DM_PROMPTS_PER_SOURCE, .min_bytes = DM_PROMPTS_MIN_BYTES,
                          .max_bytes = DM_PROMPTS_MAX_BYTES };
    bool json = false;
    const cli_opt opts[] = {
        { "--out", "-o", CLI_STR, &o.out_path, "FILE", "output .jsonl (required)" },
        { "--per-source", NULL, CLI_INT, &o.per_source, "N", "prompts per source (default 700)" },
        { "--seed", NULL, CLI_U64, &o.seed, "S", "window positions and lengths, choice, order (default 0)" },
        { "--min-bytes", NULL, CLI_INT, &o.min_bytes, "A", "shortest code/prose window (default 200)" },
        { "--max-bytes", NULL, CLI_INT, &o.max_bytes, "B", "longest code/prose window (default 800)" },
        { "--force", NULL, CLI_FLAG, &o.force, NULL, "replace FILE if it exists" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the summary as JSON on stdout" },
    };
    const cli_spec spec = {
        "corpus prompts", "CORPUS_DIR",
        "Writes held-out prompts for `demolish eval loops`, from CORPUS_DIR/test.jsonl only: N per source,\n"
        "one JSON line each, {\"id\",\"source\",\"prompt\"}. code and prose: windows of test documents\n"
        "from a line start to just after a newline, A..B bytes, distinct texts, non-overlapping ones first\n"
        "(id \"<docid>@<start>+<len>\"). reasoning: the question and \"\\n<think>\\n\" of test problems, as\n"
        "`eval reasoning` prompts. Lines are in a seeded shuffle, so the first K mix the sources.\n"
        "Same corpus and options, same bytes. A source with too few windows is an error naming it.",
        opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!o.out_path || o.per_source < 1 || o.min_bytes < 1 || o.max_bytes < o.min_bytes)
        return fprintf(stderr, "demolish corpus prompts: need --out FILE, --per-source >= 1 and "
                               "1 <= --min-bytes <= --max-bytes\n"), DM_EXIT_USAGE;
    o.corpus_dir = pos[0];
    dm_prompts_stats st;
    dm_err err;
    if (dm_corpus_prompts(&o, &st, &err))
        return cli_fail(&err);
    int64_t n = 0, bytes = 0;
    for (int d = 0; d < DM_DOMAIN_COUNT; d++)
        n += st.prompts[d], bytes += st.bytes[d];
    if (dm_verbosity >= 1) {
        fprintf(stderr, "wrote %lld prompts to %s:", (long long)n, o.out_path);
        for (int d = 0; d < DM_DOMAIN_COUNT; d++)
            fprintf(stderr, " %s %lld (mean %.0f B)%s", dm_domain_name((dm_domain)d), (long long)st.prompts[d],
                    st.prompts[d] ? (double)st.bytes[d] / (double)st.prompts[d] : 0.0,
                    d + 1 < DM_DOMAIN_COUNT ? "," : "");
        fprintf(stderr, "; mean %.0f B\n", n ? (double)bytes / (double)n : 0.0);
    }
    if (json)
        print_prompts_json(&o, &st);
    return DM_EXIT_OK;
}

static const cli_sub subcommands[] = {
    { "build", corpus_build, "build the training corpus (code, prose, reasoning; train/val/test)" },
    { "reasoning", corpus_reasoning, "print held-out reasoning problems" },
    { "prompts", corpus_prompts, "held-out prompts (code, prose, reasoning) for eval loops" },
};

int cmd_corpus(int argc, char **argv)
{
    return cli_dispatch("corpus", subcommands, (int)(sizeof subcommands / sizeof subcommands[0]), argc, argv);
}
