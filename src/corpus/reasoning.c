/* reasoning — the seeded generator of verifiable arithmetic problems for the
 * reasoning domain. Each problem is one document:
 *
 *     What is 4827 + 395?
 *     <think>
 *     4827 + 395, column by column from the right:
 *     col 1: 7+5+0=12, write 2, carry 1
 *     col 2: 2+9+1=12, write 2, carry 1
 *     col 3: 8+3+1=12, write 2, carry 1
 *     col 4: 4+0+1=5, write 5, carry 0
 *     digits from col 4 to col 1: 5 2 2 2
 *     result: 5222
 *     </think>
 *     5222
 *
 * The traces are the school algorithms in the order a small model can run
 * them token by token: columns least significant first, with the carry (or
 * borrow) of each column written out; the digits are then read back from
 * the top column down, leading zeros dropped, and the number assembled in a
 * final "result:" line that the answer after </think> repeats exactly.
 * Kinds (weights in `kinds`): addition and subtraction of 1–6 digit numbers
 * (a negative difference is computed as the reversed subtraction with a
 * minus sign), multiplication of a 1–6 digit number by one digit (2–9) and
 * of a 1–3 digit number by a two-digit one (two partial products, then
 * their column sum; at most 3 digits keeps every document under 512
 * tokens with an 8k BPE), and which of two numbers is larger/smaller
 * (digit counts, then digits from the left). A quarter of the sums, differences
 * and products are worded as small stories ("Ana has 348 apples and gets 275
 * more. …"). Problem `index` of stream `seed` is a pure function of both. */
#include "corpus/corpus_internal.h"

#include <stdlib.h>
#include <string.h>

#define MAX_DIGITS 20

static const char *const names[] = { "Ana", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Iris",
                                     "Jonas", "Kofi", "Lena", "Marco", "Nina", "Omar", "Priya", "Quinn", "Rosa",
                                     "Sam", "Tara" };
static const char *const items[] = { "apples", "books", "coins", "marbles", "stamps",
                                     "cards", "shells", "pencils", "stickers", "beads" };
#define N_NAMES (sizeof names / sizeof names[0])
#define N_ITEMS (sizeof items / sizeof items[0])
#define WORD_PERCENT 25   /* share of sums, differences and products told as a story */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)   /* splitmix64 */
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return cp_mix64(r->s);
}

static long long below(rng *r, long long n)
{
    return (long long)(rng_next(r) % (uint64_t)n);
}

static long long pow10ll(int k)
{
    long long p = 1;
    while (k-- > 0)
        p *= 10;
    return p;
}

/* A number with exactly k digits (1..9 for one digit: no zero operands). */
static long long with_digits(rng *r, int k)
{
    if (k == 1)
        return 1 + below(r, 9);
    return pow10ll(k - 1) + below(r, 9 * pow10ll(k - 1));
}

/* Digits of v >= 0, least significant first; returns the count (>= 1). */
static int digits_lsf(long long v, int *d)
{
    int n = 0;
    do {
        d[n++] = (int)(v % 10);
        v /= 10;
    } while (v > 0);
    return n;
}

/* "digits from col n to col 1: …" and, if the top digits are zeros, the
 * line that drops them. out[] holds the column digits, col 1 first. */
static void read_back(cp_str *t, const int *out, int n)
{
    cp_str_addf(t, "digits from col %d to col 1:", n);
    for (int k = n - 1; k >= 0; k--)
        cp_str_addf(t, " %d", out[k]);
    CP_STR_LIT(t, "\n");
    int top = n - 1;
    while (top > 0 && out[top] == 0)
        top--;
    if (top == n - 1)
        return;
    CP_STR_LIT(t, "without leading zeros:");
    for (int k = top; k >= 0; k--)
        cp_str_addf(t, " %d", out[k]);
    CP_STR_LIT(t, "\n");
}

/* Column addition a + b. */
static void trace_add(cp_str *t, const char *lead, long long a, long long b)
{
    int da[MAX_DIGITS], db[MAX_DIGITS], out[MAX_DIGITS + 1];
    int na = digits_lsf(a, da), nb = digits_lsf(b, db), n = na > nb ? na : nb, carry = 0, no = 0;
    cp_str_addf(t, "%s%lld + %lld, column by column from the right:\n", lead, a, b);
    for (int k = 0; k < n; k++) {
        int x = k < na ? da[k] : 0, y = k < nb ? db[k] : 0, s = x + y + carry;
        cp_str_addf(t, "col %d: %d+%d+%d=%d, write %d, carry %d\n", k + 1, x, y, carry, s, s % 10, s / 10);
        out[no++] = s % 10;
        carry = s / 10;
    }
    if (carry) {
        cp_str_addf(t, "col %d: carry %d, write %d\n", n + 1, carry, carry);
        out[no++] = carry;
    }
    read_back(t, out, no);
}

/* Column subtraction a - b for a >= b, borrowing from the next column. */
static void trace_sub(cp_str *t, long long a, long long b)
{
    int da[MAX_DIGITS], db[MAX_DIGITS], out[MAX_DIGITS];
    int na = digits_lsf(a, da), nb = digits_lsf(b, db), borrow = 0;
    DM_ASSERT(a >= b && na >= nb);
    cp_str_addf(t, "%lld - %lld, column by column from the right:\n", a, b);
    for (int k = 0; k < na; k++) {
        int x = da[k], y = k < nb ? db[k] : 0, d = x - y - borrow;
        if (d >= 0)
            cp_str_addf(t, "col %d: %d-%d-%d=%d, write %d, borrow 0\n", k + 1, x, y, borrow, d, d);
        else
            cp_str_addf(t, "col %d: %d-%d-%d is below 0, so %d-%d-%d=%d, write %d, borrow 1\n", k + 1, x, y, borrow,
                        x + 10, y, borrow, d + 10, d + 10);
        out[k] = d < 0 ? d + 10 : d;
        borrow = d < 0;
    }
    DM_ASSERT(borrow == 0);
    read_back(t, out, na);
}

/* Column multiplication a * m by one digit m. */
static void trace_mul1(cp_str *t, const char *lead, long long a, int m)
{
    int da[MAX_DIGITS], out[MAX_DIGITS + 1];
    int na = digits_lsf(a, da), carry = 0, no = 0;
    cp_str_addf(t, "%s%lld * %d, column by column from the right:\n", lead, a, m);
    for (int k = 0; k < na; k++) {
        int p = da[k] * m + carry;
        cp_str_addf(t, "col %d: %d*%d+%d=%d, write %d, carry %d\n", k + 1, da[k], m, carry, p, p % 10, p / 10);
        out[no++] = p % 10;
        carry = p / 10;
    }
    if (carry) {
        cp_str_addf(t, "col %d: carry %d, write %d\n", na + 1, carry, carry);
        out[no++] = carry;
    }
    read_back(t, out, no);
}

/* ---- the kinds ---- */

typedef struct problem {
    int tmpl;                   /* CP_T_* */
    long long a, b;
    const char *name, *item;
    long long answer;
} problem;

static bool story(rng *r, problem *p)
{
    p->name = names[below(r, N_NAMES)];
    p->item = items[below(r, N_ITEMS)];
    return below(r, 100) < WORD_PERCENT;
}

static void gen_add(rng *r, problem *p, cp_str *t)
{
    p->a = with_digits(r, 1 + (int)below(r, 6));
    p->b = with_digits(r, 1 + (int)below(r, 6));
    p->tmpl = story(r, p) ? CP_T_ADD_WORD : CP_T_ADD;
    if (p->tmpl == CP_T_ADD_WORD)
        cp_str_addf(t, "This is %lld + %lld.\n", p->a, p->b);
    trace_add(t, "", p->a, p->b);
    p->answer = p->a + p->b;
}

static void gen_sub(rng *r, problem *p, cp_str *t)
{
    p->a = with_digits(r, 1 + (int)below(r, 6));
    p->b = with_digits(r, 1 + (int)below(r, 6));
    p->tmpl = story(r, p) ? CP_T_SUB_WORD : CP_T_SUB;
    if (p->tmpl == CP_T_SUB_WORD && p->a < p->b) {   /* nobody gives away more than they have */
        long long x = p->a;
        p->a = p->b;
        p->b = x;
    }
    if (p->tmpl == CP_T_SUB_WORD)
        cp_str_addf(t, "This is %lld - %lld.\n", p->a, p->b);
    p->answer = p->a - p->b;
    if (p->a >= p->b) {
        trace_sub(t, p->a, p->b);
        return;
    }
    cp_str_addf(t, "%lld is smaller than %lld, so compute %lld - %lld and put a minus sign in front.\n", p->a, p->b,
                p->b, p->a);
    trace_sub(t, p->b, p->a);
}

static void gen_mul1(rng *r, problem *p, cp_str *t)
{
    p->a = with_digits(r, 1 + (int)below(r, 6));
    p->b = 2 + below(r, 8);
    p->tmpl = story(r, p) ? CP_T_MUL_WORD : CP_T_MUL;
    if (p->tmpl == CP_T_MUL_WORD)
        cp_str_addf(t, "This is %lld * %lld.\n", p->a, p->b);
    trace_mul1(t, "", p->a, (int)p->b);
    p->answer = p->a * p->b;
}

/* a * (10 tens + ones) = a * ones + a * tens * 10. */
static void gen_mul2(rng *r, problem *p, cp_str *t)
{
    p->a = with_digits(r, 1 + (int)below(r, 3));
    p->b = 10 + below(r, 90);
    p->tmpl = story(r, p) ? CP_T_MUL_WORD : CP_T_MUL;
    if (p->tmpl == CP_T_MUL_WORD)
        cp_str_addf(t, "This is %lld * %lld.\n", p->a, p->b);
    int tens = (int)(p->b / 10), ones = (int)(p->b % 10);
    long long p1 = p->a * ones, p2 = p->a * tens;
    cp_str_addf(t, "%lld * %lld = %lld * %d + %lld * %d * 10.\n", p->a, p->b, p->a, ones, p->a, tens);
    trace_mul1(t, "First ", p->a, ones);
    cp_str_addf(t, "so %lld * %d = %lld\n", p->a, ones, p1);
    trace_mul1(t, "Then ", p->a, tens);
    cp_str_addf(t, "so %lld * %d = %lld, and %lld * 10 = %lld\n", p->a, tens, p2, p2, p2 * 10);
    trace_add(t, "Now add ", p1, p2 * 10);
    p->answer = p->a * p->b;
}

/* Half the pairs share their length and a common prefix, so the digit by
 * digit comparison gets exercised; the other half have independent lengths. */
static void gen_cmp(rng *r, problem *p, cp_str *t)
{
    p->tmpl = below(r, 2) ? CP_T_MAX : CP_T_MIN;
    if (below(r, 2)) {
        int len = 2 + (int)below(r, 6), shared = (int)below(r, len);
        p->a = with_digits(r, len);
        long long keep = p->a / pow10ll(len - shared);   /* the shared prefix */
        do {
            long long rest = below(r, pow10ll(len - shared));
            p->b = keep * pow10ll(len - shared) + rest;
        } while (p->b == p->a || p->b < pow10ll(len - 1));
    } else {
        p->a = with_digits(r, 1 + (int)below(r, 7));
        do
            p->b = with_digits(r, 1 + (int)below(r, 7));
        while (p->b == p->a);
    }
    int da[MAX_DIGITS], db[MAX_DIGITS], na = digits_lsf(p->a, da), nb = digits_lsf(p->b, db);
    long long big = p->a > p->b ? p->a : p->b, small = p->a > p->b ? p->b : p->a;
    cp_str_addf(t, "%lld has %d digit%s and %lld has %d digit%s.\n", p->a, na, na == 1 ? "" : "s", p->b, nb,
                nb == 1 ? "" : "s");
    if (na != nb) {
        cp_str_addf(t, "%lld has more digits, so %lld is larger and %lld is smaller.\n", big, big, small);
    } else {
        CP_STR_LIT(t, "Same number of digits, so compare from the left:\n");
        for (int k = na - 1; k >= 0; k--) {
            if (da[k] == db[k]) {
                cp_str_addf(t, "col %d: %d and %d are equal\n", k + 1, da[k], db[k]);
                continue;
            }
            cp_str_addf(t, "col %d: %d %c %d, so %lld is larger and %lld is smaller.\n", k + 1, da[k],
                        da[k] > db[k] ? '>' : '<', db[k], big, small);
            break;
        }
    }
    p->answer = p->tmpl == CP_T_MAX ? big : small;
}

typedef void (*gen_fn)(rng *r, problem *p, cp_str *t);

static const struct {
    gen_fn fn;
    int weight;
} kinds[] = {
    { gen_add, 25 }, { gen_sub, 25 }, { gen_mul1, 15 }, { gen_mul2, 15 }, { gen_cmp, 20 },
};

void dm_reasoning_make(uint64_t seed, uint64_t index, dm_reasoning_doc *d)
{
    memset(d, 0, sizeof *d);
    rng r = { cp_mix64(seed ^ 0x5eed5eed5eed5eedULL) ^ cp_mix64(index + 0x632be59bd9b4e019ULL) };
    int total = 0, pick;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        total += kinds[i].weight;
    pick = (int)below(&r, total);
    size_t k = 0;
    while (pick >= kinds[k].weight)
        pick -= kinds[k++].weight;
    problem p = { 0 };
    cp_str trace = { 0 }, q = { 0 }, text = { 0 };
    kinds[k].fn(&r, &p, &trace);
    cp_str_addf(&trace, "result: %lld\n", p.answer);
    cp_render_question(&q, p.tmpl, p.a, p.b, p.name, p.item);
    snprintf(d->id, sizeof d->id, "reasoning/%llu/%llu", (unsigned long long)seed, (unsigned long long)index);
    d->kind = cp_templates[p.tmpl].kind;
    snprintf(d->answer, sizeof d->answer, "%lld", p.answer);
    cp_str_add(&text, q.p, q.n);
    CP_STR_LIT(&text, "\n<think>\n");
    d->prompt_len = text.n;
    cp_str_add(&text, trace.p, trace.n);
    CP_STR_LIT(&text, "</think>\n");
    cp_str_add(&text, d->answer, strlen(d->answer));
    d->question = q.p;
    d->text = text.p;
    free(trace.p);
}

void dm_reasoning_doc_free(dm_reasoning_doc *d)
{
    free(d->question);
    free(d->text);
    d->question = d->text = NULL;
}

dm_reasoning_doc *dm_reasoning_heldout(uint64_t seed, dm_split split, int n)
{
    dm_reasoning_doc *out = dm_calloc(n > 0 ? (size_t)n : 1, sizeof *out);
    cp_hashset seen = { 0 };
    int got = 0;
    for (uint64_t i = 0; got < n; i++) {
        dm_reasoning_make(seed, i, &out[got]);
        const char *q = out[got].question;
        if (cp_hashset_add(&seen, dm_corpus_hash(q, strlen(q))) && dm_split_of(q, strlen(q)) == split)
            got++;
        else
            dm_reasoning_doc_free(&out[got]);
    }
    cp_hashset_free(&seen);
    return out;
}
