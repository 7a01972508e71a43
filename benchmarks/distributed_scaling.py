"""Scaling of data-parallel training: run under mpirun with 1, 2, ... ranks.

    OMP_NUM_THREADS=1 mpirun -n 1 python benchmarks/distributed_scaling.py
    OMP_NUM_THREADS=1 mpirun --oversubscribe -n 2 python benchmarks/distributed_scaling.py
    python benchmarks/distributed_scaling.py --plain      # no MPI, for reference

Trains the same model on the same synthetic data with the same global batch
(--global-batch rows per step, split over the ranks) and prints, on rank 0,
the fastest epoch after the first (shared machines are noisy), the throughput
and the share of the epoch spent in the gradient allreduce.  Ranks x threads
must not exceed the cores.
"""
import argparse
import time

import numpy as np

import fastnet
from fastnet import distributed
from fastnet.callbacks import Callback


class EpochTimes(Callback):
    def __init__(self):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.t0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rows", type=int, default=32768)
    p.add_argument("--features", type=int, default=256)
    p.add_argument("--hidden", type=int, nargs="+", default=[512, 512])
    p.add_argument("--global-batch", type=int, default=512)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--sync-bn", action="store_true")
    p.add_argument("--plain", action="store_true", help="no MPI: one process")
    args = p.parse_args()

    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, args.features)).astype(np.float32)
    y = (X[:, :8].sum(axis=1) > 0).astype(np.int64)
    sizes = [args.features, *args.hidden, 10]
    ranks = 1 if args.plain else distributed.size()
    model = fastnet.MLP(sizes, seed=0)
    timer = EpochTimes()
    dist = None if args.plain else distributed.Distributed(sync_bn=args.sync_bn)
    model.fit(X, y, epochs=args.epochs, batch_size=args.global_batch // ranks, verbose=0,
              callbacks=[timer], distributed=dist)
    epoch = min(timer.times[1:] or timer.times)        # the least disturbed epoch

    allreduce = 0.0
    if dist is not None:
        from mpi4py import MPI
        buf = model._grad_buffer
        dist.comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(50):
            dist.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        allreduce = (time.perf_counter() - t0) / 50
    steps = args.rows // args.global_batch
    if distributed.is_root():
        what = "plain" if args.plain else f"{ranks} rank{'s' if ranks > 1 else ''}" + (
            ", sync_bn" if args.sync_bn else "")
        print(f"{what}: MLP{sizes}, {model.params.size} parameters, global batch "
              f"{args.global_batch}: epoch {epoch:.3f} s, {args.rows / epoch:,.0f} rows/s, "
              f"allreduce {allreduce * 1e3:.2f} ms/step "
              f"({100 * allreduce * steps / epoch:.1f}% of the epoch)")


if __name__ == "__main__":
    main()
