"""A forked child trains and predicts normally after the parent used its team.

fastnet's team (csrc/fn_team.c) registers an at-fork handler: a child
starts with no helper thread (it has only the forking thread) and creates
new ones when it needs them.  Before, a child forked after a wide fit hung
forever in its first parallel region (libgomp waited for threads that no
longer existed).  Each case runs in a subprocess with a timeout.
"""
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import child_env

# A wide fit: big enough that the parent's team has started its helpers.
PARENT = """
import os, sys, numpy as np, fastnet, fastnet.functional as F
from fastnet import _parallel
X = np.random.default_rng(0).standard_normal((2048, 256)).astype(np.float32)
y = np.arange(2048) % 10
fastnet._parallel._force_num_threads(2)
fastnet.MLP([256, 1024, 1024, 10]).fit(X, y, epochs=1, batch_size=512, verbose=0)
F.linear_forward(X[:512], np.ones((256, 1024), np.float32))    # surely a team session
assert _parallel.team_stats()["helpers"] >= 1, _parallel.team_stats()

def child_work(seed=0):
    m = fastnet.MLP([256, 1024, 1024, 10], seed=seed)
    m.fit(X, y, epochs=1, batch_size=512, verbose=0)
    F.linear_forward(X[:512], np.ones((256, 1024), np.float32))
    return int(m.predict(X[:100]).sum())
"""

CASES = {
    "os_fork": """
pid = os.fork()
if pid == 0:
    code = 1
    try:
        assert _parallel.team_stats()["helpers"] == 0   # the child starts clean
        child_work()
        assert _parallel.team_stats()["helpers"] >= 1    # and starts its own helpers
        code = 0
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
print("ok")
""",
    "multiprocessing_fork_pool": """
import multiprocessing
expected = child_work()
with multiprocessing.get_context("fork").Pool(2) as pool:
    got = pool.map(child_work, [0, 0])
assert got == [expected, expected], (got, expected)
print("ok")
""",
    "joblib_multiprocessing_sklearn": """
from joblib import parallel_backend
from sklearn.model_selection import cross_val_score
from fastnet.sklearn import MLPClassifier
est = MLPClassifier(hidden_layer_sizes=(64,), max_iter=3, random_state=0)
with parallel_backend("multiprocessing", n_jobs=2):
    scores = cross_val_score(est, X[:600], y[:600], cv=3)
assert len(scores) == 3 and all(0 <= s <= 1 for s in scores), scores
print("ok")
""",
}


@pytest.mark.parametrize("case", list(CASES))
def test_forked_child_trains_and_predicts(case, tmp_path):
    script = textwrap.dedent(PARENT) + textwrap.dedent(CASES[case])
    try:
        out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env(),
                             capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{case}: the forked child hung (no answer in 240 s)")
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


def test_fork_while_another_thread_runs_a_session(tmp_path):
    """A fork from one Python thread while another thread is inside a team
    session: the child must not inherit the session (nor wait for it)."""
    script = textwrap.dedent(PARENT) + textwrap.dedent("""
    import threading
    stop = threading.Event()
    def busy():
        m = fastnet.MLP([256, 1024, 1024, 10], seed=1)
        while not stop.is_set():
            m.fit(X, y, epochs=1, batch_size=512, verbose=0)
    t = threading.Thread(target=busy)
    t.start()
    import time; time.sleep(0.2)
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                child_work()
                code = 0
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    stop.set()
    t.join()
    print("ok")
    """)
    try:
        out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env(),
                             capture_output=True, text=True, timeout=240)
    except subprocess.TimeoutExpired:
        pytest.fail("a child forked during another thread's session hung")
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.skipif(not hasattr(os, "register_at_fork"), reason="POSIX fork only")
def test_parent_keeps_working_after_fork(tmp_path):
    """The at-fork handler acts in the child only: the parent's team goes on."""
    script = textwrap.dedent(PARENT) + textwrap.dedent("""
    helpers = _parallel.team_stats()["helpers"]
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    assert _parallel.team_stats()["helpers"] == helpers
    child_work()
    print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]
