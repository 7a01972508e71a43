"""The row weights of a fit: ``sample_weight`` times ``class_weight[label]``.

``class_weight="balanced"`` is scikit-learn's ``n_samples / (n_classes *
bincount(y))`` over the classes present in ``y``; a dict gives weights per label
(missing labels: 1).  The row weight is ``sample_weight * class_weight[y]`` and the
native loss is the weighted mean ``sum_i w_i l_i / sum_i w_i`` (PyTorch's
``cross_entropy(weight=...)`` with ``reduction="mean"``).
"""
import numbers

import numpy as np

from fastnet._validation import c_array, real_number, sample_weights

__all__ = ["class_weights", "row_weights"]


def row_weights(labels, n, dtype, sample_weight=None, class_weight=None, n_classes=None):
    """The checked weight of each of the `n` rows as a `dtype` array, or None when
    neither `sample_weight` nor `class_weight` is given.

    Parameters
    ----------
    labels : int64 array (n,) or None
        The class labels (None for a regression loss, which refuses `class_weight`).
    n : int
    dtype : numpy dtype
    sample_weight : array-like (n,), optional
    class_weight : "balanced", dict or None
    n_classes : int
        Needed with `class_weight`.

    Raises
    ------
    ValueError, TypeError
        For a bad `sample_weight` or `class_weight`, a `class_weight` without
        labels, or weights that leave no row with a positive weight.
    """
    if class_weight is None:
        return sample_weights(sample_weight, n, dtype, "sample_weight")
    if labels is None:
        raise ValueError("class_weight needs loss='cross_entropy' (class labels)")
    weights = sample_weights(sample_weight, n, np.float64, "sample_weight")
    rows = class_weights(labels, class_weight, n_classes)[labels]
    weights = c_array(rows if weights is None else weights * rows, dtype)
    if not np.any(weights > 0):
        raise ValueError("class_weight (with sample_weight) leaves no row with a "
                         "positive weight")
    return weights


def class_weights(labels, class_weight, n_classes):
    """Per-class weights (n_classes,) from "balanced", a dict or None (-> None).

    "balanced": ``n_samples / (n_present * bincount(labels))`` for the
    ``n_present`` classes that occur (scikit-learn's
    ``compute_class_weight``); absent classes get 1 (they weigh no row).  A
    dict maps labels in ``[0, n_classes)`` to finite weights >= 0; labels it
    does not name get 1.
    """
    if class_weight is None:
        return None
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    out = np.ones(n_classes, dtype=np.float64)
    if isinstance(class_weight, str):
        if class_weight != "balanced":
            raise ValueError(f"class_weight must be 'balanced', a dict or None, "
                             f"got {class_weight!r}")
        present = counts > 0
        out[present] = labels.shape[0] / (np.count_nonzero(present) * counts[present])
        return out
    if not isinstance(class_weight, dict):
        raise TypeError(f"class_weight must be 'balanced', a dict or None, got "
                        f"{type(class_weight).__name__}")
    for label, weight in class_weight.items():
        if isinstance(label, (bool, np.bool_)) or not isinstance(label, numbers.Integral) \
                or not 0 <= label < n_classes:
            raise ValueError(f"class_weight has label {label!r}; labels must be ints in "
                             f"[0, {n_classes - 1}]")
        out[int(label)] = real_number(weight, f"class_weight[{label}]", low=0.0)
    return out

