"""End-to-end benchmarks of issues 4 and 15: one training epoch of the article's recipe.

(Linear -> BatchNorm -> ReLU -> Dropout 0.3) x 3, then Linear; softmax
cross-entropy; SGD momentum 0.9; shuffled mini-batches; float32.  Per
config, one group with:

- fastnet: ``MLP.fit(X, y, epochs=1, ...)`` (model and optimizer reused);
- fastnet@1t: the same at 1 thread (thread scaling);
- numpy: the fastest idiomatic NumPy step (fastnet/bench/numpy_baseline.py);
- numpy_article: the article's NumPy functions as written;
- torch, torch_compile: PyTorch eager and torch.compile at 2 threads
  (skipped without torch);
- jax: a jitted lax.scan epoch with optax (skipped without jax/optax,
  ``pip install '.[bench]'``);
- floor: the epoch's matrix products alone through NumPy's BLAS.

Pick configs with ``--bench-configs=toy,digits`` or FASTNET_BENCH_CONFIGS,
or ``--quick``.  Also here: the peak-memory check of fit and a check that
every baseline lowers the loss.  That the baselines compute fastnet's step
is tested in tests/test_bench_baselines.py.
"""
import time

import numpy as np
import pytest

import fastnet
from fastnet.bench import jax_baseline as jb
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
        return suite._fastnet_epoch(cfg, X, y, None)[1]
    if impl == "fastnet@1t":
        return suite._fastnet_epoch(cfg, X, y, 1)[1]
    if impl in ("numpy", "numpy_article"):
        return suite._numpy_epoch(cfg, X, y, article=impl == "numpy_article")
    if impl in ("torch", "torch_compile"):
        pytest.importorskip("torch")
        return suite._torch_epoch(cfg, X, y, None, compile=impl == "torch_compile")[1]
    if impl == "jax":
        pytest.importorskip("jax", reason="jax is not installed (pip install '.[bench]')")
        pytest.importorskip("optax", reason="optax is not installed (pip install '.[bench]')")
        return suite._jax_epoch(cfg, X, y)
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
    pause = suite.QUIET.cooldown
    if number == 1:
        benchmark.pedantic(fn, setup=lambda: time.sleep(pause),
                           rounds=training_rounds(name), iterations=1, warmup_rounds=1)
    else:   # pytest-benchmark reports per iteration; it allows no setup here
        time.sleep(pause)
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


def test_baselines_train_the_same_recipe():
    """Every implementation lowers the loss of the same task in a few epochs."""
    sizes, batch = [64, 128, 128, 128, 10], 128
    X, y = suite.make_data("digits")
    model = fastnet.MLP(sizes, dropout=0.3, seed=0)
    opt = fastnet.optim.SGD(lr=0.01, momentum=0.9)
    hist = model.fit(X, y, epochs=3, batch_size=batch, optimizer=opt, verbose=0)
    losses = {"fastnet": hist.history["loss"]}
    for cls in (nb.NumpyMLP, nb.ArticleNumpyMLP):
        net = cls(sizes, dropout=0.3, seed=0)
        losses[cls.__name__] = [net.train_epoch(X, y, batch, 0.01, 0.9) for _ in range(3)]
    if tb.available():
        t = tb.TorchMLP(sizes, dropout=0.3, seed=0)
        losses["torch"] = [t.train_epoch(X, y, batch) for _ in range(3)]
    if jb.available():
        j = jb.JaxMLP(sizes, dropout=0.3, seed=0)
        Xd, yd = j.to_device(X, y)
        losses["jax"] = [j.train_epoch(Xd, yd, batch) for _ in range(3)]
    for name, curve in losses.items():
        assert curve[-1] < curve[0], (name, curve)
        assert np.all(np.isfinite(curve)), (name, curve)
