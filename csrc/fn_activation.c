/* Backward of an activation (optionally after dropout), fused with the
 * column sums that give the bias gradient. */
#ifndef FN_DTYPE

#include "fn_internal.h"

#define FN_DTYPE 32
#include "fn_activation.c"
#undef FN_DTYPE
#define FN_DTYPE 64
#include "fn_activation.c"
#undef FN_DTYPE

#else

#include "fn_real.h"
#include "fn_act.h"

/* act is a constant at each call site below, so each loop is specialised. */
FN_INLINE void FN(act_backward_block)(fn_int n, fn_int f, fn_int j0, fn_int j1,
                                      const fn_real *dout, const fn_real *out, const int act,
                                      const uint8_t *mask, fn_real scale, fn_real *dz,
                                      fn_real *db)
{
    double sums[FN_COL_BLOCK_BYTES / sizeof(fn_real)] = {0};
    for (fn_int i = 0; i < n; i++) {
        for (fn_int j = j0; j < j1; j++) {
            const fn_int e = i * f + j;
            fn_real v = dout[e];
            if (mask) v *= mask[e] ? scale : (fn_real)0;
            if (act != FN_ACT_NONE) v *= FN(fn_act_grad)(out[e], act);
            if (dz) dz[e] = v;
            sums[j - j0] += v;
        }
    }
    if (db)
        for (fn_int j = j0; j < j1; j++) db[j] = (fn_real)sums[j - j0];
}

FN_MULTIVERSION
static void FN(act_backward_block_any)(fn_int n, fn_int f, fn_int j0, fn_int j1,
                                       const fn_real *dout, const fn_real *out, int act,
                                       const uint8_t *mask, fn_real scale, fn_real *dz,
                                       fn_real *db)
{
    switch (act) {
    case FN_ACT_RELU:
        FN(act_backward_block)(n, f, j0, j1, dout, out, FN_ACT_RELU, mask, scale, dz, db);
        break;
    case FN_ACT_TANH:
        FN(act_backward_block)(n, f, j0, j1, dout, out, FN_ACT_TANH, mask, scale, dz, db);
        break;
    case FN_ACT_SIGMOID:
        FN(act_backward_block)(n, f, j0, j1, dout, out, FN_ACT_SIGMOID, mask, scale, dz, db);
        break;
    default:
        FN(act_backward_block)(n, f, j0, j1, dout, out, FN_ACT_NONE, mask, scale, dz, db);
    }
}

void FN(fn_act_backward_team)(fn_int n, fn_int f, const fn_real *dout, const fn_real *out,
                              int act, const uint8_t *mask, double rate, fn_real *dz,
                              fn_real *db)
{
    const fn_int width = FN_COL_BLOCK_BYTES / sizeof(fn_real);
    const fn_real scale = (fn_real)(mask ? 1.0 / (1.0 - rate) : 1.0);
    FN_OMP_FOR
    for (fn_int blk = 0; blk < FN_CEIL_DIV(f, width); blk++) {
        const fn_int j0 = blk * width;
        FN(act_backward_block_any)(n, f, j0, FN_MIN(f, j0 + width), dout, out, act, mask,
                                   scale, dz, db);
    }
}

#endif
