/* prompts — `demolish corpus prompts`: a held-out prompt set cut from a
 * corpus's TEST split, the input of the loop-rate evaluation (`demolish eval
 * loops --prompts`). Nothing here was seen in training: only test.jsonl is
 * read.
 *
 * code, prose — windows of text. Every start s of a non-empty line of a test
 * document is a candidate start; its window ends right after a '\n', at the
 * last line end within a seeded target length T in [min, max] (or, when no
 * line end falls in [min, T], at the first one at >= min bytes, if that is
 * <= max). Windows that are whitespace-only or not well-formed UTF-8 are
 * dropped. Candidates are then visited in a seeded order (a hash of seed,
 * document id and start, so a source's prompts are spread over its documents
 * roughly in proportion to their number of lines) in two passes:
 *   1. take a window when its text is new and it overlaps no window already
 *      taken from the same document;
 *   2. if fewer than N were taken, take any window whose text is new (its
 *      start is distinct by construction).
 * reasoning — the text up to and including the first "\n<think>\n" of each
 * test reasoning document (the prompt `eval reasoning` gives), N of them
 * chosen by a seeded hash of the document id.
 *
 * Output order: all 3N lines sorted by a seeded hash of the prompt id (ties by
 * id), so `eval loops --n K` gets a mix of the sources for any K. */
#define _GNU_SOURCE   /* memmem */
#include "corpus/corpus_internal.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define THINK_OPEN "\n<think>\n"
#define SALT_WINDOW 0x77696e646f77ULL   /* "window" */
#define SALT_LENGTH 0x6c656e677468ULL   /* "length" */
#define SALT_REASON 0x726561736f6eULL   /* "reason" */
#define SALT_ORDER 0x6f72646572ULL      /* "order" */
#define SALT_START 0x7374617274ULL      /* "start" */

/* A candidate or chosen prompt: bytes [start, start + len) of document doc. */
typedef struct pick {
    uint64_t key;               /* seeded visiting / output order */
    size_t doc;                 /* index into the test split's documents */
    size_t start, len;
    char *id;                   /* set once chosen */
    dm_domain domain;
} pick;

typedef struct pick_list {
    pick *p;
    size_t n, cap;
} pick_list;

static void picks_push(pick_list *l, pick p)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 1024;
        l->p = dm_realloc(l->p, l->cap * sizeof *l->p);
    }
    l->p[l->n++] = p;
}

static void picks_free(pick_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->p[i].id);
    free(l->p);
    memset(l, 0, sizeof *l);
}

static int pick_cmp(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* The output order: by key, ties (improbable) by id. */
static int out_cmp(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* ---- reading the test split ---- */

static int id_cmp(const void *a, const void *b)
{
    return strcmp((*(const dm_doc *const *)a)->id, (*(const dm_doc *const *)b)->id);
}

/* Every record must have a known source and an id, ids must be unique (they
 * name the prompts), and a reasoning document must hold "\n<think>\n".
 * dom[i] gets record i's domain. */
static int check_docs(const char *path, const dm_docs *docs, dm_domain *dom, dm_err *err)
{
    for (size_t i = 0; i < docs->n; i++) {
        const dm_doc *d = &docs->doc[i];
        if (!d->source[0])
            return dm_errorf(err, "%s: record %zu has no \"source\"", path, i + 1);
        int k = dm_domain_parse(d->source);
        if (k < 0)
            return dm_errorf(err, "%s: record %zu has source \"%s\" (want code, prose or reasoning)", path, i + 1,
                             d->source);
        if (!d->id[0])
            return dm_errorf(err, "%s: record %zu has no \"id\"", path, i + 1);
        if (k == DM_DOMAIN_REASONING && !memmem(d->text, d->len, THINK_OPEN, sizeof THINK_OPEN - 1))
            return dm_errorf(err, "%s: reasoning document \"%s\" has no \"\\n<think>\\n\"", path, d->id);
        dom[i] = (dm_domain)k;
    }
    const dm_doc **by_id = dm_malloc((docs->n ? docs->n : 1) * sizeof *by_id);
    for (size_t i = 0; i < docs->n; i++)
        by_id[i] = &docs->doc[i];
    qsort(by_id, docs->n, sizeof *by_id, id_cmp);
    int rc = 0;
    for (size_t i = 1; i < docs->n && rc == 0; i++)
        if (strcmp(by_id[i - 1]->id, by_id[i]->id) == 0)
            rc = dm_errorf(err, "%s: document id \"%s\" appears twice", path, by_id[i]->id);
    free(by_id);
    return rc;
}

/* ---- code and prose windows ---- */

static bool whitespace_only(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr(" \t\r\n\f\v", s[i]))
            return false;
    return true;
}

/* A window never starts on an empty line: a prompt that opens with a blank
 * line is an odd prompt, and it is almost the window of the next line. */
static bool empty_line(const char *s)
{
    return s[0] == '\n' || (s[0] == '\r' && s[1] == '\n');
}

/* Length of the window starting at s (a line start) with target length
 * target: ends right after a '\n', within [min, max]; 0 when there is none. */
static size_t window_len(const char *text, size_t len, size_t s, size_t target, size_t min, size_t max)
{
    size_t best = 0, limit = len - s < max ? len - s : max;
    for (const char *p = text + s, *end = text + s + limit; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl)
            break;
        size_t n = (size_t)(nl + 1 - (text + s));
        if (n >= min) {
            if (n > target) {
                if (!best)
                    best = n;   /* no line end in [min, target]: the first one after */
                break;
            }
            best = n;
        }
        p = nl + 1;
    }
    return best;
}

static uint64_t window_key(uint64_t seed, uint64_t doc_hash, size_t start)
{
    return cp_mix64(doc_hash ^ cp_mix64(seed ^ SALT_WINDOW) ^ cp_mix64((uint64_t)start + SALT_START));
}

/* Appends one candidate per line start of every document of `domain`. */
static void collect_windows(const dm_docs *docs, const dm_domain *dom, dm_domain domain, const dm_prompts_opts *o,
                            pick_list *out)
{
    const size_t min = (size_t)o->min_bytes, max = (size_t)o->max_bytes;
    for (size_t i = 0; i < docs->n; i++) {
        if (dom[i] != domain)
            continue;
        const dm_doc *d = &docs->doc[i];
        uint64_t dh = dm_corpus_hash(d->id, strlen(d->id));
        for (size_t s = 0; s < d->len;) {
            uint64_t key = window_key(o->seed, dh, s);
            size_t target = min + (size_t)(cp_mix64(key ^ SALT_LENGTH) % (uint64_t)(max - min + 1));
            size_t n = window_len(d->text, d->len, s, target, min, max);
            if (n && !empty_line(d->text + s) && !whitespace_only(d->text + s, n) && cp_text_ok(d->text + s, n))
                picks_push(out, (pick){ key, i, s, n, NULL, domain });
            const char *nl = memchr(d->text + s, '\n', d->len - s);
            s = nl ? (size_t)(nl + 1 - d->text) : d->len;
        }
    }
}

static bool overlaps(const uint8_t *used, size_t start, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (used[start + i])
            return true;
    return false;
}

/* The two passes over the candidates (sorted by key): up to n chosen windows
 * appended to out. Returns how many were chosen (< n: the source is short). */
static size_t choose_windows(const dm_docs *docs, pick_list *cand, size_t n, pick_list *out, int64_t *overlapping)
{
    qsort(cand->p, cand->n, sizeof *cand->p, pick_cmp);
    uint8_t **used = dm_calloc(docs->n ? docs->n : 1, sizeof *used);   /* per document, bytes taken */
    uint8_t *taken = dm_calloc(cand->n ? cand->n : 1, 1);
    cp_hashset seen = { 0 };
    size_t got = 0;
    for (int pass = 0; pass < 2 && got < n; pass++)
        for (size_t i = 0; i < cand->n && got < n; i++) {
            pick *c = &cand->p[i];
            const char *text = docs->doc[c->doc].text + c->start;
            if (taken[i])
                continue;
            if (!used[c->doc])
                used[c->doc] = dm_calloc(docs->doc[c->doc].len, 1);
            if (pass == 0 && overlaps(used[c->doc], c->start, c->len))
                continue;
            if (!cp_hashset_add(&seen, dm_corpus_hash(text, c->len)))
                continue;   /* the same text elsewhere (64-bit hash): one copy is enough */
            taken[i] = 1;
            memset(used[c->doc] + c->start, 1, c->len);
            picks_push(out, *c);
            got++;
            *overlapping += pass == 1;
        }
    for (size_t i = 0; i < docs->n; i++)
        free(used[i]);
    free(used);
    free(taken);
    cp_hashset_free(&seen);
    return got;
}

/* ---- reasoning prompts ---- */

/* Appends up to n reasoning prompts (seeded choice); returns how many.
 * Every reasoning document has a think block (check_docs). */
static size_t choose_reasoning(const dm_docs *docs, const dm_domain *dom, size_t n, uint64_t seed, pick_list *out)
{
    pick_list cand = { 0 };
    for (size_t i = 0; i < docs->n; i++) {
        if (dom[i] != DM_DOMAIN_REASONING)
            continue;
        const dm_doc *d = &docs->doc[i];
        const char *t = memmem(d->text, d->len, THINK_OPEN, sizeof THINK_OPEN - 1);
        DM_ASSERT(t);   /* check_docs */
        size_t len = (size_t)(t - d->text) + sizeof THINK_OPEN - 1;
        uint64_t key = cp_mix64(dm_corpus_hash(d->id, strlen(d->id)) ^ cp_mix64(seed ^ SALT_REASON));
        picks_push(&cand, (pick){ key, i, 0, len, NULL, DM_DOMAIN_REASONING });
    }
    qsort(cand.p, cand.n, sizeof *cand.p, pick_cmp);
    cp_hashset seen = { 0 };
    size_t got = 0;
    for (size_t i = 0; i < cand.n && got < n; i++)
        if (cp_hashset_add(&seen, dm_corpus_hash(docs->doc[cand.p[i].doc].text, cand.p[i].len))) {
            picks_push(out, cand.p[i]);
            got++;
        }
    cp_hashset_free(&seen);
    free(cand.p);
    return got;
}

/* ---- output ---- */

/* Names every chosen prompt and gives it its output key. */
static void name_picks(const dm_docs *docs, uint64_t seed, pick_list *chosen)
{
    for (size_t i = 0; i < chosen->n; i++) {
        pick *c = &chosen->p[i];
        const char *docid = docs->doc[c->doc].id, *src = dm_domain_name(c->domain);
        size_t sn = strlen(src);
        bool prefixed = strncmp(docid, src, sn) == 0 && docid[sn] == '/';
        c->id = dm_asprintf("%s%s%s@%zu+%zu", prefixed ? "" : src, prefixed ? "" : "/", docid, c->start, c->len);
        c->key = cp_mix64(dm_corpus_hash(c->id, strlen(c->id)) ^ cp_mix64(seed ^ SALT_ORDER));
    }
    qsort(chosen->p, chosen->n, sizeof *chosen->p, out_cmp);
}

static int write_prompts(const char *path, const dm_docs *docs, const pick_list *chosen, dm_err *err)
{
    cp_str body = { 0 };
    for (size_t i = 0; i < chosen->n; i++) {
        const pick *c = &chosen->p[i];
        const char *src = dm_domain_name(c->domain);
        CP_STR_LIT(&body, "{\"id\":");
        cp_json_string(&body, c->id, strlen(c->id));
        CP_STR_LIT(&body, ",\"source\":");
        cp_json_string(&body, src, strlen(src));
        CP_STR_LIT(&body, ",\"prompt\":");
        cp_json_string(&body, docs->doc[c->doc].text + c->start, c->len);
        CP_STR_LIT(&body, "}\n");
    }
    int rc = dm_write_file_atomic(path, body.p, body.n, err);
    free(body.p);
    return rc;
}

/* The output must not be a file of the corpus (test.jsonl is read, the others
 * belong to it), and must not exist unless force. */
static int check_out(const dm_prompts_opts *o, dm_err *err)
{
    struct stat so, sc;
    if (stat(o->out_path, &so) != 0)
        return 0;
    if (!o->force)
        return dm_errorf(err, "%s: already exists (use --force to replace it)", o->out_path);
    for (int s = 0; s < DM_SPLIT_COUNT; s++) {
        char *p = dm_corpus_split_path(o->corpus_dir, (dm_split)s);
        bool same = stat(p, &sc) == 0 && sc.st_dev == so.st_dev && sc.st_ino == so.st_ino;
        free(p);
        if (same)
            return dm_errorf(err, "%s: is a file of the corpus %s; refusing to replace it", o->out_path,
                             o->corpus_dir);
    }
    return 0;
}

/* ---- the whole job ---- */

/* Chooses every source's prompts into chosen; fills st's counts. */
static int choose_all(const dm_prompts_opts *o, const char *path, const dm_docs *docs, const dm_domain *dom,
                      pick_list *chosen, dm_prompts_stats *st, dm_err *err)
{
    const size_t n = (size_t)o->per_source;
    for (int k = 0; k < DM_DOMAIN_COUNT; k++) {
        const dm_domain d = (dm_domain)k;
        const size_t first = chosen->n;
        size_t got = 0;
        if (d == DM_DOMAIN_REASONING) {
            if ((got = choose_reasoning(docs, dom, n, o->seed, chosen)) < n)
                return dm_errorf(err, "%s: reasoning: only %zu distinct reasoning documents in the test split "
                                      "(need %zu; lower --per-source)", path, got, n);
        } else {
            pick_list cand = { 0 };
            collect_windows(docs, dom, d, o, &cand);
            got = choose_windows(docs, &cand, n, chosen, &st->overlapping[d]);
            free(cand.p);
            if (got < n)
                return dm_errorf(err, "%s: %s: only %zu distinct windows of %d..%d bytes at line boundaries in "
                                      "the test split (need %zu; lower --per-source or widen the byte range)",
                                 path, dm_domain_name(d), got, o->min_bytes, o->max_bytes, n);
        }
        uint8_t *hit = dm_calloc(docs->n ? docs->n : 1, 1);
        for (size_t i = first; i < chosen->n; i++) {
            st->bytes[d] += (int64_t)chosen->p[i].len;
            st->docs_used[d] += !hit[chosen->p[i].doc];
            hit[chosen->p[i].doc] = 1;
        }
        free(hit);
        st->prompts[d] = (int64_t)got;
    }
    return 0;
}

int dm_corpus_prompts(const dm_prompts_opts *o, dm_prompts_stats *st_out, dm_err *err)
{
    if (!o->corpus_dir || !o->out_path || o->per_source < 1 || o->min_bytes < 1 || o->max_bytes < o->min_bytes)
        return dm_errorf(err, "corpus prompts: need a corpus, an output path, per_source >= 1 and "
                              "1 <= min_bytes <= max_bytes");
    if (check_out(o, err))
        return -1;
    char *path = dm_corpus_split_path(o->corpus_dir, DM_SPLIT_TEST);
    dm_docs docs;
    if (!dm_path_exists(path)) {
        dm_errorf(err, "%s: no test split here (is %s a corpus built by `demolish corpus build`?)", path,
                  o->corpus_dir);
        free(path);
        return -1;
    }
    if (dm_docs_load(&docs, path, err)) {
        free(path);
        return -1;
    }
    dm_domain *dom = dm_calloc(docs.n ? docs.n : 1, sizeof *dom);
    dm_prompts_stats st = { 0 };
    pick_list chosen = { 0 };
    int rc = check_docs(path, &docs, dom, err);
    for (size_t i = 0; rc == 0 && i < docs.n; i++)
        st.docs[dom[i]]++;
    if (rc == 0)
        rc = choose_all(o, path, &docs, dom, &chosen, &st, err);
    if (rc == 0) {
        name_picks(&docs, o->seed, &chosen);
        rc = write_prompts(o->out_path, &docs, &chosen, err);
    }
    picks_free(&chosen);
    free(dom);
    dm_docs_free(&docs);
    free(path);
    if (rc == 0 && st_out)
        *st_out = st;
    return rc;
}
