/* trainer — the training loop around t_step: batches sampled from the token
 * data with a seeded RNG, the optimizer and bias updates, a JSON-lines log,
 * checkpoints that make a stopped run continue bit for bit (weights, AdamW
 * moments and counts, data RNG, step), the oracle dumps of the train
 * contract, and the final export as a Hugging Face model directory (bf16). */
#include "train/train_internal.h"
#include "corpus/corpus.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- data -------------------------------------------------------------------------- */

typedef struct t_data {
    int n;                                      /* domains */
    char name[DM_TRAIN_MAX_DOMAINS][32];
    const uint32_t *tok[DM_TRAIN_MAX_DOMAINS];
    size_t len[DM_TRAIN_MAX_DOMAINS];
    double cum[DM_TRAIN_MAX_DOMAINS];           /* cumulative sampling weights, last = 1 */
    dm_map raw;
    dm_dataset ds;
    bool has_ds;
} t_data;

static int data_open_raw(t_data *d, const char *path, int need, dm_err *err)
{
    memset(d, 0, sizeof *d);
    if (dm_map_file(&d->raw, path, err))
        return -1;
    if (d->raw.size % 4 || d->raw.size / 4 < (size_t)need) {
        dm_unmap_file(&d->raw);
        return dm_errorf(err, "%s: need a little-endian uint32 token stream of at least %d tokens", path, need);
    }
    d->n = 1;
    snprintf(d->name[0], sizeof d->name[0], "raw");
    d->tok[0] = (const uint32_t *)(const void *)d->raw.data;
    d->len[0] = d->raw.size / 4;
    d->cum[0] = 1.0;
    return 0;
}

/* The corpus's train split, tokenized (and cached) by the corpus stage. */
static int data_open_corpus(t_data *d, const char *dir, const char *tokenizer, int need, dm_err *err)
{
    memset(d, 0, sizeof *d);
    if (!tokenizer)
        return dm_errorf(err, "%s: training on a corpus needs a tokenizer (--tokenizer)", dir);
    if (dm_dataset_open(&d->ds, dir, "train", tokenizer, err))
        return -1;
    d->has_ds = true;
    d->n = dm_dataset_n_domains(&d->ds);
    if (d->n > DM_TRAIN_MAX_DOMAINS)
        return dm_errorf(err, "%s: %d domains (at most %d)", dir, d->n, DM_TRAIN_MAX_DOMAINS);
    for (int i = 0; i < d->n; i++) {
        snprintf(d->name[i], sizeof d->name[i], "%s", dm_dataset_domain(&d->ds, i));
        d->tok[i] = dm_dataset_tokens(&d->ds, i, &d->len[i]);
        if (d->len[i] < (size_t)need)
            return dm_errorf(err, "%s: domain %s has %zu tokens, fewer than one window (%d)", dir, d->name[i],
                             d->len[i], need);
        dm_log(1, "data: %-10s %10zu tokens\n", d->name[i], d->len[i]);
    }
    return 0;
}

static void data_close(t_data *d)
{
    dm_unmap_file(&d->raw);
    if (d->has_ds)
        dm_dataset_close(&d->ds);
}

/* Sampling weights: the config's mixture, or proportional to the data. */
static int data_weights(t_data *d, const dm_train_hparams *hp, dm_err *err)
{
    double w[DM_TRAIN_MAX_DOMAINS], sum = 0;
    for (int i = 0; i < d->n; i++) {
        w[i] = (double)d->len[i];
        if (hp->n_domains > 0) {
            w[i] = 0;
            for (int j = 0; j < hp->n_domains; j++)
                if (!strcmp(hp->domain_name[j], d->name[i]))
                    w[i] = hp->domain_weight[j];
        }
        sum += w[i];
    }
    if (!(sum > 0))
        return dm_errorf(err, "the data mixture gives every domain weight 0");
    double acc = 0;
    for (int i = 0; i < d->n; i++)
        d->cum[i] = (acc += w[i] / sum);
    d->cum[d->n - 1] = 1.0;
    return 0;
}

/* B windows of T+1 tokens: a domain by weight, then a uniform start. */
static void sample_batch(const t_data *d, dm_rng *r, int B, int T, int32_t *w)
{
    for (int b = 0; b < B; b++) {
        const double u = dm_rng_uniform(r);
        int dom = 0;
        while (dom + 1 < d->n && u >= d->cum[dom])
            dom++;
        const size_t span = d->len[dom] - (size_t)(T + 1);
        const size_t start = span ? (size_t)(dm_rng_next(r) % (span + 1)) : 0;
        for (int i = 0; i <= T; i++)
            w[b * (T + 1) + i] = (int32_t)d->tok[dom][start + i];
    }
}

/* ---- checkpoints ----------------------------------------------------------------------- */

typedef struct t_run {
    t_model tm;
    dm_rng rng;
    int step;                  /* next step to run */
    const dm_train_config *tc;
    const dm_train_opts *o;
    char *ckpt_dir, *log_path;
    FILE *log;
} t_run;

static int write_tensor_set(const char *dir, const t_params *ps, const float *const *bufs, const char *const *prefix,
                            int nbufs, dm_dtype out_dtype, const char *const *meta, int n_meta, dm_err *err)
{
    dm_st_writer *w = dm_st_writer_new(dir, 0);
    for (int m = 0; m + 1 < n_meta; m += 2)
        dm_st_writer_set_metadata(w, meta[m], meta[m + 1]);
    int rc = 0;
    char name[256];
    for (int k = 0; k < nbufs && rc == 0; k++)
        for (int i = 0; i < ps->n && rc == 0; i++) {
            const dm_tensor_spec *s = &ps->p[i].spec;
            int64_t shape[2] = { s->rows, s->cols };
            dm_dtype dt = s->role == DM_TENSOR_ROUTER_BIAS ? DM_DTYPE_F32 : out_dtype;
            snprintf(name, sizeof name, "%s%s", prefix[k], s->name);
            rc = dm_st_writer_declare(w, name, dt, s->cols > 0 ? 2 : 1, shape, err);
        }
    if (rc == 0)
        rc = dm_st_writer_begin(w, err);
    for (int k = 0; k < nbufs && rc == 0; k++)
        for (int i = 0; i < ps->n && rc == 0; i++) {
            const t_param *p = &ps->p[i];
            const float *src = bufs[k] + p->off;
            dm_dtype dt = p->spec.role == DM_TENSOR_ROUTER_BIAS ? DM_DTYPE_F32 : out_dtype;
            snprintf(name, sizeof name, "%s%s", prefix[k], p->spec.name);
            if (dt == DM_DTYPE_F32) {
                rc = dm_st_writer_write(w, name, src, p->n * 4, err);
            } else {
                uint16_t *h = dm_malloc(p->n * 2);
                for (size_t j = 0; j < p->n; j++)
                    h[j] = dm_f32_to_bf16(src[j]);
                rc = dm_st_writer_write(w, name, h, p->n * 2, err);
                free(h);
            }
        }
    if (rc == 0)
        rc = dm_st_writer_finish(w, err);
    dm_st_writer_free(w);
    return rc;
}

/* The checkpoint directory, replaced atomically: weights, moments, counts, RNG, step. */
static int checkpoint_save(t_run *run, dm_err *err)
{
    const t_params *ps = &run->tm.ps;
    dm_outdir od;
    if (dm_outdir_begin(&od, run->ckpt_dir, true, err))
        return -1;
    char step[32], rng[96], *tcount = dm_malloc((size_t)ps->n * 24 + 1);
    snprintf(step, sizeof step, "%d", run->step);
    snprintf(rng, sizeof rng, "%016llx%016llx%016llx%016llx", (unsigned long long)run->rng.s[0],
             (unsigned long long)run->rng.s[1], (unsigned long long)run->rng.s[2], (unsigned long long)run->rng.s[3]);
    tcount[0] = 0;
    for (int i = 0; i < ps->n; i++)
        sprintf(tcount + strlen(tcount), "%s%lld", i ? "," : "", (long long)ps->p[i].t);
    const char *meta[] = { "step", step, "rng", rng, "adam_t", tcount, "producer", "demolish train" };
    const float *bufs[] = { ps->w, ps->m, ps->v };
    const char *prefix[] = { "", "adam_m.", "adam_v." };
    int rc = write_tensor_set(od.tmp_path, ps, bufs, prefix, 3, DM_DTYPE_F32, meta, 8, err);
    free(tcount);
    if (rc == 0)
        rc = dm_outdir_commit(&od, err);
    else
        dm_outdir_abort(&od);
    return rc;
}

static int load_into(const dm_safetensors *st, const t_param *p, const char *prefix, float *dst, dm_err *err)
{
    char name[256];
    snprintf(name, sizeof name, "%s%s", prefix, p->spec.name);
    const dm_st_tensor *t = dm_st_find(st, name);
    if (!t || t->dtype != DM_DTYPE_F32 || t->nbytes != p->n * 4)
        return dm_errorf(err, "checkpoint: tensor '%s' missing or of the wrong shape (config changed?)", name);
    memcpy(dst, t->data, t->nbytes);
    return 0;
}

static int checkpoint_load(t_run *run, dm_err *err)
{
    t_params *ps = &run->tm.ps;
    dm_safetensors st;
    if (dm_st_open(&st, run->ckpt_dir, err))
        return -1;
    int rc = 0;
    for (int i = 0; i < ps->n && rc == 0; i++)
        rc = load_into(&st, &ps->p[i], "", ps->w + ps->p[i].off, err) ||
             load_into(&st, &ps->p[i], "adam_m.", ps->m + ps->p[i].off, err) ||
             load_into(&st, &ps->p[i], "adam_v.", ps->v + ps->p[i].off, err) ? -1 : 0;
    const char *step = dm_st_metadata(&st, "step"), *rng = dm_st_metadata(&st, "rng"), *tc = dm_st_metadata(&st, "adam_t");
    if (rc == 0 && (!step || !rng || !tc || strlen(rng) != 64))
        rc = dm_errorf(err, "%s: checkpoint metadata (step, rng, adam_t) missing", run->ckpt_dir);
    if (rc == 0) {
        run->step = atoi(step);
        for (int k = 0; k < 4; k++) {
            char part[17];
            memcpy(part, rng + 16 * k, 16);
            part[16] = 0;
            run->rng.s[k] = strtoull(part, NULL, 16);
        }
        const char *p = tc;
        for (int i = 0; i < ps->n && rc == 0; i++) {
            char *end;
            ps->p[i].t = strtoll(p, &end, 10);
            if (end == p)
                rc = dm_errorf(err, "%s: checkpoint adam_t is malformed", run->ckpt_dir);
            p = *end == ',' ? end + 1 : end;
        }
    }
    dm_st_close(&st);
    return rc;
}

/* ---- logging and dumps ------------------------------------------------------------------- */

static const char *stage_name(dm_stage_mode m)
{
    return m == DM_STAGE_DENSE ? "dense" : m == DM_STAGE_INDEXER_WARMUP ? "indexer-warmup" : "sparse";
}

/* Max/mean expert load of each MoE layer this step. */
static cJSON *load_balance(const t_model *tm)
{
    const dm_config *c = tm->c;
    cJSON *a = cJSON_CreateArray();
    for (int l = 0; l < dm_config_total_layers(c); l++) {
        if (!c->layer_moe[l])
            continue;
        const int64_t *load = tm->load + (size_t)l * c->n_routed_experts;
        double mx = 0, sum = 0;
        for (int e = 0; e < c->layer_experts[l]; e++) {
            sum += (double)load[e];
            mx = fmax(mx, (double)load[e]);
        }
        cJSON_AddItemToArray(a, cJSON_CreateNumber(sum > 0 ? mx / (sum / c->layer_experts[l]) : 0));
    }
    return a;
}

static void log_step(t_run *run, dm_stage_mode mode, const t_step_losses *L, double lr, double gnorm, double tok_s,
                     double elapsed)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", run->step);
    cJSON_AddStringToObject(o, "stage", stage_name(mode));
    cJSON_AddNumberToObject(o, "lr", lr);
    cJSON_AddNumberToObject(o, "loss", L->total);
    cJSON_AddNumberToObject(o, "main", L->main);
    cJSON_AddNumberToObject(o, "mtp", L->mtp);
    cJSON_AddNumberToObject(o, "balance", L->balance);
    cJSON_AddNumberToObject(o, "indexer", L->indexer);
    cJSON_AddNumberToObject(o, "grad_norm", gnorm);
    cJSON_AddNumberToObject(o, "tok_per_s", tok_s);
    cJSON_AddNumberToObject(o, "elapsed_s", elapsed);
    cJSON_AddItemToObject(o, "load_max_over_mean", load_balance(&run->tm));
    char *s = cJSON_PrintUnformatted(o);
    fprintf(run->log, "%s\n", s);
    fflush(run->log);
    free(s);
    cJSON_Delete(o);
    dm_log(1, "step %6d/%d %-14s loss %.4f (main %.4f mtp %.4f bal %.2e idx %.4f) lr %.2e |g| %.3f %.0f tok/s\n",
           run->step, run->tc->hp.steps, stage_name(mode), L->total, L->main, L->mtp, L->balance, L->indexer, lr,
           gnorm, tok_s);
}

static int dump_step(t_run *run, const int32_t *w, const t_step_losses *L, double lr, cJSON *losses, dm_err *err)
{
    const char *dir = run->o->dump_dir;
    const t_model *tm = &run->tm;
    char path[1024];
    snprintf(path, sizeof path, "%s/step%d_batch.npy", dir, run->step);
    int64_t shape[2] = { tm->B, tm->T + 1 };
    if (dm_npy_write(path, DM_DTYPE_I32, 2, shape, w, err))
        return -1;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", run->step);
    cJSON_AddNumberToObject(o, "loss", L->total);
    cJSON_AddNumberToObject(o, "main", L->main);
    cJSON_AddNumberToObject(o, "mtp", L->mtp);
    cJSON_AddNumberToObject(o, "balance", L->balance);
    cJSON_AddNumberToObject(o, "indexer", L->indexer);
    cJSON_AddNumberToObject(o, "lr", lr);
    cJSON_AddItemToArray(losses, o);
    char *s = cJSON_Print(losses);
    snprintf(path, sizeof path, "%s/losses.json", dir);
    int rc = dm_write_file_atomic(path, s, strlen(s), err);
    free(s);
    if (rc || run->step != 0)
        return rc;
    /* step 0: the gradients (before clipping) in a directory of their own */
    char *gdir = dm_asprintf("%s/grads0", dir);
    dm_make_dirs(gdir);
    const float *bufs[] = { tm->ps.g };
    const char *prefix[] = { "" };
    rc = write_tensor_set(gdir, &tm->ps, bufs, prefix, 1, DM_DTYPE_F32, NULL, 0, err);
    if (rc == 0) {
        char *from = dm_path_join(gdir, "model.safetensors");
        snprintf(path, sizeof path, "%s/grads0.safetensors", dir);
        if (rename(from, path) != 0)
            rc = dm_errorf(err, "%s: cannot move the gradient dump into place", path);
        free(from);
    }
    dm_remove_tree(gdir);
    free(gdir);
    return rc;
}

/* The current weights as DUMP/<name>.safetensors (F32, HF names). */
static int dump_weights(t_run *run, const char *name, dm_err *err)
{
    char *idir = dm_asprintf("%s/%s.tmpdir", run->o->dump_dir, name);
    dm_make_dirs(idir);
    const float *bufs[] = { run->tm.ps.w };
    const char *prefix[] = { "" };
    int rc = write_tensor_set(idir, &run->tm.ps, bufs, prefix, 1, DM_DTYPE_F32, NULL, 0, err);
    if (rc == 0) {
        char *file = dm_asprintf("%s.safetensors", name);
        char *from = dm_path_join(idir, "model.safetensors"), *to = dm_path_join(run->o->dump_dir, file);
        free(file);
        if (rename(from, to) != 0)
            rc = dm_errorf(err, "%s: cannot move the init dump into place", to);
        free(from);
        free(to);
    }
    dm_remove_tree(idir);
    free(idir);
    return rc;
}

/* ---- export ------------------------------------------------------------------------------------ */

static int export_model(t_run *run, dm_err *err)
{
    const dm_train_opts *o = run->o;
    if (!o->tokenizer)
        return dm_errorf(err, "no tokenizer to export with the model (give --tokenizer)");
    dm_tokenizer *tok;
    if (dm_tokenizer_load(&tok, o->tokenizer, err))
        return -1;
    char *tok_copy = dm_strdup(o->tokenizer);   /* it may live inside out_dir, which is about to be replaced */
    dm_outdir od;
    int rc = dm_outdir_begin(&od, o->out_dir, true, err);
    if (rc == 0) {
        char *to = dm_path_join(od.tmp_path, "tokenizer.json");
        rc = dm_copy_file(tok_copy, to, err);
        free(to);
        if (rc == 0)
            rc = dm_write_model_files(od.tmp_path, run->tc->model_json, tok, err);
        const float *bufs[] = { run->tm.ps.w };
        const char *prefix[] = { "" };
        const char *meta[] = { "format", "pt", "producer", "demolish train" };
        if (rc == 0)
            rc = write_tensor_set(od.tmp_path, &run->tm.ps, bufs, prefix, 1, DM_DTYPE_BF16, meta, 4, err);
        if (rc == 0 && run->log_path) {
            to = dm_path_join(od.tmp_path, "train_log.jsonl");
            rc = dm_copy_file(run->log_path, to, err);
            free(to);
        }
        if (rc == 0)
            rc = dm_outdir_commit(&od, err);
        else
            dm_outdir_abort(&od);
    }
    free(tok_copy);
    dm_tokenizer_free(tok);
    return rc;
}

/* ---- the loop ------------------------------------------------------------------------------------ */

static int run_steps(t_run *run, const t_data *data, dm_err *err)
{
    const dm_train_hparams *hp = &run->tc->hp;
    t_model *tm = &run->tm;
    const int total = dm_config_total_layers(tm->c);
    int32_t *w = dm_malloc((size_t)tm->B * (tm->T + 1) * sizeof(int32_t));
    cJSON *losses = cJSON_CreateArray();
    int rc = 0;
    const int stop = run->o->stop_after > 0 && run->o->stop_after < hp->steps ? run->o->stop_after : hp->steps;
    double t0 = dm_time_sec(), t_last = t0;
    int steps_since = 0;
    if (run->o->dump_dir && run->step == 0)
        rc = dump_weights(run, "init", err);
    while (rc == 0 && run->step < stop) {
        const dm_stage_mode mode = dm_train_stage_at(hp, run->step);
        sample_batch(data, &run->rng, tm->B, tm->T, w);
        memset(tm->ps.g, 0, tm->ps.total * sizeof(float));
        memset(tm->load, 0, (size_t)total * tm->c->n_routed_experts * sizeof(int64_t));
        t_step_losses L;
        t_step(tm, w, mode, &L);
        const double lr = t_lr_at(hp, run->step), gnorm = t_grad_norm(&tm->ps, mode);
        if (run->o->dump_dir && run->step < run->o->dump_steps)
            rc = dump_step(run, w, &L, lr, losses, err);
        if (!isfinite(L.total) || !isfinite(gnorm))
            rc = dm_errorf(err, "step %d: the loss or the gradient is not finite (loss %g, |g| %g)", run->step, L.total,
                           gnorm);
        if (rc)
            break;
        t_adamw(&tm->ps, hp, mode, lr, gnorm);
        if (mode != DM_STAGE_INDEXER_WARMUP)
            t_update_router_bias(tm);
        steps_since++;
        if (run->step % hp->log_every == 0 || run->step + 1 == stop) {
            const double now = dm_time_sec();
            log_step(run, mode, &L, lr, gnorm, (double)steps_since * tm->B * tm->T / (now - t_last), now - t0);
            t_last = now;
            steps_since = 0;
        }
        run->step++;
        if ((hp->checkpoint_every > 0 && run->step % hp->checkpoint_every == 0) || run->step == stop)
            rc = checkpoint_save(run, err);
    }
    if (rc == 0 && run->o->dump_dir && run->step == stop)
        rc = dump_weights(run, "final", err);
    cJSON_Delete(losses);
    free(w);
    return rc;
}

int dm_train_run(const dm_train_config *tc, const dm_train_opts *o, dm_err *err)
{
    t_run run = { .tc = tc, .o = o };
    t_data data;
    const int need = tc->hp.seq_len + 1;
    int rc;
    if (o->data_raw)
        rc = data_open_raw(&data, o->data_raw, need, err);
    else if (o->corpus_dir)
        rc = data_open_corpus(&data, o->corpus_dir, o->tokenizer, need, err);
    else
        rc = dm_errorf(err, "training data: give --data CORPUS_DIR or --data-raw FILE");
    if (rc) {
        data_close(&data);
        return -1;
    }
    if (data_weights(&data, &tc->hp, err) || t_model_init(&run.tm, &tc->model, &tc->hp, err)) {
        data_close(&data);
        return -1;
    }
    run.ckpt_dir = dm_asprintf("%s.ckpt", o->out_dir);
    run.log_path = dm_asprintf("%s.log.jsonl", o->out_dir);
    dm_rng_seed(&run.rng, tc->hp.seed ^ 0x64617461ull);   /* "data" */
    if (o->resume)
        rc = checkpoint_load(&run, err);
    if (rc == 0) {
        run.log = fopen(run.log_path, o->resume ? "a" : "w");
        if (!run.log)
            rc = dm_errorf(err, "%s: cannot write the training log", run.log_path);
    }
    if (o->dump_dir && rc == 0) {
        dm_make_dirs(o->dump_dir);
        if (o->config_path) {   /* so the oracle needs no --config */
            char *to = dm_path_join(o->dump_dir, "train_config.json");
            rc = dm_copy_file(o->config_path, to, err);
            free(to);
        }
    }
    if (rc == 0)
        rc = run_steps(&run, &data, err);
    if (rc == 0 && run.step >= tc->hp.steps && o->tokenizer)
        rc = export_model(&run, err);
    if (run.log)
        fclose(run.log);
    free(run.ckpt_dir);
    free(run.log_path);
    t_model_free(&run.tm);
    data_close(&data);
    return rc;
}
