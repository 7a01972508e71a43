# cython: language_level=3
"""Thread count, thread team and BLAS kernels of the native core.

fastnet runs its kernels on its own thread team (csrc/fn_team.c), whose
size is set here (and only here) and whose sessions are begun here only
(team_begin / team_end, for every native module).  Matrix products beyond
the built-in small kernel call BLIS through cython-blis, single-threaded per
tile, so no second thread pool ever runs beside the team, and NumPy's or
SciPy's BLAS settings are never touched.

BLIS picks its kernels from the CPU model at load time.  On a CPU it does
not know (a virtual machine's "Intel Xeon Processor" with AVX-512), it falls
back to its AVX2 'haswell' kernels: measured here, 77 GFLOP/s per core at
512x2048x2048 against 124 with its AVX-512 'skx' kernels.  So where the CPU
runs AVX-512 and BLIS chose AVX2 kernels, fastnet passes BLIS's own 'skx'
context to each gemm call (`bli_?gemm_ex`'s cntx argument), leaving BLIS's
global choice, which other users of the package see, unchanged; BLIS's
packing pools are then sized for that context's blocks (see
`_size_packing_pools`: a pool outgrown while another thread holds one of its
blocks aborts the process).
"""
import operator
import os
import warnings

from libc.stdint cimport int64_t
from posix.dlfcn cimport dlopen, dlsym, RTLD_NOW

cdef extern from "<dlfcn.h>" nogil:
    const int RTLD_NOLOAD           # glibc, musl and macOS; not in Cython's posix.dlfcn

from blis.cy cimport sgemm as blis_sgemm, dgemm as blis_dgemm
from fastnet._native cimport (fn_blas, fn_sgemm_fn, fn_dgemm_fn, fn_build_compiler,
                              fn_build_multiversion, fn_cpu_has_avx512, fn_team,
                              fn_team_begin, fn_team_end, fn_team_reserve, fn_team_stats,
                              fn_team_get_stats, fn_team_available, fn_fork_gate_enter,
                              fn_fork_gate_leave)

cdef int _n_threads = 1
cdef fn_blas _blas
cdef fn_blas _no_blas


def machine_cores():
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def threads_available():
    """True when this build runs helper threads (POSIX threads)."""
    return bool(fn_team_available())


def compiler():
    return fn_build_compiler().decode()


def multiversioned():
    return bool(fn_build_multiversion())


# Above this the count is refused: it is no CPU count of any machine, and it
# would not fit the native int.
_MAX_THREADS = 2**31 - 1


def _capped(n, what, stacklevel):
    """n threads capped at the CPUs this process may use, with a warning."""
    cores = machine_cores()
    if n > cores:
        warnings.warn(f"{what} asks for {n} threads, but this process may run on {cores} CPU"
                      f"{'s' if cores != 1 else ''} (os.sched_getaffinity); fastnet uses "
                      f"{cores}", RuntimeWarning, stacklevel=stacklevel + 1)
        return cores
    return n


def default_num_threads():
    """OMP_NUM_THREADS if set (its first entry, capped at the CPUs this process
    may use), else every CPU the process may use (1 without threads)."""
    if not fn_team_available():
        return 1
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if not value:
        return machine_cores()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if not 1 <= n <= _MAX_THREADS:
        warnings.warn(f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']!r} is not a positive "
                      f"thread count; fastnet uses {machine_cores()} threads",
                      RuntimeWarning, stacklevel=2)
        return machine_cores()
    return _capped(n, "OMP_NUM_THREADS", 2)


def get_num_threads():
    """Number of threads fastnet's kernels use."""
    return _n_threads


def set_num_threads(n):
    """Set the number of threads fastnet's kernels use.

    Results do not depend on it: every kernel splits its work over a grid
    fixed by the problem shape.  NumPy's and SciPy's thread settings are not
    affected.

    Parameters
    ----------
    n : int
        At least 1.  A count above the CPUs this process may use
        (``os.sched_getaffinity``) is capped there, with a warning; so is one
        above the threads the system lets fastnet start.

    Raises
    ------
    TypeError
        If n is not an int.
    ValueError
        If n is below 1 or above 2**31 - 1.
    """
    global _n_threads
    if isinstance(n, bool) or not hasattr(n, "__index__"):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    n = operator.index(n)
    if not 1 <= n <= _MAX_THREADS:
        raise ValueError(f"n must be a thread count from 1 to {_MAX_THREADS}, got {n}; "
                         f"this process may run on {machine_cores()} CPUs")
    if n > 1 and not fn_team_available():
        warnings.warn("this build of fastnet has no threads; kernels run on 1 thread",
                      RuntimeWarning, stacklevel=2)
        n = 1
    n = _capped(n, f"set_num_threads({n})", 2)
    if n > 1:
        started = fn_team_reserve(n)
        if started < n:
            warnings.warn(f"fastnet could start only {started} of {n} threads (the system "
                          f"refused to create more); kernels run on {started}",
                          RuntimeWarning, stacklevel=2)
            n = started
    _n_threads = n


def _force_num_threads(n):
    """Set the thread count without the CPU cap: for tests that run
    oversubscribed teams (up to the team's capacity, 8 or more) to show
    that results do not depend on the count."""
    global _n_threads
    _n_threads = min(max(1, operator.index(n)), fn_team_reserve(n))


def team_stats():
    """Counters and measurements of fastnet's thread team (for tests and diagnostics).

    Returns
    -------
    dict
        ``launches`` (sessions that invited helper threads), ``joins``
        ((session, helper) pairs in which the helper ran work), ``stalls``
        (phases that waited on a descheduled helper), ``serial_small``,
        ``serial_quiet`` and ``serial_busy`` (sessions kept on the calling
        thread: work below the cost of inviting a helper, helpers left alone
        after a stall, another thread's session running), ``helpers``
        (threads alive), ``capacity``, ``create_failed``, and the measured
        ``wake_ns`` (inviting a sleeping helper until it runs), ``handoff_ns``
        (a phase until a spinning helper takes part) and ``spin_ns`` (how long
        helpers spin before they sleep).
    """
    cdef fn_team_stats st
    fn_team_get_stats(&st)
    return {"launches": st.launches, "joins": st.joins, "stalls": st.stalls,
            "serial_small": st.serial_small, "serial_quiet": st.serial_quiet,
            "serial_busy": st.serial_busy, "helpers": st.helpers, "capacity": st.capacity,
            "create_failed": bool(st.create_failed), "wake_ns": st.wake_ns,
            "handoff_ns": st.handoff_ns, "spin_ns": st.spin_ns}


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
ctypedef void *(*bli_broker_query_fn)() noexcept nogil
ctypedef void (*bli_broker_finalize_pools_fn)(void *) noexcept nogil
ctypedef void (*bli_broker_init_pools_fn)(void *, void *) noexcept nogil

cdef bli_gemm_ex_fn _sgemm_ex = NULL
cdef bli_gemm_ex_fn _dgemm_ex = NULL
cdef void *_blis_cntx = NULL
cdef str _blis_arch = "BLIS's own choice"
# BLIS kernel sets that use no AVX-512: replaced by 'skx' on an AVX-512 CPU
_AVX2_OR_OLDER = {"haswell", "zen", "zen2", "zen3", "sandybridge", "penryn", "generic",
                  "excavator", "steamroller", "piledriver", "bulldozer"}


# Every BLIS call goes through the fork gate (fn_team.h): BLIS's memory broker
# takes a mutex, and a child forked while another thread held it hung there.

cdef void _sgemm_in_cntx(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                         int lda, const float *b, int ldb, float beta, float *c,
                         int ldc) noexcept nogil:
    fn_fork_gate_enter()
    _sgemm_ex(8 if ta else 0, 8 if tb else 0, m, n, k, &alpha, a, lda, 1, b, ldb, 1,
              &beta, c, ldc, 1, _blis_cntx, NULL)
    fn_fork_gate_leave()


cdef void _dgemm_in_cntx(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                         int lda, const double *b, int ldb, double beta, double *c,
                         int ldc) noexcept nogil:
    fn_fork_gate_enter()
    _dgemm_ex(8 if ta else 0, 8 if tb else 0, m, n, k, &alpha, a, lda, 1, b, ldb, 1,
              &beta, c, ldc, 1, _blis_cntx, NULL)
    fn_fork_gate_leave()


cdef void _sgemm_own_cntx(int ta, int tb, int m, int n, int k, float alpha, const float *a,
                          int lda, const float *b, int ldb, float beta, float *c,
                          int ldc) noexcept nogil:
    fn_fork_gate_enter()
    blis_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    fn_fork_gate_leave()


cdef void _dgemm_own_cntx(int ta, int tb, int m, int n, int k, double alpha, const double *a,
                          int lda, const double *b, int ldb, double beta, double *c,
                          int ldc) noexcept nogil:
    fn_fork_gate_enter()
    blis_dgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    fn_fork_gate_leave()


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
            if cntx != NULL and _size_packing_pools(lib, cntx):
                _sgemm_ex, _dgemm_ex, _blis_cntx = sgemm_ex, dgemm_ex, cntx
                _blis_arch = "skx"
            return


cdef bint _size_packing_pools(void *lib, void *cntx):
    """Size BLIS's packing-buffer pools for the blocks of `cntx`; False if BLIS lacks
    the functions (then the context is not used).

    BLIS sizes its pools for its own context's blocks when it loads, and a pool that
    gets a larger request is rebuilt, which aborts the process (bli_pool_finalize:
    "not all blocks were checked back in") when another thread has one of its blocks:
    seen here in 10 of 10 runs of differently shaped products on two threads.  Sized
    for the blocks of `cntx` (the largest of every dtype), no request of a product in
    that context is ever larger.  Done once, at import, before any product runs; the
    functions are bli_membrk_* up to BLIS 0.7 and bli_pba_* from 0.8."""
    cdef bli_broker_query_fn query
    cdef bli_broker_finalize_pools_fn finalize_pools
    cdef bli_broker_init_pools_fn init_pools
    cdef void *broker
    for prefix in (b"bli_membrk_", b"bli_pba_"):
        query = <bli_broker_query_fn>dlsym(lib, prefix + b"query")
        finalize_pools = <bli_broker_finalize_pools_fn>dlsym(lib, prefix + b"finalize_pools")
        init_pools = <bli_broker_init_pools_fn>dlsym(lib, prefix + b"init_pools")
        if query and finalize_pools and init_pools:
            broker = query()
            if broker == NULL:
                return False
            with nogil:
                fn_fork_gate_enter()
                finalize_pools(broker)
                init_pools(cntx, broker)
                fn_fork_gate_leave()
            return True
    return False


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
        _blas.sgemm = <fn_sgemm_fn>_sgemm_own_cntx
        _blas.dgemm = <fn_dgemm_fn>_dgemm_own_cntx
    else:
        _blas.sgemm = NULL
        _blas.dgemm = NULL
    return previous


cdef fn_blas blas_table() noexcept nogil:
    return _blas


cdef int current_threads() noexcept nogil:
    return _n_threads


cdef fn_team *team_begin(int threads, double work_ns) noexcept nogil:
    """A team session for about work_ns of single-thread work on `threads`
    threads (0: fastnet's count), or NULL: the calling thread alone."""
    return fn_team_begin(threads if threads > 0 else _n_threads, work_ns)


cdef void team_end(fn_team *team) noexcept nogil:
    fn_team_end(team)


fn_team_reserve(1)        # the team's at-fork handlers, before any BLIS call (no thread)
_blas.grid = max(1, min(machine_cores(), 64))
# FASTNET_NO_AVX512=1 keeps the built-in kernel to 32-byte vectors (the same
# bits; tests compare the two): read once here, kernels never read the environment
_blas.wide_vectors = os.environ.get("FASTNET_NO_AVX512", "") != "1"
_choose_blis_kernels()
use_blas(True)
_n_threads = default_num_threads()
