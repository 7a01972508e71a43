/* Helpers shared by the kernel files; not part of the API. */
#ifndef FN_INTERNAL_H
#define FN_INTERNAL_H

#include <math.h>
#include <string.h>
#include "fastnet.h"
#include "fn_team.h"

/* Hot loops are compiled three times, for x86-64-v4 (AVX-512), x86-64-v3
 * (AVX2 + FMA) and the baseline ISA, and the loader picks one per machine
 * (GCC ifunc): a wheel built on one CPU never executes an instruction
 * another lacks.  By construction the v4 and v3 clones round alike (both
 * contract a * b + c to FMA, and no loop reassociates a sum); the baseline
 * has no FMA.  (v4: digits and toy steps ~7-10 % faster, measured here.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__linux__) && !defined(FN_NO_MULTIVERSION)
#define FN_MULTIVERSION __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define FN_MULTIVERSION
#endif

#define FN_INLINE static inline __attribute__((always_inline))
#define FN_MIN(a, b) ((a) < (b) ? (a) : (b))
#define FN_MAX(a, b) ((a) > (b) ? (a) : (b))
#define FN_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))

/* Column blocks of per-feature reductions: 128 bytes of a row.  A column's
 * sum over the rows has one fixed order: in row order by one thread, or
 * (batch norm) per 8-row chunk, then the chunks' partials in chunk order. */
#define FN_COL_BLOCK_BYTES 128
/* Elements per chunk of flat elementwise loops and of ordered reductions. */
#define FN_CHUNK 4096

/* Activations whose derivative is not a function of their output: their
 * backward reads the pre-activation z (stored by the forward, or rebuilt
 * from batch norm's xhat). */
#define FN_ACT_NEEDS_PRE(act) ((act) == FN_ACT_GELU || (act) == FN_ACT_SILU)
/* Dispatch an activation to CASE(ACT), ACT a compile-time constant, so that
 * each specialisation's loops carry no branch on it. */
#define FN_ACT_SWITCH(act, CASE) \
    switch (act) { \
    case FN_ACT_RELU: CASE(FN_ACT_RELU) break; \
    case FN_ACT_TANH: CASE(FN_ACT_TANH) break; \
    case FN_ACT_SIGMOID: CASE(FN_ACT_SIGMOID) break; \
    case FN_ACT_LEAKY_RELU: CASE(FN_ACT_LEAKY_RELU) break; \
    case FN_ACT_GELU: CASE(FN_ACT_GELU) break; \
    case FN_ACT_SILU: CASE(FN_ACT_SILU) break; \
    default: CASE(FN_ACT_NONE) \
    }
/* Activations the product epilogues apply element by element (libm calls),
 * after the vector store. */
#define FN_ACT_SCALAR(act) \
    ((act) != FN_ACT_NONE && (act) != FN_ACT_RELU && (act) != FN_ACT_LEAKY_RELU)

/* Start of part `i` of `parts` near-equal parts of [0, total), rounded down
 * to a multiple of `align` (the last part ends at total). */
static inline fn_int fn_split(fn_int total, fn_int parts, fn_int i, fn_int align)
{
    if (i >= parts) return total;
    fn_int s = (fn_int)((double)total * (double)i / (double)parts);
    return s - s % align;
}

#endif
