"""Benchmarks of fastnet against the NumPy baseline, PyTorch eager and the GEMM floor.

``python -m fastnet bench`` (or ``python -m fastnet.bench``) prints the
table of issue 4; the same functions are available here:

>>> from fastnet import bench
>>> rows = bench.run(configs=["toy", "digits"], repeats=5)
>>> print(bench.format_table(rows))

PyTorch is optional (its column shows "n/a" without it).
"""
from fastnet.bench import numpy_baseline, suite, torch_baseline
from fastnet.bench.suite import (
    CONFIGS,
    GOALS,
    Config,
    GemmFloor,
    add_arguments,
    blas_peak_gflops,
    environment,
    format_environment,
    format_memory,
    format_table,
    format_threads_table,
    gemm_flops,
    main,
    make_data,
    measure_fit_memory,
    run,
    run_from_args,
    run_threads_scaling,
)

__all__ = [
    "CONFIGS",
    "GOALS",
    "Config",
    "GemmFloor",
    "add_arguments",
    "blas_peak_gflops",
    "environment",
    "format_environment",
    "format_memory",
    "format_table",
    "format_threads_table",
    "gemm_flops",
    "main",
    "make_data",
    "measure_fit_memory",
    "numpy_baseline",
    "run",
    "run_from_args",
    "run_threads_scaling",
    "suite",
    "torch_baseline",
]
