/* reasoning_check — the question templates of the reasoning domain, and the
 * solver and checker that work from a question's text alone: they match it
 * against the templates, read the two operands and compute the answer in
 * 128-bit integers, independently of the generator's column traces (so a
 * trace bug cannot hide behind its own checker). The model card measures
 * exact-match accuracy with dm_reasoning_check on held-out problems. */
#include "corpus/corpus_internal.h"

#include <ctype.h>
#include <string.h>

#define MAX_OPERAND_DIGITS 18   /* operands fit int64; results are computed in 128 bits */

const cp_template cp_templates[CP_T_COUNT] = {
    [CP_T_ADD] = { DM_REASONING_ADD, "What is {a} + {b}?" },
    [CP_T_ADD_WORD] = { DM_REASONING_ADD, "{n} has {a} {i} and gets {b} more. How many {i} does {n} have now?" },
    [CP_T_SUB] = { DM_REASONING_SUB, "What is {a} - {b}?" },
    [CP_T_SUB_WORD] = { DM_REASONING_SUB, "{n} has {a} {i} and gives away {b}. How many {i} are left?" },
    [CP_T_MUL] = { DM_REASONING_MUL, "What is {a} * {b}?" },
    [CP_T_MUL_WORD] = { DM_REASONING_MUL,
                        "There are {a} boxes with {b} {i} in each. How many {i} are there in total?" },
    [CP_T_MAX] = { DM_REASONING_MAX, "Which is larger, {a} or {b}?" },
    [CP_T_MIN] = { DM_REASONING_MIN, "Which is smaller, {a} or {b}?" },
};

void cp_render_question(cp_str *out, int t, long long a, long long b, const char *name, const char *item)
{
    DM_ASSERT(t >= 0 && t < CP_T_COUNT);
    for (const char *s = cp_templates[t].text; *s; s++) {
        if (s[0] == '{' && s[1] && s[2] == '}') {
            switch (s[1]) {
            case 'a': cp_str_addf(out, "%lld", a); break;
            case 'b': cp_str_addf(out, "%lld", b); break;
            case 'n': cp_str_add(out, name, strlen(name)); break;
            case 'i': cp_str_add(out, item, strlen(item)); break;
            default: DM_ASSERT(!"unknown placeholder");
            }
            s += 2;
        } else
            cp_str_add(out, s, 1);
    }
}

/* Matches q against template text; fills the operands. */
static bool match(const char *tmpl, const char *q, __int128 *a, __int128 *b)
{
    while (*tmpl) {
        if (tmpl[0] == '{' && tmpl[1] && tmpl[2] == '}') {
            char c = tmpl[1];
            tmpl += 3;
            if (c == 'a' || c == 'b') {
                __int128 v = 0;
                int n = 0;
                while (isdigit((unsigned char)*q) && n <= MAX_OPERAND_DIGITS)
                    v = v * 10 + (*q++ - '0'), n++;
                if (n == 0 || n > MAX_OPERAND_DIGITS)
                    return false;
                *(c == 'a' ? a : b) = v;
            } else {
                const char *s = q;
                while (c == 'n' ? isalpha((unsigned char)*q) : islower((unsigned char)*q))
                    q++;
                if (q == s)
                    return false;
            }
            continue;
        }
        if (*tmpl++ != *q++)
            return false;
    }
    return *q == 0;
}

static void format_i128(__int128 v, char *buf, size_t cap)
{
    char tmp[48];
    int n = 0;
    bool neg = v < 0;
    unsigned __int128 u = neg ? -(unsigned __int128)v : (unsigned __int128)v;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    size_t k = 0;
    if (neg && k + 1 < cap)
        buf[k++] = '-';
    while (n > 0 && k + 1 < cap)
        buf[k++] = tmp[--n];
    buf[k] = 0;
}

int dm_reasoning_solve(const char *question, char *answer, size_t cap)
{
    for (int t = 0; t < CP_T_COUNT; t++) {
        __int128 a = 0, b = 0, r;
        if (!match(cp_templates[t].text, question, &a, &b))
            continue;
        switch (cp_templates[t].kind) {
        case DM_REASONING_ADD: r = a + b; break;
        case DM_REASONING_SUB: r = a - b; break;
        case DM_REASONING_MUL: r = a * b; break;
        case DM_REASONING_MAX: r = a > b ? a : b; break;
        default: r = a < b ? a : b; break;
        }
        format_i128(r, answer, cap);
        return 0;
    }
    return -1;
}

int dm_reasoning_check(const char *question, const char *answer_text)
{
    char want[48];
    if (dm_reasoning_solve(question, want, sizeof want))
        return -1;
    const char *s = answer_text, *e = s + strlen(s);
    while (s < e && isspace((unsigned char)*s))
        s++;
    while (e > s && isspace((unsigned char)e[-1]))
        e--;
    return (size_t)(e - s) == strlen(want) && !memcmp(s, want, (size_t)(e - s));
}

const char *dm_reasoning_answer_part(const char *completion)
{
    const char *last = NULL;
    for (const char *p = completion; (p = strstr(p, "</think>")); p += 8)
        last = p + 8;
    return last;
}
