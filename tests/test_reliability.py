"""Threads and memory: two Python threads training at once give the sequential
results (the kernels release the GIL and share no state), and the resident
memory stays flat over many kernel calls and fits (no leak)."""
import gc
import os
import threading

import numpy as np
import pytest

import fastnet
from fastnet import functional as F


def _train(seed, n_threads=None):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((256, 20)).astype(np.float32)
    y = (X[:, :4].sum(1) > 0).astype(np.int64) * 2 + (X[:, 5] > 0)
    model = fastnet.MLP([20, 48, 32, 4], dropout=0.2, seed=seed)
    model.fit(X, y, epochs=3, batch_size=32, optimizer="adamw", lr=3e-3,
              validation_split=0.25, verbose=0)
    return model.params.copy(), model.buffers.copy()


def test_two_python_threads_train_like_sequential_runs():
    expected = {seed: _train(seed) for seed in (1, 2)}
    results, errors = {}, []

    def worker(seed):
        try:
            for _ in range(3):                       # overlap several fits
                results.setdefault(seed, []).append(_train(seed))
        except BaseException as exc:                 # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    for seed, runs in results.items():
        assert len(runs) == 3
        for params, buffers in runs:
            assert params.tobytes() == expected[seed][0].tobytes()
            assert buffers.tobytes() == expected[seed][1].tobytes()


def test_kernels_release_the_gil():
    """While one thread runs a long native GEMM, the other keeps executing Python."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((512, 1024)).astype(np.float32)
    w = rng.standard_normal((1024, 1024)).astype(np.float32)
    b = np.zeros(1024, np.float32)
    done = threading.Event()
    ticks = []

    def spin():
        while not done.is_set():
            ticks.append(1)

    with fastnet.threads(1):
        F.linear_forward(x, w, b)                    # warm up
        spinner = threading.Thread(target=spin)
        spinner.start()
        try:
            before = len(ticks)
            for _ in range(5):
                F.linear_forward(x, w, b)
            during = len(ticks) - before
        finally:
            done.set()
            spinner.join()
    assert during > 0


def _rss_bytes():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


pytestmark_linux = pytest.mark.skipif(not os.path.exists("/proc/self/statm"),
                                      reason="reads /proc/self/statm (Linux)")


def _growth(fn, rounds):
    """RSS growth between the end of a warm-up round and the end of `rounds` more."""
    fn()
    gc.collect()
    start = _rss_bytes()
    for _ in range(rounds):
        fn()
    gc.collect()
    return _rss_bytes() - start


@pytestmark_linux
def test_rss_flat_over_10000_kernel_calls():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 32)).astype(np.float32)
    w = rng.standard_normal((32, 32)).astype(np.float32)
    b = np.zeros(32, np.float32)
    gamma, beta = np.ones(32, np.float32), np.zeros(32, np.float32)
    rm, rv = np.zeros(32, np.float32), np.ones(32, np.float32)
    labels = rng.integers(0, 32, 64)

    def calls():
        for step in range(1000):
            h = F.linear_forward(x, w, b, activation="relu")
            y, mean, var = F.batch_norm(h, gamma, beta, running_mean=rm, running_var=rv)
            F.batch_norm_backward(y, h, gamma, mean, var)
            d, mask = F.dropout(y, 0.3, seed=step)
            F.dropout_backward(d, mask, 0.3)
            F.softmax_cross_entropy(d, labels)

    # 1000 calls of each of 6 kernels per round: 12,000 calls measured
    growth = _growth(calls, rounds=2)
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 12,000 kernel calls"


@pytestmark_linux
def test_rss_flat_over_50_fits():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 16)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def fit():
        model = fastnet.MLP([16, 32, 2], dropout=0.1, seed=0)
        model.fit(X, y, epochs=1, batch_size=32, validation_split=0.2, verbose=0)

    growth = _growth(lambda: [fit() for _ in range(10)], rounds=5)
    assert growth < 4 << 20, f"RSS grew by {growth / 2**20:.1f} MiB over 50 fits"
