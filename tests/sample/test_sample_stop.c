/* test_sample_stop — the stop-string matcher: fixed cases (a stop string inside one
 * piece, split across pieces, false starts released, overlapping prefixes
 * such as "abab" in "ababab", several stop strings, flush, feeding after a
 * stop), and a randomized comparison with a naive oracle that rescans the
 * whole text after every piece. */
#include "sample/sample_check.h"

#define MAX_OUT 20000

typedef struct stream {
    dm_stop *m;
    char out[MAX_OUT];   /* everything emitted so far */
    size_t n_out;
    bool stopped;
} stream;

static void stream_feed(stream *st, const char *piece, size_t len)
{
    const char *e;
    size_t n;
    st->stopped = dm_stop_feed(st->m, piece, len, &e, &n);
    DM_ASSERT(st->n_out + n <= MAX_OUT);
    memcpy(st->out + st->n_out, e, n);
    st->n_out += n;
}

static void stream_flush(stream *st)
{
    const char *e;
    size_t n;
    dm_stop_flush(st->m, &e, &n);
    DM_ASSERT(st->n_out + n <= MAX_OUT);
    memcpy(st->out + st->n_out, e, n);
    st->n_out += n;
}

/* Feeds pieces[] one by one; after piece i the emitted text must be
 * want[i] and the stop flag stop_at <= i. NULL ends pieces. */
static void run_case(const char *name, const char *const *stops, int n_stops,
                     const char *const *pieces, const char *const *want, int stop_at,
                     const char *after_flush)
{
    stream st = { .m = dm_stop_new(stops, n_stops) };
    for (int i = 0; pieces[i]; i++) {
        stream_feed(&st, pieces[i], strlen(pieces[i]));
        CHECK(st.n_out == strlen(want[i]) && memcmp(st.out, want[i], st.n_out) == 0,
              "%s: after piece %d (\"%s\") emitted \"%.*s\", want \"%s\"", name, i, pieces[i],
              (int)st.n_out, st.out, want[i]);
        CHECK(st.stopped == (stop_at >= 0 && i >= stop_at), "%s: after piece %d stop = %d", name, i,
              (int)st.stopped);
    }
    stream_flush(&st);
    CHECK(st.n_out == strlen(after_flush) && memcmp(st.out, after_flush, st.n_out) == 0,
          "%s: after flush \"%.*s\", want \"%s\"", name, (int)st.n_out, st.out, after_flush);
    dm_stop_free(st.m);
}

static void test_cases(void)
{
    const char *end[] = { "END" };
    {
        const char *p[] = { "helloENDworld", NULL }, *w[] = { "hello" };
        run_case("inside one piece", end, 1, p, w, 0, "hello");
    }
    {
        const char *p[] = { "hel", "loEN", "Dxx", NULL }, *w[] = { "hel", "hello", "hello" };
        run_case("split across pieces", end, 1, p, w, 2, "hello");
    }
    {
        const char *p[] = { "E", "N", "x", "EN", NULL }, *w[] = { "", "", "ENx", "ENx" };
        run_case("false start released", end, 1, p, w, -1, "ENxEN");
    }
    {
        const char *p[] = { "ab", "E", "N", "D", "more", NULL }, *w[] = { "ab", "ab", "ab", "ab", "ab" };
        run_case("one byte at a time", end, 1, p, w, 3, "ab");
    }
    const char *abab[] = { "abab" };
    {
        const char *p[] = { "ababab", NULL }, *w[] = { "" };
        run_case("abab in ababab", abab, 1, p, w, 0, "");
    }
    {
        /* "abaabab": the first "aba" is a false start, the stop begins at 3 */
        const char *p[] = { "a", "b", "a", "a", "b", "a", "b", NULL },
                   *w[] = { "", "", "", "aba", "aba", "aba", "aba" };
        run_case("abab after a false start", abab, 1, p, w, 6, "aba");
    }
    const char *abab_ba[] = { "abab", "ba" };
    {
        /* both occur in "abab", but "ba" completes first (at byte 3), as it
         * would have fed byte by byte */
        const char *p[] = { "abab", NULL }, *w[] = { "a" };
        run_case("first to complete wins", abab_ba, 2, p, w, 0, "a");
        const char *p1[] = { "a", "b", "a", NULL }, *w1[] = { "", "", "a" };
        run_case("first to complete wins, byte by byte", abab_ba, 2, p1, w1, 2, "a");
    }
    const char *ababc[] = { "ababc" };
    {
        /* "abababc": the held "ababa" is not a prefix, but its tail "aba" is */
        const char *p[] = { "ababa", "b", "c", NULL }, *w[] = { "ab", "ab", "ab" };
        run_case("overlapping prefix ababc", ababc, 1, p, w, 2, "ab");
    }
    const char *several[] = { "\n\n", "</s>", "User:" };
    {
        const char *p[] = { "xx Us", "er: y </s>", NULL }, *w[] = { "xx ", "xx " };
        run_case("several: earliest wins", several, 3, p, w, 1, "xx ");
    }
    {
        const char *p[] = { "ok\n", "</", "s", NULL }, *w[] = { "ok", "ok\n", "ok\n" };
        run_case("several: held for two", several, 3, p, w, -1, "ok\n</s");
    }
    const char *nested[] = { "abc", "ab" };
    {
        const char *p[] = { "xa", "bc", NULL }, *w[] = { "x", "x" };
        run_case("a stop that is a prefix of another", nested, 2, p, w, 1, "x");
    }
    const char *empty[] = { "" };
    {
        const char *p[] = { "any", "thing", NULL }, *w[] = { "any", "anything" };
        run_case("empty stop string ignored", empty, 1, p, w, -1, "anything");
        run_case("no stop strings", NULL, 0, p, w, -1, "anything");
    }
    {
        const char *p[] = { "abcEN", "", NULL }, *w[] = { "abc", "abc" };
        run_case("flush releases the held tail", end, 1, p, w, -1, "abcEN");
    }
}

/* A 10 kB piece with the stop at its end, after a held tail. */
static void test_big_piece(void)
{
    enum { N = 10000 };
    static char big[N + 4];
    memset(big, 'x', N);
    memcpy(big + N, "END", 4);
    const char *end[] = { "END" };
    stream st = { .m = dm_stop_new(end, 1) };
    stream_feed(&st, "E", 1);
    stream_feed(&st, big, N + 3);
    CHECK(st.stopped && st.n_out == N + 1 && st.out[0] == 'E' && st.out[N] == 'x',
          "big piece: stopped %d, emitted %zu bytes, want %d", (int)st.stopped, st.n_out, N + 1);
    dm_stop_free(st.m);
}

/* The oracle on text[0..n): the start of the stop occurrence that ends
 * first (ties: earlier start), and when there is none, the length that is
 * safe to show: the smallest j with text[j..n) a proper prefix of a stop. */
static size_t oracle_safe(const char *text, size_t n, const char *const *stops, int ns, bool *stop)
{
    size_t first = n, first_end = n + 1;
    for (int i = 0; i < ns; i++) {
        size_t k = strlen(stops[i]);
        for (size_t j = 0; j + k <= n; j++)
            if (memcmp(text + j, stops[i], k) == 0 &&
                (j + k < first_end || (j + k == first_end && j < first))) {
                first = j;
                first_end = j + k;
            }
    }
    *stop = first < n;
    if (*stop)
        return first;
    for (size_t j = 0; j < n; j++)
        for (int i = 0; i < ns; i++)
            if (strlen(stops[i]) > n - j && memcmp(text + j, stops[i], n - j) == 0)
                return j;
    return n;
}

static void test_random(void)
{
    static const char *pool[] = { "aab", "ba", "abab", "bbb", "abca", "c" };
    dm_rng r;
    dm_rng_seed(&r, 77);
    for (int trial = 0; trial < 3000; trial++) {
        const char *stops[3];
        int ns = 1 + (int)(dm_rng_next(&r) % 3);
        for (int i = 0; i < ns; i++)
            stops[i] = pool[dm_rng_next(&r) % 6];
        char text[48];
        size_t n = 1 + dm_rng_next(&r) % 40;
        for (size_t i = 0; i < n; i++)   /* 'c' rarely, so some texts have no stop */
            text[i] = "aabbabababc"[dm_rng_next(&r) % 11];
        stream st = { .m = dm_stop_new(stops, ns) };
        size_t fed = 0;
        bool stopped = false;
        while (fed < n && !stopped) {
            size_t len = dm_rng_next(&r) % 5;   /* 0-length pieces too */
            if (len > n - fed)
                len = n - fed;
            stream_feed(&st, text + fed, len);
            fed += len;
            size_t safe = oracle_safe(text, fed, stops, ns, &stopped);
            CHECK(st.stopped == stopped && st.n_out == safe && memcmp(st.out, text, safe) == 0,
                  "trial %d: after %zu of \"%.*s\": emitted %zu (stop %d), want %zu (stop %d)", trial,
                  fed, (int)n, text, st.n_out, (int)st.stopped, safe, (int)stopped);
        }
        stream_flush(&st);
        size_t want = stopped ? oracle_safe(text, n, stops, ns, &stopped) : n;
        CHECK(st.n_out == want && memcmp(st.out, text, want) == 0,
              "trial %d: \"%.*s\" after flush emitted %zu, want %zu", trial, (int)n, text, st.n_out, want);
        dm_stop_free(st.m);
    }
}

int main(void)
{
    test_cases();
    test_big_piece();
    test_random();
    return check_exit("test_sample_stop");
}
