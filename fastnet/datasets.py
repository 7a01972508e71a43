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
import csv
import math
import numbers
import os

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

    Returns
    -------
    codes : int64 array like y
    classes : array (C,)
        The sorted distinct labels; ``classes[codes] == y``.
    """
    y = np.asarray(y)
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)):
            raise ValueError("the labels contain NaN or infinity")
        if not np.all(y == np.round(y)):
            raise ValueError("the labels must be class labels (integers or names), "
                             "got fractional numbers")
        y = y.astype(np.int64)
    classes, codes = np.unique(y, return_inverse=True)
    return codes.astype(np.int64).reshape(-1), classes


def load_file(path, label_column=None):
    """Features and class labels from a ``.npz`` or ``.csv`` file.

    ``.npz``
        Arrays ``X`` (n, features) (more axes are flattened, e.g. images
        (n, 8, 8)) and ``y`` (n,) (``x`` and ``Y`` are accepted too).  Read
        with pickling disabled.
    ``.csv``
        Comma-separated numbers, one row per sample, with an optional header
        row (detected: a first row that is not all numbers).  The label
        column is ``label_column`` (a header name, or a 0-based index), else
        the column named ``label`` (any case), else the last column.  Labels
        may be integers or names; every other column must be numeric.

    Parameters
    ----------
    path : str or path-like
    label_column : str or int, optional

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
        Unknown extension, unreadable file, missing arrays or columns,
        non-numeric features, NaN/inf, fewer than 2 rows or 2 classes.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path}")
    if os.path.isdir(path):
        raise ValueError(f"{path} is a directory, not a data file")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npz":
        if label_column is not None:
            raise ValueError("--label-column applies to .csv files only")
        X, labels = _read_npz(path)
    elif ext == ".csv":
        X, labels = _read_csv(path, label_column)
    else:
        raise ValueError(f"{path}: unsupported file type {ext or '(none)'!r}; "
                         "use a .npz with arrays X and y or a .csv with a label column")
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


def _is_number(field):
    try:
        float(field)
    except ValueError:
        return False
    return True


def _read_csv(path, label_column):
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [row for row in csv.reader(fh) if row and any(f.strip() for f in row)]
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a text CSV file ({exc.reason})") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: malformed CSV ({exc})") from None
    if not rows:
        raise ValueError(f"{path} is empty")
    header = None
    first_data_line = 1
    if not all(_is_number(f) for f in rows[0]):
        header = [f.strip() for f in rows[0]]
        rows = rows[1:]
        first_data_line = 2
    if not rows:
        raise ValueError(f"{path} has a header but no data rows")
    width = len(header) if header is not None else len(rows[0])
    if width < 2:
        raise ValueError(f"{path} has {width} column; a label column and at least one "
                         "feature column are needed")
    label = _label_index(path, label_column, header, width)
    features = np.empty((len(rows), width - 1), dtype=np.float64)
    labels = []
    for i, row in enumerate(rows):
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
                name = f"column {header[j]!r}" if header else f"column {j}"
                raise ValueError(f"{path}, line {line}, {name}: {field!r} is not a "
                                 "number") from None
        features[i] = values
    if all(_is_number(v) for v in labels):
        numeric = np.array([float(v) for v in labels])
        labels = numeric
    else:
        labels = np.array(labels)
    return features, labels


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
