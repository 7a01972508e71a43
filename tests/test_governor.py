"""The per-step thread governor (fastnet/_threads.py), driven by synthetic
step times: which team size it picks, when it looks again, and that its
choice never changes a result."""
import numpy as np
import pytest

import fastnet
from fastnet import _threads as _governor
from fastnet._threads import ThreadGovernor


@pytest.fixture(autouse=True)
def _fresh_cache():
    _governor.reset()
    yield
    _governor.reset()


def drive(gov, steps, cost):
    """Run `steps` steps; cost(n_threads, i) -> seconds.  Returns the team
    sizes used, step by step."""
    used = []
    for i in range(steps):
        n = gov.threads()
        gov.record(n, cost(n, i))
        used.append(n)
    return used


def with_wakeup(fast_team, slow_first=5.0):
    """Step costs: 1 thread 190 us, the team 130 us (or 400 us when not
    fast_team); the first team step after a 1-thread step pays a wake-up."""
    last = {"n": 1}

    def cost(n, i):
        t = 190e-6 if n == 1 else (130e-6 if fast_team else 400e-6)
        if n != 1 and last["n"] == 1:
            t *= slow_first
        last["n"] = n
        return t
    return cost


def test_one_thread_configured_never_probes():
    gov = ThreadGovernor("k", configured=1)
    assert set(drive(gov, 50, lambda n, i: 1e-4)) == {1}


def test_wakeup_step_does_not_decide_against_the_team():
    # Before the fix, the team's first (wake-up) step alone made it "hopeless".
    gov = ThreadGovernor("k", configured=2)
    used = drive(gov, 40, with_wakeup(fast_team=True))
    assert used[-1] == 2
    assert _governor.decisions()[("k", 2)][0] == 2


def test_slower_team_falls_back_to_one_thread():
    gov = ThreadGovernor("k", configured=2)
    used = drive(gov, 40, with_wakeup(fast_team=False))
    assert used[-1] == 1
    # the team arm was cut short once it was clearly slower
    assert used.count(2) < 8


@pytest.mark.parametrize("team_time, expected", [(180e-6, 1), (160e-6, 2)])
def test_near_tie_goes_to_one_thread(team_time, expected):
    # one thread 190 us: a team at 180 us (5 % faster) is not worth a second
    # core, one at 160 us (16 % faster) is
    gov = ThreadGovernor("k", configured=2)
    drive(gov, 40, lambda n, i: 190e-6 if n == 1 else team_time)
    assert _governor.decisions()[("k", 2)][0] == expected


def test_recheck_counts_steps_across_fits():
    # 32-step fits: the re-check after 64 steps must still come, in the
    # third fit, instead of never (each fit used to restart the count).
    cost = with_wakeup(fast_team=False)
    drive(ThreadGovernor("k", configured=2), 32, cost)      # probes, picks 1
    assert _governor.decisions()[("k", 2)][0] == 1
    probes = 0
    for _ in range(6):
        used = drive(ThreadGovernor("k", configured=2), 32, cost)
        probes += used.count(2) > 0
    assert probes >= 1
    # and a decision that keeps being confirmed is checked less often
    assert _governor.decisions()[("k", 2)][1] > 64


def test_probe_longer_than_a_fit_is_finished_by_the_next_fit():
    # A wide network's epoch is 4 steps of ~0.3 s (1 thread: ~0.5 s).  Each
    # fit used to restart the probe on its one-thread arm, so every step of
    # every fit ran on one thread.
    cost = lambda n, i: 0.5 if n == 1 else 0.3  # noqa: E731
    used = []
    for _ in range(4):
        used += drive(ThreadGovernor("wide", configured=2), 4, cost)
    assert _governor.decisions()[("wide", 2)] == (2, 64)
    # steps this long are timed from the first one (a wake-up is negligible)
    assert used[:4] == [1, 1, 2, 2]
    assert set(used[4:]) == {2}


def test_load_change_switches_back_and_forth():
    state = {"busy": False}

    def cost(n, i):
        if n == 1:
            return 190e-6
        return 5e-3 if state["busy"] else 130e-6

    gov = ThreadGovernor("k", configured=2)
    drive(gov, 30, cost)
    assert gov.threads() == 2
    state["busy"] = True            # another process takes a core
    used = drive(gov, 30, cost)
    assert used[-1] == 1
    assert used.count(2) <= 8       # a few slow steps, then a probe
    state["busy"] = False           # it goes away: found at the next re-check
    used = drive(gov, 200, cost)
    assert used[-1] == 2


def clocked(now, cost):
    """`cost`, advancing the fake clock now[0] by each step's time."""
    def step(n, i):
        t = cost(n, i)
        now[0] += t
        return t
    return step


def test_a_one_thread_choice_is_rechecked_by_elapsed_time(monkeypatch):
    # a neighbour holds the other core while the probe runs (the team is slower
    # then), then leaves: a network of few, long steps must not wait 64 steps
    now = [0.0]
    monkeypatch.setattr(_governor, "_clock", lambda: now[0])
    state = {"busy": True}

    def mnist(n, i):
        return 0.024 if n == 1 else (0.05 if state["busy"] else 0.012)

    gov = ThreadGovernor("mnist", configured=2)
    drive(gov, 12, clocked(now, mnist))
    assert _governor.decisions()[("mnist", 2)][0] == 1
    state["busy"] = False
    used = drive(gov, 40, clocked(now, mnist))    # fewer than the 64-step re-check
    assert used[-1] == 2
    # a one-thread choice that keeps being confirmed is checked less and less often
    gov = ThreadGovernor("toy", configured=2)
    used = drive(gov, 5000, clocked(now, lambda n, i: 2e-4 if n == 1 else 4e-4))
    assert used[-1] == 1 and used.count(2) < 80
    assert _governor._cache[("toy", 2)].wait > _governor._FIRST_RECHECK_SECONDS


def test_shapes_are_decided_separately():
    drive(ThreadGovernor("small", configured=2), 40, with_wakeup(fast_team=False))
    drive(ThreadGovernor("large", configured=2), 40, with_wakeup(fast_team=True))
    d = _governor.decisions()
    assert d[("small", 2)][0] == 1 and d[("large", 2)][0] == 2


def test_team_size_changes_never_change_results():
    # Whatever the governor picks step by step, the weights are the same bits.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 12)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)

    def train(threads_of_step):
        _governor.reset()
        original = ThreadGovernor.threads
        counter = {"i": 0}

        def threads(self):
            counter["i"] += 1
            return threads_of_step(counter["i"])
        ThreadGovernor.threads = threads
        try:
            with fastnet.threads(2):
                m = fastnet.MLP([12, 32, 32, 2], dropout=0.3, seed=3)
                m.fit(X, y, epochs=3, batch_size=32, optimizer="sgd", lr=0.05, verbose=0)
        finally:
            ThreadGovernor.threads = original
        return m.get_weights()

    a = train(lambda i: 1)
    b = train(lambda i: 2)
    c = train(lambda i: 1 + (i * 7919) % 2)
    for wa, wb, wc in zip(a, b, c):
        np.testing.assert_array_equal(wa, wb)
        np.testing.assert_array_equal(wa, wc)
