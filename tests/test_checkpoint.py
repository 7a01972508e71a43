"""fit(checkpoint=..., resume=...): a run killed with SIGKILL and resumed ends
bit-identical to an uninterrupted one; damaged or mismatched checkpoints are
refused with ValueError before any training; writes are atomic."""
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import child_env

import fastnet
from fastnet import callbacks as fcb
from fastnet.schedules import WarmupCosine

EPOCHS = 6


def _data():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((300, 12)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    return X, y


def _fit(model, **kw):
    X, y = _data()
    es = fcb.EarlyStopping(patience=50, restore_best_weights=True)
    return model.fit(X, y, epochs=EPOCHS, batch_size=32, optimizer="adamw", lr=3e-3,
                     schedule=WarmupCosine(3e-3, 2, EPOCHS), validation_split=0.2, verbose=0,
                     callbacks=[es], seed=7, **kw)


def _model():
    return fastnet.MLP([12, 32, 16, 3], batch_norm=True, dropout=0.2, seed=5)


# a child process that checkpoints every epoch and SIGKILLs itself after `kill_after` epochs
CHILD = """
import os, signal, sys
sys.path.insert(0, {tests!r})
import test_checkpoint as t
class Kill:
    def on_epoch_end(self, epoch, logs):
        if epoch + 1 == {kill_after}:
            os.kill(os.getpid(), signal.SIGKILL)
m = t._model()
X, y = t._data()
from fastnet import callbacks as fcb
from fastnet.schedules import WarmupCosine
m.fit(X, y, epochs=t.EPOCHS, batch_size=32, optimizer="adamw", lr=3e-3,
      schedule=WarmupCosine(3e-3, 2, t.EPOCHS), validation_split=0.2, verbose=0,
      callbacks=[Kill(), fcb.EarlyStopping(patience=50, restore_best_weights=True)], seed=7,
      checkpoint={path!r}, resume={path!r})
"""


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    reference = _model()
    ref_history = _fit(reference)

    path = str(tmp_path / "run.ckpt.npz")
    code = CHILD.format(tests=os.path.dirname(os.path.abspath(__file__)), kill_after=3, path=path)
    proc = subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert os.path.exists(path)
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]

    resumed = _model()                      # fresh process state, same constructor
    history = _fit(resumed, checkpoint=path, resume=path)
    assert resumed.params.tobytes() == reference.params.tobytes()
    assert resumed.buffers.tobytes() == reference.buffers.tobytes()
    assert history.epochs == ref_history.epochs
    assert history.best_epoch == ref_history.best_epoch
    for key, values in ref_history.history.items():
        assert np.asarray(history.history[key]).tobytes() == np.asarray(values).tobytes(), key


def test_missing_resume_file_starts_fresh(tmp_path):
    plain, fresh = _model(), _model()
    _fit(plain)
    path = tmp_path / "new.npz"
    _fit(fresh, checkpoint=path, resume=path)
    assert fresh.params.tobytes() == plain.params.tobytes()
    assert path.is_file()


def test_resume_of_a_finished_run_changes_nothing(tmp_path):
    path = tmp_path / "done.npz"
    model = _model()
    _fit(model, checkpoint=path)
    again = _model()
    history = _fit(again, resume=path)
    assert again.params.tobytes() == model.params.tobytes()
    assert history.epochs == EPOCHS


def _good_checkpoint(tmp_path):
    path = tmp_path / "good.npz"
    _fit(_model(), checkpoint=path, checkpoint_every=2)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "not_npz_meta"])
def test_damaged_checkpoint_is_refused(tmp_path, damage):
    path = _good_checkpoint(tmp_path)
    raw = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(len(raw)))
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        np.savez(path, params=np.zeros(3))
    model = _model()
    before = model.params.copy()
    with pytest.raises(ValueError):
        _fit(model, resume=path)
    assert model.params.tobytes() == before.tobytes()   # refused before training


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = _good_checkpoint(tmp_path)
    other = fastnet.MLP([12, 32, 3], batch_norm=True, dropout=0.2, seed=5)
    with pytest.raises(ValueError, match="layer_sizes"):
        _fit(other, resume=path)


def test_checkpoint_of_another_seed_is_refused(tmp_path):
    path = _good_checkpoint(tmp_path)
    X, y = _data()
    with pytest.raises(ValueError, match="seed"):
        _model().fit(X, y, epochs=EPOCHS, batch_size=32, verbose=0, seed=8, resume=path)


def test_checkpoint_with_nan_weights_is_refused(tmp_path):
    from fastnet._io import atomic_savez, read_npz
    path = _good_checkpoint(tmp_path)
    meta, arrays = read_npz(path, "checkpoint")
    arrays["params"] = arrays["params"].copy()
    arrays["params"][0] = np.nan
    atomic_savez(path, meta, arrays)
    with pytest.raises(ValueError, match="NaN"):
        _fit(_model(), resume=path)


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = _good_checkpoint(tmp_path)
    before = path.read_bytes()

    def broken_savez(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        _fit(_model(), checkpoint=path)
    assert path.read_bytes() == before
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]


def test_checkpoint_every_is_validated():
    X, y = _data()
    with pytest.raises(ValueError, match="checkpoint_every"):
        _model().fit(X, y, epochs=1, verbose=0, checkpoint="x.npz", checkpoint_every=0)
