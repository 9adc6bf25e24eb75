/* test_backward — the training ops' backward functions against central
 * finite differences of float64 forwards written here, on random inputs of
 * several sizes (odd ones included):
 *   RMSNorm, LayerNorm (one row, and the rows variants), RoPE (both pairings,
 *   YaRN on/off, large positions), SiLU-gating, softmax, attention's scaled
 *   masked softmax, cross entropy (also against a float64 formula for loss
 *   and gradient), embedding gather/scatter-add.
 * Plus the contracts: backward functions accumulate (dx = prior + gradient),
 * "written" ones overwrite and may alias as documented, rows variants and
 * the scatter-add are bitwise independent of the thread count.
 * (dm_sgemm_mt is tested in test_sgemm_mt.c.)
 *
 * The oracle: for an op f and a random upstream gradient dy, L(v) = Σ dy·f(v)
 * in float64, v the op's inputs (exact copies of the float inputs); the
 * five-point stencil (8·(L(v+h) − L(v−h)) − (L(v+2h) − L(v−2h)))/(12h) has
 * truncation error O(h⁴), far below float rounding at the h used here, so
 * the comparison measures the float kernel.
 * Tolerances: a gradient passes when max|got − fd| <= TOL_x · max|fd| (over
 * the whole gradient vector: elements near zero are judged at the scale of
 * the vector, as they matter to an optimizer; max|fd| is floored at
 * GRAD_FLOOR for gradients that are identically zero).
 *   TOL_DOUBLE   kernels computing in double, one final float rounding
 *   TOL_FLOAT    kernels computing in float (expf, a few products)
 *   TOL_ACC      accumulation contract: after == prior + gradient, per
 *                element, relative to |prior| + |gradient| (two roundings)
 *   TOL_LOSS     cross-entropy loss (double) relative to the float64 formula
 *   TOL_CE_ELEM  cross-entropy gradient per element, relative to itself */
#include "ops/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOL_DOUBLE 5e-7
#define TOL_FLOAT 1e-6
#define TOL_ACC 2.5e-7
#define TOL_LOSS 1e-12
#define TOL_CE_ELEM 5e-7
#define FD_H 1e-3           /* stencil step, relative to the inputs' spread */
#define GRAD_FLOOR 1e-6     /* max|fd| below this (an identically zero gradient): judged absolutely */

static int g_fail;

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) * 0x1p-53;
}

static float *rand_vec(int64_t n, double lo, double hi)
{
    float *v = malloc((size_t)(n + 1) * 4);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * urand());
    return v;
}

static float *zeros(int64_t n) { return calloc((size_t)n + 1, 4); }

/* ---- the finite-difference oracle ------------------------------------------ */

typedef double (*loss_fn)(const double *v, const void *ctx);

/* g[i] = ∂L/∂v[i] for i < n by the five-point stencil; v is restored. */
static void fd_grad(loss_fn L, const void *ctx, double *v, int64_t n, double h, double *g)
{
    for (int64_t i = 0; i < n; i++) {
        const double s = v[i];
        double f[4];
        const double off[4] = { h, -h, 2 * h, -2 * h };
        for (int k = 0; k < 4; k++) {
            v[i] = s + off[k];
            f[k] = L(v, ctx);
        }
        v[i] = s;
        g[i] = (8.0 * (f[0] - f[1]) - (f[2] - f[3])) / (12.0 * h);
    }
}

/* max|got − want| <= tol · max|want|; prints the worst element on failure. */
static double check_grad(const char *what, int64_t size, const float *got, const double *want, int64_t n, double tol)
{
    double mx = 0, err = 0;
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++)
        mx = fmax(mx, fabs(want[i]));
    for (int64_t i = 0; i < n; i++) {
        const double e = fabs((double)got[i] - want[i]);
        if (!(e <= err)) {
            err = e;
            worst = i;
        }
    }
    const double rel = err / fmax(mx, GRAD_FLOOR);
    if (!(rel <= tol)) {
        printf("FAIL %s (size %lld) [%lld]: got %.9g, want %.9g (err %.3g, %.3g of max|grad| %.3g > %.3g)\n", what,
               (long long)size, (long long)worst, got[worst], want[worst], err, rel, mx, tol);
        g_fail++;
    }
    return rel;
}

/* after[i] == prior[i] + g[i] within TOL_ACC (the accumulation contract). */
static void check_acc(const char *what, const float *after, const float *prior, const float *g, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        const double want = (double)prior[i] + g[i], e = fabs(after[i] - want);
        if (!(e <= TOL_ACC * (fabs(prior[i]) + fabs(g[i])) + 1e-38)) {
            printf("FAIL %s accumulate [%lld]: got %.9g, want %.9g + %.9g\n", what, (long long)i, after[i], prior[i],
                   g[i]);
            g_fail++;
            return;
        }
    }
}

static void check_bitwise(const char *what, const float *a, const float *b, int64_t n)
{
    if (n > 0 && memcmp(a, b, (size_t)n * 4) != 0) {
        int64_t i = 0;
        while (a[i] == b[i] || (a[i] != a[i] && b[i] != b[i]))
            i++;
        printf("FAIL %s: not bitwise equal at [%lld]: %.9g vs %.9g\n", what, (long long)i, a[i], b[i]);
        g_fail++;
    }
}

static double g_worst[16];   /* worst relative error per op family, for the summary */
enum { W_RMS, W_LN, W_ROPE, W_SILU, W_SOFTMAX, W_ATTN, W_CE_FD, W_CE_LOSS, W_CE_ELEM, W_ROWS };

static void note(int family, double rel) { g_worst[family] = fmax(g_worst[family], rel); }

static double *to_double(double *dst, const float *src, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = src[i];
    return dst;
}

/* ---- RMSNorm and LayerNorm --------------------------------------------------- */

typedef struct norm_ctx {
    const double *dy;
    int64_t D;
    double eps;
    bool has_w, has_b, layer;
} norm_ctx;

/* v = [x | w (if has_w) | b (if has_b)]; Σ dy·norm(x). */
static double norm_loss(const double *v, const void *p)
{
    const norm_ctx *c = p;
    const int64_t D = c->D;
    const double *x = v, *w = c->has_w ? v + D : NULL, *b = c->has_b ? v + D * (1 + c->has_w) : NULL;
    double mean = 0, var = 0;
    if (c->layer) {
        for (int64_t i = 0; i < D; i++)
            mean += x[i];
        mean /= D;
    }
    for (int64_t i = 0; i < D; i++)
        var += (x[i] - mean) * (x[i] - mean);
    const double r = 1.0 / sqrt(var / D + c->eps);
    double L = 0;
    for (int64_t i = 0; i < D; i++)
        L += c->dy[i] * ((x[i] - mean) * r * (w ? w[i] : 1.0) + (b ? b[i] : 0.0));
    return L;
}

/* One norm case: FD gradient of every input, then the kernel from zero and
 * from a random prior (accumulation). */
static void norm_case(bool layer, int64_t D, double x_lo, double x_hi, float eps, bool has_w, bool has_b)
{
    const char *name = layer ? "dm_layernorm_backward" : "dm_rmsnorm_backward";
    float *x = rand_vec(D, x_lo, x_hi), *w = rand_vec(D, 0.5, 1.5), *b = rand_vec(D, -1, 1), *dy = rand_vec(D, -1, 1);
    const int64_t nv = D * (1 + has_w + has_b);
    double *v = malloc((size_t)nv * 8), *g = malloc((size_t)nv * 8), *dyd = malloc((size_t)D * 8);
    to_double(v, x, D);
    if (has_w)
        to_double(v + D, w, D);
    if (has_b)
        to_double(v + D * (1 + has_w), b, D);
    norm_ctx c = { to_double(dyd, dy, D), D, eps, has_w, has_b, layer };
    fd_grad(norm_loss, &c, v, nv, FD_H * (x_hi - x_lo) / 2, g);

    float *dx = zeros(D), *dw = zeros(D), *db = zeros(D);
    float *dx2 = rand_vec(D, -1, 1), *dw2 = rand_vec(D, -1, 1), *db2 = rand_vec(D, -1, 1);
    float *px = malloc(D * 4), *pw = malloc(D * 4), *pb = malloc(D * 4);
    memcpy(px, dx2, D * 4), memcpy(pw, dw2, D * 4), memcpy(pb, db2, D * 4);
    const float *wp = has_w ? w : NULL, *bp = has_b ? b : NULL;
    if (layer) {
        dm_layernorm_backward(dx, dw, db, dy, x, wp, bp, D, eps);
        dm_layernorm_backward(dx2, dw2, db2, dy, x, wp, bp, D, eps);
    } else {
        dm_rmsnorm_backward(dx, dw, dy, x, wp, D, eps);
        dm_rmsnorm_backward(dx2, dw2, dy, x, wp, D, eps);
    }
    const int fam = layer ? W_LN : W_RMS;
    note(fam, check_grad(name, D, dx, g, D, TOL_DOUBLE));
    check_acc(name, dx2, px, dx, D);
    if (has_w) {
        note(fam, check_grad(layer ? "dm_layernorm_backward dw" : "dm_rmsnorm_backward dw", D, dw, g + D, D,
                             TOL_DOUBLE));
        check_acc(name, dw2, pw, dw, D);
    } else {
        check_bitwise("dw untouched when w is NULL", dw2, pw, D);
    }
    if (layer && has_b) {
        note(fam, check_grad("dm_layernorm_backward db", D, db, g + D * (1 + has_w), D, TOL_DOUBLE));
        check_acc(name, db2, pb, db, D);
    }
    free(x), free(w), free(b), free(dy), free(v), free(g), free(dyd);
    free(dx), free(dw), free(db), free(dx2), free(dw2), free(db2), free(px), free(pw), free(pb);
}

static void test_norms(void)
{
    static const int64_t Ds[] = { 1, 2, 7, 64, 129, 1000 };
    for (size_t i = 0; i < sizeof Ds / sizeof Ds[0]; i++) {
        const int64_t D = Ds[i];
        norm_case(false, D, -2, 2, 1e-6f, true, false);
        norm_case(false, D, -2, 2, 1e-6f, false, false);
        norm_case(false, D, -1e-3, 1e-3, 1e-6f, true, false);   /* eps comparable to mean(x²) */
        norm_case(true, D, 3, 5, 1e-6f, true, true);            /* offset mean */
        norm_case(true, D, -2, 2, 1e-5f, false, false);
        norm_case(true, D, -1e-3, 1e-3, 1e-6f, true, true);
    }
}

/* Rows variants: dx rows bitwise the one-row function, dw/db against the
 * float64 sum of one-row gradients, bitwise across thread counts. */
static void rows_case(bool layer, int64_t T, int64_t D)
{
    const char *name = layer ? "dm_layernorm_backward_rows" : "dm_rmsnorm_backward_rows";
    const float eps = 1e-6f;
    float *x = rand_vec(T * D, -2, 2), *dy = rand_vec(T * D, -1, 1), *w = rand_vec(D, 0.5, 1.5), *b = rand_vec(D, -1, 1);
    float *dx1 = zeros(T * D), *dx = zeros(T * D), *dw = zeros(D), *db = zeros(D), *dwt = zeros(D), *dbt = zeros(D);
    float *y1 = zeros(T * D), *y = zeros(T * D);
    double *sw = calloc((size_t)D, 8), *sb = calloc((size_t)D, 8);
    for (int64_t t = 0; t < T; t++) {
        memset(dwt, 0, D * 4), memset(dbt, 0, D * 4);
        if (layer) {
            dm_layernorm_backward(dx1 + t * D, dwt, dbt, dy + t * D, x + t * D, w, b, D, eps);
            dm_layernorm(y1 + t * D, x + t * D, w, b, D, eps);
        } else {
            dm_rmsnorm_backward(dx1 + t * D, dwt, dy + t * D, x + t * D, w, D, eps);
            dm_rmsnorm(y1 + t * D, x + t * D, w, D, eps);
        }
        for (int64_t i = 0; i < D; i++)
            sw[i] += dwt[i], sb[i] += dbt[i];
    }
    float *res[2][3];
    for (int th = 1; th <= 2; th++) {
        dm_threads_set(th);
        memset(dx, 0, T * D * 4), memset(dw, 0, D * 4), memset(db, 0, D * 4);
        if (layer) {
            dm_layernorm_backward_rows(dx, dw, db, dy, x, w, b, T, D, eps);
            dm_layernorm_rows(y, x, w, b, T, D, eps);
        } else {
            dm_rmsnorm_backward_rows(dx, dw, dy, x, w, T, D, eps);
            dm_rmsnorm_rows(y, x, w, T, D, eps);
        }
        check_bitwise(name, dx, dx1, T * D);
        check_bitwise(layer ? "dm_layernorm_rows" : "dm_rmsnorm_rows", y, y1, T * D);
        note(W_ROWS, check_grad(name, T * D, dw, sw, D, TOL_DOUBLE));
        if (layer)
            note(W_ROWS, check_grad(name, T * D, db, sb, D, TOL_DOUBLE));
        res[th - 1][0] = dw, res[th - 1][1] = db;
        dw = zeros(D), db = zeros(D);
    }
    check_bitwise("rows backward dw, 1 vs 2 threads", res[0][0], res[1][0], D);
    check_bitwise("rows backward db, 1 vs 2 threads", res[0][1], res[1][1], D);
    for (int i = 0; i < 2; i++)
        free(res[i][0]), free(res[i][1]);
    free(x), free(dy), free(w), free(b), free(dx1), free(dx), free(dw), free(db), free(dwt), free(dbt);
    free(y1), free(y), free(sw), free(sb);
}

static void test_norm_rows(void)
{
    static const int64_t shapes[][2] = { { 0, 8 }, { 1, 1 }, { 5, 129 }, { 300, 200 }, { 77, 1031 } };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        rows_case(false, shapes[i][0], shapes[i][1]);
        rows_case(true, shapes[i][0], shapes[i][1]);
    }
    dm_threads_set(2);
}

/* ---- RoPE ----------------------------------------------------------------------- */

typedef struct rope_ctx {
    const double *dy, *inv_freq;
    const dm_rope *r;
    int64_t pos;
} rope_ctx;

static double rope_loss(const double *x, const void *p)
{
    const rope_ctx *c = p;
    const int half = c->r->dim / 2;
    const double scale = dm_rope_cos_sin_scale(c->r);
    double L = 0;
    for (int i = 0; i < half; i++) {
        const int i0 = c->r->interleaved ? 2 * i : i, i1 = c->r->interleaved ? 2 * i + 1 : i + half;
        const double ang = (double)c->pos * c->inv_freq[i], cs = cos(ang) * scale, sn = sin(ang) * scale;
        L += c->dy[i0] * (x[i0] * cs - x[i1] * sn) + c->dy[i1] * (x[i0] * sn + x[i1] * cs);
    }
    return L;
}

static void test_rope(void)
{
    static const int dims[] = { 2, 8, 64 };
    static const int64_t poss[] = { 0, 1, 37, 100000 };
    for (size_t di = 0; di < 3; di++)
        for (int mode = 0; mode < 4; mode++)
            for (size_t pi = 0; pi < 4; pi++) {
                dm_rope r = { .dim = dims[di], .theta = 10000, .interleaved = mode & 1, .yarn = mode & 2,
                              .factor = 40, .beta_fast = 32, .beta_slow = 1, .mscale = 0.707,
                              .mscale_all_dim = 1, .original_max_position = 4096 };
                const int D = r.dim;
                double inv_freq[32], v[64], g[64], dyd[64];
                dm_rope_inv_freq(&r, inv_freq);
                float *x = rand_vec(D, -2, 2), *dy = rand_vec(D, -1, 1), *dx = malloc(D * 4);
                rope_ctx c = { to_double(dyd, dy, D), inv_freq, &r, poss[pi] };
                fd_grad(rope_loss, &c, to_double(v, x, D), D, FD_H, g);
                memcpy(dx, dy, D * 4);
                dm_rope_backward(dx, &r, inv_freq, poss[pi]);
                note(W_ROPE, check_grad("dm_rope_backward", D, dx, g, D, TOL_DOUBLE));
                free(x), free(dy), free(dx);
            }
}

/* ---- SiLU-gating ------------------------------------------------------------------ */

typedef struct vec_ctx {
    const double *dy;
    int64_t n;
    double scale;
    const bool *mask;
} vec_ctx;

/* v = [g | u]; Σ dh·silu(g)·u. */
static double silu_loss(const double *v, const void *p)
{
    const vec_ctx *c = p;
    double L = 0;
    for (int64_t i = 0; i < c->n; i++)
        L += c->dy[i] * v[i] / (1.0 + exp(-v[i])) * v[c->n + i];
    return L;
}

static void test_silu(void)
{
    static const int64_t ns[] = { 1, 5, 33, 257 };
    for (size_t k = 0; k < 4; k++) {
        const int64_t n = ns[k];
        float *g = rand_vec(n, -8, 8), *u = rand_vec(n, -2, 2), *dh = rand_vec(n, -1, 1);
        if (n >= 5)
            g[0] = 30, g[1] = -30, g[2] = 100, g[3] = -100, g[4] = 0;   /* saturated σ, and 0 */
        double *v = malloc((size_t)n * 16), *gr = malloc((size_t)n * 16), *dyd = malloc((size_t)n * 8);
        to_double(v, g, n), to_double(v + n, u, n);
        vec_ctx c = { to_double(dyd, dh, n), n, 1, NULL };
        fd_grad(silu_loss, &c, v, 2 * n, FD_H, gr);
        float *dg = zeros(n), *du = zeros(n), *dg2 = rand_vec(n, -1, 1), *du2 = rand_vec(n, -1, 1);
        float *pg = malloc(n * 4), *pu = malloc(n * 4);
        memcpy(pg, dg2, n * 4), memcpy(pu, du2, n * 4);
        dm_silu_mul_backward(dg, du, dh, g, u, n);
        dm_silu_mul_backward(dg2, du2, dh, g, u, n);
        note(W_SILU, check_grad("dm_silu_mul_backward dg", n, dg, gr, n, TOL_FLOAT));
        note(W_SILU, check_grad("dm_silu_mul_backward du", n, du, gr + n, n, TOL_FLOAT));
        check_acc("dm_silu_mul_backward dg", dg2, pg, dg, n);
        check_acc("dm_silu_mul_backward du", du2, pu, du, n);
        free(g), free(u), free(dh), free(v), free(gr), free(dyd), free(dg), free(du), free(dg2), free(du2);
        free(pg), free(pu);
    }
}

/* ---- softmax and attention's masked scaled softmax -------------------------------- */

/* Σ dy·softmax(scale·v) over unmasked entries (masked ones are −inf). */
static double softmax_loss(const double *v, const void *p)
{
    const vec_ctx *c = p;
    double m = -INFINITY, S = 0, L = 0;
    for (int64_t i = 0; i < c->n; i++)
        if (!c->mask || !c->mask[i])
            m = fmax(m, c->scale * v[i]);
    for (int64_t i = 0; i < c->n; i++)
        if (!c->mask || !c->mask[i])
            S += exp(c->scale * v[i] - m);
    for (int64_t i = 0; i < c->n; i++)
        if (!c->mask || !c->mask[i])
            L += c->dy[i] * exp(c->scale * v[i] - m) / S;
    return L;
}

static void test_softmax(void)
{
    static const int64_t ns[] = { 1, 2, 9, 100, 1000 };
    for (size_t k = 0; k < 5; k++) {
        const int64_t n = ns[k];
        float *x = rand_vec(n, -5, 5), *y = malloc(n * 4), *dy = rand_vec(n, -1, 1), *dx = zeros(n);
        float *dx2 = rand_vec(n, -1, 1), *prior = malloc(n * 4);
        double *v = malloc((size_t)n * 8), *g = malloc((size_t)n * 8), *dyd = malloc((size_t)n * 8);
        memcpy(y, x, n * 4);
        dm_softmax(y, n);
        vec_ctx c = { to_double(dyd, dy, n), n, 1, NULL };
        fd_grad(softmax_loss, &c, to_double(v, x, n), n, FD_H, g);
        memcpy(prior, dx2, n * 4);
        dm_softmax_backward(dx, dy, y, n);
        dm_softmax_backward(dx2, dy, y, n);
        note(W_SOFTMAX, check_grad("dm_softmax_backward", n, dx, g, n, TOL_FLOAT));
        check_acc("dm_softmax_backward", dx2, prior, dx, n);
        free(x), free(y), free(dy), free(dx), free(dx2), free(prior), free(v), free(g), free(dyd);
    }
}

static void test_attn_softmax(void)
{
    static const int64_t ns[] = { 1, 7, 64, 300 };
    const float scale = 0.0883883f * 1.3f;   /* 1/sqrt(128) times a YaRN mscale² */
    for (size_t k = 0; k < 4; k++) {
        const int64_t n = ns[k];
        float *s = rand_vec(n, -30, 30), *p = malloc(n * 4), *dp = rand_vec(n, -1, 1), *ds = malloc(n * 4);
        bool *mask = calloc((size_t)n, 1);
        for (int64_t i = 1; i < n; i++)
            mask[i] = urand() < 0.25;   /* entry 0 stays visible */
        for (int64_t i = 0; i < n; i++)
            p[i] = mask[i] ? -INFINITY : scale * s[i];
        dm_softmax(p, n);
        double *v = malloc((size_t)n * 8), *g = malloc((size_t)n * 8), *dyd = malloc((size_t)n * 8);
        vec_ctx c = { to_double(dyd, dp, n), n, scale, mask };
        fd_grad(softmax_loss, &c, to_double(v, s, n), n, FD_H, g);
        for (int64_t i = 0; i < n; i++)
            g[i] = mask[i] ? 0.0 : g[i];
        dm_attn_softmax_backward(ds, dp, p, n, scale);
        note(W_ATTN, check_grad("dm_attn_softmax_backward", n, ds, g, n, TOL_FLOAT));
        for (int64_t i = 0; i < n; i++)
            if (mask[i] && ds[i] != 0.0f) {
                printf("FAIL dm_attn_softmax_backward: masked [%lld] = %g\n", (long long)i, ds[i]);
                g_fail++;
            }
        float *inplace = malloc(n * 4);
        memcpy(inplace, dp, n * 4);
        dm_attn_softmax_backward(inplace, inplace, p, n, scale);   /* ds aliases dp */
        check_bitwise("dm_attn_softmax_backward in place", inplace, ds, n);
        free(s), free(p), free(dp), free(ds), free(mask), free(v), free(g), free(dyd), free(inplace);
    }
}

/* ---- cross entropy ------------------------------------------------------------------ */

typedef struct ce_ctx {
    int64_t V;
    int target;
    double scale;
} ce_ctx;

/* scale · (log Σ exp(l) − l_t), shifted by the max. */
static double ce_loss(const double *l, const void *p)
{
    const ce_ctx *c = p;
    double m = -INFINITY, S = 0;
    for (int64_t i = 0; i < c->V; i++)
        m = fmax(m, l[i]);
    for (int64_t i = 0; i < c->V; i++)
        S += exp(l[i] - m);
    return c->scale * (log(S) + m - l[c->target]);
}

/* One row: loss against log1p(Σ_{i≠t} exp(l_i − l_t)) in long double (an
 * identity with positive terms only: no cancellation at either extreme),
 * gradient per element against scale·(p − onehot), FD for V <= 1000,
 * dlogits == NULL and in place (dlogits == logits) agreeing bitwise. */
static void ce_case(int64_t V, double lo, double hi, int target, double boost, float scale)
{
    float *l = rand_vec(V, lo, hi), *dl = malloc(V * 4), *dl2 = malloc(V * 4);
    l[target] += (float)boost;
    long double so = 0;
    for (int64_t i = 0; i < V; i++)
        if (i != target)
            so += expl((long double)l[i] - l[target]);
    const double want = (double)log1pl(so);
    double loss, loss2, loss3;
    dm_cross_entropy(dl, &loss, l, target, V, scale);
    const double lrel = fabs(loss - want) / fmax(want, 1e-300);
    note(W_CE_LOSS, lrel);
    if (!(fabs(loss - want) <= TOL_LOSS * want)) {
        printf("FAIL dm_cross_entropy loss (V %lld, target %d): got %.17g, want %.17g\n", (long long)V, target, loss,
               want);
        g_fail++;
    }
    for (int64_t i = 0; i < V; i++) {
        /* p_i = exp(l_i − l_t) / (1 + so);  1 − p_t = so / (1 + so) */
        const long double pi = i == target ? -so / (1 + so) : expl((long double)l[i] - l[target]) / (1 + so);
        const double wi = (double)(scale * pi), e = fabs(dl[i] - wi);
        note(W_CE_ELEM, e / fmax(fabs(wi), 1e-300));
        if (!(e <= TOL_CE_ELEM * fabs(wi) + 1e-44)) {
            printf("FAIL dm_cross_entropy dlogits [%lld] (V %lld): got %.9g, want %.9g\n", (long long)i, (long long)V,
                   dl[i], wi);
            g_fail++;
            break;
        }
    }
    if (V <= 1000 && boost == 0) {
        double *v = malloc((size_t)V * 8), *g = malloc((size_t)V * 8);
        ce_ctx c = { V, target, scale };
        fd_grad(ce_loss, &c, to_double(v, l, V), V, FD_H, g);
        note(W_CE_FD, check_grad("dm_cross_entropy dlogits vs FD", V, dl, g, V, TOL_DOUBLE));
        free(v), free(g);
    }
    dm_cross_entropy(NULL, &loss2, l, target, V, scale);
    memcpy(dl2, l, V * 4);
    dm_cross_entropy(dl2, &loss3, dl2, target, V, scale);
    if (loss2 != loss || loss3 != loss) {
        printf("FAIL dm_cross_entropy: loss differs with dlogits NULL / in place\n");
        g_fail++;
    }
    check_bitwise("dm_cross_entropy in place", dl2, dl, V);
    free(l), free(dl), free(dl2);
}

static void test_cross_entropy(void)
{
    static const int64_t Vs[] = { 1, 2, 7, 1000, 8192 };
    for (size_t k = 0; k < 5; k++) {
        const int64_t V = Vs[k];
        const int t = (int)(urand() * (double)V);
        ce_case(V, -10, 10, t, 0, 1.0f);
        ce_case(V, 990, 1010, t, 0, 1.0f / 37);      /* large offset: exp needs the max shift */
        ce_case(V, -3, 3, t, 40, 0.5f);              /* confident: loss ~ V·e⁻⁴⁰ */
        ce_case(V, -3, 3, t, -30, 1.0f);             /* target far below the rest */
    }
    /* ignored row */
    float l[5] = { 1, 2, 3, 4, 5 }, dl[5] = { 9, 9, 9, 9, 9 };
    double loss = 7;
    dm_cross_entropy(dl, &loss, l, -1, 5, 1.0f);
    for (int i = 0; i < 5; i++)
        if (dl[i] != 0.0f || loss != 0.0) {
            printf("FAIL dm_cross_entropy ignored row: loss %g, dlogits[%d] %g\n", loss, i, dl[i]);
            g_fail++;
            break;
        }
}

/* ---- embedding ----------------------------------------------------------------------- */

static void embedding_case(int64_t V, int64_t T, int64_t D)
{
    float *E = rand_vec(V * D, -1, 1), *x = zeros(T * D), *dx = rand_vec(T * D, -1, 1);
    int *tok = malloc((size_t)T * sizeof(int));
    for (int64_t t = 0; t < T; t++)
        tok[t] = (int)(urand() * (double)V);   /* V < T: repeats */
    dm_embedding(x, E, tok, T, D);
    for (int64_t t = 0; t < T; t++)
        check_bitwise("dm_embedding", x + t * D, E + (int64_t)tok[t] * D, D);
    float *want = rand_vec(V * D, -1, 1), *got = malloc((size_t)(V * D + 1) * 4);
    float *prior = malloc((size_t)(V * D + 1) * 4);
    memcpy(prior, want, V * D * 4);
    for (int64_t t = 0; t < T; t++)   /* the sequential scatter-add in row order */
        for (int64_t i = 0; i < D; i++)
            want[tok[t] * D + i] += dx[t * D + i];
    for (int th = 1; th <= 3; th++) {
        dm_threads_set(th);
        memcpy(got, prior, V * D * 4);
        dm_embedding_backward(got, dx, tok, T, D);
        check_bitwise("dm_embedding_backward vs the sequential loop", got, want, V * D);
    }
    dm_threads_set(2);
    free(E), free(x), free(dx), free(tok), free(want), free(got), free(prior);
}

int main(void)
{
    dm_threads_set(2);
    test_norms();
    test_norm_rows();
    test_rope();
    test_silu();
    test_softmax();
    test_attn_softmax();
    test_cross_entropy();
    embedding_case(5, 37, 131);
    embedding_case(50, 600, 200);   /* large enough to thread */
    printf("worst relative errors: rmsnorm %.2g, layernorm %.2g, rows dw/db %.2g (tol %.0e); rope %.2g (tol %.0e)\n",
           g_worst[W_RMS], g_worst[W_LN], g_worst[W_ROWS], TOL_DOUBLE, g_worst[W_ROPE], TOL_DOUBLE);
    printf("  silu_mul %.2g, softmax %.2g, attn softmax %.2g (tol %.0e); cross entropy: FD %.2g (tol %.0e), "
           "loss %.2g (tol %.0e), per-element grad %.2g (tol %.0e)\n",
           g_worst[W_SILU], g_worst[W_SOFTMAX], g_worst[W_ATTN], TOL_FLOAT, g_worst[W_CE_FD], TOL_DOUBLE,
           g_worst[W_CE_LOSS], TOL_LOSS, g_worst[W_CE_ELEM], TOL_CE_ELEM);
    if (g_fail) {
        printf("test_backward: %d failure(s)\n", g_fail);
        return 1;
    }
    printf("test_backward: all passed\n");
    return 0;
}
