"""Training health: learning-rate range test, live gradient flow, divergence
policy and class weights.

What each part computes, and why:

* **LR range test** (Smith 2017, "Cyclical Learning Rates for Training
  Neural Networks", section 3.3; the fastai ``lr_find``): train for ``steps``
  mini-batches while the learning rate grows geometrically,
  ``lr_k = start_lr * (end_lr / start_lr) ** (k / (steps - 1))``, and record
  the batch losses.  The run stops when the causal, bias-corrected
  exponential moving average ``a_k = beta a_{k-1} + (1 - beta) loss_k``,
  ``s_k = a_k / (1 - beta^(k+1))`` (beta = 0.9) exceeds ``diverge_factor``
  (4) times its minimum so far.  The suggestion is the lr where the loss
  falls fastest, ``argmin d z / d log10(lr)`` before that point, skipping the
  first 10 % of the steps (:func:`suggest_lr`), where ``z`` is the same
  moving average run forward and then backward (:func:`zero_lag_smooth`).
  Measured on digits: a causal average lags the losses by ~1/(1 - beta)
  steps, so its steepest point moves with the ramp's steps (AdamW: 6e-3 at
  100 steps, 1.4e-2 at 60, 2.9e-3 at 200, with beta 0.98 up to 2e-2); the
  forward-backward average has no lag and suggested 1e-3..4e-3 at 60, 100
  and 200 steps over three seeds.
* **Gradient flow during fit** (:class:`GradientTracker`,
  ``fit(track_gradients=True)``): per layer the Frobenius norm of the weight
  gradient ``||dL/dW_l||`` and per hidden layer the *dead fraction*, the
  share of units whose activation output (after batch norm and the
  activation, before dropout) is exactly 0 for every row of a training
  batch.  Both are read from what the native training step leaves behind
  (:meth:`fastnet._network.Engine.layer_stats`), on a few evenly spaced
  steps per epoch (4 by default), and averaged over those steps: sampling
  keeps the cost at a few tens of microseconds per epoch instead of a pass
  over all gradients after every step.
* **Health report** (:func:`health_findings`, :func:`health_report`): the
  article's failure modes, named per layer with its remedies.  A layer's
  gradients *vanish* when its norm is below ``VANISHING_RATIO`` (1e-3)
  times the last layer's (the article: "the first layer learns a million times
  slower than the last"), *explode* when above ``EXPLODING_RATIO`` (1e3)
  times it or not finite, and a ReLU layer is *mostly dead* when more than
  ``DEAD_LIMIT`` (50 %) of its units are dead.
* **Divergence** (:class:`DivergenceGuard`, ``fit(on_divergence=...)``): a
  run diverges when a batch loss is NaN/inf or exceeds ``EXPLODE_FACTOR``
  (100) times a reference loss, ``max(first batch loss, constant-predictor
  loss)``; the constant-predictor loss is ``ln(n_classes)`` for
  cross-entropy and the (weighted) variance of the targets for mse, so a
  model that starts out nearly perfect is not called diverged for a noisy
  batch.  With SGD at lr 1e2-1e4 the digits loss often stays finite
  (1e3-1e18) instead of turning NaN, which is why both tests are needed.
  :class:`Rollback` restores the last good state (the state at the start of
  the last epoch whose training loss was below both the starting and the
  constant-predictor loss, that loss being measured from there on, else the
  start), divides the lr and goes on.  After a rollback each epoch's final
  weights are evaluated on the training rows and must stay below both
  losses, else the rollback repeats: measured on digits with SGD at lr 1e4,
  backing off used to stop at lr 10, where the loss is finite but flat at
  ln(10) (test accuracy 0.10); going on to lr 0.1 learns (0.94-0.97 over three
  seeds).
* **Class weights**: :func:`class_weights` is defined with the row weights of a
  fit in ``fastnet._weights`` and exported here.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import math
import numbers

import numpy as np

from fastnet import _activations
from fastnet._validation import integer, real_number
from fastnet._weights import class_weights

__all__ = [
    "DEAD_LIMIT",
    "EXPLODE_FACTOR",
    "EXPLODING_RATIO",
    "VANISHING_RATIO",
    "DivergenceGuard",
    "DivergenceWatch",
    "GradientTracker",
    "LRFinderResult",
    "Rollback",
    "TrainingDiverged",
    "class_weights",
    "diverged_index",
    "health_findings",
    "health_report",
    "lr_range",
    "smooth_losses",
    "suggest_lr",
    "zero_lag_smooth",
]

VANISHING_RATIO = 1e-3
EXPLODING_RATIO = 1e3
DEAD_LIMIT = 0.5
EXPLODE_FACTOR = 100.0
TRACK_SAMPLES = 4

REMEDIES = {
    "vanishing": "use ReLU with He init (std sqrt(2/fan_in)) and batch norm after each "
                 "Linear; fewer layers",
    "exploding": "lower the learning rate, clip gradients (grad_clip=1.0), add batch norm",
    "dead": "lower the learning rate, He init, batch norm before the ReLU",
}


# ---------------------------------------------------------------------------
# learning-rate range test
# ---------------------------------------------------------------------------

class LRFinderResult:
    """What :meth:`fastnet.MLP.lr_find` measured.

    Attributes
    ----------
    lrs, losses : list of float
        The learning rate of each step and its batch loss (the run stops
        early at divergence, so they may be shorter than ``steps``).
    smoothed : list of float
        ``losses`` smoothed without lag (:func:`zero_lag_smooth`).
    suggested_lr : float
        Steepest descent of ``smoothed`` against ``log10(lr)`` before
        divergence (see :func:`suggest_lr`).
    diverged_at : int or None
        Index of the step at which the causal moving average of the losses
        exceeded ``diverge_factor`` times its minimum (the run stopped
        there).
    """

    def __init__(self, lrs, losses, smoothed, suggested_lr, diverged_at):
        self.lrs = list(lrs)
        self.losses = list(losses)
        self.smoothed = list(smoothed)
        self.suggested_lr = suggested_lr
        self.diverged_at = diverged_at

    def __repr__(self):
        return (f"LRFinderResult(steps={len(self.lrs)}, suggested_lr={self.suggested_lr:.3g}, "
                f"diverged_at={self.diverged_at})")


def lr_range(start_lr, end_lr, steps):
    """The geometric ramp ``start_lr * (end_lr / start_lr) ** (k / (steps - 1))``."""
    return [start_lr * (end_lr / start_lr) ** (k / (steps - 1)) for k in range(steps)]


def smooth_losses(losses, beta=0.9):
    """Bias-corrected EMA: ``avg = beta avg + (1 - beta) loss; s_k = avg / (1 - beta^(k+1))``."""
    out, avg = [], 0.0
    for k, value in enumerate(losses):
        avg = beta * avg + (1 - beta) * value
        out.append(avg / (1 - beta ** (k + 1)))
    return out


def zero_lag_smooth(losses, beta=0.9):
    """:func:`smooth_losses` run forward, then backward over the result: the
    moving average without its lag (the filtfilt idea), for a finished run."""
    forward = smooth_losses(losses, beta)
    return smooth_losses(forward[::-1], beta)[::-1]


def diverged_index(smoothed, diverge_factor=4.0):
    """First k with a non-finite smoothed loss or one above diverge_factor x the minimum
    before it; None if there is none."""
    best = math.inf
    for k, value in enumerate(smoothed):
        if not math.isfinite(value) or (k > 0 and value > diverge_factor * best):
            return k
        best = min(best, value)
    return None


class DivergenceWatch:
    """``diverged_index(smooth_losses(losses, beta), diverge_factor)`` kept up to date
    one loss at a time, in O(1) per loss (the same arithmetic, so the same answer).

    :meth:`add` returns True for the loss at which the range test diverges.
    """

    def __init__(self, beta=0.9, diverge_factor=4.0):
        self.beta = beta
        self.diverge_factor = diverge_factor
        self._avg = 0.0
        self._count = 0
        self._best = math.inf

    def add(self, loss):
        k, beta = self._count, self.beta
        self._avg = beta * self._avg + (1 - beta) * loss
        smoothed = self._avg / (1 - beta ** (k + 1))
        self._count += 1
        if not math.isfinite(smoothed) or (k > 0 and smoothed > self.diverge_factor * self._best):
            return True
        self._best = min(self._best, smoothed)
        return False


def suggest_lr(lrs, smoothed, diverged_at=None, skip_start=0.1):
    """The lr of steepest descent of the smoothed loss before divergence.

    ``argmin_k d smoothed / d log10(lr)`` (central differences,
    :func:`numpy.gradient`) over the steps before ``diverged_at``, ignoring
    the first ``skip_start`` fraction of all steps (there the slope is
    batch-to-batch noise at lrs too small to learn anything, and the moving
    average is starting up; fastai skips the first 10 points).  With fewer
    than 3 usable steps it falls back to the lr of the lowest smoothed loss
    divided by 10 (the fastai "minimum / 10" rule).
    """
    stop = len(smoothed) if diverged_at is None else diverged_at
    lrs = np.asarray(lrs[:stop], dtype=np.float64)
    s = np.asarray(smoothed[:stop], dtype=np.float64)
    if s.size == 0:
        raise ValueError("the range test diverged at its first step: lower start_lr")
    first = int(math.ceil(skip_start * len(smoothed)))
    if s.size - first < 3:
        return float(lrs[int(np.argmin(s))] / 10)
    slope = np.gradient(s[first:], np.log10(lrs[first:]))
    return float(lrs[first + int(np.argmin(slope))])


# ---------------------------------------------------------------------------
# gradient flow during fit
# ---------------------------------------------------------------------------

def track_samples(value):
    """``track_gradients`` as a number of sampled steps per epoch (0: off)."""
    if value is None or value is False:
        return 0
    if value is True:
        return TRACK_SAMPLES
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"track_gradients must be a bool or an int (sampled steps per epoch), "
                        f"got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"track_gradients must be True, False or an int >= 1, got {value}")
    return int(value)


class GradientTracker:
    """Per-layer gradient norms and dead fractions of a few steps per epoch.

    Steps ``floor((k + 1/2) * steps / samples)`` for ``k < samples`` (all
    steps when there are fewer) are sampled: evenly spaced, the same every
    epoch, independent of timing and threads.  After a sampled step,
    :meth:`Engine.layer_stats` gives ``||dW_l||^2`` per layer and the dead
    units per hidden layer; :meth:`end_epoch` returns their means over the
    sampled steps: ``mean_s ||dW_l||`` and ``mean_s dead_l / width_l``.
    """

    def __init__(self, engine, layer_sizes, steps, samples):
        self.engine = engine
        self.widths = np.asarray(layer_sizes[1:-1], dtype=np.float64)
        n_layers = len(layer_sizes) - 1
        samples = min(samples, steps)
        self.sampled = frozenset(int((k + 0.5) * steps / samples) for k in range(samples))
        self._sumsq = np.zeros(n_layers)
        self._dead = np.zeros(n_layers - 1, dtype=np.int64)
        self.begin_epoch()

    def begin_epoch(self):
        self._norms = np.zeros_like(self._sumsq)
        self._dead_sum = np.zeros(self._dead.shape[0])
        self._count = 0

    def after_step(self, b):
        if b in self.sampled:
            self.engine.layer_stats(self._sumsq, self._dead)
            self._norms += np.sqrt(self._sumsq)
            self._dead_sum += self._dead / self.widths
            self._count += 1

    def end_epoch(self):
        """(layer gradient norms, hidden-layer dead fractions) of the epoch, as lists.

        An epoch that ended before its first sampled step (a callback
        stopped it) is measured on its last step."""
        if self._count == 0:
            self.after_step(min(self.sampled))
        return (self._norms / self._count).tolist(), (self._dead_sum / self._count).tolist()


def layer_names(n_layers):
    """"hidden1", ..., "output" (the names :mod:`fastnet.diagnostics` uses)."""
    return [f"hidden{l + 1}" for l in range(n_layers - 1)] + ["output"]


def health_findings(grad_norms, dead_fractions=(), *, activation="relu"):
    """The layers whose gradients vanish or explode, or whose ReLUs are mostly dead.

    Parameters
    ----------
    grad_norms : sequence of float, one per layer (input side first)
        Weight-gradient norms; the last entry is the output layer's, the
        reference of the ratios.
    dead_fractions : sequence of float, one per hidden layer
    activation : str
        Dead units are reported only for activations whose table entry has
        ``dead_units`` (ReLU: a sigmoid or tanh output is exactly 0 only by
        accident).

    Returns
    -------
    list of dict with ``layer``, ``name``, ``kind`` ("vanishing",
        "exploding" or "dead"), ``value`` (ratio to the last layer's norm,
        or the dead fraction), ``remedy``.
    """
    norms = [float(v) for v in grad_norms]
    names = layer_names(len(norms))
    found = []

    def add(layer, kind, value):
        found.append({"layer": layer, "name": names[layer], "kind": kind, "value": value,
                      "remedy": REMEDIES[kind]})

    last = norms[-1]
    for l, norm in enumerate(norms[:-1]):
        if not math.isfinite(norm):
            add(l, "exploding", math.inf)
        elif math.isfinite(last) and last > 0:
            ratio = norm / last
            if ratio < VANISHING_RATIO:
                add(l, "vanishing", ratio)
            elif ratio > EXPLODING_RATIO:
                add(l, "exploding", ratio)
    if not math.isfinite(last):
        add(len(norms) - 1, "exploding", math.inf)
    if _activations.dead_units(activation):
        for l, frac in enumerate(dead_fractions):
            if frac > DEAD_LIMIT:
                add(l, "dead", float(frac))
    return found


def health_report(grad_norms, dead_fractions=(), *, activation="relu", source=""):
    """A short text naming the unhealthy layers and the article's remedies.

    Takes one set of per-layer figures (see :func:`health_findings`);
    ``source`` says where they come from (e.g. "median over 20 epochs").
    """
    findings = health_findings(grad_norms, dead_fractions, activation=activation)
    head = "Training health" + (f" ({source})" if source else "") + ":"
    if not findings:
        return (f"{head} OK: no vanishing or exploding gradients (layer |dW| within "
                f"{VANISHING_RATIO:g}..{EXPLODING_RATIO:g} x the output layer's)"
                + (", no mostly-dead ReLU layer." if _activations.dead_units(activation)
                   else "."))
    lines = [head]
    for f in findings:
        if f["kind"] == "dead":
            what = f"{100 * f['value']:.0f}% of its ReLUs are dead"
        elif f["kind"] == "vanishing":
            what = f"vanishing gradients (|dW| is {f['value']:.1e} x the output layer's)"
        else:
            what = f"exploding gradients (|dW| is {f['value']:.1e} x the output layer's)"
        lines.append(f"- {f['name']}: {what}")
    for kind in ("vanishing", "exploding", "dead"):
        if any(f["kind"] == kind for f in findings):
            lines.append(f"  remedy ({kind}): {REMEDIES[kind]}")
    return "\n".join(lines)


def history_report(history_dict, activation):
    """:func:`health_report` of the per-epoch figures fit recorded (medians over epochs)."""
    norms = np.asarray(history_dict["layer_grad_norm"], dtype=np.float64)
    dead = np.asarray(history_dict["dead_fraction"], dtype=np.float64)
    if norms.shape[0] == 0:
        return None
    n = norms.shape[0]
    return health_report(np.median(norms, axis=0),
                         np.median(dead, axis=0) if dead.size else (), activation=activation,
                         source=f"median over {n} epoch{'s' if n != 1 else ''}")


# ---------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------

class TrainingDiverged(RuntimeError):
    """Raised by ``fit(on_divergence="raise")``; ``.history`` is the fit's History
    (the best weights were restored before raising)."""

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


class Rollback:
    """``fit(on_divergence=Rollback(...))``: on divergence restore the last good
    state (weights, batch-norm statistics, optimizer state and step: the state
    an epoch started from when :meth:`DivergenceGuard.learned` accepts that
    epoch's training loss, which is measured from there on; after a rollback,
    the state an epoch ended with when its loss on the training rows, measured
    on it, is accepted; else the state fit started from), divide the learning
    rate by ``factor`` and redo the epoch, at most ``max_rollbacks`` times;
    then stop as "stop" does.  After a rollback an epoch whose final weights
    are not accepted counts as a divergence too, so the lr keeps backing off
    while the loss stays finite but does not learn.
    ``"rollback"`` means ``Rollback()``.

    Parameters
    ----------
    factor : float > 1, default 10
    max_rollbacks : int >= 1, default 5
    """

    def __init__(self, factor=10.0, max_rollbacks=5):
        self.factor = real_number(factor, "factor", low=1.0, low_open=True)
        self.max_rollbacks = integer(max_rollbacks, "max_rollbacks", low=1)

    def __repr__(self):
        return f"Rollback(factor={self.factor:g}, max_rollbacks={self.max_rollbacks})"


def divergence_policy(value):
    """"stop", "raise", or a Rollback (from "rollback" or a Rollback)."""
    if isinstance(value, Rollback):
        return value
    if value == "rollback":
        return Rollback()
    if value in ("stop", "raise"):
        return value
    raise ValueError(f"on_divergence must be 'stop', 'raise', 'rollback' or a "
                     f"fastnet.health.Rollback, got {value!r}")


def baseline_loss(n_outputs, targets, weights):
    """Loss of a constant predictor: ``ln(n_outputs)`` (uniform probabilities)
    for cross-entropy (``targets`` None), the weighted variance of the
    targets for mse."""
    if targets is None:
        return math.log(max(2, n_outputs))
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    t = np.asarray(targets, dtype=np.float64)
    mean = np.average(t, axis=0, weights=w)
    return float(np.average(((t - mean) ** 2).mean(axis=1), weights=w))


class DivergenceGuard:
    """Is a batch loss a divergence?  Non-finite, or above
    ``EXPLODE_FACTOR * max(start, baseline)``, where ``start`` is the fit's
    first batch loss and ``baseline`` the constant-predictor loss
    (:func:`baseline_loss`).

    :meth:`learned` says whether an epoch's training loss is below both
    ``start`` and ``baseline``: only such epochs are states a rollback may
    return to.  Measured on digits: SGD at lr 10 leaves the loss finite but
    above ln(10) for epochs (weights and batch-norm statistics wrecked) before
    it diverges; returning there would resume from a broken state.
    """

    def __init__(self, baseline, factor=EXPLODE_FACTOR):
        self.baseline = float(baseline)
        self.factor = float(factor)
        self.start = None
        self.limit = None

    def diverged(self, loss):
        if not math.isfinite(loss):
            return True
        if self.start is None:
            self.start = loss
            self.limit = self.factor * max(loss, self.baseline)
        return loss > self.limit

    def learned(self, epoch_loss):
        return self.start is not None and epoch_loss < min(self.start, self.baseline)


# ---------------------------------------------------------------------------
# class weights
# ---------------------------------------------------------------------------
