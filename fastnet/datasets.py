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
import math
import numbers
import os
import re
import warnings

import numpy as np

__all__ = ["encode_labels", "load_digits", "load_file", "train_test_split"]

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


def load_file(path, label_column=None, *, header="auto"):
    """Features and class labels from a ``.npz`` or ``.csv`` file.

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
    header : "auto", True or False, keyword-only
        Whether the first row of a ``.csv`` names the columns.  "auto": it
        does when it is not all numbers, or when it reads ``0,1,...,k-1`` or
        ``1,2,...,k`` (the names pandas' ``to_csv`` writes for unnamed
        columns) and the rows below hold non-integers, or none of them has
        its label while every label below occurs twice or more; such a row
        that could still be data is read as data, with a warning.

    Returns
    -------
    X : float64 array (n, features)
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
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{path}: the features contain NaN or infinity")
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
            X, y = data[xk], data[yk]
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
    X = X.reshape(X.shape[0], -1).astype(np.float64)
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1 or y.shape[0] != X.shape[0]:
        raise ValueError(f"{path}: y has shape {y.shape} but X has shape {X.shape}; "
                         f"y must be ({X.shape[0]},)")
    return X, y


def _read_npy(path, label_column):
    """A 2-D numeric .npy (memory-mapped, read once): the label column and the others."""
    try:
        data = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise ValueError(f"{path} is not a readable .npy file ({exc})") from None
    if data.ndim != 2 or data.dtype == np.bool_ or data.dtype.kind not in "iuf":
        raise ValueError(f"{path}: a .npy must hold a 2-D numeric array (rows of features "
                         f"and a label column), got {data.dtype} of shape {data.shape}")
    label = _label_index(path, label_column, None, data.shape[1])
    keep = [j for j in range(data.shape[1]) if j != label]
    return _checked_features(path, data[:, keep], None), np.asarray(data[:, label])


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
    return _checked_features(path, X, [c for j, c in enumerate(names) if j != label]), \
        labels.to_numpy(zero_copy_only=False)


def _checked_features(path, X, names):
    """X as float64; ValueError naming the first NaN/inf by row and column (a name from
    `names`, else the feature's 0-based number)."""
    X = np.asarray(X, dtype=np.float64)
    bad = np.argwhere(~np.isfinite(X))
    if bad.size:
        row, col = (int(v) for v in bad[0])
        column = repr(names[col]) if names else f"{col} (0-based, label column excluded)"
        raise ValueError(f"{path}: NaN or infinity at row {row}, feature column {column}")
    return X


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


_PLAIN_INT = re.compile(r"[+-]?[0-9]+")


def _is_int(field):
    return _PLAIN_INT.fullmatch(field.strip()) is not None


def _read_text(path):
    """The text of a CSV: UTF-8 (BOM optional) or UTF-16/32 with a BOM; else ValueError."""
    with open(path, "rb") as fh:
        raw = fh.read()
    for bom, codec in ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"),
                       (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if raw.startswith(bom):
            try:
                return raw.decode(codec)
            except UnicodeDecodeError as exc:
                raise ValueError(f"{path} starts with a {codec.upper()} byte-order mark but "
                                 f"is not valid {codec.upper()} ({exc.reason})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        guess = "UTF-16 or UTF-32 without a byte-order mark" if b"\0" in raw[:4096] \
            else "perhaps Latin-1 or Windows-1252"
        raise ValueError(f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line "
                         f"{line}; {guess}): save it as UTF-8") from None
    if "\0" in text:
        raise ValueError(f"{path} holds NUL bytes: not UTF-8 text (UTF-16 or UTF-32 without "
                         "a byte-order mark?): save it as UTF-8")
    return text


def _read_csv(path, label_column, header):
    text = _read_text(path)
    try:
        rows = [row for row in csv.reader(io.StringIO(text, newline=""))
                if row and any(f.strip() for f in row)]
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise ValueError(f"{path} is empty")
    try:
        return _parse_rows(path, rows, label_column, header)
    except ValueError as exc:
        hint = _format_hint(text.lstrip("\ufeff\r\n").splitlines()[:5])
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


def _first_row_is_header(path, first, rest, label_column):
    """The "auto" rule of :func:`load_file`'s `header`."""
    if not all(_is_number(f) for f in first):
        return True
    if not all(_is_int(f) for f in first):
        return False
    values = [int(f) for f in first]
    if values not in (list(range(len(values))), list(range(1, len(values) + 1))):
        return False
    # column names 0..k-1 or 1..k, or a data row that reads so
    label = len(first) - 1
    if isinstance(label_column, (int, str)) and str(label_column).lstrip("-").isdigit():
        label = int(label_column) % len(first)
    if any(not _is_int(f) for row in rest for f in row):
        return True                       # the data holds non-integers, the row does not
    counts = collections.Counter(row[label].strip() for row in rest if len(row) > label)
    if first[label] not in counts and counts and min(counts.values()) >= 2:
        return True                       # as data, its label alone would be a class of one
    warnings.warn(f"{path}: the first row ({','.join(first)}) could name the columns (pandas "
                  "writes 0,1,... for unnamed ones) but is read as data; pass header=True "
                  "(--header yes) if it is a header, header=False (--header no) to silence "
                  "this", UserWarning, stacklevel=5)
    return False


def _parse_rows(path, rows, label_column, header):
    first = [f.strip() for f in rows[0]]
    if header == "auto":
        header = _first_row_is_header(path, first, rows[1:], label_column)
    names = first if header else None
    data = rows[1:] if header else rows
    first_data_line = 2 if header else 1
    if not data:
        raise ValueError(f"{path} has a header but no data rows")
    width = len(names) if names is not None else len(data[0])
    if width < 2:
        raise ValueError(f"{path} has {width} column; a label column and at least one "
                         "feature column are needed")
    label = _label_index(path, label_column, names, width)
    features = np.empty((len(data), width - 1), dtype=np.float64)
    labels = []
    for i, row in enumerate(data):
        line = i + first_data_line
        if len(row) != width:
            raise ValueError(f"{path}, line {line}: {len(row)} fields, expected {width}")
        values = []
        for j, field in enumerate(row):
            field = field.strip()
            if j == label:
                labels.append(field)
                continue
            try:
                values.append(float(field))
            except ValueError:
                name = f"column {names[j]!r}" if names else f"column {j}"
                raise ValueError(f"{path}, line {line}, {name}: {field!r} is not a "
                                 "number") from None
        features[i] = values
    if all(_is_int(v) for v in labels):
        return features, _integer_array([int(v) for v in labels])    # exact, any size
    if all(_is_number(v) for v in labels):
        return features, np.array([float(v) for v in labels])
    return features, np.array(labels)


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
    """Split (X, y) into train and test rows, stratified by class.

    ``ceil(test_size * n)`` rows go to the test side (scikit-learn's
    rounding).  With ``stratify=True`` each class contributes in proportion
    to its size (largest-remainder rounding; a class keeps at least one
    training row when it has two or more), and the rows of each class are
    chosen by a permutation from ``numpy.random.default_rng(seed)``.  Both
    sides keep the original row order.

    Parameters
    ----------
    X : array (n, ...)
    y : array (n,) of class labels
    test_size : float in (0, 1) or int in [1, n - 1]
    seed : int, keyword-only
    stratify : bool, keyword-only

    Returns
    -------
    X_train, X_test, y_train, y_test
    """
    X = np.asarray(X)
    y = np.asarray(y)
    n = X.shape[0] if X.ndim else 0
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"y has shape {y.shape} but X has shape {X.shape}")
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
    return X[~mask], X[mask], y[~mask], y[mask]
