"""The MLP: Linear -> BatchNorm -> activation -> Dropout blocks, then a Linear.

All parameters live in one flat array (``W``, then ``b`` or ``gamma, beta``,
layer by layer), the batch-norm running statistics in another, and the
gradients in a third of the parameters' shape; the per-layer arrays are
views.  Training runs through :class:`fastnet._network.Engine`, which
allocates the workspaces of one batch once per :meth:`MLP.fit` and enters
native code once per mini-batch.
"""
import contextlib
import copy
import functools
import json
import math
import numbers
import reprlib
import os
import signal
import threading
import time
import types
import warnings

import numpy as np

from fastnet import _checkpoint, _io, _network, distributed as _distributed, \
    health as _health, init as _init, optim as _optim, schedules as _schedules
from fastnet._io import atomic_savez, read_npz
from fastnet._governor import ThreadGovernor
from fastnet._validation import c_array, finite_array, one_of, real_array, real_number, \
    seed_value

__all__ = ["MLP", "History", "load"]

_FORMAT = "fastnet-model"
_FORMAT_VERSION = 1
_PREDICT_ROWS = 1024          # rows per native call when predicting
_POOL_SIZE = 4                # inference engines a model keeps for concurrent calls
_GRAD_SLOTS = 3               # after the gradients: fastnet.distributed's per-step scalars


class History:
    """What :meth:`MLP.fit` did.

    Attributes
    ----------
    history : dict of lists
        Per epoch: "loss", "accuracy" (training, with dropout active),
        "val_loss", "val_accuracy" (when validating), "lr", "grad_norm" (mean
        global gradient norm before clipping).
        With ``fit(track_gradients=...)`` also "layer_grad_norm" (per epoch a
        list, one ``||dL/dW||`` per layer, input side first) and
        "dead_fraction" (per epoch a list, one per hidden layer: the share of
        units that are 0 for every row of a training batch); see
        :class:`fastnet.health.GradientTracker`.
    best_epoch : int or None
        Epoch (from 0) with the best monitored value (val_loss, else loss).
    stopped_epoch : int or None
        Epoch at which a callback (e.g. early stopping) ended training.
    diverged : bool
        The loss or the weights became NaN/inf or the loss exploded (see
        :class:`fastnet.health.DivergenceGuard`) and it was not recovered;
        the best weights were restored.
    rollbacks : list of dict
        With ``on_divergence="rollback"``: one entry per backoff, with
        ``epoch``, ``step`` (optimizer step at which it diverged), ``loss``
        (the offending batch loss; after an earlier rollback also the
        training loss of an epoch's final weights that did not learn, or
        NaN for non-finite weights), ``lr`` (before), ``new_lr`` and
        ``lr_scale`` (the factor on the schedule's lr from then on).
    interrupted : bool
        Ctrl-C ended training after a batch; the best weights were restored.
    health : str or None
        Gradient-health report (when gradients were tracked): see
        :func:`fastnet.health.health_report`.
    """

    def __init__(self):
        self.history = {k: [] for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr",
                                        "grad_norm")}
        self.best_epoch = None
        self.stopped_epoch = None
        self.diverged = False
        self.rollbacks = []
        self.interrupted = False
        self.health = None
        self.epochs = 0

    def __repr__(self):
        return (f"History(epochs={self.epochs}, best_epoch={self.best_epoch}, "
                f"stopped_epoch={self.stopped_epoch}, diverged={self.diverged})")


class _Attribute:
    """A model attribute kept in ``model.__dict__`` under its name with a leading "_"
    (so that copies and pickles carry it); ``read`` turns the stored value into the one
    handed out (e.g. a fresh list)."""

    def __init__(self, read=None):
        self.read = read

    def __set_name__(self, owner, name):
        self.name, self.slot = name, "_" + name

    def __get__(self, model, owner=None):
        if model is None:
            return self
        value = model.__dict__[self.slot]
        return value if self.read is None else self.read(value)


class _Fixed(_Attribute):
    """Fixed when the model is built: the native engine binds arrays sized and laid out
    for it, so it is read-only (``fix`` says what to do instead)."""

    def __init__(self, fix, read=None):
        super().__init__(read)
        self.fix = fix

    def __set__(self, model, value):
        raise AttributeError(f"MLP.{self.name} cannot be assigned: {self.fix}")


class _Checked(_Attribute):
    """A setting that may change between calls: assignments are validated by `check`
    (which returns the value to store), and the inference engines built with the old
    value are dropped."""

    def __init__(self, check):
        super().__init__()
        self.check = check

    def __set__(self, model, value):
        value = self.check(value)
        changed = model.__dict__.get(self.slot, value) != value
        model.__dict__[self.slot] = value
        if changed:
            model._access.drop_engines()


class _Access:
    """Who uses a model's arrays, and the inference engines they use.

    Any number of inference calls (predict, get_weights, save, copies) may run at once,
    from any threads, or one call that changes the arrays (fit, lr_find, gradients,
    set_weights) together with inference from its own thread (callbacks).  A change
    from another thread waits for the inference calls already running (they are
    short), then holds the model; inference or a second change from another thread
    meanwhile raises RuntimeError instead of reading weights in the middle of an update.

    Inference engines are lent one per running call (an engine's workspace holds the
    activations of the call using it) and kept for the next calls, at most
    `_POOL_SIZE`, so a small predict allocates nothing; :meth:`drop_engines` discards
    them when a setting they were built with changes.  Every engine has room for
    ``min(rows, _PREDICT_ROWS)`` rows of the call and at most ``_PREDICT_ROWS``, so a
    call is cut into the same row blocks whichever engine it gets (the blocks decide
    the bits of the result).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._readers = 0
        self._owner = None        # thread ident of the changing call
        self._what = None
        self._depth = 0
        self._engines = []
        self._generation = 0

    def _refuse(self, what):
        raise RuntimeError(f"{what}: this model is being changed by {self._what} in another "
                           f"thread; wait for it to return, or give each thread its own "
                           f"model (copy.deepcopy(model))")

    def begin_read(self, what, rows=0):
        """Register an inference call; with `rows` > 0 return (engine or None, token):
        a kept engine with room for the call, if there is one."""
        with self._lock:
            if self._owner is not None and self._owner != threading.get_ident():
                self._refuse(what)
            self._readers += 1
            if rows <= 0:
                return None
            rows = min(rows, _PREDICT_ROWS)
            engines = self._engines
            for i in range(len(engines) - 1, -1, -1):
                if engines[i].max_batch >= rows:
                    return engines.pop(i), self._generation
            if engines:
                engines.pop()       # too small: its replacement will be kept instead
            return None, self._generation

    def end_read(self, engine=None, token=None):
        """End an inference call, keeping the engine it used (if still valid)."""
        with self._lock:
            self._readers -= 1
            if self._readers == 0 and self._owner is not None:
                self._idle.notify_all()         # a change is waiting for the readers
            if engine is not None and token == self._generation \
                    and len(self._engines) < _POOL_SIZE:
                self._engines.append(engine)

    def drop_engines(self):
        with self._lock:
            self._engines.clear()
            self._generation += 1

    @contextlib.contextmanager
    def reading(self, what):
        self.begin_read(what)
        try:
            yield
        finally:
            self.end_read()

    @contextlib.contextmanager
    def writing(self, what):
        me = threading.get_ident()
        with self._lock:
            if self._owner == me:
                self._depth += 1      # e.g. set_weights from a callback of fit
            else:
                if self._owner is not None:
                    self._refuse(what)
                self._owner, self._what, self._depth = me, what, 1
                try:
                    while self._readers:
                        self._idle.wait()
                except BaseException:       # e.g. Ctrl-C while waiting: do not hold on
                    self._owner = self._what = None
                    self._depth = 0
                    raise
        try:
            yield
        finally:
            with self._lock:
                self._depth -= 1
                if self._depth == 0:
                    self._owner = self._what = None


def _changes_model(method):
    """Run `method` holding the model for a change (see :class:`_Access`)."""
    @functools.wraps(method)
    def holding(self, *args, **kwargs):
        with self._access.writing(method.__name__):
            return method(self, *args, **kwargs)
    return holding


def _init_setting(value):
    _init.get(value)       # TypeError or ValueError for anything but a known name or callable
    return value


class _Unset:
    """The default of MLP(norm=, batch_norm=): not passed."""

    def __repr__(self):
        return "<not passed>"


_UNSET = _Unset()
_NORMS = ("batch", "layer", None)


def _resolve_norm(norm, batch_norm):
    """MLP's normalisation from ``norm`` and the older ``batch_norm``."""
    if norm is not _UNSET and norm not in _NORMS:
        raise ValueError(f"norm must be 'batch', 'layer' or None, got {norm!r}")
    if batch_norm is _UNSET:
        return "batch" if norm is _UNSET else norm
    implied = "batch" if batch_norm else None
    if norm is not _UNSET and norm != implied:
        raise ValueError(f"norm={norm!r} and batch_norm={batch_norm!r} disagree; pass "
                         f"norm alone")
    return implied


# losses whose fit logs an accuracy (of the class; of all labels of a row)
_ACCURACY_LOSSES = ("cross_entropy", "bce")


def _sigmoid(z):
    """The logistic function of an array, without overflow warnings."""
    out = np.empty_like(z)
    positive = z >= 0
    out[positive] = 1 / (1 + np.exp(-z[positive]))
    e = np.exp(z[~positive])
    out[~positive] = e / (1 + e)
    return out


class MLP:
    """A multilayer perceptron trained with the modern recipe.

    Parameters
    ----------
    layer_sizes : sequence of int
        Widths from the input to the output, e.g. ``[64, 128, 128, 10]``.
    activation : {"relu", "leaky_relu", "gelu", "silu", "tanh", "sigmoid", "identity"}
        Activation of the hidden layers, fused into the native forward and
        backward.  "leaky_relu" is ``max(z, 0) + negative_slope * min(z, 0)``,
        "gelu" the exact (erf) form ``z * Phi(z)`` (PyTorch's default), "silu"
        ``z * sigmoid(z)``, "identity" none (a linear model per layer).
    norm : {"batch", "layer", None}
        Normalisation after every hidden Linear: batch norm (the default; the
        Linear then has no bias, beta takes its role; running statistics for
        inference), layer norm (each row over its features, as
        ``torch.nn.LayerNorm``; the same in training and inference, any batch
        size, no running statistics; eps is ``bn_eps``), or none.  Both add
        ``layer{i}.gamma`` and ``layer{i}.beta``.
    batch_norm : bool
        The older spelling: True is ``norm="batch"``, False ``norm=None``
        (passing both, they must agree).
    dropout : float in [0, 1)
        Inverted-dropout rate after every hidden activation.
    init : {"he", "xavier", "lecun"} or callable
        Weight initialisation; a callable is called as
        ``init(fan_in, fan_out, rng=rng)`` and returns a (fan_in, fan_out)
        array.  Biases and beta start at 0, gamma at 1.
    dtype : {"float32", "float64"}
    seed : int in [0, 2**64), optional
        Seed of the initial weights and, unless fit gets its own, of the
        shuffling and dropout.  None means 0: fastnet is reproducible by
        default.
    negative_slope : float >= 0
        The slope of "leaky_relu" below 0 (PyTorch's default, 0.01); unused
        by the other activations.
    huber_delta : float > 0
        Threshold of ``loss="huber"`` (PyTorch's default, 1.0): squared
        error below it, absolute error beyond.

    Attributes
    ----------
    layer_sizes, activation, norm, batch_norm, dtype : read-only
        They lay out the weights; assigning one raises AttributeError.
    params, grads, buffers : ndarray, read-only attributes
        The flat parameter, gradient and batch-norm statistics arrays (the
        per-layer arrays of ``layers`` are views of them); write into them,
        or use :meth:`set_weights`.
    dropout, bn_eps, bn_momentum, init, seed, loss, negative_slope, huber_delta
        May be changed between calls; an assignment is validated (ValueError
        or TypeError naming it) and used from the next call on (``init`` and
        ``seed`` by :meth:`reset_parameters`).

    Notes
    -----
    One model may serve predictions to many threads at once (each call gets
    its own workspace).  While it is being changed (:meth:`fit`,
    :meth:`lr_find`, :meth:`gradients`, :meth:`set_weights`), calls from
    other threads raise RuntimeError; give each thread its own model
    (``copy.deepcopy``) to train one while another predicts.  Copies and
    pickles are independent models with the same weights, statistics and
    optimizer state.

    Examples
    --------
    >>> model = fastnet.MLP([64, 128, 128, 10], dropout=0.3, seed=0)
    >>> history = model.fit(X, y, epochs=50, validation_split=0.2)
    >>> model.predict(X[:5])
    """

    _REBUILD = "the weights are laid out for it; build a new fastnet.MLP instead"
    _ARRAY = ("the native engine works on this array; write into it (model.{}[...] = values)"
              " or use set_weights")
    layer_sizes = _Fixed(_REBUILD, read=list)       # a copy: appending changes nothing
    activation = _Fixed("the weights were trained for it; build a new fastnet.MLP instead")
    batch_norm = _Fixed(_REBUILD)
    norm = _Fixed(_REBUILD)
    dtype = _Fixed(_REBUILD)
    params = _Fixed(_ARRAY.format("params"))
    grads = _Fixed(_ARRAY.format("grads"))
    buffers = _Fixed(_ARRAY.format("buffers"))
    layers = _Fixed("its arrays are views of params, grads and buffers; write into them or "
                    "use set_weights")
    dropout = _Checked(lambda value: real_number(value, "dropout", low=0.0, high=1.0,
                                                 high_open=True))
    bn_eps = _Checked(lambda value: real_number(value, "bn_eps", low=0.0))
    bn_momentum = _Checked(lambda value: real_number(value, "bn_momentum", low=0.0, high=1.0))
    init = _Checked(_init_setting)
    negative_slope = _Checked(lambda value: real_number(value, "negative_slope", low=0.0))
    huber_delta = _Checked(lambda value: real_number(value, "huber_delta", low=0.0,
                                                     low_open=True))
    seed = _Checked(lambda value: seed_value(0 if value is None else value))
    loss = _Checked(lambda value: one_of(value, "loss", _network.LOSSES))

    def __init__(self, layer_sizes, *, activation="relu", batch_norm=_UNSET, norm=_UNSET,
                 dropout=0.0,
                 init="he", dtype="float32", seed=None, negative_slope=0.01,
                 huber_delta=1.0):
        sizes = list(layer_sizes) if not isinstance(layer_sizes, (str, bytes)) else None
        if sizes is None or len(sizes) < 2 or not all(
                isinstance(s, numbers.Integral) and not isinstance(s, bool) for s in sizes):
            raise TypeError(f"layer_sizes must be a sequence of at least 2 ints, got "
                            f"{layer_sizes!r}")
        if any(s < 1 for s in sizes):
            raise ValueError(f"layer sizes must be >= 1, got {sizes}")
        self._layer_sizes = tuple(int(s) for s in sizes)
        self._activation = one_of(activation, "activation", _network.ACTIVATIONS)
        self.negative_slope = negative_slope
        self.huber_delta = huber_delta
        self._norm = _resolve_norm(norm, batch_norm)
        self._batch_norm = self._norm == "batch"
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
        if dtype not in (np.float32, np.float64):
            raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self._dtype = dtype
        self._access = _Access()
        self.dropout = dropout
        self.seed = seed
        self.init = init
        self.bn_eps = 1e-5
        self.bn_momentum = 0.1
        self.loss = "cross_entropy"      # set by fit; decides what predict returns
        self._targets_1d = False
        self.stop_training = False
        self._allocate()
        self.reset_parameters()

    # ---- parameters --------------------------------------------------------

    @property
    def n_layers(self):
        return len(self._layer_sizes) - 1

    def _allocate(self):
        _, n_params, n_buffers = self._layout()
        self._params = np.zeros(n_params, dtype=self._dtype)
        # one flat buffer that distributed training allreduces in one call
        self._grad_buffer = np.zeros(n_params + _GRAD_SLOTS, dtype=self._dtype)
        self._buffers = np.zeros(n_buffers, dtype=self._dtype)
        self._bind_views()

    def _layout(self):
        return _network.layout(self._layer_sizes, self._batch_norm, self._norm == "layer")

    def _bind_views(self):
        """The per-layer views of the flat arrays (``layers``, ``grads``): derived, never
        copied or pickled (a copy of a view no longer aliases its array)."""
        offsets_by_layer, n_params, n_buffers = self._layout()
        if self._params.shape != (n_params,) or self._buffers.shape != (n_buffers,) \
                or self._grad_buffer.shape != (n_params + _GRAD_SLOTS,):
            raise ValueError(f"params, buffers and the gradient buffer do not fit the layout "
                             f"of layer sizes {list(self._layer_sizes)}")
        self._grads = self._grad_buffer[:n_params]
        sizes = self._layer_sizes
        layers = []
        for l, offsets in enumerate(offsets_by_layer):
            fan_in, fan_out = sizes[l], sizes[l + 1]
            views = {}
            for name, off in offsets.items():
                source = self._buffers if name.startswith("running") else self._params
                size = fan_in * fan_out if name == "w" else fan_out
                view = source[off:off + size]
                views[name] = view.reshape(fan_in, fan_out) if name == "w" else view
            for name, off in offsets.items():
                if name in ("w", "b", "gamma", "beta"):
                    size = fan_in * fan_out if name == "w" else fan_out
                    g = self._grads[off:off + size]
                    views["d" + name] = g.reshape(fan_in, fan_out) if name == "w" else g
            layers.append(types.MappingProxyType(views))
        self._layers = tuple(layers)
        self._best = None

    def reset_parameters(self):
        """Draw fresh initial weights from the model's seed.

        Raises
        ------
        ValueError
            When a callable ``init`` returns an array of the wrong shape or
            one holding NaN or infinity (nothing is changed then).
        """
        rng = np.random.default_rng(self.seed)
        init = _init.get(self.init)
        drawn = []
        for l in range(self.n_layers):
            fan_in, fan_out = self._layer_sizes[l], self._layer_sizes[l + 1]
            w = np.asarray(init(fan_in, fan_out, rng=rng))
            if w.shape != (fan_in, fan_out):
                raise ValueError(f"init returned shape {w.shape} for layer {l}, expected "
                                 f"{(fan_in, fan_out)}")
            if w.dtype.kind not in "iuf":
                raise ValueError(f"init returned an array of dtype {w.dtype} for layer {l}; it "
                                 f"must return real numbers")
            drawn.append(finite_array(w, self._dtype, f"the array init returned for layer {l}"))
        with self._access.writing("reset_parameters"):
            for layer, w in zip(self._layers, drawn):
                layer["w"][...] = w
                for name, value in (("b", 0.0), ("gamma", 1.0), ("beta", 0.0),
                                    ("running_mean", 0.0), ("running_var", 1.0)):
                    if name in layer:
                        layer[name][...] = value

    def weight_names(self):
        """Names of the arrays get_weights returns, in order."""
        order = ("w", "b", "gamma", "beta", "running_mean", "running_var")
        return [f"layer{l}.{name}" for l, layer in enumerate(self._layers)
                for name in order if name in layer]

    def get_weights(self):
        """Copies of every parameter and batch-norm running statistic, layer by layer
        (W, then b or gamma, beta, running_mean, running_var)."""
        with self._access.reading("get_weights"):
            return [self._array(name).copy() for name in self.weight_names()]

    def set_weights(self, weights):
        """Load arrays in the order and shapes of :meth:`get_weights`.

        Raises
        ------
        ValueError
            For a wrong count or shape, an array that is not floating point or
            holds NaN or infinity, or a negative running variance (nothing is
            changed then).
        """
        names = self.weight_names()
        weights = list(weights)
        if len(weights) != len(names):
            raise ValueError(f"expected {len(names)} arrays ({', '.join(names)}), "
                             f"got {len(weights)}")
        checked = []
        for name, w in zip(names, weights):
            target = self._array(name)
            w = np.asarray(w)
            if w.shape != target.shape:
                raise ValueError(f"{name} has shape {target.shape}, got {w.shape}")
            if not np.issubdtype(w.dtype, np.floating):
                raise ValueError(f"{name} must hold finite floats, got dtype {w.dtype}")
            finite_array(w, self._dtype, name)
            if name.endswith(".running_var") and np.any(w < 0):
                raise ValueError(f"{name} holds negative variances; it must be >= 0")
            checked.append((target, w))
        with self._access.writing("set_weights"):
            for target, w in checked:
                target[...] = w

    def _array(self, name):
        layer, key = name.split(".")
        return self._layers[int(layer[5:])][key]

    def _state_problem(self):
        """Why the weights and buffers could not be saved and loaded back (NaN or
        infinity, a negative running variance), or None when they can."""
        # called after every epoch: reductions without temporaries where possible
        for what, arr in (("params", self._params), ("buffers", self._buffers)):
            if arr.size and not np.isfinite(arr).all():
                return f"{what} hold NaN or infinity"
        for l, layer in enumerate(self._layers):
            if "running_var" in layer and layer["running_var"].min() < 0:
                return f"layer{l}.running_var holds negative variances"
        return None

    def _state(self, into=None):
        """(params, buffers): copies, or copied into the pair of arrays `into`."""
        if into is None:
            return self._params.copy(), self._buffers.copy()
        np.copyto(into[0], self._params)
        np.copyto(into[1], self._buffers)
        return into

    def _state_arrays(self, count):
        """`count` (params, buffers) pairs where fit keeps snapshots (the best weights,
        the state an epoch started from), reused by the next fit: fresh copies of a wide
        model cost page faults on every call (two copies of 42 MB took 90 ms of a 0.6 s
        one-epoch fit, measured here)."""
        pairs = self._best
        if pairs is None or len(pairs) < count:
            pairs = self._best = [(np.empty_like(self._params), np.empty_like(self._buffers))
                                  for _ in range(count)]
        return pairs[:count]

    def _restore(self, state):
        self._params[...] = state[0]
        self._buffers[...] = state[1]

    # ---- copies and pickling: the views are rebuilt, the engines and locks are new ----

    _DERIVED = ("_grads", "_layers", "_best", "_access")

    def __getstate__(self):
        with self._access.reading("pickling or copying"):
            state = {k: v for k, v in self.__dict__.items() if k not in self._DERIVED}
            # copies taken under the lock: a fit elsewhere cannot tear them
            for key in ("_params", "_grad_buffer", "_buffers"):
                state[key] = state[key].copy()
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        for key, default in (("_negative_slope", 0.01), ("_huber_delta", 1.0),
                             ("_norm", "batch" if state.get("_batch_norm") else None)):
            self.__dict__.setdefault(key, default)        # pickles of older versions
        self._access = _Access()
        self._bind_views()

    def __copy__(self):
        """An independent model: its own arrays and optimizer state (both change in place
        when training goes on), sharing only the history and a callable init."""
        state = self.__getstate__()
        if state.get("optimizer") is not None:
            state["optimizer"] = copy.deepcopy(state["optimizer"])
        return self._rebuilt(state, {})

    def __deepcopy__(self, memo):
        state = self.__getstate__()
        arrays = {key: state.pop(key) for key in ("_params", "_grad_buffer", "_buffers")}
        return self._rebuilt(state, memo, arrays)

    def _rebuilt(self, state, memo, arrays=None):
        model = memo[id(self)] = type(self).__new__(type(self))
        if arrays is not None:     # deepcopy: the arrays are copies already
            state = copy.deepcopy(state, memo)
            state.update(arrays)
        model.__setstate__(state)
        return model

    def __repr__(self):
        slope = (f"negative_slope={self.negative_slope}, "
                 if self.activation == "leaky_relu" else "")
        return (f"MLP({self.layer_sizes}, activation={self.activation!r}, {slope}"
                f"norm={self.norm!r}, dropout={self.dropout}, "
                f"dtype={self.dtype.name!r})")

    # ---- data checks --------------------------------------------------------

    def _check_x(self, X, name="X", dtype=None):
        """X as a finite C-contiguous (n, n_in) array of `dtype` (default: the model's);
        an array that is one already (read-only or memory-mapped too) is not copied."""
        arr = real_array(X, name)
        if arr.dtype.kind not in "iuf":          # not bool, complex, object, ...
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        n_in = self._layer_sizes[0]
        if arr.ndim != 2 or arr.shape[1] != n_in:
            raise ValueError(f"{name} has shape {arr.shape} but the model takes (n, {n_in})")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        return finite_array(arr, self._dtype if dtype is None else dtype, name)

    def _check_y(self, y, n, loss, name="y"):
        arr = real_array(y, name)
        n_out = self._layer_sizes[-1]
        if loss == "cross_entropy":
            if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.integer) or (
                    np.issubdtype(arr.dtype, np.floating) and arr.size
                    and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))):
                raise ValueError(f"{name} must hold integer class labels for "
                                 f"loss='cross_entropy', got dtype {arr.dtype}")
            if arr.ndim == 2 and arr.shape[0] == n:
                fix = f"{name}.ravel()" if arr.shape[1] == 1 else \
                    f"{name}.argmax(axis=1) for one-hot rows"
                raise ValueError(f"{name} must be 1-D integer class labels of shape ({n},) "
                                 f"for loss='cross_entropy', got shape {arr.shape}; pass {fix}")
            if arr.ndim != 1 or arr.shape[0] != n:
                raise ValueError(f"{name} has shape {arr.shape} but X has {n} rows")
            if arr.min() < 0 or arr.max() >= n_out:
                raise ValueError(f"{name} holds labels in [{arr.min()}, {arr.max()}] but the "
                                 f"model has {n_out} outputs (labels 0..{n_out - 1})")
            return c_array(arr, np.int64), None
        if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
                or (loss == "bce" and arr.dtype == np.bool_)):        # bool is no integer
            raise ValueError(f"{name} must hold real targets for loss={loss!r}, got {arr.dtype}")
        if arr.ndim == 1 and n_out == 1:
            arr = arr.reshape(-1, 1)
        if arr.shape != (n, n_out):
            raise ValueError(f"{name} has shape {np.shape(y)} but the model outputs "
                             f"({n}, {n_out})")
        targets = finite_array(arr, self._dtype, name)
        if loss == "bce" and not np.all((targets >= 0) & (targets <= 1)):
            raise ValueError(f"{name} must hold 0/1 labels (or probabilities in [0, 1]) per "
                             f"output for loss='bce'")
        return None, targets

    # ---- training ------------------------------------------------------------

    @_changes_model
    def fit(self, X, y, *, epochs=100, batch_size=64, optimizer="adam", lr=1e-3,
            schedule=None, validation_data=None, validation_split=0.0, early_stopping=None,
            loss="cross_entropy", grad_clip=None, shuffle=True, seed=None, verbose=1,
            callbacks=(), weight_decay=None, sample_weight=None, checkpoint=None,
            checkpoint_every=1, resume=None, class_weight=None, track_gradients=False,
            on_divergence="stop", distributed=None):
        """Train with mini-batch gradient descent.

        Parameters
        ----------
        X : array (n, layer_sizes[0])
        y : int labels (n,) for ``loss="cross_entropy"``, float targets
            (n, n_out) or (n,) for ``loss="mse"`` and ``"huber"``, a 0/1
            (or [0, 1]) array (n, n_out) for ``loss="bce"``.
        epochs, batch_size : int
        optimizer : "sgd", "adam", "adamw" or a :mod:`fastnet.optim` object
            (whose own lr is then used).
        lr : float
            Learning rate of a named optimizer.
        schedule : schedule object, callable ``epoch -> lr`` or None
            See :mod:`fastnet.schedules`; per-step schedules are called with
            the optimizer step, ReduceLROnPlateau with the monitored metric.
        validation_data : (X_val, y_val) or (X_val, y_val, sample_weight_val), optional
            The validation loss and accuracy are weighted when weights are
            given (with validation_split, the held-out rows keep theirs).
        validation_split : float in [0, 1)
            Fraction of (X, y) held out for validation (a seeded random
            subset) when validation_data is not given.
        early_stopping : EarlyStopping, int (patience) or True (patience 10)
            Stops when the validation loss stops improving and restores the
            best weights (batch-norm statistics included).
        loss : "cross_entropy", "mse", "huber" or "bce"
            Softmax cross-entropy over classes; mean squared error; the
            Huber loss with threshold ``huber_delta`` (regression with
            outliers; PyTorch's ``HuberLoss``); binary cross-entropy of a
            sigmoid per output (multilabel; PyTorch's ``BCEWithLogitsLoss``),
            after which ``predict`` gives 0/1 per output and
            ``predict_proba`` the sigmoids.
        grad_clip : float, optional
            Clip the global gradient norm to this value.
        shuffle : bool
        seed : int, optional
            Seed of shuffling and dropout (default: the model's seed).
        verbose : 0, 1 (progress bar and a line per epoch) or 2 (lines only)
        callbacks : objects with any of on_train_begin(logs),
            on_epoch_begin(epoch, logs), on_batch_end(batch, logs),
            on_epoch_end(epoch, logs), on_train_end(logs); each gets
            ``.model`` set to this model, and may set
            ``model.stop_training = True``.
        weight_decay : float, optional
            Weight decay of a named optimizer (L2 for sgd/adam, decoupled for
            adamw).
        sample_weight : array (n,), optional
            Per-row weight of the loss.
        class_weight : "balanced", dict {label: weight} or None
            Per-class weight of the loss (cross-entropy only), multiplied
            with ``sample_weight``: row i weighs ``sample_weight[i] *
            class_weight[y[i]]`` and the loss is ``sum_i w_i l_i / sum_i w_i``
            (PyTorch's ``cross_entropy(weight=...)``).  "balanced" is
            scikit-learn's ``n_samples / (n_classes * bincount(y))``, from
            all rows given (validation_split rows included); see
            :func:`fastnet.health.class_weights`.
        track_gradients : bool or int
            Record per epoch each layer's weight-gradient norm and each
            hidden layer's dead fraction in ``History.history``
            ("layer_grad_norm", "dead_fraction"), from 4 evenly spaced steps
            per epoch (an int sets how many), and set ``History.health``, a
            short report of vanishing/exploding gradients and dead ReLUs
            with remedies (printed when verbose).  See
            :mod:`fastnet.health`.
        on_divergence : "stop", "raise", "rollback" or fastnet.health.Rollback
            A run diverges when a batch loss is NaN/inf or above 100 x
            ``max(first batch loss, ln(n_classes) or the target variance)``,
            or when an epoch leaves NaN/inf weights or batch-norm statistics
            (e.g. a running variance overflowed by huge inputs).
            "stop" (default): restore the best weights, warn, set
            ``History.diverged``.  The best weights are those with the best
            monitored loss *measured on them*: with validation data, the
            weights an epoch ended with; without, the weights the epoch with
            the lowest training loss started from (its loss is measured
            before each update; in full-batch training it is exactly their
            loss), so they are never worse than the starting weights.
            "raise": the same, then raise
            :class:`fastnet.health.TrainingDiverged`.  "rollback": restore
            the last good state (weights, batch-norm statistics, optimizer
            state: see :class:`fastnet.health.Rollback`), divide the lr by
            10 (the schedule's lr is multiplied by the accumulated factor)
            and redo the epoch, at most 5 times
            (``Rollback(factor, max_rollbacks)`` sets both), each logged in
            ``History.rollbacks``; past that, as "stop".  After a rollback
            every epoch's final weights are evaluated on the training rows
            (one inference pass): an epoch that leaves them no better than
            the starting and the constant-predictor loss counts as diverged
            too, so backing off goes on while a finite but flat loss shows
            that the lr is still too large.
        checkpoint : path, optional
            Write a checkpoint (model, optimizer, schedule and callback state,
            best weights, history, epoch and step counters) every
            `checkpoint_every` epochs and when training ends.  Each write goes
            to a temporary file that is flushed to disk and renamed, so a
            crash leaves the previous checkpoint intact.
        resume : path, optional
            Continue from a checkpoint written by a fit with the same data and
            options; the result is bit-identical to an uninterrupted run.  A
            missing file starts from scratch (so one command line can both
            start and resume a job).  The checkpoint records the shape, dtype
            and a checksum of X, y, the sample weights and the validation
            rows, and the options that change the result (batch_size, loss,
            schedule, optimizer and its hyper-parameters, grad_clip, shuffle,
            on_divergence, track_gradients, the number of MPI ranks);
            resuming with others raises ValueError naming what differs.
        distributed : bool, "auto" or fastnet.distributed.Distributed, optional
            Data-parallel training over MPI (see :mod:`fastnet.distributed`):
            every rank calls fit with the same model, data and options,
            trains on its share of each batch of ``batch_size x ranks`` rows
            and ends with the same weights.  "auto": when started by mpirun
            with more than one rank.

        Returns
        -------
        History

        Raises
        ------
        ValueError
            Before any weight changes, for NaN/inf data, wrong shapes, labels
            out of range, fewer than 2 rows, ``batch_size < 2`` with batch
            norm, a ReduceLROnPlateau monitoring a metric fit does not log,
            an unknown ``on_divergence``, a bad ``class_weight`` (unknown
            string, labels out of range, negative or non-finite weights, no
            row left with a positive weight, or mse loss), finite values too
            large for the model's dtype, y of one-hot rows or a column, pandas
            columns with missing values, or a ``resume`` checkpoint of another
            run.
        TypeError
            Before any weight changes, for a ``class_weight`` that is not a
            str or dict, a ``track_gradients`` that is not a bool or int, or
            a scipy.sparse matrix (not supported yet: pass ``X.toarray()``).
        OSError
            Before any weight changes, when ``checkpoint`` names a file that
            cannot be written (a missing or read-only directory).
        RuntimeError
            When another thread is changing the model (see :class:`MLP`).
        fastnet.health.TrainingDiverged
            With ``on_divergence="raise"``, after restoring the best weights.
        """
        # first: under MPI, a rank that fails from here on ends the whole job
        dist = _distributed.resolve(distributed)
        loss = one_of(loss, "loss", _network.LOSSES)
        epochs = _positive_int(epochs, "epochs")
        batch_size = _positive_int(batch_size, "batch_size")
        verbose = one_of(verbose, "verbose", (0, 1, 2))
        if self.batch_norm and batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 with batch_norm=True (a batch of one "
                             f"row has no batch variance), got {batch_size}")
        policy = _health.divergence_policy(on_divergence)
        samples = _health.track_samples(track_gradients)
        X, labels, targets, weights = self._training_rows(X, y, loss, sample_weight,
                                                          class_weight)
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"fit needs at least 2 rows, X has {n}")
        every = _positive_int(checkpoint_every, "checkpoint_every")
        if checkpoint is not None:      # a checkpoint that cannot be written fails now
            _io.check_writable(checkpoint)
        resume_state = None
        if resume is not None and os.path.exists(os.fspath(resume)):
            resume_state = _checkpoint.read(resume, self)
        clip = 0.0 if grad_clip is None else real_number(grad_clip, "grad_clip", low=0.0,
                                                          low_open=True)
        run_seed = self.seed if seed is None else seed_value(seed)
        if resume_state is not None and resume_state["meta"]["run_seed"] != run_seed:
            raise ValueError(f"{resume}: checkpoint was written by a fit with seed "
                             f"{resume_state['meta']['run_seed']}, this fit has seed {run_seed}")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
                raise ValueError("validation_data must be (X_val, y_val) or "
                                 "(X_val, y_val, sample_weight_val)")
            Xv = self._check_x(validation_data[0], "validation_data[0]")
            wv = None
            if len(validation_data) == 3:
                wv = _sample_weights(validation_data[2], Xv.shape[0], self.dtype,
                                     "validation_data[2]")
            val = (Xv,) + self._check_y(validation_data[1], Xv.shape[0], loss,
                                        "validation_data[1]") + (wv,)
        else:
            split = real_number(validation_split, "validation_split", low=0.0, high=1.0,
                                high_open=True)
            if split > 0:
                n_val = int(math.ceil(split * n))
                if n - n_val < 2:
                    raise ValueError(f"validation_split={split} leaves {n - n_val} training rows")
                order = np.random.default_rng([run_seed, 0xDA7A]).permutation(n)
                vi, ti = np.sort(order[:n_val]), np.sort(order[n_val:])
                val = (X[vi], None if labels is None else labels[vi],
                       None if targets is None else targets[vi],
                       None if weights is None or not np.any(weights[vi] > 0)
                       else weights[vi])   # all-zero held-out weights: score unweighted
                X = X[ti]
                labels = None if labels is None else labels[ti]
                targets = None if targets is None else targets[ti]
                weights = None if weights is None else weights[ti]
                n = X.shape[0]
        opt = _optim.get(optimizer, lr=lr, weight_decay=weight_decay)
        base_lr = opt.lr
        sched = _schedules.resolve(schedule, base_lr)
        per_step = bool(getattr(sched, "per_step", False))
        if getattr(sched, "needs_metric", False):
            # the keys _epoch_logs will produce: fail now, not after an epoch of training
            logged = {"loss", "lr", "grad_norm", "time"}
            if loss in _ACCURACY_LOSSES:
                logged.add("accuracy")
            if val is not None:
                logged.update("val_" + k for k in logged & {"loss", "accuracy"})
            metric = getattr(sched, "monitor", "val_loss" if val is not None else "loss")
            if metric not in logged:
                raise ValueError(f"{type(sched).__name__} monitors {metric!r}, which this fit "
                                 f"does not log (logs: {sorted(logged)}); pass validation "
                                 "data or choose another monitor")
        callbacks = list(callbacks)
        if early_stopping is not None and early_stopping is not False:
            from fastnet.callbacks import EarlyStopping
            if early_stopping is True:
                early_stopping = EarlyStopping()
            elif isinstance(early_stopping, numbers.Integral):
                early_stopping = EarlyStopping(patience=int(early_stopping))
            elif not isinstance(early_stopping, EarlyStopping):
                raise TypeError("early_stopping must be an EarlyStopping, an int patience "
                                "or True")
            if early_stopping.monitor.startswith("val_") and val is None:
                raise ValueError(f"early stopping monitors {early_stopping.monitor!r}: pass "
                                 "validation_data or validation_split")
            callbacks.append(early_stopping)

        record = None
        if checkpoint is not None or resume_state is not None:
            record = _checkpoint.run_record(
                (X, labels, targets, weights), val, batch_size=batch_size, loss=loss,
                schedule=sched, optimizer=opt, grad_clip=clip or None, shuffle=bool(shuffle),
                on_divergence=policy, track_gradients=samples,
                ranks=1 if dist is None else dist.size)
        if resume_state is not None:
            _checkpoint.check_run(resume_state, record)

        # ---- everything is valid: set up the engine ------------------------
        self.loss = loss
        self._targets_1d = loss != "cross_entropy" and np.ndim(y) == 1
        run = _distributed.start(
            dist, self, n, batch_size, (X, labels, targets, weights), val,
            loss=loss, epochs=epochs, grad_clip=clip, shuffle=bool(shuffle), seed=run_seed,
            optimizer=(type(opt).__name__, opt._native_hyper(), base_lr),
            resume=None if resume_state is None else resume_state["meta"]["epochs_done"])
        if run is not None and not run.root:
            verbose = 0
        engine, max_batch, steps = self._training_engine(
            X, labels, targets, weights, batch_size if run is None else run.max_batch, loss)
        if run is not None:
            run.bind(engine, weights)
            steps = run.steps
        dropout_seed = _dropout_seed(run_seed)
        governor = ThreadGovernor((tuple(self.layer_sizes), max_batch, self.dtype.name,
                                   self.batch_norm, self.dropout, loss))
        history = History()
        tracker = None
        if samples:
            history.history["layer_grad_norm"] = []
            history.history["dead_fraction"] = []
            tracker = _health.GradientTracker(engine, self.layer_sizes, steps, samples)
        guard = _health.DivergenceGuard(_health.baseline_loss(self.layer_sizes[-1], targets,
                                                              weights))
        rollback = policy if isinstance(policy, _health.Rollback) else None
        monitor = "val_loss" if val is not None else "loss"
        # An epoch's training loss is measured on the weights before each update, so it
        # judges the state the epoch started from (exactly so in full-batch training),
        # not the state after its last update; the validation loss judges the latter.
        judge_start = monitor == "loss"
        best_state, epoch_start = self._state_arrays(2)
        best_value, best_state = math.inf, self._state(into=best_state)
        self.stop_training = False
        for cb in callbacks:
            cb.model = self
        _call(callbacks, "on_train_begin", {})
        wants_batch_end = any(hasattr(cb, "on_batch_end") for cb in callbacks)
        interrupt = _InterruptFlag()
        global_step = opt.t
        start_epoch = 0
        if resume_state is not None:
            start_epoch, global_step, best_value, best_state = _checkpoint.restore(
                resume_state, self, opt, sched, callbacks, history)
        opt_buffers = self._bind_optimizer(engine, opt)
        lr_scale = history.rollbacks[-1]["lr_scale"] if history.rollbacks else 1.0
        good = _snapshot(self, opt_buffers, engine, global_step) if rollback else None
        watched = False        # a rollback happened: measure where each epoch ends
        try:
            interrupt.install()
            epoch = start_epoch
            while epoch < epochs:
                _call(callbacks, "on_epoch_begin", epoch, {})
                if shuffle:
                    order = np.random.default_rng([run_seed, epoch]).permutation(n)
                else:
                    order = np.arange(n, dtype=np.int64)
                engine.set_order(order)
                engine.begin_epoch()
                if tracker is not None:
                    tracker.begin_epoch()
                if run is not None:
                    run.begin_epoch(order)
                if judge_start:
                    epoch_start = self._state(into=epoch_start)
                start_snapshot = _snapshot(self, opt_buffers, engine, global_step) \
                    if rollback and not watched else None
                epoch_lr = float(sched(epoch)) * lr_scale if not per_step else None
                bar = _progress(verbose, steps, epoch, epochs)
                t0 = time.perf_counter()
                bad_loss = None
                b = 0
                while b < steps:
                    # no per-batch control needed: a block of steps in one native call
                    block = governor.block(steps - b) if run is None and tracker is None \
                        and not wants_batch_end and bar is None and guard.limit is not None else 1
                    if block > 1:
                        lrs = epoch_lr if epoch_lr is not None else np.array(
                            [float(sched(global_step + i)) * lr_scale for i in range(block)])
                        engine.threads = threads_now = governor.threads()
                        tick = time.perf_counter()
                        done, batch_loss = engine.run_steps(
                            b, b + block, max_batch, lrs, clip, dropout_seed, global_step,
                            guard.limit, lambda: interrupt.raised or self.stop_training)
                        governor.record(threads_now, time.perf_counter() - tick, done)
                        step_lr = lrs if epoch_lr is not None else float(lrs[done - 1])
                        global_step += done
                        b += done
                        if guard.diverged(batch_loss):
                            bad_loss = batch_loss
                            break
                        if interrupt.raised or self.stop_training:
                            break
                        continue
                    step_lr = epoch_lr if epoch_lr is not None else \
                        float(sched(global_step)) * lr_scale
                    start = b * max_batch
                    engine.threads = threads_now = governor.threads()
                    tick = time.perf_counter()
                    if run is None:
                        batch_loss = engine.step(start, min(n, start + max_batch), step_lr,
                                                 clip, dropout_seed, global_step & 0xFFFFFFFF)
                    else:
                        batch_loss = run.step(engine, b, step_lr, clip, dropout_seed,
                                              global_step & 0xFFFFFFFF,
                                              interrupt.raised or self.stop_training)
                    governor.record(threads_now, time.perf_counter() - tick)
                    global_step += 1
                    if guard.diverged(batch_loss):
                        bad_loss = batch_loss
                        break
                    if tracker is not None:
                        tracker.after_step(b)
                    if wants_batch_end:
                        _call(callbacks, "on_batch_end", b, {"loss": batch_loss, "batch": b})
                    if bar is not None:
                        bar.update(1)
                        if b % 8 == 0:
                            bar.set_postfix(loss=f"{engine.loss_sum / engine.rows:.4f}",
                                            refresh=False)
                    if run.stop if run is not None else (interrupt.raised or
                                                         self.stop_training):
                        break
                    b += 1
                if bar is not None:
                    bar.close()
                opt.t = engine.opt_step
                if run is not None:
                    run.end_epoch(engine)
                if bad_loss is None:
                    logs = self._epoch_logs(engine, loss, epoch_lr if epoch_lr is not None
                                            else step_lr, val)
                    if not math.isfinite(logs[monitor]):
                        bad_loss = logs[monitor]
                    elif self._state_problem() is not None:
                        # e.g. a running variance overflowed while the loss stayed finite
                        bad_loss = math.nan
                    elif watched:
                        # after a rollback the weights an epoch ends with must have learned
                        # (measured on them): a backed-off lr that keeps the loss finite but
                        # flat, or unlearns, backs off further
                        end_loss = self._training_loss(engine, X, labels, targets, weights)
                        if not guard.learned(end_loss):
                            bad_loss = end_loss
                if bad_loss is not None:
                    if rollback is not None and len(history.rollbacks) < rollback.max_rollbacks:
                        lr_now = epoch_lr if epoch_lr is not None else step_lr
                        lr_scale /= rollback.factor
                        history.rollbacks.append({
                            "epoch": epoch, "step": global_step - 1, "loss": float(bad_loss),
                            "lr": lr_now, "new_lr": lr_now / rollback.factor,
                            "lr_scale": lr_scale})
                        global_step = _rewind(self, opt_buffers, engine, opt, good)
                        if verbose:
                            what = "did not improve on the starting loss" \
                                if watched and math.isfinite(bad_loss) else "diverged"
                            _write(f"Epoch {epoch + 1}/{epochs}: loss {bad_loss:.3g} {what}; "
                                   f"rolled back to the last good state, lr {lr_now:.3g} -> "
                                   f"{lr_now / rollback.factor:.3g}")
                        watched = True
                        continue
                    history.diverged = True
                    break
                logs["time"] = time.perf_counter() - t0
                if tracker is not None:
                    logs["layer_grad_norm"], logs["dead_fraction"] = tracker.end_epoch()
                if run is not None:
                    logs = run.agree_logs(logs)
                for key in history.history:
                    if key in logs:
                        history.history[key].append(logs[key])
                history.epochs = epoch + 1
                value = logs[monitor]
                if value < best_value:
                    if judge_start:
                        best_state, epoch_start = epoch_start, best_state
                    else:
                        best_state = self._state(into=best_state)
                    best_value = value
                    history.best_epoch = epoch
                if getattr(sched, "needs_metric", False):
                    metric = getattr(sched, "monitor", monitor)
                    if metric not in logs:
                        raise ValueError(f"{type(sched).__name__} monitors {metric!r}, which "
                                         f"this fit does not log (logs: {sorted(logs)})")
                    sched.step(logs[metric])
                _call(callbacks, "on_epoch_end", epoch, logs)
                if verbose:
                    _print_epoch(epoch, epochs, logs)
                if run is not None:
                    interrupt.raised, self.stop_training = run.agree_flags(
                        interrupt.raised, self.stop_training)
                if checkpoint is not None and ((epoch + 1) % every == 0 or epoch + 1 == epochs
                                               or self.stop_training or interrupt.raised):
                    if run is None or run.root:     # one writer; the others wait for it
                        _checkpoint.write(checkpoint, self, opt, sched, callbacks, history,
                                          epoch + 1, global_step, best_value, best_state,
                                          run_seed, record)
                    if run is not None:
                        run.barrier()
                if watched:           # the state this epoch ended with learned (measured)
                    good = _snapshot(self, opt_buffers, engine, global_step)
                elif rollback is not None and guard.learned(logs["loss"]):
                    # the loss that learned was measured from the epoch's start on
                    good = start_snapshot
                if interrupt.raised:
                    history.interrupted = True
                    break
                if self.stop_training:
                    history.stopped_epoch = epoch
                    break
                epoch += 1
        except BaseException as exc:
            if run is not None and run.size > 1:
                run.abort(exc)
            raise
        finally:
            interrupt.uninstall()
            opt.t = engine.opt_step
        if history.diverged or history.interrupted:
            self._restore(best_state)
            if history.diverged and policy != "raise":
                warnings.warn("the training loss or the weights became NaN or infinite, or "
                              f"the loss exploded (over {guard.factor:g}x its starting loss); "
                              "stopped and restored the best weights seen (lower the "
                              "learning rate, scale the inputs, clip gradients with "
                              "grad_clip=..., or pass on_divergence='rollback')",
                              RuntimeWarning, stacklevel=2)
        if tracker is not None:
            history.health = _health.history_report(history.history, self.activation)
            if verbose and history.health:
                _write(history.health)
        _call(callbacks, "on_train_end", {})
        es = [cb for cb in callbacks if hasattr(cb, "stopped_epoch")]
        if es and getattr(es[-1], "stopped_epoch", None) is not None:
            history.stopped_epoch = es[-1].stopped_epoch
        self.optimizer = opt
        self.history = history
        if history.diverged and policy == "raise":
            raise _health.TrainingDiverged(
                f"training diverged in epoch {history.epochs + 1} (loss NaN/inf or over "
                f"{guard.factor:g}x its starting loss); the best weights were restored",
                history)
        return history

    def _training_rows(self, X, y, loss, sample_weight=None, class_weight=None):
        """Checked (X, labels, targets, row weights); the row weight is
        ``sample_weight * class_weight[label]`` (None when neither is given)."""
        X = self._check_x(X)
        n = X.shape[0]
        labels, targets = self._check_y(y, n, loss)
        if class_weight is None:
            return X, labels, targets, _sample_weights(sample_weight, n, self.dtype,
                                                       "sample_weight")
        if labels is None:
            raise ValueError("class_weight needs loss='cross_entropy' (class labels)")
        weights = _sample_weights(sample_weight, n, np.float64, "sample_weight")
        rows = _health.class_weights(labels, class_weight, self.layer_sizes[-1])[labels]
        weights = c_array(rows if weights is None else weights * rows, self.dtype)
        if not np.any(weights > 0):
            raise ValueError("class_weight (with sample_weight) leaves no row with a "
                             "positive weight")
        return X, labels, targets, weights

    def _training_engine(self, X, labels, targets, weights, batch_size, loss):
        """An Engine bound to the training rows; returns (engine, max_batch, steps per epoch)."""
        n = X.shape[0]
        max_batch = min(batch_size, n)
        engine = self._engine(max_batch, loss)
        engine.set_data(X, labels, targets, weights)
        steps = int(math.ceil(n / max_batch))
        # a trailing batch of one row has no batch variance: skip it
        if self.batch_norm and steps > 1 and n % max_batch == 1:
            steps -= 1
        return engine, max_batch, steps

    def _bind_optimizer(self, engine, opt):
        """Give the engine the optimizer's hyper-parameters, step and state buffers."""
        buffers = opt.buffers_for(self.params.size, self.dtype)
        engine.set_optimizer(opt.kind, *opt._native_hyper(), opt.t, *buffers)
        return buffers

    @_changes_model
    def lr_find(self, X, y, *, start_lr=1e-7, end_lr=10.0, steps=100, batch_size=64,
                optimizer="adam", weight_decay=None, loss=None, sample_weight=None,
                class_weight=None, seed=None, smoothing=0.9, diverge_factor=4.0):
        """Learning-rate range test (Smith 2017): which lr to train with.

        Trains ``steps`` mini-batches (cycling through seeded shuffles of the
        data) with the lr growing geometrically from ``start_lr`` to
        ``end_lr``, ``lr_k = start_lr * (end_lr / start_lr) ** (k / (steps -
        1))``, and stops early once the moving average of the losses exceeds
        ``diverge_factor`` times its minimum.  The suggestion is the lr of
        steepest descent of the (lag-free) smoothed loss against log10(lr)
        before that point (:func:`fastnet.health.suggest_lr`; the details
        and measurements are in :mod:`fastnet.health`).  Afterwards the weights,
        batch-norm statistics and the optimizer's state (when an optimizer
        object is passed) are exactly as before; ``model.optimizer`` is not
        used.

        Parameters
        ----------
        X, y : training data, as for :meth:`fit`
        start_lr, end_lr : float, 0 < start_lr < end_lr
        steps : int >= 3
        batch_size : int
        optimizer, weight_decay, loss, sample_weight, class_weight, seed
            As for :meth:`fit` (``loss`` defaults to the model's).
        smoothing : float in [0, 1)
            beta of the exponential moving averages of the losses.
        diverge_factor : float > 1

        Returns
        -------
        fastnet.health.LRFinderResult
            ``lrs``, ``losses``, ``smoothed``, ``suggested_lr``, ``diverged_at``.
        """
        loss = self.loss if loss is None else one_of(loss, "loss", _network.LOSSES)
        start_lr = real_number(start_lr, "start_lr", low=0.0, low_open=True)
        end_lr = real_number(end_lr, "end_lr", low=0.0, low_open=True)
        if end_lr <= start_lr:
            raise ValueError(f"end_lr ({end_lr}) must be larger than start_lr ({start_lr})")
        steps = _positive_int(steps, "steps")
        if steps < 3:
            raise ValueError(f"steps must be >= 3, got {steps}")
        batch_size = _positive_int(batch_size, "batch_size")
        if self.batch_norm and batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 with batch_norm=True, got {batch_size}")
        smoothing = real_number(smoothing, "smoothing", low=0.0, high=1.0, high_open=True)
        diverge_factor = real_number(diverge_factor, "diverge_factor", low=1.0, low_open=True)
        X, labels, targets, weights = self._training_rows(X, y, loss, sample_weight,
                                                          class_weight)
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"lr_find needs at least 2 rows, X has {n}")
        run_seed = self.seed if seed is None else seed_value(seed)
        opt = _optim.get(optimizer, lr=start_lr, weight_decay=weight_decay)
        saved_opt = opt.state_dict() if opt is optimizer else None
        lrs = _health.lr_range(start_lr, end_lr, steps)
        engine, max_batch, per_epoch = self._training_engine(X, labels, targets, weights,
                                                             batch_size, loss)
        dropout_seed = _dropout_seed(run_seed)
        state = self._state()
        losses = []
        watch = _health.DivergenceWatch(smoothing, diverge_factor)
        diverged_at = None
        try:
            self._bind_optimizer(engine, opt)
            for k, lr in enumerate(lrs):
                epoch, b = divmod(k, per_epoch)
                if b == 0:
                    engine.set_order(np.random.default_rng([run_seed, 0x1F, epoch])
                                     .permutation(n))
                losses.append(engine.step(b * max_batch, min(n, (b + 1) * max_batch), lr, 0.0,
                                          dropout_seed, k))
                if watch.add(losses[-1]):
                    diverged_at = k
                    break
        finally:
            self._restore(state)
            if saved_opt is not None:
                optimizer.load_state_dict(saved_opt)
        smoothed = _health.zero_lag_smooth(losses, smoothing)
        lrs = lrs[:len(losses)]
        return _health.LRFinderResult(lrs, losses, smoothed,
                                      _health.suggest_lr(lrs, smoothed, diverged_at),
                                      diverged_at)

    @_changes_model
    def gradients(self, X, y, *, loss=None, seed=None, sample_weight=None, class_weight=None):
        """Loss and gradients of one training-mode pass over (X, y), no update.

        Batch statistics normalise as in training, but the running
        statistics are left alone; dropout draws its mask from `seed`.
        ``sample_weight`` and ``class_weight`` weigh the loss as in
        :meth:`fit`.

        Returns
        -------
        loss : float
        grads : list of dict
            Per layer, copies of the gradients: "w", and "b" or "gamma",
            "beta".
        """
        loss = self.loss if loss is None else one_of(loss, "loss", _network.LOSSES)
        X, labels, targets, weights = self._training_rows(X, y, loss, sample_weight,
                                                          class_weight)
        if self.batch_norm and X.shape[0] < 2:
            raise ValueError("batch norm needs at least 2 rows to compute gradients")
        engine = self._engine(X.shape[0], loss)
        engine.freeze_bn_stats = True
        engine.set_data(X, labels, targets, weights)
        engine.set_order(np.arange(X.shape[0], dtype=np.int64))
        value = engine.step(0, X.shape[0], 0.0, 0.0,
                            seed_value(self.seed if seed is None else seed), 0, update=False)
        grads = [{name[1:]: layer[name].copy() for name in ("dw", "db", "dgamma", "dbeta")
                  if name in layer} for layer in self.layers]
        return value, grads

    def _engine(self, max_batch, loss):
        return _network.Engine(self.layer_sizes, self.params, self.grads, self.buffers,
                               _network.ACTIVATIONS[self.activation], self.batch_norm,
                               self.dropout, self.bn_eps, self.bn_momentum,
                               _network.LOSSES[loss], max_batch, self.negative_slope,
                               self.huber_delta, self._norm == "layer")

    def _training_loss(self, engine, X, labels, targets, weights):
        """Loss of the weights as they are on the rows (X, ...), in inference mode."""
        out = np.empty((X.shape[0], self._layer_sizes[-1]), dtype=self._dtype)
        engine.forward(X, out)
        value = self._score(out, labels, targets, weights)["loss"]
        return value if math.isfinite(value) else math.inf

    def _epoch_logs(self, engine, loss, lr, val):
        logs = {"loss": engine.loss_sum / engine.rows, "lr": lr,
                "grad_norm": engine.grad_norm_sum / engine.steps}
        if loss in _ACCURACY_LOSSES:
            logs["accuracy"] = engine.correct / engine.rows
        if val is not None:
            out = np.empty((val[0].shape[0], self.layer_sizes[-1]), dtype=self.dtype)
            engine.forward(val[0], out)
            logs.update({"val_" + k: v
                         for k, v in self._score(out, val[1], val[2], val[3]).items()})
        return logs

    # ---- inference -------------------------------------------------------------

    def _outputs(self, X):
        X = self._check_x(X)
        n = X.shape[0]
        out = np.empty((n, self._layer_sizes[-1]), dtype=self._dtype)
        engine, token = self._access.begin_read("predict", n)
        try:
            if engine is None:
                engine = self._engine(max(min(n, _PREDICT_ROWS), 256), self.loss)
            engine.forward(X, out)
        finally:
            self._access.end_read(engine, token)
        return out

    def _score(self, outputs, labels, targets, weights=None):
        """Loss of ``self.loss`` (and accuracy: of the class, or of every label of a row
        with "bce"), both weighted by `weights` when given."""
        from fastnet import functional
        if labels is not None:
            value, _ = functional.softmax_cross_entropy(outputs, labels, sample_weight=weights)
            hits = outputs.argmax(axis=1) == labels
        elif self.loss == "bce":
            value, _ = functional.binary_cross_entropy_with_logits(outputs, targets,
                                                                  sample_weight=weights)
            hits = np.all((outputs > 0) == (targets > 0.5), axis=1)
        else:
            value, _ = (functional.huber_loss(outputs, targets, delta=self.huber_delta,
                                              sample_weight=weights)
                        if self.loss == "huber" else
                        functional.mse_loss(outputs, targets, sample_weight=weights))
            return {"loss": float(value)}
        accuracy = np.mean(hits) if weights is None else \
            np.sum(weights * hits, dtype=np.float64) / np.sum(weights, dtype=np.float64)
        return {"loss": float(value), "accuracy": float(accuracy)}

    def predict(self, X):
        """Class labels (cross-entropy), 0/1 per output (bce) or outputs (mse, huber)
        for X, in inference mode."""
        out = self._outputs(X)
        if self.loss == "cross_entropy":
            return out.argmax(axis=1)
        if self.loss == "bce":
            out = (out > 0).astype(np.int64)         # sigmoid(z) > 1/2
        return out.reshape(-1) if self._targets_1d else out

    def predict_proba(self, X):
        """Softmax probabilities (n, n_classes) for X; with loss="bce", the sigmoid
        of each output (n, n_out)."""
        from fastnet import functional
        out = self._outputs(X)
        if self.loss == "bce":
            return _sigmoid(out)
        return functional.softmax(out)

    def evaluate(self, X, y):
        """{"loss": ..., "accuracy": ...} (accuracy for classification only)."""
        out = self._outputs(X)
        labels, targets = self._check_y(y, out.shape[0], self.loss)
        return self._score(out, labels, targets)

    # ---- persistence -------------------------------------------------------------

    def config(self):
        """JSON-serialisable description from which the model is rebuilt."""
        return {"layer_sizes": self.layer_sizes, "activation": self.activation,
                "negative_slope": self.negative_slope, "batch_norm": self.batch_norm,
                "norm": self.norm, "dropout": self.dropout,
                "dtype": self.dtype.name, "seed": self.seed, "loss": self.loss,
                "targets_1d": self._targets_1d, "bn_eps": self.bn_eps,
                "huber_delta": self.huber_delta,
                "bn_momentum": self.bn_momentum}

    def save(self, path, *, format=None):
        """Write the model to `path`: arrays + JSON metadata, no pickle.

        Parameters
        ----------
        path : str or os.PathLike
        format : {"npz", "safetensors"}, optional
            Default: "safetensors" when `path` ends in ``.safetensors``, else
            "npz".  A safetensors file holds each array under its
            :meth:`weight_names` name and the config as metadata (it opens
            with ``safetensors.numpy.load_file``); both read back with
            :func:`fastnet.load`.

        The file is written to a temporary name, flushed to disk and renamed,
        so a crash never leaves a half-written model behind.

        Raises
        ------
        ValueError
            When the weights or buffers hold NaN or infinity or a negative
            running variance (a file :func:`load` would refuse).
        """
        from fastnet import export
        with self._access.reading("save"):
            problem = self._state_problem()
            if problem is not None:
                raise ValueError(f"not saving {os.fspath(path)!r}: the model's {problem}, so "
                                 f"fastnet.load would refuse the file")
            if export.file_format(path, format) == "safetensors":
                export.save_safetensors(self, path)
                return
            meta = {"format": _FORMAT, "version": _FORMAT_VERSION, "config": self.config()}
            atomic_savez(path, meta, {"params": self.params, "buffers": self.buffers})

    # ---- export --------------------------------------------------------------------------

    def to_onnx(self, path=None, *, opset=None, fold_batch_norm=True):
        """The model's inference as ONNX (needs the onnx package: ``fastnet[onnx]``).

        One input ``"input"`` ``(N, n_features)`` of the model's dtype (N
        dynamic) and one output: ``"probabilities"`` (what
        :meth:`predict_proba` returns) for cross-entropy, ``"predictions"``
        (what :meth:`predict` returns) for regression.  Checked with
        ``onnx.checker``; see :mod:`fastnet.export` for the details.

        Parameters
        ----------
        path : str or os.PathLike, optional
            Where to write the model; None returns its bytes.
        opset : int, optional
            ONNX opset, default 17 (at least 13).
        fold_batch_norm : bool
            Fold batch norm into the linear layers (default) or write
            ``BatchNormalization`` nodes.

        Returns
        -------
        bytes or None
            The serialized ``onnx.ModelProto`` when `path` is None.

        Raises
        ------
        ImportError
            onnx is not installed.
        ValueError
            An opset out of range, or an activation or loss with no ONNX form.
        """
        from fastnet import export
        with self._access.reading("to_onnx"):
            return export.to_onnx(self, path, opset=opset, fold_batch_norm=fold_batch_norm)

    def to_torch(self):
        """An equivalent ``torch.nn.Sequential`` in eval mode (needs torch).

        Linear (weights transposed to PyTorch's ``(out, in)``), BatchNorm1d
        with the running statistics, eps and momentum, the activation, and
        ``nn.Dropout`` when the model has dropout, per hidden block; then the
        output Linear.  Its output is the logits (or regression outputs):
        apply ``torch.softmax(out, dim=1)`` for :meth:`predict_proba`'s
        probabilities.  Float32 or float64 like the model.

        Returns
        -------
        torch.nn.Sequential
        """
        from fastnet import export
        with self._access.reading("to_torch"):
            return export.to_torch(self)

    @classmethod
    def from_torch(cls, module, *, loss="cross_entropy"):
        """An MLP with the weights of a ``torch.nn.Sequential`` shaped like
        :meth:`to_torch`'s (needs torch).

        The Sequential must be (Linear, [BatchNorm1d], activation, [Dropout])
        blocks, all alike, then a Linear.  A Linear bias before a BatchNorm1d
        (which fastnet's batch-norm layers do not have) is folded into the
        running mean: it only shifts what batch norm subtracts.

        Parameters
        ----------
        module : torch.nn.Sequential
        loss : "cross_entropy" or "mse"
            What the logits are for (decides what :meth:`predict` returns).

        Raises
        ------
        TypeError
            `module` is not a Sequential, or its parameters are not all
            float32 or all float64.
        ValueError
            A layer that does not fit, named with its position and type.
        """
        from fastnet import export
        return export.from_torch(module, loss=loss)


def _sample_weights(value, n, dtype, name):
    """None, or a finite non-negative (n,) array with a positive sum."""
    if value is None:
        return None
    source = real_array(value, name)
    if source.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {source.dtype}")
    if source.shape != (n,):
        raise ValueError(f"{name} must be a finite, non-negative array of shape ({n},), got "
                         f"shape {source.shape}")
    weights = finite_array(source, dtype, name)
    if np.any(weights < 0):
        raise ValueError(f"{name} must be a finite, non-negative array of shape ({n},); it "
                         f"holds negative weights")
    if not np.any(weights > 0):
        raise ValueError(f"{name} must have at least one positive entry")
    return weights


@functools.lru_cache(maxsize=64)
def _dropout_seed(run_seed):
    # cached: SeedSequence hashing costs ~1 % of a small one-epoch fit
    return int(np.random.SeedSequence([run_seed, 0xD209]).generate_state(1, np.uint64)[0])


def _snapshot(model, opt_buffers, engine, global_step):
    """Copies of what a rollback restores: weights, buffers, optimizer state and step."""
    return (model._state(), [None if b is None else b.copy() for b in opt_buffers],
            engine.opt_step, global_step)


def _rewind(model, opt_buffers, engine, opt, snap):
    """Restore a :func:`_snapshot` in place (the engine stays bound); returns its step."""
    state, buffers, opt_step, global_step = snap
    model._restore(state)
    for target, saved in zip(opt_buffers, buffers):
        if target is not None:
            target[...] = saved
    engine.opt_step = opt.t = opt_step
    return global_step


def _write(text):
    from tqdm.auto import tqdm
    tqdm.write(text)


def _positive_int(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return int(value)


def _call(callbacks, method, *args):
    for cb in callbacks:
        fn = getattr(cb, method, None)
        if fn is not None:
            fn(*args)


def _progress(verbose, steps, epoch, epochs):
    if verbose != 1:
        return None
    from tqdm.auto import tqdm
    # disable=None: no bar when stderr is not a terminal (log files get the epoch lines only)
    return tqdm(total=steps, desc=f"Epoch {epoch + 1}/{epochs}", leave=False, unit="batch",
                dynamic_ncols=True, disable=None)


def _print_epoch(epoch, epochs, logs):
    parts = [f"Epoch {epoch + 1}/{epochs}", f"loss {logs['loss']:.4f}"]
    if "accuracy" in logs:
        parts.append(f"acc {logs['accuracy']:.4f}")
    if "val_loss" in logs:
        parts.append(f"val_loss {logs['val_loss']:.4f}")
    if "val_accuracy" in logs:
        parts.append(f"val_acc {logs['val_accuracy']:.4f}")
    parts.append(f"lr {logs['lr']:.3g}")
    parts.append(f"{logs['time']:.2f}s")
    _write("  ".join(parts))


class _InterruptFlag:
    """Ctrl-C during fit: finish the current batch, then stop cleanly."""

    def __init__(self):
        self.raised = False
        self._previous = None

    def _handler(self, signum, frame):
        if self.raised:       # a second Ctrl-C interrupts at once
            raise KeyboardInterrupt
        self.raised = True

    def install(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)

    def uninstall(self):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def _parameter_counts(layer_sizes, batch_norm, layer_norm=False):
    """(n_params, n_buffers): the lengths of the flat arrays, as Python ints.

    The layout ``fn_mlp_layout`` computes (per layer W, then b, or gamma and
    beta with a running mean and variance under batch norm, or b, gamma and
    beta under layer norm), counted without int64 wrap-around so that absurd
    widths are refused before anything is allocated.
    """
    n_params = n_buffers = 0
    last = len(layer_sizes) - 2
    for l, (fan_in, fan_out) in enumerate(zip(layer_sizes, layer_sizes[1:])):
        bn, ln = batch_norm and l < last, layer_norm and l < last
        n_params += fan_in * fan_out + (3 if ln else 2 if bn else 1) * fan_out
        n_buffers += 2 * fan_out if bn else 0
    return n_params, n_buffers




def _file_config(meta, path):
    """The model config in a file's metadata, checked before anything is allocated.

    Returns (config, {array name: (shape, dtype)} the config implies).
    """
    if meta.get("format") != _FORMAT or meta.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{path} is not a fastnet model file (format "
                         f"{reprlib.repr(meta.get('format'))}, version "
                         f"{reprlib.repr(meta.get('version'))})")
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: metadata has no model config")
    try:
        sizes = cfg["layer_sizes"]
        if not isinstance(sizes, list) or len(sizes) < 2 \
                or not all(type(s) is int and s >= 1 for s in sizes):
            raise ValueError(f"layer_sizes must be a list of at least 2 ints >= 1, got "
                             f"{reprlib.repr(sizes)}")
        for key in ("batch_norm", "targets_1d"):
            if not isinstance(cfg.get(key, False), bool):
                raise ValueError(f"{key} must be true or false, got "
                                 f"{reprlib.repr(cfg[key])}")
        dtype = cfg["dtype"]
        if dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got "
                             f"{reprlib.repr(dtype)}")
        dtype = np.dtype(dtype)
        norm = cfg.get("norm", "batch" if cfg["batch_norm"] else None)   # older files
        if norm not in _NORMS or (norm == "batch") != cfg["batch_norm"]:
            raise ValueError(f"norm {reprlib.repr(norm)} does not fit batch_norm "
                             f"{cfg['batch_norm']!r}")
        n_params, n_buffers = _parameter_counts(sizes, cfg["batch_norm"], norm == "layer")
        if (n_params + _GRAD_SLOTS) * dtype.itemsize > np.iinfo(np.intp).max:
            raise ValueError(f"layer_sizes {reprlib.repr(sizes)} give {n_params} parameters, "
                             "more than any array can hold")
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config ({exc})") from None
    return cfg, {"params": ((n_params,), dtype), "buffers": ((n_buffers,), dtype)}


def _model_from(meta, arrays, path):
    """The MLP of a file whose metadata and arrays :func:`_file_config` accepted."""
    cfg, _ = _file_config(meta, path)
    sizes, batch_norm = cfg["layer_sizes"], cfg["batch_norm"]
    for name in ("params", "buffers"):
        if not np.all(np.isfinite(arrays[name])):
            raise ValueError(f"{path}: array {name!r} holds NaN or infinity")
    layers = _network.layout(sizes, batch_norm, cfg.get("norm") == "layer")[0]
    for l, offsets in enumerate(layers):
        if "running_var" in offsets:
            start = offsets["running_var"]
            if np.any(arrays["buffers"][start:start + sizes[l + 1]] < 0):
                raise ValueError(f"{path}: layer {l}'s running_var holds negative values (a "
                                 "variance is >= 0)")
    try:
        model = MLP(sizes, activation=cfg["activation"],
                    norm=cfg.get("norm", "batch" if batch_norm else None),   # older files
                    dropout=cfg["dropout"], dtype=cfg["dtype"], seed=cfg["seed"],
                    negative_slope=cfg.get("negative_slope", 0.01),   # older files: defaults
                    huber_delta=cfg.get("huber_delta", 1.0))
        model.loss = one_of(cfg["loss"], "loss", _network.LOSSES)
        model._targets_1d = bool(cfg.get("targets_1d", False))
        model.bn_eps = real_number(cfg.get("bn_eps", 1e-5), "bn_eps", low=0.0)
        model.bn_momentum = real_number(cfg.get("bn_momentum", 0.1), "bn_momentum", low=0.0,
                                        high=1.0)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: invalid model config ({exc})") from None
    model.params[...] = arrays["params"]
    model.buffers[...] = arrays["buffers"]
    return model


def load(path):
    """Read a model written by :meth:`MLP.save` (.npz or safetensors, told apart by
    the file's first bytes, else by its suffix).

    The file holds arrays and JSON only; it is read with pickling disabled,
    so loading never runs code from the file.  Reading is bounded by the
    file: the config is checked first, then each array's header against the
    shape the config implies, before anything is allocated; only the arrays
    a model needs are read.

    Parameters
    ----------
    path : path-like or binary file

    Returns
    -------
    MLP

    Raises
    ------
    ValueError
        Naming the file, when it is truncated, corrupted, hand-edited into
        an inconsistent or invalid model (including NaN/inf weights or a
        negative batch-norm running variance), or not a fastnet model (a
        CSV, a single ``.npy`` array, a checkpoint).
    FileNotFoundError
        If `path` does not exist.
    """
    from fastnet import _safetensors, export
    if _safetensors.looks_like_safetensors(path):
        return export.load_safetensors(path)
    meta, arrays = read_npz(path, "fastnet model", lambda meta: _file_config(meta, path)[1])
    return _model_from(meta, arrays, path)
