"""Learning-rate schedules.

Two layers:

* the article's three functions, :func:`step_decay`,
  :func:`cosine_schedule` and :func:`warmup_cosine`, with its exact
  semantics (including ``warmup_cosine(0, ...) == 0``);
* schedule objects for ``MLP.fit(schedule=...)``.  Each is callable as
  ``sched(t) -> lr``, where ``t`` counts epochs from 0, or optimizer steps
  from 0 when ``sched.per_step`` is true; with ``per_step=True`` the
  "epochs" arguments of the constructor count steps too.  Closed-form
  schedules are pure functions of ``t`` (their :meth:`~Schedule.state_dict`
  is ``{}``), so resuming from a checkpoint only needs ``t``.
  :class:`ReduceLROnPlateau` is the exception: it is driven by the monitored
  metric through :meth:`ReduceLROnPlateau.step` and carries state.

The article's comparison table (``initial_lr=0.001``, 100 epochs, 10 warmup)::

     Epoch     Step   Cosine  Warmup+Cos
    --------------------------------------
         0 0.001000 0.001000    0.000000
         5 0.001000 0.000994    0.000500
        10 0.001000 0.000976    0.001000
        20 0.001000 0.000905    0.000970
        30 0.000500 0.000794    0.000883
        50 0.000500 0.000501    0.000587
        70 0.000250 0.000207    0.000251
        90 0.000125 0.000025    0.000031
        99 0.000125 0.000001    0.000001

:func:`resolve` turns whatever ``fit`` received into a schedule object:
``None`` -> :class:`Constant`, a schedule object -> itself, a plain callable
``epoch -> lr`` -> :class:`LambdaSchedule` (plain callables count epochs).

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import bisect
import math
import numbers

import numpy as np

from fastnet._validation import integer as _int
from fastnet._validation import real_number as _real
from fastnet.callbacks import improved

__all__ = [
    "Constant",
    "CosineAnnealing",
    "ExponentialDecay",
    "LambdaSchedule",
    "MultiStep",
    "OneCycle",
    "ReduceLROnPlateau",
    "Schedule",
    "StepDecay",
    "WarmupCosine",
    "cosine_schedule",
    "resolve",
    "step_decay",
    "warmup_cosine",
]


# ---------------------------------------------------------------------------
# The article's functions
# ---------------------------------------------------------------------------

def step_decay(epoch, initial_lr, decay=0.5, step_size=30):
    """Drop the lr by ``decay`` every ``step_size`` epochs.

    ``lr = initial_lr * decay ** (epoch // step_size)``

    With the defaults and ``initial_lr=0.001``::

        lr = 0.001     if  0 <= epoch < 30
        lr = 0.0005    if 30 <= epoch < 60
        lr = 0.00025   if 60 <= epoch < 90
        lr = 0.000125  if 90 <= epoch < 120
    """
    return initial_lr * (decay ** (epoch // step_size))


def cosine_schedule(epoch, total_epochs, initial_lr, min_lr=1e-6):
    """Smooth cosine decay from ``initial_lr`` to ``min_lr``.

    ``lr = min_lr + (initial_lr - min_lr) * (1 + cos(pi * epoch / total_epochs)) / 2``

    ``epoch = 0`` gives ``initial_lr``, ``epoch = total_epochs`` gives
    ``min_lr``.  As in the article, the formula is not clipped: past
    ``total_epochs`` the cosine rises again (the :class:`CosineAnnealing`
    object holds ``min_lr`` instead).  With ``total_epochs=100``,
    ``initial_lr=0.001``::

        epoch    0     25        50        75        100
        lr    0.001 0.000854  0.000501  0.000147  0.000001
    """
    return min_lr + 0.5 * (initial_lr - min_lr) * (
        1 + np.cos(np.pi * epoch / total_epochs)
    )


def warmup_cosine(epoch, warmup_epochs, total_epochs, initial_lr, min_lr=1e-6):
    """Linear warmup from 0, then cosine decay to ``min_lr``.

    ::

        lr = initial_lr * epoch / warmup_epochs                  epoch < warmup_epochs
        lr = cosine_schedule(epoch - warmup_epochs,
                             total_epochs - warmup_epochs,
                             initial_lr, min_lr)                 otherwise

    Epoch 0 trains with lr 0, exactly as in the article.  The article's version has
    no ``min_lr`` argument and uses :func:`cosine_schedule`'s default; the
    default here (``1e-6``) reproduces its numbers.  With ``warmup_epochs=10``,
    ``total_epochs=100``, ``initial_lr=0.001``::

        epoch    0       5      10        55        99
        lr     0.0  0.0005   0.001  0.000501  0.000001
    """
    if epoch < warmup_epochs:
        return initial_lr * epoch / warmup_epochs
    return cosine_schedule(
        epoch - warmup_epochs,
        total_epochs - warmup_epochs,
        initial_lr,
        min_lr,
    )


# ---------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------

def _lr(value, name="initial_lr"):
    return _real(value, name, low=0.0, low_open=True)


def _min_lr(min_lr, top, top_name):
    min_lr = _real(min_lr, "min_lr", low=0.0)
    if min_lr > top:
        raise ValueError(f"min_lr ({min_lr}) must not exceed {top_name} ({top}); "
                         "pass a smaller min_lr")
    return min_lr


def _time(t):
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, numbers.Real):
        raise TypeError(f"t must be a non-negative number of epochs or steps, "
                        f"got {type(t).__name__}")
    if not t >= 0 or not math.isfinite(t):
        raise ValueError(f"t must be a finite number >= 0, got {t}")
    return t


# ---------------------------------------------------------------------------
# Schedule objects
# ---------------------------------------------------------------------------

class Schedule:
    """Base class of the schedule objects.

    Attributes
    ----------
    initial_lr : float
        The lr at ``t = 0`` (for warmup schedules: the lr reached at the end
        of the warmup).
    per_step : bool
        False: ``t`` counts epochs; True: ``t`` counts optimizer steps.
    needs_metric : bool
        True: ``fit`` calls ``step(logs[monitor])`` at the end of every epoch
        (:class:`ReduceLROnPlateau`).
    monitor : str or None
        The epoch log entry a metric-driven schedule is stepped with (None:
        fit's own, "val_loss" with validation data, else "loss").

    Subclasses implement :meth:`lr_at`; ``sched(t)`` validates ``t`` and
    returns ``float(lr_at(t))``.
    """

    per_step = False
    needs_metric = False
    monitor = None

    def __call__(self, t):
        return float(self.lr_at(_time(t)))

    def lr_at(self, t):
        raise NotImplementedError

    def state_dict(self):
        """JSON-serialisable state; ``{}`` for the closed-form schedules."""
        return {}

    def load_state_dict(self, state):
        """Restore what :meth:`state_dict` returned."""
        if state:
            raise ValueError(f"{type(self).__name__} is stateless; got state keys "
                             f"{sorted(state)}")

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._repr_args())
        return f"{type(self).__name__}({args})"

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("per_step", self.per_step)]

    def record_name(self):
        """How a checkpoint's run record names this schedule (its repr)."""
        return repr(self)


class Constant(Schedule):
    """A constant learning rate: ``lr = initial_lr`` for every ``t``.

    What ``fit`` uses when no schedule is given (``resolve(None, lr)``).
    """

    def __init__(self, lr, *, per_step=False):
        self.initial_lr = _lr(lr, "lr")
        self.per_step = bool(per_step)

    def lr_at(self, t):
        return self.initial_lr


class LambdaSchedule(Schedule):
    """Wrap a plain callable ``epoch -> lr``.

    Plain callables passed to ``fit(schedule=...)`` always count epochs
    (``per_step=False``) and must be pure functions of the epoch (they have
    no state to checkpoint).  The returned lr is checked: a value that is
    not a finite number ``>= 0`` raises ``ValueError`` naming the epoch.
    """

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"schedule must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.per_step = False

    @property
    def initial_lr(self):
        return self(0)

    def record_name(self):
        # the repr holds an address; a partial has no __qualname__
        fn = self.fn
        return f"LambdaSchedule({getattr(fn, '__qualname__', type(fn).__name__)})"

    def __call__(self, t):
        t = _time(t)
        lr = self.fn(t)
        try:
            lr = float(lr)
        except (TypeError, ValueError):
            raise ValueError(f"schedule returned {lr!r} for epoch {t}; expected a number") \
                from None
        if not (math.isfinite(lr) and lr >= 0.0):
            raise ValueError(f"schedule returned lr={lr} for epoch {t}; "
                             "it must be a finite number >= 0")
        return lr

    def _repr_args(self):
        return [("fn", self.fn)]


class StepDecay(Schedule):
    """Multiply the lr by ``decay`` every ``step_size`` epochs (the article's step decay).

    ``lr(t) = initial_lr * decay ** (t // step_size)``

    ``StepDecay(0.001)`` (``decay=0.5``, ``step_size=30``)::

        lr = 0.001     if  0 <= t < 30
        lr = 0.0005    if 30 <= t < 60
        lr = 0.00025   if 60 <= t < 90

    Parameters
    ----------
    initial_lr : float > 0
    decay : float in (0, 1]
    step_size : int >= 1
    per_step : bool, keyword-only
        Count ``t`` (and ``step_size``) in optimizer steps instead of epochs.
    """

    def __init__(self, initial_lr, decay=0.5, step_size=30, *, per_step=False):
        self.initial_lr = _lr(initial_lr)
        self.decay = _real(decay, "decay", low=0.0, high=1.0, low_open=True)
        self.step_size = _int(step_size, "step_size", low=1)
        self.per_step = bool(per_step)

    def lr_at(self, t):
        return step_decay(t, self.initial_lr, self.decay, self.step_size)

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("decay", self.decay),
                ("step_size", self.step_size), ("per_step", self.per_step)]


class MultiStep(Schedule):
    """Multiply the lr by ``gamma`` at each milestone.

    ``lr(t) = initial_lr * gamma ** (number of milestones <= t)``

    ``MultiStep(0.05, milestones=[30, 80])`` (``gamma=0.1``)::

        lr = 0.05      if       t < 30
        lr = 0.005     if 30 <= t < 80
        lr = 0.0005    if 80 <= t

    Parameters
    ----------
    initial_lr : float > 0
    milestones : sequence of int
        Strictly increasing, each >= 1.
    gamma : float in (0, 1]
    per_step : bool, keyword-only
    """

    def __init__(self, initial_lr, milestones, gamma=0.1, *, per_step=False):
        self.initial_lr = _lr(initial_lr)
        try:
            ms = list(milestones)
        except TypeError:
            raise TypeError("milestones must be a sequence of ints, got "
                            f"{type(milestones).__name__}") from None
        ms = [_int(m, "milestone", low=1) for m in ms]
        if any(b <= a for a, b in zip(ms, ms[1:])):
            raise ValueError(f"milestones must be strictly increasing, got {ms}")
        self.milestones = ms
        self.gamma = _real(gamma, "gamma", low=0.0, high=1.0, low_open=True)
        self.per_step = bool(per_step)

    def lr_at(self, t):
        return self.initial_lr * self.gamma ** bisect.bisect_right(self.milestones, t)

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("milestones", self.milestones),
                ("gamma", self.gamma), ("per_step", self.per_step)]


class ExponentialDecay(Schedule):
    """Multiply the lr by ``gamma`` every epoch (or step).

    ``lr(t) = initial_lr * gamma ** t``

    ``ExponentialDecay(0.01, gamma=0.9)``::

        t    0      1       2        3         10
        lr 0.01  0.009  0.0081  0.00729  0.0034868

    Parameters
    ----------
    initial_lr : float > 0
    gamma : float in (0, 1]
    per_step : bool, keyword-only
    """

    def __init__(self, initial_lr, gamma, *, per_step=False):
        self.initial_lr = _lr(initial_lr)
        self.gamma = _real(gamma, "gamma", low=0.0, high=1.0, low_open=True)
        self.per_step = bool(per_step)

    def lr_at(self, t):
        return self.initial_lr * self.gamma ** t

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("gamma", self.gamma),
                ("per_step", self.per_step)]


class CosineAnnealing(Schedule):
    """Cosine decay from ``initial_lr`` to ``min_lr`` over ``total_epochs``.

    ::

        lr(t) = min_lr + (initial_lr - min_lr) * (1 + cos(pi * t / total_epochs)) / 2
                                                              for t <= total_epochs
        lr(t) = min_lr                                        for t >  total_epochs

    Unlike :func:`cosine_schedule` it holds ``min_lr`` after the end instead
    of rising again.  ``CosineAnnealing(0.001, total_epochs=100)``::

        t    0        25        50        75        99    >= 100
        lr 0.001  0.000854  0.000501  0.000147  0.000001  0.000001

    Parameters
    ----------
    initial_lr : float > 0
    total_epochs : int >= 1
        Length of the decay (in steps with ``per_step=True``).
    min_lr : float in [0, initial_lr]
    per_step : bool, keyword-only
    """

    def __init__(self, initial_lr, total_epochs, min_lr=1e-6, *, per_step=False):
        self.initial_lr = _lr(initial_lr)
        self.total_epochs = _int(total_epochs, "total_epochs", low=1)
        self.min_lr = _min_lr(min_lr, self.initial_lr, "initial_lr")
        self.per_step = bool(per_step)

    def lr_at(self, t):
        if t >= self.total_epochs:
            return self.min_lr
        return cosine_schedule(t, self.total_epochs, self.initial_lr, self.min_lr)

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("total_epochs", self.total_epochs),
                ("min_lr", self.min_lr), ("per_step", self.per_step)]


class WarmupCosine(Schedule):
    """Linear warmup from 0 to ``initial_lr``, then cosine decay to ``min_lr``.

    The article's recommended schedule (:func:`warmup_cosine`)::

        lr(t) = initial_lr * t / warmup_epochs                   t < warmup_epochs
        lr(t) = cosine_schedule(t - warmup_epochs, total_epochs - warmup_epochs,
                                initial_lr, min_lr)              t <= total_epochs
        lr(t) = min_lr                                           t >  total_epochs

    ``total_epochs`` includes the warmup.  ``WarmupCosine(0.001, 10, 100)``::

        t    0       5      10      20        50        90        99
        lr  0.0  0.0005  0.001  0.00097  0.000587  0.000031  0.000001

    Parameters
    ----------
    initial_lr : float > 0
        The lr at the end of the warmup (the peak).
    warmup_epochs : int, 0 <= warmup_epochs < total_epochs
    total_epochs : int >= 1
    min_lr : float in [0, initial_lr]
    per_step : bool, keyword-only
        Count ``t``, ``warmup_epochs`` and ``total_epochs`` in optimizer steps.
    """

    def __init__(self, initial_lr, warmup_epochs, total_epochs, min_lr=1e-6, *,
                 per_step=False):
        self.initial_lr = _lr(initial_lr)
        self.warmup_epochs = _int(warmup_epochs, "warmup_epochs", low=0)
        self.total_epochs = _int(total_epochs, "total_epochs", low=1)
        if self.warmup_epochs >= self.total_epochs:
            raise ValueError(f"warmup_epochs ({self.warmup_epochs}) must be smaller than "
                             f"total_epochs ({self.total_epochs})")
        self.min_lr = _min_lr(min_lr, self.initial_lr, "initial_lr")
        self.per_step = bool(per_step)

    def lr_at(self, t):
        if t >= self.total_epochs:
            return self.min_lr
        return warmup_cosine(t, self.warmup_epochs, self.total_epochs, self.initial_lr,
                             self.min_lr)

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("warmup_epochs", self.warmup_epochs),
                ("total_epochs", self.total_epochs), ("min_lr", self.min_lr),
                ("per_step", self.per_step)]


def _cos_anneal(start, end, pct):
    """Cosine interpolation from ``start`` (pct=0) to ``end`` (pct=1)."""
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


class OneCycle(Schedule):
    """The 1cycle policy: cosine warm-up to ``max_lr``, then cosine decay to a tiny lr.

    The same curve as PyTorch's ``OneCycleLR(anneal_strategy="cos",
    three_phase=False)`` (without the momentum cycling), with::

        initial_lr = max_lr / div_factor
        final_lr   = initial_lr / final_div_factor
        peak       = pct_start * total_steps - 1        (0-based step of max_lr)

        lr(t) = cos_anneal(initial_lr, max_lr, t / peak)                  t <= peak
        lr(t) = cos_anneal(max_lr, final_lr,
                           (t - peak) / (total_steps - 1 - peak))          t <= total_steps - 1
        lr(t) = final_lr                                                  t >= total_steps - 1

    where ``cos_anneal(a, b, p) = b + (a - b) * (1 + cos(pi * p)) / 2``.
    So the first ``pct_start * total_steps`` steps ramp up, the last step
    (``t = total_steps - 1``) uses ``final_lr``, and every later ``t`` holds
    ``final_lr``: stepping past the end never raises (PyTorch raises
    "Tried to step N times", pytorch/pytorch#38170), so a resumed or
    longer-than-planned run keeps training at the final lr.

    ``OneCycle(0.1, total_steps=100)`` (``pct_start=0.3``)::

        t      0        10       29       50        75        99    >= 100
        lr  0.004   0.02952    0.1   0.07939   0.02631   4e-07    4e-07

    Parameters
    ----------
    max_lr : float > 0
    total_steps : int >= 2
        Length of the cycle (in epochs with ``per_step=False``).
    pct_start : float in (0, 1)
        Fraction of the cycle spent increasing the lr.
    div_factor : float >= 1
    final_div_factor : float >= 1
    per_step : bool, keyword-only, default True
    """

    def __init__(self, max_lr, total_steps, pct_start=0.3, div_factor=25.0,
                 final_div_factor=1e4, *, per_step=True):
        self.max_lr = _lr(max_lr, "max_lr")
        self.total_steps = _int(total_steps, "total_steps", low=2)
        self.pct_start = _real(pct_start, "pct_start", low=0.0, high=1.0,
                               low_open=True, high_open=True)
        self.div_factor = _real(div_factor, "div_factor", low=1.0)
        self.final_div_factor = _real(final_div_factor, "final_div_factor", low=1.0)
        self.per_step = bool(per_step)
        self.initial_lr = self.max_lr / self.div_factor
        self.final_lr = self.initial_lr / self.final_div_factor
        self.peak_step = self.pct_start * self.total_steps - 1

    def lr_at(self, t):
        last = self.total_steps - 1
        if t >= last:
            return self.final_lr
        peak = self.peak_step
        if t <= peak:
            return _cos_anneal(self.initial_lr, self.max_lr, t / peak if peak > 0 else 1.0)
        return _cos_anneal(self.max_lr, self.final_lr, (t - peak) / (last - peak))

    def _repr_args(self):
        return [("max_lr", self.max_lr), ("total_steps", self.total_steps),
                ("pct_start", self.pct_start), ("div_factor", self.div_factor),
                ("final_div_factor", self.final_div_factor), ("per_step", self.per_step)]


class ReduceLROnPlateau(Schedule):
    """Reduce the lr by ``factor`` when the monitored metric stops improving.

    Driven by the metric, not by ``t``: ``fit`` calls :meth:`step` once at
    the end of every epoch with the epoch's value of :attr:`monitor`;
    ``sched(t)`` returns the lr to train epoch ``t`` with.

    Optional linear warmup (the same ramp as :func:`warmup_cosine`)::

        lr(t) = initial_lr * t / warmup_epochs     for t < warmup_epochs

    Plateau control starts after the warmup: metrics reported for epochs
    ``0 .. warmup_epochs - 1`` are ignored.  Then, per epoch (the rules of
    Keras' ``ReduceLROnPlateau``):

    * improvement means ``metric < best - min_delta`` (mode ``"min"``) or
      ``metric > best + min_delta`` (mode ``"max"``); the first metric after
      the warmup is always an improvement; NaN never is;
    * an improvement resets the count of bad epochs;
    * after ``patience`` consecutive bad epochs, ``lr = max(lr * factor,
      min_lr)``, the count restarts and the next ``cooldown`` epochs are not
      counted as bad.

    ``ReduceLROnPlateau(0.1, factor=0.5, patience=2)`` fed the losses
    ``1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.95``::

        epoch           0     1     2     3     4      5      6
        metric        1.0   0.9  0.95  0.93  0.92   0.91   0.95
        bad epochs      0     0     1     2->0  1     2->0   1
        lr (next)     0.1   0.1   0.1   0.05  0.05  0.025  0.025

    Parameters
    ----------
    initial_lr : float > 0
    factor : float in (0, 1)
    patience : int >= 0
    mode : {"min", "max"}
    min_delta : float >= 0
        Absolute margin a new value must beat the best by.
    cooldown : int >= 0
    min_lr : float in [0, initial_lr]
    warmup_epochs : int >= 0
    monitor : str, keyword-only, default "val_loss"
        Name of the epoch log entry ``fit`` passes to :meth:`step`.
    """

    needs_metric = True

    def __init__(self, initial_lr, factor=0.1, patience=10, mode="min", min_delta=1e-4,
                 cooldown=0, min_lr=0.0, warmup_epochs=0, *, monitor="val_loss"):
        self.initial_lr = _lr(initial_lr)
        self.factor = _real(factor, "factor", low=0.0, high=1.0, low_open=True, high_open=True)
        self.patience = _int(patience, "patience", low=0)
        if mode not in ("min", "max"):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        self.mode = mode
        self.min_delta = _real(min_delta, "min_delta", low=0.0)
        self.cooldown = _int(cooldown, "cooldown", low=0)
        self.min_lr = _min_lr(min_lr, self.initial_lr, "initial_lr")
        self.warmup_epochs = _int(warmup_epochs, "warmup_epochs", low=0)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.reset()

    def reset(self):
        """Forget all progress: lr back to ``initial_lr``, no best value."""
        self.lr = self.initial_lr
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0
        self.epochs_seen = 0

    def lr_at(self, t):
        if t < self.warmup_epochs:
            return self.initial_lr * t / self.warmup_epochs
        return self.lr

    def _improved(self, value):
        return improved(value, self.best, self.mode, self.min_delta)

    def step(self, metric):
        """Report the monitored metric of the epoch just finished.

        Returns
        -------
        float
            The lr for the next epoch, ``sched(epochs_seen)``.
        """
        if isinstance(metric, (bool, np.bool_)) or not isinstance(metric, numbers.Real):
            raise TypeError(f"metric must be a real number, got {type(metric).__name__}")
        metric = float(metric)
        epoch = self.epochs_seen
        self.epochs_seen += 1
        if epoch >= self.warmup_epochs:
            self._plateau_update(metric)
        return self(self.epochs_seen)

    def _plateau_update(self, metric):
        in_cooldown = self.cooldown_counter > 0
        if in_cooldown:
            self.cooldown_counter -= 1
        if self._improved(metric):
            self.best = metric
            self.wait = 0
        elif in_cooldown:
            self.wait = 0
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.lr = max(self.lr * self.factor, self.min_lr)
                self.cooldown_counter = self.cooldown
                self.wait = 0

    def state_dict(self):
        """``{"lr", "best", "wait", "cooldown_counter", "epochs_seen"}`` (JSON-safe)."""
        return {"lr": self.lr, "best": self.best, "wait": self.wait,
                "cooldown_counter": self.cooldown_counter, "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state):
        keys = {"lr", "best", "wait", "cooldown_counter", "epochs_seen"}
        if set(state) != keys:
            raise ValueError(f"ReduceLROnPlateau state must have keys {sorted(keys)}, "
                             f"got {sorted(state)}")
        self.lr = float(state["lr"])
        self.best = None if state["best"] is None else float(state["best"])
        self.wait = int(state["wait"])
        self.cooldown_counter = int(state["cooldown_counter"])
        self.epochs_seen = int(state["epochs_seen"])

    def _repr_args(self):
        return [("initial_lr", self.initial_lr), ("factor", self.factor),
                ("patience", self.patience), ("mode", self.mode),
                ("min_delta", self.min_delta), ("cooldown", self.cooldown),
                ("min_lr", self.min_lr), ("warmup_epochs", self.warmup_epochs),
                ("monitor", self.monitor)]


def contract(schedule):
    """(per_step, needs_metric, monitor) of a resolved schedule: the attributes
    :class:`Schedule` declares, read once, with its defaults for schedule-like objects
    of other classes."""
    if isinstance(schedule, Schedule):
        return bool(schedule.per_step), bool(schedule.needs_metric), schedule.monitor
    return (bool(getattr(schedule, "per_step", False)),
            bool(getattr(schedule, "needs_metric", False)), getattr(schedule, "monitor", None))


def resolve(schedule, lr):
    """The schedule object ``fit`` should use.

    Parameters
    ----------
    schedule : None, Schedule or callable
        ``None`` gives ``Constant(lr)``; a schedule object (anything with a
        ``per_step`` attribute that is callable) is returned unchanged and
        ``lr`` is ignored; a plain callable ``epoch -> lr`` is wrapped in
        :class:`LambdaSchedule` and counts epochs.
    lr : float
        The constant lr used when ``schedule`` is None.

    Raises
    ------
    TypeError
        If ``schedule`` is neither None nor callable.
    """
    if schedule is None:
        return Constant(lr)
    if isinstance(schedule, Schedule):
        return schedule
    if callable(schedule):
        if hasattr(schedule, "per_step"):
            return schedule
        return LambdaSchedule(schedule)
    raise TypeError("schedule must be None, a fastnet.schedules object or a callable "
                    f"epoch -> lr, got {type(schedule).__name__}")
