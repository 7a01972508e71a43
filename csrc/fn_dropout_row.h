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
 * pass, no round trip through the bytes.  Sixteen elements at a time in GCC
 * vector code (the auto-vectoriser kept the hash in 8 lanes even where
 * 16 fit), the rest one by one: the same bits either way. */
FN_INLINE void FN(fn_dropout_row)(uint64_t key, uint32_t threshold, fn_int row, fn_int f,
                                  fn_int j0, fn_int count, const fn_real *restrict x,
                                  fn_real scale, fn_real *restrict out,
                                  uint8_t *restrict keep)
{
    typedef fn_real rvec __attribute__((vector_size(16 * sizeof(fn_real))));
    typedef fn_ivec_elem mvec __attribute__((vector_size(16 * sizeof(fn_ivec_elem))));
    typedef uint8_t bvec __attribute__((vector_size(16)));
    const uint32_t first = (uint32_t)(row * f + j0), n = (uint32_t)count;
    const uint32_t lo = (uint32_t)key, hi = (uint32_t)(key >> 32);
    const fn_u32x16 lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const rvec scales = (rvec){0} + scale;
    uint32_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const fn_u32x16 u = fn_hash32x16(fn_hash32x16((first + j + lane) ^ lo) ^ hi);
        const mvec kept = __builtin_convertvector(u < threshold, mvec);   /* -1 or 0 */
        const bvec bytes = __builtin_convertvector(kept & 1, bvec);
        rvec v;
        memcpy(&v, x + j, sizeof v);
        v *= (rvec)((mvec)scales & kept);                                 /* scale or +0 */
        memcpy(keep + j, &bytes, sizeof bytes);
        memcpy(out + j, &v, sizeof v);
    }
    for (; j < n; j++) {
        const int kept = fn_dropout_bits(key, first + j) < threshold;
        keep[j] = (uint8_t)kept;
        out[j] = x[j] * (kept ? scale : (fn_real)0);
    }
}

#endif
