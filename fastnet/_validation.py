"""Argument checks shared by the public API.

Every check raises the documented exception and names the argument:
TypeError for a wrong dtype or type, ValueError for a wrong shape, an empty
batch or an out-of-range value.  Arrays come back C-contiguous (copied once
if they were not), so the native kernels see one layout.
"""
import math
import numbers

import numpy as np

from fastnet import _inputs

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def float_dtype(value, name="dtype"):
    """`value` as the float32 or float64 NumPy dtype; TypeError for anything else
    (None too: ``np.dtype(None)`` would be float64)."""
    try:
        dt = None if value is None else np.dtype(value)
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:     # (a dtype == None is float64)
        raise TypeError(f"{name} must be 'float32' or 'float64', got {value!r}")
    return dt


def real_array(value, name):
    """`value` as a NumPy array of real numbers (NumPy input is returned as is).

    Sparse matrices are refused with what to do instead, and pandas objects with
    columns of the nullable dtypes (``Int64``, ``Float32``, ...) are converted when they
    hold no missing values and refused, naming them, when they do.  The dtype is not
    checked here.
    """
    if type(value) is np.ndarray:
        return value
    if _is_sparse(value):
        raise TypeError(f"{name} is a scipy.sparse matrix: sparse input is not supported "
                        f"yet; pass {name}.toarray()")
    if hasattr(value, "to_numpy") and hasattr(value, "isna") and hasattr(value, "dtypes"):
        numeric = _nullable_numeric_dtype(value)
        if numeric is not None:
            if np.any(np.asarray(value.isna())):
                raise ValueError(f"{name} has missing values (pandas NA); fill or drop them "
                                 f"first")
            return value.to_numpy(dtype=numeric)
    return np.asarray(value)


def _is_sparse(value):
    return type(value).__module__.startswith("scipy.sparse") and hasattr(value, "toarray")


def _nullable_numeric_dtype(value):
    """For a pandas object with a nullable integer or float column (``Int64``,
    ``Float32``, ..., which NumPy sees as objects or as floats with NaN for NA) and only
    numeric columns otherwise: the NumPy dtype that holds them all; else None."""
    dtypes = value.dtypes
    dtypes = dtypes.tolist() if hasattr(dtypes, "tolist") else [dtypes]
    if all(isinstance(d, np.dtype) for d in dtypes):
        return None
    numpy_dtypes = [getattr(d, "numpy_dtype", d) for d in dtypes]
    if not all(isinstance(d, np.dtype) and d.kind in "iuf" for d in numpy_dtypes):
        return None
    return np.result_type(*numpy_dtypes)


def finite_array(source, dtype, name, convert=True):
    """`source` as an aligned C-contiguous array of `dtype` (copied only if needed);
    ValueError unless it is finite, naming the first bad value's place and saying so
    when a finite `source` overflows `dtype` (rather than calling it NaN).
    convert=False: `source` as it is, checked as it would convert (a chunk of rows at a
    time), for callers that convert one chunk at a time."""
    if not convert:
        bad = _inputs.first_nonfinite(source, dtype)
        if bad is None:
            return source
        target = np.dtype(dtype)
    else:
        if source.dtype == dtype:
            arr = c_array(source, dtype)
        else:
            with np.errstate(over="ignore"):     # reported below
                arr = source.astype(dtype, order="C")      # a new array: aligned
        bad = _inputs.first_nonfinite(arr)      # a chunk at a time: no mask of the data's size
        if bad is None:
            return arr
        target = arr.dtype
    where = f" (row {bad[0]}, column {bad[1]})" if len(bad) == 2 else \
        f" (at index {bad[0]})" if len(bad) == 1 else f" (at index {bad})"
    if source.dtype.kind in "iuf" and np.isfinite(source[bad]):
        raise ValueError(f"{name} holds finite values too large for {target} (e.g. "
                         f"{float(source[bad]):.3g}{where}; {target} holds up to "
                         f"{float(np.finfo(target).max):.3g}); scale {name} down"
                         + (" or use a float64 model (dtype='float64')"
                            if target == np.float32 else ""))
    raise ValueError(f"{name} contains NaN or infinity{where}")


def float_array(value, name, ndim=None, dtype=None):
    """`value` as a C-contiguous float32/float64 array.

    Parameters
    ----------
    ndim : int, optional
        Required number of dimensions.
    dtype : numpy dtype, optional
        Required dtype (the dtype of the argument it must match); a
        mismatch raises TypeError naming both.
    """
    arr = real_array(value, name)
    if arr.dtype.kind == "f" and not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))     # e.g. big-endian '>f4'
    if arr.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be a float32 or float64 array, got dtype {arr.dtype}"
                        + (f"; convert it with {name}.astype(np.float32)"
                           if arr.dtype.kind in "biuf" else ""))
    if dtype is not None and arr.dtype != dtype:
        raise TypeError(f"{name} has dtype {arr.dtype} but the other arguments are {dtype}; "
                        f"mixed float dtypes are not supported (cast {name} first)")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not (arr.flags.c_contiguous and arr.flags.aligned):
        # one copy; misaligned data (e.g. a view into a byte buffer) would be
        # undefined behaviour in C
        arr = np.require(arr, requirements=("C_CONTIGUOUS", "ALIGNED"))
    return arr


def c_array(value, dtype=None):
    """`value` as an aligned C-contiguous array (of `dtype`), copied only if needed."""
    if type(value) is np.ndarray and (dtype is None or value.dtype == dtype) \
            and value.flags.c_contiguous and value.flags.aligned:
        return value        # the common case, without np.require's bookkeeping
    return np.require(value, dtype=dtype, requirements=("C_CONTIGUOUS", "ALIGNED"))


def same_shape(a, a_name, b, b_name):
    if a.shape != b.shape:
        raise ValueError(f"{a_name} has shape {a.shape} but {b_name} has shape {b.shape}; "
                         "they must be equal")


def vector_for(vec, vec_name, width, ref_shape, ref_name):
    """Check a per-feature vector against the last axis of a reference array."""
    if vec.shape != (width,):
        raise ValueError(f"{vec_name} has shape {vec.shape} but {ref_name} has shape "
                         f"{ref_shape}; {vec_name} must have shape ({width},)")


def label_array(y, name, n_rows, n_classes, ref_name=None, ref_shape=None):
    """Integer class labels (N,) in [0, n_classes) as int64.

    `ref_name` and `ref_shape` name the array the labels belong to (e.g. the
    logits), so that a length mismatch reports both shapes."""
    arr = y if type(y) is np.ndarray else np.asarray(y)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class labels, got dtype {arr.dtype}")
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.shape[0] != n_rows:
        data = f"{ref_name} has shape {ref_shape}" if ref_name else f"the data has {n_rows} rows"
        raise ValueError(f"{name} has shape {arr.shape} but {data}; "
                         f"{name} must have shape ({n_rows},)")
    if arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name} holds labels in [{lo}, {hi}] but must be in "
                             f"[0, {n_classes - 1}] for {n_classes} classes")
    return c_array(arr, np.int64)


def range_problem(value, low=None, high=None, low_open=False, high_open=False):
    """What is wrong with the real `value` for the range, as ``"must be in [low, high),
    got value"``, or None when it is inside.  An end without a bound is open, so
    infinities are refused.  Shared by :func:`real_number` and the command line's
    argparse types, which add the argument's name themselves."""
    bad = not math.isfinite(value)
    if low is not None:
        bad = bad or value < low or (low_open and value == low)
    if high is not None:
        bad = bad or value > high or (high_open and value == high)
    if not bad:
        return None
    lb = "(" if low_open or low is None else "["
    hb = ")" if high_open or high is None else "]"
    lo = "-inf" if low is None else low
    hi = "inf" if high is None else high
    return f"must be in {lb}{lo}, {hi}{hb}, got {value}"


def real_number(value, name, low=None, high=None, low_open=False, high_open=False, *,
                allow_none=False):
    """A finite real number within [low, high] (or open ends), as a float; None passes
    through when `allow_none`."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    value = float(value)
    problem = range_problem(value, low, high, low_open, high_open)
    if problem:
        raise ValueError(f"{name} {problem}")
    return value


def _check_rng_argument(seed, rng):
    if seed is not None and rng is not None:
        raise ValueError("pass seed= or rng=, not both")
    if rng is not None and not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")


def seed_value(seed=None, rng=None, name="seed"):
    """A 64-bit seed from `seed` (int) or `rng` (numpy Generator), fresh if neither."""
    _check_rng_argument(seed, rng)
    if rng is not None:
        return int(rng.integers(0, 2**63, dtype=np.int64))
    if seed is None:
        return int(np.random.SeedSequence().generate_state(1, np.uint64)[0])
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not 0 <= seed < 2**64:     # larger seeds would alias smaller ones: refuse them
        raise ValueError(f"{name} must be in [0, 2**64), got {seed}")
    return seed


def generator(seed=None, rng=None):
    """The Generator to draw from: `rng` itself, or a new one seeded with `seed`
    (checked as :func:`seed_value` does; fresh entropy if both are None)."""
    _check_rng_argument(seed, rng)
    return rng if rng is not None else np.random.default_rng(seed_value(seed))


def one_of(value, name, choices, *, ignore_case=False):
    """`value` if it is one of `choices` (lower-cased first when `ignore_case`)."""
    if ignore_case and isinstance(value, str):
        value = value.lower()
    try:
        if value in choices:
            return value
    except TypeError:     # unhashable, e.g. a list against a dict's keys
        pass
    raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def integer_problem(value, low=0, high=None):
    """What is wrong with the int `value` for [low, high], or None (see
    :func:`range_problem`)."""
    if value < low:
        return f"must be >= {low}, got {value}"
    if high is not None and value > high:
        return f"must be <= {high}, got {value}"
    return None


def integer(value, name, low=0, high=None, *, allow_none=False):
    """An int in [low, high] (NumPy integers accepted, bools refused), as a Python int;
    None passes through when `allow_none`."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    problem = integer_problem(value, low, high)
    if problem:
        raise ValueError(f"{name} {problem}")
    return value


def positive_int(value, name):
    """An int >= 1."""
    return integer(value, name, low=1)


def sample_weights(value, n, dtype, name):
    """None, or a finite non-negative (n,) array of `dtype` with a positive sum."""
    if value is None:
        return None
    source = real_array(value, name)
    if source.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {source.dtype}")
    if source.shape != (n,):
        raise ValueError(f"{name} must be a finite, non-negative array of shape ({n},), got "
                         f"shape {source.shape}")
    weights = finite_array(source, dtype, name)
    if np.any(weights < 0):
        raise ValueError(f"{name} must be a finite, non-negative array of shape ({n},); it "
                         f"holds negative weights")
    if not np.any(weights > 0):
        raise ValueError(f"{name} must have at least one positive entry")
    return weights
