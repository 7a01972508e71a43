"""Train with fastnet, serve anywhere: the ways a model leaves fastnet.

* **safetensors**: ``model.save("m.safetensors")`` and :func:`fastnet.load`
  (no dependency: :mod:`fastnet._safetensors` implements the format).
"""
import json
import os

import numpy as np

from fastnet import _safetensors

__all__ = ["file_format", "save_safetensors", "load_safetensors"]


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
                "config": json.loads(metadata.get("config", ""))}
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
    layers, n_params, n_buffers = _network.layout(sizes, batch_norm)
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
    for name, (shape, _, _) in expected.items():
        if tensors[name].shape != shape:
            raise ValueError(f"{path}: {name} has shape {tensors[name].shape}, the config "
                             f"needs {shape}")
    _check_running_var(tensors, path)
    dtype = dtypes.pop()
    flat = {"params": np.empty(n_params, dtype), "buffers": np.empty(n_buffers, dtype)}
    for name, (_, buffer, offset) in expected.items():
        values = tensors[name].reshape(-1)
        flat["buffers" if buffer else "params"][offset:offset + values.size] = values
    return flat


