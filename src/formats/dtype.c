/* dtype — the table of safetensors dtypes and the scalar codecs for the small
 * float formats (bf16, f16, FP8 E4M3/E5M2, E8M0, FP4 E2M1). These are the
 * reference conversions: SIMD kernels elsewhere must agree with them bit for
 * bit. Bit layouts: shared/research/quant.md §2.1. */
#include "formats/formats.h"

#include <math.h>
#include <string.h>

static const struct {
    const char *name;
    size_t size;
} dtype_table[DM_DTYPE_COUNT] = {
    [DM_DTYPE_F64] = { "F64", 8 },
    [DM_DTYPE_F32] = { "F32", 4 },
    [DM_DTYPE_F16] = { "F16", 2 },
    [DM_DTYPE_BF16] = { "BF16", 2 },
    [DM_DTYPE_F8_E4M3] = { "F8_E4M3", 1 },
    [DM_DTYPE_F8_E5M2] = { "F8_E5M2", 1 },
    [DM_DTYPE_F8_E8M0] = { "F8_E8M0", 1 },
    [DM_DTYPE_I64] = { "I64", 8 },
    [DM_DTYPE_I32] = { "I32", 4 },
    [DM_DTYPE_I16] = { "I16", 2 },
    [DM_DTYPE_I8] = { "I8", 1 },
    [DM_DTYPE_U64] = { "U64", 8 },
    [DM_DTYPE_U32] = { "U32", 4 },
    [DM_DTYPE_U16] = { "U16", 2 },
    [DM_DTYPE_U8] = { "U8", 1 },
    [DM_DTYPE_BOOL] = { "BOOL", 1 },
};

const char *dm_dtype_name(dm_dtype t)
{
    return (t >= 0 && t < DM_DTYPE_COUNT) ? dtype_table[t].name : "?";
}

dm_dtype dm_dtype_from_name(const char *name)
{
    for (int i = 0; i < DM_DTYPE_COUNT; i++)
        if (!strcmp(dtype_table[i].name, name))
            return (dm_dtype)i;
    return DM_DTYPE_INVALID;
}

size_t dm_dtype_size(dm_dtype t)
{
    return (t >= 0 && t < DM_DTYPE_COUNT) ? dtype_table[t].size : 0;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static float bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t dm_f32_to_bf16(float f)
{
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)          /* NaN: keep it quiet NaN */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fffu + ((u >> 16) & 1);                /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float dm_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0) {
        /* zero or subnormal: man * 2^-24, exact in f32 */
        float v = ldexpf((float)man, -24);
        return sign ? -v : v;
    }
    if (exp == 31)
        return bits_f32(sign | 0x7f800000u | (man << 13));
    return bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t dm_f32_to_f16(float f)
{
    uint32_t u = f32_bits(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u)
        return sign | 0x7e00;                      /* NaN */
    if (a >= 0x477ff000u)                          /* rounds to >= 65520: inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) {                         /* below 2^-14: subnormal or zero */
        float v = bits_f32(a);
        /* v * 2^24 rounded to nearest even integer is the subnormal mantissa */
        float m = nearbyintf(v * 16777216.0f);
        return sign | (uint16_t)m;
    }
    uint32_t exp = (a >> 23) - 112, man = a & 0x7fffff;
    uint32_t h = (exp << 10) | (man >> 13);
    uint32_t rest = man & 0x1fff;
    if (rest > 0x1000 || (rest == 0x1000 && (h & 1)))
        h++;                                       /* may carry into the exponent: correct */
    return sign | (uint16_t)h;
}

float dm_e4m3_to_f32(uint8_t b)
{
    uint32_t sign = b >> 7, exp = (b >> 3) & 0xf, man = b & 7;
    float v;
    if (exp == 15 && man == 7)
        return NAN;
    if (exp == 0)
        v = ldexpf((float)man, -9);                /* subnormal: m/8 * 2^-6 */
    else
        v = ldexpf(1.0f + (float)man / 8.0f, (int)exp - 7);
    return sign ? -v : v;
}

/* Nearest representable code among the non-negative codes [0, max_code] of a
 * format whose magnitudes increase with the code, ties to the even code. */
static uint8_t nearest_code(float a, float (*decode)(uint8_t), int max_code)
{
    int lo = 0, hi = max_code;
    if (a >= decode((uint8_t)max_code))
        return (uint8_t)max_code;                  /* saturate */
    while (hi - lo > 1) {                          /* decode(lo) <= a < decode(hi) */
        int mid = (lo + hi) / 2;
        if (decode((uint8_t)mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    float dl = a - decode((uint8_t)lo), dh = decode((uint8_t)hi) - a;
    if (dl < dh)
        return (uint8_t)lo;
    if (dh < dl)
        return (uint8_t)hi;
    return (uint8_t)((lo & 1) ? hi : lo);
}

/* Round to nearest, ties to even, by bit manipulation (as dm_f32_to_bf16
 * does): E4M3 keeps 3 of f32's 23 mantissa bits; below 2^-6 the code is
 * the subnormal m·2^-9 with m = rint(|f|·2^9). Saturates at ±448 (no inf). */
uint8_t dm_f32_to_e4m3(float f)
{
    if (isnan(f))
        return 0x7f;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a >= 448.0f)
        return sign | 0x7e;
    if (a < 0x1p-6f)                                   /* subnormal (or rounds up to 2^-6 = code 8) */
        return sign | (uint8_t)nearbyintf(a * 512.0f);
    uint32_t u = f32_bits(a);
    u += 0x7ffffu + ((u >> 20) & 1);                   /* round the 20 dropped bits to even */
    uint32_t exp = (u >> 23) - 120, man = (u >> 20) & 7;   /* rebias 127 -> 7 */
    uint32_t code = (exp << 3) | man;
    return sign | (uint8_t)(code > 0x7e ? 0x7e : code);
}

float dm_e5m2_to_f32(uint8_t b)
{
    uint32_t sign = b >> 7, exp = (b >> 2) & 0x1f, man = b & 3;
    float v;
    if (exp == 31)
        v = man ? NAN : INFINITY;
    else if (exp == 0)
        v = ldexpf((float)man, -16);               /* m/4 * 2^-14 */
    else
        v = ldexpf(1.0f + (float)man / 4.0f, (int)exp - 15);
    return sign ? -v : v;
}

uint8_t dm_f32_to_e5m2(float f)
{
    if (isnan(f))
        return 0x7e;
    uint8_t sign = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    /* halfway between the largest finite (57344, odd code 0x7b) and 2^16 ties
     * up to the even code, which is inf: IEEE overflow */
    if (a >= 61440.0f)
        return sign | 0x7c;
    return sign | nearest_code(a, dm_e5m2_to_f32, 0x7b);
}

float dm_e8m0_to_f32(uint8_t b)
{
    if (b == 0xff)
        return NAN;
    return ldexpf(1.0f, (int)b - 127);
}

uint8_t dm_f32_to_e8m0_floor(float f)
{
    if (!(f > 0))
        return 0;
    if (isinf(f))
        return 254;
    int e;
    frexpf(f, &e);                                 /* f = m * 2^e, m in [0.5, 1) */
    int b = e - 1 + 127;
    return (uint8_t)(b < 0 ? 0 : b > 254 ? 254 : b);
}

const float dm_e2m1_values[16] = {
    0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f,
};

static float e2m1_decode(uint8_t c) { return dm_e2m1_values[c & 15]; }

uint8_t dm_f32_to_e2m1(float f)
{
    if (isnan(f))
        return 0;
    uint8_t sign = signbit(f) ? 8 : 0;
    return sign | nearest_code(fabsf(f), e2m1_decode, 7);
}

double dm_dtype_read(dm_dtype t, const uint8_t *p, int64_t i)
{
    switch (t) {
    case DM_DTYPE_F64: { double v; memcpy(&v, p + 8 * i, 8); return v; }
    case DM_DTYPE_F32: { float v; memcpy(&v, p + 4 * i, 4); return v; }
    case DM_DTYPE_F16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return dm_f16_to_f32(v); }
    case DM_DTYPE_BF16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return dm_bf16_to_f32(v); }
    case DM_DTYPE_F8_E4M3: return dm_e4m3_to_f32(p[i]);
    case DM_DTYPE_F8_E5M2: return dm_e5m2_to_f32(p[i]);
    case DM_DTYPE_F8_E8M0: return dm_e8m0_to_f32(p[i]);
    case DM_DTYPE_I64: { int64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case DM_DTYPE_I32: { int32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case DM_DTYPE_I16: { int16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case DM_DTYPE_I8: return (int8_t)p[i];
    case DM_DTYPE_U64: { uint64_t v; memcpy(&v, p + 8 * i, 8); return (double)v; }
    case DM_DTYPE_U32: { uint32_t v; memcpy(&v, p + 4 * i, 4); return v; }
    case DM_DTYPE_U16: { uint16_t v; memcpy(&v, p + 2 * i, 2); return v; }
    case DM_DTYPE_U8:
    case DM_DTYPE_BOOL: return p[i];
    default: return NAN;
    }
}
