/* Counter-based random bits for dropout.
 *
 * Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as
 * easy as 1, 2, 3", SC 2011): a keyed bijection of a 128-bit counter, so the
 * bits for element (i, j) depend on (seed, layer, step, i, j) only, never on
 * which thread computes them or in which order. */
#ifndef FN_RNG_H
#define FN_RNG_H

#include <stdint.h>
#include "fastnet.h"
#include "fn_internal.h"

#define FN_PHILOX_M0 0xD2511F53u
#define FN_PHILOX_M1 0xCD9E8D57u
#define FN_PHILOX_W0 0x9E3779B9u
#define FN_PHILOX_W1 0xBB67AE85u

static inline void fn_philox4(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                              uint32_t k0, uint32_t k1, uint32_t *o0, uint32_t *o1,
                              uint32_t *o2, uint32_t *o3)
{
    _Pragma("GCC unroll 10")
    for (int round = 0; round < 10; round++) {
        const uint64_t p0 = (uint64_t)FN_PHILOX_M0 * c0;
        const uint64_t p1 = (uint64_t)FN_PHILOX_M1 * c2;
        const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        const uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        c1 = (uint32_t)p1;
        c3 = (uint32_t)p0;
        c0 = n0;
        c2 = n2;
        k0 += FN_PHILOX_W0;
        k1 += FN_PHILOX_W1;
    }
    *o0 = c0; *o1 = c1; *o2 = c2; *o3 = c3;
}

static inline void fn_philox_block(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                   uint32_t k0, uint32_t k1, uint32_t out[4])
{
    fn_philox4(c0, c1, c2, c3, k0, k1, &out[0], &out[1], &out[2], &out[3]);
}

/* keep[j - j0] = 1 when element (row, j) survives, for j in [j0, j1);
 * j0 must be a multiple of 4.  Blocks are generated FN_PHILOX_BATCH at a
 * time into separate word arrays, a shape the compiler vectorises (the
 * 32x32->64-bit products map to vpmuludq). */
#define FN_PHILOX_BATCH 16
static inline void fn_dropout_keep_row(const fn_dropout *d, uint32_t threshold,
                                       fn_int row, fn_int j0, fn_int j1, uint8_t *keep)
{
    const uint32_t k0 = (uint32_t)d->seed, k1 = (uint32_t)(d->seed >> 32);
    uint32_t w0[FN_PHILOX_BATCH], w1[FN_PHILOX_BATCH], w2[FN_PHILOX_BATCH],
        w3[FN_PHILOX_BATCH];
    for (fn_int g0 = j0 / 4; 4 * g0 < j1; g0 += FN_PHILOX_BATCH) {
        const int count = (int)FN_MIN(FN_PHILOX_BATCH, FN_CEIL_DIV(j1, 4) - g0);
        FN_SIMD
        for (int b = 0; b < FN_PHILOX_BATCH; b++)
            fn_philox4((uint32_t)(g0 + b), (uint32_t)row, d->layer, d->step, k0, k1,
                       &w0[b], &w1[b], &w2[b], &w3[b]);
        for (int b = 0; b < count; b++) {
            const fn_int j = 4 * (g0 + b);
            const uint32_t words[4] = {w0[b], w1[b], w2[b], w3[b]};
            for (int lane = 0; lane < 4; lane++)
                if (j + lane >= j0 && j + lane < j1)
                    keep[j + lane - j0] = (uint8_t)(words[lane] < threshold);
        }
    }
}

#endif
