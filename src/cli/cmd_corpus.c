/* cmd_corpus — `demolish corpus build` (the reference model's training
 * corpus from Debian packages and the reasoning generator, src/corpus/) and
 * `demolish corpus reasoning` (held-out reasoning problems, for a look or
 * for an evaluation harness). */
#include "cli/cli.h"
#include "corpus/corpus.h"

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

static const cli_sub subcommands[] = {
    { "build", corpus_build, "build the training corpus (code, prose, reasoning; train/val/test)" },
    { "reasoning", corpus_reasoning, "print held-out reasoning problems" },
};

int cmd_corpus(int argc, char **argv)
{
    return cli_dispatch("corpus", subcommands, (int)(sizeof subcommands / sizeof subcommands[0]), argc, argv);
}
