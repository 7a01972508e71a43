"""Issue 9, training health: lr_find, gradient tracking and the health report,
the divergence policy, class weights, and schedule composition inside fit."""
import math
import warnings

import numpy as np
import pytest
from conftest import assert_close, names_argument, num_threads

import fastnet
from fastnet import datasets, health
from fastnet.optim import SGD, AdamW
from fastnet.schedules import OneCycle, ReduceLROnPlateau, WarmupCosine

RECIPE = dict(epochs=60, batch_size=64, optimizer="adamw", validation_split=0.1,
              early_stopping=15, verbose=0)


@pytest.fixture(scope="module")
def split():
    X, y = datasets.load_digits()               # pixels / 16
    return datasets.train_test_split(X, y, test_size=0.25, seed=0)


def recipe_model(seed=0):
    return fastnet.MLP([64, 256, 128, 10], batch_norm=True, dropout=0.3, seed=seed)


def same_weights(a, b):
    return all(x.dtype == y.dtype and x.tobytes() == y.tobytes() for x, y in zip(a, b))


def accuracy(model, X, y):
    return float(np.mean(model.predict(X) == y))


# ---------------------------------------------------------------------------
# lr_find
# ---------------------------------------------------------------------------

def test_lr_find_suggests_an_lr_the_recipe_trains_well_with(split):
    X_train, X_test, y_train, y_test = split
    model = recipe_model()
    before = model.get_weights()
    result = model.lr_find(X_train, y_train, optimizer="adamw")
    assert same_weights(model.get_weights(), before)      # lr_find itself changes nothing
    assert len(result.lrs) == len(result.losses) == len(result.smoothed) <= 100
    assert 1e-7 <= result.suggested_lr <= 10
    if result.diverged_at is not None:
        assert result.suggested_lr < result.lrs[result.diverged_at]
    lr = result.suggested_lr
    model.fit(X_train, y_train, lr=lr, schedule=WarmupCosine(lr, 3, RECIPE["epochs"]),
              **RECIPE)
    assert accuracy(model, X_test, y_test) >= 0.97


def test_lr_find_ramp_is_geometric_and_restores_optimizer_state(split):
    X_train, _, y_train, _ = split
    model = fastnet.MLP([64, 32, 10], dropout=0.1, seed=1)
    model.fit(X_train[:300], y_train[:300], epochs=2, verbose=0)   # BN statistics != init
    before = model.get_weights()
    opt = AdamW(lr=1e-3)
    opt.step([np.ones(3)], [np.full(3, 0.5)])               # state to preserve
    state = opt.state_dict()
    result = model.lr_find(X_train, y_train, start_lr=1e-5, end_lr=1.0, steps=40,
                           optimizer=opt, diverge_factor=1e9)
    assert len(result.lrs) == 40
    np.testing.assert_allclose(result.lrs, health.lr_range(1e-5, 1.0, 40), rtol=1e-12)
    np.testing.assert_allclose(np.diff(np.log(result.lrs)), math.log(1e5) / 39, rtol=1e-9)
    assert result.lrs[0] == 1e-5 and result.lrs[-1] == pytest.approx(1.0)
    assert same_weights(model.get_weights(), before)
    after = opt.state_dict()
    assert after["t"] == state["t"] and after["lr"] == state["lr"]
    for a, b in zip(after["buffers"][0], state["buffers"][0]):
        np.testing.assert_array_equal(a, b)


def test_lr_find_same_bits_at_one_and_two_threads(split):
    X_train, _, y_train, _ = split
    runs = []
    for n in (1, 2):
        with num_threads(n):
            runs.append(recipe_model(seed=3).lr_find(X_train, y_train, steps=30))
    assert runs[0].losses == runs[1].losses
    assert runs[0].suggested_lr == runs[1].suggested_lr


def test_lr_find_on_a_regression_model_restores_everything():
    rng = np.random.default_rng(4)
    X = rng.normal(size=(200, 5))
    t = X @ rng.normal(size=(5, 2))
    model = fastnet.MLP([5, 16, 2], dtype="float64", seed=0)
    model.fit(X, t, loss="mse", epochs=1, verbose=0)
    before = model.get_weights()
    result = model.lr_find(X, t, steps=30, batch_size=32)     # the model's loss: mse
    assert model.loss == "mse" and same_weights(model.get_weights(), before)
    assert all(math.isfinite(v) for v in result.losses[:5])
    assert result.lrs[0] <= result.suggested_lr <= result.lrs[-1]


def test_suggest_lr_finds_the_steepest_point_of_a_known_curve():
    lrs = health.lr_range(1e-6, 10.0, 120)
    x = np.log10(lrs)
    # a logistic fall centred at lr = 1e-3 (steepest there), then a blow-up past lr = 1
    losses = 2.5 - 2.0 / (1 + np.exp(-3 * (x + 3))) + np.where(x > 0, 50 * x ** 2, 0)
    causal = health.smooth_losses(list(losses))
    diverged = health.diverged_index(causal)
    assert diverged is not None and lrs[diverged] > 1.0
    suggested = health.suggest_lr(lrs, health.zero_lag_smooth(list(losses)), diverged)
    assert 10 ** -3.2 <= suggested <= 10 ** -2.8


def test_smoothing_formulas():
    losses = [3.0, 1.0, 2.0, 5.0]
    beta = 0.9
    avg, expected = 0.0, []
    for k, v in enumerate(losses):
        avg = beta * avg + (1 - beta) * v
        expected.append(avg / (1 - beta ** (k + 1)))
    assert health.smooth_losses(losses, beta) == pytest.approx(expected, rel=1e-15)
    assert health.smooth_losses([4.0] * 5) == pytest.approx([4.0] * 5)   # bias-corrected
    assert health.zero_lag_smooth([4.0] * 5) == pytest.approx([4.0] * 5)
    assert health.diverged_index([2.0, 1.0, 3.9, 4.1]) == 3
    assert health.diverged_index([2.0, float("nan")]) == 1
    assert health.diverged_index([2.0, 1.0, 1.5]) is None


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"start_lr": 0.0}, ValueError, "start_lr"),
    ({"start_lr": "1e-7"}, TypeError, "start_lr"),
    ({"end_lr": 1e-8}, ValueError, "end_lr"),
    ({"steps": 2}, ValueError, "steps"),
    ({"steps": 10.5}, TypeError, "steps"),
    ({"smoothing": 1.0}, ValueError, "smoothing"),
    ({"diverge_factor": 1.0}, ValueError, "diverge_factor"),
    ({"optimizer": "lbfgs"}, ValueError, "optimizer"),
    ({"class_weight": "uniform"}, ValueError, "class_weight"),
])
def test_lr_find_rejects_bad_arguments_before_training(split, kwargs, exc, name):
    X_train, _, y_train, _ = split
    model = fastnet.MLP([64, 16, 10], seed=0)
    before = model.get_weights()
    with pytest.raises(exc) as info:
        model.lr_find(X_train, y_train, **kwargs)
    assert names_argument(str(info.value), name), str(info.value)
    assert same_weights(model.get_weights(), before)


# ---------------------------------------------------------------------------
# gradient tracking and the health report
# ---------------------------------------------------------------------------

def test_tracking_records_per_layer_figures_and_changes_no_bit_of_training(split):
    X_train, _, y_train, _ = split
    runs = {}
    for flag in (False, True):
        model = recipe_model()
        runs[flag] = (model, model.fit(X_train, y_train, epochs=3, verbose=0,
                                       track_gradients=flag, validation_split=0.1))
    (m0, h0), (m1, h1) = runs[False], runs[True]
    assert same_weights(m0.get_weights(), m1.get_weights())
    assert h0.history["loss"] == h1.history["loss"]
    assert "layer_grad_norm" not in h0.history and h0.health is None
    norms = np.array(h1.history["layer_grad_norm"])
    dead = np.array(h1.history["dead_fraction"])
    assert norms.shape == (3, 3) and dead.shape == (3, 2)
    assert np.all(np.isfinite(norms)) and np.all(norms > 0)
    assert np.all((dead >= 0) & (dead <= 1))
    assert isinstance(h1.health, str) and "OK" in h1.health


def test_tracked_figures_match_a_numpy_reference():
    """One full batch per epoch, no dropout: epoch 0's figures are those of the
    initial weights, which MLP.gradients and a NumPy forward reproduce."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(96, 12))
    y = rng.integers(0, 4, 96)
    model = fastnet.MLP([12, 20, 16, 4], dtype="float64", seed=2)
    model.layers[0]["beta"][:5] = -50.0      # 5 of 20 units can never fire
    model.layers[1]["beta"][:3] = -50.0      # (|batch-normalised z| <= sqrt(96) < 50)
    _, grads = model.gradients(X, y)
    expected_norms = [np.linalg.norm(g["w"]) for g in grads]
    h = model.fit(X, y, epochs=1, batch_size=96, shuffle=False, optimizer="sgd", lr=0.1,
                  verbose=0, track_gradients=True)
    assert_close(h.history["layer_grad_norm"][0], expected_norms, rtol=1e-12)
    assert h.history["dead_fraction"][0] == [5 / 20, 3 / 16]


def test_dead_fraction_counts_units_zero_for_every_row_against_numpy():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    model = fastnet.MLP([6, 30, 3], batch_norm=False, seed=4)
    model.layers[0]["b"][...] = rng.normal(scale=2.0, size=30)   # a few units dead
    z = X.astype(np.float64) @ model.layers[0]["w"] + model.layers[0]["b"]
    expected = np.mean(np.all(np.maximum(z, 0) == 0, axis=0))
    h = model.fit(X, y, epochs=1, batch_size=40, shuffle=False, optimizer="sgd", lr=0.1,
                  verbose=0, track_gradients=1)
    assert 0 < expected < 1
    assert h.history["dead_fraction"][0] == [pytest.approx(expected, abs=1e-12)]


def test_health_flags_vanishing_gradients_of_a_deep_sigmoid_net_not_of_relu_he_bn(split):
    X_train, _, y_train, _ = split
    sizes = [64] + [64] * 19 + [10]                 # 20 Linear layers
    sick = fastnet.MLP(sizes, activation="sigmoid", init="xavier", batch_norm=False, seed=0)
    h = sick.fit(X_train, y_train, epochs=2, verbose=0, track_gradients=True)
    findings = health.health_findings(np.median(h.history["layer_grad_norm"], axis=0),
                                      activation="sigmoid")
    vanishing = {f["layer"] for f in findings if f["kind"] == "vanishing"}
    assert {0, 1, 2, 3, 4} <= vanishing                           # the early layers
    assert "hidden1: vanishing gradients" in h.health
    assert "He init" in h.health and "batch norm" in h.health     # the seed's remedies

    healthy = fastnet.MLP(sizes, activation="relu", init="he", batch_norm=True, seed=0)
    h = healthy.fit(X_train, y_train, epochs=2, verbose=0, track_gradients=True)
    assert health.health_findings(np.median(h.history["layer_grad_norm"], axis=0),
                                  np.median(h.history["dead_fraction"], axis=0)) == []
    assert "OK" in h.health and "hidden1:" not in h.health


def test_health_findings_rules():
    ok = health.health_findings([0.5, 0.2, 0.3], [0.1, 0.2])
    assert ok == []
    found = health.health_findings([1e-7, 2e3, float("nan"), 1.0], [0.9, 0.2, 0.6])
    kinds = {(f["name"], f["kind"]) for f in found}
    assert kinds == {("hidden1", "vanishing"), ("hidden2", "exploding"),
                     ("hidden3", "exploding"), ("hidden1", "dead"), ("hidden3", "dead")}
    assert all(f["remedy"] == health.REMEDIES[f["kind"]] for f in found)
    # dead units are a ReLU matter only
    assert health.health_findings([1.0, 1.0], [0.9], activation="tanh") == []
    text = health.health_report([1e-7, 1.0], [0.9])
    assert "hidden1: vanishing" in text and "90% of its ReLUs are dead" in text
    assert "clip" not in text and "lower the learning rate" in text


def test_health_report_is_printed_when_verbose(split, capsys):
    X_train, _, y_train, _ = split
    h = fastnet.MLP([64, 32, 10], seed=0).fit(X_train, y_train, epochs=1, verbose=2,
                                              track_gradients=True)
    assert h.health in capsys.readouterr().out


def test_tracking_is_bit_identical_at_one_and_two_threads_and_across_resume(split, tmp_path):
    X_train, _, y_train, _ = split
    runs = []
    for n in (1, 2):
        with num_threads(n):
            runs.append(recipe_model().fit(X_train, y_train, epochs=2, verbose=0,
                                           track_gradients=True).history)
    assert runs[0]["layer_grad_norm"] == runs[1]["layer_grad_norm"]
    assert runs[0]["dead_fraction"] == runs[1]["dead_fraction"]
    path = tmp_path / "ckpt.npz"
    recipe_model().fit(X_train, y_train, epochs=1, verbose=0, track_gradients=True,
                       checkpoint=path)
    resumed = recipe_model().fit(X_train, y_train, epochs=2, verbose=0, track_gradients=True,
                                 checkpoint=path, resume=path).history
    assert resumed["layer_grad_norm"] == runs[0]["layer_grad_norm"]


@pytest.mark.parametrize("value, exc", [("yes", TypeError), (0, ValueError), (2.5, TypeError)])
def test_track_gradients_is_validated(split, value, exc):
    X_train, _, y_train, _ = split
    with pytest.raises(exc, match="track_gradients"):
        fastnet.MLP([64, 8, 10]).fit(X_train, y_train, epochs=1, verbose=0,
                                     track_gradients=value)


# ---------------------------------------------------------------------------
# divergence
# ---------------------------------------------------------------------------

def sgd_1e4(model, X, y, **kwargs):
    return model.fit(X, y, epochs=20, optimizer=SGD(lr=1e4), verbose=0, **kwargs)


def test_sgd_lr_1e4_stop_marks_the_run_diverged(split):
    X_train, _, y_train, _ = split
    model = recipe_model()
    before = model.get_weights()
    with pytest.warns(RuntimeWarning, match="exploded"):
        h = sgd_1e4(model, X_train, y_train)
    assert h.diverged and h.rollbacks == []
    assert same_weights(model.get_weights(), before)       # nothing better was seen


def test_sgd_lr_1e4_rollback_backs_off_and_recovers(split):
    X_train, X_test, y_train, y_test = split
    model = recipe_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")                      # recovered: no warning
        h = sgd_1e4(model, X_train, y_train, on_divergence="rollback")
    assert not h.diverged and h.epochs == 20
    assert len(h.rollbacks) >= 1
    assert h.history["lr"][-1] < 1e4
    for before, after in zip(h.rollbacks, h.rollbacks[1:]):
        assert after["lr_scale"] == pytest.approx(before["lr_scale"] / 10)
    r = h.rollbacks[0]
    assert r["lr"] == 1e4 and r["new_lr"] == pytest.approx(1e3) and r["epoch"] == 0
    assert not math.isfinite(r["loss"]) or r["loss"] > 100 * math.log(10)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert accuracy(model, X_test, y_test) >= 0.5


def test_rollback_restores_weights_and_optimizer_state_exactly(split):
    """Divergence in epoch 0 rolls back to the initial state: with momentum
    buffers restored too, the run equals one started at the final lr."""
    X_train, _, y_train, _ = split
    X, y = X_train[:512], y_train[:512]
    policy = health.Rollback(factor=1000, max_rollbacks=2)
    a = recipe_model()
    ha = a.fit(X, y, epochs=3, optimizer=SGD(lr=1e5, momentum=0.9), verbose=0,
               on_divergence=policy)
    assert [r["new_lr"] for r in ha.rollbacks] == pytest.approx([1e2, 1e-1])
    b = recipe_model()
    hb = b.fit(X, y, epochs=3, optimizer=SGD(lr=1e-1, momentum=0.9), verbose=0)
    assert ha.history["lr"] == pytest.approx(hb.history["lr"], rel=1e-12)
    np.testing.assert_allclose(ha.history["loss"], hb.history["loss"], rtol=1e-6)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_allclose(wa, wb, rtol=1e-5, atol=1e-6)


def test_rollbacks_survive_checkpoint_and_resume(split, tmp_path):
    X_train, _, y_train, _ = split
    X, y = X_train[:600], y_train[:600]
    kw = dict(optimizer="sgd", lr=1e4, verbose=0, on_divergence="rollback")
    full = recipe_model()
    h_full = full.fit(X, y, epochs=4, **kw)
    path = tmp_path / "ckpt.npz"
    recipe_model().fit(X, y, epochs=2, checkpoint=path, **kw)
    resumed = recipe_model()
    h = resumed.fit(X, y, epochs=4, checkpoint=path, resume=path, **kw)
    assert h_full.rollbacks and h.rollbacks == h_full.rollbacks
    assert h.history["lr"] == h_full.history["lr"]
    assert same_weights(resumed.get_weights(), full.get_weights())


def test_epoch_stopped_before_its_first_sampled_step_is_still_measured(split):
    X_train, _, y_train, _ = split

    class StopAtOnce:
        def on_batch_end(self, batch, logs):
            self.model.stop_training = True

    h = fastnet.MLP([64, 16, 10], seed=0).fit(X_train, y_train, epochs=3, verbose=0,
                                             track_gradients=True, callbacks=[StopAtOnce()])
    assert h.epochs == 1 and np.all(np.array(h.history["layer_grad_norm"]) > 0)


def test_rollback_gives_up_after_max_rollbacks(split):
    X_train, _, y_train, _ = split
    with pytest.warns(RuntimeWarning):
        h = fastnet.MLP([64, 32, 10], seed=0).fit(
            X_train, y_train, epochs=5, optimizer=SGD(lr=1e6), verbose=0,
            on_divergence=health.Rollback(factor=2, max_rollbacks=2))
    assert h.diverged and len(h.rollbacks) == 2


def test_raise_policy_restores_best_weights_then_raises(split):
    X_train, _, y_train, _ = split
    model = recipe_model()
    before = model.get_weights()
    with pytest.raises(health.TrainingDiverged) as info:
        sgd_1e4(model, X_train, y_train, on_divergence="raise")
    assert info.value.history.diverged
    assert same_weights(model.get_weights(), before)


def test_rollback_is_bit_identical_at_one_and_two_threads(split):
    X_train, _, y_train, _ = split
    runs = []
    for n in (1, 2):
        with num_threads(n):
            model = recipe_model()
            h = model.fit(X_train[:600], y_train[:600], epochs=4, optimizer=SGD(lr=1e4),
                          verbose=0, on_divergence="rollback")
            runs.append((h.rollbacks, h.history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0] and runs[0][1] == runs[1][1]
    assert same_weights(runs[0][2], runs[1][2])


def test_divergence_guard_thresholds():
    guard = health.DivergenceGuard(math.log(10))
    assert not guard.diverged(2.5)                     # the starting loss
    assert guard.limit == pytest.approx(250.0)
    assert not guard.diverged(240.0) and guard.diverged(251.0)
    assert guard.diverged(float("inf")) and guard.diverged(float("nan"))
    assert guard.learned(2.0) and not guard.learned(2.4)   # below ln(10) and the start
    # a model that starts almost perfect is judged against the constant predictor
    fine = health.DivergenceGuard(math.log(10))
    assert not fine.diverged(1e-4) and not fine.diverged(5.0)
    assert fine.limit == pytest.approx(100 * math.log(10))
    assert health.baseline_loss(10, None, None) == pytest.approx(math.log(10))
    t = np.array([[1.0], [3.0]])
    assert health.baseline_loss(1, t, None) == pytest.approx(1.0)
    assert health.baseline_loss(1, t, np.array([3.0, 1.0])) == pytest.approx(0.75)


@pytest.mark.parametrize("value, exc, name", [
    ("retry", ValueError, "on_divergence"),
    (None, ValueError, "on_divergence"),
])
def test_on_divergence_is_validated(split, value, exc, name):
    X_train, _, y_train, _ = split
    with pytest.raises(exc) as info:
        fastnet.MLP([64, 8, 10]).fit(X_train, y_train, epochs=1, verbose=0,
                                     on_divergence=value)
    assert names_argument(str(info.value), name)


@pytest.mark.parametrize("kwargs, exc, name", [
    ({"factor": 1.0}, ValueError, "factor"),
    ({"factor": "10"}, TypeError, "factor"),
    ({"max_rollbacks": 0}, ValueError, "max_rollbacks"),
    ({"max_rollbacks": 1.5}, TypeError, "max_rollbacks"),
])
def test_rollback_arguments_are_validated(kwargs, exc, name):
    with pytest.raises(exc) as info:
        health.Rollback(**kwargs)
    assert names_argument(str(info.value), name)


# ---------------------------------------------------------------------------
# class weights
# ---------------------------------------------------------------------------

def test_balanced_class_weights_are_sklearns():
    from sklearn.utils.class_weight import compute_class_weight
    y = np.array([0] * 3 + [2] * 10 + [3] * 7)
    ours = health.class_weights(y, "balanced", 5)
    ref = compute_class_weight("balanced", classes=np.array([0, 2, 3]), y=y)
    np.testing.assert_allclose(ours[[0, 2, 3]], ref, rtol=1e-15)
    assert ours[1] == ours[4] == 1.0                      # absent classes weigh no row
    np.testing.assert_array_equal(health.class_weights(y, {2: 0.5, 4: 3}, 5),
                                  [1, 1, 0.5, 1, 3])


def weighted_problem(dtype=np.float64):
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 5)).astype(dtype)
    y = rng.integers(0, 3, 30)
    sw = rng.uniform(0.2, 2.0, 30)
    cw = {0: 2.5, 1: 0.5}                                  # class 2 keeps 1
    return X, y, sw, cw


def test_weighted_loss_gradient_against_numpy_and_torch():
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    X, y, sw, cw = weighted_problem()
    model = fastnet.MLP([5, 7, 3], batch_norm=False, dtype="float64", seed=3)
    W1, b1, W2, b2 = (model.layers[0]["w"], model.layers[0]["b"], model.layers[1]["w"],
                      model.layers[1]["b"])
    cw_vec = np.array([2.5, 0.5, 1.0])
    cases = {"class": (None, cw_vec[y]), "both": (sw, sw * cw_vec[y])}
    for name, (sample_weight, w) in cases.items():
        loss, grads = model.gradients(X, y, sample_weight=sample_weight, class_weight=cw)
        # NumPy reference of the loss and the output layer's gradients
        h = np.maximum(X @ W1 + b1, 0)
        z = h @ W2 + b2
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        rows = -np.log(p[np.arange(30), y])
        assert loss == pytest.approx(np.sum(w * rows) / np.sum(w), rel=1e-12), name
        dz = (p - np.eye(3)[y]) * (w / w.sum())[:, None]
        assert_close(grads[1]["w"], h.T @ dz, what=f"{name} dW2")
        assert_close(grads[1]["b"], dz.sum(axis=0), what=f"{name} db2")
        # PyTorch autograd through the whole net
        tW1, tb1, tW2, tb2 = (torch.tensor(np.array(a), requires_grad=True)
                              for a in (W1, b1, W2, b2))
        logits = torch.relu(torch.tensor(X) @ tW1 + tb1) @ tW2 + tb2
        target = torch.tensor(y)
        if sample_weight is None:      # class weights alone: torch's own weight= semantics
            tloss = F.cross_entropy(logits, target, weight=torch.tensor(cw_vec))
        else:
            tw = torch.tensor(w)
            tloss = (F.cross_entropy(logits, target, reduction="none") * tw).sum() / tw.sum()
        tloss.backward()
        assert loss == pytest.approx(tloss.item(), rel=1e-12), name
        for got, ref in ((grads[0]["w"], tW1), (grads[0]["b"], tb1), (grads[1]["w"], tW2)):
            assert_close(got, ref.grad.numpy(), what=name)


def test_class_weight_is_sample_weight_times_per_class_weight():
    X, y, sw, cw = weighted_problem(np.float32)
    cw_vec = np.array([2.5, 0.5, 1.0])
    kw = dict(epochs=3, batch_size=8, verbose=0, optimizer="adam", lr=1e-2)
    a = fastnet.MLP([5, 7, 3], seed=1)
    a.fit(X, y, class_weight=cw, sample_weight=sw, **kw)
    b = fastnet.MLP([5, 7, 3], seed=1)
    b.fit(X, y, sample_weight=(sw * cw_vec[y]).astype(np.float32), **kw)
    assert same_weights(a.get_weights(), b.get_weights())
    c = fastnet.MLP([5, 7, 3], seed=1)
    c.fit(X, y, class_weight="balanced", **kw)
    d = fastnet.MLP([5, 7, 3], seed=1)
    d.fit(X, y, sample_weight=health.class_weights(y, "balanced", 3)[y].astype(np.float32),
          **kw)
    assert same_weights(c.get_weights(), d.get_weights())


def test_balanced_class_weight_raises_recall_of_a_rare_class(split):
    X_train, X_test, y_train, y_test = split
    zeros = np.flatnonzero(y_train == 0)
    keep = np.sort(np.concatenate([np.flatnonzero(y_train != 0), zeros[:len(zeros) // 10]]))
    X, y = X_train[keep], y_train[keep]
    assert np.bincount(y)[0] * 5 < np.bincount(y)[1:].min()
    recall = {}
    for cw in (None, "balanced"):
        model = recipe_model()
        model.fit(X, y, epochs=10, optimizer="adamw", lr=3e-3, verbose=0, class_weight=cw)
        recall[cw] = float(np.mean(model.predict(X_test[y_test == 0]) == 0))
    assert recall["balanced"] > recall[None]


@pytest.mark.parametrize("kwargs, exc", [
    ({"class_weight": "auto"}, ValueError),
    ({"class_weight": [1.0, 2.0]}, TypeError),
    ({"class_weight": {7: 1.0}}, ValueError),
    ({"class_weight": {0: -1.0}}, ValueError),
    ({"class_weight": {0: float("nan")}}, ValueError),
    ({"class_weight": {0: 0.0, 1: 0.0, 2: 0.0}}, ValueError),
    ({"class_weight": {0: 0.0}, "sample_weight": np.r_[np.zeros(29), 1.0]}, None),
])
def test_class_weight_is_validated_before_training(kwargs, exc):
    X, y, _, _ = weighted_problem(np.float32)
    y = y.copy()
    y[-1] = 0
    model = fastnet.MLP([5, 4, 3], seed=0)
    before = model.get_weights()
    if exc is None:        # the only positive row is class 0, weighted 0: nothing left
        exc = ValueError
    with pytest.raises(exc) as info:
        model.fit(X, y, epochs=1, verbose=0, **kwargs)
    assert names_argument(str(info.value), "class_weight"), str(info.value)
    assert same_weights(model.get_weights(), before)


def test_class_weight_needs_class_labels():
    X = np.random.default_rng(0).normal(size=(10, 3))
    with pytest.raises(ValueError, match="class_weight"):
        fastnet.MLP([3, 4, 1]).fit(X, X[:, 0], loss="mse", class_weight="balanced",
                                   epochs=1, verbose=0)


# ---------------------------------------------------------------------------
# schedules inside fit
# ---------------------------------------------------------------------------

def test_warmup_then_plateau_control_inside_fit(split):
    X_train, _, y_train, _ = split
    kwargs = dict(factor=0.5, patience=1, warmup_epochs=3, monitor="loss", min_delta=0.05)
    sched = ReduceLROnPlateau(0.01, **kwargs)
    h = fastnet.MLP([64, 32, 10], seed=0).fit(X_train, y_train, epochs=14, optimizer="adam",
                                             schedule=sched, verbose=0)
    lrs = h.history["lr"]
    assert lrs[:4] == pytest.approx([0.0, 0.01 / 3, 0.02 / 3, 0.01])   # warmup first
    replay = ReduceLROnPlateau(0.01, **kwargs)
    expected = [replay(0)] + [replay.step(v) for v in h.history["loss"][:-1]]
    assert lrs == pytest.approx(expected, rel=1e-12)
    assert min(lrs[3:]) < 0.01                     # then the plateau rule cut the lr
    assert sched.epochs_seen == 14


def test_one_cycle_per_step_holds_its_final_lr_past_the_planned_steps(split):
    X_train, _, y_train, _ = split
    sched = OneCycle(0.05, total_steps=30)        # digits: 22 steps per epoch at batch 64
    h = fastnet.MLP([64, 32, 10], seed=0).fit(X_train, y_train, epochs=4, schedule=sched,
                                             optimizer="sgd", verbose=0)
    assert h.epochs == 4 and not h.diverged
    assert h.history["lr"][1:] == [sched.final_lr] * 3
