"""Run by tests/test_distributed.py under ``mpirun -n 2``: python _mpi_worker.py SCENARIO OUT.

Each scenario trains on every rank and rank 0 writes what the test checks to OUT.
"""
import json
import sys
import zlib

import numpy as np

import fastnet
from fastnet import distributed
from fastnet.callbacks import Callback, EarlyStopping


def data(n=512, d=12, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = (X[:, :3].sum(axis=1) > 0).astype(np.int64) + (X[:, 3] > 1)
    return X, y


class WeightsEveryEpoch(Callback):
    """Gathers every rank's CRC32 of the weights (and buffers) after each epoch."""

    def __init__(self, comm):
        self.comm = comm
        self.crcs = []

    def on_epoch_end(self, epoch, logs=None):
        m = self.model
        crc = (zlib.crc32(m.params.tobytes()), zlib.crc32(m.buffers.tobytes()))
        self.crcs.append(self.comm.allgather(crc))


def cases():
    """(name, model options, fit options) of the equivalence scenario; the test trains
    the same on one process with the double batch."""
    w = np.random.default_rng(1).uniform(0.5, 2.0, size=len(data()[1]))
    return [("sync_bn", dict(batch_norm=True), {}),
            ("no_bn", dict(batch_norm=False), {}),
            ("weighted_clip", dict(batch_norm=True), dict(sample_weight=w, grad_clip=0.5)),
            ("mse", dict(batch_norm=True), dict(loss="mse")),
            ("sync_bn_dropout", dict(batch_norm=True, dropout=0.2), {}),
            ("per_rank_bn_dropout", dict(batch_norm=True, dropout=0.2), {})]


def train_case(model_kw, fit_kw, batch_size, **more):
    """The model of one case, trained with `batch_size` rows per process."""
    X, y = data()
    mse = fit_kw.get("loss") == "mse"
    model = fastnet.MLP([12, 32, 16, 1 if mse else 3], seed=3, **model_kw)
    hist = model.fit(X, X[:, 0] - X[:, 1] if mse else y, epochs=4, batch_size=batch_size,
                     optimizer="sgd", lr=0.05, validation_split=0.25, seed=7, verbose=0,
                     **fit_kw, **more)
    return model, hist


def equivalence(out):
    """2 ranks x batch 64 for the test to compare with 1 process x batch 128 (all but
    per-rank batch norm); and the weights after every epoch."""
    comm = distributed.Distributed().comm
    results = {}
    for name, model_kw, fit_kw in cases():
        watch = WeightsEveryEpoch(comm)
        sync = name != "per_rank_bn_dropout"
        model, hist = train_case(model_kw, fit_kw, 64, callbacks=[watch],
                                 distributed=distributed.Distributed(sync_bn=sync))
        results[name] = {"params": model.params.tolist(), "buffers": model.buffers.tolist(),
                         "crcs": watch.crcs, "history": hist.history}
    if comm.Get_rank() == 0:
        with open(out, "w") as fh:
            json.dump(results, fh)


def decisions(out):
    """Early stopping, ReduceLROnPlateau and checkpoints across ranks."""
    comm = distributed.Distributed().comm
    X, y = data(n=400)
    Xv, yv = data(n=100, seed=5)
    model = fastnet.MLP([12, 32, 3], seed=1)
    ckpt = out + ".ckpt"
    hist = model.fit(X, y, epochs=40, batch_size=32, lr=0.05, validation_data=(Xv, yv),
                     early_stopping=EarlyStopping(patience=2), checkpoint=ckpt, verbose=2,
                     distributed=True)
    every = comm.allgather((hist.stopped_epoch, hist.best_epoch, hist.epochs,
                            zlib.crc32(model.params.tobytes())))
    if comm.Get_rank() == 0:
        with open(out, "w") as fh:
            json.dump({"every": every, "val_loss": hist.history["val_loss"]}, fh)


def resume(out):
    """3 epochs with a checkpoint, resumed to 6, against 6 uninterrupted epochs."""
    comm = distributed.Distributed().comm
    X, y = data(n=300)
    crcs = []
    for epochs, kw in ((3, dict(checkpoint=out + ".ckpt")),
                       (6, dict(checkpoint=out + ".ckpt", resume=out + ".ckpt")),
                       (6, {})):
        model = fastnet.MLP([12, 16, 3], dropout=0.1, seed=4)
        model.fit(X, y, epochs=epochs, batch_size=32, validation_split=0.2, verbose=0,
                  distributed=distributed.Distributed(sync_bn=True), **kw)
        crcs.append(comm.allgather(zlib.crc32(model.params.tobytes()
                                              + model.buffers.tobytes())))
    if comm.Get_rank() == 0:
        with open(out, "w") as fh:
            json.dump(crcs, fh)


def disagree(out):
    """Rank 1 brings other data, then another model: every rank must raise the same error."""
    comm = distributed.Distributed().comm
    r = comm.Get_rank()
    messages = []
    X, y = data(n=300 if r == 0 else 299)
    for sizes, (Xr, yr) in [([12, 8, 3], (X, y)),
                            ([12, 8 + r, 3], data())]:
        try:
            fastnet.MLP(sizes).fit(Xr, yr, epochs=1, verbose=0, distributed=True)
            messages.append(None)
        except ValueError as exc:
            messages.append(str(exc))
    everyone = comm.allgather(messages)
    if r == 0:
        with open(out, "w") as fh:
            json.dump(everyone, fh)


def crash(out):
    """Rank 1 raises after its second epoch; rank 0 would wait in the next allreduce."""

    class Boom(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1 and distributed.rank() == 1:
                raise RuntimeError("boom on purpose")

    X, y = data()
    fastnet.MLP([12, 16, 3]).fit(X, y, epochs=50, verbose=0, callbacks=[Boom()],
                                 distributed=True)


def one_rank(out):
    """Under mpirun -n 1: the distributed path against a plain fit (per-rank and
    synchronised batch norm, dropout, sample weights)."""
    X, y = data(n=300)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(y))
    same = []
    for dist in (None, distributed.Distributed(), distributed.Distributed(sync_bn=True)):
        model = fastnet.MLP([12, 16, 3], dropout=0.2, seed=4)
        model.fit(X, y, epochs=3, batch_size=40, validation_split=0.2, sample_weight=w,
                  verbose=0, distributed=dist)
        same.append(zlib.crc32(model.params.tobytes() + model.buffers.tobytes()))
    with open(out, "w") as fh:
        json.dump(same, fh)


def staged(out):
    """The same distributed fit on X and on X as shards of other dtypes (staged a block
    of batches at a time on every rank): the CRC of each, for the test to compare."""
    X, y = data(n=300)
    w = np.random.default_rng(2).uniform(0.5, 2.0, size=len(y))
    crcs = []
    for rows in (X, [X[:100], X[100:].astype(np.float64)], np.asfortranarray(X)):
        model = fastnet.MLP([12, 16, 3], dropout=0.2, seed=4)
        model.fit(rows, y, epochs=3, batch_size=40, validation_split=0.2, sample_weight=w,
                  verbose=0, distributed=distributed.Distributed(sync_bn=True))
        crcs.append(zlib.crc32(model.params.tobytes() + model.buffers.tobytes()))
    if distributed.rank() == 0:
        with open(out, "w") as fh:
            json.dump(crcs, fh)


def bad_data(out):
    """Rank 1's data holds a NaN: it fails fit's checks while rank 0 goes on to wait
    for it in the first collective."""
    X, y = data()
    if distributed.rank() == 1:
        X[3, 2] = np.nan
    fastnet.MLP([12, 16, 3]).fit(X, y, epochs=2, verbose=0, distributed=True)


if __name__ == "__main__":
    globals()[sys.argv[1]](sys.argv[2])
