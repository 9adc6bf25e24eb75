/* cmd_tokenizer — `demolish tokenizer train` (a byte-level BPE with the GLM
 * special tokens, trained on a corpus's train split, then the token counts
 * of every split and domain under it) and `demolish tokenizer encode` (the
 * ids of a text, for scripts and tests). */
#include "cli/cli.h"
#include "corpus/corpus.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

/* The GLM special-token set, in this order after the learned tokens. */
static const char *const special_tokens[] = {
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>",
    "<|user|>", "<|assistant|>", "<|observation|>", "<think>", "</think>",
};
#define N_SPECIAL ((int)(sizeof special_tokens / sizeof special_tokens[0]))

/* The training text: the train split's documents in file order (already a
 * seeded shuffle), each followed by <|endoftext|> (special tokens are split
 * out before words are counted, so no merge spans two documents). With
 * max_bytes > 0, documents are taken in order until the next would exceed it:
 * a deterministic sample of every domain in its share of the split. */
static int training_text(const char *corpus_dir, size_t max_bytes, char **text, size_t *len, int64_t *n_docs,
                         dm_err *err)
{
    char *path = dm_corpus_split_path(corpus_dir, DM_SPLIT_TRAIN);
    dm_docs docs;
    int rc = dm_docs_load(&docs, path, err);
    free(path);
    if (rc)
        return -1;
    size_t total = 0, sep = strlen(special_tokens[0]), k = 0;
    for (; k < docs.n; k++) {
        if (max_bytes > 0 && total + docs.doc[k].len + sep > max_bytes)
            break;
        total += docs.doc[k].len + sep;
    }
    char *buf = dm_malloc(total + 1), *p = buf;
    for (size_t i = 0; i < k; i++) {
        memcpy(p, docs.doc[i].text, docs.doc[i].len);
        p += docs.doc[i].len;
        memcpy(p, special_tokens[0], sep);
        p += sep;
    }
    *p = 0;
    *text = buf;
    *len = total;
    *n_docs = (int64_t)k;
    dm_docs_free(&docs);
    return 0;
}

/* Token counts of every split and domain, printed (and added to json). */
static int report_counts(const char *corpus_dir, const char *tok_json, size_t tok_len, cJSON *json, dm_err *err)
{
    dm_tokenizer *tok;
    if (dm_tokenizer_load_json(&tok, tok_json, tok_len, "trained tokenizer", err))
        return -1;
    cJSON *splits = cJSON_AddObjectToObject(json, "splits");
    printf("%-6s %-10s %10s %14s %12s %11s\n", "split", "domain", "documents", "bytes", "tokens", "bytes/token");
    int rc = 0;
    for (int s = 0; s < DM_SPLIT_COUNT && rc == 0; s++) {
        dm_dataset ds;
        if ((rc = dm_dataset_tokenize(&ds, corpus_dir, dm_split_name((dm_split)s), tok, err)))
            break;
        cJSON *js = cJSON_AddObjectToObject(splits, dm_split_name((dm_split)s));
        for (int d = 0; d < ds.n_domains; d++) {
            cJSON *o = cJSON_AddObjectToObject(js, ds.domain[d]);
            cJSON_AddNumberToObject(o, "documents", (double)ds.n_docs[d]);
            cJSON_AddNumberToObject(o, "bytes", (double)ds.n_bytes[d]);
            cJSON_AddNumberToObject(o, "tokens", (double)ds.n_tokens[d]);
            printf("%-6s %-10s %10lld %14lld %12zu %11.2f\n", dm_split_name((dm_split)s), ds.domain[d],
                   (long long)ds.n_docs[d], (long long)ds.n_bytes[d], ds.n_tokens[d],
                   ds.n_tokens[d] ? (double)ds.n_bytes[d] / (double)ds.n_tokens[d] : 0.0);
        }
        dm_dataset_close(&ds);
    }
    dm_tokenizer_free(tok);
    return rc;
}

static int tokenizer_train(int argc, char **argv)
{
    int vocab = 8192;
    const char *out = NULL, *stats = NULL;
    size_t max_bytes = 0;
    bool force = false;
    const cli_opt opts[] = {
        { "--vocab", NULL, CLI_INT, &vocab, "N", "vocabulary size, special tokens included (default 8192)" },
        { "--out", "-o", CLI_STR, &out, "FILE", "the tokenizer.json to write (required)" },
        { "--max-mb", NULL, CLI_SIZE_MB, &max_bytes, "MB", "train on the first MB of the train split (default: all)" },
        { "--stats", NULL, CLI_STR, &stats, "FILE", "also write the token counts as JSON" },
        { "--force", NULL, CLI_FLAG, &force, NULL, "replace FILE if it exists" },
    };
    const cli_spec spec = { "tokenizer train", "CORPUS_DIR ",
                            "Trains a byte-level BPE (GLM pre-tokenizer, NFC) on the corpus's train split with the "
                            "GLM special\ntokens, writes it as tokenizer.json, and prints the token count of every "
                            "split and domain.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!out || vocab < 256 + N_SPECIAL)
        return fprintf(stderr, "demolish tokenizer train: need --out FILE and --vocab >= %d\n", 256 + N_SPECIAL),
               DM_EXIT_USAGE;
    if (dm_path_exists(out) && !force)
        return cli_failf("%s: already exists (use --force to replace it)", out);
    dm_err err;
    char *text, *json;
    size_t len;
    int64_t n_docs;
    double t0 = dm_time_sec();
    if (training_text(pos[0], max_bytes, &text, &len, &n_docs, &err))
        return cli_fail(&err);
    dm_log(1, "training on %lld documents, %.1f MB\n", (long long)n_docs, len / 1e6);
    rc = dm_bpe_train(text, len, vocab, special_tokens, N_SPECIAL, &json, &err);
    free(text);
    if (rc)
        return cli_fail(&err);
    double t_train = dm_time_sec() - t0;
    char *parent = dm_strdup(out), *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = 0;
        dm_make_dirs(parent);   /* like the other commands' outputs: create the directory */
    }
    free(parent);
    rc = dm_write_file_atomic(out, json, strlen(json), &err);
    cJSON *report = cJSON_CreateObject();
    cJSON_AddStringToObject(report, "tokenizer", out);
    cJSON_AddNumberToObject(report, "vocab", vocab);
    cJSON_AddNumberToObject(report, "train_documents", (double)n_docs);
    cJSON_AddNumberToObject(report, "train_seconds", t_train);
    if (rc == 0)
        rc = report_counts(pos[0], json, strlen(json), report, &err);
    char *rtext = cJSON_Print(report);
    if (rc == 0 && stats)
        rc = dm_write_file_atomic(stats, rtext, strlen(rtext), &err);
    free(rtext);
    cJSON_Delete(report);
    free(json);
    if (rc)
        return cli_fail(&err);
    dm_log(1, "wrote %s (BPE training %.1f s, total %.1f s)\n", out, t_train, dm_time_sec() - t0);
    return DM_EXIT_OK;
}

static int tokenizer_encode(int argc, char **argv)
{
    const char *text = NULL, *file = NULL;
    bool no_special = false;
    const cli_opt opts[] = {
        { "--text", NULL, CLI_STR, &text, "TEXT", "the text to encode" },
        { "--file", NULL, CLI_STR, &file, "FILE", "encode a file's bytes instead" },
        { "--no-special", NULL, CLI_FLAG, &no_special, NULL, "treat special-token text as plain text" },
    };
    const cli_spec spec = { "tokenizer encode", "TOKENIZER ",
                            "Prints the token ids of a text, comma-separated. TOKENIZER: a tokenizer.json or a "
                            "model directory.",
                            opts, (int)(sizeof opts / sizeof opts[0]), 1, 1 };
    const char *pos[1];
    int n_pos, rc = cli_parse(&spec, argc, argv, pos, &n_pos);
    if (rc != CLI_PARSED)
        return rc == CLI_HELP ? DM_EXIT_OK : DM_EXIT_USAGE;
    if (!text == !file)
        return fprintf(stderr, "demolish tokenizer encode: give exactly one of --text or --file\n"), DM_EXIT_USAGE;
    dm_err err;
    dm_tokenizer *tok;
    char *buf = NULL;
    size_t len = text ? strlen(text) : 0;
    if (file && dm_read_file(file, &buf, &len, &err))
        return cli_fail(&err);
    if (dm_tokenizer_load(&tok, pos[0], &err)) {
        free(buf);
        return cli_fail(&err);
    }
    int n;
    int32_t *ids = dm_tokenize(tok, text ? text : buf, len, !no_special, &n);
    for (int i = 0; i < n; i++)
        printf("%s%d", i ? "," : "", ids[i]);
    printf("\n");
    free(ids);
    free(buf);
    dm_tokenizer_free(tok);
    return DM_EXIT_OK;
}

static const cli_sub subcommands[] = {
    { "train", tokenizer_train, "train a byte-level BPE on a corpus's train split" },
    { "encode", tokenizer_encode, "print the token ids of a text" },
};

int cmd_tokenizer(int argc, char **argv)
{
    return cli_dispatch("tokenizer", subcommands, (int)(sizeof subcommands / sizeof subcommands[0]), argc, argv);
}
