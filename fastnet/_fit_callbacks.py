"""The features of :meth:`MLP.fit` as callbacks of the one loop (:mod:`fastnet._loop`).

Each built-in has a fixed ``order``; the user's callbacks run at 50
(``early_stopping`` last among them).  The orders reproduce fit's sequence
bit for bit:

====  =====================  ==========================================================
--    DivergenceCheck        always, called by the loop itself: the batch-loss guard
                             first (a bad batch skips every on_batch_end), the epoch
                             judgement, then stop/raise/rollback
20    GradientTracking       ``track_gradients``: sampled layer statistics, health report
25    LogAgreement           distributed: rank 0's epoch logs on every rank
30    HistoryRecorder        always: the declared History keys, ``History.epochs``
35    BestState              always: the best weights (strict ``<`` on val_loss, else loss)
40    PlateauScheduler       a schedule with ``needs_metric`` (ReduceLROnPlateau)
50    user callbacks         the five public hooks, then EarlyStopping
55    ProgressBar            ``verbose == 1`` on the root rank
60    EpochPrinter           ``verbose >= 1`` on the root rank
65    FlagAgreement          distributed: Ctrl-C and ``stop_training`` OR-ed over ranks
70    Checkpointer           ``checkpoint``/``resume``: restore at train begin, write
75    OptimizerBinding       always: the (restored) optimizer's state into the engine
90    RollbackPoint          ``on_divergence="rollback"``: the last good state
99    CtrlC                  always: finish the batch, then stop cleanly
====  =====================  ==========================================================

Every built-in reaches the loop's state through ``self.trainer``
(:class:`fastnet._loop.Trainer`).
"""
import math
import signal
import threading
import warnings

from fastnet import _checkpoint
from fastnet import health as _health
from fastnet.callbacks import improved


def write(text):
    """A line that does not break a progress bar."""
    from tqdm.auto import tqdm
    tqdm.write(text)


class BuiltIn:
    """Base of the built-in callbacks: the trainer they serve, and their order."""

    order = None

    def __init__(self, trainer):
        self.trainer = trainer


class DivergenceCheck(BuiltIn):
    """``on_divergence``: which batches and epochs diverged, and what then happens.

    The loop asks :attr:`guard` about every batch loss and :meth:`judge` about
    every epoch; :meth:`bad_epoch` rolls back (redo the epoch at a smaller lr)
    or marks the run diverged (stop; ``"raise"`` raises in :meth:`finish`).
    """

    def __init__(self, trainer, policy, guard, monitor, training_loss):
        super().__init__(trainer)
        self.policy, self.guard, self.monitor = policy, guard, monitor
        self.training_loss = training_loss    # () -> loss of the weights as they are
        self.rollback = policy if isinstance(policy, _health.Rollback) else None
        self.watched = False    # after a rollback: measure where each epoch ends
        self.good = self.start = None

    def judge(self, logs):
        """The bad value of a finished epoch, or None when it is good."""
        value = logs[self.monitor]
        if not math.isfinite(value):
            return value
        if self.trainer.model._state_problem() is not None:
            return math.nan       # e.g. a running variance overflowed, the loss finite
        if self.watched:
            # after a rollback the weights an epoch ends with must have learned (measured
            # on them): a backed-off lr that keeps the loss finite but flat backs off further
            end_loss = self.training_loss()
            if not self.guard.learned(end_loss):
                return end_loss
        return None

    def bad_epoch(self, epoch, bad, lr):
        """Roll back and redo the epoch (True), or stop (False)."""
        t, rollback = self.trainer, self.rollback
        history = t.history
        if rollback is None or len(history.rollbacks) >= rollback.max_rollbacks:
            history.diverged = True
            return False
        t.lr_scale /= rollback.factor
        history.rollbacks.append({"epoch": epoch, "step": t.global_step - 1, "loss": float(bad),
                                  "lr": lr, "new_lr": lr / rollback.factor,
                                  "lr_scale": t.lr_scale})
        t.global_step = self._rewind(self.good)
        if t.verbose:
            what = "did not improve on the starting loss" \
                if self.watched and math.isfinite(bad) else "diverged"
            write(f"Epoch {epoch + 1}/{t.epochs}: loss {bad:.3g} {what}; rolled back to the "
                  f"last good state, lr {lr:.3g} -> {lr / rollback.factor:.3g}")
        self.watched = True
        return True

    def warn_stopped(self):
        if self.trainer.history.diverged and self.policy != "raise":
            warnings.warn("the training loss or the weights became NaN or infinite, or the "
                          f"loss exploded (over {self.guard.factor:g}x its starting loss); "
                          "stopped and restored the best weights seen (lower the learning "
                          "rate, scale the inputs, clip gradients with grad_clip=..., or pass "
                          "on_divergence='rollback')", RuntimeWarning, stacklevel=5)

    def finish(self):
        """Raise TrainingDiverged under ``on_divergence="raise"``."""
        history = self.trainer.history
        if history.diverged and self.policy == "raise":
            raise _health.TrainingDiverged(
                f"training diverged in epoch {history.epochs + 1} (loss NaN/inf or over "
                f"{self.guard.factor:g}x its starting loss); the best weights were restored",
                history)

    # ---- the rollback point: what a rollback returns to ----------------------------

    def _snapshot(self):
        """Copies of what a rollback restores: weights, buffers, optimizer state, step."""
        t = self.trainer
        return (t.model._state(), [None if b is None else b.copy()
                                   for b in t.stepper.opt_buffers],
                t.stepper.engine.opt_step, t.global_step)

    def _rewind(self, snap):
        """Restore a snapshot in place (the engine stays bound); returns its step."""
        t = self.trainer
        state, buffers, opt_step, global_step = snap
        t.model._restore(state)
        for target, saved in zip(t.stepper.opt_buffers, buffers):
            if target is not None:
                target[...] = saved
        t.stepper.engine.opt_step = t.optimizer.t = opt_step
        return global_step


class NoDivergenceCheck:
    """No batch or epoch ever diverges (the lr range test watches its losses itself)."""

    limit = None

    @property
    def guard(self):
        return self

    def diverged(self, loss):
        return False

    def judge(self, logs):
        return None


class RangeTest(BuiltIn):
    """The lr range test's record: every batch loss, until `steps` steps are taken or
    `watch` sees the loss diverge."""

    order = 50

    def __init__(self, trainer, steps, watch):
        super().__init__(trainer)
        self.steps, self.watch = steps, watch
        self.losses = []
        self.diverged_at = None

    def on_batch_end(self, batch, logs):
        self.losses.append(logs["loss"])
        if self.watch.add(logs["loss"]):
            self.diverged_at = len(self.losses) - 1
            self.trainer.model.stop_training = True
        elif len(self.losses) == self.steps:
            self.trainer.model.stop_training = True


class RollbackPoint(BuiltIn):
    """The states a rollback may return to (part of :class:`DivergenceCheck`, at its own
    place in the order: after the checkpoint is written)."""

    order = 90

    def __init__(self, trainer, check):
        super().__init__(trainer)
        self.check = check

    def on_train_begin(self, logs):
        self.check.good = self.check._snapshot()

    def _on_epoch_start(self, epoch):
        check = self.check
        check.start = None if check.watched else check._snapshot()

    def on_epoch_end(self, epoch, logs):
        check = self.check
        if check.watched:            # the state this epoch ended with learned (measured)
            check.good = check._snapshot()
        elif check.guard.learned(logs["loss"]):
            # the loss that learned was measured from the epoch's start on
            check.good = check.start


class GradientTracking(BuiltIn):
    """``track_gradients``: per-layer gradient norms and dead fractions, and the report."""

    order = 20

    def __init__(self, trainer, tracker, activation):
        super().__init__(trainer)
        self.tracker, self.activation = tracker, activation

    def _on_epoch_start(self, epoch):
        self.tracker.begin_epoch()

    def on_batch_end(self, batch, logs):
        self.tracker.after_step(batch)

    def on_epoch_end(self, epoch, logs):
        logs["layer_grad_norm"], logs["dead_fraction"] = self.tracker.end_epoch()

    def on_train_end(self, logs):
        history = self.trainer.history
        history.health = _health.history_report(history.history, self.activation)
        if self.trainer.verbose and history.health:
            write(history.health)


class LogAgreement(BuiltIn):
    """Distributed: rank 0's epoch logs on every rank, so callbacks decide alike."""

    order = 25

    def on_epoch_end(self, epoch, logs):
        agreed = self.trainer.stepper.agree_logs(logs)
        if agreed is not logs:
            logs.clear()
            logs.update(agreed)


class HistoryRecorder(BuiltIn):
    """The epoch's values of the keys History declares."""

    order = 30

    def on_epoch_end(self, epoch, logs):
        history = self.trainer.history
        for key, values in history.history.items():
            if key in logs:
                values.append(logs[key])
        history.epochs = epoch + 1


class BestState(BuiltIn):
    """The weights with the best monitored loss measured on them (what a divergence or
    Ctrl-C restores, and ``History.best_epoch``).

    An epoch's training loss is measured on the weights before each update, so it
    judges the state the epoch started from (exactly so in full-batch training), not
    the state after its last update; the validation loss judges the latter.
    """

    order = 35

    def __init__(self, trainer, monitor):
        super().__init__(trainer)
        self.monitor = monitor
        self.judge_start = monitor == "loss"
        self.value = math.inf
        self.state, self._start = trainer.model._state_arrays(2)

    def on_train_begin(self, logs):
        self.state = self.trainer.model._state(into=self.state)

    def _on_epoch_start(self, epoch):
        if self.judge_start:
            self._start = self.trainer.model._state(into=self._start)

    def on_epoch_end(self, epoch, logs):
        value = logs[self.monitor]
        if improved(value, self.value):
            if self.judge_start:
                self.state, self._start = self._start, self.state
            else:
                self.state = self.trainer.model._state(into=self.state)
            self.value = value
            self.trainer.history.best_epoch = epoch

    def restore(self):
        self.trainer.model._restore(self.state)


class PlateauScheduler(BuiltIn):
    """Steps a metric-driven schedule (ReduceLROnPlateau) with the epoch's metric."""

    order = 40

    def __init__(self, trainer, metric):
        super().__init__(trainer)
        self.metric = metric

    def on_epoch_end(self, epoch, logs):
        schedule = self.trainer.schedule
        if self.metric not in logs:
            raise ValueError(f"{type(schedule).__name__} monitors {self.metric!r}, which "
                             f"this fit does not log (logs: {sorted(logs)})")
        schedule.step(logs[self.metric])


class ProgressBar(BuiltIn):
    """``verbose=1``: a tqdm bar per epoch (none when stderr is not a terminal)."""

    order = 55

    def _on_epoch_start(self, epoch):
        from tqdm.auto import tqdm
        t = self.trainer
        # disable=None: no bar when stderr is not a terminal (log files get the epoch lines)
        self.bar = tqdm(total=t.stepper.steps, desc=f"Epoch {epoch + 1}/{t.epochs}",
                        leave=False, unit="batch", dynamic_ncols=True, disable=None)

    def on_batch_end(self, batch, logs):
        self.bar.update(1)
        if batch % 8 == 0:
            engine = self.trainer.stepper.engine
            self.bar.set_postfix(loss=f"{engine.loss_sum / engine.rows:.4f}", refresh=False)

    def _on_batches_end(self):
        self.bar.close()


class EpochPrinter(BuiltIn):
    """``verbose``: one line per epoch."""

    order = 60

    def on_epoch_end(self, epoch, logs):
        parts = [f"Epoch {epoch + 1}/{self.trainer.epochs}", f"loss {logs['loss']:.4f}"]
        for key, label in (("accuracy", "acc"), ("val_loss", "val_loss"),
                           ("val_accuracy", "val_acc")):
            if key in logs:
                parts.append(f"{label} {logs[key]:.4f}")
        parts.append(f"lr {logs['lr']:.3g}")
        parts.append(f"{logs['time']:.2f}s")
        write("  ".join(parts))


class FlagAgreement(BuiltIn):
    """Distributed: Ctrl-C and ``model.stop_training`` OR-ed over the ranks."""

    order = 65

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        t.interrupt.raised, t.model.stop_training = t.stepper.agree_flags(
            t.interrupt.raised, t.model.stop_training)


class Checkpointer(BuiltIn):
    """``checkpoint``/``resume``: restore a checkpoint before the first epoch (after the
    user's on_train_begin, which resets e.g. EarlyStopping), write one every
    ``every`` epochs and when training ends (rank 0 writes, the others wait)."""

    order = 70

    def __init__(self, trainer, path, every, resume_state, user_callbacks, run_seed, record):
        super().__init__(trainer)
        self.path, self.every, self.resume_state = path, every, resume_state
        self.user_callbacks, self.run_seed, self.record = user_callbacks, run_seed, record

    def on_train_begin(self, logs):
        if self.resume_state is None:
            return
        t = self.trainer
        t.epoch, t.global_step, t.best.value, t.best.state = _checkpoint.restore(
            self.resume_state, t.model, t.optimizer, t.schedule, self.user_callbacks,
            t.history)

    def on_epoch_end(self, epoch, logs):
        t = self.trainer
        done = epoch + 1
        if self.path is None or not (done % self.every == 0 or done == t.epochs
                                     or t.model.stop_training or t.interrupt.raised):
            return
        if t.stepper.is_root:         # one writer; the others wait for it
            _checkpoint.write(self.path, t.model, t.optimizer, t.schedule, self.user_callbacks,
                              t.history, done, t.global_step, t.best.value, t.best.state,
                              self.run_seed, self.record)
        t.stepper.barrier()


class OptimizerBinding(BuiltIn):
    """The optimizer's hyper-parameters, step and (restored) buffers into the engine."""

    order = 75

    def on_train_begin(self, logs):
        t = self.trainer
        t.stepper.bind_optimizer(t.optimizer)
        t.lr_scale = t.history.rollbacks[-1]["lr_scale"] if t.history.rollbacks else 1.0


class CtrlC(BuiltIn):
    """Ctrl-C during fit: finish the current batch, then stop cleanly (a second Ctrl-C
    interrupts at once)."""

    order = 99

    def __init__(self, trainer):
        super().__init__(trainer)
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.raised:
            raise KeyboardInterrupt
        self.raised = True

    def on_train_begin(self, logs):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def _on_train_cleanup(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
