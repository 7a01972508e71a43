# cython: language_level=3
"""Thread count and BLAS kernels of the native core.

fastnet runs its kernels on one OpenMP team whose size is set here (and only
here).  Matrix products beyond the built-in small kernel call BLIS through
cython-blis, single-threaded per tile, so no second thread pool ever runs
beside the OpenMP team, and NumPy's or SciPy's BLAS settings are never
touched.
"""
import operator
import os
import warnings

from blis.cy cimport sgemm as blis_sgemm, dgemm as blis_dgemm
from fastnet._native cimport (fn_blas, fn_sgemm_fn, fn_dgemm_fn, fn_omp_max_threads,
                              fn_build_openmp, fn_build_compiler, fn_build_multiversion)

cdef int _n_threads = 1
cdef fn_blas _blas
cdef fn_blas _no_blas


def machine_cores():
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def openmp_enabled():
    """True when the native core was compiled with OpenMP."""
    return bool(fn_build_openmp())


def compiler():
    return fn_build_compiler().decode()


def multiversioned():
    return bool(fn_build_multiversion())


def default_num_threads():
    """OMP_NUM_THREADS if set, else every CPU the process may use (1 without OpenMP)."""
    if not fn_build_openmp():
        return 1
    return max(1, fn_omp_max_threads())


def get_num_threads():
    """Number of threads fastnet's kernels use."""
    return _n_threads


def set_num_threads(n):
    """Set the number of threads fastnet's kernels use (a positive int).

    Results do not depend on it: every kernel splits its work over a grid
    fixed by the problem shape.  NumPy's and SciPy's thread settings are not
    affected.
    """
    global _n_threads
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    n = operator.index(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if n > 1 and not fn_build_openmp():
        warnings.warn("fastnet was built without OpenMP; kernels run on 1 thread",
                      RuntimeWarning, stacklevel=2)
        n = 1
    _n_threads = n


def grid():
    """Tiles of a large matrix product: the machine's CPUs, fixed at import."""
    return _blas.grid


def use_blas(flag):
    """Route large products to BLIS (True, the default) or to the built-in
    kernel (False).  For tests and benchmarks; returns the previous value."""
    global _blas
    previous = _blas.sgemm != NULL
    if flag:
        _blas.sgemm = <fn_sgemm_fn>blis_sgemm
        _blas.dgemm = <fn_dgemm_fn>blis_dgemm
    else:
        _blas.sgemm = NULL
        _blas.dgemm = NULL
    return previous


cdef fn_blas blas_table() noexcept nogil:
    return _blas


cdef int current_threads() noexcept nogil:
    return _n_threads


# Below about 20 us of single-threaded work, waking a second thread and
# meeting it at a barrier costs more than it saves, and on a loaded machine a
# descheduled partner can stall the call for a whole time slice (measured
# here: a 128x10 softmax took 16 ms instead of 45 us on a busy 2-core box).
# The estimates: ~0.5 ns per element of a memory-bound pass, ~0.05 ns per
# multiply-add of a small product.  Results never depend on the team size.
cdef double _SERIAL_BELOW_NS = 20000.0


cdef int threads_for_elements(double count) noexcept nogil:
    """Team size for a memory-bound kernel over `count` elements."""
    return 1 if count * 0.5 < _SERIAL_BELOW_NS else _n_threads


cdef int threads_for_gemm(double m, double n, double k) noexcept nogil:
    """Team size for an m x n x k product (and its epilogue)."""
    return 1 if m * n * k * 0.05 < _SERIAL_BELOW_NS else _n_threads


_blas.grid = max(1, min(machine_cores(), 64))
use_blas(True)
_n_threads = default_num_threads()
