"""What fit, predict, evaluate and fastnet.functional accept: read-only arrays and memory
maps (not copied when already C-contiguous in the model's dtype), pandas copy-on-write
frames and series, big-endian and nullable dtypes; and what they refuse with a message
naming the argument and the fix: sparse sample weights, one-hot or column labels, finite values
that overflow float32, seeds of 2**64 and above.  (Sparse matrices and data frames:
tests/test_inputs.py.)"""
import numpy as np
import pandas as pd
import pytest
import scipy.sparse

import fastnet
from fastnet import functional
from fastnet.init import he_normal


def _data(n=96, n_in=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def _fit(X, y, n_in=4, **kw):
    model = fastnet.MLP([n_in, 8, 2], seed=0)
    history = model.fit(X, y, epochs=2, batch_size=16, verbose=0, **kw)
    return model, history


def _readonly(a):
    a = np.array(a)
    a.flags.writeable = False
    return a


def test_read_only_inputs_train_predict_and_evaluate_like_writeable_ones():
    X, y = _data()
    w = np.linspace(0.5, 1.5, len(X)).astype(np.float32)
    ref, _ = _fit(X, y, sample_weight=w)
    model, _ = _fit(_readonly(X), _readonly(y), sample_weight=_readonly(w))
    assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict(_readonly(X)), ref.predict(X))
    assert model.evaluate(_readonly(X), _readonly(y)) == ref.evaluate(X, y)
    # an input that is already what the engine needs is bound without a copy
    Xro = _readonly(X)
    assert np.shares_memory(model._check_x(Xro), Xro)


def test_memory_mapped_inputs_are_used_in_place(tmp_path):
    X, y = _data()
    w = np.linspace(0.5, 1.5, len(X)).astype(np.float32)
    for name, a in (("X", X), ("y", y), ("w", w)):
        np.save(tmp_path / f"{name}.npy", a)
    Xm, ym, wm = (np.load(tmp_path / f"{n}.npy", mmap_mode="r") for n in ("X", "y", "w"))
    ref, _ = _fit(X, y, sample_weight=w)
    model, _ = _fit(Xm, ym, sample_weight=wm)
    assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict_proba(Xm), ref.predict_proba(X))
    assert model.evaluate(Xm, ym) == ref.evaluate(X, y)
    assert np.shares_memory(model._check_x(Xm), Xm)


def test_fastnet_sklearn_trains_on_a_memory_map_without_early_stopping(tmp_path):
    from fastnet.sklearn import MLPClassifier
    X, y = _data()
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                        early_stopping=False, dtype="float32")
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(Xm, y)
        clf.partial_fit(Xm, y)
    assert clf.predict(Xm).shape == (len(X),)


@pytest.mark.parametrize("frame", ["one column", "float32 frame", "float64 frame",
                                   "F-ordered frame"])
def test_pandas_copy_on_write_frames_and_series_are_accepted(frame):
    X, y = _data()
    if frame == "one column":
        X = X[:, :1].copy()
        df = pd.DataFrame(X)
    elif frame == "float32 frame":
        df = pd.DataFrame(X)
    elif frame == "float64 frame":
        df = pd.DataFrame(X.astype(np.float64))
    else:
        df = pd.DataFrame(np.asfortranarray(X))
    n_in = X.shape[1]
    weights = pd.Series(np.linspace(0.5, 1.5, len(X)).astype(np.float32))
    ref, _ = _fit(X, y, n_in=n_in, sample_weight=weights.to_numpy().copy())
    model, _ = _fit(df, pd.Series(y), n_in=n_in, sample_weight=weights)
    assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict(df), ref.predict(X))
    assert model.evaluate(df, pd.Series(y)) == ref.evaluate(X, y)


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_big_endian_arrays_train_like_native_ones(dtype):
    X, y = _data()
    ref, _ = _fit(X, y)
    model, _ = _fit(X.astype(dtype), y.astype(">i8"),
                    sample_weight=np.ones(len(X), dtype=dtype))
    if dtype == ">f4":
        assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict(X.astype(dtype)), model.predict(X))


@pytest.mark.parametrize("nullable", ["Int64", "Float32", "Float64", "UInt8"])
def test_nullable_pandas_dtypes_without_missing_values_are_accepted(nullable):
    X, y = _data()
    X = np.round(np.abs(X) * 10).astype(np.float32)
    ref, _ = _fit(X, y)
    model, _ = _fit(pd.DataFrame(X).astype(nullable), pd.Series(y).astype("Int64"))
    assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict(pd.DataFrame(X).astype(nullable)), ref.predict(X))


def test_missing_values_in_nullable_columns_are_named():
    X, y = _data()
    df = pd.DataFrame(np.round(np.abs(X) * 10)).astype("Int64")
    df.iloc[3, 1] = pd.NA
    with pytest.raises(ValueError, match="X column 1 has 1 missing values; impute or drop"):
        _fit(df, y)
    labels = pd.Series(y).astype("Int64")
    labels.iloc[0] = pd.NA
    with pytest.raises(ValueError, match="y has missing values"):
        _fit(X, labels)


def test_sparse_sample_weight_gets_a_clear_message():
    X, y = _data()
    model = fastnet.MLP([4, 8, 2], seed=0)
    with pytest.raises(TypeError, match="sample_weight is a scipy.sparse"):
        model.fit(X, y, sample_weight=scipy.sparse.csr_matrix(np.ones((1, len(X)))),
                  epochs=1, verbose=0)


@pytest.mark.parametrize("labels, fix", [("one-hot", r"y.argmax\(axis=1\)"),
                                         ("column", r"y.ravel\(\)")])
def test_label_matrices_say_that_y_must_be_1d_integer_labels(labels, fix):
    X, y = _data()
    y2 = np.eye(2)[y] if labels == "one-hot" else y[:, None]
    with pytest.raises(ValueError, match=r"y must be 1-D integer class labels of shape \(96,\)"
                                         rf".*pass {fix}"):
        _fit(X, y2)
    with pytest.raises(ValueError, match=r"validation_data\[1\] must be 1-D"):
        _fit(X, y, validation_data=(X, y2))


def test_finite_values_overflowing_float32_are_not_called_nan():
    X, y = _data()
    big = X.astype(np.float64) * 1e300
    with pytest.raises(ValueError, match="X holds finite values too large for float32"):
        _fit(big, y)
    with pytest.raises(ValueError, match="too large for float32.*dtype='float64'"):
        fastnet.MLP([4, 8, 2]).predict(big)
    with pytest.raises(ValueError, match="sample_weight holds finite values too large"):
        _fit(X, y, sample_weight=np.full(len(X), 1e300))
    model = fastnet.MLP([4, 8, 1], seed=0)
    with pytest.raises(ValueError, match="y holds finite values too large"):
        model.fit(X, np.full(len(X), 1e300), loss="mse", epochs=1, verbose=0)
    # a float64 model takes them, and real NaN is still called NaN
    fastnet.MLP([4, 8, 2], dtype="float64").predict(big)
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        _fit(X, y)


@pytest.mark.parametrize("dtype", [">f4", ">f8"])
def test_functional_converts_big_endian_arrays(dtype):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 5)).astype(np.dtype(dtype).newbyteorder("="))
    W = rng.standard_normal((5, 3)).astype(x.dtype)
    expected = functional.linear_forward(x, W, activation="relu")
    got = functional.linear_forward(x.astype(dtype), W.astype(dtype), activation="relu")
    assert got.dtype == x.dtype and np.array_equal(got, expected)
    assert np.array_equal(functional.softmax(x.astype(dtype)), functional.softmax(x))
    out, _ = functional.dropout(x.astype(dtype), 0.5, seed=3)
    assert np.array_equal(out, functional.dropout(x, 0.5, seed=3)[0])


@pytest.mark.parametrize("dtype", [np.int64, np.float16, np.bool_])
def test_functional_says_how_to_convert_other_dtypes(dtype):
    x = np.ones((4, 3), dtype=dtype)
    with pytest.raises(TypeError, match=r"x must be a float32 or float64 array, got dtype "
                                        rf"{np.dtype(dtype).name}; convert it with "
                                        r"x.astype\(np.float32\)"):
        functional.linear_forward(x, np.ones((3, 2), np.float32))


# ---- seeds -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", [2**64, 2**70, 2**70 + 2**64])
def test_seeds_of_2_to_the_64_and_above_are_refused_everywhere(seed):
    X, y = _data()
    message = r"seed must be in \[0, 2\*\*64\)"
    with pytest.raises(ValueError, match=message):
        fastnet.MLP([4, 8, 2], seed=seed)
    model = fastnet.MLP([4, 8, 2])
    with pytest.raises(ValueError, match=message):
        model.seed = seed
    with pytest.raises(ValueError, match=message):
        model.fit(X, y, epochs=1, verbose=0, seed=seed)
    with pytest.raises(ValueError, match=message):
        model.lr_find(X, y, steps=5, seed=seed)
    with pytest.raises(ValueError, match=message):
        model.gradients(X, y, seed=seed)
    with pytest.raises(ValueError, match=message):
        functional.dropout(X, 0.5, seed=seed)
    with pytest.raises(ValueError, match=message):
        he_normal(4, 8, seed=seed)


def test_the_largest_seed_is_taken_as_given():
    top = 2**64 - 1
    assert fastnet.MLP([4, 8, 2], seed=top).seed == top
    assert not np.array_equal(fastnet.MLP([4, 8, 2], seed=top).params,
                              fastnet.MLP([4, 8, 2], seed=top % 2**32).params)


# ---- dtypes ----------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [None, "float16", np.int32, "nonsense", object])
def test_float_dtype_is_checked_the_same_everywhere(dtype):
    """MLP, the initialisers and the estimators share one dtype check (None is not
    quietly float64)."""
    from fastnet import init
    for call in (lambda: fastnet.MLP([4, 8, 2], dtype=dtype),
                 lambda: init.he_normal(4, 8, seed=0, dtype=dtype)):
        with pytest.raises(TypeError, match=r"dtype must be 'float32' or 'float64'"):
            call()
    sk = pytest.importorskip("fastnet.sklearn")
    X, y = _data()
    with pytest.raises(ValueError, match=r"dtype must be 'float32' or 'float64'"):
        sk.MLPClassifier(dtype=dtype, max_iter=1).fit(X, y)
