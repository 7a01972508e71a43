/* Batch normalisation forward (training and inference) and backward.
 *
 * Work is split by blocks of columns (features); one block's statistics,
 * normalisation and gradient are computed by one thread while the block is
 * in cache: two reads of x for exact two-pass statistics, one write of the
 * output (fused with the activation and dropout that follow it in an MLP),
 * and in the backward one read for the two reductions, one write of dx.
 * Sums run in fn_real over blocks of FN_BN_ROWS rows, each block's partial
 * then added in double: as accurate for batch statistics, and it keeps the
 * inner loops in single-precision vectors instead of converting every
 * element (forward and backward 20-30 % faster at 64x64 to 256x512).
 * A block of full width has its width as a compile-time constant, so its
 * partial sums stay in registers. */
#ifndef FN_DTYPE

#include "fn_internal.h"
#include "fn_rng.h"

#define FN_DTYPE 32
#include "fn_batchnorm.c"
#undef FN_DTYPE
#define FN_DTYPE 64
#include "fn_batchnorm.c"
#undef FN_DTYPE

#else

#include "fn_real.h"
#include "fn_act.h"
#include "fn_dropout_row.h"

#define FN_BN_WIDTH ((fn_int)(FN_COL_BLOCK_BYTES / sizeof(fn_real)))
#define FN_BN_ROWS 8

/* Column sums of x, or of (x - shift)^2 when shift is given, over n rows of
 * the w columns x points at: fn_real partials over FN_BN_ROWS rows, each
 * added to out in double.  The local and the synchronised (summed over
 * processes) statistics both come from here, so one process gives one bits. */
FN_INLINE void FN(bn_block_sums)(const fn_real *restrict x, const fn_int n, const fn_int f,
                                 const fn_int w, const fn_real *restrict shift,
                                 double *restrict out)
{
    fn_real part[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) out[j] = 0;
    for (fn_int i0 = 0; i0 < n; i0 += FN_BN_ROWS) {
        const fn_int i1 = FN_MIN(n, i0 + FN_BN_ROWS);
        FN_SIMD
        for (fn_int j = 0; j < w; j++) part[j] = 0;
        for (fn_int i = i0; i < i1; i++) {
            if (shift) {
                FN_SIMD
                for (fn_int j = 0; j < w; j++) {
                    const fn_real d = x[i * f + j] - shift[j];
                    part[j] += d * d;
                }
            } else {
                FN_SIMD
                for (fn_int j = 0; j < w; j++) part[j] += x[i * f + j];
            }
        }
        FN_SIMD
        for (fn_int j = 0; j < w; j++) out[j] += part[j];
    }
}

/* Struct fields are copied to restrict-qualified locals first: stores
 * through a->out could otherwise alias *a, forcing reloads of every field in
 * the inner loops and blocking vectorisation. */
FN_INLINE void FN(bn_forward_block)(const FN(fn_bn_forward_args) *a, fn_int j0, const fn_int w,
                                    const int act, uint32_t threshold)
{
    const fn_int n = a->n, f = a->f;
    const fn_real *restrict x = a->x + j0;
    fn_real *restrict out = a->out + j0;
    fn_real *restrict xhat = a->xhat ? a->xhat + j0 : NULL;
    double mean[FN_BN_WIDTH], var[FN_BN_WIDTH];
    fn_real shift[FN_BN_WIDTH], scale[FN_BN_WIDTH], gamma[FN_BN_WIDTH], beta[FN_BN_WIDTH];
    if (a->training && a->stats) {
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            mean[j] = a->stats[j0 + j];
            var[j] = a->stats[f + j0 + j];
        }
    } else if (a->training) {
        FN(bn_block_sums)(x, n, f, w, NULL, mean);
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            mean[j] /= (double)n;
            shift[j] = (fn_real)mean[j];
        }
        FN(bn_block_sums)(x, n, f, w, shift, var);
        FN_SIMD
        for (fn_int j = 0; j < w; j++) var[j] /= (double)n;
    }
    if (a->training) {
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            if (a->mean) a->mean[j0 + j] = (fn_real)mean[j];
            if (a->var) a->var[j0 + j] = (fn_real)var[j];
        }
        if (a->running_mean) {
            const double m = a->momentum;
            const fn_int rows = a->stat_n > 0 ? a->stat_n : n;
            const double unbias = rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                fn_real *rm = a->running_mean + j0 + j, *rv = a->running_var + j0 + j;
                *rm = (fn_real)((1.0 - m) * *rm + m * mean[j]);
                *rv = (fn_real)((1.0 - m) * *rv + m * var[j] * unbias);
            }
        }
    } else {
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            mean[j] = a->running_mean[j0 + j];
            var[j] = a->running_var[j0 + j];
        }
    }
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        shift[j] = (fn_real)mean[j];
        scale[j] = (fn_real)(1.0 / sqrt((fn_real)var[j] + a->eps));
        gamma[j] = a->gamma ? a->gamma[j0 + j] : (fn_real)1;
        beta[j] = a->beta ? a->beta[j0 + j] : (fn_real)0;
    }
    for (fn_int i = 0; i < n; i++) {
        const fn_real *restrict xi = x + i * f;
        fn_real *restrict oi = out + i * f;
        if (xhat) {
            fn_real *restrict hi = xhat + i * f;
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                const fn_real xh = (xi[j] - shift[j]) * scale[j];
                hi[j] = xh;
                oi[j] = FN(fn_activate)(gamma[j] * xh + beta[j], act);
            }
        } else {
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                const fn_real xh = (xi[j] - shift[j]) * scale[j];
                oi[j] = FN(fn_activate)(gamma[j] * xh + beta[j], act);
            }
        }
    }
    if (threshold) {
        const uint64_t key = fn_dropout_key(&a->dropout);
        const fn_real keep_scale = (fn_real)(1.0 / (1.0 - a->dropout.rate));
        uint8_t *restrict mask = a->mask + j0;
        fn_real *restrict dropped = a->dropped + j0;
        for (fn_int i = 0; i < n; i++)
            FN(fn_dropout_row)(key, threshold, a->dropout.row0 + i, f, j0, w, out + i * f,
                               keep_scale, dropped + i * f, mask + i * f);
    }
}

FN_MULTIVERSION
static void FN(bn_forward_block_any)(const FN(fn_bn_forward_args) *a, fn_int j0, fn_int j1,
                                     uint32_t threshold)
{
#define FN_BN_FWD(ACT) \
    if (j1 - j0 == FN_BN_WIDTH) FN(bn_forward_block)(a, j0, FN_BN_WIDTH, ACT, threshold); \
    else FN(bn_forward_block)(a, j0, j1 - j0, ACT, threshold);
    switch (a->act) {
    case FN_ACT_RELU: FN_BN_FWD(FN_ACT_RELU) break;
    case FN_ACT_TANH: FN_BN_FWD(FN_ACT_TANH) break;
    case FN_ACT_SIGMOID: FN_BN_FWD(FN_ACT_SIGMOID) break;
    default: FN_BN_FWD(FN_ACT_NONE)
    }
#undef FN_BN_FWD
}

void FN(fn_bn_forward_team)(const FN(fn_bn_forward_args) *a)
{
    const uint32_t threshold = a->dropout.rate > 0 ? fn_dropout_threshold(a->dropout.rate) : 0;
    FN_OMP_FOR
    for (fn_int blk = 0; blk < FN_CEIL_DIV(a->f, FN_BN_WIDTH); blk++) {
        const fn_int j0 = blk * FN_BN_WIDTH;
        FN(bn_forward_block_any)(a, j0, FN_MIN(a->f, j0 + FN_BN_WIDTH), threshold);
    }
}

/* Multiversioned like the forward it must match: a clone with FMA contracts
 * (x - shift)^2 + part, the baseline does not. */
FN_MULTIVERSION
static void FN(bn_sums_block_any)(fn_int n, fn_int f, const fn_real *x, const double *mean,
                                  fn_int j0, fn_int j1, double *out)
{
    fn_real shift[FN_BN_WIDTH];
    for (fn_int j = j0; j < j1; j++) shift[j - j0] = mean ? (fn_real)mean[j] : 0;
    if (j1 - j0 == FN_BN_WIDTH)
        FN(bn_block_sums)(x + j0, n, f, FN_BN_WIDTH, mean ? shift : NULL, out + j0);
    else
        FN(bn_block_sums)(x + j0, n, f, j1 - j0, mean ? shift : NULL, out + j0);
}

void FN(fn_bn_sums_team)(fn_int n, fn_int f, const fn_real *x, const double *mean,
                         double *out)
{
    FN_OMP_FOR
    for (fn_int blk = 0; blk < FN_CEIL_DIV(f, FN_BN_WIDTH); blk++) {
        const fn_int j0 = blk * FN_BN_WIDTH;
        FN(bn_sums_block_any)(n, f, x, mean, j0, FN_MIN(f, j0 + FN_BN_WIDTH), out);
    }
}

FN_INLINE void FN(bn_backward_block)(const FN(fn_bn_backward_args) *a, fn_int j0,
                                     const fn_int w, const int act, const int has_mask,
                                     const int has_xhat)
{
    const fn_int n = a->n, f = a->f;
    const int phase = a->phase;
    const fn_real *restrict dout = a->dout + j0;
    const uint8_t *restrict mask = a->mask ? a->mask + j0 : NULL;
    const fn_real *restrict act_out = a->act_out ? a->act_out + j0 : NULL;
    const fn_real *restrict xhat_in = a->xhat ? a->xhat + j0 : NULL;
    const fn_real *restrict x = a->x ? a->x + j0 : NULL;
    fn_real *dx = a->dx + j0;   /* may alias dout */
    fn_real mean[FN_BN_WIDTH], invstd[FN_BN_WIDTH];
    double sum_dy[FN_BN_WIDTH], sum_dy_xhat[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        mean[j] = a->mean ? a->mean[j0 + j] : (fn_real)0;
        invstd[j] = (fn_real)(1.0 / sqrt(a->var[j0 + j] + a->eps));
        sum_dy[j] = sum_dy_xhat[j] = 0;
    }
    const fn_real keep_scale = (fn_real)(mask ? 1.0 / (1.0 - a->rate) : 1.0);
    /* Pass 1: dy (stored in dx) and its two reductions.  One loop per row,
     * everything kept in registers (staging dy and xhat in local arrays
     * between two loops cost a store and a reload of each). */
    for (fn_int i0 = 0; i0 < (phase == 2 ? 0 : n); i0 += FN_BN_ROWS) {
        const fn_int i1 = FN_MIN(n, i0 + FN_BN_ROWS);
        fn_real part_dy[FN_BN_WIDTH], part_dy_xhat[FN_BN_WIDTH];
        FN_SIMD
        for (fn_int j = 0; j < w; j++) part_dy[j] = part_dy_xhat[j] = 0;
        for (fn_int i = i0; i < i1; i++) {
            const fn_int r = i * f;
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                fn_real v = dout[r + j];
                if (has_mask) v *= (fn_real)mask[r + j] * keep_scale;
                if (act != FN_ACT_NONE) v *= FN(fn_act_grad)(act_out[r + j], act);
                const fn_real xh = has_xhat ? xhat_in[r + j] : (x[r + j] - mean[j]) * invstd[j];
                dx[r + j] = v;
                part_dy[j] += v;
                part_dy_xhat[j] += v * xh;
            }
        }
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            sum_dy[j] += part_dy[j];
            sum_dy_xhat[j] += part_dy_xhat[j];
        }
    }
    /* Pass 2: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)). */
    fn_real k0[FN_BN_WIDTH], k1[FN_BN_WIDTH], k2[FN_BN_WIDTH];
    if (phase != 2) {
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            if (a->dgamma) a->dgamma[j0 + j] = (fn_real)sum_dy_xhat[j];
            if (a->dbeta) a->dbeta[j0 + j] = (fn_real)sum_dy[j];
        }
    }
    if (phase == 1) {
        for (fn_int j = 0; j < w; j++) {
            a->sums[j0 + j] = sum_dy[j];
            a->sums[f + j0 + j] = sum_dy_xhat[j];
        }
        return;
    }
    if (phase == 2) {
        for (fn_int j = 0; j < w; j++) {
            sum_dy[j] = a->sums[j0 + j];
            sum_dy_xhat[j] = a->sums[f + j0 + j];
        }
    }
    const double rows = (double)(phase == 2 ? a->stat_n : n);
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        k0[j] = (a->gamma ? a->gamma[j0 + j] : (fn_real)1) * invstd[j];
        k1[j] = (fn_real)(sum_dy[j] / rows);
        k2[j] = (fn_real)(sum_dy_xhat[j] / rows);
    }
    for (fn_int i = 0; i < n; i++) {
        const fn_int r = i * f;
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            const fn_real xh = has_xhat ? xhat_in[r + j] : (x[r + j] - mean[j]) * invstd[j];
            dx[r + j] = k0[j] * (dx[r + j] - k1[j] - xh * k2[j]);
        }
    }
}

/* One specialisation per activation, dropout and stored-xhat combination:
 * the inner loops carry no branches. */
FN_MULTIVERSION
static void FN(bn_backward_block_any)(const FN(fn_bn_backward_args) *a, fn_int j0, fn_int j1)
{
#define FN_BN_BWD_W(ACT, W) \
    if (a->mask && a->xhat) FN(bn_backward_block)(a, j0, W, ACT, 1, 1); \
    else if (a->mask) FN(bn_backward_block)(a, j0, W, ACT, 1, 0); \
    else if (a->xhat) FN(bn_backward_block)(a, j0, W, ACT, 0, 1); \
    else FN(bn_backward_block)(a, j0, W, ACT, 0, 0);
#define FN_BN_BWD(ACT) \
    if (j1 - j0 == FN_BN_WIDTH) { FN_BN_BWD_W(ACT, FN_BN_WIDTH) } \
    else { FN_BN_BWD_W(ACT, j1 - j0) }
    switch (a->act) {
    case FN_ACT_RELU: FN_BN_BWD(FN_ACT_RELU) break;
    case FN_ACT_TANH: FN_BN_BWD(FN_ACT_TANH) break;
    case FN_ACT_SIGMOID: FN_BN_BWD(FN_ACT_SIGMOID) break;
    default: FN_BN_BWD(FN_ACT_NONE)
    }
#undef FN_BN_BWD
#undef FN_BN_BWD_W
}

void FN(fn_bn_backward_team)(const FN(fn_bn_backward_args) *a)
{
    FN_OMP_FOR
    for (fn_int blk = 0; blk < FN_CEIL_DIV(a->f, FN_BN_WIDTH); blk++) {
        const fn_int j0 = blk * FN_BN_WIDTH;
        FN(bn_backward_block_any)(a, j0, FN_MIN(a->f, j0 + FN_BN_WIDTH));
    }
}

#undef FN_BN_WIDTH
#undef FN_BN_ROWS
#endif
