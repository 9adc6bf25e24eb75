/* args — table-driven option parsing for every command: the same table
 * drives parsing, validation and --help. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static int threads_opt = 0;
static bool verbose_opt = false, quiet_opt = false;

static const cli_opt common_opts[] = {
    { "--threads", "-t", CLI_INT, &threads_opt, "N", "worker threads (default: all cores)" },
    { "--verbose", "-v", CLI_FLAG, &verbose_opt, NULL, "more messages on stderr" },
    { "--quiet", "-q", CLI_FLAG, &quiet_opt, NULL, "no progress or timing messages" },
};
#define N_COMMON ((int)(sizeof common_opts / sizeof common_opts[0]))

static const char *type_metavar(const cli_opt *o)
{
    if (o->metavar)
        return o->metavar;
    switch (o->type) {
    case CLI_INT: return "N";
    case CLI_FLOAT: return "X";
    case CLI_U64: return "N";
    case CLI_SIZE_MB: return "MB";
    default: return "S";
    }
}

static void print_opts(FILE *f, const cli_opt *opts, int n)
{
    for (int i = 0; i < n; i++) {
        const cli_opt *o = &opts[i];
        char left[96];
        if (o->type == CLI_FLAG)
            snprintf(left, sizeof left, "%s%s%s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name);
        else
            snprintf(left, sizeof left, "%s%s%s %s", o->alias ? o->alias : "", o->alias ? ", " : "", o->name,
                     type_metavar(o));
        fprintf(f, "  %-28s %s%s\n", left, o->help, o->type == CLI_STR_LIST ? " (repeatable)" : "");
    }
}

void cli_print_help(const cli_spec *spec, FILE *f)
{
    const char *args = spec->args ? spec->args : "";
    const size_t n = strlen(args);
    fprintf(f, "usage: demolish %s %s%s[options]\n\n%s\n\noptions:\n", spec->command, args,
            n && args[n - 1] != ' ' ? " " : "", spec->summary);
    print_opts(f, spec->opts, spec->n_opts);
    print_opts(f, common_opts, N_COMMON);
    fprintf(f, "  %-28s %s\n", "-h, --help", "show this help");
}

static const cli_opt *lookup(const cli_spec *spec, const char *name)
{
    for (int i = 0; i < spec->n_opts; i++)
        if (!strcmp(spec->opts[i].name, name) || (spec->opts[i].alias && !strcmp(spec->opts[i].alias, name)))
            return &spec->opts[i];
    for (int i = 0; i < N_COMMON; i++)
        if (!strcmp(common_opts[i].name, name) || (common_opts[i].alias && !strcmp(common_opts[i].alias, name)))
            return &common_opts[i];
    return NULL;
}

static int bad(const cli_spec *spec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(const cli_spec *spec, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "demolish %s: ", spec->command);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see: demolish %s --help)\n", spec->command);
    va_end(ap);
    return CLI_BAD;
}

static int set_value(const cli_spec *spec, const cli_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case CLI_INT: {
        long x = strtol(v, &end, 10);
        if (*v == 0 || *end || errno || x < -2147483647L || x > 2147483647L)
            return bad(spec, "%s expects an integer, got '%s'", o->name, v);
        *(int *)o->target = (int)x;
        return 0;
    }
    case CLI_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (*v == 0 || *end || errno || *v == '-')
            return bad(spec, "%s expects a non-negative integer, got '%s'", o->name, v);
        *(uint64_t *)o->target = x;
        return 0;
    }
    case CLI_SIZE_MB: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !(x >= 0) || x > 1e9)
            return bad(spec, "%s expects a size in MB, got '%s'", o->name, v);
        *(size_t *)o->target = (size_t)(x * 1024 * 1024);
        return 0;
    }
    case CLI_FLOAT: {
        double x = strtod(v, &end);
        if (*v == 0 || *end || errno || !isfinite(x))
            return bad(spec, "%s expects a number, got '%s'", o->name, v);
        *(float *)o->target = (float)x;
        return 0;
    }
    case CLI_STR:
        *(const char **)o->target = v;
        return 0;
    case CLI_STR_LIST: {
        cli_strlist *l = o->target;
        l->items = dm_realloc(l->items, (size_t)(l->n + 1) * sizeof(char *));
        l->items[l->n++] = v;
        return 0;
    }
    default:
        return bad(spec, "internal: bad option type");
    }
}

int cli_parse(const cli_spec *spec, int argc, char **argv, const char **pos, int *n_pos)
{
    *n_pos = 0;
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!only_pos && (!strcmp(a, "-h") || !strcmp(a, "--help"))) {
            cli_print_help(spec, stdout);
            return CLI_HELP;
        }
        if (!only_pos && !strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (!only_pos && a[0] == '-' && a[1] != 0) {
            char name[64];
            const char *eq = strchr(a, '=');
            size_t len = eq ? (size_t)(eq - a) : strlen(a);
            if (len >= sizeof name)
                return bad(spec, "unknown option '%s'", a);
            memcpy(name, a, len);
            name[len] = 0;
            const cli_opt *o = lookup(spec, name);
            if (!o)
                return bad(spec, "unknown option '%s'", name);
            if (o->type == CLI_FLAG) {
                if (eq)
                    return bad(spec, "%s takes no value", name);
                *(bool *)o->target = true;
                continue;
            }
            const char *v = eq ? eq + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!v)
                return bad(spec, "%s needs a value", name);
            if (set_value(spec, o, v))
                return CLI_BAD;
            continue;
        }
        if (*n_pos >= spec->max_pos)
            return bad(spec, "unexpected argument '%s'", a);
        pos[(*n_pos)++] = a;
    }
    if (*n_pos < spec->min_pos)
        return bad(spec, "missing argument%s %s", spec->min_pos > 1 ? "s" : "", spec->args ? spec->args : "");
    if (threads_opt < 0)
        return bad(spec, "--threads must be >= 0");
    dm_threads_set(threads_opt);
    if (verbose_opt)
        dm_verbosity = 2;
    if (quiet_opt)
        dm_verbosity = 0;
    return CLI_PARSED;
}

int cli_fail(const dm_err *err)
{
    fprintf(stderr, "demolish: error: %s\n", err->msg);
    return DM_EXIT_FAIL;
}

int cli_failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "demolish: error: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return DM_EXIT_FAIL;
}
