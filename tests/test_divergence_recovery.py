"""Divergence and non-finite state: the weights restored after a divergence are never
worse than those fit started from (the best state is judged by a loss measured on it),
rollback backs off until the run learns again, non-finite weights or buffers are caught in
fit or refused by init/set_weights, and save never writes a file load refuses."""
import warnings

import numpy as np
import pytest

import fastnet
from fastnet.datasets import load_digits, train_test_split
from fastnet.health import TrainingDiverged


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def _fit_quietly(model, *args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        history = model.fit(*args, **kwargs)
    return history, [str(w.message) for w in caught]


@pytest.mark.parametrize("lr", [100.0, 1e30, 1e300])
def test_full_batch_divergence_restores_weights_no_worse_than_the_start(digits, lr):
    X, y = digits
    model = fastnet.MLP([64, 128, 128, 10], seed=0, batch_norm=False)
    start = model.evaluate(X, y)["loss"]
    history, messages = _fit_quietly(model, X, y, epochs=50, batch_size=len(X),
                                     optimizer="sgd", lr=lr, verbose=0)
    assert history.diverged
    assert any("restored the best weights" in m for m in messages)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert model.evaluate(X, y)["loss"] <= start


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_restored_state_is_the_one_its_loss_was_measured_on(digits, seed):
    # Full batch without dropout or batch norm: the loss logged for epoch e is the loss of
    # the weights epoch e started from.  A growing lr learns for ~10 epochs, then one
    # update overshoots: the restored weights must have the best logged loss (restoring
    # the weights after that epoch's update gave the next epoch's loss, 10.8 for seed 1).
    X, y = digits
    model = fastnet.MLP([64, 32, 10], seed=seed, batch_norm=False)
    history, _ = _fit_quietly(model, X, y, epochs=40, batch_size=len(X), optimizer="sgd",
                              schedule=lambda epoch: 0.05 * 1.5 ** epoch, verbose=0)
    assert history.diverged and history.best_epoch >= 5
    best = min(history.history["loss"])
    assert history.history["loss"][history.best_epoch] == best
    assert model.evaluate(X, y)["loss"] == pytest.approx(best, rel=1e-6)


def test_raise_restores_the_best_weights_too(digits):
    X, y = digits
    model = fastnet.MLP([64, 128, 128, 10], seed=0, batch_norm=False)
    start = model.evaluate(X, y)["loss"]
    with pytest.raises(TrainingDiverged, match="best weights were restored"):
        model.fit(X, y, epochs=50, batch_size=len(X), optimizer="sgd", lr=100.0, verbose=0,
                  on_divergence="raise")
    assert model.evaluate(X, y)["loss"] <= start


def test_mini_batch_divergence_restores_weights_no_worse_than_the_start(digits):
    X, y = digits
    model = fastnet.MLP([64, 128, 10], seed=2, batch_norm=False)
    start = model.evaluate(X, y)["loss"]
    history, _ = _fit_quietly(model, X, y, epochs=30, batch_size=len(X) // 2 + 1,
                              optimizer="sgd", lr=50.0, verbose=0)
    assert history.diverged
    assert model.evaluate(X, y)["loss"] <= start


@pytest.mark.parametrize("batch_norm", [True, False])
def test_rollback_from_a_huge_lr_ends_with_a_model_that_learned(digits, batch_norm):
    X, y = digits
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)
    model = fastnet.MLP([64, 128, 128, 10], seed=0, batch_norm=batch_norm)
    history, _ = _fit_quietly(model, X_train, y_train, epochs=15, optimizer="sgd", lr=1e4,
                              on_divergence="rollback", verbose=0)
    assert not history.diverged
    # backing off does not stop at lr 10, where the loss is finite but flat
    assert min(r["new_lr"] for r in history.rollbacks) <= 1.0
    assert np.mean(model.predict(X_test) == y_test) >= 0.5


def test_rollback_keeps_backing_off_while_the_loss_stays_flat(digits):
    X, y = digits
    model = fastnet.MLP([64, 128, 128, 10], seed=1)
    history, _ = _fit_quietly(model, X, y, epochs=12, optimizer="sgd", lr=1e4,
                              on_divergence="rollback", verbose=0)
    new_lrs = [r["new_lr"] for r in history.rollbacks]
    assert new_lrs == sorted(new_lrs, reverse=True) and new_lrs[-1] <= 1.0
    # the epochs that follow the last rollback learned: below the constant predictor
    assert history.history["loss"][-1] < np.log(10)


# ---- non-finite weights and buffers ------------------------------------------------------

def test_overflowing_batch_norm_statistics_are_a_divergence(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32) * 1e20
    y = (X[:, 0] > 0).astype(np.int64)
    model = fastnet.MLP([4, 8, 2], seed=0)
    start = model.get_weights()
    history, messages = _fit_quietly(model, X, y, epochs=2, verbose=0)
    assert history.diverged
    assert any("NaN or infinite" in m for m in messages)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), start))
    model.save(tmp_path / "m.npz")
    loaded = fastnet.load(tmp_path / "m.npz")
    assert np.array_equal(loaded.predict_proba(X / 1e20), model.predict_proba(X / 1e20))


def test_overflowing_statistics_roll_back_too():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32) * 1e20
    y = (X[:, 0] > 0).astype(np.int64)
    model = fastnet.MLP([4, 8, 2], seed=0)
    history, _ = _fit_quietly(model, X, y, epochs=2, verbose=0, on_divergence="rollback")
    assert history.rollbacks
    assert np.all(np.isfinite(model.buffers)) and np.all(np.isfinite(model.params))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_an_init_returning_non_finite_weights_is_refused(value):
    def bad_init(fan_in, fan_out, rng):
        w = rng.standard_normal((fan_in, fan_out))
        w[0, 0] = value
        return w

    with pytest.raises(ValueError, match="init returned for layer 0 contains NaN or infinity"):
        fastnet.MLP([4, 8, 2], init=bad_init)
    model = fastnet.MLP([4, 8, 2], seed=0)
    before = model.params.copy()
    model.init = bad_init
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.reset_parameters()
    assert np.array_equal(model.params, before)


def test_an_init_overflowing_float32_is_refused():
    with pytest.raises(ValueError, match="too large for float32"):
        fastnet.MLP([4, 8, 2], init=lambda a, b, rng: np.full((a, b), 1e300))


@pytest.mark.parametrize("name, value, match", [
    ("layer0.w", np.nan, "NaN or infinity"), ("layer0.running_var", np.inf, "NaN or inf"),
    ("layer0.running_var", -1.0, "negative variances"), ("layer1.b", 1e300, "too large")])
def test_set_weights_refuses_what_load_would_refuse(name, value, match):
    model = fastnet.MLP([4, 8, 2], seed=0)
    weights = [w.astype(np.float64) for w in model.get_weights()]
    weights[model.weight_names().index(name)][...] = value
    before = model.get_weights()
    with pytest.raises(ValueError, match=match):
        model.set_weights(weights)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), before))


def test_save_refuses_non_finite_weights_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "m.npz"
    model = fastnet.MLP([4, 8, 2], seed=0)
    model.save(path)
    old = path.read_bytes()
    model.params[3] = np.nan
    with pytest.raises(ValueError, match="NaN or infinity"):
        model.save(path)
    model.params[3] = 0.0
    model.layers[0]["running_var"][0] = -1.0
    with pytest.raises(ValueError, match="negative variances"):
        model.save(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
