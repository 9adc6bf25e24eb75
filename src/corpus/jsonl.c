/* jsonl — the corpus's record format: writing JSON string literals (exact
 * and byte-stable, so the same documents give the same file) and reading a
 * .jsonl file of {"id","source","text"} records back. */
#include "corpus/corpus_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

void cp_json_string(cp_str *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    cp_str_add(out, "\"", 1);
    size_t run = 0;   /* start of the bytes not yet copied */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        cp_str_add(out, s + run, i - run);
        run = i + 1;
        char esc[6] = { '\\', 0 };
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\t': esc[1] = 't'; break;
        case '\r': esc[1] = 'r'; break;
        default:
            cp_str_add(out, "\\u00", 4);
            esc[0] = hex[c >> 4];
            esc[1] = hex[c & 15];
            cp_str_add(out, esc, 2);
            continue;
        }
        cp_str_add(out, esc, 2);
    }
    cp_str_add(out, s + run, n - run);
    cp_str_add(out, "\"", 1);
}

/* Takes ownership of a string member's bytes (or returns a copy of dflt). */
static char *take_string(cJSON *obj, const char *key, const char *dflt)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!cJSON_IsString(v) || !v->valuestring)
        return dflt ? dm_strdup(dflt) : NULL;
    char *s = v->valuestring;
    v->valuestring = NULL;   /* cJSON_Delete skips it; the bytes are ours now */
    return s;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Parses one line into d. Returns 0, or -1 with a message naming the line. */
static int parse_line(const char *path, size_t line_no, const char *s, size_t n, dm_doc *d, dm_err *err)
{
    cJSON *o = cJSON_ParseWithLength(s, n);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dm_errorf(err, "%s:%zu: not a JSON object", path, line_no);
    }
    if (!cJSON_IsString(cJSON_GetObjectItemCaseSensitive(o, "text"))) {
        cJSON_Delete(o);
        return dm_errorf(err, "%s:%zu: no string member \"text\"", path, line_no);
    }
    d->text = take_string(o, "text", NULL);
    d->len = strlen(d->text);
    d->source = take_string(o, "source", "");
    d->id = take_string(o, "id", "");
    cJSON_Delete(o);
    return 0;
}

int dm_docs_load(dm_docs *out, const char *path, dm_err *err)
{
    memset(out, 0, sizeof *out);
    dm_map map;
    if (dm_map_file(&map, path, err))
        return -1;
    const char *p = (const char *)map.data, *end = p + map.size;
    size_t cap = 0, line_no = 0;
    int rc = 0;
    while (p && p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        line_no++;
        if (!blank(p, n)) {
            if (out->n == cap) {
                cap = cap ? cap * 2 : 1024;
                out->doc = dm_realloc(out->doc, cap * sizeof *out->doc);
            }
            if ((rc = parse_line(path, line_no, p, n, &out->doc[out->n], err)))
                break;
            out->n++;
        }
        p += n + 1;
    }
    dm_unmap_file(&map);
    if (rc)
        dm_docs_free(out);
    return rc;
}

void dm_docs_free(dm_docs *d)
{
    for (size_t i = 0; i < d->n; i++) {
        free(d->doc[i].id);
        free(d->doc[i].source);
        free(d->doc[i].text);
    }
    free(d->doc);
    memset(d, 0, sizeof *d);
}
