/* hesitation — words → first-token ids for the hesitation penalty (see
 * hesitation.h). Variants are encoded one by one: a BPE tokenizer gives
 * "wait" and " wait" different first tokens, and capitalised forms others
 * again, so all four are penalised. */
#include "model/hesitation.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

static int cmp_i32(const void *a, const void *b)
{
    const int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return x < y ? -1 : x > y;
}

/* Appends the first token of the four variants of word[len] to ids. */
static void add_variants(const dm_tokenizer *tok, const char *word, size_t len, int32_t *ids, int *n)
{
    char *buf = dm_malloc(len + 2);
    for (int v = 0; v < 4; v++) {
        const bool space = v & 1, cap = v & 2;
        size_t k = 0;
        if (space)
            buf[k++] = ' ';
        memcpy(buf + k, word, len);
        if (cap && isalpha((unsigned char)buf[k]))
            buf[k] = (char)toupper((unsigned char)buf[k]);
        k += len;
        int nt = 0;
        int32_t *t = dm_tokenize(tok, buf, k, false, &nt);
        if (nt > 0)
            ids[(*n)++] = t[0];
        free(t);
    }
    free(buf);
}

int dm_hesitation_resolve(const dm_tokenizer *tok, const char *words, int32_t **ids, int *n_ids, dm_err *err)
{
    if (!words || !words[0])
        words = DM_HESITATION_WORDS_DEFAULT;
    int n_words = 1;
    for (const char *s = words; *s; s++)
        n_words += *s == ',';
    int32_t *out = dm_malloc((size_t)n_words * 4 * sizeof *out);
    int n = 0;
    for (const char *s = words;;) {
        const char *comma = strchr(s, ',');
        size_t len = comma ? (size_t)(comma - s) : strlen(s);
        if (len == 0) {
            free(out);
            return dm_errorf(err, "hesitation words '%.200s': empty word", words);
        }
        add_variants(tok, s, len, out, &n);
        if (!comma)
            break;
        s = comma + 1;
    }
    qsort(out, (size_t)n, sizeof *out, cmp_i32);
    int m = 0;
    for (int i = 0; i < n; i++)
        if (m == 0 || out[m - 1] != out[i])
            out[m++] = out[i];
    *ids = out;
    *n_ids = m;
    return 0;
}

bool dm_hesitation_is_fragment(const dm_tokenizer *tok, int32_t id)
{
    char buf[64];
    int n = dm_token_to_bytes(tok, id, buf, sizeof buf), letters = 0;
    for (int i = 0; i < n && i < (int)sizeof buf; i++)
        letters += isalpha((unsigned char)buf[i]) || (unsigned char)buf[i] >= 0x80;
    return letters < 2;
}

void dm_hesitation_log(const dm_tokenizer *tok, const int32_t *ids, int n, const char *who)
{
    for (int i = 0; i < n; i++) {
        const char *str = dm_token_str(tok, ids[i]);
        if (dm_hesitation_is_fragment(tok, ids[i]))
            dm_log(1, "%s: warning: hesitation token %d '%s' is a word fragment; the penalty hits every word "
                      "starting with it\n", who, (int)ids[i], str ? str : "?");
        else
            dm_log(2, "%s: hesitation token %d '%s'\n", who, (int)ids[i], str ? str : "?");
    }
}
