/* rope — rotary position embedding as Hugging Face computes it, with YaRN
 * (DeepSeek-V3 rope_scaling) and both pairings: interleaved (2i, 2i+1), used
 * by GLM and DeepSeek MLA, and half-split (i, i+dim/2), used by the
 * DeepSeek-V3.2 indexer (shared/research/arch.md §2.4–2.5).
 *
 * Choices where HF leaves room:
 *  - Everything is computed in double (HF computes inv_freq in float32); the
 *    angle pos·inv_freq is double, so large positions lose nothing.
 *  - YaRN follows transformers' _compute_yarn_parameters with truncate=true
 *    (floor/ceil of the correction dims) and its `or` defaults: beta_fast 0
 *    means 32, beta_slow 0 means 1. HF replaces `factor` by
 *    max_position_embeddings / original_max_position_embeddings when the
 *    config has the latter; that is the caller's business (dm_rope.factor is
 *    used as given).
 *  - attention_factor (the cos/sin multiplier): get_mscale(f, mscale) /
 *    get_mscale(f, mscale_all_dim) when both are non-zero, else
 *    get_mscale(f, 1), as HF's truthiness test does.
 *  - softmax multiplier: get_mscale(f, mscale_all_dim)² when mscale_all_dim
 *    is non-zero, else 1 (HF DeepSeek attention: `if mscale_all_dim:`).
 * dm_rope_backward (training) applies the adjoint of dm_rope_apply. */
#include "ops/ops.h"

#include <math.h>

static bool yarn_on(const dm_rope *r) { return r->yarn && r->factor > 1.0; }

static double get_mscale(double scale, double m)
{
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

/* Dimension index at which a wavelength makes n_rot rotations over the
 * original context (YaRN's find_correction_dim). */
static double correction_dim(const dm_rope *r, double n_rot)
{
    return r->dim * log((double)r->original_max_position / (n_rot * 2.0 * M_PI)) / (2.0 * log(r->theta));
}

void dm_rope_yarn_range(const dm_rope *r, double *low, double *high)
{
    DM_ASSERT(r->original_max_position > 0);
    double bf = r->beta_fast != 0 ? r->beta_fast : 32.0, bs = r->beta_slow != 0 ? r->beta_slow : 1.0;
    double lo = floor(correction_dim(r, bf)), hi = ceil(correction_dim(r, bs));
    lo = lo > 0 ? lo : 0;
    hi = hi < r->dim - 1 ? hi : r->dim - 1;
    if (lo == hi)
        hi += 0.001;   /* HF: prevent a zero-width ramp */
    *low = lo;
    *high = hi;
}

void dm_rope_inv_freq(const dm_rope *r, double *inv_freq)
{
    DM_ASSERT(r->dim > 0 && r->dim % 2 == 0 && r->theta > 0);
    const int half = r->dim / 2;
    for (int i = 0; i < half; i++)
        inv_freq[i] = pow(r->theta, -2.0 * i / r->dim);
    if (!yarn_on(r))
        return;
    double low, high;
    dm_rope_yarn_range(r, &low, &high);
    for (int i = 0; i < half; i++) {
        double ramp = (i - low) / (high - low);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        /* ramp 0: high-frequency pair keeps its frequency (extrapolation);
         * ramp 1: low-frequency pair is interpolated (divided by factor) */
        inv_freq[i] = inv_freq[i] / r->factor * ramp + inv_freq[i] * (1.0 - ramp);
    }
}

double dm_rope_cos_sin_scale(const dm_rope *r)
{
    if (!yarn_on(r))
        return 1.0;
    if (r->mscale != 0 && r->mscale_all_dim != 0)
        return get_mscale(r->factor, r->mscale) / get_mscale(r->factor, r->mscale_all_dim);
    return get_mscale(r->factor, 1.0);
}

double dm_rope_softmax_mscale(const dm_rope *r)
{
    if (!yarn_on(r) || r->mscale_all_dim == 0)
        return 1.0;
    double m = get_mscale(r->factor, r->mscale_all_dim);
    return m * m;
}

/* x ← scale·R(sign·pos·inv_freq)·x, pair by pair (sign −1: the transpose). */
static void rope_rotate(float *x, const dm_rope *r, const double *inv_freq, int64_t pos, double sign)
{
    const int half = r->dim / 2;
    const double scale = dm_rope_cos_sin_scale(r);
    for (int i = 0; i < half; i++) {
        const double ang = (double)pos * inv_freq[i];
        const double c = cos(ang) * scale, s = sign * sin(ang) * scale;
        float *p0 = r->interleaved ? x + 2 * i : x + i;
        float *p1 = r->interleaved ? x + 2 * i + 1 : x + i + half;
        const double a = *p0, b = *p1;
        *p0 = (float)(a * c - b * s);
        *p1 = (float)(a * s + b * c);
    }
}

void dm_rope_apply(float *x, const dm_rope *r, const double *inv_freq, int64_t pos)
{
    rope_rotate(x, r, inv_freq, pos, 1.0);
}

/* The forward is linear, y = scale·R(θ)·x, so its adjoint is scale·R(θ)ᵀ =
 * scale·R(−θ): the same rotation with sin negated. */
void dm_rope_backward(float *dx, const dm_rope *r, const double *inv_freq, int64_t pos)
{
    rope_rotate(dx, r, inv_freq, pos, -1.0);
}
