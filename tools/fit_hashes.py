"""Fingerprints of short fits, to show that a refactor changes no bits.

Each case trains a fresh model for a few epochs and hashes its parameters,
batch-norm buffers and history (SHA-256 of the raw bytes and of the JSON of
the history), on the synthetic toy and digits data of ``fastnet.bench``, in
float32 and float64, on 1 and 2 threads.  Cases: a plain fit, a checkpointed
fit resumed half way, divergence rollback, gradient tracking, a fit with a
validation split, early stopping, a plateau schedule and class weights, and
regression (mse).  Under ``mpirun -n 2`` the same cases run distributed.

    python tools/fit_hashes.py > before.json        # on the old code
    python tools/fit_hashes.py --compare before.json
    mpirun -n 2 python tools/fit_hashes.py --mpi > before-mpi.json
"""
import argparse
import hashlib
import json
import os
import sys
import tempfile
import warnings

import fastnet
from fastnet.bench import make_data
from fastnet.callbacks import EarlyStopping
from fastnet.schedules import ReduceLROnPlateau

CONFIGS = {"toy": ([2, 64, 64, 64, 2], 64), "digits": ([64, 128, 128, 128, 10], 128)}


def _digest(model, history):
    h = hashlib.sha256()
    h.update(model.params.tobytes())
    h.update(model.buffers.tobytes())
    h.update(json.dumps(history.history, sort_keys=True, default=float).encode())
    h.update(json.dumps([history.best_epoch, history.stopped_epoch, history.diverged,
                         history.rollbacks, history.epochs], default=float).encode())
    return h.hexdigest()[:16]


def _fit(sizes, X, y, dtype, distributed, **kw):
    model = fastnet.MLP(sizes, dropout=0.3, dtype=dtype, seed=1)
    options = dict(epochs=2, optimizer="sgd", lr=0.05, verbose=0, seed=3)
    options.update(kw)
    if distributed:
        options["distributed"] = True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = model.fit(X, y, **options)
    return model, history


def cases(name, dtype, distributed):
    sizes, batch = CONFIGS[name]
    X, y = make_data(name if name != "toy" else "toy", seed=0, dtype=dtype)
    X, y = X[:1024], y[:1024]
    out = {}
    out["plain"] = _digest(*_fit(sizes, X, y, dtype, distributed, batch_size=batch))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ck.npz")
        if distributed:      # every rank needs the file: rank 0's directory
            from mpi4py import MPI
            path = MPI.COMM_WORLD.bcast(path, root=0)
            os.makedirs(os.path.dirname(path), exist_ok=True)
        _fit(sizes, X, y, dtype, distributed, batch_size=batch, epochs=1, checkpoint=path)
        out["resume"] = _digest(*_fit(sizes, X, y, dtype, distributed, batch_size=batch,
                                      epochs=3, checkpoint=path, resume=path))
    out["rollback"] = _digest(*_fit(sizes, X, y, dtype, distributed, batch_size=batch,
                                    epochs=3, lr=300.0, on_divergence="rollback"))
    out["tracking"] = _digest(*_fit(sizes, X, y, dtype, distributed, batch_size=batch,
                                    track_gradients=True))
    out["full"] = _digest(*_fit(
        sizes, X, y, dtype, distributed, batch_size=batch, epochs=4, validation_split=0.2,
        early_stopping=EarlyStopping(patience=1), optimizer="adamw", lr=3e-3,
        schedule=ReduceLROnPlateau(3e-3, patience=1), class_weight="balanced"))
    targets = (X[:, :2] ** 2).astype(dtype)
    model = fastnet.MLP(sizes[:-1] + [2], dtype=dtype, seed=1)
    history = model.fit(X, targets, epochs=2, batch_size=batch, loss="mse", optimizer="adam",
                        verbose=0, **({"distributed": True} if distributed else {}))
    out["mse"] = _digest(model, history)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", help="a JSON file written by this script")
    parser.add_argument("--mpi", action="store_true", help="distributed fits (under mpirun)")
    parser.add_argument("--threads", default="1,2")
    args = parser.parse_args()
    result = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        with fastnet.threads(threads):
            for name in CONFIGS:
                for dtype in ("float32", "float64"):
                    for case, digest in cases(name, dtype, args.mpi).items():
                        result[f"{name}/{dtype}/{threads}t/{case}"] = digest
    if args.mpi and fastnet.distributed.rank() != 0:
        return 0
    if args.compare:
        with open(args.compare) as fh:
            before = json.load(fh)
        differ = sorted(k for k in before if before[k] != result.get(k))
        for key in differ:
            print(f"DIFFERS {key}: {before[key]} -> {result.get(key)}")
        print(f"{len(before) - len(differ)} of {len(before)} fingerprints equal")
        return 1 if differ else 0
    json.dump(result, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
