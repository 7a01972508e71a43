/* Optimizer updates in place over one flat parameter buffer, and the
 * ordered sum of squares behind gradient-norm clipping.  The update rules
 * follow PyTorch's (torch.optim.SGD / Adam / AdamW, default options) so a
 * step can be checked against it. */
#ifndef FN_DTYPE

#include "fn_internal.h"

#define FN_TEMPLATE "fn_optim.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"

FN_MULTIVERSION
static void FN(update_span)(const FN(fn_optim) *o, fn_int s, fn_int e, fn_real *param,
                             const fn_real *grad, fn_real grad_scale)
{
    const fn_real lr = (fn_real)o->lr, wd = (fn_real)o->weight_decay;
    fn_real *b1 = o->buf1, *b2 = o->buf2;
    if (o->kind == FN_OPT_SGD) {
        /* g += wd p;  buf = g on the first step, then momentum buf + g;
         * p -= lr (nesterov ? g + momentum buf : buf) */
        const fn_real mom = (fn_real)o->momentum;
        const int first = o->step == 0;
        FN_SIMD
        for (fn_int i = s; i < e; i++) {
            fn_real g = grad[i] * grad_scale + wd * param[i];
            if (mom != 0) {
                b1[i] = first ? g : mom * b1[i] + g;
                g = o->nesterov ? g + mom * b1[i] : b1[i];
            }
            param[i] -= lr * g;
        }
        return;
    }
    /* Adam / AdamW:  m = b1 m + (1 - b1) g,  v = b2 v + (1 - b2) g^2,
     * p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps);
     * Adam adds wd p to g, AdamW multiplies p by (1 - lr wd) first. */
    const double t = (double)(o->step + 1);
    const fn_real beta1 = (fn_real)o->beta1, beta2 = (fn_real)o->beta2;
    const fn_real step_size = (fn_real)(o->lr / (1.0 - pow(o->beta1, t)));
    const fn_real inv_bc2_sqrt = (fn_real)(1.0 / sqrt(1.0 - pow(o->beta2, t)));
    const fn_real eps = (fn_real)o->eps;
    const int decoupled = o->kind == FN_OPT_ADAMW;
    const fn_real decay = decoupled ? (fn_real)(1.0 - o->lr * o->weight_decay) : (fn_real)1;
    const fn_real l2 = decoupled ? (fn_real)0 : wd;
    FN_SIMD
    for (fn_int i = s; i < e; i++) {
        fn_real p = param[i] * decay;
        const fn_real g = grad[i] * grad_scale + l2 * param[i];
        const fn_real m = beta1 * b1[i] + ((fn_real)1 - beta1) * g;
        const fn_real v = beta2 * b2[i] + ((fn_real)1 - beta2) * g * g;
        b1[i] = m;
        b2[i] = v;
        p -= step_size * (m / (sqrt(v) * inv_bc2_sqrt + eps));
        param[i] = p;
    }
}

/* Arguments of the chunked phases over one flat buffer. */
typedef struct {
    const FN(fn_optim) *o;
    fn_int count;
    fn_real *param;
    const fn_real *grad;
    fn_real grad_scale;
    double *partial;         /* per-chunk sums of squares */
} FN(flat_plan);

static void FN(update_chunk)(const void *ctx, fn_int c)
{
    const FN(flat_plan) *s = ctx;
    FN(update_span)(s->o, c * FN_CHUNK, FN_MIN(s->count, (c + 1) * FN_CHUNK), s->param,
                     s->grad, s->grad_scale);
}

void FN(fn_optim_update_team)(fn_team *team, const FN(fn_optim) *o, fn_int count,
                              fn_real *param, const fn_real *grad, double grad_scale)
{
    const FN(flat_plan) s = {o, count, param, grad, (fn_real)grad_scale, NULL};
    fn_team_for(team, FN_CEIL_DIV(count, FN_CHUNK), 4 * (double)count * FN_NS_PER_ELEMENT,
                FN(update_chunk), &s);
}

FN_MULTIVERSION
static double FN(sumsq_span)(const fn_real *x, fn_int s, fn_int e)
{
    /* 32 interleaved partial sums in four vectors of eight doubles (four
     * independent multiply-add chains), added in a fixed order; in GCC vector
     * code, as the auto-vectoriser left the lanes scalar (one 64-byte or two
     * 32-byte vectors each: the same bits either way) */
    typedef double dvec __attribute__((vector_size(64)));
    typedef fn_real rvec __attribute__((vector_size(8 * sizeof(fn_real))));
    dvec acc[4] = {{0}, {0}, {0}, {0}};
    fn_int i = s;
    for (; i + 32 <= e; i += 32)
        for (int q = 0; q < 4; q++) {
            rvec v;
            memcpy(&v, x + i + 8 * q, sizeof v);
            const dvec d = __builtin_convertvector(v, dvec);
            acc[q] += d * d;
        }
    for (; i < e; i++) acc[0][0] += (double)x[i] * (double)x[i];
    const dvec t = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    return ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
}

/* Sum of the per-chunk partial sums, in chunk order. */
static double FN(sum_chunks)(fn_int chunks, const double *partial)
{
    double total = 0;
    for (fn_int c = 0; c < chunks; c++) total += partial[c];
    return total;
}

static void FN(sumsq_chunk)(const void *ctx, fn_int c)
{
    const FN(flat_plan) *s = ctx;
    s->partial[c] = FN(sumsq_span)(s->grad, c * FN_CHUNK, FN_MIN(s->count, (c + 1) * FN_CHUNK));
}

double FN(fn_sumsq_team)(fn_team *team, fn_int count, const fn_real *x, double *scratch)
{
    const fn_int chunks = FN_CEIL_DIV(count, FN_CHUNK);
    const FN(flat_plan) s = {NULL, count, NULL, x, 1, scratch};
    fn_team_for(team, chunks, (double)count * FN_NS_PER_ELEMENT, FN(sumsq_chunk), &s);
    return FN(sum_chunks)(chunks, scratch);
}

static void FN(update_sumsq_chunk)(const void *ctx, fn_int c)
{
    const FN(flat_plan) *s = ctx;
    const fn_int start = c * FN_CHUNK, end = FN_MIN(s->count, (c + 1) * FN_CHUNK);
    s->partial[c] = FN(sumsq_span)(s->grad, start, end);
    FN(update_span)(s->o, start, end, s->param, s->grad, (fn_real)1);
}

double FN(fn_optim_update_sumsq_team)(fn_team *team, const FN(fn_optim) *o, fn_int count,
                                      fn_real *param, const fn_real *grad, double *scratch)
{
    /* Without clipping the update does not need the norm first: each chunk's
     * sum of squares is taken while the chunk is in cache for its update.
     * Same chunks, same order: the same bits as fn_sumsq_team. */
    const fn_int chunks = FN_CEIL_DIV(count, FN_CHUNK);
    const FN(flat_plan) s = {o, count, param, grad, 1, scratch};
    fn_team_for(team, chunks, 5 * (double)count * FN_NS_PER_ELEMENT, FN(update_sumsq_chunk),
                &s);
    return FN(sum_chunks)(chunks, scratch);
}

#endif
