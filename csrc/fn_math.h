/* Vectorisable elementary functions for the hot loops. */
#ifndef FN_MATH_H
#define FN_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for float x <= 0 (softmax of max-shifted logits), within about
 * 2 ulp: Cody-Waite reduction x = n ln2 + r, then Cephes' degree-6
 * minimax polynomial for exp(r) on [-ln2/2, ln2/2], scaled by 2^n built in
 * the exponent bits.  Branch-free so the compiler vectorises it; NaN in
 * gives NaN out, and results below FLT_MIN flush to 0. */
/* The reduction x - n ln2 (ln2 split in two for exactness) and the
 * polynomial, written once for float and for GCC vectors of float (the
 * same expressions, so the same operations and bits). */
#define FN_EXP_REDUCE(xc, n) (((xc) - (n) * 0.693359375f) - (n) * -2.12194440e-4f)
#define FN_EXP_P0 1.9875691500e-4f
#define FN_EXP_POLY(p, r) do { \
        p = p * r + 1.3981999507e-3f; \
        p = p * r + 8.3334519073e-3f; \
        p = p * r + 4.1665795894e-2f; \
        p = p * r + 1.6666665459e-1f; \
        p = p * r + 5.0000001201e-1f; \
        p = p * r * r + r + 1.0f; \
    } while (0)

static inline float fn_exp_nonpos_f32(float x)
{
    const float lo = -87.33654475f;              /* log(FLT_MIN) */
    float xc = x < lo ? lo : x;
    const float t = xc * 1.44269504088896341f;   /* x / ln2 */
    const int32_t ni = (int32_t)(t - 0.5f);      /* round half away (t <= 0) */
    const float n = (float)ni;
    const float r = FN_EXP_REDUCE(xc, n);
    float p = FN_EXP_P0;
    FN_EXP_POLY(p, r);
    const int32_t bits = (ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

/* fn_exp_nonpos_f32 on eight lanes, in GCC vector extensions: GCC does not
 * vectorise the scalar loop (the clamp before the float-to-int conversion
 * leaves control flow in it).  The same operations in the same order, so
 * the same bits lane by lane (tests/test_functional.py checks it). */
typedef float fn_v8sf __attribute__((vector_size(32)));
typedef int32_t fn_v8si __attribute__((vector_size(32)));

static inline fn_v8sf fn_exp_nonpos_v8sf(fn_v8sf x)
{
    const fn_v8sf lo = (fn_v8sf){0} + -87.33654475f;
    const fn_v8si below = x < lo, nan = x != x;
    const fn_v8sf xc = (fn_v8sf)(((fn_v8si)lo & below) | ((fn_v8si)x & ~below));
    const fn_v8sf t = xc * 1.44269504088896341f;
    const fn_v8si ni = __builtin_convertvector(t - 0.5f, fn_v8si);
    const fn_v8sf n = __builtin_convertvector(ni, fn_v8sf);
    const fn_v8sf r = FN_EXP_REDUCE(xc, n);
    fn_v8sf p = (fn_v8sf){0} + FN_EXP_P0;
    FN_EXP_POLY(p, r);
    const fn_v8sf scale = (fn_v8sf)((ni + 127) << 23);
    const fn_v8si y = (fn_v8si)(p * scale) & ~below;
    return (fn_v8sf)(((fn_v8si)x & nan) | (y & ~nan));
}

static inline double fn_exp_nonpos_f64(double x) { return exp(x); }

#endif
