"""Numerical tests of fastnet.functional (the native kernels).

Every kernel is checked against
  (a) a plain NumPy float64 reference (tests/_kernel_reference.py), and
  (b) PyTorch as an outside oracle (torch.nn.functional + autograd),
and every backward pass against central finite differences in float64.
Tolerances: conftest.assert_close (float32 rtol 1e-4, float64 rtol 1e-10,
plus an atol proportional to the magnitude the result was computed from).
"""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from _kernel_reference import (
    BY_NAME,
    KERNEL_IDS,
    KERNELS,
    as_tuple,
    dropout_bits,
    dropout_mask_reference,
    ref_batch_norm,
    ref_batch_norm_backward,
    ref_dropout_apply,
    ref_linear_backward,
    ref_linear_forward,
    ref_mse,
    ref_softmax,
    ref_softmax_cross_entropy,
    splitmix64,
)
from conftest import (
    FD_EPS,
    FD_RTOL,
    assert_close,
    assert_same_bits,
    blas,
    layouts,
    names_argument,
    other_float,
)

import fastnet.functional as F
from fastnet import _kernels, _parallel

f64 = np.float64


def T(a, grad=False):
    """A torch tensor holding a copy of `a` (same dtype)."""
    t = torch.from_numpy(np.array(a, copy=True))
    return t.requires_grad_(grad)


def N(t):
    return t.detach().numpy()


def rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def numerical_grad(fun, a, eps=FD_EPS):
    """Central differences of the scalar fun() with respect to every element
    of the float64 array `a` (perturbed in place, then restored)."""
    g = np.zeros_like(a, dtype=f64)
    flat, gflat = a.reshape(-1), g.reshape(-1)
    assert np.shares_memory(flat, a)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = fun()
        flat[i] = old - eps
        down = fun()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


def assert_fd(analytic, numeric, what):
    scale = max(1.0, float(np.max(np.abs(numeric))))
    np.testing.assert_allclose(analytic, numeric, rtol=FD_RTOL, atol=1e-7 * scale, err_msg=what)


def check_ref(outputs, refs, dtype, what=""):
    outputs = as_tuple(outputs)
    assert len(outputs) == len(refs)
    for i, (out, (expected, scale)) in enumerate(zip(outputs, refs)):
        if isinstance(out, np.ndarray) and out.dtype.kind == "f":
            assert out.dtype == dtype, f"{what} output {i}: dtype {out.dtype} != {dtype}"
        assert_close(out, expected, dtype=dtype, scale=scale, what=f"{what} output {i}")


SHAPES = [(1, 5, 3), (2, 1, 1), (7, 13, 5), (64, 64, 64), (128, 128, 128)]
SHAPE_IDS = ["batch1", "2x1x1", "7x13x5", "64", "128"]


# ==========================================================================
# Every kernel against its NumPy reference, over the shape families
# ==========================================================================

@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_kernel_matches_numpy_reference(kernel, shape, dtype, rng):
    if kernel.training_bn and shape[0] == 1:
        shape = (2,) + shape[1:]        # batch 1 is refused in training (tested below)
    args = kernel.make(rng, dtype, *shape)
    check_ref(kernel.call(args), kernel.ref(args, dtype), dtype, kernel.name)


@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_kernel_large_shape_matches_numpy_reference(kernel, dtype, rng):
    # 512 x 2048 (x 2048 for the linear layers: these go through BLIS)
    args = kernel.make(rng, dtype, 512, 2048, 2048)
    check_ref(kernel.call(args), kernel.ref(args, dtype), dtype, kernel.name)


# ==========================================================================
# linear_forward / linear_backward
# ==========================================================================

LINEAR_SHAPES = [(1, 1, 1), (1, 13, 5), (7, 13, 5), (13, 7, 1), (64, 64, 64),
                 (128, 128, 128), (512, 2048, 2048)]


def _linear_inputs(rng, dtype, n, k, m):
    x = rand(rng, (n, k), dtype)
    W = rand(rng, (k, m), dtype, 1 / math.sqrt(k))
    b = rand(rng, m, dtype)
    return x, W, b


LINEAR_FORWARD_CASES = (
    [(shape, bias, act) for shape in LINEAR_SHAPES[:-1] for bias in (True, False)
     for act in (None, "relu")]
    + [(LINEAR_SHAPES[-1], True, "relu"), (LINEAR_SHAPES[-1], False, None)])


@pytest.mark.parametrize(
    "shape,with_bias,activation", LINEAR_FORWARD_CASES,
    ids=["x".join(map(str, s)) + ("-bias" if b else "") + (f"-{a}" if a else "")
         for s, b, a in LINEAR_FORWARD_CASES])
def test_linear_forward_reference_and_torch(shape, with_bias, activation, dtype, rng):
    x, W, b = _linear_inputs(rng, dtype, *shape)
    b = b if with_bias else None
    out = F.linear_forward(x, W, b, activation=activation)
    assert out.dtype == dtype and out.shape == (shape[0], shape[2])
    [(expected, scale)] = ref_linear_forward(x, W, b, activation)
    assert_close(out, expected, scale=scale, what="numpy")
    zt = TF.linear(T(x), T(W).T, None if b is None else T(b))
    if activation == "relu":
        zt = TF.relu(zt)
    assert_close(out, N(zt), dtype=dtype, scale=scale, what="torch")


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", LINEAR_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_linear_backward_reference_and_torch_autograd(shape, activation, dtype, rng):
    x, W, b = _linear_inputs(rng, dtype, *shape)
    out = F.linear_forward(x, W, b, activation=activation)
    dout = rand(rng, out.shape, dtype)
    if activation == "relu":
        # The gradient at the ReLU kink is a convention; zero dout where the
        # pre-activation is within rounding of 0 so both oracles agree.
        z = x.astype(f64) @ W.astype(f64) + b
        near = np.abs(z) <= 1e-3 * (np.abs(x).astype(f64) @ np.abs(W) + np.abs(b))
        dout[near] = 0
    dx, dW, db = F.linear_backward(dout, x, W, out if activation else None,
                                   activation=activation)
    for g, s in ((dx, x.shape), (dW, W.shape), (db, b.shape)):
        assert g.dtype == dtype and g.shape == s
    refs = ref_linear_backward(dout, x, W, out, activation)
    check_ref((dx, dW, db), refs, dtype, "numpy")
    xt, Wt, bt = T(x, True), T(W, True), T(b, True)
    zt = xt @ Wt + bt
    (TF.relu(zt) if activation == "relu" else zt).backward(T(dout))
    for got, t, (_, scale), name in zip((dx, dW, db), (xt, Wt, bt), refs, ("dx", "dW", "db")):
        assert_close(got, N(t.grad), dtype=dtype, scale=scale, what=f"torch {name}")


def test_linear_backward_relu_mask_is_out_gt_zero(dtype, rng):
    """Where out == 0 exactly the gradient is 0 (PyTorch's convention)."""
    x, W, b = _linear_inputs(rng, dtype, 9, 6, 7)
    out = F.linear_forward(x, W, b, activation="relu")
    assert (out == 0).any() and (out > 0).any()
    dout = rand(rng, out.shape, dtype)
    dx, _dW, db = F.linear_backward(dout, x, W, out, activation="relu")
    dz = dout * (out > 0)
    assert_close(db, dz.astype(f64).sum(0), scale=np.abs(dz.astype(f64)).sum(0))
    assert_close(dx, dz.astype(f64) @ W.T.astype(f64),
                 scale=np.abs(dz.astype(f64)) @ np.abs(W.T.astype(f64)))


def _kink_free_linear(rng, n, k, m, margin=0.05):
    for _ in range(1000):
        x, W, b = _linear_inputs(rng, f64, n, k, m)
        if np.min(np.abs(x @ W + b)) > margin:
            return x, W, b
    raise AssertionError("could not draw kink-free data")


@pytest.mark.parametrize("activation", [None, "relu"])
@pytest.mark.parametrize("shape", [(5, 4, 3), (1, 3, 2), (3, 1, 1)])
def test_linear_backward_finite_differences(shape, activation, rng):
    # relu: |pre-activation| > 0.05 everywhere, far from the kink at the
    # 1e-6 steps taken here
    x, W, b = _kink_free_linear(rng, *shape)
    dout = rng.standard_normal((shape[0], shape[2]))
    out = F.linear_forward(x, W, b, activation=activation)

    def loss():
        return float(np.sum(dout * F.linear_forward(x, W, b, activation=activation)))

    dx, dW, db = F.linear_backward(dout, x, W, out if activation else None,
                                   activation=activation)
    assert_fd(dx, numerical_grad(loss, x), "dx")
    assert_fd(dW, numerical_grad(loss, W), "dW")
    assert_fd(db, numerical_grad(loss, b), "db")


GEMM_PATH_SHAPES = [(256, 512, 384),    # k > 384: BLIS by default
                    (601, 389, 517),    # odd everything, BLIS by default
                    (600, 300, 600),    # BLIS by work
                    (97, 1000, 33),     # long k, narrow output
                    (45, 70, 50)]       # small: built-in kernel either way


@pytest.mark.parametrize("shape", GEMM_PATH_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_blas_and_builtin_gemm_paths_agree_with_reference(shape, dtype, rng):
    x, W, b = _linear_inputs(rng, dtype, *shape)
    dout = rand(rng, (shape[0], shape[2]), dtype)
    results = {}
    for flag in (True, False):
        with blas(flag):
            out = F.linear_forward(x, W, b, activation="relu")
            grads = F.linear_backward(dout, x, W, out, activation="relu")
        check_ref((out,), ref_linear_forward(x, W, b, "relu"), dtype, f"blas={flag} forward")
        check_ref(grads, ref_linear_backward(dout, x, W, out, "relu"), dtype,
                  f"blas={flag} backward")
        results[flag] = (out,) + grads
    for a, b_, (_, scale) in zip(results[True][1:], results[False][1:],
                                 ref_linear_backward(dout, x, W, results[True][0], "relu")):
        assert_close(a, b_.astype(f64), dtype=dtype, scale=scale, what="paths agree")


def test_use_blas_returns_previous_value():
    first = _parallel.use_blas(False)
    try:
        assert _parallel.use_blas(False) is False
        assert _parallel.use_blas(True) is False
        assert _parallel.use_blas(True) is True
    finally:
        _parallel.use_blas(first)


@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "builtin"])
def test_gemm_odd_and_transposed_shapes(use_blas, dtype, rng):
    """Rows not a multiple of the 6-row tile, columns not a multiple of the
    16-wide (8-wide for float64) panel, and the transposed operands of the
    backward pass (x.T in dW, W.T in dx)."""
    with blas(use_blas):
        for n in (1, 5, 6, 7, 13):
            for m in (1, 4, 7, 8, 9, 15, 16, 17, 33):
                for k in (1, 17):
                    x, W, b = _linear_inputs(rng, dtype, n, k, m)
                    out = F.linear_forward(x, W, b)
                    check_ref((out,), ref_linear_forward(x, W, b), dtype, f"{n}x{k}x{m}")
                    dout = rand(rng, out.shape, dtype)
                    check_ref(F.linear_backward(dout, x, W), ref_linear_backward(dout, x, W),
                              dtype, f"backward {n}x{k}x{m}")


# ==========================================================================
# batch_norm / batch_norm_backward
# ==========================================================================

BN_SHAPES = [(2, 1), (2, 3), (7, 13), (33, 47), (64, 64), (128, 128), (512, 2048)]


def _bn_inputs(rng, dtype, n, f):
    x = (rng.standard_normal((n, f)) * rng.uniform(0.5, 3.0, f) + rng.uniform(-2, 2, f))
    return (x.astype(dtype), rng.uniform(0.5, 1.5, f).astype(dtype),
            rand(rng, f, dtype), rand(rng, f, dtype, 0.1),
            rng.uniform(0.5, 2.0, f).astype(dtype))


@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_training_reference_and_torch(shape, dtype, rng):
    x, gamma, beta, rm0, rv0 = _bn_inputs(rng, dtype, *shape)
    rm, rv = rm0.copy(), rv0.copy()
    out, mean, var = F.batch_norm(x, gamma, beta, training=True, running_mean=rm,
                                  running_var=rv)
    refs = ref_batch_norm(x, gamma, beta, 1e-5, True, rm0, rv0, 0.1)
    check_ref((out, mean, var, rm, rv), refs, dtype, "numpy")
    # torch: biased variance to normalise, unbiased in running_var, momentum 0.1
    rmt, rvt = T(rm0), T(rv0)
    outt = TF.batch_norm(T(x), rmt, rvt, weight=T(gamma), bias=T(beta), training=True,
                         momentum=0.1, eps=1e-5)
    assert_close(out, N(outt), dtype=dtype, scale=refs[0][1], what="torch out")
    assert_close(mean, N(T(x).mean(0)), dtype=dtype, scale=refs[1][1], what="torch mean")
    assert_close(var, N(T(x).var(0, unbiased=False)), dtype=dtype, scale=refs[2][1],
                 what="torch var")
    assert_close(rm, N(rmt), dtype=dtype, scale=refs[3][1], what="torch running_mean")
    assert_close(rv, N(rvt), dtype=dtype, scale=refs[4][1], what="torch running_var")


@pytest.mark.parametrize("momentum", [0.0, 0.1, 0.37, 1.0])
def test_batch_norm_running_buffers_over_steps_vs_torch(momentum, dtype, rng):
    n, f = 6, 37
    _, gamma, beta, rm0, rv0 = _bn_inputs(rng, dtype, n, f)
    rm, rv = rm0.copy(), rv0.copy()
    ids = (id(rm), id(rv))
    rmt, rvt = T(rm0), T(rv0)
    expected_m, expected_v = rm0.astype(f64), rv0.astype(f64)
    for step in range(5):
        x = _bn_inputs(rng, dtype, n, f)[0]
        F.batch_norm(x, gamma, beta, training=True, running_mean=rm, running_var=rv,
                     momentum=momentum)
        TF.batch_norm(T(x), rmt, rvt, weight=T(gamma), bias=T(beta), training=True,
                      momentum=momentum, eps=1e-5)
        x64 = x.astype(f64)
        expected_m = (1 - momentum) * expected_m + momentum * x64.mean(0)
        expected_v = (1 - momentum) * expected_v + momentum * x64.var(0, ddof=1)
        assert (id(rm), id(rv)) == ids      # updated in place, same arrays
        assert_close(rm, expected_m, scale=np.abs(x64).mean(0) + 1, what=f"rm step {step}")
        assert_close(rv, expected_v, scale=x64.var(0) + (x64 ** 2).mean(0) + 1,
                     what=f"rv step {step}")
        assert_close(rm, N(rmt), dtype=dtype, scale=np.abs(x64).mean(0) + 1, what="torch rm")
        assert_close(rv, N(rvt), dtype=dtype, scale=(x64 ** 2).mean(0) + 1, what="torch rv")
    if momentum == 0.0:
        assert_same_bits(rm, rm0)
        assert_same_bits(rv, rv0)


def test_batch_norm_running_var_is_unbiased_and_normalisation_biased(rng):
    """The convention pinned on a case worked by hand: x = [[0], [2]]
    has biased variance 1 and unbiased variance 2."""
    x = np.array([[0.0], [2.0]])
    rm, rv = np.zeros(1), np.ones(1)
    out, mean, var = F.batch_norm(x, np.ones(1), np.zeros(1), eps=0.0, running_mean=rm,
                                  running_var=rv, momentum=0.5)
    assert_close(out, [[-1.0], [1.0]])
    assert_close(mean, [1.0])
    assert_close(var, [1.0])
    assert_close(rm, [0.5])
    assert_close(rv, [1.5])            # 0.5 * 1 + 0.5 * 2


@pytest.mark.parametrize("shape", [(1, 5), (2, 3), (7, 13), (128, 128), (512, 2048)],
                         ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_eval_reference_and_torch(shape, dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, *shape)
    rm0, rv0 = rm.copy(), rv.copy()
    out, mean, var = F.batch_norm(x, gamma, beta, training=False, running_mean=rm,
                                  running_var=rv)
    refs = ref_batch_norm(x, gamma, beta, 1e-5, False, rm, rv)
    check_ref((out, mean, var), refs, dtype, "numpy")
    outt = TF.batch_norm(T(x), T(rm), T(rv), weight=T(gamma), bias=T(beta), training=False,
                         eps=1e-5)
    assert_close(out, N(outt), dtype=dtype, scale=refs[0][1], what="torch")
    # eval never touches the buffers; the returned statistics are copies of them
    assert_same_bits(rm, rm0)
    assert_same_bits(rv, rv0)
    assert_same_bits(mean, rm0)
    assert_same_bits(var, rv0)
    assert not np.shares_memory(mean, rm) and not np.shares_memory(var, rv)


def test_batch_norm_training_without_buffers_same_as_with(dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 9, 20)
    with_buffers = F.batch_norm(x, gamma, beta, running_mean=rm, running_var=rv)
    without = F.batch_norm(x, gamma, beta)
    for a, b in zip(with_buffers, without):
        assert_same_bits(a, b)


@pytest.mark.parametrize("eps", [0.0, 1e-3, 0.5])
def test_batch_norm_eps(eps, dtype, rng):
    x, gamma, beta, _rm, _rv = _bn_inputs(rng, dtype, 11, 9)
    out, _, _ = F.batch_norm(x, gamma, beta, eps)
    check_ref((out,), ref_batch_norm(x, gamma, beta, eps)[:1], dtype)
    if eps > 0:         # torch refuses eps == 0 in training
        outt = TF.batch_norm(T(x), None, None, T(gamma), T(beta), training=True, eps=eps)
        assert_close(out, N(outt), dtype=dtype,
                     scale=ref_batch_norm(x, gamma, beta, eps)[0][1])
    dout = rand(rng, x.shape, dtype)
    _, mean, var = F.batch_norm(x, gamma, beta, eps)
    check_ref(F.batch_norm_backward(dout, x, gamma, mean, var, eps),
              ref_batch_norm_backward(dout, x, gamma, mean, var, eps), dtype, "backward")


def test_batch_norm_constant_column(dtype, rng):
    """A column with zero variance normalises to beta (x - mean == 0), finite."""
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 8, 5)
    x[:, 2] = dtype(3.25)
    out, mean, var = F.batch_norm(x, gamma, beta, running_mean=rm, running_var=rv)
    assert var[2] == 0 and mean[2] == dtype(3.25)
    assert_same_bits(out[:, 2], np.full(8, beta[2], dtype=dtype))
    outt = TF.batch_norm(T(x), None, None, T(gamma), T(beta), training=True)
    assert_close(out, N(outt), dtype=dtype, scale=ref_batch_norm(x, gamma, beta)[0][1])


@pytest.mark.parametrize("shape", BN_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_batch_norm_backward_reference_and_torch_autograd(shape, dtype, rng):
    x, gamma, beta, _, _ = _bn_inputs(rng, dtype, *shape)
    dout = rand(rng, shape, dtype)
    _out, mean, var = F.batch_norm(x, gamma, beta)
    dx, dgamma, dbeta = F.batch_norm_backward(dout, x, gamma, mean, var)
    refs = ref_batch_norm_backward(dout, x, gamma, mean, var)
    check_ref((dx, dgamma, dbeta), refs, dtype, "numpy")
    xt, gt, bt = T(x, True), T(gamma, True), T(beta, True)
    TF.batch_norm(xt, None, None, gt, bt, training=True, eps=1e-5).backward(T(dout))
    for got, t, (_, scale), name in zip((dx, dgamma, dbeta), (xt, gt, bt), refs,
                                        ("dx", "dgamma", "dbeta")):
        assert_close(got, N(t.grad), dtype=dtype, scale=scale, what=f"torch {name}")


@pytest.mark.parametrize("shape", [(2, 1), (2, 3), (5, 4), (9, 2)])
def test_batch_norm_backward_finite_differences(shape, rng):
    """The full training-mode gradient (through the batch mean and variance)."""
    x, gamma, beta, _, _ = _bn_inputs(rng, f64, *shape)
    dout = rng.standard_normal(shape)

    def loss():
        return float(np.sum(dout * F.batch_norm(x, gamma, beta, 1e-3)[0]))

    _, mean, var = F.batch_norm(x, gamma, beta, 1e-3)
    dx, dgamma, dbeta = F.batch_norm_backward(dout, x, gamma, mean, var, 1e-3)
    assert_fd(dx, numerical_grad(loss, x), "dx")
    assert_fd(dgamma, numerical_grad(loss, gamma), "dgamma")
    assert_fd(dbeta, numerical_grad(loss, beta), "dbeta")


# ==========================================================================
# dropout / dropout_backward and the Philox generator
# ==========================================================================

# Known answers of the generator's two mixing functions: splitmix64 from the
# reference implementation's first outputs for state 0 (Vigna, splitmix64.c),
# lowbias32 from hash-prospector's published constants (values computed here
# once and pinned, so a change of the generator cannot go unnoticed).
def test_splitmix64_known_answers():
    # splitmix64.c with x = 0: next() returns splitmix64(0), splitmix64(g), ...
    assert splitmix64(0) == 0xE220A8397B1DCDAF
    assert splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


@pytest.mark.parametrize("seed,layer,step,element", [
    (0, 0, 0, 0), (1, 0, 0, 5), (12345, 3, 77, 1000), (2**64 - 1, 2**32 - 1, 2**32 - 1,
                                                      2**32 - 1)])
def test_dropout_bits_match_the_documented_rule(seed, layer, step, element):
    got = _kernels.dropout_random_bits(seed, layer, step, [element])[0]
    assert got == dropout_bits(seed, layer, step, element)


def test_dropout_threshold_is_floor_of_keep_times_2_32():
    for rate in (0.1, 0.3, 0.5, 0.77, 0.999):
        assert _kernels.dropout_threshold(rate) == math.floor((1 - rate) * 2**32)


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**32 - 1, 2**32, 2**40 + 987654321, 2**64 - 1])
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.77])
@pytest.mark.parametrize("shape", [(1, 1), (3, 10), (5, 7), (2, 9), (4, 16)])
def test_dropout_mask_is_the_documented_stream(shape, rate, seed):
    """Element (i, j) of a 2-D input is kept iff
    dropout_bits(seed, layer 0, step 0, i * f + j) < floor((1 - rate) * 2**32)."""
    n, f = shape
    x = np.ones(shape, dtype=np.float32)
    _, mask = F.dropout(x, rate, seed=seed)
    assert_same_bits(mask, dropout_mask_reference(n, f, rate, seed))


def test_dropout_masks_look_independent():
    """No visible correlation between neighbouring elements, rows or seeds."""
    x = np.ones((512, 512), dtype=np.float32)
    _, a = F.dropout(x, 0.5, seed=1)
    _, b = F.dropout(x, 0.5, seed=2)
    a, b = a.astype(float), b.astype(float)
    bound = 4 / math.sqrt(a.size)
    assert abs(a.mean() - 0.5) < bound
    assert abs(np.corrcoef(a.ravel(), b.ravel())[0, 1]) < bound
    assert abs(np.corrcoef(a[:, 1:].ravel(), a[:, :-1].ravel())[0, 1]) < bound
    assert abs(np.corrcoef(a[1:].ravel(), a[:-1].ravel())[0, 1]) < bound


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 13), (64, 64), (512, 2048)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("rate", [0.05, 0.5, 0.9])
def test_dropout_output_is_x_times_mask_over_keep(shape, rate, dtype, rng):
    x = rand(rng, shape, dtype)
    out, mask = F.dropout(x, rate, seed=7)
    assert mask.dtype == np.bool_ and mask.shape == x.shape
    assert out.dtype == dtype and out.shape == x.shape
    check_ref((out,), ref_dropout_apply(x, mask, rate), dtype, "numpy")
    assert np.all(out[~mask] == 0)
    outt = T(x) * T(mask) / (1 - rate)
    assert_close(out, N(outt), dtype=dtype, scale=np.abs(x.astype(f64)) / (1 - rate))


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.9])
def test_dropout_mask_statistics(rate):
    x = np.ones((512, 2048), dtype=np.float32)
    out, mask = F.dropout(x, rate, seed=2024)
    keep = 1 - rate
    count = mask.size
    bound = 6 * math.sqrt(rate * keep / count)      # six standard deviations
    assert abs(mask.mean() - keep) < bound
    # inverted dropout preserves the expectation
    assert abs(out.astype(f64).mean() - 1.0) < bound / keep
    # each of the four Philox lanes, each row block and column block is unbiased
    for lane in range(4):
        part = mask[:, lane::4]
        assert abs(part.mean() - keep) < 6 * math.sqrt(rate * keep / part.size)
    for part in (mask[:256], mask[256:], mask[:, :1024], mask[:, 1024:]):
        assert abs(part.mean() - keep) < 6 * math.sqrt(rate * keep / part.size)
    # an independent seed agrees with probability keep^2 + rate^2
    _, other = F.dropout(x, rate, seed=2025)
    agree = np.mean(mask == other)
    p = keep**2 + rate**2
    assert abs(agree - p) < 6 * math.sqrt(p * (1 - p) / count)


def test_dropout_seed_reproducible_and_seed_sensitive(dtype, rng):
    x = rand(rng, (33, 65), dtype)
    out1, m1 = F.dropout(x, 0.4, seed=99)
    out2, m2 = F.dropout(x, 0.4, seed=99)
    assert_same_bits(m1, m2)
    assert_same_bits(out1, out2)
    _, m3 = F.dropout(x, 0.4, seed=100)
    assert not np.array_equal(m1, m3)
    _, m4 = F.dropout(x, 0.4, seed=99 + 2**32)     # high key word matters too
    assert not np.array_equal(m1, m4)


def test_dropout_rng_argument(dtype, rng):
    x = rand(rng, (20, 30), dtype)
    out_a, m_a = F.dropout(x, 0.5, rng=np.random.default_rng(5))
    out_b, m_b = F.dropout(x, 0.5, rng=np.random.default_rng(5))
    assert_same_bits(m_a, m_b)
    assert_same_bits(out_a, out_b)
    _, m_c = F.dropout(x, 0.5, rng=np.random.default_rng(6))
    assert not np.array_equal(m_a, m_c)
    g = np.random.default_rng(5)
    _, first = F.dropout(x, 0.5, rng=g)
    _, second = F.dropout(x, 0.5, rng=g)        # the generator advanced
    assert_same_bits(first, m_a)
    assert not np.array_equal(first, second)
    check_ref((out_a,), ref_dropout_apply(x, m_a, 0.5), dtype)


def test_dropout_without_seed_is_random(rng):
    x = np.ones((16, 64))
    masks = [F.dropout(x, 0.5)[1] for _ in range(3)]
    assert not (np.array_equal(masks[0], masks[1]) and np.array_equal(masks[1], masks[2]))


@pytest.mark.parametrize("kwargs", [{"training": False}, {"rate": 0.0},
                                    {"rate": 0.0, "training": False}],
                         ids=["eval", "rate0", "both"])
def test_dropout_identity_cases(kwargs, dtype, rng):
    kwargs = dict(kwargs)
    rate = kwargs.pop("rate", 0.5)
    for shape in [(7,), (4, 5), (2, 3, 4)]:
        x = rand(rng, shape, dtype)
        x0 = x.copy()
        out, mask = F.dropout(x, rate, seed=1, **kwargs)
        assert_same_bits(out, x0)
        assert mask.dtype == np.bool_ and mask.shape == x.shape and mask.all()
        assert_same_bits(x, x0)


@pytest.mark.parametrize("shape", [(1,), (13,), (4097,), (2, 3, 5), (3, 1, 4, 9)])
def test_dropout_other_ranks(shape, dtype, rng):
    """1-D and N-D inputs keep their shape; the mask is that of the input
    reshaped to 2-D with all leading axes flattened into rows."""
    x = rand(rng, shape, dtype)
    out, mask = F.dropout(x, 0.35, seed=42)
    assert out.shape == shape and mask.shape == shape and mask.dtype == np.bool_
    check_ref((out,), ref_dropout_apply(x, mask, 0.35), dtype)
    rows = x.reshape(1, -1) if x.ndim == 1 else x.reshape(-1, shape[-1])
    _, mask2d = F.dropout(rows, 0.35, seed=42)
    assert_same_bits(mask, mask2d.reshape(shape))
    if x.ndim == 3:     # slices of the leading axis get different masks
        assert not np.array_equal(mask[0], mask[1])


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (64, 64), (512, 2048), (2, 3, 4)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.8])
def test_dropout_backward_reference_and_torch_autograd(shape, rate, dtype, rng):
    x = rand(rng, shape, dtype)
    dout = rand(rng, shape, dtype)
    mask = rng.random(shape) >= max(rate, 0.3)     # a mask with zeros even at rate 0
    dx = F.dropout_backward(dout, mask, rate)
    assert dx.dtype == dtype and dx.shape == shape
    check_ref((dx,), ref_dropout_apply(dout, mask, rate), dtype, "numpy")
    xt = T(x, True)
    (xt * T(mask) / (1 - rate)).backward(T(dout))
    assert_close(dx, N(xt.grad), dtype=dtype, scale=np.abs(dout.astype(f64)) / (1 - rate))
    # a uint8 mask means the same
    assert_same_bits(F.dropout_backward(dout, mask.astype(np.uint8), rate), dx)


def test_dropout_backward_finite_differences_frozen_mask(rng):
    """Same seed = same mask whatever x holds, so dropout(x + h) with a
    fixed seed differentiates with the mask frozen."""
    x = rng.standard_normal((4, 9))
    dout = rng.standard_normal((4, 9))
    _, mask = F.dropout(x, 0.4, seed=31)
    assert 0 < mask.sum() < mask.size

    def loss():
        out, m = F.dropout(x, 0.4, seed=31)
        assert_same_bits(m, mask)
        return float(np.sum(dout * out))

    assert_fd(F.dropout_backward(dout, mask, 0.4), numerical_grad(loss, x), "dx")


def test_dropout_roundtrip_with_forward(dtype, rng):
    x = rand(rng, (17, 23), dtype)
    _out, mask = F.dropout(x, 0.6, seed=3)
    dout = rand(rng, x.shape, dtype)
    check_ref((F.dropout_backward(dout, mask, 0.6),), ref_dropout_apply(dout, mask, 0.6),
              dtype)


# ==========================================================================
# softmax_cross_entropy, softmax, mse_loss
# ==========================================================================

XENT_SHAPES = [(1, 1), (1, 5), (7, 13), (64, 10), (128, 128), (512, 2048)]


def _torch_xent(logits, y, w=None):
    lt = T(logits, True)
    yt = torch.from_numpy(np.asarray(y, dtype=np.int64))
    if w is None:
        loss = TF.cross_entropy(lt, yt)
    else:
        wt = T(w)
        loss = (TF.cross_entropy(lt, yt, reduction="none") * wt).sum() / wt.sum()
    loss.backward()
    return loss.item(), N(lt.grad)


@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "weighted"])
@pytest.mark.parametrize("shape", XENT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax_cross_entropy_reference_and_torch(shape, weighted, dtype, rng):
    n, c = shape
    logits = rand(rng, shape, dtype, 3.0)
    y = rng.integers(0, c, n)
    w = None
    if weighted:
        w = rng.uniform(0, 2, n).astype(dtype)
        w[0] = 0.5
        if n > 3:
            w[1] = 0.0          # zero weights are allowed
    loss, dlogits = F.softmax_cross_entropy(logits, y, sample_weight=w)
    assert isinstance(loss, float)
    assert dlogits.dtype == dtype and dlogits.shape == shape
    refs = ref_softmax_cross_entropy(logits, y, w, dtype=dtype)
    check_ref((loss, dlogits), refs, dtype, "numpy")
    tloss, tgrad = _torch_xent(logits, y, w)
    assert_close(loss, tloss, dtype=dtype, scale=refs[0][1], what="torch loss")
    assert_close(dlogits, tgrad, dtype=dtype, scale=refs[1][1], what="torch dlogits")


def test_softmax_cross_entropy_extreme_logits(dtype):
    """Stable for any finite logits: the row maximum is subtracted."""
    logits = np.array([[1000.0, 0.0, -1000.0],
                       [1000.0, 0.0, -1000.0],
                       [-3e4, -3e4 + 1, -3e4 + 2],
                       [5e4, 5e4, 5e4]], dtype=dtype)
    y = np.array([0, 1, 2, 1])
    loss, d = F.softmax_cross_entropy(logits, y)
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    check_ref((loss, d), ref_softmax_cross_entropy(logits, y, dtype=dtype), dtype)
    refs = ref_softmax_cross_entropy(logits, y, dtype=dtype)
    tloss, tgrad = _torch_xent(logits, y)
    assert_close(loss, tloss, dtype=dtype, scale=refs[0][1])
    assert_close(d, tgrad, dtype=dtype, scale=refs[1][1])


def test_softmax_exp_vector_lanes_match_the_scalar_tail(rng):
    """float32 exps run eight at a time in vector code and the tail of a row
    one at a time: both must give the same bits.  Column 8 (the scalar
    tail) repeats a column of the vector part, so their gradients must be
    identical, over values from 0 to below exp's float range."""
    n = 4000
    z = np.empty((n, 9), dtype=np.float32)
    z[:, :8] = rng.uniform(-100.0, 0.0, size=(n, 8)).astype(np.float32)
    z[:, 0] = 0.0                                     # the row maximum
    near = np.float32(-87.33654475)                   # exp's clamp
    z[: n // 4, 1:8] = near + rng.uniform(-1e-4, 1e-4, size=(n // 4, 7)).astype(np.float32)
    copy = rng.integers(1, 8, size=n)
    z[:, 8] = z[np.arange(n), copy]
    _, d = F.softmax_cross_entropy(z, np.zeros(n, dtype=np.int64))
    assert_same_bits(d[:, 8], d[np.arange(n), copy], "tail vs vector lanes")


def test_softmax_cross_entropy_label_dtypes(rng):
    logits = rng.standard_normal((6, 4))
    y = rng.integers(0, 4, 6)
    base = F.softmax_cross_entropy(logits, y)
    for yy in (y.astype(np.int32), y.astype(np.uint8), y.astype(np.int16), y.tolist(),
               y.astype(np.uint64)):
        loss, d = F.softmax_cross_entropy(logits, yy)
        assert loss == base[0]
        assert_same_bits(d, base[1])


def test_softmax_cross_entropy_unit_weights_equal_unweighted(dtype, rng):
    logits = rand(rng, (9, 5), dtype)
    y = rng.integers(0, 5, 9)
    loss, d = F.softmax_cross_entropy(logits, y)
    lw, dw = F.softmax_cross_entropy(logits, y, sample_weight=np.full(9, 3.0, dtype=dtype))
    assert_close(lw, loss)
    assert_close(dw, d.astype(f64))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (5, 3), (4, 7)])
def test_softmax_cross_entropy_finite_differences(shape, weighted, rng):
    n, c = shape
    logits = rng.standard_normal(shape) * 2
    y = rng.integers(0, c, n)
    w = rng.uniform(0.1, 2, n) if weighted else None
    _, d = F.softmax_cross_entropy(logits, y, sample_weight=w)
    num = numerical_grad(lambda: F.softmax_cross_entropy(logits, y, sample_weight=w)[0],
                         logits)
    assert_fd(d, num, "dlogits")


@pytest.mark.parametrize("shape", XENT_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_softmax_reference_and_torch(shape, dtype, rng):
    logits = rand(rng, shape, dtype, 4.0)
    p = F.softmax(logits)
    assert p.dtype == dtype and p.shape == shape
    [(expected, scale)] = ref_softmax(logits, dtype)
    assert_close(p, expected, scale=scale, what="numpy")
    assert_close(p, N(torch.softmax(T(logits), dim=1)), dtype=dtype, scale=scale,
                 what="torch")
    assert_close(p.astype(f64).sum(axis=1), np.ones(shape[0]), dtype=dtype, scale=1.0)


@pytest.mark.parametrize("weighted", [False, True], ids=["mean", "weighted"])
@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 13), (64, 64), (512, 2048)],
                         ids=lambda s: "x".join(map(str, s)))
def test_mse_loss_reference_and_torch(shape, weighted, dtype, rng):
    pred = rand(rng, shape, dtype)
    target = rand(rng, shape, dtype)
    w = rng.uniform(0, 2, shape[0]).astype(dtype) if weighted else None
    if weighted:
        w[0] = 1.0
    loss, dpred = F.mse_loss(pred, target, sample_weight=w)
    assert isinstance(loss, float)
    assert dpred.dtype == dtype and dpred.shape == shape
    refs = ref_mse(pred, target, w)
    check_ref((loss, dpred), refs, dtype, "numpy")
    pt = T(pred, True)
    if w is None:
        lt = TF.mse_loss(pt, T(target))
    else:
        wt = T(w)[:, None]
        lt = (TF.mse_loss(pt, T(target), reduction="none") * wt).sum() / (wt.sum() * shape[1])
    lt.backward()
    assert_close(loss, lt.item(), dtype=dtype, scale=refs[0][1], what="torch loss")
    assert_close(dpred, N(pt.grad), dtype=dtype, scale=refs[1][1], what="torch dpred")


@pytest.mark.parametrize("weighted", [False, True])
def test_mse_loss_finite_differences(weighted, rng):
    pred = rng.standard_normal((5, 3))
    target = rng.standard_normal((5, 3))
    w = rng.uniform(0.1, 2, 5) if weighted else None
    _, d = F.mse_loss(pred, target, sample_weight=w)
    assert_fd(d, numerical_grad(lambda: F.mse_loss(pred, target, sample_weight=w)[0], pred),
              "dpred")


# ==========================================================================
# Layouts: any layout gives the bits of the C-ordered call; inputs untouched
# ==========================================================================

def _array_args(args):
    return {k: v for k, v in args.items() if isinstance(v, np.ndarray)}


@pytest.mark.parametrize("layout", ["F", "strided", "reversed", "transposed", "unaligned"])
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_layouts_give_identical_results(kernel, layout, dtype, rng):
    args = kernel.make(rng, dtype, 11, 13, 7)
    expected = as_tuple(kernel.call(args))
    moved = dict(args)
    for name, a in _array_args(args).items():
        views = layouts(a)
        moved[name] = views.get(layout, views["strided"])
    assert any(not (v.flags.c_contiguous and v.flags.aligned)
               for v in _array_args(moved).values())
    before = copy.deepcopy(moved)
    got = as_tuple(kernel.call(moved))
    for g, e in zip(got, expected):
        if isinstance(e, np.ndarray):
            assert_same_bits(g, e, what=layout)
        else:
            assert g == e
    for name, a in _array_args(moved).items():
        assert_same_bits(a, before[name], what=f"input {name} modified")


@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_inputs_are_never_modified(kernel, dtype, rng):
    args = kernel.make(rng, dtype, 9, 6, 5)
    before = copy.deepcopy(args)
    kernel.call(args)
    kernel.call(args)
    for name, a in _array_args(args).items():
        assert_same_bits(a, before[name], what=f"input {name} modified")


def test_batch_norm_modifies_only_running_buffers(dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 10, 6)
    saved = [a.copy() for a in (x, gamma, beta)]
    rm0 = rm.copy()
    F.batch_norm(x, gamma, beta, running_mean=rm, running_var=rv)
    for a, s in zip((x, gamma, beta), saved):
        assert_same_bits(a, s)
    assert not np.array_equal(rm, rm0)


def test_read_only_and_zero_stride_inputs(dtype, rng):
    x = rand(rng, (1, 8), dtype)
    wide = np.broadcast_to(x, (6, 8))           # zero row stride, read-only
    W = rand(rng, (8, 5), dtype)
    W.flags.writeable = False
    out = F.linear_forward(wide, W)
    assert_same_bits(out, F.linear_forward(np.ascontiguousarray(wide), W.copy()))
    bn = F.batch_norm(np.ascontiguousarray(wide) + np.arange(6, dtype=dtype)[:, None],
                      np.ones(8, dtype), np.zeros(8, dtype))
    assert np.all(np.isfinite(bn[0]))
    y = np.zeros(6, dtype=np.int64)
    y.flags.writeable = False
    loss, _ = F.softmax_cross_entropy(wide, y)
    assert_close(loss, ref_softmax_cross_entropy(wide, y, dtype=dtype)[0][0], dtype=dtype)


# ==========================================================================
# Bad input: the documented exception, naming the argument; never a crash
# ==========================================================================

BAD_DTYPES = [np.int32, np.int64, np.bool_, np.float16, object, np.complex64, np.uint8]


def _dtype_cases():
    for k in KERNELS:
        for arg in k.float_args:
            for bad in BAD_DTYPES:
                yield pytest.param(k, arg, bad, id=f"{k.name}-{arg}-{np.dtype(bad).name}")


@pytest.mark.parametrize("kernel,arg,bad", list(_dtype_cases()))
def test_non_float_dtype_raises_type_error(kernel, arg, bad, rng):
    args = kernel.make(rng, np.float32, 4, 3, 2)
    args[arg] = args[arg].astype(bad)
    with pytest.raises(TypeError) as err:
        kernel.call(args)
    assert names_argument(str(err.value), arg), str(err.value)


def _mixed_cases():
    for k in KERNELS:
        if len(k.float_args) < 2:
            continue
        for arg in k.float_args:
            yield pytest.param(k, arg, id=f"{k.name}-{arg}")


@pytest.mark.parametrize("kernel,arg", list(_mixed_cases()))
def test_mixed_float_dtypes_raise_type_error(kernel, arg, dtype, rng):
    args = kernel.make(rng, dtype, 4, 3, 2)
    args[arg] = args[arg].astype(other_float(dtype))
    with pytest.raises(TypeError) as err:
        kernel.call(args)
    msg = str(err.value)
    # the first-validated argument sets the dtype; a change to it is reported
    # on the next argument checked against it
    named = [arg] if arg != kernel.float_args[0] else list(kernel.float_args[1:])
    assert any(names_argument(msg, a) for a in named), msg
    assert "float32" in msg and "float64" in msg, msg


def _mismatch_cases():
    for k in KERNELS:
        for arg, wrong, partner in k.mismatches:
            yield pytest.param(k, arg, wrong, partner, id=f"{k.name}-{arg}-vs-{partner}")


@pytest.mark.parametrize("kernel,arg,wrong,partner", list(_mismatch_cases()))
def test_shape_mismatch_raises_value_error_naming_both_shapes(kernel, arg, wrong, partner,
                                                              dtype, rng):
    args = kernel.make(rng, dtype, 5, 4, 3)
    shape = wrong(args)
    old = args[arg]
    args[arg] = (rng.integers(0, 2, shape).astype(old.dtype) if old.dtype.kind != "f"
                 else rand(rng, shape, old.dtype))
    with pytest.raises(ValueError) as err:
        kernel.call(args)
    msg = str(err.value)
    assert names_argument(msg, arg), msg
    assert str(shape) in msg, msg
    assert str(args[partner].shape) in msg, msg


@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_empty_batch_raises_value_error(kernel, rng):
    n = 5
    args = kernel.make(rng, np.float32, n, 4, 3)
    for name, a in _array_args(args).items():
        if a.shape[0] == n:
            args[name] = a[:0]
    with pytest.raises(ValueError):
        kernel.call(args)


@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_zero_features_raise_value_error(kernel, rng):
    args = kernel.make(rng, np.float32, 3, 4, 3)
    for name, a in _array_args(args).items():
        if a.ndim == 2 or (name in ("gamma", "beta", "running_mean", "running_var", "mean",
                                    "var")):
            args[name] = a[..., :0]
    with pytest.raises(ValueError):
        kernel.call(args)


GARBAGE = [None, "abc", 3.0, [[1.0, 2.0], [3.0]], np.zeros((2, 2, 2)), np.zeros(3),
           {"a": 1}, np.array(["x", "y"]), np.zeros((2, 2), dtype="datetime64[s]")]


@pytest.mark.parametrize("garbage", GARBAGE, ids=lambda g: type(g).__name__)
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_garbage_raises_cleanly(kernel, garbage, rng):
    args = kernel.make(rng, np.float32, 4, 3, 2)
    valid_for_dropout = isinstance(garbage, float) or (
        isinstance(garbage, np.ndarray) and garbage.dtype == np.float64)
    for name in list(_array_args(args)):
        if kernel.name == "dropout" and valid_for_dropout:
            continue            # dropout takes float arrays of any rank
        if garbage is None and name in ("b", "sample_weight"):
            continue            # optional arguments
        bad = dict(args)
        bad[name] = garbage
        with pytest.raises((TypeError, ValueError)):
            kernel.call(bad)


def test_wrong_rank_raises_value_error(rng):
    x = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 2))
    with pytest.raises(ValueError, match=r"\bx\b"):
        F.linear_forward(x[0], W)
    with pytest.raises(ValueError, match=r"\bW\b"):
        F.linear_forward(x, W[None])
    with pytest.raises(ValueError, match=r"\bb\b"):
        F.linear_forward(x, W, np.zeros((1, 2)))
    with pytest.raises(ValueError, match="logits"):
        F.softmax_cross_entropy(x[0], np.zeros(3, dtype=int))
    with pytest.raises(ValueError, match=r"\by\b"):
        F.softmax_cross_entropy(x, np.zeros((4, 1), dtype=int))
    with pytest.raises(ValueError, match=r"\bx\b"):
        F.batch_norm(x[None], np.ones(3), np.zeros(3))


@pytest.mark.parametrize("bad", [np.array([0.0, 1.0, 2.0]), np.array([True, False, True]),
                                 np.array([0.5, 1.0, 0.0], dtype=np.float32)],
                         ids=["float64", "bool", "float32"])
def test_non_integer_labels_raise_type_error(bad, rng):
    with pytest.raises(TypeError) as err:
        F.softmax_cross_entropy(rng.standard_normal((3, 4)), bad)
    assert names_argument(str(err.value), "y")


@pytest.mark.parametrize("labels", [[0, 4, 1], [0, -1, 1], [7, 0, 0], [-5, -5, -5]],
                         ids=["eq_C", "negative", "above", "all_negative"])
def test_labels_out_of_range_raise_value_error(labels, dtype, rng):
    for y in (np.array(labels), np.array(labels, dtype=np.int32), labels):
        with pytest.raises(ValueError) as err:
            F.softmax_cross_entropy(rand(rng, (3, 4), dtype), y)
        assert names_argument(str(err.value), "y")


@pytest.mark.parametrize("rate", [-0.1, -1e-12, 1.0, 1.5, float("nan"), float("inf"),
                                  -float("inf")])
def test_bad_dropout_rate_raises_value_error(rate, rng):
    x = rng.standard_normal((3, 4))
    for call in (lambda: F.dropout(x, rate, seed=0),
                 lambda: F.dropout(x, rate, seed=0, training=False),
                 lambda: F.dropout_backward(x, np.ones(x.shape, bool), rate)):
        with pytest.raises(ValueError) as err:
            call()
        assert names_argument(str(err.value), "rate")


@pytest.mark.parametrize("rate", ["0.5", None, [0.5], True])
def test_non_number_dropout_rate_raises_type_error(rate, rng):
    with pytest.raises(TypeError):
        F.dropout(rng.standard_normal((3, 4)), rate, seed=0)


def test_dropout_bad_seed_rng_and_mask(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="seed"):
        F.dropout(x, 0.5, seed=-1)
    with pytest.raises(TypeError, match="seed"):
        F.dropout(x, 0.5, seed=1.5)
    with pytest.raises(TypeError, match="rng"):
        F.dropout(x, 0.5, rng=np.random.RandomState(0))
    with pytest.raises(ValueError):
        F.dropout(x, 0.5, seed=1, rng=np.random.default_rng(1))
    for mask in (np.ones((3, 4), dtype=np.int64), np.ones((3, 4)), np.ones((3, 4), np.int8)):
        with pytest.raises(TypeError, match="mask"):
            F.dropout_backward(x, mask, 0.5)


def test_batch_norm_training_batch_of_one_raises(dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 1, 4)
    rm0, rv0 = rm.copy(), rv.copy()
    for kwargs in ({}, {"running_mean": rm, "running_var": rv}):
        with pytest.raises(ValueError) as err:
            F.batch_norm(x, gamma, beta, training=True, **kwargs)
        assert names_argument(str(err.value), "x") and "(1, 4)" in str(err.value)
    assert_same_bits(rm, rm0)          # nothing half-updated
    assert_same_bits(rv, rv0)
    F.batch_norm(x, gamma, beta, training=False, running_mean=rm, running_var=rv)  # fine


def test_batch_norm_buffer_errors(dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 6, 4)
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(x, gamma, beta, training=False)
    with pytest.raises(ValueError, match="running"):
        F.batch_norm(x, gamma, beta, running_mean=rm)
    with pytest.raises(ValueError, match="running"):
        F.batch_norm(x, gamma, beta, training=False, running_var=rv)
    wrong = rv.astype(other_float(dtype))
    with pytest.raises(TypeError) as err:
        F.batch_norm(x, gamma, beta, running_mean=rm, running_var=wrong)
    assert names_argument(str(err.value), "running_var")
    with pytest.raises(TypeError, match="running_mean"):
        F.batch_norm(x, gamma, beta, running_mean=rm.astype(np.int64), running_var=rv)
    with pytest.raises(TypeError, match="running_mean"):
        F.batch_norm(x, gamma, beta, running_mean=rm.tolist(), running_var=rv)
    strided = np.zeros(8, dtype=dtype)[::2]
    with pytest.raises(ValueError, match="running_mean"):
        F.batch_norm(x, gamma, beta, running_mean=strided, running_var=rv)
    frozen = rv.copy()
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="running_var"):
        F.batch_norm(x, gamma, beta, running_mean=rm, running_var=frozen)


@pytest.mark.parametrize("kwargs,name", [({"momentum": -0.1}, "momentum"),
                                         ({"momentum": 1.1}, "momentum"),
                                         ({"momentum": float("nan")}, "momentum"),
                                         ({"eps": -1e-5}, "eps"),
                                         ({"eps": float("nan")}, "eps"),
                                         ({"eps": float("inf")}, "eps")])
def test_batch_norm_bad_scalars(kwargs, name, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, f64, 6, 4)
    with pytest.raises(ValueError) as err:
        F.batch_norm(x, gamma, beta, running_mean=rm, running_var=rv, **kwargs)
    assert names_argument(str(err.value), name)
    with pytest.raises(TypeError):
        F.batch_norm(x, gamma, beta, eps="1e-5")


def test_bad_activation_and_missing_out(rng):
    x = rng.standard_normal((4, 3))
    W = rng.standard_normal((3, 2))
    for act in ("swish", "RELU", 1, "Tanh"):
        with pytest.raises(ValueError, match="activation"):
            F.linear_forward(x, W, activation=act)
        with pytest.raises(ValueError, match="activation"):
            F.linear_backward(np.ones((4, 2)), x, W, np.ones((4, 2)), activation=act)
    with pytest.raises(ValueError, match=r"\bout\b"):
        F.linear_backward(np.ones((4, 2)), x, W, activation="relu")


@pytest.mark.parametrize("fn", ["softmax_cross_entropy", "mse_loss"])
def test_bad_sample_weight(fn, rng):
    a = BY_NAME[fn + "_weighted"].make(rng, np.float64, 4, 3, 2)
    for w in ([1.0, -1.0, 1.0, 1.0], [1.0, np.nan, 1.0, 1.0], [0.0] * 4,
              [1.0, np.inf, 1.0, 1.0]):
        a["sample_weight"] = np.array(w)
        with pytest.raises(ValueError, match="sample_weight"):
            BY_NAME[fn + "_weighted"].call(a)


# ==========================================================================
# NaN in gives NaN out
# ==========================================================================

@pytest.mark.parametrize("shape", [(7, 13, 5), (64, 64, 64), (600, 400, 600)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "builtin"])
@pytest.mark.parametrize("activation", ["relu", None])
def test_linear_forward_nan_row(shape, use_blas, activation, dtype, rng):
    x, W, b = _linear_inputs(rng, dtype, *shape)
    x[3, 2] = np.nan
    with blas(use_blas):
        out = F.linear_forward(x, W, b, activation=activation)
    assert np.all(np.isnan(out[3])), "NaN in a row of x must give NaN in that output row"
    others = np.delete(np.arange(shape[0]), 3)
    assert np.all(np.isfinite(out[others]))
    check_ref((out,), ref_linear_forward(x, W, b, activation), dtype)


@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "builtin"])
def test_linear_forward_nan_weight_column(use_blas, dtype, rng):
    x, W, b = _linear_inputs(rng, dtype, 600, 400, 600)
    W[5, 17] = np.nan
    with blas(use_blas):
        out = F.linear_forward(x, W, b, activation="relu")
    assert np.all(np.isnan(out[:, 17]))
    assert np.isfinite(np.delete(out, 17, axis=1)).all()


@pytest.mark.parametrize("masked", [False, True], ids=["kept", "masked"])
def test_linear_backward_nan_in_dout(masked, dtype, rng):
    """NaN in dout propagates even where the ReLU mask is 0 (NaN * 0 is NaN)."""
    x, W, b = _linear_inputs(rng, dtype, 9, 7, 5)
    out = F.linear_forward(x, W, b, activation="relu")
    dout = rand(rng, out.shape, dtype)
    i, j = np.argwhere(out == 0)[0] if masked else np.argwhere(out > 0)[0]
    dout[i, j] = np.nan
    for act, o in (("relu", out), (None, None)):
        dx, dW, db = F.linear_backward(dout, x, W, o, activation=act)
        assert np.isnan(db[j]) and np.all(np.isnan(dx[i])) and np.all(np.isnan(dW[:, j]))
        assert np.isfinite(np.delete(db, j)).all()
        check_ref((dx, dW, db), ref_linear_backward(dout, x, W, o, act), dtype)


def test_linear_backward_nan_in_out_follows_out_gt_zero(dtype, rng):
    """The spec takes the ReLU mask from `out > 0`; NaN > 0 is False."""
    x, W, b = _linear_inputs(rng, dtype, 9, 7, 5)
    out = F.linear_forward(x, W, b, activation="relu")
    out[4, 2] = np.nan
    dout = rand(rng, out.shape, dtype)
    check_ref(F.linear_backward(dout, x, W, out, activation="relu"),
              ref_linear_backward(dout, x, W, out, "relu"), dtype)


def test_softmax_cross_entropy_nan_logits(dtype, rng):
    logits = rand(rng, (6, 5), dtype)
    y = rng.integers(0, 5, 6)
    for pos in [(2, 0), (2, 3), (2, int(y[2]))]:
        z = logits.copy()
        z[pos] = np.nan
        loss, d = F.softmax_cross_entropy(z, y)
        assert math.isnan(loss)
        assert np.all(np.isnan(d[2])) and np.all(np.isfinite(np.delete(d, 2, axis=0)))
        p = F.softmax(z)
        assert np.all(np.isnan(p[2])) and np.all(np.isfinite(np.delete(p, 2, axis=0)))
        w = np.ones(6, dtype)
        assert math.isnan(F.softmax_cross_entropy(z, y, sample_weight=w)[0])


@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_nan_column(training, dtype, rng):
    x, gamma, beta, rm, rv = _bn_inputs(rng, dtype, 10, 40)
    x[6, 33] = np.nan
    out, mean, var = F.batch_norm(x, gamma, beta, training=training, running_mean=rm,
                                  running_var=rv)
    if training:
        assert np.all(np.isnan(out[:, 33])) and np.isnan(mean[33]) and np.isnan(var[33])
        assert np.isnan(rm[33]) and np.isnan(rv[33])
        rest = np.delete(np.arange(40), 33)
        assert np.isfinite(out[:, rest]).all() and np.isfinite(rm[rest]).all()
    else:
        assert np.isnan(out[6, 33]) and np.isfinite(np.delete(out.ravel(), 6 * 40 + 33)).all()
    x2, gamma2, beta2, rm2, rv2 = _bn_inputs(rng, dtype, 10, 40)
    rv2[5] = np.nan
    out2, _, _ = F.batch_norm(x2, gamma2, beta2, training=False, running_mean=rm2,
                              running_var=rv2)
    assert np.all(np.isnan(out2[:, 5]))


def test_batch_norm_backward_nan(dtype, rng):
    x, gamma, beta, _, _ = _bn_inputs(rng, dtype, 8, 40)
    _, mean, var = F.batch_norm(x, gamma, beta)
    dout = rand(rng, x.shape, dtype)
    dout[3, 37] = np.nan
    dx, dgamma, dbeta = F.batch_norm_backward(dout, x, gamma, mean, var)
    assert np.all(np.isnan(dx[:, 37])) and np.isnan(dgamma[37]) and np.isnan(dbeta[37])
    rest = np.delete(np.arange(40), 37)
    assert np.isfinite(dx[:, rest]).all() and np.isfinite(dgamma[rest]).all()


def test_dropout_and_mse_nan(dtype, rng):
    x = rand(rng, (20, 30), dtype)
    x[::3, ::4] = np.nan
    out, mask = F.dropout(x, 0.5, seed=11)
    assert not mask[np.isnan(x)].all() and mask[np.isnan(x)].any()
    # dropped NaNs stay NaN (NaN * 0 is NaN): nothing is silently zeroed
    assert_same_bits(np.isnan(out), np.isnan(x))
    dx = F.dropout_backward(x, mask, 0.5)
    assert_same_bits(np.isnan(dx), np.isnan(x))
    t = rand(rng, (20, 30), dtype)
    loss, d = F.mse_loss(x, t)
    assert math.isnan(loss)
    assert_same_bits(np.isnan(d), np.isnan(x))
