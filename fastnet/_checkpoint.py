"""Crash-safe training checkpoints for :meth:`fastnet.MLP.fit`.

A checkpoint is everything the rest of a fit depends on, in fastnet's
npz + JSON format (see ``_io``): model parameters and batch-norm buffers,
optimizer hyper-parameters, step count and moment buffers, schedule and
callback state (EarlyStopping's best weights included), fit's own
best-so-far snapshot, the history, the number of finished epochs and the
optimizer step.  Shuffling and dropout are pure functions of (seed, epoch)
and (seed, step), so these counters are the whole random state: a resumed
fit is bit-identical to an uninterrupted one.

That holds only for a resume with the same data and options, so a checkpoint
also records the run (:func:`run_record`: the shape, dtype and a checksum of
every data array, and the options that change the result), and resuming
another run raises ValueError naming what differs (:func:`check_run`).
Version 1 files, written before the record existed, still resume unchecked.
"""
import json
import math
import numbers

import numpy as np

from fastnet import distributed as _distributed
from fastnet import schedules as _schedules
from fastnet._io import atomic_savez, read_npz

FORMAT = "fastnet-checkpoint"
VERSION = 2
READABLE_VERSIONS = (1, 2)
_INT64_MAX = 2**63 - 1


def run_record(train, val, *, batch_size, loss, schedule, optimizer, grad_clip, shuffle,
               on_divergence, track_gradients, ranks):
    """What a resumed fit must share with the one that wrote the checkpoint, as JSON.

    ``train`` is (X, labels, targets, weights) after the validation split and
    ``val`` the validation tuple (or None); each array is described by its
    shape, dtype and CRC-32 (the checksum ``fastnet.distributed`` compares
    ranks with).
    """
    X, labels, targets, weights = train
    data = {"X": X, "y": labels if targets is None else targets, "sample_weight": weights}
    if val is not None:
        data.update({"validation X": val[0], "validation y": val[1] if val[2] is None
                     else val[2], "validation sample_weight": val[3]})
    hyper = {k: v for k, v in optimizer.state_dict().items() if k not in ("buffers", "t")}
    options = {"batch_size": batch_size, "loss": loss, "schedule": _schedule_name(schedule),
               "optimizer": hyper, "grad_clip": grad_clip, "shuffle": shuffle,
               "on_divergence": repr(on_divergence), "track_gradients": track_gradients,
               "ranks": ranks}
    record = {"data": {k: _distributed._describe(v) for k, v in data.items()},
              "options": options}
    return json.loads(json.dumps(record))       # tuples as lists, as read back


def _schedule_name(sched):
    if isinstance(sched, _schedules.Schedule):
        return sched.record_name()
    return type(sched).__qualname__


_STATE_PROTOCOL = ("state_dict", "load_state_dict", "best_weights")


def _state_protocol(obj):
    """The checkpoint protocol of a callback or schedule, read in one place: its
    ``state_dict``, ``load_state_dict`` and ``best_weights`` (None when absent; fit
    accepts objects of any class)."""
    return [getattr(obj, name, None) for name in _STATE_PROTOCOL]


def check_run(state, record):
    """ValueError unless `record` (:func:`run_record` of this fit) matches the run that
    wrote the checkpoint `state` (from :func:`read`); version 1 files are not checked."""
    saved, path = state["meta"].get("run"), state["path"]
    if saved is None:
        return
    for key, now in record["data"].items():
        before = saved["data"].get(key)
        if before == now:
            continue
        if before is None or now is None:
            raise ValueError(f"{path}: checkpoint was written by a fit "
                             f"{'without' if before is None else 'with'} {key}, this fit "
                             f"has {'one' if before is None else 'none'}; resume with the same "
                             f"data")
        if before[:2] != now[:2]:
            raise ValueError(f"{path}: checkpoint was written for {key} of shape "
                             f"{tuple(before[0])} and dtype {before[1]}, this fit has shape "
                             f"{tuple(now[0])} and dtype {now[1]}; resume with the same data")
        raise ValueError(f"{path}: {key} holds other values than in the fit that wrote the "
                         f"checkpoint (same shape {tuple(now[0])}); resume with the same data")
    for key, now in record["options"].items():
        before = saved["options"].get(key)
        if before != now:
            raise ValueError(f"{path}: checkpoint was written by a fit with {key}={before!r}, "
                             f"this fit has {key}={now!r}; resume with the same options")


def write(path, model, opt, sched, callbacks, history, epochs_done, global_step, best_value,
          best_state, run_seed, record):
    arrays = {"params": model.params, "buffers": model.buffers,
              "best_params": best_state[0], "best_buffers": best_state[1]}
    opt_state = opt.state_dict()
    buffers = opt_state.pop("buffers")
    opt_state["buffers"] = []
    for i, pair in enumerate(buffers):
        present = []
        for j, arr in enumerate(pair or ()):
            if arr is not None:
                arrays[f"opt_{i}_{j}"] = arr
                present.append(j)
        opt_state["buffers"].append(present)
    cb_states = []
    for i, cb in enumerate(callbacks):
        entry = {"class": type(cb).__name__}
        state_dict, load_state_dict, weights = _state_protocol(cb)
        if state_dict is not None and load_state_dict is not None:
            entry["state"] = state_dict()
        if weights is not None:
            entry["n_weights"] = len(weights)
            for j, w in enumerate(weights):
                arrays[f"cb_{i}_{j}"] = w
        cb_states.append(entry)
    meta = {
        "format": FORMAT, "version": VERSION,
        "config": model.config(),
        "epochs_done": int(epochs_done), "global_step": int(global_step),
        "run_seed": int(run_seed),
        "best_value": best_value if math.isfinite(best_value) else None,
        "optimizer": opt_state,
        "schedule": None if (state := _state_protocol(sched)[0]) is None else state(),
        "callbacks": cb_states,
        "history": {"history": history.history, "best_epoch": history.best_epoch,
                    "epochs": history.epochs, "rollbacks": history.rollbacks},
        "run": record,
    }
    json.dumps(meta)  # fail here, before touching the file, if anything is not JSON
    atomic_savez(path, meta, arrays)


def read(path, model):
    """Read and check a checkpoint against `model`; ValueError on any mismatch."""
    meta, arrays = read_npz(path, "fastnet checkpoint")
    if meta.get("format") != FORMAT or meta.get("version") not in READABLE_VERSIONS \
            or isinstance(meta.get("version"), bool):
        raise ValueError(f"{path} is not a fastnet checkpoint (format {meta.get('format')!r}, "
                         f"version {meta.get('version')!r})")
    config = model.config()
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: checkpoint has no model config")
    for key in ("layer_sizes", "activation", "batch_norm", "norm", "dropout", "dtype", "bn_eps",
                "bn_momentum"):
        if key in ("bn_eps", "bn_momentum", "norm") and key not in saved:
            continue        # not in every version 1 file
        if saved.get(key) != config[key]:
            raise ValueError(f"{path}: checkpoint is for a model with {key}={saved.get(key)!r}, "
                             f"this model has {key}={config[key]!r}")
    for key, ref in (("params", model.params), ("buffers", model.buffers),
                     ("best_params", model.params), ("best_buffers", model.buffers)):
        arr = arrays.get(key)
        if arr is None or arr.shape != ref.shape or arr.dtype != ref.dtype:
            raise ValueError(f"{path}: array {key!r} is missing or has the wrong shape/dtype")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{path}: array {key!r} holds NaN or infinity")
    for key, kind in (("epochs_done", int), ("global_step", int), ("run_seed", int),
                      ("optimizer", dict), ("callbacks", list), ("history", dict)):
        if not isinstance(meta.get(key), kind) or isinstance(meta.get(key), bool):
            raise ValueError(f"{path}: checkpoint field {key!r} is missing or malformed")
    if meta["epochs_done"] < 0 or meta["global_step"] < 0:
        raise ValueError(f"{path}: negative epoch or step count")
    try:
        _check_fields(meta)
    except (TypeError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: checkpoint field {exc.args[0] if exc.args else exc}") from None
    return {"meta": meta, "arrays": arrays, "path": str(path)}


def _check_fields(meta):
    """TypeError/ValueError naming the first field of `meta` of the wrong type or range:
    the values flow into native counters (int64) and the History unchanged."""
    _integer(meta["epochs_done"], "epochs_done", _INT64_MAX)
    _integer(meta["global_step"], "global_step", _INT64_MAX)
    _integer(meta["run_seed"], "run_seed", 2**64 - 1)
    if meta.get("best_value") is not None:
        _number(meta["best_value"], "best_value")
    opt = meta["optimizer"]
    if not isinstance(opt.get("name"), str):
        raise TypeError("'optimizer.name' must be a string")
    _number(opt.get("lr"), "optimizer.lr")
    _integer(opt.get("t"), "optimizer.t", _INT64_MAX)
    for key, value in opt.items():
        if key not in ("name", "lr", "t", "buffers") and not isinstance(value, (int, float)):
            raise TypeError(f"'optimizer.{key}' must be a number, got {value!r}")
    buffers = opt.get("buffers", [])
    if not isinstance(buffers, list) or not all(
            isinstance(idx, list) and all(j in (0, 1) and not isinstance(j, bool) for j in idx)
            for idx in buffers):
        raise TypeError("'optimizer.buffers' must be lists of buffer numbers (0 or 1)")
    if meta.get("schedule") is not None and not isinstance(meta["schedule"], dict):
        raise TypeError("'schedule' must be an object")
    for entry in meta["callbacks"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("class"), str) \
                or not isinstance(entry.get("state", {}), dict):
            raise TypeError("'callbacks' entries must be objects with a class name")
        if "n_weights" in entry:
            _integer(entry["n_weights"], "callbacks.n_weights", 10**6)
    history = meta["history"]
    lists = history.get("history", {})
    if not isinstance(lists, dict):
        raise TypeError("'history.history' must be an object")
    for key, values in lists.items():
        if not isinstance(values, list) or not all(
                _is_number(v) or (isinstance(v, list) and all(_is_number(u) for u in v))
                for v in values):
            raise TypeError(f"'history.{key}' must be a list of numbers, got "
                            f"{type(values).__name__}")
    if history.get("best_epoch") is not None:
        _integer(history["best_epoch"], "history.best_epoch", _INT64_MAX)
    if "epochs" in history:
        _integer(history["epochs"], "history.epochs", _INT64_MAX)
    rollbacks = history.get("rollbacks", [])
    if not isinstance(rollbacks, list):
        raise TypeError("'history.rollbacks' must be a list")
    for entry in rollbacks:
        if not isinstance(entry, dict):
            raise TypeError("'history.rollbacks' entries must be objects")
        _integer(entry.get("epoch"), "history.rollbacks.epoch", _INT64_MAX)
        _integer(entry.get("step"), "history.rollbacks.step", _INT64_MAX)
        for key in ("loss", "lr", "new_lr", "lr_scale"):
            if not _is_number(entry.get(key)):
                raise TypeError(f"'history.rollbacks.{key}' must be a number")
        if not (math.isfinite(entry["lr_scale"]) and entry["lr_scale"] > 0):
            raise ValueError("'history.rollbacks.lr_scale' must be a finite number > 0")
    run = meta.get("run")
    if run is not None and not (isinstance(run, dict) and isinstance(run.get("data"), dict)
                                and isinstance(run.get("options"), dict)):
        raise TypeError("'run' must be an object with 'data' and 'options'")


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _integer(value, name, limit):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name!r} must be an int, got {value!r}")
    if not 0 <= value <= limit:
        raise ValueError(f"{name!r} must be in [0, {limit}], got {value}")


def _number(value, name):
    if not _is_number(value) or not math.isfinite(value):
        raise TypeError(f"{name!r} must be a finite number, got {value!r}")


def restore(state, model, opt, sched, callbacks, history):
    """Load a checked checkpoint into the fit's objects.

    Returns (start_epoch, global_step, best_value, best_state).
    """
    meta, arrays, path = state["meta"], state["arrays"], state["path"]
    opt_state = dict(meta["optimizer"])
    present = opt_state.pop("buffers", [])
    try:
        buffers = []
        for i, idx in enumerate(present):
            pair = [None, None]
            for j in idx:
                pair[j] = arrays[f"opt_{i}_{j}"]
            buffers.append(tuple(pair))
        opt_state["buffers"] = buffers
        opt.load_state_dict(opt_state)
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"{path}: optimizer state is malformed ({exc})") from None
    load_schedule = _state_protocol(sched)[1]
    if meta.get("schedule") is not None and load_schedule is not None:
        load_schedule(meta["schedule"])
    # callbacks without state (printers, loggers, ...) may differ between runs
    saved_cbs = [(i, e) for i, e in enumerate(meta["callbacks"])
                 if isinstance(e, dict) and "state" in e]
    stateful = [cb for cb in callbacks if _state_protocol(cb)[1] is not None]
    if [e.get("class") for _, e in saved_cbs] != [type(cb).__name__ for cb in stateful]:
        raise ValueError(f"{path}: checkpoint callbacks {[e.get('class') for _, e in saved_cbs]} "
                         f"differ from this fit's {[type(cb).__name__ for cb in stateful]}")
    for (i, entry), cb in zip(saved_cbs, stateful):
        if "n_weights" in entry:
            try:
                weights = [arrays[f"cb_{i}_{j}"] for j in range(int(entry["n_weights"]))]
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}: missing callback array {exc}") from None
            cb.load_state_dict(entry["state"], best_weights=weights)
        else:
            cb.load_state_dict(entry["state"])
    saved = meta["history"]
    for key, values in saved.get("history", {}).items():
        if key in history.history:
            history.history[key] = list(values)
    history.best_epoch = saved.get("best_epoch")
    history.epochs = int(saved.get("epochs", meta["epochs_done"]))
    history.rollbacks = [dict(r) for r in saved.get("rollbacks", [])]
    model.params[...] = arrays["params"]
    model.buffers[...] = arrays["buffers"]
    best_value = math.inf if meta.get("best_value") is None else float(meta["best_value"])
    best_state = (arrays["best_params"].copy(), arrays["best_buffers"].copy())
    return meta["epochs_done"], meta["global_step"], best_value, best_state
