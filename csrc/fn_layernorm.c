/* Layer normalisation: each row normalised over its features, then an
 * activation.  No running statistics: training and inference compute the
 * same thing, for any batch size (1 included).
 *
 * A row's statistics are summed by one thread, feature by feature in double
 * (mean, then the biased variance about it), so they never depend on the
 * thread count.  The backward's parameter gradients sum over rows: they are
 * a phase of column blocks, each summed over the rows in row order by one
 * thread, as the bias gradients of fn_activation.c are. */
#ifndef FN_DTYPE

#include "fn_internal.h"

/* Rows per chunk of the row phases. */
#define FN_LN_ROWS 8

#define FN_TEMPLATE "fn_layernorm.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"
#include "fn_act.h"

/* ---- forward --------------------------------------------------------------- */

FN_INLINE void FN(ln_forward_rows)(const FN(fn_ln_forward_args) *a, fn_int i0, fn_int i1,
                                   const int act)
{
    const fn_int f = a->f;
    const fn_real slope = (fn_real)a->slope;
    for (fn_int i = i0; i < i1; i++) {
        const fn_real *restrict x = a->x + i * f;
        double sum = 0, sq = 0;
        for (fn_int j = 0; j < f; j++) sum += (double)x[j];
        const double mean = sum / (double)f;
        for (fn_int j = 0; j < f; j++) {
            const double d = (double)x[j] - mean;
            sq += d * d;
        }
        const double rstd = 1.0 / sqrt(sq / (double)f + a->eps);
        if (a->rstd) a->rstd[i] = (fn_real)rstd;
        const fn_real shift = (fn_real)mean, scale = (fn_real)rstd;
        fn_real *restrict xhat = a->xhat ? a->xhat + i * f : NULL;
        fn_real *restrict out = a->out + i * f;
        FN_SIMD
        for (fn_int j = 0; j < f; j++) {
            const fn_real xh = (x[j] - shift) * scale;
            if (xhat) xhat[j] = xh;
            out[j] = FN(fn_activate)(a->gamma[j] * xh + a->beta[j], act, slope);
        }
    }
}

FN_MULTIVERSION
static void FN(ln_forward_rows_any)(const FN(fn_ln_forward_args) *a, fn_int i0, fn_int i1)
{
#define FN_LN_FWD(ACT) FN(ln_forward_rows)(a, i0, i1, ACT);
    FN_ACT_SWITCH(a->act, FN_LN_FWD)
#undef FN_LN_FWD
}

static void FN(ln_forward_chunk)(const void *ctx, fn_int c)
{
    const FN(fn_ln_forward_args) *a = ctx;
    FN(ln_forward_rows_any)(a, c * FN_LN_ROWS, FN_MIN(a->n, (c + 1) * FN_LN_ROWS));
}

void FN(fn_ln_forward_team)(fn_team *team, const FN(fn_ln_forward_args) *a)
{
    fn_team_for(team, FN_CEIL_DIV(a->n, FN_LN_ROWS), 4 * (double)a->n * a->f * FN_NS_PER_ELEMENT,
                FN(ln_forward_chunk), a);
}

/* ---- backward -------------------------------------------------------------- */

/* Rows [i0, i1): dy (dout taken back through dropout and the activation) into
 * dx; the activation's input, where its derivative needs it, is rebuilt as
 * gamma * xhat + beta. */
FN_INLINE void FN(ln_dy_rows)(const FN(fn_ln_backward_args) *a, fn_int i0, fn_int i1,
                              const int act, const int has_mask)
{
    const fn_int f = a->f;
    const fn_real slope = (fn_real)a->slope;
    const fn_real keep_scale = (fn_real)(has_mask ? 1.0 / (1.0 - a->rate) : 1.0);
    for (fn_int i = i0; i < i1; i++) {
        const fn_int r = i * f;
        FN_SIMD
        for (fn_int j = 0; j < f; j++) {
            fn_real v = a->dout[r + j];
            if (has_mask) v *= (fn_real)a->mask[r + j] * keep_scale;
            if (act != FN_ACT_NONE)
                v *= FN(fn_act_grad)(a->act_out[r + j],
                                     FN_ACT_NEEDS_PRE(act)
                                         ? a->gamma[j] * a->xhat[r + j] + a->beta[j] : 0,
                                     act, slope);
            a->dx[r + j] = v;
        }
    }
}

FN_MULTIVERSION
static void FN(ln_dy_rows_any)(const FN(fn_ln_backward_args) *a, fn_int i0, fn_int i1)
{
#define FN_LN_DY(ACT) \
    if (a->mask) FN(ln_dy_rows)(a, i0, i1, ACT, 1); else FN(ln_dy_rows)(a, i0, i1, ACT, 0);
    FN_ACT_SWITCH(a->act, FN_LN_DY)
#undef FN_LN_DY
}

static void FN(ln_dy_chunk)(const void *ctx, fn_int c)
{
    const FN(fn_ln_backward_args) *a = ctx;
    FN(ln_dy_rows_any)(a, c * FN_LN_ROWS, FN_MIN(a->n, (c + 1) * FN_LN_ROWS));
}

/* Columns of one block: dgamma = sum_i dy * xhat, dbeta = sum_i dy, in row
 * order (double). */
FN_MULTIVERSION
static void FN(ln_param_block)(const FN(fn_ln_backward_args) *a, fn_int j0, fn_int j1)
{
    double sg[FN_COL_BLOCK_BYTES / sizeof(fn_real)] = {0};
    double sb[FN_COL_BLOCK_BYTES / sizeof(fn_real)] = {0};
    const fn_int w = j1 - j0;
    for (fn_int i = 0; i < a->n; i++) {
        const fn_real *dy = a->dx + i * a->f + j0, *xh = a->xhat + i * a->f + j0;
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            sg[j] += (double)(dy[j] * xh[j]);
            sb[j] += (double)dy[j];
        }
    }
    for (fn_int j = 0; j < w; j++) {
        a->dgamma[j0 + j] = (fn_real)sg[j];
        a->dbeta[j0 + j] = (fn_real)sb[j];
    }
}

static void FN(ln_param_chunk)(const void *ctx, fn_int blk)
{
    const FN(fn_ln_backward_args) *a = ctx;
    const fn_int width = FN_COL_BLOCK_BYTES / sizeof(fn_real), j0 = blk * width;
    FN(ln_param_block)(a, j0, FN_MIN(a->f, j0 + width));
}

/* Rows [i0, i1): dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gamma * dy,
 * the means over the row's features summed in double. */
FN_MULTIVERSION
static void FN(ln_dx_rows)(const FN(fn_ln_backward_args) *a, fn_int i0, fn_int i1)
{
    const fn_int f = a->f;
    for (fn_int i = i0; i < i1; i++) {
        fn_real *restrict dx = a->dx + i * f;
        const fn_real *restrict xh = a->xhat + i * f;
        double sum_g = 0, sum_gx = 0;
        for (fn_int j = 0; j < f; j++) {
            const double g = (double)(a->gamma[j] * dx[j]);
            sum_g += g;
            sum_gx += g * (double)xh[j];
        }
        const fn_real mean_g = (fn_real)(sum_g / (double)f);
        const fn_real mean_gx = (fn_real)(sum_gx / (double)f);
        const fn_real rstd = a->rstd[i];
        FN_SIMD
        for (fn_int j = 0; j < f; j++)
            dx[j] = rstd * (a->gamma[j] * dx[j] - mean_g - xh[j] * mean_gx);
    }
}

static void FN(ln_dx_chunk)(const void *ctx, fn_int c)
{
    const FN(fn_ln_backward_args) *a = ctx;
    FN(ln_dx_rows)(a, c * FN_LN_ROWS, FN_MIN(a->n, (c + 1) * FN_LN_ROWS));
}

void FN(fn_ln_backward_team)(fn_team *team, const FN(fn_ln_backward_args) *a)
{
    const fn_int chunks = FN_CEIL_DIV(a->n, FN_LN_ROWS);
    const fn_int width = FN_COL_BLOCK_BYTES / sizeof(fn_real);
    const double work = (double)a->n * a->f * FN_NS_PER_ELEMENT;
    fn_team_for(team, chunks, 2 * work, FN(ln_dy_chunk), a);
    fn_team_for(team, FN_CEIL_DIV(a->f, width), work, FN(ln_param_chunk), a);
    fn_team_for(team, chunks, 2 * work, FN(ln_dx_chunk), a);
}

#endif
