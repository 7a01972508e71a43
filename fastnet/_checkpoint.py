"""Crash-safe training checkpoints for :meth:`fastnet.MLP.fit`.

A checkpoint is everything the rest of a fit depends on, in fastnet's
npz + JSON format (see ``_io``): model parameters and batch-norm buffers,
optimizer hyper-parameters, step count and moment buffers, schedule and
callback state (EarlyStopping's best weights included), fit's own
best-so-far snapshot, the history, the number of finished epochs and the
optimizer step.  Shuffling and dropout are pure functions of (seed, epoch)
and (seed, step), so these counters are the whole random state: a resumed
fit is bit-identical to an uninterrupted one.
"""
import json
import math

import numpy as np

from fastnet._io import atomic_savez, read_npz

FORMAT = "fastnet-checkpoint"
VERSION = 1


def write(path, model, opt, sched, callbacks, history, epochs_done, global_step, best_value,
          best_state, run_seed):
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
        if hasattr(cb, "state_dict") and hasattr(cb, "load_state_dict"):
            entry["state"] = cb.state_dict()
        weights = getattr(cb, "best_weights", None)
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
        "schedule": sched.state_dict() if hasattr(sched, "state_dict") else None,
        "callbacks": cb_states,
        "history": {"history": history.history, "best_epoch": history.best_epoch,
                    "epochs": history.epochs, "rollbacks": history.rollbacks},
    }
    json.dumps(meta)  # fail here, before touching the file, if anything is not JSON
    atomic_savez(path, meta, arrays)


def read(path, model):
    """Read and check a checkpoint against `model`; ValueError on any mismatch."""
    meta, arrays = read_npz(path, "fastnet checkpoint")
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(f"{path} is not a fastnet checkpoint (format {meta.get('format')!r}, "
                         f"version {meta.get('version')!r})")
    config = model.config()
    saved = meta.get("config")
    if not isinstance(saved, dict):
        raise ValueError(f"{path}: checkpoint has no model config")
    for key in ("layer_sizes", "activation", "batch_norm", "dropout", "dtype"):
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
    return {"meta": meta, "arrays": arrays, "path": str(path)}


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
    if meta.get("schedule") is not None and hasattr(sched, "load_state_dict"):
        sched.load_state_dict(meta["schedule"])
    # callbacks without state (printers, loggers, ...) may differ between runs
    saved_cbs = [(i, e) for i, e in enumerate(meta["callbacks"])
                 if isinstance(e, dict) and "state" in e]
    stateful = [cb for cb in callbacks if hasattr(cb, "load_state_dict")]
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
