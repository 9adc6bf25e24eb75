/* tok_load — reads a Hugging Face tokenizer.json into a dm_tokenizer.
 *
 * Supported (anything else is an error naming the file and the feature):
 *   model         BPE: vocab, merges as "a b" strings or ["a","b"] pairs,
 *                 ignore_merges; dropout must be null/0, byte_fallback false,
 *                 continuing_subword_prefix / end_of_word_suffix null or "";
 *                 unk_token and fuse_unk are read past (every byte has a token).
 *   added_tokens  id, content, special, single_word, lstrip, rstrip, normalized.
 *   normalizer    null, NFC, or a Sequence of NFC.
 *   pre_tokenizer ByteLevel, or a Sequence of Split steps ending in ByteLevel.
 *   decoder       null or ByteLevel.
 * post_processor, truncation and padding are ignored: dm_tokenize never adds
 * BOS/EOS on its own (callers put [gMASK]<sop> etc. in the text). */
#include "tokenizer/tok_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

const char tok_gpt2_pattern[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
const char tok_glm_pattern[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
    "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

#define TOK_MAX_ID (1 << 26)   /* ids above this are taken as a corrupt file */

pcre2_code *tok_regex_compile(const char *pat, bool literal, char *msg, size_t cap)
{
    int ec;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP);   /* LITERAL refuses UCP */
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opt, &ec, &off, NULL);
    if (!re) {
        char buf[256];
        pcre2_get_error_message(ec, (PCRE2_UCHAR *)buf, sizeof buf);
        snprintf(msg, cap, "%s at offset %zu", buf, (size_t)off);
        return NULL;
    }
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);   /* failure just means the interpreter runs */
    return re;
}

/* ---- small JSON helpers ---------------------------------------------------- */

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static bool absent(const cJSON *j)
{
    return !j || cJSON_IsNull(j);
}

/* Optional boolean field: *out = dflt when absent or null. */
static int get_bool(const dm_tokenizer *t, const cJSON *o, const char *what, const char *k, bool dflt,
                    bool *out, dm_err *err)
{
    const cJSON *j = get(o, k);
    if (absent(j)) {
        *out = dflt;
        return 0;
    }
    if (!cJSON_IsBool(j))
        return dm_errorf(err, "%s: %s.%s must be true or false", t->name, what, k);
    *out = cJSON_IsTrue(j);
    return 0;
}

static int get_id(const dm_tokenizer *t, const cJSON *j, const char *what, int32_t *out, dm_err *err)
{
    double v = cJSON_IsNumber(j) ? j->valuedouble : -1;
    if (v < 0 || v >= TOK_MAX_ID || v != floor(v))
        return dm_errorf(err, "%s: %s: id must be an integer in [0, %d)", t->name, what, TOK_MAX_ID);
    *out = (int32_t)v;
    return 0;
}

static const char *type_of(const cJSON *j)
{
    const cJSON *ty = get(j, "type");
    return cJSON_IsString(ty) ? ty->valuestring : "(none)";
}

/* ---- model ------------------------------------------------------------------- */

/* model.vocab -> t->vocab, with every key copied into one arena (*arena,
 * owned by the caller from then on, even on failure); sets n_vocab. */
static int load_vocab(dm_tokenizer *t, const cJSON *vocab, char **arena, dm_err *err)
{
    if (!cJSON_IsObject(vocab))
        return dm_errorf(err, "%s: model.vocab must be an object of token -> id", t->name);
    size_t total = 0, n = 0;
    for (const cJSON *e = vocab->child; e; e = e->next, n++)
        total += strlen(e->string) + 1;
    *arena = dm_malloc(total ? total : 1);
    tok_strmap_init(&t->vocab, (uint32_t)n);
    char *p = *arena;
    for (const cJSON *e = vocab->child; e; e = e->next) {
        int32_t id;
        char what[96];
        snprintf(what, sizeof what, "model.vocab[\"%.60s\"]", e->string);
        if (get_id(t, e, what, &id, err))
            return -1;
        size_t len = strlen(e->string);
        memcpy(p, e->string, len + 1);
        bool added;
        tok_strmap_slot *s = tok_strmap_put(&t->vocab, p, (uint32_t)len, id, &added);
        s->val = id;
        p += len + 1;
        if (id >= t->n_vocab)
            t->n_vocab = id + 1;
    }
    return 0;
}

/* One merge as its two token strings, from either serialization. */
static int merge_parts(const dm_tokenizer *t, const cJSON *m, int rank, const char **a, size_t *la,
                       const char **b, size_t *lb, dm_err *err)
{
    if (cJSON_IsString(m)) {
        const char *s = m->valuestring, *sp = strchr(s, ' ');
        if (!sp || strchr(sp + 1, ' '))
            return dm_errorf(err, "%s: model.merges[%d] \"%.60s\" is not two tokens separated by one space",
                             t->name, rank, s);
        *a = s, *la = (size_t)(sp - s), *b = sp + 1, *lb = strlen(sp + 1);
        return 0;
    }
    if (cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) && cJSON_IsString(m->child->next)) {
        *a = m->child->valuestring, *la = strlen(*a);
        *b = m->child->next->valuestring, *lb = strlen(*b);
        return 0;
    }
    return dm_errorf(err, "%s: model.merges[%d] must be \"a b\" or [\"a\", \"b\"]", t->name, rank);
}

/* model.merges -> t->merges: merge i gets rank i and the id of the
 * concatenation; every token involved must be in the vocab. */
static int load_merges(dm_tokenizer *t, const cJSON *merges, dm_err *err)
{
    if (absent(merges)) {
        tok_pairmap_init(&t->merges, 16);
        return 0;
    }
    if (!cJSON_IsArray(merges))
        return dm_errorf(err, "%s: model.merges must be an array", t->name);
    tok_pairmap_init(&t->merges, (uint32_t)cJSON_GetArraySize(merges));
    tok_buf cat = {0};
    int rank = 0, rc = 0;
    for (const cJSON *m = merges->child; m && !rc; m = m->next, rank++) {
        const char *a = NULL, *b = NULL;
        size_t la = 0, lb = 0;
        if ((rc = merge_parts(t, m, rank, &a, &la, &b, &lb, err)))
            break;
        int32_t ia = tok_strmap_get(&t->vocab, a, (uint32_t)la), ib = tok_strmap_get(&t->vocab, b, (uint32_t)lb);
        cat.n = 0;
        tok_buf_add(&cat, a, la);
        tok_buf_add(&cat, b, lb);
        int32_t ic = tok_strmap_get(&t->vocab, (const char *)cat.p, (uint32_t)cat.n);
        if (ia < 0 || ib < 0 || ic < 0)
            rc = dm_errorf(err, "%s: model.merges[%d] (\"%.*s\", \"%.*s\"): token \"%.*s\" is not in the vocab",
                           t->name, rank, (int)la, a, (int)lb, b, ia < 0 ? (int)la : ib < 0 ? (int)lb : (int)cat.n,
                           ia < 0 ? a : ib < 0 ? b : (const char *)cat.p);
        else
            tok_pairmap_set(&t->merges, TOK_PAIR(ia, ib), rank, ic);
    }
    free(cat.p);
    return rc;
}

/* Options of the BPE model we do not implement must be off. */
static int check_model_options(dm_tokenizer *t, const cJSON *model, dm_err *err)
{
    const cJSON *d = get(model, "dropout");
    if (!absent(d) && !(cJSON_IsNumber(d) && d->valuedouble == 0))
        return dm_errorf(err, "%s: model.dropout is not supported (BPE dropout is for training only)", t->name);
    bool fb;
    if (get_bool(t, model, "model", "byte_fallback", false, &fb, err))
        return -1;
    if (fb)
        return dm_errorf(err, "%s: model.byte_fallback is not supported (byte-level BPE needs no fallback)", t->name);
    static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
    for (int i = 0; i < 2; i++) {
        const cJSON *j = get(model, affixes[i]);
        if (!absent(j) && !(cJSON_IsString(j) && !j->valuestring[0]))
            return dm_errorf(err, "%s: model.%s is not supported", t->name, affixes[i]);
    }
    return get_bool(t, model, "model", "ignore_merges", false, &t->ignore_merges, err);
}

static int load_model(dm_tokenizer *t, const cJSON *model, char **arena, dm_err *err)
{
    if (!cJSON_IsObject(model))
        return dm_errorf(err, "%s: no \"model\" object", t->name);
    const cJSON *ty = get(model, "type");
    if (!absent(ty) && !(cJSON_IsString(ty) && strcmp(ty->valuestring, "BPE") == 0))
        return dm_errorf(err, "%s: model type \"%s\" is not supported (only BPE)", t->name, type_of(model));
    if (check_model_options(t, model, err) || load_vocab(t, get(model, "vocab"), arena, err))
        return -1;
    char bl[4];
    for (int b = 0; b < 256; b++) {
        uint8_t byte = (uint8_t)b;
        size_t n = tok_bytes_to_bl(&byte, 1, bl);
        if ((t->byte_id[b] = tok_strmap_get(&t->vocab, bl, (uint32_t)n)) < 0)
            return dm_errorf(err, "%s: the vocab has no token for byte 0x%02x (\"%.*s\"): not a byte-level BPE",
                             t->name, b, (int)n, bl);
    }
    return load_merges(t, get(model, "merges"), err);
}

/* ---- added tokens ------------------------------------------------------------------ */

/* added_tokens[i] -> *a (content malloc'd last, so a failure leaves nothing
 * to free). Flags default as in the library: normalized = !special. */
static int load_added_one(dm_tokenizer *t, const cJSON *j, int i, tok_added *a, dm_err *err)
{
    char what[48];
    snprintf(what, sizeof what, "added_tokens[%d]", i);
    const cJSON *content = get(j, "content");
    if (!cJSON_IsObject(j) || !cJSON_IsString(content))
        return dm_errorf(err, "%s: %s needs a string \"content\"", t->name, what);
    if (get_id(t, get(j, "id"), what, &a->id, err) ||
        get_bool(t, j, what, "special", false, &a->special, err) ||
        get_bool(t, j, what, "single_word", false, &a->single_word, err) ||
        get_bool(t, j, what, "lstrip", false, &a->lstrip, err) ||
        get_bool(t, j, what, "rstrip", false, &a->rstrip, err) ||
        get_bool(t, j, what, "normalized", !a->special, &a->normalized, err))
        return -1;
    a->content = dm_strdup(content->valuestring);
    a->len = (uint32_t)strlen(a->content);
    return 0;
}

/* added_tokens -> t->added and the two tries. Needs t->nfc already set:
 * normalized tokens are searched for in their NFC form. */
static int load_added(dm_tokenizer *t, const cJSON *arr, dm_err *err)
{
    if (absent(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return dm_errorf(err, "%s: added_tokens must be an array", t->name);
    t->added = dm_calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *t->added);
    int i = 0;
    for (const cJSON *j = arr->child; j; j = j->next, i++) {
        tok_added *a = &t->added[t->n_added];
        if (load_added_one(t, j, i, a, err))
            return -1;
        if (!a->len) {   /* the library ignores empty added tokens */
            free(a->content);
            continue;
        }
        tok_buf nf = {0};
        if (a->normalized && t->nfc) {
            tok_nfc((const uint8_t *)a->content, a->len, &nf);
            a->match = dm_strndup((const char *)nf.p, nf.n);
            a->match_len = (uint32_t)nf.n;
            free(nf.p);
        } else {
            a->match = dm_strdup(a->content);
            a->match_len = a->len;
        }
        tok_trie_add(a->normalized ? &t->trie_norm : &t->trie_raw, a->match, a->match_len, t->n_added);
        if (a->id >= t->n_vocab)
            t->n_vocab = a->id + 1;
        t->n_added++;
    }
    return 0;
}

/* ---- normalizer, pre-tokenizer, decoder ---------------------------------------------- */

/* Sets t->nfc; anything but NFC (nested in Sequences or not) is an error. */
static int load_normalizer(dm_tokenizer *t, const cJSON *j, dm_err *err)
{
    if (absent(j))
        return 0;
    const char *ty = type_of(j);
    if (strcmp(ty, "NFC") == 0) {
        t->nfc = true;
        return 0;
    }
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = get(j, "normalizers");
        if (!cJSON_IsArray(list))
            return dm_errorf(err, "%s: normalizer Sequence needs a \"normalizers\" array", t->name);
        for (const cJSON *e = list->child; e; e = e->next)
            if (load_normalizer(t, e, err))
                return -1;
        return 0;
    }
    return dm_errorf(err, "%s: normalizer \"%s\" is not supported (only NFC, alone or in a Sequence)", t->name, ty);
}

static const struct {
    const char *name;
    tok_behavior b;
} behaviors[] = {
    {"Removed", TOK_REMOVED},
    {"Isolated", TOK_ISOLATED},
    {"MergedWithPrevious", TOK_MERGED_PREV},
    {"MergedWithNext", TOK_MERGED_NEXT},
    {"Contiguous", TOK_CONTIGUOUS},
};

/* A Split step: pattern (Regex, or String taken literally), behavior, invert. */
static int load_split(dm_tokenizer *t, const cJSON *j, tok_pretok *p, dm_err *err)
{
    const cJSON *pat = get(j, "pattern"), *re = get(pat, "Regex"), *str = get(pat, "String");
    const cJSON *beh = get(j, "behavior");
    if (!cJSON_IsString(re) && !cJSON_IsString(str))
        return dm_errorf(err, "%s: Split pre-tokenizer needs pattern {\"Regex\": ...} or {\"String\": ...}", t->name);
    p->behavior = (tok_behavior)-1;
    for (size_t i = 0; i < sizeof behaviors / sizeof *behaviors && cJSON_IsString(beh); i++)
        if (strcmp(beh->valuestring, behaviors[i].name) == 0)
            p->behavior = behaviors[i].b;
    if (p->behavior == (tok_behavior)-1)
        return dm_errorf(err, "%s: Split behavior \"%s\" is not known", t->name,
                         cJSON_IsString(beh) ? beh->valuestring : "(missing)");
    if (get_bool(t, j, "Split", "invert", false, &p->invert, err))
        return -1;
    char msg[300];
    const char *src = cJSON_IsString(re) ? re->valuestring : str->valuestring;
    if (!(p->re = tok_regex_compile(src, !cJSON_IsString(re), msg, sizeof msg)))
        return dm_errorf(err, "%s: Split pattern \"%.80s\": %s", t->name, src, msg);
    return 0;
}

/* Appends the steps of one pre-tokenizer (flattening Sequences) to t->pretok. */
static int load_pretok(dm_tokenizer *t, const cJSON *j, dm_err *err)
{
    const char *ty = type_of(j);
    if (strcmp(ty, "Sequence") == 0) {
        const cJSON *list = get(j, "pretokenizers");
        if (!cJSON_IsArray(list))
            return dm_errorf(err, "%s: pre_tokenizer Sequence needs a \"pretokenizers\" array", t->name);
        for (const cJSON *e = list->child; e; e = e->next)
            if (load_pretok(t, e, err))
                return -1;
        return 0;
    }
    if (t->n_pretok == TOK_MAX_PRETOK)
        return dm_errorf(err, "%s: more than %d pre-tokenizer steps", t->name, TOK_MAX_PRETOK);
    tok_pretok *p = &t->pretok[t->n_pretok++];
    if (strcmp(ty, "Split") == 0)
        return load_split(t, j, p, err);
    if (strcmp(ty, "ByteLevel") != 0)
        return dm_errorf(err, "%s: pre_tokenizer \"%s\" is not supported (only Split and ByteLevel)", t->name, ty);
    bool use_regex;
    p->byte_level = true;
    p->behavior = TOK_ISOLATED;
    if (get_bool(t, j, "ByteLevel", "add_prefix_space", true, &p->add_prefix_space, err) ||
        get_bool(t, j, "ByteLevel", "use_regex", true, &use_regex, err))
        return -1;
    char msg[300];
    if (use_regex && !(p->re = tok_regex_compile(tok_gpt2_pattern, false, msg, sizeof msg)))
        return dm_errorf(err, "%s: GPT-2 pattern: %s", t->name, msg);
    return 0;
}

static int load_pretok_top(dm_tokenizer *t, const cJSON *j, dm_err *err)
{
    if (absent(j))
        return dm_errorf(err, "%s: no pre_tokenizer: only byte-level BPE (ByteLevel pre-tokenizer) is supported",
                         t->name);
    if (load_pretok(t, j, err))
        return -1;
    for (int i = 0; i < t->n_pretok; i++)
        if (t->pretok[i].byte_level != (i == t->n_pretok - 1))
            return dm_errorf(err, "%s: pre_tokenizer must end with exactly one ByteLevel step", t->name);
    return 0;
}

static int load_decoder(dm_tokenizer *t, const cJSON *j, dm_err *err)
{
    if (absent(j) || strcmp(type_of(j), "ByteLevel") == 0)
        return 0;
    return dm_errorf(err, "%s: decoder \"%s\" is not supported (only ByteLevel)", t->name, type_of(j));
}

/* ---- per-id tables ------------------------------------------------------------------ */

/* Raw bytes of a vocab token: each character through the inverse ByteLevel
 * table; a token with any character outside the table stands for its own
 * UTF-8 (what the ByteLevel decoder does). */
static size_t token_raw_bytes(const char *s, uint8_t *out)
{
    size_t n = strlen(s), o = 0;
    int32_t cp;
    for (size_t i = 0; i < n;) {
        int k = tok_utf8_seq((const uint8_t *)s + i, n - i, &cp);
        int b = k > 0 ? tok_cp_byte(cp) : -1;
        if (b < 0) {
            memcpy(out, s, n);
            return n;
        }
        out[o++] = (uint8_t)b;
        i += (size_t)k;
    }
    return o;
}

/* id_str, id_flags and the raw bytes of every id, from the vocab and the
 * added tokens (an added token overrides a vocab entry with the same id).
 * Two vocab entries sharing an id are an error: that id could not be decoded. */
static int build_id_tables(dm_tokenizer *t, dm_err *err)
{
    int32_t V = t->n_vocab;
    t->id_str = dm_calloc((size_t)V, sizeof *t->id_str);
    t->id_flags = dm_calloc((size_t)V, 1);
    for (uint32_t i = 0; i < t->vocab.cap; i++) {
        if (!t->vocab.slots[i].key)
            continue;
        int32_t id = (int32_t)t->vocab.slots[i].val;
        if (t->id_str[id])
            return dm_errorf(err, "%s: model.vocab gives id %d to both \"%.40s\" and \"%.40s\"", t->name, id,
                             t->id_str[id], (const char *)t->vocab.slots[i].key);
        t->id_str[id] = (char *)t->vocab.slots[i].key;
    }
    for (int i = 0; i < t->n_added; i++) {
        t->id_str[t->added[i].id] = t->added[i].content;
        t->id_flags[t->added[i].id] = TOK_F_ADDED | (t->added[i].special ? TOK_F_SPECIAL : 0);
    }
    size_t total = 0;
    for (int32_t id = 0; id < V; id++)
        total += t->id_str[id] ? strlen(t->id_str[id]) : 0;
    t->bytes = dm_malloc(total + 1);
    t->bytes_off = dm_calloc((size_t)V, sizeof *t->bytes_off);
    t->bytes_len = dm_calloc((size_t)V, sizeof *t->bytes_len);
    size_t off = 0;
    for (int32_t id = 0; id < V; id++) {
        const char *s = t->id_str[id];
        if (!s)
            continue;
        size_t n = (t->id_flags[id] & TOK_F_ADDED) ? strlen(s) : token_raw_bytes(s, t->bytes + off);
        if (t->id_flags[id] & TOK_F_ADDED)
            memcpy(t->bytes + off, s, n);
        t->bytes_off[id] = (uint32_t)off;
        t->bytes_len[id] = (uint32_t)n;
        if (n > t->max_bytes)
            t->max_bytes = (uint32_t)n;
        off += n;
    }
    return 0;
}

/* ---- entry points ------------------------------------------------------------------- */

/* Everything in the file, in dependency order (added tokens need the
 * normalizer; the per-id tables need vocab and added tokens). */
static int load_root(dm_tokenizer *t, const cJSON *root, char **arena, dm_err *err)
{
    if (!cJSON_IsObject(root))
        return dm_errorf(err, "%s: not a JSON object", t->name);
    if (load_normalizer(t, get(root, "normalizer"), err) || load_model(t, get(root, "model"), arena, err) ||
        load_added(t, get(root, "added_tokens"), err) || load_pretok_top(t, get(root, "pre_tokenizer"), err) ||
        load_decoder(t, get(root, "decoder"), err))
        return -1;
    return build_id_tables(t, err);
}

int dm_tokenizer_load_json(dm_tokenizer **out, const char *json, size_t len, const char *name, dm_err *err)
{
    *out = NULL;
    dm_tokenizer *t = dm_calloc(1, sizeof *t);
    t->name = dm_strdup(name ? name : "tokenizer.json");
    pthread_mutex_init(&t->cache.mu, NULL);
    cJSON *root = cJSON_ParseWithLength(json, len);
    char *arena = NULL;
    int rc = root ? load_root(t, root, &arena, err) : dm_errorf(err, "%s: not valid JSON", t->name);
    cJSON_Delete(root);
    /* vocab keys and id_str point into the arena: keep it, tied to the vocab map */
    t->vocab_arena = arena;
    if (rc) {
        dm_tokenizer_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

int dm_tokenizer_load(dm_tokenizer **out, const char *path, dm_err *err)
{
    *out = NULL;
    char *file = dm_is_dir(path) ? dm_path_join(path, "tokenizer.json") : dm_strdup(path);
    char *json = NULL;
    size_t len = 0;
    int rc = dm_read_file(file, &json, &len, err);
    if (rc == 0)
        rc = dm_tokenizer_load_json(out, json, len, file, err);
    free(json);
    free(file);
    return rc;
}

void dm_tokenizer_free(dm_tokenizer *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        free(t->added[i].match);
    }
    free(t->added);
    for (int i = 0; i < t->n_pretok; i++)
        pcre2_code_free(t->pretok[i].re);
    tok_trie_free(&t->trie_raw);
    tok_trie_free(&t->trie_norm);
    tok_strmap_free(&t->vocab);
    tok_pairmap_free(&t->merges);
    free(t->vocab_arena);
    free(t->id_str);
    free(t->id_flags);
    free(t->bytes);
    free(t->bytes_off);
    free(t->bytes_len);
    free(t->cache.slots);
    free(t->cache.keys.p);
    free(t->cache.ids.p);
    pthread_mutex_destroy(&t->cache.mu);
    free(t->name);
    free(t);
}
