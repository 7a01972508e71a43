"""fastnet.datasets: the bundled digits, the .npz/.csv loader and the stratified split."""
import numpy as np
import pytest

from fastnet import datasets


def test_load_digits():
    X, y = datasets.load_digits()
    assert X.shape == (1797, 64) and X.dtype == np.float64
    assert y.shape == (1797,) and y.dtype == np.int64
    assert X.min() == 0.0 and X.max() == 1.0
    assert np.all(X * 16 == np.round(X * 16))
    assert np.array_equal(np.unique(y), np.arange(10))
    assert np.array_equal(y[:10], np.arange(10))
    X32, _ = datasets.load_digits(dtype=np.float32)
    assert X32.dtype == np.float32


def test_bundled_file_matches_scikit_learn():
    sklearn_datasets = pytest.importorskip("sklearn.datasets")
    d = sklearn_datasets.load_digits()
    X, y = datasets.load_digits()
    np.testing.assert_array_equal(X * 16, d.data)
    np.testing.assert_array_equal(y, d.target)


def test_stratified_split_sizes_and_determinism():
    X, y = datasets.load_digits()
    Xtr, Xte, ytr, yte = datasets.train_test_split(X, y, 0.25, seed=0)
    assert len(yte) == 450 and len(ytr) == 1347          # ceil(0.25 * 1797)
    # per-class counts: the largest-remainder allocation (what scikit-learn gives too)
    assert np.bincount(yte).tolist() == [45, 46, 44, 46, 45, 46, 45, 45, 43, 45]
    assert np.abs(np.bincount(yte) / np.bincount(y) - 0.25).max() < 0.01
    again = datasets.train_test_split(X, y, 0.25, seed=0)
    np.testing.assert_array_equal(again[1], Xte)
    other = datasets.train_test_split(X, y, 0.25, seed=1)
    assert not np.array_equal(other[1], Xte)
    # a partition of the rows
    rows = {r.tobytes() for r in np.vstack([Xtr, Xte])}
    assert len(rows) == len({r.tobytes() for r in X})


def test_split_small_classes_keep_a_training_row():
    y = np.array([0, 0, 1, 1, 1, 1, 1, 1, 2, 2])
    X = np.arange(10.0).reshape(-1, 1)
    _, _, ytr, yte = datasets.train_test_split(X, y, 0.5, seed=0)
    assert len(yte) == 5
    assert set(ytr) == {0, 1, 2}
    _, _, _, yte = datasets.train_test_split(X, y, 3, seed=0, stratify=False)
    assert len(yte) == 3
    for bad in (0, 10, 1.0, 0.0, -0.5, "half"):
        with pytest.raises(ValueError):
            datasets.train_test_split(X, y, bad)


def test_load_csv_header_and_label_columns(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("x1,label,x2\n1,b,2\n3,a,4\n5,b,6\n")
    X, y, classes = datasets.load_file(p)
    np.testing.assert_array_equal(X, [[1, 2], [3, 4], [5, 6]])
    assert classes.tolist() == ["a", "b"] and y.tolist() == [1, 0, 1]
    with pytest.raises(ValueError, match="line 2, column 'label': 'b' is not a number"):
        datasets.load_file(p, "x2")
    p.write_text("x1,label,x2\n1,0,2\n3,1,4\n5,0,6\n")
    X, y, classes = datasets.load_file(p, "x2")
    assert classes.tolist() == [2, 4, 6]
    np.testing.assert_array_equal(X, [[1, 0], [3, 1], [5, 0]])
    p.write_text("1,2,7\n3,4,9\n5,6,7\n")                     # no header: last column
    X, y, classes = datasets.load_file(p)
    assert X.shape == (3, 2) and classes.tolist() == [7, 9]
    X, y, classes = datasets.load_file(p, "0")
    assert classes.tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="out of range"):
        datasets.load_file(p, 5)


def test_load_npz(tmp_path):
    np.savez(tmp_path / "a.npz", X=np.ones((4, 2, 2), np.uint8), y=np.array([3, 5, 3, 5]))
    X, y, classes = datasets.load_file(tmp_path / "a.npz")
    assert X.shape == (4, 4) and X.dtype == np.float64
    assert y.tolist() == [0, 1, 0, 1] and classes.tolist() == [3, 5]
    with pytest.raises(ValueError, match="csv"):
        datasets.load_file(tmp_path / "a.npz", "label")
    with pytest.raises(FileNotFoundError):
        datasets.load_file(tmp_path / "missing.npz")
