/* corpus_internal — pieces the corpus stage's files share:
 *
 *   split.c        names, the corpus hash, the split rule
 *   sources.c      walking the code and prose trees, reading (.gz) files
 *   build.c        dm_corpus_build: collect, split, order, write
 *   jsonl.c        JSON string escaping, the .jsonl reader
 *   reasoning.c    the problem generator and its step-by-step traces
 *   reasoning_check.c  the question templates, the solver and checker
 *   dataset.c      tokenized splits and their cache */
#ifndef DM_CORPUS_INTERNAL_H
#define DM_CORPUS_INTERNAL_H

#include "corpus/corpus.h"

/* A growable byte string (always NUL-terminated once anything is added). */
typedef struct cp_str {
    char *p;
    size_t n, cap;
} cp_str;

void cp_str_add(cp_str *s, const void *p, size_t n);
#define CP_STR_LIT(s, lit) cp_str_add((s), (lit), sizeof(lit) - 1)
void cp_str_addf(cp_str *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* murmur3's 64-bit finalizer: a bijective mix of a 64-bit value. */
uint64_t cp_mix64(uint64_t x);

/* One document found in a source tree. */
typedef struct cp_file {
    char *rel;                  /* path relative to the tree's root, ".gz" removed */
    char *path;                 /* full path */
} cp_file;

typedef struct cp_files {
    cp_file *f;
    size_t n, cap;
} cp_files;

/* Lists the regular files under root (symlinks are not followed) whose name
 * ends with one of suffixes[], skipping directories named in skip_dirs[]
 * (at any depth), sorted by relative path (byte order). */
int cp_list_files(const char *root, const char *const *suffixes, int n_suffixes, const char *const *skip_dirs,
                  int n_skip, cp_files *out, dm_err *err);
void cp_files_free(cp_files *fs);
/* Reads a whole file, inflating it when it is gzip-compressed (zlib). */
int cp_read_doc(const char *path, char **out, size_t *len, dm_err *err);
/* True when s[0..n) is well-formed UTF-8 without NUL bytes. */
bool cp_text_ok(const char *s, size_t n);

/* Appends s[0..n) as a JSON string literal (quotes included). Bytes >= 0x80
 * are copied (the text is UTF-8); controls, '"' and '\\' are escaped. */
void cp_json_string(cp_str *out, const char *s, size_t n);

/* A set of 64-bit hashes (open addressing; 0 is stored as a flag). */
typedef struct cp_hashset {
    uint64_t *slot;
    size_t cap, n;
    bool has_zero;
} cp_hashset;

/* Inserts h; returns true when it was not there yet. */
bool cp_hashset_add(cp_hashset *s, uint64_t h);
void cp_hashset_free(cp_hashset *s);

/* ---- reasoning question templates (shared by the generator and the checker) ---- */

/* Placeholders: {a} {b} the operands (digits), {n} a name ([A-Za-z]+),
 * {i} a plural item ([a-z]+). Every literal character after a placeholder is
 * outside its class, so matching can be greedy. */
typedef struct cp_template {
    dm_reasoning_kind kind;
    const char *text;
} cp_template;

enum {
    CP_T_ADD, CP_T_ADD_WORD, CP_T_SUB, CP_T_SUB_WORD, CP_T_MUL, CP_T_MUL_WORD, CP_T_MAX, CP_T_MIN,
    CP_T_COUNT
};
extern const cp_template cp_templates[CP_T_COUNT];

/* Appends the question of template t with the given values. */
void cp_render_question(cp_str *out, int t, long long a, long long b, const char *name, const char *item);

#endif
