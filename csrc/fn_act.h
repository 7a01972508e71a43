/* Scalar activation helpers, templated (include after fn_real.h). */
#if (FN_DTYPE == 32 && !defined(FN_ACT_H_32)) || (FN_DTYPE == 64 && !defined(FN_ACT_H_64))
#if FN_DTYPE == 32
#define FN_ACT_H_32
#else
#define FN_ACT_H_64
#endif

/* ReLU that keeps NaN: NaN < 0 is false, so NaN passes through. */
FN_INLINE fn_real FN(fn_relu)(fn_real x) { return x < 0 ? (fn_real)0 : x; }

/* Leaky ReLU, slope >= 0 (the Python layer checks it): keeps NaN like ReLU. */
FN_INLINE fn_real FN(fn_leaky_relu)(fn_real x, fn_real slope) { return x < 0 ? x * slope : x; }

FN_INLINE fn_real FN(fn_sigmoid)(fn_real x)
{
    /* Two branches so exp never overflows. */
    if (x >= 0) return (fn_real)1 / ((fn_real)1 + (fn_real)exp(-(double)x));
    fn_real e = (fn_real)exp((double)x);
    return e / ((fn_real)1 + e);
}

/* GELU, the exact (erf) form: x * Phi(x), in double then rounded. */
FN_INLINE fn_real FN(fn_gelu)(fn_real x)
{
    const double z = (double)x;
    return (fn_real)(0.5 * z * (1.0 + erf(z * 0.70710678118654752440)));
}

/* SiLU (swish): x * sigmoid(x). */
FN_INLINE fn_real FN(fn_silu)(fn_real x) { return x * FN(fn_sigmoid)(x); }

FN_INLINE fn_real FN(fn_activate)(fn_real x, int act, fn_real slope)
{
    switch (act) {
    case FN_ACT_RELU: return FN(fn_relu)(x);
    case FN_ACT_TANH: return (fn_real)tanh((double)x);
    case FN_ACT_SIGMOID: return FN(fn_sigmoid)(x);
    case FN_ACT_LEAKY_RELU: return FN(fn_leaky_relu)(x, slope);
    case FN_ACT_GELU: return FN(fn_gelu)(x);
    case FN_ACT_SILU: return FN(fn_silu)(x);
    default: return x;
    }
}

/* Derivative of the activation at pre-activation z with output y: from y
 * where that determines it (ReLU: 1 where y > 0, as NumPy's
 * `dout * (out > 0)`; leaky ReLU likewise, slope >= 0), from z for GELU and
 * SiLU (FN_ACT_NEEDS_PRE; z is unused otherwise).  Branch-free so loops
 * vectorise; a NaN in the incoming gradient still propagates through the
 * multiplication. */
FN_INLINE fn_real FN(fn_act_grad)(fn_real y, fn_real z, int act, fn_real slope)
{
    switch (act) {
    case FN_ACT_RELU: return (fn_real)(y > 0);
    case FN_ACT_TANH: return (fn_real)1 - y * y;
    case FN_ACT_SIGMOID: return y * ((fn_real)1 - y);
    case FN_ACT_LEAKY_RELU: return y > 0 ? (fn_real)1 : slope;
    case FN_ACT_GELU: {
        /* Phi(z) + z phi(z) */
        const double t = (double)z;
        return (fn_real)(0.5 * (1.0 + erf(t * 0.70710678118654752440))
                         + t * 0.39894228040143267794 * exp(-0.5 * t * t));
    }
    case FN_ACT_SILU: {
        const fn_real s = FN(fn_sigmoid)(z);
        return s * ((fn_real)1 + z * ((fn_real)1 - s));
    }
    default: return (fn_real)1;
    }
}

#endif
