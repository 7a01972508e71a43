"""fastnet export MODEL --onnx OUT --torch OUT --safetensors OUT."""
import sys

import numpy as np
import pytest
from _export_models import inputs, random_model

import fastnet
from fastnet.cli import main


@pytest.fixture
def saved(tmp_path):
    model = random_model([6, 10, 4])
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def test_export_all_three(saved, tmp_path, capsys):
    ort = pytest.importorskip("onnxruntime")
    torch = pytest.importorskip("torch")
    model, path = saved
    out = {k: tmp_path / f"m.{k}" for k in ("onnx", "pt", "safetensors")}
    code = main(["export", str(path), "--onnx", str(out["onnx"]), "--torch", str(out["pt"]),
                 "--safetensors", str(out["safetensors"])])
    assert code == 0
    printed = capsys.readouterr().out
    assert all(str(p) in printed for p in out.values())
    X = inputs(model)
    session = ort.InferenceSession(str(out["onnx"]), providers=["CPUExecutionProvider"])
    assert np.max(np.abs(session.run(None, {"input": X})[0] - model.predict_proba(X))) <= 1e-5
    module = model.to_torch()
    state = torch.load(out["pt"], weights_only=True)
    assert list(state) == list(module.state_dict())
    module.load_state_dict(state)
    with torch.no_grad():
        logits = module(torch.from_numpy(X)).numpy()
    assert np.max(np.abs(logits - model._outputs(X))) <= 1e-5
    back = fastnet.load(out["safetensors"])
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))


def test_export_from_safetensors_with_an_opset(saved, tmp_path):
    onnx = pytest.importorskip("onnx")
    model, _ = saved
    source = tmp_path / "model.safetensors"
    model.save(source)
    assert main(["export", str(source), "--onnx", str(tmp_path / "m.onnx"),
                 "--opset", "13"]) == 0
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == 13


@pytest.mark.parametrize("argv,message", [
    ([], "at least one of --onnx"),
    (["--onnx", "OUT", "--opset", "3"], "opset"),
])
def test_errors_are_one_line(saved, tmp_path, capsys, argv, message):
    if "--onnx" in argv:
        pytest.importorskip("onnx")
    _, path = saved
    argv = [str(tmp_path / a) if a == "OUT" else a for a in argv]
    assert main(["export", str(path), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_missing_or_bad_model_file(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope.npz"), "--safetensors", "x"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00{}")
    assert main(["export", str(bad), "--safetensors", str(tmp_path / "y")]) == 2
    assert str(bad) in capsys.readouterr().err


def test_a_missing_package_is_a_one_line_error(saved, tmp_path, capsys, monkeypatch):
    _, path = saved
    monkeypatch.setitem(sys.modules, "torch", None)       # import torch now fails
    assert main(["export", str(path), "--torch", str(tmp_path / "m.pt")]) == 2
    err = capsys.readouterr().err
    assert "needs the torch package" in err and err.count("\n") == 1
    assert not (tmp_path / "m.pt").exists()
