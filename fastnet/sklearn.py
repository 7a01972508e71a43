"""scikit-learn estimators: :class:`MLPClassifier` and :class:`MLPRegressor`.

Drop-in replacements for ``sklearn.neural_network.MLPClassifier`` /
``MLPRegressor`` that train a :class:`fastnet.MLP` (Linear -> BatchNorm ->
activation -> Dropout blocks) with AdamW, warmup then reduce-on-plateau
learning rates and early stopping on a held-out validation split, in
fastnet's native kernels::

    from fastnet.sklearn import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    clf = make_pipeline(StandardScaler(), MLPClassifier(random_state=0))
    clf.fit(X_train, y_train).score(X_test, y_test)

scikit-learn is an optional dependency (``pip install fastnet[sklearn]``).

Threads
-------
``n_threads`` sets fastnet's kernel threads for ``fit``, ``partial_fit`` and
the predict methods (the previous count is restored afterwards).  The default
``n_threads=None`` means:

* ``fastnet.get_num_threads()`` in an ordinary process.  That default honours
  ``OMP_NUM_THREADS``, and a joblib/loky worker (``GridSearchCV(n_jobs=k)``,
  ``cross_val_score(n_jobs=k)``) is started with ``OMP_NUM_THREADS =
  max(1, cpu_count // k)`` (or ``inner_max_num_threads`` of
  ``joblib.parallel_config``), so each worker already runs on its share of the
  cores and k workers do not oversubscribe the machine;
* 1 inside a worker *thread* of joblib's threading backend (a joblib backend
  with ``nesting_level >= 1`` is active and the code is not on the main
  thread): such workers share one process, hence one fastnet thread count.

fastnet's thread count is process-wide.  Estimators fitting concurrently in
threads of one process run on the smallest count any of them asked for, and
the count in force before the first of them started is restored when the last
one ends.  Results do not depend on the thread count (fastnet is bit-identical
for any number of threads).
"""
import copy
import math
import numbers
import warnings

import numpy as np

try:
    from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.utils import check_random_state
    from sklearn.utils.class_weight import compute_sample_weight
    from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
    from sklearn.utils.validation import (
        _check_sample_weight,
        check_is_fitted,
        column_or_1d,
        validate_data,
    )
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastnet.sklearn needs scikit-learn >= 1.6: "
                      "pip install 'fastnet[sklearn]'") from exc

import fastnet
from fastnet import _activations, _inputs
from fastnet import optim as _optim
from fastnet import schedules as _schedules
from fastnet._threads import effective_n_threads, shared_limit
from fastnet._validation import float_dtype, integer, one_of, real_number
from fastnet.callbacks import EarlyStopping

__all__ = ["MLPClassifier", "MLPRegressor", "effective_n_threads"]

SCHEDULES = ("warmup_cosine", "cosine", "constant", "plateau", "onecycle")
_SEED_MAX = 2**31 - 1




# ---- helpers ---------------------------------------------------------------------------

# scipy.sparse input: the first layer multiplies CSR natively (scikit-learn converts
# CSC, COO, ... to CSR once)
_SPARSE = "csr"
# dtypes scikit-learn's validation leaves alone: fastnet converts them a block of batches
# at a time (fit) or a chunk at a time (predict), never as a whole; others (bool, object,
# float16) become the model's dtype there
_KEPT_DTYPES = (np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
                np.uint16, np.uint32, np.uint64)


def _x_dtypes(dtype):
    """validate_data's dtype argument for X: `dtype` first, then the kept ones."""
    return [np.dtype(dtype)] + [d for d in _KEPT_DTYPES if np.dtype(d) != np.dtype(dtype)]


def _auto_or(value, name, check, *bounds, **options):
    """`value` checked by `check`, or the string "auto" (resolved at fit time)."""
    if isinstance(value, str):
        if value != "auto":
            raise ValueError(f"{name} must be a number or 'auto', got {value!r}")
        return value
    return check(value, name, *bounds, **options)


# What the "auto" parameters resolve to, with and without early stopping in effect
# (_BaseMLP._resolve_auto; the evidence is in docs/defaults.md).
_SMALL_DATA_ROWS = 1000
_AUTO_WITH_EARLY_STOPPING = {"dropout": 0.3, "lr": 4e-3, "batch_size": 64}
_AUTO_WITHOUT_EARLY_STOPPING = {"dropout": 0.0, "lr": 1e-3, "batch_size": 200}


def _target_standardization(y, weights):
    """Per-column (weighted) mean and scale that standardise the targets `y`.

    The scale is the standard deviation, whatever the targets' magnitude; for a
    column whose spread is within rounding of its mean (a constant), 1, or its
    largest deviation from the mean when that is larger, so that the targets
    stay within [-1, 1].  Computed on y
    divided by a power of two near max |y|, which is exact: for ordinary targets
    the result is bit for bit that of the direct formulas, while |y| up to the
    float64 maximum (whose variance would overflow above ~1e154) works too.
    """
    unit = np.ldexp(1.0, np.frexp(np.max(np.abs(y), axis=0))[1] - 1)
    unit[unit == 0] = 1.0
    z = y / unit
    mean = np.average(z, axis=0, weights=weights)
    deviation = z - mean
    std = np.sqrt(np.average(deviation ** 2, axis=0, weights=weights))
    mean, std = mean * unit, std * unit
    constant = ~(std > 1e-12 * np.abs(mean))       # also std 0 at mean 0
    spread = np.max(np.abs(deviation), axis=0) * unit
    std[constant] = np.maximum(1.0, spread[constant])
    return mean, std


# MLPRegressor's losses (scikit-learn's name of the squared error) and fastnet's names
_REGRESSION_LOSSES = {"squared_error": "mse", "huber": "huber"}
# scikit-learn's names of activations fastnet calls otherwise
_SKLEARN_ACTIVATIONS = {"logistic": "sigmoid"}


def _optimizer_key(opt):
    return opt if isinstance(opt, str) else id(opt)


# ---- the estimators ----------------------------------------------------------------------

class _BaseMLP(BaseEstimator):
    """Shared machinery of MLPClassifier and MLPRegressor."""

    _loss = None

    def _model_options(self, p):
        """Keywords of fastnet.MLP that the estimator's parameters set."""
        return {}

    def _store(self, arguments):
        """Keep the constructor's arguments as attributes, unchanged (scikit-learn's
        rule: validation happens in fit).  Each estimator spells its parameters out in
        its own ``__init__`` because ``get_params`` reads them from that signature."""
        for name, value in arguments.items():
            if name not in ("self", "__class__"):
                setattr(self, name, value)

    # ---- parameters ---------------------------------------------------------------------

    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        if isinstance(sizes, numbers.Integral) and not isinstance(sizes, bool):
            sizes = (sizes,)
        try:
            if isinstance(sizes, (str, bytes)):      # iterable, but of characters
                raise TypeError
            sizes = list(sizes)
        except TypeError:
            raise TypeError("hidden_layer_sizes must be an int or a sequence of ints, got "
                            f"{self.hidden_layer_sizes!r}") from None
        return [integer(s, "hidden_layer_sizes", 1) for s in sizes]

    def _check_params(self):
        """Validated copies of the parameters (the attributes are never changed)."""
        p = {}
        p["hidden"] = self._hidden_sizes()
        activation = one_of(self.activation, "activation",
                            (*_activations.trainable(), *_SKLEARN_ACTIVATIONS), ignore_case=True)
        p["activation"] = _SKLEARN_ACTIVATIONS.get(activation, activation)
        if isinstance(self.init, str):
            p["init"] = one_of(self.init, "init", ("he", "xavier", "lecun"), ignore_case=True)
        elif callable(self.init):
            p["init"] = self.init
        else:
            raise TypeError(f"init must be 'he', 'xavier', 'lecun' or a callable, got "
                            f"{self.init!r}")
        p["dropout"] = _auto_or(self.dropout, "dropout", real_number, 0.0, 1.0,
                                high_open=True)
        if isinstance(self.optimizer, _optim.Optimizer):
            p["optimizer"] = self.optimizer
        else:
            p["optimizer"] = one_of(self.optimizer, "optimizer", _optim.OPTIMIZERS,
                                    ignore_case=True)
        p["lr"] = _auto_or(self.learning_rate_init, "learning_rate_init", real_number, 0.0,
                           low_open=True)
        p["weight_decay"] = real_number(self.weight_decay, "weight_decay", 0.0,
                                        allow_none=True)
        p["batch_size"] = _auto_or(self.batch_size, "batch_size", integer, 2)
        p["max_iter"] = integer(self.max_iter, "max_iter", 1)
        if isinstance(self.schedule, str):
            p["schedule"] = one_of(self.schedule, "schedule", SCHEDULES, ignore_case=True)
        elif self.schedule is None or callable(self.schedule):
            p["schedule"] = self.schedule
        else:
            raise TypeError(f"schedule must be one of {list(SCHEDULES)}, a fastnet.schedules "
                            f"object, a callable epoch -> lr or None, got {self.schedule!r}")
        p["warmup_epochs"] = integer(self.warmup_epochs, "warmup_epochs", 0)
        p["validation_fraction"] = real_number(self.validation_fraction,
                                               "validation_fraction", 0.0, 1.0,
                                               low_open=True, high_open=True)
        p["n_iter_no_change"] = integer(self.n_iter_no_change, "n_iter_no_change", 1)
        p["tol"] = real_number(self.tol, "tol", 0.0)
        p["grad_clip"] = real_number(self.grad_clip, "grad_clip", 0.0, low_open=True,
                                     allow_none=True)
        if isinstance(self.early_stopping, str):
            p["early_stopping"] = one_of(self.early_stopping, "early_stopping", ("auto",))
        else:
            p["early_stopping"] = bool(self.early_stopping)
        p["n_threads"] = integer(self.n_threads, "n_threads", 1, allow_none=True)
        p["verbose"] = integer(int(self.verbose) if isinstance(self.verbose, bool)
                                  else self.verbose, "verbose", 0)
        try:
            p["dtype"] = float_dtype(self.dtype)
        except TypeError as exc:      # scikit-learn's rule: a bad parameter value
            raise ValueError(str(exc)) from None
        return p

    def _resolve_auto(self, p, n_samples, incremental):
        """Replace the "auto" values in `p` by those for a fit on `n_samples` rows.

        ``early_stopping="auto"`` holds out a validation split for every regressor and for
        a classifier from ``_SMALL_DATA_ROWS`` rows up.  With early stopping in effect, the
        "auto" dropout, learning rate and batch size are the article's regularised recipe
        (0.3, 4e-3, 64); without it (a small classifier, ``early_stopping=False``,
        ``partial_fit``) they are scikit-learn's optimisation (no dropout, 1e-3, batches of
        ``min(200, n)``): on fewer than 1000 rows a held-out tenth chose the epoch by noise
        and dropout without early stopping underfitted (docs/defaults.md).
        """
        if p["early_stopping"] == "auto":
            p["early_stopping"] = self._early_stopping_by_default(n_samples)
        stops_early = p["early_stopping"] and not incremental
        resolved = _AUTO_WITH_EARLY_STOPPING if stops_early else _AUTO_WITHOUT_EARLY_STOPPING
        for name, value in resolved.items():
            if p[name] == "auto":
                p[name] = min(value, n_samples) if name == "batch_size" else value
        self.do_early_stopping_ = stops_early

    def _threads(self, p=None):
        n = self.n_threads if p is None else p["n_threads"]
        return shared_limit(effective_n_threads(n))

    # ---- pickling: fastnet.MLP holds native engines and views of one flat array -----------

    def __getstate__(self):
        state = self.__dict__.copy()
        model = state.get("model_")
        if model is not None:
            state["model_"] = {"__fastnet_mlp__": 1, "config": model.config(),
                               "init": model.init if isinstance(model.init, str) else "he",
                               "params": model.params.copy(),
                               "buffers": model.buffers.copy(),
                               "history": getattr(model, "history", None)}
        return state

    def __setstate__(self, state):
        model = state.get("model_")
        if isinstance(model, dict) and model.get("__fastnet_mlp__"):
            cfg = model["config"]
            mlp = fastnet.MLP(cfg["layer_sizes"], activation=cfg["activation"],
                              batch_norm=cfg["batch_norm"], dropout=cfg["dropout"],
                              init=model["init"], dtype=cfg["dtype"], seed=cfg["seed"],
                              negative_slope=cfg.get("negative_slope", 0.01))
            mlp.loss = cfg["loss"]
            mlp._targets_1d = cfg["targets_1d"]
            mlp.bn_eps = cfg["bn_eps"]
            mlp.bn_momentum = cfg["bn_momentum"]
            mlp.params[...] = model["params"]
            mlp.buffers[...] = model["buffers"]
            if model["history"] is not None:
                mlp.history = model["history"]
            if state.get("_optimizer") is not None:
                mlp.optimizer = state["_optimizer"]
            state["model_"] = mlp
        self.__dict__.update(state)

    # ---- fitting ---------------------------------------------------------------------------

    def fit(self, X, y, sample_weight=None):
        """Train on (X, y) for up to ``max_iter`` epochs.

        With ``warm_start=True`` and a fitted model, training continues from
        the current weights *and optimizer state* (Adam moments and step
        count), with a fresh schedule of ``max_iter`` epochs.

        Parameters
        ----------
        X : array-like (n_samples, n_features)
        y : array-like (n_samples,) labels, or (n_samples,) / (n_samples, n_outputs)
            regression targets
        sample_weight : array-like (n_samples,), optional
            Per-row weight of the loss (each mini-batch's loss is the
            weighted mean of its rows).

        Returns
        -------
        self
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental, classes=None):
        p = self._check_params()
        first = (not hasattr(self, "model_")) or (not self.warm_start and not incremental)
        X, y = self._validate_xy(X, y, reset=first, dtype=p["dtype"])
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=np.float64,
                                                 ensure_non_negative=True)
        n = X.shape[0]
        if n < 2:
            raise ValueError(f"{type(self).__name__} needs at least 2 samples to train (batch "
                             f"normalisation and mini-batches), got n_samples={n}")
        self._resolve_auto(p, n, incremental)
        if first:
            self._reset(p)
        targets, sample_weight = self._encode_targets(y, sample_weight, first, incremental,
                                                      classes)
        if sample_weight is not None and not np.any(sample_weight > 0):
            raise ValueError("sample_weight must have at least one positive entry")

        # a fresh stream per fit / partial_fit call, reproducible from random_state
        rng = np.random.RandomState((self._seed_base + 1_000_003 * self.n_iter_) % _SEED_MAX)
        run_seed = int(rng.randint(_SEED_MAX))

        if first:
            self.model_ = fastnet.MLP([X.shape[1], *p["hidden"], self._n_outputs],
                                      activation=p["activation"], init=p["init"],
                                      batch_norm=self.batch_norm,
                                      dropout=p["dropout"], dtype=p["dtype"],
                                      seed=self._seed_base, **self._model_options(p))
        else:
            self._check_warm_model(p, X.shape[1])
        self.model_.dropout = p["dropout"]
        opt = self._get_optimizer(p, first)

        # ---- validation split (fit with early stopping only) ----------------------------
        val = None
        X_train, t_train, w_train = X, targets, sample_weight
        if p["early_stopping"] and not incremental:
            split = self._validation_split(X, targets, sample_weight, p, rng)
            if split is not None:
                X_train, t_train, w_train, val = split
        n_train = X_train.shape[0]
        batch = min(p["batch_size"], n_train)
        epochs = 1 if incremental else p["max_iter"]
        sched = None if incremental else self._make_schedule(p, epochs, val is not None)

        callbacks = []
        early = None
        if not incremental:
            if val is not None:
                early = EarlyStopping(patience=p["n_iter_no_change"], min_delta=p["tol"],
                                      monitor="val_loss", restore_best_weights=True)
            else:
                # sklearn's rule without validation data: stop when the training loss has
                # not improved by tol for n_iter_no_change epochs (weights of the last epoch)
                early = EarlyStopping(patience=p["n_iter_no_change"], min_delta=p["tol"],
                                      monitor="loss", restore_best_weights=False)
        scorer = _ValidationScores(self, val)
        if val is not None:
            callbacks.append(scorer)

        verbose = {0: 0, 1: 2}.get(p["verbose"], 1)
        with self._threads(p):
            history = self.model_.fit(
                X_train, t_train, epochs=epochs, batch_size=batch, optimizer=opt,
                schedule=sched, validation_data=val,
                early_stopping=early, loss=self._loss, grad_clip=p["grad_clip"],
                shuffle=True, seed=run_seed, verbose=verbose, callbacks=callbacks,
                sample_weight=w_train)
        self._optimizer = self.model_.optimizer
        self._record(history, scorer, early, val is not None, n_train, incremental, p)
        return self

    def _reset(self, p):
        for name in ("model_", "_optimizer", "_optimizer_key"):
            self.__dict__.pop(name, None)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self.validation_loss_curve_ = []
        self.validation_scores_ = [] if p["early_stopping"] else None
        self.best_validation_score_ = None
        self.best_loss_ = None
        self.best_epoch_ = None
        rs = check_random_state(self.random_state)
        self._seed_base = int(rs.randint(_SEED_MAX))

    def _check_warm_model(self, p, n_features):
        m = self.model_
        wanted = [n_features, *p["hidden"], self._n_outputs]
        if (m.layer_sizes != wanted or m.activation != p["activation"]
                or m.batch_norm != bool(self.batch_norm) or m.dtype != p["dtype"]):
            raise ValueError(
                "warm_start / partial_fit continue the fitted network, but the parameters now "
                f"describe another one (layers {wanted}, activation {p['activation']!r}, "
                f"batch_norm={bool(self.batch_norm)}, dtype {p['dtype'].name}; fitted: "
                f"{m.layer_sizes}, {m.activation!r}, {m.batch_norm}, {m.dtype.name}); "
                "set warm_start=False to train a new one")

    def _get_optimizer(self, p, first):
        """The optimizer object: kept (with its moments) across warm starts/partial_fit."""
        key = _optimizer_key(self.optimizer)
        opt = getattr(self, "_optimizer", None)
        if first or opt is None or getattr(self, "_optimizer_key", None) != key:
            if isinstance(p["optimizer"], _optim.Optimizer):
                opt = copy.deepcopy(p["optimizer"])      # never touch the parameter
            elif p["optimizer"] == "sgd":
                opt = _optim.SGD(lr=p["lr"], momentum=0.9, nesterov=True,
                                 weight_decay=p["weight_decay"] or 0.0)
            else:
                opt = _optim.get(p["optimizer"], lr=p["lr"], weight_decay=p["weight_decay"])
            self._optimizer_key = key
        if not isinstance(p["optimizer"], _optim.Optimizer):
            # learning_rate_init / weight_decay may have changed since the last fit
            opt.lr = p["lr"]
            if p["weight_decay"] is not None:
                opt.weight_decay = p["weight_decay"]
        return opt

    def _make_schedule(self, p, epochs, has_val):
        lr = p["lr"]
        s = p["schedule"]
        if s is None or s == "constant":
            return None
        if not isinstance(s, str):
            return copy.deepcopy(s)     # stateful schedules must not leak between fits
        min_lr = lr * 1e-3
        if s == "cosine":
            return _schedules.CosineAnnealing(lr, epochs, min_lr=min_lr)
        warmup = min(p["warmup_epochs"], epochs - 1)
        if s == "warmup_cosine":
            if warmup == 0:
                return _schedules.CosineAnnealing(lr, epochs, min_lr=min_lr)
            return _schedules.WarmupCosine(lr, warmup, epochs, min_lr=min_lr)
        if s == "plateau":
            return _schedules.ReduceLROnPlateau(
                lr, factor=0.2, patience=max(1, p["n_iter_no_change"] // 3),
                min_delta=p["tol"], min_lr=min_lr, warmup_epochs=warmup,
                monitor="val_loss" if has_val else "loss")
        if s == "onecycle":
            return _schedules.OneCycle(lr, total_steps=max(2, epochs), per_step=False)
        raise AssertionError(s)  # pragma: no cover

    def _validation_split(self, X, targets, sample_weight, p, rng):
        n = X.shape[0]
        n_val = int(math.ceil(p["validation_fraction"] * n))
        if n_val < 1 or n - n_val < 2:
            warnings.warn(f"{type(self).__name__}: {n} samples are too few to hold out a "
                          f"validation_fraction of {p['validation_fraction']}; training "
                          "without early stopping", UserWarning, stacklevel=4)
            return None
        stratify = self._stratify(targets, n_val)
        idx = np.arange(n)
        train_idx, val_idx = train_test_split(idx, test_size=n_val, random_state=rng,
                                              stratify=stratify)
        train_idx.sort()
        val_idx.sort()
        # the validation loss early stopping watches is weighted like the training loss
        w, w_val = (None, None) if sample_weight is None else \
            (sample_weight[train_idx], sample_weight[val_idx])
        if w is not None and not np.any(w > 0):
            w = None
        if w_val is not None and not np.any(w_val > 0):
            w_val = None
        # index sets over X: the rows are not copied
        val = (_inputs.Rows(X, val_idx), targets[val_idx]) + \
            (() if w_val is None else (w_val,))
        return _inputs.Rows(X, train_idx), targets[train_idx], w, val

    def _stratify(self, targets, n_val):
        return None

    def _record(self, history, scorer, early, has_val, n_train, incremental, p):
        h = history.history
        self.n_iter_ += history.epochs
        self.t_ += history.epochs * n_train
        self.loss_curve_.extend(float(v) for v in h["loss"])
        self.history_ = history
        if has_val:
            self.validation_loss_curve_.extend(float(v) for v in h["val_loss"])
            if self.validation_scores_ is None:
                self.validation_scores_ = []
            self.validation_scores_.extend(scorer.scores)
        best = None if early is None else early.best_epoch
        if has_val and best is not None:
            self.best_epoch_ = best
            self.best_loss_ = float(h["val_loss"][best])
            self.best_validation_score_ = float(scorer.scores[best])
        elif h["loss"]:
            self.best_epoch_ = int(np.argmin(h["loss"]))
            self.best_loss_ = float(np.min(h["loss"]))
        if history.diverged:
            warnings.warn(f"{type(self).__name__}: the training loss became NaN or infinite; "
                          "the best weights seen were kept (lower learning_rate_init or set "
                          "grad_clip)", ConvergenceWarning, stacklevel=3)
        elif (not incremental and history.epochs == p["max_iter"] and best is not None
              and best >= history.epochs - 1 and p["max_iter"] > 1):
            warnings.warn(f"{type(self).__name__}: the monitored loss was still improving in "
                          f"the last of max_iter={p['max_iter']} epochs; the model may "
                          "benefit from a larger max_iter", ConvergenceWarning, stacklevel=3)

    def _partial_fit(self, X, y, sample_weight, classes=None):
        return self._fit(X, y, sample_weight, incremental=True, classes=classes)

    # ---- prediction --------------------------------------------------------------------------

    def _check_predict_x(self, X):
        check_is_fitted(self, "model_")
        return validate_data(self, X, reset=False, dtype=_x_dtypes(self.model_.dtype),
                             accept_sparse=_SPARSE)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        return tags


class _ValidationScores:
    """fit callback: the estimator's score on the validation data after each epoch."""

    def __init__(self, estimator, val):
        self.estimator, self.val, self.scores = estimator, val, []

    def on_epoch_end(self, epoch, logs):
        if self.val is None:
            return
        self.scores.append(self.estimator._validation_score(self.model, logs, self.val))


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multi-layer perceptron classifier trained by fastnet.

    A scikit-learn estimator around :class:`fastnet.MLP`: hidden blocks
    Linear -> BatchNorm -> activation -> Dropout, softmax output,
    cross-entropy loss, AdamW with warmup then reduce-on-plateau learning
    rates, and early stopping on the validation loss (weighted like the
    training loss) of a stratified held-out split (the best epoch's weights,
    batch-norm statistics included, are kept).

    Multilabel: with y a 2-D 0/1 indicator array (n_samples, n_labels), as
    scikit-learn's MLPClassifier takes, each label gets a sigmoid output and
    binary cross-entropy; ``classes_`` is ``arange(n_labels)``, ``predict``
    gives 0/1 per label and ``predict_proba`` each label's probability, and
    ``score`` is the subset accuracy (every label of a row right).

    Parameters
    ----------
    hidden_layer_sizes : int or sequence of int, default (128, 128)
    activation : str, default "relu"
        Hidden activation: "relu", "leaky_relu" (slope 0.01), "gelu", "silu",
        "tanh", "sigmoid" or "identity" (see :class:`fastnet.MLP`), or
        "logistic", scikit-learn's name of "sigmoid".
    init : {"he", "xavier", "lecun"} or callable, default "he"
        Initialisation of the weights (see :mod:`fastnet.init`); "he" is
        the article's N(0, 2/fan_in) for ReLU.
    batch_norm : bool, default True
    dropout : float in [0, 1) or "auto", default "auto"
        Dropout rate after every hidden activation.  "auto" is 0.3 with
        early stopping in effect and 0 without it (dropout without early
        stopping underfitted the small data sets of docs/defaults.md).
    optimizer : {"adamw", "adam", "sgd"} or fastnet.optim.Optimizer, default "adamw"
        "sgd" is Nesterov momentum 0.9.  An optimizer object is copied at the
        first fit (its own lr and weight decay are then used).
    learning_rate_init : float or "auto", default "auto"
        Peak learning rate.  "auto" is 4e-3 with early stopping in effect
        and 1e-3 (scikit-learn's) without it.
    weight_decay : float or None, default None
        None keeps the optimizer's default (0.01 decoupled for AdamW, 0 for
        Adam and SGD).
    batch_size : int >= 2 or "auto", default "auto"
        "auto" is 64 with early stopping in effect and ``min(200,
        n_samples)`` (scikit-learn's "auto") without it.
    max_iter : int, default 200
        Maximum number of epochs.
    schedule : str, fastnet schedule object, callable or None, default "plateau"
        "plateau" (linear warmup over ``warmup_epochs``, then divide the
        rate by 5 after ``n_iter_no_change // 3`` epochs without improvement
        of the monitored loss, down to ``learning_rate_init / 1000``),
        "warmup_cosine" (warmup, then cosine decay to
        ``learning_rate_init / 1000`` at ``max_iter``), "cosine", "constant"
        or "onecycle".  "plateau" suits early stopping, which usually ends
        the run long before ``max_iter``.
        An object or callable ``epoch -> lr`` is copied for every fit.
    warmup_epochs : int, default 5
    early_stopping : bool or "auto", default "auto"
        Hold out ``validation_fraction`` of the data (stratified), stop when
        the validation loss has not improved by ``tol`` for
        ``n_iter_no_change`` epochs and keep the best epoch's weights.
        Without early stopping, training stops when the training loss stalls
        in the same way (scikit-learn's rule).  "auto" is on from 1000
        samples (for :class:`MLPRegressor`, always): on fewer, a held-out
        tenth is too small to choose the epoch.  ``partial_fit`` never
        stops early.  Together the "auto" values train a small classifier
        as scikit-learn's MLP does and a larger one with the article's
        recipe; docs/defaults.md has the benchmark behind each default.
    validation_fraction : float in (0, 1), default 0.1
    n_iter_no_change : int, default 10
    tol : float, default 1e-4
    grad_clip : float or None, default None
        Clip the global gradient norm.
    class_weight : dict, "balanced" or None, default None
        Multiplies the sample weights by the weight of each row's class.
    random_state : int, RandomState or None, default None
        Seeds the initial weights, the validation split, the shuffling and
        dropout.  Results do not depend on the thread count.
    n_threads : int or None, default None
        fastnet threads during fit and predict; None is fastnet's current
        count, limited inside joblib workers (see :mod:`fastnet.sklearn`).
    verbose : int, default 0
        1 prints a line per epoch, 2 also a progress bar.
    warm_start : bool, default False
        Continue from the fitted weights and optimizer state on the next fit.
    dtype : {"float32", "float64"}, default "float32"

    Attributes
    ----------
    classes_ : ndarray of the class labels
    n_features_in_, feature_names_in_
    model_ : fastnet.MLP
        The trained network (it predicts class indices into ``classes_``).
    n_iter_ : int
        Epochs trained (summed over warm starts and partial_fit calls).
    t_ : int
        Training samples seen.
    loss_curve_ : list of float
        Training loss per epoch (with dropout active).
    validation_loss_curve_, validation_scores_ : lists
        Validation loss and accuracy per epoch (early stopping only;
        ``validation_scores_`` is None without it).
    best_epoch_ : int
        Epoch (of the last fit, from 0) whose weights were kept.
    best_loss_ : float
        Validation loss at ``best_epoch_`` with early stopping, else the
        lowest training loss.
    best_validation_score_ : float or None
        Validation accuracy at ``best_epoch_``.
    do_early_stopping_ : bool
        Whether the last fit held out a validation split and stopped early
        (what ``early_stopping="auto"`` resolved to).
    history_ : fastnet.History of the last fit
    """

    def _early_stopping_by_default(self, n_samples):
        return n_samples >= _SMALL_DATA_ROWS

    def __init__(self, hidden_layer_sizes=(128, 128), *, activation="relu", init="he",
                 batch_norm=True, dropout="auto", optimizer="adamw",
                 learning_rate_init="auto", weight_decay=None, batch_size="auto", max_iter=200,
                 schedule="plateau", warmup_epochs=5, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, grad_clip=None, class_weight=None, random_state=None,
                 n_threads=None, verbose=0, warm_start=False, dtype="float32"):
        self._store(locals())

    def _check_params(self):
        p = super()._check_params()
        cw = self.class_weight
        if not (cw is None or cw == "balanced" or isinstance(cw, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict, got {cw!r}")
        return p

    @property
    def _loss(self):
        # a 2-D 0/1 y (multilabel): a sigmoid and binary cross-entropy per label
        return "bce" if getattr(self, "_multilabel", False) else "cross_entropy"

    def _validate_xy(self, X, y, reset, dtype):
        X, y = validate_data(self, X, y, reset=reset, dtype=_x_dtypes(dtype), multi_output=True,
                             accept_sparse=_SPARSE)
        if np.ndim(y) == 2 and y.shape[1] == 1:          # a column of labels: 1-D, warned
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        kind = type_of_target(y)
        if np.ndim(y) == 2 and kind != "multilabel-indicator":
            raise ValueError(f"{type(self).__name__} takes 1-D class labels or a 2-D 0/1 "
                             f"indicator array (multilabel); got 2-D y of type {kind!r}")
        if reset:
            self._multilabel = kind == "multilabel-indicator"
        elif self._multilabel != (kind == "multilabel-indicator"):
            fitted = "a 2-D 0/1 indicator array" if self._multilabel else "1-D labels"
            raise ValueError(f"y must be of the kind the model was fitted on ({fitted})")
        return X, y

    @property
    def _n_outputs(self):
        return len(self.classes_)

    def _encode_targets(self, y, sample_weight, first, incremental, classes):
        if self._multilabel:
            return self._encode_multilabel(y, sample_weight, first)
        if incremental and classes is not None:
            classes = unique_labels(classes)
            if hasattr(self, "classes_") and not first and not np.array_equal(
                    classes, self.classes_):
                raise ValueError(f"classes={classes!r} differs from the classes of the "
                                 f"previous partial_fit call {self.classes_!r}")
        if first:
            if incremental:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to "
                                     "partial_fit (all the labels the model will see)")
                self.classes_ = classes
            else:
                self.classes_ = unique_labels(y)
            if len(self.classes_) < 2:
                raise ValueError(f"{type(self).__name__} needs samples of at least 2 classes "
                                 f"in the data, but the data contains only one class: "
                                 f"{self.classes_[0]!r}")
        unseen = np.setdiff1d(unique_labels(y), self.classes_)
        if unseen.size:
            raise ValueError(f"y contains labels {unseen.tolist()} not among the classes "
                             f"{self.classes_.tolist()} of the fitted model" +
                             ("; warm_start needs the same classes" if self.warm_start
                              and not incremental else ""))
        encoded = np.searchsorted(self.classes_, y).astype(np.int64)
        if self.class_weight is not None:
            cw = compute_sample_weight(self.class_weight, y)
            sample_weight = cw if sample_weight is None else sample_weight * cw
        if sample_weight is not None and not incremental and first:
            weighted = np.unique(encoded[sample_weight > 0])
            if weighted.size < 2:
                raise ValueError("only one class has non-zero sample weight; "
                                 f"{type(self).__name__} needs at least 2 classes to train")
        return encoded, sample_weight

    def _encode_multilabel(self, y, sample_weight, first):
        """A 0/1 indicator y (n, n_labels): the targets of the per-label sigmoids."""
        if self.class_weight is not None:
            raise ValueError("class_weight is not supported for multilabel y (a 2-D "
                             "indicator array); pass sample_weight instead")
        y = np.asarray(y)
        if first:
            self.classes_ = np.arange(y.shape[1])
        elif y.shape[1] != len(self.classes_):
            raise ValueError(f"y has {y.shape[1]} labels but the fitted model has "
                             f"{len(self.classes_)}")
        return y.astype(np.float64), sample_weight

    def _stratify(self, targets, n_val):
        if targets.ndim == 2:          # multilabel: no stratification
            return None
        counts = np.bincount(targets)
        counts = counts[counts > 0]
        if counts.min() >= 2 and n_val >= counts.size and targets.size - n_val >= counts.size:
            return targets
        return None

    def _validation_score(self, model, logs, val):
        return float(logs["val_accuracy"])

    def partial_fit(self, X, y, classes=None, sample_weight=None):
        """One epoch over (X, y), continuing the weights and optimizer state.

        Parameters
        ----------
        X, y : the batch (at least 2 samples)
        classes : array-like, required on the first call
            Every label the model will ever see.
        sample_weight : array-like (n_samples,), optional

        Returns
        -------
        self
        """
        return self._partial_fit(X, y, sample_weight, classes=classes)

    def predict_proba(self, X):
        """Class probabilities (n_samples, n_classes), columns in the order of
        ``classes_``; for multilabel y, each label's probability (n_samples, n_labels)."""
        X = self._check_predict_x(X)
        with self._threads():
            proba = self.model_.predict_proba(X)
        proba = proba.astype(np.float64)
        if not self._multilabel:
            proba /= proba.sum(axis=1, keepdims=True)
        return proba

    def predict_log_proba(self, X):
        """Logarithm of :meth:`predict_proba`."""
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def predict(self, X):
        """Predicted class labels (the most probable class); for multilabel y, 0/1 per
        label (probability above 1/2)."""
        if getattr(self, "_multilabel", False):
            X = self._check_predict_x(X)
            with self._threads():
                return self.model_.predict(X)
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multi-layer perceptron regressor trained by fastnet.

    The network of :class:`MLPClassifier` with a linear output layer and the
    mean squared error.  Single and multi-output targets.

    Unlike scikit-learn's ``MLPRegressor``, targets are standardised by
    default (``standardize_targets=True``): the network is trained on
    ``(y - mean) / std`` (per output, weighted by ``sample_weight``) and
    predictions are mapped back.  So the output bias does not have to travel
    to the targets' mean and the learning rate does not depend on their unit;
    the losses (``loss_curve_``, ``best_loss_``) are then in standardised
    units.  ``warm_start`` and ``partial_fit`` keep the scaling of the first
    fit.

    Parameters
    ----------
    standardize_targets : bool, default True
    loss : {"squared_error", "huber"}, default "squared_error"
        "huber": the Huber loss, robust to outliers (PyTorch's ``HuberLoss``),
        with threshold ``huber_delta`` in the units of the (standardised,
        by default) targets.
    huber_delta : float > 0, default 1.0
    (others)
        As :class:`MLPClassifier` (without ``class_weight``);
        ``validation_scores_`` and ``best_validation_score_`` hold the
        validation R^2.
    """

    def _early_stopping_by_default(self, n_samples):
        return True        # even on small sets: without it, diabetes overfits (docs/defaults.md)

    def __init__(self, hidden_layer_sizes=(128, 128), *, activation="relu", init="he",
                 batch_norm=True, dropout="auto", optimizer="adamw",
                 learning_rate_init="auto", weight_decay=None, batch_size="auto", max_iter=200,
                 schedule="plateau", warmup_epochs=5, early_stopping="auto",
                 validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, grad_clip=None, standardize_targets=True, random_state=None,
                 n_threads=None, verbose=0, warm_start=False, dtype="float32",
                 loss="squared_error", huber_delta=1.0):
        self._store(locals())

    @property
    def _loss(self):
        return _REGRESSION_LOSSES[one_of(self.loss, "loss", tuple(_REGRESSION_LOSSES),
                                         ignore_case=True)]

    def _model_options(self, p):
        return {"huber_delta": real_number(self.huber_delta, "huber_delta", 0.0,
                                           low_open=True)}

    def _validate_xy(self, X, y, reset, dtype):
        X, y = validate_data(self, X, y, reset=reset, dtype=_x_dtypes(dtype), multi_output=True,
                             accept_sparse=_SPARSE,
                             y_numeric=True)
        return X, np.asarray(y, dtype=np.float64)

    def _encode_targets(self, y, sample_weight, first, incremental, classes):
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if first:
            self._y_1d = y.ndim == 1
            self._n_outputs = y2.shape[1]
            if self.standardize_targets:
                w = None if sample_weight is None or not np.any(sample_weight > 0) \
                    else sample_weight
                mean, scale = _target_standardization(y2, w)
            else:
                mean, scale = np.zeros(y2.shape[1]), np.ones(y2.shape[1])
            self.y_mean_, self.y_scale_ = mean, scale
        elif y2.shape[1] != self._n_outputs:
            raise ValueError(f"y has {y2.shape[1]} outputs but the fitted model has "
                             f"{self._n_outputs}")
        with np.errstate(over="ignore", invalid="ignore"):
            targets = (y2 - self.y_mean_) / self.y_scale_
        if not np.all(np.isfinite(targets)):
            raise ValueError("y is too large to standardize: its values minus their mean "
                             "overflow float64; divide y by a constant first")
        return targets, sample_weight

    def _validation_score(self, model, logs, val):
        pred = model.predict(val[0]).reshape(val[1].shape).astype(np.float64)
        truth = val[1].astype(np.float64)
        w = np.ones(truth.shape[0]) if len(val) < 3 else val[2].astype(np.float64)
        w = w.reshape((-1,) + (1,) * (truth.ndim - 1))
        ss_res = (w * (truth - pred) ** 2).sum(axis=0)
        ss_tot = (w * (truth - np.sum(w * truth, axis=0) / w.sum()) ** 2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            r2 = np.where(ss_tot > 0, 1 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0),
                          np.where(ss_res == 0, 1.0, 0.0))
        return float(np.mean(r2))

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch over (X, y), continuing the weights and optimizer state."""
        return self._partial_fit(X, y, sample_weight)

    def predict(self, X):
        """Predicted targets: (n_samples,) for 1-D training targets, else
        (n_samples, n_outputs); float64."""
        X = self._check_predict_x(X)
        with self._threads():
            out = self.model_.predict(X)
        out = np.asarray(out, dtype=np.float64).reshape(X.shape[0], -1)
        out = out * self.y_scale_ + self.y_mean_
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags


# skl2onnx.to_onnx(estimator, X[:1]) converts the estimators (fastnet.export has the
# converters); they are registered when skl2onnx is imported, which fastnet never does itself
from fastnet.export import register_skl2onnx_when_imported as _register_skl2onnx  # noqa: E402

_register_skl2onnx(MLPClassifier, MLPRegressor)
