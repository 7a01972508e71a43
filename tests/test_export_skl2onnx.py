"""skl2onnx.to_onnx(estimator, X[:1]) for fastnet.sklearn's estimators.

Goal (issue 20): labels equal to predict's and probabilities within 1e-5 of
predict_proba's, like scikit-learn's own MLP conversion (string labels included), and
the regressor's predictions with its target scaling; alone and after a StandardScaler.
"""
import subprocess
import sys

import numpy as np
import pytest
from conftest import child_env

pytest.importorskip("sklearn")
skl2onnx = pytest.importorskip("skl2onnx")
ort = pytest.importorskip("onnxruntime")

from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

FIT = dict(hidden_layer_sizes=(24, 16), max_iter=15, random_state=0)


def classification(n_classes=3, labels="int"):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((240, 6)) * [1, 2, 3, 1, 10, 0.1] + [0, 5, 0, -3, 0, 1]
    y = np.digitize(X[:, 0] + 0.3 * X[:, 1] - 0.05 * X[:, 4], [-0.5, 0.5, 1.5][:n_classes - 1])
    if labels == "str":
        y = np.array(["cat", "dog", "emu", "yak"])[y]
    elif labels == "float":
        y = y.astype(np.float64) * 2 - 1
    return X, y


def regression(n_outputs=1):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((240, 5)) * [1, 3, 1, 0.5, 2]
    y = np.stack([40 * X[:, 0] - 7 * X[:, 1] + 300, np.sin(X[:, 2]) * 5 + X[:, 3]], axis=1)
    return X, (y[:, 0] if n_outputs == 1 else y)


def session(estimator, X, options=None):
    onx = skl2onnx.to_onnx(estimator, X[:1], options=options)
    return ort.InferenceSession(onx.SerializeToString(), providers=["CPUExecutionProvider"])


def run(sess, X):
    return sess.run(None, {sess.get_inputs()[0].name: X})


def final(estimator):
    return estimator.steps[-1][1] if hasattr(estimator, "steps") else estimator


@pytest.mark.parametrize("zipmap", [True, False])
@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("labels,n_classes", [("int", 3), ("str", 4), ("str", 2),
                                              ("float", 3)])
def test_classifier_labels_and_probabilities(labels, n_classes, pipeline, zipmap):
    X, y = classification(n_classes, labels)
    clf = MLPClassifier(**FIT)
    estimator = make_pipeline(StandardScaler(), clf) if pipeline else clf
    estimator.fit(X, y)
    for dtype in (np.float32, np.float64):
        Xd = X.astype(dtype)
        options = None if zipmap else {id(clf): {"zipmap": False}}
        label, proba = run(session(estimator, Xd, options), Xd)
        if zipmap:              # a list of {class: probability}, like sklearn's converter
            assert isinstance(proba, list) and set(proba[0]) == set(clf.classes_.tolist())
            proba = np.array([[row[c] for c in clf.classes_.tolist()] for row in proba])
        np.testing.assert_array_equal(label, estimator.predict(X))
        assert np.max(np.abs(proba - estimator.predict_proba(X))) <= 1e-5


def test_classifier_option_nocl_gives_class_indices():
    X, y = classification(3, "str")
    clf = MLPClassifier(**FIT).fit(X, y)
    X32 = X.astype(np.float32)
    label, _ = run(session(clf, X32, {id(clf): {"nocl": True, "zipmap": False}}), X32)
    np.testing.assert_array_equal(label, np.searchsorted(clf.classes_, clf.predict(X)))


@pytest.mark.parametrize("pipeline", [False, True])
@pytest.mark.parametrize("n_outputs", [1, 2])
def test_regressor_predictions_with_target_scaling(n_outputs, pipeline):
    X, y = regression(n_outputs)
    reg = MLPRegressor(**FIT)
    estimator = make_pipeline(StandardScaler(), reg) if pipeline else reg
    estimator.fit(X, y)
    assert np.all(reg.y_scale_ != 1) and np.all(reg.y_mean_ != 0)   # the scaling matters
    expected = estimator.predict(X).reshape(len(X), n_outputs)
    for dtype in (np.float32, np.float64):
        (out,) = run(session(estimator, X.astype(dtype)), X.astype(dtype))
        assert out.dtype == dtype and out.shape == (len(X), n_outputs)
        err = np.max(np.abs(out - expected) / (np.abs(expected).max(axis=0) + 1.0))
        assert err <= 1e-5


def test_float64_estimator():
    X, y = classification(3)
    clf = MLPClassifier(dtype="float64", **FIT).fit(X, y)
    label, proba = run(session(clf, X, {id(clf): {"zipmap": False}}), X)
    assert proba.dtype == np.float64
    np.testing.assert_array_equal(label, clf.predict(X))
    assert np.max(np.abs(proba - clf.predict_proba(X))) <= 1e-12


def test_unfitted_estimator_is_refused():
    with pytest.raises(ValueError, match="not fitted"):
        skl2onnx.to_onnx(MLPRegressor(), np.zeros((1, 3), np.float32))


_CHILD = """
import sys
import numpy as np
{first}
assert "skl2onnx" not in sys.modules or {skl2onnx_first}
import fastnet, fastnet.sklearn
for heavy in ("onnx", "skl2onnx", "torch", "onnxruntime"):
    assert {skl2onnx_first} or heavy not in sys.modules, heavy + " imported by fastnet"
import skl2onnx
X = np.random.default_rng(0).standard_normal((50, 3))
reg = fastnet.sklearn.MLPRegressor(hidden_layer_sizes=(8,), max_iter=2).fit(X, X[:, 0])
assert skl2onnx.to_onnx(reg, X[:1].astype(np.float32)).graph.output
print("ok")
"""


@pytest.mark.parametrize("skl2onnx_first", [False, True])
def test_converters_register_when_skl2onnx_is_imported(skl2onnx_first, tmp_path):
    """fastnet imports none of onnx, skl2onnx, torch; the converters are there either way."""
    code = _CHILD.format(first="import skl2onnx" if skl2onnx_first else "",
                         skl2onnx_first=skl2onnx_first)
    result = subprocess.run([sys.executable, "-c", code], env=child_env(), cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
