"""Write fastnet/data/digits.npz from scikit-learn's copy of the UCI digits.

Run once, from the repository root, when the bundled file has to be rebuilt::

    python tools/make_digits_npz.py

The file holds two arrays and nothing else (no pickles):

* ``X``: uint8 (1797, 64), the 8x8 images flattened row by row, pixel values
  0..16 (as in ``sklearn.datasets.load_digits().data``);
* ``y``: uint8 (1797,), the digit 0..9.

``fastnet.datasets.load_digits()`` reads it without scikit-learn.
"""
import os
import sys

import numpy as np


def main(path=None):
    from sklearn.datasets import load_digits

    digits = load_digits()
    X = digits.data
    y = digits.target
    if not (np.all(X == np.round(X)) and X.min() >= 0 and X.max() <= 16):
        raise SystemExit("unexpected pixel values in scikit-learn's digits")
    X = X.astype(np.uint8)
    y = y.astype(np.uint8)
    if path is None:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(root, "fastnet", "data", "digits.npz")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    np.savez_compressed(path, X=X, y=y)
    print(f"wrote {path}: X {X.shape} {X.dtype}, y {y.shape} {y.dtype}, "
          f"{os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:2])
