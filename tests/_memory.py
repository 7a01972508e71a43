"""Extra anonymous memory of a piece of code, measured in a child process.

The child runs ``setup`` (which builds the data), reports its anonymous resident
memory (``RssAnon`` of /proc/self/status: heap and anonymous maps, not the page
cache a memory map reads through), then runs ``body``.  The parent samples the child's
``RssAnon`` every millisecond until it exits, so the peak of ``body`` is seen even
when it is freed before the end.  Run as ``python tests/_memory.py`` for the figures
of issue 18 at larger sizes.
"""
import os
import subprocess
import sys
import tempfile
import textwrap
import time

_CHILD = """
import sys
def _anon_kb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
{setup}
print("baseline", _anon_kb(), flush=True)
sys.stdin.readline()           # the parent is sampling: go
{body}
print("done", _anon_kb(), flush=True)
"""


def _anon_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def extra_anon_bytes(setup, body, env=None, timeout=300):
    """Peak anonymous memory of `body` above what the child held after `setup` (bytes).

    Raises RuntimeError (with the child's stderr) when the child fails, and
    subprocess.TimeoutExpired after `timeout` seconds (the child is killed).
    """
    code = _CHILD.format(setup=textwrap.dedent(setup), body=textwrap.dedent(body))
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + timeout
    try:
        first = child.stdout.readline().split()
        if not first or first[0] != "baseline":
            child.wait(timeout=max(1.0, deadline - time.monotonic()))
            raise RuntimeError(f"the measured child failed:\n{child.stderr.read()}")
        baseline = int(first[1])
        peak = baseline
        child.stdin.write("\n")
        child.stdin.flush()
        while child.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(child.args, timeout)
            now = _anon_kb(child.pid)
            if now is not None:
                peak = max(peak, now)
            time.sleep(0.001)
        if child.returncode != 0:
            raise RuntimeError(f"the measured child failed:\n{child.stderr.read()}")
        return (peak - baseline) * 1024
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


_FIT_SETUP = """
import numpy as np, fastnet
rows, cols = {rows}, {cols}
rng = np.random.default_rng(0)
X = np.empty((rows, cols), np.float32)
for s in range(0, rows, 65536):
    X[s:s + 65536] = rng.standard_normal((min(65536, rows - s), cols), dtype=np.float32)
y = (X[:, 0] > 0).astype(np.int64)
{prepare}
model = fastnet.MLP([cols, 64, 2], seed=0)
"""


def fit_extra_anon(rows, cols, *, memory_map=None, fit_args="", env=None, timeout=600):
    """(extra anonymous bytes of one fit epoch, data bytes) for float32 rows x cols;
    with memory_map (a path), X is saved there and fitted read-only memory-mapped."""
    prepare = "" if memory_map is None else (
        f"np.save({str(memory_map)!r}, X); del X; "
        f"X = np.load({str(memory_map)!r}, mmap_mode='r')")
    setup = _FIT_SETUP.format(rows=rows, cols=cols, prepare=prepare)
    body = f"model.fit(X, y, epochs=1, batch_size=256, verbose=0{fit_args})"
    return extra_anon_bytes(setup, body, env=env, timeout=timeout), rows * cols * 4


if __name__ == "__main__":
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
    cols = 256
    mb = 1 << 20
    extra, data = fit_extra_anon(rows, cols, fit_args=", validation_split=0.1")
    print(f"fit(validation_split=0.1), {data / mb:.0f} MB in RAM: extra anon "
          f"{extra / mb:.0f} MB ({100 * extra / data:.0f} % of the data)")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "X.npy")
        extra, data = fit_extra_anon(rows, cols, memory_map=path)
        print(f"fit on a read-only memory map of {data / mb:.0f} MB: extra anon "
              f"{extra / mb:.0f} MB")
