/* main — `demolish <command> ...`: the table of commands. Each command lives
 * in its own cmd_*.c and only parses options and calls the library. */
#include "cli/cli.h"

#include <string.h>

#define DM_VERSION "0.1.0"

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    { "info", cmd_info, "architecture, parameters, bytes by dtype, experts per layer of a model" },
    { "generate", cmd_generate, "generate text from a prompt (prints prefill and decode tok/s)" },
    { "logits", cmd_logits, "every position's logits for a text or token ids, as .npy" },
    { "init", cmd_init, "write a random-weight model directory (presets or a config.json)" },
    { "bench", cmd_bench, "prefill and decode speed, measured like llama-bench" },
    { "corpus", cmd_corpus, "build the reference model's training corpus; print reasoning problems" },
    { "tokenizer", cmd_tokenizer, "train a byte-level BPE tokenizer on a corpus; encode text" },
    { "eval", cmd_eval, "ppl, reasoning, routing, kl (to a teacher), loops (loop rate), compare, report" },
    { "train", cmd_train, "train a model (full backward pass, AdamW, exact resume)" },
    { "calibrate", cmd_calibrate, "expert saliency (REAP, frequency, EAN) and imatrix over calibration text" },
    { "plan", cmd_plan, "choose the experts each layer keeps (uniform or non-uniform) from saliency stats" },
    { "prune", cmd_prune, "remove experts byte-exactly, streaming, into a new model directory" },
    { "heal", cmd_heal, "Router-KD: distill only the router gates of a pruned model to its teacher" },
};

static void usage(FILE *f)
{
    fprintf(f, "demolish %s — run, measure, prune and quantize GLM-5 / DeepSeek-V3-family MoE models\n\n"
               "usage: demolish <command> [options]     (demolish <command> --help for its options)\n\ncommands:\n",
            DM_VERSION);
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nexit codes: 0 success, 1 failure (bad input, I/O), 2 usage error\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return DM_EXIT_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return DM_EXIT_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("demolish %s\n", DM_VERSION);
        return DM_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "demolish: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return DM_EXIT_USAGE;
}
