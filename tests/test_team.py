"""fastnet's thread team: small work stays on the calling thread, thread
counts are capped at the CPUs this process may use, a failed thread creation
never ends the process, and results do not depend on who claims which chunk.

Nothing here is timed: the team's counters (``_parallel.team_stats()``) say
what ran where.
"""
import os
import shutil
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from conftest import assert_same_bits, child_env, num_threads

import fastnet
import fastnet.functional as F
from fastnet import _kernels, _parallel

CORES = _parallel.machine_cores()


def _launches():
    return _parallel.team_stats()["launches"]


@pytest.fixture
def two_threads():
    with num_threads(2):
        yield


def _trained(sizes, rows=256, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], rows)
    with num_threads(1):
        model = fastnet.MLP(sizes, dropout=0.2, seed=seed)
        model.fit(X, y, epochs=1, batch_size=64, verbose=0)
    return model, X, y


@pytest.mark.parametrize("rows", [1, 8])
def test_small_inference_makes_no_team_launch(two_threads, rows):
    model, X, y = _trained([64, 128, 128, 10])
    model.predict(X[:rows])                      # binds the inference engine
    before = _launches()
    for _ in range(20):
        model.predict(X[:rows])
        model.predict_proba(X[:rows])
        model.evaluate(X[:rows], y[:rows])
    assert _launches() == before


def test_small_kernels_make_no_team_launch(two_threads, rng):
    x = rng.standard_normal((32, 32)).astype(np.float32)
    w = rng.standard_normal((32, 32)).astype(np.float32)
    logits = rng.standard_normal((128, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 128)
    before = _launches()
    for _ in range(10):
        out = F.linear_forward(x, w, activation="relu")
        F.linear_backward(out, x, w, out, activation="relu")
        F.batch_norm(x, np.ones(32, np.float32), np.zeros(32, np.float32))
        F.dropout(x, 0.3, seed=1)
        F.softmax_cross_entropy(logits, labels)
        F.softmax(logits)
        F.mse_loss(logits, logits)
        _kernels.sum_of_squares(x.ravel())
    assert _launches() == before


def test_one_thread_makes_no_team_launch(rng):
    x = rng.standard_normal((512, 512)).astype(np.float32)
    with num_threads(1):
        before = _launches()
        F.linear_forward(x, x)
        assert _launches() == before


@pytest.mark.skipif(not _parallel.threads_available(), reason="a build without threads")
def test_large_work_launches_a_team(two_threads, rng):
    """The counterpart of the tests above: the counter does move."""
    x = rng.standard_normal((512, 1024)).astype(np.float32)
    w = rng.standard_normal((1024, 1024)).astype(np.float32)
    before = _launches()
    for _ in range(3):
        F.linear_forward(x, w)
    stats = _parallel.team_stats()
    # a session is launched unless the helpers were left alone after a stall
    # (a busy machine); either way it was counted
    assert stats["launches"] > before or stats["serial_quiet"] > 0
    assert stats["helpers"] >= 1 and stats["wake_ns"] > 0 and stats["handoff_ns"] > 0


@pytest.mark.parametrize("threads", [3, 4, 8])
def test_bits_do_not_depend_on_who_claims_chunks(threads):
    """Oversubscribed teams (more threads than CPUs) claim chunks in a
    different pattern on every call, helpers steal from each other and
    some arrive late: the weights of a fit must still have the bits of one
    thread's."""
    rng = np.random.default_rng(3)
    X = rng.standard_normal((1024, 64)).astype(np.float32)
    y = rng.integers(0, 10, 1024)

    def fit():
        model = fastnet.MLP([64, 256, 256, 10], dropout=0.3, seed=5)
        model.fit(X, y, epochs=2, batch_size=256, verbose=0, optimizer="adam", lr=1e-3)
        return model.params.copy(), model.buffers.copy()

    with num_threads(1):
        base = fit()
    with num_threads(threads):
        for _ in range(3):
            got = fit()
            assert_same_bits(got[0], base[0], what=f"params at {threads} threads")
            assert_same_bits(got[1], base[1], what=f"buffers at {threads} threads")


# ---- thread counts (issue 16, C3) --------------------------------------------------

def test_set_num_threads_above_the_cpus_is_capped_with_a_warning():
    previous = fastnet.get_num_threads()
    try:
        with pytest.warns(RuntimeWarning, match="sched_getaffinity"):
            fastnet.set_num_threads(CORES + 1000)
        assert fastnet.get_num_threads() == CORES
        with pytest.warns(RuntimeWarning, match="sched_getaffinity"):
            with fastnet.threads(10**6):
                assert fastnet.get_num_threads() == CORES
    finally:
        fastnet.set_num_threads(previous)


@pytest.mark.parametrize("n", [2**31, 2**63, 10**30])
def test_set_num_threads_huge_is_a_value_error(n):
    with pytest.raises(ValueError, match="thread count"):
        fastnet.set_num_threads(n)


@pytest.mark.parametrize("n", [0, -1, -(2**63)])
def test_set_num_threads_below_one_is_a_value_error(n):
    with pytest.raises(ValueError, match="n must be"):
        fastnet.set_num_threads(n)


def test_set_num_threads_within_the_cpus_gives_no_warning():
    previous = fastnet.get_num_threads()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            fastnet.set_num_threads(CORES)
            fastnet.set_num_threads(1)
    finally:
        fastnet.set_num_threads(previous)


@pytest.mark.parametrize("value, expected, warned", [
    ("100000", CORES, True), (str(CORES + 1), CORES, True), ("1", 1, False),
    ("1,4", 1, False), (str(CORES), CORES, False), ("abc", CORES, True), ("0", CORES, True)])
def test_omp_num_threads_is_read_and_capped(tmp_path, value, expected, warned):
    code = ("import warnings, fastnet\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    import fastnet\n"
            "print(fastnet.get_num_threads())\n")
    out = subprocess.run([sys.executable, "-W", "always", "-c", code], cwd=tmp_path,
                         env=child_env(OMP_NUM_THREADS=value), capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.split()[-1]) == expected
    assert ("OMP_NUM_THREADS" in out.stderr) == warned, out.stderr


def test_cli_threads_above_the_cpus_is_capped(tmp_path):
    """`fastnet train --threads` goes through set_num_threads."""
    rng = np.random.default_rng(0)
    data = np.column_stack([rng.standard_normal((60, 3)), rng.integers(0, 2, 60)])
    np.savetxt(tmp_path / "d.csv", data, delimiter=",", fmt="%.6g")
    out = subprocess.run([sys.executable, "-m", "fastnet", "train", "--data",
                          str(tmp_path / "d.csv"), "--threads", "10000", "--epochs", "1",
                          "--no-plot", "-q", "--out", str(tmp_path / "out")],
                         cwd=tmp_path, env=child_env(),
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "sched_getaffinity" in out.stderr and "10000" in out.stderr


# A child whose address space is capped just above what it uses: no thread
# stack (8 MiB under the usual `ulimit -s`) fits, so every pthread_create
# fails.  Before, libgomp printed
# "Thread creation failed" and ended the process with status 1.
_NO_THREADS_LEFT = """
import resource, warnings, numpy as np, fastnet, fastnet.functional as F
from fastnet import _parallel
X = np.random.default_rng(0).standard_normal((1024, 256)).astype(np.float32)
y = np.arange(1024) % 10
W = np.ones((256, 512), np.float32)
m = fastnet.MLP([256, 64, 10])
with fastnet.threads(1):                               # every module loaded, memory warm
    m.fit(X, y, epochs=1, batch_size=512, verbose=0)
    F.linear_forward(X[:512], W)                       # (BLIS's packing buffers too)
vm = int([l.split()[1] for l in open("/proc/self/status") if l.startswith("VmSize")][0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (vm + (6 << 20), resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    fastnet.set_num_threads(2)
if _parallel.machine_cores() >= 2:
    assert any("could start only" in str(w.message) for w in caught), \
        [str(w.message) for w in caught]
    assert _parallel.team_stats()["create_failed"]
assert fastnet.get_num_threads() == 1
_parallel._force_num_threads(4)
F.linear_forward(X[:512], W)                           # a team session's size
m.fit(X, y, epochs=1, batch_size=512, verbose=0)
print("ok", int(m.predict(X).sum()))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and RLIMIT_AS")
def test_failed_thread_creation_never_ends_the_process(tmp_path):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_NO_THREADS_LEFT)],
                         cwd=tmp_path, env=child_env(OMP_NUM_THREADS="1"),
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.startswith("ok"), out.stdout


def test_build_info_says_what_threading_runs():
    info = fastnet.build_info()
    assert isinstance(info["openmp"], bool) and isinstance(info["num_threads"], int)
    assert isinstance(info["compiler"], str) and isinstance(info["blas"], str)
    assert "team" in info["threading"] or "calling thread" in info["threading"]
    assert info["openmp"] is False        # no OpenMP runtime runs: only its SIMD directives


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses ldd")
def test_no_openmp_runtime_is_linked():
    for name in ("_parallel", "_kernels", "_network"):
        module = __import__(f"fastnet.{name}", fromlist=["x"])
        ldd = subprocess.run(["ldd", module.__file__], capture_output=True, text=True)
        assert "libgomp" not in ldd.stdout, (name, ldd.stdout)


_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("cc") is None
                    or not os.path.exists(os.path.join(_REPO, "tools", "team_stress.c")),
                    reason="needs a C compiler and the source tree")
def test_team_runtime_stress(tmp_path):
    """The C runtime alone (tools/team_stress.c): random phases on 2-8 threads,
    two threads' sessions at once and a forked child; every chunk runs once."""
    exe = tmp_path / "team_stress"
    subprocess.run(["cc", "-O2", "-pthread", "-I", os.path.join(_REPO, "csrc"),
                    os.path.join(_REPO, "tools", "team_stress.c"),
                    os.path.join(_REPO, "csrc", "fn_team.c"), "-o", str(exe)], check=True,
                   timeout=120)
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.startswith("ok:"), out.stdout + out.stderr
