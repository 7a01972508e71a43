/* fastnet native core: the whole C API.
 *
 * Conventions
 * - Every function named *_team is team-aware: one thread calls it with a
 *   team session (fn_team.h; NULL: the calling thread alone), and its
 *   work-sharing loops run as phases over a grid fixed by the problem
 *   shape, claimed by whichever threads of the team are running.  Results
 *   are bit-identical for any thread count.
 * - Matrices are row-major unless strides say otherwise; sizes are fn_int.
 * - Kernels assume validated input (the Python layer checks dtype, shape,
 *   contiguity and ranges) and never allocate: callers pass workspaces.
 * - Each templated declaration exists as name_f32 (float) and name_f64
 *   (double); see fn_api.h.
 */
#ifndef FASTNET_H
#define FASTNET_H

#include <stddef.h>
#include <stdint.h>

#include "fn_team.h"

/* Rough single-thread costs, for the work_ns of team sessions and phases
 * only (never a result): a memory-bound pass per element, a small product
 * per multiply-add. */
#define FN_NS_PER_ELEMENT 0.5
#define FN_NS_PER_FMA 0.05

/* Activation applied by fused epilogues. */
enum {
    FN_ACT_NONE = 0,          /* identity */
    FN_ACT_RELU = 1,
    FN_ACT_TANH = 2,
    FN_ACT_SIGMOID = 3,
    FN_ACT_LEAKY_RELU = 4,    /* x < 0 ? slope * x : x, slope >= 0 */
    FN_ACT_GELU = 5,          /* x * Phi(x), the erf form */
    FN_ACT_SILU = 6           /* x * sigmoid(x) */
};
/* Optimizer kinds of fn_optim_*. */
enum { FN_OPT_SGD = 0, FN_OPT_ADAM = 1, FN_OPT_ADAMW = 2 };
/* Losses of the training step. */
enum { FN_LOSS_CROSS_ENTROPY = 0, FN_LOSS_MSE = 1, FN_LOSS_HUBER = 2, FN_LOSS_BCE = 3 };

/* A single-threaded, row-major BLAS gemm (the signature of cython-blis'
 * blis.cy.sgemm/dgemm):  C = alpha * op(A) op(B) + beta * C. */
typedef void (*fn_sgemm_fn)(int transa, int transb, int m, int n, int k,
                            float alpha, const float *a, int lda,
                            const float *b, int ldb, float beta, float *c, int ldc);
typedef void (*fn_dgemm_fn)(int transa, int transb, int m, int n, int k,
                            double alpha, const double *a, int lda,
                            const double *b, int ldb, double beta, double *c, int ldc);

typedef struct {
    fn_sgemm_fn sgemm;   /* NULL: every product takes the built-in kernel */
    fn_dgemm_fn dgemm;
    int grid;            /* tiles of a large product: the machine's cores,
                            fixed once per process, never the thread count */
    int wide_vectors;    /* 1: the built-in kernel may use 64-byte vectors where the
                            CPU runs AVX-512 (same bits as 32-byte ones; the caller's
                            policy, e.g. off to compare the two) */
} fn_blas;

/* Inverted dropout, reproducible bit for bit: element (i, j) of an n x f
 * array is kept when fn_dropout_random_bits(d, i * f + j) is below
 * fn_dropout_threshold(rate) (see fn_rng.h). */
typedef struct {
    double rate;         /* 0 disables dropout */
    uint64_t seed;
    uint32_t layer;
    uint32_t step;
    fn_int row0;         /* number of the first row: a batch split over processes
                            numbers its rows as the whole batch does */
} fn_dropout;

/* Result of a loss or of a whole training step. */
typedef struct {
    double loss;         /* weighted mean loss of the batch */
    fn_int correct;      /* rows whose argmax equals the label (cross-entropy) */
    double grad_norm;    /* global L2 norm of the gradient, before clipping */
} fn_result;

/* Configuration of an MLP (fn_mlp.c). */
typedef struct {
    int act;                 /* hidden activation, FN_ACT_* */
    double act_slope;        /* FN_ACT_LEAKY_RELU's negative slope */
    int batch_norm;          /* batch norm after every hidden Linear */
    int layer_norm;          /* or layer norm (not both): eps is bn_eps */
    double dropout;          /* rate after every hidden activation */
    double bn_eps, bn_momentum;
    int loss;                /* FN_LOSS_* */
    double huber_delta;      /* FN_LOSS_HUBER's threshold */
} fn_mlp_config;

/* Where layer l's arrays start in the flat buffers (-1: absent).
 * Parameters, layer by layer: W (fan_in x fan_out, row-major), then b
 * (without batch norm, and always for the last layer), then gamma, beta
 * (batch or layer norm).  Buffers: running_mean, running_var of each
 * batch-norm layer. */
typedef struct {
    fn_int w, b, gamma, beta, running_mean, running_var;
} fn_layer_offsets;

/* Fills offsets[0:n_layers]; returns the parameter count and sets
 * *n_buffers.  sizes holds n_layers + 1 widths. */
fn_int fn_mlp_layout(int n_layers, const fn_int *sizes, int batch_norm, int layer_norm,
                     fn_layer_offsets *offsets, fn_int *n_buffers);
/* Elements of workspace (of the given dtype), bytes of dropout masks and
 * doubles of reduction scratch one batch of max_batch rows needs. */
void fn_mlp_workspace_size(int n_layers, const fn_int *sizes, const fn_mlp_config *cfg,
                           fn_int max_batch, fn_int n_params, int dtype_bits,
                           fn_int *workspace, fn_int *mask_bytes, fn_int *scratch);

/* Build facts (fn_build.c). */
const char *fn_build_compiler(void);
int fn_build_multiversion(void);
/* 1 when the CPU (and OS) run AVX-512 F/DQ/BW/VL code. */
int fn_cpu_has_avx512(void);

/* Largest keep-threshold for a dropout rate in (0, 1). */
uint32_t fn_dropout_threshold(double rate);
/* The random word of element number `element` (i * f + j, mod 2^32). */
uint32_t fn_dropout_random_bits(const fn_dropout *d, uint32_t element);
/* Elements of packing scratch a product with k rows and n columns of B needs. */
fn_int fn_gemm_pack_size(fn_int k, fn_int n, int dtype_bits);
/* Doubles of reduction scratch for a loss over `rows` rows and for a sum
 * over `elements` elements. */
fn_int fn_reduce_scratch_size(fn_int rows, fn_int elements);
/* Doubles of scratch the batch-norm kernels need for n rows of f features. */
fn_int fn_bn_work_size(fn_int n, fn_int f, int dtype_bits);

#define FN_DTYPE 32
#include "fn_api.h"
#undef FN_DTYPE
#define FN_DTYPE 64
#include "fn_api.h"
#undef FN_DTYPE
/* keep the template names out of code that includes this header */
#undef fn_real
#undef fn_ivec_elem
#undef FN
#undef FN_VLEN

#endif
