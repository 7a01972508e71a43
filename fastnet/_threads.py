"""fastnet's thread policy, in one module.

* **The process-wide count** of the native kernels: :func:`get_num_threads`,
  :func:`set_num_threads` (kept by ``_parallel``; the default honours
  ``OMP_NUM_THREADS``) and the :func:`threads` block.
* **The estimators' rule** (:mod:`fastnet.sklearn`): :func:`effective_n_threads`
  (1 inside a worker thread of joblib's threading backend) and
  :data:`shared_limit` (concurrent fits in one process run on the smallest count
  any of them asked for).
* **Per step** (:class:`ThreadGovernor`, used by the training loop's stepper): a
  network's steps run on one thread when the team does not make them faster.

Results never depend on the count: every kernel splits its work over a grid fixed
by the shape, so the count may change from one step to the next.
"""
import contextlib
import threading
import time

from fastnet import _parallel

__all__ = ["get_num_threads", "set_num_threads", "threads", "optional_threads",
           "effective_n_threads", "shared_limit", "ThreadGovernor"]

get_num_threads = _parallel.get_num_threads
set_num_threads = _parallel.set_num_threads


@contextlib.contextmanager
def threads(n):
    """Run the block with fastnet's kernels on `n` threads, then restore.

    Example
    -------
    >>> with fastnet.threads(1):
    ...     model.fit(X, y)
    """
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)


def optional_threads(n):
    """:func:`threads` for `n`, or a block that changes nothing for None (an option
    not given)."""
    return contextlib.nullcontext() if n is None else threads(n)


# ---- the estimators' rule --------------------------------------------------------------

def _in_joblib_worker_thread():
    """True inside a worker thread of joblib's threading backend."""
    if threading.current_thread() is threading.main_thread():
        return False
    try:
        from joblib.parallel import get_active_backend
        backend, _ = get_active_backend()
    except Exception:  # joblib missing or changed: no special case
        return False
    return (getattr(backend, "nesting_level", 0) or 0) >= 1


def effective_n_threads(n_threads=None):
    """The fastnet thread count an estimator with this ``n_threads`` uses here.

    ``None``: :func:`get_num_threads` (which joblib's loky workers have already
    limited through ``OMP_NUM_THREADS``), or 1 in a worker thread of joblib's
    threading backend.  A positive int is returned as is.
    """
    if n_threads is None:
        return 1 if _in_joblib_worker_thread() else get_num_threads()
    return n_threads


class _SharedLimit:
    """Process-wide fastnet thread count shared by concurrent fits.

    While any limit is active the count is the smallest requested; when the
    last one exits, the count in force before the first one is restored.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._active = {}
        self._saved = None
        self._next = 0

    @contextlib.contextmanager
    def __call__(self, n):
        token = self._enter(n)
        try:
            yield
        finally:
            self._exit(token)

    def _enter(self, n):
        with self._lock:
            if not self._active:
                self._saved = get_num_threads()
            token = self._next
            self._next += 1
            self._active[token] = n
            set_num_threads(min(self._active.values()))
            return token

    def _exit(self, token):
        with self._lock:
            del self._active[token]
            set_num_threads(min(self._active.values()) if self._active else self._saved)


shared_limit = _SharedLimit()


# ---- per step: the governor --------------------------------------------------------------
#
# The team hands every phase of a training step to its helpers and the data they
# write moves between cores; for a small network that costs more than the second
# core gives.  The governor times steps on the configured count and on one thread,
# keeps the team only when it is clearly faster (by _TEAM_GAIN), and re-checks with
# exponential back-off; checking costs a few steps on the slower arm, never a
# different result.  A near tie goes to one thread: it leaves the other core free.
#
# Two details matter on a quiet machine as much as on a busy one:
#
# - The first step after switching team size pays for waking sleeping helpers, so
#   each probe arm discards its first step, unless that step is long enough (over
#   _PROBE_SECONDS) for the wake-up not to matter.
# - A one-thread choice is also re-checked by elapsed time (_FIRST_RECHECK_SECONDS,
#   doubling while it holds): a probe that ran while a neighbour held the other core
#   (OpenBLAS's workers spin ~0.1 s after every NumPy product) picks one thread, and
#   a network of few, long steps (mnist-like: 16 steps of 12 ms an epoch) would keep
#   it for 64 steps, several epochs at half speed, after the neighbour went quiet.
# - The decision, the step count since it and a probe in progress are kept per
#   network shape for the whole process: a re-check happens after as many steps
#   whether they come from one long ``fit`` or from many one-epoch fits, and a probe
#   longer than one fit (a 4-step epoch of a wide network) is finished by the next
#   fit instead of restarted on its one-thread arm.
#
# Measurements behind these choices: docs/measurements.md.

_PROBE_SECONDS = 0.02        # wall time a probe window aims for, per arm
_MIN_WINDOW = 3              # timed steps per probe arm (after its warm-up step)
_MAX_WINDOW = 8
_LONG_STEP_WINDOW = 2        # ... for steps of over _PROBE_SECONDS each
_FIRST_RECHECK = 64          # steps before the first re-check
_MAX_RECHECK = 4096
_TEAM_GAIN = 0.9            # the team must take at most this fraction of one thread's time
_SLOW = 3.0                  # a team step this many times the reference is "slow"
_SLOW_STEPS = 3              # this many slow steps among the last 8 start a re-check
_FIRST_RECHECK_SECONDS = 0.5  # a one-thread choice is re-checked after this long ...
_MAX_RECHECK_SECONDS = 60.0   # ... doubling while it holds, up to this
_clock = time.monotonic
_cache = {}                  # per (shape, configured threads): _Decision


class _Probe:
    """Timing of the two arms (one thread, then the configured team)."""

    def __init__(self, configured):
        self.arms = [1, configured]  # arms still to time, current first
        self.times = {}
        self.warm = False            # current arm's warm-up step done
        self.window = 0


class _Decision:
    """What the governor knows about one network shape, across fits."""

    def __init__(self, configured):
        self.choice = configured
        self.recheck = 0            # steps between checks; 0: never checked
        self.since = 0              # steps since the last check
        self.reference = None       # the faster arm's median step time
        self.probe = None           # a _Probe in progress, or None
        self.recent = []            # last steps' "slow" flags
        self.decided_at = 0.0       # _clock() at the last decision
        self.wait = 0.0             # seconds a one-thread choice holds before a re-check


class ThreadGovernor:
    """Per-step thread count for a training loop.

    Use ``n = gov.threads()`` before a step and ``gov.record(n, seconds)``
    after it; for a block of steps run in one call, ``gov.block(remaining)``
    says how many may run at that count and ``gov.record(n, seconds, steps)``
    takes their total time.
    """

    def __init__(self, key, configured=None):
        self.configured = configured or _parallel.get_num_threads()
        self._state = _cache.setdefault((key, self.configured), _Decision(self.configured))
        if self.configured > 1 and self._state.recheck == 0 and self._state.probe is None:
            self._start_probe()

    def threads(self):
        if self.configured <= 1:
            return 1
        probe = self._state.probe
        return probe.arms[0] if probe is not None else self._state.choice

    def block(self, remaining):
        """Steps (at most `remaining`) that may run at the current count before
        the governor needs to see a step again: 1 while it times steps."""
        if self.configured <= 1:
            return remaining
        s = self._state
        if s.probe is not None:
            return 1
        return max(1, min(remaining, s.recheck - s.since))

    def record(self, n, seconds, steps=1):
        if self.configured <= 1:
            return
        s = self._state
        if s.probe is not None:
            self._record_probe(s.probe, n, seconds)
            return
        s.since += steps
        if s.choice != 1 and s.reference is not None:
            slow = seconds / steps > _SLOW * s.reference
            s.recent = (s.recent + [slow] * min(steps, 8))[-8:]
        if s.since >= s.recheck or sum(s.recent) >= _SLOW_STEPS or \
                (s.choice == 1 and _clock() - s.decided_at >= s.wait):
            self._start_probe()

    def _record_probe(self, probe, n, seconds):
        if n != probe.arms[0]:       # not the arm being timed (cannot happen in fit)
            return
        if not probe.warm:
            probe.warm = True
            if seconds < _PROBE_SECONDS:     # wake-up step of this arm: not timed
                return
        times = probe.times.setdefault(n, [])
        times.append(seconds)
        if not probe.window:
            probe.window = (_LONG_STEP_WINDOW if seconds >= _PROBE_SECONDS else
                            max(_MIN_WINDOW, min(_MAX_WINDOW,
                                                 int(_PROBE_SECONDS / max(seconds, 1e-6)))))
        # the team is far slower than one thread: no need to time it further
        hopeless = (n != 1 and len(times) >= 2 and 1 in probe.times
                    and min(times) > 2 * _median(probe.times[1]))
        if len(times) >= probe.window or hopeless:
            probe.arms.pop(0)
            probe.warm = False
            if not probe.arms:
                self._decide(probe)

    def _decide(self, probe):
        s = self._state
        one, many = _median(probe.times[1]), _median(probe.times[self.configured])
        choice = self.configured if many < _TEAM_GAIN * one else 1
        stable = s.recheck > 0 and s.choice == choice
        s.choice = choice
        s.reference = min(one, many)
        s.recheck = min(_MAX_RECHECK, 2 * s.recheck) if stable else _FIRST_RECHECK
        s.wait = min(_MAX_RECHECK_SECONDS, 2 * s.wait) if stable else _FIRST_RECHECK_SECONDS
        s.decided_at = _clock()
        s.since = 0
        s.probe = None
        s.recent = []

    def _start_probe(self):
        self._state.probe = _Probe(self.configured)


def _median(times):
    t = sorted(times)
    return t[len(t) // 2]


def reset():
    """Forget cached decisions (tests)."""
    _cache.clear()


def decisions():
    """{(shape key, configured threads): (choice, steps between checks)}, for
    diagnostics and tests."""
    return {k: (d.choice, d.recheck) for k, d in _cache.items()}

