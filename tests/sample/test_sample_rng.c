/* test_sample_rng — the sampler's RNG against known outputs. The splitmix64 value
 * for seed 0 (0xE220A8397B1DCDAF) is the published first output of that
 * generator; the xoshiro256** streams below were produced by an independent
 * Python implementation of splitmix64 seeding + xoshiro256** (Python ints
 * masked to 64 bits), e.g.
 *   s = [splitmix64 outputs 1..4 of seed]; r = rotl(s1*5, 7)*9; t = s1<<17;
 *   s2^=s0; s3^=s1; s1^=s2; s0^=s3; s2^=t; s3 = rotl(s3, 45)
 * and dm_rng_uniform = (next >> 11) * 2^-53. */
#include "sample/sample_check.h"

/* uniform mean over N draws: 5 sigma of sqrt(1/12/N) */
#define N_UNIFORM 1000000
#define MEAN_TOL (5 * 0.28867513459481287 / 1000.0)

static void test_known_streams(void)
{
    static const struct {
        uint64_t seed;
        uint64_t out[4];
    } v[] = {
        { 0, { 0x99ec5f36cb75f2b4ull, 0xbf6e1f784956452aull, 0x1a5f849d4933e6e0ull, 0x6aa594f1262d2d2cull } },
        { 42, { 0x15780b2e0c2ec716ull, 0x6104d9866d113a7eull, 0xae17533239e499a1ull, 0xecb8ad4703b360a1ull } },
        { UINT64_MAX, { 0x8f5520d52a7ead08ull, 0xc476a018caa1802dull, 0x81de31c0d260469eull, 0xbf658d7e065f3c2full } },
    };
    dm_rng r;
    dm_rng_seed(&r, 0);
    CHECK(r.s[0] == 0xE220A8397B1DCDAFull, "splitmix64(0) first output %016llx", (unsigned long long)r.s[0]);
    for (size_t k = 0; k < sizeof v / sizeof v[0]; k++) {
        dm_rng_seed(&r, v[k].seed);
        for (int i = 0; i < 4; i++) {
            uint64_t x = dm_rng_next(&r);
            CHECK(x == v[k].out[i], "seed %llu output %d: %016llx, want %016llx",
                  (unsigned long long)v[k].seed, i, (unsigned long long)x, (unsigned long long)v[k].out[i]);
        }
    }
    /* the fifth output of seed 42 as a uniform, exactly */
    dm_rng_seed(&r, 42);
    for (int i = 0; i < 4; i++)
        dm_rng_next(&r);
    double u = dm_rng_uniform(&r);
    CHECK(u == 0.9918039142821028, "uniform: %.17g, want 0.9918039142821028", u);
}

/* [0, 1), multiples of 2^-53 that use all 53 bits, mean 1/2. */
static void test_uniform(void)
{
    dm_rng r;
    dm_rng_seed(&r, 2024);
    double sum = 0;
    bool low_bit = false, out_of_range = false, off_grid = false;
    for (int i = 0; i < N_UNIFORM; i++) {
        double u = dm_rng_uniform(&r);
        double m = u * 0x1.0p53;
        out_of_range |= !(u >= 0 && u < 1);
        off_grid |= m != floor(m);
        low_bit |= fmod(m, 2.0) == 1.0;
        sum += u;
    }
    CHECK(!out_of_range, "a uniform fell outside [0, 1)");
    CHECK(!off_grid, "a uniform is not a multiple of 2^-53");
    CHECK(low_bit, "bit 53 of the uniforms never set: fewer than 53 random bits");
    double mean = sum / N_UNIFORM;
    CHECK(fabs(mean - 0.5) <= MEAN_TOL, "mean %.6f, want 0.5 +- %.4f", mean, MEAN_TOL);
}

int main(void)
{
    test_known_streams();
    test_uniform();
    return check_exit("test_sample_rng");
}
