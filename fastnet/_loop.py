"""The one training loop: :meth:`MLP.fit` and :meth:`MLP.lr_find` run it.

The loop iterates epochs and batches, asks a stepper (:mod:`fastnet._stepper`)
for each step and calls callbacks; every feature of ``fit`` is a built-in
callback (:mod:`fastnet._fit_callbacks`) or part of the stepper.  One epoch::

    on_epoch_begin(epoch, {})        every callback, in order
    stepper.begin_epoch(epoch)       the epoch's order (the shuffle)
    _on_epoch_start(epoch)           built-ins that record the state the epoch starts from
    for each batch:
        stepper.step(...)            or a block of steps in one native call when no
                                     callback has an on_batch_end
        divergence guard             a bad batch loss ends the epoch first
        on_batch_end(batch, logs)
    _on_batches_end()                the progress bar closes
    stepper.end_epoch(); logs        a bad epoch goes to the divergence policy
                                     (rollback: redo the epoch; else stop)
    on_epoch_end(epoch, logs)        in order; then Ctrl-C or model.stop_training stop

Callbacks run in the order of :class:`CallbackList`: built-ins of order < 50,
the user's callbacks (``early_stopping`` last among them), then built-ins of
order >= 50; the orders are listed in :mod:`fastnet._fit_callbacks`.  The
private hooks (``_on_epoch_start``, ``_on_batches_end``, ``_on_train_cleanup``)
are for the built-ins only; the public protocol is the five hooks of
:class:`fastnet.callbacks.Callback`.
"""
import time

import numpy as np

USER_ORDER = 50         # where the user's callbacks run among the built-ins

_HOOKS = ("on_train_begin", "on_epoch_begin", "on_batch_end", "on_epoch_end", "on_train_end",
          "_on_epoch_start", "_on_batches_end", "_on_train_cleanup")


class CallbackList:
    """Callbacks in their fixed order, with one tuple of bound methods per hook
    (computed once: a callback without a hook costs nothing at that hook)."""

    def __init__(self, builtins, user):
        builtins = sorted(builtins, key=lambda cb: cb.order)
        self.callbacks = ([cb for cb in builtins if cb.order < USER_ORDER] + list(user)
                          + [cb for cb in builtins if cb.order >= USER_ORDER])
        for hook in _HOOKS:
            methods = (getattr(cb, hook, None) for cb in self.callbacks)
            setattr(self, hook, tuple(m for m in methods if m is not None))


class Trainer:
    """The state of one run of the loop, which the built-in callbacks share.

    Attributes
    ----------
    model, stepper, history, optimizer, schedule
    epoch, epochs : int
        The epoch being trained and the number to train.
    global_step : int
        Optimizer steps taken (the per-step schedules' ``t`` and dropout's counter).
    lr_scale : float
        Factor on the schedule's lr (rollbacks divide it).
    divergence : fastnet._fit_callbacks.DivergenceCheck
        Judges batch losses and epochs; decides what a bad epoch does.
    best : fastnet._fit_callbacks.BestState or None
        What a divergence or Ctrl-C restores.
    interrupt : fastnet._fit_callbacks.CtrlC or None
    """

    def __init__(self, model, stepper, *, history, optimizer, schedule, per_step, epochs,
                 global_step, divergence, epoch_logs, verbose=0):
        self.model, self.stepper, self.history = model, stepper, history
        self.optimizer, self.schedule, self.per_step = optimizer, schedule, per_step
        self.epoch, self.epochs, self.global_step = 0, epochs, global_step
        self.lr_scale = 1.0
        self.divergence, self.epoch_logs, self.verbose = divergence, epoch_logs, verbose
        self.best = self.interrupt = None
        self.callbacks = None

    def run(self, builtins, user):
        """Train; returns the History.  ``builtins`` and ``user`` are the callbacks."""
        for cb in user:
            cb.model = self.model
        self.callbacks = cbs = CallbackList(builtins, user)
        for hook in cbs.on_train_begin:
            hook({})
        try:
            while self.epoch < self.epochs and self._epoch():
                pass
        except BaseException as exc:
            self.stepper.abort(exc)       # MPI_Abort when distributed
            raise
        finally:
            for hook in cbs._on_train_cleanup:
                hook()
            self.stepper.close()
            self.optimizer.t = self.stepper.engine.opt_step
        history = self.history
        if self.best is not None and (history.diverged or history.interrupted):
            self.best.restore()
            self.divergence.warn_stopped()
        for hook in cbs.on_train_end:
            hook({})
        return history

    def _epoch(self):
        """Train one epoch; False when training ends."""
        cbs, stepper, epoch = self.callbacks, self.stepper, self.epoch
        for hook in cbs.on_epoch_begin:
            hook(epoch, {})
        stepper.begin_epoch(epoch)
        for hook in cbs._on_epoch_start:
            hook(epoch)
        epoch_lr = None if self.per_step else float(self.schedule(epoch)) * self.lr_scale
        t0 = time.perf_counter()
        bad, lr = self._batches(epoch_lr)
        for hook in cbs._on_batches_end:
            hook()
        stepper.end_epoch()
        if bad is None:
            logs = self.epoch_logs(stepper.totals(), lr)
            bad = self.divergence.judge(logs)
        if bad is not None:
            return self.divergence.bad_epoch(epoch, bad, lr)
        logs["time"] = time.perf_counter() - t0
        for hook in cbs.on_epoch_end:
            hook(epoch, logs)
        if self.interrupt is not None and self.interrupt.raised:
            self.history.interrupted = True
            return False
        if self.model.stop_training:
            self.history.stopped_epoch = epoch
            return False
        self.epoch += 1
        return True

    def _batches(self, epoch_lr):
        """The epoch's steps; returns (the loss that diverged or None, the last lr)."""
        stepper, guard = self.stepper, self.divergence.guard
        batch_end = self.callbacks.on_batch_end
        blocks = stepper.blocks and not batch_end
        schedule, scale, steps = self.schedule, self.lr_scale, stepper.steps
        step_lr = epoch_lr
        b = 0
        while b < steps:
            if blocks and guard.limit is not None and (block := stepper.block(steps - b)) > 1:
                lrs = epoch_lr if epoch_lr is not None else np.array(
                    [float(schedule(self.global_step + i)) * scale for i in range(block)])
                done, loss = stepper.run_block(b, block, lrs, self.global_step, guard.limit)
                step_lr = lrs if epoch_lr is not None else float(lrs[done - 1])
                self.global_step += done
                b += done
                if guard.diverged(loss):
                    return loss, step_lr
                if stepper.stop():
                    break
                continue
            if epoch_lr is None:
                step_lr = float(schedule(self.global_step)) * scale
            loss = stepper.step(b, step_lr, self.global_step)
            self.global_step += 1
            if guard.diverged(loss):
                return loss, step_lr
            if batch_end:
                logs = {"loss": loss, "batch": b}
                for hook in batch_end:
                    hook(b, logs)
            if stepper.stop():
                break
            b += 1
        return None, step_lr
