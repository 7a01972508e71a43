"""One model shared by several Python threads (a web server, ThreadPoolExecutor.map):
predict, predict_proba and evaluate give exactly the single-threaded answers, a small
predict reuses its workspace, and a fit or other change of the model meanwhile either
waits for the running predictions or makes the other thread's call raise a clear
RuntimeError."""
import threading

import numpy as np
import pytest

import fastnet
from fastnet.sklearn import MLPClassifier

THREADS = 4
ROUNDS = 60


def _trained_model():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((256, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    model = fastnet.MLP([4, 64, 64, 3], dropout=0.2, seed=0)
    model.fit(X, y, epochs=3, batch_size=32, verbose=0)
    return model


def _queries():
    rng = np.random.default_rng(1)
    big = rng.standard_normal((3000, 4)).astype(np.float32)      # 3 native calls of 1024 rows
    small = rng.standard_normal((50, 4)).astype(np.float32)
    return {"big": (big, rng.integers(0, 3, 3000)), "small": (small, rng.integers(0, 3, 50))}


def _run_threads(work, n=THREADS):
    """Run work(i) in n threads started together; re-raise the first exception."""
    start = threading.Barrier(n)
    errors = []

    def body(i):
        start.wait()
        try:
            work(i)
        except BaseException as exc:  # noqa: BLE001 - reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    if errors:
        raise errors[0]


def test_threads_sharing_a_model_get_the_single_threaded_answers():
    model = _trained_model()
    queries = _queries()
    reference = {k: (model.predict_proba(X), model.predict(X), model.evaluate(X, y))
                 for k, (X, y) in queries.items()}
    wrong = []

    def work(i):
        key = ("big", "small")[i % 2]
        X, y = queries[key]
        proba, labels, scores = reference[key]
        for _ in range(ROUNDS):
            if not np.array_equal(model.predict_proba(X), proba):
                wrong.append((key, "predict_proba"))
            if not np.array_equal(model.predict(X), labels):
                wrong.append((key, "predict"))
            if model.evaluate(X, y) != scores:
                wrong.append((key, "evaluate"))

    _run_threads(work)
    assert not wrong, f"{len(wrong)} concurrent answers differ, first {wrong[0]}"


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_sklearn_wrapper_shared_by_threads_gives_the_single_threaded_answers():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((300, 6))
    y = np.where(X[:, 0] + X[:, 1] > 0, "yes", "no")
    clf = MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=5, random_state=0).fit(X, y)
    queries = [rng.standard_normal((2000, 6)), rng.standard_normal((40, 6))]
    reference = [clf.predict_proba(q) for q in queries]
    wrong = []

    def work(i):
        for _ in range(ROUNDS // 2):
            if not np.array_equal(clf.predict_proba(queries[i % 2]), reference[i % 2]):
                wrong.append(i)

    _run_threads(work)
    assert not wrong


def test_repeated_small_predictions_reuse_their_engines(monkeypatch):
    model = _trained_model()
    X = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    built = []
    original = model._engine

    def counting(max_batch, loss):
        built.append(max_batch)
        return original(max_batch, loss)

    monkeypatch.setattr(model, "_engine", counting)
    model.predict(X)
    assert len(built) == 1
    for _ in range(50):
        model.predict_proba(X)
    assert len(built) == 1, "a small predict allocated a new workspace"

    def work(i):
        for _ in range(20):
            model.predict(X)

    # at most one engine per call running at the same time, kept for the next calls
    # (THREADS <= the pool size): however the threads overlap, never more than THREADS
    for _ in range(2):
        _run_threads(work)
        assert len(built) <= THREADS


def test_predict_during_fit_in_another_thread_raises_a_clear_error():
    model = _trained_model()
    rng = np.random.default_rng(4)
    X = rng.standard_normal((128, 4)).astype(np.float32)
    y = rng.integers(0, 3, 128)
    in_fit, checked = threading.Event(), threading.Event()
    seen = {}

    class Pause:
        def on_epoch_end(self, epoch, logs):
            if epoch == 0:
                # inference from the fitting thread itself (what callbacks do) works
                seen["own_thread"] = self.model.predict(X)
                in_fit.set()
                checked.wait(timeout=60)

    def other_thread():
        in_fit.wait(timeout=60)
        for name, call in (("predict", lambda: model.predict(X)),
                           ("evaluate", lambda: model.evaluate(X, y)),
                           ("get_weights", model.get_weights),
                           ("fit", lambda: model.fit(X, y, epochs=1, verbose=0)),
                           ("set_weights", lambda: model.set_weights(seen["weights"]))):
            try:
                call()
                seen[name] = "no error"
            except RuntimeError as exc:
                seen[name] = str(exc)
        checked.set()

    seen["weights"] = model.get_weights()
    helper = threading.Thread(target=other_thread)
    helper.start()
    model.fit(X, y, epochs=3, batch_size=32, verbose=0, callbacks=[Pause()])
    helper.join(timeout=60)
    assert not helper.is_alive()
    assert seen["own_thread"].shape == (128,)
    for name in ("predict", "evaluate", "get_weights", "fit", "set_weights"):
        assert "being changed by fit in another thread" in seen[name], (name, seen[name])
    # once fit has returned every thread may use the model again
    result = []
    thread = threading.Thread(target=lambda: result.append(model.predict(X)))
    thread.start()
    thread.join(timeout=60)
    assert np.array_equal(result[0], model.predict(X))


def test_fit_while_other_threads_predict_either_works_or_raises_clearly():
    model = _trained_model()
    rng = np.random.default_rng(5)
    X = rng.standard_normal((512, 4)).astype(np.float32)
    y = rng.integers(0, 3, 512)
    stop = threading.Event()
    outcomes = {"ok": 0, "refused": 0}
    unexpected = []

    def predictor():
        while not stop.is_set():
            try:
                out = model.predict_proba(X)
            except RuntimeError as exc:
                if "being changed by fit" not in str(exc):
                    unexpected.append(exc)
                outcomes["refused"] += 1
                continue
            if out.shape != (512, 3) or not np.all(np.isfinite(out)):
                unexpected.append(out)
            outcomes["ok"] += 1

    threads = [threading.Thread(target=predictor) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        for _ in range(3):
            model.fit(X, y, epochs=2, batch_size=64, verbose=0)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not unexpected
    assert outcomes["ok"] > 0
    final = model.predict_proba(X)
    assert np.array_equal(final, model.predict_proba(X))


@pytest.mark.parametrize("change", ["dropout", "bn_eps"])
def test_a_setting_changed_while_threads_predict_takes_effect(change):
    model = _trained_model()
    X = _queries()["small"][0]
    model.predict(X)                  # an engine built with the old settings is cached
    setattr(model, change, 0.5 if change == "dropout" else 0.1)
    expected = fastnet.MLP([4, 64, 64, 3], dropout=model.dropout)
    expected.bn_eps = model.bn_eps
    expected.set_weights(model.get_weights())
    assert np.array_equal(model.predict_proba(X), expected.predict_proba(X))


def test_a_change_interrupted_while_waiting_for_predictions_releases_the_model(monkeypatch):
    model = _trained_model()
    X = _queries()["small"][0]
    access = model._access
    access.begin_read("predict")          # a prediction running in "another thread"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(access._idle, "wait", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.set_weights(model.get_weights())
    access.end_read()
    monkeypatch.undo()
    # nobody holds the model: other threads predict, and changes go through
    result = []
    thread = threading.Thread(target=lambda: result.append(model.predict(X)))
    thread.start()
    thread.join(timeout=60)
    assert result and result[0].shape == (50,)
    model.set_weights(model.get_weights())
