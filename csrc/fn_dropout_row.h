/* One row of inverted dropout, templated (include after fn_real.h): shared by
 * the dropout kernel and the batch-norm forward that fuses it. */
#if (FN_DTYPE == 32 && !defined(FN_DROPOUT_ROW_H_32)) \
    || (FN_DTYPE == 64 && !defined(FN_DROPOUT_ROW_H_64))
#if FN_DTYPE == 32
#define FN_DROPOUT_ROW_H_32
#else
#define FN_DROPOUT_ROW_H_64
#endif

#include "fn_rng.h"

/* Elements [j0, j0 + count) of row `row` of an n x f array (x, out and keep
 * point at element j0): keep[j] = 1 when it survives, out[j] = x[j] * scale
 * if kept, else x[j] * 0 (a NaN or inf input stays NaN, as in NumPy's
 * x * mask / (1 - rate)).  The keep bit feeds the multiply directly: one
 * pass, no round trip through the bytes (32-bit counters keep the loop in
 * 32-bit lanes). */
FN_INLINE void FN(fn_dropout_row)(uint64_t key, uint32_t threshold, fn_int row, fn_int f,
                                  fn_int j0, fn_int count, const fn_real *restrict x,
                                  fn_real scale, fn_real *restrict out,
                                  uint8_t *restrict keep)
{
    const uint32_t first = (uint32_t)(row * f + j0), n = (uint32_t)count;
    const uint32_t lo = (uint32_t)key, hi = (uint32_t)(key >> 32);
    FN_SIMD
    for (uint32_t j = 0; j < n; j++) {
        const int kept = fn_hash32(fn_hash32((first + j) ^ lo) ^ hi) < threshold;
        keep[j] = (uint8_t)kept;
        out[j] = x[j] * (kept ? scale : (fn_real)0);
    }
}

#endif
