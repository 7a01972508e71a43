"""Tests of fastnet.schedules: the seed's table, closed forms, OneCycle, plateau, state."""
import json
import math

import numpy as np
import pytest
from _seed_tables import SEED_SCHEDULE_TABLE
from hypothesis import given, settings
from hypothesis import strategies as st

from fastnet import schedules
from fastnet.schedules import (
    Constant,
    CosineAnnealing,
    ExponentialDecay,
    LambdaSchedule,
    MultiStep,
    OneCycle,
    ReduceLROnPlateau,
    Schedule,
    StepDecay,
    WarmupCosine,
    cosine_schedule,
    resolve,
    step_decay,
    warmup_cosine,
)

# ---------------------------------------------------------------------------
# Reference: the seed article's code, as written there
# ---------------------------------------------------------------------------

def seed_step_decay(epoch, initial_lr, decay=0.5, step_size=30):
    """Drop LR by factor every step_size epochs."""
    return initial_lr * (decay ** (epoch // step_size))


def seed_cosine_schedule(epoch, total_epochs, initial_lr, min_lr=1e-6):
    """Smooth cosine decay from initial_lr to min_lr."""
    return min_lr + 0.5 * (initial_lr - min_lr) * (
        1 + np.cos(np.pi * epoch / total_epochs)
    )


def seed_warmup_cosine(epoch, warmup_epochs, total_epochs, initial_lr):
    """Linear warmup then cosine decay."""
    if epoch < warmup_epochs:
        return initial_lr * epoch / warmup_epochs
    return seed_cosine_schedule(
        epoch - warmup_epochs,
        total_epochs - warmup_epochs,
        initial_lr
    )


def seed_table(step, cosine, warm):
    lines = [f"{'Epoch':>6s} {'Step':>8s} {'Cosine':>8s} {'Warmup+Cos':>11s}", "-" * 38]
    for e in [0, 5, 10, 20, 30, 50, 70, 90, 99]:
        s = step(e, 0.001)
        c = cosine(e, 100, 0.001)
        w = warm(e, 10, 100, 0.001)
        lines.append(f"{e:>6d} {s:>8.6f} {c:>8.6f} {w:>11.6f}")
    return lines


SEED_TABLE = SEED_SCHEDULE_TABLE


# ---------------------------------------------------------------------------
# The seed's functions
# ---------------------------------------------------------------------------

def test_seed_table_identical():
    expected = seed_table(seed_step_decay, seed_cosine_schedule, seed_warmup_cosine)
    assert seed_table(step_decay, cosine_schedule, warmup_cosine) == expected
    assert expected == SEED_TABLE


def test_seed_table_from_schedule_objects():
    step, cos, warm = StepDecay(0.001), CosineAnnealing(0.001, 100), WarmupCosine(0.001, 10, 100)
    table = seed_table(lambda e, lr: step(e), lambda e, n, lr: cos(e),
                       lambda e, w, n, lr: warm(e))
    assert table == SEED_TABLE


def test_seed_functions_bit_identical_to_reference():
    for e in range(300):
        assert step_decay(e, 0.001) == seed_step_decay(e, 0.001)
        assert step_decay(e, 0.3, 0.1, 7) == seed_step_decay(e, 0.3, 0.1, 7)
        assert cosine_schedule(e, 100, 0.001) == seed_cosine_schedule(e, 100, 0.001)
        assert cosine_schedule(e, 50, 0.1, 0.0) == seed_cosine_schedule(e, 50, 0.1, 0.0)
        assert warmup_cosine(e, 10, 100, 0.001) == seed_warmup_cosine(e, 10, 100, 0.001)
        assert warmup_cosine(e, 5, 200, 0.01) == seed_warmup_cosine(e, 5, 200, 0.01)


@pytest.mark.parametrize("value,expected", [
    (step_decay(0, 0.001), 0.001),
    (step_decay(29, 0.001), 0.001),
    (step_decay(30, 0.001), 0.0005),
    (step_decay(60, 0.001), 0.00025),
    (step_decay(90, 0.001), 0.000125),
    (step_decay(10, 1.0, decay=0.1, step_size=5), 0.01),
    (cosine_schedule(0, 100, 0.001), 0.001),
    (cosine_schedule(50, 100, 0.001), 0.0005005),
    (cosine_schedule(100, 100, 0.001), 1e-6),
    (cosine_schedule(200, 100, 0.001), 0.001),  # not clipped, as in the seed
    (cosine_schedule(25, 100, 1.0, 0.0), 0.5 * (1 + math.sqrt(0.5))),
    (warmup_cosine(0, 10, 100, 0.001), 0.0),
    (warmup_cosine(5, 10, 100, 0.001), 0.0005),
    (warmup_cosine(10, 10, 100, 0.001), 0.001),
    (warmup_cosine(55, 10, 100, 0.001), 0.0005005),
    (warmup_cosine(100, 10, 100, 0.001), 1e-6),
    (warmup_cosine(100, 10, 100, 0.001, min_lr=1e-4), 1e-4),
    (warmup_cosine(55, 10, 100, 0.001, min_lr=0.0), 0.0005),
])
def test_seed_function_literals(value, expected):
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-18)


def test_warmup_cosine_passes_min_lr_through():
    for e in range(10, 101):
        assert warmup_cosine(e, 10, 100, 0.01, min_lr=1e-3) == pytest.approx(
            cosine_schedule(e - 10, 90, 0.01, min_lr=1e-3), rel=1e-15)


# ---------------------------------------------------------------------------
# Closed-form schedule objects
# ---------------------------------------------------------------------------

def test_step_decay_object():
    s = StepDecay(0.001)
    assert [s(t) for t in (0, 29, 30, 59, 60, 90)] == pytest.approx(
        [0.001, 0.001, 0.0005, 0.0005, 0.00025, 0.000125])
    s = StepDecay(0.1, decay=0.1, step_size=3)
    for t in range(20):
        assert s(t) == pytest.approx(0.1 * 0.1 ** (t // 3), rel=1e-12)
    assert isinstance(s(4), float)


def test_multistep_object():
    s = MultiStep(0.05, milestones=[30, 80])
    assert [s(t) for t in (0, 29, 30, 79, 80, 1000)] == pytest.approx(
        [0.05, 0.05, 0.005, 0.005, 0.0005, 0.0005])
    s = MultiStep(1.0, (2, 5, 6), gamma=0.5)
    assert [s(t) for t in range(8)] == pytest.approx([1, 1, .5, .5, .5, .25, .125, .125])


def test_exponential_object():
    s = ExponentialDecay(0.01, gamma=0.9)
    for t in range(50):
        assert s(t) == pytest.approx(0.01 * 0.9 ** t, rel=1e-12)
    assert s(10) == pytest.approx(0.0034867844)
    assert ExponentialDecay(0.3, gamma=1.0)(1000) == 0.3


def test_cosine_object_holds_min_lr_after_the_end():
    s = CosineAnnealing(0.001, 100)
    for t in range(101):
        assert s(t) == pytest.approx(cosine_schedule(t, 100, 0.001), rel=1e-12)
    for t in (100, 101, 150, 200, 10**6):
        assert s(t) == 1e-6
    assert CosineAnnealing(0.1, 10, min_lr=0.0)(5) == pytest.approx(0.05)


def test_warmup_cosine_object():
    s = WarmupCosine(0.001, 10, 100)
    for t in range(100):
        assert s(t) == pytest.approx(warmup_cosine(t, 10, 100, 0.001), rel=1e-12, abs=0)
    for t in (100, 101, 10**6):
        assert s(t) == 1e-6
    assert s(0) == 0.0 and s(5) == pytest.approx(0.0005) and s(10) == pytest.approx(0.001)
    # No warmup: plain cosine.
    s0 = WarmupCosine(0.01, 0, 50, min_lr=0.0)
    for t in range(51):
        assert s0(t) == pytest.approx(cosine_schedule(t, 50, 0.01, 0.0), rel=1e-12, abs=1e-18)


def test_docstring_tables():
    w = WarmupCosine(0.001, 10, 100)
    assert [round(w(t), 6) for t in (0, 5, 10, 20, 50, 90, 99)] == \
        [0.0, 0.0005, 0.001, 0.00097, 0.000587, 0.000031, 0.000001]
    c = CosineAnnealing(0.001, total_epochs=100)
    assert [round(c(t), 6) for t in (0, 25, 50, 75, 99, 100)] == \
        [0.001, 0.000854, 0.000501, 0.000147, 0.000001, 0.000001]
    o = OneCycle(0.1, total_steps=100)
    assert [round(o(t), 5) for t in (0, 10, 29, 50, 75)] == \
        [0.004, 0.02952, 0.1, 0.07939, 0.02631]
    assert o(99) == o(100) == pytest.approx(4e-7)


def test_constant():
    c = Constant(0.01)
    assert c(0) == c(5) == c(10**9) == 0.01
    assert c.per_step is False and c.initial_lr == 0.01


# ---------------------------------------------------------------------------
# per_step
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda **k: StepDecay(0.1, 0.5, 10, **k),
    lambda **k: MultiStep(0.1, [10, 20], **k),
    lambda **k: ExponentialDecay(0.1, 0.9, **k),
    lambda **k: CosineAnnealing(0.1, 100, **k),
    lambda **k: WarmupCosine(0.1, 10, 100, **k),
    lambda **k: Constant(0.1, **k),
])
def test_per_step_flag_does_not_change_the_formula(make):
    by_epoch, by_step = make(), make(per_step=True)
    assert by_epoch.per_step is False and by_step.per_step is True
    assert by_epoch.initial_lr == by_step.initial_lr == 0.1
    for t in range(0, 150, 7):
        assert by_epoch(t) == by_step(t)


def test_per_step_counts_steps():
    # 100 steps of warmup out of 1000 steps: step 50 is halfway up.
    s = WarmupCosine(0.1, warmup_epochs=100, total_epochs=1000, per_step=True)
    assert s(50) == pytest.approx(0.05)
    assert s(100) == pytest.approx(0.1)
    assert s(550) == pytest.approx(0.05 + 0.5e-6, rel=1e-9)


def test_one_cycle_is_per_step_by_default():
    assert OneCycle(0.1, 100).per_step is True
    assert OneCycle(0.1, 100, per_step=False).per_step is False
    assert ReduceLROnPlateau(0.1).per_step is False


# ---------------------------------------------------------------------------
# OneCycle
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("total,pct", [(100, 0.3), (1000, 0.25), (37, 0.4), (10, 0.5)])
def test_one_cycle_peak_and_shape(total, pct):
    s = OneCycle(0.2, total_steps=total, pct_start=pct)
    lrs = np.array([s(t) for t in range(total)])
    peak = pct * total - 1                   # 0-based step of max_lr (PyTorch's convention)
    assert s(peak) == pytest.approx(0.2, rel=1e-12)
    if float(peak).is_integer():
        assert int(np.argmax(lrs)) == int(peak)
    # The (pct * total_steps)-th step is the peak: ramp up before, decay after.
    up = lrs[: math.floor(peak) + 1]
    down = lrs[math.ceil(peak):]
    assert np.all(np.diff(up) > 0) and np.all(np.diff(down) < 0)
    assert lrs[0] == pytest.approx(0.2 / 25)
    assert lrs[-1] == pytest.approx(0.2 / 25 / 1e4)
    assert s.initial_lr == pytest.approx(0.2 / 25) and s.final_lr == pytest.approx(8e-7)


def test_one_cycle_holds_final_lr_after_total_steps():
    s = OneCycle(0.1, total_steps=50)
    final = s(49)
    for t in [50, 51, 60, 500, 10**9]:
        assert s(t) == final  # no exception, no extrapolation
    assert final == pytest.approx(0.1 / 25 / 1e4)


def test_one_cycle_matches_torch():
    torch = pytest.importorskip("torch")
    for total, pct, div, fdiv in [(100, 0.3, 25.0, 1e4), (57, 0.45, 10.0, 100.0)]:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.5)
        ref = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=0.5, total_steps=total, pct_start=pct, div_factor=div,
            final_div_factor=fdiv, anneal_strategy="cos", cycle_momentum=False)
        ours = OneCycle(0.5, total, pct_start=pct, div_factor=div, final_div_factor=fdiv)
        for t in range(total):
            assert ours(t) == pytest.approx(ref.get_last_lr()[0], rel=1e-12)
            opt.step()
            if t < total - 1:
                ref.step()
        # PyTorch cannot step past the end (pytorch/pytorch#38170); we hold the final lr.
        ref.step()
        with pytest.raises(ValueError):
            ref.step()
        assert ours(total + 5) == ours(total - 1)


@pytest.mark.parametrize("make_ours,make_torch", [
    (lambda: StepDecay(0.1, 0.5, 7), lambda o, t: t.optim.lr_scheduler.StepLR(o, 7, 0.5)),
    (lambda: MultiStep(0.1, [5, 12, 30], 0.3),
     lambda o, t: t.optim.lr_scheduler.MultiStepLR(o, [5, 12, 30], 0.3)),
    (lambda: ExponentialDecay(0.1, 0.95),
     lambda o, t: t.optim.lr_scheduler.ExponentialLR(o, 0.95)),
    (lambda: CosineAnnealing(0.1, 40, min_lr=1e-3),
     lambda o, t: t.optim.lr_scheduler.CosineAnnealingLR(o, 40, eta_min=1e-3)),
])
def test_closed_forms_match_torch(make_ours, make_torch):
    torch = pytest.importorskip("torch")
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    ref, ours = make_torch(opt, torch), make_ours()
    for t in range(41):
        assert ours(t) == pytest.approx(ref.get_last_lr()[0], rel=1e-9)
        opt.step()
        ref.step()


# ---------------------------------------------------------------------------
# ReduceLROnPlateau
# ---------------------------------------------------------------------------

def test_plateau_docstring_example():
    s = ReduceLROnPlateau(0.1, factor=0.5, patience=2)
    lrs = [s.step(m) for m in [1.0, 0.9, 0.95, 0.93, 0.92, 0.91, 0.95]]
    assert lrs == pytest.approx([0.1, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025])
    assert s(7) == pytest.approx(0.025) and s.epochs_seen == 7


def test_plateau_reduces_after_patience_bad_epochs():
    s = ReduceLROnPlateau(1.0, factor=0.1, patience=3)
    assert s.step(1.0) == 1.0                  # first value: the baseline
    assert [s.step(1.0) for _ in range(2)] == [1.0, 1.0]
    assert s.step(1.0) == pytest.approx(0.1)   # third bad epoch -> reduce
    assert [s.step(1.0) for _ in range(2)] == pytest.approx([0.1, 0.1])
    assert s.step(1.0) == pytest.approx(0.01)


def test_plateau_improvement_resets_patience():
    s = ReduceLROnPlateau(1.0, factor=0.5, patience=2)
    for m in [5, 5, 4, 4, 3, 3, 2]:            # one bad epoch at a time
        assert s.step(m) == 1.0
    assert s.wait == 0 and s.best == 2


def test_plateau_min_delta_is_absolute():
    s = ReduceLROnPlateau(1.0, factor=0.5, patience=1, min_delta=0.1)
    s.step(1.0)
    assert s.step(0.95) == 0.5                 # 0.05 better is not enough
    assert s.step(0.85) == 0.5 and s.best == 0.85


def test_plateau_mode_max():
    s = ReduceLROnPlateau(1.0, factor=0.5, patience=1, mode="max", min_delta=0.0)
    assert [s.step(m) for m in [0.5, 0.6, 0.7, 0.7, 0.8, 0.6]] == [1, 1, 1, .5, .5, .25]


def test_plateau_nan_is_never_an_improvement():
    s = ReduceLROnPlateau(1.0, factor=0.5, patience=2)
    assert s.step(float("nan")) == 1.0 and s.best is None
    assert s.step(float("nan")) == 0.5
    assert s.step(3.0) == 0.5 and s.best == 3.0


def test_plateau_cooldown():
    s = ReduceLROnPlateau(1.0, factor=0.5, patience=1, cooldown=2)
    lrs = [s.step(1.0) for _ in range(9)]
    # epoch 0 sets the best; 1 reduces; 2-3 cool down; 4 reduces; 5-6 cool down; 7 reduces
    assert lrs == [1, .5, .5, .5, .25, .25, .25, .125, .125]


def test_plateau_min_lr_floor():
    s = ReduceLROnPlateau(1.0, factor=0.1, patience=1, min_lr=0.005)
    lrs = [s.step(1.0) for _ in range(6)]
    assert lrs == pytest.approx([1.0, 0.1, 0.01, 0.005, 0.005, 0.005])


def test_plateau_warmup_then_plateau():
    s = ReduceLROnPlateau(0.1, factor=0.5, patience=2, warmup_epochs=4)
    # During the warmup the lr ramps like warmup_cosine, whatever the metric says.
    assert [s(t) for t in range(5)] == pytest.approx(
        [warmup_cosine(t, 4, 100, 0.1) for t in range(4)] + [0.1])
    assert [s.step(m) for m in [9, 9, 9, 9]] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert s.best is None and s.wait == 0      # warmup metrics were ignored
    assert s.step(9) == pytest.approx(0.1)     # first post-warmup value: the baseline
    assert s.step(9) == pytest.approx(0.1)
    assert s.step(9) == pytest.approx(0.05)
    assert s(2) == pytest.approx(0.05)         # warmup formula is for t < warmup_epochs only
    assert s(7) == s(100) == pytest.approx(0.05)


def test_plateau_reset():
    s = ReduceLROnPlateau(0.1, factor=0.5, patience=1)
    for m in [1, 1, 1]:
        s.step(m)
    s.reset()
    assert s(0) == 0.1 and s.best is None and s.epochs_seen == 0


def test_plateau_step_rejects_non_numbers():
    s = ReduceLROnPlateau(0.1)
    for bad in (None, "0.5", True):
        with pytest.raises(TypeError):
            s.step(bad)
    s.step(np.float32(0.5))
    assert s.best == 0.5


def test_plateau_state_dict_round_trip():
    metrics = [1.0, 0.8, 0.81, 0.82, 0.79, 0.85, 0.9, float("nan"), 0.7, 0.71, 0.72, 0.73,
               0.74, 0.6, 0.65, 0.66, 0.67]
    kwargs = {"factor": 0.3, "patience": 2, "cooldown": 1, "min_lr": 1e-4, "warmup_epochs": 2}
    full = ReduceLROnPlateau(0.1, **kwargs)
    expected = [full.step(m) for m in metrics]
    for k in range(len(metrics) + 1):
        first = ReduceLROnPlateau(0.1, **kwargs)
        got = [first.step(m) for m in metrics[:k]]
        saved = json.loads(json.dumps(first.state_dict(), allow_nan=False))
        resumed = ReduceLROnPlateau(0.1, **kwargs)
        resumed.load_state_dict(saved)
        assert resumed.state_dict() == first.state_dict()
        got += [resumed.step(m) for m in metrics[k:]]
        assert got == expected                 # bit-identical continuation


def test_plateau_load_state_dict_rejects_wrong_keys():
    with pytest.raises(ValueError, match="keys"):
        ReduceLROnPlateau(0.1).load_state_dict({"lr": 0.1})


# ---------------------------------------------------------------------------
# State of the closed-form schedules
# ---------------------------------------------------------------------------

STATELESS = [
    Constant(0.1), StepDecay(0.1), MultiStep(0.1, [3]), ExponentialDecay(0.1, 0.9),
    CosineAnnealing(0.1, 10), WarmupCosine(0.1, 2, 10), OneCycle(0.1, 10),
    LambdaSchedule(lambda e: 0.1),
]


@pytest.mark.parametrize("sched", STATELESS, ids=lambda s: type(s).__name__)
def test_stateless_state_dict(sched):
    assert sched.state_dict() == {}
    assert json.loads(json.dumps(sched.state_dict())) == {}
    before = [sched(t) for t in range(12)]
    sched.load_state_dict({})
    assert [sched(t) for t in range(12)] == before
    with pytest.raises(ValueError):
        sched.load_state_dict({"lr": 1.0})


@pytest.mark.parametrize("sched", STATELESS + [ReduceLROnPlateau(0.1)],
                         ids=lambda s: type(s).__name__)
def test_common_interface(sched):
    assert isinstance(sched, Schedule)
    assert isinstance(sched.per_step, bool)
    assert sched.initial_lr > 0
    assert type(sched).__name__ in repr(sched)
    assert isinstance(sched(3), float)


@pytest.mark.parametrize("t,exc", [(-1, ValueError), (float("nan"), ValueError),
                                   (float("inf"), ValueError), (True, TypeError),
                                   ("3", TypeError), (None, TypeError)])
def test_bad_t(t, exc):
    with pytest.raises(exc):
        StepDecay(0.1)(t)


def test_numpy_t_is_accepted():
    assert StepDecay(0.1, 0.5, 2)(np.int64(4)) == pytest.approx(0.025)


# ---------------------------------------------------------------------------
# Constructor validation
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("make,exc,match", [
    (lambda: StepDecay(0.0), ValueError, "initial_lr"),
    (lambda: StepDecay(-0.1), ValueError, "initial_lr"),
    (lambda: StepDecay(float("nan")), ValueError, "initial_lr"),
    (lambda: StepDecay("0.1"), TypeError, "initial_lr"),
    (lambda: StepDecay(0.1, decay=0.0), ValueError, "decay"),
    (lambda: StepDecay(0.1, decay=1.5), ValueError, "decay"),
    (lambda: StepDecay(0.1, step_size=0), ValueError, "step_size"),
    (lambda: StepDecay(0.1, step_size=2.5), TypeError, "step_size"),
    (lambda: MultiStep(0.1, [10, 5]), ValueError, "increasing"),
    (lambda: MultiStep(0.1, [0, 5]), ValueError, "milestone"),
    (lambda: MultiStep(0.1, 5), TypeError, "milestones"),
    (lambda: MultiStep(0.1, [5], gamma=2.0), ValueError, "gamma"),
    (lambda: ExponentialDecay(0.1, 0.0), ValueError, "gamma"),
    (lambda: ExponentialDecay(0.1, 1.01), ValueError, "gamma"),
    (lambda: CosineAnnealing(0.1, 0), ValueError, "total_epochs"),
    (lambda: CosineAnnealing(0.1, 10, min_lr=-1e-3), ValueError, "min_lr"),
    (lambda: CosineAnnealing(0.1, 10, min_lr=0.2), ValueError, "min_lr"),
    (lambda: WarmupCosine(0.1, 10, 10), ValueError, "warmup_epochs"),
    (lambda: WarmupCosine(0.1, 11, 10), ValueError, "warmup_epochs"),
    (lambda: WarmupCosine(0.1, -1, 10), ValueError, "warmup_epochs"),
    (lambda: WarmupCosine(0.1, 1, 0), ValueError, "total_epochs"),
    (lambda: OneCycle(0.0, 100), ValueError, "max_lr"),
    (lambda: OneCycle(0.1, 1), ValueError, "total_steps"),
    (lambda: OneCycle(0.1, 100, pct_start=0.0), ValueError, "pct_start"),
    (lambda: OneCycle(0.1, 100, pct_start=1.0), ValueError, "pct_start"),
    (lambda: OneCycle(0.1, 100, div_factor=0.5), ValueError, "div_factor"),
    (lambda: OneCycle(0.1, 100, final_div_factor=0.0), ValueError, "final_div_factor"),
    (lambda: ReduceLROnPlateau(0.1, factor=1.0), ValueError, "factor"),
    (lambda: ReduceLROnPlateau(0.1, factor=0.0), ValueError, "factor"),
    (lambda: ReduceLROnPlateau(0.1, patience=-1), ValueError, "patience"),
    (lambda: ReduceLROnPlateau(0.1, mode="auto"), ValueError, "mode"),
    (lambda: ReduceLROnPlateau(0.1, min_delta=-1.0), ValueError, "min_delta"),
    (lambda: ReduceLROnPlateau(0.1, cooldown=-1), ValueError, "cooldown"),
    (lambda: ReduceLROnPlateau(0.1, min_lr=1.0), ValueError, "min_lr"),
    (lambda: ReduceLROnPlateau(0.1, warmup_epochs=-2), ValueError, "warmup_epochs"),
    (lambda: ReduceLROnPlateau(0.1, monitor=3), TypeError, "monitor"),
    (lambda: Constant(0), ValueError, "lr"),
])
def test_constructor_validation(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ---------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------

def test_resolve_none_is_constant():
    s = resolve(None, 0.01)
    assert isinstance(s, Constant) and s(0) == s(99) == 0.01 and s.per_step is False


def test_resolve_schedule_object_is_returned_as_is():
    s = OneCycle(0.1, 100)
    assert resolve(s, 123.0) is s


def test_resolve_plain_callable_counts_epochs():
    s = resolve(lambda epoch: 0.1 / (1 + epoch), 1.0)
    assert isinstance(s, LambdaSchedule) and s.per_step is False
    assert s(0) == 0.1 and s(4) == pytest.approx(0.02)
    assert s.state_dict() == {}


def test_resolve_seed_function_via_lambda():
    s = resolve(lambda e: warmup_cosine(e, 10, 100, 0.001), 0.0)
    assert [round(s(e), 6) for e in (0, 5, 10, 99)] == [0.0, 0.0005, 0.001, 0.000001]
    assert all(type(s(e)) is float for e in range(3))


def test_resolve_duck_typed_schedule():
    class MySchedule:
        per_step = True

        def __call__(self, t):
            return 0.5

    mine = MySchedule()
    assert resolve(mine, 0.1) is mine


@pytest.mark.parametrize("bad", [float("nan"), -0.1, float("inf"), "x", None])
def test_lambda_schedule_checks_its_output(bad):
    with pytest.raises(ValueError, match="epoch 3"):
        resolve(lambda e: bad, 0.1)(3)


def test_resolve_rejects_non_callables():
    with pytest.raises(TypeError):
        resolve(0.1, 0.1)
    with pytest.raises(TypeError):
        resolve("cosine", 0.1)


def test_all_is_complete():
    for name in schedules.__all__:
        assert hasattr(schedules, name)


# ---------------------------------------------------------------------------
# Property: every schedule stays within its bounds
# ---------------------------------------------------------------------------

lrs = st.floats(1e-6, 10.0)
fractions = st.floats(0.0, 1.0)
times = st.one_of(st.integers(0, 300), st.integers(0, 10**7))
TOL = 1e-12


@st.composite
def bounded_schedules(draw):
    """(schedule, low, high, warmup) with low <= lr <= high for t >= warmup, 0 <= lr before."""
    kind = draw(st.sampled_from(["step", "multi", "exp", "cos", "warm", "one", "const"]))
    lr = draw(lrs)
    if kind == "const":
        return Constant(lr), lr, lr, 0
    if kind == "step":
        return StepDecay(lr, draw(st.floats(0.01, 1.0)), draw(st.integers(1, 50))), 0.0, lr, 0
    if kind == "multi":
        ms = sorted(set(draw(st.lists(st.integers(1, 400), max_size=6))))
        return MultiStep(lr, ms, draw(st.floats(0.01, 1.0))), 0.0, lr, 0
    if kind == "exp":
        return ExponentialDecay(lr, draw(st.floats(0.5, 1.0))), 0.0, lr, 0
    min_lr = lr * draw(fractions)
    total = draw(st.integers(1, 400))
    if kind == "cos":
        return CosineAnnealing(lr, total, min_lr), min_lr, lr, 0
    if kind == "warm":
        warmup = draw(st.integers(0, total - 1))
        return WarmupCosine(lr, warmup, total, min_lr), min_lr, lr, warmup
    s = OneCycle(lr, draw(st.integers(2, 400)), draw(st.floats(0.01, 0.99)),
                 draw(st.floats(1.0, 100.0)), draw(st.floats(1.0, 1e5)))
    return s, s.final_lr, lr, 0


@settings(max_examples=300, deadline=None)
@given(bounded_schedules(), times)
def test_schedules_stay_within_bounds(sched_bounds, t):
    sched, low, high, warmup = sched_bounds
    lr = sched(t)
    assert math.isfinite(lr)
    assert lr <= high * (1 + TOL)
    if t >= warmup:
        assert lr >= low * (1 - TOL)
    else:
        assert lr >= 0.0


@settings(max_examples=100, deadline=None)
@given(lr=lrs, factor=st.floats(0.01, 0.99), patience=st.integers(0, 5),
       cooldown=st.integers(0, 3), min_frac=fractions, warmup=st.integers(0, 5),
       mode=st.sampled_from(["min", "max"]),
       metrics=st.lists(st.one_of(st.floats(-1e3, 1e3), st.just(float("nan"))), max_size=40))
def test_plateau_stays_within_bounds_and_never_increases(lr, factor, patience, cooldown,
                                                         min_frac, warmup, mode, metrics):
    s = ReduceLROnPlateau(lr, factor, patience, mode, 1e-4, cooldown, lr * min_frac, warmup)
    prev = lr
    for epoch, m in enumerate(metrics):
        nxt = s.step(m)
        assert nxt == s(epoch + 1)
        assert 0.0 <= nxt <= lr
        if epoch + 1 >= warmup:
            assert s.min_lr <= nxt <= prev
            prev = nxt
