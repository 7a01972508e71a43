# Mirror of csrc/fastnet.h (and fn_api.h, instantiated for float and double).
# Declarations only; see the header for what each function does.
from libc.stdint cimport uint8_t, uint32_t, int64_t, uint64_t

cdef extern from "fn_team.h" nogil:
    ctypedef struct fn_team:
        pass
    ctypedef struct fn_team_stats:
        int64_t launches, joins, stalls, serial_small, serial_quiet, serial_busy
        int helpers, capacity, create_failed
        double wake_ns, handoff_ns, spin_ns
    fn_team *fn_team_begin(int threads, double work_ns)
    void fn_team_end(fn_team *team)
    int fn_team_reserve(int threads)
    void fn_team_get_stats(fn_team_stats *out)
    int fn_team_available()
    void fn_fork_gate_enter()
    void fn_fork_gate_leave()

cdef extern from "fastnet.h" nogil:
    ctypedef Py_ssize_t fn_int
    # sparse first-layer input (fn_sparse.h)
    ctypedef struct fn_csr_f32:
        fn_int rows, cols
        int index_bits
        const void *indptr
        const void *indices
        const float *values
    ctypedef struct fn_csr_f64:
        fn_int rows, cols
        int index_bits
        const void *indptr
        const void *indices
        const double *values
    const double FN_NS_PER_ELEMENT
    const double FN_NS_PER_FMA

    enum:
        FN_ACT_NONE
        FN_ACT_RELU
        FN_ACT_TANH
        FN_ACT_SIGMOID
    enum:
        FN_OPT_SGD
        FN_OPT_ADAM
        FN_OPT_ADAMW
    enum:
        FN_LOSS_CROSS_ENTROPY
        FN_LOSS_MSE

    ctypedef void (*fn_sgemm_fn)(int, int, int, int, int, float, const float *, int,
                                 const float *, int, float, float *, int) noexcept nogil
    ctypedef void (*fn_dgemm_fn)(int, int, int, int, int, double, const double *, int,
                                 const double *, int, double, double *, int) noexcept nogil

    ctypedef struct fn_blas:
        fn_sgemm_fn sgemm
        fn_dgemm_fn dgemm
        int grid

    ctypedef struct fn_dropout:
        double rate
        uint64_t seed
        uint32_t layer
        uint32_t step
        fn_int row0

    ctypedef struct fn_result:
        double loss
        fn_int correct
        double grad_norm

    ctypedef struct fn_mlp_config:
        int act
        int batch_norm
        double dropout
        double bn_eps, bn_momentum
        int loss

    ctypedef struct fn_layer_offsets:
        fn_int w, b, gamma, beta, running_mean, running_var

    fn_int fn_mlp_layout(int n_layers, const fn_int *sizes, int batch_norm,
                         fn_layer_offsets *offsets, fn_int *n_buffers)
    void fn_mlp_workspace_size(int n_layers, const fn_int *sizes, const fn_mlp_config *cfg,
                               fn_int max_batch, fn_int n_params, int dtype_bits,
                               fn_int *workspace, fn_int *mask_bytes, fn_int *scratch)

    const char *fn_build_compiler()
    int fn_build_multiversion()
    int fn_cpu_has_avx512()
    uint32_t fn_dropout_threshold(double rate)
    uint32_t fn_dropout_random_bits(const fn_dropout *d, uint32_t element)
    fn_int fn_gemm_pack_size(fn_int k, fn_int n, int dtype_bits)
    fn_int fn_reduce_scratch_size(fn_int rows, fn_int elements)
    fn_int fn_bn_work_size(fn_int n, fn_int f, int dtype_bits)


    # ---- float32 -----------------------------------------------------------
    ctypedef struct fn_gemm_args_f32:
        fn_int m, n, k
        const float *a
        fn_int a_rs, a_cs
        const float *b
        fn_int b_rs, b_cs
        float *c
        fn_int ldc
        int accumulate
        const float *bias
        int act
        float *pack

    ctypedef struct fn_bn_forward_args_f32:
        fn_int n, f
        const float *x
        const float *gamma
        const float *beta
        double eps
        int training
        float *mean
        float *var
        float *running_mean
        float *running_var
        double momentum
        float *xhat
        int act
        float *out
        fn_dropout dropout
        uint8_t *mask
        float *dropped
        const double *stats
        fn_int stat_n
        double *work

    ctypedef struct fn_bn_backward_args_f32:
        fn_int n, f
        const float *dout
        const uint8_t *mask
        double rate
        int act
        const float *act_out
        const float *xhat
        const float *x
        const float *mean
        const float *var
        double eps
        const float *gamma
        float *dx
        float *dgamma
        float *dbeta
        int phase
        double *sums
        fn_int stat_n
        double *work

    ctypedef struct fn_optim_f32:
        int kind
        double lr, momentum, beta1, beta2, eps, weight_decay
        int nesterov
        int64_t step
        float *buf1
        float *buf2

    ctypedef struct fn_layer_f32:
        fn_int fan_in, fan_out
        float *w
        float *b
        float *gamma
        float *beta
        float *running_mean
        float *running_var
        float *dw
        float *db
        float *dgamma
        float *dbeta
        float *xhat
        float *act
        float *out
        uint8_t *mask
        float *mean
        float *var

    ctypedef struct fn_mlp_f32:
        int n_layers
        fn_layer_f32 *layers
        int act
        int batch_norm
        double dropout, bn_eps, bn_momentum
        int freeze_bn_stats
        int loss
        fn_int n_params
        float *params
        float *grads
        float *input
        float *grad_a
        float *grad_b
        float *pack
        double *scratch
        void (*reduce)(void *ctx, double *values, fn_int count) noexcept nogil
        void *reduce_ctx
        double *bn_sums

    ctypedef struct fn_batch_f32:
        const float *x
        const fn_csr_f32 *csr
        int64_t *csr_work_index
        float *csr_work_values
        const int64_t *index
        fn_int n
        const int64_t *labels
        const float *targets
        const float *weights
        uint64_t seed
        uint32_t step
        double total_weight
        fn_int total_rows
        fn_int row0

    void fn_gemm_team_f32(fn_team *team, const fn_blas *blas, const fn_gemm_args_f32 *g)
    void fn_act_backward_team_f32(fn_team *team, fn_int n, fn_int f, const float *dout,
                                  const float *out, int act, const uint8_t *mask, double rate,
                                  float *dz, float *db)
    void fn_bn_forward_team_f32(fn_team *team, const fn_bn_forward_args_f32 *a)
    void fn_bn_backward_team_f32(fn_team *team, const fn_bn_backward_args_f32 *a)
    void fn_dropout_team_f32(fn_team *team, fn_int n, fn_int f, const float *x, fn_int ldx,
                             const fn_dropout *d, float *out, uint8_t *mask)
    void fn_dropout_backward_team_f32(fn_team *team, fn_int count, const float *dout,
                                      const uint8_t *mask, double rate, float *dx)
    void fn_softmax_xent_team_f32(fn_team *team, fn_int n, fn_int c, const float *logits,
                                  const int64_t *labels, const float *weights,
                                  const int64_t *index, float *dlogits, double total,
                                  double *scratch, fn_result *res)
    void fn_mse_team_f32(fn_team *team, fn_int n, fn_int d, const float *pred,
                         const float *targets, const float *weights, const int64_t *index,
                         float *dpred, double total, double *scratch, fn_result *res)
    void fn_softmax_team_f32(fn_team *team, fn_int n, fn_int c, const float *logits,
                             float *probs)
    void fn_optim_update_team_f32(fn_team *team, const fn_optim_f32 *o, fn_int count,
                                  float *param, const float *grad, double grad_scale)
    double fn_sumsq_team_f32(fn_team *team, fn_int count, const float *x, double *scratch)
    void fn_mlp_bind_f32(fn_mlp_f32 *net, fn_layer_f32 *layers, int n_layers,
                         const fn_int *sizes, const fn_mlp_config *cfg, fn_int max_batch,
                         float *params, float *grads, float *buffers, float *workspace,
                         uint8_t *masks, double *scratch)
    void fn_mlp_train_step_team_f32(fn_team *team, const fn_blas *blas, fn_mlp_f32 *net,
                                    const fn_batch_f32 *batch, const fn_optim_f32 *opt,
                                    double clip_norm, fn_result *res)
    void fn_mlp_apply_update_team_f32(fn_team *team, fn_mlp_f32 *net, const fn_optim_f32 *opt,
                                      double clip_norm, fn_result *res)
    void fn_mlp_forward_team_f32(fn_team *team, const fn_blas *blas, fn_mlp_f32 *net,
                                 const float *x, fn_int n, float *out)
    double fn_mlp_work_ns_f32(const fn_mlp_f32 *net, fn_int n, int training)

    # ---- double64 -----------------------------------------------------------
    ctypedef struct fn_gemm_args_f64:
        fn_int m, n, k
        const double *a
        fn_int a_rs, a_cs
        const double *b
        fn_int b_rs, b_cs
        double *c
        fn_int ldc
        int accumulate
        const double *bias
        int act
        double *pack

    ctypedef struct fn_bn_forward_args_f64:
        fn_int n, f
        const double *x
        const double *gamma
        const double *beta
        double eps
        int training
        double *mean
        double *var
        double *running_mean
        double *running_var
        double momentum
        double *xhat
        int act
        double *out
        fn_dropout dropout
        uint8_t *mask
        double *dropped
        const double *stats
        fn_int stat_n
        double *work

    ctypedef struct fn_bn_backward_args_f64:
        fn_int n, f
        const double *dout
        const uint8_t *mask
        double rate
        int act
        const double *act_out
        const double *xhat
        const double *x
        const double *mean
        const double *var
        double eps
        const double *gamma
        double *dx
        double *dgamma
        double *dbeta
        int phase
        double *sums
        fn_int stat_n
        double *work

    ctypedef struct fn_optim_f64:
        int kind
        double lr, momentum, beta1, beta2, eps, weight_decay
        int nesterov
        int64_t step
        double *buf1
        double *buf2

    ctypedef struct fn_layer_f64:
        fn_int fan_in, fan_out
        double *w
        double *b
        double *gamma
        double *beta
        double *running_mean
        double *running_var
        double *dw
        double *db
        double *dgamma
        double *dbeta
        double *xhat
        double *act
        double *out
        uint8_t *mask
        double *mean
        double *var

    ctypedef struct fn_mlp_f64:
        int n_layers
        fn_layer_f64 *layers
        int act
        int batch_norm
        double dropout, bn_eps, bn_momentum
        int freeze_bn_stats
        int loss
        fn_int n_params
        double *params
        double *grads
        double *input
        double *grad_a
        double *grad_b
        double *pack
        double *scratch
        void (*reduce)(void *ctx, double *values, fn_int count) noexcept nogil
        void *reduce_ctx
        double *bn_sums

    ctypedef struct fn_batch_f64:
        const double *x
        const fn_csr_f64 *csr
        int64_t *csr_work_index
        double *csr_work_values
        const int64_t *index
        fn_int n
        const int64_t *labels
        const double *targets
        const double *weights
        uint64_t seed
        uint32_t step
        double total_weight
        fn_int total_rows
        fn_int row0

    void fn_gemm_team_f64(fn_team *team, const fn_blas *blas, const fn_gemm_args_f64 *g)
    void fn_act_backward_team_f64(fn_team *team, fn_int n, fn_int f, const double *dout,
                                  const double *out, int act, const uint8_t *mask, double rate,
                                  double *dz, double *db)
    void fn_bn_forward_team_f64(fn_team *team, const fn_bn_forward_args_f64 *a)
    void fn_bn_backward_team_f64(fn_team *team, const fn_bn_backward_args_f64 *a)
    void fn_dropout_team_f64(fn_team *team, fn_int n, fn_int f, const double *x, fn_int ldx,
                             const fn_dropout *d, double *out, uint8_t *mask)
    void fn_dropout_backward_team_f64(fn_team *team, fn_int count, const double *dout,
                                      const uint8_t *mask, double rate, double *dx)
    void fn_softmax_xent_team_f64(fn_team *team, fn_int n, fn_int c, const double *logits,
                                  const int64_t *labels, const double *weights,
                                  const int64_t *index, double *dlogits, double total,
                                  double *scratch, fn_result *res)
    void fn_mse_team_f64(fn_team *team, fn_int n, fn_int d, const double *pred,
                         const double *targets, const double *weights, const int64_t *index,
                         double *dpred, double total, double *scratch, fn_result *res)
    void fn_softmax_team_f64(fn_team *team, fn_int n, fn_int c, const double *logits,
                             double *probs)
    void fn_optim_update_team_f64(fn_team *team, const fn_optim_f64 *o, fn_int count,
                                  double *param, const double *grad, double grad_scale)
    double fn_sumsq_team_f64(fn_team *team, fn_int count, const double *x, double *scratch)
    void fn_mlp_bind_f64(fn_mlp_f64 *net, fn_layer_f64 *layers, int n_layers,
                         const fn_int *sizes, const fn_mlp_config *cfg, fn_int max_batch,
                         double *params, double *grads, double *buffers, double *workspace,
                         uint8_t *masks, double *scratch)
    void fn_mlp_train_step_team_f64(fn_team *team, const fn_blas *blas, fn_mlp_f64 *net,
                                    const fn_batch_f64 *batch, const fn_optim_f64 *opt,
                                    double clip_norm, fn_result *res)
    void fn_mlp_apply_update_team_f64(fn_team *team, fn_mlp_f64 *net, const fn_optim_f64 *opt,
                                      double clip_norm, fn_result *res)
    void fn_mlp_forward_team_f64(fn_team *team, const fn_blas *blas, fn_mlp_f64 *net,
                                 const double *x, fn_int n, double *out)
    double fn_mlp_work_ns_f64(const fn_mlp_f64 *net, fn_int n, int training)

    # ---- sparse first-layer input (fn_sparse.h) ----------------------------
    fn_int fn_csr_grad_work_size(fn_int cols, fn_int nnz)
    void fn_mlp_forward_csr_team_f32(fn_team *team, const fn_blas *blas, fn_mlp_f32 *net,
                                     const fn_csr_f32 *x, float *out)
    void fn_mlp_forward_csr_team_f64(fn_team *team, const fn_blas *blas, fn_mlp_f64 *net,
                                     const fn_csr_f64 *x, double *out)
