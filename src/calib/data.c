/* data — calibration documents: a .jsonl file of records with "text" (or
 * chat "messages", rendered through the model's chat template), an optional
 * "source", and optionally a field of weighted byte ranges; a corpus
 * directory split (CORPUS_DIR[:split]); or any other file as one document.
 * The data's identity (sha256 of the file) goes into the stats. */
#include "calib/calib.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static dm_calib_doc *add_doc(dm_calib_data *d)
{
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 64;
        d->doc = dm_realloc(d->doc, (size_t)d->cap * sizeof(dm_calib_doc));
    }
    dm_calib_doc *doc = &d->doc[d->n++];
    memset(doc, 0, sizeof *doc);
    return doc;
}

/* "messages": [{"role": ..., "content": ...}, ...] rendered as the chat template does. */
static char *render_messages(const cJSON *msgs, const dm_tokenizer *tok, const char *where, dm_err *err)
{
    int n = cJSON_GetArraySize(msgs);
    dm_chat_msg *m = dm_calloc((size_t)n + 1, sizeof(dm_chat_msg));
    for (int i = 0; i < n; i++) {
        const cJSON *e = cJSON_GetArrayItem(msgs, i);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(e, "role");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(e, "content");
        if (!cJSON_IsString(role) || !cJSON_IsString(content)) {
            free(m);
            dm_errorf(err, "%s: messages[%d] needs string \"role\" and \"content\"", where, i);
            return NULL;
        }
        m[i] = (dm_chat_msg){ role->valuestring, content->valuestring };
    }
    char *text = dm_chat_render(tok, dm_chat_style_for(tok), m, n, false, true);
    free(m);
    return text;
}

/* [[start, end, weight], ...] over the text's bytes. */
static int read_regions(dm_calib_doc *doc, const cJSON *field, const char *where, dm_err *err)
{
    if (!cJSON_IsArray(field))
        return dm_errorf(err, "%s: the weights field must be a list of [start, end, weight]", where);
    int n = cJSON_GetArraySize(field);
    doc->region = dm_calloc((size_t)n * 2 + 1, sizeof(size_t));
    doc->region_weight = dm_calloc((size_t)n + 1, sizeof(double));
    for (int i = 0; i < n; i++) {
        const cJSON *r = cJSON_GetArrayItem(field, i);
        const cJSON *a = cJSON_GetArrayItem(r, 0), *b = cJSON_GetArrayItem(r, 1), *w = cJSON_GetArrayItem(r, 2);
        if (!cJSON_IsArray(r) || cJSON_GetArraySize(r) != 3 || !cJSON_IsNumber(a) || !cJSON_IsNumber(b) ||
            !cJSON_IsNumber(w) || !(a->valuedouble >= 0) || b->valuedouble < a->valuedouble ||
            b->valuedouble > (double)doc->len || a->valuedouble != floor(a->valuedouble) ||
            b->valuedouble != floor(b->valuedouble) || !(w->valuedouble >= 0) || !isfinite(w->valuedouble))
            return dm_errorf(err, "%s: weights[%d] must be [start, end, weight] with integer byte offsets "
                             "0 <= start <= end <= %zu and weight >= 0", where, i, doc->len);
        doc->region[2 * i] = (size_t)a->valuedouble;
        doc->region[2 * i + 1] = (size_t)b->valuedouble;
        doc->region_weight[i] = w->valuedouble;
    }
    doc->n_regions = n;
    return 0;
}

static int parse_record(dm_calib_data *d, const char *line, size_t len, const dm_tokenizer *tok, const char *wfield,
                        const char *where, dm_err *err)
{
    cJSON *o = cJSON_ParseWithLength(line, len);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dm_errorf(err, "%s: not a JSON object", where);
    }
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(o, "text");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
    const cJSON *source = cJSON_GetObjectItemCaseSensitive(o, "source");
    int rc = 0;
    char *body = NULL;
    if (cJSON_IsString(text))
        body = dm_strdup(text->valuestring);
    else if (cJSON_IsArray(msgs))
        body = render_messages(msgs, tok, where, err);
    else
        rc = dm_errorf(err, "%s: a record needs a string \"text\" or a \"messages\" list", where);
    if (rc == 0 && !body)
        rc = -1;
    if (rc == 0 && source && !cJSON_IsString(source))
        rc = dm_errorf(err, "%s: \"source\" must be a string", where);
    if (rc == 0) {
        dm_calib_doc *doc = add_doc(d);
        doc->text = body;
        doc->len = strlen(body);
        doc->source = dm_strdup(cJSON_IsString(source) ? source->valuestring : "");
        body = NULL;
        const cJSON *wf = wfield ? cJSON_GetObjectItemCaseSensitive(o, wfield) : NULL;
        if (wf && !cJSON_IsNull(wf))
            rc = read_regions(doc, wf, where, err);
    }
    free(body);
    cJSON_Delete(o);
    return rc;
}

static int load_jsonl(dm_calib_data *d, const char *path, const char *text, size_t len, const dm_tokenizer *tok,
                      const char *wfield, dm_err *err)
{
    int line_no = 0;
    for (size_t at = 0; at < len;) {
        const char *nl = memchr(text + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - text) : len;
        line_no++;
        size_t a = at;
        while (a < end && (text[a] == ' ' || text[a] == '\t' || text[a] == '\r'))
            a++;
        if (a < end) {
            char where[600];
            snprintf(where, sizeof where, "%s:%d", path, line_no);
            if (parse_record(d, text + a, end - a, tok, wfield, where, err))
                return -1;
        }
        at = end + 1;
    }
    return 0;
}

/* CORPUS_DIR or CORPUS_DIR:split (default val): its records as documents. */
static int load_corpus(dm_calib_data *d, const char *dir, const char *split, dm_err *err)
{
    int s = dm_split_parse(split);
    if (s < 0)
        return dm_errorf(err, "%s: unknown split '%s' (train, val, test)", dir, split);
    char *path = dm_corpus_split_path(dir, (dm_split)s);
    dm_docs docs;
    int rc = dm_docs_load(&docs, path, err);
    uint8_t dg[32];
    if (rc == 0)
        rc = dm_sha256_file(path, dg, err);
    if (rc == 0) {
        dm_sha256_hex(dg, d->hash);
        for (size_t i = 0; i < docs.n; i++) {
            dm_calib_doc *doc = add_doc(d);
            doc->text = dm_strndup(docs.doc[i].text, docs.doc[i].len);
            doc->len = docs.doc[i].len;
            doc->source = dm_strdup(docs.doc[i].source);
        }
        dm_docs_free(&docs);
    }
    free(path);
    return rc;
}

int dm_calib_data_load(dm_calib_data *d, const char *path, const dm_tokenizer *tok, const char *weights_field,
                       dm_err *err)
{
    memset(d, 0, sizeof *d);
    char *copy = dm_strdup(path), *colon = strrchr(copy, ':');
    int rc;
    if (colon && colon != copy && !strchr(colon, '/')) {
        *colon = 0;
        rc = dm_is_dir(copy) ? load_corpus(d, copy, colon + 1, err)
                             : dm_errorf(err, "%s: not a corpus directory", copy);
    } else if (dm_is_dir(path)) {
        rc = load_corpus(d, path, "val", err);
    } else {
        char *text;
        size_t len;
        rc = dm_read_file(path, &text, &len, err);
        if (rc == 0) {
            uint8_t dg[32];
            dm_sha256_ctx c;
            dm_sha256_init(&c);
            dm_sha256_update(&c, text, len);
            dm_sha256_final(&c, dg);
            dm_sha256_hex(dg, d->hash);
            size_t n = strlen(path);
            if (n > 6 && !strcmp(path + n - 6, ".jsonl")) {
                rc = load_jsonl(d, path, text, len, tok, weights_field, err);
                free(text);
            } else {
                dm_calib_doc *doc = add_doc(d);
                doc->text = text;
                doc->len = len;
                doc->source = dm_strdup("");
            }
        }
    }
    free(copy);
    if (rc == 0 && d->n == 0)
        rc = dm_errorf(err, "%s: no calibration documents", path);
    if (rc)
        dm_calib_data_free(d);
    return rc;
}

static bool in_list(const char *csv, const char *name)
{
    const size_t n = strlen(name);
    for (const char *p = csv; *p;) {
        const char *end = strchr(p, ',');
        const size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && !strncmp(p, name, n))
            return true;
        p += len + (end != NULL);
    }
    return false;
}

static void free_doc(dm_calib_doc *doc)
{
    free(doc->text);
    free(doc->source);
    free(doc->region);
    free(doc->region_weight);
}

int dm_calib_data_filter_sources(dm_calib_data *d, const char *sources, const char *where, dm_err *err)
{
    int n = 0;
    for (int i = 0; i < d->n; i++) {
        if (in_list(sources, d->doc[i].source))
            d->doc[n++] = d->doc[i];
        else
            free_doc(&d->doc[i]);
    }
    d->n = n;
    if (n == 0)
        return dm_errorf(err, "%s: no document has source %s", where, sources);
    dm_sha256_ctx c;   /* the selection is part of the data's identity */
    uint8_t dg[32];
    dm_sha256_init(&c);
    dm_sha256_update(&c, d->hash, strlen(d->hash));
    dm_sha256_update(&c, "\nsources=", 9);
    dm_sha256_update(&c, sources, strlen(sources));
    dm_sha256_final(&c, dg);
    dm_sha256_hex(dg, d->hash);
    return 0;
}

void dm_calib_data_free(dm_calib_data *d)
{
    for (int i = 0; i < d->n; i++)
        free_doc(&d->doc[i]);
    free(d->doc);
    memset(d, 0, sizeof *d);
}
