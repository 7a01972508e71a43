/* Batch normalisation forward (training and inference) and backward.
 *
 * Work is split by blocks of columns (features); one block's statistics,
 * normalisation and gradient are computed by one thread while the block is
 * in cache: two reads of x for exact two-pass statistics, one write of the
 * output (fused with the activation and dropout that follow it in an MLP),
 * and in the backward one read for the two reductions, one write of dx.
 * Statistics accumulate in double. */
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

#define FN_BN_WIDTH ((fn_int)(FN_COL_BLOCK_BYTES / sizeof(fn_real)))

FN_INLINE void FN(bn_forward_block)(const FN(fn_bn_forward_args) *a, fn_int j0, fn_int j1,
                                    const int act, uint32_t threshold)
{
    const fn_int n = a->n, f = a->f, w = j1 - j0;
    double mean[FN_BN_WIDTH], var[FN_BN_WIDTH];
    fn_real shift[FN_BN_WIDTH], scale[FN_BN_WIDTH], gamma[FN_BN_WIDTH], beta[FN_BN_WIDTH];
    if (a->training) {
        for (fn_int j = 0; j < w; j++) mean[j] = var[j] = 0;
        for (fn_int i = 0; i < n; i++)
            for (fn_int j = 0; j < w; j++) mean[j] += a->x[i * f + j0 + j];
        for (fn_int j = 0; j < w; j++) mean[j] /= (double)n;
        for (fn_int i = 0; i < n; i++)
            for (fn_int j = 0; j < w; j++) {
                const double d = a->x[i * f + j0 + j] - mean[j];
                var[j] += d * d;
            }
        for (fn_int j = 0; j < w; j++) {
            var[j] /= (double)n;
            if (a->mean) a->mean[j0 + j] = (fn_real)mean[j];
            if (a->var) a->var[j0 + j] = (fn_real)var[j];
        }
        if (a->running_mean) {
            const double m = a->momentum;
            const double unbias = n > 1 ? (double)n / (double)(n - 1) : 1.0;
            for (fn_int j = 0; j < w; j++) {
                fn_real *rm = a->running_mean + j0 + j, *rv = a->running_var + j0 + j;
                *rm = (fn_real)((1.0 - m) * *rm + m * mean[j]);
                *rv = (fn_real)((1.0 - m) * *rv + m * var[j] * unbias);
            }
        }
    } else {
        for (fn_int j = 0; j < w; j++) {
            mean[j] = a->running_mean[j0 + j];
            var[j] = a->running_var[j0 + j];
        }
    }
    for (fn_int j = 0; j < w; j++) {
        shift[j] = (fn_real)mean[j];
        scale[j] = (fn_real)(1.0 / sqrt((fn_real)var[j] + a->eps));
        gamma[j] = a->gamma ? a->gamma[j0 + j] : (fn_real)1;
        beta[j] = a->beta ? a->beta[j0 + j] : (fn_real)0;
    }
    const fn_real keep_scale = (fn_real)(1.0 / (1.0 - a->dropout.rate));
    uint8_t keep[FN_BN_WIDTH];
    for (fn_int i = 0; i < n; i++) {
        const fn_real *x = a->x + i * f + j0;
        fn_real *out = a->out + i * f + j0;
        fn_real *xhat = a->xhat ? a->xhat + i * f + j0 : NULL;
        for (fn_int j = 0; j < w; j++) {
            const fn_real xh = (x[j] - shift[j]) * scale[j];
            if (xhat) xhat[j] = xh;
            out[j] = FN(fn_activate)(gamma[j] * xh + beta[j], act);
        }
        if (threshold) {
            fn_dropout_keep_row(&a->dropout, threshold, i, j0, j1, keep);
            uint8_t *mask = a->mask + i * f + j0;
            fn_real *dropped = a->dropped + i * f + j0;
            for (fn_int j = 0; j < w; j++) {
                mask[j] = keep[j];
                dropped[j] = out[j] * (keep[j] ? keep_scale : (fn_real)0);
            }
        }
    }
}

FN_MULTIVERSION
static void FN(bn_forward_block_any)(const FN(fn_bn_forward_args) *a, fn_int j0, fn_int j1,
                                     uint32_t threshold)
{
    switch (a->act) {
    case FN_ACT_RELU: FN(bn_forward_block)(a, j0, j1, FN_ACT_RELU, threshold); break;
    case FN_ACT_TANH: FN(bn_forward_block)(a, j0, j1, FN_ACT_TANH, threshold); break;
    case FN_ACT_SIGMOID: FN(bn_forward_block)(a, j0, j1, FN_ACT_SIGMOID, threshold); break;
    default: FN(bn_forward_block)(a, j0, j1, FN_ACT_NONE, threshold);
    }
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

FN_INLINE void FN(bn_backward_block)(const FN(fn_bn_backward_args) *a, fn_int j0, fn_int j1,
                                     const int act)
{
    const fn_int n = a->n, f = a->f, w = j1 - j0;
    fn_real mean[FN_BN_WIDTH], invstd[FN_BN_WIDTH];
    double sum_dy[FN_BN_WIDTH], sum_dy_xhat[FN_BN_WIDTH];
    for (fn_int j = 0; j < w; j++) {
        mean[j] = a->mean ? a->mean[j0 + j] : (fn_real)0;
        invstd[j] = (fn_real)(1.0 / sqrt(a->var[j0 + j] + a->eps));
        sum_dy[j] = sum_dy_xhat[j] = 0;
    }
    const fn_real keep_scale = (fn_real)(a->mask ? 1.0 / (1.0 - a->rate) : 1.0);
    /* Pass 1: dy (stored in dx) and its two reductions. */
    for (fn_int i = 0; i < n; i++) {
        const fn_int e0 = i * f + j0;
        for (fn_int j = 0; j < w; j++) {
            fn_real dy = a->dout[e0 + j];
            if (a->mask) dy *= a->mask[e0 + j] ? keep_scale : (fn_real)0;
            if (act != FN_ACT_NONE) dy *= FN(fn_act_grad)(a->act_out[e0 + j], act);
            const fn_real xh = a->xhat ? a->xhat[e0 + j]
                                       : (a->x[e0 + j] - mean[j]) * invstd[j];
            a->dx[e0 + j] = dy;
            sum_dy[j] += dy;
            sum_dy_xhat[j] += (double)dy * xh;
        }
    }
    /* Pass 2: dx = gamma * invstd * (dy - mean(dy) - xhat * mean(dy * xhat)). */
    fn_real k0[FN_BN_WIDTH], k1[FN_BN_WIDTH], k2[FN_BN_WIDTH];
    for (fn_int j = 0; j < w; j++) {
        if (a->dgamma) a->dgamma[j0 + j] = (fn_real)sum_dy_xhat[j];
        if (a->dbeta) a->dbeta[j0 + j] = (fn_real)sum_dy[j];
        k0[j] = (a->gamma ? a->gamma[j0 + j] : (fn_real)1) * invstd[j];
        k1[j] = (fn_real)(sum_dy[j] / (double)n);
        k2[j] = (fn_real)(sum_dy_xhat[j] / (double)n);
    }
    for (fn_int i = 0; i < n; i++) {
        const fn_int e0 = i * f + j0;
        for (fn_int j = 0; j < w; j++) {
            const fn_real xh = a->xhat ? a->xhat[e0 + j]
                                       : (a->x[e0 + j] - mean[j]) * invstd[j];
            a->dx[e0 + j] = k0[j] * (a->dx[e0 + j] - k1[j] - xh * k2[j]);
        }
    }
}

FN_MULTIVERSION
static void FN(bn_backward_block_any)(const FN(fn_bn_backward_args) *a, fn_int j0, fn_int j1)
{
    switch (a->act) {
    case FN_ACT_RELU: FN(bn_backward_block)(a, j0, j1, FN_ACT_RELU); break;
    case FN_ACT_TANH: FN(bn_backward_block)(a, j0, j1, FN_ACT_TANH); break;
    case FN_ACT_SIGMOID: FN(bn_backward_block)(a, j0, j1, FN_ACT_SIGMOID); break;
    default: FN(bn_backward_block)(a, j0, j1, FN_ACT_NONE);
    }
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
#endif
