"""fastnet: fast, reproducible CPU training of dense neural networks (MLPs).

The modern recipe of the article -- He initialisation, batch
normalisation, dropout, learning-rate schedules, early stopping -- with the
hot paths (fused dense products, batch norm, dropout, softmax cross-entropy,
optimizer updates) in C, run on fastnet's thread team, bit-identical for any
thread count.

>>> import fastnet
>>> model = fastnet.MLP([64, 128, 128, 10], dropout=0.3)
>>> history = model.fit(X, y, epochs=50, validation_split=0.2, early_stopping=10)

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
from fastnet import _check_build  # noqa: F401  (a clear error in an unbuilt tree)
from fastnet._version import __version__
from fastnet._config import build_info
from fastnet._threads import get_num_threads, set_num_threads, threads
from fastnet import (callbacks, diagnostics, functional, health, init,  # noqa: F401
                     optim, schedules)
from fastnet.model import MLP, History, load

__all__ = ["__version__", "MLP", "History", "load", "build_info", "get_num_threads",
           "set_num_threads", "threads", "callbacks", "diagnostics", "functional", "health",
           "init", "optim", "schedules"]
