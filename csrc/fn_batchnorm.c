/* Batch normalisation forward (training and inference) and backward.
 *
 * Work is split by rows wherever it can be, in chunks of FN_BN_ROWS rows:
 * in a training step the product before a batch norm and the one after it
 * split by rows too, so each thread keeps working on the rows it has in
 * cache.  Splitting by features instead made every batch norm read rows the
 * other core had just written and write rows it was about to read: measured
 * here (digits, 2 threads), the forward layers and the batch-norm backward
 * ran slower on two threads than on one.  Only the per-feature reductions
 * cross rows, and they go in two steps: each chunk's fn_real partial sums
 * (rows), then per feature the chunks' partials added in double in chunk
 * order (features).  That is as accurate for batch statistics, keeps the
 * inner loops in single-precision vectors, and fixes the summation order by
 * the shape alone.  A chunk's column block of full width has its width as a
 * compile-time constant, so its partial sums stay in registers.  On one
 * thread the same schedule runs as is: a feature-block-major order for the
 * backward measured no faster (toy, digits).
 *
 * The team kernels take a caller's scratch of fn_bn_work_size(n, f, bits)
 * doubles (the per-chunk partials and per-feature constants). */
#ifndef FN_DTYPE

#include "fn_internal.h"
#include "fn_rng.h"

#define FN_BN_ROWS 8

fn_int fn_bn_work_size(fn_int n, fn_int f, int dtype_bits)
{
    const fn_int chunks = FN_CEIL_DIV(FN_MAX(n, 1), FN_BN_ROWS);
    /* two sets of chunk partials, five per-feature arrays, in fn_real */
    const fn_int reals = (2 * chunks + 5) * FN_MAX(f, 1);
    /* two per-feature double sums, then the reals from a 64-byte boundary */
    return 2 * FN_MAX(f, 1) + FN_CEIL_DIV(reals, 64 / dtype_bits) + 8;
}

/* A synchronised batch norm's reductions travel as one array of f values,
 * then f others: split into (or join from) two arrays, features [j0, j1). */
static inline void fn_bn_split_pair(const double *restrict pair, fn_int f, fn_int j0,
                                    fn_int j1, double *restrict first, double *restrict second)
{
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) {
        first[j] = pair[j];
        second[j] = pair[f + j];
    }
}

static inline void fn_bn_join_pair(const double *restrict first, const double *restrict second,
                                   fn_int f, fn_int j0, fn_int j1, double *restrict pair)
{
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) {
        pair[j] = first[j];
        pair[f + j] = second[j];
    }
}

#define FN_TEMPLATE "fn_batchnorm.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"
#include "fn_act.h"
#include "fn_dropout_row.h"

#define FN_BN_WIDTH ((fn_int)(FN_COL_BLOCK_BYTES / sizeof(fn_real)))

/* The scratch of fn_bn_work_size: two per-feature double sums, two sets of
 * per-chunk partials (chunk c's f partials at part + c * f) and five
 * per-feature fn_real constants (col + k * f). */
typedef struct {
    double *sum_a, *sum_b;
    fn_real *part_a, *part_b, *col;
    fn_int chunks, f;
} FN(bn_work);

static FN(bn_work) FN(bn_work_layout)(double *work, fn_int n, fn_int f)
{
    FN(bn_work) w;
    w.chunks = FN_CEIL_DIV(n, FN_BN_ROWS);
    w.f = f;
    w.sum_a = work;
    w.sum_b = work + f;
    fn_real *r = (fn_real *)(((uintptr_t)(work + 2 * f) + 63) & ~(uintptr_t)63);
    w.part_a = r;
    w.part_b = r + w.chunks * f;
    w.col = r + 2 * w.chunks * f;
    return w;
}

/* ---- reductions: chunk partials (by rows), then their sum (by features) - */

/* part[0:w] = column sums of x, or of (x - shift)^2 when shift is given,
 * over `rows` rows of the w columns x points at, in fn_real. */
FN_INLINE void FN(bn_chunk_block)(const fn_real *restrict x, const fn_int rows, const fn_int f,
                                  const fn_int w, const fn_real *restrict shift,
                                  fn_real *restrict part)
{
    fn_real acc[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) acc[j] = 0;
    for (fn_int i = 0; i < rows; i++) {
        if (shift) {
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                const fn_real d = x[i * f + j] - shift[j];
                acc[j] += d * d;
            }
        } else {
            FN_SIMD
            for (fn_int j = 0; j < w; j++) acc[j] += x[i * f + j];
        }
    }
    FN_SIMD
    for (fn_int j = 0; j < w; j++) part[j] = acc[j];
}

/* Multiversioned: a clone with FMA contracts (x - shift)^2 + acc, the
 * baseline does not; the forward and the synchronised sums share it. */
FN_MULTIVERSION
static void FN(bn_chunk_sums)(const fn_real *x, fn_int rows, fn_int f, const fn_real *shift,
                              fn_real *part)
{
    for (fn_int j0 = 0; j0 < f; j0 += FN_BN_WIDTH) {
        const fn_real *s = shift ? shift + j0 : NULL;
        if (f - j0 >= FN_BN_WIDTH)
            FN(bn_chunk_block)(x + j0, rows, f, FN_BN_WIDTH, s, part + j0);
        else
            FN(bn_chunk_block)(x + j0, rows, f, f - j0, s, part + j0);
    }
}

typedef struct {
    fn_int n, f;
    const fn_real *x, *shift;
    fn_real *part;
} FN(bn_partials_plan);

static void FN(bn_partials_chunk)(const void *ctx, fn_int c)
{
    const FN(bn_partials_plan) *s = ctx;
    const fn_int i0 = c * FN_BN_ROWS;
    FN(bn_chunk_sums)(s->x + i0 * s->f, FN_MIN(FN_BN_ROWS, s->n - i0), s->f, s->shift,
                      s->part + c * s->f);
}

static void FN(bn_partials_team)(fn_team *team, fn_int n, fn_int f, const fn_real *x,
                                 const fn_real *shift, fn_real *part)
{
    const FN(bn_partials_plan) s = {n, f, x, shift, part};
    fn_team_for(team, FN_CEIL_DIV(n, FN_BN_ROWS), (double)n * f * FN_NS_PER_ELEMENT,
                FN(bn_partials_chunk), &s);
}

/* dst[j] = src[j] rounded to fn_real, for j in [j0, j1), when dst is given. */
FN_INLINE void FN(round_into)(fn_real *restrict dst, const double *restrict src, fn_int j0,
                              fn_int j1)
{
    if (!dst) return;
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) dst[j] = (fn_real)src[j];
}

/* out[j] = (sum over chunks, in order, of part[c * f + j]) / divide_by, in
 * double, for the features [j0, j1); also rounded to fn_real into
 * `rounded` when given. */
FN_MULTIVERSION
static void FN(bn_combine)(const fn_real *restrict part, fn_int chunks, fn_int f, fn_int j0,
                           fn_int j1, double divide_by, double *restrict out,
                           fn_real *restrict rounded)
{
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) out[j] = 0;
    for (fn_int c = 0; c < chunks; c++) {
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) out[j] += part[c * f + j];
    }
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) out[j] /= divide_by;
    FN(round_into)(rounded, out, j0, j1);
}

/* A phase over the feature blocks of f features: fn(arg, w, j0, j1) for
 * every block [j0, j1).  `cost` is the work per feature, in elements. */
typedef void (*FN(bn_features_fn))(const void *arg, const FN(bn_work) *w, fn_int j0,
                                   fn_int j1);
typedef struct {
    FN(bn_features_fn) fn;
    const void *arg;
    const FN(bn_work) *w;
    fn_int f;
} FN(bn_features_plan);

static void FN(bn_features_chunk)(const void *ctx, fn_int blk)
{
    const FN(bn_features_plan) *s = ctx;
    const fn_int j0 = blk * FN_BN_WIDTH;
    s->fn(s->arg, s->w, j0, FN_MIN(s->f, j0 + FN_BN_WIDTH));
}

static void FN(bn_for_features)(fn_team *team, fn_int f, double cost, FN(bn_features_fn) fn,
                                const void *arg, const FN(bn_work) *w)
{
    const FN(bn_features_plan) s = {fn, arg, w, f};
    fn_team_for(team, FN_CEIL_DIV(f, FN_BN_WIDTH), (double)f * cost * FN_NS_PER_ELEMENT,
                FN(bn_features_chunk), &s);
}

/* bn_combine of the partials in `part` into `out` (and `rounded`). */
typedef struct {
    const fn_real *part;
    double divide_by;
    double *out;
    fn_real *rounded;
} FN(bn_combine_plan);

static void FN(bn_combine_block)(const void *arg, const FN(bn_work) *w, fn_int j0, fn_int j1)
{
    const FN(bn_combine_plan) *c = arg;
    FN(bn_combine)(c->part, w->chunks, w->f, j0, j1, c->divide_by, c->out, c->rounded);
}

/* The shift of the squared deviations: the given double means rounded. */
static void FN(bn_shift_block)(const void *mean, const FN(bn_work) *w, fn_int j0, fn_int j1)
{
    FN(round_into)(w->col, (const double *)mean, j0, j1);
}

void FN(fn_bn_sums_team)(fn_team *team, fn_int n, fn_int f, const fn_real *x,
                         const double *mean, double *out, double *work)
{
    const FN(bn_work) w = FN(bn_work_layout)(work, n, f);
    fn_real *shift = NULL;
    if (mean) {
        shift = w.col;
        FN(bn_for_features)(team, f, 1, FN(bn_shift_block), mean, &w);
    }
    FN(bn_partials_team)(team, n, f, x, shift, w.part_a);
    const FN(bn_combine_plan) c = {w.part_a, 1.0, out, NULL};
    FN(bn_for_features)(team, f, (double)w.chunks, FN(bn_combine_block), &c, &w);
}

/* ---- forward ------------------------------------------------------------- */

/* Rows [i0, i1) of the w features from j0: xhat = (x - shift) * scale,
 * out = act(gamma * xhat + beta), then dropout of out into `dropped`.  The
 * block's constants stay in registers across the rows. */
FN_INLINE void FN(bn_normalize_block)(const FN(fn_bn_forward_args) *a, const fn_real *col,
                                      fn_int i0, fn_int i1, fn_int j0, const fn_int w,
                                      const int act, uint32_t threshold)
{
    const fn_int f = a->f;
    const fn_real slope = (fn_real)a->slope;
    fn_real shift[FN_BN_WIDTH], scale[FN_BN_WIDTH], gamma[FN_BN_WIDTH], beta[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        shift[j] = col[j0 + j];
        scale[j] = col[f + j0 + j];
        gamma[j] = col[2 * f + j0 + j];
        beta[j] = col[3 * f + j0 + j];
    }
    for (fn_int i = i0; i < i1; i++) {
        const fn_real *restrict xi = a->x + i * f + j0;
        fn_real *restrict oi = a->out + i * f + j0;
        if (a->xhat) {
            fn_real *restrict hi = a->xhat + i * f + j0;
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                const fn_real xh = (xi[j] - shift[j]) * scale[j];
                hi[j] = xh;
                oi[j] = FN(fn_activate)(gamma[j] * xh + beta[j], act, slope);
            }
        } else {
            FN_SIMD
            for (fn_int j = 0; j < w; j++) {
                const fn_real xh = (xi[j] - shift[j]) * scale[j];
                oi[j] = FN(fn_activate)(gamma[j] * xh + beta[j], act, slope);
            }
        }
    }
    if (threshold) {
        const uint64_t key = fn_dropout_key(&a->dropout);
        const fn_real keep_scale = (fn_real)(1.0 / (1.0 - a->dropout.rate));
        for (fn_int i = i0; i < i1; i++)
            FN(fn_dropout_row)(key, threshold, a->dropout.row0 + i, f, j0, w,
                               a->out + i * f + j0, keep_scale, a->dropped + i * f + j0,
                               a->mask + i * f + j0);
    }
}

FN_INLINE void FN(bn_normalize_rows)(const FN(fn_bn_forward_args) *a, const fn_real *col,
                                     fn_int i0, fn_int i1, const int act, uint32_t threshold)
{
    for (fn_int j0 = 0; j0 < a->f; j0 += FN_BN_WIDTH) {
        if (a->f - j0 >= FN_BN_WIDTH)
            FN(bn_normalize_block)(a, col, i0, i1, j0, FN_BN_WIDTH, act, threshold);
        else
            FN(bn_normalize_block)(a, col, i0, i1, j0, a->f - j0, act, threshold);
    }
}

FN_MULTIVERSION
static void FN(bn_normalize_rows_any)(const FN(fn_bn_forward_args) *a, const fn_real *col,
                                      fn_int i0, fn_int i1, uint32_t threshold)
{
#define FN_BN_FWD(ACT) FN(bn_normalize_rows)(a, col, i0, i1, ACT, threshold);
    FN_ACT_SWITCH(a->act, FN_BN_FWD)
#undef FN_BN_FWD
}

/* Features [j0, j1): the statistics (mean and biased variance in double:
 * the batch's, the given synchronised ones or the running buffers), the
 * outputs a->mean / a->var, the running buffers' update and the
 * normalisation's constants in col (shift, scale, gamma, beta).
 * Multiversioned like the rest: a clone with FMA contracts the
 * running-buffer updates. */
FN_MULTIVERSION
static void FN(bn_feature_constants)(const void *arg, const FN(bn_work) *w, fn_int j0,
                                     fn_int j1)
{
    const FN(fn_bn_forward_args) *a = arg;
    const fn_int f = a->f;
    double *restrict mean = w->sum_a, *restrict var = w->sum_b;
    fn_real *restrict col = w->col;
    if (a->training && a->stats) {
        fn_bn_split_pair(a->stats, f, j0, j1, mean, var);
    } else if (a->training) {
        FN(bn_combine)(w->part_b, w->chunks, f, j0, j1, (double)a->n, var, NULL);
    } else {
        const fn_real *restrict rm = a->running_mean, *restrict rv = a->running_var;
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) {
            mean[j] = rm[j];
            var[j] = rv[j];
        }
    }
    fn_real *restrict shift = col, *restrict scale = col + f;
    fn_real *restrict gamma_out = col + 2 * f, *restrict beta_out = col + 3 * f;
    const fn_real *restrict gamma = a->gamma, *restrict beta = a->beta;
    const double eps = a->eps;
    if (a->training) {
        FN(round_into)(a->mean, mean, j0, j1);
        FN(round_into)(a->var, var, j0, j1);
        if (a->running_mean) {
            fn_real *restrict rm = a->running_mean, *restrict rv = a->running_var;
            const double m = a->momentum;
            const fn_int rows = a->stat_n > 0 ? a->stat_n : a->n;
            const double unbias = rows > 1 ? (double)rows / (double)(rows - 1) : 1.0;
            FN_SIMD
            for (fn_int j = j0; j < j1; j++) {
                rm[j] = (fn_real)((1.0 - m) * rm[j] + m * mean[j]);
                rv[j] = (fn_real)((1.0 - m) * rv[j] + m * var[j] * unbias);
            }
        }
    }
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) {
        shift[j] = (fn_real)mean[j];
        scale[j] = (fn_real)(1.0 / sqrt((fn_real)var[j] + eps));
        gamma_out[j] = gamma ? gamma[j] : (fn_real)1;
        beta_out[j] = beta ? beta[j] : (fn_real)0;
    }
}

typedef struct {
    const FN(fn_bn_forward_args) *a;
    const fn_real *col;
    uint32_t threshold;
} FN(bn_normalize_plan);

static void FN(bn_normalize_chunk)(const void *ctx, fn_int c)
{
    const FN(bn_normalize_plan) *s = ctx;
    FN(bn_normalize_rows_any)(s->a, s->col, c * FN_BN_ROWS, FN_MIN(s->a->n, (c + 1) * FN_BN_ROWS),
                              s->threshold);
}

void FN(fn_bn_forward_team)(fn_team *team, const FN(fn_bn_forward_args) *a)
{
    const fn_int n = a->n, f = a->f;
    const FN(bn_work) w = FN(bn_work_layout)(a->work, n, f);
    if (a->training && !a->stats) {
        /* two-pass statistics: means, then squared deviations about them
         * rounded to fn_real (the shift the normalisation subtracts) */
        FN(bn_partials_team)(team, n, f, a->x, NULL, w.part_a);
        const FN(bn_combine_plan) c = {w.part_a, (double)n, w.sum_a, w.col};
        FN(bn_for_features)(team, f, (double)w.chunks, FN(bn_combine_block), &c, &w);
        FN(bn_partials_team)(team, n, f, a->x, w.col, w.part_b);
    }
    FN(bn_for_features)(team, f, a->training && !a->stats ? (double)w.chunks + 8 : 8,
                        FN(bn_feature_constants), a, &w);
    const FN(bn_normalize_plan) s = {
        a, w.col, a->dropout.rate > 0 ? fn_dropout_threshold(a->dropout.rate) : 0};
    fn_team_for(team, w.chunks, (s.threshold ? 6.0 : 2.0) * n * f * FN_NS_PER_ELEMENT,
                FN(bn_normalize_chunk), &s);
}

/* ---- backward ------------------------------------------------------------ */

/* Pass 1 over one chunk's column block: dy (the incoming gradient taken
 * back through dropout and the activation) into dx, and the chunk's
 * partial sums of dy and dy * xhat.  One loop per row, everything kept in
 * registers.  invstd and mean (read when xhat is recomputed) are at the
 * block's first column. */
FN_INLINE void FN(bn_backward_chunk_block)(const FN(fn_bn_backward_args) *a, fn_int i0,
                                           fn_int rows, fn_int j0, const fn_int w,
                                           const fn_real *restrict invstd,
                                           const fn_real *restrict mean, const int act,
                                           const int has_mask, const int has_xhat,
                                           fn_real *restrict part_dy,
                                           fn_real *restrict part_dy_xhat)
{
    const fn_int f = a->f;
    const fn_int at = i0 * f + j0;
    const fn_real *restrict dout = a->dout + at;
    const uint8_t *restrict mask = a->mask ? a->mask + at : NULL;
    const fn_real *restrict act_out = a->act_out ? a->act_out + at : NULL;
    const fn_real *restrict xhat_in = a->xhat ? a->xhat + at : NULL;
    const fn_real *restrict x = a->x ? a->x + at : NULL;
    fn_real *dx = a->dx + at;   /* may alias dout */
    const fn_real keep_scale = (fn_real)(has_mask ? 1.0 / (1.0 - a->rate) : 1.0);
    const fn_real slope = (fn_real)a->slope;
    fn_real acc_dy[FN_BN_WIDTH], acc_dy_xhat[FN_BN_WIDTH];
    /* FN_ACT_NEEDS_PRE: the activation's input gamma * xhat + beta, rebuilt */
    fn_real gamma[FN_BN_WIDTH], beta[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) acc_dy[j] = acc_dy_xhat[j] = 0;
    if (FN_ACT_NEEDS_PRE(act))
        for (fn_int j = 0; j < w; j++) {
            gamma[j] = a->gamma ? a->gamma[j0 + j] : (fn_real)1;
            beta[j] = a->beta ? a->beta[j0 + j] : (fn_real)0;
        }
    for (fn_int i = 0; i < rows; i++) {
        const fn_int r = i * f;
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            fn_real v = dout[r + j];
            if (has_mask) v *= (fn_real)mask[r + j] * keep_scale;
            const fn_real xh = has_xhat ? xhat_in[r + j] : (x[r + j] - mean[j]) * invstd[j];
            if (act != FN_ACT_NONE)
                v *= FN(fn_act_grad)(act_out[r + j],
                                     FN_ACT_NEEDS_PRE(act) ? gamma[j] * xh + beta[j] : 0, act,
                                     slope);
            dx[r + j] = v;
            acc_dy[j] += v;
            acc_dy_xhat[j] += v * xh;
        }
    }
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        part_dy[j] = acc_dy[j];
        part_dy_xhat[j] = acc_dy_xhat[j];
    }
}

FN_INLINE void FN(bn_backward_chunk)(const FN(fn_bn_backward_args) *a, const FN(bn_work) *w,
                                     fn_int c, const int act, const int has_mask,
                                     const int has_xhat)
{
    const fn_int f = a->f, i0 = c * FN_BN_ROWS, rows = FN_MIN(FN_BN_ROWS, a->n - i0);
    const fn_real *invstd = w->col + f, *mean = w->col;
    for (fn_int j0 = 0; j0 < f; j0 += FN_BN_WIDTH) {
        fn_real *pd = w->part_a + c * f + j0, *px = w->part_b + c * f + j0;
        if (f - j0 >= FN_BN_WIDTH)
            FN(bn_backward_chunk_block)(a, i0, rows, j0, FN_BN_WIDTH, invstd + j0, mean + j0,
                                        act, has_mask, has_xhat, pd, px);
        else
            FN(bn_backward_chunk_block)(a, i0, rows, j0, f - j0, invstd + j0, mean + j0, act,
                                        has_mask, has_xhat, pd, px);
    }
}

/* Pass 1 over chunk c.  One specialisation per activation, dropout and
 * stored-xhat combination: the inner loops carry no branches. */
FN_MULTIVERSION
static void FN(bn_backward_chunk_any)(const FN(fn_bn_backward_args) *a, const FN(bn_work) *w,
                                      fn_int c)
{
#define FN_BN_BWD(ACT) \
    if (a->mask && a->xhat) FN(bn_backward_chunk)(a, w, c, ACT, 1, 1); \
    else if (a->mask) FN(bn_backward_chunk)(a, w, c, ACT, 1, 0); \
    else if (a->xhat) FN(bn_backward_chunk)(a, w, c, ACT, 0, 1); \
    else FN(bn_backward_chunk)(a, w, c, ACT, 0, 0);
    FN_ACT_SWITCH(a->act, FN_BN_BWD)
#undef FN_BN_BWD
}

/* Pass 2 over rows [i0, i1) of the w features from j0:
 * dx = k0 * (dy - k1 - xhat * k2), with k0 = gamma * invstd,
 * k1 = mean(dy), k2 = mean(dy * xhat); the constants in registers. */
FN_INLINE void FN(bn_backward_finish_block)(const FN(fn_bn_backward_args) *a,
                                            const fn_real *col, fn_int i0, fn_int i1,
                                            fn_int j0, const fn_int w, const int has_xhat)
{
    const fn_int f = a->f;
    fn_real mean[FN_BN_WIDTH], invstd[FN_BN_WIDTH];
    fn_real k0[FN_BN_WIDTH], k1[FN_BN_WIDTH], k2[FN_BN_WIDTH];
    FN_SIMD
    for (fn_int j = 0; j < w; j++) {
        mean[j] = col[j0 + j];
        invstd[j] = col[f + j0 + j];
        k0[j] = col[2 * f + j0 + j];
        k1[j] = col[3 * f + j0 + j];
        k2[j] = col[4 * f + j0 + j];
    }
    for (fn_int i = i0; i < i1; i++) {
        fn_real *restrict dx = a->dx + i * f + j0;
        const fn_real *restrict xhat_in = has_xhat ? a->xhat + i * f + j0 : NULL;
        const fn_real *restrict x = has_xhat ? NULL : a->x + i * f + j0;
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            const fn_real xh = has_xhat ? xhat_in[j] : (x[j] - mean[j]) * invstd[j];
            dx[j] = k0[j] * (dx[j] - k1[j] - xh * k2[j]);
        }
    }
}

FN_MULTIVERSION
static void FN(bn_backward_finish_rows)(const FN(fn_bn_backward_args) *a, const fn_real *col,
                                        fn_int i0, fn_int i1)
{
#define FN_BN_FINISH(W) \
    if (a->xhat) FN(bn_backward_finish_block)(a, col, i0, i1, j0, W, 1); \
    else FN(bn_backward_finish_block)(a, col, i0, i1, j0, W, 0);
    for (fn_int j0 = 0; j0 < a->f; j0 += FN_BN_WIDTH) {
        if (a->f - j0 >= FN_BN_WIDTH) { FN_BN_FINISH(FN_BN_WIDTH) }
        else { FN_BN_FINISH(a->f - j0) }
    }
#undef FN_BN_FINISH
}

/* Features [j0, j1) before pass 1: mean and invstd (for a recomputed
 * xhat, and phase 2's k0).  Here and below, fields go to restrict locals
 * first, so the loops vectorise (a store to col could otherwise alias *a). */
FN_MULTIVERSION
static void FN(bn_backward_stats)(const void *arg, const FN(bn_work) *w, fn_int j0, fn_int j1)
{
    const FN(fn_bn_backward_args) *a = arg;
    const fn_real *restrict mean = a->mean, *restrict var = a->var;
    fn_real *restrict mean_out = w->col, *restrict invstd = w->col + a->f;
    const double eps = a->eps;
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) invstd[j] = (fn_real)(1.0 / sqrt(var[j] + eps));
    if (mean) {
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) mean_out[j] = mean[j];
    } else {
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) mean_out[j] = 0;
    }
}

/* Features [j0, j1) between the passes: the two reductions (from the chunk
 * partials, or phase 2's summed `sums`), dgamma and dbeta, and pass 2's
 * constants k0, k1, k2 in col.  Phase 1 stops at the reductions. */
FN_MULTIVERSION
static void FN(bn_backward_features)(const void *arg, const FN(bn_work) *w, fn_int j0,
                                     fn_int j1)
{
    const FN(fn_bn_backward_args) *a = arg;
    const fn_int f = a->f;
    double *restrict sum_dy = w->sum_a, *restrict sum_dy_xhat = w->sum_b;
    fn_real *restrict col = w->col;
    if (a->phase == 2) {
        fn_bn_split_pair(a->sums, f, j0, j1, sum_dy, sum_dy_xhat);
    } else {
        FN(bn_combine)(w->part_a, w->chunks, f, j0, j1, 1.0, sum_dy, NULL);
        FN(bn_combine)(w->part_b, w->chunks, f, j0, j1, 1.0, sum_dy_xhat, NULL);
        FN(round_into)(a->dgamma, sum_dy_xhat, j0, j1);
        FN(round_into)(a->dbeta, sum_dy, j0, j1);
        if (a->phase == 1) {
            fn_bn_join_pair(sum_dy, sum_dy_xhat, f, j0, j1, a->sums);
            return;
        }
        if (a->xhat) FN(bn_backward_stats)(a, w, j0, j1);    /* not done before pass 1 */
    }
    const double rows = (double)(a->phase == 2 ? a->stat_n : a->n);
    const fn_real *restrict gamma = a->gamma;
    fn_real *restrict invstd = col + f, *restrict k0 = col + 2 * f;
    fn_real *restrict k1 = col + 3 * f, *restrict k2 = col + 4 * f;
    if (gamma) {
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) k0[j] = gamma[j] * invstd[j];
    } else {
        FN_SIMD
        for (fn_int j = j0; j < j1; j++) k0[j] = invstd[j];
    }
    FN_SIMD
    for (fn_int j = j0; j < j1; j++) {
        k1[j] = (fn_real)(sum_dy[j] / rows);
        k2[j] = (fn_real)(sum_dy_xhat[j] / rows);
    }
}

typedef struct {
    const FN(fn_bn_backward_args) *a;
    const FN(bn_work) *w;
} FN(bn_backward_plan);

static void FN(bn_backward_pass1_chunk)(const void *ctx, fn_int c)
{
    const FN(bn_backward_plan) *s = ctx;
    FN(bn_backward_chunk_any)(s->a, s->w, c);
}

static void FN(bn_backward_pass2_chunk)(const void *ctx, fn_int c)
{
    const FN(bn_backward_plan) *s = ctx;
    FN(bn_backward_finish_rows)(s->a, s->w->col, c * FN_BN_ROWS,
                                FN_MIN(s->a->n, (c + 1) * FN_BN_ROWS));
}

void FN(fn_bn_backward_team)(fn_team *team, const FN(fn_bn_backward_args) *a)
{
    const fn_int n = a->n, f = a->f;
    const FN(bn_work) w = FN(bn_work_layout)(a->work, n, f);
    const FN(bn_backward_plan) s = {a, &w};
    const int pass1 = a->phase != 2, pass2 = a->phase != 1;
    const int stats_first = !a->xhat || a->phase == 2;
    if (stats_first) FN(bn_for_features)(team, f, 4, FN(bn_backward_stats), a, &w);
    if (pass1)
        fn_team_for(team, w.chunks, 3.0 * n * f * FN_NS_PER_ELEMENT, FN(bn_backward_pass1_chunk),
                    &s);
    FN(bn_for_features)(team, f, 2.0 * w.chunks + 8, FN(bn_backward_features), a, &w);
    if (!pass2) return;
    fn_team_for(team, w.chunks, 2.0 * n * f * FN_NS_PER_ELEMENT, FN(bn_backward_pass2_chunk),
                &s);
}

#undef FN_BN_WIDTH
#endif
