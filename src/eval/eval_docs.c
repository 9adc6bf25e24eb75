/* eval_docs — perplexity over documents (`demolish eval ppl`): reading the
 * --data argument (corpus split, .jsonl or plain text), framing and
 * evaluating each document, and totals per source. */
#include "eval/eval.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_SPLIT DM_SPLIT_VAL

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !memcmp(s + n - k, suffix, k);
}

static int load_corpus(const char *dir, dm_split split, dm_docs *out, dm_err *err)
{
    char *path = dm_corpus_split_path(dir, split);
    int rc = dm_docs_load(out, path, err);
    free(path);
    return rc;
}

int dm_eval_load_data(const char *data, dm_docs *out, dm_err *err)
{
    memset(out, 0, sizeof *out);
    const char *colon = strrchr(data, ':');
    if (colon && dm_split_parse(colon + 1) >= 0) {
        char *dir = dm_strndup(data, (size_t)(colon - data));
        int rc = dm_is_dir(dir) ? load_corpus(dir, (dm_split)dm_split_parse(colon + 1), out, err)
                                : dm_errorf(err, "%s: not a corpus directory", dir);
        free(dir);
        return rc;
    }
    if (dm_is_dir(data))
        return load_corpus(data, DEFAULT_SPLIT, out, err);
    if (ends_with(data, ".jsonl"))
        return dm_docs_load(out, data, err);
    char *text;
    size_t len;
    if (dm_read_file(data, &text, &len, err))
        return -1;
    out->doc = dm_calloc(1, sizeof *out->doc);
    out->n = 1;
    out->doc[0] = (dm_doc){ dm_strdup(data), dm_strdup(""), text, len };
    return 0;
}

/* The group of a source, added on first sight; -1 for no source. */
static int group_of(dm_eval_report *r, const char *source, dm_err *err)
{
    if (!source[0])
        return -1;
    for (int g = 0; g < r->n_groups; g++)
        if (!strcmp(r->group[g], source))
            return g;
    if (r->n_groups == DM_EVAL_MAX_GROUPS) {
        dm_errorf(err, "more than %d distinct sources", DM_EVAL_MAX_GROUPS);
        return -2;
    }
    r->group[r->n_groups] = dm_strdup(source);
    return r->n_groups++;
}

int32_t *dm_eval_frame_doc(const dm_evaluator *ev, const dm_doc *d, size_t *n)
{
    int k;
    int32_t *t = dm_tokenize(ev->tok, d->text, d->len, true, &k);
    if (ev->eos < 0) {
        *n = (size_t)k;
        return t;
    }
    int32_t *f = dm_malloc(((size_t)k + 2) * sizeof *f);
    f[0] = ev->eos;
    if (k > 0)
        memcpy(f + 1, t, (size_t)k * sizeof *f);
    f[k + 1] = ev->eos;
    free(t);
    *n = (size_t)k + 2;
    return f;
}

int dm_eval_docs(dm_evaluator *ev, const dm_docs *docs, int64_t max_tokens, dm_eval_report *r, dm_err *err)
{
    DM_ASSERT(ev->tok);
    memset(r, 0, sizeof *r);
    r->ctx = ev->ctx;
    dm_progress prog;
    dm_progress_begin(&prog, "eval", "docs", (int64_t)docs->n);
    int rc = 0;
    for (size_t i = 0; i < docs->n && rc == 0; i++) {
        if (max_tokens > 0 && r->total.n_tokens >= max_tokens) {
            r->truncated = true;
            break;
        }
        const dm_doc *d = &docs->doc[i];
        int g = group_of(r, d->source, err);
        if (g < -1) {
            rc = -1;
            break;
        }
        size_t n;
        int32_t *ids = dm_eval_frame_doc(ev, d, &n);
        dm_nll x = { 0 };
        rc = dm_eval_stream(ev, ids, n, max_tokens > 0 ? max_tokens - r->total.n_tokens : 0, &x, err);
        free(ids);
        if (rc) {
            dm_err_prefix(err, "document %zu (%s)", i + 1, d->id[0] ? d->id : "no id");
            break;
        }
        if (n > 0 && x.n_tokens < (int64_t)n - 1)
            r->truncated = true;
        x.n_docs = 1;
        dm_nll_add(&r->total, &x);
        if (g >= 0)
            dm_nll_add(&r->groups[g], &x);
        dm_progress_update(&prog, (int64_t)i + 1);
    }
    dm_progress_end(&prog);
    if (rc)
        dm_eval_report_free(r);
    return rc;
}

void dm_eval_report_free(dm_eval_report *r)
{
    for (int g = 0; g < r->n_groups; g++)
        free(r->group[g]);
    memset(r, 0, sizeof *r);
}
