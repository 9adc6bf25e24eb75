/* tok_test_util — what the tokenizer tests share: the fixed text set, a
 * seeded random-string generator, the training corpus (files every Debian
 * machine has), and a failure counter that prints what went wrong. Each test
 * program includes it once. */
#ifndef TOK_TEST_UTIL_H
#define TOK_TEST_UTIL_H

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tokenizer/tokenizer.h"

static int g_fail;

static inline void failf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static inline void failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAIL: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    g_fail++;
}

#define CHECK(cond, ...)             \
    do {                             \
        if (!(cond))                 \
            failf(__VA_ARGS__);      \
    } while (0)

/* The fixed text set: prose, code, numbers, scripts, non-NFC input, emoji
 * with ZWJ/skin tones/flags, whitespace runs, CRLF, added/special tokens in
 * running text. */
static const char *const tok_texts[] = {
    "Hello world! The quick brown fox jumps over the lazy dog.",
    "It's a test: they're here, we've done it, I'm sure you'll see, he'd say. IT'S LOUD, THEY'RE 'S",
    "def foo(self, x):\n    if x > 0:\n        return x * 2\n    return None\n\n\nclass Bar:\n\tpass\n",
    "Numbers: 0 1 12 123 1234 12345 3.14159 -42 1e10 0xFF 1,000,000 \u0661\u0662\u0663 \u00bd",
    "\u4e2d\u6587\u6587\u672c\u6d4b\u8bd5\uff0c\u4f60\u597d\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad"
    "\u30b9\u30c8\u3001\u30ab\u30bf\u30ab\u30ca\u3002\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8",
    "\u0627\u0644\u0639\u0631\u0628\u064a\u0629: \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627"
    "\u0644\u0645",
    "\u0939\u093f\u0928\u094d\u0926\u0940 \u0926\u0947\u0935\u0928\u093e\u0917\u0930\u0940 \u0932\u093f\u092a\u093f",
    "Cafe\u0301 vs Caf\u00e9, n\u0303, A\u030a, \u1100\u1161 (jamo), \u212b, e\u0301\u0323",
    "Emoji: \U0001F600 \U0001F44D\U0001F3FD \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 "
    "\U0001F3F3\ufe0f\u200d\U0001F308 \u2764\ufe0f \U0001F1EF\U0001F1F5",
    "spaces:   three,\t\ttabs,  \n\n\n  newlines   \n",
    "windows\r\nline\r\nendings\r\n\r\n  \r\n",
    "<think>I should reason.</think>The answer is 42.<|endoftext|>",
    "text<think>inside</think>more <|user|> x  <mask> y <sep>   z [[note]] hello hellos xhello <think>x <think>y",
    "   leading and trailing spaces   ",
    "\u00a0nbsp\u3000ideographic\u2028line sep\u2003em",
    "",
    "a",
    " ",
    "\n",
    "Mixed: na\u00efve caf\u00e9 r\u00e9sum\u00e9 \u00c5ngstr\u00f6m Stra\u00dfe \ufb01 ligature \u017ft",
    "URLs https://example.com/path?q=1&r=2#frag and emails a.b@c.de; C:\\Windows\\path",
    "abc abcabc aabbcc bcab xyxy self selfish",
    "<|user|>Hi<|assistant|><think></think>Hello!<sop>[gMASK]<|system|>",
};
#define N_TOK_TEXTS ((int)(sizeof tok_texts / sizeof tok_texts[0]))

/* ---- random strings ------------------------------------------------------------ */

static uint64_t g_rng = 0x243f6a8885a308d3ull;

static inline uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 11);
}

/* Random bytes, biased towards bytes that make UTF-8 lead/continuation
 * sequences so that valid and invalid multi-byte runs both show up. */
static inline size_t random_bytes(char *out, size_t max)
{
    size_t n = rnd() % (max + 1);
    for (size_t i = 0; i < n; i++) {
        uint32_t r = rnd() % 8;
        out[i] = (char)(r < 3 ? 0x20 + rnd() % 95 : r < 5 ? 0x80 + rnd() % 64 : r < 6 ? 0xc0 + rnd() % 64
                        : r < 7 ? (uint32_t)(uint8_t)" \n\t\r"[rnd() % 4] : rnd() % 256);
    }
    return n;
}

/* Random valid UTF-8 text from pieces of the text set and a pool of
 * characters of every kind the pre-tokenizer distinguishes. */
static inline size_t random_text(char *out, size_t max)
{
    static const char *const pool[] = {
        "a", "Z", "q", "'s", "'LL", " ", "  ", "\t", "\n", "\r\n", "0", "7", "42", "1234", ".", ",", "!?",
        "(", ")", "_", "-", "\u00e9", "e\u0301", "\u0301", "\u4e2d", "\u6587", "\u3002", "\u0645", "\u0939\u093f",
        "\U0001F600", "\u200d", "\U0001F3FD", "\u00a0", "\u3000", "<think>", "</think>", "<|user|>",
        "<|endoftext|>", "<mask>", "<sep>", "hello", "[[note]]", "<think>x", "<sop>", "[gMASK]", "self", "abc",
        "\u0661", "\u00bd", "\ufb01", "\u212b", "\ud55c", "\u1100\u1161", "\u0323", "\u1161", "\uac00",
        "\u11a8", "\u0958",
    };
    size_t n = 0, target = rnd() % (max / 4 + 1);
    while (n < target) {
        const char *p = pool[rnd() % (sizeof pool / sizeof *pool)];
        size_t k = strlen(p);
        if (n + k > max)
            break;
        memcpy(out + n, p, k);
        n += k;
    }
    return n;
}

/* ---- files ------------------------------------------------------------------------ */

static inline const char *tmp_dir(void)
{
    const char *d = getenv("DM_TEST_TMP");
    if (!d)
        d = "/tmp/dm_test_tokenizer";
    mkdir(d, 0755);
    return d;
}

/* The training corpus: license texts and Python stdlib sources (on every
 * Debian machine), plus the text set repeated so its scripts get merges.
 * Returns a malloc'd buffer, or NULL if a file is missing. */
static inline char *training_corpus(size_t *len)
{
    static const char *const files[] = {
        "/usr/share/common-licenses/GPL-3", "/usr/share/common-licenses/LGPL-2.1",
        "/usr/share/common-licenses/Apache-2.0", "/usr/share/common-licenses/MPL-2.0",
        "/usr/share/common-licenses/GFDL-1.3", "/usr/share/common-licenses/Artistic",
        "/usr/lib/python3.11/argparse.py", "/usr/lib/python3.11/typing.py", "/usr/lib/python3.11/inspect.py",
        "/usr/lib/python3.11/pydoc.py", "/usr/lib/python3.11/difflib.py", "/usr/lib/python3.11/subprocess.py",
        "/usr/lib/python3.11/tarfile.py", "/usr/lib/python3.11/zipfile.py",
    };
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char *s;
        size_t m;
        dm_err err;
        if (dm_read_file(files[i], &s, &m, &err)) {
            fprintf(stderr, "training corpus: %s\n", err.msg);
            free(buf);
            return NULL;
        }
        while (n + m + 1 > cap)
            buf = realloc(buf, cap *= 2);
        memcpy(buf + n, s, m);
        n += m;
        free(s);
    }
    for (int r = 0; r < 20; r++)
        for (int i = 0; i < N_TOK_TEXTS; i++) {
            size_t m = strlen(tok_texts[i]);
            while (n + m + 2 > cap)
                buf = realloc(buf, cap *= 2);
            memcpy(buf + n, tok_texts[i], m);
            n += m;
            buf[n++] = '\n';
        }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The GLM-5 special tokens, in their order of ids. */
static const char *const glm_specials[] = {
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>",
};
#define N_GLM_SPECIALS ((int)(sizeof glm_specials / sizeof glm_specials[0]))

static inline void print_ids(FILE *f, const int32_t *ids, int n)
{
    for (int i = 0; i < n && i < 40; i++)
        fprintf(f, "%s%d", i ? " " : "", ids[i]);
    if (n > 40)
        fprintf(f, " ... (%d ids)", n);
}

#endif
