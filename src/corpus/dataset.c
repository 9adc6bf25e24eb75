/* dataset — a corpus split as token streams, one per domain, for the
 * trainer: every document of the split's .jsonl tokenized (allow_special, so
 * the reasoning traces' <think>/</think> become their special tokens) and
 * followed by the <|endoftext|> id, in file order.
 *
 * Cache: CORPUS/cache-<16 hex digits of dm_corpus_hash(tokenizer.json)>/
 *   <split>-<domain>.u32   the stream, uint32 little-endian
 *   <split>.json           counts per domain and the .jsonl size it was made
 *                          from; written last, after every stream, so its
 *                          presence means the cache is complete.
 * Each file is written atomically (dm_write_file_atomic). The cache lives
 * inside the corpus directory, so rebuilding the corpus (which replaces that
 * directory) drops it. Tokenizing runs in parallel over documents; the
 * result does not depend on the thread count. */
#include "corpus/corpus_internal.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define EOS_TOKEN "<|endoftext|>"

static bool host_little_endian(void)
{
    const uint32_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Known domains first in their fixed order, then others by name. */
static int domain_rank(const char *name)
{
    int d = dm_domain_parse(name);
    return d >= 0 ? d : DM_DOMAIN_COUNT;
}

static int domain_cmp(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = domain_rank(x), ry = domain_rank(y);
    return rx != ry ? rx - ry : strcmp(x, y);
}

static bool safe_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

/* Fills ds->domain[] from the documents' sources; doc_dom[i] = index. */
static int collect_domains(dm_dataset *ds, const dm_docs *docs, int *doc_dom, const char *path, dm_err *err)
{
    for (size_t i = 0; i < docs->n; i++) {
        const char *src = docs->doc[i].source;
        if (!safe_name(src))
            return dm_errorf(err, "%s: record %zu: source \"%s\" is not a domain name ([a-z0-9_-]+)", path, i + 1,
                             src);
        int k = 0;
        while (k < ds->n_domains && strcmp(ds->domain[k], src))
            k++;
        if (k == ds->n_domains) {
            if (k == DM_DATASET_MAX_DOMAINS)
                return dm_errorf(err, "%s: more than %d sources", path, DM_DATASET_MAX_DOMAINS);
            ds->domain[ds->n_domains++] = dm_strdup(src);
        }
    }
    qsort(ds->domain, (size_t)ds->n_domains, sizeof *ds->domain, domain_cmp);
    for (size_t i = 0; i < docs->n; i++)
        doc_dom[i] = dm_dataset_find(ds, docs->doc[i].source);
    return 0;
}

/* Tokenizes every document (threads over documents) and concatenates the
 * results per domain into ds->owned. */
static void tokenize_docs(dm_dataset *ds, const dm_docs *docs, const int *doc_dom, const dm_tokenizer *tok)
{
    const long n = (long)docs->n;
    int32_t **ids = dm_calloc(n ? (size_t)n : 1, sizeof *ids);
    int *cnt = dm_calloc(n ? (size_t)n : 1, sizeof *cnt);
    dm_progress prog;
    dm_progress_begin(&prog, "tokenize", "docs", n);
    long done = 0;
    #pragma omp parallel for schedule(dynamic, 8)
    for (long i = 0; i < n; i++) {
        ids[i] = dm_tokenize(tok, docs->doc[i].text, docs->doc[i].len, true, &cnt[i]);
        long d;
        #pragma omp atomic capture
        d = ++done;
#ifdef _OPENMP
        if (omp_get_thread_num() == 0)
#endif
            dm_progress_update(&prog, d);
    }
    dm_progress_update(&prog, n);
    dm_progress_end(&prog);
    for (long i = 0; i < n; i++) {
        int d = doc_dom[i];
        ds->n_tokens[d] += (size_t)cnt[i] + 1;
        ds->n_docs[d]++;
        ds->n_bytes[d] += (int64_t)docs->doc[i].len;
    }
    size_t at[DM_DATASET_MAX_DOMAINS] = { 0 };
    for (int d = 0; d < ds->n_domains; d++)
        ds->owned[d] = dm_malloc((ds->n_tokens[d] ? ds->n_tokens[d] : 1) * sizeof(uint32_t));
    for (long i = 0; i < n; i++) {
        int d = doc_dom[i];
        for (int k = 0; k < cnt[i]; k++)
            ds->owned[d][at[d]++] = (uint32_t)ids[i][k];
        ds->owned[d][at[d]++] = ds->eos_id;
        free(ids[i]);
    }
    for (int d = 0; d < ds->n_domains; d++)
        ds->tokens[d] = ds->owned[d];
    free(ids);
    free(cnt);
}

static int tokenize_split(dm_dataset *ds, const char *corpus_dir, dm_split split, const dm_tokenizer *tok,
                          dm_err *err)
{
    int32_t eos = dm_token_id(tok, EOS_TOKEN);
    if (eos < 0)
        return dm_errorf(err, "the tokenizer has no %s token (documents are separated by it)", EOS_TOKEN);
    ds->eos_id = (uint32_t)eos;
    char *path = dm_corpus_split_path(corpus_dir, split);
    dm_docs docs;
    int rc = dm_docs_load(&docs, path, err);
    if (rc == 0) {
        int *doc_dom = dm_calloc(docs.n ? docs.n : 1, sizeof *doc_dom);
        rc = collect_domains(ds, &docs, doc_dom, path, err);
        if (rc == 0)
            tokenize_docs(ds, &docs, doc_dom, tok);
        free(doc_dom);
        dm_docs_free(&docs);
    }
    free(path);
    return rc;
}

static int parse_split(const char *split, dm_err *err)
{
    int s = dm_split_parse(split);
    if (s < 0)
        dm_errorf(err, "unknown split '%s' (train, val or test)", split);
    return s;
}

int dm_dataset_tokenize(dm_dataset *ds, const char *corpus_dir, const char *split, const dm_tokenizer *tok,
                        dm_err *err)
{
    memset(ds, 0, sizeof *ds);
    int s = parse_split(split, err);
    if (s < 0 || tokenize_split(ds, corpus_dir, (dm_split)s, tok, err)) {
        dm_dataset_close(ds);
        return -1;
    }
    return 0;
}

/* ---- the cache ---- */

static char *stream_path(const char *dir, const char *split, const char *domain)
{
    char *name = dm_asprintf("%s-%s.u32", split, domain);
    char *p = dm_path_join(dir, name);
    free(name);
    return p;
}

static char *meta_path(const char *dir, const char *split)
{
    char *name = dm_asprintf("%s.json", split);
    char *p = dm_path_join(dir, name);
    free(name);
    return p;
}

static int64_t file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int64_t)st.st_size : -1;
}

/* Maps a complete cache into ds. Returns 0, or -1 when there is none (or it
 * is stale or damaged: the caller rebuilds it). */
static int cache_load(dm_dataset *ds, const char *split, int64_t jsonl_bytes)
{
    char *mp = meta_path(ds->cache_dir, split), *text = NULL;
    dm_err e;
    int rc = dm_read_file(mp, &text, NULL, &e);
    free(mp);
    cJSON *root = rc == 0 ? cJSON_Parse(text) : NULL;
    free(text);
    cJSON *doms = cJSON_GetObjectItemCaseSensitive(root, "domains");
    cJSON *jb = cJSON_GetObjectItemCaseSensitive(root, "jsonl_bytes");
    cJSON *eos = cJSON_GetObjectItemCaseSensitive(root, "eos_id");
    rc = cJSON_IsArray(doms) && cJSON_IsNumber(jb) && (int64_t)jb->valuedouble == jsonl_bytes &&
                 cJSON_IsNumber(eos) && cJSON_GetArraySize(doms) <= DM_DATASET_MAX_DOMAINS
             ? 0 : -1;
    cJSON *d;
    if (rc == 0) {
        ds->eos_id = (uint32_t)eos->valuedouble;
        cJSON_ArrayForEach(d, doms) {
            cJSON *name = cJSON_GetObjectItemCaseSensitive(d, "name");
            cJSON *nt = cJSON_GetObjectItemCaseSensitive(d, "tokens");
            if (!cJSON_IsString(name) || !safe_name(name->valuestring) || !cJSON_IsNumber(nt)) {
                rc = -1;
                break;
            }
            int k = ds->n_domains++;
            ds->domain[k] = dm_strdup(name->valuestring);
            ds->n_tokens[k] = (size_t)nt->valuedouble;
            ds->n_docs[k] = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "documents"));
            ds->n_bytes[k] = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(d, "bytes"));
            char *sp = stream_path(ds->cache_dir, split, name->valuestring);
            if (dm_map_file(&ds->map[k], sp, &e) || ds->map[k].size != ds->n_tokens[k] * sizeof(uint32_t))
                rc = -1;
            ds->tokens[k] = (const uint32_t *)ds->map[k].data;
            free(sp);
            if (rc)
                break;
        }
    }
    cJSON_Delete(root);
    return rc;
}

static int cache_write(const dm_dataset *ds, const char *split, int64_t jsonl_bytes, const char *tok_hash,
                       dm_err *err)
{
    if (dm_make_dirs(ds->cache_dir))
        return dm_errorf(err, "%s: cannot create directory", ds->cache_dir);
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "tokenizer_hash", tok_hash);
    cJSON_AddNumberToObject(root, "jsonl_bytes", (double)jsonl_bytes);
    cJSON_AddNumberToObject(root, "eos_id", ds->eos_id);
    cJSON *doms = cJSON_AddArrayToObject(root, "domains");
    int rc = 0;
    for (int k = 0; k < ds->n_domains && rc == 0; k++) {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "name", ds->domain[k]);
        cJSON_AddNumberToObject(d, "documents", (double)ds->n_docs[k]);
        cJSON_AddNumberToObject(d, "bytes", (double)ds->n_bytes[k]);
        cJSON_AddNumberToObject(d, "tokens", (double)ds->n_tokens[k]);
        cJSON_AddItemToArray(doms, d);
        char *sp = stream_path(ds->cache_dir, split, ds->domain[k]);
        rc = dm_write_file_atomic(sp, ds->tokens[k], ds->n_tokens[k] * sizeof(uint32_t), err);
        free(sp);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (rc == 0) {
        char *mp = meta_path(ds->cache_dir, split);
        rc = dm_write_file_atomic(mp, text, strlen(text), err);
        free(mp);
    }
    free(text);
    return rc;
}

static void reset_domains(dm_dataset *ds)
{
    for (int k = 0; k < DM_DATASET_MAX_DOMAINS; k++) {
        free(ds->domain[k]);
        free(ds->owned[k]);
        dm_unmap_file(&ds->map[k]);
    }
    char *dir = ds->cache_dir;
    memset(ds, 0, sizeof *ds);
    ds->cache_dir = dir;
}

int dm_dataset_open(dm_dataset *ds, const char *corpus_dir, const char *split, const char *tokenizer_path,
                    dm_err *err)
{
    memset(ds, 0, sizeof *ds);
    DM_ASSERT(host_little_endian());   /* the .u32 files are the in-memory arrays */
    int s = parse_split(split, err);
    if (s < 0)
        return -1;
    char *tok_file = dm_is_dir(tokenizer_path) ? dm_path_join(tokenizer_path, "tokenizer.json")
                                               : dm_strdup(tokenizer_path);
    char *json = NULL, *jsonl = dm_corpus_split_path(corpus_dir, (dm_split)s);
    size_t json_len = 0;
    int64_t jsonl_bytes = file_size(jsonl);
    int rc = jsonl_bytes < 0 ? dm_errorf(err, "%s: not found (build the corpus first)", jsonl)
                             : dm_read_file(tok_file, &json, &json_len, err);
    if (rc == 0) {
        char hash[17], *dirname;
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)dm_corpus_hash(json, json_len));
        dirname = dm_asprintf("cache-%s", hash);
        ds->cache_dir = dm_path_join(corpus_dir, dirname);
        free(dirname);
        ds->from_cache = cache_load(ds, split, jsonl_bytes) == 0;
        if (!ds->from_cache) {
            reset_domains(ds);
            dm_tokenizer *tok;
            rc = dm_tokenizer_load_json(&tok, json, json_len, tok_file, err);
            if (rc == 0) {
                rc = tokenize_split(ds, corpus_dir, (dm_split)s, tok, err);
                dm_tokenizer_free(tok);
            }
            if (rc == 0)
                rc = cache_write(ds, split, jsonl_bytes, hash, err);
        }
    }
    free(json);
    free(jsonl);
    free(tok_file);
    if (rc)
        dm_dataset_close(ds);
    return rc;
}

int dm_dataset_n_domains(const dm_dataset *ds)
{
    return ds->n_domains;
}

const char *dm_dataset_domain(const dm_dataset *ds, int d)
{
    DM_ASSERT(d >= 0 && d < ds->n_domains);
    return ds->domain[d];
}

int dm_dataset_find(const dm_dataset *ds, const char *name)
{
    for (int d = 0; d < ds->n_domains; d++)
        if (!strcmp(ds->domain[d], name))
            return d;
    return -1;
}

const uint32_t *dm_dataset_tokens(const dm_dataset *ds, int d, size_t *n)
{
    DM_ASSERT(d >= 0 && d < ds->n_domains);
    *n = ds->n_tokens[d];
    return ds->tokens[d];
}

void dm_dataset_close(dm_dataset *ds)
{
    reset_domains(ds);
    free(ds->cache_dir);
    memset(ds, 0, sizeof *ds);
}
