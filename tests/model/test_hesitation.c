/* test_hesitation — dm_hesitation_resolve against the tokenizer itself as
 * the oracle: for every word and each of its four variants (as written,
 * leading space, capitalised, both), the first token of dm_tokenize(variant)
 * must be in the list, and the list must hold nothing else, sorted and
 * without repeats. Also: the default list, empty words refused, and which
 * tokens count as word fragments. */
#include "model/hesitation.h"

#include "check.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define TOKENIZER "tests/data/tokenizer_gpt2like.json"

/* The expected set: first tokens of the variants of each word in words. */
static int expected(const dm_tokenizer *tok, const char *const *words, int n, int32_t *out)
{
    int m = 0;
    for (int w = 0; w < n; w++) {
        for (int v = 0; v < 4; v++) {
            char buf[64];
            snprintf(buf, sizeof buf, "%s%s", (v & 1) ? " " : "", words[w]);
            if (v & 2) {
                char *c = buf + ((v & 1) ? 1 : 0);
                *c = (char)toupper((unsigned char)*c);
            }
            int nt;
            int32_t *t = dm_tokenize(tok, buf, strlen(buf), false, &nt);
            bool seen = false;
            for (int i = 0; i < m; i++)
                seen |= out[i] == t[0];
            if (!seen)
                out[m++] = t[0];
            free(t);
        }
    }
    return m;
}

static void check_words(const dm_tokenizer *tok, const char *list, const char *const *words, int n)
{
    int32_t *ids = NULL, want[64];
    int n_ids = 0;
    dm_err err;
    CHECK(dm_hesitation_resolve(tok, list, &ids, &n_ids, &err) == 0, "resolve '%s': %s", list ? list : "(null)",
          err.msg);
    int m = expected(tok, words, n, want);
    CHECK(n_ids == m, "'%s': %d ids, want %d", list ? list : "(null)", n_ids, m);
    for (int i = 0; i < m; i++) {
        bool found = false;
        for (int j = 0; j < n_ids; j++)
            found |= ids[j] == want[i];
        CHECK(found, "'%s': id %d (a variant's first token) missing", list ? list : "(null)", (int)want[i]);
    }
    for (int j = 1; j < n_ids; j++)
        CHECK(ids[j - 1] < ids[j], "ids not sorted/distinct at %d: %d, %d", j, (int)ids[j - 1], (int)ids[j]);
    free(ids);
}

int main(void)
{
    dm_tokenizer *tok = NULL;
    dm_err err;
    if (dm_tokenizer_load(&tok, TOKENIZER, &err)) {
        fprintf(stderr, "load: %s\n", err.msg);
        return 1;
    }
    const char *const mine[] = { "wait", "hmm", "but wait" };
    check_words(tok, "wait,hmm,but wait", mine, 3);
    const char *const def[] = { "wait", "hmm", "alternatively" };
    check_words(tok, NULL, def, 3);
    check_words(tok, "", def, 3);
    int32_t *ids = NULL;
    int n = 0;
    CHECK(dm_hesitation_resolve(tok, "wait,,hmm", &ids, &n, &err) != 0 && strstr(err.msg, "empty word"),
          "empty word accepted: '%s'", err.msg);
    CHECK(dm_hesitation_resolve(tok, "wait,", &ids, &n, &err) != 0, "trailing comma accepted");
    /* fragments: fewer than 2 letters ("Ġ" is a space, "ĠĠĠĠ" four, "123" digits) */
    static const struct { const char *tok; bool frag; } frag[] = {
        { "Ġ", true }, { "h", true }, { "ĠĠĠĠ", true }, { "123", true }, { "Ġan", false }, { "return", false },
    };
    for (size_t i = 0; i < sizeof frag / sizeof frag[0]; i++) {
        int32_t id = dm_token_id(tok, frag[i].tok);
        CHECK(id >= 0, "token '%s' not in the test vocabulary", frag[i].tok);
        if (id >= 0)
            CHECK(dm_hesitation_is_fragment(tok, id) == frag[i].frag, "'%s': fragment %d, want %d", frag[i].tok,
                  !frag[i].frag, frag[i].frag);
    }
    dm_tokenizer_free(tok);
    return check_finish("test_hesitation");
}
