/* cli — the `demolish` command line: a table of commands, each a function
 * that parses its options (from a table, which also yields --help) and calls
 * library functions. Only this layer prints errors and exits.
 *
 * Exit codes: 0 success, 1 failure (bad input file, I/O, a check that did not
 * pass), 2 usage error (bad options). */
#ifndef DM_CLI_H
#define DM_CLI_H

#include "core/core.h"

enum { DM_EXIT_OK = 0, DM_EXIT_FAIL = 1, DM_EXIT_USAGE = 2 };

typedef enum cli_type { CLI_FLAG, CLI_INT, CLI_FLOAT, CLI_STR, CLI_U64, CLI_SIZE_MB, CLI_STR_LIST } cli_type;

typedef struct cli_strlist {
    const char **items;
    int n;
} cli_strlist;

typedef struct cli_opt {
    const char *name;        /* "--temp" */
    const char *alias;       /* "-t", or NULL */
    cli_type type;
    void *target;            /* bool*, int*, float*, const char**, uint64_t*, size_t* (MB→bytes), cli_strlist* */
    const char *metavar;
    const char *help;
} cli_opt;

typedef struct cli_spec {
    const char *command;     /* "generate" */
    const char *args;        /* "MODEL_DIR" */
    const char *summary;
    const cli_opt *opts;
    int n_opts;
    int min_pos, max_pos;    /* positional argument counts */
} cli_spec;

enum { CLI_PARSED = 0, CLI_HELP = 1, CLI_BAD = 2 };

/* Parses argv (argv[0] is the command name). Positional arguments go to
 * pos[]. Returns CLI_PARSED, CLI_HELP (help printed to stdout) or CLI_BAD
 * (message printed to stderr). --threads and -v/-q are handled here. */
int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos);
void cli_print_help(const cli_spec *spec, FILE *f);

/* "demolish: error: <message>" on stderr; returns DM_EXIT_FAIL. */
int cli_fail(const dm_err *err);
int cli_failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));


/* A command made of subcommands: one table, dispatched by cli_dispatch
 * (which prints the command's usage for --help or a bad subcommand). */
typedef struct cli_sub {
    const char *name;
    int (*run)(int argc, char **argv);   /* argv[0] is the subcommand */
    const char *summary;
} cli_sub;

int cli_dispatch(const char *command, const cli_sub *subs, int n, int argc, char **argv);

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_init(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_corpus(int argc, char **argv);
int cmd_tokenizer(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_eval_kl(int argc, char **argv);   /* `eval kl`, in its own file */
int cmd_eval_loops(int argc, char **argv);     /* `eval loops`, cmd_eval_loops.c */
int cmd_eval_compare(int argc, char **argv);   /* `eval compare`, cmd_eval_compare.c */
int cmd_eval_report(int argc, char **argv);    /* `eval report`, cmd_eval_report.c */
int cmd_train(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_plan(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_heal(int argc, char **argv);

#endif
