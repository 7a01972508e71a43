"""fastnet's file format: an .npz of arrays plus one JSON metadata entry.

No pickle anywhere: files are read with ``allow_pickle=False``, so loading
never runs code from the file, and every problem (truncation, corruption,
hand edits) surfaces as a ValueError that names it.
"""
import contextlib
import json
import os

import numpy as np


@contextlib.contextmanager
def atomic_file(path):
    """A binary file that replaces `path` only once written completely.

    The data goes to a temporary name in the same directory, is flushed to
    disk and renamed over `path`, so a crash never leaves a half-written
    file behind; on an exception the temporary file is removed.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_savez(path, meta, arrays):
    payload = {"__meta__": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    payload.update(arrays)
    with atomic_file(path) as fh:
        np.savez(fh, **payload)


def read_npz(path, kind):
    """Arrays and metadata of a fastnet file; ValueError naming any problem."""
    import zipfile
    try:
        with np.load(os.fspath(path), allow_pickle=False) as data:
            contents = {k: data[k] for k in data.files}
    except FileNotFoundError:
        raise
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable {kind} file ({exc})") from None
    if "__meta__" not in contents:
        raise ValueError(f"{path} has no fastnet metadata")
    try:
        meta = json.loads(contents.pop("__meta__").tobytes().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} has corrupted metadata ({exc})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path} has corrupted metadata (not an object)")
    return meta, contents


