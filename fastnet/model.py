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
import math
import numbers
import os
import reprlib
import threading
import types

import numpy as np

from fastnet import _activations, _fit_plan, _inputs, _network, _weights
from fastnet import distributed as _distributed
from fastnet import health as _health
from fastnet import init as _init
from fastnet import optim as _optim
from fastnet._io import atomic_savez, read_npz
from fastnet._validation import (
    c_array,
    finite_array,
    float_dtype,
    one_of,
    positive_int,
    real_array,
    real_number,
    seed_value,
)

__all__ = ["MLP", "History", "load"]

_FORMAT = "fastnet-model"
_FORMAT_VERSION = 1
_PREDICT_ROWS = 1024          # rows per native call when predicting
_POOL_SIZE = 4                # inference engines a model keeps for concurrent calls
_GRAD_SLOTS = len(_distributed.GRAD_TAIL)   # after the gradients: the per-step scalars


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
        ``layer{i}.gamma`` and ``layer{i}.beta``, and under both the hidden
        Linear has no bias (beta takes its role).
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
        self._activation = one_of(activation, "activation", _activations.trainable())
        self.negative_slope = negative_slope
        self.huber_delta = huber_delta
        self._norm = _resolve_norm(norm, batch_norm)
        self._batch_norm = self._norm == "batch"
        self._dtype = float_dtype(dtype)
        self._access = _Access()
        self.dropout = dropout
        self.seed = seed
        self.init = init
        self.bn_eps = 1e-5
        self.bn_momentum = 0.1
        self.loss = "cross_entropy"      # set by fit; decides what predict returns
        self._targets_1d = False
        self.feature_names_in_ = None    # fit on a data frame: its column names
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
        model cost page faults on every call (docs/measurements.md)."""
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
                             ("_norm", "batch" if state.get("_batch_norm") else None),
                             ("feature_names_in_", None)):
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

    def _check_x(self, X, name="X", dtype=None, convert=True):
        """X as a finite C-contiguous (n, n_in) array of `dtype` (default: the model's);
        an array that is one already (read-only or memory-mapped too) is not copied, nor
        any array with convert=False (training and inference convert a chunk of rows at a
        time).  A scipy.sparse matrix becomes a canonical CSR matrix, a data frame an
        array of its columns, a list of 2-D arrays :class:`fastnet._inputs.Shards`."""
        n_in = self._layer_sizes[0]
        if isinstance(X, _inputs.Rows):      # rows of an array, e.g. fastnet.sklearn's split
            return _inputs.Rows(self._check_x(X.base, name, dtype, convert), X.index)
        if isinstance(X, _inputs.Shards):    # checked already (e.g. by the command line)
            return X.as_dtype(self._dtype if dtype is None else dtype)
        if _inputs.is_shard_list(X, name):   # e.g. memory-mapped .npy shards: never joined
            return _inputs.Shards([self._check_x(part, f"{name}[{i}]", dtype, False)
                                   for i, part in enumerate(X)],
                                  self._dtype if dtype is None else dtype)
        if _inputs.is_sparse(X):
            if X.ndim != 2 or X.shape[1] != n_in or X.shape[0] == 0:
                raise ValueError(f"{name} has shape {X.shape} but the model takes (n, {n_in}) "
                                 f"with n >= 1")
            return _inputs.as_csr(X, self._dtype if dtype is None else dtype, name)
        arr = real_array(_inputs.frame_array(X, name), name)
        if arr.dtype.kind not in "iuf":          # not bool, complex, object, ...
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        if arr.ndim != 2 or arr.shape[1] != n_in:
            raise ValueError(f"{name} has shape {arr.shape} but the model takes (n, {n_in})")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        return finite_array(arr, self._dtype if dtype is None else dtype, name, convert)

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
        X : array (n, layer_sizes[0]), list of arrays, scipy.sparse matrix or data frame
            An array of the model's dtype, C-contiguous (read-only or memory-mapped
            too), is used in place, never copied (the validation split and the
            shuffles are index sets); other dtypes and layouts are converted a block
            of batches at a time, as is a list of 2-D arrays (e.g. memory-mapped
            ``.npy`` shards), read as the rows of one array in turn.  Sparse
            matrices train the first layer natively (CSC, COO: converted to CSR
            once); pandas, pyarrow and polars frames need numeric columns without
            missing values, and their column names are kept in ``feature_names_in_``
            (see docs/data.md).
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
        shuffle : bool or "chunks", default True
            Shuffle the rows every epoch (seeded).  ``"chunks"``: runs of contiguous
            rows (about 4 MB each) in a random order, rows shuffled among 8 runs, so
            that data larger than memory (a memory-mapped ``.npy``) is read from disk
            in long sequential pieces; see docs/data.md for its effect on accuracy.
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
        plan = _fit_plan.make_plan(
            self, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
            schedule=schedule, validation_data=validation_data,
            validation_split=validation_split, early_stopping=early_stopping, loss=loss,
            grad_clip=grad_clip, shuffle=shuffle, seed=seed, verbose=verbose,
            callbacks=callbacks, weight_decay=weight_decay, sample_weight=sample_weight,
            checkpoint=checkpoint, checkpoint_every=checkpoint_every, resume=resume,
            class_weight=class_weight, track_gradients=track_gradients,
            on_divergence=on_divergence, distributed=distributed)
        return _fit_plan.run(self, plan)

    def _training_rows(self, X, y, loss, sample_weight=None, class_weight=None):
        """Checked (X, labels, targets, row weights), X as the engine reads it (never
        converted as a whole: see ``fastnet._inputs.engine_readable``); the weights as
        ``fastnet._weights`` makes them."""
        X = _inputs.engine_readable(self._check_x(X, convert=False), self._dtype)
        n = X.shape[0]
        labels, targets = self._check_y(y, n, loss)
        weights = _weights.row_weights(labels, n, self.dtype, sample_weight, class_weight,
                                       self.layer_sizes[-1])
        return X, labels, targets, weights

    def _training_engine(self, X, labels, targets, weights, batch_size, loss, n_rows=None):
        """An Engine fed the rows of X (``fastnet._inputs.feed``); returns (engine, feed,
        max_batch, steps per epoch) for epochs of `n_rows` rows (default: all)."""
        n = X.shape[0] if n_rows is None else n_rows
        max_batch = min(batch_size, n)
        engine = self._engine(max_batch, loss)
        feed = _inputs.feed(engine, X, labels, targets, weights, max_batch)
        steps = int(math.ceil(n / max_batch))
        # a trailing batch of one row has no batch variance: skip it
        if self.batch_norm and steps > 1 and n % max_batch == 1:
            steps -= 1
        return engine, feed, max_batch, steps

    def _bind_optimizer(self, engine, opt):
        """Give the engine the optimizer's hyper-parameters, step and state buffers."""
        buffers = opt.buffers_for(self.params.size, self.dtype)
        engine.set_optimizer(opt.kind, *opt.native_config().hyper(), opt.t, *buffers)
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
        steps = positive_int(steps, "steps")
        if steps < 3:
            raise ValueError(f"steps must be >= 3, got {steps}")
        batch_size = positive_int(batch_size, "batch_size")
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
        state, stop_training = self._state(), self.stop_training
        try:
            losses, diverged_at = _fit_plan.range_test(
                self, (X, labels, targets, weights), loss, batch_size, opt, lrs, run_seed,
                _health.DivergenceWatch(smoothing, diverge_factor))
        finally:
            self._restore(state)
            self.stop_training = stop_training
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
        if isinstance(X, _inputs.Shards):
            X = X[:]                     # one batch of all rows: converted whole
        engine = self._engine(X.shape[0], loss)
        engine.freeze_bn_stats = True
        _inputs.bind(engine, X, labels, targets, weights)
        engine.set_order(np.arange(X.shape[0], dtype=np.int64))
        value = engine.step(0, X.shape[0], 0.0, 0.0,
                            seed_value(self.seed if seed is None else seed), 0, update=False)
        grads = [{name[1:]: layer[name].copy() for name in ("dw", "db", "dgamma", "dbeta")
                  if name in layer} for layer in self.layers]
        return value, grads

    def _engine(self, max_batch, loss):
        return _network.Engine(self.layer_sizes, self.params, self.grads, self.buffers,
                               _activations.native()[self.activation], self.batch_norm,
                               self.dropout, self.bn_eps, self.bn_momentum,
                               _network.LOSSES[loss], max_batch, self.negative_slope,
                               self.huber_delta, self._norm == "layer")

    def _training_loss(self, engine, X, labels, targets, weights):
        """Loss of the weights as they are on the rows (X, ...), in inference mode."""
        out = np.empty((X.shape[0], self._layer_sizes[-1]), dtype=self._dtype)
        _inputs.forward(engine, X, out)
        value = self._score(out, labels, targets, weights)["loss"]
        return value if math.isfinite(value) else math.inf

    def _epoch_logs(self, totals, engine, loss, lr, val):
        """The epoch's logs from the stepper's totals (loss_sum, correct, rows,
        grad_norm_sum, steps), validation scores from an inference pass of `engine`."""
        loss_sum, correct, rows, grad_norm_sum, steps = totals
        logs = {"loss": loss_sum / rows, "lr": lr, "grad_norm": grad_norm_sum / steps}
        if loss in _fit_plan.ACCURACY_LOSSES:
            logs["accuracy"] = correct / rows
        if val is not None:
            out = np.empty((val[0].shape[0], self.layer_sizes[-1]), dtype=self.dtype)
            _inputs.forward(engine, val[0], out)
            logs.update({"val_" + k: v
                         for k, v in self._score(out, val[1], val[2], val[3]).items()})
        return logs

    # ---- inference -------------------------------------------------------------

    def _outputs(self, X):
        _inputs.check_columns(self.feature_names_in_, X, "X")
        X = self._check_x(X, convert=False)
        n = X.shape[0]
        out = np.empty((n, self._layer_sizes[-1]), dtype=self._dtype)
        engine, token = self._access.begin_read("predict", n)
        try:
            if engine is None:
                engine = self._engine(max(min(n, _PREDICT_ROWS), 256), self.loss)
            _inputs.forward(engine, X, out)
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
                "bn_momentum": self.bn_momentum,
                "feature_names": None if self.feature_names_in_ is None
                else [str(c) for c in self.feature_names_in_]}

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
        n_params += fan_in * fan_out + (2 if bn or ln else 1) * fan_out
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
        names = cfg.get("feature_names")          # older files: none
        if names is not None:
            if not isinstance(names, list) or len(names) != sizes[0] \
                    or not all(isinstance(c, str) for c in names):
                raise ValueError(f"feature_names must be {sizes[0]} column names, got "
                                 f"{reprlib.repr(names)}")
            model.feature_names_in_ = np.asarray(names, dtype=object)
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
