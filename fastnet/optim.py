"""Optimizers: SGD (momentum, Nesterov), Adam and AdamW.

An optimizer holds hyper-parameters and its state (step count, moment
buffers).  Updates run in native code, in place, over one flat parameter
array: inside :meth:`fastnet.MLP.fit` the whole step (forward, backward and
update) is a single native call; :meth:`Optimizer.step` updates arrays you
manage yourself.

The update rules are PyTorch's (``torch.optim.SGD``, ``Adam``, ``AdamW``),
so results can be checked against it:

* SGD: ``g = grad + wd * p``; ``buf = g`` on the first step, then
  ``buf = momentum * buf + g``; ``p -= lr * (g + momentum * buf if nesterov else buf)``
  (Sutskever et al. 2013).
* Adam (Kingma & Ba 2015): ``g = grad + wd * p`` (L2 added to the gradient);
  ``m = b1 m + (1 - b1) g``; ``v = b2 v + (1 - b2) g^2``;
  ``p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)``.
* AdamW (Loshchilov & Hutter 2019): as Adam without the L2 term, after the
  decoupled decay ``p *= 1 - lr * wd``.
"""
from typing import NamedTuple

import numpy as np

from fastnet import _kernels, _network
from fastnet._validation import float_array, real_number

__all__ = ["OPTIMIZERS", "Optimizer", "SGD", "Adam", "AdamW", "get"]


class NativeConfig(NamedTuple):
    """What the native update reads: every field of every kind, by name (a kind ignores
    the fields it has no use for: SGD the betas, Adam the momentum)."""

    kind: int
    momentum: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    nesterov: bool = False

    def hyper(self):
        """The fields after ``kind``, in the order of the native signatures."""
        return self[1:]


class Optimizer:
    """Base class: hyper-parameters, state and the native update."""

    name = None
    _hyper = ()

    def __init__(self, lr):
        # > 0, as for a constant schedule: fit(lr=0) and fit(lr=-1) report one range
        self.lr = real_number(lr, "lr", low=0.0, low_open=True)
        self.t = 0               # updates taken
        self._buffers = []       # per parameter array: (buf1, buf2)

    @property
    def kind(self):
        """The native code of this optimizer (the table lives in ``fastnet._network``)."""
        return _network.OPTIMIZERS[self.name]

    def _new_buffers(self, size, dtype):
        """State buffers for a flat parameter array of `size` elements."""
        raise NotImplementedError

    def buffers_for(self, size, dtype, index=0):
        """The state buffers of parameter array `index` (allocated on first use)."""
        while len(self._buffers) <= index:
            self._buffers.append(None)
        bufs = self._buffers[index]
        if bufs is None or _size(bufs) != size or _dtype(bufs, dtype) != np.dtype(dtype):
            bufs = self._new_buffers(size, dtype)
            self._buffers[index] = bufs
        return bufs

    def step(self, params, grads, *, grad_scale=1.0):
        """Update arrays in place: ``params`` and ``grads`` are arrays or
        equal-length lists of arrays (C-contiguous float32/float64)."""
        single = isinstance(params, np.ndarray)
        params = [params] if single else list(params)
        grads = [grads] if isinstance(grads, np.ndarray) else list(grads)
        if len(params) != len(grads):
            raise ValueError(f"{len(params)} parameter arrays but {len(grads)} gradients")
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or not p.flags.c_contiguous \
                    or not p.flags.writeable:
                raise TypeError("parameters must be writeable C-contiguous numpy arrays "
                                "(they are updated in place)")
            g = float_array(g, "grads", dtype=p.dtype)
            if g.shape != p.shape:
                raise ValueError(f"grads has shape {g.shape} but params has shape {p.shape}")
            b1, b2 = self.buffers_for(p.size, p.dtype, i)
            _kernels.optimizer_update(p.reshape(-1), g.reshape(-1), b1, b2, self.kind,
                                      self.lr, *self.native_config().hyper(), self.t,
                                      float(grad_scale))
        self.t += 1

    def native_config(self):
        """The hyper-parameters the native update reads, as a :class:`NativeConfig`."""
        raise NotImplementedError

    def state_dict(self):
        """Hyper-parameters, step count and buffers (arrays), for checkpoints."""
        d = {"name": self.name, "lr": self.lr, "t": self.t}
        d.update({h: getattr(self, h) for h in self._hyper})
        d["buffers"] = [None if b is None else [None if a is None else a.copy() for a in b]
                        for b in self._buffers]
        return d

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned (buffers are copied)."""
        if state.get("name") != self.name:
            raise ValueError(f"state is for optimizer {state.get('name')!r}, not {self.name!r}")
        self.lr = state["lr"]
        self.t = int(state["t"])
        for h in self._hyper:
            setattr(self, h, state[h])
        self._buffers = [None if b is None else tuple(None if a is None else np.array(a)
                                                      for a in b)
                         for b in state.get("buffers", [])]

    def __repr__(self):
        args = ", ".join(f"{h}={getattr(self, h)!r}" for h in ("lr",) + self._hyper)
        return f"{type(self).__name__}({args})"


def _size(bufs):
    return next((a.size for a in bufs if a is not None), 0)


def _dtype(bufs, default):
    return next((a.dtype for a in bufs if a is not None), np.dtype(default))


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum and L2 decay."""

    name = "sgd"
    _hyper = ("momentum", "nesterov", "weight_decay")

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr)
        self.momentum = real_number(momentum, "momentum", low=0.0, high=1.0)
        self.nesterov = bool(nesterov)
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)

    def _new_buffers(self, size, dtype):
        return (np.zeros(size, dtype) if self.momentum else None, None)

    def native_config(self):
        return NativeConfig(self.kind, momentum=self.momentum, weight_decay=self.weight_decay,
                            nesterov=self.nesterov)


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is L2 added to the gradient."""

    name = "adam"
    _hyper = ("beta1", "beta2", "eps", "weight_decay")

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(lr)
        self.beta1 = real_number(beta1, "beta1", low=0.0, high=1.0, high_open=True)
        self.beta2 = real_number(beta2, "beta2", low=0.0, high=1.0, high_open=True)
        self.eps = real_number(eps, "eps", low=0.0)
        self.weight_decay = real_number(weight_decay, "weight_decay", low=0.0)

    def _new_buffers(self, size, dtype):
        return (np.zeros(size, dtype), np.zeros(size, dtype))

    def native_config(self):
        return NativeConfig(self.kind, beta1=self.beta1, beta2=self.beta2, eps=self.eps,
                            weight_decay=self.weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay ``p *= 1 - lr * weight_decay``."""

    name = "adamw"

    def __init__(self, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.01):
        super().__init__(lr, beta1, beta2, eps, weight_decay)


OPTIMIZERS = {cls.name: cls for cls in (SGD, Adam, AdamW)}
"""The optimizer kinds: name -> class.  The name is the class's ``name``, which also
keys its native code in ``_network.OPTIMIZERS`` (:attr:`Optimizer.kind`); a new kind is
an Optimizer subclass added here, with its native update and code."""


def get(optimizer, lr=None, weight_decay=None):
    """An optimizer from a name of :data:`OPTIMIZERS` ("sgd", "adam", "adamw") or an
    Optimizer (returned as is)."""
    if isinstance(optimizer, Optimizer):
        return optimizer
    if not isinstance(optimizer, str) or optimizer.lower() not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)} or an Optimizer, "
                         f"got {optimizer!r}")
    kwargs = {}
    if lr is not None:
        kwargs["lr"] = lr
    if weight_decay is not None:
        kwargs["weight_decay"] = weight_decay
    return OPTIMIZERS[optimizer.lower()](**kwargs)
