"""fit runs blocks of steps in one native call (Engine.run_steps) when no
per-batch callback, progress bar, gradient tracking or distributed run needs
control between the steps; the results are the bits of the per-step loop.

The per-step loop is forced by an ``on_batch_end`` callback that does
nothing, which is also how a user's callback turns blocks off.
"""
import numpy as np
import pytest
from conftest import assert_same_bits, num_threads

import fastnet
from fastnet import _network
from fastnet.schedules import CosineAnnealing


class _PerStep:
    """A callback whose mere on_batch_end makes fit take the per-step loop."""

    def on_batch_end(self, batch, logs):
        pass


def _data(n=600, features=20, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, features)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)
    return X, y % classes


def _fit(per_step, dtype="float32", **kw):
    X, y = _data()
    model = fastnet.MLP([20, 32, 32, 3], dropout=0.2, dtype=dtype, seed=2)
    options = dict(epochs=3, batch_size=32, verbose=0, seed=4, optimizer="sgd", lr=0.05)
    options.update(kw)
    callbacks = [_PerStep()] if per_step else []
    history = model.fit(X, y, callbacks=callbacks, **options)
    return model, history


def _same_fit(a, b):
    assert_same_bits(a[0].params, b[0].params, what="params")
    assert_same_bits(a[0].buffers, b[0].buffers, what="buffers")
    assert a[1].history == b[1].history
    assert (a[1].epochs, a[1].diverged, a[1].rollbacks, a[1].best_epoch) == \
        (b[1].epochs, b[1].diverged, b[1].rollbacks, b[1].best_epoch)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("options", [
    {},
    {"optimizer": "adamw", "lr": 3e-3, "grad_clip": 0.5},
    {"schedule": "per-step"},
    {"validation_split": 0.2, "class_weight": "balanced"},
], ids=["sgd", "adamw-clip", "per-step-schedule", "validation"])
def test_blocks_give_the_bits_of_the_per_step_loop(dtype, options):
    if options.get("schedule") == "per-step":
        options = dict(options, schedule=CosineAnnealing(0.1, 3 * 19, per_step=True))
    _same_fit(_fit(False, dtype, **options), _fit(True, dtype, **options))


@pytest.mark.parametrize("policy", ["stop", "rollback"])
def test_divergence_inside_a_block_stops_where_the_loop_stops(policy):
    """lr 300 diverges in the middle of an epoch: the block stops after the
    same step, the same weights are restored and the same rollbacks taken."""
    with pytest.warns(RuntimeWarning) if policy == "stop" else _no_warning():
        blocks = _fit(False, epochs=4, lr=300.0, on_divergence=policy)
    with pytest.warns(RuntimeWarning) if policy == "stop" else _no_warning():
        loop = _fit(True, epochs=4, lr=300.0, on_divergence=policy)
    _same_fit(blocks, loop)
    assert blocks[1].diverged or blocks[1].rollbacks


class _no_warning:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_fit_uses_blocks_when_nothing_needs_control(monkeypatch):
    calls = []

    class Counting(_network.Engine):
        def run_steps(self, first, last, *args):
            calls.append(last - first)
            return super().run_steps(first, last, *args)

    monkeypatch.setattr(_network, "Engine", Counting)
    X, y = _data()
    with num_threads(2):
        fastnet.MLP([20, 32, 32, 3], seed=2).fit(X, y, epochs=3, batch_size=32, verbose=0,
                                                 callbacks=[_PerStep()])
        assert calls == []
        fastnet.MLP([20, 32, 32, 3], seed=2).fit(X, y, epochs=3, batch_size=32, verbose=0)
    # the first step of a fit (the divergence limit is set from its loss) and
    # the steps the thread governor times run one by one
    assert calls and all(c > 1 for c in calls) and sum(calls) < 3 * 19


def test_run_steps_stops_when_asked():
    """should_stop is asked after every step (fit's Ctrl-C and stop_training)."""
    X, y = _data()
    model = fastnet.MLP([20, 32, 3], seed=1)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)          # binds an optimizer
    engine, _, _, steps = model._training_engine(X, y.astype(np.int64), None, None, 32,
                                                 "cross_entropy")
    model._bind_optimizer(engine, model.optimizer)
    engine.set_order(np.arange(600, dtype=np.int64))
    asked = []
    done, loss = engine.run_steps(0, steps, 32, 0.01, 0.0, 7, 0, float("inf"),
                                  lambda: asked.append(1) or len(asked) == 3)
    assert done == 3 and len(asked) == 3 and np.isfinite(loss)
    assert engine.steps == 3 and engine.opt_step == model.optimizer.t + 3


def test_run_steps_checks_its_arguments():
    X, y = _data()
    model = fastnet.MLP([20, 32, 3], seed=1)
    model.fit(X, y, epochs=1, batch_size=32, verbose=0)
    engine, _, _, steps = model._training_engine(X, y.astype(np.int64), None, None, 32,
                                                 "cross_entropy")
    model._bind_optimizer(engine, model.optimizer)
    engine.set_order(np.arange(600, dtype=np.int64))
    with pytest.raises(ValueError, match="bad batches"):
        engine.run_steps(0, steps + 1, 32, 0.01, 0.0, 7, 0, 1e9, lambda: False)
    with pytest.raises(ValueError, match="bad batches"):
        engine.run_steps(0, 2, 64, 0.01, 0.0, 7, 0, 1e9, lambda: False)
    with pytest.raises(ValueError, match="entries"):
        engine.run_steps(0, 3, 32, np.array([0.1, 0.1]), 0.0, 7, 0, 1e9, lambda: False)
