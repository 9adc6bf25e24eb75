/* router_kd — `demolish heal router`: heals a pruned model by distilling
 * only its router gates (mlp.gate.weight of every MoE layer, the MTP layer's
 * included) toward the unpruned teacher's next-token distributions, every
 * other weight frozen (shared/research/reap.md §5).
 *
 *   teacher   its top-k distributions over the KD data and the held-out
 *             data, cached once by `eval kl`'s code (src/eval/kl_teacher.c);
 *   student   the pruned checkpoint read into the trainer's f32 parameter
 *             table (src/train/params.c), every tensor frozen but the gates;
 *   step      B windows of the KD cache (its own windows, so each position
 *             sees exactly the context the teacher saw; short windows are
 *             padded and the padding carries no loss), the training forward
 *             in sparse mode (attention as served), KL heads (kd_loss.c),
 *             the backward with the frozen tensors' weight gradients
 *             skipped, AdamW on the gates;
 *   eval      held-out KL (τ = 1, main head) before training, every
 *             eval_every steps and at the end; the best gates are kept;
 *   output    a copy of the student directory in which only the gate
 *             tensors' bytes changed (same dtype, same place in the same
 *             file), plus heal.json; written atomically (dm_outdir).
 *
 * e_score_correction_bias only changes which experts are selected, so no
 * gradient reaches it; train_bias adapts it with DeepSeek-V3's
 * auxiliary-loss-free balancing rule instead (bias += rate·sign(mean load −
 * load) per step), as training does. */
#include "train/train_internal.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GATE_SUFFIX ".mlp.gate.weight"
#define BIAS_SUFFIX ".mlp.gate.e_score_correction_bias"
#define PAD_TOKEN 0   /* ids after a short window's end: attended by nothing before them, no loss */

static bool ends_with(const char *s, const char *suffix)
{
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

/* ---- the student's weights ------------------------------------------------------ */

/* Reads every parameter of the table from the checkpoint (F32, BF16 or F16;
 * quantized students are healed before quantizing). */
static int load_student(t_params *ps, const dm_safetensors *st, const char *dir, dm_err *err)
{
    for (int i = 0; i < ps->n; i++) {
        const t_param *p = &ps->p[i];
        const dm_st_tensor *t = dm_st_find(st, p->spec.name);
        if (!t)
            return dm_errorf(err, "%s: no tensor %s", dir, p->spec.name);
        if ((size_t)t->numel != p->n)
            return dm_errorf(err, "%s: %s has %lld values, the config implies %zu", dir, p->spec.name,
                             (long long)t->numel, p->n);
        if (t->dtype != DM_DTYPE_F32 && t->dtype != DM_DTYPE_BF16 && t->dtype != DM_DTYPE_F16)
            return dm_errorf(err, "%s: %s is %s; heal router reads F32/BF16/F16 checkpoints (heal before quantizing)",
                             dir, p->spec.name, dm_dtype_name(t->dtype));
        float *w = ps->w + p->off;
        for (size_t j = 0; j < p->n; j++)
            w[j] = (float)dm_dtype_read(t->dtype, t->data, (int64_t)j);
    }
    return 0;
}

/* Freezes every tensor but the gates (the MTP layer's only when its head is
 * distilled) and rebinds the gradient views; returns the trainable count. */
static int64_t freeze_all_but_gates(t_model *tm, bool mtp)
{
    const dm_config *c = tm->c;
    int64_t n = 0;
    char mtp_prefix[48];
    snprintf(mtp_prefix, sizeof mtp_prefix, "model.layers.%d.", c->n_layers);
    for (int i = 0; i < tm->ps.n; i++) {
        t_param *p = &tm->ps.p[i];
        const bool in_mtp = c->n_mtp > 0 && !strncmp(p->spec.name, mtp_prefix, strlen(mtp_prefix));
        p->frozen = !ends_with(p->spec.name, GATE_SUFFIX) || (in_mtp && !mtp);
        n += p->frozen ? 0 : (int64_t)p->n;
    }
    t_weights_free(&tm->g);
    t_weights_bind_grads(&tm->g, &tm->ps, c);
    return n;
}

/* ---- batches of cache windows ------------------------------------------------------ */

typedef struct windows {
    dm_kl_window *w;
    int n;
} windows;

static void windows_list(const dm_kl_cache *c, windows *ws)
{
    int cap = 64;
    ws->n = 0;
    ws->w = dm_malloc((size_t)cap * sizeof *ws->w);
    dm_kl_window w = { 0 };
    while (dm_kl_next_window(c, &w)) {
        if (ws->n == cap)
            ws->w = dm_realloc(ws->w, (size_t)(cap *= 2) * sizeof *ws->w);
        ws->w[ws->n++] = w;
    }
}

/* Fills ids[B][T+1] and pos[B·T] from windows sel[0..n) (n <= B; the rest
 * of the batch is padding). */
static void fill_batch(const dm_kl_cache *c, const windows *ws, const int *sel, int n, int B, int T, int32_t *ids,
                       int64_t *pos)
{
    for (int b = 0; b < B; b++) {
        const dm_kl_window *w = b < n ? &ws->w[sel[b]] : NULL;
        const int len = w ? w->T : 0;
        for (int i = 0; i <= T; i++)
            ids[b * (T + 1) + i] = w && i <= len ? c->tokens[w->start + i] : PAD_TOKEN;
        for (int i = 0; i < T; i++)
            pos[b * T + i] = i < len ? w->pos + i : -1;
    }
}

static t_kd_batch kd_targets(const dm_kl_cache *c, const int64_t *pos, double tau, double mtp_weight, double *row_kl)
{
    return (t_kd_batch){ .pos = pos, .top_k = c->top_k, .top_id = c->top_id, .logp = c->logp,
                         .other_logp = c->other_logp, .tau = tau, .mtp_weight = mtp_weight, .row_kl = row_kl };
}

/* ---- held-out KL ------------------------------------------------------------------------- */

/* Mean KL (τ 1, main head) over every held-out position, overall and per
 * source of the cache. */
static void heldout_kl(t_model *tm, const dm_kl_cache *c, const windows *ws, int32_t *ids, int64_t *pos,
                       dm_heal_eval *e)
{
    const int B = tm->B, T = tm->T;
    double *row_kl = dm_malloc((size_t)B * T * sizeof(double)), sum = 0, gsum[DM_EVAL_MAX_GROUPS] = { 0 };
    int64_t n = 0, gn[DM_EVAL_MAX_GROUPS] = { 0 };
    int *sel = dm_malloc((size_t)B * sizeof(int));
    for (int first = 0; first < ws->n; first += B) {
        const int m = ws->n - first < B ? ws->n - first : B;
        for (int b = 0; b < m; b++)
            sel[b] = first + b;
        fill_batch(c, ws, sel, m, B, T, ids, pos);
        const t_kd_batch kd = kd_targets(c, pos, 1.0, 0.0, row_kl);
        t_kd_losses L;
        t_step_kd(tm, ids, &kd, false, &L);
        for (int b = 0; b < m; b++) {
            const int g = c->doc_group[ws->w[sel[b]].doc];
            for (int i = 0; i < ws->w[sel[b]].T; i++) {
                const double kl = row_kl[b * T + i];
                sum += kl;
                n++;
                if (g >= 0) {
                    gsum[g] += kl;
                    gn[g]++;
                }
            }
        }
    }
    e->kl = n ? sum / (double)n : 0;
    e->n = n;
    for (int g = 0; g < c->n_groups && g < DM_EVAL_MAX_GROUPS; g++) {
        e->kl_group[g] = gn[g] ? gsum[g] / (double)gn[g] : 0;
        e->n_group[g] = gn[g];
    }
    free(sel);
    free(row_kl);
}

/* ---- the output directory ------------------------------------------------------------------ */

/* The student's files are all copied (the model card too: it still
 * describes the checkpoint's architecture), except an older heal.json. */
static bool old_heal_log(const char *name) { return !strcmp(name, "heal.json"); }

/* Encodes values[n] as dtype into out (F32, BF16, F16; round to nearest even). */
static void encode(dm_dtype dtype, const float *values, size_t n, uint8_t *out)
{
    for (size_t j = 0; j < n; j++) {
        if (dtype == DM_DTYPE_F32) {
            memcpy(out + 4 * j, &values[j], 4);
            continue;
        }
        const uint16_t h = dtype == DM_DTYPE_BF16 ? dm_f32_to_bf16(values[j]) : dm_f32_to_f16(values[j]);
        out[2 * j] = (uint8_t)(h & 0xff);
        out[2 * j + 1] = (uint8_t)(h >> 8);
    }
}

/* Overwrites tensor t's bytes, in its file's copy under dir, with values. */
static int rewrite_tensor(const dm_safetensors *st, const dm_st_tensor *t, const char *dir, const float *values,
                          dm_err *err)
{
    const dm_st_file *f = &st->files[t->file];
    const char *base = strrchr(f->path, '/');
    char *path = dm_path_join(dir, base ? base + 1 : f->path);
    uint8_t *bytes = dm_malloc(t->nbytes);
    encode(t->dtype, values, (size_t)t->numel, bytes);
    const off_t at = (off_t)(t->data - (const uint8_t *)f->map.data);
    int fd = open(path, O_WRONLY);
    int rc = fd < 0 || pwrite(fd, bytes, t->nbytes, at) != (ssize_t)t->nbytes || fsync(fd)
                 ? dm_errorf(err, "%s: cannot write %s: %s", path, t->name, strerror(errno))
                 : 0;
    if (fd >= 0)
        close(fd);
    free(bytes);
    free(path);
    return rc;
}

/* Writes every trainable tensor (and, with train_bias, the biases) of ps
 * into the copy under dir. */
static int write_changed(const t_params *ps, const dm_safetensors *st, const char *dir, bool bias, dm_err *err)
{
    for (int i = 0; i < ps->n; i++) {
        const t_param *p = &ps->p[i];
        const bool is_bias = bias && ends_with(p->spec.name, BIAS_SUFFIX);
        if ((p->frozen && !is_bias) || (!p->frozen && !ends_with(p->spec.name, GATE_SUFFIX)))
            continue;
        if (rewrite_tensor(st, dm_st_find(st, p->spec.name), dir, ps->w + p->off, err))
            return -1;
    }
    return 0;
}

/* ---- the oracle dump (tests/reference/kd_ref.py) ----------------------------------------------- */

/* DIR/kd_batch.npy (ids [B][T+1]), kd_pos.npy ([B·T], -1: no target),
 * kd_top_id.npy / kd_logp.npy ([B·T][k], zeros where no target),
 * kd_other.npy ([B·T]), kd_grads.safetensors (the gates' gradients of the
 * step's loss, F32) and kd_loss.json. */
static int dump_step(const t_model *tm, const dm_kl_cache *c, const int32_t *ids, const int64_t *pos,
                     const t_kd_losses *L, const dm_heal_opts *o, dm_err *err)
{
    const int B = tm->B, T = tm->T, k = c->top_k;
    const size_t rows = (size_t)B * T;
    int32_t *top = dm_calloc(rows * (size_t)k, sizeof(int32_t));
    float *lp = dm_calloc(rows * (size_t)k, sizeof(float)), *other = dm_calloc(rows, sizeof(float));
    for (size_t r = 0; r < rows; r++)
        if (pos[r] >= 0) {
            memcpy(top + r * k, c->top_id + (size_t)pos[r] * k, (size_t)k * sizeof(int32_t));
            memcpy(lp + r * k, c->logp + (size_t)pos[r] * k, (size_t)k * sizeof(float));
            other[r] = c->other_logp[pos[r]];
        }
    dm_make_dirs(o->dump_dir);
    char *p[6];
    const char *names[6] = { "kd_batch.npy", "kd_pos.npy", "kd_top_id.npy", "kd_logp.npy", "kd_other.npy",
                             "kd_grads.safetensors" };
    for (int i = 0; i < 6; i++)
        p[i] = dm_path_join(o->dump_dir, names[i]);
    const int64_t s_ids[2] = { B, T + 1 }, s_rows[1] = { (int64_t)rows }, s_top[2] = { (int64_t)rows, k };
    int rc = dm_npy_write(p[0], DM_DTYPE_I32, 2, s_ids, ids, err) || dm_npy_write(p[1], DM_DTYPE_I64, 1, s_rows, pos, err) ||
                     dm_npy_write(p[2], DM_DTYPE_I32, 2, s_top, top, err) ||
                     dm_npy_write(p[3], DM_DTYPE_F32, 2, s_top, lp, err) ||
                     dm_npy_write(p[4], DM_DTYPE_F32, 1, s_rows, other, err)
                 ? -1
                 : 0;
    dm_st_writer *w = rc ? NULL : dm_st_writer_new_file(p[5]);
    for (int i = 0; w && i < tm->ps.n && rc == 0; i++) {
        const t_param *q = &tm->ps.p[i];
        const int64_t shape[2] = { q->spec.rows, q->spec.cols };
        if (!q->frozen)
            rc = dm_st_writer_declare(w, q->spec.name, DM_DTYPE_F32, q->spec.cols > 0 ? 2 : 1, shape, err);
    }
    if (w && rc == 0)
        rc = dm_st_writer_begin(w, err);
    for (int i = 0; w && i < tm->ps.n && rc == 0; i++)
        if (!tm->ps.p[i].frozen)
            rc = dm_st_writer_write(w, tm->ps.p[i].spec.name, tm->ps.g + tm->ps.p[i].off, tm->ps.p[i].n * 4, err);
    if (w && rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    if (rc == 0) {
        char *json = dm_asprintf("{\"loss\": %.17g, \"kl_main\": %.17g, \"n_main\": %lld, \"kl_mtp\": %.17g, "
                                 "\"n_mtp\": %lld, \"tau\": %.17g, \"mtp_weight\": %.17g}\n",
                                 L->loss, L->kl_main, (long long)L->n_main, L->kl_mtp, (long long)L->n_mtp, o->tau,
                                 o->mtp_weight);
        char *path = dm_path_join(o->dump_dir, "kd_loss.json");
        rc = dm_write_file_atomic(path, json, strlen(json), err);
        free(path);
        free(json);
    }
    for (int i = 0; i < 6; i++)
        free(p[i]);
    free(top);
    free(lp);
    free(other);
    return rc;
}

/* ---- training ----------------------------------------------------------------------------------- */

typedef struct heal_run {
    const dm_heal_opts *o;
    dm_heal_result *r;
    t_model tm;
    dm_train_hparams hp;
    windows train, held;
    int32_t *ids;
    int64_t *pos;
    float *best;                /* snapshot of ps.w at the best evaluation */
    double best_kl;
} heal_run;

static void snapshot(heal_run *h) { memcpy(h->best, h->tm.ps.w, h->tm.ps.total * sizeof(float)); }

static void evaluate(heal_run *h, int step)
{
    if (!h->o->heldout)
        return;
    dm_heal_result *r = h->r;
    r->evals = dm_realloc(r->evals, (size_t)(r->n_evals + 1) * sizeof *r->evals);
    dm_heal_eval *e = &r->evals[r->n_evals++];
    memset(e, 0, sizeof *e);
    e->step = step;
    heldout_kl(&h->tm, h->o->heldout, &h->held, h->ids, h->pos, e);
    dm_log(1, "heal router: step %d: held-out KL %.5f\n", step, e->kl);
    if (r->n_evals == 1 || e->kl < h->best_kl) {
        h->best_kl = e->kl;
        r->best = r->n_evals - 1;
        snapshot(h);
    }
}

static double lr_at(const dm_heal_opts *o, int step)
{
    return o->warmup > 0 && step < o->warmup ? o->lr * (double)(step + 1) / (double)o->warmup : o->lr;
}

/* The KD steps: windows in a seeded order, reshuffled every epoch. */
static int train(heal_run *h, dm_err *err)
{
    const dm_heal_opts *o = h->o;
    const int B = h->tm.B, T = h->tm.T, total = dm_config_total_layers(h->tm.c);
    int *order = dm_malloc((size_t)h->train.n * sizeof(int)), at = h->train.n;
    dm_rng rng;
    dm_rng_seed(&rng, o->seed);
    dm_progress pg;
    dm_progress_begin(&pg, "heal router", "steps", o->steps);
    double t0 = dm_time_sec();
    int rc = 0;
    for (int step = 0; step < o->steps && rc == 0; step++) {
        int sel[B];
        for (int b = 0; b < B; b++) {
            if (at == h->train.n) {   /* a new epoch: Fisher-Yates with the run's generator */
                for (int i = 0; i < h->train.n; i++)
                    order[i] = i;
                for (int i = h->train.n - 1; i > 0; i--) {
                    int j = (int)(dm_rng_next(&rng) % (uint64_t)(i + 1)), t = order[i];
                    order[i] = order[j];
                    order[j] = t;
                }
                at = 0;
            }
            sel[b] = order[at++];
        }
        fill_batch(o->train, &h->train, sel, B, B, T, h->ids, h->pos);
        memset(h->tm.ps.g, 0, h->tm.ps.total * sizeof(float));
        memset(h->tm.load, 0, (size_t)total * h->tm.c->n_routed_experts * sizeof(int64_t));
        const t_kd_batch kd = kd_targets(o->train, h->pos, o->tau, o->mtp_weight, NULL);
        t_kd_losses L;
        t_step_kd(&h->tm, h->ids, &kd, true, &L);
        const double gnorm = t_grad_norm(&h->tm.ps, DM_STAGE_SPARSE);
        if (step == 0 && o->dump_dir)
            rc = dump_step(&h->tm, o->train, h->ids, h->pos, &L, o, err);
        if (rc == 0 && (!isfinite(L.loss) || !isfinite(gnorm)))
            rc = dm_errorf(err, "step %d: the loss or the gradient is not finite (loss %g, |g| %g)", step, L.loss, gnorm);
        if (rc)
            break;
        t_adamw(&h->tm.ps, &h->hp, DM_STAGE_SPARSE, lr_at(o, step), gnorm);
        if (o->train_bias)
            t_update_router_bias(&h->tm);
        h->r->train_loss_last = L.loss;
        h->r->steps_done = step + 1;
        h->r->tokens += L.n_main;
        dm_progress_update(&pg, step + 1);
        if (o->eval_every > 0 && (step + 1) % o->eval_every == 0 && step + 1 < o->steps)
            evaluate(h, step + 1);
    }
    dm_progress_end(&pg);
    h->r->train_seconds = dm_time_sec() - t0;
    free(order);
    return rc;
}

/* ---- the entry point ------------------------------------------------------------------------------- */

static int check_caches(const dm_heal_opts *o, const dm_config *c, dm_err *err)
{
    const dm_kl_cache *k[2] = { o->train, o->heldout };
    for (int i = 0; i < 2; i++) {
        if (!k[i])
            continue;
        if (k[i]->V != c->vocab_size)
            return dm_errorf(err, "%s: the teacher's vocabulary (%d) is not the student's (%d)", o->student_dir,
                             k[i]->V, c->vocab_size);
        if (k[i]->top_k < 1)
            return dm_errorf(err, "heal router needs a top-k teacher cache, not full distributions");
        if (k[i]->ctx < 2 || k[i]->ctx > c->max_position_embeddings)
            return dm_errorf(err, "%s: windows of %d predictions do not fit the student", o->student_dir, k[i]->ctx);
    }
    if (o->heldout && o->heldout->ctx != o->train->ctx)
        return dm_errorf(err, "the KD and held-out caches have other windows (%d and %d)", o->train->ctx,
                         o->heldout->ctx);
    return 0;
}

static void hparams(const dm_heal_opts *o, int T, dm_train_hparams *hp)
{
    memset(hp, 0, sizeof *hp);
    hp->seq_len = T;
    hp->batch_seqs = o->batch;
    hp->steps = o->steps;
    hp->lr = o->lr;
    hp->beta1 = 0.9;
    hp->beta2 = 0.999;
    hp->eps = 1e-8;
    hp->clip = 1.0;
    hp->bias_update_rate = o->bias_rate;
    hp->mtp_weight = o->mtp_weight;
    hp->seed = o->seed;
}

static int heal_json(const heal_run *h, const char *dir, dm_err *err)
{
    const dm_heal_result *r = h->r;
    const dm_heal_opts *o = h->o;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "student", o->student_dir);
    cJSON_AddNumberToObject(j, "steps", r->steps_done);
    cJSON_AddNumberToObject(j, "batch", o->batch);
    cJSON_AddNumberToObject(j, "ctx", h->tm.T);
    cJSON_AddNumberToObject(j, "lr", o->lr);
    cJSON_AddNumberToObject(j, "warmup", o->warmup);
    cJSON_AddNumberToObject(j, "tau", o->tau);
    cJSON_AddNumberToObject(j, "mtp_weight", o->mtp_weight);
    cJSON_AddBoolToObject(j, "train_bias", o->train_bias);
    cJSON_AddNumberToObject(j, "top_k", o->train->top_k);
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    cJSON_AddStringToObject(j, "seed", seed);
    cJSON_AddNumberToObject(j, "trainable_params", (double)r->trainable_params);
    cJSON_AddNumberToObject(j, "kd_positions", (double)o->train->n_pos);
    cJSON *ev = cJSON_AddArrayToObject(j, "heldout_kl");
    for (int i = 0; i < r->n_evals; i++) {
        cJSON *e = cJSON_CreateObject();
        cJSON_AddNumberToObject(e, "step", r->evals[i].step);
        cJSON_AddNumberToObject(e, "kl", r->evals[i].kl);
        cJSON_AddItemToArray(ev, e);
    }
    cJSON_AddNumberToObject(j, "kept_step", r->n_evals ? r->evals[r->best].step : r->steps_done);
    char *s = cJSON_Print(j);
    char *path = dm_path_join(dir, "heal.json");
    int rc = dm_write_file_atomic(path, s, strlen(s), err);
    free(path);
    free(s);
    cJSON_Delete(j);
    return rc;
}

static int write_output(heal_run *h, const dm_safetensors *st, dm_err *err)
{
    const dm_heal_opts *o = h->o;
    if (h->r->n_evals)
        memcpy(h->tm.ps.w, h->best, h->tm.ps.total * sizeof(float));
    dm_outdir od;
    if (dm_outdir_begin(&od, o->out_dir, o->force, err))
        return -1;
    int rc = dm_copy_dir_files(o->student_dir, od.tmp_path, old_heal_log, err);
    if (rc == 0)
        rc = write_changed(&h->tm.ps, st, od.tmp_path, o->train_bias, err);
    if (rc == 0)
        rc = heal_json(h, od.tmp_path, err);
    if (rc == 0)
        return dm_outdir_commit(&od, err);
    dm_outdir_abort(&od);
    return -1;
}

int dm_heal_router(const dm_heal_opts *o, dm_heal_result *r, dm_err *err)
{
    memset(r, 0, sizeof *r);
    if (!o->train || o->steps < 0 || o->batch < 1 || !(o->tau > 0) || !(o->lr >= 0) || o->mtp_weight < 0)
        return dm_errorf(err, "heal router: need a KD cache, steps >= 0, batch >= 1, tau > 0, lr >= 0, mtp weight >= 0");
    heal_run h = { .o = o, .r = r };
    dm_config c;
    dm_safetensors st;
    if (dm_config_load(&c, o->student_dir, err))
        return -1;
    if (dm_st_open(&st, o->student_dir, err)) {
        dm_config_free(&c);
        return -1;
    }
    int rc = check_caches(o, &c, err);
    if (rc == 0) {
        hparams(o, o->train->ctx, &h.hp);
        rc = t_model_init(&h.tm, &c, &h.hp, err);
    }
    if (rc == 0)
        rc = load_student(&h.tm.ps, &st, o->student_dir, err);
    if (rc == 0) {
        r->trainable_params = freeze_all_but_gates(&h.tm, c.n_mtp > 0 && o->mtp_weight > 0);
        r->total_params = (int64_t)h.tm.ps.total;
        if (r->trainable_params == 0)
            rc = dm_errorf(err, "%s: no MoE router gates (mlp.gate.weight) to heal", o->student_dir);
    }
    if (rc == 0) {
        windows_list(o->train, &h.train);
        if (o->heldout)
            windows_list(o->heldout, &h.held);
        h.ids = dm_malloc((size_t)h.tm.B * (h.tm.T + 1) * sizeof(int32_t));
        h.pos = dm_malloc((size_t)h.tm.B * h.tm.T * sizeof(int64_t));
        h.best = dm_aligned_alloc(h.tm.ps.total * sizeof(float));
        rc = h.train.n > 0 ? 0 : dm_errorf(err, "the KD cache holds no windows");
    }
    if (rc == 0) {
        evaluate(&h, 0);
        rc = train(&h, err);
    }
    if (rc == 0 && (r->n_evals == 0 || r->evals[r->n_evals - 1].step != r->steps_done))
        evaluate(&h, r->steps_done);
    if (rc == 0)
        rc = write_output(&h, &st, err);
    if (h.tm.c)
        t_model_free(&h.tm);
    free(h.train.w);
    free(h.held.w);
    free(h.ids);
    free(h.pos);
    dm_aligned_free(h.best);
    dm_st_close(&st);
    dm_config_free(&c);
    return rc;
}

void dm_heal_result_free(dm_heal_result *r)
{
    free(r->evals);
    memset(r, 0, sizeof *r);
}
