"""Steppers: how the training loop (:mod:`fastnet._loop`) takes its steps.

A stepper owns the engine bound to the training rows and answers the loop's
questions the same way for one process and for many: the epoch's order,
one step (or a block of steps in one native call), the epoch's totals and
the agreements between ranks.  :class:`LocalStepper` runs the steps in this
process under the thread governor (:mod:`fastnet._threads`, the thread count
of each step); :class:`DistributedStepper` trains this rank's share of every
batch and sums the gradients over the ranks (:mod:`fastnet.distributed`).
The loop therefore has no "distributed or not" branches.
"""
import functools
import time

import numpy as np

from fastnet._threads import ThreadGovernor


@functools.lru_cache(maxsize=64)
def dropout_seed(run_seed):
    """The key of a run's dropout masks (cached: SeedSequence hashing is a visible part
    of a small one-epoch fit)."""
    return int(np.random.SeedSequence([run_seed, 0xD209]).generate_state(1, np.uint64)[0])


class LocalStepper:
    """Steps in this process.

    Parameters
    ----------
    model : MLP
    engine : fastnet._network.Engine
    feed : fastnet._inputs.DirectFeed or StagedFeed
        How the engine reads the training rows (``MLP._training_engine``).
    loss : str
    n, max_batch, steps : int
        Training rows, rows per batch and steps per epoch.
    clip : float
        Global gradient-norm clip (0: none).
    dropout_seed : int
    orders : fastnet._inputs.EpochOrders
        The row order of each epoch (and the disk reads ahead of it).
    wants_stop : callable () -> bool
        Whether Ctrl-C or ``model.stop_training`` asks the epoch to end.
    """

    is_root = True
    blocks = True           # may run a block of steps in one native call

    def __init__(self, model, engine, feed, loss, n, max_batch, steps, clip, dropout_seed,
                 orders, wants_stop):
        self.model, self.engine, self.feed = model, engine, feed
        self.n, self.max_batch, self.steps = n, max_batch, steps
        self.clip, self.dropout_seed, self.orders = clip, dropout_seed, orders
        self.wants_stop = wants_stop
        self.governor = ThreadGovernor((tuple(model.layer_sizes), max_batch, model.dtype.name,
                                        model.batch_norm, model.dropout, loss))
        self.opt_buffers = None

    # ---- set-up and epochs ----------------------------------------------------------

    def bind_optimizer(self, opt):
        """Give the engine the optimizer's hyper-parameters, step and state buffers."""
        self.opt = opt
        self.opt_buffers = self.model._bind_optimizer(self.engine, opt)

    def begin_epoch(self, epoch):
        engine = self.engine
        order = self.orders.order(epoch)
        self.feed.begin_epoch(order)
        engine.begin_epoch()
        self.orders.read_ahead(order, lambda: engine.rows)
        return order

    def close(self):
        """The fit ends: stop reading ahead."""
        self.orders.close()

    def end_epoch(self):
        self.opt.t = self.engine.opt_step

    def totals(self):
        """(loss_sum, correct, rows, grad_norm_sum, steps) of the epoch so far."""
        e = self.engine
        return e.loss_sum, e.correct, e.rows, e.grad_norm_sum, e.steps

    # ---- steps ----------------------------------------------------------------------

    def block(self, remaining):
        """How many steps may run in one native call now."""
        return min(self.governor.block(remaining), self.feed.max_batches)

    def step(self, b, lr, step_index):
        """Train batch b of the epoch's order; returns its loss."""
        start = b * self.max_batch
        lo, hi = self.feed.window(start, min(self.n, start + self.max_batch))
        governor = self.governor
        self.engine.threads = threads = governor.threads()
        tick = time.perf_counter()
        loss = self.engine.step(lo, hi, lr, self.clip, self.dropout_seed,
                                step_index & 0xFFFFFFFF)
        governor.record(threads, time.perf_counter() - tick)
        return loss

    def run_block(self, b, count, lrs, step_index, loss_limit):
        """Batches b .. b + count - 1 in one native call, stopping early at a loss over
        `loss_limit` or when :attr:`wants_stop`; returns (steps done, last loss)."""
        batch = self.max_batch
        lo, _ = self.feed.window(b * batch, min(self.n, (b + count) * batch))
        first = lo // batch             # a window starts at a batch
        governor = self.governor
        self.engine.threads = threads = governor.threads()
        tick = time.perf_counter()
        done, loss = self.engine.run_steps(first, first + count, batch, lrs, self.clip,
                                           self.dropout_seed, step_index, loss_limit,
                                           self.wants_stop)
        governor.record(threads, time.perf_counter() - tick, done)
        return done, loss

    def stop(self):
        """Whether the epoch ends after the step just taken."""
        return self.wants_stop()

    # ---- agreements (one process: nothing to agree on) -----------------------------

    def agree_logs(self, logs):
        return logs

    def agree_flags(self, *flags):
        return flags

    def barrier(self):
        pass

    def abort(self, exc):
        pass


class DistributedStepper(LocalStepper):
    """This rank's share of every batch, the gradients summed over the ranks
    (a :class:`fastnet.distributed.Run`)."""

    blocks = False

    def __init__(self, run, *args):
        super().__init__(*args)
        self.run = run
        self.is_root = run.root
        self.steps = run.steps

    def begin_epoch(self, epoch):
        order = super().begin_epoch(epoch)
        self.run.begin_epoch(order)
        return order

    def end_epoch(self):
        super().end_epoch()
        self.run.end_epoch()

    def totals(self):
        return self.run.totals()

    def step(self, b, lr, step_index):
        governor = self.governor
        self.engine.threads = threads = governor.threads()
        tick = time.perf_counter()
        loss = self.run.step(self.engine, self.feed, b, lr, self.clip, self.dropout_seed,
                             step_index & 0xFFFFFFFF, self.wants_stop())
        governor.record(threads, time.perf_counter() - tick)
        return loss

    def stop(self):
        return self.run.stop

    def agree_logs(self, logs):
        return self.run.agree_logs(logs)

    def agree_flags(self, *flags):
        return self.run.agree_flags(*flags)

    def barrier(self):
        self.run.barrier()

    def abort(self, exc):
        if self.run.size > 1:
            self.run.abort(exc)
