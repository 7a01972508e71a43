/* Counter-based random bits for dropout.
 *
 * The keep decision of element (i, j) of an n x f array is a pure function
 * of (seed, layer, step, i * f + j): no generator state, so the mask is the
 * same whichever thread computes which element.
 *
 *   key  = splitmix64(seed ^ splitmix64(layer << 32 | step))
 *   u    = h(h(c ^ key_lo) ^ key_hi),  c = (i * f + j) mod 2^32
 *   keep = u < floor((1 - rate) * 2^32)      (applied by fn_dropout_row.h)
 *
 * splitmix64 is Steele, Lea & Flood's finaliser (OOPSLA 2014); h is the
 * 32-bit "lowbias32" integer hash found by Wellons' hash-prospector (two
 * multiply-xorshift rounds, avalanche bias ~0.17%).  Unlike Philox4x32-10
 * (measured at ~6 ns per element here), h maps onto 8-lane AVX2 integer
 * ops, about 1 ns per element. */
#ifndef FN_RNG_H
#define FN_RNG_H

#include <stdint.h>
#include "fastnet.h"
#include "fn_internal.h"

static inline uint64_t fn_splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* lowbias32 on a uint32_t or on a GCC vector of them (same steps, lane by lane) */
#define FN_LOWBIAS32(x) \
    ((x) ^= (x) >> 16, (x) *= 0x7FEB352Du, (x) ^= (x) >> 15, (x) *= 0x846CA68Bu, \
     (x) ^= (x) >> 16, (x))

static inline uint32_t fn_hash32(uint32_t x) { return FN_LOWBIAS32(x); }

/* Sixteen lanes: one 64-byte vector on AVX-512, two 32-byte ones on AVX2. */
typedef uint32_t fn_u32x16 __attribute__((vector_size(64)));
static inline fn_u32x16 fn_hash32x16(fn_u32x16 x) { return FN_LOWBIAS32(x); }

static inline uint64_t fn_dropout_key(const fn_dropout *d)
{
    return fn_splitmix64(d->seed ^ fn_splitmix64(((uint64_t)d->layer << 32) | d->step));
}

/* The 32 random bits of element number `c` under `key`. */
static inline uint32_t fn_dropout_bits(uint64_t key, uint32_t c)
{
    return fn_hash32(fn_hash32(c ^ (uint32_t)key) ^ (uint32_t)(key >> 32));
}

#endif
