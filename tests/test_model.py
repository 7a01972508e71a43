"""fastnet.MLP: fit / predict / evaluate / weights / save-load, determinism, bad input,
divergence, gradient clipping, early stopping, callbacks, schedules, Ctrl-C.

Most tests run on one thread: the machine they run on is shared, and an
oversubscribed OpenMP team spends its time in barriers.  The determinism
tests run at 1 and 2 threads explicitly.
"""
import json
import math
import os
import signal
import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits

import fastnet
from fastnet import schedules
from fastnet.callbacks import Callback, EarlyStopping


@pytest.fixture(autouse=True)
def _one_thread():
    with fastnet.threads(1):
        yield


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return (X / 16).astype(np.float32), y.astype(np.int64)


@pytest.fixture(scope="module")
def small(digits):
    X, y = digits
    return X[:600], y[:600]


def flat(weights):
    return np.concatenate([np.asarray(w, dtype=np.float64).ravel() for w in weights])


def same_weights(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and x.shape == y.shape
                                    and x.tobytes() == y.tobytes() for x, y in zip(a, b))


class Recorder(Callback):
    """Records every hook call and the weights at the end of every epoch."""

    def __init__(self):
        self.events = []
        self.weights = {}
        self.logs = {}

    def on_train_begin(self, logs=None):
        self.events.append(("train_begin",))

    def on_epoch_begin(self, epoch, logs=None):
        self.events.append(("epoch_begin", epoch))

    def on_batch_end(self, batch, logs=None):
        self.events.append(("batch_end", batch))

    def on_epoch_end(self, epoch, logs=None):
        self.events.append(("epoch_end", epoch))
        self.weights[epoch] = self.model.get_weights()
        self.logs[epoch] = dict(logs)

    def on_train_end(self, logs=None):
        self.events.append(("train_end",))


# a schedule that trains well for 4 epochs, then uses a much too large lr: the
# validation loss is best at epoch 3 and worse afterwards (SGD, digits)
def good_then_bad(epoch):
    return 0.1 if epoch < 4 else 2.0


# ---------------------------------------------------------------------------
# fit / predict / evaluate
# ---------------------------------------------------------------------------

def test_fit_learns_and_predicts(small):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    hist = model.fit(X[:450], y[:450], epochs=8, batch_size=32, lr=1e-2,
                     validation_data=(X[450:], y[450:]), verbose=0)
    assert isinstance(hist, fastnet.History)
    assert model.history is hist
    h = hist.history
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm"):
        assert len(h[key]) == 8, key
        assert all(math.isfinite(v) for v in h[key]), key
    assert h["loss"][-1] < 0.5 * h["loss"][0]
    assert h["val_accuracy"][-1] > 0.85
    assert hist.epochs == 8 and not hist.diverged and not hist.interrupted
    assert hist.best_epoch == int(np.argmin(h["val_loss"]))
    assert hist.stopped_epoch is None

    proba = model.predict_proba(X[450:])
    assert proba.shape == (150, 10) and proba.dtype == np.float32
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    pred = model.predict(X[450:])
    assert pred.shape == (150,) and np.issubdtype(pred.dtype, np.integer)
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))
    ev = model.evaluate(X[450:], y[450:])
    assert set(ev) == {"loss", "accuracy"}
    assert ev["accuracy"] == pytest.approx(np.mean(pred == y[450:]))
    # the last epoch's validation metrics are those of the final weights
    assert ev["loss"] == pytest.approx(h["val_loss"][-1], rel=1e-5)
    assert ev["accuracy"] == pytest.approx(h["val_accuracy"][-1])
    p = proba[np.arange(150), y[450:]].astype(np.float64)
    assert ev["loss"] == pytest.approx(-np.mean(np.log(p)), rel=1e-4)


def test_predict_is_batch_independent_in_inference(small):
    """Inference uses the running statistics: a row's output does not depend on its batch,
    and large inputs (several native chunks) agree with row-by-row prediction."""
    X, y = small
    model = fastnet.MLP([64, 16, 10], dropout=0.5, seed=1)
    model.fit(X, y, epochs=2, verbose=0)
    big = np.concatenate([X] * 4)             # 2400 rows, more than one predict chunk
    proba = model.predict_proba(big)
    one = np.concatenate([model.predict_proba(X[i:i + 1]) for i in range(0, 600, 37)])
    np.testing.assert_allclose(proba[:600:37], one, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(proba[:600], proba[1800:])
    # and repeated calls give the same bits (no dropout at inference)
    assert model.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def test_inputs_of_any_layout_and_dtype(small):
    X, y = small
    model = fastnet.MLP([64, 16, 10], seed=2)
    ref = model.predict_proba(X[:50])
    np.testing.assert_array_equal(model.predict_proba(np.asfortranarray(X[:50])), ref)
    np.testing.assert_array_equal(model.predict_proba(X[:50].astype(np.float64)), ref)
    big = np.zeros((100, 128), dtype=np.float32)
    big[::2, ::2] = X[:50]
    np.testing.assert_array_equal(model.predict_proba(big[::2, ::2]), ref)
    np.testing.assert_array_equal(model.predict(X[:50].tolist()), ref.argmax(axis=1))


def test_float64_model(small):
    X, y = small
    model = fastnet.MLP([64, 16, 10], dtype="float64", seed=3)
    model.fit(X, y, epochs=2, verbose=0)
    assert all(w.dtype == np.float64 for w in model.get_weights())
    assert model.predict_proba(X).dtype == np.float64


def test_verbose_output(small, capsys):
    X, y = small
    model = fastnet.MLP([64, 8, 10], seed=4)
    model.fit(X, y, epochs=2, verbose=2, validation_split=0.2)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "Epoch 1/2" in text and "Epoch 2/2" in text and "val_loss" in text
    model.fit(X, y, epochs=1, verbose=1)          # the tqdm bar: must not fail
    model.fit(X, y, epochs=1, verbose=0)
    out = capsys.readouterr()
    assert "Epoch" in out.out + out.err


# ---------------------------------------------------------------------------
# weights, save and load
# ---------------------------------------------------------------------------

def test_get_and_set_weights(small):
    X, y = small
    model = fastnet.MLP([64, 16, 12, 10], seed=5)
    model.fit(X, y, epochs=1, verbose=0)
    names = model.weight_names()
    w = model.get_weights()
    assert names == ["layer0.w", "layer0.gamma", "layer0.beta", "layer0.running_mean",
                     "layer0.running_var", "layer1.w", "layer1.gamma", "layer1.beta",
                     "layer1.running_mean", "layer1.running_var", "layer2.w", "layer2.b"]
    assert [a.shape for a in w] == [(64, 16), (16,), (16,), (16,), (16,), (16, 12), (12,),
                                    (12,), (12,), (12,), (12, 10), (10,)]
    # copies, not views
    w[0][...] = 0
    assert not np.all(model.get_weights()[0] == 0)
    w = model.get_weights()
    other = fastnet.MLP([64, 16, 12, 10], seed=99)
    assert not np.array_equal(other.predict_proba(X), model.predict_proba(X))
    other.set_weights(w)
    assert same_weights(other.get_weights(), w)
    assert other.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    # without batch norm: W, b per layer
    nobn = fastnet.MLP([64, 16, 10], batch_norm=False)
    assert nobn.weight_names() == ["layer0.w", "layer0.b", "layer1.w", "layer1.b"]


@pytest.mark.parametrize("mutate", ["too_few", "too_many", "shape", "nan", "inf", "int"])
def test_set_weights_rejects_bad_lists_atomically(mutate):
    model = fastnet.MLP([6, 5, 3], seed=6)
    before = model.get_weights()
    new = [w + 1 for w in before]
    if mutate == "too_few":
        new = new[:-1]
    elif mutate == "too_many":
        new = new + [np.zeros(3)]
    elif mutate == "shape":
        new[-1] = np.zeros(4)
    elif mutate == "nan":
        new[-1][0] = np.nan
    elif mutate == "inf":
        new[-1][0] = np.inf
    elif mutate == "int":
        new[-1] = np.ones(3, dtype=np.int64)
    with pytest.raises(ValueError):
        model.set_weights(new)
    assert same_weights(model.get_weights(), before)     # nothing half-applied


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_save_load_round_trip(small, tmp_path, loss):
    X, y = small
    if loss == "mse":
        target = X[:, :8].sum(axis=1) - X[:, 8:16].sum(axis=1)
        model = fastnet.MLP([64, 16, 1], activation="tanh", dropout=0.2, seed=7)
    else:
        target = y
        model = fastnet.MLP([64, 16, 10], activation="sigmoid", dropout=0.2, seed=7)
    model.fit(X, target, epochs=2, verbose=0, loss=loss)
    path = tmp_path / "model.npz"
    model.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz"]   # no temp file left
    loaded = fastnet.load(path)
    assert isinstance(loaded, fastnet.MLP)
    assert loaded.config() == model.config()
    assert same_weights(loaded.get_weights(), model.get_weights())
    assert loaded.predict(X).tobytes() == model.predict(X).tobytes()
    if loss == "mse":
        assert loaded.predict(X).shape == (600,)
    else:
        assert loaded.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()
    assert loaded.evaluate(X, target) == model.evaluate(X, target)
    # the file: a plain npz of numeric arrays plus JSON metadata, readable without pickle
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == {"__meta__", "params", "buffers"}
        assert all(data[k].dtype != object for k in data.files)
        meta = json.loads(data["__meta__"].tobytes().decode())
    assert meta["config"]["layer_sizes"] == model.layer_sizes
    assert meta["config"]["loss"] == loss
    # a loaded model trains on
    loaded.fit(X, target, epochs=1, verbose=0, loss=loss)


def test_save_to_path_without_extension_and_str(small, tmp_path):
    X, y = small
    model = fastnet.MLP([64, 8, 10], seed=8)
    path = str(tmp_path / "weights")
    model.save(path)
    assert os.path.exists(path)
    assert fastnet.load(path).predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


class _Evil:
    def __reduce__(self):
        return (open, (os.environ["FASTNET_TEST_SENTINEL"], "w"))


def test_load_never_unpickles(tmp_path, monkeypatch):
    sentinel = tmp_path / "pwned"
    monkeypatch.setenv("FASTNET_TEST_SENTINEL", str(sentinel))
    model = fastnet.MLP([6, 4, 3])
    good = tmp_path / "good.npz"
    model.save(good)
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    evil = tmp_path / "evil.npz"
    arrays["params"] = np.array([_Evil()], dtype=object)
    np.savez(evil, **arrays)
    with pytest.raises(ValueError):
        fastnet.load(evil)
    assert not sentinel.exists()
    # metadata that is not JSON, a truncated file, a missing file
    bad_meta = dict(arrays, params=model.params, __meta__=np.frombuffer(b"\x80not json",
                                                                        dtype=np.uint8))
    np.savez(tmp_path / "meta.npz", **bad_meta)
    with pytest.raises(ValueError):
        fastnet.load(tmp_path / "meta.npz")
    raw = good.read_bytes()
    (tmp_path / "cut.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError):
        fastnet.load(tmp_path / "cut.npz")
    with pytest.raises(FileNotFoundError):
        fastnet.load(tmp_path / "missing.npz")


def test_load_rejects_inconsistent_arrays(tmp_path):
    model = fastnet.MLP([6, 4, 3])
    good = tmp_path / "good.npz"
    model.save(good)
    with np.load(good, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    for name, value in (("params", arrays["params"][:-1]),
                        ("params", arrays["params"].astype(np.float64)),
                        ("buffers", np.full_like(arrays["buffers"], np.nan))):
        np.savez(tmp_path / "x.npz", **dict(arrays, **{name: value}))
        with pytest.raises(ValueError):
            fastnet.load(tmp_path / "x.npz")


# ---------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------

def _train(X, y, n_threads, model_seed=0, fit_seed=None):
    with fastnet.threads(n_threads):
        model = fastnet.MLP([64, 48, 32, 10], dropout=0.3, seed=model_seed)
        hist = model.fit(X, y, epochs=2, batch_size=50, optimizer="adamw", lr=3e-3,
                         schedule=schedules.WarmupCosine(3e-3, 1, 2),
                         validation_split=0.2, seed=fit_seed, verbose=0)
    return model.get_weights(), hist.history


def test_same_seed_is_bit_identical_at_1_and_2_threads(small):
    X, y = small
    w1, h1 = _train(X, y, 1)
    w2, h2 = _train(X, y, 2)
    w1b, h1b = _train(X, y, 1)
    assert same_weights(w1, w1b) and h1 == h1b
    assert same_weights(w1, w2), "weights differ between 1 and 2 threads"
    assert h1 == h2, "history differs between 1 and 2 threads"


def test_different_seeds_differ(small):
    X, y = small
    w0, _ = _train(X, y, 1, model_seed=0)
    w_model, _ = _train(X, y, 1, model_seed=1)
    w_fit, _ = _train(X, y, 1, model_seed=0, fit_seed=12345)
    assert not np.array_equal(flat(w0), flat(w_model))
    assert not np.array_equal(flat(w0), flat(w_fit))
    # the model's seed fixes the initial weights
    a, b = fastnet.MLP([64, 8, 10], seed=3), fastnet.MLP([64, 8, 10], seed=3)
    assert same_weights(a.get_weights(), b.get_weights())
    assert not same_weights(a.get_weights(), fastnet.MLP([64, 8, 10], seed=4).get_weights())


def test_default_seed_is_reproducible(small):
    X, y = small
    runs = []
    for _ in range(2):
        model = fastnet.MLP([64, 16, 10], dropout=0.2)
        model.fit(X, y, epochs=1, verbose=0)
        runs.append(model.get_weights())
    assert same_weights(*runs)


# ---------------------------------------------------------------------------
# bad input: ValueError (or TypeError) before anything changes
# ---------------------------------------------------------------------------

def _bad_fit_cases(X, y):
    Xn = X.copy()
    Xn[3, 5] = np.nan
    Xi = X.copy()
    Xi[7, 0] = np.inf
    yv = y.copy()
    return {
        "nan in X": dict(X=Xn),
        "inf in X": dict(X=Xi),
        "X 1-D": dict(X=X[:, 0]),
        "X 3-D": dict(X=X[:, :, None]),
        "X wrong width": dict(X=X[:, :60]),
        "X empty": dict(X=X[:0], y=y[:0]),
        "one row": dict(X=X[:1], y=y[:1]),
        "y too short": dict(y=y[:-1]),
        "y 2-D": dict(y=y[:, None]),
        "label negative": dict(y=np.where(np.arange(len(y)) == 5, -1, yv)),
        "label too large": dict(y=np.where(np.arange(len(y)) == 5, 10, yv)),
        "float labels non-integral": dict(y=y + 0.5),
        "float labels nan": dict(y=np.where(np.arange(len(y)) == 5, np.nan, y.astype(float))),
        "bool labels": dict(y=y > 4),
        "mse target nan": dict(y=np.where(np.arange(len(y)) == 5, np.nan, 1.0)[:, None]
                               * np.ones((1, 10)), loss="mse"),
        "mse target shape": dict(y=np.ones((len(y), 3)), loss="mse"),
        "validation_data not a pair": dict(validation_data=(X[:10],)),
        "validation_data X width": dict(validation_data=(X[:10, :10], y[:10])),
        "validation_data X nan": dict(validation_data=(Xn[:10], y[:10])),
        "validation_data y range": dict(validation_data=(X[:10], y[:10] + 10)),
        "validation_data y length": dict(validation_data=(X[:10], y[:9])),
        "validation_data empty": dict(validation_data=(X[:0], y[:0])),
        "validation_split 1": dict(validation_split=1.0),
        "validation_split negative": dict(validation_split=-0.1),
        "validation_split leaves 1 row": dict(X=X[:4], y=y[:4], validation_split=0.75),
        "sample_weight negative": dict(sample_weight=np.where(np.arange(len(y)) == 2, -1., 1.)),
        "sample_weight nan": dict(sample_weight=np.where(np.arange(len(y)) == 2, np.nan, 1.)),
        "sample_weight shape": dict(sample_weight=np.ones(len(y) - 1)),
        "epochs 0": dict(epochs=0),
        "batch_size 0": dict(batch_size=0),
        "batch_size 1 with batch norm": dict(batch_size=1),
        "grad_clip 0": dict(grad_clip=0.0),
        "grad_clip negative": dict(grad_clip=-1.0),
        "lr negative": dict(lr=-0.1),
        "unknown optimizer": dict(optimizer="rmsprop"),
        "unknown loss": dict(loss="hinge"),
        "verbose 3": dict(verbose=3),
        "early stopping without validation": dict(early_stopping=5),
        "plateau without validation": dict(schedule=schedules.ReduceLROnPlateau(0.01)),
    }


BAD_TYPE_CASES = {
    "X strings": dict(X=np.full((20, 64), "a")),
    "epochs float": dict(epochs=2.0),
    "batch_size str": dict(batch_size="64"),
    "schedule not callable": dict(schedule=5),
    "early_stopping str": dict(early_stopping="yes"),
    "lr str": dict(lr="0.1"),
}


def _check_rejected(small, kwargs, exc):
    X, y = small
    X, y = X[:100], y[:100]
    model = fastnet.MLP([64, 8, 10], seed=9)
    before = model.get_weights()
    rec = Recorder()
    args = dict(X=X, y=y, epochs=1, verbose=0, callbacks=[rec])
    args.update(kwargs)
    with pytest.raises(exc):
        model.fit(args.pop("X"), args.pop("y"), **args)
    assert same_weights(model.get_weights(), before), "weights changed before the error"
    assert rec.events == [], "training started before the error"


@pytest.mark.parametrize("case", sorted(_bad_fit_cases(np.zeros((20, 64)), np.zeros(20, int))))
def test_bad_fit_input_raises_value_error_before_training(small, case):
    X, y = small
    _check_rejected(small, _bad_fit_cases(X[:100], y[:100])[case], ValueError)


@pytest.mark.parametrize("case", sorted(BAD_TYPE_CASES))
def test_bad_fit_argument_types_raise_type_error(small, case):
    _check_rejected(small, BAD_TYPE_CASES[case], TypeError)


def test_integral_float_labels_are_accepted(small):
    X, y = small
    a = fastnet.MLP([64, 8, 10], seed=10)
    b = fastnet.MLP([64, 8, 10], seed=10)
    a.fit(X, y, epochs=1, verbose=0)
    b.fit(X, y.astype(np.float64), epochs=1, verbose=0)
    assert same_weights(a.get_weights(), b.get_weights())


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_bad_predict_input(small, method):
    X, _ = small
    model = fastnet.MLP([64, 8, 10])
    fn = getattr(model, method)
    for bad in (X[:, :10], X[0], X[:0], np.where(X == X[0, 0], np.nan, X)[:5]):
        with pytest.raises(ValueError):
            fn(bad)
    with pytest.raises(TypeError):
        fn(np.full((2, 64), "x"))


def test_bad_evaluate_input(small):
    X, y = small
    model = fastnet.MLP([64, 8, 10])
    with pytest.raises(ValueError):
        model.evaluate(X[:10], y[:9])
    with pytest.raises(ValueError):
        model.evaluate(X[:10], y[:10] + 10)


@pytest.mark.parametrize("args, kwargs, exc", [
    (([64],), {}, TypeError),
    (([],), {}, TypeError),
    (("64,10",), {}, TypeError),
    ((64,), {}, TypeError),
    (([64.0, 10],), {}, TypeError),
    (([64, True],), {}, TypeError),
    (([64, 0, 10],), {}, ValueError),
    (([64, -3],), {}, ValueError),
    (([64, 10],), dict(activation="swish"), ValueError),
    (([64, 10],), dict(dropout=1.0), ValueError),
    (([64, 10],), dict(dropout=-0.1), ValueError),
    (([64, 10],), dict(dropout="0.3"), TypeError),
    (([64, 10],), dict(dtype="float16"), TypeError),
    (([64, 10],), dict(dtype="int32"), TypeError),
    (([64, 10],), dict(dtype="nonsense"), TypeError),
    (([64, 10],), dict(init="orthogonal"), ValueError),
    (([64, 10],), dict(init=3), TypeError),
    (([64, 10],), dict(init=lambda i, o, rng: np.zeros((o, i))), ValueError),
    (([64, 10],), dict(seed=-1), ValueError),
    (([64, 10],), dict(seed="0"), TypeError),
    (([64, 10],), dict(seed=1.5), TypeError),
])
def test_bad_constructor_arguments(args, kwargs, exc):
    with pytest.raises(exc):
        fastnet.MLP(*args, **kwargs)


def test_constructor_options():
    m = fastnet.MLP([5, 4, 3], activation="tanh", init="xavier", dtype="float64", seed=1)
    assert m.get_weights()[0].dtype == np.float64
    custom = fastnet.MLP([5, 4, 3], init=lambda i, o, rng: np.full((i, o), 0.5))
    assert np.all(custom.get_weights()[0] == 0.5)
    he = fastnet.MLP([400, 300, 3], seed=2).get_weights()[0]
    assert he.std() == pytest.approx(np.sqrt(2 / 400), rel=0.03)


# ---------------------------------------------------------------------------
# divergence and gradient clipping
# ---------------------------------------------------------------------------

def test_huge_lr_diverges_warns_and_restores_initial_weights(digits):
    X, y = digits
    model = fastnet.MLP([64, 32, 10], seed=11)
    before = model.get_weights()
    with pytest.warns(RuntimeWarning, match="NaN or infinite"):
        hist = model.fit(X, y, epochs=5, optimizer="sgd", lr=1e6, verbose=0)
    assert hist.diverged
    assert hist.epochs == 0 and hist.best_epoch is None
    # nothing better was ever seen: the initial weights are back, finite
    assert same_weights(model.get_weights(), before)
    assert np.all(np.isfinite(model.predict_proba(X)))


def test_divergence_restores_best_weights_seen(small):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    rec = Recorder()
    with pytest.warns(RuntimeWarning):
        hist = model.fit(X, y, epochs=10, optimizer="sgd", lr=0.1,
                         schedule=lambda e: 0.1 if e < 4 else 1e6, validation_split=0.25,
                         verbose=0, callbacks=[rec])
    assert hist.diverged
    assert hist.epochs == 4 and len(hist.history["val_loss"]) == 4
    assert hist.best_epoch == int(np.argmin(hist.history["val_loss"]))
    final = model.get_weights()
    assert all(np.all(np.isfinite(w)) for w in final)
    assert same_weights(final, rec.weights[hist.best_epoch])       # BN statistics included
    assert ("train_end",) in rec.events
    # the model is usable and trains on
    assert model.evaluate(X, y)["accuracy"] > 0.5
    model.fit(X, y, epochs=1, optimizer="sgd", lr=0.01, verbose=0)


def test_grad_clip_bounds_the_update(small):
    """SGD without momentum, lr 1, one step: the parameters move by exactly grad_clip."""
    X, y = small
    X, y = X[:128], y[:128]
    model = fastnet.MLP([64, 16, 10], dtype="float64", seed=12)
    before = model.params.copy()
    clip = 1e-3
    hist = model.fit(X, y, epochs=1, batch_size=128, optimizer="sgd", lr=1.0,
                     grad_clip=clip, shuffle=False, verbose=0)
    assert hist.history["grad_norm"][0] > 10 * clip          # logged before clipping
    assert np.linalg.norm(model.params - before) == pytest.approx(clip, rel=1e-5)
    # a clip above the norm changes nothing
    a = fastnet.MLP([64, 16, 10], dtype="float64", seed=12)
    b = fastnet.MLP([64, 16, 10], dtype="float64", seed=12)
    a.fit(X, y, epochs=1, batch_size=128, optimizer="sgd", lr=1.0, grad_clip=1e6, verbose=0)
    b.fit(X, y, epochs=1, batch_size=128, optimizer="sgd", lr=1.0, verbose=0)
    assert same_weights(a.get_weights(), b.get_weights())


def test_grad_clip_keeps_a_huge_lr_finite(digits):
    X, y = digits
    model = fastnet.MLP([64, 32, 10], seed=13)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hist = model.fit(X, y, epochs=2, optimizer="sgd", lr=10.0, grad_clip=0.1, verbose=0)
    assert not hist.diverged
    assert len(hist.history["grad_norm"]) == 2
    assert all(math.isfinite(v) and v > 0 for v in hist.history["grad_norm"])


# ---------------------------------------------------------------------------
# early stopping
# ---------------------------------------------------------------------------

def _bn_differs(a, b, model):
    names = model.weight_names()
    return any(not np.array_equal(x, z) for n, x, z in zip(names, a, b) if "running" in n)


def test_early_stopping_stops_and_restores_best_weights_with_bn_statistics(small):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    rec = Recorder()
    es = EarlyStopping(patience=3)
    hist = model.fit(X, y, epochs=30, optimizer="sgd", lr=0.1, schedule=good_then_bad,
                     validation_split=0.25, verbose=0, callbacks=[rec], early_stopping=es)
    assert es.best_epoch is not None and es.stopped_epoch == es.best_epoch + 3
    assert hist.stopped_epoch == es.stopped_epoch
    assert hist.epochs == es.stopped_epoch + 1 < 30
    assert hist.best_epoch == es.best_epoch
    final = model.get_weights()
    assert same_weights(final, rec.weights[es.best_epoch])
    last = rec.weights[es.stopped_epoch]
    assert not same_weights(final, last)
    assert _bn_differs(final, last, model), "setup: BN statistics should have moved"
    assert model.evaluate(X, y)["loss"] < 2 * min(hist.history["val_loss"]) + 0.1


def test_early_stopping_restores_best_weights_when_epochs_run_out(small):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    rec = Recorder()
    es = EarlyStopping(patience=100)
    hist = model.fit(X, y, epochs=8, optimizer="sgd", lr=0.1, schedule=good_then_bad,
                     validation_split=0.25, verbose=0, callbacks=[rec, es])
    assert hist.epochs == 8 and es.stopped_epoch is None and hist.stopped_epoch is None
    assert es.best_epoch < 7, "setup: the best epoch should not be the last"
    assert es.best_epoch == hist.best_epoch
    final = model.get_weights()
    assert same_weights(final, rec.weights[es.best_epoch])
    assert _bn_differs(final, rec.weights[7], model)
    assert es.best_loss == pytest.approx(model.evaluate(*_val_split(X, y, 0.25, 0))["loss"],
                                         rel=1e-6)


def _val_split(X, y, split, seed):
    """fit's validation rows (a seeded subset), to evaluate on them."""
    n = len(y)
    n_val = math.ceil(split * n)
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n)
    vi = np.sort(order[:n_val])
    return X[vi], y[vi]


def test_early_stopping_without_restore_keeps_last_weights(small):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    rec = Recorder()
    es = EarlyStopping(patience=3, restore_best_weights=False)
    model.fit(X, y, epochs=30, optimizer="sgd", lr=0.1, schedule=good_then_bad,
              validation_split=0.25, verbose=0, callbacks=[rec], early_stopping=es)
    assert same_weights(model.get_weights(), rec.weights[es.stopped_epoch])


@pytest.mark.parametrize("value", [True, 4])
def test_early_stopping_shorthands(small, value):
    X, y = small
    model = fastnet.MLP([64, 32, 10], seed=0)
    hist = model.fit(X, y, epochs=40, optimizer="sgd", lr=0.1, schedule=good_then_bad,
                     validation_split=0.25, verbose=0, early_stopping=value)
    patience = 10 if value is True else value
    assert hist.stopped_epoch == hist.best_epoch + patience


# ---------------------------------------------------------------------------
# callbacks protocol
# ---------------------------------------------------------------------------

def test_callback_hooks_order_and_epoch_numbers(small):
    X, y = small
    X, y = X[:100], y[:100]
    model = fastnet.MLP([64, 8, 10], seed=14)
    rec = Recorder()

    class Partial:                       # only one hook; the others are skipped
        def __init__(self):
            self.epochs = []

        def on_epoch_end(self, epoch, logs):
            assert self.model is model
            self.epochs.append(epoch)

    part = Partial()
    model.fit(X, y, epochs=3, batch_size=32, verbose=0, callbacks=[rec, part],
              validation_data=(X[:20], y[:20]))
    expected = [("train_begin",)]
    for e in range(3):
        expected += [("epoch_begin", e)] + [("batch_end", b) for b in range(4)] \
            + [("epoch_end", e)]
    expected.append(("train_end",))
    assert rec.events == expected
    assert rec.model is model and part.epochs == [0, 1, 2]
    for e in range(3):
        logs = rec.logs[e]
        assert {"loss", "accuracy", "val_loss", "val_accuracy", "lr", "grad_norm"} <= set(logs)
        assert logs["loss"] == model.history.history["loss"][e]
        assert logs["val_loss"] == model.history.history["val_loss"][e]


def test_callback_stop_training_at_epoch_end(small):
    X, y = small

    class StopAt(Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    rec = Recorder()
    model = fastnet.MLP([64, 8, 10], seed=15)
    hist = model.fit(X, y, epochs=10, verbose=0, callbacks=[StopAt(), rec])
    assert hist.epochs == 2 and hist.stopped_epoch == 1
    assert rec.events[-1] == ("train_end",)
    # a new fit starts afresh (stop_training is reset)
    hist = model.fit(X, y, epochs=3, verbose=0)
    assert hist.epochs == 3 and hist.stopped_epoch is None


def test_callback_stop_training_from_batch_end(small):
    X, y = small

    class StopBatch(Callback):
        def on_batch_end(self, batch, logs=None):
            assert math.isfinite(logs["loss"])
            if batch == 1:
                self.model.stop_training = True

    rec = Recorder()
    model = fastnet.MLP([64, 8, 10], seed=16)
    hist = model.fit(X, y, epochs=10, batch_size=32, verbose=0, callbacks=[StopBatch(), rec])
    assert hist.epochs == 1
    assert [e for e in rec.events if e[0] == "batch_end"] == [("batch_end", 0),
                                                               ("batch_end", 1)]


# ---------------------------------------------------------------------------
# schedules
# ---------------------------------------------------------------------------

def test_epoch_schedule_lr_is_recorded(small):
    X, y = small
    sched = schedules.WarmupCosine(1e-2, 2, 6)
    model = fastnet.MLP([64, 8, 10], seed=17)
    hist = model.fit(X, y, epochs=6, schedule=sched, verbose=0, optimizer="adamw")
    assert hist.history["lr"] == [sched(e) for e in range(6)]
    assert hist.history["lr"][0] == 0.0


def test_plain_callable_schedule(small):
    X, y = small
    seen = []

    def fn(epoch):
        seen.append(epoch)
        return 0.01 / (1 + epoch)

    model = fastnet.MLP([64, 8, 10], seed=18)
    hist = model.fit(X, y, epochs=4, schedule=fn, verbose=0, optimizer="sgd")
    assert hist.history["lr"] == [0.01 / (1 + e) for e in range(4)]
    assert set(seen) == {0, 1, 2, 3}


def test_schedule_lr_is_applied(small):
    """An lr of 0 from epoch 1 on freezes the parameters (SGD without decay)."""
    X, y = small
    rec = Recorder()
    model = fastnet.MLP([64, 8, 10], batch_norm=False, seed=19)
    model.fit(X, y, epochs=3, schedule=lambda e: 0.05 if e == 0 else 0.0, optimizer="sgd",
              verbose=0, callbacks=[rec])
    assert not np.array_equal(flat(rec.weights[0]), flat(fastnet.MLP(
        [64, 8, 10], batch_norm=False, seed=19).get_weights()))
    assert same_weights(rec.weights[0], model.get_weights())


def test_per_step_schedule(small):
    X, y = small
    n_train, batch = 600, 64
    steps = math.ceil(n_train / batch)          # 10 steps per epoch

    class Probe:
        per_step = True

        def __init__(self):
            self.calls = []
            self.inner = schedules.CosineAnnealing(1e-2, 3 * steps, per_step=True)

        def __call__(self, t):
            self.calls.append(t)
            return self.inner(t)

    probe = Probe()
    model = fastnet.MLP([64, 8, 10], seed=20)
    hist = model.fit(X, y, epochs=3, batch_size=batch, schedule=probe, verbose=0)
    assert probe.calls == list(range(3 * steps))
    # the recorded lr is the one of the epoch's last step
    assert hist.history["lr"] == [probe.inner((e + 1) * steps - 1) for e in range(3)]
    assert model.optimizer.t == 3 * steps


def test_per_step_schedule_lr_is_applied(small):
    """lr 0.05 for the first three optimizer steps, 0 afterwards: the parameters stop
    moving after step 3 (SGD without decay), in the middle of the first epoch."""
    X, y = small

    class FirstSteps:
        per_step = True

        def __call__(self, t):
            return 0.05 if t < 3 else 0.0

    class AfterBatch(Callback):
        def __init__(self):
            self.weights = []

        def on_batch_end(self, batch, logs=None):
            self.weights.append(self.model.get_weights())

    after = AfterBatch()
    model = fastnet.MLP([64, 8, 10], batch_norm=False, seed=21)
    model.fit(X, y, epochs=2, optimizer="sgd", schedule=FirstSteps(), verbose=0,
              callbacks=[after])
    assert len(after.weights) == 20
    assert not same_weights(after.weights[1], after.weights[2])
    assert same_weights(after.weights[2], model.get_weights())


def test_reduce_lr_on_plateau_drives_lr_down(small):
    X, y = small
    # min_delta so large that nothing after the first epoch counts as an improvement
    sched = schedules.ReduceLROnPlateau(0.1, factor=0.5, patience=1, min_delta=100.0,
                                        monitor="loss")
    model = fastnet.MLP([64, 8, 10], seed=22)
    hist = model.fit(X, y, epochs=5, optimizer="sgd", schedule=sched, verbose=0)
    assert hist.history["lr"] == [0.1, 0.1, 0.05, 0.025, 0.0125]
    # validation loss is the default monitor when there is validation data
    sched = schedules.ReduceLROnPlateau(0.1, factor=0.5, patience=0, min_delta=100.0)
    hist = model.fit(X, y, epochs=4, optimizer="sgd", schedule=sched, verbose=0,
                     validation_split=0.2)
    assert hist.history["lr"] == [0.1, 0.1, 0.05, 0.025]
    assert sched.best == hist.history["val_loss"][0]


def test_reduce_lr_on_plateau_improving_metric_keeps_lr(small):
    X, y = small
    sched = schedules.ReduceLROnPlateau(0.05, factor=0.5, patience=1, min_delta=0.0,
                                        monitor="loss")
    model = fastnet.MLP([64, 16, 10], seed=23)
    hist = model.fit(X, y, epochs=4, optimizer="sgd", schedule=sched, verbose=0)
    losses = hist.history["loss"]
    assert all(b < a for a, b in zip(losses, losses[1:]))
    assert hist.history["lr"] == [0.05] * 4


# ---------------------------------------------------------------------------
# validation_split, sample_weight, regression
# ---------------------------------------------------------------------------

def test_validation_split(small):
    X, y = small
    model = fastnet.MLP([64, 8, 10], seed=24)
    rec = Recorder()
    hist = model.fit(X, y, epochs=2, batch_size=480, validation_split=0.2, verbose=0,
                     callbacks=[rec])
    # 120 validation rows, 480 training rows: one batch per epoch
    assert [e for e in rec.events if e[0] == "batch_end"] == [("batch_end", 0)] * 2
    for acc in hist.history["val_accuracy"]:
        assert abs(acc * 120 - round(acc * 120)) < 1e-9
    Xv, yv = _val_split(X, y, 0.2, 24)
    assert hist.history["val_loss"][-1] == pytest.approx(model.evaluate(Xv, yv)["loss"],
                                                         rel=1e-6)
    # validation_data wins over validation_split
    hist = model.fit(X, y, epochs=1, validation_split=0.5, validation_data=(X[:7], y[:7]),
                     verbose=0)
    assert abs(hist.history["val_accuracy"][0] * 7 - round(hist.history["val_accuracy"][0]
                                                           * 7)) < 1e-9


def test_sample_weight_zero_rows_are_ignored(small):
    """No batch norm, one full batch: zero-weight rows do not influence training."""
    X, y = small
    X, y = X[:200], y[:200]
    w = np.ones(200)
    w[::3] = 0.0
    kw = dict(epochs=3, batch_size=200, shuffle=False, verbose=0, optimizer="sgd", lr=0.1)
    a = fastnet.MLP([64, 16, 10], batch_norm=False, dtype="float64", seed=25)
    a.fit(X, y, sample_weight=w, **kw)
    b = fastnet.MLP([64, 16, 10], batch_norm=False, dtype="float64", seed=25)
    b.fit(X[w > 0], y[w > 0], **kw)
    np.testing.assert_allclose(flat(a.get_weights()), flat(b.get_weights()), rtol=1e-10,
                               atol=1e-12)


def test_sample_weight_two_equals_duplicated_row(small):
    X, y = small
    X, y = X[:100], y[:100]
    w = np.ones(100)
    w[:10] = 2.0
    kw = dict(epochs=2, batch_size=1000, shuffle=False, verbose=0, optimizer="adam",
              lr=1e-2, loss="cross_entropy")
    a = fastnet.MLP([64, 16, 10], batch_norm=False, dtype="float64", seed=26)
    a.fit(X, y, sample_weight=w, **kw)
    b = fastnet.MLP([64, 16, 10], batch_norm=False, dtype="float64", seed=26)
    b.fit(np.concatenate([X, X[:10]]), np.concatenate([y, y[:10]]), **kw)
    np.testing.assert_allclose(flat(a.get_weights()), flat(b.get_weights()), rtol=1e-9,
                               atol=1e-12)
    # scaling all weights changes nothing
    c = fastnet.MLP([64, 16, 10], batch_norm=False, dtype="float64", seed=26)
    c.fit(X, y, sample_weight=3.0 * w, **kw)
    np.testing.assert_allclose(flat(a.get_weights()), flat(c.get_weights()), rtol=1e-9,
                               atol=1e-12)


def test_sample_weight_changes_training(small):
    X, y = small
    w = np.where(y == 3, 5.0, 1.0)
    a = fastnet.MLP([64, 16, 10], seed=27)
    a.fit(X, y, epochs=2, verbose=0)
    b = fastnet.MLP([64, 16, 10], seed=27)
    b.fit(X, y, epochs=2, verbose=0, sample_weight=w)
    assert not np.array_equal(flat(a.get_weights()), flat(b.get_weights()))


def test_regression_mse(small):
    X, _ = small
    rng = np.random.default_rng(28)
    coef = rng.standard_normal(64)
    target = (X @ coef).astype(np.float32)
    target = (target - target.mean()) / target.std()
    model = fastnet.MLP([64, 32, 1], seed=28)
    hist = model.fit(X[:500], target[:500], loss="mse", epochs=30, optimizer="adam", lr=1e-2,
                     validation_data=(X[500:], target[500:]), verbose=0)
    assert "accuracy" not in hist.history or hist.history["accuracy"] == []
    assert hist.history["val_loss"][-1] < 0.2 * hist.history["val_loss"][0]
    pred = model.predict(X[500:])
    assert pred.shape == (100,)
    ev = model.evaluate(X[500:], target[500:])
    assert set(ev) == {"loss"}
    assert ev["loss"] == pytest.approx(np.mean((pred - target[500:]) ** 2), rel=1e-5)
    # 2-D targets give 2-D predictions
    two = fastnet.MLP([64, 8, 2], seed=29)
    two.fit(X, np.stack([target, -target], axis=1), loss="mse", epochs=1, verbose=0)
    assert two.predict(X[:5]).shape == (5, 2)
    # (n, 1) targets also give (n, 1) predictions
    col = fastnet.MLP([64, 8, 1], seed=30)
    col.fit(X, target[:, None], loss="mse", epochs=1, verbose=0)
    assert col.predict(X[:5]).shape == (5, 1)


# ---------------------------------------------------------------------------
# Ctrl-C
# ---------------------------------------------------------------------------

class _CtrlC(Callback):
    def __init__(self, epoch, batch, times=1):
        self.epoch, self.batch, self.times = epoch, batch, times
        self.current = None
        self.sent_at = None

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_batch_end(self, batch, logs=None):
        if (self.current, batch) == (self.epoch, self.batch):
            self.sent_at = self.model.get_weights()
            for _ in range(self.times):
                os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_stops_after_the_batch_and_restores_best_weights(small):
    X, y = small
    handler = signal.getsignal(signal.SIGINT)
    model = fastnet.MLP([64, 32, 10], seed=0)
    ctrl_c, rec = _CtrlC(epoch=4, batch=3), Recorder()
    # lr 10 from epoch 4: the interrupted epoch has a much worse validation loss
    hist = model.fit(X, y, epochs=30, optimizer="sgd", lr=0.1,
                     schedule=lambda e: 0.1 if e < 4 else 10.0,
                     validation_split=0.25, verbose=0, callbacks=[ctrl_c, rec])
    assert hist.interrupted and not hist.diverged
    assert hist.epochs == 5                    # the interrupted epoch is logged
    batches = [e for e in rec.events if e[0] == "batch_end"]
    assert len(batches) == 4 * 8 + 4           # 450 rows / 64 -> 8 steps; stopped after 4
    assert rec.events[-1] == ("train_end",)
    assert hist.best_epoch == int(np.argmin(hist.history["val_loss"])) < 4
    final = model.get_weights()
    assert same_weights(final, rec.weights[hist.best_epoch])
    assert not same_weights(final, ctrl_c.sent_at)
    assert signal.getsignal(signal.SIGINT) is handler
    # the model is usable: it predicts and trains again
    assert model.evaluate(X, y)["accuracy"] > 0.5
    hist = model.fit(X, y, epochs=1, verbose=0)
    assert not hist.interrupted and hist.epochs == 1


def test_second_ctrl_c_interrupts_at_once(small):
    X, y = small
    handler = signal.getsignal(signal.SIGINT)
    model = fastnet.MLP([64, 8, 10], seed=31)
    with pytest.raises(KeyboardInterrupt):
        model.fit(X, y, epochs=3, verbose=0, callbacks=[_CtrlC(epoch=0, batch=2, times=2)])
    assert signal.getsignal(signal.SIGINT) is handler
    model.predict(X[:3])


@pytest.mark.parametrize("batch_norm, n, expected", [(True, 65, 1), (False, 65, 2),
                                                     (True, 66, 2), (True, 64, 1)])
def test_trailing_single_row_batch_is_skipped_with_batch_norm(small, batch_norm, n, expected):
    X, y = small
    rec = Recorder()
    model = fastnet.MLP([64, 8, 10], batch_norm=batch_norm, seed=32)
    hist = model.fit(X[:n], y[:n], epochs=2, batch_size=64, verbose=0, callbacks=[rec])
    assert [e[1] for e in rec.events if e[0] == "batch_end"] == list(range(expected)) * 2
    assert model.optimizer.t == 2 * expected
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert all(math.isfinite(v) for v in hist.history["loss"])


def test_weighted_validation_loss_and_accuracy():
    """validation_data=(X, y, w): the logged val_loss/val_accuracy are weighted means."""
    rng = np.random.default_rng(11)
    X = rng.standard_normal((120, 6)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    Xv = rng.standard_normal((40, 6)).astype(np.float32)
    yv = (Xv[:, 0] > 0).astype(np.int64)
    wv = rng.uniform(0.0, 3.0, 40).astype(np.float32)
    model = fastnet.MLP([6, 8, 2], seed=1)
    history = model.fit(X, y, epochs=2, batch_size=32, validation_data=(Xv, yv, wv), verbose=0)
    p = model.predict_proba(Xv).astype(np.float64)
    w = wv.astype(np.float64)
    expected_loss = np.sum(w * -np.log(p[np.arange(40), yv])) / w.sum()
    expected_acc = np.sum(w * (p.argmax(1) == yv)) / w.sum()
    assert history.history["val_loss"][-1] == pytest.approx(expected_loss, rel=1e-4)
    assert history.history["val_accuracy"][-1] == pytest.approx(expected_acc, rel=1e-12)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(X, y, epochs=1, validation_data=(Xv, yv, np.zeros(40)), verbose=0)
    with pytest.raises(ValueError, match="validation_data"):
        model.fit(X, y, epochs=1, validation_data=(Xv, yv, wv[:5]), verbose=0)


def test_training_workspace_scales_with_the_batch_not_the_parameters():
    # One layer of a million weights, batches of 8: the engine needs the
    # batch's activations and one packing buffer the size of W, not scratch
    # per parameter (it once held two doubles per parameter, 16 MB here).
    m = fastnet.MLP([1000, 1000, 10], seed=0)
    engine = m._engine(8, "cross_entropy")
    w_bytes = 1000 * 1000 * m.dtype.itemsize
    assert engine.workspace_bytes < 1.2 * w_bytes
