"""fastnet.sklearn: scikit-learn's estimator contract, labels, weights,
partial_fit / warm_start state, pickling, Pipeline / CV / GridSearchCV, and
the thread rule for joblib workers."""
import pickle
import threading
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import load_digits, make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastnet  # noqa: E402
from fastnet.sklearn import MLPClassifier, MLPRegressor, effective_n_threads  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

# tiny networks trained briefly: mini-batches of 64 at lr 4e-3 (the defaults from 1000 rows
# up), so that 20 epochs train on a few hundred rows; early stopping stays "auto"
SMALL = dict(hidden_layer_sizes=(16,), max_iter=20, dropout=0.1, batch_size=64,
             learning_rate_init=4e-3, n_threads=1)

_SGD_REASON = ("mini-batch SGD with shuffling and batch norm (whose batch statistics are "
               "unweighted): a weighted row is not the same as a repeated or a removed row")


def _expected_failed_checks(estimator):
    return {
        "check_sample_weight_equivalence_on_dense_data": _SGD_REASON,
        "check_sample_weight_equivalence_on_sparse_data": _SGD_REASON,
        "check_sample_weights_invariance": _SGD_REASON,
    }


@parametrize_with_checks(
    [MLPClassifier(random_state=0, **SMALL), MLPRegressor(random_state=0, **SMALL)],
    expected_failed_checks=_expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


# ---- data ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X[:600] / 16.0, y[:600]


def blobs(n=240, seed=0, n_classes=3):
    X, y = make_classification(n_samples=n, n_features=8, n_informative=5,
                               n_classes=n_classes, n_clusters_per_class=1, class_sep=2.0,
                               random_state=seed)
    return X, y


# ---- classifier ----------------------------------------------------------------------

def test_digits_accuracy_and_fitted_attributes(digits):
    X, y = digits
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=40, dropout=0.1, random_state=0,
                        early_stopping=True, n_threads=1).fit(X[:450], y[:450])
    assert clf.score(X[450:], y[450:]) > 0.85
    assert clf.n_features_in_ == 64
    np.testing.assert_array_equal(clf.classes_, np.arange(10))
    assert isinstance(clf.model_, fastnet.MLP)
    assert clf.model_.layer_sizes == [64, 64, 10]
    assert 1 <= clf.n_iter_ <= 40
    assert len(clf.loss_curve_) == clf.n_iter_
    assert len(clf.validation_scores_) == clf.n_iter_
    assert len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == clf.validation_scores_[clf.best_epoch_]
    assert clf.best_loss_ == pytest.approx(min(clf.validation_loss_curve_))
    assert clf.t_ == clf.n_iter_ * (450 - 45)
    proba = clf.predict_proba(X[450:])
    assert proba.shape == (150, 10) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_array_equal(clf.predict(X[450:]), proba.argmax(axis=1))


@pytest.mark.parametrize("labels", [np.array(["cat", "dog", "emu"]), np.array([3, 7, 100]),
                                    np.array([-1.0, 0.0, 2.0])])
def test_string_and_non_contiguous_labels(labels):
    X, y = blobs()
    yl = labels[y]
    clf = MLPClassifier(random_state=0, **SMALL).fit(X, yl)
    np.testing.assert_array_equal(clf.classes_, np.sort(labels))
    pred = clf.predict(X)
    assert pred.dtype == yl.dtype
    assert set(pred) <= set(labels)
    assert np.mean(pred == yl) > 0.9
    proba = clf.predict_proba(X)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(1)], pred)


def test_auto_defaults_follow_the_number_of_samples(digits):
    """early_stopping="auto": a classifier under 1000 rows trains as scikit-learn's MLP does
    (every row, no dropout, batches of min(200, n), lr 1e-3), from 1000 rows up with the
    article's recipe on a held-out split (dropout 0.3, batches of 64, lr 4e-3); a regressor
    always stops early.  Explicit values win over "auto"."""
    X, y = digits
    small = MLPClassifier(hidden_layer_sizes=(16,), max_iter=3, random_state=0,
                          n_threads=1).fit(X[:450], y[:450])
    assert not small.do_early_stopping_ and small.validation_scores_ is None
    assert small.model_.dropout == 0.0 and small.model_.optimizer.lr == pytest.approx(1e-3)
    assert small.t_ == 3 * 450 and small.model_.optimizer.t == 3 * 3      # batches of 200
    X_large, y_large = np.tile(X, (2, 1)), np.tile(y, 2)                  # 1200 rows
    large = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                          n_threads=1).fit(X_large, y_large)
    assert large.do_early_stopping_ and len(large.validation_scores_) == large.n_iter_
    assert large.model_.dropout == 0.3
    assert large.t_ == 2 * 1080 and large.model_.optimizer.t == 2 * 17      # batches of 64
    explicit = MLPClassifier(hidden_layer_sizes=(16,), max_iter=2, dropout=0.2,
                             batch_size=100, learning_rate_init=2e-3, random_state=0,
                             n_threads=1).fit(X[:450], y[:450])
    assert explicit.model_.dropout == 0.2 and explicit.model_.optimizer.t == 2 * 5
    assert explicit.get_params()["early_stopping"] == "auto"
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=2, random_state=0,
                       n_threads=1).fit(X[:300], y[:300].astype(float))
    assert reg.do_early_stopping_ and reg.model_.dropout == 0.3
    with pytest.raises(ValueError, match="dropout must be a number or 'auto'"):
        MLPClassifier(dropout="high").fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping="sometimes").fit(X[:50], y[:50])


def test_binary_and_one_class():
    X, y = blobs(n_classes=2)
    clf = MLPClassifier(random_state=0, **SMALL).fit(X, np.where(y, "yes", "no"))
    assert clf.predict_proba(X).shape == (len(X), 2)
    with pytest.raises(ValueError, match="class"):
        MLPClassifier(**SMALL).fit(X, np.zeros(len(X)))


def test_not_fitted_and_bad_params():
    X, y = blobs()
    with pytest.raises(NotFittedError):
        MLPClassifier().predict(X)
    for bad in (dict(activation="elu"), dict(dropout=1.0), dict(batch_size=1),
                dict(schedule="sometimes"), dict(optimizer="lbfgs"), dict(max_iter=0),
                dict(validation_fraction=1.0), dict(dtype="float16"), dict(init="zeros")):
        with pytest.raises(ValueError):
            MLPClassifier(**{**SMALL, **bad}).fit(X, y)
    with pytest.raises(TypeError):
        MLPClassifier(**{**SMALL, "hidden_layer_sizes": "wide"}).fit(X, y)


def test_sample_weight_and_class_weight():
    X, y = blobs(seed=3)
    # rows of class 0 weighted out: the model hardly predicts class 0
    w = np.where(y == 0, 0.0, 1.0)
    clf = MLPClassifier(random_state=0, early_stopping=False, **SMALL).fit(X, y,
                                                                            sample_weight=w)
    assert np.mean(clf.predict(X) == 0) < 0.15
    # weights matter: identical weights = unweighted, different weights = different model
    a = MLPClassifier(random_state=0, **SMALL).fit(X, y).predict_proba(X)
    b = MLPClassifier(random_state=0, **SMALL).fit(X, y, sample_weight=np.full(len(y), 2.0))
    np.testing.assert_allclose(a, b.predict_proba(X), atol=1e-5)
    # class_weight="balanced" raises the recall of a rare class
    rng = np.random.default_rng(0)
    keep = (y != 2) | (rng.random(len(y)) < 0.1)
    Xi, yi = X[keep], y[keep]
    plain = MLPClassifier(random_state=0, **SMALL).fit(Xi, yi)
    bal = MLPClassifier(random_state=0, class_weight="balanced", **SMALL).fit(Xi, yi)
    recall = lambda m: np.mean(m.predict(X[y == 2]) == 2)  # noqa: E731
    assert recall(bal) >= recall(plain)
    with pytest.raises(ValueError, match="class"):
        MLPClassifier(**SMALL).fit(X, y, sample_weight=(y == 1).astype(float))


def test_early_stopping_off_and_schedules():
    X, y = blobs()
    clf = MLPClassifier(early_stopping=False, random_state=0, **SMALL).fit(X, y)
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.best_loss_ == pytest.approx(min(clf.loss_curve_))
    for schedule in ("warmup_cosine", "cosine", "constant", "plateau", "onecycle",
                     fastnet.schedules.StepDecay(1e-2, step_size=5), lambda epoch: 1e-2):
        clf = MLPClassifier(schedule=schedule, random_state=0, **SMALL).fit(X, y)
        assert clf.score(X, y) > 0.8, schedule
    for opt in ("adam", "sgd", fastnet.optim.Adam(lr=3e-3)):
        clf = MLPClassifier(optimizer=opt, random_state=0, **SMALL).fit(X, y)
        assert clf.score(X, y) > 0.8, opt
    # the optimizer passed as a parameter is copied, never trained in place
    opt = fastnet.optim.AdamW(lr=3e-3)
    MLPClassifier(optimizer=opt, random_state=0, **SMALL).fit(X, y)
    assert opt.t == 0


def test_reproducible_and_thread_independent():
    X, y = blobs()
    a = MLPClassifier(random_state=7, **{**SMALL, "n_threads": 1}).fit(X, y)
    b = MLPClassifier(random_state=7, **{**SMALL, "n_threads": 2}).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = MLPClassifier(random_state=8, **SMALL).fit(X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # random_state=None: a different network each fit
    d1 = MLPClassifier(**SMALL).fit(X, y).model_.get_weights()[0]
    d2 = MLPClassifier(**SMALL).fit(X, y).model_.get_weights()[0]
    assert not np.array_equal(d1, d2)


def test_float64():
    X, y = blobs()
    clf = MLPClassifier(dtype="float64", random_state=0, **SMALL).fit(X, y)
    assert clf.model_.dtype == np.float64
    assert clf.score(X, y) > 0.9


# ---- partial_fit and warm_start --------------------------------------------------------

def test_partial_fit_keeps_optimizer_state():
    X, y = blobs(n=300)
    clf = MLPClassifier(random_state=0, **SMALL)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:100], y[:100])
    clf.partial_fit(X[:100], y[:100], classes=[0, 1, 2])
    opt = clf.model_.optimizer
    steps = opt.t
    assert steps == int(np.ceil(100 / 64)) and clf.n_iter_ == 1
    losses = []
    for _ in range(15):
        for start in (0, 100, 200):
            clf.partial_fit(X[start:start + 100], y[start:start + 100])
        losses.append(clf.loss_curve_[-1])
    assert clf.model_.optimizer is opt and opt.t == steps * 46
    assert clf.n_iter_ == 46 and clf.t_ == 4600
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X[:10], np.full(10, 5))
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X[:10], y[:10], classes=[0, 1])
    with pytest.raises(ValueError, match="2 samples"):
        clf.partial_fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:10, :5], y[:10])


def test_partial_fit_batch_labels_subset_and_strings():
    X, y = blobs()
    names = np.array(["a", "b", "c"])
    clf = MLPClassifier(random_state=0, **SMALL)
    clf.partial_fit(X[y != 2], names[y[y != 2]], classes=names)
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_warm_start_continues_weights_and_optimizer():
    X, y = blobs()
    clf = MLPClassifier(warm_start=True, random_state=0, **SMALL).fit(X, y)
    weights = clf.model_.get_weights()
    opt = clf.model_.optimizer
    t1, n1 = opt.t, clf.n_iter_
    model = clf.model_
    # the second fit starts from the fitted weights: one epoch at lr ~ 0 keeps them
    clf.set_params(max_iter=1, learning_rate_init=1e-12, early_stopping=False)
    clf.fit(X, y)
    assert clf.model_ is model and clf.model_.optimizer is opt
    assert opt.t > t1 and clf.n_iter_ == n1 + 1
    for name, a, b in zip(clf.model_.weight_names(), weights, clf.model_.get_weights()):
        if "running" not in name:          # batch-norm statistics move at any lr
            np.testing.assert_allclose(a, b, atol=1e-6, err_msg=name)
    # without warm_start, fit starts over: new network, fresh optimizer
    clf.set_params(warm_start=False)
    clf.fit(X, y)
    assert clf.model_ is not model and clf.model_.optimizer.t == int(np.ceil(len(X) / 64))
    assert clf.n_iter_ == 1
    # a changed architecture cannot be continued
    clf.set_params(warm_start=True, hidden_layer_sizes=(8,))
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, y)


def test_warm_start_new_label_rejected():
    X, y = blobs()
    clf = MLPClassifier(warm_start=True, random_state=0, **SMALL).fit(X, y)
    with pytest.raises(ValueError, match="warm_start"):
        clf.fit(X, np.where(y == 2, 9, y))


# ---- regressor -------------------------------------------------------------------------

def test_regressor_targets_far_from_zero():
    X, y = make_regression(n_samples=300, n_features=6, noise=1.0, random_state=0)
    y = 1000.0 + 3.0 * y
    reg = MLPRegressor(random_state=0, **{**SMALL, "max_iter": 60}).fit(X, y)
    assert reg.score(X, y) > 0.9
    assert reg.y_mean_.shape == (1,) and reg.y_mean_[0] == pytest.approx(y.mean())
    pred = reg.predict(X)
    assert pred.shape == (300,) and pred.dtype == np.float64
    assert len(reg.validation_scores_) == reg.n_iter_
    assert reg.best_validation_score_ == max(reg.validation_scores_) or \
        reg.best_validation_score_ == reg.validation_scores_[reg.best_epoch_]


def test_regressor_multi_output_and_raw_targets():
    X, Y = make_regression(n_samples=300, n_features=6, n_targets=3, noise=1.0,
                           random_state=1)
    Y[:, 1] *= 100
    reg = MLPRegressor(random_state=0, **{**SMALL, "max_iter": 60}).fit(X, Y)
    assert reg.predict(X).shape == (300, 3)
    assert reg.model_.layer_sizes[-1] == 3
    assert reg.score(X, Y) > 0.9
    raw = MLPRegressor(standardize_targets=False, random_state=0, **SMALL).fit(X, Y[:, [0]])
    np.testing.assert_array_equal(raw.y_mean_, [0.0])
    assert raw.predict(X).shape == (300, 1)
    with pytest.raises(ValueError, match="outputs"):
        clone(reg).set_params(warm_start=True).fit(X, Y).fit(X, Y[:, :2])


def test_regressor_partial_fit_and_warm_start():
    X, y = make_regression(n_samples=200, n_features=5, noise=0.5, random_state=2)
    reg = MLPRegressor(random_state=0, **SMALL)
    for _ in range(30):
        reg.partial_fit(X, y)
    assert reg.n_iter_ == 30 and reg.score(X, y) > 0.8
    mean = reg.y_mean_.copy()
    reg.partial_fit(X, y + 50.0)     # later batches do not change the target scaling
    np.testing.assert_array_equal(reg.y_mean_, mean)


# ---- pickling --------------------------------------------------------------------------

def test_pickle_round_trip_and_continue():
    X, y = blobs()
    clf = MLPClassifier(warm_start=True, random_state=0, **SMALL).fit(X, y)
    clone_ = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf.predict_proba(X), clone_.predict_proba(X))
    assert clone_.model_.optimizer.t == clf.model_.optimizer.t
    # both continue identically (optimizer moments included)
    clf.set_params(max_iter=3, early_stopping=False)
    clone_.set_params(max_iter=3, early_stopping=False)
    np.testing.assert_array_equal(clf.fit(X, y).predict_proba(X),
                                  clone_.fit(X, y).predict_proba(X))
    reg = MLPRegressor(random_state=0, **SMALL).fit(X, y.astype(float))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(reg)).predict(X), reg.predict(X))


# ---- scikit-learn tooling and threads --------------------------------------------------

def test_pipeline_cross_val_score_grid_search(digits):
    X, y = digits
    pipe = make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(32,), max_iter=40,
                                                         dropout=0.1, early_stopping=True,
                                                         random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    # 400 training rows per fold; scikit-learn's MLPClassifier((32,)) scores 0.83-0.90 here
    assert scores.shape == (3,) and scores.min() > 0.75 and scores.mean() > 0.8
    grid = GridSearchCV(pipe, {"mlpclassifier__dropout": [0.0, 0.5],
                               "mlpclassifier__learning_rate_init": [1e-3, 4e-3]},
                        cv=2, n_jobs=2)
    grid.fit(X, y)
    assert grid.best_score_ > 0.8
    assert set(grid.best_params_) == {"mlpclassifier__dropout",
                                      "mlpclassifier__learning_rate_init"}
    assert grid.score(X, y) > 0.9


def _worker_threads():
    return effective_n_threads(None), fastnet.get_num_threads()


def test_thread_rule_in_joblib_workers(monkeypatch):
    from joblib import Parallel, cpu_count, delayed, parallel_config
    # loky workers start with OMP_NUM_THREADS = cpu_count // n_jobs, which fastnet honours
    with parallel_config(backend="loky"):
        out = Parallel(n_jobs=2)(delayed(_worker_threads)() for _ in range(2))
    expected = max(1, cpu_count() // 2)
    import os
    if "OMP_NUM_THREADS" in os.environ:
        expected = int(os.environ["OMP_NUM_THREADS"])
    assert out == [(expected, expected)] * 2
    # threads of the threading backend share the process: 1 fastnet thread each
    with parallel_config(backend="threading"):
        out = Parallel(n_jobs=2)(delayed(_worker_threads)() for _ in range(2))
    assert [o[0] for o in out] == [1, 1]
    # sequential joblib and the main thread: fastnet's own count
    assert effective_n_threads(None) == fastnet.get_num_threads()
    assert effective_n_threads(3) == 3


def test_n_threads_applies_during_fit_and_is_restored():
    X, y = blobs()
    seen = []

    def schedule(epoch):
        seen.append(fastnet.get_num_threads())
        return 1e-3

    before = fastnet.get_num_threads()
    with fastnet.threads(2):
        MLPClassifier(schedule=schedule, **{**SMALL, "n_threads": 1, "max_iter": 3}).fit(X, y)
        assert fastnet.get_num_threads() == 2
        assert seen and set(seen) == {1}
    assert fastnet.get_num_threads() == before


def test_concurrent_fits_in_threads_restore_thread_count():
    X, y = blobs()
    with fastnet.threads(2):
        errors = []

        def fit(seed):
            try:
                MLPClassifier(random_state=seed, **{**SMALL, "n_threads": 1}).fit(X, y)
            except Exception as exc:    # pragma: no cover - reported below
                errors.append(exc)
        workers = [threading.Thread(target=fit, args=(s,)) for s in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert not errors
        assert fastnet.get_num_threads() == 2


def test_convergence_warning_when_still_improving():
    X, y = blobs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(random_state=0, **{**SMALL, "max_iter": 2,
                                         "learning_rate_init": 1e-4}).fit(X, y)
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


def test_feature_names():
    pd = pytest.importorskip("pandas")
    X, y = blobs()
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(X.shape[1])])
    clf = MLPClassifier(random_state=0, **SMALL).fit(df, y)
    np.testing.assert_array_equal(clf.feature_names_in_, df.columns)
    with pytest.warns(UserWarning, match="feature names"):
        clf.predict(X)
