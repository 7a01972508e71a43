# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
# cython: cdivision=True
"""Typed entry points of the native kernels behind fastnet.functional.

Arguments arrive validated (dtype, shape, C order, non-empty) from
fastnet/functional.py; here they become pointers, outputs and workspaces
are allocated, and the GIL is released for one team session per call
(none for work below the cost of a partner), in which the team-aware C
kernels split the work.
"""
import numpy as np

from cython cimport floating
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t

from fastnet._native cimport *
from fastnet._parallel cimport blas_table, team_begin, team_end


cdef inline object _dtype(floating dummy):
    return np.float32 if floating is float else np.float64


cdef inline int _bits(floating dummy) noexcept nogil:
    return 32 if floating is float else 64


# Pointers to optional arguments (None -> NULL).
cdef inline const floating *_in1(const floating[::1] v) noexcept:
    if v is None:
        return NULL
    return &v[0]


cdef inline const floating *_in2(const floating[:, ::1] v) noexcept:
    if v is None:
        return NULL
    return &v[0, 0]


cdef inline floating *_out1(floating[::1] v) noexcept:
    if v is None:
        return NULL
    return &v[0]


def linear_forward(const floating[:, ::1] x, const floating[:, ::1] w,
                   const floating[::1] b, int act):
    """out = act(x @ w + b) with the bias and activation in the product's epilogue."""
    cdef fn_int n = x.shape[0], k = x.shape[1], m = w.shape[1]
    out = np.empty((n, m), dtype=_dtype(<floating>0))
    pack = np.empty(fn_gemm_pack_size(k, m, _bits(<floating>0)), dtype=out.dtype)
    cdef floating[:, ::1] o = out
    cdef floating[::1] p = pack
    cdef fn_blas blas = blas_table()
    cdef double work_ns = <double>n * m * k * FN_NS_PER_FMA
    cdef fn_team *team
    cdef fn_gemm_args_f32 g32
    cdef fn_gemm_args_f64 g64
    if floating is float:
        g32 = fn_gemm_args_f32(n, m, k, &x[0, 0], k, 1, &w[0, 0], m, 1, &o[0, 0], m, 0,
                               _in1(b), act, &p[0])
        with nogil:
            team = team_begin(0, work_ns)
            fn_gemm_team_f32(team, &blas, &g32)
            team_end(team)
    else:
        g64 = fn_gemm_args_f64(n, m, k, &x[0, 0], k, 1, &w[0, 0], m, 1, &o[0, 0], m, 0,
                               _in1(b), act, &p[0])
        with nogil:
            team = team_begin(0, work_ns)
            fn_gemm_team_f64(team, &blas, &g64)
            team_end(team)
    return out


def linear_backward(const floating[:, ::1] dout, const floating[:, ::1] x,
                    const floating[:, ::1] w, const floating[:, ::1] out, int act,
                    bint need_dx=True):
    """(dx, dW, db) of out = act(x @ w + b); the activation's mask is applied
    to dout in the same pass that sums db."""
    cdef fn_int n = x.shape[0], k = x.shape[1], m = w.shape[1]
    dtype = _dtype(<floating>0)
    dw = np.empty((k, m), dtype=dtype)
    db = np.empty(m, dtype=dtype)
    dx = np.empty((n, k), dtype=dtype) if need_dx else None
    dz = np.empty((n, m), dtype=dtype) if act != FN_ACT_NONE else None
    pack = np.empty(max(fn_gemm_pack_size(n, m, _bits(<floating>0)),
                        fn_gemm_pack_size(m, k, _bits(<floating>0))), dtype=dtype)
    cdef floating[:, ::1] dw_v = dw, dx_v, dz_v
    cdef floating[::1] db_v = db, p = pack
    cdef const floating *dzp = &dout[0, 0]
    cdef floating *dzw = NULL
    cdef floating *dxp = NULL
    if dz is not None:
        dz_v = dz
        dzw = &dz_v[0, 0]
        dzp = dzw
    if dx is not None:
        dx_v = dx
        dxp = &dx_v[0, 0]
    cdef const floating *outp = _in2(out)
    cdef fn_blas blas = blas_table()
    cdef double work_ns = <double>n * m * k * FN_NS_PER_FMA
    cdef fn_team *team
    cdef fn_gemm_args_f32 gw32, gx32
    cdef fn_gemm_args_f64 gw64, gx64
    if floating is float:
        gw32 = fn_gemm_args_f32(k, m, n, &x[0, 0], 1, k, dzp, m, 1, &dw_v[0, 0], m, 0,
                                NULL, FN_ACT_NONE, &p[0])
        gx32 = fn_gemm_args_f32(n, k, m, dzp, m, 1, &w[0, 0], 1, m, dxp, k, 0,
                                NULL, FN_ACT_NONE, &p[0])
        with nogil:
            team = team_begin(0, work_ns)
            fn_act_backward_team_f32(team, n, m, &dout[0, 0], outp, act, NULL, 0, dzw, &db_v[0])
            fn_gemm_team_f32(team, &blas, &gw32)
            if dxp != NULL:
                fn_gemm_team_f32(team, &blas, &gx32)
            team_end(team)
    else:
        gw64 = fn_gemm_args_f64(k, m, n, &x[0, 0], 1, k, dzp, m, 1, &dw_v[0, 0], m, 0,
                                NULL, FN_ACT_NONE, &p[0])
        gx64 = fn_gemm_args_f64(n, k, m, dzp, m, 1, &w[0, 0], 1, m, dxp, k, 0,
                                NULL, FN_ACT_NONE, &p[0])
        with nogil:
            team = team_begin(0, work_ns)
            fn_act_backward_team_f64(team, n, m, &dout[0, 0], outp, act, NULL, 0, dzw, &db_v[0])
            fn_gemm_team_f64(team, &blas, &gw64)
            if dxp != NULL:
                fn_gemm_team_f64(team, &blas, &gx64)
            team_end(team)
    return dx, dw, db


def batch_norm(const floating[:, ::1] x, const floating[::1] gamma,
               const floating[::1] beta, double eps, bint training,
               floating[::1] running_mean, floating[::1] running_var, double momentum):
    """(out, mean, var); running buffers (may be None in training) updated in place."""
    cdef fn_int n = x.shape[0], f = x.shape[1]
    dtype = _dtype(<floating>0)
    out = np.empty((n, f), dtype=dtype)
    mean = np.empty(f, dtype=dtype)
    var = np.empty(f, dtype=dtype)
    cdef floating[:, ::1] o = out
    cdef floating[::1] mv = mean, vv = var
    cdef floating *rm = _out1(running_mean)
    cdef floating *rv = _out1(running_var)
    cdef double[::1] work = np.empty(fn_bn_work_size(n, f, 8 * sizeof(floating)))
    cdef double work_ns = <double>n * f * FN_NS_PER_ELEMENT
    cdef fn_team *team
    cdef fn_bn_forward_args_f32 a32
    cdef fn_bn_forward_args_f64 a64
    if floating is float:
        a32.n = n; a32.f = f; a32.x = &x[0, 0]; a32.gamma = &gamma[0]; a32.beta = &beta[0]
        a32.eps = eps; a32.training = training; a32.mean = &mv[0]; a32.var = &vv[0]
        a32.running_mean = rm; a32.running_var = rv; a32.momentum = momentum
        a32.xhat = NULL; a32.act = FN_ACT_NONE; a32.out = &o[0, 0]
        a32.dropout.rate = 0; a32.mask = NULL; a32.dropped = NULL
        a32.stats = NULL; a32.stat_n = 0; a32.work = &work[0]
        with nogil:
            team = team_begin(0, work_ns)
            fn_bn_forward_team_f32(team, &a32)
            team_end(team)
    else:
        a64.n = n; a64.f = f; a64.x = &x[0, 0]; a64.gamma = &gamma[0]; a64.beta = &beta[0]
        a64.eps = eps; a64.training = training; a64.mean = &mv[0]; a64.var = &vv[0]
        a64.running_mean = rm; a64.running_var = rv; a64.momentum = momentum
        a64.xhat = NULL; a64.act = FN_ACT_NONE; a64.out = &o[0, 0]
        a64.dropout.rate = 0; a64.mask = NULL; a64.dropped = NULL
        a64.stats = NULL; a64.stat_n = 0; a64.work = &work[0]
        with nogil:
            team = team_begin(0, work_ns)
            fn_bn_forward_team_f64(team, &a64)
            team_end(team)
    if not training:
        mean[:] = running_mean
        var[:] = running_var
    return out, mean, var


def batch_norm_backward(const floating[:, ::1] dout, const floating[:, ::1] x,
                        const floating[::1] gamma, const floating[::1] mean,
                        const floating[::1] var, double eps):
    """(dx, dgamma, dbeta) of training-mode batch norm."""
    cdef fn_int n = x.shape[0], f = x.shape[1]
    dtype = _dtype(<floating>0)
    dx = np.empty((n, f), dtype=dtype)
    dgamma = np.empty(f, dtype=dtype)
    dbeta = np.empty(f, dtype=dtype)
    cdef floating[:, ::1] dxv = dx
    cdef floating[::1] dg = dgamma, dbv = dbeta
    cdef double[::1] work = np.empty(fn_bn_work_size(n, f, 8 * sizeof(floating)))
    cdef double work_ns = <double>n * f * FN_NS_PER_ELEMENT
    cdef fn_team *team
    cdef fn_bn_backward_args_f32 a32
    cdef fn_bn_backward_args_f64 a64
    if floating is float:
        a32.n = n; a32.f = f; a32.dout = &dout[0, 0]; a32.mask = NULL; a32.rate = 0
        a32.act = FN_ACT_NONE; a32.act_out = NULL; a32.xhat = NULL; a32.x = &x[0, 0]
        a32.mean = &mean[0]; a32.var = &var[0]; a32.eps = eps; a32.gamma = &gamma[0]
        a32.dx = &dxv[0, 0]; a32.dgamma = &dg[0]; a32.dbeta = &dbv[0]
        a32.phase = 0; a32.sums = NULL; a32.stat_n = 0; a32.work = &work[0]
        with nogil:
            team = team_begin(0, work_ns)
            fn_bn_backward_team_f32(team, &a32)
            team_end(team)
    else:
        a64.n = n; a64.f = f; a64.dout = &dout[0, 0]; a64.mask = NULL; a64.rate = 0
        a64.act = FN_ACT_NONE; a64.act_out = NULL; a64.xhat = NULL; a64.x = &x[0, 0]
        a64.mean = &mean[0]; a64.var = &var[0]; a64.eps = eps; a64.gamma = &gamma[0]
        a64.dx = &dxv[0, 0]; a64.dgamma = &dg[0]; a64.dbeta = &dbv[0]
        a64.phase = 0; a64.sums = NULL; a64.stat_n = 0; a64.work = &work[0]
        with nogil:
            team = team_begin(0, work_ns)
            fn_bn_backward_team_f64(team, &a64)
            team_end(team)
    return dx, dgamma, dbeta


def dropout(const floating[:, ::1] x, double rate, uint64_t seed):
    """(out, mask) of inverted dropout on an n x f array, mask as uint8."""
    cdef fn_int n = x.shape[0], f = x.shape[1]
    out = np.empty((n, f), dtype=_dtype(<floating>0))
    mask = np.empty((n, f), dtype=np.uint8)
    cdef floating[:, ::1] o = out
    cdef uint8_t[:, ::1] mv = mask
    cdef fn_dropout d
    d.rate = rate; d.seed = seed; d.layer = 0; d.step = 0; d.row0 = 0
    cdef double work_ns = <double>n * f * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            fn_dropout_team_f32(team, n, f, &x[0, 0], f, &d, &o[0, 0], &mv[0, 0])
        else:
            fn_dropout_team_f64(team, n, f, &x[0, 0], f, &d, &o[0, 0], &mv[0, 0])
        team_end(team)
    return out, mask


def dropout_backward(const floating[::1] dout, const uint8_t[::1] mask, double rate):
    """dx = dout * mask / (1 - rate) over flat arrays."""
    cdef fn_int count = dout.shape[0]
    dx = np.empty(count, dtype=_dtype(<floating>0))
    cdef floating[::1] dxv = dx
    cdef double work_ns = <double>count * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            fn_dropout_backward_team_f32(team, count, &dout[0], &mask[0], rate, &dxv[0])
        else:
            fn_dropout_backward_team_f64(team, count, &dout[0], &mask[0], rate, &dxv[0])
        team_end(team)
    return dx


def softmax_cross_entropy(const floating[:, ::1] logits, const int64_t[::1] labels,
                          const floating[::1] weights, bint need_grad=True):
    """(loss, dlogits, correct) of the (weighted) mean softmax cross-entropy."""
    cdef fn_int n = logits.shape[0], c = logits.shape[1]
    dlogits = np.empty((n, c), dtype=_dtype(<floating>0)) if need_grad else None
    scratch = np.empty(fn_reduce_scratch_size(n, 0), dtype=np.float64)
    cdef floating[:, ::1] dl
    cdef floating *dlp = NULL
    if dlogits is not None:
        dl = dlogits
        dlp = &dl[0, 0]
    cdef double[::1] s = scratch
    cdef const floating *wp = _in1(weights)
    cdef fn_result res
    cdef double work_ns = <double>n * c * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            fn_softmax_xent_team_f32(team, n, c, &logits[0, 0], &labels[0], wp, NULL, dlp,
                                     0.0, &s[0], &res)
        else:
            fn_softmax_xent_team_f64(team, n, c, &logits[0, 0], &labels[0], wp, NULL, dlp,
                                     0.0, &s[0], &res)
        team_end(team)
    return res.loss, dlogits, res.correct


def softmax(const floating[:, ::1] logits):
    cdef fn_int n = logits.shape[0], c = logits.shape[1]
    probs = np.empty((n, c), dtype=_dtype(<floating>0))
    cdef floating[:, ::1] p = probs
    cdef double work_ns = <double>n * c * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            fn_softmax_team_f32(team, n, c, &logits[0, 0], &p[0, 0])
        else:
            fn_softmax_team_f64(team, n, c, &logits[0, 0], &p[0, 0])
        team_end(team)
    return probs


def mse(const floating[:, ::1] pred, const floating[:, ::1] targets,
        const floating[::1] weights, bint need_grad=True):
    """(loss, dpred) of the (weighted) mean squared error."""
    cdef fn_int n = pred.shape[0], d = pred.shape[1]
    dpred = np.empty((n, d), dtype=_dtype(<floating>0)) if need_grad else None
    scratch = np.empty(fn_reduce_scratch_size(n, 0), dtype=np.float64)
    cdef floating[:, ::1] dp
    cdef floating *dpp = NULL
    if dpred is not None:
        dp = dpred
        dpp = &dp[0, 0]
    cdef double[::1] s = scratch
    cdef const floating *wp = _in1(weights)
    cdef fn_result res
    cdef double work_ns = <double>n * d * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            fn_mse_team_f32(team, n, d, &pred[0, 0], &targets[0, 0], wp, NULL, dpp, 0.0,
                            &s[0], &res)
        else:
            fn_mse_team_f64(team, n, d, &pred[0, 0], &targets[0, 0], wp, NULL, dpp, 0.0,
                            &s[0], &res)
        team_end(team)
    return res.loss, dpred


def optimizer_update(floating[::1] param, const floating[::1] grad, floating[::1] buf1,
                     floating[::1] buf2, int kind, double lr, double momentum,
                     double beta1, double beta2, double eps, double weight_decay,
                     bint nesterov, int64_t step, double grad_scale):
    """One in-place update of a flat parameter array (see fn_optim.c)."""
    cdef fn_int count = param.shape[0]
    cdef double work_ns = <double>count * FN_NS_PER_ELEMENT
    cdef fn_team *team
    cdef fn_optim_f32 o32
    cdef fn_optim_f64 o64
    if floating is float:
        o32 = fn_optim_f32(kind, lr, momentum, beta1, beta2, eps, weight_decay, nesterov,
                           step, _out1(buf1),
                           _out1(buf2))
        with nogil:
            team = team_begin(0, work_ns)
            fn_optim_update_team_f32(team, &o32, count, &param[0], &grad[0], grad_scale)
            team_end(team)
    else:
        o64 = fn_optim_f64(kind, lr, momentum, beta1, beta2, eps, weight_decay, nesterov,
                           step, _out1(buf1),
                           _out1(buf2))
        with nogil:
            team = team_begin(0, work_ns)
            fn_optim_update_team_f64(team, &o64, count, &param[0], &grad[0], grad_scale)
            team_end(team)


def sum_of_squares(const floating[::1] x):
    """Sum of squares in a fixed order (bit-identical for any thread count)."""
    cdef fn_int count = x.shape[0]
    scratch = np.empty(fn_reduce_scratch_size(0, count), dtype=np.float64)
    cdef double[::1] s = scratch
    cdef double total
    cdef double work_ns = <double>count * FN_NS_PER_ELEMENT
    cdef fn_team *team
    with nogil:
        team = team_begin(0, work_ns)
        if floating is float:
            total = fn_sumsq_team_f32(team, count, &x[0], &s[0])
        else:
            total = fn_sumsq_team_f64(team, count, &x[0], &s[0])
        team_end(team)
    return total


def dropout_random_bits(uint64_t seed, uint32_t layer, uint32_t step, elements):
    """The random words behind dropout masks (for tests of the documented rule)."""
    cdef fn_dropout d
    d.rate = 0; d.seed = seed; d.layer = layer; d.step = step; d.row0 = 0
    return [fn_dropout_random_bits(&d, e) for e in elements]


def dropout_threshold(double rate):
    return fn_dropout_threshold(rate)
