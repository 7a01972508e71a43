"""The figures of issue 18 (data as users have it), measured in one run.

    python benchmarks/data_inputs.py sparse      # CSR vs the same values dense
    python benchmarks/data_inputs.py chunks      # shuffle="chunks" on a cold memory map
    python benchmarks/data_inputs.py rows        # epoch time per row, 200k to 2M rows
    python benchmarks/data_inputs.py accuracy    # shuffle="chunks" against a full shuffle
    python benchmarks/data_inputs.py memory      # extra anonymous memory of a fit (1 GB)

Speeds are ratios of epochs timed back to back in the same process (best of
``--repeat``); files go to ``--dir`` (default /tmp) and are deleted.
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

import fastnet

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))


def _epoch_seconds(X, y, sizes, repeat, **fit):
    best = np.inf
    for r in range(repeat):
        model = fastnet.MLP(sizes, seed=r, batch_norm=fit.pop("batch_norm", True))
        t0 = time.perf_counter()
        model.fit(X, y, epochs=1, verbose=0, **fit)
        best = min(best, time.perf_counter() - t0)
    return best


def sparse(args):
    import scipy.sparse
    n, features, density = args.rows or 20000, 20000, 0.005
    X = scipy.sparse.random(n, features, density=density, format="csr", dtype=np.float32,
                            random_state=0)
    y = np.random.default_rng(0).integers(0, 10, n)
    dense = X.toarray()
    for batch in (64, 256):
        t_sparse = _epoch_seconds(X, y, [features, 256, 10], args.repeat, batch_size=batch)
        t_dense = _epoch_seconds(dense, y, [features, 256, 10], args.repeat, batch_size=batch)
        print(f"[{features}, 256, 10], {n} rows at {density:.1%} density, batch {batch}: "
              f"epoch CSR {t_sparse:.2f} s, dense {t_dense:.2f} s: {t_dense / t_sparse:.1f}x")


def _drop_cache(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _write_rows(path, n, cols, seed=0):
    X = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, cols))
    rng = np.random.default_rng(seed)
    for s in range(0, n, 65536):
        X[s:s + 65536] = rng.standard_normal((min(65536, n - s), cols), dtype=np.float32)
    X.flush()
    del X


class _StopAfter:
    """fit callback: stop after `seconds` (a full shuffle of a cold map is slow)."""

    def __init__(self, seconds):
        self.seconds, self.batches, self.start = seconds, 0, time.perf_counter()

    def on_batch_end(self, batch, logs):
        self.batches += 1
        if time.perf_counter() - self.start > self.seconds:
            self.model.stop_training = True


def chunks(args):
    """Rows per second of one epoch: cold memory map with shuffle="chunks" (and, for at
    most 60 s, with a full shuffle) against the same rows in RAM."""
    n, cols = args.rows or 4_000_000, 256          # 4 GB
    path = os.path.join(args.dir, "fastnet_chunks.npy")
    sizes, batch = [cols, 64, 2], 1024
    y = np.random.default_rng(0).integers(0, 2, n)
    speed = {}
    try:
        _write_rows(path, n, cols)
        # the cold runs alternate, twice each (best kept): the first one right after
        # the file was written found the disk still busy writing it
        for shuffle in ("chunks", True, "chunks", True):
            _drop_cache(path)
            X = np.load(path, mmap_mode="r")
            stop = _StopAfter(60) if shuffle is True else None
            t0 = time.perf_counter()
            fastnet.MLP(sizes, seed=0).fit(X, y, epochs=1, batch_size=batch, verbose=0,
                                           shuffle=shuffle, callbacks=[stop] if stop else ())
            rows = n if stop is None else stop.batches * batch
            key = f"cold map, shuffle={shuffle!r}"
            speed[key] = max(speed.get(key, 0), rows / (time.perf_counter() - t0))
            del X
        _drop_cache(path)
        t0 = time.perf_counter()
        block = bytearray(16 << 20)
        with open(path, "rb", buffering=0) as fh:          # the disk alone, in sequence
            while fh.readinto(block):
                pass
        speed["cold file read in sequence (no training)"] = n / (time.perf_counter() - t0)
        X = np.load(path)            # the same rows in RAM
        for shuffle in ("chunks", True):
            speed[f"in RAM, shuffle={shuffle!r}"] = n / _epoch_seconds(
                X, y, sizes, 1, batch_size=batch, shuffle=shuffle)
        del X
    finally:
        if os.path.exists(path):
            os.remove(path)
    ram, ram_chunks = speed["in RAM, shuffle=True"], speed["in RAM, shuffle='chunks'"]
    for k, v in speed.items():
        print(f"{n} rows x {cols} float32 ({n * cols * 4 / 2**30:.1f} GB), {k}: "
              f"{v / 1e3:.0f}k rows/s ({v / ram_chunks:.0%} of RAM with chunks, "
              f"{v / ram:.0%} of RAM with a full shuffle)")


def rows(args):
    cols = 64
    X = np.random.default_rng(0).standard_normal((2_000_000, cols), dtype=np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    for shuffle in (True, "chunks"):
        per_row = {}
        for n in (200_000, 2_000_000):
            t = _epoch_seconds(X[:n], y[:n], [cols, 64, 2], args.repeat, batch_size=256,
                               shuffle=shuffle)
            per_row[n] = t / n
        print(f"shuffle={shuffle!r}: epoch time per row {per_row[200_000] * 1e6:.2f} us at "
              f"200k rows, {per_row[2_000_000] * 1e6:.2f} us at 2M: "
              f"{per_row[2_000_000] / per_row[200_000]:.2f}x")


def accuracy(args):
    """Test accuracy after the same epochs with either shuffle, on rows stored in a random
    order and sorted by class (the worst case for chunks: a window holds few classes)."""
    from sklearn.datasets import make_classification
    n = args.rows or 400_000
    X, y = make_classification(n + 50_000, 40, n_informative=30, n_classes=10,
                               n_clusters_per_class=2, class_sep=0.8, random_state=0)
    X, y = X.astype(np.float32), y.astype(np.int64)
    Xtr, ytr, Xte, yte = X[:n], y[:n], X[n:], y[n:]
    by_class = np.argsort(ytr, kind="stable")
    for stored, (Xs, ys) in (("random order", (Xtr, ytr)),
                             ("sorted by class", (Xtr[by_class], ytr[by_class]))):
        for shuffle in (True, "chunks"):
            accs = []
            for seed in range(3):
                model = fastnet.MLP([40, 256, 256, 10], seed=seed)
                model.fit(Xs, ys, epochs=args.epochs, batch_size=256, verbose=0,
                          shuffle=shuffle)
                accs.append(model.evaluate(Xte, yte)["accuracy"])
            print(f"{n} rows x 40 ({stored}), {args.epochs} epochs, shuffle={shuffle!r}: "
                  f"test accuracy {np.mean(accs):.4f} +- {np.std(accs):.4f} (seeds 0-2)")


def memory(args):
    import _memory
    n = args.rows or 1 << 20
    extra, data = _memory.fit_extra_anon(n, 256, fit_args=", validation_split=0.1")
    print(f"fit(validation_split=0.1), {data / 2**20:.0f} MB in RAM: extra anon "
          f"{extra / 2**20:.0f} MB ({extra / data:.1%} of the data)")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        extra, data = _memory.fit_extra_anon(n, 256, memory_map=os.path.join(tmp, "X.npy"))
    print(f"fit on a read-only memory map of {data / 2**20:.0f} MB: extra anon "
          f"{extra / 2**20:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["sparse", "chunks", "rows", "accuracy", "memory"])
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    args = parser.parse_args()
    globals()[args.what](args)
