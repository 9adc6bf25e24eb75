/* stats — the calibration accumulators: per (source, layer, expert) a row of
 * DM_ACC_N doubles, and the imatrix entries (one per linear weight, found by
 * name through a small open-addressing index). */
#include "calib/calib.h"

#include <stdlib.h>
#include <string.h>

void dm_calib_stats_init(dm_calib_stats *st, const dm_model *m)
{
    const dm_config *c = &m->cfg;
    memset(st, 0, sizeof *st);
    snprintf(st->gate_mode, sizeof st->gate_mode, "model");
    st->n_layers = dm_config_total_layers(c);
    st->main_layers = c->n_layers;
    st->top_k = c->n_experts_per_tok;
    const bool grouped = c->n_group > 1 && c->topk_method != DM_TOPK_GREEDY;
    st->n_group = grouped ? c->n_group : 1;
    st->topk_group = grouped ? c->topk_group : 1;
    st->n_experts = dm_calloc((size_t)st->n_layers, sizeof(int));
    st->layer_off = dm_calloc((size_t)st->n_layers, sizeof(size_t));
    for (int l = 0; l < st->n_layers; l++) {
        st->n_experts[l] = c->layer_moe[l] ? c->layer_experts[l] : 0;
        st->layer_off[l] = st->n_rows;
        st->n_rows += (size_t)st->n_experts[l];
    }
    dm_calib_source(st, "all");
}

void dm_calib_stats_free(dm_calib_stats *st)
{
    for (int s = 0; s < st->n_sources; s++) {
        free(st->source[s]);
        free(st->acc[s]);
    }
    for (int i = 0; i < st->n_imat; i++) {
        free(st->imat_name[i]);
        free(st->imat_sum2[i]);
    }
    free(st->imat_name);
    free(st->imat_k);
    free(st->imat_sum2);
    free(st->imat_count);
    free(st->imat_slot);
    free(st->n_experts);
    free(st->layer_off);
    memset(st, 0, sizeof *st);
}

double *dm_calib_acc(const dm_calib_stats *st, int source, int layer, int expert)
{
    DM_ASSERT(source >= 0 && source < st->n_sources && layer >= 0 && layer < st->n_layers);
    DM_ASSERT(expert >= 0 && expert < st->n_experts[layer]);
    return st->acc[source] + (st->layer_off[layer] + (size_t)expert) * DM_ACC_N;
}

int dm_calib_source(dm_calib_stats *st, const char *name)
{
    for (int s = 0; s < st->n_sources; s++)
        if (!strcmp(st->source[s], name))
            return s;
    if (st->n_sources == DM_CALIB_MAX_SOURCES)
        return -1;
    st->source[st->n_sources] = dm_strdup(name);
    st->acc[st->n_sources] = dm_calloc(st->n_rows * DM_ACC_N + 1, sizeof(double));
    return st->n_sources++;
}

/* ---- imatrix entries --------------------------------------------------------- */

static void imat_slot_put(dm_calib_stats *st, int i)
{
    size_t h = (size_t)dm_fnv1a64(st->imat_name[i], strlen(st->imat_name[i])) & (size_t)(st->imat_slots - 1);
    while (st->imat_slot[h] >= 0)
        h = (h + 1) & (size_t)(st->imat_slots - 1);
    st->imat_slot[h] = i;
}

/* Keeps the index at most half full: rebuilt (doubled) when it would not be. */
static void imat_index_add(dm_calib_stats *st, int i)
{
    if (2 * (st->n_imat + 1) > st->imat_slots) {
        free(st->imat_slot);
        st->imat_slots = st->imat_slots ? 2 * st->imat_slots : 256;
        st->imat_slot = dm_malloc((size_t)st->imat_slots * sizeof(int));
        for (int j = 0; j < st->imat_slots; j++)
            st->imat_slot[j] = -1;
        for (int j = 0; j < st->n_imat; j++)
            if (j != i)
                imat_slot_put(st, j);
    }
    imat_slot_put(st, i);
}

int dm_calib_imat_find(const dm_calib_stats *st, const char *name)
{
    if (!st->imat_slots)
        return -1;
    size_t h = (size_t)dm_fnv1a64(name, strlen(name)) & (size_t)(st->imat_slots - 1);
    for (; st->imat_slot[h] >= 0; h = (h + 1) & (size_t)(st->imat_slots - 1))
        if (!strcmp(st->imat_name[st->imat_slot[h]], name))
            return st->imat_slot[h];
    return -1;
}

/* Index of the imatrix entry of tensor `name` with k channels, created if
 * new; -1 when an entry of that name has another width. */
int dm_calib_imat(dm_calib_stats *st, const char *name, int k)
{
    const int found = dm_calib_imat_find(st, name);
    if (found >= 0)
        return st->imat_k[found] == k ? found : -1;
    if (st->n_imat == st->cap_imat) {
        st->cap_imat = st->cap_imat ? 2 * st->cap_imat : 256;
        st->imat_name = dm_realloc(st->imat_name, (size_t)st->cap_imat * sizeof(char *));
        st->imat_k = dm_realloc(st->imat_k, (size_t)st->cap_imat * sizeof(int));
        st->imat_sum2 = dm_realloc(st->imat_sum2, (size_t)st->cap_imat * sizeof(double *));
        st->imat_count = dm_realloc(st->imat_count, (size_t)st->cap_imat * sizeof(double));
    }
    int i = st->n_imat++;
    st->imat_name[i] = dm_strdup(name);
    st->imat_k[i] = k;
    st->imat_sum2[i] = dm_calloc((size_t)k, sizeof(double));
    st->imat_count[i] = 0;
    imat_index_add(st, i);
    return i;
}
