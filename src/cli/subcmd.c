/* subcmd — commands made of subcommands (`demolish corpus build`,
 * `demolish tokenizer train`, `demolish eval ppl`): one table per command,
 * dispatched here, which also prints the command's usage. */
#include "cli/cli.h"

#include <string.h>

int cli_dispatch(const char *command, const cli_sub *subs, int n, int argc, char **argv)
{
    for (int i = 0; argc >= 2 && i < n; i++)
        if (!strcmp(argv[1], subs[i].name))
            return subs[i].run(argc - 1, argv + 1);
    bool help = argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"));
    FILE *f = help ? stdout : stderr;
    if (argc >= 2 && !help)
        fprintf(f, "demolish %s: unknown subcommand '%s'\n\n", command, argv[1]);
    fprintf(f, "usage: demolish %s <subcommand> [options]   (demolish %s <subcommand> --help)\n\nsubcommands:\n",
            command, command);
    for (int i = 0; i < n; i++)
        fprintf(f, "  %-10s %s\n", subs[i].name, subs[i].summary);
    return help ? DM_EXIT_OK : DM_EXIT_USAGE;
}
