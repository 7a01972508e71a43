"""Benchmarks of fastnet against its peers: NumPy (the fast idiom and the article's),
PyTorch eager and torch.compile, JAX, and the GEMM floor.

``fastnet bench`` (or ``python -m fastnet.bench``) prints the tables of
issue 15; the same functions are available here:

>>> from fastnet import bench
>>> rows = bench.run(configs=["toy", "digits"], repeats=5)
>>> print(bench.format_table(rows))

PyTorch and JAX are optional (``pip install 'fastnet[bench]'`` brings jax,
jaxlib and optax); a peer that does not import has no column.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
from fastnet.bench import jax_baseline, numpy_baseline, suite, torch_baseline
from fastnet.bench.suite import *  # noqa: F401,F403  (the public names, listed in suite.__all__)

__all__ = [*suite.__all__, "jax_baseline", "numpy_baseline", "suite", "torch_baseline"]
