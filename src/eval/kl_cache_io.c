/* kl_cache_io — the teacher-logits cache of `eval kl` as one safetensors
 * file, readable by any tool:
 *   tokens       I32 [n_tokens]        framed documents, concatenated
 *   doc_start    I64 [n_docs + 1]      document offsets into tokens
 *   doc_group    I32 [n_docs]          source index (-1: none)
 *   target_logp  F32 [n_pos]           teacher log p of the actual next token
 *   logp         F32 [n_pos, top_k]    teacher log p of its top-k tokens (full: [n_pos, vocab])
 *   top_id       I32 [n_pos, top_k]    those tokens, most likely first (top-k only)
 *   other_logp   F32 [n_pos]           log of the other tokens' mass (top-k only)
 * metadata: format "demolish-kl-cache", version 1, teacher_hash, data_hash,
 * vocab, ctx, top_k, n_pos, truncated, sources (a JSON list of names).
 * Loading validates every index (it is a parser of untrusted files). */
#include "eval/eval.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct field {
    const char *name;
    dm_dtype dtype;
    int ndim;
    int64_t shape[2];
} field;

/* The tensors of cache c (n_tokens framed tokens), in file order. */
static int cache_fields(const dm_kl_cache *c, int64_t n_tokens, field *f)
{
    const int64_t row = c->top_k ? c->top_k : c->V;
    int n = 0;
    f[n++] = (field){ "tokens", DM_DTYPE_I32, 1, { n_tokens } };
    f[n++] = (field){ "doc_start", DM_DTYPE_I64, 1, { c->n_docs + 1 } };
    f[n++] = (field){ "doc_group", DM_DTYPE_I32, 1, { c->n_docs } };
    f[n++] = (field){ "target_logp", DM_DTYPE_F32, 1, { c->n_pos } };
    f[n++] = (field){ "logp", DM_DTYPE_F32, 2, { c->n_pos, row } };
    if (c->top_k) {
        f[n++] = (field){ "top_id", DM_DTYPE_I32, 2, { c->n_pos, c->top_k } };
        f[n++] = (field){ "other_logp", DM_DTYPE_F32, 1, { c->n_pos } };
    }
    return n;
}

static void **field_data(dm_kl_cache *c, const char *name)
{
    if (!strcmp(name, "tokens"))
        return (void **)&c->tokens;
    if (!strcmp(name, "doc_start"))
        return (void **)&c->doc_start;
    if (!strcmp(name, "doc_group"))
        return (void **)&c->doc_group;
    if (!strcmp(name, "target_logp"))
        return (void **)&c->target_logp;
    if (!strcmp(name, "logp"))
        return (void **)&c->logp;
    if (!strcmp(name, "top_id"))
        return (void **)&c->top_id;
    return (void **)&c->other_logp;
}

int dm_kl_cache_save(const dm_kl_cache *c, const char *path, dm_err *err)
{
    dm_st_writer *w = dm_st_writer_new_file(path);
    char num[4][32];
    snprintf(num[0], sizeof num[0], "%d", c->V);
    snprintf(num[1], sizeof num[1], "%d", c->ctx);
    snprintf(num[2], sizeof num[2], "%d", c->top_k);
    snprintf(num[3], sizeof num[3], "%lld", (long long)c->n_pos);
    cJSON *src = cJSON_CreateArray();
    for (int g = 0; g < c->n_groups; g++)
        cJSON_AddItemToArray(src, cJSON_CreateString(c->group[g]));
    char *sources = cJSON_PrintUnformatted(src);
    cJSON_Delete(src);
    const char *meta[][2] = { { "format", "demolish-kl-cache" }, { "version", "1" },
                              { "teacher_hash", c->teacher_hash }, { "data_hash", c->data_hash },
                              { "vocab", num[0] }, { "ctx", num[1] }, { "top_k", num[2] }, { "n_pos", num[3] },
                              { "truncated", c->truncated ? "1" : "0" }, { "sources", sources } };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        dm_st_writer_set_metadata(w, meta[i][0], meta[i][1]);
    free(sources);
    field f[8];
    const int n = cache_fields(c, c->doc_start[c->n_docs], f);
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++)
        rc = dm_st_writer_declare(w, f[i].name, f[i].dtype, f[i].ndim, f[i].shape, err);
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    for (int i = 0; i < n && rc == 0; i++) {
        size_t bytes = dm_dtype_size(f[i].dtype) * (size_t)f[i].shape[0] * (f[i].ndim == 2 ? (size_t)f[i].shape[1] : 1);
        rc = dm_st_writer_write(w, f[i].name, *field_data((dm_kl_cache *)c, f[i].name), bytes, err);
    }
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    return rc;
}

/* ---- loading ---- */

static int meta_int(const dm_safetensors *sf, const char *key, int64_t lo, int64_t hi, int64_t *out, const char *path,
                    dm_err *err)
{
    const char *v = dm_st_metadata(sf, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || x < lo || x > hi)
        return dm_errorf(err, "%s: metadata '%s' is missing or not an integer in [%lld, %lld]", path, key,
                         (long long)lo, (long long)hi);
    *out = x;
    return 0;
}

static int read_meta(dm_kl_cache *c, const dm_safetensors *sf, const char *path, dm_err *err)
{
    const char *fmt = dm_st_metadata(sf, "format");
    if (!fmt || strcmp(fmt, "demolish-kl-cache") != 0)
        return dm_errorf(err, "%s: not a demolish KL cache (metadata format)", path);
    const char *ver = dm_st_metadata(sf, "version");
    if (!ver || strcmp(ver, "1") != 0)
        return dm_errorf(err, "%s: metadata 'version' is missing or not 1 (delete the cache to rebuild)", path);
    int64_t v[5];
    if (meta_int(sf, "vocab", 1, 1 << 24, &v[0], path, err) || meta_int(sf, "ctx", 1, 1 << 24, &v[1], path, err) ||
        meta_int(sf, "top_k", 0, v[0] - 1, &v[2], path, err) ||
        meta_int(sf, "n_pos", 1, INT64_C(1) << 40, &v[3], path, err) ||
        meta_int(sf, "truncated", 0, 1, &v[4], path, err))
        return -1;
    c->V = (int)v[0];
    c->ctx = (int)v[1];
    c->top_k = (int)v[2];
    c->n_pos = v[3];
    c->truncated = v[4];
    const char *th = dm_st_metadata(sf, "teacher_hash"), *dh = dm_st_metadata(sf, "data_hash");
    if (!th || !dh || strlen(th) != 64 || strlen(dh) != 64)
        return dm_errorf(err, "%s: metadata teacher_hash / data_hash missing or malformed", path);
    memcpy(c->teacher_hash, th, 65);
    memcpy(c->data_hash, dh, 65);
    const char *s = dm_st_metadata(sf, "sources");
    cJSON *src = s ? cJSON_Parse(s) : NULL;
    int rc = cJSON_IsArray(src) && cJSON_GetArraySize(src) <= DM_EVAL_MAX_GROUPS
                 ? 0
                 : dm_errorf(err, "%s: metadata 'sources' is not a list of at most %d names", path, DM_EVAL_MAX_GROUPS);
    const cJSON *e;
    cJSON_ArrayForEach(e, src)
    {
        if (rc || !cJSON_IsString(e)) {
            rc = rc ? rc : dm_errorf(err, "%s: metadata 'sources' holds a non-string", path);
            break;
        }
        c->group[c->n_groups++] = dm_strdup(e->valuestring);
    }
    cJSON_Delete(src);
    return rc;
}

/* Copies tensor `name` out of the file after checking dtype and shape. */
static int read_field(dm_kl_cache *c, const dm_safetensors *sf, const field *f, const char *path, dm_err *err)
{
    const dm_st_tensor *t = dm_st_find(sf, f->name);
    if (!t || t->dtype != f->dtype || t->ndim != f->ndim || t->shape[0] != f->shape[0] ||
        (f->ndim == 2 && t->shape[1] != f->shape[1]))
        return dm_errorf(err, "%s: tensor '%s' is missing or has the wrong dtype or shape", path, f->name);
    void **dst = field_data(c, f->name);
    *dst = dm_malloc(t->nbytes ? t->nbytes : 1);
    memcpy(*dst, t->data, t->nbytes);
    return 0;
}

static int cmp_int32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

/* Each top-k row names distinct tokens, most likely first (a duplicate would
 * count a token's mass twice and break the "other" bucket). */
static int validate_top_rows(const dm_kl_cache *c, const char *path, dm_err *err)
{
    const int k = c->top_k;
    int32_t *tmp = dm_malloc((size_t)k * sizeof *tmp);
    int rc = 0;
    for (int64_t p = 0; p < c->n_pos && rc == 0; p++) {
        const int32_t *ids = c->top_id + (size_t)p * k;
        const float *lp = c->logp + (size_t)p * k;
        memcpy(tmp, ids, (size_t)k * sizeof *tmp);
        qsort(tmp, (size_t)k, sizeof *tmp, cmp_int32);
        for (int i = 1; i < k && rc == 0; i++) {
            if (tmp[i] == tmp[i - 1])
                rc = dm_errorf(err, "%s: prediction %lld lists token %d twice in top_id", path, (long long)p, tmp[i]);
            else if (lp[i] > lp[i - 1])
                rc = dm_errorf(err, "%s: prediction %lld: top-k log-probabilities are not in descending order", path,
                               (long long)p);
        }
    }
    free(tmp);
    return rc;
}

/* Every offset and index in range; the windows cover n_pos predictions;
 * log-probabilities are <= 0 (-inf allowed: probability 0) and the actual
 * next token's is finite. */
static int validate(const dm_kl_cache *c, const char *path, dm_err *err)
{
    const int64_t n_tok = c->doc_start[c->n_docs];
    int64_t preds = 0;
    if (c->doc_start[0] != 0)
        return dm_errorf(err, "%s: doc_start[0] is not 0", path);
    for (int d = 0; d < c->n_docs; d++) {
        if (c->doc_start[d + 1] < c->doc_start[d])
            return dm_errorf(err, "%s: doc_start is not ascending at %d", path, d);
        if (c->doc_group[d] < -1 || c->doc_group[d] >= c->n_groups)
            return dm_errorf(err, "%s: doc_group[%d] = %d names no source", path, d, c->doc_group[d]);
        const int64_t k = c->doc_start[d + 1] - c->doc_start[d];
        preds += k > 1 ? k - 1 : 0;
    }
    if (preds < c->n_pos)
        return dm_errorf(err, "%s: n_pos %lld exceeds the documents' %lld predictions", path, (long long)c->n_pos,
                         (long long)preds);
    for (int64_t i = 0; i < n_tok; i++)
        if (c->tokens[i] < 0 || c->tokens[i] >= c->V)
            return dm_errorf(err, "%s: token %lld is outside the vocabulary", path, (long long)i);
    for (int64_t i = 0; c->top_k && i < c->n_pos * c->top_k; i++)
        if (c->top_id[i] < 0 || c->top_id[i] >= c->V)
            return dm_errorf(err, "%s: top_id %lld is outside the vocabulary", path, (long long)i);
    const int64_t n_logp = c->n_pos * (c->top_k ? c->top_k : c->V);
    for (int64_t i = 0; i < n_logp; i++)
        if (!(c->logp[i] <= 0))   /* NaN and positive log-probabilities */
            return dm_errorf(err, "%s: logp %lld is not a log-probability", path, (long long)i);
    for (int64_t i = 0; i < c->n_pos; i++)
        if (!(c->target_logp[i] <= 0 && c->target_logp[i] > -INFINITY) || (c->top_k && !(c->other_logp[i] <= 0)))
            return dm_errorf(err, "%s: prediction %lld has an invalid log-probability", path, (long long)i);
    return c->top_k ? validate_top_rows(c, path, err) : 0;
}

int dm_kl_cache_load(dm_kl_cache *c, const char *path, dm_err *err)
{
    memset(c, 0, sizeof *c);
    dm_safetensors sf;
    if (dm_st_open(&sf, path, err))
        return -1;
    int rc = read_meta(c, &sf, path, err);
    const dm_st_tensor *ds = rc ? NULL : dm_st_find(&sf, "doc_start"), *tk = dm_st_find(&sf, "tokens");
    if (rc == 0 && (!ds || ds->ndim != 1 || ds->shape[0] < 1 || ds->shape[0] > INT32_MAX || !tk || tk->ndim != 1))
        rc = dm_errorf(err, "%s: tensors doc_start / tokens missing or malformed", path);
    if (rc == 0) {
        c->n_docs = (int)ds->shape[0] - 1;
        field f[8];
        const int n = cache_fields(c, tk->shape[0], f);
        for (int i = 0; i < n && rc == 0; i++)
            rc = read_field(c, &sf, &f[i], path, err);
        if (rc == 0 && c->doc_start[c->n_docs] != tk->shape[0])
            rc = dm_errorf(err, "%s: doc_start does not end at the token count", path);
    }
    if (rc == 0)
        rc = validate(c, path, err);
    dm_st_close(&sf);
    if (rc)
        dm_kl_cache_free(c);
    return rc;
}
