"""copy.deepcopy, copy.copy and pickle of an MLP, before and after fit or predict: an
independent model with the same weights, buffers, predictions and optimizer state, whose
per-layer views (get_weights, set_weights, layers) act on its own arrays."""
import copy
import pickle
import zipfile

import numpy as np
import pytest

import fastnet

COPIES = {
    "deepcopy": copy.deepcopy,
    "copy": copy.copy,
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
}


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((96, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0)
    return X, y


def _model(stage):
    X, y = _data()
    model = fastnet.MLP([4, 16, 8, 3], dropout=0.1, seed=0)
    if stage in ("fitted", "fitted+predicted"):
        model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    if stage in ("predicted", "fitted+predicted"):
        model.predict(X)
    return model


def _same_arrays(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b)) and len(a) == len(b)


def _assert_aliases_own_arrays(model):
    """Every per-layer view is a view of this model's own flat arrays."""
    for layer in model.layers:
        for name, view in layer.items():
            source = model.grads if name.startswith("d") else \
                model.buffers if name.startswith("running") else model.params
            assert np.shares_memory(view, source), name


@pytest.mark.parametrize("stage", ["new", "fitted", "predicted", "fitted+predicted"])
@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_is_an_independent_model_with_the_same_state(how, stage):
    X, y = _data()
    model = _model(stage)
    clone = COPIES[how](model)
    assert type(clone) is fastnet.MLP
    assert clone.config() == model.config()
    assert _same_arrays(clone.get_weights(), model.get_weights())
    assert np.array_equal(clone.grads, model.grads)
    for name in ("params", "grads", "buffers"):
        assert not np.shares_memory(getattr(clone, name), getattr(model, name)), name
    _assert_aliases_own_arrays(clone)
    assert np.array_equal(clone.predict_proba(X), model.predict_proba(X))

    # training the copy changes the copy, and its views follow, the original stays
    before = model.get_weights()
    clone.fit(X, y, epochs=2, batch_size=16, verbose=0)
    assert _same_arrays(model.get_weights(), before)
    assert not _same_arrays(clone.get_weights(), before)
    assert np.array_equal(clone.layers[0]["w"].ravel(),
                          clone.params[:clone.layers[0]["w"].size])
    # set_weights acts on the copy alone
    weights = clone.get_weights()
    weights[0][...] = 0
    proba = clone.predict_proba(X)
    clone.set_weights(weights)
    assert not np.array_equal(clone.predict_proba(X), proba)
    assert _same_arrays(model.get_weights(), before)


@pytest.mark.parametrize("how", sorted(COPIES))
def test_a_copy_carries_the_optimizer_state_and_continues_identically(how):
    X, y = _data()
    model = fastnet.MLP([4, 16, 3], seed=1)
    model.fit(X, y, epochs=2, batch_size=16, optimizer="adam", lr=1e-2, verbose=0)
    clone = COPIES[how](model)
    assert clone.optimizer is not model.optimizer
    mine, theirs = model.optimizer.state_dict(), clone.optimizer.state_dict()
    assert mine["t"] == theirs["t"] > 0
    for a, b in zip(mine["buffers"][0], theirs["buffers"][0]):
        assert np.array_equal(a, b)
    for a, b in zip(model.optimizer._buffers[0], clone.optimizer._buffers[0]):
        assert not np.shares_memory(a, b)
    assert clone.history.history == model.history.history
    # continuing with each one's optimizer gives the same bits on both
    model.fit(X, y, epochs=2, batch_size=16, optimizer=model.optimizer, verbose=0, seed=5)
    clone.fit(X, y, epochs=2, batch_size=16, optimizer=clone.optimizer, verbose=0, seed=5)
    assert model.params.tobytes() == clone.params.tobytes()
    assert model.buffers.tobytes() == clone.buffers.tobytes()


def test_deep_copies_taken_by_a_callback_keep_each_epoch_s_model():
    # the usual way to keep the best model by hand: deepcopy it from a callback
    X, y = _data()
    kept = []

    class Keep:
        def on_epoch_end(self, epoch, logs):
            kept.append((copy.deepcopy(self.model), self.model.get_weights(),
                         self.model.predict_proba(X)))

    model = fastnet.MLP([4, 16, 3], seed=3)
    model.fit(X, y, epochs=3, batch_size=16, verbose=0, callbacks=[Keep()])
    assert len(kept) == 3
    for clone, weights, proba in kept:
        assert _same_arrays(clone.get_weights(), weights)
        assert np.array_equal(clone.predict_proba(X), proba)
        _assert_aliases_own_arrays(clone)
    assert not _same_arrays(kept[0][0].get_weights(), kept[2][0].get_weights())


def test_a_pickled_bound_predict_works_like_the_original():
    # what multiprocessing.Pool.map(model.predict_proba, chunks) sends to its workers
    X, _ = _data()
    model = _model("fitted+predicted")
    predict = pickle.loads(pickle.dumps(model.predict_proba))
    assert np.array_equal(predict(X), model.predict_proba(X))


def test_copies_of_a_float64_model_without_batch_norm():
    X, y = _data()
    model = fastnet.MLP([4, 8, 3], batch_norm=False, dtype="float64", seed=2)
    model.fit(X, y, epochs=1, verbose=0)
    for how, fn in COPIES.items():
        clone = fn(model)
        assert clone.dtype == np.float64 and clone.params.dtype == np.float64, how
        _assert_aliases_own_arrays(clone)
        assert np.array_equal(clone.predict(X), model.predict(X)), how


def test_save_stays_pickle_free(tmp_path):
    model = _model("fitted")
    path = tmp_path / "m.npz"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["__meta__.npy", "buffers.npy", "params.npy"]
    with np.load(path, allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    loaded = fastnet.load(path)
    assert _same_arrays(loaded.get_weights(), model.get_weights())
