"""Train with fastnet, serve anywhere: ONNX, PyTorch and safetensors.

Three ways out of fastnet, each behind an optional package that is imported
only when used:

* **ONNX** (``pip install 'fastnet[onnx]'``): :meth:`fastnet.MLP.to_onnx`
  writes the inference network for ONNX Runtime (C++, C#, Java, the browser),
  and ``skl2onnx.to_onnx(estimator, X[:1])`` converts the
  :mod:`fastnet.sklearn` estimators, alone or at the end of a Pipeline.
* **PyTorch**: :meth:`fastnet.MLP.to_torch` gives an ``nn.Sequential``;
  :meth:`fastnet.MLP.from_torch` reads one back.
* **safetensors**: ``model.save("m.safetensors")`` and :func:`fastnet.load`
  (no dependency: :mod:`fastnet._safetensors` implements the format).

On the command line: ``fastnet export MODEL --onnx OUT --torch OUT
--safetensors OUT``.

ONNX graphs
-----------
One input ``"input"`` of shape ``(N, n_features)`` (``N`` dynamic) in the
model's dtype, and one output: ``"probabilities"`` ``(N, n_classes)`` (what
``predict_proba`` returns: softmax included) for cross-entropy, or
``"predictions"`` (what ``predict`` returns: ``(N,)`` for a model trained
on 1-D targets, else ``(N, n_outputs)``) for regression.  A hidden layer is
a ``Gemm`` then the activation; dropout is the identity at inference and
is left out.

Batch norm is folded into the linear layer before it by default: with
``s = gamma / sqrt(running_var + eps)`` (computed in float64), the layer
becomes ``x @ (W * s) + (beta - running_mean * s)``, rounded once to the
model's dtype.  That changes where the rounding happens (one product
instead of a product, a shift and a scale), not what is computed, and it
agrees with fastnet's own ``predict`` as closely as a ``BatchNormalization``
node does (measured on float32 models; see the tests).
``fold_batch_norm=False`` writes ``MatMul`` + ``BatchNormalization``
instead, with the running statistics as they are, for tools that want to
see them.

The default opset is 17 (ONNX 1.12, 2022): every operator used has had its
current definition since opset 13, the oldest accepted, so 17 is old enough
for runtimes of the last years and new enough that nothing is emulated.
Newer opsets (up to what the installed ``onnx`` knows) can be asked for.
The model's IR version is the lowest that opset allows.

Activations are a table (:data:`ACTIVATIONS`, defined in ``fastnet._activations``):
each entry says how the activation is written in ONNX and in ``torch.nn``.  ONNX Runtime computes
``Erf`` in float32 only, so a float64 model's GELU evaluates erf in
float32 (relative error about 1e-7); everything else keeps the model's
dtype.
"""
import importlib.util
import json
import os
import sys
import typing
import warnings

import numpy as np

from fastnet import _safetensors
from fastnet._activations import ACTIVATIONS, Activation
from fastnet._io import atomic_file, decode_json

__all__ = ["ACTIVATIONS", "Activation", "DEFAULT_OPSET", "MIN_OPSET", "to_onnx", "to_torch",
           "from_torch", "file_format", "save_safetensors", "load_safetensors",
           "register_skl2onnx", "register_skl2onnx_when_imported", "add_export_parser", "run"]

DEFAULT_OPSET = 17
MIN_OPSET = 13
_INPUT = "input"


def _require(module, feature, extra):
    """Import an optional package, or say how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{feature} needs the {module} package: pip install '{extra}'") \
            from exc


# ---- activations -------------------------------------------------------------------------

def _activation(model):
    try:
        return ACTIVATIONS[model.activation]
    except KeyError:
        raise ValueError(f"cannot export activation {model.activation!r}: known are "
                         f"{', '.join(ACTIVATIONS)}") from None


def _hidden_norm(model, l):
    """'batch' or None for hidden layer `l` (another normalisation is refused)."""
    layer = model.layers[l]
    if "running_mean" in layer:
        return "batch"
    if "gamma" in layer:
        raise ValueError(f"layer{l} has a normalisation without running statistics; only "
                         "batch norm can be exported")
    return None


# ---- ONNX graphs ---------------------------------------------------------------------------

class _Graph:
    """Where the network's nodes go.  Subclasses name values and store
    initializers and nodes; this class adds the shared helpers."""

    def __init__(self):
        self._scalars = {}

    def constant(self, hint, array):
        """Name of a new initializer holding `array`."""
        raise NotImplementedError

    def op(self, op_type, inputs, *, out=None, **attrs):
        """Add one node; returns its output's name (`out` if given)."""
        raise NotImplementedError

    def scalar(self, value, dtype):
        """A 0-d initializer, shared by every node that uses the same value."""
        key = (float(value), np.dtype(dtype).name)
        if key not in self._scalars:
            self._scalars[key] = self.constant("c", np.array(value, dtype=dtype))
        return self._scalars[key]

    def cast(self, x, dtype, source=None, *, out=None):
        """`x` as `dtype`: a Cast node, or `x` itself when `source` (the dtype
        `x` has, when known) already is `dtype` and no `out` name is asked."""
        from onnx import helper
        if source is not None and np.dtype(source) == np.dtype(dtype):
            return x if out is None else self.op("Identity", [x], out=out)
        return self.op("Cast", [x], out=out, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


class _HelperGraph(_Graph):
    """Nodes and initializers for ``onnx.helper.make_graph``."""

    def __init__(self, reserved=()):
        super().__init__()
        self.nodes, self.initializers, self._names = [], [], set(reserved)

    def _unique(self, hint):
        name, k = hint, 1
        while name in self._names:
            name, k = f"{hint}_{k}", k + 1
        self._names.add(name)
        return name

    def constant(self, hint, array):
        from onnx import numpy_helper
        name = self._unique(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def op(self, op_type, inputs, *, out=None, **attrs):
        from onnx import helper
        out = self._unique(op_type.lower() if out is None else out)
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=f"{out}_node",
                                           **attrs))
        return out


class _Skl2onnxGraph(_Graph):
    """Nodes and initializers in a skl2onnx converter's container."""

    def __init__(self, scope, container):
        super().__init__()
        self._scope, self._container = scope, container

    def constant(self, hint, array):
        from onnx import TensorProto, numpy_helper
        name = self._scope.get_unique_variable_name(hint)
        array = np.asarray(array)
        if array.dtype.kind in "OSU":
            self._container.add_initializer(name, TensorProto.STRING, list(array.shape),
                                            [str(v).encode() for v in array.ravel()])
        else:
            self._container.add_initializer(name, None, list(array.shape),
                                            numpy_helper.from_array(array, name))
        return name

    def op(self, op_type, inputs, *, out=None, **attrs):
        out = self._scope.get_unique_variable_name(op_type.lower()) if out is None else out
        self._container.add_node(op_type, list(inputs), [out],
                                 name=self._scope.get_unique_operator_name(op_type), **attrs)
        return out


def _folded_batch_norm(model, l):
    """Weights and bias of hidden layer `l` with its batch norm folded in (float64 math,
    one rounding to the model's dtype)."""
    layer = model.layers[l]
    scale = layer["gamma"].astype(np.float64) / np.sqrt(
        layer["running_var"].astype(np.float64) + model.bn_eps)
    w = layer["w"].astype(np.float64) * scale
    b = layer["beta"].astype(np.float64) - layer["running_mean"].astype(np.float64) * scale
    return w.astype(model.dtype), b.astype(model.dtype)


def _emit_network(graph, model, x, *, fold_batch_norm=True):
    """Add `model`'s inference network applied to the tensor named `x` (in the model's
    dtype) to `graph`; returns the name of the logits."""
    activation = _activation(model)
    params = activation.values(model)
    for l, layer in enumerate(model.layers):
        name = f"layer{l}"
        hidden = l < model.n_layers - 1
        norm = _hidden_norm(model, l) if hidden else None
        if norm == "batch" and not fold_batch_norm:
            x = graph.op("MatMul", [x, graph.constant(f"{name}.w", layer["w"])])
            x = graph.op("BatchNormalization",
                         [x] + [graph.constant(f"{name}.{key}", layer[key]) for key in
                                ("gamma", "beta", "running_mean", "running_var")],
                         epsilon=model.bn_eps)
        else:
            w, b = _folded_batch_norm(model, l) if norm == "batch" else (layer["w"], layer["b"])
            x = graph.op("Gemm", [x, graph.constant(f"{name}.w", w),
                                  graph.constant(f"{name}.b", b)])
        if hidden:
            x = activation.onnx(graph, x, model.dtype, params)
    return x


def _probabilities_head(graph, model, logits):
    return graph.op("Softmax", [logits], out="probabilities", axis=1), \
        ["N", model.layer_sizes[-1]]


def _predictions_head(graph, model, logits):
    if model._targets_1d and model.layer_sizes[-1] == 1:
        flat = graph.constant("flat_shape", np.array([-1], dtype=np.int64))
        return graph.op("Reshape", [logits, flat], out="predictions"), ["N"]
    return graph.op("Identity", [logits], out="predictions"), ["N", model.layer_sizes[-1]]


# what the graph outputs, per loss: what predict_proba (classification) or predict returns
_HEADS = {"cross_entropy": _probabilities_head, "mse": _predictions_head}


def _check_opset(opset, onnx):
    newest = onnx.defs.onnx_opset_version()
    if opset is None:
        return min(DEFAULT_OPSET, newest)
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)):
        raise TypeError(f"opset must be an int, got {opset!r}")
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an int in [{MIN_OPSET}, {newest}] (the installed "
                         f"onnx {onnx.__version__} knows up to {newest}), got {opset!r}")
    return int(opset)


def to_onnx(model, path=None, *, opset=None, fold_batch_norm=True):
    """The ONNX model of `model`'s inference (see :meth:`fastnet.MLP.to_onnx`)."""
    onnx = _require("onnx", "MLP.to_onnx", "fastnet[onnx]")
    from onnx import helper

    from fastnet import __version__
    opset = _check_opset(opset, onnx)
    head = _HEADS.get(model.loss)
    if head is None:
        raise ValueError(f"cannot export a model trained with loss={model.loss!r}: known are "
                         f"{', '.join(_HEADS)}")
    graph = _HelperGraph(reserved=[_INPUT])
    output, shape = head(graph, model, _emit_network(graph, model, _INPUT,
                                                    fold_batch_norm=fold_batch_norm))
    element = helper.np_dtype_to_tensor_dtype(model.dtype)
    proto = helper.make_model(
        helper.make_graph(
            graph.nodes, "fastnet_mlp",
            [helper.make_tensor_value_info(_INPUT, element, ["N", model.layer_sizes[0]])],
            [helper.make_tensor_value_info(output, element, shape)],
            initializer=graph.initializers),
        opset_imports=[helper.make_opsetid("", opset)], producer_name="fastnet",
        producer_version=__version__,
        doc_string=f"fastnet {model!r}, loss {model.loss!r}: {output} of input")
    proto.ir_version = helper.find_min_ir_version_for(list(proto.opset_import))
    helper.set_model_props(proto, {"fastnet_config": json.dumps(model.config())})
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()
    if path is None:
        return data
    with atomic_file(path) as fh:
        fh.write(data)
    return None


# ---- skl2onnx ----------------------------------------------------------------------------------

def _fitted_model(estimator):
    model = getattr(estimator, "model_", None)
    if model is None:
        raise ValueError(f"this {type(estimator).__name__} is not fitted yet; call fit before "
                         "converting it to ONNX")
    return model


def _skl2onnx_network(scope, operator, container):
    """(graph, fastnet model, logits) of the estimator behind `operator`."""
    from skl2onnx.common.data_types import guess_numpy_type
    if container.target_opset is not None and container.target_opset < MIN_OPSET:
        raise ValueError(f"fastnet's estimators need target_opset >= {MIN_OPSET}, got "
                         f"{container.target_opset}")
    model = _fitted_model(operator.raw_operator)
    graph = _Skl2onnxGraph(scope, container)
    x = graph.cast(operator.inputs[0].full_name, model.dtype,
                   guess_numpy_type(operator.inputs[0].type))
    return graph, model, _emit_network(graph, model, x)


def _onnx_class_labels(estimator, nocl):
    """The label of each output column as the classifier's ONNX label tensor holds it:
    strings, else int64 (scikit-learn takes only integral numbers as class labels)."""
    classes = np.asarray(estimator.classes_)
    if nocl:
        return np.arange(len(classes), dtype=np.int64)
    return classes.astype(str) if classes.dtype.kind in "OSU" else classes.astype(np.int64)


def _convert_classifier(scope, operator, container):
    """skl2onnx converter of fastnet.sklearn.MLPClassifier: label, probabilities."""
    from skl2onnx.common.data_types import guess_numpy_type
    graph, model, logits = _skl2onnx_network(scope, operator, container)
    label, probabilities = operator.outputs[:2]
    proba = graph.op("Softmax", [logits], axis=1)
    proba = graph.cast(proba, guess_numpy_type(probabilities.type), model.dtype,
                       out=probabilities.full_name)
    index = graph.op("ArgMax", [proba], axis=1, keepdims=0)
    nocl = container.get_options(operator.raw_operator, dict(nocl=False))["nocl"]
    classes = graph.constant("classes", _onnx_class_labels(operator.raw_operator, nocl))
    graph.op("Gather", [classes, index], out=label.full_name, axis=0)


def _convert_regressor(scope, operator, container):
    """skl2onnx converter of fastnet.sklearn.MLPRegressor: predictions, target scaling
    undone (in the output's dtype, like predict's float64 when the input is double)."""
    from skl2onnx.common.data_types import guess_numpy_type
    graph, model, out = _skl2onnx_network(scope, operator, container)
    estimator, variable = operator.raw_operator, operator.outputs[0]
    dtype = guess_numpy_type(variable.type)
    out = graph.cast(out, dtype, model.dtype)
    out = graph.op("Mul", [out, graph.constant("y_scale", estimator.y_scale_.astype(dtype))])
    graph.op("Add", [out, graph.constant("y_mean", estimator.y_mean_.astype(dtype))],
             out=variable.full_name)


def _classifier_shapes(operator):
    """label (N,) and probabilities (N, n_classes), as skl2onnx's classifiers; the
    probabilities are float32 when a ZipMap follows (ONNX's ZipMap takes float only, so
    a double input works, which it does not with scikit-learn's own converter)."""
    from skl2onnx.common.data_types import FloatTensorType
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
    calculate_linear_classifier_output_shapes(operator)
    options = operator.scope_inst.get_options(operator.raw_operator, dict(zipmap=True))
    if options["zipmap"] is not False:
        operator.outputs[1].type = FloatTensorType(operator.outputs[1].type.shape)


def _regressor_shapes(operator):
    """(N, n_outputs) in the input's float type, as skl2onnx's regressors (2-D even for
    1-D targets)."""
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType
    from skl2onnx.common.utils import check_input_and_output_numbers
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    kind = type(operator.inputs[0].type)
    if kind not in (FloatTensorType, DoubleTensorType):
        kind = FloatTensorType
    operator.outputs[0].type = kind([operator.inputs[0].get_first_dimension(),
                                     _fitted_model(operator.raw_operator).layer_sizes[-1]])


def register_skl2onnx(classifier, regressor):
    """Register the converters of the two estimator classes with skl2onnx (imported)."""
    from skl2onnx import update_registered_converter
    update_registered_converter(
        classifier, "FastnetMLPClassifier", _classifier_shapes, _convert_classifier,
        options={"zipmap": [True, False, "columns"], "nocl": [True, False],
                 "output_class_labels": [False, True]})
    update_registered_converter(regressor, "FastnetMLPRegressor", _regressor_shapes,
                                _convert_regressor)


def register_skl2onnx_when_imported(classifier, regressor):
    """Register the converters now if skl2onnx is imported, else as soon as it is.

    fastnet does not import skl2onnx (it takes about a second); a one-shot
    import hook runs :func:`register_skl2onnx` right after ``import skl2onnx``
    finishes, so ``skl2onnx.to_onnx(estimator, X)`` works with no extra call.
    """
    def register():
        try:
            register_skl2onnx(classifier, regressor)
        except Exception as exc:   # an incompatible skl2onnx must not break its import
            warnings.warn(f"fastnet could not register its skl2onnx converters ({exc!r}); "
                          "skl2onnx.to_onnx will not know fastnet's estimators",
                          RuntimeWarning, stacklevel=2)

    if "skl2onnx" in sys.modules:
        register()
    elif not any(isinstance(f, _AfterImport) and f.name == "skl2onnx" for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport("skl2onnx", register))


class _AfterImport:
    """Meta-path finder that runs `callback` once module `name` has been executed."""

    def __init__(self, name, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)          # one shot; also keeps find_spec from recursing
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader:
    """The module's own loader, then the callback."""

    def __init__(self, loader, callback):
        self._loader, self._callback = loader, callback

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._callback()

    def __getattr__(self, name):                # resource readers and the like
        if name in ("_loader", "_callback"):     # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self._loader, name)


# ---- PyTorch -------------------------------------------------------------------------------------

def _torch():
    torch = _require("torch", "MLP.to_torch / MLP.from_torch", "torch")
    return torch, torch.nn


def to_torch(model):
    """``nn.Sequential`` of `model` in eval mode (see :meth:`fastnet.MLP.to_torch`)."""
    torch, nn = _torch()
    activation = _activation(model)
    params = activation.values(model)
    dtype = getattr(torch, model.dtype.name)
    modules = []

    def filled(parameter, value):
        with torch.no_grad():
            parameter.copy_(torch.from_numpy(np.ascontiguousarray(value)))

    for l, layer in enumerate(model.layers):
        fan_in, fan_out = model.layer_sizes[l], model.layer_sizes[l + 1]
        linear = nn.Linear(fan_in, fan_out, bias="b" in layer, dtype=dtype)
        filled(linear.weight, layer["w"].T)
        if "b" in layer:
            filled(linear.bias, layer["b"])
        modules.append(linear)
        if l == model.n_layers - 1:
            break
        if _hidden_norm(model, l) == "batch":
            bn = nn.BatchNorm1d(fan_out, eps=model.bn_eps, momentum=model.bn_momentum,
                                dtype=dtype)
            for target, key in ((bn.weight, "gamma"), (bn.bias, "beta"),
                                (bn.running_mean, "running_mean"),
                                (bn.running_var, "running_var")):
                filled(target, layer[key])
            modules.append(bn)
        modules.append(getattr(nn, activation.torch)(**params, **dict(activation.fixed)))
        if model.dropout > 0:
            modules.append(nn.Dropout(model.dropout))
    return nn.Sequential(*modules).eval()


_TORCH_LAYOUT = ("fastnet's MLP is (Linear, [BatchNorm1d], activation, [Dropout]) repeated, "
                 "then a Linear")


class _TorchBlock(typing.NamedTuple):
    """One Linear of a Sequential and what follows it up to the next Linear."""

    linear: object
    bn: object = None
    activation: tuple = None     # (name in ACTIVATIONS, ((param, value), ...))
    at: int = 0                  # position of the activation in the Sequential
    dropout: float = 0.0

    def signature(self):
        """What every hidden block of one MLP shares, by name."""
        return {"batch norm": self.bn is not None, "activation": self.activation,
                "dropout rate": self.dropout,
                "batch-norm eps and momentum": None if self.bn is None else
                (self.bn.eps, self.bn.momentum)}


class _TorchLayers:
    """The children of a Sequential, read in order; errors name the child."""

    def __init__(self, module):
        self.children = list(module.named_children())
        self.at = 0

    def peek(self):
        return self.children[self.at][1] if self.at < len(self.children) else None

    def take(self):
        self.at += 1
        return self.children[self.at - 1][1]

    def refuse(self, why, at=None):
        name, child = self.children[self.at if at is None else at]
        raise ValueError(f"layer {name} ({type(child).__name__}): {why}; {_TORCH_LAYOUT}")


def _torch_activation(module):
    """(name, params) of an activation module of the table, or None."""
    for name, activation in ACTIVATIONS.items():
        if type(module).__name__ == activation.torch \
                and type(module).__module__.startswith("torch.nn"):
            return name, tuple((p, float(getattr(module, p))) for p, _ in activation.params)
    return None


def _torch_blocks(module, nn):
    """The Sequential as a list of _TorchBlock (the last: its output Linear), checked."""
    layers = _TorchLayers(module)
    if not layers.children:
        raise ValueError(f"the Sequential is empty; {_TORCH_LAYOUT}")
    blocks = []
    while layers.peek() is not None:
        if type(layers.peek()) is not nn.Linear:
            layers.refuse("expected a Linear here")
        linear = layers.take()
        if blocks and linear.in_features != blocks[-1].linear.out_features:
            layers.refuse(f"takes {linear.in_features} features but the layer before gives "
                          f"{blocks[-1].linear.out_features}", layers.at - 1)
        if layers.peek() is None:
            blocks.append(_TorchBlock(linear))
            break
        bn = layers.take() if type(layers.peek()) is nn.BatchNorm1d else None
        if bn is not None:
            _check_torch_batch_norm(bn, linear, layers)
        activation = _torch_activation(layers.peek())
        if activation is None:
            layers.refuse("expected an activation (" + ", ".join(
                a.torch for a in ACTIVATIONS.values()) + ")"
                if layers.peek() is not None else "the network must end with a Linear",
                min(layers.at, len(layers.children) - 1))
        for attr, value in ACTIVATIONS[activation[0]].fixed:
            if getattr(layers.peek(), attr) != value:
                layers.refuse(f"{attr}={getattr(layers.peek(), attr)!r} is not fastnet's "
                              f"{activation[0]} ({attr}={value!r})")
        at = layers.at
        layers.take()
        dropout = float(layers.take().p) if type(layers.peek()) is nn.Dropout else 0.0
        blocks.append(_TorchBlock(linear, bn, activation, at, dropout))
    if blocks[-1].activation is not None:
        layers.refuse("the network must end with a Linear", len(layers.children) - 1)
    hidden = blocks[:-1]
    for block in hidden[1:]:
        for what, value in block.signature().items():
            if value != hidden[0].signature()[what]:
                layers.refuse(f"this block's {what} differs from the first block's; fastnet's "
                              "hidden blocks are all alike", block.at)
    return blocks


def _check_torch_batch_norm(bn, linear, layers):
    at = layers.at - 1
    if bn.num_features != linear.out_features:
        layers.refuse(f"normalises {bn.num_features} features but the Linear before gives "
                      f"{linear.out_features}", at)
    if not bn.track_running_stats or bn.running_mean is None:
        layers.refuse("has no running statistics (track_running_stats=False)", at)
    if bn.momentum is None:
        layers.refuse("uses a cumulative average (momentum=None); fastnet needs a momentum",
                      at)


def _numpy(tensor):
    return tensor.detach().cpu().numpy()


def from_torch(module, *, loss="cross_entropy"):
    """:class:`fastnet.MLP` of a Sequential (see :meth:`fastnet.MLP.from_torch`)."""
    torch, nn = _torch()
    from fastnet import MLP
    from fastnet._network import LOSSES
    from fastnet._validation import one_of
    if not isinstance(module, nn.Sequential):
        raise TypeError(f"from_torch takes a torch.nn.Sequential, got {type(module).__name__}")
    loss = one_of(loss, "loss", LOSSES)
    blocks = _torch_blocks(module, nn)
    dtypes = {t.dtype for b in blocks for m in (b.linear, b.bn) if m is not None
              for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()}
    if dtypes not in ({torch.float32}, {torch.float64}):
        raise TypeError(f"the Sequential's parameters must be all float32 or all float64, got "
                        f"{sorted(str(d) for d in dtypes)}")
    spec = blocks[0] if len(blocks) > 1 else _TorchBlock(None, activation=("relu", ()))
    try:
        model = MLP([blocks[0].linear.in_features] + [b.linear.out_features for b in blocks],
                    activation=spec.activation[0], batch_norm=spec.bn is not None,
                    dropout=spec.dropout, dtype=str(dtypes.pop()).replace("torch.", ""),
                    **dict(spec.activation[1]))
    except (TypeError, ValueError) as exc:
        name, child = list(module.named_children())[spec.at]
        raise ValueError(f"layer {name} ({type(child).__name__}): {exc}") from None
    model.loss = loss
    if spec.bn is not None:
        model.bn_eps, model.bn_momentum = float(spec.bn.eps), float(spec.bn.momentum)
    arrays = {}
    for l, block in enumerate(blocks):
        linear, bn = block.linear, block.bn
        arrays[f"layer{l}.w"] = _numpy(linear.weight).T
        bias = None if linear.bias is None else _numpy(linear.bias)
        if bn is None:
            arrays[f"layer{l}.b"] = np.zeros(linear.out_features) if bias is None else bias
            continue
        arrays[f"layer{l}.gamma"] = np.ones(bn.num_features) if bn.weight is None \
            else _numpy(bn.weight)
        arrays[f"layer{l}.beta"] = np.zeros(bn.num_features) if bn.bias is None \
            else _numpy(bn.bias)
        # a bias before batch norm only shifts what the mean subtracts: fold it into the mean
        mean = _numpy(bn.running_mean)
        arrays[f"layer{l}.running_mean"] = mean if bias is None else \
            (mean.astype(np.float64) - bias).astype(mean.dtype)
        arrays[f"layer{l}.running_var"] = _numpy(bn.running_var)
    _check_running_var(arrays, "the Sequential")
    model.set_weights([arrays[n] for n in model.weight_names()])
    return model


# ---- safetensors -------------------------------------------------------------------------------

_FILE_FORMATS = ("npz", "safetensors")


def _check_running_var(arrays, where):
    for name, value in arrays.items():
        if name.endswith("running_var") and np.any(value < 0):
            raise ValueError(f"{where}: {name} holds negative variances")


def file_format(path, format=None):
    """The format :meth:`fastnet.MLP.save` writes: `format`, else by the suffix."""
    if format is None:
        return "safetensors" if os.fspath(path).endswith(_safetensors.SUFFIX) else "npz"
    if format not in _FILE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(_FILE_FORMATS)} or None (by the "
                         f"file's suffix), got {format!r}")
    return format


def save_safetensors(model, path):
    """Write `model` as safetensors: each array under its ``weight_names()`` name, the
    config (JSON) and the fastnet format tag in ``__metadata__``."""
    from fastnet.model import _FORMAT, _FORMAT_VERSION
    _safetensors.write(path, {name: model._array(name) for name in model.weight_names()},
                       {"format": _FORMAT, "version": str(_FORMAT_VERSION),
                        "config": json.dumps(model.config())})


def load_safetensors(path):
    """The :class:`fastnet.MLP` of a file written by :func:`save_safetensors`.

    Raises
    ------
    ValueError
        The file is malformed (see :mod:`fastnet._safetensors`), is not a
        fastnet model, or its arrays do not fit its config: a name missing
        or extra, a wrong shape or dtype, NaN or infinity, a negative running
        variance.  The message names the file.
    """
    from fastnet.model import _FORMAT, _model_from
    tensors, metadata = _safetensors.read(path)
    try:
        if metadata.get("format") != _FORMAT:
            raise ValueError
        meta = {"format": _FORMAT, "version": int(metadata.get("version", "")),
                "config": decode_json(metadata.get("config", ""))}
    except ValueError:
        raise ValueError(f"{path} is not a fastnet model file (its safetensors metadata has "
                         f"no format {_FORMAT!r}, version and config)") from None
    config = meta["config"] if isinstance(meta["config"], dict) else {}
    # _model_from checks the rest of the config, the dtype and finiteness
    return _model_from(meta, _flat_arrays(tensors, config, path), path)


def _flat_arrays(tensors, config, path):
    """The file's arrays in fastnet.MLP's flat parameter and buffer arrays, after their
    names and shapes are checked against the config's layout.  Nothing the size of the
    config is allocated before that, so memory stays bounded by the file's size."""
    from fastnet import _network
    sizes, batch_norm = config.get("layer_sizes"), config.get("batch_norm")
    if not (isinstance(sizes, list) and 2 <= len(sizes) <= len(tensors) + 1
            and all(isinstance(s, int) and 1 <= s < 2**62 for s in sizes)
            and isinstance(batch_norm, bool)):
        raise ValueError(f"{path}: invalid model config for its {len(tensors)} arrays "
                         f"(layer_sizes {sizes!r}, batch_norm {batch_norm!r})")
    layers, n_params, n_buffers = _network.layout(sizes, batch_norm,
                                                  config.get("norm") == "layer")
    expected = {f"layer{l}.{key}": ((sizes[l], sizes[l + 1]) if key == "w" else
                                    (sizes[l + 1],), key.startswith("running"), offset)
                for l, offsets in enumerate(layers) for key, offset in offsets.items()}
    if set(expected) != set(tensors):
        raise ValueError(f"{path}: the arrays do not match the config (missing "
                         f"{sorted(set(expected) - set(tensors))}, unexpected "
                         f"{sorted(set(tensors) - set(expected))})")
    dtypes = {t.dtype for t in tensors.values()}
    if len(dtypes) > 1:
        raise ValueError(f"{path}: the arrays mix dtypes {sorted(map(str, dtypes))}")
    dtype = dtypes.pop()
    if dtype.name != config.get("dtype"):
        raise ValueError(f"{path}: the arrays are {dtype.name} but the config says "
                         f"{config.get('dtype')!r}")
    for name, (shape, _, _) in expected.items():
        if tensors[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {tensors[name].shape}, the config "
                             f"needs {shape}")
    _check_running_var(tensors, path)
    flat = {"params": np.empty(n_params, dtype), "buffers": np.empty(n_buffers, dtype)}
    for name, (_, buffer, offset) in expected.items():
        values = tensors[name].reshape(-1)
        flat["buffers" if buffer else "params"][offset:offset + values.size] = values
    return flat


# ---- command line ------------------------------------------------------------------------------

def add_export_parser(subparsers):
    """Add the ``export`` subcommand to the ``fastnet`` parser's `subparsers`."""
    parser = subparsers.add_parser(
        "export", help="write a saved model as ONNX, a PyTorch state dict or safetensors",
        description="Convert a model saved by 'fastnet train' or MLP.save for serving "
                    "elsewhere: ONNX (ONNX Runtime, skl2onnx pipelines; needs the onnx "
                    "package), a PyTorch state dict of MLP.to_torch()'s nn.Sequential (needs "
                    "torch), or safetensors (no dependency). Give one or more outputs.",
        epilog="Examples: 'fastnet export fastnet-out/model.npz --onnx model.onnx'; "
               "'fastnet export model.npz --torch model.pt --safetensors model.safetensors'.")
    parser.add_argument("model", metavar="MODEL",
                        help="a model file (.npz or .safetensors) from 'fastnet train' or "
                             "MLP.save")
    parser.add_argument("--onnx", metavar="OUT", help="write the ONNX model to OUT")
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX opset (default {DEFAULT_OPSET}; at least {MIN_OPSET})")
    parser.add_argument("--torch", metavar="OUT",
                        help="write torch.save(model.to_torch().state_dict()) to OUT")
    parser.add_argument("--safetensors", metavar="OUT",
                        help="write the weights and config as safetensors to OUT")
    parser.set_defaults(func=run)
    return parser


def run(args):
    """The ``export`` subcommand: returns the exit code."""
    from fastnet import load
    from fastnet.cli import CommandError
    if not (args.onnx or args.torch or args.safetensors):
        raise CommandError("give at least one of --onnx OUT, --torch OUT, --safetensors OUT")
    model = load(args.model)
    try:
        if args.onnx:
            to_onnx(model, args.onnx, opset=args.opset)
            print(f"wrote {args.onnx}: ONNX, input (N, {model.layer_sizes[0]}) "
                  f"{model.dtype.name}")
        if args.torch:
            torch, _ = _torch()
            module = to_torch(model)
            with atomic_file(args.torch) as fh:
                torch.save(module.state_dict(), fh)
            print(f"wrote {args.torch}: state dict of "
                  f"{' -> '.join(type(m).__name__ for m in module)}")
        if args.safetensors:
            save_safetensors(model, args.safetensors)
            print(f"wrote {args.safetensors}: safetensors, {len(model.weight_names())} arrays")
    except ImportError as exc:
        raise CommandError(str(exc)) from None
    return 0
