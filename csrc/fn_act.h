/* Scalar activation helpers, templated (include after fn_real.h). */
#if (FN_DTYPE == 32 && !defined(FN_ACT_H_32)) || (FN_DTYPE == 64 && !defined(FN_ACT_H_64))
#if FN_DTYPE == 32
#define FN_ACT_H_32
#else
#define FN_ACT_H_64
#endif

/* ReLU that keeps NaN: NaN < 0 is false, so NaN passes through. */
FN_INLINE fn_real FN(fn_relu)(fn_real x) { return x < 0 ? (fn_real)0 : x; }

FN_INLINE fn_real FN(fn_sigmoid)(fn_real x)
{
    /* Two branches so exp never overflows. */
    if (x >= 0) return (fn_real)1 / ((fn_real)1 + (fn_real)exp(-(double)x));
    fn_real e = (fn_real)exp((double)x);
    return e / ((fn_real)1 + e);
}

FN_INLINE fn_real FN(fn_activate)(fn_real x, int act)
{
    switch (act) {
    case FN_ACT_RELU: return FN(fn_relu)(x);
    case FN_ACT_TANH: return (fn_real)tanh((double)x);
    case FN_ACT_SIGMOID: return FN(fn_sigmoid)(x);
    default: return x;
    }
}

/* Derivative of the activation, from its output y (ReLU: 1 where y > 0, as
 * NumPy's `dout * (out > 0)`).  Branch-free so loops vectorise; a NaN in the
 * incoming gradient still propagates through the multiplication. */
FN_INLINE fn_real FN(fn_act_grad)(fn_real y, int act)
{
    switch (act) {
    case FN_ACT_RELU: return (fn_real)(y > 0);
    case FN_ACT_TANH: return (fn_real)1 - y * y;
    case FN_ACT_SIGMOID: return y * ((fn_real)1 - y);
    default: return (fn_real)1;
    }
}

#endif
