/* Compiles the file named by FN_TEMPLATE once for float (FN_DTYPE 32) and once
 * for double (64).  A kernel file keeps its dtype-free part under
 * `#ifndef FN_DTYPE`, then says
 *     #define FN_TEMPLATE "fn_loss.c"
 *     #include "fn_each_dtype.h"
 * and holds its templated part after `#else` (fn_real.h maps fn_real and FN()
 * to the dtype).  No include guard: every kernel file includes it once. */
#define FN_DTYPE 32
#include FN_TEMPLATE
#undef FN_DTYPE
#define FN_DTYPE 64
#include FN_TEMPLATE
#undef FN_DTYPE
#undef FN_TEMPLATE
