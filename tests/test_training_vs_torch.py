"""A whole fastnet training step (forward, loss, backward, optimizer update) against PyTorch.

The torch twin of an ``MLP`` gets the same initial weights: hidden blocks are
``Linear(bias=False) -> BatchNorm1d(eps=1e-5, momentum=0.1) -> act`` with
batch norm, ``Linear(bias=True) -> act`` without; the last layer is a
``Linear(bias=True)``.  fastnet stores W as (fan_in, fan_out), torch's
``Linear.weight`` is its transpose.  Dropout is off, so both sides compute
the same function; the comparison covers the updated weights, the batch-norm
running statistics, the logged loss and gradient norm, and ``MLP.gradients``
(also against central finite differences in float64).
"""
import numpy as np
import pytest
import torch

import fastnet
from fastnet import optim

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_thread():
    """One fastnet thread: the machine is shared, and an oversubscribed OpenMP team
    spends its time in barriers (1 vs 2 threads is covered by the determinism tests)."""
    with fastnet.threads(1):
        yield

TORCH_DTYPE = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
# Tolerance of a comparison: |a - e| <= RTOL * (|e| + max|e|) -- float32 rounding of
# different summation orders through a few layers, or float64 rounding.
RTOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-11}
# torch module of a model's activation
ACT = {"relu": lambda m: torch.nn.ReLU(), "tanh": lambda m: torch.nn.Tanh(),
       "sigmoid": lambda m: torch.nn.Sigmoid(),
       "leaky_relu": lambda m: torch.nn.LeakyReLU(m.negative_slope),
       "gelu": lambda m: torch.nn.GELU(approximate="none"), "silu": lambda m: torch.nn.SiLU(),
       "identity": lambda m: torch.nn.Identity()}
# activations under test: name, or name:negative_slope
ACTIVATIONS = ["relu", "tanh", "sigmoid", "leaky_relu", "leaky_relu:0.3", "gelu", "silu",
               "identity"]


def sizes_for(activation, batch_norm):
    """SIZES, but one hidden layer for identity with batch norm: there a hidden layer's
    beta shifts the next batch norm's input by a constant, which it subtracts again, so
    its gradient is 0 up to rounding (which Adam's update would then magnify)."""
    return SIZES[:2] + SIZES[-1:] if activation == "identity" and batch_norm else SIZES


def activation_options(spec):
    """MLP keywords of an ACTIVATIONS entry."""
    name, _, slope = spec.partition(":")
    return {"activation": name, **({"negative_slope": float(slope)} if slope else {})}

SIZES = [6, 9, 7, 4]
N = 24


def assert_close(actual, expected, dtype, what, rtol=None):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    assert a.shape == e.shape, f"{what}: shape {a.shape} != {e.shape}"
    rtol = RTOL[np.dtype(dtype)] if rtol is None else rtol
    scale = np.max(np.abs(e)) if e.size else 0.0
    err = np.abs(a - e)
    tol = rtol * (np.abs(e) + scale)
    if np.any(err > tol):
        i = np.unravel_index(np.argmax(err / np.maximum(tol, 1e-300)), e.shape)
        raise AssertionError(f"{what}: worst at {i}: {a[i]!r} vs {e[i]!r} "
                             f"(err {err[i]:.3g}, tol {tol[i]:.3g}, "
                             f"{int(np.sum(err > tol))}/{e.size} out)")


def data(loss, n=N, sizes=SIZES, seed=0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        y = rng.integers(0, sizes[-1], n)
        y[: sizes[-1]] = np.arange(sizes[-1])          # every class present
    else:
        y = rng.standard_normal((n, sizes[-1])).astype(dtype)
    return X, y


def make_model(sizes, activation, batch_norm, dtype, seed=1):
    model = fastnet.MLP(sizes, batch_norm=batch_norm, dtype=dtype, seed=seed,
                        **activation_options(activation))
    # move gamma, beta and the running statistics off their trivial initial values
    rng = np.random.default_rng(seed + 100)
    weights = model.get_weights()
    for name, w in zip(model.weight_names(), weights):
        if name.endswith((".gamma", ".running_var")):
            w[...] = rng.uniform(0.5, 1.5, w.shape)
        elif name.endswith((".beta", ".b", ".running_mean")):
            w[...] = rng.uniform(-0.3, 0.3, w.shape)
    model.set_weights(weights)
    return model


def torch_twin(model):
    """A torch.nn.Sequential computing the same function with the same weights."""
    dtype = TORCH_DTYPE[model.dtype]
    weights = iter(model.get_weights())
    mods = []
    n_layers = len(model.layer_sizes) - 1
    for l in range(n_layers):
        fan_in, fan_out = model.layer_sizes[l], model.layer_sizes[l + 1]
        last = l == n_layers - 1
        bn = model.batch_norm and not last
        lin = torch.nn.Linear(fan_in, fan_out, bias=not bn, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(next(weights).T.copy()))
            if not bn:
                lin.bias.copy_(torch.from_numpy(next(weights)))
        mods.append(lin)
        if bn:
            norm = torch.nn.BatchNorm1d(fan_out, eps=1e-5, momentum=0.1, dtype=dtype)
            with torch.no_grad():
                norm.weight.copy_(torch.from_numpy(next(weights)))
                norm.bias.copy_(torch.from_numpy(next(weights)))
                norm.running_mean.copy_(torch.from_numpy(next(weights)))
                norm.running_var.copy_(torch.from_numpy(next(weights)))
            mods.append(norm)
        if not last:
            mods.append(ACT[model.activation](model))
    return torch.nn.Sequential(*mods)


def torch_weights(net):
    """The torch twin's arrays in the order of MLP.get_weights."""
    out = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            out.append(m.weight.detach().numpy().T.copy())
            if m.bias is not None:
                out.append(m.bias.detach().numpy().copy())
        elif isinstance(m, torch.nn.BatchNorm1d):
            out += [m.weight.detach().numpy().copy(), m.bias.detach().numpy().copy(),
                    m.running_mean.numpy().copy(), m.running_var.numpy().copy()]
    return out


def torch_loss(net, X, y, loss, sample_weight=None):
    out = net(torch.from_numpy(X))
    if loss == "cross_entropy":
        per_row = torch.nn.functional.cross_entropy(out, torch.from_numpy(y), reduction="none")
    else:
        per_row = ((out - torch.from_numpy(y)) ** 2).mean(dim=1)
    if sample_weight is None:
        return per_row.mean()
    w = torch.from_numpy(sample_weight)
    return (per_row * w).sum() / w.sum()


OPTIMIZERS = {
    "sgd-momentum": (lambda: optim.SGD(lr=0.1, momentum=0.9),
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "sgd-nesterov-wd": (lambda: optim.SGD(lr=0.05, momentum=0.8, nesterov=True,
                                          weight_decay=1e-2),
                        lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True,
                                                  weight_decay=1e-2)),
    "adam": (lambda: optim.Adam(lr=1e-2, weight_decay=1e-3),
             lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3)),
    "adamw": (lambda: optim.AdamW(lr=1e-2, weight_decay=0.1),
              lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1)),
}


def torch_train(net, opt, X, y, loss, batch_size, epochs, sample_weight=None):
    """Mini-batches in order (shuffle=False); returns per-step (loss, grad norm)."""
    net.train()
    steps = []
    for _ in range(epochs):
        for s in range(0, X.shape[0], batch_size):
            sl = slice(s, s + batch_size)
            opt.zero_grad()
            sw = None if sample_weight is None else sample_weight[sl]
            value = torch_loss(net, X[sl], y[sl], loss, sw)
            value.backward()
            norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in net.parameters()))
            opt.step()
            steps.append((value.item(), norm.item()))
    return steps


def compare_weights(model, net, dtype, what):
    names = model.weight_names()
    for name, ours, ref in zip(names, model.get_weights(), torch_weights(net)):
        assert ours.dtype == dtype
        assert_close(ours, ref, dtype, f"{what}: {name}")


# ---------------------------------------------------------------------------
# one full step
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_one_step_matches_torch(loss, activation, batch_norm, opt_name, dtype):
    dtype = np.dtype(dtype)
    sizes = sizes_for(activation, batch_norm)
    X, y = data(loss, dtype=dtype, sizes=sizes)
    model = make_model(sizes, activation, batch_norm, dtype)
    net = torch_twin(model)
    ours_opt, torch_opt = OPTIMIZERS[opt_name]
    ref = torch_train(net, torch_opt(net.parameters()), X, y, loss, N, 1)
    hist = model.fit(X, y, epochs=1, batch_size=N, shuffle=False, verbose=0, loss=loss,
                     optimizer=ours_opt())
    compare_weights(model, net, dtype, f"{loss}/{activation}/{opt_name}")
    assert_close(hist.history["loss"][0], ref[0][0], dtype, "loss")
    assert_close(hist.history["grad_norm"][0], ref[0][1], dtype, "grad_norm")
    assert model.optimizer.t == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("opt_name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_several_steps_match_torch(loss, batch_norm, opt_name, dtype):
    """Two epochs of three mini-batches of 8 in order: momentum and moments carry over."""
    dtype = np.dtype(dtype)
    X, y = data(loss, dtype=dtype, seed=2)
    model = make_model(SIZES, "tanh" if loss == "mse" else "relu", batch_norm, dtype, seed=3)
    net = torch_twin(model)
    ours_opt, torch_opt = OPTIMIZERS[opt_name]
    ref = torch_train(net, torch_opt(net.parameters()), X, y, loss, 8, 2)
    hist = model.fit(X, y, epochs=2, batch_size=8, shuffle=False, verbose=0, loss=loss,
                     optimizer=ours_opt())
    # a few steps of Adam amplify float32 rounding a little (m / sqrt(v))
    rtol = 1e-4 if dtype == np.float32 else None
    for name, ours, r in zip(model.weight_names(), model.get_weights(), torch_weights(net)):
        assert_close(ours, r, dtype, f"{opt_name}: {name}", rtol=rtol)
    assert model.optimizer.t == 6
    for epoch in range(2):
        losses = [ref[3 * epoch + b][0] for b in range(3)]
        norms = [ref[3 * epoch + b][1] for b in range(3)]
        assert_close(hist.history["loss"][epoch], np.mean(losses), dtype, "loss", rtol=rtol)
        assert_close(hist.history["grad_norm"][epoch], np.mean(norms), dtype, "grad_norm",
                     rtol=rtol)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_sample_weight_step_matches_torch(loss):
    dtype = np.dtype(np.float64)
    X, y = data(loss, dtype=dtype, seed=5)
    sw = np.random.default_rng(6).uniform(0.0, 3.0, N)
    model = make_model(SIZES, "relu", True, dtype, seed=7)
    net = torch_twin(model)
    torch_train(net, torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9), X, y, loss, 12,
                1, sample_weight=sw)
    model.fit(X, y, epochs=1, batch_size=12, shuffle=False, verbose=0, loss=loss,
              optimizer=optim.SGD(lr=0.1, momentum=0.9), sample_weight=sw)
    compare_weights(model, net, dtype, f"sample_weight/{loss}")


def test_grad_clip_step_matches_torch():
    """Clipping the global norm to c scales every gradient by c / (norm + 1e-6), as
    torch.nn.utils.clip_grad_norm_ does."""
    dtype = np.dtype(np.float64)
    X, y = data("cross_entropy", dtype=dtype, seed=8)
    model = make_model(SIZES, "relu", True, dtype, seed=9)
    net = torch_twin(model)
    opt = torch.optim.SGD(net.parameters(), lr=0.5, momentum=0.9)
    norms = []
    for s in range(0, N, 12):
        opt.zero_grad()
        torch_loss(net, X[s:s + 12], y[s:s + 12], "cross_entropy").backward()
        norms.append(torch.nn.utils.clip_grad_norm_(net.parameters(), 0.05).item())
        opt.step()
    assert min(norms) > 0.05          # clipping was active on every step
    hist = model.fit(X, y, epochs=1, batch_size=12, shuffle=False, verbose=0,
                     optimizer=optim.SGD(lr=0.5, momentum=0.9), grad_clip=0.05)
    compare_weights(model, net, dtype, "grad_clip")
    # the log holds the norm before clipping
    assert_close(hist.history["grad_norm"][0], np.mean(norms), dtype, "grad_norm")


def test_regression_single_output_matches_torch():
    dtype = np.dtype(np.float32)
    sizes = [5, 8, 1]
    rng = np.random.default_rng(11)
    X = rng.standard_normal((20, 5)).astype(dtype)
    y = rng.standard_normal(20).astype(dtype)
    model = make_model(sizes, "relu", True, dtype, seed=12)
    net = torch_twin(model)
    torch_train(net, torch.optim.Adam(net.parameters(), lr=1e-2), X, y.reshape(-1, 1), "mse",
                20, 1)
    model.fit(X, y, epochs=1, batch_size=20, shuffle=False, verbose=0, loss="mse",
              optimizer="adam", lr=1e-2)
    compare_weights(model, net, dtype, "mse 1-D")
    net.eval()
    with torch.no_grad():
        expected = net(torch.from_numpy(X)).numpy().reshape(-1)
    pred = model.predict(X)
    assert pred.shape == (20,)
    assert_close(pred, expected, dtype, "predict (eval mode)")


@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
def test_inference_matches_torch_eval(batch_norm):
    dtype = np.dtype(np.float32)
    X, y = data("cross_entropy", n=50, dtype=dtype, seed=13)
    model = make_model(SIZES, "sigmoid", batch_norm, dtype, seed=14)
    net = torch_twin(model).eval()
    with torch.no_grad():
        logits = net(torch.from_numpy(X))
        proba = torch.softmax(logits, dim=1).numpy()
        ref_loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).item()
    assert_close(model.predict_proba(X), proba, dtype, "predict_proba")
    np.testing.assert_array_equal(model.predict(X), proba.argmax(axis=1))
    ev = model.evaluate(X, y)
    assert_close(ev["loss"], ref_loss, dtype, "evaluate loss")
    assert ev["accuracy"] == pytest.approx(np.mean(proba.argmax(axis=1) == y))


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------

def _torch_grads(net):
    out = []
    for m in net:
        if isinstance(m, torch.nn.Linear):
            layer = {"w": m.weight.grad.numpy().T.copy()}
            if m.bias is not None:
                layer["b"] = m.bias.grad.numpy().copy()
            out.append(layer)
        elif isinstance(m, torch.nn.BatchNorm1d):
            out[-1]["gamma"] = m.weight.grad.numpy().copy()
            out[-1]["beta"] = m.bias.grad.numpy().copy()
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_gradients_match_autograd(loss, activation, batch_norm, dtype):
    dtype = np.dtype(dtype)
    sizes = sizes_for(activation, batch_norm)
    X, y = data(loss, dtype=dtype, seed=15, sizes=sizes)
    model = make_model(sizes, activation, batch_norm, dtype, seed=16)
    before = model.get_weights()
    net = torch_twin(model).train()
    value = torch_loss(net, X, y, loss)
    value.backward()
    ref = _torch_grads(net)
    ours_loss, grads = model.gradients(X, y, loss=loss)
    assert_close(ours_loss, value.item(), dtype, "loss")
    assert len(grads) == len(ref)
    for l, (g, r) in enumerate(zip(grads, ref)):
        assert sorted(g) == sorted(r), f"layer {l}: {sorted(g)} vs {sorted(r)}"
        for key in r:
            assert g[key].dtype == dtype
            assert_close(g[key], r[key], dtype, f"layer {l} d{key}")
    # no update, and the running statistics are left alone
    for name, a, b in zip(model.weight_names(), model.get_weights(), before):
        assert a.tobytes() == b.tobytes(), f"gradients() changed {name}"


@pytest.mark.parametrize("dropout", [0.0, 0.4], ids=["nodrop", "dropout"])
@pytest.mark.parametrize("batch_norm", [True, False], ids=["bn", "nobn"])
@pytest.mark.parametrize("activation, loss", [("relu", "cross_entropy"), ("tanh", "mse"),
                                              ("sigmoid", "cross_entropy")])
def test_gradients_match_finite_differences(activation, loss, batch_norm, dropout):
    """float64: every parameter's gradient against a central difference of the loss.

    With dropout the mask is a function of (seed, layer, step, element) only, so for
    a fixed seed the loss is a smooth function of the parameters too."""
    sizes = [4, 5, 3]
    X, y = data(loss, n=7, sizes=sizes, dtype=np.float64, seed=17)
    model = make_model(sizes, activation, batch_norm, np.float64, seed=18)
    if dropout:
        model = _with_dropout(model, dropout)
    _, grads = model.gradients(X, y, loss=loss)
    analytic = np.concatenate([g[k].reshape(-1) for g in grads for k in ("w", "b", "gamma", "beta")
                               if k in g])
    # the flat gradient array holds the same values in the same order as the parameters
    np.testing.assert_array_equal(analytic, model.grads)
    eps = 1e-6
    numeric = np.empty_like(analytic)
    flat = model.params
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up, _ = model.gradients(X, y, loss=loss)
        flat[i] = keep - eps
        down, _ = model.gradients(X, y, loss=loss)
        flat[i] = keep
        numeric[i] = (up - down) / (2 * eps)
    # central differences: truncation O(eps^2), round-off ~1e-16/eps
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6,
                               atol=1e-7 * max(1.0, np.max(np.abs(numeric))))


def _with_dropout(model, rate):
    other = fastnet.MLP(model.layer_sizes, activation=model.activation,
                        batch_norm=model.batch_norm, dropout=rate, dtype=model.dtype,
                        seed=model.seed)
    other.set_weights(model.get_weights())
    return other


def test_dropout_gradients_use_one_mask_per_seed():
    sizes = [4, 6, 3]
    X, y = data("cross_entropy", n=8, sizes=sizes, dtype=np.float64, seed=19)
    model = _with_dropout(make_model(sizes, "relu", False, np.float64, seed=20), 0.5)
    a = model.gradients(X, y, seed=1)
    b = model.gradients(X, y, seed=1)
    c = model.gradients(X, y, seed=2)
    assert a[0] == b[0] and a[0] != c[0]
    plain = make_model(sizes, "relu", False, np.float64, seed=20)
    assert plain.gradients(X, y)[0] != a[0]
