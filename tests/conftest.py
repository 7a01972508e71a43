"""Shared fixtures and tolerances of the kernel test suite.

Tolerance policy (see ``assert_close``): an element passes when

    |actual - expected| <= rtol * (|expected| + scale)

with rtol = 1e-4 for float32 and 1e-10 for float64, ``expected`` a float64
reference, and ``scale`` the magnitude the result was computed from (for a
sum, the sum of the absolute values of its terms; by default max|expected|).
This is the usual "rtol plus an atol proportional to the magnitude" rule, with
the atol made elementwise where the conditioning of the operation is known.
"""
import contextlib
import os
import re
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fastnet
from fastnet import _parallel

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

DTYPES = (np.float32, np.float64)
RTOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
# Finite-difference step and the tolerance its truncation/round-off allows.
FD_EPS = 1e-6
FD_RTOL = 1e-6


def rtol_for(dtype):
    return RTOL[np.dtype(dtype)]


def other_float(dtype):
    return np.float64 if np.dtype(dtype) == np.float32 else np.float32


def assert_close(actual, expected, *, dtype=None, scale=None, rtol=None, what="value"):
    """Compare `actual` (any float dtype) with a float64 `expected`.

    NaN and inf must appear at the same positions; elsewhere
    |actual - expected| <= rtol * (|expected| + scale), `scale` broadcasting
    against `expected` (default: max |expected| over the finite entries)."""
    actual_arr = np.asarray(actual)
    if dtype is None:
        dtype = actual_arr.dtype if actual_arr.dtype in RTOL else np.float64
    if rtol is None:
        rtol = rtol_for(dtype)
    a = actual_arr.astype(np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != expected {e.shape}"
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), (
        f"{what}: NaN at {np.argwhere(nan_a != nan_e)[:5].tolist()} differs from reference")
    inf_a, inf_e = np.isinf(a), np.isinf(e)
    assert np.array_equal(inf_a, inf_e) and np.array_equal(a[inf_a], e[inf_e]), (
        f"{what}: infinities differ from reference")
    finite = np.isfinite(e)
    if scale is None:
        scale = np.max(np.abs(e[finite])) if finite.any() else 0.0
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), e.shape)
    tol = rtol * (np.abs(e) + scale)
    err = np.where(finite, np.abs(a - e), 0.0)
    bad = err > tol
    if bad.any():
        idx = tuple(np.argwhere(bad)[0]) if e.ndim else ()
        worst = np.max(np.where(finite, err / np.maximum(tol, 1e-300), 0.0))
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {e.size} elements out of tolerance "
            f"(rtol={rtol:g}); first at {idx}: actual {a[idx]!r}, expected {e[idx]!r}, "
            f"tol {tol[idx]:.3g}; worst err/tol = {worst:.3g}")


def assert_same_bits(a, b, what="value"):
    """Bit-identical arrays (NaN equal to NaN), same dtype and shape."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert a.tobytes() == b.tobytes(), f"{what}: not bit-identical"


def child_env(*prepend, **extra):
    """Environment for a child Python that imports the same fastnet as these tests.

    The installed package may differ from the source tree (CI installs it and runs
    pytest from the checkout, whose ``fastnet/`` has no compiled extensions), so the
    child gets the directory holding the imported package first on PYTHONPATH; run
    it with a cwd other than the checkout root, which ``python -m``/``-c`` put first."""
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(fastnet.__file__)))
    path = [*prepend, package_root, os.environ.get("PYTHONPATH")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, path)), **extra)


def names_argument(message, name):
    """True when the error message names the argument as a word."""
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


@contextlib.contextmanager
def num_threads(n):
    """Run fastnet kernels on n threads, restoring the previous count; n may
    exceed the machine's CPUs (an oversubscribed team, bits unchanged)."""
    previous = _parallel.get_num_threads()
    _parallel._force_num_threads(n)
    try:
        yield
    finally:
        _parallel._force_num_threads(previous)


@contextlib.contextmanager
def blas(flag):
    """Route large products to BLIS (True) or the built-in kernel (False)."""
    previous = _parallel.use_blas(flag)
    try:
        yield
    finally:
        _parallel.use_blas(previous)


def layouts(a):
    """Views holding the same values as the C-ordered array `a` in other
    memory layouts: Fortran order, stepped slices of a larger buffer,
    negative strides, a transposed view, and a misaligned C-ordered array."""
    a = np.ascontiguousarray(a)
    fill = np.nan if a.dtype.kind == "f" else 0
    out = {"C": a}
    if a.ndim == 2:
        out["F"] = np.asfortranarray(a)
        big = np.full((2 * a.shape[0] + 1, 3 * a.shape[1] + 2), fill, dtype=a.dtype)
        big[1::2, 2::3] = a
        out["strided"] = big[1::2, 2::3]
        out["reversed"] = np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
        bigT = np.full((3 * a.shape[1], 2 * a.shape[0]), fill, dtype=a.dtype)
        bigT[::3, ::2] = a.T
        out["transposed"] = bigT[::3, ::2].T
    elif a.ndim == 1:
        big = np.full(3 * a.shape[0] + 1, fill, dtype=a.dtype)
        big[1::3] = a
        out["strided"] = big[1::3]
        out["reversed"] = np.ascontiguousarray(a[::-1])[::-1]
    if a.dtype.itemsize > 1:
        # C-contiguous but misaligned (offset by one byte into a buffer)
        raw = np.zeros(a.nbytes + 1, dtype=np.uint8)
        un = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
        un[...] = a
        assert not un.flags.aligned
        out["unaligned"] = un
    for name, v in out.items():
        assert np.array_equal(v, a), name
    return out


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(20240607)


@pytest.fixture(autouse=True)
def _restore_native_state():
    """Every test leaves the thread count and the BLAS switch as it found them."""
    threads = _parallel.get_num_threads()
    had_blas = _parallel.use_blas(True)
    _parallel.use_blas(had_blas)
    yield
    _parallel._force_num_threads(threads)
    _parallel.use_blas(had_blas)
