"""fastnet.datasets: the bundled digits, the .npz/.csv loader and the stratified split."""
import warnings

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


# ---- CSV files as programs write them ---------------------------------------------------------

def _two_classes(n=80, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 3))
    return X, (X[:, 0] > 0).astype(np.int64)


@pytest.mark.parametrize("names", [None, [1, 2, 3, 4]])
def test_a_header_of_numbers_written_by_pandas_is_detected(tmp_path, names):
    pd = pytest.importorskip("pandas")
    X, y = _two_classes()
    frame = pd.DataFrame(np.column_stack([X, y]))
    if names is not None:
        frame.columns = names
    frame.to_csv(tmp_path / "p.csv", index=False)
    Xr, yr, classes = datasets.load_file(tmp_path / "p.csv")
    assert Xr.shape == (80, 3) and classes.tolist() == [0, 1]
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(classes[yr], y)


def test_a_header_of_numbers_over_integer_data_is_detected(tmp_path):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(1)
    X = rng.integers(0, 17, (60, 4))
    y = rng.integers(0, 2, 60)
    pd.DataFrame(np.column_stack([X, y])).to_csv(tmp_path / "ints.csv", index=False)
    Xr, _, classes = datasets.load_file(tmp_path / "ints.csv")     # header "0,1,2,3,4"
    assert Xr.shape == (60, 4) and classes.tolist() == [0, 1]


def test_header_option_decides_and_an_ambiguous_first_row_warns(tmp_path):
    p = tmp_path / "amb.csv"
    p.write_text("0,1,2\n3,4,2\n5,6,1\n7,8,1\n")    # names 0,1,2, or a row with label 2
    with pytest.warns(UserWarning, match="header"):
        X, _, _ = datasets.load_file(p)
    assert X.shape == (4, 2)
    X, _, classes = datasets.load_file(p, header=True)
    assert X.shape == (3, 2) and classes.tolist() == [1, 2]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        X, _, _ = datasets.load_file(p, header=False)
    assert X.shape == (4, 2)
    q = tmp_path / "named.csv"
    q.write_text("a,b,label\n1,2,0\n3,4,1\n")
    with pytest.raises(ValueError, match="'a' is not a number"):
        datasets.load_file(q, header=False)
    with pytest.raises(ValueError, match="header"):
        datasets.load_file(q, header="maybe")


def test_integer_labels_keep_their_identity(tmp_path):
    p = tmp_path / "codes.csv"
    p.write_text("1,10000000000000000000\n2,20000000000000000000\n3,5\n4,5\n")
    _, y, classes = datasets.load_file(p)
    assert classes.tolist() == [5, 10000000000000000000, 20000000000000000000]
    assert y.tolist() == [1, 2, 0, 0]
    p.write_text("1,12345678901234567\n2,12345678901234568\n3,12345678901234567\n")
    _, y, classes = datasets.load_file(p)
    assert classes.tolist() == [12345678901234567, 12345678901234568]
    assert y.tolist() == [0, 1, 0]
    p.write_text("1,1e19\n2,2e19\n3,1e19\n")                 # integral floats beyond int64
    _, y, classes = datasets.load_file(p)
    assert classes.tolist() == [10**19, 2 * 10**19] and y.tolist() == [0, 1, 0]
    _, y, classes = datasets.load_file(_write(tmp_path / "neg.csv", "1,-3\n2,7\n3,-3\n"))
    assert classes.dtype == np.int64 and classes.tolist() == [-3, 7]


def _write(path, data):
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name, data, needles", [
    ("semicolon.csv", "a;b;label\n1;2;0\n3;4;1\n", ["semicolons", "sep=';'"]),
    ("semicolon_noheader.csv", "1;2;0\n3;4;1\n", ["semicolons"]),
    ("decimal_commas.csv", "a;b;label\n1,5;2,5;0\n3,1;4,2;1\n",
     ["semicolons and decimal commas", "decimal=','"]),
    ("tabs.csv", "a\tb\tlabel\n1\t2\t0\n3\t4\t1\n", ["separated by tabs"]),
    ("comment.csv", "# exported today\n1,2,0\n3,4,1\n", ["'#'", "comment"]),
    ("comment_commas.csv", "# exported today, by me\n1,2,0\n3,4,1\n", ["'#'", "comment"]),
    ("latin1.csv", "caf\u00e9,b,label\n1,2,0\n3,4,1\n".encode("latin-1"),
     ["not UTF-8", "line 1", "Latin-1"]),
    ("utf16_no_bom.csv", "a,b,label\n1,2,0\n3,4,1\n".encode("utf-16-le"), ["not UTF-8"]),
])
def test_csv_messages_name_the_real_problem(tmp_path, name, data, needles):
    with pytest.raises(ValueError) as info:
        datasets.load_file(_write(tmp_path / name, data))
    for needle in needles:
        assert needle in str(info.value), str(info.value)


def test_utf16_with_a_byte_order_mark_is_decoded(tmp_path):
    text = "caf\u00e9,b,label\n1,2,x\n3,4,y\n"
    for codec in ("utf-16", "utf-32", "utf-8-sig"):
        X, _, classes = datasets.load_file(_write(tmp_path / f"{codec}.csv",
                                                  text.encode(codec)))
        np.testing.assert_array_equal(X, [[1, 2], [3, 4]])
        assert classes.tolist() == ["x", "y"]


def test_load_npy_and_parquet_with_a_label_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    rows = np.array([[0.5, 1.0, 3], [1.5, -2.0, 5], [2.5, 0.0, 3], [3.5, 4.0, 5]])
    np.save(tmp_path / "d.npy", rows)
    X, y, classes = datasets.load_file(tmp_path / "d.npy")
    assert np.array_equal(X, rows[:, :2]) and np.array_equal(classes[y], [3, 5, 3, 5])
    np.save(tmp_path / "first.npy", rows[:, ::-1].copy())    # the labels first
    X, y, classes = datasets.load_file(tmp_path / "first.npy", "0")
    assert np.array_equal(X, rows[:, 1::-1]) and np.array_equal(classes[y], [3, 5, 3, 5])
    table = pa.table({"a": rows[:, 0], "label": ["x", "y", "x", "y"],
                      "b": rows[:, 1].astype(np.float32)})
    pq.write_table(table, tmp_path / "d.parquet")
    X, y, classes = datasets.load_file(tmp_path / "d.parquet")
    assert np.array_equal(X, rows[:, :2]) and list(classes[y]) == ["x", "y", "x", "y"]
    bad = rows.copy()
    bad[2, 1] = np.nan
    np.save(tmp_path / "bad.npy", bad)
    with pytest.raises(ValueError, match=r"bad.npy: NaN or infinity at row 2, feature column 1"):
        datasets.load_file(tmp_path / "bad.npy")
    pq.write_table(table.set_column(2, "b", pa.array([1.0, None, 2.0, 3.0])),
                   tmp_path / "nulls.parquet")
    with pytest.raises(ValueError, match="nulls.parquet: column 'b' has 1 missing values"):
        datasets.load_file(tmp_path / "nulls.parquet")
    pq.write_table(table.set_column(0, "a", pa.array(["p", "q", "r", "s"])),
                   tmp_path / "text.parquet")
    with pytest.raises(ValueError, match="text.parquet: column 'a' has type string, not a "
                                         "number; encode it"):
        datasets.load_file(tmp_path / "text.parquet")
    np.save(tmp_path / "one.npy", rows[:, 0])
    with pytest.raises(ValueError, match="2-D numeric array"):
        datasets.load_file(tmp_path / "one.npy")


# ---- reading without copies: CSV a chunk of rows at a time, maps of .npy and .npz -------

def _csv_text(n=50, seed=3):
    rng = np.random.default_rng(seed)
    X = np.round(rng.standard_normal((n, 3)), 6)
    lines = ["a,b,label,c"] + [f"{x[0]:.6f},{x[1]:.6f},{'yes' if x[2] > 0 else 'no'},"
                               f"{x[2]:.6f}" for x in X]
    return "\r\n".join(lines) + "\r\n", X


@pytest.mark.parametrize("codec", ["utf-8", "utf-8-sig", "utf-16", "utf-32"])
def test_csv_read_in_chunks_is_the_csv_read_whole(tmp_path, monkeypatch, codec):
    text, X = _csv_text()
    path = _write(tmp_path / "d.csv", text.replace(",yes,", ',"yes",').encode(codec))
    whole = datasets.load_file(path)
    # 7 rows a chunk, blocks of 64 bytes: lines, \r\n and UTF-16/32 code units split
    monkeypatch.setattr(datasets, "CSV_CHUNK_ROWS", 7)
    monkeypatch.setattr(datasets, "_CSV_BLOCK_BYTES", 64)
    chunked = datasets.load_file(path)
    np.testing.assert_array_equal(chunked[0], whole[0])
    np.testing.assert_array_equal(chunked[0], X[:, [0, 1, 2]])
    assert chunked[1].tolist() == whole[1].tolist() and chunked[2].tolist() == ["no", "yes"]


def test_csv_problems_in_a_later_chunk_name_their_line(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CSV_CHUNK_ROWS", 4)
    monkeypatch.setattr(datasets, "_CSV_BLOCK_BYTES", 16)
    text, _ = _csv_text(n=30)
    lines = text.split("\r\n")
    for line, bad, needle in [(23, "1,2,yes,nan", r"line 23, column 'c': 'nan' is NaN or "
                                                  r"infinity"),
                              (17, "1,x,yes,2", r"line 17, column 'b': 'x' is not a number"),
                              (29, "1,2,yes", r"line 29: 3 fields, expected 4")]:
        edited = lines.copy()
        edited[line - 1] = bad
        with pytest.raises(ValueError, match=needle):
            datasets.load_file(_write(tmp_path / "bad.csv", "\n".join(edited)))
    latin = ("\n".join(lines[:20]) + "\ncaf\u00e9,1,yes,2\n").encode("latin-1")
    with pytest.raises(ValueError, match="byte 0xe9 on line 21; perhaps Latin-1"):
        datasets.load_file(_write(tmp_path / "latin.csv", latin))


def test_an_ambiguous_header_is_decided_by_every_row_of_every_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "CSV_CHUNK_ROWS", 3)
    rows = ["0,1,2"] + [f"{i % 5},{i % 2},{i % 3}" for i in range(20)]
    with pytest.warns(UserWarning, match="header"):
        X, _, _ = datasets.load_file(_write(tmp_path / "ints.csv", "\n".join(rows)))
    assert X.shape == (21, 2)                       # the row 0,1,2 is data: label 2
    rows[-1] = "1.5,1,0"                            # a non-integer in the last chunk
    X, _, classes = datasets.load_file(_write(tmp_path / "names.csv", "\n".join(rows)))
    assert X.shape == (20, 2) and classes.tolist() == [0, 1, 2]
    names = ["1,2,3"] + [f"{i % 2}.5,{i},{i % 3}" for i in range(12)]
    X, _, classes = datasets.load_file(_write(tmp_path / "one.csv", "\n".join(names)), "2")
    assert classes.tolist() == list(range(12)) and X.shape == (12, 2)    # named "2": column 1


def test_npy_and_npz_are_mapped_not_copied_with_copy_false(tmp_path):
    rows = np.arange(40, dtype=np.float32).reshape(10, 4)
    rows[:, 3] = np.arange(10) % 2
    np.save(tmp_path / "last.npy", rows)
    X, y, _ = datasets.load_file(tmp_path / "last.npy", copy=False)
    assert isinstance(X.base, np.memmap) or isinstance(X, np.memmap)
    assert X.dtype == np.float32 and np.array_equal(X, rows[:, :3]) and not X.flags.writeable
    X, _, _ = datasets.load_file(tmp_path / "last.npy", 1, copy=False)   # a middle label
    assert np.array_equal(X, rows[:, [0, 2, 3]]) and X.dtype == np.float32
    X, _, _ = datasets.load_file(tmp_path / "last.npy")
    assert X.dtype == np.float64 and X.flags.writeable and X.flags.owndata
    np.savez(tmp_path / "plain.npz", X=rows.reshape(10, 2, 2), y=rows[:, 3])
    np.savez_compressed(tmp_path / "packed.npz", X=rows, y=rows[:, 3])
    X, y, _ = datasets.load_file(tmp_path / "plain.npz", copy=False)
    assert isinstance(X.base, np.memmap) or isinstance(X, np.memmap)
    assert np.array_equal(X, rows) and X.dtype == np.float32
    X, _, _ = datasets.load_file(tmp_path / "packed.npz", copy=False)
    assert not isinstance(X, np.memmap) and np.array_equal(X, rows)
    X, _, _ = datasets.load_file(tmp_path / "plain.npz")
    assert X.dtype == np.float64 and np.array_equal(X, rows)


def test_split_indices_are_the_rows_train_test_split_copies():
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((90, 2)), rng.integers(0, 3, 90)
    train, test = datasets.split_indices(y, 0.3, seed=4)
    X_train, X_test, y_train, y_test = datasets.train_test_split(X, y, 0.3, seed=4)
    assert np.array_equal(X[train], X_train) and np.array_equal(y[test], y_test)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(90))
