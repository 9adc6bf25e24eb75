/* rng — the sampler's random numbers: xoshiro256** (Blackman & Vigna, 2018)
 * seeded through splitmix64, so one 64-bit seed gives a well-mixed 256-bit
 * state (an all-zero state, which xoshiro cannot leave, is impossible in
 * practice). Same seed, same stream, on every platform. */
#include "sample/sample.h"

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* One splitmix64 step: advances *x and returns the mixed output. */
static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void dm_rng_seed(dm_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t dm_rng_next(dm_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* The top 53 bits (the best ones of xoshiro256**) scaled by 2^-53: every
 * value is a multiple of 2^-53 in [0, 1). */
double dm_rng_uniform(dm_rng *r)
{
    return (double)(dm_rng_next(r) >> 11) * 0x1.0p-53;
}
