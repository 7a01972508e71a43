"""Bit-identical kernel results at 1, 2 and 4 threads.

fastnet's kernels split their work over a grid fixed by the problem shape
(never by the thread count) and reduce in a fixed order; dropout masks come
from a counter-based generator.  So every output, including the running
statistics of batch norm, the BLIS path of large products and the ordered
sum of squares, must have the same bits whatever
fastnet._parallel.set_num_threads says.
"""
import subprocess
import sys

import numpy as np
import pytest
from _kernel_reference import KERNEL_IDS, KERNELS, as_tuple, ref_linear_backward, ref_linear_forward
from conftest import assert_close, assert_same_bits, blas, child_env, num_threads

import fastnet.functional as F
from fastnet import _kernels

THREADS = (1, 2, 4)
# "ragged": big enough for a team (over ~20 us of work), with row counts and
# widths that are not multiples of the kernels' 8-row chunks and 32-wide
# blocks, so the split work has partial pieces at every level
SIZES = {"7x13x5": (7, 13, 5), "64": (64, 64, 64), "ragged": (301, 173, 45),
         "large": (512, 2048, 2048)}


def _same(results, what):
    base = results[THREADS[0]]
    for n in THREADS[1:]:
        assert len(results[n]) == len(base)
        for i, (a, b) in enumerate(zip(results[n], base)):
            if isinstance(b, np.ndarray):
                assert_same_bits(a, b, what=f"{what} output {i}, {n} vs {THREADS[0]} threads")
            else:
                assert float(a).hex() == float(b).hex(), \
                    f"{what} output {i}: {a!r} at {n} threads, {b!r} at {THREADS[0]}"


def _run_at_thread_counts(call):
    results = {}
    for n in THREADS:
        with num_threads(n):
            results[n] = as_tuple(call())
    return results


@pytest.mark.parametrize("size", list(SIZES), ids=list(SIZES))
@pytest.mark.parametrize("kernel", KERNELS, ids=KERNEL_IDS)
def test_kernel_bit_identical_across_thread_counts(kernel, size, dtype, rng):
    args = kernel.make(rng, dtype, *SIZES[size])
    results = _run_at_thread_counts(lambda: kernel.call(args))
    _same(results, kernel.name)
    if size in ("64", "ragged"):    # and right, not merely reproducible
        for out, (expected, scale) in zip(results[4], kernel.ref(args, dtype)):
            assert_close(out, expected, dtype=dtype, scale=scale, what=kernel.name)


@pytest.mark.parametrize("shape", [(256, 512, 384), (601, 389, 517), (1000, 300, 250)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("use_blas", [True, False], ids=["blas", "builtin"])
def test_gemm_paths_bit_identical_across_thread_counts(shape, use_blas, dtype, rng):
    n, k, m = shape
    x = rng.standard_normal((n, k)).astype(dtype)
    W = (rng.standard_normal((k, m)) / np.sqrt(k)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    dout = rng.standard_normal((n, m)).astype(dtype)

    def call():
        out = F.linear_forward(x, W, b, activation="relu")
        return (out,) + F.linear_backward(dout, x, W, out, activation="relu")

    with blas(use_blas):
        results = _run_at_thread_counts(call)
    _same(results, f"gemm blas={use_blas}")
    out = results[4][0]
    [(expected, scale)] = ref_linear_forward(x, W, b, "relu")
    assert_close(out, expected, scale=scale)
    for g, (expected, scale) in zip(results[4][1:], ref_linear_backward(dout, x, W, out, "relu")):
        assert_close(g, expected, scale=scale)


def test_batch_norm_running_buffers_bit_identical_over_steps(dtype, rng):
    """Several training steps updating the same buffers in place."""
    batches = [rng.standard_normal((160, 300)).astype(dtype) * 3 + 1 for _ in range(4)]
    gamma = rng.uniform(0.5, 1.5, 300).astype(dtype)
    beta = rng.standard_normal(300).astype(dtype)

    def call():
        rm, rv = np.zeros(300, dtype), np.ones(300, dtype)
        outs = []
        for x in batches:
            outs.append(F.batch_norm(x, gamma, beta, running_mean=rm, running_var=rv)[0])
        return tuple(outs) + (rm, rv)

    _same(_run_at_thread_counts(call), "batch_norm steps")


@pytest.mark.parametrize("seed", [0, 7, 2**33 + 5])
def test_dropout_mask_bit_identical_across_thread_counts(seed, dtype, rng):
    x = rng.standard_normal((333, 4099)).astype(dtype)
    results = _run_at_thread_counts(lambda: F.dropout(x, 0.4, seed=seed))
    _same(results, "dropout")
    mask = results[1][1]
    results = _run_at_thread_counts(lambda: (F.dropout_backward(x, mask, 0.4),))
    _same(results, "dropout_backward")


@pytest.mark.parametrize("count", [1, 3, 4, 4095, 4096, 4097, 100_003, 1_048_581])
def test_sum_of_squares_bit_identical_and_accurate(count, dtype, rng):
    x = (rng.standard_normal(count) * 10.0 ** rng.uniform(-3, 3, count)).astype(dtype)
    results = _run_at_thread_counts(lambda: (_kernels.sum_of_squares(x),))
    _same(results, "sum_of_squares")
    x64 = x.astype(np.float64)
    total = results[1][0]
    assert isinstance(total, float)
    # accumulated in double: far tighter than the dtype's tolerance
    assert_close(total, np.sum(x64 * x64), rtol=1e-12)


def test_repeated_calls_bit_identical(rng):
    """Same inputs, same thread count, many calls: the same bits every time."""
    x = rng.standard_normal((600, 400)).astype(np.float32)
    W = rng.standard_normal((400, 600)).astype(np.float32)
    with num_threads(4):
        first = F.linear_forward(x, W)
        for _ in range(5):
            assert_same_bits(F.linear_forward(x, W), first)


def test_concurrent_calls_from_python_threads(rng):
    """The kernels release the GIL: calls from several Python threads at once
    (one of them on the team, the others on their own thread) give the bits
    of sequential calls."""
    from concurrent.futures import ThreadPoolExecutor
    cases = []
    for i, kernel in enumerate(KERNELS):
        dtype = (np.float32, np.float64)[i % 2]
        cases.append((kernel, kernel.make(rng, dtype, 300, 260, 270)))
    sequential = [as_tuple(k.call(a)) for k, a in cases]
    with num_threads(2), ThreadPoolExecutor(max_workers=4) as pool:
        for _ in range(3):
            concurrent = list(pool.map(lambda c: as_tuple(c[0].call(c[1])), cases))
            for (kernel, _), got, want in zip(cases, concurrent, sequential):
                _same({1: want, 2: got, 4: got}, f"concurrent {kernel.name}")


_VECTOR_WIDTH_SCRIPT = """
import hashlib, sys
import numpy as np
import fastnet, fastnet.functional as F
from fastnet import _parallel
_parallel.use_blas(False)            # every product on the built-in kernel
digest = hashlib.sha256()
rng = np.random.default_rng(5)
for dtype in ("float32", "float64"):
    for m, k, n in [(64, 64, 64), (13, 70, 100), (6, 3, 32), (128, 128, 10), (5, 9, 48)]:
        x = rng.standard_normal((m, k)).astype(dtype)
        W = rng.standard_normal((k, n)).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        dout = rng.standard_normal((m, n)).astype(dtype)
        for act in (None, "relu"):
            y = F.linear_forward(x, W, b, activation=act)
            for a in (y,) + tuple(F.linear_backward(dout, x, W, y if act else None,
                                                     activation=act)):
                digest.update(np.ascontiguousarray(a).tobytes())
X = rng.standard_normal((300, 20)).astype(np.float32)
y = (X[:, 0] > 0).astype(np.int64)
for activation in ("relu", "tanh"):
    model = fastnet.MLP([20, 64, 48, 2], activation=activation, dropout=0.2, seed=1)
    model.fit(X, y, epochs=2, batch_size=32, optimizer="sgd", lr=0.05, verbose=0)
    digest.update(model.params.tobytes())
sys.stdout.write(digest.hexdigest())
"""


def test_avx512_and_avx2_tiles_give_the_same_bits(tmp_path):
    """The built-in kernel's 64-byte-vector tiles (on an AVX-512 CPU) do the
    same multiply-adds in the same order as its 32-byte ones: products and a
    whole fit have the same bits with FASTNET_NO_AVX512=1.  (On a CPU without
    AVX-512 both runs take the 32-byte path and the test is trivially true.)"""
    def digest(extra):
        return subprocess.run([sys.executable, "-c", _VECTOR_WIDTH_SCRIPT],
                              env=child_env(**extra), cwd=tmp_path, capture_output=True,
                              text=True, check=True).stdout
    assert digest({}) == digest({"FASTNET_NO_AVX512": "1"})
