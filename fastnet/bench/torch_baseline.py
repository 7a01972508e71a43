"""The PyTorch eager baseline: the same recipe as nn.Sequential + torch.optim.SGD.

torch is imported lazily (``available()`` tells whether it can be); fastnet
itself never needs it.  The thread count PyTorch uses is set for the epoch
and restored afterwards (default 2 threads, as in issue 4's goals).
"""
import contextlib
import math

import numpy as np

__all__ = ["TorchMLP", "available"]

_torch = None


def _import_torch():
    global _torch
    if _torch is None:
        import torch
        _torch = torch
    return _torch


def available():
    """True when PyTorch can be imported."""
    try:
        _import_torch()
    except ImportError:
        return False
    return True


def version():
    """PyTorch's version string, or None."""
    return _import_torch().__version__ if available() else None


@contextlib.contextmanager
def _torch_threads(n):
    torch = _import_torch()
    previous = torch.get_num_threads()
    if n is not None and n != previous:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


class TorchMLP:
    """(Linear(bias=False) -> BatchNorm1d -> ReLU -> Dropout) x hidden, then Linear,
    trained with CrossEntropyLoss and SGD(momentum) on shuffled mini-batches."""

    def __init__(self, layer_sizes, dropout=0.3, seed=0, lr=0.01, momentum=0.9, num_threads=2):
        torch = _import_torch()
        nn = torch.nn
        self.num_threads = num_threads
        self.generator = torch.Generator().manual_seed(seed)
        sizes = list(layer_sizes)
        layers = []
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for fan_in, fan_out in zip(sizes[:-2], sizes[1:-1]):
                linear = nn.Linear(fan_in, fan_out, bias=False)
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")   # He
                layers += [linear, nn.BatchNorm1d(fan_out), nn.ReLU(), nn.Dropout(dropout)]
            last = nn.Linear(sizes[-2], sizes[-1])
            nn.init.kaiming_normal_(last.weight, nonlinearity="relu")
            nn.init.zeros_(last.bias)
            layers.append(last)
        self.model = nn.Sequential(*layers)
        self.model.train()
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=momentum)

    def train_epoch(self, X, y, batch_size=64):
        """One epoch; X float32 (n, d) and y int labels (n,), NumPy or torch.

        Returns the mean training loss."""
        torch = _import_torch()
        X = torch.as_tensor(np.ascontiguousarray(X)) if isinstance(X, np.ndarray) else X
        y = torch.as_tensor(np.asarray(y, dtype=np.int64)) if isinstance(y, np.ndarray) else y
        n = X.shape[0]
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        total = 0.0
        with _torch_threads(self.num_threads):
            order = torch.randperm(n, generator=self.generator)
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                if idx.shape[0] < 2:      # batch norm needs 2 rows (fastnet skips it too)
                    continue
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(model(X[idx]), y[idx])
                loss.backward()
                opt.step()
                total += loss.item() * idx.shape[0]
        return total / n if math.isfinite(total) else math.nan
