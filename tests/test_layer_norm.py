"""Layer normalisation, MLP(norm="layer"): each hidden Linear's rows normalised over
their features (torch.nn.LayerNorm), then gamma, beta and the activation; no running
statistics, so training and inference compute the same thing at any batch size.

Checked against PyTorch (loss and every gradient through torch.nn.functional.layer_norm,
float64 and float32, and a whole SGD step), for the same bits at 1 and 2 threads, with
batches of one row, and for its API (norm= and the older batch_norm=), files and export.
"""
import numpy as np
import pytest
import torch
from conftest import assert_close, num_threads
from test_training_vs_torch import ACT, RTOL, activation_options

import fastnet

torch.set_num_threads(1)
SIZES = [6, 9, 7, 4]
TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def make_model(activation, dtype, sizes=SIZES, seed=1, **kw):
    model = fastnet.MLP(sizes, norm="layer", dtype=dtype, seed=seed,
                        **activation_options(activation), **kw)
    rng = np.random.default_rng(seed + 100)
    weights = model.get_weights()
    for name, w in zip(model.weight_names(), weights):
        if name.endswith(".gamma"):
            w[...] = rng.uniform(0.5, 1.5, w.shape)
        elif name.endswith((".beta", ".b")):
            w[...] = rng.uniform(-0.3, 0.3, w.shape)
    model.set_weights(weights)
    return model


def torch_twin(model):
    """Linear -> LayerNorm -> activation blocks with the model's weights."""
    dtype = TORCH_DTYPE[model.dtype]
    layers = [dict(zip((n.split(".")[1] for n in names), arrays))
              for names, arrays in _by_layer(model)]
    mods = []
    for l, layer in enumerate(layers):
        fan_in, fan_out = layer["w"].shape
        hidden = l < len(layers) - 1          # no bias under layer norm: beta's role
        lin = torch.nn.Linear(fan_in, fan_out, bias=not hidden, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(layer["w"].T.copy()))
            if not hidden:
                lin.bias.copy_(torch.from_numpy(layer["b"]))
        mods.append(lin)
        if l < len(layers) - 1:
            norm = torch.nn.LayerNorm(fan_out, eps=model.bn_eps, dtype=dtype)
            with torch.no_grad():
                norm.weight.copy_(torch.from_numpy(layer["gamma"]))
                norm.bias.copy_(torch.from_numpy(layer["beta"]))
            mods += [norm, ACT[model.activation](model)]
    return torch.nn.Sequential(*mods)


def _by_layer(model):
    names, arrays = model.weight_names(), model.get_weights()
    for l in range(model.n_layers):
        keep = [i for i, n in enumerate(names) if n.startswith(f"layer{l}.")]
        yield [names[i] for i in keep], [arrays[i] for i in keep]


def torch_grads(net):
    out = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            out.append({"w": m.weight.grad.numpy().T.copy()})
            if m.bias is not None:
                out[-1]["b"] = m.bias.grad.numpy().copy()
        elif isinstance(m, torch.nn.LayerNorm):
            out[-1]["gamma"] = m.weight.grad.numpy().copy()
            out[-1]["beta"] = m.bias.grad.numpy().copy()
    return out


def _data(n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, SIZES[0])).astype(dtype)
    y = rng.integers(0, SIZES[-1], n)
    return X, y


@pytest.mark.parametrize("n", [1, 2, 24])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu", "leaky_relu:0.2", "identity"])
def test_gradients_match_torch_layer_norm(activation, dtype, n):
    dtype = np.dtype(dtype)
    X, y = _data(n, dtype)
    model = make_model(activation, dtype)
    net = torch_twin(model)
    value = torch.nn.functional.cross_entropy(net(torch.from_numpy(X)), torch.from_numpy(y))
    value.backward()
    ours, grads = model.gradients(X, y)
    assert_close(ours, value.item(), rtol=RTOL[dtype], what="loss")
    for l, (g, r) in enumerate(zip(grads, torch_grads(net))):
        assert sorted(g) == sorted(r)
        for key in r:
            assert_close(g[key], r[key], rtol=10 * RTOL[dtype], what=f"layer {l} d{key}")
    # inference is the training forward: no running statistics
    logits = net(torch.from_numpy(X)).detach().numpy()
    assert_close(model.predict_proba(X),
                 torch.softmax(torch.from_numpy(logits), 1).numpy(), rtol=10 * RTOL[dtype],
                 what="predict_proba")


def test_sgd_steps_match_torch_f64():
    X, y = _data(32, np.float64, seed=3)
    model = make_model("silu", np.float64)
    net = torch_twin(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for start in (0, 8, 16, 24):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(torch.from_numpy(X[start:start + 8])),
                                          torch.from_numpy(y[start:start + 8])).backward()
        opt.step()
    model.fit(X, y, epochs=1, batch_size=8, shuffle=False, optimizer="sgd", lr=0.1, verbose=0)
    for (names, ours), (_, theirs) in zip(_by_layer(model), _by_layer(_from_torch(net))):
        for name, a, b in zip(names, ours, theirs):
            assert_close(a, b, rtol=1e-10, what=name)


def _from_torch(net):
    """A layer-norm MLP holding the torch twin's weights (for comparing them)."""
    model = make_model("silu", np.float64)
    weights = []
    mods = list(net)
    for name in model.weight_names():
        l, key = int(name.split(".")[0][5:]), name.split(".")[1]
        linear = [m for m in mods if isinstance(m, torch.nn.Linear)][l]
        if key in ("w", "b"):
            t = linear.weight.T if key == "w" else linear.bias
        else:
            norm = [m for m in mods if isinstance(m, torch.nn.LayerNorm)][l]
            t = norm.weight if key == "gamma" else norm.bias
        weights.append(t.detach().numpy().copy())
    model.set_weights(weights)
    return model


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_fit_bit_identical_at_1_and_2_threads_and_batch_size_1(dropout):
    rng = np.random.default_rng(4)
    X = rng.standard_normal((200, 20)).astype(np.float32)
    y = (X[:, 0] * X[:, 1] > 0).astype(np.int64)

    def fit(threads, batch_size):
        with num_threads(threads):
            model = fastnet.MLP([20, 96, 64, 2], norm="layer", dropout=dropout, seed=5)
            hist = model.fit(X, y, epochs=2, batch_size=batch_size, verbose=0)
            return model, hist.history

    (m1, h1), (m2, h2) = fit(1, 32), fit(2, 32)
    assert m1.params.tobytes() == m2.params.tobytes() and h1 == h2
    assert m1.buffers.size == 0
    single, hs = fit(1, 1)                      # batches of one row train
    assert np.all(np.isfinite(single.params)) and hs["loss"][-1] < hs["loss"][0]
    # rows are independent: one row at a time predicts what the whole batch does
    whole = single.predict_proba(X)
    one = np.concatenate([single.predict_proba(X[i:i + 1]) for i in range(5)])
    assert_close(one, whole[:5], what="row by row")


def test_norm_and_batch_norm_arguments():
    assert fastnet.MLP([3, 4, 2]).norm == "batch"
    assert fastnet.MLP([3, 4, 2], batch_norm=False).norm is None
    assert fastnet.MLP([3, 4, 2], norm=None).batch_norm is False
    model = fastnet.MLP([3, 4, 2], norm="layer")
    assert model.batch_norm is False and model.norm == "layer"
    assert model.weight_names() == ["layer0.w", "layer0.gamma", "layer0.beta",
                                    "layer1.w", "layer1.b"]
    assert fastnet.MLP([3, 4, 2], norm="batch", batch_norm=True).norm == "batch"
    with pytest.raises(ValueError, match="disagree"):
        fastnet.MLP([3, 4, 2], norm="layer", batch_norm=True)
    with pytest.raises(ValueError, match="disagree"):
        fastnet.MLP([3, 4, 2], norm=None, batch_norm=True)
    with pytest.raises(ValueError, match="norm must be"):
        fastnet.MLP([3, 4, 2], norm="group")
    with pytest.raises(AttributeError):
        model.norm = "batch"


@pytest.mark.parametrize("fmt", ["npz", "safetensors"])
def test_files_record_the_norm(tmp_path, fmt):
    X = np.random.default_rng(0).standard_normal((6, 3)).astype(np.float32)
    for norm in ("layer", "batch", None):
        model = fastnet.MLP([3, 8, 2], norm=norm, seed=1)
        model.save(tmp_path / f"m.{fmt}")
        again = fastnet.load(tmp_path / f"m.{fmt}")
        assert again.norm == norm
        assert again.predict_proba(X).tobytes() == model.predict_proba(X).tobytes()


def test_export_refuses_layer_norm_clearly():
    model = fastnet.MLP([3, 8, 2], norm="layer")
    with pytest.raises(ValueError, match="batch norm can be exported"):
        model.to_onnx()
