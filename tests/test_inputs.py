"""Data as users have it (issue 18): validation splits that copy no rows, scipy.sparse
matrices multiplied natively by the first layer, data frames (pandas, Arrow, polars)
with their columns checked at predict, and the memory a fit adds, measured in a child
process."""
import contextlib
import os

import _memory
import numpy as np
import pandas as pd
import pytest
import scipy.sparse
from _memory import fit_extra_anon
from conftest import child_env

import fastnet
from fastnet import _inputs
from fastnet.sklearn import MLPClassifier, MLPRegressor


def _data(n=120, n_in=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_in)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def _sparse_data(n=150, n_in=40, density=0.1, seed=0, dtype=np.float32):
    X = scipy.sparse.random(n, n_in, density=density, format="csr", dtype=dtype,
                            random_state=seed)
    X.data = (X.data * 4 - 2).astype(dtype)
    y = (np.asarray(X[:, :5].sum(axis=1)).ravel() > 0).astype(np.int64)
    return X, y


def _fit(X, y, sizes, **kw):
    model = fastnet.MLP(sizes, seed=0, batch_norm=kw.pop("batch_norm", True),
                        dtype=kw.pop("dtype", "float32"))
    model.fit(X, y, epochs=kw.pop("epochs", 3), batch_size=kw.pop("batch_size", 16),
              verbose=0, **kw)
    return model


# ---- index sets instead of copies ----------------------------------------------------

def test_validation_split_trains_on_the_same_rows_as_explicit_held_out_arrays():
    X, y = _data()
    w = np.linspace(0.5, 1.5, len(X)).astype(np.float32)
    model = _fit(X, y, [6, 8, 2], validation_split=0.25, sample_weight=w, seed=3)
    ti, vi = _inputs.validation_split(len(X), 0.25, 3)
    ref = _fit(X[ti], y[ti], [6, 8, 2], validation_data=(X[vi], y[vi], w[vi]),
               sample_weight=w[ti], seed=3)
    assert model.params.tobytes() == ref.params.tobytes()
    assert model.history.history["val_loss"] == ref.history.history["val_loss"]


def test_rows_of_an_array_are_read_through_their_index():
    X, y = _data()
    rows = np.array([5, 1, 7, 3, 100, 2], dtype=np.int64)
    model = _fit(X, y, [6, 8, 2])
    subset = _inputs.Rows(X, rows)
    assert np.array_equal(model.predict_proba(subset), model.predict_proba(X[rows]))
    big = np.arange(3_000_000, dtype=np.float32).reshape(-1, 6)     # 12 MB: 2 chunks
    chunks = list(_inputs.Rows(big, np.arange(big.shape[0])[::-1].copy()).chunks())
    assert len(chunks) > 1
    assert np.array_equal(np.concatenate([c for _, c in chunks]), big[::-1])


def test_the_estimators_split_by_index_like_by_copies():
    X, y = _data(n=200)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                        early_stopping=True, n_iter_no_change=50)
    clf.fit(X, y)
    X_ro = X.copy()
    X_ro.flags.writeable = False
    again = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0,
                          early_stopping=True, n_iter_no_change=50).fit(X_ro, y)
    assert again.model_.params.tobytes() == clf.model_.params.tobytes()
    assert clf.validation_scores_ == again.validation_scores_


@pytest.mark.parametrize("case", ["validation split in RAM", "read-only memory map"])
def test_extra_memory_of_a_fit_is_a_small_share_of_the_data(case, tmp_path):
    # 128 MB of float32 rows; the goals of issue 18 at 1 GB are <= 15 % of the data +
    # 300 MB with a validation split and <= 300 MB for a memory map; here the fixed part
    # is scaled to the size (37.5 MB).  Copying the training rows (the old split) adds
    # about 100 %.
    rows, cols = 131072, 256
    if case == "validation split in RAM":
        extra, data = fit_extra_anon(rows, cols, fit_args=", validation_split=0.1",
                                     env=child_env(), timeout=300)
        limit = 0.15 * data + 37.5 * 2**20
    else:
        extra, data = fit_extra_anon(rows, cols, memory_map=tmp_path / "X.npy",
                                     env=child_env(), timeout=300)
        limit = 37.5 * 2**20
    assert extra <= limit, f"{case}: {extra / 2**20:.1f} MB extra for {data / 2**20:.0f} MB"


def test_inference_converts_other_dtypes_and_layouts_a_chunk_at_a_time():
    X, y = _data()
    model = _fit(X, y, [6, 8, 2])
    ref = model.predict_proba(X)
    big = np.repeat(X.astype(np.float64), 4000, axis=0)       # 23 MB: several chunks
    expected = np.repeat(ref, 4000, axis=0)
    for other in (big, np.asfortranarray(big), big.astype(">f8"), big[:, ::-1][:, ::-1]):
        assert np.array_equal(model.predict_proba(other), expected)
    assert np.array_equal(model.predict(np.round(X * 4).astype(np.int16)),
                          model.predict(np.round(X * 4).astype(np.float32)))
    huge = X.astype(np.float64)
    huge[3, 2] = 1e39
    with pytest.raises(ValueError, match="finite values too large for float32"):
        model.predict(huge)
    huge[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        model.predict(huge)


def test_predict_on_a_float64_memory_map_adds_a_chunk_not_a_copy(tmp_path):
    setup = f"""
import numpy as np, fastnet
X = np.lib.format.open_memmap({str(tmp_path / "X.npy")!r}, mode="w+", dtype=np.float64,
                              shape=(65536, 256))
X[:] = 1.0
X.flush()
del X
X = np.load({str(tmp_path / "X.npy")!r}, mmap_mode="r")          # 128 MB of float64
model = fastnet.MLP([256, 64, 2], seed=0)
"""
    extra = _memory.extra_anon_bytes(setup, "model.predict(X)", env=child_env(), timeout=300)
    assert extra <= 32 * 2**20, f"{extra / 2**20:.1f} MB extra (a float32 copy: 64 MB)"


def test_the_finite_check_reads_a_chunk_at_a_time():
    a = np.zeros((400_000, 8), np.float32)
    assert _inputs.all_finite(a)
    a[399_999, 7] = np.nan
    assert not _inputs.all_finite(a)


# ---- sparse ----------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_sparse_input_trains_like_the_same_values_dense(fmt, dtype, batch_norm):
    X, y = _sparse_data(dtype=np.dtype(dtype))
    dense = X.toarray()
    kw = dict(dtype=dtype, batch_norm=batch_norm)
    ref = _fit(dense, y, [40, 16, 2], **kw)
    model = _fit(X.asformat(fmt), y, [40, 16, 2], **kw)
    tol = 1e-4 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(model.params, ref.params, rtol=tol, atol=tol)
    np.testing.assert_allclose(model.predict_proba(X.asformat(fmt)), ref.predict_proba(dense),
                               rtol=tol, atol=tol)
    assert model.evaluate(X, y)["loss"] == pytest.approx(ref.evaluate(dense, y)["loss"],
                                                         rel=tol)


def test_gradients_and_lr_find_take_sparse_input():
    X, y = _sparse_data()
    model = fastnet.MLP([40, 16, 2], seed=0)
    loss, grads = model.gradients(X, y)
    ref_loss, ref = model.gradients(X.toarray(), y)
    assert loss == pytest.approx(ref_loss, rel=1e-6)
    for g, r in zip(grads, ref):
        for k in r:
            np.testing.assert_allclose(g[k], r[k], rtol=1e-5, atol=1e-6)
    found = model.lr_find(X, y, steps=8, batch_size=16)
    assert len(found.lrs) > 0


def test_sparse_training_has_the_same_bits_at_any_thread_count():
    X, y = _sparse_data(n=600, n_in=3000, density=0.02)
    results = []
    for threads in (1, 2, 4):
        with fastnet.threads(threads):
            model = _fit(X, y, [3000, 256, 2], batch_size=128, epochs=2,
                         validation_split=0.2)
            results.append((model.params.tobytes(), model.predict_proba(X).tobytes()))
    assert results[0] == results[1] == results[2]


def test_unsorted_duplicate_and_int64_indices_give_the_canonical_matrix_results():
    X, y = _sparse_data()
    ref = _fit(X, y, [40, 16, 2])
    wide = X.copy()
    wide.indptr = wide.indptr.astype(np.int64)
    wide.indices = wide.indices.astype(np.int64)
    # every value stored as two halves, the columns of each row in reverse order
    parts = [(np.tile(X.indices[a:b][::-1], 2), np.tile(X.data[a:b][::-1] / 2, 2))
             for a, b in zip(X.indptr[:-1], X.indptr[1:])]
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in parts])])
    doubled = scipy.sparse.csr_matrix((np.concatenate([d for _, d in parts]),
                                       np.concatenate([i for i, _ in parts]), indptr),
                                      shape=X.shape)
    doubled.has_canonical_format = False     # what scipy assumes of unchecked arrays
    assert not doubled.has_canonical_format
    for other in (wide, doubled):
        model = _fit(other, y, [40, 16, 2])
        np.testing.assert_allclose(model.params, ref.params, rtol=1e-5, atol=1e-6)


def test_sparse_rows_without_values_and_bad_values():
    X, y = _sparse_data()
    X = X.tolil()
    X[3, :] = 0
    X[7, :] = 0
    X = X.tocsr()
    X.eliminate_zeros()
    ref = _fit(X.toarray(), y, [40, 16, 2], batch_norm=False)
    model = _fit(X, y, [40, 16, 2], batch_norm=False)
    np.testing.assert_allclose(model.params, ref.params, rtol=1e-4, atol=1e-5)
    bad = X.copy()
    bad.data[5] = np.nan
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(row \d+, column"):
        model.predict(bad)
    with pytest.raises(ValueError, match=r"shape \(150, 40\) but the model takes \(n, 41\)"):
        fastnet.MLP([41, 4, 2]).fit(X, y, verbose=0)
    with pytest.raises(TypeError, match="real numbers"):
        model.predict(X.astype(np.complex64))


def test_engine_refuses_malformed_csr_arrays():
    model = fastnet.MLP([4, 3, 2], seed=0)
    engine = model._engine(8, "cross_entropy")
    X = scipy.sparse.random(5, 4, density=0.5, format="csr", dtype=np.float32, random_state=0)
    labels = np.zeros(5, np.int64)
    out = np.empty((5, 2), np.float32)
    bad_indices = X.indices.copy()
    bad_indices[0] = 4
    with pytest.raises(ValueError, match=r"column indices must be in \[0, 4\)"):
        engine.set_csr_data(X.indptr, bad_indices, X.data, 4, labels, None, None)
    with pytest.raises(ValueError, match="non-decreasing"):
        engine.forward_csr(X.indptr[::-1].copy(), X.indices, X.data, 4, out)
    with pytest.raises(ValueError, match="indices of the same dtype"):
        engine.forward_csr(X.indptr.astype(np.int64), X.indices, X.data, 4, out)
    with pytest.raises(ValueError, match="columns for 4 inputs"):
        engine.forward_csr(X.indptr, X.indices, X.data, 5, out)


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_estimators_take_sparse_input(Estimator):
    X, y = _sparse_data(n=200)
    target = y if Estimator is MLPClassifier else y.astype(np.float64) * 2 - 1
    kw = dict(hidden_layer_sizes=(8,), max_iter=4, random_state=0, n_iter_no_change=50)
    dense = Estimator(**kw).fit(X.toarray(), target)
    for fmt in ("csr", "csc", "coo"):
        est = Estimator(**kw).fit(X.asformat(fmt), target)
        np.testing.assert_allclose(est.model_.params, dense.model_.params, rtol=1e-4,
                                   atol=1e-5)
        np.testing.assert_allclose(est.predict(X.asformat(fmt)), dense.predict(X.toarray()),
                                   rtol=1e-4, atol=1e-5)


# ---- data frames ----------------------------------------------------------------------

def _frame_data():
    X, y = _data()
    columns = {"a": X[:, 0], "b": (X[:, 1] * 10).astype(np.int32), "c": X[:, 2].astype(
        np.float64), "d": X[:, 3], "e": (X[:, 4] > 0).astype(np.int64), "f": X[:, 5]}
    array = np.column_stack([columns[c] for c in "abcdef"]).astype(np.float64)
    return columns, array, y


def test_pandas_frames_of_mixed_numeric_columns_keep_their_names():
    columns, array, y = _frame_data()
    # copy-on-write: always on from pandas 3 (an option before)
    with pd.option_context("mode.copy_on_write", True) if int(pd.__version__.split(".")[0]) < 3 \
            else contextlib.nullcontext():
        df = pd.DataFrame(columns)
        df["b"] = df["b"].astype("Int32")            # nullable, no missing values
        ref = _fit(array, y, [6, 8, 2])
        model = _fit(df, pd.Series(y), [6, 8, 2])
        assert model.params.tobytes() == ref.params.tobytes()
        assert list(model.feature_names_in_) == list("abcdef")
        assert np.array_equal(model.predict(df), ref.predict(array))
        assert np.array_equal(model.predict(array), ref.predict(array))   # no names: fine
        with pytest.raises(ValueError, match=r"not seen in fit \['g'\].*missing \['f'\]|"
                                             r"missing \['f'\]; not seen in fit \['g'\]"):
            model.predict(df.rename(columns={"f": "g"}))
        with pytest.raises(ValueError, match="the same names in another order"):
            model.predict(df[list("bacdef")])


def test_bad_pandas_columns_are_named_with_what_to_do():
    columns, _, y = _frame_data()
    df = pd.DataFrame(columns)
    df["colour"] = ["red", "green"] * (len(df) // 2)
    with pytest.raises(TypeError, match="X column 'colour' has dtype (object|str), not a "
                                        "number; encode it"):
        _fit(df, y, [7, 8, 2])
    df = pd.DataFrame(columns)
    df.loc[4, "c"] = np.nan
    with pytest.raises(ValueError, match="X column 'c' has 1 missing values; impute or drop"):
        _fit(df, y, [6, 8, 2])


def test_arrow_tables():
    pa = pytest.importorskip("pyarrow")
    columns, array, y = _frame_data()
    table = pa.table(columns)
    ref = _fit(array, y, [6, 8, 2])
    model = _fit(table, y, [6, 8, 2])
    assert model.params.tobytes() == ref.params.tobytes()
    assert list(model.feature_names_in_) == list("abcdef")
    assert np.array_equal(model.predict(table), ref.predict(array))
    with pytest.raises(ValueError, match="another order"):
        model.predict(table.select(list("fedcba")))
    with pytest.raises(TypeError, match="X column 'e' has type string, not a number"):
        model.predict(table.set_column(4, "e", pa.array(["x"] * len(array))))
    nulls = pa.table(dict(columns, c=pa.array([None] + list(columns["c"][1:]))))
    with pytest.raises(ValueError, match="X column 'c' has 1 missing values"):
        model.predict(nulls)


def test_polars_frames():
    pl = pytest.importorskip("polars")
    columns, array, y = _frame_data()
    frame = pl.DataFrame(columns)
    ref = _fit(array, y, [6, 8, 2])
    model = _fit(frame, y, [6, 8, 2])
    assert model.params.tobytes() == ref.params.tobytes()
    assert np.array_equal(model.predict(frame), ref.predict(array))
    with pytest.raises(ValueError, match=r"missing \['a'\]"):
        model.predict(frame.rename({"a": "z"}))
    with pytest.raises(ValueError, match="X column 'd' has 1 missing values"):
        model.predict(frame.with_columns(pl.when(pl.int_range(pl.len()) == 0).then(None)
                                         .otherwise(pl.col("d")).alias("d")))
    with pytest.raises(TypeError, match="X column 'e' has type String"):
        model.predict(frame.with_columns(pl.lit("w").alias("e")))


def test_estimators_check_frame_columns_at_predict():
    columns, _, y = _frame_data()
    df = pd.DataFrame(columns)
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(df, y)
    assert list(clf.feature_names_in_) == list("abcdef")
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[list("bacdef")])


# ---- shuffle="chunks" -------------------------------------------------------------------

def test_chunk_shuffle_reads_whole_chunks_per_window_in_a_seeded_order(monkeypatch):
    monkeypatch.setattr(_inputs, "CHUNK_SHUFFLE_BYTES", 10 * 64)     # 10 rows of 64 bytes
    n, chunk, window = 1234, 10, _inputs.SHUFFLE_WINDOW_CHUNKS
    order = _inputs.epoch_order(n, "chunks", [7, 0], 64)
    assert order.dtype == np.int64 and np.array_equal(np.sort(order), np.arange(n))
    assert np.array_equal(order, _inputs.epoch_order(n, "chunks", [7, 0], 64))
    assert not np.array_equal(order, _inputs.epoch_order(n, "chunks", [7, 1], 64))
    # the order splits into windows, each the rows of `window` whole chunks, shuffled
    size = lambda c: min(chunk, n - c * chunk)          # noqa: E731
    cid, start, shuffled_within, seen = order // chunk, 0, 0, {}
    for pos, c in enumerate(cid):
        seen[c] = seen.get(c, 0) + 1
        complete = all(k == size(c) for c, k in seen.items())
        if complete and (len(seen) == window or pos == n - 1):
            part = order[start:pos + 1]
            shuffled_within += not np.all(np.diff(part) == 1)
            start, seen = pos + 1, {}
    assert start == n, "the order is not a sequence of windows of whole chunks"
    assert shuffled_within > 0
    assert np.array_equal(_inputs.epoch_order(5, False, [0, 0], 64), np.arange(5))
    assert np.array_equal(_inputs.epoch_order(50, True, [3, 2], 64),
                          np.random.default_rng([3, 2]).permutation(50))


def test_fit_with_chunk_shuffle_is_deterministic_and_checked(tmp_path):
    X, y = _data(n=400)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    a = _fit(Xm, y, [6, 8, 2], shuffle="chunks", seed=5)
    b = _fit(X, y, [6, 8, 2], shuffle="chunks", seed=5)
    assert a.params.tobytes() == b.params.tobytes()
    full = _fit(X, y, [6, 8, 2], shuffle=True, seed=5)
    assert full.params.tobytes() != a.params.tobytes()
    for bad in ("rows", None, 2):
        with pytest.raises(ValueError, match="shuffle must be True, False or 'chunks'"):
            _fit(X, y, [6, 8, 2], shuffle=bad)


def test_chunk_shuffle_reads_a_memory_map_ahead_and_leaves_no_thread(tmp_path, monkeypatch):
    import threading
    monkeypatch.setattr(_inputs, "CHUNK_SHUFFLE_BYTES", 1024)
    X, y = _data(n=3000)
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")
    row = Xm[:1].nbytes
    assert _inputs._mapped_files(Xm[10:]) == [(Xm.filename, Xm.offset + 10 * row, row, 0,
                                               len(X) - 10)]
    assert _inputs._mapped_files(X) == []
    advised = []
    real = os.posix_fadvise
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, off, size, advice: advised.append((off, size)) or
                        real(fd, off, size, advice))
    order = _inputs.epoch_order(len(X), "chunks", [0, 0], X[:1].nbytes)
    done = [0]
    ahead = _inputs.ReadAhead(Xm, order, lambda: done[0])
    ahead._thread.join(timeout=0.2)
    chunk = 1024 // X[:1].nbytes
    window = chunk * _inputs.SHUFFLE_WINDOW_CHUNKS
    # without progress it reads WINDOWS_AHEAD windows beyond the first, then waits
    assert ahead._thread.is_alive()
    ahead_chunks = (1 + ahead.WINDOWS_AHEAD) * _inputs.SHUFFLE_WINDOW_CHUNKS
    assert ahead_chunks <= len(advised) <= ahead_chunks + _inputs.SHUFFLE_WINDOW_CHUNKS
    done[0] = len(X)
    ahead._thread.join(timeout=30)
    # every chunk of the file, once (the last one as long as the rows it holds)
    assert sorted(advised) == [(Xm.offset + c * chunk * row,
                                (min(len(X), (c + 1) * chunk) - c * chunk) * row)
                               for c in range(-(-len(X) // chunk))]
    ahead.stop()
    a = _fit(Xm, y, [6, 8, 2], shuffle="chunks", seed=2, epochs=2, batch_size=64)
    b = _fit(X, y, [6, 8, 2], shuffle="chunks", seed=2, epochs=2, batch_size=64)
    assert a.params.tobytes() == b.params.tobytes()
    assert not any(t.name == "fastnet-read-ahead" for t in threading.enumerate())
    assert window > 0


# ---- shards and other dtypes: staged a block of batches at a time --------------------

class _EveryBatch(fastnet.callbacks.Callback):
    """A callback with on_batch_end: fit then takes its steps one call at a time."""

    def on_batch_end(self, batch, logs):
        pass


@pytest.mark.parametrize("steps", ["blocks", "one at a time"])
def test_other_dtypes_and_layouts_train_as_the_converted_array(steps, monkeypatch):
    # a staging array of 3 batches: every epoch crosses many windows, in blocks and
    # in single steps
    monkeypatch.setattr(_inputs, "CHUNK_BYTES", 3 * 16 * 6 * 4)
    X, y = _data(n=300)
    w = np.linspace(0.5, 1.5, len(X)).astype(np.float32)
    callbacks = [_EveryBatch()] if steps == "one at a time" else []
    kw = dict(validation_split=0.2, sample_weight=w, callbacks=callbacks, epochs=2)
    ref = _fit(X, y, [6, 8, 2], **kw)
    others = {"float64": X.astype(np.float64), "Fortran order": np.asfortranarray(X),
              "big-endian": X.astype(">f4"), "strided view": np.repeat(X, 2, axis=1)[:, ::2],
              "read-only float64": X.astype(np.float64)}
    others["read-only float64"].flags.writeable = False
    for name, other in others.items():
        model = _fit(other, y, [6, 8, 2], **kw)
        assert model.params.tobytes() == ref.params.tobytes(), name
        assert model.history.history["val_loss"] == ref.history.history["val_loss"], name
    Xi = np.round(X * 4).astype(np.int16)
    a = _fit(Xi, y, [6, 8, 2], shuffle="chunks", **kw)
    b = _fit(Xi.astype(np.float32), y, [6, 8, 2], shuffle="chunks", **kw)
    assert a.params.tobytes() == b.params.tobytes()


def test_rows_that_fit_one_staging_array_are_converted_once():
    X, y = _data(n=300)
    small = _inputs.engine_readable(X.astype(np.float64), np.dtype(np.float32))
    assert isinstance(small, np.ndarray) and small.dtype == np.float32
    assert np.array_equal(small, X)
    big = np.zeros((_inputs.CHUNK_BYTES // 24 + 1, 6))       # one row over, as float32
    assert isinstance(_inputs.engine_readable(big, np.dtype(np.float32)), _inputs.Shards)
    shards = _inputs.Shards([X[:100], X[100:]], np.float32)
    rows = _inputs.engine_readable(_inputs.Rows(shards, np.arange(5)), np.dtype(np.float32))
    assert isinstance(rows, _inputs.Rows) and isinstance(rows.base, np.ndarray)
    assert np.array_equal(rows.base, X)
    a = _fit(X.astype(np.float64), y, [6, 8, 2], validation_split=0.2)
    b = _fit(X, y, [6, 8, 2], validation_split=0.2)
    assert a.params.tobytes() == b.params.tobytes()


def test_a_list_of_shards_trains_as_their_concatenation(tmp_path, monkeypatch):
    monkeypatch.setattr(_inputs, "CHUNK_BYTES", 4 * 16 * 6 * 4)
    X, y = _data(n=500)
    cuts = [0, 120, 121, 400, 500]
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        np.save(tmp_path / f"X{i}.npy", X[a:b] if i != 2 else X[a:b].astype(np.float64))
    shards = [np.load(tmp_path / f"X{i}.npy", mmap_mode="r") for i in range(4)]
    for shuffle in (True, "chunks", False):
        ref = _fit(X, y, [6, 8, 2], shuffle=shuffle, validation_split=0.1, seed=4)
        model = _fit(shards, y, [6, 8, 2], shuffle=shuffle, validation_split=0.1, seed=4)
        assert model.params.tobytes() == ref.params.tobytes(), shuffle
        assert model.history.history["val_loss"] == ref.history.history["val_loss"]
    assert np.array_equal(model.predict_proba(shards), model.predict_proba(X))
    assert model.evaluate(shards, y) == model.evaluate(X, y)
    assert model.evaluate(tuple(shards), y) == model.evaluate(X, y)
    held_out = _fit(X[:400], y[:400], [6, 8, 2], validation_data=(X[400:], y[400:]))
    again = _fit(shards[:3], y[:400], [6, 8, 2], validation_data=(shards[3:], y[400:]))
    assert again.params.tobytes() == held_out.params.tobytes()
    loss, grads = model.gradients(shards, y, seed=1)
    loss_ref, grads_ref = model.gradients(X, y, seed=1)
    assert loss == loss_ref and all(np.array_equal(g["w"], r["w"])
                                    for g, r in zip(grads, grads_ref))
    found = fastnet.MLP([6, 8, 2], seed=0).lr_find(shards, y, steps=10)
    expected = fastnet.MLP([6, 8, 2], seed=0).lr_find(X, y, steps=10)
    assert np.array_equal(found.losses, expected.losses)


def test_shards_over_several_files_are_read_ahead_file_by_file(tmp_path, monkeypatch):
    X, y = _data(n=600)
    np.save(tmp_path / "a.npy", X[:250])
    np.save(tmp_path / "b.npy", X[250:])
    a, b = (np.load(tmp_path / f"{k}.npy", mmap_mode="r") for k in "ab")
    shards = _inputs.Shards([a, b, X[:10]], np.float32)
    row = X[:1].nbytes
    assert _inputs._mapped_files(shards) == [(a.filename, a.offset, row, 0, 250),
                                             (b.filename, b.offset, row, 250, 350)]
    monkeypatch.setattr(_inputs, "CHUNK_SHUFFLE_BYTES", 100 * row)       # 100-row chunks
    advised = []
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, off, size, advice: advised.append((off, size)))
    order = _inputs.epoch_order(610, "chunks", [0, 0], row)
    ahead = _inputs.ReadAhead(shards, order, lambda: 610)
    ahead._thread.join(timeout=30)
    ahead.stop()
    # chunk 2 (rows 200-299) lies in both files; chunk 6 (600-609) in neither
    assert sorted(advised) == sorted(
        [(a.offset, 100 * row), (a.offset + 100 * row, 100 * row),
         (a.offset + 200 * row, 50 * row), (b.offset, 50 * row)]
        + [(b.offset + (50 + 100 * k) * row, 100 * row) for k in range(3)])


def test_bad_shards_are_named():
    X, y = _data(n=300)
    model = fastnet.MLP([6, 8, 2], seed=0)
    bad = X.astype(np.float64)
    bad[234, 4] = np.nan
    with pytest.raises(ValueError, match=r"X\[1\] contains NaN or infinity \(row 134, "
                                         r"column 4\)"):
        model.fit([X[:100], bad[100:]], y, verbose=0)
    with pytest.raises(ValueError, match=r"X contains NaN or infinity \(row 234, column 4\)"):
        model.fit(bad, y, verbose=0)
    with pytest.raises(ValueError, match=r"X\[1\] has shape \(200, 5\)"):
        model.fit([X[:100], X[100:, :5]], y, verbose=0)
    with pytest.raises(ValueError, match=r"X\[0\] is empty"):
        model.fit([X[:0], X], y, verbose=0)
    with pytest.raises(ValueError, match="y has shape"):
        model.fit([X[:100], X[100:]], y[:200], verbose=0)
    with pytest.raises(TypeError, match=r"X\[1\] must hold real numbers"):
        model.fit([X[:100], X[100:].astype(complex)], y, verbose=0)
    for mixed, what in (([X[:100], X[100:].tolist()], "a list"),
                        ([X[:100, :, None], X[100:]], "a 3-D array"),
                        ((X[:100], X[100:, 0]), "a 1-D array")):
        with pytest.raises(ValueError, match=rf"X\[\d\] is {what}; every shard must be a "
                                             r"2-D array"):
            model.fit(mixed, y, verbose=0)
    with pytest.raises(ValueError, match=r"validation_data\[0\]\[1\] is a list"):
        model.fit(X, y, verbose=0, validation_data=([X[:10], [[0.0] * 6]], y[:11]))
    assert model.params.tobytes() == fastnet.MLP([6, 8, 2], seed=0).params.tobytes()


def _float64_map(path, then):
    """Set-up code of a measured child: X, 128 MB of random float64 rows saved at `path`
    and opened read-only memory-mapped, its labels y, then the code `then`."""
    return f"""
import numpy as np, fastnet, fastnet.sklearn
X = np.lib.format.open_memmap({str(path)!r}, mode="w+", dtype=np.float64, shape=(65536, 256))
for s in range(0, 65536, 8192):
    X[s:s + 8192] = np.random.default_rng(s).standard_normal((8192, 256))
X.flush()
del X
X = np.load({str(path)!r}, mmap_mode="r")
y = (np.asarray(X[:, 0]) > 0).astype(np.int64)
{then}
"""


def test_fit_on_a_float64_memory_map_adds_batches_not_a_copy(tmp_path):
    setup = _float64_map(tmp_path / "X.npy", "model = fastnet.MLP([256, 64, 2], seed=0)")
    body = "model.fit(X, y, epochs=1, batch_size=256, verbose=0, validation_split=0.1)"
    extra = _memory.extra_anon_bytes(setup, body, env=child_env(), timeout=300)
    assert extra <= 32 * 2**20, f"{extra / 2**20:.1f} MB extra (a float32 copy: 64 MB)"


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_saved_models_keep_the_fitted_column_names(tmp_path, suffix):
    X, y = _data()
    frame = pd.DataFrame(X, columns=list("abcdef"))
    model = _fit(frame, y, [6, 8, 2])
    model.save(tmp_path / f"m{suffix}")
    again = fastnet.load(tmp_path / f"m{suffix}")
    assert list(again.feature_names_in_) == list("abcdef")
    with pytest.raises(ValueError, match="missing \\['f'\\]"):
        again.predict(frame.drop(columns="f").assign(g=1.0))
    plain = _fit(X, y, [6, 8, 2])
    plain.save(tmp_path / f"p{suffix}")
    assert fastnet.load(tmp_path / f"p{suffix}").feature_names_in_ is None


def test_estimators_fit_a_float64_memory_map_without_converting_it(tmp_path):
    setup = _float64_map(tmp_path / "X.npy", "clf = fastnet.sklearn.MLPClassifier("
                         "hidden_layer_sizes=(32,), max_iter=1, early_stopping=True)")
    body = "clf.fit(X, y); clf.predict(X)"
    extra = _memory.extra_anon_bytes(setup, body, env=child_env(), timeout=300)
    assert extra <= 40 * 2**20, f"{extra / 2**20:.1f} MB extra (a float32 copy: 64 MB)"
    X, y = _data(n=200)
    a = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(X, y)
    b = MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0).fit(
        X.astype(np.float64), y)
    assert a.model_.params.tobytes() == b.model_.params.tobytes()
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X.astype(np.float64)))
