"""The bundled digits data set, data files and a stratified split, in NumPy only.

* :func:`load_digits`: scikit-learn's copy of the UCI handwritten digits
  (1797 8x8 images, 10 classes), shipped inside the package as
  ``fastnet/data/digits.npz`` (written by ``tools/make_digits_npz.py``), so
  ``fastnet train`` needs neither scikit-learn nor a network.
* :func:`load_file`: features and class labels from a ``.npz`` (arrays
  ``X`` and ``y``) or a ``.csv`` file with a label column.
* :func:`train_test_split`: a seeded, stratified split (each class keeps its
  share of the rows on both sides).

Every loader raises ``ValueError`` (or ``FileNotFoundError``) with a message
naming the file and the problem; nothing is unpickled.
"""
import codecs
import collections
import csv
import io
import itertools
import math
import numbers
import os
import re
import warnings

import numpy as np

__all__ = ["encode_labels", "load_digits", "load_file", "split_indices", "train_test_split"]

_DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
DIGITS_PATH = os.path.join(_DATA_DIR, "digits.npz")


def load_digits(*, dtype=np.float64):
    """The 8x8 handwritten digits, scaled to [0, 1].

    Returns
    -------
    X : float array (1797, 64)
        Pixel intensities 0..16 divided by 16, rows are the images
        flattened row by row.
    y : int64 array (1797,)
        The digit, 0..9 (about 180 images each).

    Examples
    --------
    >>> X, y = fastnet.datasets.load_digits()
    >>> X.shape, y[:5]
    ((1797, 64), array([0, 1, 2, 3, 4]))
    """
    with np.load(DIGITS_PATH, allow_pickle=False) as data:
        X = data["X"].astype(dtype) / 16
        y = data["y"].astype(np.int64)
    return X, y


# ---------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------

def encode_labels(y):
    """Class labels of any kind as codes 0..C-1.

    Integral float labels are classes of integers; integers beyond int64 (in
    an object array of Python ints, as :func:`load_file` gives them) keep
    their exact values.

    Returns
    -------
    codes : int64 array like y
    classes : array (C,)
        The sorted distinct labels; ``classes[codes] == y``.
    """
    y = np.asarray(y)
    integral_floats = y.dtype.kind == "f"
    if integral_floats:
        if not np.all(np.isfinite(y)):
            raise ValueError("the labels contain NaN or infinity")
        if not np.all(y == np.round(y)):
            raise ValueError("the labels must be class labels (integers or names), "
                             "got fractional numbers")
    classes, codes = np.unique(y, return_inverse=True)
    if integral_floats:
        classes = _integer_array([int(c) for c in classes])   # exact, also beyond int64
    return codes.astype(np.int64).reshape(-1), classes


def _integer_array(values):
    """Python ints as int64, or as an object array when some lie beyond int64."""
    if all(-2**63 <= v < 2**63 for v in values):
        return np.array(values, dtype=np.int64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def load_file(path, label_column=None, *, header="auto", copy=True):
    """Features and class labels from a ``.npz``, ``.csv``, ``.npy`` or ``.parquet`` file.

    ``.npz``
        Arrays ``X`` (n, features) (more axes are flattened, e.g. images
        (n, 8, 8)) and ``y`` (n,) (``x`` and ``Y`` are accepted too).  Read
        with pickling disabled.
    ``.csv``
        UTF-8 (or UTF-16 with a byte-order mark) text of comma-separated
        numbers with ``.`` as the decimal point, one row per sample, with an
        optional header row (see `header`).  The label column is
        ``label_column`` (a header name, or a 0-based index), else the column
        named ``label`` (any case), else the last column.  Labels may be
        integers (kept exactly, however many digits), integral numbers or
        names; every other column must be numeric.

    Parameters
    ----------
    path : str or path-like
    label_column : str or int, optional
    copy : bool, keyword-only
        True: X is a new float64 array.  False: X as it is stored where it can be read
        in place (a read-only memory map of a ``.npy``, or of an uncompressed ``.npz``
        member, in its own dtype; a ``.npy`` label column in the middle of the columns
        costs a copy of the features), else as read (a ``.csv`` as float64, read a
        chunk of rows at a time).  ``fastnet train`` reads its ``--data`` so.
    header : "auto", True or False, keyword-only
        Whether the first row of a ``.csv`` names the columns.  "auto": it
        does when it is not all numbers, or when it reads ``0,1,...,k-1`` or
        ``1,2,...,k`` (the names pandas' ``to_csv`` writes for unnamed
        columns) and the rows below hold non-integers, or none of them has
        its label while every label below occurs twice or more; such a row
        that could still be data is read as data, with a warning.

    Returns
    -------
    X : float64 array (n, features) (with copy=False: see `copy`)
    y : int64 array (n,), codes 0..C-1
    classes : array (C,), the original labels (``classes[y]``)

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    ValueError
        Unknown extension, unreadable or non-UTF-8 file, another separator
        than ",", missing arrays or columns, non-numeric features, NaN/inf,
        fewer than 2 rows or 2 classes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a data file")
    ext = os.path.splitext(path)[1].lower()
    if header not in ("auto", True, False):
        raise ValueError(f"header must be 'auto', True or False, got {header!r}")
    if ext == ".npz":
        if label_column is not None:
            raise ValueError("--label-column applies to .csv files only")
        if header != "auto":
            raise ValueError("--header applies to .csv files only")
        X, labels = _read_npz(path)
    elif ext == ".csv":
        X, labels = _read_csv(path, label_column, header)
    elif ext in (".npy", ".parquet"):
        if header != "auto":
            raise ValueError("--header applies to .csv files only")
        X, labels = (_read_npy if ext == ".npy" else _read_parquet)(path, label_column)
    else:
        raise ValueError(f"{path}: unsupported file type {ext or '(none)'!r}; "
                         "use a .npz with arrays X and y, or a .csv, .npy or .parquet "
                         "with a label column")
    if X.shape[0] < 2:
        raise ValueError(f"{path} has {X.shape[0]} rows; at least 2 are needed")
    if X.shape[1] < 1:
        raise ValueError(f"{path} has no feature columns")
    if copy and not (X.dtype == np.float64 and X.flags.owndata and X.flags.writeable):
        X = X.astype(np.float64)       # a new array: no view of a file, no other dtype
    try:
        y, classes = encode_labels(labels)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    if classes.size < 2:
        raise ValueError(f"{path}: the labels hold a single class ({classes[0]!r}); "
                         "classification needs at least 2")
    return X, y, classes


def _read_npz(path):
    import zipfile
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a .npz file (not a zip archive of arrays)")
    try:
        with np.load(path, allow_pickle=False) as data:
            files = list(data.files)
            xk = next((k for k in ("X", "x") if k in files), None)
            yk = next((k for k in ("y", "Y") if k in files), None)
            if xk is None or yk is None:
                raise ValueError(f"{path} must hold arrays 'X' and 'y'; it has "
                                 f"{', '.join(repr(k) for k in files) or 'no arrays'}")
            X, y = _npz_member(path, data, xk), data[yk]
    except ValueError as exc:
        msg = str(exc)
        if msg.startswith(str(path)):
            raise
        raise ValueError(f"{path} is not a readable .npz of arrays ({msg})") from None
    except (zipfile.BadZipFile, EOFError, OSError, KeyError) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({exc})") from None
    if X.dtype == np.bool_ or X.dtype.kind not in "iuf":
        raise ValueError(f"{path}: X must hold numbers, got dtype {X.dtype}")
    if X.ndim < 2:
        raise ValueError(f"{path}: X must be (n, features), got shape {X.shape}")
    X = X.reshape(X.shape[0], -1)
    _check_finite(path, X, None)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{path}: y has shape {y.shape} but X has shape {X.shape}; "
                         f"y must be ({X.shape[0]},)")
    return X, y


def _npz_member(path, archive, key):
    """Array `key` of an open .npz: a read-only memory map of the file when the member is
    stored uncompressed (np.savez), else read into memory (np.savez_compressed)."""
    import zipfile
    name = key + ".npy"
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED:
            return archive[key]
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)               # the local file header: name and extra lengths
        if local[:4] != b"PK\x03\x04":
            return archive[key]
        fh.seek(info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little"))
        version = np.lib.format.read_magic(fh)
        readers = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}
        if version not in readers:
            return archive[key]
        shape, fortran, dtype = readers[version](fh)
        offset = fh.tell()
    if dtype.hasobject or 0 in shape:
        return archive[key]
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                     order="F" if fortran else "C")


def _read_npy(path, label_column):
    """A 2-D numeric .npy, memory-mapped: the label column, and the other columns as a
    view of the map (a copy when the label column is neither the first nor the last)."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from None
    if data.ndim != 2 or data.dtype == np.bool_ or data.dtype.kind not in "iuf":
        raise ValueError(f"{path}: a .npy must hold a 2-D numeric array (rows of features "
                         f"and a label column), got {data.dtype} of shape {data.shape}")
    width = data.shape[1]
    label = _label_index(path, label_column, None, width)
    if label in (0, width - 1):
        features = data[:, 1:] if label == 0 else data[:, :-1]
    else:
        features = data[:, [j for j in range(width) if j != label]]
    _check_finite(path, features, None)
    return features, np.asarray(data[:, label])


def _read_parquet(path, label_column):
    """A Parquet file (needs pyarrow): the label column and the numeric others."""
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(f"{path}: reading Parquet needs pyarrow (pip install pyarrow)") \
            from None
    try:
        table = pq.read_table(path)
    except Exception as exc:          # pyarrow's own errors: not a Parquet file, ...
        raise ValueError(f"{path} is not a readable Parquet file ({exc})") from None
    names = list(table.column_names)
    label = _label_index(path, label_column, names, len(names))
    labels = table.column(label)
    if labels.null_count:
        raise ValueError(f"{path}: the label column {names[label]!r} has "
                         f"{labels.null_count} missing values")
    features = table.select([c for j, c in enumerate(names) if j != label])
    from fastnet import _inputs
    try:
        X = _inputs.frame_array(features, f"{path}:")
    except (TypeError, ValueError) as exc:
        raise ValueError(str(exc)) from None
    _check_finite(path, X, [c for j, c in enumerate(names) if j != label])
    return X, labels.to_numpy(zero_copy_only=False)


def _check_finite(path, X, names):
    """ValueError naming the first NaN/inf of X by row and column (a name from `names`,
    else the feature's 0-based number); read a chunk of rows at a time."""
    from fastnet import _inputs
    bad = _inputs.first_nonfinite(X)
    if bad is not None:
        row, col = bad
        column = repr(names[col]) if names else f"{col} (0-based, label column excluded)"
        raise ValueError(f"{path}: NaN or infinity at row {row}, feature column {column}")


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


_PLAIN_INT = re.compile(r"[+-]?[0-9]+")


def _is_int(field):
    return _PLAIN_INT.fullmatch(field.strip()) is not None


class _TextError(ValueError):
    """A CSV file that is not text fastnet reads (raised as it is, without a hint)."""


# rows of a CSV parsed (and checked) at a time: bounded memory beside the features
CSV_CHUNK_ROWS = 65536
_CSV_BLOCK_BYTES = 1 << 20


class _CsvLines:
    """The lines of a CSV file's text (line ends kept), decoded a block of bytes at a
    time: UTF-8 (byte-order mark optional) or UTF-16/32 with a byte-order mark; a byte
    that is not raises :class:`_TextError` naming its line."""

    def __init__(self, path):
        self.path = path

    def __iter__(self):
        path = self.path
        with open(path, "rb") as fh:
            start = fh.read(4)
            codec = "utf-8-sig"
            for bom, name in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                              (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
                if start.startswith(bom):
                    codec = name
                    break
            fh.seek(0)
            decoder = codecs.getincrementaldecoder(codec)()
            carry, newlines = "", 0
            while True:
                block = fh.read(_CSV_BLOCK_BYTES)
                try:
                    text = decoder.decode(block, final=not block)
                except UnicodeDecodeError as exc:
                    raise self._not_text(codec, block, exc,
                                         newlines + carry.count("\n")) from None
                if codec == "utf-8-sig" and "\0" in text:
                    raise _TextError(f"{path} holds NUL bytes: not UTF-8 text (UTF-16 or "
                                     "UTF-32 without a byte-order mark?): save it as UTF-8")
                text = carry + text
                if block and text.endswith("\r"):   # maybe half of a \r\n
                    text, carry = text[:-1], "\r"
                else:
                    carry = ""
                lines = io.StringIO(text, newline="").readlines()
                if block and lines and not lines[-1].endswith(("\n", "\r")):
                    carry = lines.pop() + carry            # a line the next block ends
                yield from lines
                newlines += sum(line.count("\n") for line in lines)
                if not block:
                    return

    def _not_text(self, codec, block, exc, newlines_before):
        path = self.path
        if codec != "utf-8-sig":
            return _TextError(f"{path} starts with a {codec.upper()} byte-order mark but is "
                              f"not valid {codec.upper()} ({exc.reason})")
        line = newlines_before + block.count(b"\n", 0, exc.start) + 1
        guess = "UTF-16 or UTF-32 without a byte-order mark" \
            if newlines_before == 0 and b"\0" in block[:4096] \
            else "perhaps Latin-1 or Windows-1252"
        return _TextError(f"{path} is not UTF-8 text (byte 0x{block[exc.start]:02x} on line "
                          f"{line}; {guess}): save it as UTF-8")


def _read_csv(path, label_column, header):
    records = (row for row in csv.reader(_CsvLines(path))
               if row and any(f.strip() for f in row))
    try:
        return _parse_records(path, records, label_column, header)
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    except _TextError:
        raise
    except ValueError as exc:
        head = "".join(itertools.islice(_CsvLines(path), 5))      # read again: 5 lines
        head = head.lstrip("\ufeff\r\n").splitlines()[:5]
        hint = _format_hint(head) if head else None
        if hint is None:
            raise
        raise ValueError(f"{exc}; {hint}") from None


def _format_hint(lines):
    """What the file's first `lines` suggest, when reading them comma-separated failed."""
    if lines[0].lstrip().startswith("#"):
        return "line 1 starts with '#': fastnet's CSV reader takes no comment lines; remove them"
    for separator, name in ((";", "semicolons"), ("\t", "tabs")):
        if separator in lines[0]:
            decimal = ", decimal=','" if any(re.search(r"[0-9],[0-9]", line)
                                              for line in lines) else ""
            commas = " and decimal commas" if decimal else ""
            return (f"the fields look separated by {name}{commas}, but fastnet reads "
                    "comma-separated values with '.' as the decimal point: re-save the file "
                    f"that way (e.g. pandas.read_csv(path, sep={separator!r}{decimal})"
                    ".to_csv(new_path, index=False))")
    return None


def _header_by_first_row(first):
    """The "auto" rule of :func:`load_file`'s `header` from the first row alone: True
    (not all numbers), False (numbers that cannot be pandas' names), or None (it reads
    ``0,1,...,k-1`` or ``1,2,...,k``: the rows below decide, :func:`_header_by_rows`)."""
    if not all(_is_number(f) for f in first):
        return True
    if not all(_is_int(f) for f in first):
        return False
    values = [int(f) for f in first]
    if values not in (list(range(len(values))), list(range(1, len(values) + 1))):
        return False
    return None


def _guessed_label(first, label_column):
    """The label column the rows below a header-like first row are read with while the
    header is undecided (an index given as such, else the last column)."""
    if isinstance(label_column, (int, str)) and str(label_column).lstrip("-").isdigit():
        return int(label_column) % len(first)
    return len(first) - 1


def _header_by_rows(path, first, label, all_int, counts):
    """The "auto" rule for a first row of column numbers: a header when the rows below
    (`all_int`: all their fields integers; `counts`: their labels' counts) show it."""
    if not all_int:
        return True                       # the data holds non-integers, the row does not
    if first[label] not in counts and counts and min(counts.values()) >= 2:
        return True                       # as data, its label alone would be a class of one
    warnings.warn(f"{path}: the first row ({','.join(first)}) could name the columns (pandas "
                  "writes 0,1,... for unnamed ones) but is read as data; pass header=True "
                  "(--header yes) if it is a header, header=False (--header no) to silence "
                  "this", UserWarning, stacklevel=5)
    return False


def _parse_records(path, records, label_column, header):
    """(features, labels) of a CSV's non-empty records, parsed CSV_CHUNK_ROWS at a time."""
    first_row = next(records, None)
    if first_row is None:
        raise ValueError(f"{path} is empty")
    first = [f.strip() for f in first_row]
    decided = header if header != "auto" else _header_by_first_row(first)
    names = first if decided is True else None
    width = len(first)
    if width < 2:
        raise ValueError(f"{path} has {width} column; a label column and at least one "
                         "feature column are needed")
    label = _label_index(path, label_column, names, width) if decided is not None \
        else _guessed_label(first, label_column)
    parts, labels, all_int, counts = [], [], True, collections.Counter()
    chunk, line = [], 2
    for row in records:
        chunk.append(row)
        if len(chunk) == CSV_CHUNK_ROWS:
            _add_chunk(path, chunk, line, width, label, names, parts, labels)
            if decided is None:
                all_int, counts = _row_stats(chunk, label, all_int, counts)
            line += len(chunk)
            chunk = []
    if chunk:
        _add_chunk(path, chunk, line, width, label, names, parts, labels)
        if decided is None:
            all_int, counts = _row_stats(chunk, label, all_int, counts)
    if decided is None:
        decided = _header_by_rows(path, first, label, all_int, counts)
        if decided and _label_index(path, label_column, first, width) != label:
            return _read_csv(path, label_column, True)     # named otherwise: read again
    if not decided:                       # the first row is data too
        head_parts, head_labels = [], []
        _add_chunk(path, [first_row], 1, width, label, None, head_parts, head_labels)
        parts, labels = head_parts + parts, head_labels + labels
    if not parts:
        raise ValueError(f"{path} has a header but no data rows")
    features = parts[0] if len(parts) == 1 else np.concatenate(parts)
    labels = np.concatenate(labels).tolist()
    if all(_is_int(v) for v in labels):
        return features, _integer_array([int(v) for v in labels])    # exact, any size
    if all(_is_number(v) for v in labels):
        return features, np.array([float(v) for v in labels])
    return features, np.array(labels)


def _row_stats(rows, label, all_int, counts):
    """What :func:`_header_by_rows` needs, updated by `rows`."""
    all_int = all_int and all(_is_int(f) for row in rows for f in row)
    counts.update(row[label].strip() for row in rows if len(row) > label)
    return all_int, counts


def _add_chunk(path, rows, first_line, width, label, names, parts, labels):
    """Parse records `rows` (the first on data line `first_line`) into float64 features
    (appended to `parts`) and label strings (to `labels`); ValueError naming the line and
    column of a bad field or of NaN or infinity."""
    for i, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"{path}, line {first_line + i}: {len(row)} fields, expected "
                             f"{width}")
    cells = np.array(rows, dtype=str)
    keep = np.array([j for j in range(width) if j != label], dtype=np.intp)
    try:
        features = cells[:, keep].astype(np.float64)
    except ValueError:                    # find the field, the way Python reads numbers
        features = np.empty((len(rows), width - 1), dtype=np.float64)
        for i, row in enumerate(rows):
            for k, j in enumerate(keep):
                try:
                    features[i, k] = float(row[j])
                except ValueError:
                    name = f"column {names[j]!r}" if names else f"column {j}"
                    raise ValueError(f"{path}, line {first_line + i}, {name}: "
                                     f"{row[j].strip()!r} is not a number") from None
    bad = np.argwhere(~np.isfinite(features))
    if bad.size:
        i, k = (int(v) for v in bad[0])
        j = int(keep[k])
        name = f"column {names[j]!r}" if names else f"column {j}"
        raise ValueError(f"{path}, line {first_line + i}, {name}: "
                         f"{rows[i][j].strip()!r} is NaN or infinity")
    parts.append(features)
    labels.append(np.char.strip(cells[:, label]))


def _label_index(path, label_column, header, width):
    if label_column is None:
        if header is not None:
            lowered = [h.lower() for h in header]
            if "label" in lowered:
                return lowered.index("label")
        return width - 1
    if isinstance(label_column, numbers.Integral) and not isinstance(label_column, bool):
        index = int(label_column)
    elif isinstance(label_column, str) and header is not None and label_column in header:
        return header.index(label_column)
    elif isinstance(label_column, str) and label_column.lstrip("-").isdigit():
        index = int(label_column)
    else:
        have = f"columns {', '.join(header)}" if header else "no header row"
        raise ValueError(f"{path}: no label column {label_column!r} ({have})")
    if not -width <= index < width:
        raise ValueError(f"{path}: label column index {index} out of range for {width} "
                         "columns")
    return index % width


# ---------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------

def train_test_split(X, y, test_size=0.25, *, seed=0, stratify=True):
    """Split (X, y) into train and test rows, stratified by class (the rows of
    :func:`split_indices`, copied).

    Returns
    -------
    X_train, X_test, y_train, y_test
    """
    X = np.asarray(X)
    train, test = split_indices(y, test_size, seed=seed, stratify=stratify,
                                n=X.shape[0] if X.ndim else 0)
    y = np.asarray(y)
    return X[train], X[test], y[train], y[test]


def split_indices(y, test_size=0.25, *, seed=0, stratify=True, n=None):
    """The train and test rows of a split of the labels y, stratified by class.

    ``ceil(test_size * n)`` rows go to the test side (scikit-learn's
    rounding).  With ``stratify=True`` each class contributes in proportion
    to its size (largest-remainder rounding; a class keeps at least one
    training row when it has two or more), and the rows of each class are
    chosen by a permutation from ``numpy.random.default_rng(seed)``.  Both
    sides keep the original row order.

    Parameters
    ----------
    y : array (n,) of class labels
    test_size : float in (0, 1) or int in [1, n - 1]
    seed : int, keyword-only
    stratify : bool, keyword-only
    n : int, keyword-only
        The rows of the data y labels (default: y's length), checked against y.

    Returns
    -------
    train, test : int64 arrays, ascending
    """
    y = np.asarray(y)
    if n is None:
        n = y.shape[0] if y.ndim else 0
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y has shape {y.shape} but X has {n} rows")
    if n < 2:
        raise ValueError(f"cannot split {n} rows")
    if isinstance(test_size, numbers.Integral) and not isinstance(test_size, bool):
        n_test = int(test_size)
    elif isinstance(test_size, numbers.Real) and 0 < test_size < 1:
        n_test = math.ceil(test_size * n)
    else:
        raise ValueError(f"test_size must be a fraction in (0, 1) or a row count, "
                         f"got {test_size!r}")
    if not 1 <= n_test <= n - 1:
        raise ValueError(f"test_size={test_size!r} gives {n_test} test rows out of {n}; "
                         "both sides need at least one row")
    rng = np.random.default_rng(seed)
    if not stratify:
        test = np.sort(rng.permutation(n)[:n_test])
    else:
        codes = np.unique(y, return_inverse=True)[1].reshape(-1)
        counts = np.bincount(codes)
        exact = counts * n_test / n
        alloc = np.floor(exact).astype(np.int64)
        cap = np.where(counts >= 2, counts - 1, counts)
        alloc = np.minimum(alloc, cap)
        order = np.argsort(-(exact - np.floor(exact)), kind="stable")
        remaining = n_test - int(alloc.sum())
        for limit in (cap, counts):
            while remaining > 0:
                grown = False
                for c in order:
                    if remaining and alloc[c] < limit[c]:
                        alloc[c] += 1
                        remaining -= 1
                        grown = True
                if not grown:
                    break
        picks = [rng.permutation(np.flatnonzero(codes == c))[:alloc[c]]
                 for c in range(counts.size)]
        test = np.sort(np.concatenate(picks))
    mask = np.zeros(n, dtype=bool)
    mask[test] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)
