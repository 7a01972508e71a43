"""The hidden activations beyond ReLU: leaky_relu (a negative slope), gelu (the erf
form), silu and identity, fused in the native forward (the product's epilogue, batch
norm) and backward (from the output, or from the pre-activation for gelu and silu).

Checked against PyTorch autograd in float64 (functional kernels on both product paths;
whole training steps are in tests/test_training_vs_torch.py), Hypothesis fuzzing of
shapes and values against a float64 reference, bit-identical fits at 1 and 2 threads,
the init gains, the errors, and the models' files and estimators.
"""
import math

import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastnet
import fastnet.functional as F
from fastnet import _parallel
from fastnet.init import calculate_gain

torch.set_num_threads(1)

_erf = np.vectorize(math.erf)
# float64 references: f(z) and f'(z)
REFERENCE = {
    "identity": (lambda z, a: z, lambda z, a: np.ones_like(z)),
    "leaky_relu": (lambda z, a: np.where(z < 0, a * z, z),
                   lambda z, a: np.where(z > 0, 1.0, a)),
    "gelu": (lambda z, a: 0.5 * z * (1 + _erf(z / math.sqrt(2))),
             lambda z, a: 0.5 * (1 + _erf(z / math.sqrt(2)))
             + z * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)),
    "silu": (lambda z, a: z / (1 + np.exp(-z)),
             lambda z, a: (1 / (1 + np.exp(-z))) * (1 + z * (1 - 1 / (1 + np.exp(-z))))),
}
TORCH = {
    "identity": lambda z, a: z,
    "leaky_relu": lambda z, a: torch.nn.functional.leaky_relu(z, a),
    "gelu": lambda z, a: torch.nn.functional.gelu(z, approximate="none"),
    "silu": lambda z, a: torch.nn.functional.silu(z),
}
NEW = sorted(REFERENCE)
# the built-in kernel's tiles (ragged, one and two vectors, several panels) and, with
# BLIS on, the large path with its own epilogue
SHAPES = [(1, 3, 2), (7, 5, 8), (13, 70, 100), (6, 33, 64), (300, 400, 300)]


def _linear(x, W, b, activation, slope):
    out, pre = F.linear_forward(x, W, b, activation, negative_slope=slope, return_pre=True)
    return out, pre


@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "builtin"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("activation, slope", [(a, 0.01) for a in NEW] + [("leaky_relu", 0.3)])
def test_linear_forward_backward_match_torch_autograd_f64(activation, slope, shape, use_blas):
    n, k, m = shape
    rng = np.random.default_rng(n * 1000 + k)
    x, W = rng.standard_normal((n, k)), rng.standard_normal((k, m)) / math.sqrt(k)
    b, dout = rng.standard_normal(m), rng.standard_normal((n, m))
    previous = _parallel.use_blas(use_blas)
    try:
        out, pre = _linear(x, W, b, activation, slope)
        grads = F.linear_backward(dout, x, W, out, activation, pre=pre, negative_slope=slope)
    finally:
        _parallel.use_blas(previous)
    xt, Wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, W, b))
    zt = xt @ Wt + bt
    ot = TORCH[activation](zt, slope)
    ot.backward(torch.tensor(dout))
    for name, ours, theirs in [("out", out, ot), ("pre", pre, zt), ("dx", grads[0], xt.grad),
                               ("dW", grads[1], Wt.grad), ("db", grads[2], bt.grad)]:
        assert_close(ours, theirs.detach().numpy(), dtype=np.float64, what=name)


def test_relu_forward_unchanged_by_return_pre(rng):
    """return_pre only adds an output: ReLU's out has the same bits, and pre is x W + b."""
    x, W, b = rng.standard_normal((9, 20)), rng.standard_normal((20, 40)), rng.standard_normal(40)
    out, pre = F.linear_forward(x, W, b, "relu", return_pre=True)
    assert out.tobytes() == F.linear_forward(x, W, b, "relu").tobytes()
    assert out.tobytes() == np.maximum(pre, 0).tobytes()
    assert pre.tobytes() == F.linear_forward(x, W, b).tobytes()


FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(data=st.data(), n=st.integers(1, 20), k=st.integers(1, 40), m=st.integers(1, 70),
       dtype=st.sampled_from([np.float32, np.float64]), activation=st.sampled_from(NEW),
       slope=st.sampled_from([0.0, 0.01, 0.2, 1.0]), bias=st.booleans())
def test_fuzz_linear_activations_match_reference(data, n, k, m, dtype, activation, slope, bias):
    seed = data.draw(st.integers(0, 2**32 - 1))
    scale_in = data.draw(st.sampled_from([1e-3, 1.0, 30.0]))
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((n, k)) * scale_in).astype(dtype)
    W = (rng.standard_normal((k, m)) / math.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype) if bias else None
    dout = rng.standard_normal((n, m)).astype(dtype)
    out, pre = _linear(x, W, b, activation, slope)
    assert out.dtype == pre.dtype == dtype
    dx, dW, db = F.linear_backward(dout, x, W, out, activation, pre=pre, negative_slope=slope)
    # float64 reference at the kernel's own pre-activation (checked on its own), so the
    # activation and its derivative are judged without the product's rounding
    x64, W64, d64 = (a.astype(np.float64) for a in (x, W, dout))
    z = x64 @ W64 + (0 if b is None else b.astype(np.float64))
    z_scale = np.abs(x64) @ np.abs(W64) + (0 if b is None else np.abs(b.astype(np.float64)))
    assert_close(pre, z, dtype=dtype, scale=z_scale, what="pre")
    f, df = REFERENCE[activation]
    p64 = pre.astype(np.float64)
    assert_close(out, f(p64, slope), dtype=dtype, scale=np.abs(p64), what="out")
    dz = d64 * df(p64, slope)
    adz = np.abs(d64) * (np.abs(df(p64, slope)) + 1)
    assert_close(db, dz.sum(axis=0), dtype=dtype, scale=adz.sum(axis=0), what="db")
    assert_close(dW, x64.T @ dz, dtype=dtype, scale=np.abs(x64).T @ adz, what="dW")
    assert_close(dx, dz @ W64.T, dtype=dtype, scale=adz @ np.abs(W64).T, what="dx")


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("activation", NEW + ["leaky_relu:0.2"])
def test_fit_bit_identical_at_1_and_2_threads(activation, batch_norm):
    name, _, slope = activation.partition(":")
    rng = np.random.default_rng(3)
    X = rng.standard_normal((240, 30)).astype(np.float32)
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64)

    def fit(threads):
        with num_threads(threads):
            model = fastnet.MLP([30, 80, 40, 2], activation=name, batch_norm=batch_norm,
                                dropout=0.2, seed=1, negative_slope=float(slope or 0.01))
            hist = model.fit(X, y, epochs=2, batch_size=48, verbose=0)
            return model.params.copy(), hist.history["loss"], model.predict_proba(X)

    (p1, h1, q1), (p2, h2, q2) = fit(1), fit(2)
    assert p1.tobytes() == p2.tobytes() and h1 == h2 and q1.tobytes() == q2.tobytes()
    assert np.all(np.isfinite(p1)) and h1[-1] < h1[0]


def test_negative_slope_changes_leaky_relu_only():
    X = np.random.default_rng(0).standard_normal((20, 4)).astype(np.float32)
    def out(**kw):
        return fastnet.MLP([4, 16, 3], seed=2, batch_norm=False, **kw).predict_proba(X)
    assert not np.array_equal(out(activation="leaky_relu"),
                              out(activation="leaky_relu", negative_slope=0.3))
    assert np.array_equal(out(activation="leaky_relu", negative_slope=0.0), out())
    assert np.array_equal(out(activation="gelu", negative_slope=0.3), out(activation="gelu"))
    model = fastnet.MLP([4, 16, 3], seed=2, batch_norm=False, activation="leaky_relu")
    before = model.predict_proba(X)
    model.negative_slope = 0.3        # an assignment takes effect from the next call on
    assert np.array_equal(model.predict_proba(X),
                          out(activation="leaky_relu", negative_slope=0.3))
    assert not np.array_equal(model.predict_proba(X), before)


@pytest.mark.parametrize("value, error", [(-0.1, ValueError), (math.nan, ValueError),
                                          (math.inf, ValueError), ("0.1", TypeError)])
def test_bad_negative_slope_is_a_clear_error(value, error):
    with pytest.raises(error, match="negative_slope"):
        fastnet.MLP([3, 4, 2], activation="leaky_relu", negative_slope=value)
    x, W = np.ones((2, 3)), np.ones((3, 4))
    with pytest.raises(error, match="negative_slope"):
        F.linear_forward(x, W, activation="leaky_relu", negative_slope=value)


def test_functional_errors_name_what_is_missing():
    x, W, d = np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 4))
    with pytest.raises(ValueError, match="needs pre"):
        F.linear_backward(d, x, W, np.ones((2, 4)), "gelu")
    with pytest.raises(ValueError, match="needs out"):
        F.linear_backward(d, x, W, None, "leaky_relu", pre=np.ones((2, 4)))
    with pytest.raises(ValueError, match="'silu'"):
        F.linear_forward(x, W, activation="swish")
    model = fastnet.MLP([3, 2], activation="leaky_relu")
    with pytest.raises(ValueError, match="negative_slope"):
        model.negative_slope = -0.5
    assert model.negative_slope == 0.01


def test_gains_match_torch_and_keep_the_second_moment():
    for name in ("linear", "sigmoid", "tanh", "relu"):
        assert calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert calculate_gain("leaky_relu", 0.2) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.2))
    assert calculate_gain("identity") == 1.0
    z = np.linspace(-40, 40, 800_001)
    density = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    for name in ("gelu", "silu", "leaky_relu"):
        f = REFERENCE[name][0]
        second_moment = np.trapezoid(f(z, 0.01) ** 2 * density, z)
        assert calculate_gain(name) == pytest.approx(second_moment ** -0.5, rel=1e-9)


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_saved_files_keep_the_activation_and_slope(tmp_path, fmt):
    X = np.random.default_rng(1).standard_normal((10, 5)).astype(np.float32)
    model = fastnet.MLP([5, 12, 3], activation="leaky_relu", negative_slope=0.25, seed=4)
    path = tmp_path / f"m.{fmt}"
    model.save(path)
    again = fastnet.load(path)
    assert again.activation == "leaky_relu" and again.negative_slope == 0.25
    assert again.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_estimators_take_the_new_and_sklearn_activation_names():
    from fastnet.sklearn import MLPClassifier, MLPRegressor

    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 4))
    y = (X[:, 0] > 0).astype(int)
    for name in ("gelu", "silu", "leaky_relu", "identity"):
        clf = MLPClassifier((8,), activation=name, max_iter=3, random_state=0).fit(X, y)
        assert clf.model_.activation == name
    reg = MLPRegressor((8,), activation="logistic", max_iter=3, random_state=0).fit(X, X[:, 1])
    assert reg.model_.activation == "sigmoid"
    with pytest.raises(ValueError, match="activation"):
        MLPClassifier(activation="swish").fit(X, y)
