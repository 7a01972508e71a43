"""fastnet's file format: an .npz of arrays plus one JSON metadata entry.

No pickle anywhere, and no trust in the file: a model or checkpoint may come
from anywhere, so reading is bounded by what the file really holds.

* Only the members the caller names are read; anything else in the archive
  (a zip bomb included) is never decompressed.
* Members are stored uncompressed, as ``np.savez`` writes them (``save``
  and checkpoints use it): each array costs exactly its bytes on disk, so
  memory is bounded by the file's size whatever its headers claim.
* Each member's ``.npy`` header is read with NumPy's bounded header parser
  and checked (dtype, shape, the byte count the archive really holds, and
  the shape the caller expects from the metadata) before its array is
  allocated.
* Every problem -- truncation, bit flips, hand edits, another kind of file --
  raises ValueError naming the file (a missing file raises
  FileNotFoundError).

Writes go to a temporary file next to the target (``.<name>.<pid>.<token>.tmp``,
unique per call, so threads and processes never share one), flushed to disk
and renamed over the target; a successful write removes the temporary files
that killed writers left behind.  Errors name the caller's path, never the
temporary one; :func:`check_writable` finds them before any work is done.
"""
import contextlib
import errno
import io
import json
import math
import os
import secrets
import struct
import threading
import zipfile
import zlib

import numpy as np

__all__ = ["atomic_file", "atomic_savez", "check_writable", "read_npz"]

_META = "__meta__"
_CHUNK = 1 << 20            # bytes per read of an array's data

# temporary files of writes in progress in this process (another process's
# are recognised by their writer's pid being alive)
_writing = set()
_writing_lock = threading.Lock()


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

def _temp_path(target):
    directory, name = os.path.split(target)
    return os.path.join(directory, f".{name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


@contextlib.contextmanager
def _temp_file(target):
    """A new, exclusively created temporary file next to `target`: (path, binary file)."""
    tmp = _temp_path(target)
    with _writing_lock:
        _writing.add(tmp)
    try:
        with open(tmp, "xb") as fh:
            yield tmp, fh
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        with _writing_lock:
            _writing.discard(tmp)


def _target(path):
    if isinstance(path, (bytes, bytearray)):
        path = os.fsdecode(bytes(path))
    path = os.fspath(path)
    return path, os.path.abspath(path)


def _named(exc, path, detail=None):
    """`exc` (an OSError about some file) re-raised as the same kind of error about `path`."""
    strerror = exc.strerror or str(exc)
    if detail:
        strerror = f"{strerror} ({detail})"
    if exc.errno is None:
        return type(exc)(f"{path}: {strerror}")
    return type(exc)(exc.errno, strerror, path)


def check_writable(path):
    """Raise now, naming `path`, if a file cannot be written there.

    For callers that write at the end of long work (a fit's checkpoint, the
    CLI's outputs): the directory must exist and accept a new file (a
    temporary file is created and removed), and `path` must not be a
    directory.

    Raises
    ------
    FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError, OSError
        With ``filename`` set to `path` and a message saying what is wrong.
    """
    path, target = _target(path)
    directory = os.path.dirname(target)
    if os.path.isdir(target):
        raise IsADirectoryError(errno.EISDIR, "is a directory, not a file name", path)
    if not os.path.isdir(directory):
        if os.path.exists(directory):
            raise NotADirectoryError(errno.ENOTDIR, f"{directory} is not a directory", path)
        raise FileNotFoundError(errno.ENOENT, f"the directory {directory} does not exist",
                                path)
    try:
        with _temp_file(target):
            pass
    except OSError as exc:
        raise _named(exc, path, f"cannot create files in {directory}") from None


@contextlib.contextmanager
def atomic_file(path):
    """A binary file that replaces `path` only once written completely: a temporary
    file next to it, flushed to disk and renamed over it.

    OSError (a missing or read-only directory, a full disk) names `path`; the
    previous file at `path`, if any, is then left as it was.
    """
    path, target = _target(path)
    try:
        with _temp_file(target) as (tmp, fh):
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
            os.replace(tmp, target)
    except OSError as exc:
        check_writable(path)           # the precise reason, when it is the directory
        raise _named(exc, path) from None
    _remove_stale_temps(target)


def atomic_savez(path, meta, arrays):
    """Write `arrays` and the JSON `meta` to `path` (uncompressed npz), atomically
    (see :func:`atomic_file`)."""
    payload = {_META: np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)}
    payload.update(arrays)
    with atomic_file(path) as fh:
        np.savez(fh, **payload)


def _writer_alive(pid, tmp):
    if pid == os.getpid():
        with _writing_lock:
            return tmp in _writing
    if os.name != "posix":
        return True                    # no cheap, harmless liveness test: keep the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:                    # e.g. another user's process: alive
        return True
    return True


def _remove_stale_temps(target):
    """Remove ``.<name>.<pid>[.<token>].tmp`` files next to `target` whose writer is gone
    (killed mid-write); those of writes still running here or in a live process stay."""
    directory, name = os.path.split(target)
    prefix, suffix = f".{name}.", ".tmp"
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for entry in entries:
        if not (entry.startswith(prefix) and entry.endswith(suffix)):
            continue
        pid = entry[len(prefix):-len(suffix)].split(".")[0]
        tmp = os.path.join(directory, entry)
        if pid.isdigit() and not _writer_alive(int(pid), tmp):
            with contextlib.suppress(OSError):
                os.remove(tmp)


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

class _Malformed(ValueError):
    """A problem found by the reader itself; its message already names the file."""


# what a damaged archive or member can raise from zipfile, zlib and NumPy's header parser
_CORRUPTION = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
               ValueError, KeyError, IndexError, TypeError, NotImplementedError, RuntimeError,
               struct.error, OverflowError, RecursionError, UnicodeDecodeError, SyntaxError)


class _Archive:
    """The members of an open zip file, read with the checks the module docstring lists."""

    def __init__(self, zf, size, name, kind):
        self.zf, self.size, self.name, self.kind = zf, size, name, kind
        self.members = {}
        for info in zf.infolist():
            if info.filename.endswith(".npy"):
                self.members[info.filename[:-4]] = info

    def fail(self, message):
        return _Malformed(f"{self.name}: {message}")

    def array(self, key, expected=None):
        """Member `key` as an array; with `expected` (shape, dtype), the header must say so."""
        info = self.members.get(key)
        if info is None:
            raise self.fail(f"missing array {key!r}")
        if info.compress_type != zipfile.ZIP_STORED:
            raise self.fail(f"array {key!r} is compressed (zip method {info.compress_type}); "
                            "fastnet files store their arrays uncompressed, so the file is "
                            "damaged or was not written by fastnet")
        if info.compress_size != info.file_size \
                or info.header_offset + info.file_size > self.size:
            raise self.fail(f"array {key!r} extends past the end of the file (truncated or "
                            "damaged)")
        with self.zf.open(info) as fh:
            found_shape, fortran, found = self._header(fh, key)
            if found.hasobject or found.kind not in "biuf" or found.itemsize == 0:
                raise self.fail(f"array {key!r} has dtype {found}; fastnet files hold numbers "
                                "only (never Python objects, which would need pickle)")
            if any(d < 0 for d in found_shape):
                raise self.fail(f"array {key!r} has an invalid shape {found_shape}")
            if expected is not None:
                shape, dtype = tuple(expected[0]), np.dtype(expected[1])
                if found_shape != shape or found.newbyteorder("=") != dtype:
                    raise self.fail(f"array {key!r} has shape {found_shape} and dtype {found}, "
                                    f"the config needs {shape} {dtype}")
            count = math.prod(found_shape)
            data_bytes = info.file_size - fh.tell()
            if count * found.itemsize != data_bytes:
                raise self.fail(f"array {key!r} is damaged: its header describes "
                                f"{count * found.itemsize} bytes of data, the file holds "
                                f"{data_bytes}")
            arr = np.empty(count, dtype=found)
            view = memoryview(arr).cast("B")
            for start in range(0, data_bytes, _CHUNK):
                part = view[start:start + _CHUNK]
                if fh.readinto(part) != len(part):
                    raise self.fail(f"array {key!r} is truncated")
        arr = arr.reshape(found_shape, order="F" if fortran else "C")
        if not found.isnative:
            arr = arr.astype(found.newbyteorder("="))
        return np.ascontiguousarray(arr)

    def _header(self, fh, key):
        """(shape, fortran_order, dtype) from the .npy header NumPy's bounded parser reads."""
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        try:
            version = np.lib.format.read_magic(fh)
            if version not in readers:
                raise ValueError(f".npy format version {version}")
            return readers[version](fh)
        except (ValueError, SyntaxError, TypeError, RecursionError, struct.error) as exc:
            # NumPy's first line names the problem; the rest is advice fastnet does not give
            reason = str(exc).split("\n")[0]
            reason = reason if len(reason) <= 200 else reason[:200] + "..."
            raise self.fail(f"array {key!r} has an invalid .npy header ({reason})") from None

    def meta(self):
        if _META not in self.members:
            raise self.fail(f"has no fastnet metadata (not a {self.kind} file)")
        raw = self.array(_META)
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise self.fail("has corrupted metadata (not a byte string)")
        try:
            meta = decode_json(raw.tobytes().decode())
        except (UnicodeDecodeError, ValueError) as exc:
            raise self.fail(f"has corrupted metadata ({exc})") from None
        if not isinstance(meta, dict):
            raise self.fail("has corrupted metadata (not an object)")
        return meta


def decode_json(text, **options):
    """``json.loads(text)`` for text read from a file: any way it fails, including
    nesting deep enough to exhaust the recursion limit, is a ValueError saying why."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(str(exc)) from None


@contextlib.contextmanager
def _opened(path, kind):
    """An _Archive of `path`; any error inside becomes ValueError naming the file."""
    name = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else repr(path)
    try:
        if hasattr(path, "read"):
            source = path
            size = path.seek(0, io.SEEK_END)
            path.seek(0)
        else:
            source = os.fspath(path)
            size = os.stat(source).st_size
        with zipfile.ZipFile(source) as zf:
            yield _Archive(zf, size, name, kind)
    except (FileNotFoundError, PermissionError):
        raise                              # no file or no access: the file may be fine
    except _Malformed as exc:
        raise ValueError(*exc.args) from None
    except IsADirectoryError:
        raise ValueError(f"{name} is a directory, not a {kind} file") from None
    except _CORRUPTION as exc:
        if isinstance(exc, zipfile.BadZipFile) and "not a zip file" in str(exc).lower():
            raise ValueError(f"{name} is not a {kind} file ({_what_it_is(source)})") from None
        reason = "nested too deeply" if isinstance(exc, RecursionError) else \
            f"{type(exc).__name__}: {exc}"
        raise ValueError(f"{name} is not a readable {kind} file ({reason})") from None


def _what_it_is(source):
    """A guess at what a non-zip file is, for the error message."""
    try:
        if hasattr(source, "read"):
            source.seek(0)
            head = source.read(64)
        else:
            with open(source, "rb") as fh:
                head = fh.read(64)
    except OSError:
        return "not a zip archive"
    if head.startswith(b"\x93NUMPY"):
        return "a single .npy array, not an .npz archive"
    if not head:
        return "empty"
    if all(32 <= b < 127 or b in b"\t\r\n" for b in head):
        return "a text file, not an .npz archive"
    return "not a zip archive"


def read_npz(path, kind, expect=None):
    """Metadata and arrays of a fastnet file, read with the module's checks.

    Parameters
    ----------
    path : path-like or binary file
    kind : str
        What the file should be ("fastnet model"), for messages.
    expect : callable, optional
        Called with the metadata (a dict) before any array is read; returns
        ``{name: (shape, dtype)}``, the arrays to read and what their headers
        must say (it raises ValueError for metadata it refuses).  Without it,
        every array is read, each bounded by its stored size.

    Returns
    -------
    meta : dict
    arrays : dict of numpy arrays

    Raises
    ------
    ValueError
        Naming the file, for anything malformed.
    FileNotFoundError
        If `path` does not exist.
    """
    with _opened(path, kind) as archive:
        meta = archive.meta()
        if expect is None:
            return meta, {key: archive.array(key) for key in archive.members if key != _META}
        try:
            wanted = expect(meta)
        except ValueError as exc:      # the caller's own message, naming the file
            raise _Malformed(*exc.args) from None
        return meta, {key: archive.array(key, spec) for key, spec in wanted.items()}
