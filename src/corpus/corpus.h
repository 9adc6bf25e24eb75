/* corpus — the training data of the project's own reference model, built
 * from Debian packages and a seeded generator, and its tokenized form.
 *
 *   dm_corpus_build     three domains -> CORPUS/{train,val,test}.jsonl + stats.json
 *       code       every regular .py file under /usr/lib/python3.11
 *                  (libpython3.11-stdlib), one document per file
 *       prose      every .rst and .rst.gz under Documentation/ of linux-doc-6.1, one
 *                  document per file (translations/ left out: not English)
 *       reasoning  seeded arithmetic problems, one document each:
 *                  "question\n<think>\ntrace</think>\nanswer"
 *   dm_split_of         the deterministic train/val/test split of a document
 *   dm_reasoning_*      the problem generator, the held-out set, the checker
 *   dm_docs_load        a .jsonl file of {"id","source","text"} records
 *   dm_dataset_*        a split tokenized per domain (cached, mmapped): what
 *                       the trainer reads
 *
 * Splits: a document's identity (its id for code and prose — the path
 * relative to the source root — and its question text for reasoning, so an
 * identical question can never sit in two splits) is hashed (FNV-1a 64 then
 * the murmur3 finalizer); hash % 1000 < 940 is train, < 970 val, else test.
 * The rule does not depend on the seed or on the other documents: adding a
 * file moves no other file, and held-out reasoning problems generated with
 * any seed are never in any corpus's train split. */
#ifndef DM_CORPUS_H
#define DM_CORPUS_H

#include "core/core.h"
#include "tokenizer/tokenizer.h"

/* ---- splits and domains ------------------------------------------------------ */

typedef enum dm_split { DM_SPLIT_TRAIN, DM_SPLIT_VAL, DM_SPLIT_TEST, DM_SPLIT_COUNT } dm_split;

typedef enum dm_domain { DM_DOMAIN_CODE, DM_DOMAIN_PROSE, DM_DOMAIN_REASONING, DM_DOMAIN_COUNT } dm_domain;

const char *dm_split_name(dm_split s);          /* "train", "val", "test" */
int dm_split_parse(const char *name);           /* a dm_split, or -1 */
const char *dm_domain_name(dm_domain d);        /* "code", "prose", "reasoning" */
int dm_domain_parse(const char *name);          /* a dm_domain, or -1 */

/* The corpus hash (FNV-1a 64 + murmur3 fmix64) and the split it implies. */
uint64_t dm_corpus_hash(const void *p, size_t n);
dm_split dm_split_of(const void *identity, size_t n);

/* ---- building ------------------------------------------------------------------- */

#define DM_CORPUS_CODE_DIR "/usr/lib/python3.11"
#define DM_CORPUS_PROSE_DIR "/usr/share/doc/linux-doc-6.1/Documentation"
#define DM_CORPUS_REASONING_DOCS 40000

typedef struct dm_corpus_opts {
    const char *out_dir;        /* gets train.jsonl, val.jsonl, test.jsonl, stats.json */
    const char *code_dir;       /* NULL: DM_CORPUS_CODE_DIR */
    const char *prose_dir;      /* NULL: DM_CORPUS_PROSE_DIR */
    uint64_t seed;              /* reasoning problems and the order of records */
    int reasoning_docs;         /* distinct problems to generate */
    bool force;                 /* replace an existing out_dir */
} dm_corpus_opts;

typedef struct dm_corpus_stats {
    int64_t docs[DM_SPLIT_COUNT][DM_DOMAIN_COUNT];
    int64_t bytes[DM_SPLIT_COUNT][DM_DOMAIN_COUNT];
    int64_t skipped_not_utf8;   /* files that are not UTF-8 (or hold NUL bytes) */
    int64_t skipped_empty;      /* empty files */
} dm_corpus_stats;

/* Reads the code and prose trees, generates the reasoning problems, splits
 * every document and writes out_dir/{train,val,test}.jsonl — one record per
 * line, {"id":…,"source":"code"|"prose"|"reasoning","text":…}, ordered by a
 * seeded hash of the id — and out_dir/stats.json (documents and bytes per
 * split and domain). out_dir appears only when complete (dm_outdir). Same
 * inputs and seed: byte-identical output. A missing source directory is an
 * error naming the Debian package that provides it. st may be NULL. */
int dm_corpus_build(const dm_corpus_opts *o, dm_corpus_stats *st, dm_err *err);

/* ---- reading records --------------------------------------------------------------- */

typedef struct dm_doc {
    char *id;                   /* "" when the record has none */
    char *source;               /* "" when the record has none */
    char *text;
    size_t len;                 /* bytes of text (a \u0000 escape ends it) */
} dm_doc;

typedef struct dm_docs {
    dm_doc *doc;
    size_t n;
} dm_docs;

/* Reads a .jsonl file: one JSON object per non-empty line with a string
 * "text" and optional string "source" and "id". An error names the line. */
int dm_docs_load(dm_docs *out, const char *path, dm_err *err);
void dm_docs_free(dm_docs *d);
/* CORPUS_DIR/<split>.jsonl (malloc'd). */
char *dm_corpus_split_path(const char *corpus_dir, dm_split s);

/* ---- reasoning problems --------------------------------------------------------------- */

typedef enum dm_reasoning_kind {
    DM_REASONING_ADD, DM_REASONING_SUB, DM_REASONING_MUL, DM_REASONING_MAX, DM_REASONING_MIN,
    DM_REASONING_KIND_COUNT
} dm_reasoning_kind;

typedef struct dm_reasoning_doc {
    char id[64];                /* "reasoning/<seed>/<index>" */
    dm_reasoning_kind kind;
    char *question;             /* one line, ends with '?' */
    char *text;                 /* question "\n<think>\n" trace "</think>\n" answer */
    size_t prompt_len;          /* text[0..prompt_len) is question "\n<think>\n": the prompt to complete */
    char answer[48];            /* the exact expected answer, e.g. "-4432" */
} dm_reasoning_doc;

/* Problem number `index` of the stream `seed` (pure function of both). */
void dm_reasoning_make(uint64_t seed, uint64_t index, dm_reasoning_doc *d);
void dm_reasoning_doc_free(dm_reasoning_doc *d);
/* The first n distinct problems of stream `seed` whose question falls in
 * `split` (dm_split_of the question text). With split = DM_SPLIT_TEST these
 * are held out from every corpus's train split, whatever seed built it.
 * Returns a malloc'd array of n (free each, then the array). */
dm_reasoning_doc *dm_reasoning_heldout(uint64_t seed, dm_split split, int n);

/* Solves a question the generator can produce, into answer[cap]. Returns 0,
 * or -1 if the question matches none of the generator's templates. Works
 * from the question alone (parses the numbers and the operation). */
int dm_reasoning_solve(const char *question, char *answer, size_t cap);
/* 1 if answer_text (surrounding whitespace ignored) is exactly the right
 * number, 0 if not, -1 if the question is not one of the generator's. */
int dm_reasoning_check(const char *question, const char *answer_text);
/* The answer part of a completion (what follows the last "</think>"), or
 * NULL when the completion never closes its think block. */
const char *dm_reasoning_answer_part(const char *completion);

/* ---- held-out prompts (prompts.c) ------------------------------------------------------------- */

#define DM_PROMPTS_PER_SOURCE 700
#define DM_PROMPTS_MIN_BYTES 200
#define DM_PROMPTS_MAX_BYTES 800

typedef struct dm_prompts_opts {
    const char *corpus_dir;     /* only corpus_dir/test.jsonl is read */
    const char *out_path;       /* JSON lines {"id","source","prompt"} */
    int per_source;             /* prompts per source (code, prose, reasoning), >= 1 */
    uint64_t seed;              /* window positions and lengths, choice, order */
    int min_bytes, max_bytes;   /* code/prose window length bounds, 1 <= min <= max */
    bool force;                 /* replace an existing out_path */
} dm_prompts_opts;

typedef struct dm_prompts_stats {
    int64_t prompts[DM_DOMAIN_COUNT];
    int64_t bytes[DM_DOMAIN_COUNT];        /* prompt bytes, summed */
    int64_t docs[DM_DOMAIN_COUNT];         /* test documents of the source */
    int64_t docs_used[DM_DOMAIN_COUNT];    /* of those, documents that gave a prompt */
    int64_t overlapping[DM_DOMAIN_COUNT];  /* code/prose windows chosen after the non-overlapping ones ran out */
} dm_prompts_stats;

/* Writes out_path: per_source prompts from each source of the corpus's TEST
 * split, for `demolish eval loops`.
 *   code, prose  windows of documents that begin at a line start and end
 *                right after a '\n', min_bytes..max_bytes long, not
 *                whitespace-only, distinct texts; id "<docid>@<start>+<len>"
 *   reasoning    question "\n<think>\n" (the text up to and including the
 *                first "\n<think>\n"); id "<docid>@0+<len>"
 * (docid gets a "<source>/" prefix when it lacks one). Lines are ordered by a
 * seeded hash of the id, so every prefix mixes the sources. Same test.jsonl
 * and options: byte-identical file. The file appears complete or not at all
 * (dm_write_file_atomic); an existing out_path is an error without force, and
 * the corpus's own files are never written. A source that cannot supply
 * per_source prompts is an error naming it and how many it could give. st may
 * be NULL. */
int dm_corpus_prompts(const dm_prompts_opts *o, dm_prompts_stats *st, dm_err *err);

/* ---- the tokenized dataset ------------------------------------------------------------------ */

#define DM_DATASET_MAX_DOMAINS 16

/* One split of a corpus as token streams, one per domain: every document's
 * tokens (dm_tokenize with allow_special) followed by the <|endoftext|> id,
 * in the order of the .jsonl file. Domains: code, prose, reasoning first (in
 * that order, those present), then any other source names alphabetically. */
typedef struct dm_dataset {
    int n_domains;
    char *domain[DM_DATASET_MAX_DOMAINS];
    const uint32_t *tokens[DM_DATASET_MAX_DOMAINS];
    size_t n_tokens[DM_DATASET_MAX_DOMAINS];
    int64_t n_docs[DM_DATASET_MAX_DOMAINS];
    int64_t n_bytes[DM_DATASET_MAX_DOMAINS];     /* text bytes (the eos adds none) */
    uint32_t eos_id;
    char *cache_dir;            /* NULL when built in memory */
    bool from_cache;            /* true: mapped from an existing cache */
    dm_map map[DM_DATASET_MAX_DOMAINS];          /* cache files (mapped) */
    uint32_t *owned[DM_DATASET_MAX_DOMAINS];     /* in-memory streams */
} dm_dataset;

/* Opens CORPUS_DIR's split with the tokenizer at tokenizer_path. The first
 * time, tokenizes every document (threads over documents) and writes
 * CORPUS_DIR/cache-<hash of tokenizer.json>/<split>-<domain>.u32 (uint32
 * little-endian) and <split>.json (counts; written last, so a cache is used
 * only when complete); afterwards maps those files. A cache whose .jsonl size
 * no longer matches is rebuilt. */
int dm_dataset_open(dm_dataset *ds, const char *corpus_dir, const char *split, const char *tokenizer_path,
                    dm_err *err);
/* Same streams, built in memory with an already loaded tokenizer; writes nothing. */
int dm_dataset_tokenize(dm_dataset *ds, const char *corpus_dir, const char *split, const dm_tokenizer *tok,
                        dm_err *err);
int dm_dataset_n_domains(const dm_dataset *ds);
const char *dm_dataset_domain(const dm_dataset *ds, int d);
/* Index of a domain by name, or -1. */
int dm_dataset_find(const dm_dataset *ds, const char *name);
const uint32_t *dm_dataset_tokens(const dm_dataset *ds, int d, size_t *n);
void dm_dataset_close(dm_dataset *ds);

#endif
