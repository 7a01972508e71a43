"""Which BLIS kernel set large products run on (fastnet/_parallel.pyx).

BLIS picks its kernels from the CPU model; on a CPU it does not recognise it
falls back to AVX2 kernels even where AVX-512 runs.  fastnet then passes
BLIS's 'skx' context to its own gemm calls.  These tests check the choice
against the CPU's flags, and that products on the chosen kernels and on
BLIS's own choice agree with a float64 reference and with each other."""
import ctypes
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import child_env

import fastnet
from fastnet import _parallel

AVX512 = {"avx512f", "avx512dq", "avx512bw", "avx512vl"}


def cpu_flags():
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    return set()


def blis_own_choice():
    import blis.cy
    lib = ctypes.CDLL(blis.cy.__file__)
    lib.bli_arch_string.restype = ctypes.c_char_p
    return lib.bli_arch_string(lib.bli_arch_query_id()).decode()


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads /proc/cpuinfo (Linux)")
def test_kernel_set_follows_the_cpu():
    own = blis_own_choice()
    avx2_sets = {"haswell", "zen", "zen2", "zen3", "sandybridge", "generic"}
    expected = "skx" if AVX512 <= cpu_flags() and own in avx2_sets else own
    assert _parallel.blis_kernels() == expected


def test_blis_own_choice_can_be_kept(tmp_path):
    code = ("import fastnet._parallel as p, sys; sys.stdout.write(p.blis_kernels())")
    out = subprocess.run([sys.executable, "-c", code], env=child_env(FASTNET_BLIS_ARCH="auto"),
                         cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert out == blis_own_choice()


_PRODUCT = """
import json, sys
import numpy as np
import fastnet, fastnet.functional as F
rng = np.random.default_rng(7)
out = {}
for dtype in ("float32", "float64"):
    x = rng.standard_normal((300, 700)).astype(dtype)      # k > 384: the BLIS path
    W = rng.standard_normal((700, 500)).astype(dtype)
    b = rng.standard_normal(500).astype(dtype)
    dout = rng.standard_normal((300, 500)).astype(dtype)
    runs = []
    for threads in (1, 2):
        with fastnet.threads(threads):
            y = F.linear_forward(x, W, b, activation="relu")
            runs.append([y] + list(F.linear_backward(dout, x, W, y, activation="relu")))
    same = all(np.array_equal(a, b) for a, b in zip(*runs))
    out[dtype] = {"same_bits_1_2_threads": bool(same),
                  "arrays": [a.astype(np.float64).tolist() for a in runs[0]]}
sys.stdout.write(json.dumps(out))
"""


def _products(cwd, env_extra):
    out = subprocess.run([sys.executable, "-c", _PRODUCT], env=child_env(**env_extra), cwd=cwd,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_both_kernel_sets_agree_with_reference(dtype, tmp_path):
    chosen, own = _products(tmp_path, {}), _products(tmp_path, {"FASTNET_BLIS_ARCH": "auto"})
    rng = np.random.default_rng(7)
    for d in ("float32", "float64"):          # replay the draws of _PRODUCT
        x = rng.standard_normal((300, 700)).astype(d)
        W = rng.standard_normal((700, 500)).astype(d)
        b = rng.standard_normal(500).astype(d)
        dout = rng.standard_normal((300, 500)).astype(d)
        if d == dtype:
            break
    x, W, b, dout = (a.astype(np.float64) for a in (x, W, b, dout))
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for run in (chosen, own):
        assert run[dtype]["same_bits_1_2_threads"]
        y, dx, dW, db = (np.asarray(a) for a in run[dtype]["arrays"])
        # ReLU is 1-Lipschitz, so y's error is bounded by the product's; the
        # backward is checked with the mask of the y it was given
        dz = dout * (y > 0)
        for got, ref, scale in [
                (y, np.maximum(x @ W + b, 0), np.abs(x) @ np.abs(W) + np.abs(b)),
                (dx, dz @ W.T, np.abs(dz) @ np.abs(W.T)),
                (dW, x.T @ dz, np.abs(x.T) @ np.abs(dz)),
                (db, dz.sum(0), np.abs(dz).sum(0))]:
            assert np.all(np.abs(got - ref) <= rtol * scale), np.max(np.abs(got - ref) / scale)
    for c, o in zip(chosen[dtype]["arrays"], own[dtype]["arrays"]):
        np.testing.assert_allclose(c, o, rtol=0, atol=2 * rtol * np.abs(o).max())


def test_kernel_set_is_reported():
    assert _parallel.blis_kernels() in fastnet.build_info()["blas"]


_MANY_SHAPES = """
import numpy as np, fastnet
from fastnet import functional as F
rng = np.random.default_rng({seed})
with fastnet.threads(2):
    for it in range(40):
        m, k, n = (int(v) for v in rng.integers(8, 1200, 3))
        dt = np.float32 if it % 3 else np.float64
        x = rng.standard_normal((m, k)).astype(dt)
        w = rng.standard_normal((k, n + 600)).astype(dt)
        out = F.linear_forward(x, w, np.zeros(n + 600, dt), "relu")
        F.linear_backward(rng.standard_normal(out.shape).astype(dt), x, w, out, "relu")
print("done")
"""


@pytest.mark.parametrize("seed", range(3))
def test_products_of_growing_shapes_on_two_threads_do_not_abort_blis(seed):
    # BLIS rebuilds a packing pool for a larger request than it was sized for and
    # aborts when another thread holds one of its blocks; with the 'skx' context and
    # pools sized for BLIS's own, every such run aborted (10 of 10) before the pools
    # were sized for the context fastnet uses
    proc = subprocess.run([sys.executable, "-c", _MANY_SHAPES.format(seed=seed)],
                          capture_output=True, text=True, timeout=300, env=child_env(),
                          cwd=os.path.dirname(os.path.abspath(__file__)))
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stdout + proc.stderr
    assert "bli_pool_finalize" not in proc.stdout + proc.stderr
