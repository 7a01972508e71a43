"""MLP.to_torch / MLP.from_torch.

Goal (issue 20): the Sequential's outputs equal fastnet's logits, and the round trip
(to_torch, from_torch) gives the same outputs within 1e-6.
"""
import numpy as np
import pytest
from _export_models import (
    NATIVE,
    REFERENCE_ACTIVATIONS,
    inputs,
    max_error,
    random_model,
    reference_logits,
)

import fastnet
from fastnet import _network, export

torch = pytest.importorskip("torch")
nn = torch.nn

# PyTorch against fastnet.  float64 checks the mapping (weights, statistics, eps)
# tightly.  In float32 the two agree to about 2e-7 of the logits' scale, but PyTorch's
# MKL products are not always that close: in about one run of 20 on this machine a
# module's first forward was 3.3e-5 off in exactly the rows of one MKL thread (fastnet
# 1.4e-7 from the float64 reference; PyTorch's own second forward 1.3e-7), hence 1e-4.
TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-12}


def torch_logits(module, X):
    with torch.no_grad():
        return module(torch.from_numpy(np.ascontiguousarray(X))).numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("batch_norm", [True, False])
@pytest.mark.parametrize("activation", NATIVE)
def test_sequential_gives_fastnets_logits_and_round_trips(activation, batch_norm, loss, dtype):
    model = random_model([12, 32, 16, 5], activation=activation, batch_norm=batch_norm,
                         loss=loss, dtype=dtype)
    X = inputs(model, 200)
    module = model.to_torch()
    assert not module.training
    logits = model._outputs(X)
    out = torch_logits(module, X)
    assert out.dtype == model.dtype
    assert max_error(out, logits) <= TOL[model.dtype]
    if loss == "cross_entropy":          # the softmax is the caller's, as documented
        proba = torch.softmax(torch.from_numpy(out), dim=1).numpy()
        assert np.max(np.abs(proba - model.predict_proba(X))) <= TOL[model.dtype]
    back = fastnet.MLP.from_torch(module, loss=loss)
    assert back.config() | {"seed": 0} == model.config() | {"seed": 0, "targets_1d": False}
    for mine, theirs in zip(back.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(back._outputs(X), logits)       # the round trip: exact


def test_sequential_layout():
    model = random_model([6, 8, 8, 3], dropout=0.25)
    model.bn_eps, model.bn_momentum = 1e-3, 0.05
    module = model.to_torch()
    assert [type(m) for m in module] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 2 \
        + [nn.Linear]
    linear, bn = module[0], module[1]
    assert linear.bias is None                  # batch norm's beta is the bias
    np.testing.assert_array_equal(linear.weight.detach().numpy(), model.layers[0]["w"].T)
    assert (bn.eps, bn.momentum) == (1e-3, 0.05)
    for attr, key in (("weight", "gamma"), ("bias", "beta"), ("running_mean", "running_mean"),
                      ("running_var", "running_var")):
        np.testing.assert_array_equal(getattr(bn, attr).detach().numpy(), model.layers[0][key])
    assert module[3].p == 0.25
    no_dropout = random_model([6, 8, 3], batch_norm=False, dropout=0.0).to_torch()
    assert [type(m) for m in no_dropout] == [nn.Linear, nn.ReLU, nn.Linear]
    assert no_dropout[0].bias is not None


@pytest.mark.parametrize("activation", sorted(REFERENCE_ACTIVATIONS))
def test_every_activation_entry_against_numpy(activation):
    """The table's torch modules, those of the activations coming next included."""
    model = random_model([10, 24, 24, 4], activation=activation, dtype="float64", seed=3)
    X = inputs(model, 128) * 3
    module = export.to_torch(model)                  # model may be a ModelView
    assert type(module[2]).__name__ == export.ACTIVATIONS[activation].torch
    assert max_error(torch_logits(module, X), reference_logits(model, X)) <= 1e-12
    if activation in _network.ACTIVATIONS:
        assert fastnet.MLP.from_torch(module).activation == activation
    else:      # read back, then refused by MLP until fastnet's kernels have it
        with pytest.raises(ValueError, match=f"layer 2 .*{activation}"):
            fastnet.MLP.from_torch(module)


def test_a_torch_trained_sequential():
    """A Sequential built and trained in PyTorch (a Linear bias before each batch norm,
    folded into the running mean) predicts the same in fastnet (compared in float64)."""
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32, eps=1e-4), nn.Tanh(),
                           nn.Dropout(0.1), nn.Linear(32, 16), nn.BatchNorm1d(16, eps=1e-4),
                           nn.Tanh(), nn.Dropout(0.1), nn.Linear(16, 3))
    X = torch.randn(256, 8) * 2 + 1
    y = (X[:, 0] > 1).long() + (X[:, 1] > 1).long()
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(module(X), y).backward()
        opt.step()
    module.eval()
    model = fastnet.MLP.from_torch(module)
    assert (model.activation, model.batch_norm, model.dropout, model.bn_eps, model.dtype) == \
        ("tanh", True, pytest.approx(0.1), 1e-4, np.float32)
    assert np.max(np.abs(model.predict_proba(X.numpy()) -
                         torch.softmax(module(X), dim=1).detach().numpy())) <= 1e-4
    module.double()
    model = fastnet.MLP.from_torch(module)
    X = X.double()
    expected = torch.softmax(module(X), dim=1).detach().numpy()
    assert np.max(np.abs(model.predict_proba(X.numpy()) - expected)) <= 1e-12


def test_regression_loss_and_single_linear():
    module = nn.Sequential(nn.Linear(4, 2)).double()
    model = fastnet.MLP.from_torch(module, loss="mse")
    X = np.random.default_rng(0).standard_normal((10, 4))
    assert model.dtype == np.float64 and model.layer_sizes == [4, 2]
    assert max_error(model.predict(X), torch_logits(module, X)) <= 1e-12


def _bn(n, **kw):
    return nn.BatchNorm1d(n, **kw)


@pytest.mark.parametrize("layers,where", [
    ([nn.ReLU(), nn.Linear(4, 2)], r"layer 0 \(ReLU\): expected a Linear"),
    ([nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2), nn.Softmax(dim=1)],
     r"layer 3 \(Softmax\)"),
    ([nn.Linear(4, 8), nn.Linear(8, 2)], r"layer 1 \(Linear\): expected an activation"),
    ([nn.Linear(4, 8), nn.ReLU(), nn.Linear(6, 2)], r"layer 2 \(Linear\): takes 6"),
    ([nn.Linear(4, 8), _bn(6), nn.ReLU(), nn.Linear(8, 2)], r"layer 1 \(BatchNorm1d\)"),
    ([nn.Linear(4, 8), _bn(8, track_running_stats=False), nn.ReLU(), nn.Linear(8, 2)],
     r"layer 1 \(BatchNorm1d\): has no running statistics"),
    ([nn.Linear(4, 8), _bn(8, momentum=None), nn.ReLU(), nn.Linear(8, 2)],
     r"layer 1 \(BatchNorm1d\): uses a cumulative"),
    ([nn.Linear(4, 8), nn.GELU(approximate="tanh"), nn.Linear(8, 2)],
     r"layer 1 \(GELU\): approximate='tanh'"),
    ([nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2)],
     r"layer 3 \(Tanh\): this block's activation differs"),
    ([nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.2), nn.Linear(8, 8), nn.ReLU(),
      nn.Linear(8, 2)], r"layer 4 \(ReLU\): this block's dropout rate differs"),
    ([nn.Linear(4, 8), _bn(8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)],
     r"layer 4 \(ReLU\): this block's batch norm differs"),
    ([nn.Linear(4, 8), nn.ReLU(), nn.Sequential(nn.Linear(8, 2))], r"layer 2 \(Sequential\)"),
    ([nn.Linear(4, 8), _bn(8), nn.ReLU()], r"layer 2 \(ReLU\): the network must end"),
    ([], "empty"),
])
def test_other_modules_are_refused_naming_the_layer(layers, where):
    with pytest.raises(ValueError, match=where):
        fastnet.MLP.from_torch(nn.Sequential(*layers))


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="Sequential"):
        fastnet.MLP.from_torch(nn.Linear(3, 2))
    with pytest.raises(TypeError, match="float32 or all float64"):
        fastnet.MLP.from_torch(nn.Sequential(nn.Linear(3, 4), nn.ReLU(),
                                             nn.Linear(4, 2).double()))
    with pytest.raises(TypeError, match="float32 or all float64"):
        fastnet.MLP.from_torch(nn.Sequential(nn.Linear(3, 2).half()))
    with pytest.raises(ValueError, match="loss"):
        fastnet.MLP.from_torch(nn.Sequential(nn.Linear(3, 2)), loss="hinge")


def test_negative_running_variance_is_refused():
    module = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    with torch.no_grad():
        module[1].running_var[2] = -1.0
    with pytest.raises(ValueError, match="layer0.running_var holds negative"):
        fastnet.MLP.from_torch(module)
