"""Data-parallel training over MPI (mpi4py): ``fit(..., distributed=True)``.

Every rank calls ``fit`` with the same model, data and options (launch with
``mpirun -n 4 python train.py``).  Each step takes the next ``batch_size x
ranks`` rows of the epoch's permutation (the same on every rank) and rank r
trains on its contiguous share of them; the gradient is then summed with
one ``Allreduce`` over one flat, preallocated buffer (the model's gradients
plus three slots for the batch loss, the correct rows and a stop flag) and
every rank applies the same native optimizer update.  The loss of each part
is divided by the weight of the whole batch, so the sum *is* the gradient of
one process training on the whole batch: ``k`` ranks at ``batch_size=b``
train like one process at ``batch_size=k*b`` (exactly so with synchronised
batch norm, or without batch norm, up to float rounding).

Batch norm: by default each rank normalises with its own part's
statistics, and the running statistics are averaged over ranks after every
epoch.  With ``Distributed(sync_bn=True)`` the native step calls back into
MPI inside the forward (per-feature sums, then sums of squared deviations
about the global mean: the same two-pass statistics as one process) and the
backward (the two per-feature reductions), so every rank normalises with the
whole batch's statistics.

Decisions are made once: the epoch's logs are broadcast from rank 0 before
callbacks (early stopping, ReduceLROnPlateau) see them, stop flags (Ctrl-C,
``model.stop_training``) are OR-ed over ranks, and only rank 0 prints and
writes checkpoints.  Before training, ranks compare the model, the data
(shapes and CRC32 checksums) and the options and all raise the same
``ValueError`` when they disagree.  An exception on one rank during training
aborts the whole job (``MPI_Abort``) after printing which rank failed, so a
failed rank never leaves the others waiting forever.

mpi4py is imported only when distributed training is asked for: a plain
``python`` run needs neither MPI nor mpi4py.
"""
import os
import sys
import traceback
import zlib

import numpy as np

__all__ = ["Distributed", "barrier", "is_root", "launched_by_mpi", "rank", "size"]

# set by mpirun/mpiexec (Open MPI, MPICH/Hydra, Intel MPI) or srun with PMI/PMIx
_LAUNCHER_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK")

#: The slots after the gradients in the model's flat gradient buffer, which one Allreduce
#: per step sums: the batch loss, the correct rows and the stop flag.  MLP sizes its
#: buffer from this tuple.
GRAD_TAIL = ("loss", "correct", "stop")
_LOSS, _CORRECT, _STOP = (GRAD_TAIL.index(k) for k in GRAD_TAIL)


def launched_by_mpi():
    """True when this process was started by an MPI launcher."""
    return any(v in os.environ for v in _LAUNCHER_VARS)


def _mpi():
    try:
        from mpi4py import MPI
    except ImportError as exc:
        raise ImportError("distributed training needs mpi4py and an MPI library: "
                          "pip install 'fastnet[mpi]' (and e.g. apt-get install "
                          "openmpi-bin libopenmpi-dev)") from exc
    return MPI


def _world():
    if not launched_by_mpi():
        return None
    comm = _mpi().COMM_WORLD
    _abort_on_uncaught(comm)
    return comm


def rank():
    """This process's rank in MPI_COMM_WORLD (0 without an MPI launcher)."""
    comm = _world()
    return 0 if comm is None else comm.Get_rank()


def size():
    """Number of ranks in MPI_COMM_WORLD (1 without an MPI launcher)."""
    comm = _world()
    return 1 if comm is None else comm.Get_size()


def is_root():
    """True on rank 0 (and in a plain run): the rank that prints and writes files."""
    return rank() == 0


def barrier():
    """Wait for every rank (nothing to do without an MPI launcher)."""
    comm = _world()
    if comm is not None:
        comm.Barrier()


class Distributed:
    """Options of data-parallel training; pass as ``fit(..., distributed=...)``.

    Parameters
    ----------
    comm : mpi4py communicator, optional
        Default ``MPI.COMM_WORLD``.
    sync_bn : bool
        Normalise with the statistics of the whole batch over all ranks
        (three small allreduces per batch-norm layer and step) instead of
        each rank's part.
    """

    def __init__(self, comm=None, *, sync_bn=False):
        self.sync_bn = bool(sync_bn)
        self._comm = comm

    @property
    def comm(self):
        if self._comm is None:
            self._comm = _mpi().COMM_WORLD
            _abort_on_uncaught(self._comm)
        return self._comm

    @property
    def rank(self):
        return self.comm.Get_rank()

    @property
    def size(self):
        return self.comm.Get_size()

    def __repr__(self):
        return f"Distributed(sync_bn={self.sync_bn})"


def resolve(value):
    """fit's `distributed` argument as a Distributed, or None for a plain run.

    None/False: plain.  True: MPI_COMM_WORLD.  "auto": distributed when started
    by an MPI launcher with more than one rank.  A Distributed: itself.
    """
    if value is None or value is False:
        return None
    if value is True:
        dist = Distributed()
        _ = dist.comm             # MPI starts now: a rank failing from here on ends the job
        return dist
    if isinstance(value, str) and value == "auto":
        if not launched_by_mpi():
            return None
        dist = Distributed()
        return dist if dist.size > 1 else None
    if isinstance(value, Distributed):
        _ = value.comm
        return value
    raise TypeError(f"distributed must be True, False, 'auto' or a fastnet.distributed."
                    f"Distributed, got {value!r}")


def start(dist, model, n, batch_size, train, val, **options):
    """The Run of a fit (dist: resolve()'s answer), or None for a plain fit; every
    rank raises the same ValueError when the ranks disagree on the model, data or
    options."""
    if dist is None:
        return None
    run = Run(dist, model, n, batch_size)
    X, labels, targets, weights = train
    arrays = {"X": X, "y": labels if targets is None else targets, "sample_weight": weights}
    if val is not None:
        arrays.update({"validation X": val[0], "validation sample_weight": val[3],
                       "validation y": val[1] if val[2] is None else val[2]})
    run.check(arrays, dict(options, batch_size=batch_size))
    return run


def _checksum(a):
    if a is None:
        return None
    return zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"))


def _describe(a):
    if a is not None and not isinstance(a, np.ndarray):     # rows of X, a CSR matrix
        from fastnet import _inputs
        return _inputs.describe(a)
    return None if a is None else (tuple(a.shape), a.dtype.str, _checksum(a))


class Run:
    """One distributed fit: the batch plan, the per-step allreduce and the
    agreements between ranks.  Created by MLP.fit."""

    def __init__(self, dist, model, n, batch_size):
        MPI = _mpi()
        self._MPI = MPI
        self.comm = dist.comm
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self.root = self.rank == 0
        self.sync_bn = dist.sync_bn and model.batch_norm
        self.model = model
        self.n = n
        r = self.size
        self.global_batch = g = min(batch_size * r, n)
        self.max_batch = -(-g // r)                      # the largest part of a batch
        steps = -(-n // g)
        last = n - (steps - 1) * g
        # every rank needs rows; per-rank batch norm needs 2 per rank, synchronised 2 in all
        if last < r or (model.batch_norm and (last < 2 if self.sync_bn else last < 2 * r)):
            steps -= 1
        if steps < 1:
            raise ValueError(f"distributed fit over {r} ranks needs at least "
                             f"{2 * r if model.batch_norm and not self.sync_bn else r} "
                             f"training rows, got {n}")
        self.steps = steps
        self.n_params = model.params.size
        size = self.n_params + len(GRAD_TAIL)
        buffer = model._grad_buffer
        # the gradients are the buffer's head, unless a copy of the model broke the view
        self._copy = buffer.size != size or buffer.ctypes.data != model.grads.ctypes.data
        self.buffer = np.zeros(size, model.dtype) if self._copy else buffer
        self._weights = None
        self._batch_weight = None
        self._reset()
        self.stop = False
        _abort_on_uncaught(self.comm)

    # ---- set-up -----------------------------------------------------------------

    def check(self, arrays, options):
        """Raise the same ValueError on every rank when ranks disagree."""
        m = self.model
        mine = {
            "layer_sizes": tuple(m.layer_sizes), "activation": m.activation,
            "batch_norm": m.batch_norm, "dropout": m.dropout, "dtype": m.dtype.str,
            "n_params": int(m.params.size),
            "weights (CRC32 of parameters and batch-norm buffers)":
                (_checksum(m.params), _checksum(m.buffers)),
        }
        for name, a in arrays.items():
            mine[f"{name} (shape, dtype, CRC32)"] = _describe(a)
        mine.update(options)
        mine["sync_bn"] = self.sync_bn
        everyone = self.comm.allgather(mine)
        problems = []
        for key in mine:
            values = [s.get(key) for s in everyone]
            if any(v != values[0] for v in values):
                shown = ", ".join(f"rank {i}: {v!r}" for i, v in enumerate(values))
                problems.append(f"  {key}: {shown}")
        if problems:
            raise ValueError("fastnet.distributed: the ranks disagree, so they cannot train "
                             "one model together (every rank must call fit with the same "
                             "model, data and options):\n" + "\n".join(problems))

    def bind(self, engine, weights):
        """Bind the engine (synchronised batch norm) and the sample weights."""
        self._weights = weights
        if self.sync_bn:
            MPI, comm, sums = self._MPI, self.comm, []

            def reduce_bn(start, stop):
                comm.Allreduce(MPI.IN_PLACE, sums[0][start:stop], op=MPI.SUM)
            engine.set_reducer(reduce_bn)
            sums.append(engine.bn_sums)

    def _reset(self):
        self.loss_sum = 0.0
        self.correct = 0.0
        self.rows = 0
        self.grad_norm_sum = 0.0
        self.done = 0

    # ---- per epoch and step -----------------------------------------------------

    def begin_epoch(self, order):
        """Whole-batch weight sums of the epoch (every rank holds every row)."""
        self._reset()
        self.stop = False
        g = self.global_batch
        starts = np.arange(0, self.steps * g, g)
        if self._weights is None:
            self._batch_weight = np.minimum(g, self.n - starts).astype(np.float64)
        else:
            w = self._weights[order[:min(self.n, self.steps * g)]].astype(np.float64)
            self._batch_weight = np.add.reduceat(w, starts)

    def part(self, b):
        """(start, stop) of this rank's rows of batch b in the epoch's order."""
        start = b * self.global_batch
        m = min(self.global_batch, self.n - start)
        q, rem = divmod(m, self.size)
        lo = start + self.rank * q + min(self.rank, rem)
        return lo, lo + q + (self.rank < rem), m

    def step(self, engine, feed, b, lr, clip, seed, step_index, stop):
        """Train on this rank's part of batch b (its rows read through `feed`, see
        ``fastnet._inputs.feed``); returns the whole batch's loss."""
        lo, hi, m = self.part(b)
        correct = engine.correct
        start, stop_at = feed.window(lo, hi)
        part_loss = engine.step(start, stop_at, lr, clip, seed, step_index, update=False,
                                total_weight=float(self._batch_weight[b]), total_rows=m,
                                row0=lo - b * self.global_batch)
        tail = self.buffer[self.n_params:]
        tail[_LOSS] = part_loss
        tail[_CORRECT] = engine.correct - correct
        tail[_STOP] = 1.0 if stop else 0.0
        if self._copy:
            self.buffer[:self.n_params] = self.model.grads
        self.comm.Allreduce(self._MPI.IN_PLACE, self.buffer, op=self._MPI.SUM)
        if self._copy:
            self.model.grads[...] = self.buffer[:self.n_params]
        norm = engine.apply_update(lr, clip)
        loss = float(tail[_LOSS])
        self.loss_sum += loss * m
        self.correct += float(tail[_CORRECT])
        self.rows += m
        self.grad_norm_sum += norm
        self.done += 1
        self.stop = bool(tail[_STOP] > 0)
        return loss

    def totals(self):
        """The epoch's whole-batch sums: (loss_sum, correct, rows, grad_norm_sum, steps)."""
        return (self.loss_sum, round(self.correct), max(self.rows, 1), self.grad_norm_sum,
                max(self.done, 1))

    def end_epoch(self):
        """Average the per-rank batch-norm running statistics over the ranks."""
        buffers = self.model.buffers
        if buffers.size:
            # a no-op with synchronised batch norm (every rank holds the same values)
            self.comm.Allreduce(self._MPI.IN_PLACE, buffers, op=self._MPI.SUM)
            buffers /= buffers.dtype.type(self.size)

    def barrier(self):
        self.comm.Barrier()

    def agree_logs(self, logs):
        """Rank 0's logs on every rank: callbacks decide on identical input."""
        return self.comm.bcast(logs, root=0)

    def agree_flags(self, *flags):
        """Each flag OR-ed over the ranks."""
        local = np.array([1 if f else 0 for f in flags], dtype=np.int32)
        self.comm.Allreduce(self._MPI.IN_PLACE, local, op=self._MPI.MAX)
        return [bool(v) for v in local]

    def abort(self, exc):
        """Print which rank failed and end every rank (the others would wait forever)."""
        sys.stderr.write(f"fastnet.distributed: rank {self.rank} of {self.size} raised "
                         f"{type(exc).__name__}: {exc}\n")
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.write(f"fastnet.distributed: aborting all {self.size} ranks "
                         "(MPI_Abort)\n")
        sys.stderr.flush()
        self.comm.Abort(1)


_abort_hook = None         # the excepthook _abort_on_uncaught installed


def _abort_on_uncaught(comm):
    """An uncaught exception on one rank ends the job instead of leaving the
    other ranks blocked in a collective (like ``python -m mpi4py``)."""
    global _abort_hook
    if comm.Get_size() < 2 or (_abort_hook is not None and sys.excepthook is _abort_hook):
        return
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        sys.stderr.write(f"fastnet.distributed: uncaught {kind.__name__} on rank "
                         f"{comm.Get_rank()} of {comm.Get_size()}; aborting all ranks "
                         "(MPI_Abort)\n")
        sys.stderr.flush()
        comm.Abort(1)
    sys.excepthook = _abort_hook = hook
