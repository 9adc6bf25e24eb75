/* stats_io — calibration stats as a safetensors file (F64 tensors), so any
 * tool can read them:
 *   experts_per_layer      I32 [layers]          routed experts per layer (0: dense), MTP included
 *   acc.<source>           F64 [experts][6]      count, gate, norm, gnorm, soft, maxnorm per expert,
 *                                                layers concatenated in order (source "all" first)
 *   imatrix.<tensor>.in_sum2  F64 [k]            Σ w·x² per input channel of an HF weight
 *   imatrix.<tensor>.counts   F64 [1]            Σ w (llama-imatrix's per-tensor count)
 * and metadata: format "demolish-calib", version 1, model_hash, data_hash,
 * gate_mode, tokens, weight_sum, runs, accumulators, and router
 * ("top_k,n_group,topk_group,main_layers": what a plan must keep runnable).
 * Merging adds runs. */
#include "calib/calib.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *const acc_names = "count,gate,norm,gnorm,soft,maxnorm";

int dm_calib_save(const dm_calib_stats *st, const char *path, dm_err *err)
{
    dm_st_writer *w = dm_st_writer_new_file(path);
    char tokens[32], wsum[48], runs[16], router[96];
    snprintf(tokens, sizeof tokens, "%lld", (long long)st->tokens);
    snprintf(wsum, sizeof wsum, "%.17g", st->weight_sum);
    snprintf(runs, sizeof runs, "%d", st->n_runs);
    snprintf(router, sizeof router, "%d,%d,%d,%d", st->top_k, st->n_group, st->topk_group, st->main_layers);
    const char *meta[][2] = { { "format", "demolish-calib" }, { "version", "1" }, { "model_hash", st->model_hash },
                              { "data_hash", st->data_hash }, { "gate_mode", st->gate_mode }, { "tokens", tokens },
                              { "weight_sum", wsum }, { "runs", runs }, { "accumulators", acc_names },
                              { "router", router } };
    for (size_t i = 0; i < sizeof meta / sizeof meta[0]; i++)
        dm_st_writer_set_metadata(w, meta[i][0], meta[i][1]);
    int rc = 0;
    char name[320];
    int64_t shape[2] = { st->n_layers, 0 };
    rc = dm_st_writer_declare(w, "experts_per_layer", DM_DTYPE_I32, 1, shape, err);
    for (int s = 0; s < st->n_sources && rc == 0; s++) {
        int64_t sh[2] = { (int64_t)st->n_rows, DM_ACC_N };
        char *acc = dm_asprintf("acc.%s", st->source[s]);   /* a source name of any length */
        rc = dm_st_writer_declare(w, acc, DM_DTYPE_F64, 2, sh, err);
        free(acc);
    }
    for (int i = 0; i < st->n_imat && rc == 0; i++) {
        int64_t k = st->imat_k[i], one = 1;
        snprintf(name, sizeof name, "imatrix.%s.in_sum2", st->imat_name[i]);
        rc = dm_st_writer_declare(w, name, DM_DTYPE_F64, 1, &k, err);
        snprintf(name, sizeof name, "imatrix.%s.counts", st->imat_name[i]);
        if (rc == 0)
            rc = dm_st_writer_declare(w, name, DM_DTYPE_F64, 1, &one, err);
    }
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    if (rc == 0) {
        int32_t *e = dm_malloc((size_t)st->n_layers * sizeof(int32_t));
        for (int l = 0; l < st->n_layers; l++)
            e[l] = st->n_experts[l];
        rc = dm_st_writer_write(w, "experts_per_layer", e, (size_t)st->n_layers * 4, err);
        free(e);
    }
    for (int s = 0; s < st->n_sources && rc == 0; s++) {
        char *acc = dm_asprintf("acc.%s", st->source[s]);
        rc = dm_st_writer_write(w, acc, st->acc[s], st->n_rows * DM_ACC_N * sizeof(double), err);
        free(acc);
    }
    for (int i = 0; i < st->n_imat && rc == 0; i++) {
        snprintf(name, sizeof name, "imatrix.%s.in_sum2", st->imat_name[i]);
        rc = dm_st_writer_write(w, name, st->imat_sum2[i], (size_t)st->imat_k[i] * sizeof(double), err);
        snprintf(name, sizeof name, "imatrix.%s.counts", st->imat_name[i]);
        if (rc == 0)
            rc = dm_st_writer_write(w, name, &st->imat_count[i], sizeof(double), err);
    }
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    return rc;
}

static double meta_num(const dm_safetensors *sf, const char *key)
{
    const char *v = dm_st_metadata(sf, key);
    return v ? strtod(v, NULL) : 0;
}

/* An integer metadata value in [0, max], or -1 if absent or not one. */
static int64_t meta_count(const dm_safetensors *sf, const char *key, int64_t max)
{
    const char *v = dm_st_metadata(sf, key);
    char *end;
    long long x = v ? strtoll(v, &end, 10) : -1;
    return v && end != v && *end == 0 && x >= 0 && x <= max ? (int64_t)x : -1;
}

static void copy_meta(const dm_safetensors *sf, const char *key, char *dst, size_t n)
{
    const char *v = dm_st_metadata(sf, key);
    snprintf(dst, n, "%s", v ? v : "");
}

/* Reads one F64 tensor of exactly n elements into dst. */
static int read_f64(const dm_safetensors *sf, const dm_st_tensor *t, double *dst, size_t n, const char *path,
                    dm_err *err)
{
    if (t->dtype != DM_DTYPE_F64 || t->numel != (int64_t)n)
        return dm_errorf(err, "%s: tensor '%s' must be F64 with %zu values", path, t->name, n);
    memcpy(dst, t->data, n * sizeof(double));
    (void)sf;
    return 0;
}

static int load_tensor(dm_calib_stats *st, const dm_safetensors *sf, const dm_st_tensor *t, const char *path,
                       dm_err *err)
{
    const char *n = t->name;
    if (!strncmp(n, "acc.", 4)) {
        if (t->dtype != DM_DTYPE_F64 || t->numel != (int64_t)(st->n_rows * DM_ACC_N))
            return dm_errorf(err, "%s: tensor '%s' must be F64 with %zu values", path, n, st->n_rows * DM_ACC_N);
        int s = dm_calib_source(st, n + 4);
        if (s < 0)
            return dm_errorf(err, "%s: more than %d sources", path, DM_CALIB_MAX_SOURCES);
        return read_f64(sf, t, st->acc[s], st->n_rows * DM_ACC_N, path, err);
    }
    if (strncmp(n, "imatrix.", 8) != 0)
        return 0;   /* experts_per_layer (read before) or a tensor a newer version added */
    size_t len = strlen(n);
    const bool sum2 = len > 16 && !strcmp(n + len - 8, ".in_sum2");
    if (!sum2)
        return 0;   /* the .counts twin is read with its in_sum2 */
    char *tensor = dm_strndup(n + 8, len - 16);
    char cname[400];
    snprintf(cname, sizeof cname, "imatrix.%s.counts", tensor);
    const dm_st_tensor *c = dm_st_find(sf, cname);
    int i = c && t->numel <= INT32_MAX ? dm_calib_imat(st, tensor, (int)t->numel) : -1;
    int rc = i < 0 ? dm_errorf(err, "%s: imatrix entry '%s' lacks its counts or repeats", path, tensor)
                   : read_f64(sf, t, st->imat_sum2[i], (size_t)t->numel, path, err) ||
                         read_f64(sf, c, &st->imat_count[i], 1, path, err) ? -1 : 0;
    free(tensor);
    return rc;
}

int dm_calib_load(dm_calib_stats *st, const char *path, dm_err *err)
{
    memset(st, 0, sizeof *st);
    dm_safetensors sf;
    if (dm_st_open(&sf, path, err))
        return -1;
    const char *fmt = dm_st_metadata(&sf, "format");
    const dm_st_tensor *e = dm_st_find(&sf, "experts_per_layer");
    int rc = 0;
    if (!fmt || strcmp(fmt, "demolish-calib") != 0 || !e || e->dtype != DM_DTYPE_I32 || e->ndim != 1)
        rc = dm_errorf(err, "%s: not a demolish calibration stats file", path);
    if (rc == 0) {
        st->n_layers = (int)e->numel;
        st->n_experts = dm_calloc((size_t)st->n_layers, sizeof(int));
        st->layer_off = dm_calloc((size_t)st->n_layers, sizeof(size_t));
        for (int l = 0; l < st->n_layers; l++) {
            st->n_experts[l] = (int)dm_dtype_read(DM_DTYPE_I32, e->data, l);
            if (st->n_experts[l] < 0 || st->n_experts[l] > 1 << 20) {
                rc = dm_errorf(err, "%s: experts_per_layer[%d] = %d is invalid", path, l, st->n_experts[l]);
                break;
            }
            st->layer_off[l] = st->n_rows;
            st->n_rows += (size_t)st->n_experts[l];
        }
        copy_meta(&sf, "model_hash", st->model_hash, sizeof st->model_hash);
        copy_meta(&sf, "data_hash", st->data_hash, sizeof st->data_hash);
        copy_meta(&sf, "gate_mode", st->gate_mode, sizeof st->gate_mode);
        st->tokens = meta_count(&sf, "tokens", INT64_MAX);
        st->weight_sum = meta_num(&sf, "weight_sum");
        st->n_runs = (int)meta_count(&sf, "runs", INT32_MAX);
        if (rc == 0 && (st->tokens < 0 || st->n_runs < 0))
            rc = dm_errorf(err, "%s: metadata 'tokens' or 'runs' is missing or not a count", path);
        const char *r = dm_st_metadata(&sf, "router");
        if (rc == 0 && (!r || sscanf(r, "%d,%d,%d,%d", &st->top_k, &st->n_group, &st->topk_group, &st->main_layers) != 4 ||
                        st->top_k < 1 || st->n_group < 1 || st->topk_group < 1 || st->topk_group > st->n_group ||
                        st->main_layers < 0 || st->main_layers > st->n_layers))
            rc = dm_errorf(err, "%s: metadata 'router' is missing or invalid", path);
        /* "all" first, as dm_calib_stats_init lays it out */
        const dm_st_tensor *all = dm_st_find(&sf, "acc.all");
        if (rc == 0 && !all)
            rc = dm_errorf(err, "%s: no acc.all tensor", path);
        if (rc == 0)
            rc = load_tensor(st, &sf, all, path, err);
    }
    for (int i = 0; i < sf.n_tensors && rc == 0; i++)
        if (strcmp(sf.tensors[i].name, "acc.all") != 0)
            rc = load_tensor(st, &sf, &sf.tensors[i], path, err);
    dm_st_close(&sf);
    if (rc)
        dm_calib_stats_free(st);
    return rc;
}

/* Whether src can be added to dst: same shapes, model, router and gate, the
 * sources fit, imatrix widths agree. Checked before dst is touched, so a
 * refused merge leaves dst as it was. */
static int merge_check(const dm_calib_stats *dst, const dm_calib_stats *src, dm_err *err)
{
    if (dst->n_layers != src->n_layers || dst->n_rows != src->n_rows)
        return dm_errorf(err, "stats of different models (layers %d vs %d) cannot be merged", dst->n_layers,
                         src->n_layers);
    for (int l = 0; l < dst->n_layers; l++)
        if (dst->n_experts[l] != src->n_experts[l])
            return dm_errorf(err, "stats of different models (layer %d: %d vs %d experts) cannot be merged", l,
                             dst->n_experts[l], src->n_experts[l]);
    if (dst->model_hash[0] && src->model_hash[0] && strcmp(dst->model_hash, src->model_hash) != 0)
        return dm_errorf(err, "stats of different models (model hash %.12s vs %.12s) cannot be merged",
                         dst->model_hash, src->model_hash);
    if (dst->top_k != src->top_k || dst->n_group != src->n_group || dst->topk_group != src->topk_group ||
        dst->main_layers != src->main_layers)
        return dm_errorf(err, "stats of models with different routers cannot be merged");
    if (strcmp(dst->gate_mode, src->gate_mode) != 0)
        return dm_errorf(err, "stats with different gates (%s vs %s) cannot be merged", dst->gate_mode, src->gate_mode);
    int new_sources = 0;
    for (int s = 0; s < src->n_sources; s++) {
        int found = 0;
        for (int d = 0; d < dst->n_sources && !found; d++)
            found = !strcmp(dst->source[d], src->source[s]);
        new_sources += !found;
    }
    if (dst->n_sources + new_sources > DM_CALIB_MAX_SOURCES)
        return dm_errorf(err, "merged stats would have more than %d sources", DM_CALIB_MAX_SOURCES);
    for (int i = 0; i < src->n_imat; i++) {
        const int j = dm_calib_imat_find(dst, src->imat_name[i]);
        if (j >= 0 && dst->imat_k[j] != src->imat_k[i])
            return dm_errorf(err, "imatrix entry '%s' has different widths (%d vs %d)", src->imat_name[i],
                             dst->imat_k[j], src->imat_k[i]);
    }
    return 0;
}

int dm_calib_merge(dm_calib_stats *dst, const dm_calib_stats *src, dm_err *err)
{
    if (merge_check(dst, src, err))
        return -1;
    for (int s = 0; s < src->n_sources; s++) {
        int d = dm_calib_source(dst, src->source[s]);
        DM_ASSERT(d >= 0);   /* merge_check counted the sources */
        for (size_t r = 0; r < src->n_rows; r++) {
            double *a = dst->acc[d] + r * DM_ACC_N;
            const double *b = src->acc[s] + r * DM_ACC_N;
            for (int k = 0; k < DM_ACC_N; k++)
                a[k] = k == DM_ACC_MAXNORM ? (a[k] > b[k] ? a[k] : b[k]) : a[k] + b[k];
        }
    }
    for (int i = 0; i < src->n_imat; i++) {
        int d = dm_calib_imat(dst, src->imat_name[i], src->imat_k[i]);
        DM_ASSERT(d >= 0);   /* merge_check compared the widths */
        for (int k = 0; k < src->imat_k[i]; k++)
            dst->imat_sum2[d][k] += src->imat_sum2[i][k];
        dst->imat_count[d] += src->imat_count[i];
    }
    /* the merged data's identity: sha256 of the two identities */
    dm_sha256_ctx c;
    uint8_t dg[32];
    dm_sha256_init(&c);
    dm_sha256_update(&c, dst->data_hash, strlen(dst->data_hash));
    dm_sha256_update(&c, src->data_hash, strlen(src->data_hash));
    dm_sha256_final(&c, dg);
    dm_sha256_hex(dg, dst->data_hash);
    if (!dst->model_hash[0])
        snprintf(dst->model_hash, sizeof dst->model_hash, "%s", src->model_hash);
    dst->tokens += src->tokens;
    dst->weight_sum += src->weight_sum;
    dst->n_runs += src->n_runs;
    return 0;
}
