"""fit(resume=...) continues only the run that wrote the checkpoint: other data (shape or
values of X, y, sample weights, the validation rows) or other options that change the
result raise ValueError saying what differs, before any weight changes; hand-edited
fields of the wrong type or range are refused; version 1 files (without the record of
the run) still resume bit-identically."""
import numpy as np
import pytest

import fastnet
from fastnet import _checkpoint
from fastnet._io import atomic_savez, read_npz
from fastnet.schedules import CosineAnnealing


def _data(seed=3, n=300):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 12)).astype(np.float32)
    y = (X[:, :3].sum(1) > 0).astype(np.int64) + (X[:, 3] > 0.5)
    return X, y


def _model():
    return fastnet.MLP([12, 32, 16, 3], dropout=0.1, seed=5)


OPTIONS = dict(batch_size=32, optimizer="adam", lr=3e-3, verbose=0, seed=7)


def _checkpointed(tmp_path, **options):
    path = tmp_path / "run.npz"
    X, y = _data()
    _model().fit(X, y, epochs=2, checkpoint=path, **dict(OPTIONS, **options))
    return path


def _other_values(X):
    X = X.copy()
    X[17, 3] += 1.0
    return X


DIFFERENT_RUNS = {
    "other X values": (dict(X=_other_values), "X holds other values"),
    "more rows": (dict(X=lambda X: np.vstack([X, X[:10]]), y=lambda y: np.r_[y, y[:10]]),
                  "X of shape"),
    "other labels": (dict(y=lambda y: np.roll(y, 1)), "y holds other values"),
    "sample weights added": (dict(sample_weight=np.linspace(0.5, 1.5, 300)),
                             "without sample_weight"),
    "class weights": (dict(class_weight="balanced"), "sample_weight"),
    "batch_size": (dict(batch_size=16), "batch_size=32"),
    "lr": (dict(lr=1e-2), "schedule="),
    "schedule": (dict(schedule=CosineAnnealing(3e-3, 4)), "schedule="),
    "optimizer": (dict(optimizer="adamw"), "optimizer="),
    "weight_decay": (dict(weight_decay=1e-3), "optimizer="),
    "grad_clip": (dict(grad_clip=1.0), "grad_clip=None"),
    "shuffle": (dict(shuffle=False), "shuffle=True"),
    "validation_split": (dict(validation_split=0.2), "X of shape"),
    "on_divergence": (dict(on_divergence="rollback"), "on_divergence="),
    "track_gradients": (dict(track_gradients=True), "track_gradients="),
}


@pytest.mark.parametrize("case", sorted(DIFFERENT_RUNS))
def test_resuming_another_run_says_what_differs(tmp_path, case):
    path = _checkpointed(tmp_path)
    change, message = DIFFERENT_RUNS[case]
    X, y = _data()
    options = dict(OPTIONS)
    for key, value in change.items():
        if key == "X":
            X = value(X)
        elif key == "y":
            y = value(y)
        else:
            options[key] = value
    model = _model()
    before = model.params.copy()
    with pytest.raises(ValueError, match=message) as info:
        model.fit(X, y, epochs=4, checkpoint=path, resume=path, **options)
    assert str(path) in str(info.value)
    assert model.params.tobytes() == before.tobytes()


def test_the_same_run_resumes_bit_identically(tmp_path):
    X, y = _data()
    weights = np.linspace(0.5, 1.5, 300)
    reference = _model()
    reference.fit(X, y, epochs=4, sample_weight=weights, validation_split=0.2, **OPTIONS)
    path = tmp_path / "run.npz"
    _model().fit(X, y, epochs=2, sample_weight=weights, validation_split=0.2,
                 checkpoint=path, **OPTIONS)
    resumed = _model()
    resumed.fit(X.copy(), y.copy(), epochs=4, sample_weight=weights.copy(),
                validation_split=0.2, checkpoint=path, resume=path, **OPTIONS)
    assert resumed.params.tobytes() == reference.params.tobytes()


def _edit(path, edit):
    meta, arrays = read_npz(path, "checkpoint")
    edit(meta)
    atomic_savez(path, meta, arrays)


def _set(*keys, value):
    def edit(meta):
        target = meta
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
    return edit


HAND_EDITS = {
    "history loss a string": (_set("history", "history", "loss", value="abc"), "history.loss"),
    "history loss of strings": (_set("history", "history", "loss", value=["a", 1.0]),
                                "history.loss"),
    "huge global_step": (_set("global_step", value=10**30), "global_step"),
    "huge epochs_done": (_set("epochs_done", value=2**63), "epochs_done"),
    "best_epoch a string": (_set("history", "best_epoch", value="1"), "best_epoch"),
    "history epochs a float": (_set("history", "epochs", value=2.5), "history.epochs"),
    "rollback lr_scale a string": (_set("history", "rollbacks", value=[
        {"epoch": 0, "step": 1, "loss": 1.0, "lr": 1.0, "new_lr": 0.1, "lr_scale": "x"}]),
        "lr_scale"),
    "rollbacks an object": (_set("history", "rollbacks", value={"a": 1}), "rollbacks"),
    "optimizer lr a string": (_set("optimizer", "lr", value="abc"), "optimizer.lr"),
    "huge optimizer step": (_set("optimizer", "t", value=10**30), "optimizer.t"),
    "optimizer beta a list": (_set("optimizer", "beta1", value=[0.9]), "optimizer.beta1"),
    "run seed too large": (_set("run_seed", value=2**64), "run_seed"),
    "best_value a string": (_set("best_value", value="0.5"), "best_value"),
    "run not an object": (_set("run", value=[1, 2]), "'run'"),
}


@pytest.mark.parametrize("case", sorted(HAND_EDITS))
def test_hand_edited_fields_of_the_wrong_type_or_range_are_refused(tmp_path, case):
    path = _checkpointed(tmp_path)
    edit, field = HAND_EDITS[case]
    _edit(path, edit)
    X, y = _data()
    model = _model()
    before = model.params.copy()
    with pytest.raises(ValueError, match=field):
        model.fit(X, y, epochs=4, resume=path, **OPTIONS)
    assert model.params.tobytes() == before.tobytes()


def test_a_version_1_checkpoint_still_resumes(tmp_path):
    X, y = _data()
    reference = _model()
    reference.fit(X, y, epochs=4, **OPTIONS)
    path = _checkpointed(tmp_path)

    def as_version_1(meta):
        assert meta["version"] == _checkpoint.VERSION == 2
        meta["version"] = 1
        del meta["run"]

    _edit(path, as_version_1)
    resumed = _model()
    history = resumed.fit(X, y, epochs=4, checkpoint=path, resume=path, **OPTIONS)
    assert history.epochs == 4
    assert resumed.params.tobytes() == reference.params.tobytes()
    # rewritten in the current version, with the record of the run
    meta, _ = read_npz(path, "checkpoint")
    assert meta["version"] == 2 and meta["run"]["options"]["batch_size"] == 32


def test_an_unknown_version_is_refused(tmp_path):
    path = _checkpointed(tmp_path)
    _edit(path, _set("version", value=3))
    X, y = _data()
    with pytest.raises(ValueError, match="not a fastnet checkpoint"):
        _model().fit(X, y, epochs=4, resume=path, **OPTIONS)
