"""Assigning a model's attributes never corrupts memory: what lays out the weights
(layer_sizes, batch_norm, activation, dtype and the arrays themselves) is read-only, the
settings that may change between fits (dropout, bn_eps, bn_momentum, init, seed, loss) are
validated and take effect, and the native Engine checks every array it is given against
the layout it computes itself."""
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import child_env

import fastnet
from fastnet import _network


def _data(n_in=4):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, n_in)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def _run_child(code, tmp_path):
    """Run `code` in a fresh interpreter (a memory error there cannot take pytest down)."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=child_env(),
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)


# the hostile reproducers: each once corrupted the heap or trained on a misread vector
ASSIGNMENTS = {
    "layer_sizes": "[4, 16, 2]",
    "layer_sizes_smaller": "[4, 2]",
    "batch_norm": "True",
    "batch_norm_off": "False",
    "params": "np.zeros(3, np.float32)",
    "buffers": "np.zeros(3, np.float32)",
    "grads": "np.zeros(3, np.float32)",
    "dtype": "np.dtype('float64')",
    "activation": "'gelu'",
    "layers": "[]",
}


@pytest.mark.parametrize("case", sorted(ASSIGNMENTS))
def test_structural_attributes_are_read_only_and_the_model_keeps_working(case, tmp_path):
    attribute = case.split("_smaller")[0].split("_off")[0]
    batch_norm = case != "batch_norm"
    code = f"""
        import numpy as np, fastnet
        X = np.random.default_rng(0).standard_normal((64, 4)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        m = fastnet.MLP([4, 8, 2], batch_norm={batch_norm}, seed=0)
        before = m.predict_proba(X)
        try:
            m.{attribute} = {ASSIGNMENTS[case]}
            print("ASSIGNED")
        except AttributeError as exc:
            print("REFUSED", exc)
        assert np.array_equal(m.predict_proba(X), before)
        m.fit(X, y, epochs=2, verbose=0)
        assert np.all(np.isfinite(m.predict_proba(X)))
        print("DONE")
    """
    proc = _run_child(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REFUSED" in proc.stdout and "DONE" in proc.stdout, proc.stdout
    assert f"MLP.{attribute} cannot be assigned" in proc.stdout


def test_layer_sizes_is_a_copy_that_cannot_change_the_layout():
    X, y = _data()
    m = fastnet.MLP([4, 8, 2], seed=0)
    sizes = m.layer_sizes
    sizes.append(7)
    sizes[1] = 99
    assert m.layer_sizes == [4, 8, 2]
    m.fit(X, y, epochs=1, verbose=0)
    assert m.config()["layer_sizes"] == [4, 8, 2]


@pytest.mark.parametrize("name, bad", [
    ("dropout", 1.0), ("dropout", 1.5), ("dropout", -0.5), ("dropout", float("nan")),
    ("dropout", "0.1"), ("bn_eps", -10), ("bn_eps", float("inf")), ("bn_momentum", 1.5),
    ("bn_momentum", -0.1), ("init", "gelu"), ("init", 3), ("seed", -1), ("seed", 2**64),
    ("seed", 1.5), ("loss", "hinge")])
def test_settings_are_validated_on_assignment(name, bad):
    m = fastnet.MLP([4, 8, 2], seed=0)
    before = getattr(m, name)
    with pytest.raises((TypeError, ValueError), match=name if name != "init" else "init|gelu"):
        setattr(m, name, bad)
    assert getattr(m, name) == before


def test_a_changed_dropout_trains_like_a_model_built_with_it():
    X, y = _data()
    changed = fastnet.MLP([4, 8, 2], seed=0)
    changed.dropout = 0.5
    built = fastnet.MLP([4, 8, 2], dropout=0.5, seed=0)
    changed.fit(X, y, epochs=2, verbose=0)
    built.fit(X, y, epochs=2, verbose=0)
    assert changed.params.tobytes() == built.params.tobytes()


def test_changed_batch_norm_settings_reach_inference_and_training():
    X, y = _data()
    m = fastnet.MLP([4, 8, 2], seed=0)
    m.fit(X, y, epochs=1, verbose=0)
    m.predict(X)                       # caches an inference engine with bn_eps=1e-5
    m.bn_eps, m.bn_momentum = 0.5, 0.5
    ref = fastnet.MLP([4, 8, 2], seed=0)
    ref.bn_eps, ref.bn_momentum = 0.5, 0.5
    ref.set_weights(m.get_weights())
    assert np.array_equal(m.predict_proba(X), ref.predict_proba(X))
    m.fit(X, y, epochs=1, verbose=0, seed=3)
    ref.fit(X, y, epochs=1, verbose=0, seed=3)
    assert m.buffers.tobytes() == ref.buffers.tobytes()


def test_changed_init_and_seed_apply_to_reset_parameters():
    m = fastnet.MLP([4, 8, 2], seed=0)
    m.init, m.seed = "xavier", 5
    m.reset_parameters()
    ref = fastnet.MLP([4, 8, 2], init="xavier", seed=5)
    assert m.params.tobytes() == ref.params.tobytes()


# ---- the native engine checks what it binds -----------------------------------------

ENGINE_CASES = {
    "params too short": "Engine(sizes, p[:-1], g[:-1], b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "params too long": "Engine(sizes, np.zeros(p.size + 5, p.dtype), g, b, ACT, True, 0.0, "
                       "1e-5, 0.1, LOSS, 8)",
    "grads too short": "Engine(sizes, p, g[:-1], b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "buffers for no batch norm": "Engine(sizes, p, g, b, ACT, False, 0.0, 1e-5, 0.1, LOSS, 8)",
    "buffers too short": "Engine(sizes, p, g, b[:-1], ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "other dtype": "Engine(sizes, p.astype(np.float64), g, b, ACT, True, 0.0, 1e-5, 0.1, "
                   "LOSS, 8)",
    "strided params": "Engine(sizes, np.zeros(2 * p.size, p.dtype)[::2], g, b, ACT, True, "
                      "0.0, 1e-5, 0.1, LOSS, 8)",
    "read-only params": "Engine(sizes, readonly(p), g, b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "other layer sizes": "Engine([4, 16, 2], p, g, b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "unknown activation": "Engine(sizes, p, g, b, 99, True, 0.0, 1e-5, 0.1, LOSS, 8)",
    "unknown loss": "Engine(sizes, p, g, b, ACT, True, 0.0, 1e-5, 0.1, 99, 8)",
    "dropout 1": "Engine(sizes, p, g, b, ACT, True, 1.0, 1e-5, 0.1, LOSS, 8)",
    "negative bn_eps": "Engine(sizes, p, g, b, ACT, True, 0.0, -1.0, 0.1, LOSS, 8)",
    "bn_momentum 2": "Engine(sizes, p, g, b, ACT, True, 0.0, 1e-5, 2.0, LOSS, 8)",
    "no rows": "Engine(sizes, p, g, b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 0)",
    "x with other columns": "e.set_data(np.zeros((8, 5), p.dtype), lab, None, None)",
    "x of other dtype": "e.set_data(X.astype(np.float64), lab, None, None)",
    "labels too short": "e.set_data(X, lab[:-1], None, None)",
    "labels out of range": "e.set_data(X, lab + 5, None, None)",
    "negative labels": "e.set_data(X, lab - 5, None, None)",
    "no labels": "e.set_data(X, None, None, None)",
    "weights too short": "e.set_data(X, lab, None, np.ones(7, p.dtype))",
    "order out of range": "e.set_data(X, lab, None, None); e.set_order(np.arange(1, 9))",
    "order of int32": "e.set_data(X, lab, None, None); e.set_order(np.arange(8, dtype=np.int32))",
    "optimizer buffer too short": "e.set_optimizer(1, 0.0, 0.9, 0.999, 1e-8, 0.0, False, 0, "
                                  "np.zeros(p.size - 1, p.dtype), np.zeros(p.size, p.dtype))",
    "adam without its second buffer": "e.set_optimizer(1, 0.0, 0.9, 0.999, 1e-8, 0.0, False, "
                                      "0, np.zeros(p.size, p.dtype), None)",
    "forward into a short output": "e.forward(X, np.zeros((7, 2), p.dtype))",
    "forward of other columns": "e.forward(np.zeros((8, 3), p.dtype), np.zeros((8, 2), "
                                "p.dtype))",
    "forward into read-only output": "e.forward(X, readonly(np.zeros((8, 2), p.dtype)))",
}


def test_engine_refuses_arrays_that_do_not_fit_its_layout(tmp_path):
    code = """
        import json, numpy as np
        from fastnet import _network
        from fastnet._network import Engine
        def readonly(a):
            a = a.copy(); a.flags.writeable = False; return a
        sizes = [4, 8, 2]
        _, n_params, n_buffers = _network.layout(sizes, True)
        p = np.zeros(n_params, np.float32); g = np.zeros(n_params, np.float32)
        b = np.zeros(n_buffers, np.float32)
        ACT, LOSS = _network.ACTIVATIONS["relu"], _network.LOSSES["cross_entropy"]
        X = np.zeros((8, 4), np.float32); lab = np.arange(8, dtype=np.int64) % 2
        for name, call in json.loads(CASES).items():
            e = Engine(sizes, p, g, b, ACT, True, 0.0, 1e-5, 0.1, LOSS, 8)
            try:
                exec(call)
                print(json.dumps([name, "accepted"]), flush=True)
            except ValueError as exc:
                print(json.dumps([name, "ValueError: " + str(exc)]), flush=True)
            except Exception as exc:
                print(json.dumps([name, type(exc).__name__ + ": " + str(exc)]), flush=True)
    """.replace("CASES", repr(json.dumps(ENGINE_CASES)))
    proc = _run_child(code, tmp_path)
    results = dict(json.loads(line) for line in proc.stdout.splitlines())
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    for name in ENGINE_CASES:
        assert results.get(name, "").startswith("ValueError: "), (name, results.get(name))


def test_engine_accepts_read_only_training_data():
    X, y = _data()
    X.flags.writeable = False
    y.flags.writeable = False
    m = fastnet.MLP([4, 8, 2], seed=0)
    engine = m._engine(64, "cross_entropy")
    engine.set_data(X, y, None, None)
    order = np.arange(64, dtype=np.int64)
    order.flags.writeable = False
    engine.set_order(order)
    assert np.isfinite(engine.step(0, 64, 0.0, 0.0, 1, 0, update=False))


def test_layout_refuses_sizes_whose_parameter_count_overflows():
    with pytest.raises(ValueError, match="parameters"):
        _network.layout([2**60, 16], False)
    with pytest.raises(ValueError, match="parameters"):
        fastnet.MLP([2**32, 2**32])
