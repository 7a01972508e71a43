"""Property-based tests (Hypothesis) of fastnet.functional.

Random shapes (1 and odd sizes included), both float dtypes, C / Fortran /
strided / reversed / transposed layouts, and values spanning magnitudes from
1e-4 to 1e3 (bounded so the float64 reference cannot overflow).  Every
example must match the NumPy reference of tests/_kernel_reference.py within
the tolerances of conftest.assert_close, and leave its inputs untouched.
"""
import copy
import os

import hypothesis.extra.numpy as hynp
import numpy as np
from _kernel_reference import (
    dropout_mask_reference,
    ref_batch_norm,
    ref_batch_norm_backward,
    ref_dropout_apply,
    ref_linear_backward,
    ref_linear_forward,
    ref_mse,
    ref_softmax,
    ref_softmax_cross_entropy,
)
from conftest import assert_close, assert_same_bits, layouts
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnet.functional as F

# FASTNET_FUZZ_EXAMPLES=2000 for a deeper search than the default run
FUZZ = settings(max_examples=int(os.environ.get("FASTNET_FUZZ_EXAMPLES", "60")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = st.sampled_from([np.float32, np.float64])
LAYOUTS = st.sampled_from(["C", "F", "strided", "reversed", "transposed", "unaligned"])
DIM = st.one_of(st.just(1), st.integers(1, 7), st.integers(8, 40))


def magnitudes(max_exp=3):
    """Exact zeros and values +-m * 10**e, m in [0.1, 1], e in [-4, max_exp]
    (no subnormals: their float32 arithmetic is not held to rtol)."""
    return st.one_of(st.just(0.0), st.builds(lambda s, m, e: s * m * 10.0 ** e,
                                             st.sampled_from([-1.0, 1.0]),
                                             st.floats(0.1, 1.0), st.integers(-4, max_exp)))


@st.composite
def arrays(draw, shape, dtype, elements=None):
    elements = magnitudes() if elements is None else elements
    a = draw(hynp.arrays(np.float64, shape, elements=elements))
    return a.astype(dtype)


@st.composite
def placed(draw, a):
    """`a` (same values) in a drawn memory layout."""
    views = layouts(a)
    return views.get(draw(LAYOUTS), views["strided"])


def snapshot(*arrays_):
    return [copy.deepcopy(a) for a in arrays_]


def assert_unchanged(arrays_, before):
    for a, b in zip(arrays_, before):
        if a is not None:
            assert_same_bits(np.asarray(a), np.asarray(b), what="input modified")


def check(outputs, refs, dtype):
    for i, (out, (expected, scale)) in enumerate(zip(outputs, refs)):
        if isinstance(out, np.ndarray):
            assert out.dtype == dtype
        assert_close(out, expected, dtype=dtype, scale=scale, what=f"output {i}")


@FUZZ
@given(data=st.data(), n=DIM, k=DIM, m=DIM, dtype=DTYPES, bias=st.booleans(),
       activation=st.sampled_from([None, "relu"]))
def test_fuzz_linear_forward_backward(data, n, k, m, dtype, bias, activation):
    x = data.draw(placed(data.draw(arrays((n, k), dtype))), "x")
    W = data.draw(placed(data.draw(arrays((k, m), dtype))), "W")
    b = data.draw(arrays(m, dtype), "b") if bias else None
    dout = data.draw(placed(data.draw(arrays((n, m), dtype))), "dout")
    before = snapshot(x, W, b, dout)
    out = F.linear_forward(x, W, b, activation=activation)
    check((out,), ref_linear_forward(x, W, b, activation), dtype)
    grads = F.linear_backward(dout, x, W, out if activation else None, activation=activation)
    check(grads, ref_linear_backward(dout, x, W, out, activation), dtype)
    assert_unchanged((x, W, b, dout), before)


@FUZZ
@given(data=st.data(), n=st.integers(2, 40), f=DIM, dtype=DTYPES,
       momentum=st.floats(0.0, 1.0), eps=st.sampled_from([1e-5, 1e-3, 0.1]))
def test_fuzz_batch_norm_training_and_backward(data, n, f, dtype, momentum, eps):
    x = data.draw(placed(data.draw(arrays((n, f), dtype))), "x")
    gamma = data.draw(arrays(f, dtype, magnitudes(1)), "gamma")
    beta = data.draw(arrays(f, dtype, magnitudes(1)), "beta")
    rm0 = data.draw(arrays(f, dtype, magnitudes(1)), "running_mean")
    rv0 = np.abs(data.draw(arrays(f, dtype, magnitudes(1)), "running_var"))
    rm, rv = rm0.copy(), rv0.copy()
    before = snapshot(x, gamma, beta)
    out, mean, var = F.batch_norm(x, gamma, beta, eps, running_mean=rm, running_var=rv,
                                  momentum=momentum)
    check((out, mean, var, rm, rv),
          ref_batch_norm(x, gamma, beta, eps, True, rm0, rv0, momentum), dtype)
    dout = data.draw(placed(data.draw(arrays((n, f), dtype))), "dout")
    grads = F.batch_norm_backward(dout, x, gamma, mean, var, eps)
    check(grads, ref_batch_norm_backward(dout, x, gamma, mean, var, eps), dtype)
    assert_unchanged((x, gamma, beta), before)


@FUZZ
@given(data=st.data(), n=DIM, f=DIM, dtype=DTYPES)
def test_fuzz_batch_norm_eval(data, n, f, dtype):
    x = data.draw(placed(data.draw(arrays((n, f), dtype))), "x")
    gamma = data.draw(arrays(f, dtype, magnitudes(1)), "gamma")
    beta = data.draw(arrays(f, dtype, magnitudes(1)), "beta")
    rm = data.draw(arrays(f, dtype), "running_mean")
    rv = np.abs(data.draw(arrays(f, dtype), "running_var"))
    before = snapshot(x, gamma, beta, rm, rv)
    out, mean, var = F.batch_norm(x, gamma, beta, training=False, running_mean=rm,
                                  running_var=rv)
    check((out, mean, var), ref_batch_norm(x, gamma, beta, 1e-5, False, rm, rv), dtype)
    assert_unchanged((x, gamma, beta, rm, rv), before)


@FUZZ
@given(data=st.data(), shape=hynp.array_shapes(min_dims=1, max_dims=3, min_side=1,
                                              max_side=19),
       dtype=DTYPES, rate=st.one_of(st.just(0.0), st.floats(1e-6, 0.99)),
       seed=st.integers(0, 2**64 - 1), training=st.booleans())
def test_fuzz_dropout(data, shape, dtype, rate, seed, training):
    x = data.draw(arrays(shape, dtype), "x")
    if x.ndim <= 2:
        x = data.draw(placed(x), "layout")
    before = snapshot(x)
    out, mask = F.dropout(x, rate, training=training, seed=seed)
    assert mask.dtype == np.bool_ and mask.shape == shape and out.shape == shape
    assert out.dtype == dtype
    if not training or rate == 0:
        assert mask.all()
        assert_same_bits(np.asarray(out), np.ascontiguousarray(x))
    else:
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        expected = dropout_mask_reference(rows, shape[-1], rate, seed).reshape(shape)
        assert_same_bits(mask, expected, what="mask vs documented Philox stream")
        check((out,), ref_dropout_apply(x, mask, rate), dtype)
    assert_unchanged((x,), before)
    dout = data.draw(arrays(shape, dtype), "dout")
    drop = data.draw(hynp.arrays(np.bool_, shape), "mask")
    dx = F.dropout_backward(dout, drop, rate)
    check((dx,), ref_dropout_apply(dout, drop, rate), dtype)


@st.composite
def sample_weights(draw, n, dtype):
    w = draw(hynp.arrays(np.float64, n, elements=st.one_of(
        st.just(0.0), st.floats(1e-3, 1e3, allow_subnormal=False))))
    w[draw(st.integers(0, n - 1))] = draw(st.floats(0.1, 10.0))   # not all zero
    return w.astype(dtype)


@FUZZ
@given(data=st.data(), n=DIM, c=DIM, dtype=DTYPES, weighted=st.booleans())
def test_fuzz_softmax_cross_entropy(data, n, c, dtype, weighted):
    logits = data.draw(placed(data.draw(arrays((n, c), dtype))), "logits")
    y = data.draw(hynp.arrays(np.int64, n, elements=st.integers(0, c - 1)), "y")
    w = data.draw(sample_weights(n, dtype), "w") if weighted else None
    before = snapshot(logits, y, w)
    loss, dlogits = F.softmax_cross_entropy(logits, y, sample_weight=w)
    check((loss, dlogits), ref_softmax_cross_entropy(logits, y, w, dtype=dtype), dtype)
    p = F.softmax(logits)
    check((p,), ref_softmax(logits, dtype), dtype)
    assert_unchanged((logits, y, w), before)


@FUZZ
@given(data=st.data(), n=DIM, d=DIM, dtype=DTYPES, weighted=st.booleans())
def test_fuzz_mse_loss(data, n, d, dtype, weighted):
    pred = data.draw(placed(data.draw(arrays((n, d), dtype))), "pred")
    target = data.draw(placed(data.draw(arrays((n, d), dtype))), "target")
    w = data.draw(sample_weights(n, dtype), "w") if weighted else None
    before = snapshot(pred, target, w)
    loss, dpred = F.mse_loss(pred, target, sample_weight=w)
    check((loss, dpred), ref_mse(pred, target, w), dtype)
    assert_unchanged((pred, target, w), before)
