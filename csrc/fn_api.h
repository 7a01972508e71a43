/* Templated part of fastnet.h: included once per dtype (FN_DTYPE 32, 64). */
#include "fn_real.h"

/* ---- Dense products with fused epilogue (fn_gemm.c) -------------------- */

/* C = act(A B + bias)            (accumulate = 0)
 * C = act(C + A B + bias)        (accumulate = 1)
 * A is m x k with A[i, p] = a[i * a_rs + p * a_cs]; B is k x n likewise;
 * C is m x n with leading dimension ldc.  `pack` is scratch of
 * fn_gemm_pack_size(k, n, bits) elements. */
typedef struct {
    fn_int m, n, k;
    const fn_real *a; fn_int a_rs, a_cs;
    const fn_real *b; fn_int b_rs, b_cs;
    fn_real *c; fn_int ldc;
    int accumulate;
    const fn_real *bias;    /* NULL: no bias */
    int act;                /* FN_ACT_* */
    fn_real *pack;
    double slope;           /* FN_ACT_LEAKY_RELU's negative slope */
    fn_real *pre;           /* not NULL: also store the pre-activation A B + bias here
                               (leading dimension ldc), for a backward that needs it */
} FN(fn_gemm_args);

void FN(fn_gemm_team)(fn_team *team, const fn_blas *blas, const FN(fn_gemm_args) *g);

/* ---- Activations (fn_activation.c) ------------------------------------- */

/* dz = dout * act'(out) [* mask / (1 - rate)], with act' taken from the
 * activation's output, or from its input `pre` for the activations of
 * FN_ACT_NEEDS_PRE (fn_internal.h; only the one read need be given, the
 * other may be NULL);
 * db = column sums of dz (db may be NULL).
 * `mask` (NULL: no dropout) is the keep mask of a dropout that followed the
 * activation; dout is then the gradient of the dropped output.
 * dz may alias dout, or be NULL when only db is wanted. */
void FN(fn_act_backward_team)(fn_team *team, fn_int n, fn_int f, const fn_real *dout,
                              const fn_real *out, const fn_real *pre, int act, double slope,
                              const uint8_t *mask, double rate,
                              fn_real *dz, fn_real *db);

/* ---- Batch normalisation (fn_batchnorm.c) ------------------------------ */

/* out = act(gamma * xhat + beta), xhat = (x - mean) / sqrt(var + eps),
 * optionally followed by dropout.  In training the statistics are the
 * batch's (biased variance) and the running buffers, when given, are
 * updated as running = (1 - momentum) * running + momentum * batch, with the
 * unbiased variance for running_var.  Out of training the running buffers
 * are read. */
typedef struct {
    fn_int n, f;
    const fn_real *x;
    const fn_real *gamma, *beta;     /* NULL: 1 and 0 */
    double eps;
    int training;
    fn_real *mean, *var;             /* training: batch statistics (may be NULL) */
    fn_real *running_mean, *running_var;
    double momentum;
    fn_real *xhat;                   /* optional: the normalised input */
    int act;                         /* FN_ACT_* after the affine map */
    double slope;                    /* FN_ACT_LEAKY_RELU's negative slope */
    fn_real *out;                    /* n x f, may alias x */
    fn_dropout dropout;              /* rate 0: off */
    uint8_t *mask;                   /* dropout keep mask (rate > 0) */
    fn_real *dropped;                /* out * mask / (1 - rate) (rate > 0) */
    /* Synchronised batch norm: the statistics of the whole (multi-process)
     * batch, f means then f biased variances, are given instead of computed
     * from these n rows; stat_n is that batch's row count (for running_var's
     * unbiasing).  NULL / 0: this batch's own. */
    const double *stats;
    fn_int stat_n;
    double *work;                    /* fn_bn_work_size(n, f, bits) doubles */
} FN(fn_bn_forward_args);

/* Per-feature sums over n rows of x (n x f): of x when mean is NULL, else of
 * (x - mean)^2 with mean rounded to fn_real; the batch-norm forward's own
 * summation order (fn_real partials over fixed row blocks, added in double),
 * into out[0:f].  work: fn_bn_work_size(n, f, bits) doubles. */
void FN(fn_bn_sums_team)(fn_team *team, fn_int n, fn_int f, const fn_real *x,
                         const double *mean, double *out, double *work);

void FN(fn_bn_forward_team)(fn_team *team, const FN(fn_bn_forward_args) *a);

/* Backward of the training-mode forward above.  The incoming gradient is
 * dout; when act/mask are given it is first taken back through dropout and
 * the activation (act_out: the activation's output before dropout).
 * xhat may be NULL, then it is recomputed from x, mean and var.
 * dx may alias dout. */
typedef struct {
    fn_int n, f;
    const fn_real *dout;
    const uint8_t *mask; double rate;
    int act; const fn_real *act_out;
    double slope;                    /* FN_ACT_LEAKY_RELU's negative slope */
    const fn_real *beta;             /* FN_ACT_NEEDS_PRE: the activation's input is
                                        gamma * xhat + beta (NULL: 0) */
    const fn_real *xhat;
    const fn_real *x, *mean;
    const fn_real *var; double eps;
    const fn_real *gamma;            /* NULL: 1 */
    fn_real *dx, *dgamma, *dbeta;    /* dgamma/dbeta may be NULL */
    /* Synchronised batch norm splits the backward in two calls around a sum
     * over processes: phase 1 writes dy to dx, dgamma and dbeta (this
     * batch's) and the two reductions (f sums of dy, then f of dy * xhat) to
     * sums; phase 2 reads the summed `sums` and finishes dx with stat_n,
     * the whole batch's row count.  Phase 0: both at once, locally. */
    int phase;
    double *sums;
    fn_int stat_n;
    double *work;                    /* fn_bn_work_size(n, f, bits) doubles */
} FN(fn_bn_backward_args);

void FN(fn_bn_backward_team)(fn_team *team, const FN(fn_bn_backward_args) *a);

/* ---- Layer normalisation (fn_layernorm.c) -------------------------------- */

/* out = act(gamma * xhat + beta), xhat = (x - mean) * rstd per row, with the
 * row's mean and biased variance over its f features, rstd = 1 / sqrt(var +
 * eps).  The same in training and inference (no running statistics). */
typedef struct {
    fn_int n, f;
    const fn_real *x;                /* n x f */
    const fn_real *gamma, *beta;     /* f each */
    double eps;
    int act;                         /* FN_ACT_* after the affine map */
    double slope;                    /* FN_ACT_LEAKY_RELU's negative slope */
    fn_real *xhat;                   /* optional: n x f, for the backward */
    fn_real *rstd;                   /* optional: n, for the backward */
    fn_real *out;                    /* n x f, may alias x when xhat is NULL */
} FN(fn_ln_forward_args);

void FN(fn_ln_forward_team)(fn_team *team, const FN(fn_ln_forward_args) *a);

/* Backward of the forward above: dout is taken back through dropout (mask,
 * rate; NULL: none) and the activation (act_out: its output), then through
 * the normalisation, into dx (may alias dout); dgamma and dbeta are set. */
typedef struct {
    fn_int n, f;
    const fn_real *dout;
    const uint8_t *mask; double rate;
    int act; const fn_real *act_out;
    double slope;
    const fn_real *xhat, *rstd, *gamma, *beta;
    fn_real *dx, *dgamma, *dbeta;
} FN(fn_ln_backward_args);

void FN(fn_ln_backward_team)(fn_team *team, const FN(fn_ln_backward_args) *a);

/* ---- Dropout (fn_dropout.c) --------------------------------------------- */

/* x is n x f (row stride ldx); out = x * mask / (1 - rate) and the mask,
 * both n x f contiguous. */
void FN(fn_dropout_team)(fn_team *team, fn_int n, fn_int f, const fn_real *x, fn_int ldx,
                         const fn_dropout *d, fn_real *out, uint8_t *mask);
/* dx = dout * mask / (1 - rate) over `count` elements. */
void FN(fn_dropout_backward_team)(fn_team *team, fn_int count, const fn_real *dout,
                                  const uint8_t *mask, double rate, fn_real *dx);

/* ---- Losses (fn_loss.c) -------------------------------------------------- */

/* Softmax cross-entropy of n rows of c logits.  Row i's label and weight
 * are labels[r] and weights[r] with r = index ? index[i] : i, labels in
 * [0, c), weights NULL meaning 1.  loss = sum w_i l_i / sum w_i, and dlogits
 * (NULL: not computed) is its gradient.  total > 0 replaces sum w_i as the
 * divisor (a batch split over processes divides by the whole batch's).  `scratch` holds
 * fn_reduce_scratch_size(n, 0) doubles; res gets loss and correct. */
void FN(fn_softmax_xent_team)(fn_team *team, fn_int n, fn_int c, const fn_real *logits,
                              const int64_t *labels, const fn_real *weights,
                              const int64_t *index, fn_real *dlogits, double total,
                              double *scratch, fn_result *res);
/* An elementwise loss of n x d outputs against targets (row r as above),
 * kind FN_LOSS_MSE (squared error), FN_LOSS_HUBER (threshold delta, as
 * PyTorch's HuberLoss) or FN_LOSS_BCE (binary cross-entropy of logits
 * against targets in [0, 1], as BCEWithLogitsLoss): mean over all elements,
 * rows weighted when weights are given; dpred (NULL: skip) is its gradient.
 * BCE sets res->correct to the rows whose every output is on the right side
 * of 0; scratch holds fn_reduce_scratch_size(n, 0) doubles. */
void FN(fn_target_loss_team)(fn_team *team, int kind, double delta, fn_int n, fn_int d,
                             const fn_real *pred, const fn_real *targets,
                             const fn_real *weights, const int64_t *index, fn_real *dpred,
                             double total, double *scratch, fn_result *res);
/* fn_target_loss_team of FN_LOSS_MSE. */
void FN(fn_mse_team)(fn_team *team, fn_int n, fn_int d, const fn_real *pred,
                     const fn_real *targets, const fn_real *weights, const int64_t *index,
                     fn_real *dpred, double total, double *scratch, fn_result *res);
/* Row-wise softmax of n x c logits. */
void FN(fn_softmax_team)(fn_team *team, fn_int n, fn_int c, const fn_real *logits,
                         fn_real *probs);

/* ---- Optimizers and reductions (fn_optim.c) ----------------------------- */

typedef struct {
    int kind;                /* FN_OPT_* */
    double lr, momentum, beta1, beta2, eps, weight_decay;
    int nesterov;
    int64_t step;            /* updates already taken */
    fn_real *buf1, *buf2;    /* SGD: momentum buffer; Adam: first, second moment */
} FN(fn_optim);

/* One update of `count` parameters in place, with g = grad * grad_scale.
 * Does not advance o->step (the caller does, once per step). */
void FN(fn_optim_update_team)(fn_team *team, const FN(fn_optim) *o, fn_int count,
                              fn_real *param, const fn_real *grad, double grad_scale);
/* Sum of squares in a fixed order; scratch: fn_reduce_scratch_size(0, count)
 * doubles. */
double FN(fn_sumsq_team)(fn_team *team, fn_int count, const fn_real *x, double *scratch);
/* fn_optim_update_team with grad_scale 1 that also returns the sum of squares
 * of `grad` (before the update), with the bits of fn_sumsq_team. */
double FN(fn_optim_update_sumsq_team)(fn_team *team, const FN(fn_optim) *o, fn_int count,
                                      fn_real *param, const fn_real *grad, double *scratch);

/* ---- The whole network (fn_mlp.c) ---------------------------------------- */

typedef struct {
    fn_int fan_in, fan_out;
    fn_real *w, *b;                  /* b is NULL for a layer with batch norm */
    fn_real *gamma, *beta;           /* NULL without batch norm */
    fn_real *running_mean, *running_var;
    fn_real *dw, *db, *dgamma, *dbeta;
    /* workspace for one batch */
    fn_real *xhat;                   /* batch norm: normalised pre-activation */
    fn_real *pre;                    /* FN_ACT_NEEDS_PRE without batch norm: the
                                        activation's input */
    fn_real *act;                    /* activation output (logits for the last layer) */
    fn_real *out;                    /* input of the next layer: act after dropout */
    uint8_t *mask;                   /* dropout keep mask */
    fn_real *mean, *var;             /* batch statistics */
    fn_real *rstd;                   /* layer norm: 1 / std of each row */
} FN(fn_layer);

typedef struct {
    int n_layers;
    FN(fn_layer) *layers;
    int act;                         /* hidden activation */
    double act_slope;
    int batch_norm;
    int layer_norm;
    double dropout;
    double bn_eps, bn_momentum;
    int freeze_bn_stats;             /* 1: training forward leaves running stats alone */
    int loss;                        /* FN_LOSS_* */
    double huber_delta;
    fn_int n_params;
    fn_real *params, *grads;         /* every layer's parameters, contiguous */
    fn_real *input;                  /* gathered batch: max_batch x fan_in */
    fn_real *grad_a, *grad_b;        /* max_batch x widest layer each */
    fn_real *pack;                   /* fn_gemm_pack_size of the widest product */
    double *scratch;                 /* reductions */
    /* Synchronised batch norm: when set, called on the caller's thread to
     * sum `count` doubles over all processes in place; the
     * training forward and backward then use the statistics of the whole
     * batch.  bn_sums holds 2 x the widest layer doubles. */
    void (*reduce)(void *ctx, double *values, fn_int count);
    void *reduce_ctx;
    double *bn_sums;
} FN(fn_mlp);

#include "fn_sparse.h"

typedef struct {
    const fn_real *x;                /* rows of fan_in values, contiguous */
    /* Sparse rows instead of x (NULL: x), and the workspaces of the first
     * layer's weight gradient (fn_csr_weight_grad_team). */
    const FN(fn_csr) *csr;
    int64_t *csr_work_index;
    fn_real *csr_work_values;
    const int64_t *index;            /* batch rows of x, or NULL: rows 0..n-1 */
    fn_int n;
    const int64_t *labels;           /* cross-entropy: indexed like x */
    const fn_real *targets;          /* mse: rows of n_out values */
    const fn_real *weights;          /* per-row weights or NULL */
    uint64_t seed;                   /* dropout stream */
    uint32_t step;
    /* A batch split over processes: the whole batch's weight sum (rows
     * without weights) divides the loss, and its row count the batch-norm
     * statistics when net->reduce is set.  0: this batch's own. */
    double total_weight;
    fn_int total_rows;
    fn_int row0;                     /* dropout: number of the first row in the whole batch */
} FN(fn_batch);

/* Point net and layers[0:n_layers] at flat buffers laid out as
 * fn_mlp_layout / fn_mlp_workspace_layout describe, and set the scalar
 * configuration.  masks may be NULL when dropout is 0. */
void FN(fn_mlp_bind)(FN(fn_mlp) *net, FN(fn_layer) *layers, int n_layers, const fn_int *sizes,
                     const fn_mlp_config *cfg, fn_int max_batch, fn_real *params,
                     fn_real *grads, fn_real *buffers, fn_real *workspace, uint8_t *masks,
                     double *scratch);

/* Forward, loss, backward and (when opt is not NULL) one optimizer update
 * with the gradient clipped to clip_norm (<= 0: no clipping). */
void FN(fn_mlp_train_step_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                                const FN(fn_batch) *batch, const FN(fn_optim) *opt,
                                double clip_norm, fn_result *res);
/* The end of a training step on the gradients in net->grads (e.g. after
 * they were summed over processes): global norm, clipping to clip_norm
 * (<= 0: none) and one update; res->grad_norm gets the norm. */
void FN(fn_mlp_apply_update_team)(fn_team *team, FN(fn_mlp) *net, const FN(fn_optim) *opt,
                                  double clip_norm, fn_result *res);
/* Inference forward (running statistics, no dropout) of n rows of x
 * into out (n x n_out); workspaces must hold n rows. */
void FN(fn_mlp_forward_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                             const fn_real *x, fn_int n, fn_real *out);
/* The same for the rows of a CSR matrix of n rows (fn_sparse.h). */
void FN(fn_mlp_forward_csr_team)(fn_team *team, const fn_blas *blas, FN(fn_mlp) *net,
                                 const FN(fn_csr) *x, fn_real *out);
/* Gradient-health figures of the last training step of n rows: sumsq[l]
 * (n_layers) = ||dW_l||_F^2 (fn_sumsq_team's order on one thread, so the
 * same bits for any thread count), dead[l] (n_layers - 1) = units of hidden
 * layer l whose activation output is exactly 0 on every row.  alive is
 * scratch of the widest layer's width in bytes; uses net->scratch. */
void FN(fn_mlp_layer_stats)(const FN(fn_mlp) *net, fn_int n, double *sumsq, int64_t *dead,
                            uint8_t *alive);
/* Rough single-thread nanoseconds of a training step (training = 1) or an
 * inference forward of n rows, for fn_team_begin. */
double FN(fn_mlp_work_ns)(const FN(fn_mlp) *net, fn_int n, int training);
