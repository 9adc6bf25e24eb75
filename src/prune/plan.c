/* plan — which experts to keep. Each criterion turns a layer's calibration
 * accumulators into one score per expert (higher = keep); experts are ranked
 * by score, then by routed-token count, then by lower id (a deterministic
 * tie rule, reap.md §1.2.9).
 *
 * Uniform: every planned layer keeps the same fraction (or count). With a
 * group-limited router (n_group > 1) the same number is kept in every group,
 * so the group top-k stays valid (as llm-compressor does).
 * Non-uniform (water-filling): scores are normalized to sum 1 within each
 * layer; every layer first gets its floor (top-k, or --min), then the rest of
 * the budget goes, one expert at a time, to the layer whose best remaining
 * expert has the largest normalized score (capped by --max). */
#include "prune/prune.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const crit_names[DM_CRIT_COUNT] = { "reap", "frequency", "ean", "soft-frequency", "random" };

const char *dm_criterion_name(dm_criterion c) { return c >= 0 && c < DM_CRIT_COUNT ? crit_names[c] : "?"; }

int dm_criterion_parse(const char *s)
{
    for (int i = 0; i < DM_CRIT_COUNT; i++)
        if (!strcmp(s, crit_names[i]))
            return i;
    return -1;
}

void dm_plan_scores(const dm_calib_stats *st, int source, int l, dm_criterion crit, uint64_t seed, double *out)
{
    for (int e = 0; e < st->n_experts[l]; e++) {
        const double *a = dm_calib_acc(st, source, l, e);
        switch (crit) {
        case DM_CRIT_REAP: out[e] = a[DM_ACC_COUNT] > 0 ? a[DM_ACC_GNORM] / a[DM_ACC_COUNT] : 0; break;
        case DM_CRIT_FREQUENCY: out[e] = a[DM_ACC_COUNT]; break;
        case DM_CRIT_EAN: out[e] = a[DM_ACC_NORM]; break;
        case DM_CRIT_SOFT_FREQUENCY: out[e] = a[DM_ACC_SOFT]; break;
        default: {
            uint64_t key[3] = { seed, (uint64_t)l, (uint64_t)e };
            out[e] = (double)(dm_fnv1a64(key, sizeof key) >> 11) * 0x1p-53;
        }
        }
    }
}

typedef struct ranked {
    int id;
    double score, count;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    if (x->count != y->count)
        return x->count > y->count ? -1 : 1;
    return x->id - y->id;
}

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

/* Experts [lo, hi) of layer l, best first. */
static ranked *rank_experts(const dm_calib_stats *st, int source, int l, const double *score, int lo, int hi)
{
    ranked *r = dm_malloc((size_t)(hi - lo) * sizeof(ranked));
    for (int e = lo; e < hi; e++)
        r[e - lo] = (ranked){ e, score[e], dm_calib_acc(st, source, l, e)[DM_ACC_COUNT] };
    qsort(r, (size_t)(hi - lo), sizeof(ranked), cmp_ranked);
    return r;
}

static bool grouped(const dm_calib_stats *st) { return st->n_group > 1; }

/* The fewest experts a layer may keep so that top-k stays reachable
 * (reap.md §3.1): with groups, each group keeps g and the topk_group chosen
 * groups must hold top-k (and g >= 2: noaux_tc scores a group by its top two). */
int dm_plan_floor(const dm_calib_stats *st)
{
    if (!grouped(st))
        return st->top_k;
    int g = (st->top_k + st->topk_group - 1) / st->topk_group;
    if (g < 2)   /* noaux_tc scores a group by its best two */
        g = 2;
    return g * st->n_group;
}

static int keep_layer(dm_plan *p, const dm_calib_stats *st, int source, int l,
                      const double *score, int K, dm_err *err)
{
    const int E = st->n_experts[l];
    if (K > E)
        K = E;
    if (K < dm_plan_floor(st))
        return dm_errorf(err, "layer %d: keeping %d of %d experts leaves fewer than the router needs (%d: top-%d%s)",
                         l, K, E, dm_plan_floor(st), st->top_k, grouped(st) ? " over the kept groups" : "");
    p->kept[l] = dm_malloc((size_t)K * sizeof(int));
    p->keep[l] = K;
    if (grouped(st)) {
        if (K % st->n_group)
            return dm_errorf(err, "layer %d: %d kept experts cannot be split evenly over %d routing groups", l, K,
                             st->n_group);
        const int per = E / st->n_group, keep = K / st->n_group;
        for (int g = 0; g < st->n_group; g++) {
            ranked *r = rank_experts(st, source, l, score, g * per, (g + 1) * per);
            for (int i = 0; i < keep; i++)
                p->kept[l][g * keep + i] = r[i].id;
            free(r);
        }
    } else {
        ranked *r = rank_experts(st, source, l, score, 0, E);
        for (int i = 0; i < K; i++)
            p->kept[l][i] = r[i].id;
        free(r);
    }
    qsort(p->kept[l], (size_t)K, sizeof(int), cmp_int);
    double all = 0, kept = 0;
    for (int e = 0; e < E; e++)
        all += score[e];
    for (int i = 0; i < K; i++)
        kept += score[p->kept[l][i]];
    p->score_kept[l] = all > 0 ? kept / all : (double)K / E;
    return 0;
}

/* Non-uniform counts by water-filling on layer-normalized scores. */
static int water_fill(const dm_calib_stats *st, const dm_plan_opts *o, int source,
                      double **score, const bool *planned, int *count, dm_err *err)
{
    const int L = st->n_layers;
    ranked **order = dm_calloc((size_t)L, sizeof(ranked *));
    double *norm = dm_calloc((size_t)L, sizeof(double));
    const int lowest = o->min_per_layer > dm_plan_floor(st) ? o->min_per_layer : dm_plan_floor(st);
    int used = 0, rc = 0;
    for (int l = 0; l < L; l++) {
        if (!planned[l])
            continue;
        const int E = st->n_experts[l];
        order[l] = rank_experts(st, source, l, score[l], 0, E);
        for (int e = 0; e < E; e++)
            norm[l] += score[l][e];
        count[l] = lowest < E ? lowest : E;
        used += count[l];
    }
    if (o->max_per_layer > 0 && o->max_per_layer < lowest)
        rc = dm_errorf(err, "at most %d experts per layer is below the floor of %d (top-%d or --min-per-layer)",
                       o->max_per_layer, lowest, st->top_k);
    else if (used > o->budget)
        rc = dm_errorf(err, "a budget of %d experts is below the layers' floors (%d)", o->budget, used);
    while (rc == 0 && used < o->budget) {
        int best = -1;
        double best_v = -1;
        for (int l = 0; l < L; l++) {
            if (!planned[l])
                continue;
            const int E = st->n_experts[l], cap = o->max_per_layer > 0 && o->max_per_layer < E ? o->max_per_layer : E;
            if (count[l] >= cap)
                continue;
            double v = norm[l] > 0 ? order[l][count[l]].score / norm[l] : 1.0 / E;
            if (v > best_v) {
                best_v = v;
                best = l;
            }
        }
        if (best < 0) {
            rc = dm_errorf(err, "a budget of %d experts exceeds what the layers can hold (%d)", o->budget, used);
            break;
        }
        count[best]++;
        used++;
    }
    for (int l = 0; l < L; l++)
        free(order[l]);
    free(order);
    free(norm);
    return rc;
}

static void plan_alloc(dm_plan *p, int L)
{
    memset(p, 0, sizeof *p);
    p->n_layers = L;
    p->n_experts = dm_calloc((size_t)L, sizeof(int));
    p->keep = dm_calloc((size_t)L, sizeof(int));
    p->kept = dm_calloc((size_t)L, sizeof(int *));
    p->score_kept = dm_calloc((size_t)L, sizeof(double));
}

/* The sidecar's provenance: how the plan was made, from which stats. */
static void plan_meta(dm_plan *p, const dm_calib_stats *st, const dm_plan_opts *o)
{
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "producer", "demolish plan");
    cJSON_AddStringToObject(m, "criterion", p->criterion);
    cJSON_AddStringToObject(m, "source", o->source ? o->source : "all");
    cJSON_AddBoolToObject(m, "non_uniform", o->non_uniform);
    if (o->non_uniform)
        cJSON_AddNumberToObject(m, "budget", o->budget);
    else if (o->keep_n > 0)
        cJSON_AddNumberToObject(m, "keep_n", o->keep_n);
    else
        cJSON_AddNumberToObject(m, "keep_fraction", o->keep_fraction);
    if (o->criterion == DM_CRIT_RANDOM)
        cJSON_AddNumberToObject(m, "seed", (double)o->seed);
    cJSON_AddStringToObject(m, "stats_model_hash", st->model_hash);
    cJSON_AddStringToObject(m, "stats_data_hash", st->data_hash);
    cJSON_AddStringToObject(m, "stats_gate", st->gate_mode);
    cJSON_AddNumberToObject(m, "stats_tokens", (double)st->tokens);
    char *text = cJSON_PrintUnformatted(m);
    snprintf(p->meta, sizeof p->meta, "%s", text);
    free(text);
    cJSON_Delete(m);
}

int dm_plan_make(dm_plan *p, const dm_calib_stats *st, const dm_plan_opts *o, dm_err *err)
{
    const int L = st->n_layers;
    int source = -1;
    for (int s = 0; s < st->n_sources; s++)
        if (!strcmp(st->source[s], o->source ? o->source : "all"))
            source = s;
    if (source < 0)
        return dm_errorf(err, "the stats have no source '%s'", o->source ? o->source : "all");
    if (o->non_uniform && grouped(st))
        return dm_errorf(err, "non-uniform plans need a router without group limits (n_group = 1)");
    plan_alloc(p, L);
    snprintf(p->criterion, sizeof p->criterion, "%s", dm_criterion_name(o->criterion));
    bool *planned = dm_calloc((size_t)L, sizeof(bool));
    double **score = dm_calloc((size_t)L, sizeof(double *));
    int *count = dm_calloc((size_t)L, sizeof(int));
    int rc = 0;
    for (int l = 0; l < L && rc == 0; l++) {
        p->n_experts[l] = st->n_experts[l];
        planned[l] = st->n_experts[l] > 0 && (l < st->main_layers || !o->skip_mtp);
        if (!planned[l])
            continue;
        score[l] = dm_malloc((size_t)st->n_experts[l] * sizeof(double));
        dm_plan_scores(st, source, l, o->criterion, o->seed, score[l]);
        count[l] = o->keep_n > 0 ? o->keep_n : (int)lround(o->keep_fraction * st->n_experts[l]);
        if (grouped(st) && count[l] % st->n_group)   /* round to whole groups */
            count[l] = (int)lround((double)count[l] / st->n_group) * st->n_group;
    }
    if (rc == 0 && o->non_uniform)
        rc = water_fill(st, o, source, score, planned, count, err);
    for (int l = 0; l < L && rc == 0; l++)
        if (planned[l])
            rc = keep_layer(p, st, source, l, score[l], count[l], err);
    if (rc == 0)
        plan_meta(p, st, o);
    free(planned);
    for (int k = 0; k < L; k++)
        free(score[k]);
    free(score);
    free(count);
    if (rc)
        dm_plan_free(p);
    return rc;
}

/* ---- a plan against a model ---- */

int dm_plan_check(dm_plan *p, const dm_config *c, const char *dir, dm_err *err)
{
    const int L = dm_config_total_layers(c);
    int planned = 0;
    for (int l = 0; l < p->n_layers; l++)
        planned += p->keep[l] > 0;
    if (!planned)
        return dm_errorf(err, "the plan names no layer of %s to prune", dir);
    for (int l = 0; l < p->n_layers; l++) {
        if (!p->keep[l])
            continue;
        if (l >= L)
            return dm_errorf(err, "the plan names layer %d, %s has %d layers (MTP included)", l, dir, L);
        if (!c->layer_moe[l])
            return dm_errorf(err, "the plan prunes layer %d, a dense layer of %s", l, dir);
        const int E = c->layer_experts[l];
        if (p->n_experts[l] && p->n_experts[l] != E)
            return dm_errorf(err, "the plan was made for %d experts in layer %d, %s has %d (a plan for another model?)",
                             p->n_experts[l], l, dir, E);
        p->n_experts[l] = E;
        if (p->kept[l][p->keep[l] - 1] >= E)
            return dm_errorf(err, "the plan keeps expert %d of layer %d, which has %d experts in %s",
                             p->kept[l][p->keep[l] - 1], l, E, dir);
        if (p->keep[l] < c->n_experts_per_tok)
            return dm_errorf(err, "the plan keeps %d experts in layer %d, fewer than the top-%d %s routes to", p->keep[l],
                             l, c->n_experts_per_tok, dir);
        if (c->n_group > 1 && c->topk_method != DM_TOPK_GREEDY) {
            const int per = E / c->n_group, want = p->keep[l] / c->n_group;
            for (int g = 0; g < c->n_group; g++) {
                int n = 0;
                for (int i = 0; i < p->keep[l]; i++)
                    n += p->kept[l][i] / per == g;
                if (n != want || p->keep[l] % c->n_group)
                    return dm_errorf(err, "layer %d: the plan keeps %d experts in routing group %d; group-limited "
                                     "routing (%s) needs the same number in every group", l, n, g, dir);
            }
            if (c->topk_method == DM_TOPK_NOAUX_TC && want < 2)
                return dm_errorf(err, "layer %d: noaux_tc scores a routing group by its best two experts; the plan "
                                 "keeps %d per group of %s", l, want, dir);
            if (c->topk_group * want < c->n_experts_per_tok)
                return dm_errorf(err, "layer %d: %d groups of %d kept experts cannot supply the top-%d %s routes to",
                                 l, c->topk_group, want, c->n_experts_per_tok, dir);
        }
    }
    return 0;
}

int dm_plan_mask(const dm_plan *plan, dm_ctx *ctx, const dm_model *m, dm_err *err)
{
    dm_plan p = *plan;
    p.n_experts = dm_calloc((size_t)(plan->n_layers > 0 ? plan->n_layers : 1), sizeof(int));
    memcpy(p.n_experts, plan->n_experts, (size_t)plan->n_layers * sizeof(int));
    int rc = dm_plan_check(&p, &m->cfg, m->dir, err);
    for (int l = 0; l < p.n_layers && rc == 0; l++) {
        if (!p.keep[l])
            continue;
        uint8_t *keep = dm_calloc((size_t)p.n_experts[l], 1);
        for (int i = 0; i < p.keep[l]; i++)
            keep[p.kept[l][i]] = 1;
        dm_ctx_set_expert_mask(ctx, l, keep);
        free(keep);
    }
    free(p.n_experts);
    return rc;
}

/* ---- plan files ---- */

int dm_plan_save(const dm_plan *p, const char *path, dm_err *err)
{
    cJSON *o = cJSON_CreateObject();
    for (int l = 0; l < p->n_layers; l++) {
        if (!p->keep[l])
            continue;
        char key[16];
        snprintf(key, sizeof key, "%d", l);
        cJSON *e = cJSON_AddObjectToObject(o, key);
        cJSON_AddItemToObject(e, "kept", cJSON_CreateIntArray(p->kept[l], p->keep[l]));
        cJSON_AddNumberToObject(e, "keep", p->keep[l]);
        cJSON_AddStringToObject(e, "criterion", p->criterion);
        cJSON_AddNumberToObject(e, "score_kept", p->score_kept[l]);
        cJSON_AddNumberToObject(e, "experts", p->n_experts[l]);
    }
    char *text = cJSON_Print(o);
    cJSON_Delete(o);
    int rc = dm_write_file_atomic(path, text, strlen(text), err);
    free(text);
    if (rc == 0 && p->meta[0]) {
        char *mpath = dm_asprintf("%s.meta", path);
        rc = dm_write_file_atomic(mpath, p->meta, strlen(p->meta), err);
        free(mpath);
    }
    return rc;
}

static int load_layer(dm_plan *p, const cJSON *e, int l, const char *path, dm_err *err)
{
    const cJSON *kept = cJSON_GetObjectItemCaseSensitive(e, "kept"), *keep = cJSON_GetObjectItemCaseSensitive(e, "keep");
    if (!cJSON_IsArray(kept) || !cJSON_IsNumber(keep) || keep->valuedouble != cJSON_GetArraySize(kept))
        return dm_errorf(err, "%s: layer %d needs \"kept\" (a list) and \"keep\" (its length)", path, l);
    const int K = cJSON_GetArraySize(kept);
    if (p->kept[l])
        return dm_errorf(err, "%s: layer %d is given twice", path, l);
    if (K == 0)
        return dm_errorf(err, "%s: layer %d keeps no experts", path, l);
    /* ours: the layer's expert count when the plan was made (checked against the model) */
    const cJSON *ex = cJSON_GetObjectItemCaseSensitive(e, "experts");
    if (ex && (!cJSON_IsNumber(ex) || ex->valuedouble != floor(ex->valuedouble) || ex->valuedouble < K ||
               ex->valuedouble > 1e7))
        return dm_errorf(err, "%s: layer %d: \"experts\" is not an expert count of at least %d", path, l, K);
    p->n_experts[l] = ex ? (int)ex->valuedouble : 0;
    p->kept[l] = dm_malloc((size_t)(K > 0 ? K : 1) * sizeof(int));
    p->keep[l] = K;
    for (int i = 0; i < K; i++) {
        const cJSON *v = cJSON_GetArrayItem(kept, i);
        if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble != floor(v->valuedouble) || v->valuedouble > 1e7)
            return dm_errorf(err, "%s: layer %d: kept[%d] is not an expert id", path, l, i);
        p->kept[l][i] = (int)v->valuedouble;
    }
    qsort(p->kept[l], (size_t)K, sizeof(int), cmp_int);
    for (int i = 1; i < K; i++)
        if (p->kept[l][i] == p->kept[l][i - 1])
            return dm_errorf(err, "%s: layer %d keeps expert %d twice", path, l, p->kept[l][i]);
    const cJSON *cr = cJSON_GetObjectItemCaseSensitive(e, "criterion");
    if (cJSON_IsString(cr))
        snprintf(p->criterion, sizeof p->criterion, "%s", cr->valuestring);
    return 0;
}

int dm_plan_load(dm_plan *p, const char *path, dm_err *err)
{
    memset(p, 0, sizeof *p);
    char *text;
    if (dm_read_file(path, &text, NULL, err))
        return -1;
    cJSON *o = cJSON_Parse(text);
    free(text);
    if (!cJSON_IsObject(o)) {
        cJSON_Delete(o);
        return dm_errorf(err, "%s: not a JSON object", path);
    }
    int L = 0, rc = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, o)
    {
        char *end;
        long l = strtol(e->string, &end, 10);
        if (*end || e->string[0] < '0' || e->string[0] > '9' || l > 100000) {   /* digits only */
            rc = dm_errorf(err, "%s: key \"%s\" is not a layer index", path, e->string);
            break;
        }
        L = (int)l + 1 > L ? (int)l + 1 : L;
    }
    if (rc == 0)
        plan_alloc(p, L);
    cJSON_ArrayForEach(e, o)
    {
        if (rc)
            break;
        rc = load_layer(p, e, (int)strtol(e->string, NULL, 10), path, err);
    }
    cJSON_Delete(o);
    char *mpath = dm_asprintf("%s.meta", path);
    char *meta;
    if (rc == 0 && dm_path_exists(mpath) && dm_read_file(mpath, &meta, NULL, NULL) == 0) {
        snprintf(p->meta, sizeof p->meta, "%s", meta);
        free(meta);
    }
    free(mpath);
    if (rc)
        dm_plan_free(p);
    return rc;
}

void dm_plan_free(dm_plan *p)
{
    for (int l = 0; l < p->n_layers; l++)
        free(p->kept ? p->kept[l] : NULL);
    free(p->kept);
    free(p->keep);
    free(p->n_experts);
    free(p->score_kept);
    memset(p, 0, sizeof *p);
}
