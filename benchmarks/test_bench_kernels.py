"""Kernel benchmarks of issue 2: fastnet.functional against plain NumPy, float32.

Each group (operation x shape) holds a "fastnet" and a "numpy" benchmark,
run one after the other; dropout, batch norm and softmax cross-entropy also
have "numpy-fast", the idiom of the bench's fast NumPy step (dropout:
``rng.random(shape, dtype=np.float32) < keep`` instead of the article's
binomial mask; batch norm and the loss: in place, without temporaries).  The conftest
prints the median ratios at the end.

Goals (issue 2): linear+ReLU forward+backward >= 1.3x NumPy at 64x64x64 and
128x128x128, >= 1.0x at 256x512x512 and 512x2048x2048; batch norm
forward+backward >= 3x; dropout forward >= 3x; softmax cross-entropy >= 2x.
"""
import numpy as np
import pytest

from fastnet import functional as F
from fastnet.bench import numpy_baseline as nb

DTYPE = np.float32
RATE = 0.3

LINEAR_SHAPES = [(64, 64, 64), (128, 128, 128), (256, 512, 512), (512, 2048, 2048)]
BN_SHAPES = [(64, 128), (256, 512), (512, 2048)]
XENT_SHAPES = [(128, 10), (512, 100), (1024, 1000)]


def _cases(shapes, impls):
    return [pytest.param(shape, impl, id=f"{'x'.join(map(str, shape))}-{impl}")
            for shape in shapes for impl in impls]


def _check_float32(result):
    """Both sides stay in float32 (a float64 baseline would be an unfair comparison)."""
    arrays = result if isinstance(result, tuple) else (result,)
    for a in arrays:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            assert a.dtype == DTYPE, f"result in {a.dtype}, expected {np.dtype(DTYPE)}"


def _rand(rng, *shape):
    return rng.standard_normal(shape, dtype=np.float32).astype(DTYPE, copy=False)


@pytest.mark.parametrize("shape,impl", _cases(LINEAR_SHAPES, ["numpy", "fastnet"]))
def test_linear_relu_forward_backward(benchmark, record, shape, impl):
    """z = x @ W + b; out = relu(z); dx, dW, db of dout (shape: batch x fan_in x fan_out)."""
    n, fan_in, fan_out = shape
    rng = np.random.default_rng(0)
    x, W = _rand(rng, n, fan_in), _rand(rng, fan_in, fan_out) * float(np.sqrt(2.0 / fan_in))
    b, dout = _rand(rng, fan_out), _rand(rng, n, fan_out)
    group = f"linear_relu {'x'.join(map(str, shape))}"
    benchmark.group = group
    if impl == "numpy":
        def fn():
            return nb.linear_relu_forward_backward(x, W, b, dout)
    else:
        def fn():
            out = F.linear_forward(x, W, b, "relu")
            return (out,) + F.linear_backward(dout, x, W, out, "relu")
    _check_float32(benchmark(fn))
    record("kernel", group, impl)


@pytest.mark.parametrize("shape,impl", _cases(BN_SHAPES, ["numpy", "numpy-fast", "fastnet"]))
def test_batch_norm_forward_backward(benchmark, record, shape, impl):
    """The article's batch_norm and the standard backward, the in-place NumPy pair of
    the bench's fast step, and fastnet's two kernels."""
    rng = np.random.default_rng(0)
    x, dout = _rand(rng, *shape) * 3 + 1, _rand(rng, *shape)
    gamma, beta = _rand(rng, shape[1]) * 0.1 + 1, _rand(rng, shape[1]) * 0.1
    group = f"batch_norm {'x'.join(map(str, shape))}"
    benchmark.group = group
    if impl == "numpy":
        def fn():
            return nb.batch_norm_forward_backward(x, gamma, beta, dout)
    elif impl == "numpy-fast":
        def fn():
            return nb.batch_norm_forward_backward_fast(x, gamma, beta, dout)
    else:
        def fn():
            out, mean, var = F.batch_norm(x, gamma, beta)
            return (out,) + F.batch_norm_backward(dout, x, gamma, mean, var)
    _check_float32(benchmark(fn))
    record("kernel", group, impl)


@pytest.mark.parametrize("shape,impl", _cases(BN_SHAPES, ["numpy", "numpy-fast", "fastnet"]))
def test_dropout_forward(benchmark, record, shape, impl):
    """Inverted dropout at rate 0.3: output and mask."""
    x = _rand(np.random.default_rng(0), *shape)
    group = f"dropout {'x'.join(map(str, shape))}"
    benchmark.group = group
    if impl == "numpy":
        rs = np.random.RandomState(0)

        def fn():
            return nb.dropout(x, RATE, random_state=rs)
    elif impl == "numpy-fast":
        rng = np.random.default_rng(0)

        def fn():
            return nb.dropout_fast(x, RATE, rng)
    else:
        seeds = iter(range(1 << 62))

        def fn():
            return F.dropout(x, RATE, seed=next(seeds))
    _check_float32(benchmark(fn))
    record("kernel", group, impl)


@pytest.mark.parametrize("shape,impl", _cases(XENT_SHAPES, ["numpy", "numpy-fast", "fastnet"]))
def test_softmax_cross_entropy(benchmark, record, shape, impl):
    """Mean softmax cross-entropy of int labels and its gradient."""
    rng = np.random.default_rng(0)
    logits = _rand(rng, *shape) * 3
    y = rng.integers(0, shape[1], shape[0])
    group = f"softmax_xent {'x'.join(map(str, shape))}"
    benchmark.group = group
    if impl == "numpy":
        def fn():
            return nb.softmax_cross_entropy(logits, y)
    elif impl == "numpy-fast":
        work = np.empty_like(logits)

        def fn():                # the fast step's in-place loss, on its own buffer
            np.copyto(work, logits)
            return nb.softmax_cross_entropy_inplace(work, y), work
    else:
        def fn():
            return F.softmax_cross_entropy(logits, y)
    _check_float32(benchmark(fn))
    record("kernel", group, impl)
