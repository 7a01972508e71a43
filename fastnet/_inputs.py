"""The data a fit, predict or evaluate is given, as the engine reads it, without copies.

* Rows are never copied to split or shuffle them: the validation split and every
  epoch's shuffle are index sets over the caller's array (:class:`Rows`, the
  engine's row order), so a float32 C-contiguous array, read-only or memory-mapped,
  is read in place; inference on other dtypes or layouts converts one chunk of rows
  at a time (:func:`forward`).
* scipy.sparse matrices become one canonical CSR matrix (CSC and COO are converted
  once; a canonical CSR of the model's dtype is used as it is), which the engine's
  first layer multiplies natively (:func:`as_csr`).
* Data frames (pandas, Arrow, polars) become one 2-D array of their numeric columns;
  a column that is not numeric or holds missing values is named with what to do, and
  the column names are kept (:func:`frame_columns`) so that ``predict`` can check
  them.
"""
import os
import zlib

import numpy as np

# Rows per native call of the chunked paths: ~8 MB of float32 at 2,048 features,
# small against the data and large against the cost of a call.
CHUNK_BYTES = 8 << 20


def _chunk_rows(row_bytes):
    return max(1, CHUNK_BYTES // max(1, row_bytes))


# ---- sparse --------------------------------------------------------------------

def is_sparse(value):
    return type(value).__module__.startswith("scipy.sparse") and hasattr(value, "tocsr")


def as_csr(value, dtype, name):
    """A scipy.sparse matrix as a canonical CSR matrix (sorted, unique column indices
    in every row) with finite `dtype` values; a CSR matrix that is one already is
    returned as it is (its arrays are not copied).

    Raises
    ------
    TypeError
        Values that are not real numbers.
    ValueError
        NaN or infinity among the stored values (the row and column named).
    """
    if value.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got a sparse matrix of dtype "
                        f"{value.dtype}")
    csr = value if value.format == "csr" else value.tocsr()
    if not csr.has_canonical_format:
        csr = csr.copy()
        csr.sum_duplicates()            # sorts the indices too
    if csr.dtype != dtype:
        csr = csr.astype(dtype)
    bad = np.flatnonzero(~np.isfinite(csr.data))
    if bad.size:
        row = int(np.searchsorted(csr.indptr, bad[0], side="right") - 1)
        raise ValueError(f"{name} contains NaN or infinity (row {row}, column "
                         f"{int(csr.indices[bad[0]])}); impute or drop it first")
    return csr


# ---- frames --------------------------------------------------------------------

def frame_columns(value):
    """The column names of a data frame (pandas, Arrow, polars), as an object array of
    str, or None for anything else (and for a frame whose names are not all strings,
    as scikit-learn's ``feature_names_in_``)."""
    names = None
    if hasattr(value, "columns") and hasattr(value, "dtypes"):          # pandas, polars
        names = list(value.columns)
    elif hasattr(value, "column_names") and hasattr(value, "schema"):   # pyarrow.Table
        names = list(value.column_names)
    if names is None or not all(isinstance(c, str) for c in names):
        return None
    return np.asarray(names, dtype=object)


def frame_array(value, name):
    """A pyarrow Table or polars DataFrame as one 2-D NumPy array of its columns (the
    widest dtype of them); pandas objects and everything else are returned as they are
    (``_validation.real_array`` handles pandas).

    Raises
    ------
    TypeError
        A column that is not numeric: encode it first.
    ValueError
        A column with missing values: impute or drop them first.
    """
    module = type(value).__module__
    if module.startswith("pyarrow") and hasattr(value, "column_names"):
        columns = [(c, value.column(c)) for c in value.column_names]
        kinds = {c: col.type for c, col in columns}
        nulls = {c: col.null_count for c, col in columns}
        numpy = lambda col: col.to_numpy()      # noqa: E731
    elif module.startswith("polars") and hasattr(value, "get_columns"):
        columns = [(s.name, s) for s in value.get_columns()]
        kinds = {c: s.dtype for c, s in columns}
        nulls = {c: s.null_count() for c, s in columns}
        numpy = lambda s: s.to_numpy()          # noqa: E731
    elif hasattr(value, "isna") and hasattr(value, "dtypes") and hasattr(value, "columns"):
        _check_pandas_columns(value, name)          # pandas: converted by real_array
        return value
    else:
        return value
    for c, _ in columns:
        if not _numeric_type(kinds[c]):
            raise TypeError(f"{name} column {c!r} has type {kinds[c]}, not a number; "
                            f"encode it as numbers first (e.g. one-hot or ordinal codes)")
        if nulls[c]:
            raise ValueError(f"{name} column {c!r} has {nulls[c]} missing values; impute "
                             f"or drop them first")
    arrays = [np.asarray(numpy(col)) for _, col in columns]
    if not arrays:
        raise ValueError(f"{name} has no columns")
    out = np.empty((len(arrays[0]), len(arrays)), dtype=np.result_type(*arrays))
    for j, a in enumerate(arrays):
        out[:, j] = a
    return out


def _check_pandas_columns(frame, name):
    """TypeError naming a pandas column that is not numeric, ValueError naming one with
    missing values (NaN or NA)."""
    for c, dtype in frame.dtypes.items():
        kind = getattr(dtype, "numpy_dtype", dtype)      # nullable Int64, Float32, ...
        if not isinstance(kind, np.dtype) or kind.kind not in "biuf":
            raise TypeError(f"{name} column {c!r} has dtype {dtype}, not a number; encode "
                            f"it as numbers first (e.g. one-hot or ordinal codes)")
    for c in frame.columns:
        missing = int(frame[c].isna().sum())
        if missing:
            raise ValueError(f"{name} column {c!r} has {missing} missing values; impute or "
                             f"drop them first")


def _numeric_type(kind):
    text = str(kind).lower()
    return any(text.startswith(p) for p in ("int", "uint", "float", "double", "halffloat")) \
        and "interval" not in text


def check_columns(fitted, value, name):
    """ValueError unless a frame's columns are the ones the model was fitted with
    (names and order); a frame fitted and an array predicted (or the reverse) is fine,
    as in scikit-learn (which warns)."""
    if fitted is None:
        return
    given = frame_columns(value)
    if given is None or (len(given) == len(fitted) and np.all(given == fitted)):
        return
    missing = [c for c in fitted if c not in set(given)]
    unseen = [c for c in given if c not in set(fitted)]
    detail = []
    if missing:
        detail.append(f"missing {missing}")
    if unseen:
        detail.append(f"not seen in fit {unseen}")
    if not detail:
        detail.append("the same names in another order")
    raise ValueError(f"{name} has columns {list(given)} but the model was fitted with "
                     f"{list(fitted)} ({'; '.join(detail)}); select and order the "
                     f"columns as in fit (X[model.feature_names_in_])")


# ---- rows, checks and products ----------------------------------------------------

def all_finite(arr, dtype=None):
    """np.isfinite(arr.astype(dtype)).all() a chunk of rows at a time (no mask or copy of
    the whole array); dtype None: arr's own."""
    step = _chunk_rows(arr[:1].nbytes) if arr.ndim > 1 else max(1, CHUNK_BYTES // 8)
    with np.errstate(over="ignore"):          # an overflow to infinity is the answer
        return all(np.isfinite(arr[s:s + step] if dtype is None else
                               arr[s:s + step].astype(dtype)).all()
                   for s in range(0, max(1, arr.shape[0]), step))


class Rows:
    """Rows `index` (int64, any order) of `base`, an array or a CSR matrix, without
    copying them: read a chunk at a time (:meth:`chunks`).

    Parameters
    ----------
    base : numpy.ndarray or scipy.sparse.csr_matrix
    index : numpy.ndarray of int64
    """

    def __init__(self, base, index):
        self.base = base
        self.index = index
        self.shape = (index.shape[0],) + tuple(base.shape[1:])
        self.dtype = base.dtype

    def chunks(self):
        """(start, rows) pairs: rows ``start:start + len(rows)`` as one array or CSR
        matrix of their own."""
        step = _chunk_rows(row_bytes(self.base))
        for s in range(0, self.shape[0], step):
            yield s, self.base[self.index[s:s + step]]


def subset(value, index):
    """A per-row array (labels, targets, weights: small beside the features) at rows
    `index`, copied; None stays None."""
    return None if value is None else value[index]


def spread(x, labels, targets, weights):
    """(base, rows, labels, targets, weights) of training data given as `x` with its
    per-row arrays: for :class:`Rows` x, its base and rows with the per-row arrays
    spread to the base's length (the engine indexes them like the base), else
    (x, None, labels, targets, weights) as they are."""
    if not isinstance(x, Rows):
        return x, None, labels, targets, weights
    n = x.base.shape[0]

    def full(a):
        if a is None:
            return None
        out = np.zeros((n,) + a.shape[1:], dtype=a.dtype)
        out[x.index] = a
        return out
    return x.base, x.index, full(labels), full(targets), full(weights)


def validation_split(n, split, seed):
    """(training rows, validation rows), both ascending int64: ceil(split * n) rows
    held out at random (seeded)."""
    n_val = int(np.ceil(split * n))
    order = np.random.default_rng([seed, 0xDA7A]).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# shuffle="chunks": runs of contiguous rows of about CHUNK_SHUFFLE_BYTES in a seeded
# random order, the rows of SHUFFLE_WINDOW_CHUNKS consecutive runs shuffled together,
# so that a memory map is read in long sequential pieces (see docs/data.md).
CHUNK_SHUFFLE_BYTES = 4 << 20
SHUFFLE_WINDOW_CHUNKS = 8


def row_bytes(x):
    """Bytes a row of x takes in memory (on average, for a CSR matrix)."""
    if is_sparse(x):
        return -(-x.nnz * (x.dtype.itemsize + x.indices.dtype.itemsize) // max(1, x.shape[0]))
    return x.shape[1] * x.dtype.itemsize


def shuffle_mode(value):
    """True, False or "chunks" (ValueError otherwise)."""
    if isinstance(value, str):
        if value != "chunks":
            raise ValueError(f"shuffle must be True, False or 'chunks', got {value!r}")
        return value
    if value not in (True, False):
        raise ValueError(f"shuffle must be True, False or 'chunks', got {value!r}")
    return bool(value)


def epoch_order(n, shuffle, seed, row_bytes):
    """The order of an epoch's n rows (int64): a seeded permutation (shuffle True), the
    rows in order (False), or chunks of contiguous rows (``"chunks"``, see
    CHUNK_SHUFFLE_BYTES); the same for the same seed, whatever the machine."""
    if shuffle is False:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if shuffle is True:
        return rng.permutation(n)
    chunk = max(1, CHUNK_SHUFFLE_BYTES // max(1, row_bytes))
    n_chunks = -(-n // chunk)
    starts = rng.permutation(n_chunks) * chunk
    # the rows of the chunks in their drawn order: start of its chunk + place in it
    # every chunk padded to `chunk` rows (-1: none; only the data's last chunk is short),
    # the rows of each window of chunks permuted in place (O(n), no sort)
    padded = starts[:, None] + np.arange(chunk, dtype=np.int64)
    padded[padded >= n] = -1
    windows = -(-n_chunks // SHUFFLE_WINDOW_CHUNKS)
    grid = np.full((windows, SHUFFLE_WINDOW_CHUNKS * chunk), -1, dtype=np.int64)
    grid.reshape(-1)[:padded.size] = padded.reshape(-1)
    rng.permuted(grid, axis=1, out=grid)
    order = grid.reshape(-1)
    return order[order >= 0]


class ReadAhead:
    """Asks the kernel to read a memory map's chunks into the page cache a few windows
    ahead of training (``posix_fadvise(POSIX_FADV_WILLNEED)`` on a thread), so that the
    disk reads of a ``shuffle="chunks"`` epoch overlap its computing instead of stalling
    it a page fault at a time.  A no-op for data that is not a file mapping.

    Parameters
    ----------
    x : numpy.ndarray
        The training rows: a view of a numpy.memmap (np.load(..., mmap_mode="r")).
    order : numpy.ndarray of int64
        The epoch's row order (:func:`epoch_order` with "chunks").
    progress : callable
        Rows trained so far this epoch (read on the thread; the steps release the GIL).
    """

    WINDOWS_AHEAD = 2

    def __init__(self, x, order, progress):
        self._stopped = False
        self._thread = None
        source = _mapped_file(x)
        if source is None or not hasattr(os, "posix_fadvise"):
            return
        import threading
        self._file, self._offset = source
        self._x, self._order, self._progress = x, order, progress
        self._thread = threading.Thread(target=self._run, name="fastnet-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        import time
        row = self._x[:1].nbytes
        chunk = max(1, CHUNK_SHUFFLE_BYTES // row)
        window = chunk * SHUFFLE_WINDOW_CHUNKS
        try:
            fd = os.open(self._file, os.O_RDONLY)
        except OSError:
            return
        asked = np.zeros(-(-self._x.shape[0] // chunk), dtype=bool)
        try:
            for start in range(0, self._order.shape[0], window):
                while not self._stopped and \
                        self._progress() + self.WINDOWS_AHEAD * window < start:
                    time.sleep(0.002)
                if self._stopped:
                    return
                wanted = np.unique(self._order[start:start + window] // chunk)
                for c in wanted[~asked[wanted]]:   # a short chunk shifts the windows
                    asked[c] = True
                    os.posix_fadvise(fd, self._offset + int(c) * chunk * row, chunk * row,
                                     os.POSIX_FADV_WILLNEED)
        finally:
            os.close(fd)

    def stop(self):
        self._stopped = True
        if self._thread is not None:
            self._thread.join()


class EpochOrders:
    """The row order of every epoch of a fit over the rows `rows` (int64 indices, None:
    all) of `data`, by `shuffle` (True, False or "chunks", see :func:`epoch_order`), and
    the disk reads ahead of a chunk-shuffled epoch over a memory map.

    Epoch e's order is drawn from ``default_rng([*key, e])``; :meth:`keyed` sets the key.
    """

    def __init__(self, data, rows, shuffle):
        self.data, self.rows, self.shuffle = data, rows, shuffle
        self.n = data.shape[0] if rows is None else rows.shape[0]
        self.row_bytes = row_bytes(data)
        self.key = ()
        self._ahead = None

    def keyed(self, *key):
        """These orders, drawn with `key` (the run's seed, and a tag of what draws)."""
        self.key = key
        return self

    def order(self, epoch):
        """The rows of `data` in epoch `epoch`'s order."""
        order = epoch_order(self.n, self.shuffle, [*self.key, epoch], self.row_bytes)
        return order if self.rows is None else self.rows[order]

    def read_ahead(self, order, progress):
        """Read the epoch's chunks from disk ahead of `progress()` rows trained (a
        chunk-shuffled epoch over an array, such as a memory map; else nothing)."""
        self.close()
        if self.shuffle == "chunks" and isinstance(self.data, np.ndarray):
            self._ahead = ReadAhead(self.data, order, progress)

    def close(self):
        """Stop reading ahead."""
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None


def _mapped_file(x):
    """(file name, byte offset of x's first row) when x is a C-contiguous view of a
    numpy.memmap, else None."""
    base = x
    while isinstance(base.base, np.ndarray):      # the array that maps the file itself
        base = base.base
    if not isinstance(base, np.memmap) or getattr(base, "filename", None) is None \
            or not x.flags.c_contiguous:
        return None
    return base.filename, base.offset + (x.ctypes.data - base.ctypes.data)


def bind(engine, x, labels, targets, weights):
    """Bind the training rows to the engine: an array in place, a CSR matrix as its
    three arrays."""
    if is_sparse(x):
        engine.set_csr_data(x.indptr, x.indices, x.data, x.shape[1], labels, targets,
                            weights)
    else:
        engine.set_data(x, labels, targets, weights)


def forward(engine, x, out):
    """engine.forward of every row of `x` into out: an array of the engine's dtype as it
    is, a CSR matrix natively, :class:`Rows` and other arrays a chunk of rows at a
    time (converted to the engine's dtype)."""
    dtype = out.dtype
    if isinstance(x, np.ndarray) and x.dtype == dtype and x.flags.c_contiguous \
            and x.flags.aligned:
        return engine.forward(x, out)
    if is_sparse(x):
        return engine.forward_csr(x.indptr, x.indices, x.data, x.shape[1], out)
    if isinstance(x, Rows):
        for s, rows in x.chunks():
            forward(engine, rows, out[s:s + rows.shape[0]])
        return out
    step = _chunk_rows(x[:1].nbytes)
    for s in range(0, x.shape[0], step):
        engine.forward(np.ascontiguousarray(x[s:s + step], dtype=dtype), out[s:s + step])
    return out


def describe(value):
    """(shape, dtype, CRC-32) of a :class:`Rows` or a CSR matrix, as
    ``fastnet.distributed._describe`` gives it for the same rows as one array (a chunk
    at a time: nothing of the data's size is allocated)."""
    crc = 0
    if isinstance(value, Rows):
        for _, rows in value.chunks():
            crc = _crc(rows, crc)
    else:
        crc = _crc(value, crc)
    return tuple(value.shape), value.dtype.str, crc


def _crc(part, crc):
    if is_sparse(part):
        for a in (part.indptr - part.indptr[0], part.indices, part.data):
            crc = zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"), crc)
        return crc
    return zlib.crc32(memoryview(np.ascontiguousarray(part)).cast("B"), crc)
