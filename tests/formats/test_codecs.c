/* test_codecs — the small-float codecs of src/formats/dtype.c against their
 * definitions (shared/research/quant.md §2.1), computed here independently in
 * double from the bit fields:
 *   - all 256 E4M3 and E5M2 codes decode to the formula; every finite code
 *     (and E5M2's infinities) survives encode(decode(c)) == c;
 *   - the encoders agree with a brute-force nearest-value search (ties to the
 *     even code) on ~400k values across all magnitudes, and on every midpoint
 *     between adjacent codes and its float neighbours; E4M3 saturates at ±448,
 *     E5M2 overflows to ±inf from 61440 on;
 *   - E8M0 decode of all codes and the floor encoder at and around every power
 *     of two;
 *   - E2M1: the table, ModelOpt's rounding thresholds {0.25, 0.75, 1.25, 1.75,
 *     2.5, 3.5, 5} with their tie directions, saturation at ±6;
 *   - the dtype table (names, sizes) and dm_dtype_read for every dtype.
 * bf16 and f16 rounding is checked against PyTorch/numpy in test_codec_oracle.
 * All comparisons are exact (bit for bit): there is no tolerance. */
#include "ft_util.h"

#include <math.h>

#define N_RANDOM 200000   /* random values per encoder */

/* ---- independent definitions ---- */

static double e4m3_def(int c)
{
    int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
    if (e == 15 && m == 7)
        return NAN;
    double v = e == 0 ? ldexp(m / 8.0, -6) : ldexp(1 + m / 8.0, e - 7);
    return s ? -v : v;
}

static double e5m2_def(int c)
{
    int s = c >> 7, e = (c >> 2) & 31, m = c & 3;
    double v;
    if (e == 31)
        v = m ? NAN : INFINITY;
    else
        v = e == 0 ? ldexp(m / 4.0, -14) : ldexp(1 + m / 4.0, e - 15);
    return s ? -v : v;
}

static double e2m1_def(int c)
{
    int s = (c >> 3) & 1, e = (c >> 1) & 3, m = c & 1;
    double v = e == 0 ? m * 0.5 : ldexp(1 + m / 2.0, e - 1);
    return s ? -v : v;
}

static bool same_value(double a, float b)
{
    return (isnan(a) && isnan(b)) || (a == (double)b && !signbit(a) == !signbit(b));
}

/* Brute force: the code in [0, n) (non-negative codes, values from def) nearest
 * to |x|, ties to the even code; `top` is the value that stands for overflow
 * (the code n-1 is returned at or above it when saturating). */
static int nearest_brute(double ax, double (*def)(int), int n)
{
    int best = 0;
    double bd = INFINITY;
    for (int c = 0; c < n; c++) {
        double d = fabs(def(c) - ax);
        if (d < bd || (d == bd && (c & 1) == 0)) {
            bd = d;
            best = c;
        }
    }
    return best;
}

/* A random float whose magnitude spans 2^lo .. 2^hi, random sign. */
static float random_float(int lo, int hi)
{
    double m = 1 + ft_uniform();
    int e = lo + (int)ft_below((uint64_t)(hi - lo + 1));
    float f = (float)ldexp(m, e);
    return ft_rand() & 1 ? -f : f;
}

/* ---- E4M3 ---- */

static double e4m3_pos(int c) { return e4m3_def(c); }
static double e5m2_pos(int c) { return c == 0x7c ? 65536.0 : e5m2_def(c); }   /* inf rounds like 2^16 */

static void test_e4m3(void)
{
    for (int c = 0; c < 256; c++) {
        float v = dm_e4m3_to_f32((uint8_t)c);
        ft_check(same_value(e4m3_def(c), v), "e4m3 decode 0x%02x: got %g want %g", c, v, e4m3_def(c));
        if (isnan(v))
            continue;
        uint8_t back = dm_f32_to_e4m3(v);
        ft_check(back == c, "e4m3 encode(decode(0x%02x)) = 0x%02x", c, back);
    }
    ft_check(dm_e4m3_to_f32(0x7e) == 448.0f, "e4m3 max is not 448");
    /* midpoints of adjacent codes, and their float neighbours */
    for (int c = 0; c < 0x7e; c++) {
        float mid = (float)((e4m3_def(c) + e4m3_def(c + 1)) / 2);
        int even = (c & 1) ? c + 1 : c;
        for (int s = 0; s < 2; s++) {
            float x = s ? -mid : mid;
            uint8_t sb = s ? 0x80 : 0;
            ft_check(dm_f32_to_e4m3(x) == (sb | even), "e4m3 tie %g -> 0x%02x, want 0x%02x", x,
                     dm_f32_to_e4m3(x), sb | even);
            float up = nextafterf(x, s ? -INFINITY : INFINITY), dn = nextafterf(x, 0);
            ft_check(dm_f32_to_e4m3(up) == (sb | (c + 1)), "e4m3 above tie %g -> 0x%02x", up, dm_f32_to_e4m3(up));
            ft_check(dm_f32_to_e4m3(dn) == (sb | c), "e4m3 below tie %g -> 0x%02x", dn, dm_f32_to_e4m3(dn));
        }
    }
    const float sat[] = { 448.0f, 449.0f, 464.0f, 479.0f, 480.0f, 1e6f, 3e38f, INFINITY };
    for (size_t i = 0; i < sizeof sat / sizeof *sat; i++) {
        ft_check(dm_f32_to_e4m3(sat[i]) == 0x7e, "e4m3 saturation %g -> 0x%02x", sat[i], dm_f32_to_e4m3(sat[i]));
        ft_check(dm_f32_to_e4m3(-sat[i]) == 0xfe, "e4m3 saturation %g -> 0x%02x", -sat[i],
                 dm_f32_to_e4m3(-sat[i]));
    }
    ft_check(isnan(dm_e4m3_to_f32(dm_f32_to_e4m3(NAN))), "e4m3 NaN not kept");
    ft_seed(1);
    for (int i = 0; i < N_RANDOM; i++) {
        float x = random_float(-14, 10);
        int want = nearest_brute(fabs((double)x), e4m3_pos, 0x7f) | (signbit(x) ? 0x80 : 0);
        uint8_t got = dm_f32_to_e4m3(x);
        ft_check(got == want, "e4m3 encode %.9g: got 0x%02x want 0x%02x", x, got, want);
    }
}

/* ---- E5M2 ---- */

static void test_e5m2(void)
{
    for (int c = 0; c < 256; c++) {
        float v = dm_e5m2_to_f32((uint8_t)c);
        ft_check(same_value(e5m2_def(c), v), "e5m2 decode 0x%02x: got %g want %g", c, v, e5m2_def(c));
        if (isnan(v))
            continue;
        uint8_t back = dm_f32_to_e5m2(v);
        ft_check(back == c, "e5m2 encode(decode(0x%02x)) = 0x%02x", c, back);
    }
    for (int c = 0; c < 0x7b; c++) {
        float mid = (float)((e5m2_def(c) + e5m2_def(c + 1)) / 2);
        int even = (c & 1) ? c + 1 : c;
        ft_check(dm_f32_to_e5m2(mid) == even, "e5m2 tie %g -> 0x%02x want 0x%02x", mid, dm_f32_to_e5m2(mid), even);
        ft_check(dm_f32_to_e5m2(-mid) == (0x80 | even), "e5m2 tie %g", -mid);
        ft_check(dm_f32_to_e5m2(nextafterf(mid, INFINITY)) == c + 1, "e5m2 above tie %g", mid);
        ft_check(dm_f32_to_e5m2(nextafterf(mid, 0)) == c, "e5m2 below tie %g", mid);
    }
    ft_check(dm_f32_to_e5m2(57344.0f) == 0x7b, "e5m2 max");
    ft_check(dm_f32_to_e5m2(nextafterf(61440.0f, 0)) == 0x7b, "e5m2 just below overflow");
    ft_check(dm_f32_to_e5m2(61440.0f) == 0x7c, "e5m2 61440 must overflow to inf (tie to even)");
    ft_check(dm_f32_to_e5m2(-1e30f) == 0xfc, "e5m2 -1e30 -> -inf");
    ft_check(isnan(dm_e5m2_to_f32(dm_f32_to_e5m2(NAN))), "e5m2 NaN not kept");
    ft_seed(2);
    for (int i = 0; i < N_RANDOM; i++) {
        float x = random_float(-18, 16);
        int want = nearest_brute(fabs((double)x), e5m2_pos, 0x7d) | (signbit(x) ? 0x80 : 0);
        uint8_t got = dm_f32_to_e5m2(x);
        ft_check(got == want, "e5m2 encode %.9g: got 0x%02x want 0x%02x", x, got, want);
    }
}

/* ---- E8M0 ---- */

static void test_e8m0(void)
{
    for (int c = 0; c < 255; c++) {
        float v = dm_e8m0_to_f32((uint8_t)c);
        ft_check((double)v == ldexp(1.0, c - 127), "e8m0 decode %d: got %g", c, v);
    }
    ft_check(isnan(dm_e8m0_to_f32(0xff)), "e8m0 0xff is not NaN");
    for (int k = -127; k <= 127; k++) {
        float p = ldexpf(1.0f, k);
        ft_check(dm_f32_to_e8m0_floor(p) == k + 127, "e8m0 floor(2^%d) = %d", k, dm_f32_to_e8m0_floor(p));
        float q = (float)(ldexp(1.0, k) * 1.9990234375);
        ft_check(dm_f32_to_e8m0_floor(q) == k + 127, "e8m0 floor(1.999*2^%d) = %d", k, dm_f32_to_e8m0_floor(q));
        if (k > -127) {
            float b = nextafterf(p, 0);
            ft_check(dm_f32_to_e8m0_floor(b) == k + 126, "e8m0 floor(below 2^%d) = %d", k, dm_f32_to_e8m0_floor(b));
        }
    }
    const struct { float f; int want; } edge[] = {
        { 0.0f, 0 }, { -1.0f, 0 }, { NAN, 0 }, { 1e-45f, 0 }, { 3.4e38f, 254 }, { INFINITY, 254 },
    };
    for (size_t i = 0; i < sizeof edge / sizeof *edge; i++)
        ft_check(dm_f32_to_e8m0_floor(edge[i].f) == edge[i].want, "e8m0 floor(%g) = %d want %d", edge[i].f,
                 dm_f32_to_e8m0_floor(edge[i].f), edge[i].want);
}

/* ---- E2M1 ---- */

static void test_e2m1(void)
{
    for (int c = 0; c < 16; c++)
        ft_check(same_value(e2m1_def(c), dm_e2m1_values[c]), "e2m1 value of code %d: %g want %g", c,
                 dm_e2m1_values[c], e2m1_def(c));
    /* quant.md §2.1: threshold -> code it ties to; just above goes one code up */
    const struct { float t; int tie; } th[] = {
        { 0.25f, 0 }, { 0.75f, 2 }, { 1.25f, 2 }, { 1.75f, 4 }, { 2.5f, 4 }, { 3.5f, 6 }, { 5.0f, 6 },
    };
    for (int i = 0; i < 7; i++) {
        float t = th[i].t;
        ft_check(dm_f32_to_e2m1(t) == th[i].tie, "e2m1(%g) = %d want %d", t, dm_f32_to_e2m1(t), th[i].tie);
        ft_check(dm_f32_to_e2m1(-t) == (8 | th[i].tie), "e2m1(%g) = %d", -t, dm_f32_to_e2m1(-t));
        ft_check(dm_f32_to_e2m1(nextafterf(t, 0)) == i, "e2m1 just below %g = %d want %d", t,
                 dm_f32_to_e2m1(nextafterf(t, 0)), i);
        ft_check(dm_f32_to_e2m1(nextafterf(t, 10)) == i + 1, "e2m1 just above %g = %d want %d", t,
                 dm_f32_to_e2m1(nextafterf(t, 10)), i + 1);
    }
    const float sat[] = { 6.0f, 6.5f, 7.0f, 100.0f, INFINITY };
    for (size_t i = 0; i < sizeof sat / sizeof *sat; i++) {
        ft_check(dm_f32_to_e2m1(sat[i]) == 7, "e2m1 saturation %g", sat[i]);
        ft_check(dm_f32_to_e2m1(-sat[i]) == 15, "e2m1 saturation %g", -sat[i]);
    }
    for (int c = 0; c < 16; c++)
        ft_check(dm_f32_to_e2m1(dm_e2m1_values[c]) == c, "e2m1 encode(decode(%d)) = %d", c,
                 dm_f32_to_e2m1(dm_e2m1_values[c]));
}

/* ---- the dtype table ---- */

static void test_dtypes(void)
{
    static const struct { dm_dtype t; const char *name; size_t size; } want[] = {
        { DM_DTYPE_F64, "F64", 8 }, { DM_DTYPE_F32, "F32", 4 }, { DM_DTYPE_F16, "F16", 2 },
        { DM_DTYPE_BF16, "BF16", 2 }, { DM_DTYPE_F8_E4M3, "F8_E4M3", 1 }, { DM_DTYPE_F8_E5M2, "F8_E5M2", 1 },
        { DM_DTYPE_F8_E8M0, "F8_E8M0", 1 }, { DM_DTYPE_I64, "I64", 8 }, { DM_DTYPE_I32, "I32", 4 },
        { DM_DTYPE_I16, "I16", 2 }, { DM_DTYPE_I8, "I8", 1 }, { DM_DTYPE_U64, "U64", 8 },
        { DM_DTYPE_U32, "U32", 4 }, { DM_DTYPE_U16, "U16", 2 }, { DM_DTYPE_U8, "U8", 1 },
        { DM_DTYPE_BOOL, "BOOL", 1 },
    };
    ft_check(sizeof want / sizeof *want == DM_DTYPE_COUNT, "dtype table has %d entries", DM_DTYPE_COUNT);
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        ft_check(!strcmp(dm_dtype_name(want[i].t), want[i].name), "dtype name %s", want[i].name);
        ft_check(dm_dtype_from_name(want[i].name) == want[i].t, "dtype from name %s", want[i].name);
        ft_check(dm_dtype_size(want[i].t) == want[i].size, "dtype size %s", want[i].name);
    }
    ft_check(dm_dtype_from_name("bf16") == DM_DTYPE_INVALID, "dtype names are case sensitive");
    ft_check(dm_dtype_from_name("F4") == DM_DTYPE_INVALID, "unknown dtype accepted");
    /* element 1 of a two-element array, for every dtype: -3 or 200 or a code */
    uint8_t buf[16];
    double f64 = -3;
    float f32 = -3;
    uint16_t f16 = dm_f32_to_f16(-3), bf = dm_f32_to_bf16(-3);
    int64_t i64 = -3;
    int32_t i32 = -3;
    int16_t i16 = -3;
    uint64_t u64 = 200;
    uint32_t u32 = 200;
    uint16_t u16 = 200;
    const struct { dm_dtype t; const void *v; double want; } rd[] = {
        { DM_DTYPE_F64, &f64, -3 }, { DM_DTYPE_F32, &f32, -3 }, { DM_DTYPE_F16, &f16, -3 },
        { DM_DTYPE_BF16, &bf, -3 }, { DM_DTYPE_I64, &i64, -3 }, { DM_DTYPE_I32, &i32, -3 },
        { DM_DTYPE_I16, &i16, -3 }, { DM_DTYPE_U64, &u64, 200 }, { DM_DTYPE_U32, &u32, 200 },
        { DM_DTYPE_U16, &u16, 200 },
    };
    for (size_t i = 0; i < sizeof rd / sizeof *rd; i++) {
        size_t es = dm_dtype_size(rd[i].t);
        memset(buf, 0x55, sizeof buf);
        memcpy(buf + es, rd[i].v, es);
        double got = dm_dtype_read(rd[i].t, buf, 1);
        ft_check(got == rd[i].want, "dm_dtype_read %s = %g want %g", dm_dtype_name(rd[i].t), got, rd[i].want);
    }
    const uint8_t bytes[2] = { 0, 0xfd };   /* I8 -3, U8 253, E4M3 -(1+5/8)*2^8 = -416 */
    ft_check(dm_dtype_read(DM_DTYPE_I8, bytes, 1) == -3, "dm_dtype_read I8");
    ft_check(dm_dtype_read(DM_DTYPE_U8, bytes, 1) == 253, "dm_dtype_read U8");
    ft_check(dm_dtype_read(DM_DTYPE_BOOL, bytes, 1) == 253, "dm_dtype_read BOOL");
    ft_check(dm_dtype_read(DM_DTYPE_F8_E4M3, bytes, 1) == -416, "dm_dtype_read E4M3");
    ft_check(dm_dtype_read(DM_DTYPE_F8_E5M2, (const uint8_t[]){ 0, 0xbd }, 1) == -1.25, "dm_dtype_read E5M2");
    ft_check(isnan(dm_dtype_read(DM_DTYPE_F8_E8M0, (const uint8_t[]){ 0, 0xff }, 1)), "dm_dtype_read E8M0 NaN");
}

int main(void)
{
    test_e4m3();
    test_e5m2();
    test_e8m0();
    test_e2m1();
    test_dtypes();
    return ft_finish("test_codecs");
}
