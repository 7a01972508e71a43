"""Fall back to one thread when the machine is oversubscribed.

An OpenMP team synchronises at every phase of a training step.  When other
processes keep the cores busy, a thread waiting at a barrier can burn a whole
scheduler time slice while its partner is not running: measured here (2
cores, load 6), a toy epoch took 4-8 s on 2 threads against 11 ms on 1.

Because every kernel splits its work over a grid fixed by the shape, results
do not depend on the thread count, so the count may change from one step to
the next.  The governor times steps on the configured count and on one
thread, keeps the faster, and re-checks with exponential back-off; checking
costs a few steps on the slower arm, never a different result.

Two details matter on a quiet machine as much as on a busy one:

- The first step after switching team size pays for waking the sleeping
  OpenMP workers (measured here: 410 us against 130 us for a toy step), so
  each probe arm discards its first step.
- The decision and the step count since it are kept per network shape for
  the whole process, so a re-check happens after as many steps whether they
  come from one long ``fit`` or from many one-epoch fits.
"""
from fastnet import _parallel

_PROBE_SECONDS = 0.02        # wall time a probe window aims for, per arm
_MIN_WINDOW = 3              # timed steps per probe arm (after its warm-up step)
_MAX_WINDOW = 8
_FIRST_RECHECK = 64          # steps before the first re-check
_MAX_RECHECK = 4096
_SLOW = 3.0                  # a team step this many times the reference is "slow"
_SLOW_STEPS = 3              # this many slow steps among the last 8 start a re-check
_cache = {}                  # per (shape, configured threads): _Decision


class _Decision:
    """What the governor knows about one network shape, across fits."""

    def __init__(self, configured):
        self.choice = configured
        self.recheck = 0            # steps between checks; 0: never checked
        self.since = 0              # steps since the last check
        self.reference = None       # the faster arm's median step time


class ThreadGovernor:
    """Per-step thread count for a training loop.

    Use ``n = gov.threads()`` before a step and ``gov.record(n, seconds)``
    after it.
    """

    def __init__(self, key, configured=None):
        self.configured = configured or _parallel.get_num_threads()
        self._state = _cache.setdefault((key, self.configured), _Decision(self.configured))
        self._probe = None          # arms still to time, current first
        self._times = {}
        self._warm = False          # current arm's warm-up step done
        self._window = 0
        self._recent = []           # last steps' "slow" flags
        if self.configured > 1 and self._state.recheck == 0:
            self._start_probe()

    def threads(self):
        if self.configured <= 1:
            return 1
        if self._probe:
            return self._probe[0]
        return self._state.choice

    def record(self, n, seconds):
        if self.configured <= 1:
            return
        if self._probe:
            self._record_probe(n, seconds)
            return
        s = self._state
        s.since += 1
        if s.choice != 1 and s.reference is not None:
            self._recent = self._recent[-7:] + [seconds > _SLOW * s.reference]
        if s.since >= s.recheck or sum(self._recent) >= _SLOW_STEPS:
            self._start_probe()

    def _record_probe(self, n, seconds):
        if not self._warm:           # wake-up step of this arm: not timed
            self._warm = True
            return
        times = self._times.setdefault(n, [])
        times.append(seconds)
        if not self._window:
            self._window = max(_MIN_WINDOW,
                               min(_MAX_WINDOW, int(_PROBE_SECONDS / max(seconds, 1e-6))))
        # the team is far slower than one thread: no need to time it further
        hopeless = (n != 1 and len(times) >= 2 and 1 in self._times
                    and min(times) > 2 * self._median(1))
        if len(times) >= self._window or hopeless:
            self._probe.pop(0)
            self._warm = False
            if not self._probe:
                self._decide()

    def _median(self, n):
        t = sorted(self._times.get(n, [float("inf")]))
        return t[len(t) // 2]

    def _decide(self):
        s = self._state
        one, many = self._median(1), self._median(self.configured)
        stable = s.recheck > 0 and s.choice == (1 if one < 0.9 * many else self.configured)
        s.choice = 1 if one < 0.9 * many else self.configured
        s.reference = min(one, many)
        s.recheck = min(_MAX_RECHECK, 2 * s.recheck) if stable else _FIRST_RECHECK
        s.since = 0
        self._probe = None
        self._recent = []

    def _start_probe(self):
        self._probe = [1, self.configured]
        self._times = {}
        self._warm = False
        self._window = 0


def reset():
    """Forget cached decisions (tests)."""
    _cache.clear()


def decisions():
    """{(shape key, configured threads): (choice, steps between checks)}, for
    diagnostics and tests."""
    return {k: (d.choice, d.recheck) for k, d in _cache.items()}

