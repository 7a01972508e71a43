/* Backward of an activation (optionally after dropout), fused with the
 * column sums that give the bias gradient. */
#ifndef FN_DTYPE

#include "fn_internal.h"

#define FN_TEMPLATE "fn_activation.c"
#include "fn_each_dtype.h"

#else

#include "fn_real.h"
#include "fn_act.h"

/* act is a constant at each call site below, so each loop is specialised. */
FN_INLINE void FN(act_backward_block)(fn_int n, fn_int f, fn_int j0, fn_int j1,
                                      const fn_real *dout, const fn_real *out,
                                      const fn_real *pre, const int act, fn_real slope,
                                      const uint8_t *mask, fn_real scale, fn_real *dz,
                                      fn_real *db, const int has_mask, const int has_dz)
{
    double sums[FN_COL_BLOCK_BYTES / sizeof(fn_real)] = {0};
    fn_real v[FN_COL_BLOCK_BYTES / sizeof(fn_real)];
    const fn_int w = j1 - j0;
    for (fn_int i = 0; i < n; i++) {
        const fn_int r = i * f + j0;
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            fn_real x = dout[r + j];
            if (has_mask) x *= (fn_real)mask[r + j] * scale;
            if (act != FN_ACT_NONE)     /* read out or pre: the other may be NULL */
                x *= FN_ACT_NEEDS_PRE(act) ? FN(fn_act_grad)(0, pre[r + j], act, slope)
                                           : FN(fn_act_grad)(out[r + j], 0, act, slope);
            v[j] = x;
        }
        FN_SIMD
        for (fn_int j = 0; j < w; j++) {
            if (has_dz) dz[r + j] = v[j];
            sums[j] += v[j];
        }
    }
    if (db)
        FN_SIMD
        for (fn_int j = 0; j < w; j++) db[j0 + j] = (fn_real)sums[j];
}

FN_MULTIVERSION
static void FN(act_backward_block_any)(fn_int n, fn_int f, fn_int j0, fn_int j1,
                                       const fn_real *dout, const fn_real *out,
                                       const fn_real *pre, int act, fn_real slope,
                                       const uint8_t *mask, fn_real scale, fn_real *dz,
                                       fn_real *db)
{
#define FN_ACT_BWD_CALL(ACT, M, Z) \
    FN(act_backward_block)(n, f, j0, j1, dout, out, pre, ACT, slope, mask, scale, dz, db, M, Z)
#define FN_ACT_BWD(ACT) \
    if (mask && dz) FN_ACT_BWD_CALL(ACT, 1, 1); \
    else if (mask) FN_ACT_BWD_CALL(ACT, 1, 0); \
    else if (dz) FN_ACT_BWD_CALL(ACT, 0, 1); \
    else FN_ACT_BWD_CALL(ACT, 0, 0);
    FN_ACT_SWITCH(act, FN_ACT_BWD)
#undef FN_ACT_BWD
#undef FN_ACT_BWD_CALL
}

typedef struct {
    fn_int n, f;
    const fn_real *dout, *out, *pre;
    int act;
    fn_real slope;
    const uint8_t *mask;
    fn_real scale;
    fn_real *dz, *db;
} FN(act_backward_plan);

static void FN(act_backward_chunk)(const void *ctx, fn_int blk)
{
    const FN(act_backward_plan) *s = ctx;
    const fn_int j0 = blk * (FN_COL_BLOCK_BYTES / sizeof(fn_real));
    FN(act_backward_block_any)(s->n, s->f, j0,
                               FN_MIN(s->f, j0 + (fn_int)(FN_COL_BLOCK_BYTES / sizeof(fn_real))),
                               s->dout, s->out, s->pre, s->act, s->slope, s->mask, s->scale,
                               s->dz, s->db);
}

void FN(fn_act_backward_team)(fn_team *team, fn_int n, fn_int f, const fn_real *dout,
                              const fn_real *out, const fn_real *pre, int act, double slope,
                              const uint8_t *mask, double rate, fn_real *dz, fn_real *db)
{
    const fn_int width = FN_COL_BLOCK_BYTES / sizeof(fn_real);
    const FN(act_backward_plan) s = {n, f, dout, out, pre, act, (fn_real)slope, mask,
                                     (fn_real)(mask ? 1.0 / (1.0 - rate) : 1.0), dz, db};
    fn_team_for(team, FN_CEIL_DIV(f, width), (double)n * f * FN_NS_PER_ELEMENT,
                FN(act_backward_chunk), &s);
}

#endif
