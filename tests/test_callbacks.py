"""Tests of fastnet.callbacks: the seed's EarlyStopping protocol and the fit-callback protocol."""
import io
import json
import math
import warnings
from contextlib import redirect_stdout

import numpy as np
import pytest

from fastnet.callbacks import Callback, EarlyStopping, improved
from fastnet.schedules import warmup_cosine

# ---------------------------------------------------------------------------
# Reference: the seed article's EarlyStopping, as written there
# ---------------------------------------------------------------------------

class SeedEarlyStopping:
    def __init__(self, patience=10):
        self.patience = patience
        self.best_loss = float('inf')
        self.counter = 0
        self.best_weights = None

    def check(self, val_loss, model_weights):
        if val_loss < self.best_loss:
            self.best_loss = val_loss
            self.counter = 0
            self.best_weights = [w.copy() for w in model_weights]
            return False  # keep training
        self.counter += 1
        return self.counter >= self.patience  # True = stop


def overfitting_curve():
    """The seed's simulated curve: 200 epochs, validation loss turns up after epoch 80."""
    train, val = [], []
    for epoch in range(200):
        train.append(0.8 * np.exp(-epoch / 30) + 0.05)
        val.append(0.8 * np.exp(-epoch / 30) + 0.05 + 0.001 * max(0, epoch - 80) ** 1.3)
    return train, val


def full_recipe_transcript(stopper_cls):
    """The seed's "full recipe" simulation, printing what the seed prints."""
    out = io.StringIO()
    with redirect_stdout(out):
        np.random.seed(42)
        lr_initial, warmup_epochs, total_epochs, patience = 0.001, 10, 200, 15
        stopper = stopper_cls(patience=patience)
        for epoch in range(total_epochs):
            lr = warmup_cosine(epoch, warmup_epochs, total_epochs, lr_initial)
            train_loss = 0.6 * np.exp(-epoch / 25) + 0.02
            val_loss = (0.65 * np.exp(-epoch / 25) + 0.03
                        + 0.0005 * max(0, epoch - 100) ** 1.2)
            if epoch % 40 == 0:
                print(f"  Epoch {epoch:>3d}: lr={lr:.6f}, "
                      f"train={train_loss:.4f}, val={val_loss:.4f}")
            weights_dummy = [np.array([train_loss])]
            if stopper.check(val_loss, weights_dummy):
                print(f"\n  Early stopping triggered at epoch {epoch}")
                print(f"  Best validation loss: {stopper.best_loss:.4f}")
                break
        print(f"\n  Would have trained {total_epochs} epochs without early stopping")
        print(f"  Saved {total_epochs - epoch} epochs of wasted compute")
    return out.getvalue(), stopper, epoch


# ---------------------------------------------------------------------------
# The seed's protocol: check(val_loss, model_weights)
# ---------------------------------------------------------------------------

def test_seed_overfitting_curve_stops_at_best_plus_patience():
    _, val = overfitting_curve()
    best_epoch = int(np.argmin(val))
    es = EarlyStopping(patience=10)
    weights = [np.full((3, 2), float(e)) for e in range(200)]
    stop_epoch = None
    for epoch, v in enumerate(val):
        if es.check(v, [weights[epoch], -weights[epoch][0]]):
            stop_epoch = epoch
            break
    assert stop_epoch == best_epoch + 10
    assert es.stopped_epoch == stop_epoch
    assert es.best_epoch == best_epoch
    assert es.best_loss == val[best_epoch]
    assert es.counter == 10
    np.testing.assert_array_equal(es.best_weights[0], weights[best_epoch])
    np.testing.assert_array_equal(es.best_weights[1], -weights[best_epoch][0])


def test_seed_overfitting_curve_matches_reference_every_epoch():
    _, val = overfitting_curve()
    ours, ref = EarlyStopping(patience=10), SeedEarlyStopping(patience=10)
    for epoch, v in enumerate(val):
        w = [np.array([v, epoch])]
        assert ours.check(v, w) == ref.check(v, w)
        assert (ours.best_loss, ours.counter) == (ref.best_loss, ref.counter)
        np.testing.assert_array_equal(ours.best_weights[0], ref.best_weights[0])


def test_seed_overfitting_printed_numbers():
    train, val = overfitting_curve()
    best_epoch = int(np.argmin(val))
    assert f"{train[-1]:.4f}" == "0.0511"
    assert f"{val[-1]:.4f}" == "0.5502"
    assert best_epoch == 82 and f"{val[best_epoch]:.4f}" == "0.1045"
    assert f"{train[best_epoch]:.4f}" == "0.1020"
    es = EarlyStopping(patience=10)
    stopped = next(e for e, v in enumerate(val) if es.check(v, [np.zeros(1)]))
    assert stopped == 92 and 200 - best_epoch - 10 == 108


def test_best_weights_are_copies():
    es = EarlyStopping(patience=3)
    w = [np.ones((2, 2)), np.zeros(3)]
    es.check(1.0, w)
    w[0][...] = 42.0          # the training loop updates weights in place
    w[1] += 7.0
    np.testing.assert_array_equal(es.best_weights[0], np.ones((2, 2)))
    np.testing.assert_array_equal(es.best_weights[1], np.zeros(3))
    assert all(not np.shares_memory(a, b) for a, b in zip(es.best_weights, w))


def test_seed_full_recipe_scenario():
    ours, stopper, epoch = full_recipe_transcript(EarlyStopping)
    ref, _, _ = full_recipe_transcript(SeedEarlyStopping)
    assert ours == ref
    assert ours.splitlines() == [
        "  Epoch   0: lr=0.000000, train=0.6200, val=0.6800",
        "  Epoch  40: lr=0.000940, train=0.1411, val=0.1612",
        "  Epoch  80: lr=0.000701, train=0.0445, val=0.0565",
        "",
        "  Early stopping triggered at epoch 115",
        "  Best validation loss: 0.0419",
        "",
        "  Would have trained 200 epochs without early stopping",
        "  Saved 85 epochs of wasted compute",
    ]
    assert epoch == 115 and stopper.best_epoch == 100 == epoch - 15
    assert stopper.stopped_epoch == 115
    # The dummy weights of the best epoch are the training loss at epoch 100.
    np.testing.assert_array_equal(stopper.best_weights[0],
                                  [0.6 * np.exp(-100 / 25) + 0.02])


def test_never_stopping_leaves_stopped_epoch_none():
    es = EarlyStopping(patience=5)
    for epoch in range(20):
        assert es.check(1.0 / (epoch + 1), [np.zeros(1)]) is False
    assert es.stopped_epoch is None and es.best_epoch == 19 and es.counter == 0


def test_explicit_epoch_argument():
    es = EarlyStopping(patience=2)
    es.check(1.0, [np.zeros(1)], epoch=10)
    es.check(2.0, [np.zeros(1)], epoch=11)
    assert es.check(3.0, [np.zeros(1)], epoch=12)
    assert (es.best_epoch, es.stopped_epoch) == (10, 12)


def test_stopped_epoch_is_the_first_stop():
    es = EarlyStopping(patience=1)
    es.check(1.0, [np.zeros(1)])
    assert es.check(2.0, [np.zeros(1)]) and es.check(3.0, [np.zeros(1)])
    assert es.stopped_epoch == 1


# ---------------------------------------------------------------------------
# Table-driven: mode, min_delta, NaN, baseline
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode,monitor,expected", [
    ("max", "val_mse", "max"),
    ("min", "val_accuracy", "min"),
    ("auto", "loss", "min"),
    ("auto", "val_loss", "min"),
    ("auto", "accuracy", "max"),
    ("auto", "val_accuracy", "max"),
    ("auto", "val_acc", "max"),
    ("auto", "val_mse", "min"),
])
def test_mode_resolution(mode, monitor, expected):
    assert EarlyStopping(mode=mode, monitor=monitor).mode == expected


@pytest.mark.parametrize("mode,min_delta,values,stop_at,best_epoch", [
    # strict improvement: equal values do not count
    ("min", 0.0, [1.0, 1.0, 1.0, 1.0], 2, 0),
    ("min", 0.0, [1.0, 0.9, 0.8, 0.85, 0.7, 0.75, 0.75], 6, 4),
    # min_delta: a 0.05 gain is not enough when min_delta is 0.1
    ("min", 0.1, [1.0, 0.95, 0.85, 0.8, 0.74, 0.7, 0.66], 6, 4),
    ("min", 0.1, [1.0, 0.89, 0.78, 0.67, 0.56], None, 4),
    ("max", 0.0, [0.5, 0.6, 0.6, 0.7, 0.65, 0.69], 5, 3),
    ("max", 0.05, [0.5, 0.54, 0.549, 0.6], 2, 0),
    ("max", 0.0, [0.1, 0.2, 0.3, 0.4], None, 3),
    # NaN never improves, and counts as a bad epoch
    ("min", 0.0, [1.0, float("nan"), float("nan")], 2, 0),
    ("min", 0.0, [float("nan"), 1.0, float("nan"), float("nan")], 3, 1),
    ("max", 0.0, [float("nan"), float("nan")], 1, None),
])
def test_stopping_table(mode, min_delta, values, stop_at, best_epoch):
    es = EarlyStopping(patience=2, mode=mode, min_delta=min_delta)
    stopped = None
    for epoch, v in enumerate(values):
        if es.check(v, [np.array([epoch])]):
            stopped = epoch
            break
    assert stopped == stop_at
    assert es.stopped_epoch == stop_at
    assert es.best_epoch == best_epoch
    if best_epoch is None:
        assert es.best_weights is None and math.isinf(es.best_loss)
    else:
        assert es.best_loss == values[best_epoch] == es.best_value
        assert es.best_weights[0][0] == best_epoch


def test_nan_first_value_keeps_infinite_best():
    es = EarlyStopping(patience=3)
    es.check(float("nan"), [np.zeros(1)])
    assert es.best_loss == math.inf and es.counter == 1 and es.best_weights is None


def test_baseline_must_be_beaten_to_reset_patience():
    es = EarlyStopping(patience=3, baseline=0.5)
    stops = [es.check(v, [np.array([v])]) for v in [0.9, 0.8, 0.7]]
    assert stops == [False, False, True]
    assert es.best_loss == 0.7 and es.best_epoch == 2   # best still tracked
    es = EarlyStopping(patience=3, baseline=0.5)
    stops = [es.check(v, [np.array([v])]) for v in [0.9, 0.4, 0.45, 0.46, 0.3]]
    assert stops == [False, False, False, False, False]


def test_initial_best_per_mode():
    assert EarlyStopping(mode="min").best_loss == math.inf
    assert EarlyStopping(mode="max").best_value == -math.inf


@pytest.mark.parametrize("kwargs,exc", [
    ({"mode": "minimum"}, ValueError),
    ({"mode": None}, ValueError),
    ({"patience": -1}, ValueError),
    ({"patience": 2.5}, TypeError),
    ({"patience": True}, TypeError),
    ({"min_delta": -0.1}, ValueError),
    ({"min_delta": float("nan")}, ValueError),
    ({"start_from_epoch": -1}, ValueError),
    ({"monitor": None}, TypeError),
    ({"baseline": "low"}, ValueError),
])
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        EarlyStopping(**kwargs)


# ---------------------------------------------------------------------------
# The fit-callback protocol, driven by a fake model
# ---------------------------------------------------------------------------

class FakeModel:
    """Stands in for MLP: parameters plus batch-norm running statistics."""

    def __init__(self):
        self.W = np.zeros((3, 2))
        self.b = np.zeros(2)
        self.running_mean = np.zeros(2)
        self.stop_training = False
        self.set_calls = 0

    def get_weights(self):
        return [self.W.copy(), self.b.copy(), self.running_mean.copy()]

    def set_weights(self, weights):
        self.set_calls += 1
        self.W[...], self.b[...], self.running_mean[...] = weights

    def train_epoch(self, epoch):
        # In-place updates, as an optimizer would do.
        self.W[...] = epoch
        self.b += 1.0
        self.running_mean[...] = -epoch


def fit(model, callbacks, val_losses, extra_logs=None, monitor_key="val_loss"):
    """The loop MLP.fit runs, reduced to the callback protocol."""
    model.stop_training = False
    for cb in callbacks:
        cb.model = model
    for cb in callbacks:
        cb.on_train_begin({})
    last = None
    for epoch, v in enumerate(val_losses):
        for cb in callbacks:
            cb.on_epoch_begin(epoch, {})
        model.train_epoch(epoch)
        for cb in callbacks:
            cb.on_batch_end(0, {"loss": v})
        logs = {"loss": v * 0.9, monitor_key: v, **(extra_logs or {})}
        for cb in callbacks:
            cb.on_epoch_end(epoch, logs)
        last = epoch
        if model.stop_training:
            break
    for cb in callbacks:
        cb.on_train_end({})
    return last


V_CURVE = [1.0, 0.8, 0.6, 0.5, 0.55, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2]   # best at epoch 3


def assert_weights_of_epoch(model, epoch, n_epochs_trained):
    np.testing.assert_array_equal(model.W, np.full((3, 2), float(epoch)))
    np.testing.assert_array_equal(model.running_mean, np.full(2, -float(epoch)))
    np.testing.assert_array_equal(model.b, np.full(2, float(epoch + 1)))
    assert n_epochs_trained >= epoch


def test_restores_best_weights_after_early_stop():
    model, es = FakeModel(), EarlyStopping(patience=3)
    last = fit(model, [es], V_CURVE)
    assert last == 6 and es.stopped_epoch == 6 and model.stop_training
    assert es.best_epoch == 3
    assert_weights_of_epoch(model, 3, last)   # batch-norm statistics included
    assert model.set_calls == 1


def test_restores_best_weights_when_epochs_run_out():
    # keras-team/keras#12511: restore even when patience never ran out.
    model, es = FakeModel(), EarlyStopping(patience=50)
    last = fit(model, [es], V_CURVE)
    assert last == len(V_CURVE) - 1 and not model.stop_training
    assert es.stopped_epoch is None and es.best_epoch == 3
    assert_weights_of_epoch(model, 3, last)


def test_restore_best_weights_false_keeps_last_weights():
    for patience in (3, 50):
        model, es = FakeModel(), EarlyStopping(patience=patience, restore_best_weights=False)
        last = fit(model, [es], V_CURVE)
        assert_weights_of_epoch(model, last, last)
        assert model.set_calls == 0
        assert es.best_epoch == 3


def test_restored_weights_are_not_aliased():
    model, es = FakeModel(), EarlyStopping(patience=3)
    fit(model, [es], V_CURVE)
    model.W += 100.0
    np.testing.assert_array_equal(es.best_weights[0], np.full((3, 2), 3.0))


def test_missing_monitor_warns_once_and_does_nothing():
    model, es = FakeModel(), EarlyStopping(patience=2)
    with pytest.warns(UserWarning) as record:
        last = fit(model, [es], V_CURVE, monitor_key="validation_loss",
                   extra_logs={"accuracy": 0.5})
    msgs = [str(w.message) for w in record if "EarlyStopping" in str(w.message)]
    assert len(msgs) == 1
    assert "'val_loss'" in msgs[0]
    for key in ("accuracy", "loss", "validation_loss"):
        assert key in msgs[0]
    assert last == len(V_CURVE) - 1 and not model.stop_training
    assert es.best_weights is None and model.set_calls == 0
    assert_weights_of_epoch(model, last, last)


def test_missing_monitor_warns_again_in_a_new_training():
    model, es = FakeModel(), EarlyStopping()
    for _ in range(2):
        with pytest.warns(UserWarning, match="val_loss"):
            fit(model, [es], V_CURVE[:3], monitor_key="other")


def test_custom_monitor_and_mode_max():
    model, es = FakeModel(), EarlyStopping(patience=2, monitor="val_accuracy", mode="auto")
    acc = [0.5, 0.7, 0.9, 0.85, 0.88, 0.6]
    last = fit(model, [es], acc, monitor_key="val_accuracy")
    assert es.mode == "max" and es.best_epoch == 2 and last == 4
    assert_weights_of_epoch(model, 2, last)


def test_start_from_epoch_ignores_early_epochs():
    curve = [0.1, 0.2, 0.9, 0.8, 0.7, 0.75, 0.76, 0.77]   # epoch 0 would be the best
    model, es = FakeModel(), EarlyStopping(patience=2, start_from_epoch=2)
    last = fit(model, [es], curve)
    assert es.best_epoch == 4 and es.best_loss == 0.7 and last == 6
    assert_weights_of_epoch(model, 4, last)
    # Without it, patience runs out at epoch 2.
    model, es = FakeModel(), EarlyStopping(patience=2)
    assert fit(model, [es], curve) == 2 and es.best_epoch == 0


def test_start_from_epoch_in_check():
    es = EarlyStopping(patience=1, start_from_epoch=2)
    assert es.check(0.1, [np.zeros(1)]) is False
    assert es.check(0.2, [np.zeros(1)]) is False
    assert es.best_epoch is None and es.counter == 0
    assert es.check(0.5, [np.zeros(1)]) is False and es.best_epoch == 2


def test_reuse_across_trainings_resets_state():
    model, es = FakeModel(), EarlyStopping(patience=3)
    fit(model, [es], V_CURVE)
    assert (es.best_epoch, es.stopped_epoch) == (3, 6)
    # Second training: a curve that keeps improving; nothing may leak from the first
    # (the first run's best 0.5 would otherwise make every value below look bad).
    second = [2.0, 1.9, 1.8, 1.7, 1.6]
    last = fit(model, [es], second)
    assert last == 4 and not model.stop_training
    assert (es.best_epoch, es.stopped_epoch, es.counter) == (4, None, 0)
    assert es.best_loss == 1.6
    np.testing.assert_array_equal(model.W, np.full((3, 2), 4.0))


def test_several_callbacks_and_plain_objects():
    events = []

    class Recorder(Callback):
        def on_train_begin(self, logs=None):
            events.append(("begin", self.model is not None))

        def on_epoch_end(self, epoch, logs=None):
            events.append(("epoch", epoch))

        def on_train_end(self, logs=None):
            events.append(("end",))

    model = FakeModel()
    fit(model, [EarlyStopping(patience=1), Recorder()], V_CURVE)
    assert events == [("begin", True), ("epoch", 0), ("epoch", 1), ("epoch", 2),
                      ("epoch", 3), ("epoch", 4), ("end",)]


def test_base_callback_hooks_are_noops():
    cb = Callback()
    assert cb.model is None
    assert cb.on_train_begin({}) is None
    assert cb.on_epoch_begin(0, {}) is None
    assert cb.on_batch_end(0, {}) is None
    assert cb.on_epoch_end(0, {}) is None
    assert cb.on_train_end({}) is None
    assert cb.on_epoch_end(0) is None


def test_verbose_messages():
    model, es = FakeModel(), EarlyStopping(patience=3, verbose=1)
    out = io.StringIO()
    with redirect_stdout(out):
        fit(model, [es], V_CURVE)
    text = out.getvalue()
    assert "Epoch 6: early stopping" in text and "best epoch (3)" in text
    model, es = FakeModel(), EarlyStopping(patience=3)
    out = io.StringIO()
    with redirect_stdout(out):
        fit(model, [es], V_CURVE)
    assert out.getvalue() == ""


# ---------------------------------------------------------------------------
# state_dict
# ---------------------------------------------------------------------------

def test_state_dict_is_json_and_resumes_identically():
    _, val = overfitting_curve()
    weights = [[np.array([e, -e], dtype=float)] for e in range(len(val))]
    full = EarlyStopping(patience=10)
    decisions = [full.check(v, w) for v, w in zip(val, weights)]
    for k in (0, 1, 40, 81, 85, 95, 200):
        first = EarlyStopping(patience=10)
        got = [first.check(v, w) for v, w in zip(val[:k], weights[:k])]
        state = json.loads(json.dumps(first.state_dict(), allow_nan=False))
        saved_weights = None if first.best_weights is None else \
            [np.array(w) for w in first.best_weights]
        resumed = EarlyStopping(patience=10)
        resumed.load_state_dict(state, best_weights=saved_weights)
        assert resumed.state_dict() == first.state_dict()
        got += [resumed.check(v, w) for v, w in zip(val[k:], weights[k:])]
        assert got == decisions
        assert (resumed.best_epoch, resumed.stopped_epoch, resumed.best_loss) == \
            (full.best_epoch, full.stopped_epoch, full.best_loss)
        np.testing.assert_array_equal(resumed.best_weights[0], full.best_weights[0])


def test_state_dict_before_anything():
    state = EarlyStopping(mode="max").state_dict()
    assert state == {"best_loss": None, "counter": 0, "best_epoch": None,
                     "stopped_epoch": None, "epochs_seen": 0}
    es = EarlyStopping(mode="max")
    es.load_state_dict(state)
    assert es.best_value == -math.inf and es.best_weights is None


def test_load_state_dict_rejects_wrong_keys():
    with pytest.raises(ValueError, match="keys"):
        EarlyStopping().load_state_dict({"best_loss": 1.0})


def test_no_warning_when_monitor_present():
    model = FakeModel()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit(model, [EarlyStopping(patience=3)], V_CURVE)


# ---------------------------------------------------------------------------
# callbacks.improved: the one "improved?" rule
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("mode, better, worse", [("min", 0.5, 1.5), ("max", 1.5, 0.5)])
def test_improved_direction_follows_mode(mode, better, worse):
    assert improved(better, 1.0, mode)
    assert not improved(worse, 1.0, mode)
    assert not improved(1.0, 1.0, mode)          # equal is not an improvement


def test_improved_first_value_always_improves():
    for mode in ("min", "max"):
        assert improved(3.0, None, mode)
        assert improved(-1e300, None, mode, min_delta=10.0)
        assert improved(float("inf"), None, mode)   # None means nothing seen yet


def test_improved_absolute_min_delta_is_in_metric_units():
    assert improved(0.89, 1.0, "min", min_delta=0.1)
    assert not improved(0.9, 1.0, "min", min_delta=0.1)       # needs strictly more than 0.1
    assert not improved(0.95, 1.0, "min", min_delta=0.1)
    assert improved(1.11, 1.0, "max", min_delta=0.1)
    assert not improved(1.05, 1.0, "max", min_delta=0.1)
    # the margin does not scale with the metric: a tiny best needs the same step
    assert not improved(0.5e-3, 1e-3, "min", min_delta=0.1)


def test_improved_relative_min_delta_is_a_fraction_of_best():
    assert improved(89.0, 100.0, "min", min_delta=0.1, relative=True)
    assert not improved(91.0, 100.0, "min", min_delta=0.1, relative=True)
    assert improved(0.0089, 0.01, "min", min_delta=0.1, relative=True)
    assert not improved(0.0091, 0.01, "min", min_delta=0.1, relative=True)
    assert improved(111.0, 100.0, "max", min_delta=0.1, relative=True)
    assert not improved(109.0, 100.0, "max", min_delta=0.1, relative=True)
    # |best|: a negative best still demands a step of 10% of its size
    assert improved(-111.0, -100.0, "min", min_delta=0.1, relative=True)
    assert not improved(-105.0, -100.0, "min", min_delta=0.1, relative=True)


def test_improved_nan_never_improves():
    nan = float("nan")
    for mode in ("min", "max"):
        assert not improved(nan, 1.0, mode)
        assert not improved(nan, None, mode)
        assert not improved(nan, float("inf"), mode)


@pytest.mark.parametrize("relative", [False, True])
def test_improved_infinities(relative):
    inf = float("inf")
    # an infinite start is beaten by any finite value, in both margin modes
    assert improved(1e30, inf, "min", min_delta=0.1, relative=relative)
    assert improved(-1e30, -inf, "max", min_delta=0.1, relative=relative)
    # an infinite value does not beat an equal infinite best ...
    assert not improved(inf, inf, "min", relative=relative)
    assert not improved(-inf, -inf, "max", relative=relative)
    # ... and goes the right way against a finite one
    assert not improved(inf, 1.0, "min", min_delta=0.1, relative=relative)
    assert improved(inf, 1.0, "max", min_delta=0.1, relative=relative)
    assert improved(-inf, 1.0, "min", min_delta=0.1, relative=relative)
