/* Losses: softmax cross-entropy (with its gradient in the same pass over
 * each row) and the elementwise losses against targets (squared error,
 * Huber, binary cross-entropy on logits).  Rows are independent; the batch
 * loss is summed from per-row values in row order by the caller. */
#ifndef FN_DTYPE

#include "fn_internal.h"
#include "fn_math.h"

fn_int fn_reduce_scratch_size(fn_int rows, fn_int elements)
{
    /* a loss keeps two values per row; a chunked sum one per chunk, plus
     * the total */
    return FN_MAX(2 * rows, FN_CEIL_DIV(elements, FN_CHUNK) + 1) + 8;
}

#define FN_TEMPLATE "fn_loss.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"
#include "fn_act.h"

#if FN_DTYPE == 32
#define FN_EXP_NONPOS fn_exp_nonpos_f32
#else
#define FN_EXP_NONPOS fn_exp_nonpos_f64
#endif

/* Sum of weights of the batch rows (n without weights), in row order. */
static double FN(weight_sum)(fn_int n, const fn_real *weights, const int64_t *index)
{
    if (!weights) return (double)n;
    double s = 0;
    for (fn_int i = 0; i < n; i++) s += weights[index ? index[i] : i];
    return s;
}

/* Sum of exp(z[j] - m) over a row, written to e[j] when e is not NULL.
 * Always summed in blocks of FN_XENT_BLOCK (block sums in order), so the
 * loss has the same bits whether or not the gradient is wanted. */
#define FN_XENT_BLOCK 64
FN_INLINE double FN(exp_shifted)(fn_int c, const fn_real *z, fn_real m, fn_real *e)
{
    fn_real tmp[FN_XENT_BLOCK];
    double total = 0;
    for (fn_int j0 = 0; j0 < c; j0 += FN_XENT_BLOCK) {
        const fn_int w = FN_MIN(FN_XENT_BLOCK, c - j0);
        fn_real *out = e ? e + j0 : tmp;
        fn_int j = 0;
#if FN_DTYPE == 32
        for (; j + 8 <= w; j += 8) {
            fn_v8sf v;
            memcpy(&v, z + j0 + j, sizeof v);
            v = fn_exp_nonpos_v8sf(v - m);
            memcpy(out + j, &v, sizeof v);
        }
#endif
        for (; j < w; j++) out[j] = FN_EXP_NONPOS(z[j0 + j] - m);
        double s = 0;
        for (j = 0; j < w; j++) s += out[j];
        total += s;
    }
    return total;
}

FN_MULTIVERSION
static void FN(xent_rows)(fn_int i0, fn_int i1, fn_int c, const fn_real *logits,
                          const int64_t *labels, const fn_real *weights, const int64_t *index,
                          double inv_wsum, fn_real *dlogits, double *row_loss,
                          double *row_correct)
{
    for (fn_int i = i0; i < i1; i++) {
        const fn_real *z = logits + i * c;
        const fn_int r = index ? index[i] : i;
        const int64_t y = labels[r];
        const double w = weights ? (double)weights[r] : 1.0;
        /* first maximum; a NaN logit propagates through the exps below */
        fn_int best = 0;
        fn_real m = z[0];
        for (fn_int j = 1; j < c; j++)
            if (z[j] > m) { m = z[j]; best = j; }
        fn_real *e = dlogits ? dlogits + i * c : NULL;
        const double s = FN(exp_shifted)(c, z, m, e);
        row_loss[i] = w * (log(s) - ((double)z[y] - (double)m));
        row_correct[i] = best == y;
        if (e) {
            const fn_real k = (fn_real)(w * inv_wsum / s), ky = (fn_real)(w * inv_wsum);
            for (fn_int j = 0; j < c; j++) e[j] *= k;
            e[y] -= ky;
        }
    }
}

/* Arguments of the row phases of the losses and the softmax. */
typedef struct {
    fn_int n, c, rows;
    const fn_real *logits, *targets, *weights;
    const int64_t *labels, *index;
    double inv_total;
    fn_real *grad;
    double *row_loss, *row_correct;
} FN(rows_plan);

static void FN(xent_chunk)(const void *ctx, fn_int t)
{
    const FN(rows_plan) *s = ctx;
    FN(xent_rows)(t * s->rows, FN_MIN(s->n, (t + 1) * s->rows), s->c, s->logits, s->labels,
                  s->weights, s->index, s->inv_total, s->grad, s->row_loss, s->row_correct);
}

void FN(fn_softmax_xent_team)(fn_team *team, fn_int n, fn_int c, const fn_real *logits,
                              const int64_t *labels, const fn_real *weights,
                              const int64_t *index, fn_real *dlogits, double total,
                              double *scratch, fn_result *res)
{
    const double wsum = total > 0 ? total : FN(weight_sum)(n, weights, index);
    const fn_int rows = FN_MAX(1, FN_CHUNK / FN_MAX(c, 1));
    const FN(rows_plan) s = {
        .n = n, .c = c, .rows = rows, .logits = logits, .weights = weights, .labels = labels,
        .index = index, .inv_total = wsum != 0 ? 1.0 / wsum : 0.0, .grad = dlogits,
        .row_loss = scratch, .row_correct = scratch + n,
    };
    fn_team_for(team, FN_CEIL_DIV(n, rows), 8 * (double)n * c * FN_NS_PER_ELEMENT,
                FN(xent_chunk), &s);
    double loss = 0, correct = 0;
    for (fn_int i = 0; i < n; i++) { loss += s.row_loss[i]; correct += s.row_correct[i]; }
    res->loss = loss * s.inv_total;
    res->correct = (fn_int)correct;
}

/* Row i's loss summed over its d outputs (in double) and, when dpred is not
 * NULL, the gradient of the mean: `kind` is a constant at each call site,
 * so each loop is specialised.
 *   MSE    e^2                                    2 e / total
 *   Huber  e^2 / 2 (|e| <= delta), else           clamp(e, -delta, delta) / total
 *          delta (|e| - delta / 2)
 *   BCE    max(z, 0) - z t + log1p(exp(-|z|))     (sigmoid(z) - t) / total
 * with e = pred - target, z = pred (a logit), t = target; row_correct (BCE)
 * is 1 when every output is on the side of 0 its target is of 1/2. */
FN_INLINE void FN(target_rows)(const int kind, fn_int i0, fn_int i1, fn_int d,
                               const fn_real *pred, const fn_real *targets,
                               const fn_real *weights, const int64_t *index, double delta,
                               double inv_total, fn_real *dpred, double *row_loss,
                               double *row_correct)
{
    const fn_real dl = (fn_real)delta;
    for (fn_int i = i0; i < i1; i++) {
        const fn_int r = index ? index[i] : i;
        const fn_real *p = pred + i * d, *t = targets + r * d;
        const double w = weights ? (double)weights[r] : 1.0;
        double s = 0;
        fn_int right = 0;
        for (fn_int j = 0; j < d; j++) {
            const double e = (double)p[j] - (double)t[j];
            if (kind == FN_LOSS_MSE) {
                s += e * e;
            } else if (kind == FN_LOSS_HUBER) {
                const double a = fabs(e);
                s += a <= delta ? 0.5 * e * e : delta * (a - 0.5 * delta);
            } else {
                const double z = (double)p[j];
                s += (z > 0 ? z : 0) - z * (double)t[j] + log1p(exp(-fabs(z)));
                right += (p[j] > 0) == (t[j] > (fn_real)0.5);
            }
        }
        row_loss[i] = w * s;
        if (kind == FN_LOSS_BCE) row_correct[i] = right == d;
        if (dpred) {
            const fn_real k = (fn_real)((kind == FN_LOSS_MSE ? 2.0 : 1.0) * w * inv_total);
            for (fn_int j = 0; j < d; j++) {
                if (kind == FN_LOSS_MSE) {
                    dpred[i * d + j] = k * (p[j] - t[j]);
                } else if (kind == FN_LOSS_HUBER) {
                    const fn_real e = p[j] - t[j];
                    dpred[i * d + j] = k * (e < -dl ? -dl : e > dl ? dl : e);
                } else {
                    dpred[i * d + j] = k * (FN(fn_sigmoid)(p[j]) - t[j]);
                }
            }
        }
    }
}

FN_MULTIVERSION
static void FN(target_rows_any)(int kind, fn_int i0, fn_int i1, fn_int d, const fn_real *pred,
                                const fn_real *targets, const fn_real *weights,
                                const int64_t *index, double delta, double inv_total,
                                fn_real *dpred, double *row_loss, double *row_correct)
{
#define FN_TARGET_ROWS(KIND) \
    FN(target_rows)(KIND, i0, i1, d, pred, targets, weights, index, delta, inv_total, dpred, \
                    row_loss, row_correct)
    switch (kind) {
    case FN_LOSS_HUBER: FN_TARGET_ROWS(FN_LOSS_HUBER); break;
    case FN_LOSS_BCE: FN_TARGET_ROWS(FN_LOSS_BCE); break;
    default: FN_TARGET_ROWS(FN_LOSS_MSE);
    }
#undef FN_TARGET_ROWS
}

typedef struct {
    FN(rows_plan) rows;
    int kind;
    double delta;
} FN(target_plan);

static void FN(target_chunk)(const void *ctx, fn_int t)
{
    const FN(target_plan) *s = ctx;
    const FN(rows_plan) *r = &s->rows;
    FN(target_rows_any)(s->kind, t * r->rows, FN_MIN(r->n, (t + 1) * r->rows), r->c,
                        r->logits, r->targets, r->weights, r->index, s->delta, r->inv_total,
                        r->grad, r->row_loss, r->row_correct);
}

void FN(fn_target_loss_team)(fn_team *team, int kind, double delta, fn_int n, fn_int d,
                             const fn_real *pred, const fn_real *targets,
                             const fn_real *weights, const int64_t *index, fn_real *dpred,
                             double total_weight, double *scratch, fn_result *res)
{
    const double total = (total_weight > 0 ? total_weight
                          : FN(weight_sum)(n, weights, index)) * (double)d;
    const fn_int rows = FN_MAX(1, FN_CHUNK / FN_MAX(d, 1));
    const FN(target_plan) s = {
        .rows = {
            .n = n, .c = d, .rows = rows, .logits = pred, .targets = targets,
            .weights = weights, .index = index, .inv_total = total != 0 ? 1.0 / total : 0.0,
            .grad = dpred, .row_loss = scratch, .row_correct = scratch + n,
        },
        .kind = kind, .delta = delta,
    };
    fn_team_for(team, FN_CEIL_DIV(n, rows),
                (kind == FN_LOSS_MSE ? 2 : 8) * (double)n * d * FN_NS_PER_ELEMENT,
                FN(target_chunk), &s);
    double loss = 0, correct = 0;
    for (fn_int i = 0; i < n; i++) loss += scratch[i];
    if (kind == FN_LOSS_BCE)
        for (fn_int i = 0; i < n; i++) correct += scratch[n + i];
    res->loss = loss * s.rows.inv_total;
    res->correct = (fn_int)correct;
}

void FN(fn_mse_team)(fn_team *team, fn_int n, fn_int d, const fn_real *pred,
                     const fn_real *targets, const fn_real *weights, const int64_t *index,
                     fn_real *dpred, double total_weight, double *scratch, fn_result *res)
{
    FN(fn_target_loss_team)(team, FN_LOSS_MSE, 0, n, d, pred, targets, weights, index, dpred,
                            total_weight, scratch, res);
}

FN_MULTIVERSION
static void FN(softmax_rows)(fn_int i0, fn_int i1, fn_int c, const fn_real *logits,
                             fn_real *probs)
{
    for (fn_int i = i0; i < i1; i++) {
        const fn_real *z = logits + i * c;
        fn_real m = z[0];
        for (fn_int j = 1; j < c; j++) m = z[j] > m ? z[j] : m;
        fn_real *p = probs + i * c;
        const fn_real k = (fn_real)(1.0 / FN(exp_shifted)(c, z, m, p));
        for (fn_int j = 0; j < c; j++) p[j] *= k;
    }
}

static void FN(softmax_chunk)(const void *ctx, fn_int t)
{
    const FN(rows_plan) *s = ctx;
    FN(softmax_rows)(t * s->rows, FN_MIN(s->n, (t + 1) * s->rows), s->c, s->logits, s->grad);
}

void FN(fn_softmax_team)(fn_team *team, fn_int n, fn_int c, const fn_real *logits,
                         fn_real *probs)
{
    const fn_int rows = FN_MAX(1, FN_CHUNK / FN_MAX(c, 1));
    const FN(rows_plan) s = {.n = n, .c = c, .rows = rows, .logits = logits, .grad = probs};
    fn_team_for(team, FN_CEIL_DIV(n, rows), 8 * (double)n * c * FN_NS_PER_ELEMENT,
                FN(softmax_chunk), &s);
}

#undef FN_EXP_NONPOS
#undef FN_XENT_BLOCK
#endif
