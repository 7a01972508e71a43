"""Training callbacks.

``MLP.fit(callbacks=[...])`` calls, on every callback, the Keras-style hooks
below (epochs count from 0; ``logs`` is a dict of floats such as ``"loss"``,
``"val_loss"``, ``"accuracy"``, ``"lr"``)::

    cb.model = model                       # before anything else
    cb.on_train_begin(logs)
    for epoch ...:
        cb.on_epoch_begin(epoch, logs)
        for batch ...:
            cb.on_batch_end(batch, logs)
        cb.on_epoch_end(epoch, logs)       # logs hold the epoch's metrics
        if model.stop_training: break
    cb.on_train_end(logs)                  # also after an early stop

:class:`Callback` is an optional base class with no-op hooks; ``fit`` also
accepts any object that has some of these methods.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import math
import numbers
import warnings

import numpy as np

from fastnet._validation import integer as _int
from fastnet._validation import real_number

__all__ = ["Callback", "EarlyStopping", "improved"]


def improved(value, best, mode="min", min_delta=0.0, relative=False):
    """Whether ``value`` improves on ``best``: the one rule of early stopping,
    ReduceLROnPlateau and fit's best-state tracking.

    ::

        mode "min":  value < best - margin        mode "max":  value > best + margin
        margin = min_delta (absolute), or min_delta * |best| (relative=True)

    NaN never improves; ``best=None`` (nothing seen yet) is improved on by any
    other value, and so is an infinite ``best`` (the usual "nothing seen yet" start)
    by any finite value, in either margin mode.

    Parameters
    ----------
    value : float
    best : float or None
    mode : {"min", "max"}
    min_delta : float >= 0
    relative : bool
        Measure ``min_delta`` as a fraction of ``|best|`` (PyTorch's
        ``threshold_mode="rel"``) instead of in the metric's units.
    """
    if math.isnan(value):
        return False
    if best is None:
        return True
    if relative:      # a fraction of |best|; of an infinite best it would be inf - inf
        margin = min_delta * abs(best) if min_delta and math.isfinite(best) else 0.0
    else:
        margin = min_delta
    return value < best - margin if mode == "min" else value > best + margin


class Callback:
    """Base class of fit callbacks: every hook is a no-op.

    Attributes
    ----------
    model : MLP or None
        The model being trained; set by ``fit`` before :meth:`on_train_begin`.
    """

    model = None

    def on_train_begin(self, logs=None):
        """Called once before the first epoch."""

    def on_epoch_begin(self, epoch, logs=None):
        """Called at the start of every epoch (``epoch`` counts from 0)."""

    def on_batch_end(self, batch, logs=None):
        """Called after every optimizer step (``batch`` counts from 0 in each epoch)."""

    def on_epoch_end(self, epoch, logs=None):
        """Called after every epoch with the epoch's metrics in ``logs``."""

    def on_train_end(self, logs=None):
        """Called once after the last epoch, however training ended."""


def _resolve_mode(mode, monitor):
    if mode not in ("min", "max", "auto"):
        raise ValueError(f"mode must be one of ['auto', 'max', 'min'], got {mode!r}")
    if mode == "auto":
        return "max" if "acc" in monitor.lower() else "min"
    return mode


class EarlyStopping(Callback):
    """Stop training when a monitored metric has stopped improving.

    The article's early stopping, usable two ways:

    * directly, with the article's protocol: call :meth:`check` once per epoch
      with the validation loss and the model's weights; it returns True when
      training should stop and keeps copies of the best weights;
    * as a ``fit`` callback: :meth:`on_epoch_end` reads ``logs[monitor]``,
      sets ``model.stop_training = True`` when patience runs out, and
      :meth:`on_train_end` restores the best weights (``model.get_weights()``
      includes the batch-norm running statistics), both when training stopped
      early **and** when it ran out of epochs (the latter is what
      keras-team/keras#12511 asked for).

    The rule (with the defaults it is exactly the article's)::

        improved = value < best - min_delta        (mode "min")
                   value > best + min_delta        (mode "max")
        improved -> best = value, counter = 0, keep a copy of the weights
        else     -> counter += 1, stop when counter >= patience

    A NaN value never counts as an improvement.  With patience 10 and the best
    value at epoch ``b``, training stops at the end of epoch ``b + 10``.

    Parameters
    ----------
    patience : int >= 0, default 10
        Number of consecutive epochs without improvement after which training
        stops.
    min_delta : float >= 0, default 0.0
        Margin a new value must beat the best by to count as an improvement.
    monitor : str, default "val_loss"
        Key of the epoch logs to watch (callback use only).
    mode : {"min", "max", "auto"}, default "min"
        Whether the monitored value should go down or up.  ``"auto"`` means
        ``"max"`` if ``monitor`` contains "acc" and ``"min"`` otherwise; it
        is resolved at construction, so :attr:`mode` is "min" or "max".
    restore_best_weights : bool, default True
        Restore the best weights in :meth:`on_train_end`.  When False, the
        model keeps the weights of the last epoch trained.
    start_from_epoch : int >= 0, default 0
        Epochs before this one are not monitored at all (warm-up period).
    baseline : float, optional
        Value the metric has to beat: the counter only resets on an epoch that
        improves on both the best value and the baseline, so training stops
        after ``patience`` epochs if the baseline is never reached.  (The best
        weights are still tracked.)
    verbose : int, default 0
        1 prints a line when stopping and when restoring weights.

    Attributes
    ----------
    best_loss : float
        Best monitored value so far (``inf`` for mode "min", ``-inf`` for mode
        "max" before the first one).  The name comes from the article;
        :attr:`best_value` is an alias that reads better for accuracy.
    counter : int
        Consecutive epochs without improvement.
    best_weights : list of ndarray or None
        Copies of the weights passed at the best epoch (never references to
        the model's arrays).
    best_epoch : int or None
        Epoch of the best value (None before the first improvement).
    stopped_epoch : int or None
        Epoch at whose end the stop was requested; None if training never
        stopped early (it is never 0 for "did not stop").
    """

    def __init__(self, patience=10, min_delta=0.0, monitor="val_loss", mode="min",
                 restore_best_weights=True, start_from_epoch=0, baseline=None, verbose=0):
        self.patience = _int(patience, "patience")
        self.min_delta = real_number(min_delta, "min_delta", low=0.0)
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a str, got {type(monitor).__name__}")
        self.monitor = monitor
        self.mode = _resolve_mode(mode, monitor)
        self.restore_best_weights = bool(restore_best_weights)
        self.start_from_epoch = _int(start_from_epoch, "start_from_epoch")
        if baseline is not None:
            if (isinstance(baseline, (bool, np.bool_)) or not isinstance(baseline, numbers.Real)
                    or math.isnan(baseline)):
                raise ValueError(f"baseline must be None or a number, got {baseline!r}")
            baseline = float(baseline)
        self.baseline = baseline
        self.verbose = int(verbose)
        self.model = None
        self.reset()

    # -- state -------------------------------------------------------------

    def reset(self):
        """Forget everything seen so far (called by :meth:`on_train_begin`)."""
        self.best_loss = math.inf if self.mode == "min" else -math.inf
        self.counter = 0
        self.best_weights = None
        self.best_epoch = None
        self.stopped_epoch = None
        self.epochs_seen = 0
        self._warned_missing = False

    @property
    def best_value(self):
        """Alias of :attr:`best_loss`."""
        return self.best_loss

    def _better(self, value, reference):
        return improved(value, reference, self.mode, self.min_delta)

    # -- the article's protocol ------------------------------------------------

    def check(self, val_loss, model_weights, epoch=None):
        """Record one epoch's monitored value; return True when training should stop.

        Parameters
        ----------
        val_loss : float
            The monitored value (validation loss in the article).
        model_weights : list of ndarray
            The model's current weights; copied when they are the best so far.
        epoch : int, optional
            Epoch number, for :attr:`best_epoch` / :attr:`stopped_epoch` and
            ``start_from_epoch``.  Defaults to the number of earlier calls.

        Returns
        -------
        bool
            True once ``counter >= patience`` (True = stop).
        """
        return self._update(val_loss, epoch, lambda: model_weights)

    def _update(self, value, epoch, get_weights):
        if epoch is None:
            epoch = self.epochs_seen
        self.epochs_seen = max(self.epochs_seen, epoch + 1)
        if epoch < self.start_from_epoch:
            return False
        value = float(value)
        if self._better(value, self.best_loss):
            self.best_loss = value
            self.best_epoch = epoch
            self.best_weights = [np.array(w, copy=True) for w in get_weights()]
            if self.baseline is None or self._better(value, self.baseline):
                self.counter = 0
                return False
        self.counter += 1
        stop = self.counter >= self.patience
        if stop and self.stopped_epoch is None:
            self.stopped_epoch = epoch
        return stop

    # -- callback hooks -----------------------------------------------------

    def on_train_begin(self, logs=None):
        # Allow instances to be reused across fit calls.
        self.reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            if not self._warned_missing:
                self._warned_missing = True
                warnings.warn(
                    f"EarlyStopping is monitoring {self.monitor!r}, which is not in the "
                    f"epoch logs (available: {', '.join(sorted(logs)) or 'none'}); "
                    "early stopping is inactive. Pass validation data or choose another "
                    "monitor.", UserWarning, stacklevel=2)
            return
        if epoch < self.start_from_epoch:
            return
        if self._update(value, epoch, self.model.get_weights):
            self.model.stop_training = True
            if self.verbose:
                print(f"Epoch {epoch}: early stopping ({self.monitor} has not improved for "
                      f"{self.counter} epochs; best {self.best_loss:.6g} at epoch "
                      f"{self.best_epoch})")

    def on_train_end(self, logs=None):
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch "
                      f"({self.best_epoch}).")
            self.model.set_weights([w.copy() for w in self.best_weights])

    # -- checkpoints ----------------------------------------------------------

    def state_dict(self):
        """JSON-serialisable progress: everything except :attr:`best_weights`.

        Checkpoints store ``best_weights`` separately, as arrays; hand them
        back through ``load_state_dict(state, best_weights=...)``.  An
        infinite ``best_loss`` (nothing seen yet) is stored as None.
        """
        best = self.best_loss if math.isfinite(self.best_loss) else None
        return {"best_loss": best, "counter": self.counter, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch, "epochs_seen": self.epochs_seen}

    def load_state_dict(self, state, best_weights=None):
        """Restore what :meth:`state_dict` returned (and, optionally, the best weights)."""
        keys = {"best_loss", "counter", "best_epoch", "stopped_epoch", "epochs_seen"}
        if set(state) != keys:
            raise ValueError(f"EarlyStopping state must have keys {sorted(keys)}, "
                             f"got {sorted(state)}")
        self.reset()
        if state["best_loss"] is not None:
            self.best_loss = float(state["best_loss"])
        self.counter = int(state["counter"])
        self.best_epoch = None if state["best_epoch"] is None else int(state["best_epoch"])
        self.stopped_epoch = (None if state["stopped_epoch"] is None
                              else int(state["stopped_epoch"]))
        self.epochs_seen = int(state["epochs_seen"])
        if best_weights is not None:
            self.best_weights = [np.array(w, copy=True) for w in best_weights]

    def __repr__(self):
        return (f"EarlyStopping(patience={self.patience}, min_delta={self.min_delta}, "
                f"monitor={self.monitor!r}, mode={self.mode!r}, "
                f"restore_best_weights={self.restore_best_weights}, "
                f"start_from_epoch={self.start_from_epoch}, baseline={self.baseline})")

