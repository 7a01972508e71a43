/* Dense products C = act(A B + bias), for the forward and backward passes.
 *
 * Two paths, chosen by shape only (so results never depend on the thread
 * count):
 * - large products go to a single-threaded BLAS gemm (BLIS), one call per
 *   tile of a fixed grid of `blas->grid` output tiles, with the bias and
 *   activation applied to each tile while it is still in cache;
 * - small and thin products (the typical MLP layer; few rows; a narrow
 *   output) take a register-blocked kernel here: B is read in panels of PW
 *   columns (packed when strided or ragged), A is broadcast element by
 *   element, and each MR x PW tile of C stays in registers across the whole
 *   k loop, then gets the epilogue before its single store.  No BLAS call overhead, no second pass over C.  A tile is
 *   one pass of 64-byte vectors on a CPU with AVX-512, else two passes of
 *   32-byte vectors over its halves (NR columns each).
 * Either way every element of C is summed over k by one thread, in a fixed
 * order, with one multiply-add per step: the tile shape and the vector
 * width never change a result. */
#ifndef FN_DTYPE

#include <limits.h>
#include "fn_internal.h"
#include "fn_act.h"

#define FN_GEMM_MR 6
/* Dispatch a row count 1..FN_GEMM_MR to CASE(r), a compile-time constant. */
#define FN_SWITCH_MR(mr, CASE) \
    switch (mr) { CASE(6) CASE(5) CASE(4) CASE(3) CASE(2) CASE(1) default: break; }
/* Small-path limits, from benchmarks/test_bench_kernels.py on AMD EPYC
 * (Zen 1): beyond them BLIS' cache blocking wins. */
#define FN_GEMM_SMALL_MAX_K 384
#define FN_GEMM_SMALL_MAX_WORK (256.0 * 256.0 * 512.0)
/* Thin products stay on the small path whatever their size: with a few rows
 * (a small predict) or an output a couple of panels wide (the last layer),
 * BLIS packs the big operand for little arithmetic.  Measured on an
 * AVX-512 Xeon, one thread: 1 x 784 x 512 47 us against 200 us on BLIS,
 * 256 x 512 x 10 49 against 141, 512 x 2048 x 32 607 against 1019. */
#define FN_GEMM_THIN_ROWS 12
#define FN_GEMM_THIN_COLS 64

fn_int fn_gemm_pack_size(fn_int k, fn_int n, int dtype_bits)
{
    const fn_int pw = dtype_bits == 32 ? 32 : 16;   /* PW below */
    return FN_MAX(k, 1) * FN_CEIL_DIV(FN_MAX(n, 1), pw) * pw;
}

/* The AVX-512 tiles need GCC's target attribute and its CPU check. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && !defined(FN_NO_MULTIVERSION)
#define FN_GEMM_WIDE 1
#define FN_TARGET_AVX512 __attribute__((target("arch=x86-64-v4")))
/* The caller's policy (blas->wide_vectors) and this CPU's support. */
static int fn_gemm_wide_ok(const fn_blas *blas)
{
    static int cpu = -1;   /* benign race: every thread computes the same value */
    if (cpu < 0) cpu = fn_cpu_has_avx512();
    return blas && blas->wide_vectors && cpu;
}
#else
#define FN_GEMM_WIDE 0
#endif

#define FN_TEMPLATE "fn_gemm.c"
#include "fn_each_dtype.h"

#else /* template body */

#include "fn_real.h"
#include "fn_act.h"

#define NR (2 * FN_VLEN)          /* columns of a 32-byte-vector tile */
#define PW (2 * NR)               /* columns of a packed panel, a 64-byte-vector tile */
typedef fn_real FN(vec) __attribute__((vector_size(32)));
typedef fn_ivec_elem FN(ivec) __attribute__((vector_size(32)));

FN_INLINE FN(vec) FN(vload)(const fn_real *p)
{
    FN(vec) v;
    memcpy(&v, p, sizeof v);
    return v;
}

FN_INLINE void FN(vstore)(fn_real *p, FN(vec) v) { memcpy(p, &v, sizeof v); }

FN_INLINE FN(vec) FN(vrelu)(FN(vec) v)
{
    const FN(ivec) negative = v < (FN(vec)){0};   /* false for NaN: NaN is kept */
    return (FN(vec))((FN(ivec))v & ~negative);
}

FN_INLINE FN(vec) FN(vleaky)(FN(vec) v, fn_real slope)
{
    const FN(ivec) negative = v < (FN(vec)){0};   /* false for NaN: NaN is kept */
    return (FN(vec))(((FN(ivec))v & ~negative) | ((FN(ivec))(v * slope) & negative));
}

/* The scalar activations (FN_ACT_SCALAR) of a stored row c[0:w]. */
FN_INLINE void FN(scalar_epilogue)(fn_real *c, fn_int w, int act, fn_real slope)
{
    for (fn_int j = 0; j < w; j++) c[j] = FN(fn_activate)(c[j], act, slope);
}

/* Epilogue of one row of a tile: c[0:nr] = act(acc [+ c] [+ bias]), where
 * the tile is nv vectors wide (v1 unused when nv == 1); pre (NULL: not
 * wanted) gets the values before the activation. */
FN_INLINE void FN(store_row)(fn_real *c, const int nv, fn_int nr, FN(vec) v0, FN(vec) v1,
                             int accumulate, const fn_real *bias, int act, fn_real slope,
                             fn_real *pre)
{
    if (nv == 1 && nr == FN_VLEN) {
        if (accumulate) v0 += FN(vload)(c);
        if (bias) v0 += FN(vload)(bias);
        if (pre) FN(vstore)(pre, v0);
        if (act == FN_ACT_RELU) v0 = FN(vrelu)(v0);
        if (act == FN_ACT_LEAKY_RELU) v0 = FN(vleaky)(v0, slope);
        FN(vstore)(c, v0);
        if (FN_ACT_SCALAR(act)) FN(scalar_epilogue)(c, FN_VLEN, act, slope);
        return;
    }
    if (nv == 2 && nr == NR) {
        if (accumulate) { v0 += FN(vload)(c); v1 += FN(vload)(c + FN_VLEN); }
        if (bias) { v0 += FN(vload)(bias); v1 += FN(vload)(bias + FN_VLEN); }
        if (pre) { FN(vstore)(pre, v0); FN(vstore)(pre + FN_VLEN, v1); }
        if (act == FN_ACT_RELU) { v0 = FN(vrelu)(v0); v1 = FN(vrelu)(v1); }
        if (act == FN_ACT_LEAKY_RELU) { v0 = FN(vleaky)(v0, slope); v1 = FN(vleaky)(v1, slope); }
        FN(vstore)(c, v0);
        FN(vstore)(c + FN_VLEN, v1);
        if (FN_ACT_SCALAR(act)) FN(scalar_epilogue)(c, NR, act, slope);
        return;
    }
    fn_real tmp[NR];
    FN(vstore)(tmp, v0);
    if (nv == 2) FN(vstore)(tmp + FN_VLEN, v1);
    for (fn_int j = 0; j < nr; j++) {
        fn_real x = tmp[j];
        if (accumulate) x += c[j];
        if (bias) x += bias[j];
        if (pre) pre[j] = x;
        c[j] = FN(fn_activate)(x, act, slope);
    }
}

/* One tile: rows [0, mr) and columns [0, nr) of C, over all k.  b points at
 * an NR-wide panel whose rows are ldb apart.  mr is a compile-time constant
 * at every call site and the accumulators are named variables (not an
 * array), so all 2 * mr of them stay in vector registers. */
FN_INLINE void FN(micro_tile)(const int mr, const int nv, fn_int k, const fn_real *a,
                              fn_int a_rs,
                              fn_int a_cs, const fn_real *b, fn_int ldb, fn_real *c,
                              fn_int ldc, fn_int nr, int accumulate, const fn_real *bias,
                              int act, fn_real slope, fn_real *pre)
{
    const FN(vec) zero = {0};
    FN(vec) c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
    FN(vec) c30 = zero, c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
    for (fn_int p = 0; p < k; p++) {
        const FN(vec) b0 = FN(vload)(b + p * ldb);
        FN(vec) b1 = zero;
        if (nv == 2) b1 = FN(vload)(b + p * ldb + FN_VLEN);
        const fn_real *ap = a + p * a_cs;
#define FN_ROW_FMA(r) \
        if (mr > r) { \
            const fn_real ar = ap[r * a_rs]; \
            c##r##0 += ar * b0; \
            if (nv == 2) c##r##1 += ar * b1; \
        }
        FN_ROW_FMA(0) FN_ROW_FMA(1) FN_ROW_FMA(2) FN_ROW_FMA(3) FN_ROW_FMA(4) FN_ROW_FMA(5)
#undef FN_ROW_FMA
    }
    /* Park the tile before the epilogue: the epilogue may call libm
     * (tanh, exp), and live accumulators across a call would be kept on the
     * stack inside the k loop too. */
    FN(vec) tile[2 * FN_GEMM_MR];
#define FN_ROW_PARK(r) if (mr > r) { tile[2 * r] = c##r##0; tile[2 * r + 1] = c##r##1; }
    FN_ROW_PARK(0) FN_ROW_PARK(1) FN_ROW_PARK(2) FN_ROW_PARK(3) FN_ROW_PARK(4) FN_ROW_PARK(5)
#undef FN_ROW_PARK
    for (int r = 0; r < mr; r++)
        FN(store_row)(c + r * ldc, nv, nr, tile[2 * r], tile[2 * r + 1], accumulate, bias, act,
                      slope, pre ? pre + r * ldc : NULL);
}

FN_MULTIVERSION
static void FN(small_tile)(fn_int mr, fn_int k, const fn_real *a, fn_int a_rs, fn_int a_cs,
                           const fn_real *b, fn_int ldb, fn_real *c, fn_int ldc, fn_int nr,
                           int accumulate, const fn_real *bias, int act, fn_real slope,
                           fn_real *pre)
{
    /* a tile at most one vector wide (narrow outputs) skips the second */
#define FN_TILE_CASE(R) \
    case R: \
        if (nr <= FN_VLEN) \
            FN(micro_tile)(R, 1, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, accumulate, bias, act, \
                           slope, pre); \
        else \
            FN(micro_tile)(R, 2, k, a, a_rs, a_cs, b, ldb, c, ldc, nr, accumulate, bias, act, \
                           slope, pre); \
        break;
    FN_SWITCH_MR(mr, FN_TILE_CASE)
#undef FN_TILE_CASE
}

#if FN_GEMM_WIDE
typedef fn_real FN(wvec) __attribute__((vector_size(64)));
typedef fn_ivec_elem FN(wivec) __attribute__((vector_size(64)));

/* A full mr x PW tile in 64-byte vectors, two per row: the same
 * multiply-adds, in the same order, as two micro_tile passes over its
 * halves. */
FN_INLINE void FN(micro_tile_wide)(const int mr, fn_int k, const fn_real *a, fn_int a_rs,
                                   fn_int a_cs, const fn_real *b, fn_int ldb, fn_real *c,
                                   fn_int ldc, int accumulate, const fn_real *bias, int act,
                                   fn_real slope, fn_real *pre)
{
    enum { WV = PW / 2 };         /* elements per 64-byte vector */
    const FN(wvec) zero = {0};
    FN(wvec) c00 = zero, c01 = zero, c10 = zero, c11 = zero, c20 = zero, c21 = zero;
    FN(wvec) c30 = zero, c31 = zero, c40 = zero, c41 = zero, c50 = zero, c51 = zero;
    for (fn_int p = 0; p < k; p++) {
        FN(wvec) b0, b1;
        memcpy(&b0, b + p * ldb, sizeof b0);
        memcpy(&b1, b + p * ldb + WV, sizeof b1);
        const fn_real *ap = a + p * a_cs;
#define FN_ROW_FMA(r) \
        if (mr > r) { const fn_real ar = ap[r * a_rs]; c##r##0 += ar * b0; c##r##1 += ar * b1; }
        FN_ROW_FMA(0) FN_ROW_FMA(1) FN_ROW_FMA(2) FN_ROW_FMA(3) FN_ROW_FMA(4) FN_ROW_FMA(5)
#undef FN_ROW_FMA
    }
    FN(wvec) tile[2 * FN_GEMM_MR], bias0, bias1;
#define FN_ROW_PARK(r) if (mr > r) { tile[2 * r] = c##r##0; tile[2 * r + 1] = c##r##1; }
    FN_ROW_PARK(0) FN_ROW_PARK(1) FN_ROW_PARK(2) FN_ROW_PARK(3) FN_ROW_PARK(4) FN_ROW_PARK(5)
#undef FN_ROW_PARK
    if (bias) {
        memcpy(&bias0, bias, sizeof bias0);
        memcpy(&bias1, bias + WV, sizeof bias1);
    }
    for (int r = 0; r < 2 * mr; r++) {
        fn_real *cr = c + (r / 2) * ldc + (r % 2) * WV;
        FN(wvec) v = tile[r];
        if (accumulate) {
            FN(wvec) old;
            memcpy(&old, cr, sizeof old);
            v += old;
        }
        if (bias) v += r % 2 ? bias1 : bias0;
        if (pre) memcpy(pre + (r / 2) * ldc + (r % 2) * WV, &v, sizeof v);
        if (act == FN_ACT_RELU || act == FN_ACT_LEAKY_RELU) {
            const FN(wivec) negative = v < zero;     /* false for NaN: NaN is kept */
            const FN(wivec) below = act == FN_ACT_RELU ? (FN(wivec)){0}
                                                       : (FN(wivec))(v * slope) & negative;
            v = (FN(wvec))(((FN(wivec))v & ~negative) | below);
        }
        memcpy(cr, &v, sizeof v);
        if (FN_ACT_SCALAR(act)) FN(scalar_epilogue)(cr, WV, act, slope);
    }
}

FN_TARGET_AVX512
static void FN(small_tile_wide)(fn_int mr, fn_int k, const fn_real *a, fn_int a_rs,
                                fn_int a_cs, const fn_real *b, fn_int ldb, fn_real *c,
                                fn_int ldc, int accumulate, const fn_real *bias, int act,
                                fn_real slope, fn_real *pre)
{
#define FN_TILE_CASE(R) \
    case R: \
        FN(micro_tile_wide)(R, k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, bias, act, slope, \
                            pre); \
        break;
    FN_SWITCH_MR(mr, FN_TILE_CASE)
#undef FN_TILE_CASE
}
#endif

/* r[q][i] -> r[i][q] for a square block of FN_VLEN vectors (unpack, then
 * pair, then swap halves: the AVX unpcklps / shufps / vperm2f128 pattern). */
FN_INLINE void FN(transpose_block)(FN(vec) r[FN_VLEN])
{
#if FN_DTYPE == 32
    const FN(ivec) lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const FN(ivec) pair_lo = {0, 1, 8, 9, 4, 5, 12, 13}, pair_hi = {2, 3, 10, 11, 6, 7, 14, 15};
    const FN(ivec) half_lo = {0, 1, 2, 3, 8, 9, 10, 11}, half_hi = {4, 5, 6, 7, 12, 13, 14, 15};
    FN(vec) t[8], u[8];
    for (int q = 0; q < 8; q += 2) {
        t[q] = __builtin_shuffle(r[q], r[q + 1], lo);
        t[q + 1] = __builtin_shuffle(r[q], r[q + 1], hi);
    }
    for (int q = 0; q < 8; q += 4) {
        u[q] = __builtin_shuffle(t[q], t[q + 2], pair_lo);
        u[q + 1] = __builtin_shuffle(t[q], t[q + 2], pair_hi);
        u[q + 2] = __builtin_shuffle(t[q + 1], t[q + 3], pair_lo);
        u[q + 3] = __builtin_shuffle(t[q + 1], t[q + 3], pair_hi);
    }
    for (int q = 0; q < 4; q++) {
        r[q] = __builtin_shuffle(u[q], u[q + 4], half_lo);
        r[q + 4] = __builtin_shuffle(u[q], u[q + 4], half_hi);
    }
#else
    const FN(ivec) lo = {0, 4, 2, 6}, hi = {1, 5, 3, 7};
    const FN(ivec) half_lo = {0, 1, 4, 5}, half_hi = {2, 3, 6, 7};
    const FN(vec) t0 = __builtin_shuffle(r[0], r[1], lo), t1 = __builtin_shuffle(r[0], r[1], hi);
    const FN(vec) t2 = __builtin_shuffle(r[2], r[3], lo), t3 = __builtin_shuffle(r[2], r[3], hi);
    r[0] = __builtin_shuffle(t0, t2, half_lo);
    r[1] = __builtin_shuffle(t1, t3, half_lo);
    r[2] = __builtin_shuffle(t0, t2, half_hi);
    r[3] = __builtin_shuffle(t1, t3, half_hi);
#endif
}

/* Copy columns [j0, j0 + PW) of B into a zero-padded k x PW panel. */
FN_MULTIVERSION
static void FN(pack_panel)(const FN(fn_gemm_args) *g, fn_int j0, fn_real *dst)
{
    const fn_int width = FN_MIN(PW, g->n - j0);
    if (width < PW) memset(dst, 0, sizeof(fn_real) * (size_t)(g->k * PW));
    if (g->b_rs == 1 && g->b_cs != 1) {
        /* B is a transpose (the backward's W^T): its columns are contiguous,
         * so read FN_VLEN of them a vector at a time and transpose blocks. */
        fn_int j = 0;
        for (; j + FN_VLEN <= width; j += FN_VLEN) {
            const fn_real *src = g->b + (j0 + j) * g->b_cs;
            fn_int p = 0;
            for (; p + FN_VLEN <= g->k; p += FN_VLEN) {
                FN(vec) r[FN_VLEN];
                for (int q = 0; q < FN_VLEN; q++) r[q] = FN(vload)(src + q * g->b_cs + p);
                FN(transpose_block)(r);
                for (int q = 0; q < FN_VLEN; q++) FN(vstore)(dst + (p + q) * PW + j, r[q]);
            }
            for (; p < g->k; p++)
                for (int q = 0; q < FN_VLEN; q++) dst[p * PW + j + q] = src[q * g->b_cs + p];
        }
        for (; j < width; j++) {
            const fn_real *src = g->b + (j0 + j) * g->b_cs;
            for (fn_int p = 0; p < g->k; p++) dst[p * PW + j] = src[p];
        }
    } else if (g->b_cs == 1) {
        for (fn_int p = 0; p < g->k; p++)
            memcpy(dst + p * PW, g->b + p * g->b_rs + j0, sizeof(fn_real) * (size_t)width);
    } else {
        for (fn_int p = 0; p < g->k; p++) {
            const fn_real *src = g->b + p * g->b_rs + j0 * g->b_cs;
            for (fn_int j = 0; j < width; j++) dst[p * PW + j] = src[j * g->b_cs];
        }
    }
}

/* What the small path's two phases (packing, tiles) share. */
typedef struct {
    const FN(fn_gemm_args) *g;
    fn_int n_panels, first_packed;
    int wide;
} FN(small_plan);

static void FN(pack_chunk)(const void *ctx, fn_int i)
{
    const FN(small_plan) *s = ctx;
    const fn_int p = s->first_packed + i;
    FN(pack_panel)(s->g, p * PW, s->g->pack + p * s->g->k * PW);
}

static void FN(small_tile_chunk)(const void *ctx, fn_int t)
{
    const FN(small_plan) *s = ctx;
    const FN(fn_gemm_args) *g = s->g;
    const fn_int i0 = (t / s->n_panels) * FN_GEMM_MR, p = t % s->n_panels, j0 = p * PW;
    const fn_int mr = FN_MIN(FN_GEMM_MR, g->m - i0), width = FN_MIN(PW, g->n - j0);
    const fn_real *a = g->a + i0 * g->a_rs, *bias = g->bias ? g->bias + j0 : NULL;
    fn_real *c = g->c + i0 * g->ldc + j0;
    fn_real *pre = g->pre ? g->pre + i0 * g->ldc + j0 : NULL;
    const fn_real slope = (fn_real)g->slope;
    const fn_real *b;
    fn_int ldb;
    if (p >= s->first_packed) { b = g->pack + p * g->k * PW; ldb = PW; }
    else { b = g->b + j0; ldb = g->b_rs; }
#if FN_GEMM_WIDE
    if (s->wide && width == PW) {
        FN(small_tile_wide)(mr, g->k, a, g->a_rs, g->a_cs, b, ldb, c, g->ldc, g->accumulate,
                            bias, g->act, slope, pre);
        return;
    }
#endif
    for (fn_int h = 0; h < width; h += NR)
        FN(small_tile)(mr, g->k, a, g->a_rs, g->a_cs, b + h, ldb, c + h, g->ldc,
                       FN_MIN(NR, width - h), g->accumulate, bias ? bias + h : NULL, g->act,
                       slope, pre ? pre + h : NULL);
}

static void FN(gemm_small_team)(fn_team *team, const fn_blas *blas,
                                 const FN(fn_gemm_args) *g)
{
    FN(small_plan) s = {.g = g, .n_panels = FN_CEIL_DIV(g->n, PW)};
    /* B is read in place where it is row-major and a panel is full width */
    s.first_packed = g->b_cs != 1 ? 0 : g->n / PW;
#if FN_GEMM_WIDE
    s.wide = fn_gemm_wide_ok(blas);
#endif
    if (s.first_packed < s.n_panels)
        fn_team_for(team, s.n_panels - s.first_packed,
                    (double)(s.n_panels - s.first_packed) * g->k * PW * FN_NS_PER_ELEMENT,
                    FN(pack_chunk), &s);
    fn_team_for(team, FN_CEIL_DIV(g->m, FN_GEMM_MR) * s.n_panels,
                (double)g->m * g->n * g->k * FN_NS_PER_FMA, FN(small_tile_chunk), &s);
}

/* Bias and activation over rows [i0, i1) x columns [j0, j1) of C. */
static void FN(epilogue_tile)(const FN(fn_gemm_args) *g, fn_int i0, fn_int i1, fn_int j0,
                              fn_int j1)
{
    if (!g->bias && g->act == FN_ACT_NONE && !g->pre) return;
    const fn_real slope = (fn_real)g->slope;
    for (fn_int i = i0; i < i1; i++) {
        fn_real *c = g->c + i * g->ldc;
        if (g->bias)
            for (fn_int j = j0; j < j1; j++) c[j] += g->bias[j];
        if (g->pre)
            memcpy(g->pre + i * g->ldc + j0, c + j0, sizeof(fn_real) * (size_t)(j1 - j0));
        if (g->act == FN_ACT_RELU)
            for (fn_int j = j0; j < j1; j++) c[j] = FN(fn_relu)(c[j]);
        else if (g->act != FN_ACT_NONE)
            for (fn_int j = j0; j < j1; j++) c[j] = FN(fn_activate)(c[j], g->act, slope);
    }
}

static int FN(blas_layout)(fn_int rs, fn_int cs, int *trans, fn_int *ld)
{
    if (cs == 1) { *trans = 0; *ld = rs; return 1; }
    if (rs == 1) { *trans = 1; *ld = cs; return 1; }
    return 0;
}

/* The BLAS path's tile grid and call arguments. */
typedef struct {
    const fn_blas *blas;
    const FN(fn_gemm_args) *g;
    int ta, tb;
    fn_int lda, ldb, gm, gn;
} FN(blas_plan);

static void FN(blas_tile_chunk)(const void *ctx, fn_int t)
{
    const FN(blas_plan) *s = ctx;
    const FN(fn_gemm_args) *g = s->g;
    const fn_int ti = t / s->gn, tj = t % s->gn;
    const fn_int i0 = fn_split(g->m, s->gm, ti, 8), i1 = fn_split(g->m, s->gm, ti + 1, 8);
    const fn_int j0 = fn_split(g->n, s->gn, tj, 16), j1 = fn_split(g->n, s->gn, tj + 1, 16);
    if (i1 <= i0 || j1 <= j0) return;
#if FN_DTYPE == 32
    s->blas->sgemm(
#else
    s->blas->dgemm(
#endif
        s->ta, s->tb, (int)(i1 - i0), (int)(j1 - j0), (int)g->k, 1,
        g->a + i0 * g->a_rs, (int)s->lda, g->b + j0 * g->b_cs, (int)s->ldb,
        g->accumulate ? 1 : 0, g->c + i0 * g->ldc + j0, (int)g->ldc);
    FN(epilogue_tile)(g, i0, i1, j0, j1);
}

static void FN(gemm_blas_team)(fn_team *team, const fn_blas *blas, const FN(fn_gemm_args) *g,
                               int ta, fn_int lda, int tb, fn_int ldb)
{
    /* Grid: `grid` tiles of at least 64 rows and 16 columns.  Each tile's
     * gemm packs its own rows of A and columns of B, so A is packed gn times
     * and B gm times.  With B row-major (the forward), take the split
     * gm x gn = grid that packs the fewest elements: wide's 512 x 2048 x
     * 2048 splits by columns, 6M elements packed instead of 9M, 5-7 %
     * faster.  A transposed B (W^T in the backward) splits rows first, as a
     * column split measured slower there (256 x 512 x 512: 1.1 -> 1.6 ms). */
    const fn_int parts = FN_MAX(blas->grid, 1);
    FN(blas_plan) s = {blas, g, ta, tb, lda, ldb, 1, 1};
    int found = 0;
    double best = 0;
    for (fn_int d = parts; d >= 1; d--) {
        if (parts % d) continue;
        const fn_int rows = d, cols = parts / d;
        if ((rows > 1 && g->m / rows < 64) || (cols > 1 && g->n / cols < 16)) continue;
        const double cost = tb ? -(double)rows
                               : (double)cols * (double)g->m * (double)g->k
                                 + (double)rows * (double)g->k * (double)g->n;
        if (!found || cost < best) { found = 1; best = cost; s.gm = rows; s.gn = cols; }
    }
    fn_team_for(team, s.gm * s.gn, (double)g->m * g->n * g->k * FN_NS_PER_FMA,
                FN(blas_tile_chunk), &s);
}

void FN(fn_gemm_team)(fn_team *team, const fn_blas *blas, const FN(fn_gemm_args) *g)
{
    if (g->m <= 0 || g->n <= 0) return;
    int ta = 0, tb = 0;
    fn_int lda = 0, ldb = 0;
#if FN_DTYPE == 32
    const int have_blas = blas && blas->sgemm;
#else
    const int have_blas = blas && blas->dgemm;
#endif
    const double work = (double)g->m * (double)g->n * (double)g->k;
    const int thin = g->m <= FN_GEMM_THIN_ROWS || g->n <= FN_GEMM_THIN_COLS;
    const int large = !thin && (g->k > FN_GEMM_SMALL_MAX_K || work > FN_GEMM_SMALL_MAX_WORK);
    if (have_blas && large && g->k > 0
        && FN(blas_layout)(g->a_rs, g->a_cs, &ta, &lda)
        && FN(blas_layout)(g->b_rs, g->b_cs, &tb, &ldb)
        && g->m < INT_MAX && g->n < INT_MAX && g->k < INT_MAX
        && lda < INT_MAX && ldb < INT_MAX && g->ldc < INT_MAX)
        FN(gemm_blas_team)(team, blas, g, ta, FN_MAX(lda, 1), tb, FN_MAX(ldb, 1));
    else
        FN(gemm_small_team)(team, blas, g);
}

#undef NR
#undef PW
#endif
