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
* Rows the engine cannot read in place, a list of arrays (``.npy`` shards) or an array
  of another dtype or layout, are :class:`Shards`: training gathers and converts them a
  block of batches at a time into a staging array (:class:`StagedFeed`), never as a
  whole; an array the engine can read is bound as it is (:class:`DirectFeed`).
"""
import os
import sys
import zlib

import numpy as np

# Rows per native call of the chunked paths: ~8 MB of float32 at 2,048 features,
# small against the data and large against the cost of a call.
CHUNK_BYTES = 8 << 20
# float64 bytes that Shards converts at a time
CONVERT_BYTES = 1 << 20


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

def first_nonfinite(arr, dtype=None):
    """The index (a tuple) of the first value of arr that is not finite as `dtype`
    (None: arr's own), or None when all are; read a chunk of rows at a time (no mask or
    copy of the whole array)."""
    step = _chunk_rows(arr[:1].nbytes) if arr.ndim > 1 else max(1, CHUNK_BYTES // 8)
    with np.errstate(over="ignore"):          # an overflow to infinity is the answer
        for s in range(0, max(1, arr.shape[0]), step):
            part = arr[s:s + step] if dtype is None else arr[s:s + step].astype(dtype)
            ok = np.isfinite(part)
            if not ok.all():
                where = np.argwhere(~ok)[0]
                return (s + int(where[0]),) + tuple(int(i) for i in where[1:])
    return None


def all_finite(arr, dtype=None):
    """Whether every value of arr is finite as `dtype` (see :func:`first_nonfinite`)."""
    return first_nonfinite(arr, dtype) is None


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


class Shards:
    """Rows of one or more 2-D arrays read as one (n, k) array of `dtype`, converted a
    gather of rows at a time, never as a whole: a list of (memory-mapped) ``.npy`` shards,
    or one array that the engine cannot read in place (another dtype, Fortran order, a
    strided view, big-endian bytes).

    Parameters
    ----------
    parts : list of numpy.ndarray
        Checked 2-D arrays of real numbers with the same number of columns.
    dtype : numpy.dtype
        The dtype the rows are read as (the model's).
    center, scale : numpy.ndarray of float64 (k,), optional
        Rows are read as ``(row - center) / scale``, computed in float64 (a
        standardisation applied a gather at a time instead of to a copy of the data).
    """

    ndim = 2

    def __init__(self, parts, dtype, center=None, scale=None):
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [p.shape[0] for p in self.parts]).astype(np.int64)
        self.shape = (int(self.starts[-1]), self.parts[0].shape[1])
        self.dtype = np.dtype(dtype)
        self.center, self.scale = center, scale

    def as_dtype(self, dtype):
        """These rows read as `dtype`."""
        return self if self.dtype == dtype else \
            Shards(self.parts, dtype, self.center, self.scale)

    def _read(self, rows):
        if self.center is None:
            return rows
        rows = rows.astype(np.float64)          # a new array: scaled in place
        rows -= self.center
        rows /= self.scale
        return rows

    def __len__(self):
        return self.shape[0]

    def __getitem__(self, rows):
        """Rows `rows` (a slice or integer indices) as a new C-contiguous array."""
        if isinstance(rows, slice):
            start, stop, step = rows.indices(self.shape[0])
            rows = np.arange(start, stop, step, dtype=np.int64)
        return self.take(np.asarray(rows, dtype=np.int64))

    def take(self, index, out=None):
        """Rows `index` (int64) converted into `out` (a new array if None), about
        CONVERT_BYTES of float64 at a time (the temporaries stay small beside `out`)."""
        if out is None:
            out = np.empty((index.shape[0], self.shape[1]), dtype=self.dtype)
        step = max(1, CONVERT_BYTES // (8 * self.shape[1]))
        for s in range(0, index.shape[0], step):
            self._take(index[s:s + step], out[s:s + step])
        return out

    def _take(self, index, out):
        if len(self.parts) == 1:
            out[...] = self._read(self.parts[0][index])
            return
        part = np.searchsorted(self.starts, index, side="right") - 1
        for p in np.unique(part):
            mine = part == p
            out[mine] = self._read(self.parts[p][index[mine] - self.starts[p]])


def column_moments(x):
    """(mean, standard deviation) of every column of x (an array or :class:`Rows` of
    one) in float64, read a chunk of rows at a time: two passes, no copy of the data."""
    n = x.shape[0]
    mean = sum(np.sum(c, axis=0, dtype=np.float64) for _, c in row_chunks(x)) / n
    var = np.zeros_like(mean)
    step = max(1, CONVERT_BYTES // (8 * x.shape[1]))
    for _, c in row_chunks(x):
        for s in range(0, c.shape[0], step):
            d = np.subtract(c[s:s + step], mean)        # float64, squared in place
            var += np.sum(np.square(d, out=d), axis=0)
    var /= n
    return mean, np.sqrt(var)


def row_chunks(x):
    """(start, rows) pairs: the rows of x (an array, :class:`Shards` or :class:`Rows`)
    a chunk of about CHUNK_BYTES at a time, each an array of its own."""
    if isinstance(x, Rows):
        yield from x.chunks()
        return
    step = _chunk_rows(row_bytes(x))
    for s in range(0, x.shape[0], step):
        yield s, x[s:s + step]


def is_shard_list(value, name="X"):
    """Whether `value` is a list or tuple of 2-D arrays (shards of one data set), as
    opposed to a list of rows; ValueError for a list that holds arrays of two or more
    dimensions beside anything else, naming the first item that is not a 2-D array."""
    if not isinstance(value, (list, tuple)) or not any(
            isinstance(p, np.ndarray) and p.ndim >= 2 for p in value):
        return False
    for i, p in enumerate(value):
        if not (isinstance(p, np.ndarray) and p.ndim == 2):
            what = f"a {p.ndim}-D array" if isinstance(p, np.ndarray) else \
                f"a {type(p).__name__}"
            raise ValueError(f"{name} is a list of arrays (shards of one data set), but "
                             f"{name}[{i}] is {what}; every shard must be a 2-D array "
                             f"(rows, features)")
    return True


def engine_readable(x, dtype):
    """x as the engine reads training rows: an array of `dtype`, C-contiguous and aligned,
    or a CSR matrix as they are; any other array, and lists of them (:class:`Shards`),
    converted a block of batches at a time (Shards), or at once when the converted rows
    fit in one staging array (CHUNK_BYTES: staging them every epoch would cost more);
    :class:`Rows` of these."""
    if isinstance(x, Rows):
        return Rows(engine_readable(x.base, dtype), x.index)
    if isinstance(x, np.ndarray) and not (x.dtype == dtype and x.flags.c_contiguous
                                          and x.flags.aligned):
        x = Shards([x], dtype)
    if isinstance(x, Shards) and x.shape[0] * row_bytes(x) <= CHUNK_BYTES:
        return x[:]
    return x


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
        self._files = _mapped_files(x)
        if not self._files or not hasattr(os, "posix_fadvise"):
            return
        import threading
        self._x, self._order, self._progress = x, order, progress
        self._thread = threading.Thread(target=self._run, name="fastnet-read-ahead",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        import time
        chunk = max(1, CHUNK_SHUFFLE_BYTES // row_bytes(self._x))
        window = chunk * SHUFFLE_WINDOW_CHUNKS
        fds = []
        try:
            for name, offset, row, first, rows in self._files:
                fds.append((os.open(name, os.O_RDONLY), offset, row, first, first + rows))
        except OSError:
            for fd, *_ in fds:
                os.close(fd)
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
                    lo, hi = int(c) * chunk, (int(c) + 1) * chunk
                    for fd, offset, row, first, last in fds:     # the files it lies in
                        a, b = max(lo, first), min(hi, last)
                        if a < b:
                            os.posix_fadvise(fd, offset + (a - first) * row, (b - a) * row,
                                             os.POSIX_FADV_WILLNEED)
        finally:
            for fd, *_ in fds:
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
        if self.shuffle == "chunks" and isinstance(self.data, (np.ndarray, Shards)):
            self._ahead = ReadAhead(self.data, order, progress)

    def close(self):
        """Stop reading ahead."""
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = None


def _mapped_files(x):
    """[(file name, byte offset of its first row, bytes per row, x's row of its first
    row, rows)] of the parts of x (an array or :class:`Shards`) that are C-contiguous
    views of a numpy.memmap."""
    parts, starts = (x.parts, x.starts) if isinstance(x, Shards) else ([x], [0])
    found = []
    for part, first in zip(parts, starts):
        base = part
        while isinstance(base.base, np.ndarray):      # the array that maps the file itself
            base = base.base
        if isinstance(base, np.memmap) and getattr(base, "filename", None) is not None \
                and part.flags.c_contiguous:
            found.append((base.filename, base.offset + (part.ctypes.data - base.ctypes.data),
                          part[:1].nbytes, int(first), part.shape[0]))
    return found


def feed(engine, x, labels, targets, weights, max_batch):
    """How `engine` reads the training rows `x` (and their per-row arrays): bound in
    place (:class:`DirectFeed`: an array of its dtype, a CSR matrix) or gathered a block
    of batches at a time into a staging array (:class:`StagedFeed`: :class:`Shards`)."""
    if isinstance(x, Shards):
        return StagedFeed(engine, x, (labels, targets, weights), max_batch)
    bind(engine, x, labels, targets, weights)
    return DirectFeed(engine)


class DirectFeed:
    """The engine reads the bound rows where they are, through each epoch's order."""

    max_batches = sys.maxsize       # batches a window may hold

    def __init__(self, engine):
        self.engine = engine

    def begin_epoch(self, order):
        self.engine.set_order(order)

    def window(self, lo, hi):
        """Positions lo:hi of the epoch's order as positions of the engine's order."""
        return lo, hi


class StagedFeed:
    """The rows of :class:`Shards` staged for the engine: positions lo:hi of the epoch's
    order are gathered (and converted) into a staging array of about CHUNK_BYTES,
    together with the rows after them up to its capacity, which the engine then reads
    in order; the per-row arrays are gathered alike.  Results are those of binding the
    converted rows whole: the engine's batches hold the same rows in the same order.

    Parameters
    ----------
    engine : fastnet._network.Engine
    source : Shards
    per_row : (labels, targets, weights)
        Arrays (or None) indexed like the rows of `source`.
    max_batch : int
    """

    def __init__(self, engine, source, per_row, max_batch):
        self.engine, self.source, self.per_row = engine, source, per_row
        self.max_batches = max(1, _chunk_rows(row_bytes(source)) // max_batch)
        rows = min(self.max_batches * max_batch, source.shape[0])
        self._x = np.empty((rows, source.shape[1]), dtype=source.dtype)
        self._per_row = [None if a is None else np.empty((rows,) + a.shape[1:], a.dtype)
                         for a in per_row]
        self._identity = np.arange(rows, dtype=np.int64)
        self._order = None
        self._lo = self._hi = 0

    def begin_epoch(self, order):
        self._order = order
        self._lo = self._hi = 0

    def window(self, lo, hi):
        """Positions lo:hi of the epoch's order as positions of the engine's order,
        staging them (and what follows, up to the capacity) unless they are already."""
        if lo < self._lo or hi > self._hi:
            self._stage(lo)
        return lo - self._lo, hi - self._lo

    def _stage(self, lo):
        rows = self._order[lo:lo + self._x.shape[0]]
        m = rows.shape[0]
        x = self.source.take(rows, out=self._x[:m])
        per_row = [None if a is None else np.take(a, rows, axis=0, out=buf[:m])
                   for a, buf in zip(self.per_row, self._per_row)]
        self.engine.set_data(x, *per_row)
        self.engine.set_order(self._identity[:m])
        self._lo, self._hi = lo, lo + m


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
    """(shape, dtype, CRC-32) of a :class:`Rows`, :class:`Shards` or a CSR matrix, as
    ``fastnet.distributed._describe`` gives it for the same rows as one array (a chunk
    at a time: nothing of the data's size is allocated)."""
    crc = 0
    if is_sparse(value):
        crc = _crc(value, crc)
    else:
        for _, rows in row_chunks(value):
            crc = _crc(rows, crc)
    return tuple(value.shape), value.dtype.str, crc


def _crc(part, crc):
    if is_sparse(part):
        for a in (part.indptr - part.indptr[0], part.indices, part.data):
            crc = zlib.crc32(memoryview(np.ascontiguousarray(a)).cast("B"), crc)
        return crc
    return zlib.crc32(memoryview(np.ascontiguousarray(part)).cast("B"), crc)
