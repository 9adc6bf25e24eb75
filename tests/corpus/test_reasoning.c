/* test_reasoning — the reasoning generator and checker against an
 * independent evaluation written here (a keyword-and-digits reading of each
 * question, not the library's template matcher, and plain int64 arithmetic):
 *  - for N_PROBLEMS problems of two streams: the document is question
 *    "\n<think>\n" trace "</think>\n" answer with one think block; the answer
 *    equals the independent evaluation; every trace line re-checks: each
 *    column's sum/difference/product, the written digit and the carry/borrow
 *    it passes on, the digits read back (and leading zeros dropped) spell
 *    the result, and "result:" equals the answer;
 *  - the checker accepts the answer (with surrounding whitespace) and
 *    rejects off-by-one, leading-zero, sign-flipped and empty answers, and
 *    questions it does not know (-1); dm_reasoning_answer_part;
 *  - every kind and template occurs; determinism; dm_reasoning_heldout's
 *    problems lie in the requested split, distinct. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "corpus/corpus.h"

#define N_PROBLEMS 6000
#define N_HELDOUT 300

/* The two operands (the digit runs of the question) and the operation from
 * its words. Returns 0, or -1 when the question is not understood. */
static int independent_answer(const char *q, long long *out)
{
    long long v[3];
    int n = 0;
    for (const char *p = q; *p;) {
        if (isdigit((unsigned char)*p)) {
            if (n == 3)
                return -1;
            v[n++] = strtoll(p, (char **)&p, 10);
        } else
            p++;
    }
    if (n != 2)
        return -1;
    if (strstr(q, " + ") || strstr(q, "gets"))
        *out = v[0] + v[1];
    else if (strstr(q, " - ") || strstr(q, "gives away"))
        *out = v[0] - v[1];
    else if (strstr(q, " * ") || strstr(q, "boxes"))
        *out = v[0] * v[1];
    else if (strstr(q, "larger"))
        *out = v[0] > v[1] ? v[0] : v[1];
    else if (strstr(q, "smaller"))
        *out = v[0] < v[1] ? v[0] : v[1];
    else
        return -1;
    return 0;
}

/* Re-checks one trace line; returns false with a message on an error. */
static bool check_line(const char *line, const char *answer, char *why, size_t cap)
{
    int k, x, y, c, s, w, cc;
    if (sscanf(line, "col %d: %d+%d+%d=%d, write %d, carry %d", &k, &x, &y, &c, &s, &w, &cc) == 7)
        return (s == x + y + c && w == s % 10 && cc == s / 10 && x < 10 && y < 10)
                   || (snprintf(why, cap, "bad addition column"), false);
    if (sscanf(line, "col %d: %d*%d+%d=%d, write %d, carry %d", &k, &x, &y, &c, &s, &w, &cc) == 7)
        return (s == x * y + c && w == s % 10 && cc == s / 10 && x < 10 && y < 10)
                   || (snprintf(why, cap, "bad multiplication column"), false);
    int x2, y2, b2, d;
    if (sscanf(line, "col %d: %d-%d-%d is below 0, so %d-%d-%d=%d, write %d, borrow %d", &k, &x, &y, &c, &x2, &y2,
               &b2, &d, &w, &cc) == 10)
        return (x - y - c < 0 && x2 == x + 10 && y2 == y && b2 == c && d == x2 - y2 - b2 && w == d && cc == 1)
                   || (snprintf(why, cap, "bad borrowing column"), false);
    if (sscanf(line, "col %d: %d-%d-%d=%d, write %d, borrow %d", &k, &x, &y, &c, &d, &w, &cc) == 7)
        return (d == x - y - c && d >= 0 && w == d && cc == 0) || (snprintf(why, cap, "bad subtraction column"), false);
    if (!strncmp(line, "result: ", 8))
        return !strcmp(line + 8, answer) || (snprintf(why, cap, "result line is not the answer"), false);
    return true;
}

/* Digits read back from "digits from col N to col 1:" (after "without
 * leading zeros:" when present) must spell |answer|. */
static bool check_readback(const char *trace, const char *answer)
{
    const char *last = NULL;
    for (const char *p = trace; (p = strstr(p, "digits from col")); p++)
        last = p;
    if (!last)
        return true;   /* comparisons read no digits back */
    const char *wl = strstr(last, "without leading zeros:");
    const char *p = strchr(wl ? wl : last, ':') + 1;
    char digits[64];
    int n = 0;
    for (; *p && *p != '\n' && n < 63; p++)
        if (isdigit((unsigned char)*p))
            digits[n++] = *p;
    digits[n] = 0;
    return !strcmp(digits, answer[0] == '-' ? answer + 1 : answer);
}

static int kinds_seen[DM_REASONING_KIND_COUNT];
static int words_seen, negatives_seen, borrows_seen, leading_zeros_seen;

static void check_problem(uint64_t seed, uint64_t i)
{
    dm_reasoning_doc d;
    dm_reasoning_make(seed, i, &d);
    size_t ql = strlen(d.question);
    CHECK(!strncmp(d.text, d.question, ql) && !strncmp(d.text + ql, "\n<think>\n", 9) && d.prompt_len == ql + 9,
          "%s: bad prompt", d.id);
    const char *close = strstr(d.text, "</think>\n");
    CHECK(close && !strcmp(close + 9, d.answer), "%s: text does not end in </think>\\n%s", d.id, d.answer);
    CHECK(strstr(d.text + d.prompt_len, "<think>") == NULL || strstr(d.text + d.prompt_len, "<think>") > close,
          "%s: a second <think>", d.id);
    long long want = 0;
    CHECK(independent_answer(d.question, &want) == 0, "%s: question not understood: %s", d.id, d.question);
    char ws[48];
    snprintf(ws, sizeof ws, "%lld", want);
    CHECK(!strcmp(ws, d.answer), "%s: '%s' answer %s, independent evaluation %s", d.id, d.question, d.answer, ws);
    char *trace = dm_strndup(d.text + d.prompt_len, close ? (size_t)(close - d.text) - d.prompt_len : 0);
    char why[128] = "";
    for (char *line = strtok(trace, "\n"); line; line = strtok(NULL, "\n"))
        CHECK(check_line(line, d.answer, why, sizeof why), "%s: %s: '%s'", d.id, why, line);
    free(trace);
    CHECK(check_readback(d.text + d.prompt_len, d.answer), "%s: digits read back do not spell %s", d.id, d.answer);
    /* the checker */
    char buf[96];
    CHECK(dm_reasoning_check(d.question, d.answer) == 1, "%s: checker rejects the right answer", d.id);
    snprintf(buf, sizeof buf, " \n%s \n", d.answer);
    CHECK(dm_reasoning_check(d.question, buf) == 1, "%s: checker rejects the answer with whitespace", d.id);
    snprintf(buf, sizeof buf, "%lld", want + 1);
    CHECK(dm_reasoning_check(d.question, buf) == 0, "%s: checker accepts %s", d.id, buf);
    snprintf(buf, sizeof buf, "0%s", d.answer);
    CHECK(dm_reasoning_check(d.question, buf) == 0, "%s: checker accepts a leading zero", d.id);
    if (want != 0) {
        snprintf(buf, sizeof buf, "%lld", -want);
        CHECK(dm_reasoning_check(d.question, buf) == 0, "%s: checker accepts the wrong sign", d.id);
    }
    CHECK(dm_reasoning_check(d.question, "") == 0, "%s: checker accepts an empty answer", d.id);
    kinds_seen[d.kind]++;
    words_seen += !strncmp(d.question, "What is", 7) || !strncmp(d.question, "Which", 5) ? 0 : 1;
    negatives_seen += want < 0;
    borrows_seen += strstr(d.text, "borrow 1") != NULL;
    leading_zeros_seen += strstr(d.text, "without leading zeros") != NULL;
    dm_reasoning_doc d2;
    dm_reasoning_make(seed, i, &d2);
    CHECK(!strcmp(d.text, d2.text) && !strcmp(d.id, d2.id), "%s: not deterministic", d.id);
    dm_reasoning_doc_free(&d2);
    dm_reasoning_doc_free(&d);
}

int main(void)
{
    for (uint64_t i = 0; i < N_PROBLEMS / 2; i++) {
        check_problem(0, i);
        check_problem(12345, i);
    }
    for (int k = 0; k < DM_REASONING_KIND_COUNT; k++)
        CHECK(kinds_seen[k] > N_PROBLEMS / 20, "kind %d occurs only %d times", k, kinds_seen[k]);
    CHECK(words_seen > N_PROBLEMS / 10 && negatives_seen > 0 && borrows_seen > 0 && leading_zeros_seen > 0,
          "coverage: %d stories, %d negative, %d with borrows, %d with leading zeros", words_seen, negatives_seen,
          borrows_seen, leading_zeros_seen);

    CHECK(dm_reasoning_check("What is the answer?", "42") == -1, "unknown question not flagged");
    CHECK(dm_reasoning_check("What is 2 + 2? ", "4") == -1, "trailing text after the question accepted");
    CHECK(dm_reasoning_check("What is 12 * 11?", "132") == 1, "12 * 11");
    CHECK(dm_reasoning_check("What is 3 - 10?", "-7") == 1, "3 - 10");
    CHECK(dm_reasoning_check("Which is smaller, 90 or 100?", "90") == 1, "min");
    CHECK(dm_reasoning_check("What is 999999999999999999 * 999999999999999999?",
                             "999999999999999998000000000000000001") == 1, "128-bit product");
    const char *a = dm_reasoning_answer_part("x <think> y </think> z</think>\n42");
    CHECK(a && !strcmp(a, "\n42"), "answer part");
    CHECK(dm_reasoning_answer_part("<think> never closed") == NULL, "unclosed think block");

    for (int s = 0; s < DM_SPLIT_COUNT; s++) {
        dm_reasoning_doc *h = dm_reasoning_heldout(99, (dm_split)s, N_HELDOUT);
        for (int i = 0; i < N_HELDOUT; i++) {
            CHECK(dm_split_of(h[i].question, strlen(h[i].question)) == (dm_split)s, "heldout %s: wrong split",
                  h[i].id);
            for (int j = 0; j < i; j++)
                CHECK(strcmp(h[i].question, h[j].question), "heldout: '%s' twice", h[i].question);
        }
        for (int i = 0; i < N_HELDOUT; i++)
            dm_reasoning_doc_free(&h[i]);
        free(h);
    }
    return check_finish("test_reasoning");
}
