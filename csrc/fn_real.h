/* Type template.  A kernel file is written once and compiled for float and
 * double by including itself with FN_DTYPE set to 32, then 64:
 *
 *     #ifndef FN_DTYPE
 *     #define FN_DTYPE 32
 *     #include "fn_example.c"
 *     #undef FN_DTYPE
 *     #define FN_DTYPE 64
 *     #include "fn_example.c"
 *     #else
 *     #include "fn_real.h"
 *     ... body using fn_real, FN(name) ...
 *     #endif
 *
 * This header may be included many times; it (re)defines:
 *   fn_real    the element type
 *   FN(name)   name##_f32 or name##_f64
 *   FN_VLEN    elements in a 32-byte vector
 *   fn_vec     a 32-byte GCC vector of fn_real
 */
#undef fn_real
#undef fn_ivec_elem
#undef FN
#undef FN_VLEN
#undef FN_SFX

#if FN_DTYPE == 32
#define fn_real float
#define fn_ivec_elem int32_t
#define FN(name) name##_f32
#define FN_VLEN 8
#elif FN_DTYPE == 64
#define fn_real double
#define fn_ivec_elem int64_t
#define FN(name) name##_f64
#define FN_VLEN 4
#else
#error "FN_DTYPE must be 32 or 64"
#endif
