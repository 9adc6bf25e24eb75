/* test_rope — RoPE against a float64 transcription of Hugging Face's
 * formulas written here (transformers modeling_rope_utils
 * _compute_default_rope_parameters / _compute_yarn_parameters with
 * truncate=true, and DeepSeek's softmax-scale mscale²):
 *   - DeepSeek-V3 YaRN (dim 64, theta 10000, factor 40, original 4096,
 *     beta 32/1, mscale = mscale_all_dim = 1): low = 10, high = 23 (arch.md
 *     §2.5), cos/sin scale 1, softmax multiplier (0.1·ln 40 + 1)²;
 *   - mscale_all_dim = 0 (HF falls back to get_mscale(factor)), low == high;
 *   - GLM default rope; interleaved and half-split rotation at several
 *     positions, and the equivalence interleaved(x) = half-split on
 *     [evens, odds] (HF's apply_rotary_pos_emb_interleave).
 * Tolerances: TOL_FREQ on inv_freq (both double), TOL_ROT on rotated floats
 * relative to the pair's magnitude (one float rounding of a double result). */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_FREQ 1e-14
#define TOL_ROT 3e-7

static int g_fail;

static void expect(const char *what, int i, double got, double want, double tol, double mag)
{
    if (!(fabs(got - want) <= tol * mag)) {
        printf("FAIL %s [%d]: got %.17g, want %.17g (err %.3g)\n", what, i, got, want, fabs(got - want));
        g_fail++;
    }
}

/* ---- the oracle: HF's yarn code, line by line, in double ---------------- */

static double hf_mscale(double scale, double m) { return scale <= 1 ? 1.0 : 0.1 * m * log(scale) + 1.0; }

static double hf_correction_dim(double num_rot, int dim, double base, double maxpos)
{
    return (dim * log(maxpos / (num_rot * 2 * M_PI))) / (2 * log(base));
}

typedef struct hf_out {
    double inv_freq[256];
    double attention_factor, softmax_mult, low, high;
} hf_out;

static void hf_rope(const dm_rope *r, hf_out *o)
{
    const int dim = r->dim, half = dim / 2;
    double pos_freqs[256];
    for (int i = 0; i < half; i++)
        pos_freqs[i] = pow(r->theta, (double)(2 * i) / dim);
    if (!r->yarn || r->factor <= 1) {
        for (int i = 0; i < half; i++)
            o->inv_freq[i] = 1.0 / pos_freqs[i];
        o->attention_factor = o->softmax_mult = 1.0;
        return;
    }
    double factor = r->factor;
    o->attention_factor = (r->mscale != 0 && r->mscale_all_dim != 0)
                              ? hf_mscale(factor, r->mscale) / hf_mscale(factor, r->mscale_all_dim)
                              : hf_mscale(factor, 1.0);
    o->softmax_mult = r->mscale_all_dim != 0 ? pow(hf_mscale(factor, r->mscale_all_dim), 2) : 1.0;
    double beta_fast = r->beta_fast != 0 ? r->beta_fast : 32, beta_slow = r->beta_slow != 0 ? r->beta_slow : 1;
    double low = floor(hf_correction_dim(beta_fast, dim, r->theta, (double)r->original_max_position));
    double high = ceil(hf_correction_dim(beta_slow, dim, r->theta, (double)r->original_max_position));
    low = fmax(low, 0);
    high = fmin(high, dim - 1);
    if (low == high)
        high += 0.001;
    o->low = low, o->high = high;
    for (int i = 0; i < half; i++) {
        double inv_extrapolation = 1.0 / pos_freqs[i];
        double inv_interpolation = 1.0 / (factor * pos_freqs[i]);
        double ramp = fmin(fmax((i - low) / (high - low), 0.0), 1.0);
        double extrapolation_factor = 1 - ramp;
        o->inv_freq[i] = inv_interpolation * (1 - extrapolation_factor) + inv_extrapolation * extrapolation_factor;
    }
}

/* Rotation oracle in double. */
static void hf_rotate(const float *x, double *out, const dm_rope *r, const hf_out *o, int64_t pos)
{
    const int half = r->dim / 2;
    for (int i = 0; i < half; i++) {
        double ang = (double)pos * o->inv_freq[i];
        double c = cos(ang) * o->attention_factor, s = sin(ang) * o->attention_factor;
        int i0 = r->interleaved ? 2 * i : i, i1 = r->interleaved ? 2 * i + 1 : i + half;
        out[i0] = x[i0] * c - x[i1] * s;
        out[i1] = x[i0] * s + x[i1] * c;
    }
}

/* ---- checks ----------------------------------------------------------------- */

static void check_rope(const char *what, const dm_rope *r)
{
    hf_out o = { .low = 0 };
    hf_rope(r, &o);
    double inv[256];
    dm_rope_inv_freq(r, inv);
    for (int i = 0; i < r->dim / 2; i++)
        expect(what, i, inv[i], o.inv_freq[i], TOL_FREQ, o.inv_freq[i]);
    expect(what, -1, dm_rope_cos_sin_scale(r), o.attention_factor, TOL_FREQ, 1);
    expect(what, -2, dm_rope_softmax_mscale(r), o.softmax_mult, TOL_FREQ, 1);
    if (r->yarn && r->factor > 1) {
        double low, high;
        dm_rope_yarn_range(r, &low, &high);
        expect(what, -3, low, o.low, 0, 1);
        expect(what, -4, high, o.high, 0, 1);
    }
    static const int64_t positions[] = { 0, 1, 17, 4095, 163839, 1048575 };
    float x[256] = { 0 }, y[256];
    double want[256];
    for (int il = 0; il <= 1; il++) {
        dm_rope rr = *r;
        rr.interleaved = il;
        for (size_t p = 0; p < sizeof positions / sizeof positions[0]; p++) {
            for (int i = 0; i < r->dim; i++)
                x[i] = (float)sin(0.7 * i + 0.3 * (double)p) * 2.0f;
            memcpy(y, x, (size_t)r->dim * sizeof x[0]);
            dm_rope_apply(y, &rr, inv, positions[p]);
            hf_rotate(x, want, &rr, &o, positions[p]);
            for (int i = 0; i < r->dim; i++) {
                int j = il ? (i ^ 1) : (i < r->dim / 2 ? i + r->dim / 2 : i - r->dim / 2);
                double mag = (fabs(x[i]) + fabs(x[j])) * o.attention_factor;
                expect(what, i, y[i], want[i], TOL_ROT, mag);
            }
        }
    }
}

/* interleaved(x) == unpermute(half_split(permute(x))), permute = [evens, odds]. */
static void check_interleave_equivalence(const dm_rope *r)
{
    double inv[256];
    dm_rope_inv_freq(r, inv);
    const int dim = r->dim, half = dim / 2;
    float x[256] = { 0 }, a[256], p[256];
    for (int i = 0; i < dim; i++)
        x[i] = (float)cos(1.3 * i);
    dm_rope ri = *r, rh = *r;
    ri.interleaved = true;
    rh.interleaved = false;
    memcpy(a, x, (size_t)dim * sizeof x[0]);
    dm_rope_apply(a, &ri, inv, 12345);
    for (int i = 0; i < half; i++)
        p[i] = x[2 * i], p[i + half] = x[2 * i + 1];
    dm_rope_apply(p, &rh, inv, 12345);
    for (int i = 0; i < half; i++) {
        expect("interleave equivalence", 2 * i, a[2 * i], p[i], 0, 1);
        expect("interleave equivalence", 2 * i + 1, a[2 * i + 1], p[i + half], 0, 1);
    }
}

int main(void)
{
    dm_rope ds3 = { .dim = 64, .theta = 10000, .interleaved = true, .yarn = true, .factor = 40,
                    .beta_fast = 32, .beta_slow = 1, .mscale = 1, .mscale_all_dim = 1,
                    .original_max_position = 4096 };
    double low, high;
    dm_rope_yarn_range(&ds3, &low, &high);
    if (low != 10 || high != 23) {
        printf("FAIL DeepSeek-V3 YaRN range: low %g high %g, want 10 and 23\n", low, high);
        g_fail++;
    }
    const double m = 0.1 * log(40.0) + 1.0;
    expect("DeepSeek-V3 softmax mscale", 0, dm_rope_softmax_mscale(&ds3), m * m, 1e-15, 1);
    expect("DeepSeek-V3 cos/sin scale", 0, dm_rope_cos_sin_scale(&ds3), 1.0, 0, 1);
    double inv[32];
    dm_rope_inv_freq(&ds3, inv);
    for (int i = 0; i < 32; i++) {   /* i <= low keeps theta^(-2i/64); i >= high is divided by 40 */
        double base = pow(10000.0, -2.0 * i / 64);
        if (i <= 10)
            expect("DeepSeek-V3 inv_freq (extrapolated)", i, inv[i], base, 1e-15, base);
        if (i >= 23)
            expect("DeepSeek-V3 inv_freq (interpolated)", i, inv[i], base / 40, 1e-15, base / 40);
    }
    check_rope("deepseek-v3 yarn", &ds3);

    dm_rope no_all = ds3;
    no_all.mscale_all_dim = 0;   /* HF: attention_factor = get_mscale(factor) = 1.3689 */
    check_rope("yarn mscale_all_dim=0", &no_all);
    expect("yarn mscale_all_dim=0 cos/sin scale", 0, dm_rope_cos_sin_scale(&no_all), m, 1e-15, 1);
    expect("yarn mscale_all_dim=0 softmax", 0, dm_rope_softmax_mscale(&no_all), 1.0, 0, 1);

    dm_rope mixed = ds3;
    mixed.mscale = 0.8, mixed.mscale_all_dim = 0.5, mixed.beta_fast = 0, mixed.beta_slow = 0;
    check_rope("yarn mscale 0.8/0.5, default betas", &mixed);

    dm_rope equal = ds3;   /* floor(cd(32)) = 63 = dim-1 = clamp of ceil(cd(1)): HF's high += 0.001 */
    equal.original_max_position = 16000000000LL;
    dm_rope_yarn_range(&equal, &low, &high);
    if (low != 63 || high != 63.001) {
        printf("FAIL low == high case: low %.17g high %.17g, want 63 and 63.001\n", low, high);
        g_fail++;
    }
    check_rope("yarn low == high", &equal);

    dm_rope glm = { .dim = 64, .theta = 10000, .interleaved = true };
    check_rope("glm default", &glm);
    dm_rope big = { .dim = 128, .theta = 1000000, .interleaved = false };
    check_rope("half-split theta 1e6 dim 128", &big);
    check_interleave_equivalence(&ds3);
    check_interleave_equivalence(&glm);

    if (g_fail) {
        printf("test_rope: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_rope: all passed\n");
    return 0;
}
