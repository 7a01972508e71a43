"""What :meth:`MLP.fit` does: check every argument (:func:`make_plan`), then set up
the stepper and the built-in callbacks and run the one loop (:func:`run`).

:func:`make_plan` raises fit's errors in fit's documented order and changes
nothing; only :func:`run` touches the model.
"""
import math
import numbers
import os
from types import SimpleNamespace

import numpy as np

from fastnet import _checkpoint, _inputs, _io, _loop, _network, _stepper
from fastnet import _fit_callbacks as _builtins
from fastnet import distributed as _distributed
from fastnet import health as _health
from fastnet import optim as _optim
from fastnet import schedules as _schedules
from fastnet._validation import one_of, positive_int, real_number, sample_weights, seed_value

# losses whose fit logs an accuracy (of the class; of all labels of a row)
ACCURACY_LOSSES = ("cross_entropy", "bce")


def make_plan(model, X, y, *, epochs, batch_size, optimizer, lr, schedule, validation_data,
              validation_split, early_stopping, loss, grad_clip, shuffle, seed, verbose,
              callbacks, weight_decay, sample_weight, checkpoint, checkpoint_every, resume,
              class_weight, track_gradients, on_divergence, distributed):
    """Every argument of fit checked, in fit's order, as one namespace."""
    # first: under MPI, a rank that fails from here on ends the whole job
    p = SimpleNamespace(dist=_distributed.resolve(distributed))
    p.loss = loss = one_of(loss, "loss", _network.LOSSES)
    p.epochs = positive_int(epochs, "epochs")
    p.batch_size = batch_size = positive_int(batch_size, "batch_size")
    p.verbose = one_of(verbose, "verbose", (0, 1, 2))
    if model.batch_norm and batch_size < 2:
        raise ValueError(f"batch_size must be >= 2 with batch_norm=True (a batch of one "
                         f"row has no batch variance), got {batch_size}")
    p.shuffle = _inputs.shuffle_mode(shuffle)
    p.policy = _health.divergence_policy(on_divergence)
    p.samples = _health.track_samples(track_gradients)
    p.feature_names = _inputs.frame_columns(X)
    p.train = model._training_rows(X, y, loss, sample_weight, class_weight)
    if p.train[0].shape[0] < 2:
        raise ValueError(f"fit needs at least 2 rows, X has {p.train[0].shape[0]}")
    p.every = positive_int(checkpoint_every, "checkpoint_every")
    p.checkpoint = checkpoint
    if checkpoint is not None:      # a checkpoint that cannot be written fails now
        _io.check_writable(checkpoint)
    p.resume_state = None
    if resume is not None and os.path.exists(os.fspath(resume)):
        p.resume_state = _checkpoint.read(resume, model)
    p.clip = 0.0 if grad_clip is None else real_number(grad_clip, "grad_clip", low=0.0,
                                                        low_open=True)
    p.run_seed = model.seed if seed is None else seed_value(seed)
    if p.resume_state is not None and p.resume_state["meta"]["run_seed"] != p.run_seed:
        raise ValueError(f"{resume}: checkpoint was written by a fit with seed "
                         f"{p.resume_state['meta']['run_seed']}, this fit has seed {p.run_seed}")
    # the engine trains through an order of rows of the caller's X: the rows of a
    # Rows view (fastnet.sklearn's split) and of the validation split are index sets
    base, rows, *per_row = _inputs.spread(*p.train)
    rows, p.val = _validation_rows(model, (base, *per_row), rows, loss, validation_data,
                                   validation_split, p.run_seed)
    p.bound = (base, *per_row)
    p.orders = _inputs.EpochOrders(base, rows, p.shuffle)
    p.train = p.bound if rows is None else \
        (_inputs.Rows(base, rows),) + tuple(_inputs.subset(a, rows) for a in per_row)
    p.opt = _optim.get(optimizer, lr=lr, weight_decay=weight_decay)
    p.sched = _schedules.resolve(schedule, p.opt.lr)
    p.per_step, needs_metric, metric = _schedules.contract(p.sched)
    p.monitor = "val_loss" if p.val is not None else "loss"
    p.metric = (metric or p.monitor) if needs_metric else None
    if needs_metric:
        _check_logged(p.sched, p.metric, loss, p.val)
    p.callbacks = list(callbacks)
    stopper = _early_stopping(early_stopping, p.val)
    if stopper is not None:
        p.callbacks.append(stopper)
    p.record = None
    if checkpoint is not None or p.resume_state is not None:
        p.record = _checkpoint.run_record(
            p.train, p.val, batch_size=batch_size, loss=loss, schedule=p.sched, optimizer=p.opt,
            grad_clip=p.clip or None, shuffle=p.shuffle, on_divergence=p.policy,
            track_gradients=p.samples, ranks=1 if p.dist is None else p.dist.size)
    if p.resume_state is not None:
        _checkpoint.check_run(p.resume_state, p.record)
    p.targets_1d = loss != "cross_entropy" and np.ndim(y) == 1
    return p


def _validation_rows(model, bound, rows, loss, validation_data, validation_split, run_seed):
    """(training rows, validation rows or None) of the data `bound` (X and its per-row
    arrays) whose training rows are `rows` (None: all): validation_data checked, or a
    seeded validation_split of the training rows, both index sets into X."""
    X, labels, targets, weights = bound
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("validation_data must be (X_val, y_val) or "
                             "(X_val, y_val, sample_weight_val)")
        Xv = model._check_x(validation_data[0], "validation_data[0]", convert=False)
        wv = None
        if len(validation_data) == 3:
            wv = sample_weights(validation_data[2], Xv.shape[0], model.dtype,
                                "validation_data[2]")
        return rows, (Xv,) + model._check_y(validation_data[1], Xv.shape[0], loss,
                                            "validation_data[1]") + (wv,)
    split = real_number(validation_split, "validation_split", low=0.0, high=1.0, high_open=True)
    if split <= 0:
        return rows, None
    n = X.shape[0] if rows is None else rows.shape[0]
    n_val = int(math.ceil(split * n))
    if n - n_val < 2:
        raise ValueError(f"validation_split={split} leaves {n - n_val} training rows")
    ti, vi = _inputs.validation_split(n, split, run_seed)
    if rows is not None:
        ti, vi = rows[ti], rows[vi]
    held_out = _inputs.subset(weights, vi)
    val = (_inputs.Rows(X, vi), _inputs.subset(labels, vi), _inputs.subset(targets, vi),
           held_out if held_out is not None and np.any(held_out > 0)
           else None)   # all-zero held-out weights: score unweighted
    return ti, val


def _check_logged(sched, metric, loss, val):
    """A metric-driven schedule must monitor a key fit logs: fail now, not after an
    epoch of training."""
    logged = {"loss", "lr", "grad_norm", "time"}
    if loss in ACCURACY_LOSSES:
        logged.add("accuracy")
    if val is not None:
        logged.update("val_" + k for k in logged & {"loss", "accuracy"})
    if metric not in logged:
        raise ValueError(f"{type(sched).__name__} monitors {metric!r}, which this fit "
                         f"does not log (logs: {sorted(logged)}); pass validation "
                         "data or choose another monitor")


def _early_stopping(value, val):
    """fit's early_stopping argument as an EarlyStopping, or None."""
    if value is None or value is False:
        return None
    from fastnet.callbacks import EarlyStopping
    if value is True:
        value = EarlyStopping()
    elif isinstance(value, numbers.Integral):
        value = EarlyStopping(patience=int(value))
    elif not isinstance(value, EarlyStopping):
        raise TypeError("early_stopping must be an EarlyStopping, an int patience or True")
    if value.monitor.startswith("val_") and val is None:
        raise ValueError(f"early stopping monitors {value.monitor!r}: pass "
                         "validation_data or validation_split")
    return value


def run(model, p):
    """Train `model` by the checked plan `p`; returns the History."""
    from fastnet.model import History
    model.loss = p.loss
    model._targets_1d = p.targets_1d
    model.feature_names_in_ = p.feature_names
    n = p.train[0].shape[0]
    dist_run = _distributed.start(
        p.dist, model, n, p.batch_size, p.train, p.val, loss=p.loss, epochs=p.epochs,
        grad_clip=p.clip, shuffle=p.shuffle, seed=p.run_seed,
        optimizer=(type(p.opt).__name__, tuple(p.opt.native_config()), p.opt.lr),
        resume=None if p.resume_state is None else p.resume_state["meta"]["epochs_done"])
    engine, feed, max_batch, steps = model._training_engine(
        *p.bound, p.batch_size if dist_run is None else dist_run.max_batch, p.loss, n_rows=n)
    interrupt = []          # the CtrlC built-in, once made
    args = (model, engine, feed, p.loss, n, max_batch, steps, p.clip,
            _stepper.dropout_seed(p.run_seed), p.orders.keyed(p.run_seed),
            lambda: interrupt[0].raised or model.stop_training)
    if dist_run is None:
        stepper = _stepper.LocalStepper(*args)
    else:
        dist_run.bind(engine, p.bound[3])      # indexed by rows of X, like the engine
        stepper = _stepper.DistributedStepper(dist_run, *args)
    history = History()
    guard = _health.DivergenceGuard(_health.baseline_loss(model.layer_sizes[-1], p.train[2],
                                                          p.train[3]))
    trainer = _loop.Trainer(model, stepper, history=history, optimizer=p.opt,
                            schedule=p.sched, per_step=p.per_step, epochs=p.epochs,
                            global_step=p.opt.t, divergence=None,
                            epoch_logs=lambda totals, lr: model._epoch_logs(
                                totals, engine, p.loss, lr, p.val),
                            verbose=p.verbose if stepper.is_root else 0)
    trainer.divergence = _builtins.DivergenceCheck(
        trainer, p.policy, guard, p.monitor,
        lambda: model._training_loss(engine, *p.train))
    builtins = _fit_builtins(trainer, p, model, engine, steps, history)
    interrupt.append(trainer.interrupt)
    model.stop_training = False
    trainer.run(builtins, p.callbacks)
    for cb in reversed(p.callbacks):       # the last callback that stops early says when
        if hasattr(cb, "stopped_epoch"):
            if cb.stopped_epoch is not None:
                history.stopped_epoch = cb.stopped_epoch
            break
    model.optimizer = p.opt
    model.history = history
    trainer.divergence.finish()
    return history


def _fit_builtins(trainer, p, model, engine, steps, history):
    """The built-in callbacks of this fit (their order is their own)."""
    B = _builtins
    trainer.best = B.BestState(trainer, p.monitor)
    trainer.interrupt = B.CtrlC(trainer)
    builtins = [B.HistoryRecorder(trainer), trainer.best, B.OptimizerBinding(trainer),
                trainer.interrupt]
    if p.samples:
        history.history["layer_grad_norm"] = []
        history.history["dead_fraction"] = []
        tracker = _health.GradientTracker(engine, model.layer_sizes, trainer.stepper.steps,
                                          p.samples)
        builtins.append(B.GradientTracking(trainer, tracker, model.activation))
    if isinstance(trainer.stepper, _stepper.DistributedStepper):
        builtins += [B.LogAgreement(trainer), B.FlagAgreement(trainer)]
    if p.metric is not None:
        builtins.append(B.PlateauScheduler(trainer, p.metric))
    if trainer.verbose == 1:
        builtins.append(B.ProgressBar(trainer))
    if trainer.verbose:
        builtins.append(B.EpochPrinter(trainer))
    if p.checkpoint is not None or p.resume_state is not None:
        builtins.append(B.Checkpointer(trainer, p.checkpoint, p.every, p.resume_state,
                                       p.callbacks, p.run_seed, p.record))
    if trainer.divergence.rollback is not None:
        builtins.append(B.RollbackPoint(trainer, trainer.divergence))
    return builtins


class _StepTable(_schedules.Schedule):
    """The lr range test's lrs, one per optimizer step."""

    per_step = True

    def __init__(self, lrs):
        self.lrs = lrs

    def lr_at(self, t):
        return self.lrs[t]


def range_test(model, train, loss, batch_size, opt, lrs, run_seed, watch):
    """The steps of :meth:`MLP.lr_find` through the one loop: one per lr in `lrs`
    (cycling through seeded shuffles of the rows), stopping early when `watch` sees the
    loss diverge.  Returns (losses, index of the diverging step or None)."""
    from fastnet.model import History
    n = train[0].shape[0]
    base, rows, *per_row = _inputs.spread(*train)       # Rows: their index set
    engine, feed, max_batch, per_epoch = model._training_engine(base, *per_row, batch_size,
                                                                loss, n_rows=n)
    model.stop_training = False
    orders = _inputs.EpochOrders(base, rows, True).keyed(run_seed, 0x1F)
    stepper = _stepper.LocalStepper(model, engine, feed, loss, n, max_batch, per_epoch, 0.0,
                                    _stepper.dropout_seed(run_seed), orders,
                                    lambda: model.stop_training)
    trainer = _loop.Trainer(model, stepper, history=History(), optimizer=opt,
                            schedule=_StepTable(lrs), per_step=True,
                            epochs=-(-len(lrs) // per_epoch), global_step=0,
                            divergence=_builtins.NoDivergenceCheck(),
                            epoch_logs=lambda totals, lr: {"loss": math.nan})
    recorder = _builtins.RangeTest(trainer, len(lrs), watch)
    trainer.run([_builtins.OptimizerBinding(trainer), recorder], ())
    return recorder.losses, recorder.diverged_at
