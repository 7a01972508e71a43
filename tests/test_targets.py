"""The losses against targets beyond the squared error: the Huber loss (regression with
outliers) and binary cross-entropy of a sigmoid per output (multilabel), in
fastnet.functional, MLP.fit(loss=...) and the estimators.

Each is checked against PyTorch (HuberLoss, BCEWithLogitsLoss) in float64, the whole
network's gradients against autograd, fits for the same bits at 1 and 2 threads, and
the estimators for their multilabel and Huber behaviour.
"""
import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads
from test_training_vs_torch import _torch_grads, make_model, torch_twin

import fastnet
import fastnet.functional as F

torch.set_num_threads(1)


def _torch_loss(loss, out, target, delta=1.0, weight=None):
    if loss == "huber":
        per = torch.nn.functional.huber_loss(out, target, delta=delta, reduction="none")
    else:
        per = torch.nn.functional.binary_cross_entropy_with_logits(out, target,
                                                                   reduction="none")
    per_row = per.mean(dim=1)
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum()


def _data(loss, n, d, rng, scale=3.0):
    pred = rng.standard_normal((n, d)) * scale
    if loss == "huber":
        return pred, rng.standard_normal((n, d)) * scale
    return pred, (rng.random((n, d)) < 0.4).astype(np.float64)


@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (37, 11), (600, 9)])
@pytest.mark.parametrize("loss, delta", [("huber", 1.0), ("huber", 0.3), ("huber", 4.0),
                                         ("bce", None)])
def test_functional_losses_match_torch_f64(loss, delta, shape, weighted):
    rng = np.random.default_rng(shape[0] * 7 + shape[1])
    pred, target = _data(loss, *shape, rng)
    w = rng.uniform(0.2, 2.0, shape[0]) if weighted else None
    if loss == "huber":
        value, grad = F.huber_loss(pred, target, delta=delta, sample_weight=w)
    else:
        value, grad = F.binary_cross_entropy_with_logits(pred, target, sample_weight=w)
    pt = torch.tensor(pred, requires_grad=True)
    ref = _torch_loss(loss, pt, torch.tensor(target), delta or 1.0,
                      None if w is None else torch.tensor(w))
    ref.backward()
    assert_close(value, ref.item(), dtype=np.float64, what="loss")
    assert_close(grad, pt.grad.numpy(), dtype=np.float64, what="gradient")


def test_bce_is_stable_for_large_logits_and_takes_soft_targets():
    logits = np.array([[-800.0, -30.0, 0.0, 30.0, 800.0]])
    target = np.array([[0.0, 1.0, 0.5, 0.25, 1.0]])
    value, grad = F.binary_cross_entropy_with_logits(logits, target)
    pt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.binary_cross_entropy_with_logits(pt, torch.tensor(target))
    ref.backward()
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    assert_close(value, ref.item(), dtype=np.float64, what="loss")
    assert_close(grad, pt.grad.numpy(), dtype=np.float64, what="gradient")


def test_float32_losses_close_to_float64(rng):
    for loss in ("huber", "bce"):
        pred, target = _data(loss, 64, 5, rng)
        fn = F.huber_loss if loss == "huber" else F.binary_cross_entropy_with_logits
        v64, g64 = fn(pred, target)
        v32, g32 = fn(pred.astype(np.float32), target.astype(np.float32))
        assert g32.dtype == np.float32
        assert_close(v32, v64, dtype=np.float32, what=f"{loss} loss")
        assert_close(g32, g64, dtype=np.float32, what=f"{loss} gradient")


def test_loss_argument_errors():
    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        F.binary_cross_entropy_with_logits(x, np.full((3, 2), 1.5))
    with pytest.raises(ValueError, match="delta"):
        F.huber_loss(x, x, delta=0.0)
    with pytest.raises(ValueError, match="shape"):
        F.huber_loss(x, np.zeros((3, 3)))
    with pytest.raises(ValueError, match="huber_delta"):
        fastnet.MLP([2, 3], huber_delta=-1)
    model = fastnet.MLP([2, 4, 2])
    with pytest.raises(ValueError, match="bce"):
        model.fit(np.zeros((4, 2)), np.full((4, 2), 2.0), loss="bce", epochs=1, verbose=0)
    with pytest.raises(ValueError, match="loss"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 2)), loss="poisson", epochs=1, verbose=0)


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("loss", ["huber", "bce"])
def test_network_gradients_match_autograd_f64(loss, batch_norm):
    sizes = [6, 9, 7, 4]
    rng = np.random.default_rng(5)
    X = rng.standard_normal((24, sizes[0]))
    _, y = _data(loss, 24, sizes[-1], rng)
    model = make_model(sizes, "relu", batch_norm, np.float64, seed=3)
    model.huber_delta = 0.5
    net = torch_twin(model).train()
    value = _torch_loss(loss, net(torch.from_numpy(X)), torch.from_numpy(y), 0.5)
    value.backward()
    ours, grads = model.gradients(X, y, loss=loss)
    assert_close(ours, value.item(), dtype=np.float64, what="loss")
    for l, (g, r) in enumerate(zip(grads, _torch_grads(net))):
        for key in r:
            assert_close(g[key], r[key], dtype=np.float64, what=f"layer {l} d{key}")


def _multilabel(n=300, d=12, labels=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    Y = np.stack([X[:, 0] > 0, X[:, 1] + X[:, 2] > 0.5, X[:, 3] * X[:, 4] > 0], axis=1)
    return X, Y[:, :labels].astype(np.int64)


@pytest.mark.parametrize("loss", ["huber", "bce"])
def test_fit_bit_identical_at_1_and_2_threads(loss):
    X, Y = _multilabel()
    y = Y.astype(np.float32) if loss == "bce" else (X[:, :2] * 3 + X[:, 2:4] ** 3)

    def fit(threads):
        with num_threads(threads):
            model = fastnet.MLP([12, 64, 48, y.shape[1]], dropout=0.2, seed=2)
            hist = model.fit(X, y, loss=loss, epochs=3, batch_size=40, verbose=0)
            return model.params.copy(), hist.history, model.predict(X)

    (p1, h1, q1), (p2, h2, q2) = fit(1), fit(2)
    assert p1.tobytes() == p2.tobytes() and h1 == h2 and q1.tobytes() == q2.tobytes()
    assert h1["loss"][-1] < h1["loss"][0]
    if loss == "bce":       # subset accuracy, logged like cross-entropy's
        assert 0 <= h1["accuracy"][-1] <= 1 and h1["accuracy"][-1] > h1["accuracy"][0]


def test_bce_model_predicts_labels_and_probabilities(tmp_path):
    X, Y = _multilabel(400)
    model = fastnet.MLP([12, 64, 3], seed=0)
    model.fit(X, Y, loss="bce", epochs=30, batch_size=32, verbose=0)
    proba = model.predict_proba(X)
    out = model._outputs(X).astype(np.float64)
    assert_close(proba, 1 / (1 + np.exp(-out)), dtype=np.float32, what="sigmoid")
    pred = model.predict(X)
    assert pred.shape == Y.shape and set(np.unique(pred)) <= {0, 1}
    assert np.array_equal(pred, (proba > 0.5).astype(pred.dtype))
    assert np.mean(np.all(pred == Y, axis=1)) > 0.7
    scored = model.evaluate(X, Y)
    assert scored["accuracy"] == pytest.approx(np.mean(np.all(pred == Y, axis=1)))
    model.save(tmp_path / "m.npz")
    again = fastnet.load(tmp_path / "m.npz")
    assert again.loss == "bce" and np.array_equal(again.predict(X), pred)


def test_huber_is_robust_to_outliers_and_its_delta_is_saved(tmp_path):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((400, 3)).astype(np.float32)
    y = X @ np.array([1.0, -2.0, 0.5], dtype=np.float32)
    dirty = y.copy()
    dirty[::10] += 40.0                     # 10 % gross outliers
    errors = {}
    for loss in ("mse", "huber"):
        model = fastnet.MLP([3, 32, 1], batch_norm=False, seed=0, huber_delta=0.5)
        model.fit(X, dirty, loss=loss, epochs=60, batch_size=32, lr=3e-3, verbose=0)
        errors[loss] = float(np.median(np.abs(model.predict(X) - y)))
        if loss == "huber":
            model.save(tmp_path / "h.npz")
            again = fastnet.load(tmp_path / "h.npz")
            assert again.huber_delta == 0.5 and again.loss == "huber"
            assert again.predict(X).tobytes() == model.predict(X).tobytes()
    assert errors["huber"] < 0.5 * errors["mse"], errors


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_classifier_multilabel_like_scikit_learn():
    from sklearn.neural_network import MLPClassifier as SkMLP

    from fastnet.sklearn import MLPClassifier

    X, Y = _multilabel(500)
    # mini-batches at the large-data rate: the check is of the multilabel mechanics (the
    # small-data defaults, full batches at lr 1e-3, fit these 500 rows more slowly)
    clf = MLPClassifier((32,), dropout=0.0, max_iter=200, batch_size=64, learning_rate_init=4e-3,
                        random_state=0).fit(X, Y)
    assert clf.model_.loss == "bce" and list(clf.classes_) == [0, 1, 2]
    pred, proba = clf.predict(X), clf.predict_proba(X)
    assert pred.shape == Y.shape and proba.shape == Y.shape
    assert np.all((proba >= 0) & (proba <= 1)) and set(np.unique(pred)) <= {0, 1}
    assert np.array_equal(pred, (proba > 0.5).astype(pred.dtype))
    reference = SkMLP((32,), max_iter=300, random_state=0).fit(X, Y)
    assert reference.predict(X).shape == pred.shape
    # subset accuracy, well above chance (1/8) and near scikit-learn's own
    assert clf.score(X, Y) > min(0.8, reference.score(X, Y) - 0.1)
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="balanced", max_iter=2).fit(X, Y)
    with pytest.raises(ValueError, match="indicator"):
        MLPClassifier(max_iter=2).fit(X, np.where(Y > 0, 2, 0) + np.arange(3))
    with pytest.raises(ValueError, match="kind"):
        clf.partial_fit(X, Y[:, 0])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_regressor_huber_loss():
    from fastnet.sklearn import MLPRegressor

    rng = np.random.default_rng(2)
    X = rng.standard_normal((200, 4))
    y = X[:, 0] - X[:, 1]
    reg = MLPRegressor((16,), loss="huber", huber_delta=0.7, max_iter=20,
                       random_state=0).fit(X, y)
    assert reg.model_.loss == "huber" and reg.model_.huber_delta == 0.7
    assert reg.score(X, y) > 0.5
    with pytest.raises(ValueError, match="loss"):
        MLPRegressor(loss="poisson", max_iter=2).fit(X, y)
    with pytest.raises(ValueError, match="huber_delta"):
        MLPRegressor(loss="huber", huber_delta=0, max_iter=2).fit(X, y)
