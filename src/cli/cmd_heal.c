/* cmd_heal — `demolish heal router PRUNED_DIR --teacher TEACHER_DIR --data
 * KD_DATA --out HEALED_DIR`: Router-KD (src/train/router_kd.c). Gets the
 * teacher's top-k distributions over the KD data and the held-out data
 * (cached, reused across runs: src/eval/kl_teacher.c), trains only the
 * router gates, reports held-out KL before and after, overall and per
 * source. */
#include "cli/cli.h"
#include "train/train.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

typedef struct heal_args {
    const char *teacher, *data, *heldout, *cache, *heldout_cache, *out, *dump;
    int ctx, top_k, steps, batch, warmup, eval_every;
    uint64_t max_tokens, heldout_max_tokens, seed;
    float lr, tau, mtp_weight, bias_rate;
    bool train_bias, force, json;
} heal_args;

/* One teacher cache: documents from spec, distributions from cache_path when
 * it exists (else computed by the teacher and saved there). */
static int teacher_cache(const heal_args *a, const char *spec, uint64_t max_tokens, const char *cache_path,
                         dm_kl_cache *c, dm_err *err)
{
    dm_docs docs = { 0 };
    const dm_kl_request q = { a->ctx, a->top_k, (int64_t)max_tokens };
    int rc = dm_eval_load_data(spec, &docs, err) || dm_kl_teacher_cache(a->teacher, &docs, cache_path, &q, c, err);
    dm_docs_free(&docs);
    return rc ? dm_err_prefix(err, "%s", spec) : 0;
}

static cJSON *eval_json(const dm_heal_eval *e, const dm_kl_cache *c)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "step", e->step);
    cJSON_AddNumberToObject(o, "kl", e->kl);
    cJSON_AddNumberToObject(o, "predictions", (double)e->n);
    cJSON *g = cJSON_AddObjectToObject(o, "sources");
    for (int i = 0; i < c->n_groups && i < DM_EVAL_MAX_GROUPS; i++)
        if (e->n_group[i])
            cJSON_AddNumberToObject(g, c->group[i], e->kl_group[i]);
    return o;
}

static void report(const heal_args *a, const char *student, const dm_heal_result *r, const dm_kl_cache *held)
{
    if (a->json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "student", student);
        cJSON_AddStringToObject(o, "out", a->out);
        cJSON_AddNumberToObject(o, "steps", r->steps_done);
        cJSON_AddNumberToObject(o, "trainable_params", (double)r->trainable_params);
        cJSON_AddNumberToObject(o, "total_params", (double)r->total_params);
        cJSON_AddNumberToObject(o, "train_seconds", r->train_seconds);
        cJSON_AddNumberToObject(o, "kd_tokens", (double)r->tokens);
        cJSON *ev = cJSON_AddArrayToObject(o, "heldout");
        for (int i = 0; held && i < r->n_evals; i++)
            cJSON_AddItemToArray(ev, eval_json(&r->evals[i], held));
        if (r->n_evals)
            cJSON_AddNumberToObject(o, "kept_step", r->evals[r->best].step);
        char *s = cJSON_Print(o);
        printf("%s\n", s);
        free(s);
        cJSON_Delete(o);
        return;
    }
    printf("healed %s -> %s: %d steps, %lld trainable parameters (%.4f %% of %lld), %.1f s\n", student, a->out,
           r->steps_done, (long long)r->trainable_params, 100.0 * (double)r->trainable_params / (double)r->total_params,
           (long long)r->total_params, r->train_seconds);
    if (!held || r->n_evals == 0)
        return;
    const dm_heal_eval *first = &r->evals[0], *best = &r->evals[r->best];
    printf("held-out KL(teacher||student), %lld predictions: before %.5f, kept (step %d) %.5f (%+.1f %%)\n",
           (long long)first->n, first->kl, best->step, best->kl,
           first->kl > 0 ? 100.0 * (best->kl - first->kl) / first->kl : 0.0);
    for (int g = 0; g < held->n_groups && g < DM_EVAL_MAX_GROUPS; g++)
        if (first->n_group[g])
            printf("  %-12s before %.5f  after %.5f (%+.1f %%)\n", held->group[g], first->kl_group[g],
                   best->kl_group[g],
                   first->kl_group[g] > 0 ? 100.0 * (best->kl_group[g] - first->kl_group[g]) / first->kl_group[g] : 0.0);
}

static int heal_router(int argc, char **argv)
{
    heal_args a = { .top_k = 20, .steps = 200, .batch = 8, .eval_every = 50, .lr = 5e-5f, .tau = 1.0f,
                    .mtp_weight = 0.3f, .bias_rate = 1e-3f };
    const cli_opt opts[] = {
        { "--teacher", NULL, CLI_STR, &a.teacher, "DIR", "the unpruned teacher (\"-\": caches given by --cache)" },
        { "--data", "-d", CLI_STR, &a.data, "PATH", "KD text: file.txt, file.jsonl (text, source) or CORPUS_DIR[:split]" },
        { "--heldout", NULL, CLI_STR, &a.heldout, "PATH", "held-out text for the KL checks (default: none)" },
        { "--max-tokens", NULL, CLI_U64, &a.max_tokens, "N", "KD positions (default: all of --data)" },
        { "--heldout-max-tokens", NULL, CLI_U64, &a.heldout_max_tokens, "N", "held-out positions (default: all)" },
        { "--cache", NULL, CLI_STR, &a.cache, "FILE", "teacher cache of --data: read if it exists, else written" },
        { "--heldout-cache", NULL, CLI_STR, &a.heldout_cache, "FILE", "teacher cache of --heldout, likewise" },
        { "--ctx", NULL, CLI_INT, &a.ctx, "N", "window length in predictions (default min(512, max positions))" },
        { "--topk", NULL, CLI_INT, &a.top_k, "K", "teacher tokens cached per position, plus an 'other' bucket (20)" },
        { "--steps", NULL, CLI_INT, &a.steps, "N", "optimizer steps (default 200)" },
        { "--batch", "-b", CLI_INT, &a.batch, "B", "windows per step (default 8)" },
        { "--lr", NULL, CLI_FLOAT, &a.lr, "LR", "AdamW learning rate (default 5e-5)" },
        { "--warmup", NULL, CLI_INT, &a.warmup, "N", "linear warmup steps (default 0)" },
        { "--tau", NULL, CLI_FLOAT, &a.tau, "T", "distillation temperature; the loss carries tau^2 (default 1)" },
        { "--mtp-weight", NULL, CLI_FLOAT, &a.mtp_weight, "W",
          "weight of the MTP head's KL; its router trains (default 0.3, 0: MTP router frozen)" },
        { "--train-bias", NULL, CLI_FLAG, &a.train_bias, NULL,
          "adapt e_score_correction_bias by the aux-loss-free balancing rule (it gets no gradient)" },
        { "--bias-rate", NULL, CLI_FLOAT, &a.bias_rate, "U", "... its update per step (default 1e-3)" },
        { "--eval-every", NULL, CLI_INT, &a.eval_every, "N", "held-out KL every N steps; the best is kept (default 50)" },
        { "--seed", "-s", CLI_U64, &a.seed, "S", "window order (default 0)" },
        { "--out", "-o", CLI_STR, &a.out, "DIR", "the healed model (only the gate tensors differ)" },
        { "--force", NULL, CLI_FLAG, &a.force, NULL, "replace --out if it exists" },
        { "--json", NULL, CLI_FLAG, &a.json, NULL, "print the report as JSON" },
        { "--dump", NULL, CLI_STR, &a.dump, "DIR", "write step 0's batch, targets, loss and gate gradients (tests)" },
    };
    const cli_spec spec = { "heal router", "PRUNED_DIR",
                            "Router-KD: trains only the router gates (mlp.gate.weight) of a pruned model to match the\n"
                            "teacher's next-token distributions (top-k + an 'other' bucket, forward KL), every other\n"
                            "weight frozen; keeps the gates with the lowest held-out KL and writes a copy of the model\n"
                            "in which only those tensors changed.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!a.teacher || !a.data || !a.out || a.top_k < 1 || a.steps < 0 || a.batch < 1 || a.ctx < 0 || !(a.lr >= 0) ||
        !(a.tau > 0) || !(a.mtp_weight >= 0) || a.warmup < 0 || a.eval_every < 0)
        return fprintf(stderr, "demolish heal router: need --teacher, --data, --out; --topk >= 1, --steps >= 0, "
                               "--batch >= 1, --lr >= 0, --tau > 0, --mtp-weight >= 0\n"),
               DM_EXIT_USAGE;
    dm_err err;
    dm_kl_cache train = { 0 }, held = { 0 };
    dm_heal_result r = { 0 };
    rc = DM_EXIT_FAIL;
    if (teacher_cache(&a, a.data, a.max_tokens, a.cache, &train, &err) ||
        (a.heldout && teacher_cache(&a, a.heldout, a.heldout_max_tokens, a.heldout_cache, &held, &err))) {
        cli_fail(&err);
        goto out;
    }
    const dm_heal_opts o = {
        .student_dir = pos[0], .out_dir = a.out, .train = &train, .heldout = a.heldout ? &held : NULL,
        .steps = a.steps, .batch = a.batch, .lr = a.lr, .warmup = a.warmup, .tau = a.tau, .mtp_weight = a.mtp_weight,
        .train_bias = a.train_bias, .bias_rate = a.bias_rate, .eval_every = a.eval_every, .seed = a.seed,
        .force = a.force, .dump_dir = a.dump,
    };
    if (dm_heal_router(&o, &r, &err)) {
        cli_fail(&err);
        goto out;
    }
    report(&a, pos[0], &r, a.heldout ? &held : NULL);
    rc = DM_EXIT_OK;
out:
    dm_heal_result_free(&r);
    dm_kl_cache_free(&train);
    dm_kl_cache_free(&held);
    return rc;
}

static const cli_sub subcommands[] = {
    { "router", heal_router, "Router-KD: distill only the router gates of a pruned model to its teacher" },
};

int cmd_heal(int argc, char **argv)
{
    return cli_dispatch("heal", subcommands, (int)(sizeof subcommands / sizeof subcommands[0]), argc, argv);
}
