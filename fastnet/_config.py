"""Build information of fastnet (the thread count is in ``fastnet._threads``)."""
from fastnet import _parallel
from fastnet._threads import get_num_threads

__all__ = ["build_info"]


def _blis_description():
    try:
        import ctypes

        import blis
        import blis.cy

        lib = ctypes.CDLL(blis.cy.__file__)
        lib.bli_info_get_version_str.restype = ctypes.c_char_p
        lib.bli_arch_string.restype = ctypes.c_char_p
        version = lib.bli_info_get_version_str().decode()
        own = lib.bli_arch_string(lib.bli_arch_query_id()).decode()
        arch = _parallel.blis_kernels() + " kernels"
        if not arch.startswith(own + " "):
            arch += f"; BLIS alone picks {own}"
        try:
            from importlib.metadata import version as _dist_version
            package = _dist_version("blis")
        except Exception:
            package = getattr(blis, "__version__", "?")
        return f"BLIS {version} ({arch}) via cython-blis {package}"
    except Exception:  # the description is informative only
        return "BLIS via cython-blis"


def _threading_description():
    if not _parallel.threads_available():
        return "none: every kernel runs on the calling thread"
    return ("fastnet's own thread team on POSIX threads: the calling thread works at "
            "once, helpers claim chunks of a fixed grid when they run, spin briefly "
            "after work (as long as a measured wake-up costs) and then sleep; small "
            "work stays on the calling thread")


def build_info():
    """How this fastnet was built and how it runs.

    Returns a dict with at least ``openmp`` (bool), ``num_threads`` (int),
    ``compiler`` (str), ``blas`` (str) and ``threading`` (str).  ``openmp``
    is False: no OpenMP runtime runs (OpenMP's SIMD directives are compiled
    in, its threads are not); ``threading`` says what does.
    """
    return {
        "version": __import__("fastnet").__version__,
        "openmp": False,
        "threading": _threading_description(),
        "num_threads": get_num_threads(),
        "default_num_threads": _parallel.default_num_threads(),
        "compiler": _parallel.compiler(),
        "blas": (_blis_description() + ", single-threaded per output tile of large products"
                 "; small products use fastnet's register-blocked kernel"),
        "gemm_grid": _parallel.grid(),
        "simd_dispatch": ("x86-64-v4 (AVX-512), x86-64-v3 (AVX2+FMA) and baseline clones,"
                          " chosen at load" if _parallel.multiversioned() else "baseline only"),
    }
