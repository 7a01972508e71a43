"""MLP.to_onnx: the graph checks, and ONNX Runtime gives fastnet's outputs.

Goal (issue 20): ONNX Runtime's outputs equal fastnet's within 1e-5 (float32) for every
activation, with and without batch norm, for classification and regression.  The
activations fastnet's kernels do not have yet are checked against the NumPy reference.
"""
import sys

import numpy as np
import pytest
from _export_models import (
    NATIVE,
    REFERENCE_ACTIVATIONS,
    ModelView,
    fastnet_outputs,
    inputs,
    max_error,
    random_model,
    reference_outputs,
)

import fastnet
from fastnet import export

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
# ONNX Runtime's Erf is float32-only, so a float64 GELU is only as good as float32's erf
GELU_F64_TOL = 1e-6


def run_onnx(data, X):
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"input": X})
    return out


def tolerance(model):
    if model.activation == "gelu" and model.dtype == np.float64:
        return GELU_F64_TOL
    return TOL[model.dtype]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("activation", NATIVE)
def test_onnx_runtime_matches_predict(activation, batch_norm, loss, dtype):
    model = random_model([12, 32, 16, 5], activation=activation, batch_norm=batch_norm,
                         loss=loss, dtype=dtype)
    X = inputs(model, 200)
    expected = fastnet_outputs(model, X)
    # the reference forward is what the other activations are checked against: check it too
    assert max_error(expected, reference_outputs(model, X)) < 10 * TOL[model.dtype]
    for fold in (True, False):
        out = run_onnx(model.to_onnx(fold_batch_norm=fold), X)
        assert out.dtype == model.dtype and out.shape == expected.shape
        assert max_error(out, expected) <= tolerance(model), f"fold_batch_norm={fold}"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
def test_every_activation_entry_against_numpy(activation, batch_norm, dtype):
    """The table's entries, those of the activations coming next included."""
    for loss in ("cross_entropy", "mse"):
        model = random_model([10, 24, 24, 4], activation=activation, batch_norm=batch_norm,
                             loss=loss, dtype=dtype, seed=3)
        X = inputs(model, 128) * 3           # reach the tails and leaky_relu's negative side
        out = run_onnx(export.to_onnx(model), X)      # model may be a ModelView
        assert max_error(out, reference_outputs(model, X)) <= tolerance(model), loss


def test_leaky_relu_slope_is_read_from_the_model():
    model = random_model([6, 8, 3], activation="leaky_relu", batch_norm=False, loss="mse")
    model.negative_slope = 0.2
    X = inputs(model, 32) * 3
    layer0, layer1 = model.layers
    h = X.astype(np.float64) @ layer0["w"] + layer0["b"]
    expected = np.where(h >= 0, h, 0.2 * h) @ layer1["w"] + layer1["b"]
    for dtype in ("float32", "float64"):     # LeakyRelu, and float64's Where form
        model_d = random_model([6, 8, 3], activation="leaky_relu", batch_norm=False,
                               loss="mse", dtype=dtype)
        model_d.set_weights(model.get_weights())
        model_d.negative_slope = 0.2
        assert max_error(run_onnx(export.to_onnx(model_d), X.astype(dtype)), expected) \
            <= TOL[np.dtype(dtype)]


def test_trained_digits_model_matches_predict_proba():
    from fastnet.datasets import load_digits
    X, y = load_digits()
    X = X.astype(np.float32)
    model = fastnet.MLP([64, 64, 32, 10], dropout=0.2, seed=0)
    model.fit(X[:600], y[:600], epochs=4, verbose=0)
    assert max_error(run_onnx(model.to_onnx(), X), model.predict_proba(X)) <= 1e-5


def test_regression_output_has_predicts_shape():
    X = np.random.default_rng(0).standard_normal((80, 5)).astype(np.float32)
    for y in (X[:, 0] - X[:, 1], np.stack([X[:, 0], X[:, 2]], axis=1)):
        n_out = 1 if y.ndim == 1 else y.shape[1]
        model = fastnet.MLP([5, 16, n_out], seed=0)
        model.fit(X, y, loss="mse", epochs=2, verbose=0)
        proto = onnx.load_from_string(model.to_onnx())
        dims = [d.dim_param or d.dim_value
                for d in proto.graph.output[0].type.tensor_type.shape.dim]
        assert dims == (["N"] if y.ndim == 1 else ["N", n_out])
        out = run_onnx(proto.SerializeToString(), X)
        assert out.shape == model.predict(X).shape == y.shape
        assert max_error(out, model.predict(X)) <= 1e-5


def test_graph_interface_and_checker(tmp_path):
    model = random_model([7, 9, 3])
    data = model.to_onnx()
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    (inp,) = proto.graph.input
    (out,) = proto.graph.output
    assert inp.name == "input" and out.name == "probabilities"
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", 7]
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert proto.opset_import[0].version == export.DEFAULT_OPSET
    assert proto.ir_version == onnx.helper.find_min_ir_version_for(list(proto.opset_import))
    assert proto.producer_name == "fastnet"
    ops = [n.op_type for n in proto.graph.node]
    assert "BatchNormalization" not in ops and ops.count("Gemm") == 2   # folded
    assert "BatchNormalization" in [n.op_type for n in onnx.load_from_string(
        model.to_onnx(fold_batch_norm=False)).graph.node]
    # a path: written there, nothing returned; one row and many rows (dynamic N)
    path = tmp_path / "model.onnx"
    assert model.to_onnx(path) is None
    assert path.read_bytes() == data
    X = inputs(model, 300)
    assert run_onnx(str(path), X[:1]).shape == (1, 3)
    assert max_error(run_onnx(str(path), X), reference_outputs(model, X)) <= 1e-5


@pytest.mark.parametrize("opset", [13, 17, 21])
def test_opsets(opset):
    model = random_model([6, 10, 10, 3], activation="tanh", loss="mse")
    X = inputs(model)
    proto = onnx.load_from_string(model.to_onnx(opset=opset))
    assert proto.opset_import[0].version == opset
    assert max_error(run_onnx(proto.SerializeToString(), X), model.predict(X)) <= 1e-5


@pytest.mark.parametrize("opset,error", [(12, ValueError), (10**6, ValueError),
                                         ("17", TypeError), (17.0, TypeError),
                                         (True, TypeError)])
def test_bad_opset_is_refused(opset, error):
    with pytest.raises(error, match="opset"):
        random_model([4, 3]).to_onnx(opset=opset)


def test_what_has_no_onnx_form_is_refused():
    model = random_model([4, 5, 3])
    with pytest.raises(ValueError, match="huber_like"):
        export.to_onnx(ModelView(model, loss="huber_like"))
    with pytest.raises(ValueError, match="swish3"):
        export.to_onnx(ModelView(model, activation="swish3"))


def test_missing_onnx_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)       # import onnx now fails
    with pytest.raises(ImportError, match=r"fastnet\[onnx\]"):
        random_model([4, 3]).to_onnx()
