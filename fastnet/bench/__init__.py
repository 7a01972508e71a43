"""Benchmarks of fastnet against the NumPy baseline, PyTorch eager and the GEMM floor.

``python -m fastnet bench`` (or ``python -m fastnet.bench``) prints the
table of issue 4; the same functions are available here:

>>> from fastnet import bench
>>> rows = bench.run(configs=["toy", "digits"], repeats=5)
>>> print(bench.format_table(rows))

PyTorch is optional (its column shows "n/a" without it).
"""
from fastnet.bench import numpy_baseline, suite, torch_baseline
from fastnet.bench.suite import *  # noqa: F401,F403  (the public names, listed in suite.__all__)

__all__ = [*suite.__all__, "numpy_baseline", "suite", "torch_baseline"]
