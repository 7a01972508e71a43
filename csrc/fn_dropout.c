/* Inverted dropout with counter-based masks (see fn_rng.h). */
#ifndef FN_DTYPE

#include "fn_internal.h"
#include "fn_rng.h"

uint32_t fn_dropout_threshold(double rate)
{
    /* keep when a uniform 32-bit word is below (1 - rate) * 2^32 */
    const double t = ldexp(1.0 - rate, 32);
    if (t >= 4294967295.0) return 0xFFFFFFFFu;
    if (t <= 1.0) return 1u;
    return (uint32_t)t;
}

uint32_t fn_dropout_random_bits(const fn_dropout *d, uint32_t element)
{
    return fn_dropout_bits(fn_dropout_key(d), element);
}

#define FN_TEMPLATE "fn_dropout.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"
#include "fn_dropout_row.h"

FN_MULTIVERSION
static void FN(dropout_rows)(fn_int i0, fn_int i1, fn_int f, const fn_real *x, fn_int ldx,
                             const fn_dropout *d, uint32_t threshold, fn_real *out,
                             uint8_t *mask)
{
    const fn_real scale = (fn_real)(1.0 / (1.0 - d->rate));
    const uint64_t key = fn_dropout_key(d);
    for (fn_int i = i0; i < i1; i++)
        FN(fn_dropout_row)(key, threshold, d->row0 + i, f, 0, f, x + i * ldx, scale,
                           out + i * f, mask + i * f);
}

typedef struct {
    fn_int n, f, ldx, rows;
    const fn_real *x;
    const fn_dropout *d;
    uint32_t threshold;
    fn_real *out;
    uint8_t *mask;
} FN(dropout_plan);

static void FN(dropout_chunk)(const void *ctx, fn_int c)
{
    const FN(dropout_plan) *s = ctx;
    FN(dropout_rows)(c * s->rows, FN_MIN(s->n, (c + 1) * s->rows), s->f, s->x, s->ldx, s->d,
                     s->threshold, s->out, s->mask);
}

void FN(fn_dropout_team)(fn_team *team, fn_int n, fn_int f, const fn_real *x, fn_int ldx,
                         const fn_dropout *d, fn_real *out, uint8_t *mask)
{
    const fn_int rows = FN_MAX(1, FN_CHUNK / FN_MAX(f, 1));
    const FN(dropout_plan) s = {n, f, ldx, rows, x, d, fn_dropout_threshold(d->rate), out, mask};
    fn_team_for(team, FN_CEIL_DIV(n, rows), 4 * (double)n * f * FN_NS_PER_ELEMENT,
                FN(dropout_chunk), &s);
}

FN_MULTIVERSION
static void FN(dropout_backward_span)(fn_int s, fn_int e, const fn_real *dout,
                                      const uint8_t *mask, fn_real scale, fn_real *dx)
{
    FN_SIMD
    for (fn_int i = s; i < e; i++) dx[i] = dout[i] * ((fn_real)mask[i] * scale);
}

typedef struct {
    fn_int count;
    const fn_real *dout;
    const uint8_t *mask;
    fn_real scale;
    fn_real *dx;
} FN(dropout_backward_plan);

static void FN(dropout_backward_chunk)(const void *ctx, fn_int c)
{
    const FN(dropout_backward_plan) *s = ctx;
    FN(dropout_backward_span)(c * FN_CHUNK, FN_MIN(s->count, (c + 1) * FN_CHUNK), s->dout,
                              s->mask, s->scale, s->dx);
}

void FN(fn_dropout_backward_team)(fn_team *team, fn_int count, const fn_real *dout,
                                  const uint8_t *mask, double rate, fn_real *dx)
{
    const FN(dropout_backward_plan) s = {count, dout, mask, (fn_real)(1.0 / (1.0 - rate)), dx};
    fn_team_for(team, FN_CEIL_DIV(count, FN_CHUNK), (double)count * FN_NS_PER_ELEMENT,
                FN(dropout_backward_chunk), &s);
}

#endif
