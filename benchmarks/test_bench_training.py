"""End-to-end benchmarks of issue 4: one training epoch of the seed's recipe.

(Linear -> BatchNorm -> ReLU -> Dropout 0.3) x 3, then Linear; softmax
cross-entropy; SGD momentum 0.9; shuffled mini-batches; float32.  Per
config, one group with:

- fastnet: ``MLP.fit(X, y, epochs=1, ...)`` (model and optimizer reused);
- fastnet@1t: the same at 1 thread (thread scaling);
- numpy: the plain NumPy baseline (fastnet/bench/numpy_baseline.py);
- torch: PyTorch eager at 2 threads (skipped without torch);
- floor: the epoch's matrix products alone through NumPy's BLAS.

Pick configs with ``--bench-configs=toy,digits`` or FASTNET_BENCH_CONFIGS,
or ``--quick``.  Also here: the peak-memory check of fit and a check that
the NumPy baseline's gradients are right (against PyTorch autograd).
"""
import time

import numpy as np
import pytest

import fastnet
from fastnet.bench import numpy_baseline as nb
from fastnet.bench import suite
from fastnet.bench import torch_baseline as tb


@pytest.fixture(scope="module")
def datasets():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = suite.make_data(name)
        return cache[name]
    return get


def _runner(name, impl, X, y):
    cfg = suite.CONFIGS[name]
    if impl == "fastnet":
        return suite._fastnet_runner(cfg, X, y, None)
    if impl == "fastnet@1t":
        return suite._fastnet_runner(cfg, X, y, 1)
    if impl == "numpy":
        return suite._numpy_runner(cfg, X, y)
    if impl == "torch":
        pytest.importorskip("torch")
        return suite._torch_runner(cfg, X, y, None)
    return suite.GemmFloor(cfg).epoch


def test_epoch(benchmark, record, datasets, training_rounds, train_case):
    """train_case (config, impl) comes from the conftest (--bench-configs / --quick)."""
    name, impl = train_case
    X, y = datasets(name)
    fn = _runner(name, impl, X, y)
    benchmark.group = f"epoch {name}"
    benchmark.extra_info["gflop_per_epoch"] = suite.gemm_flops(name) / 1e9
    fn()
    number = suite.epochs_per_sample(fn)    # back-to-back epochs per round, as in `fastnet bench`
    benchmark.extra_info["epochs_per_round"] = number
    if number == 1:
        benchmark.pedantic(fn, setup=lambda: time.sleep(suite.COOLDOWN),
                           rounds=training_rounds(name), iterations=1, warmup_rounds=1)
    else:   # pytest-benchmark reports per iteration; it allows no setup here
        time.sleep(suite.COOLDOWN)
        benchmark.pedantic(fn, rounds=training_rounds(name), iterations=number,
                           warmup_rounds=1)
    record("training", name, impl)


def test_fit_peak_memory(training_config_names):
    """Peak traced memory of fit within 1.5x of what the model and one batch need,
    and no growth across epochs (issue 4)."""
    names = training_config_names
    name = "mnist-like" if "mnist-like" in names else names[-1]
    result = suite.measure_fit_memory(name, epochs=5)
    print("\n" + suite.format_memory(result))
    assert result["ratio"] <= 1.5, suite.format_memory(result)
    assert result["growth_bytes"] < 64 * 1024, suite.format_memory(result)
    assert result["peak_n_bytes"] <= result["peak_1_bytes"] + 64 * 1024


def test_numpy_baseline_gradients_match_torch():
    """The NumPy baseline computes the recipe's gradients (dropout off, float64)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    sizes = [7, 16, 16, 5]
    net = nb.NumpyMLP(sizes, dropout=0.0, seed=1, dtype=np.float64)
    net.gamma[0][:] = rng.uniform(0.5, 1.5, 16)
    net.beta[1][:] = rng.standard_normal(16)
    x, y = rng.standard_normal((9, 7)), rng.integers(0, 5, 9)
    loss, grads = net.forward_backward(x, y)

    params = [torch.tensor(p, requires_grad=True) for p in net.parameters()]
    n = len(net.W)
    W, gamma, beta, b = params[:n], params[n:2 * n - 1], params[2 * n - 1:3 * n - 2], params[-1]
    h = torch.tensor(x)
    for l in range(n - 1):
        z = h @ W[l]
        zn = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
        h = torch.relu(gamma[l] * zn + beta[l])
    ref = torch.nn.functional.cross_entropy(h @ W[-1] + b, torch.tensor(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for g, p in zip(grads, params):
        np.testing.assert_allclose(g, p.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_baselines_train_the_same_recipe():
    """All three implementations lower the loss of the same task in a few epochs."""
    X, y = suite.make_data("digits")
    model = fastnet.MLP([64, 128, 128, 128, 10], dropout=0.3, seed=0)
    opt = fastnet.optim.SGD(lr=0.01, momentum=0.9)
    hist = model.fit(X, y, epochs=3, batch_size=128, optimizer=opt, verbose=0)
    net = nb.NumpyMLP([64, 128, 128, 128, 10], dropout=0.3, seed=0)
    np_losses = [net.train_epoch(X, y, 128, 0.01, 0.9) for _ in range(3)]
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    assert np_losses[-1] < np_losses[0]
    if tb.available():
        t = tb.TorchMLP([64, 128, 128, 128, 10], dropout=0.3, seed=0)
        t_losses = [t.train_epoch(X, y, 128) for _ in range(3)]
        assert t_losses[-1] < t_losses[0]
