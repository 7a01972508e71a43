"""fastnet.diagnostics: the seed article's experiments reproduce, and the model
diagnostics (gradient flow, activation statistics) agree with the model."""
import math

import numpy as np
import pytest
from _seed_tables import SEED_SCHEDULE_TABLE

import fastnet
from fastnet import _network
from fastnet import diagnostics as dg

# The seed's printed tables (run verbatim with NumPy's legacy generator).
SEED_BN_TABLE = """\
     0      0.5731     0.8382   0.3998  0.5849
     1      0.5567     0.8500   0.3985  0.5848
     2      0.5950     0.9025   0.3974  0.5775
     3      0.5846     0.8600   0.3950  0.5855
     4      0.5860     0.8833   0.3929  0.5825
     5      0.5093     0.8011   0.3951  0.5866
     6      0.5645     0.8891   0.3946  0.5868
     7      0.5393     0.8222   0.3918  0.5894
     8      0.5911     0.8976   0.3924  0.5820
     9      0.5908     0.9260   0.3892  0.5786
    10      0.5316     0.9263   0.3916  0.5836
    11      0.7066     1.0842   0.3940  0.5884
    12      0.7542     1.1596   0.3938  0.5828
    13      1.0894     1.6267   0.3926  0.5863
    14      0.8839     1.4145   0.3924  0.5823"""


# ---- vanishing gradients -------------------------------------------------------------

@pytest.mark.parametrize("seed", [0, 1, 42, None])
def test_sigmoid_gradient_shrinks_at_least_like_quarter_power(seed):
    res = dg.sigmoid_vanishing(10, seed=seed)
    layers = res["layers"]
    assert [r["layer"] for r in layers] == list(range(10))
    for r in layers:
        n = r["layer"] + 1
        assert 0 < r["derivative"] <= 0.25
        assert r["worst_case"] == 0.25 ** n
        assert r["gradient"] <= 0.25 ** n
    grads = [r["gradient"] for r in layers]
    assert all(b < a for a, b in zip(grads, grads[1:]))
    assert res["final_gradient"] == grads[-1]
    assert f"{res['worst_case_50']:.2e}" == "7.89e-31"
    assert f"{res['weakening_50']:.2e}" == "1.27e+30"


def test_sigmoid_is_the_seed_draw():
    # the seed's loop: z = np.random.randn() per layer, gradient *= s(z)(1 - s(z))
    rs = np.random.RandomState(7)
    g = 1.0
    for r in dg.sigmoid_vanishing(5, seed=7)["layers"]:
        z = rs.randn()
        s = 1 / (1 + np.exp(-z))
        g *= s * (1 - s)
        assert r["z"] == z
        assert r["gradient"] == pytest.approx(abs(g), rel=1e-15)


def test_sigmoid_vanishing_does_not_touch_global_state():
    np.random.seed(3)
    expected = np.random.rand()
    np.random.seed(3)
    dg.sigmoid_vanishing(10, seed=1)
    assert np.random.rand() == expected


# ---- initialisation --------------------------------------------------------------------

def test_init_he_stays_in_scale_small_collapses_large_explodes():
    he = dg.init_experiment(20, 64, "he")
    small = dg.init_experiment(20, 64, "small")
    large = dg.init_experiment(20, 64, "large")
    assert len(he) == len(small) == len(large) == 20
    he_std = np.array([r["std"] for r in he])
    # He: every layer within one order of magnitude of the first
    assert np.all(he_std > 0.1) and np.all(he_std < 10)
    assert he_std.max() / he_std.min() < 10
    # small: collapses (the seed: std ~4e-26 after 20 layers), monotonically
    small_std = [r["std"] for r in small]
    assert small_std[-1] < 1e-20
    assert all(b < a for a, b in zip(small_std, small_std[1:]))
    # large: explodes (the seed: ~4e+14)
    large_std = [r["std"] for r in large]
    assert large_std[-1] > 1e12
    assert all(b > a for a, b in zip(large_std, large_std[1:]))


def test_init_strategies_are_rescalings_of_each_other():
    # same weights draws, bias-free ReLU is positively homogeneous
    he = dg.init_experiment(20, 64, "he")
    small = dg.init_experiment(20, 64, "small")
    factor = (0.01 / math.sqrt(2 / 64)) ** 20
    assert small[-1]["std"] == pytest.approx(he[-1]["std"] * factor, rel=1e-9)
    assert small[-1]["dead"] == he[-1]["dead"]


def test_init_experiment_is_the_seeds_forward_activations():
    # the seed's function, verbatim, with X from RandomState(seed + 1)
    def forward_activations(X, n_layers, init_strategy):
        np.random.seed(42)
        a = X
        for _ in range(n_layers):
            n_in = a.shape[1]
            if init_strategy == "small":
                W = np.random.randn(n_in, 64) * 0.01
            elif init_strategy == "large":
                W = np.random.randn(n_in, 64) * 1.0
            else:
                W = np.random.randn(n_in, 64) * np.sqrt(2.0 / n_in)
            a = np.maximum(0, a @ W)
        return a

    X = np.random.RandomState(43).randn(100, 64)
    state = np.random.get_state()
    try:
        for strategy in ("small", "large", "he"):
            out = forward_activations(X, 20, strategy)
            last = dg.init_experiment(20, 64, strategy, seed=42)[-1]
            assert last["mean"] == pytest.approx(out.mean(), rel=1e-12)
            assert last["std"] == pytest.approx(out.std(), rel=1e-12)
            assert last["dead"] == (out == 0).all(axis=0).sum()
    finally:
        np.random.set_state(state)


def test_init_experiment_other_inits_and_activations():
    for init in ("xavier", "lecun"):
        rows = dg.init_experiment(10, 32, init, activation="tanh", n_samples=50)
        assert len(rows) == 10
        assert all(0 < r["std"] < 1 and "saturated_fraction" in r for r in rows)
    rows = dg.init_experiment(5, 16, "he", activation="sigmoid")
    assert all(0 < r["mean"] < 1 for r in rows)
    # deterministic
    assert dg.init_experiment(5, 16, "he", seed=3) == dg.init_experiment(5, 16, "he", seed=3)
    with pytest.raises(ValueError, match="init"):
        dg.init_experiment(init="bogus")
    with pytest.raises(ValueError, match="activation"):
        dg.init_experiment(activation="gelu")
    with pytest.raises(ValueError):
        dg.init_experiment(n_layers=0)


def test_init_cheat_sheet_numbers():
    rows = dg.init_cheat_sheet(256)
    assert [f"{r['std']:.4f}" for r in rows] == ["0.0884", "0.0625", "0.0625"]
    assert [r["fastnet"] for r in rows] == ["he_normal", "lecun_normal", "lecun_normal"]


# ---- batch normalisation -----------------------------------------------------------------

def test_batch_norm_demo_matches_seed():
    res = dg.batch_norm_demo()
    assert f"{res['before_mean']:.2f}" == "3.20" and f"{res['before_std']:.2f}" == "4.95"
    assert f"{res['after_mean']:.4f}" in ("0.0000", "-0.0000")
    assert f"{res['after_std']:.4f}" == "1.0000"


def test_batch_norm_experiment_is_the_seeds_table():
    rows = dg.batch_norm_experiment(15)
    got = "\n".join(f"{r['layer']:>6d} {r['no_bn_mean']:>11.4f} {r['no_bn_std']:>10.4f} "
                    f"{r['bn_mean']:>8.4f} {r['bn_std']:>7.4f}" for r in rows)
    assert got == SEED_BN_TABLE


def test_batch_norm_keeps_relu_of_standard_normal_statistics():
    rows = dg.batch_norm_experiment(15)
    relu_mean = 1 / math.sqrt(2 * math.pi)              # 0.399
    relu_std = math.sqrt(0.5 - 1 / (2 * math.pi))       # 0.584
    for r in rows:
        assert abs(r["bn_mean"] - relu_mean) < 0.02
        assert abs(r["bn_std"] - relu_std) < 0.02
        assert abs(r["bn_pre_mean"]) < 1e-12
        assert r["bn_pre_std"] == pytest.approx(1.0, abs=1e-4)
    no_bn_mean = [r["no_bn_mean"] for r in rows]
    no_bn_std = [r["no_bn_std"] for r in rows]
    # without BN the statistics drift far more than with it
    assert max(no_bn_mean) - min(no_bn_mean) > 0.3
    assert max(no_bn_std) - min(no_bn_std) > 0.5
    bn_std = [r["bn_std"] for r in rows]
    assert max(bn_std) - min(bn_std) < 0.02


# ---- dropout ------------------------------------------------------------------------------

def test_dropout_demo():
    res = dg.dropout_demo()
    assert res["original"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    assert res["original_mean"] == 4.5
    assert len(res["samples"]) == 4
    for s in res["samples"]:
        v = np.array(s["values"])
        kept = v != 0
        assert s["active"] == kept.sum()
        np.testing.assert_array_equal(v[kept], 2 * np.arange(1.0, 9.0)[kept])
        assert s["mean"] == pytest.approx(v.mean())
    assert dg.dropout_demo() == res                                     # seeded
    assert [s["values"] for s in res["samples"]] != \
        [s["values"] for s in dg.dropout_demo(seed=7)["samples"]]
    assert len(dg.dropout_rate_guide()) == 4


# ---- schedules -------------------------------------------------------------------------------

def test_schedule_table_equals_the_seeds_printed_table():
    rows = dg.schedule_table()
    got = "\n".join(f"{r['epoch']:>6d} {r['step']:>8.6f} {r['cosine']:>8.6f} "
                    f"{r['warmup_cosine']:>11.6f}" for r in rows)
    assert got.splitlines() == SEED_SCHEDULE_TABLE[2:]   # without the header


def test_schedule_table_uses_fastnet_schedules():
    from fastnet import schedules
    for r in dg.schedule_table(epochs=range(0, 100, 7)):
        e = r["epoch"]
        assert r["step"] == schedules.step_decay(e, 0.001)
        assert r["cosine"] == schedules.cosine_schedule(e, 100, 0.001)
        assert r["warmup_cosine"] == schedules.warmup_cosine(e, 10, 100, 0.001)


# ---- early stopping ----------------------------------------------------------------------------

@pytest.mark.parametrize("patience", [5, 10, 20])
def test_early_stopping_stops_at_best_plus_patience_with_best_weights(patience):
    res = dg.early_stopping_experiment(patience)
    assert res["best_epoch"] == int(np.argmin(res["val_losses"])) == 82
    assert res["trigger_epoch"] == 82 + patience
    assert res["stopped_epoch"] == res["best_epoch"] + patience
    assert res["stopper_best_epoch"] == res["best_epoch"]
    assert res["stopper_best_loss"] == res["best_val_loss"]
    # the weights kept are the best epoch's (epoch, train loss), not the last ones
    assert res["restored_weights"] == [[82.0, res["train_losses"][82]]]
    assert res["epochs_saved"] == 200 - 82 - patience


def test_early_stopping_seed_numbers():
    res = dg.early_stopping_experiment()
    assert f"{res['final_train_loss']:.4f}" == "0.0511"
    assert f"{res['final_val_loss']:.4f}" == "0.5502"
    assert f"{res['best_val_loss']:.4f}" == "0.1045"
    assert f"{res['train_loss_at_best']:.4f}" == "0.1020"
    assert res["trigger_epoch"] == 92 and res["epochs_saved"] == 108


def test_recipe_simulation_seed_numbers():
    res = dg.recipe_simulation()
    assert [(r["epoch"], f"{r['lr']:.6f}", f"{r['train']:.4f}", f"{r['val']:.4f}")
            for r in res["log"]] == [(0, "0.000000", "0.6200", "0.6800"),
                                     (40, "0.000940", "0.1411", "0.1612"),
                                     (80, "0.000701", "0.0445", "0.0565")]
    assert res["stopped_epoch"] == 115
    assert f"{res['best_loss']:.4f}" == "0.0419"
    assert res["best_epoch"] == 100 == int(np.argmin(res["val_losses"]))
    assert res["epochs_saved"] == 85
    assert len(res["lrs"]) == 116
    assert set(dg.modern_recipe()) == {"1. ARCHITECTURE", "2. REGULARIZATION",
                                       "3. OPTIMIZATION", "4. MONITORING"}


# ---- model diagnostics -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    from fastnet.datasets import load_digits
    X, y = load_digits()
    X, y = X[:600], y[:600]
    model = fastnet.MLP([64, 32, 16, 10], dropout=0.1, seed=0)
    with fastnet.threads(1):
        model.fit(X, y, epochs=5, batch_size=64, lr=3e-3, verbose=0)
    return model, X, y


def test_gradient_flow_matches_model_gradients(trained):
    model, X, y = trained
    rows = dg.gradient_flow(model, X, y)
    loss, grads = model.gradients(X, y, seed=0)
    assert [r["name"] for r in rows] == ["hidden1", "hidden2", "output"]
    assert [r["shape"] for r in rows] == [(64, 32), (32, 16), (16, 10)]
    for r, g, layer in zip(rows, grads, model.layers):
        dw = g["w"].astype(np.float64)
        assert r["grad_norm"] == pytest.approx(np.linalg.norm(dw), rel=1e-6)
        assert r["mean_abs_grad"] == pytest.approx(np.abs(dw).mean(), rel=1e-6)
        assert r["weight_norm"] == pytest.approx(np.linalg.norm(layer["w"]), rel=1e-6)
        assert r["grad_norm"] > 0 and math.isfinite(r["grad_to_weight"])
        assert r["loss"] == pytest.approx(loss)
    weights = model.get_weights()
    dg.gradient_flow(model, X, y)
    for a, b in zip(weights, model.get_weights()):       # no update
        np.testing.assert_array_equal(a, b)


def test_activation_stats_inference_forward_matches_the_model(trained):
    model, X, _ = trained
    # the NumPy recomputation feeds the output layer exactly like the native forward
    hidden = dg.hidden_activations(model, X)
    last = model.layers[-1]
    logits = hidden[-1][1] @ last["w"].astype(np.float64) + last["b"]
    native = model._outputs(X)
    np.testing.assert_allclose(logits, native, rtol=1e-4, atol=1e-4)
    rows = dg.activation_stats(model, X)
    assert [r["width"] for r in rows] == [32, 16]
    for r, (_, a) in zip(rows, hidden):
        assert r["mean"] == pytest.approx(a.mean())
        assert r["std"] == pytest.approx(a.std())
        assert r["dead"] == int((a == 0).all(axis=0).sum())
        assert r["dead_fraction"] == r["dead"] / r["width"]


def test_activation_stats_counts_dead_relus():
    model = fastnet.MLP([4, 6, 3], batch_norm=False, seed=0)
    model.layers[0]["b"][:2] = -100.0        # two units can never fire
    X = np.random.default_rng(0).uniform(-1, 1, size=(50, 4))
    row = dg.activation_stats(model, X)[0]
    assert row["dead"] >= 2
    assert row["dead_fraction"] == row["dead"] / 6


def test_model_diagnostics_check_input(trained):
    model, X, _ = trained
    with pytest.raises(ValueError, match="shape"):
        dg.activation_stats(model, X[:, :10])
    with pytest.raises(ValueError, match="NaN"):
        bad = X.copy()
        bad[0, 0] = np.nan
        dg.activation_stats(model, bad)


@pytest.mark.parametrize("activation", sorted(_network.ACTIVATIONS))
def test_every_trained_activation_has_one_table_entry_and_numpy_form(activation):
    """The activation table serves every native activation: the NumPy forward of the
    diagnostics reproduces the model's outputs with it, and saturation is reported
    where the entry says the activation saturates."""
    from fastnet import _activations
    assert activation in _activations.trainable()
    entry = _activations.ACTIVATIONS[activation]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((40, 5))
    model = fastnet.MLP([5, 7, 3], activation=activation, dtype="float64", seed=2)
    hidden = dg.hidden_activations(model, X)
    last = model.layers[-1]
    logits = hidden[-1][1] @ last["w"] + last["b"]
    np.testing.assert_allclose(logits, model._outputs(X), rtol=1e-10, atol=1e-12)
    row = dg.activation_stats(model, X)[0]
    assert ("saturated_fraction" in row) == (entry.saturated is not None)


def test_the_articles_experiments_live_in_their_module_and_keep_their_diagnostics_names():
    from fastnet import experiments
    for name in experiments.__all__:
        if name not in ("EXPERIMENTS", "print_report"):
            assert getattr(dg, name) is getattr(experiments, name), name
    assert callable(dg.gradient_flow) and callable(dg.activation_stats)
