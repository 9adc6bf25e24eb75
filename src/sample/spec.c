/* spec — sampler settings as one string and as named presets, for tools
 * that record how they sampled (`demolish eval loops` writes the canonical
 * spec into its run header, `eval compare` and `eval report` print it).
 *
 * A spec is "key=value,key=value,..."; one table below names every field of
 * dm_sampler_params that a spec can carry, its type and its key, so the
 * parser, the formatter and the list in sample.h cannot drift apart. The
 * guardrail presets are a second table. */
#include "sample/sample.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef enum spec_type { SPEC_FLOAT, SPEC_INT, SPEC_U64, SPEC_SCOPE } spec_type;

typedef struct spec_key {
    const char *name;
    const char *alias;      /* or NULL */
    spec_type type;
    size_t off;             /* offset of the field in dm_sampler_params */
} spec_key;

#define F(name, alias, type, field) { name, alias, type, offsetof(dm_sampler_params, field) }
static const spec_key keys[] = {
    F("temp", "temperature", SPEC_FLOAT, temperature),
    F("top_k", NULL, SPEC_INT, top_k),
    F("top_p", NULL, SPEC_FLOAT, top_p),
    F("min_p", NULL, SPEC_FLOAT, min_p),
    F("repeat_penalty", NULL, SPEC_FLOAT, repeat_penalty),
    F("rep_scope", NULL, SPEC_SCOPE, repeat_scope),
    F("repeat_last_n", NULL, SPEC_INT, repeat_last_n),
    F("presence_penalty", NULL, SPEC_FLOAT, presence_penalty),
    F("frequency_penalty", NULL, SPEC_FLOAT, frequency_penalty),
    F("hesitation_penalty", NULL, SPEC_FLOAT, hesitation_penalty),
    F("seed", NULL, SPEC_U64, seed),
};
#undef F
#define N_KEYS (sizeof keys / sizeof keys[0])

static const char *const scope_names[] = { "all", "window", "output" };   /* by dm_rep_scope */

static const spec_key *find_key(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        if (strlen(keys[i].name) == len && !memcmp(keys[i].name, name, len))
            return &keys[i];
        if (keys[i].alias && strlen(keys[i].alias) == len && !memcmp(keys[i].alias, name, len))
            return &keys[i];
    }
    return NULL;
}

/* Parses the NUL-terminated value v into the field k of p. */
static int set_value(dm_sampler_params *p, const spec_key *k, const char *v, dm_err *err)
{
    char *end;
    void *field = (char *)p + k->off;
    errno = 0;
    switch (k->type) {
    case SPEC_FLOAT: {
        float x = strtof(v, &end);
        if (end == v || *end || !isfinite(x))
            return dm_errorf(err, "sampler spec: %s=%s: not a finite number", k->name, v);
        *(float *)field = x;
        return 0;
    }
    case SPEC_INT: {
        long x = strtol(v, &end, 10);
        if (end == v || *end || errno || x < INT_MIN || x > INT_MAX)
            return dm_errorf(err, "sampler spec: %s=%s: not an integer", k->name, v);
        *(int *)field = (int)x;
        return 0;
    }
    case SPEC_U64: {
        unsigned long long x = strtoull(v, &end, 10);
        if (end == v || *end || errno || v[0] == '-' || v[0] == '+' || v[0] == ' ')
            return dm_errorf(err, "sampler spec: %s=%s: not an unsigned 64-bit integer", k->name, v);
        *(uint64_t *)field = (uint64_t)x;
        return 0;
    }
    case SPEC_SCOPE:
        for (size_t i = 0; i < sizeof scope_names / sizeof scope_names[0]; i++)
            if (!strcmp(v, scope_names[i])) {
                *(dm_rep_scope *)field = (dm_rep_scope)i;
                return 0;
            }
        return dm_errorf(err, "sampler spec: %s=%s: not one of all, window, output", k->name, v);
    }
    DM_ASSERT(!"unknown spec type");
    return -1;
}

/* Parses one "key=value" item of len bytes into p. */
static int parse_item(dm_sampler_params *p, const char *item, size_t len, dm_err *err)
{
    const char *eq = memchr(item, '=', len);
    if (!eq)
        return dm_errorf(err, "sampler spec: item '%.*s' is not key=value", (int)(len < 64 ? len : 64), item);
    const spec_key *k = find_key(item, (size_t)(eq - item));
    if (!k)
        return dm_errorf(err, "sampler spec: unknown key '%.*s' (keys: temp, top_k, top_p, min_p, repeat_penalty, "
                              "rep_scope, repeat_last_n, presence_penalty, frequency_penalty, hesitation_penalty, seed)",
                         (int)((eq - item) < 64 ? (eq - item) : 64), item);
    char *v = dm_strndup(eq + 1, len - (size_t)(eq + 1 - item));
    int rc = set_value(p, k, v, err);
    free(v);
    return rc;
}

int dm_sampler_parse_spec(dm_sampler_params *p, const char *spec, dm_err *err)
{
    dm_sampler_params q = *p;
    for (const char *s = spec; *s;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == 0)
            return dm_errorf(err, "sampler spec: empty item in '%.200s'", spec);
        if (parse_item(&q, s, len, err))
            return -1;
        s += len + (comma != NULL);
        if (comma && !*s)
            return dm_errorf(err, "sampler spec: trailing ',' in '%.200s'", spec);
    }
    /* Ranges without a vocabulary: the id lists are checked where they are set. */
    dm_sampler_params c = q;
    c.bias = NULL, c.n_bias = 0, c.hesitation_ids = NULL, c.n_hesitation = 0;
    if (dm_sampler_params_check(&c, 1, err))
        return dm_err_prefix(err, "sampler spec '%.200s'", spec);
    *p = q;
    return 0;
}

/* The shortest %g form (6 to 9 digits) that reads back as the same float:
 * "0.6", not "0.600000024"; 9 digits always round-trip a float. */
static void format_float(float x, char *v, size_t cap)
{
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(v, cap, "%.*g", prec, (double)x);
        if (strtof(v, NULL) == x)
            return;
    }
}

int dm_sampler_format_spec(const dm_sampler_params *p, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < N_KEYS; i++) {
        const void *field = (const char *)p + keys[i].off;
        char v[64];
        switch (keys[i].type) {
        case SPEC_FLOAT: format_float(*(const float *)field, v, sizeof v); break;
        case SPEC_INT: snprintf(v, sizeof v, "%d", *(const int *)field); break;
        case SPEC_U64: snprintf(v, sizeof v, "%llu", (unsigned long long)*(const uint64_t *)field); break;
        case SPEC_SCOPE: {
            unsigned sc = (unsigned)*(const dm_rep_scope *)field;
            snprintf(v, sizeof v, "%s", sc < 3 ? scope_names[sc] : "?");
            break;
        }
        }
        int w = snprintf(n < cap ? buf + n : NULL, n < cap ? cap - n : 0, "%s%s=%s", i ? "," : "", keys[i].name, v);
        n += (size_t)w;
    }
    if (cap > 0 && n >= cap)
        buf[cap - 1] = '\0';
    return (int)n;
}

/* ---- guardrail presets --------------------------------------------------- */

typedef struct guardrail {
    const char *name;
    float min_p, repeat_penalty;   /* < 0: leave the field as it is */
    const char *help;
} guardrail;

static const guardrail guardrails[] = {
    { "none", -1, -1, "leaves the sampler as given" },
    { "gentle", 0.05f, 1.05f, "min_p=0.05, repeat_penalty=1.05, rep_scope=all" },
    { "strong", 0.05f, 1.10f, "min_p=0.05, repeat_penalty=1.10, rep_scope=all (the GLM-5.2-504B report's)" },
};

int dm_sampler_guardrail(dm_sampler_params *p, const char *name, dm_err *err)
{
    for (size_t i = 0; i < sizeof guardrails / sizeof guardrails[0]; i++) {
        const guardrail *g = &guardrails[i];
        if (strcmp(name, g->name))
            continue;
        if (g->min_p >= 0) {
            p->min_p = g->min_p;
            p->repeat_penalty = g->repeat_penalty;
            p->repeat_scope = DM_REP_SCOPE_ALL;   /* vLLM: prompt + output, no window */
        }
        return 0;
    }
    return dm_errorf(err, "unknown guardrail '%s' (none, gentle, strong)", name);
}

const char *dm_sampler_guardrail_help(void)
{
    static char text[512];
    if (!text[0]) {
        size_t n = 0;
        for (size_t i = 0; i < sizeof guardrails / sizeof guardrails[0]; i++)
            n += (size_t)snprintf(text + n, sizeof text - n, "  %-8s %s\n", guardrails[i].name, guardrails[i].help);
    }
    return text;
}
