"""The safetensors file format, read and written without the ``safetensors`` package.

A file is an 8-byte little-endian unsigned header length ``n``, ``n`` bytes of
UTF-8 JSON starting with ``{`` (trailing spaces allowed), then the data: the
tensors' raw little-endian, row-major bytes.  The JSON maps each tensor name
to ``{"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}`` (offsets
into the data, end exclusive), plus an optional ``"__metadata__"`` object of
strings.  The data must be covered exactly: no overlaps, no holes, nothing
after the last tensor (the specification's rule against polyglot files), and
the header is capped at 100 MB like the reference implementation's.

Every check runs on the header before any tensor is allocated, against the
file's size, so a hostile file costs at most its own size in memory and any
problem is a ValueError that names the file.
"""
import json
import math
import os
import struct

import numpy as np

from fastnet._io import atomic_file, decode_json

__all__ = ["MAX_HEADER_BYTES", "SUFFIX", "looks_like_safetensors", "read", "write"]

MAX_HEADER_BYTES = 100_000_000
SUFFIX = ".safetensors"
_METADATA_KEY = "__metadata__"
_ENTRY_KEYS = frozenset(("dtype", "shape", "data_offsets"))
# the format's names for the dtypes NumPy holds (BF16 and the float8s have no NumPy dtype)
_DTYPES = {"BOOL": "|b1", "U8": "|u1", "I8": "|i1", "U16": "<u2", "I16": "<i2", "F16": "<f2",
           "U32": "<u4", "I32": "<i4", "F32": "<f4", "U64": "<u8", "I64": "<i8", "F64": "<f8"}
_NAMES = {np.dtype(code).newbyteorder("="): name for name, code in _DTYPES.items()}


def write(path, tensors, metadata=None):
    """Write `tensors` and `metadata` to `path` as one safetensors file.

    The file is written under a temporary name, flushed to disk and renamed,
    so a crash never leaves a partial file behind.

    Parameters
    ----------
    path : str or os.PathLike
    tensors : dict of str -> numpy.ndarray
        Written in the dict's order, each as little-endian row-major bytes.
    metadata : dict of str -> str, optional
        The header's ``__metadata__``.

    Raises
    ------
    TypeError
        A name, metadata key or value that is not a str, or an array whose
        dtype the format cannot hold.
    """
    header, arrays, offset = {}, [], 0
    if metadata is not None:
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise TypeError("safetensors metadata must map str to str")
        header[_METADATA_KEY] = dict(metadata)
    for name, array in tensors.items():
        if not isinstance(name, str) or name == _METADATA_KEY:
            raise TypeError(f"tensor names must be str other than {_METADATA_KEY!r}, "
                            f"got {name!r}")
        array = np.asarray(array)
        code = _NAMES.get(array.dtype.newbyteorder("="))
        if code is None:
            raise TypeError(f"tensor {name!r} has dtype {array.dtype}, which safetensors "
                            f"cannot hold here ({', '.join(_DTYPES)})")
        array = np.asarray(array, dtype=np.dtype(_DTYPES[code]), order="C")  # 0-d stays 0-d
        header[name] = {"dtype": code, "shape": list(array.shape),
                        "data_offsets": [offset, offset + array.nbytes]}
        arrays.append(array)
        offset += array.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    # spaces up to a multiple of 8 bytes, so every tensor starts 8-byte aligned in the file
    text += b" " * (-(8 + len(text)) % 8)
    with atomic_file(path) as fh:
        fh.write(struct.pack("<Q", len(text)))
        fh.write(text)
        for array in arrays:
            fh.write(array.reshape(-1).view(np.uint8))


def read(path):
    """Tensors and metadata of the safetensors file `path`.

    Returns
    -------
    tensors : dict of str -> numpy.ndarray
        In the order of the header, native byte order.
    metadata : dict of str -> str
        The header's ``__metadata__`` (empty when absent).

    Raises
    ------
    ValueError
        The file is not a well-formed safetensors file (the message names the
        file and the problem).
    FileNotFoundError
    """
    with open(os.fspath(path), "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        entries, metadata, data_start = _read_header(fh, size, path)
        tensors = {}
        for name, (dtype, shape, begin, end) in entries.items():
            array = np.empty(shape, dtype=dtype)
            fh.seek(data_start + begin)
            if fh.readinto(array.reshape(-1).view(np.uint8)) != end - begin:
                raise ValueError(f"{path}: file ended inside tensor {name!r} (truncated)")
            tensors[name] = array.astype(dtype.newbyteorder("="), copy=False)
    return tensors, metadata


def looks_like_safetensors(path):
    """True if `path` starts like a safetensors file, or (unreadable or neither
    zip nor safetensors) has the ``.safetensors`` suffix.  False for anything
    that is not a path (an open file is left to the npz reader)."""
    try:
        path = os.fsdecode(path)
    except TypeError:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
    except OSError:
        head = b""
    if head[:2] == b"PK":                       # a zip: fastnet's .npz
        return False
    if len(head) == 9 and head[8:9] == b"{":
        return True
    return path.endswith(SUFFIX)


def _read_header(fh, size, path):
    """(entries, metadata, data_start): entries maps each name to (dtype, shape,
    begin, end), all checked against the file's `size`."""
    if size < 10:
        raise ValueError(f"{path} is not a safetensors file ({size} bytes, too short)")
    (length,) = struct.unpack("<Q", fh.read(8))
    if length > MAX_HEADER_BYTES:
        raise ValueError(f"{path}: safetensors header length {length} exceeds the "
                         f"{MAX_HEADER_BYTES}-byte cap (not a safetensors file?)")
    if length > size - 8:
        raise ValueError(f"{path}: safetensors header length {length} runs past the end of "
                         f"the file ({size} bytes; truncated?)")
    try:
        text = fh.read(length).decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("it does not start with '{'")
        header = decode_json(text, object_pairs_hook=_unique_keys)
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{path}: corrupted safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path}: corrupted safetensors header (not a JSON object)")
    metadata = header.pop(_METADATA_KEY, {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError(f"{path}: safetensors {_METADATA_KEY} must map str to str")
    data_size = size - 8 - length
    entries = {name: _entry(name, info, data_size, path) for name, info in header.items()}
    covered = 0
    for name, (_, _, begin, end) in sorted(entries.items(), key=lambda item: item[1][2:]):
        if begin != covered:
            problem = "overlaps the tensor before it" if begin < covered else \
                f"leaves bytes {covered}..{begin} of the data unused"
            raise ValueError(f"{path}: tensor {name!r} (data_offsets [{begin}, {end}]) "
                             f"{problem}")
        covered = end
    if covered != data_size:
        raise ValueError(f"{path}: the tensors end at byte {covered} of the data but the file "
                         f"holds {data_size} (trailing bytes)")
    return entries, metadata, 8 + length


def _entry(name, info, data_size, path):
    """(dtype, shape, begin, end) of one header entry, checked."""
    where = f"{path}: tensor {name!r}"
    if not isinstance(info, dict) or set(info) != _ENTRY_KEYS:
        raise ValueError(f"{where} must have exactly the keys dtype, shape, data_offsets")
    code, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if code not in _DTYPES:
        raise ValueError(f"{where} has dtype {code!r}; supported: {', '.join(_DTYPES)}")
    if not _int_list(shape) or min(shape, default=0) < 0:
        raise ValueError(f"{where} has shape {shape!r}, not a list of non-negative ints")
    if not _int_list(offsets) or len(offsets) != 2 or not 0 <= offsets[0] <= offsets[1]:
        raise ValueError(f"{where} has data_offsets {offsets!r}, not [begin, end] with "
                         "0 <= begin <= end")
    begin, end = offsets
    if end > data_size:
        raise ValueError(f"{where} has data_offsets [{begin}, {end}] past the {data_size} "
                         "bytes of data (truncated?)")
    dtype = np.dtype(_DTYPES[code])
    if math.prod(shape) * dtype.itemsize != end - begin:
        raise ValueError(f"{where}: shape {shape} of {code} needs "
                         f"{math.prod(shape) * dtype.itemsize} bytes, data_offsets give "
                         f"{end - begin}")
    return dtype, tuple(shape), begin, end


def _int_list(value):
    return isinstance(value, list) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value)


def _unique_keys(pairs):
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"duplicate keys {duplicates}")
    return dict(pairs)
