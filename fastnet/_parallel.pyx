# cython: language_level=3
"""Thread count and BLAS kernels of the native core.

fastnet runs its kernels on one OpenMP team whose size is set here (and only
here).  Matrix products beyond the built-in small kernel call BLIS through
cython-blis, single-threaded per tile, so no second thread pool ever runs
beside the OpenMP team, and NumPy's or SciPy's BLAS settings are never
touched.

BLIS picks its kernels from the CPU model at load time.  On a CPU it does
not know (a virtual machine's "Intel Xeon Processor" with AVX-512), it falls
back to its AVX2 'haswell' kernels: measured here, 77 GFLOP/s per core at
512x2048x2048 against 124 with its AVX-512 'skx' kernels.  So where the CPU
runs AVX-512 and BLIS chose AVX2 kernels, fastnet passes BLIS's own 'skx'
context to each gemm call (`bli_?gemm_ex`'s cntx argument), leaving BLIS's
global choice, which other users of the package see, unchanged.
"""
import operator
import os
import warnings

from libc.stdint cimport int64_t
from posix.dlfcn cimport dlopen, dlsym, RTLD_NOW

cdef extern from "<dlfcn.h>" nogil:
    const int RTLD_NOLOAD           # glibc, musl and macOS; not in Cython's posix.dlfcn

from blis.cy cimport sgemm as blis_sgemm, dgemm as blis_dgemm
from fastnet._native cimport (fn_blas, fn_sgemm_fn, fn_dgemm_fn, fn_omp_max_threads,
                              fn_build_openmp, fn_build_compiler, fn_build_multiversion,
                              fn_cpu_has_avx512)

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


# BLIS's typed expert interface (bli_?gemm_ex, public in every BLIS since
# 0.5): transposes are 0 / BLIS_TRANSPOSE (8), strides are int64 (dim_t).
ctypedef void (*bli_gemm_ex_fn)(int, int, int64_t, int64_t, int64_t, const void *,
                                const void *, int64_t, int64_t, const void *, int64_t,
                                int64_t, const void *, void *, int64_t, int64_t, void *,
                                void *) noexcept nogil
ctypedef int (*bli_arch_query_id_fn)() noexcept nogil
ctypedef const char *(*bli_arch_string_fn)(int) noexcept nogil
ctypedef void *(*bli_gks_lookup_nat_cntx_fn)(int) noexcept nogil

cdef bli_gemm_ex_fn _sgemm_ex = NULL
cdef bli_gemm_ex_fn _dgemm_ex = NULL
cdef void *_blis_cntx = NULL
cdef str _blis_arch = "BLIS's own choice"
# BLIS kernel sets that use no AVX-512: replaced by 'skx' on an AVX-512 CPU
_AVX2_OR_OLDER = {"haswell", "zen", "zen2", "zen3", "sandybridge", "penryn", "generic",
                  "excavator", "steamroller", "piledriver", "bulldozer"}


cdef void _sgemm_in_cntx(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c,
                         int ldc) noexcept nogil:
    _sgemm_ex(8 if ta else 0, 8 if tb else 0, m, n, k, &alpha, a, lda, 1, b, ldb, 1,
              &beta, c, ldc, 1, _blis_cntx, NULL)


cdef void _dgemm_in_cntx(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                         int lda, const double *b, int ldb, double beta, double *c,
                         int ldc) noexcept nogil:
    _dgemm_ex(8 if ta else 0, 8 if tb else 0, m, n, k, &alpha, a, lda, 1, b, ldb, 1,
              &beta, c, ldc, 1, _blis_cntx, NULL)


cdef _choose_blis_kernels():
    """Point _blis_cntx at BLIS's 'skx' context when the CPU runs AVX-512
    but BLIS chose AVX2 kernels; leave it NULL (BLIS's choice) otherwise,
    and whenever a symbol is missing."""
    global _sgemm_ex, _dgemm_ex, _blis_cntx, _blis_arch
    import blis.cy
    path = os.fsencode(blis.cy.__file__)
    cdef void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD)
    if lib == NULL:
        return
    cdef bli_arch_query_id_fn query = <bli_arch_query_id_fn>dlsym(lib, b"bli_arch_query_id")
    cdef bli_arch_string_fn name = <bli_arch_string_fn>dlsym(lib, b"bli_arch_string")
    cdef bli_gks_lookup_nat_cntx_fn lookup = <bli_gks_lookup_nat_cntx_fn>dlsym(
        lib, b"bli_gks_lookup_nat_cntx")
    cdef bli_gemm_ex_fn sgemm_ex = <bli_gemm_ex_fn>dlsym(lib, b"bli_sgemm_ex")
    cdef bli_gemm_ex_fn dgemm_ex = <bli_gemm_ex_fn>dlsym(lib, b"bli_dgemm_ex")
    if not (query and name and lookup and sgemm_ex and dgemm_ex):
        return
    cdef const char *s = name(query())
    if s == NULL:
        return
    _blis_arch = s.decode()
    if not fn_cpu_has_avx512() or _blis_arch not in _AVX2_OR_OLDER \
            or os.environ.get("FASTNET_BLIS_ARCH") == "auto":
        return
    cdef int arch
    cdef void *cntx
    for arch in range(64):           # BLIS's arch_t ids differ between versions
        s = name(arch)
        if s == NULL:                # past the named kernel sets
            return
        if s == b"skx":
            cntx = lookup(arch)
            if cntx != NULL:
                _sgemm_ex, _dgemm_ex, _blis_cntx = sgemm_ex, dgemm_ex, cntx
                _blis_arch = "skx"
            return


def blis_kernels():
    """Name of the BLIS kernel set large products run on (e.g. 'skx', 'haswell')."""
    return _blis_arch


def use_blas(flag):
    """Route large products to BLIS (True, the default) or to the built-in
    kernel (False).  For tests and benchmarks; returns the previous value."""
    global _blas
    previous = _blas.sgemm != NULL
    if flag and _blis_cntx != NULL:
        _blas.sgemm = <fn_sgemm_fn>_sgemm_in_cntx
        _blas.dgemm = <fn_dgemm_fn>_dgemm_in_cntx
    elif flag:
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
_choose_blis_kernels()
use_blas(True)
_n_threads = default_num_threads()
