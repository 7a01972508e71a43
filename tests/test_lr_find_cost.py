"""MLP.lr_find keeps its divergence test incremental: the work per step is constant, so a
range test of many steps costs time linear in `steps`, with the same answers as the
definition ``diverged_index(smooth_losses(losses))`` evaluated after every step."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnet
from fastnet import health
from fastnet.datasets import load_digits


@settings(max_examples=200, deadline=None)
@given(losses=st.lists(st.one_of(st.floats(0.0, 1e6), st.just(math.inf), st.just(math.nan)),
                       min_size=1, max_size=60),
       beta=st.sampled_from([0.0, 0.5, 0.9, 0.98]),
       factor=st.sampled_from([1.5, 4.0, 10.0]))
def test_the_running_watch_agrees_with_the_definition_at_every_step(losses, beta, factor):
    watch = health.DivergenceWatch(beta, factor)
    for k in range(len(losses)):
        expected = health.diverged_index(health.smooth_losses(losses[:k + 1], beta),
                                         factor) == k
        assert watch.add(losses[k]) == expected, k
        if expected:
            break


def _count_smoothing_work(monkeypatch):
    """Count the loss values the health module's smoothing and divergence tests touch."""
    touched = [0]
    for name in ("smooth_losses", "diverged_index"):
        original = getattr(health, name)

        def counting(values, *args, _original=original, **kwargs):
            touched[0] += len(values)
            return _original(values, *args, **kwargs)

        monkeypatch.setattr(health, name, counting)
    add = getattr(health, "DivergenceWatch", None)
    if add is not None:
        original_add = add.add

        def counting_add(self, loss):
            touched[0] += 1
            return original_add(self, loss)

        monkeypatch.setattr(add, "add", counting_add)
    return touched


@pytest.mark.parametrize("steps", [300, 1200])
def test_lr_find_work_is_linear_in_steps(monkeypatch, steps):
    X, y = load_digits()
    X, y = X[:256], y[:256]
    touched = _count_smoothing_work(monkeypatch)
    model = fastnet.MLP([64, 16, 10], seed=0)
    with fastnet.threads(1):            # tiny steps: a team would only add barriers
        result = model.lr_find(X, y, start_lr=1e-6, end_lr=1e-4, steps=steps,
                               batch_size=128)
    assert len(result.losses) == steps and result.diverged_at is None
    # forward + backward smoothing of the finished run, one update per step: ~4 * steps;
    # re-smoothing every prefix (the old O(steps^2) test) touched steps^2 values
    assert touched[0] <= 6 * steps


def test_lr_find_answers_as_its_definition_says():
    X, y = load_digits()
    model = fastnet.MLP([64, 32, 10], seed=0)
    before = model.params.copy()
    result = model.lr_find(X, y)        # the defaults: 100 steps up to lr 10, which diverges
    assert result.diverged_at is not None
    assert result.diverged_at == len(result.losses) - 1
    assert result.diverged_at == health.diverged_index(
        health.smooth_losses(result.losses, 0.9), 4.0)
    assert health.diverged_index(health.smooth_losses(result.losses[:-1], 0.9), 4.0) is None
    assert result.smoothed == health.zero_lag_smooth(result.losses, 0.9)
    assert result.suggested_lr == health.suggest_lr(result.lrs, result.smoothed,
                                                    result.diverged_at)
    assert np.array_equal(model.params, before)
