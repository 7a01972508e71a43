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
"""
import time

from fastnet import _parallel

_PROBE_SECONDS = 0.02        # wall time a probe window aims for, per arm
_MAX_WINDOW = 8              # steps per probe window
_FIRST_RECHECK = 64          # steps before the first re-check
_MAX_RECHECK = 4096
_cache = {}                  # decisions survive across fits of the same shape


class ThreadGovernor:
    """Per-step thread count for a training loop.

    Use ``n = gov.threads()`` before a step and ``gov.record(n, seconds)``
    after it.
    """

    def __init__(self, key, configured=None):
        self.configured = configured or _parallel.get_num_threads()
        self.key = key
        state = _cache.get((key, self.configured))
        self._choice = state["choice"] if state else self.configured
        self._recheck = state["recheck"] if state else 0
        self._since = 0
        self._probe = [] if not state else None   # pending arms to time
        if self._probe is not None and self.configured > 1:
            self._probe = [1, self.configured]
        self._times = {}
        self._window = 0
        self._reference = None

    def threads(self):
        if self.configured <= 1:
            return 1
        if self._probe:
            return self._probe[0]
        return self._choice

    def record(self, n, seconds):
        if self.configured <= 1:
            return
        if self._probe:
            times = self._times.setdefault(n, [])
            times.append(seconds)
            if not self._window:
                self._window = max(2, min(_MAX_WINDOW, int(_PROBE_SECONDS / max(seconds, 1e-6))))
            # the team is far slower than one thread: no need to time it further
            hopeless = n != 1 and seconds > 2 * self._median(1)
            if len(times) >= self._window or hopeless:
                self._probe.pop(0)
                if not self._probe:
                    self._decide()
            return
        self._since += 1
        if self._reference is None:
            self._reference = seconds
        # the team got far slower than usual: the load changed, look again
        slow = self._choice != 1 and seconds > 3 * self._reference and self._since > 4
        if self._since >= self._recheck or slow:
            self._start_probe()

    def _median(self, n):
        t = sorted(self._times.get(n, [float("inf")]))
        return t[len(t) // 2]

    def _decide(self):
        one, many = self._median(1), self._median(self.configured)
        previous = self._choice
        self._choice = 1 if one < 0.9 * many else self.configured
        self._reference = min(one, many)
        stable = previous == self._choice
        self._recheck = min(_MAX_RECHECK, max(_FIRST_RECHECK, 2 * self._recheck if stable
                                              else _FIRST_RECHECK))
        self._since = 0
        self._times = {}
        self._window = 0
        _cache[(self.key, self.configured)] = {"choice": self._choice,
                                               "recheck": self._recheck,
                                               "when": time.monotonic()}

    def _start_probe(self):
        self._probe = [1, self.configured]
        self._times = {}
        self._window = 0


def reset():
    """Forget cached decisions (tests)."""
    _cache.clear()
