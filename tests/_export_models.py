"""Models and a NumPy reference forward shared by the export tests (tests/test_export_*.py)."""
import math

import numpy as np

import fastnet
from fastnet import _network

LEAKY_SLOPE = 0.01

# NumPy references of every activation in fastnet.export.ACTIVATIONS, float64
_erf = np.frompyfunc(math.erf, 1, 1)
REFERENCE_ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "sigmoid": lambda x: 1.0 / (1.0 + np.exp(-x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, LEAKY_SLOPE * x),
    "gelu": lambda x: 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64)),
    "silu": lambda x: x / (1.0 + np.exp(-x)),
    "identity": lambda x: x,
}
NATIVE = tuple(a for a in REFERENCE_ACTIVATIONS if a in _network.ACTIVATIONS)


class ModelView:
    """A model as the exporters see it, with some attributes replaced (an activation
    fastnet's kernels do not have yet, those another issue adds; a loss with no export):
    every other attribute is the wrapped MLP's.  The reference forward stands in for its
    predict."""

    def __init__(self, model, **replaced):
        self._model = model
        self.__dict__.update(replaced)

    def __getattr__(self, name):
        return getattr(self._model, name)


def random_model(sizes, *, activation="relu", batch_norm=True, loss="cross_entropy",
                 dtype="float32", dropout=0.2, targets_1d=False, seed=0):
    """An MLP with random weights and batch-norm statistics far from their initial 0 / 1
    (a :class:`ModelView` for an activation fastnet's kernels do not have yet)."""
    native = activation in _network.ACTIVATIONS
    model = fastnet.MLP(sizes, activation=activation if native else "relu",
                        batch_norm=batch_norm, dropout=dropout, dtype=dtype, seed=seed)
    model.loss = loss
    model._targets_1d = targets_1d
    rng = np.random.default_rng(seed)
    weights = []
    for name, w in zip(model.weight_names(), model.get_weights()):
        key = name.split(".")[1]
        if key == "w":
            value = rng.standard_normal(w.shape) * 1.5 / math.sqrt(w.shape[0])
        elif key == "gamma":
            value = rng.uniform(0.5, 1.5, w.shape)
        elif key == "running_var":
            value = rng.uniform(0.2, 2.0, w.shape)
        else:                              # b, beta, running_mean
            value = rng.normal(0.0, 0.4, w.shape)
        weights.append(value.astype(dtype))
    model.set_weights(weights)
    return model if native else ModelView(model, activation=activation)


def inputs(model, n=64, seed=1):
    return np.random.default_rng(seed).standard_normal(
        (n, model.layer_sizes[0])).astype(model.dtype)


def reference_logits(model, X):
    """The inference forward in float64 NumPy: Linear, batch norm with the running
    statistics, the activation (dropout is the identity), then the output Linear."""
    act = REFERENCE_ACTIVATIONS[model.activation]
    h = np.asarray(X, dtype=np.float64)
    for l, layer in enumerate(model.layers):
        h = h @ layer["w"].astype(np.float64)
        if "b" in layer:
            h = h + layer["b"]
        if l == model.n_layers - 1:
            break
        if "running_mean" in layer:
            h = (h - layer["running_mean"]) / np.sqrt(
                layer["running_var"].astype(np.float64) + model.bn_eps)
            h = h * layer["gamma"] + layer["beta"]
        h = act(h)
    return h


def reference_outputs(model, X):
    """What predict_proba (cross-entropy) or predict (regression) returns, in float64."""
    z = reference_logits(model, X)
    if model.loss == "cross_entropy":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return z.reshape(-1) if model._targets_1d else z


def fastnet_outputs(model, X):
    """predict_proba or predict, as an exported graph's output stands for."""
    return model.predict_proba(X) if model.loss == "cross_entropy" else model.predict(X)


def max_error(actual, expected):
    """max |actual - expected| relative to max(1, max |expected|)."""
    expected = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected))
                 / max(1.0, float(np.max(np.abs(expected)))))
