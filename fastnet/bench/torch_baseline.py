"""The PyTorch baselines: the same recipe as nn.Sequential + torch.optim.SGD,
eager or through ``torch.compile``.

torch is imported lazily (``available()`` tells whether it can be); fastnet
itself never needs it.  The thread count PyTorch uses is set for the epoch
(and for :meth:`TorchMLP.predict`) and restored afterwards (default 2
threads, as in the issues' goals).
"""
import contextlib
import math

import numpy as np

__all__ = ["TorchMLP", "available", "torch_threads", "version"]

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
def torch_threads(n):
    """Run the block with PyTorch on `n` threads (None: as it is), then restore."""
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
    trained with CrossEntropyLoss and SGD(momentum) on shuffled mini-batches.

    ``compile=True`` trains ``torch.compile(model)`` (the default inductor
    backend); the first epoch then includes the compilation."""

    def __init__(self, layer_sizes, dropout=0.3, seed=0, lr=0.01, momentum=0.9, num_threads=2,
                 compile=False):
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
        self.module = nn.Sequential(*layers)
        self.module.train()
        self.model = torch.compile(self.module) if compile else self.module
        self.loss_fn = nn.CrossEntropyLoss()
        self.optimizer = torch.optim.SGD(self.module.parameters(), lr=lr, momentum=momentum)

    def train_epoch(self, X, y, batch_size=64, shuffle=True):
        """One epoch of (shuffled) mini-batches; X float32 (n, d) and y int labels
        (n,), NumPy or torch.

        Returns the mean training loss."""
        torch = _import_torch()
        X = torch.as_tensor(np.ascontiguousarray(X)) if isinstance(X, np.ndarray) else X
        y = torch.as_tensor(np.asarray(y, dtype=np.int64)) if isinstance(y, np.ndarray) else y
        n = X.shape[0]
        model, loss_fn, opt = self.model, self.loss_fn, self.optimizer
        total = 0.0
        with torch_threads(self.num_threads):
            order = torch.randperm(n, generator=self.generator) if shuffle else torch.arange(n)
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

    @contextlib.contextmanager
    def evaluating(self):
        """Run the block with the model in eval mode (running statistics, no
        dropout), then back in training mode."""
        self.module.eval()
        try:
            yield self
        finally:
            self.module.train()

    def predict(self, X):
        """Class labels of X (a torch tensor) under ``torch.no_grad``, on PyTorch's
        current thread count; inside :meth:`evaluating` for inference proper."""
        torch = _import_torch()
        with torch.no_grad():
            return self.module(X).argmax(dim=1)

    def _linears_and_norms(self):
        nn = _import_torch().nn
        mods = list(self.module)
        linears = [m for m in mods if isinstance(m, nn.Linear)]
        norms = [m for m in mods if isinstance(m, nn.BatchNorm1d)]
        return linears, norms

    def get_weights(self):
        """NumPy copies in the order of ``fastnet.MLP.get_weights`` (W as (in, out))."""
        linears, norms = self._linears_and_norms()
        out = []
        for lin, bn in zip(linears, norms):
            out += [lin.weight.T, bn.weight, bn.bias, bn.running_mean, bn.running_var]
        out += [linears[-1].weight.T, linears[-1].bias]
        return [t.detach().numpy().copy() for t in out]

    def set_weights(self, weights):
        """Load arrays in fastnet's order (see :meth:`get_weights`); resets the
        optimizer's momentum."""
        torch = _import_torch()
        linears, norms = self._linears_and_norms()
        targets = []
        for lin, bn in zip(linears, norms):
            targets += [lin.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var]
        targets += [linears[-1].weight, linears[-1].bias]
        weights = list(weights)
        if len(weights) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(weights)}")
        with torch.no_grad():
            for t, w in zip(targets, weights):
                w = torch.as_tensor(np.asarray(w, dtype=np.float32))
                t.copy_(w.T if t.dim() == 2 else w)
        self.optimizer.state.clear()
