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
static inline float fn_exp_nonpos_f32(float x)
{
    const float lo = -87.33654475f;              /* log(FLT_MIN) */
    float xc = x < lo ? lo : x;
    const float t = xc * 1.44269504088896341f;   /* x / ln2 */
    const int32_t ni = (int32_t)(t - 0.5f);      /* round half away (t <= 0) */
    const float n = (float)ni;
    const float r = (xc - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (ni + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    float y = p * scale;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

static inline double fn_exp_nonpos_f64(double x) { return exp(x); }

#endif
