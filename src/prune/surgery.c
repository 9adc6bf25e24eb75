/* surgery — applies a plan to a checkpoint, streaming: every output tensor
 * is copied from the input files by the kernel (copy_file_range) or through
 * a bounded buffer, so memory does not grow with the model, and nothing is
 * decoded or re-encoded:
 *   model.layers.L.mlp.experts.E.*          kept: renamed to E's rank among the kept ids;
 *                                           dropped: not written. Every tensor of an expert
 *                                           (weight, weight_scale_inv, weight_scale(_2),
 *                                           weight_blocks, ...) travels together.
 *   model.layers.L.mlp.gate.weight,
 *   model.layers.L.mlp.gate.e_score_correction_bias   the kept rows, in kept order
 *   everything else                         verbatim
 * config.json gets the new expert counts (edited in place: every other byte
 * stays); the other files are copied (not the model card, which describes the
 * unpruned model), the plan is saved as prune_plan.json; the directory
 * appears only when complete (dm_outdir). */
#include "prune/prune.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { FATE_COPY, FATE_EXPERT, FATE_ROWS, FATE_DROP } fate;

typedef struct out_t {
    const dm_st_tensor *src;
    char *name;
    fate f;
    int layer;
    int64_t shape[DM_ST_MAX_DIMS];
} out_t;

/* Parses "...layers.<L>.mlp.<rest>"; returns rest or NULL. */
static const char *layer_mlp(const char *name, int *layer)
{
    const char *p = strstr(name, "layers.");
    if (!p || (p != name && p[-1] != '.'))
        return NULL;
    char *end;
    long l = strtol(p + 7, &end, 10);
    if (end == p + 7 || strncmp(end, ".mlp.", 5) != 0 || l < 0 || l > 1000000)
        return NULL;
    *layer = (int)l;
    return end + 5;
}

/* Rank of e among the layer's kept ids (ascending), or -1. */
static int rank_of(const dm_plan *p, int l, int e)
{
    int lo = 0, hi = p->keep[l] - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (p->kept[l][mid] == e)
            return mid;
        if (p->kept[l][mid] < e)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* What happens to one input tensor. */
static int classify(const dm_plan *p, const dm_st_tensor *t, out_t *o, const char *dir, dm_err *err)
{
    memset(o, 0, sizeof *o);
    o->src = t;
    memcpy(o->shape, t->shape, sizeof o->shape);
    int l;
    const char *rest = layer_mlp(t->name, &l);
    bool planned = rest && l < p->n_layers && p->keep[l] > 0;
    if (planned && !strncmp(rest, "experts.", 8)) {
        char *end;
        long e = strtol(rest + 8, &end, 10);
        if (end == rest + 8 || *end != '.')
            return dm_errorf(err, "%s: tensor '%s': cannot read its expert id", dir, t->name);
        int r = rank_of(p, l, (int)e);
        if (r < 0) {
            o->f = FATE_DROP;
            return 0;
        }
        o->f = FATE_EXPERT;
        o->name = dm_asprintf("%.*sexperts.%d%s", (int)(rest - t->name), t->name, r, end);
        return 0;
    }
    o->name = dm_strdup(t->name);
    if (planned && (!strcmp(rest, "gate.weight") || !strcmp(rest, "gate.e_score_correction_bias"))) {
        if (t->dtype != DM_DTYPE_F32 && t->dtype != DM_DTYPE_BF16 && t->dtype != DM_DTYPE_F16)
            return dm_errorf(err, "%s: router tensor '%s' is %s: only plain float routers can be sliced by row",
                             dir, t->name, dm_dtype_name(t->dtype));
        if (t->ndim < 1 || t->shape[0] != p->n_experts[l])
            return dm_errorf(err, "%s: router tensor '%s' has %lld rows, the layer has %d experts", dir, t->name,
                             t->ndim ? (long long)t->shape[0] : 0LL, p->n_experts[l]);
        o->f = FATE_ROWS;
        o->layer = l;
        o->shape[0] = p->keep[l];
        return 0;
    }
    o->f = FATE_COPY;
    return 0;
}

static int cmp_by_place(const void *a, const void *b)
{
    const out_t *x = a, *y = b;
    if (x->src->file != y->src->file)
        return x->src->file - y->src->file;
    return x->src->data < y->src->data ? -1 : x->src->data > y->src->data;
}

static int copy_tensor(dm_st_writer *w, const dm_safetensors *st, const int *fds, const dm_plan *p, const out_t *o,
                       dm_err *err)
{
    const dm_st_tensor *t = o->src;
    const size_t off = (size_t)(t->data - st->files[t->file].map.data);
    if (o->f != FATE_ROWS)
        return dm_st_writer_copy(w, o->name, 0, fds[t->file], off, t->nbytes, err);
    const size_t row = t->nbytes / (size_t)t->shape[0];
    for (int i = 0; i < p->keep[o->layer]; i++)
        if (dm_st_writer_copy(w, o->name, (size_t)i * row, fds[t->file], off + (size_t)p->kept[o->layer][i] * row, row,
                              err))
            return -1;
    return 0;
}

/* ---- config.json, edited in place ----
 * Only n_routed_experts and num_routed_experts_per_layer change; every other
 * byte is kept. (A parse-and-print round trip would turn 1.0 into 1 and large
 * integers into doubles, which type-checking config loaders notice.) The text
 * parsed as JSON already (dm_config_load), so the scanner below only has to
 * find the top-level members' spans; the result is parsed again and its
 * expert counts compared before it is written. */

typedef struct member {
    size_t key, val, end;   /* offsets: the key's opening quote, the value, one past the value */
} member;

static size_t skip_ws(const char *s, size_t i)
{
    while (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')
        i++;
    return i;
}

static size_t skip_string(const char *s, size_t i)   /* s[i] == '"' */
{
    for (i++; s[i] && s[i] != '"'; i++)
        if (s[i] == '\\' && s[i + 1])
            i++;
    return s[i] ? i + 1 : i;
}

static size_t skip_value(const char *s, size_t i)
{
    if (s[i] == '"')
        return skip_string(s, i);
    if (s[i] != '{' && s[i] != '[') {
        while (s[i] && !strchr(",}] \t\r\n", s[i]))
            i++;
        return i;
    }
    int depth = 0;
    while (s[i]) {
        if (s[i] == '"') {
            i = skip_string(s, i);
            continue;
        }
        depth += (s[i] == '{' || s[i] == '[') - (s[i] == '}' || s[i] == ']');
        i++;
        if (depth == 0)
            break;
    }
    return i;
}

/* The top-level members of an object text, in order; -1 if it is not one. */
static int top_members(const char *s, member **out, int *n)
{
    int cap = 64;
    *out = dm_malloc((size_t)cap * sizeof(member));
    *n = 0;
    size_t i = skip_ws(s, 0);
    if (s[i++] != '{')
        return -1;
    for (;;) {
        i = skip_ws(s, i);
        if (s[i] == '}')
            return 0;
        if (s[i] != '"')
            return -1;
        member m = { .key = i };
        i = skip_ws(s, skip_string(s, i));
        if (s[i++] != ':')
            return -1;
        m.val = skip_ws(s, i);
        m.end = i = skip_value(s, m.val);
        if (*n == cap)
            *out = dm_realloc(*out, (size_t)(cap *= 2) * sizeof(member));
        (*out)[(*n)++] = m;
        i = skip_ws(s, i);
        if (s[i] == ',')
            i++;
    }
}

static bool is_key(const char *s, const member *m, const char *key)
{
    size_t n = strlen(key);
    return !strncmp(s + m->key + 1, key, n) && s[m->key + 1 + n] == '"';
}

typedef struct edit {
    size_t from, to;        /* replace text[from, to) */
    char *with;
} edit;

static int cmp_edit(const void *a, const void *b)
{
    const edit *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

/* Sets (value non-NULL) or removes every top-level `key`; a missing key is
 * appended after the last member, indented like the first. */
static int set_member(const char *s, const member *ms, int n, const char *key, const char *value, edit *ed, int *n_ed)
{
    bool found = false;
    for (int i = 0; i < n; i++) {
        if (!is_key(s, &ms[i], key))
            continue;
        found = true;
        if (value)
            ed[(*n_ed)++] = (edit){ ms[i].val, ms[i].end, dm_strdup(value) };
        else if (i > 0)   /* from the previous value's end: its comma goes too */
            ed[(*n_ed)++] = (edit){ ms[i - 1].end, ms[i].end, dm_strdup("") };
        else
            ed[(*n_ed)++] = (edit){ ms[i].key, i + 1 < n ? ms[i + 1].key : ms[i].end, dm_strdup("") };
    }
    if (!found && value) {
        if (n == 0)
            return -1;
        const size_t ws = (size_t)(skip_ws(s, 0) + 1);   /* just after '{' */
        ed[(*n_ed)++] = (edit){ ms[n - 1].end, ms[n - 1].end,
                                dm_asprintf(",%.*s\"%s\": %s", (int)(ms[0].key - ws), s + ws, key, value) };
    }
    return 0;
}

/* text with the edits applied (overlapping edits: their union is replaced). */
static char *apply_edits(const char *s, edit *ed, int n_ed)
{
    qsort(ed, (size_t)n_ed, sizeof(edit), cmp_edit);
    size_t len = strlen(s) + 1;
    for (int i = 0; i < n_ed; i++)
        len += strlen(ed[i].with);
    char *out = dm_malloc(len), *o = out;
    size_t at = 0;
    for (int i = 0; i < n_ed; i++) {
        if (ed[i].from > at) {
            memcpy(o, s + at, ed[i].from - at);
            o += ed[i].from - at;
        }
        o = stpcpy(o, ed[i].with);
        at = ed[i].to > at ? ed[i].to : at;
    }
    strcpy(o, s + at);
    return out;
}

/* "[a, b, ...]" as Python's json writes it. */
static char *int_list(const int *v, int n)
{
    char *s = dm_malloc((size_t)n * 12 + 3), *o = s;
    *o++ = '[';
    for (int i = 0; i < n; i++)
        o += sprintf(o, "%s%d", i ? ", " : "", v[i]);
    strcpy(o, "]");
    return s;
}

/* Whether text loads as a config with exactly these per-layer counts. */
static int counts_match(const char *text, const char *name, const dm_config *c, const int *count, dm_err *err)
{
    dm_config k;
    if (dm_config_parse(&k, text, name, err))
        return -1;
    const int L = dm_config_total_layers(c);
    int bad = dm_config_total_layers(&k) != L;
    for (int l = 0; l < L && !bad; l++)
        bad = k.layer_moe[l] != c->layer_moe[l] || (c->layer_moe[l] && k.layer_experts[l] != count[l]);
    dm_config_free(&k);
    return bad ? dm_errorf(err, "%s: cannot rewrite its expert counts in place", name) : 0;
}

/* The config text with the new counts: n_routed_experts = the largest layer,
 * and num_routed_experts_per_layer (dense: 0) unless every MoE layer keeps
 * the same number. NULL (err set) if the result would not load with exactly
 * these counts. */
static char *config_text(const char *text, const char *name, const dm_plan *p, const dm_config *c, dm_err *err)
{
    const int L = dm_config_total_layers(c);
    int *count = dm_calloc((size_t)L, sizeof(int)), mx = 0;
    bool uniform = true;
    for (int l = 0; l < L; l++) {
        count[l] = !c->layer_moe[l] ? 0 : l < p->n_layers && p->keep[l] ? p->keep[l] : c->layer_experts[l];
        mx = count[l] > mx ? count[l] : mx;
    }
    for (int l = 0; l < L; l++)
        if (c->layer_moe[l] && count[l] != mx)
            uniform = false;
    char *list = int_list(count, L), n_text[16], *out = NULL;
    snprintf(n_text, sizeof n_text, "%d", mx);
    member *ms;
    int n, n_ed = 0;
    edit *ed = NULL;
    if (top_members(text, &ms, &n) == 0) {
        ed = dm_calloc((size_t)n + 2, sizeof(edit));   /* one per member at most, plus two insertions */
        if (set_member(text, ms, n, "n_routed_experts", n_text, ed, &n_ed) == 0 &&
            set_member(text, ms, n, "num_routed_experts_per_layer", uniform ? NULL : list, ed, &n_ed) == 0)
            out = apply_edits(text, ed, n_ed);
    }
    if (!out)
        dm_errorf(err, "%s: not a JSON object", name);
    else if (counts_match(out, name, c, count, err)) {
        free(out);
        out = NULL;
    }
    for (int i = 0; i < n_ed; i++)
        free(ed[i].with);
    free(ed);
    free(ms);
    free(list);
    free(count);
    return out;
}

static int write_config(const char *src_dir, const char *dst_dir, const dm_plan *p, const dm_config *c, dm_err *err)
{
    char *path = dm_path_join(src_dir, "config.json"), *text = NULL;
    int rc = dm_read_file(path, &text, NULL, err);
    char *out = rc == 0 ? config_text(text, path, p, c, err) : NULL;
    free(path);
    free(text);
    if (!out)
        return -1;
    path = dm_path_join(dst_dir, "config.json");
    rc = dm_write_file_atomic(path, out, strlen(out), err);
    free(path);
    free(out);
    return rc;
}

/* Every other regular file of the model directory (tokenizer, generation
 * config, ...) is copied, except the weights, their index, config.json and
 * the model card (it describes the unpruned model). */
static bool not_a_side_file(const char *n)
{
    const size_t len = strlen(n);
    return (len > 12 && !strcmp(n + len - 12, ".safetensors")) || !strcmp(n, "model.safetensors.index.json") ||
           !strcmp(n, "config.json") || !strcmp(n, "MODEL_CARD.md") || !strncmp(n, "prune_plan.json", 15);
}

static size_t largest_file(const dm_safetensors *st)
{
    size_t mx = 0;
    for (int f = 0; f < st->n_files; f++)
        mx = st->files[f].map.size > mx ? st->files[f].map.size : mx;
    return mx;
}

static int write_weights(const char *dir, const dm_safetensors *st, const dm_plan *p, out_t *outs, int n,
                         size_t shard_bytes, dm_err *err)
{
    int *fds = dm_calloc((size_t)st->n_files, sizeof(int));
    int rc = 0;
    for (int f = 0; f < st->n_files; f++)
        if ((fds[f] = open(st->files[f].path, O_RDONLY | O_CLOEXEC)) < 0 && rc == 0)
            rc = dm_errorf(err, "%s: cannot open: %s", st->files[f].path, strerror(errno));
    dm_st_writer *w = dm_st_writer_new(dir, shard_bytes);
    const dm_st_file *f0 = &st->files[0];
    for (int i = 0; i < f0->n_meta; i++)   /* metadata kept */
        dm_st_writer_set_metadata(w, f0->meta_keys[i], f0->meta_values[i]);
    size_t total = 0;
    for (int i = 0; i < n && rc == 0; i++)
        if (outs[i].f != FATE_DROP) {
            rc = dm_st_writer_declare(w, outs[i].name, outs[i].src->dtype, outs[i].src->ndim, outs[i].shape, err);
            total += outs[i].src->nbytes;
        }
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    dm_progress pr;
    dm_progress_begin(&pr, "prune", "MiB", (int64_t)(total >> 20));
    size_t done = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        if (outs[i].f == FATE_DROP)
            continue;
        rc = copy_tensor(w, st, fds, p, &outs[i], err);
        done += outs[i].src->nbytes;
        dm_progress_update(&pr, (int64_t)(done >> 20));
    }
    dm_progress_end(&pr);
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    for (int f = 0; f < st->n_files; f++)
        if (fds[f] >= 0)
            close(fds[f]);
    free(fds);
    return rc;
}

int dm_prune(const char *model_dir, const dm_plan *plan, const char *out_dir, const dm_prune_opts *o, dm_err *err)
{
    dm_config c;
    if (dm_config_load(&c, model_dir, err))
        return -1;
    dm_plan p = *plan;   /* checked copy: expert counts filled from the model */
    p.n_experts = dm_calloc((size_t)(plan->n_layers > 0 ? plan->n_layers : 1), sizeof(int));
    memcpy(p.n_experts, plan->n_experts, (size_t)plan->n_layers * sizeof(int));
    dm_safetensors st;
    int rc = dm_plan_check(&p, &c, model_dir, err);
    if (rc == 0)
        rc = dm_st_open(&st, model_dir, err);
    if (rc) {
        free(p.n_experts);
        dm_config_free(&c);
        return -1;
    }
    out_t *outs = dm_calloc((size_t)st.n_tensors + 1, sizeof(out_t));
    for (int i = 0; i < st.n_tensors && rc == 0; i++)
        rc = classify(&p, &st.tensors[i], &outs[i], model_dir, err);
    dm_outdir od;
    if (rc == 0) {   /* (after a failure, the entries past it are empty) */
        qsort(outs, (size_t)st.n_tensors, sizeof(out_t), cmp_by_place);   /* read each input file front to back */
        rc = dm_outdir_begin(&od, out_dir, o->force, err);
    }
    if (rc == 0) {
        size_t shard = o->shard_bytes ? o->shard_bytes : st.n_files > 1 ? largest_file(&st) : 0;
        rc = write_weights(od.tmp_path, &st, &p, outs, st.n_tensors, shard, err);
        if (rc == 0)
            rc = write_config(model_dir, od.tmp_path, &p, &c, err);
        if (rc == 0)
            rc = dm_copy_dir_files(model_dir, od.tmp_path, not_a_side_file, err);
        if (rc == 0) {   /* the plan travels with the model it made */
            char *path = dm_path_join(od.tmp_path, "prune_plan.json");
            rc = dm_plan_save(&p, path, err);
            free(path);
        }
        if (rc == 0)
            rc = dm_outdir_commit(&od, err);
        else
            dm_outdir_abort(&od);
    }
    for (int i = 0; i < st.n_tensors; i++)
        free(outs[i].name);
    free(outs);
    dm_st_close(&st);
    free(p.n_experts);
    dm_config_free(&c);
    return rc;
}
