/* config — the training configuration file: {"model": {an HF config.json},
 * "train": {hyperparameters, stages, data mixture}}. The model part goes
 * through dm_config_parse like any checkpoint's config; the train part is
 * read from one table of numeric fields. */
#include "train/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const struct num_field {
    const char *key;
    size_t off;
    bool is_int;
    double def, lo, hi;
} num_fields[] = {
#define D(k, m, def, lo, hi) { k, offsetof(dm_train_hparams, m), false, def, lo, hi }
#define I(k, m, def, lo, hi) { k, offsetof(dm_train_hparams, m), true, def, lo, hi }
    I("seq_len", seq_len, 512, 2, 1 << 20),
    I("batch_seqs", batch_seqs, 8, 1, 1 << 16),
    D("lr", lr, 3e-3, 0, 10),
    D("min_lr_ratio", min_lr_ratio, 0.1, 0, 1),
    I("warmup", warmup, 100, 0, 1 << 30),
    D("weight_decay", weight_decay, 0.1, 0, 10),
    D("beta1", beta1, 0.9, 0, 0.999999),
    D("beta2", beta2, 0.95, 0, 0.999999),
    D("eps", eps, 1e-8, 0, 1),
    D("clip", clip, 1.0, 0, 1e9),
    D("mtp_weight", mtp_weight, 0.3, 0, 100),
    D("balance_alpha", balance_alpha, 1e-4, 0, 100),
    D("bias_update_rate", bias_update_rate, 1e-3, 0, 10),
    D("idx_weight", idx_weight, 1.0, 0, 1e6),
    I("log_every", log_every, 10, 1, 1 << 30),
    I("checkpoint_every", checkpoint_every, 200, 0, 1 << 30),
#undef D
#undef I
};

static const struct {
    const char *name;
    dm_stage_mode mode;
} stage_names[] = {
    { "dense", DM_STAGE_DENSE }, { "indexer-warmup", DM_STAGE_INDEXER_WARMUP }, { "sparse", DM_STAGE_SPARSE },
};

static int read_numbers(const cJSON *t, const char *path, dm_train_hparams *hp, dm_err *err)
{
    for (size_t i = 0; i < sizeof num_fields / sizeof num_fields[0]; i++) {
        const struct num_field *f = &num_fields[i];
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(t, f->key);
        double x = f->def;
        if (v) {
            if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
                return dm_errorf(err, "%s: train.%s must be a number", path, f->key);
            x = v->valuedouble;
        }
        if (x < f->lo || x > f->hi || (f->is_int && x != floor(x)))
            return dm_errorf(err, "%s: train.%s = %g must be %s in [%g, %g]", path, f->key, x,
                             f->is_int ? "an integer" : "a number", f->lo, f->hi);
        if (f->is_int)
            *(int *)((char *)hp + f->off) = (int)x;
        else
            *(double *)((char *)hp + f->off) = x;
    }
    const cJSON *seed = cJSON_GetObjectItemCaseSensitive(t, "seed");
    if (seed && (!cJSON_IsNumber(seed) || seed->valuedouble < 0 || seed->valuedouble != floor(seed->valuedouble)))
        return dm_errorf(err, "%s: train.seed must be a non-negative integer", path);
    hp->seed = seed ? (uint64_t)seed->valuedouble : 1;
    return 0;
}

static int read_stages(const cJSON *t, const char *path, dm_train_hparams *hp, dm_err *err)
{
    const cJSON *stages = cJSON_GetObjectItemCaseSensitive(t, "stages");
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(t, "steps");
    hp->n_stages = 0;
    hp->steps = 0;
    if (!stages) {
        if (!cJSON_IsNumber(steps) || steps->valuedouble < 1 || steps->valuedouble != floor(steps->valuedouble))
            return dm_errorf(err, "%s: train needs \"stages\" or a positive integer \"steps\"", path);
        hp->stages[0] = (dm_train_stage){ DM_STAGE_DENSE, (int)steps->valuedouble };
        hp->n_stages = 1;
        hp->steps = hp->stages[0].steps;
        return 0;
    }
    if (!cJSON_IsArray(stages) || cJSON_GetArraySize(stages) < 1 || cJSON_GetArraySize(stages) > DM_TRAIN_MAX_STAGES)
        return dm_errorf(err, "%s: train.stages must be a list of 1..%d stages", path, DM_TRAIN_MAX_STAGES);
    const cJSON *s;
    cJSON_ArrayForEach(s, stages)
    {
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(s, "mode"), *n = cJSON_GetObjectItemCaseSensitive(s, "steps");
        int m = -1;
        for (size_t i = 0; cJSON_IsString(mode) && i < sizeof stage_names / sizeof stage_names[0]; i++)
            if (!strcmp(mode->valuestring, stage_names[i].name))
                m = (int)i;
        if (m < 0)
            return dm_errorf(err, "%s: train.stages[%d].mode must be dense, indexer-warmup or sparse", path,
                             hp->n_stages);
        if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble != floor(n->valuedouble))
            return dm_errorf(err, "%s: train.stages[%d].steps must be a non-negative integer", path, hp->n_stages);
        hp->stages[hp->n_stages++] = (dm_train_stage){ stage_names[m].mode, (int)n->valuedouble };
        hp->steps += (int)n->valuedouble;
    }
    if (hp->steps < 1)
        return dm_errorf(err, "%s: the stages have no steps", path);
    return 0;
}

static int read_domains(const cJSON *t, const char *path, dm_train_hparams *hp, dm_err *err)
{
    const cJSON *mix = cJSON_GetObjectItemCaseSensitive(t, "domains");
    hp->n_domains = 0;
    if (!mix)
        return 0;
    if (!cJSON_IsObject(mix))
        return dm_errorf(err, "%s: train.domains must be an object of domain -> weight", path);
    const cJSON *d;
    cJSON_ArrayForEach(d, mix)
    {
        if (hp->n_domains == DM_TRAIN_MAX_DOMAINS || strlen(d->string) >= sizeof hp->domain_name[0])
            return dm_errorf(err, "%s: train.domains: too many domains or a name too long", path);
        if (!cJSON_IsNumber(d) || !(d->valuedouble >= 0))
            return dm_errorf(err, "%s: train.domains.%s must be a weight >= 0", path, d->string);
        snprintf(hp->domain_name[hp->n_domains], sizeof hp->domain_name[0], "%s", d->string);
        hp->domain_weight[hp->n_domains++] = d->valuedouble;
    }
    return 0;
}

int dm_train_config_load(dm_train_config *tc, const char *path, dm_err *err)
{
    memset(tc, 0, sizeof *tc);
    char *text;
    if (dm_read_file(path, &text, NULL, err))
        return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    int rc = 0;
    const cJSON *model = root ? cJSON_GetObjectItemCaseSensitive(root, "model") : NULL;
    const cJSON *train = root ? cJSON_GetObjectItemCaseSensitive(root, "train") : NULL;
    if (!root || !cJSON_IsObject(root))
        rc = dm_errorf(err, "%s: invalid JSON or not an object", path);
    else if (!cJSON_IsObject(model) || !cJSON_IsObject(train))
        rc = dm_errorf(err, "%s: needs a \"model\" object (an HF config) and a \"train\" object", path);
    if (rc == 0) {
        tc->model_json = cJSON_Print(model);
        char *name = dm_asprintf("%s: model", path);
        rc = dm_config_parse(&tc->model, tc->model_json, name, err);
        free(name);
    }
    if (rc == 0)
        rc = read_numbers(train, path, &tc->hp, err) || read_stages(train, path, &tc->hp, err) ||
             read_domains(train, path, &tc->hp, err) ? -1 : 0;
    if (rc == 0 && tc->hp.warmup > tc->hp.steps)
        rc = dm_errorf(err, "%s: train.warmup = %d exceeds the %d steps", path, tc->hp.warmup, tc->hp.steps);
    if (rc == 0 && tc->model.n_mtp > 1)
        rc = dm_errorf(err, "%s: training supports at most one MTP layer", path);
    cJSON_Delete(root);
    if (rc) {
        free(tc->model_json);
        if (tc->model.layer_moe)
            dm_config_free(&tc->model);
        memset(tc, 0, sizeof *tc);
    }
    return rc;
}

void dm_train_config_free(dm_train_config *tc)
{
    free(tc->model_json);
    dm_config_free(&tc->model);
    memset(tc, 0, sizeof *tc);
}

dm_stage_mode dm_train_stage_at(const dm_train_hparams *hp, int step)
{
    for (int i = 0; i < hp->n_stages; i++) {
        if (step < hp->stages[i].steps)
            return hp->stages[i].mode;
        step -= hp->stages[i].steps;
    }
    return hp->stages[hp->n_stages - 1].mode;
}
