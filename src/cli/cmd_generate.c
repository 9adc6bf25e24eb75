/* cmd_generate — `demolish generate`: text from a prompt, streamed to stdout,
 * with prefill and decode speed on stderr (or in --json). Sampling options
 * map one to one onto dm_sampler_params (src/sample/sample.h). */
#include "cli/cli.h"
#include "model/hesitation.h"
#include "model/model.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static bool print_piece(void *user, const char *bytes, size_t n)
{
    (void)user;
    fwrite(bytes, 1, n, stdout);
    fflush(stdout);
    return true;
}

static int parse_bias(const cli_strlist *l, dm_logit_bias **out)
{
    *out = l->n ? dm_calloc((size_t)l->n, sizeof(dm_logit_bias)) : NULL;
    for (int i = 0; i < l->n; i++) {
        char *end;
        errno = 0;
        long id = strtol(l->items[i], &end, 10);
        if (end == l->items[i] || *end != '=' || id < 0 || errno)
            return -1;
        const char *v = end + 1;
        float b = !strcmp(v, "-inf") ? -INFINITY : strtof(v, &end);
        if (strcmp(v, "-inf") && (end == v || *end))
            return -1;
        (*out)[i].token = (int32_t)id;
        (*out)[i].bias = b;
    }
    return 0;
}

static int parse_scope(const char *s, dm_rep_scope *out)
{
    static const struct { const char *name; dm_rep_scope scope; } scopes[] = {
        { "all", DM_REP_SCOPE_ALL }, { "window", DM_REP_SCOPE_WINDOW }, { "output", DM_REP_SCOPE_OUTPUT },
    };
    for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
        if (!strcmp(s, scopes[i].name)) {
            *out = scopes[i].scope;
            return 0;
        }
    return -1;
}

static const char *stop_name(dm_stop_reason r)
{
    static const char *const names[] = { "length", "eos", "stop_string", "caller" };
    return names[r];
}

static void report(const dm_gen_stats *st, bool json)
{
    double pf = st->t_prefill > 0 ? st->n_prompt / st->t_prefill : 0;
    double dc = st->t_decode > 0 ? st->n_eval / st->t_decode : 0;
    if (json) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "prompt_tokens", st->n_prompt);
        cJSON_AddNumberToObject(o, "generated_tokens", st->n_gen);
        cJSON_AddNumberToObject(o, "prefill_seconds", st->t_prefill);
        cJSON_AddNumberToObject(o, "prefill_tok_per_s", pf);
        cJSON_AddNumberToObject(o, "decode_seconds", st->t_decode);
        cJSON_AddNumberToObject(o, "decode_tok_per_s", dc);
        cJSON_AddStringToObject(o, "stop", stop_name(st->stop));
        cJSON_AddNumberToObject(o, "peak_rss_bytes", (double)dm_peak_rss_bytes());
        char *s = cJSON_PrintUnformatted(o);
        fprintf(stderr, "%s\n", s);
        free(s);
        cJSON_Delete(o);
    } else {
        dm_log(1, "\n\nprompt %d tokens: prefill %.2f s, %.1f tok/s | generated %d tokens: decode %.2f s, "
                  "%.1f tok/s | stop: %s | peak RSS %.0f MiB\n",
               st->n_prompt, st->t_prefill, pf, st->n_gen, st->t_decode, dc, stop_name(st->stop),
               dm_peak_rss_bytes() / 1048576.0);
    }
}

int cmd_generate(int argc, char **argv)
{
    const char *prompt = NULL, *file = NULL, *system = NULL, *scope = "all", *guardrail = NULL, *hes_words = NULL;
    int n_predict = 128;
    bool chat = false, no_think = false, json = false, precise = false;
    dm_sampler_params sp = dm_sampler_defaults();
    sp.temperature = 0.8f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.05f;
    sp.repeat_last_n = 64;
    cli_strlist stops = { 0 }, biases = { 0 };
    const cli_opt opts[] = {
        { "--prompt", "-p", CLI_STR, &prompt, "TEXT", "the prompt" },
        { "--file", "-f", CLI_STR, &file, "FILE", "read the prompt from a file" },
        { "--n-predict", "-n", CLI_INT, &n_predict, "N", "tokens to generate at most (default 128)" },
        { "--temp", NULL, CLI_FLOAT, &sp.temperature, "T", "temperature, 0 = greedy (default 0.8)" },
        { "--top-k", NULL, CLI_INT, &sp.top_k, "N", "top-k, 0 = off (default 40)" },
        { "--top-p", NULL, CLI_FLOAT, &sp.top_p, "P", "top-p, 1 = off (default 0.95)" },
        { "--min-p", NULL, CLI_FLOAT, &sp.min_p, "P", "min-p relative to the top token, 0 = off (default 0.05)" },
        { "--repeat-penalty", NULL, CLI_FLOAT, &sp.repeat_penalty, "R", "repetition penalty (HF semantics), 1 = off" },
        { "--rep-scope", NULL, CLI_STR, &scope, "S", "repetition-penalty scope: all (HF/vLLM), window, output" },
        { "--repeat-last-n", NULL, CLI_INT, &sp.repeat_last_n, "N", "window for --rep-scope window (default 64)" },
        { "--presence-penalty", NULL, CLI_FLOAT, &sp.presence_penalty, "X", "OpenAI presence penalty" },
        { "--frequency-penalty", NULL, CLI_FLOAT, &sp.frequency_penalty, "X", "OpenAI frequency penalty" },
        { "--logit-bias", NULL, CLI_STR_LIST, &biases, "ID=B", "add B to a token's logit (B may be -inf)" },
        { "--guardrail", NULL, CLI_STR, &guardrail, "NAME",
          "sampler preset, overriding --min-p/--repeat-penalty/--rep-scope: none; gentle = min_p 0.05 + "
          "repeat_penalty 1.05, scope all; strong = min_p 0.05 + repeat_penalty 1.10, scope all" },
        { "--hesitation-penalty", NULL, CLI_FLOAT, &sp.hesitation_penalty, "L",
          "subtract L from the logit of the first token of each hesitation word (default 0 = off)" },
        { "--hesitation-words", NULL, CLI_STR, &hes_words, "W1,W2",
          "hesitation words, each also with a leading space and capitalised (default " DM_HESITATION_WORDS_DEFAULT ")" },
        { "--seed", "-s", CLI_U64, &sp.seed, "N", "sampling seed (default 0)" },
        { "--stop", NULL, CLI_STR_LIST, &stops, "TEXT", "stop when this text appears" },
        { "--chat", NULL, CLI_FLAG, &chat, NULL, "wrap the prompt in the model's chat template" },
        { "--system", NULL, CLI_STR, &system, "TEXT", "system message for --chat" },
        { "--no-think", NULL, CLI_FLAG, &no_think, NULL, "with --chat: close the thinking block up front" },
        { "--precise", NULL, CLI_FLAG, &precise, NULL, "keep activations in f32 in every matmul" },
        { "--json", NULL, CLI_FLAG, &json, NULL, "print the statistics as JSON on stderr" },
    };
    const cli_spec spec = { "generate", "MODEL_DIR ", "Generates text from a prompt; prints prefill and decode speed.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    dm_logit_bias *bias = NULL;
    if (!prompt == !file || n_predict < 0 || parse_scope(scope, &sp.repeat_scope) || parse_bias(&biases, &bias)) {
        free(bias);
        free(stops.items);
        free(biases.items);
        return fprintf(stderr, "demolish generate: need exactly one of --prompt/--file, n >= 0, a valid "
                               "--rep-scope and --logit-bias ID=B (see --help)\n"), DM_EXIT_USAGE;
    }
    sp.bias = bias;
    sp.n_bias = biases.n;
    dm_ops_set_precise(precise);

    dm_err err;
    char *file_text = NULL;
    dm_model *m = NULL;
    dm_tokenizer *tok = NULL;
    int32_t *hes = NULL;
    if (guardrail && dm_sampler_guardrail(&sp, guardrail, &err)) {
        rc = cli_fail(&err);
        goto out;
    }
    if ((file && dm_read_file(file, &file_text, NULL, &err)) || dm_model_load(&m, pos[0], &err) ||
        dm_tokenizer_load(&tok, pos[0], &err) ||
        (sp.hesitation_penalty != 0 && dm_hesitation_resolve(tok, hes_words, &hes, &sp.n_hesitation, &err)) ||
        (sp.hesitation_ids = hes, dm_sampler_params_check(&sp, m->cfg.vocab_size, &err))) {
        rc = cli_fail(&err);
        goto out;
    }
    dm_hesitation_log(tok, hes, sp.n_hesitation, "generate");
    const char *text = file ? file_text : prompt;
    char *rendered = NULL;
    if (chat) {
        dm_chat_msg msgs[2];
        int n = 0;
        if (system)
            msgs[n++] = (dm_chat_msg){ "system", system };
        msgs[n++] = (dm_chat_msg){ "user", text };
        rendered = dm_chat_render(tok, dm_chat_style_for(tok), msgs, n, true, !no_think);
        text = rendered;
    }
    int n_prompt;
    int32_t *ids = dm_tokenize(tok, text, strlen(text), true, &n_prompt);
    dm_sampler *s = dm_sampler_new(&sp, m->cfg.vocab_size);
    dm_ctx *ctx = dm_ctx_new(m, 512);
    dm_seq *seq = dm_seq_new(m, n_prompt + n_predict + 1);
    if (!chat)
        fputs(text, stdout);
    dm_gen_request req = { .prompt = ids, .n_prompt = n_prompt, .n_predict = n_predict,
                           .stop = stops.items, .n_stop = stops.n, .emit = print_piece };
    dm_gen_stats st;
    rc = dm_generate(ctx, seq, tok, s, &req, &st, &err) ? cli_fail(&err) : DM_EXIT_OK;
    if (rc == DM_EXIT_OK)
        report(&st, json);
    dm_seq_free(seq);
    dm_ctx_free(ctx);
    dm_sampler_free(s);
    free(ids);
    free(rendered);
out:
    free(hes);
    dm_tokenizer_free(tok);
    dm_model_free(m);
    free(file_text);
    free(bias);
    free(stops.items);
    free(biases.items);
    return rc;
}
