"""The hidden activations: one table, one entry per activation.

Everything fastnet needs to know about an activation outside its C kernel is in its
entry of :data:`ACTIVATIONS`: how ONNX and ``torch.nn`` write it (read by
:mod:`fastnet.export`), its NumPy form for the inference forward of
:mod:`fastnet.diagnostics`, and what a saturated or dead unit is (read by the
diagnostics and the health reports).

Adding an activation is one entry here; to train with it, also its kernel and its
``FN_ACT_*`` code in ``csrc/`` and that code under the same name in
``_network.ACTIVATIONS`` (what :func:`native` reads).  An activation without a
native code can still be exported to and read from ``torch.nn`` and ONNX.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import math
import typing

import numpy as np

__all__ = ["ACTIVATIONS", "Activation", "dead_units", "forward", "native", "trainable",
           "unit_stats"]


class Activation(typing.NamedTuple):
    """What fastnet knows about one hidden activation.

    Attributes
    ----------
    onnx : callable ``(graph, x, dtype, params) -> str``
        Adds the ONNX nodes that apply the activation to the tensor named
        `x` and returns the name of the result.
    torch : str
        The ``torch.nn`` module class.
    numpy : callable ``(z, **params) -> array``
        The activation in NumPy (the inference forward of the diagnostics).
    params : tuple of (name, default)
        The activation's parameters: attributes of the :class:`fastnet.MLP`
        and arguments of the ``torch.nn`` module, both under this name.
    fixed : tuple of (name, value)
        ``torch.nn`` module arguments that must have these values (GELU's
        ``approximate="none"``: fastnet's GELU is the erf form).
    saturated : callable ``a -> bool array`` or None
        Which outputs sit within 0.01 of a bound where the gradient vanishes.
    dead_units : bool
        Whether a unit that outputs exactly 0 for every row is dead (its
        gradient is 0 too, so it never recovers): ReLU's failure mode.
    """

    onnx: typing.Callable
    torch: str
    numpy: typing.Callable
    params: tuple = ()
    fixed: tuple = ()
    saturated: typing.Optional[typing.Callable] = None
    dead_units: bool = False

    def values(self, model):
        """The parameters' values on `model` (the default where it has none)."""
        return {name: float(getattr(model, name, default)) for name, default in self.params}


def forward(z, name, model=None):
    """The activation `name` applied to `z` in NumPy, with `model`'s values of its
    parameters (the defaults without a model)."""
    entry = ACTIVATIONS[name]
    return entry.numpy(z, **entry.values(model))


def unit_stats(a, name):
    """Mean, std, dead units and (where the activation saturates) the saturated share
    of one matrix `a` of activations (rows: samples, columns: units)."""
    dead = int((a == 0).all(axis=0).sum())
    stats = {"mean": float(a.mean()), "std": float(a.std()), "dead": dead,
             "dead_fraction": dead / a.shape[1]}
    saturated = ACTIVATIONS[name].saturated
    if saturated is not None:
        stats["saturated_fraction"] = float(np.mean(saturated(a)))
    return stats


def native():
    """``{name: native code}`` of the activations the C kernels train."""
    from fastnet import _network
    return _network.ACTIVATIONS


def dead_units(name):
    """Whether units of the activation `name` can die (see :class:`Activation`);
    False for a name not in the table."""
    entry = ACTIVATIONS.get(name)
    return entry is not None and entry.dead_units


def trainable():
    """The names of the activations :class:`fastnet.MLP` trains, in table order."""
    codes = native()
    return tuple(name for name in ACTIVATIONS if name in codes)


# ---- ONNX forms ----------------------------------------------------------------------------

def _unary(op_type):
    def emit(graph, x, dtype, params):
        return graph.op(op_type, [x])
    return emit


def _leaky_relu_onnx(graph, x, dtype, params):
    slope = params["negative_slope"]
    if dtype == np.float32:
        return graph.op("LeakyRelu", [x], alpha=slope)
    # ONNX Runtime's LeakyRelu is float32-only at most opsets: x < 0 ? slope * x : x
    negative = graph.op("Less", [x, graph.scalar(0.0, dtype)])
    return graph.op("Where", [negative, graph.op("Mul", [x, graph.scalar(slope, dtype)]), x])


def _gelu_onnx(graph, x, dtype, params):
    # the erf form, x / 2 * (1 + erf(x / sqrt(2))); Erf in float32 (ONNX Runtime has no
    # float64 Erf)
    scaled = graph.op("Mul", [x, graph.scalar(math.sqrt(0.5), dtype)])
    erf = graph.op("Erf", [graph.cast(scaled, np.float32, dtype)])
    one_plus = graph.op("Add", [graph.cast(erf, dtype, np.float32), graph.scalar(1.0, dtype)])
    return graph.op("Mul", [graph.op("Mul", [x, graph.scalar(0.5, dtype)]), one_plus])


def _silu_onnx(graph, x, dtype, params):
    return graph.op("Mul", [x, graph.op("Sigmoid", [x])])


def _identity_onnx(graph, x, dtype, params):
    return x


# ---- NumPy forms ---------------------------------------------------------------------------

def _sigmoid(z):
    """``1 / (1 + exp(-clip(z, -500, 500)))``: the article's form, clipped so that exp
    cannot overflow."""
    return 1.0 / (1.0 + np.exp(-np.clip(z, -500, 500)))


_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(z):
    return 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)).astype(z.dtype))


ACTIVATIONS = {
    "relu": Activation(_unary("Relu"), "ReLU", lambda z: np.maximum(0, z), dead_units=True),
    "tanh": Activation(_unary("Tanh"), "Tanh", np.tanh,
                       saturated=lambda a: np.abs(a) > 0.99),
    "sigmoid": Activation(_unary("Sigmoid"), "Sigmoid", _sigmoid,
                          saturated=lambda a: (a < 0.01) | (a > 0.99)),
    "leaky_relu": Activation(_leaky_relu_onnx, "LeakyReLU",
                             lambda z, negative_slope: np.where(z >= 0, z, negative_slope * z),
                             params=(("negative_slope", 0.01),)),
    "gelu": Activation(_gelu_onnx, "GELU", _gelu, fixed=(("approximate", "none"),)),
    "silu": Activation(_silu_onnx, "SiLU", lambda z: z * _sigmoid(z)),
    "identity": Activation(_identity_onnx, "Identity", lambda z: z),
}
