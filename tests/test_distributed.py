"""Data-parallel training over MPI (fastnet.distributed).

The MPI tests start real ranks with ``mpirun -n 2 --oversubscribe``.  They skip
when mpirun or mpi4py is missing, unless FASTNET_REQUIRE_MPI is set (CI sets
it), in which case they fail.  The native hooks behind them (split-batch loss,
separate update, synchronised batch-norm callback) are tested in-process
without MPI.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import TESTS_DIR, assert_same_bits, child_env

import fastnet
from fastnet import distributed

MPIRUN = shutil.which("mpirun") or shutil.which("mpiexec")
HAVE_MPI = MPIRUN is not None and importlib.util.find_spec("mpi4py") is not None
REQUIRE_MPI = os.environ.get("FASTNET_REQUIRE_MPI", "") not in ("", "0")
WORKER = os.path.join(TESTS_DIR, "_mpi_worker.py")
TIMEOUT = 300          # a hang guard only; a normal job takes seconds


@pytest.fixture
def mpi():
    if not HAVE_MPI:
        message = "mpirun and mpi4py are needed (apt-get install openmpi-bin libopenmpi-dev; " \
                  "pip install 'fastnet[mpi]')"
        if REQUIRE_MPI:
            pytest.fail("FASTNET_REQUIRE_MPI is set but " + message)
        pytest.skip(message)


def mpirun(tmp_path, *args, ranks=2):
    """Start `ranks` processes; one thread each so 2 ranks fit 2 cores."""
    cmd = [MPIRUN, "--oversubscribe", "--allow-run-as-root", "-n", str(ranks),
           "-x", "OMP_NUM_THREADS=1", "-x", "PYTHONPATH", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT,
                          cwd=tmp_path, env=child_env(OMP_NUM_THREADS="1"))


@pytest.fixture(scope="module")
def equivalence(tmp_path_factory):
    """One 2-rank job of the 'equivalence' scenario, shared by the tests that read it."""
    if not HAVE_MPI:
        return None
    return run_worker(tmp_path_factory.mktemp("equivalence"), "equivalence")[0]


def run_worker(tmp_path, scenario, *extra, ranks=2):
    out = str(tmp_path / f"{scenario}.json")
    proc = mpirun(tmp_path, sys.executable, WORKER, scenario, out, *extra, ranks=ranks)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(out) as fh:
        return json.load(fh), proc


def worker():
    sys.path.insert(0, TESTS_DIR)
    try:
        import _mpi_worker
    finally:
        sys.path.remove(TESTS_DIR)
    return _mpi_worker


# ---- in-process: the native pieces distributed training is built from ------------

def _engine(model, X, y, **step):
    engine = model._engine(X.shape[0], "cross_entropy")
    engine.set_data(X, y, None, None)
    engine.set_order(np.arange(X.shape[0], dtype=np.int64))
    return engine


def _data(n=64, d=10, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5)


@pytest.mark.parametrize("clip", [0.0, 0.3])
def test_step_without_update_then_apply_update_is_one_step(clip):
    X, y = _data()
    a, b = fastnet.MLP([10, 16, 3], seed=1), fastnet.MLP([10, 16, 3], seed=1)
    ea, eb = _engine(a, X, y), _engine(b, X, y)
    for m, e in ((a, ea), (b, eb)):
        opt = fastnet.optim.get("adam", lr=0.01)
        e.set_optimizer(opt.kind, *opt.native_config().hyper(), 0, *opt.buffers_for(m.params.size,
                                                                             m.dtype))
    for t in range(3):
        la = ea.step(0, 64, 0.01, clip, 5, t)
        lb = eb.step(0, 64, 0.01, clip, 5, t, update=False)
        norm = eb.apply_update(0.01, clip)
        assert la == lb and norm == ea.last_grad_norm
    assert ea.opt_step == eb.opt_step == 3
    assert_same_bits(a.params, b.params, "params")


def test_total_weight_scales_loss_and_gradients():
    X, y = _data()
    a, b = fastnet.MLP([10, 16, 3], seed=1), fastnet.MLP([10, 16, 3], seed=1)
    la = _engine(a, X, y).step(0, 64, 0, 0, 5, 0, update=False)
    lb = _engine(b, X, y).step(0, 64, 0, 0, 5, 0, update=False, total_weight=128)
    assert lb == pytest.approx(la / 2, rel=1e-12)
    np.testing.assert_allclose(b.grads * 2, a.grads, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("threads", [1, 2])
def test_sync_bn_hook_with_one_process_changes_nothing(threads):
    """The synchronised batch-norm path (statistics and backward reductions handed to a
    reducer, called by the team's master thread) gives the plain path's bits when the
    'sum over processes' is a no-op."""
    X, y = _data(n=48)
    a, b = fastnet.MLP([10, 24, 16, 3], seed=2), fastnet.MLP([10, 24, 16, 3], seed=2)
    calls = []
    ea, eb = _engine(a, X, y), _engine(b, X, y)
    ea.threads = eb.threads = threads
    eb.set_reducer(lambda start, stop: calls.append((start, stop)))
    la = ea.step(0, 48, 0, 0, 5, 0, update=False)
    lb = eb.step(0, 48, 0, 0, 5, 0, update=False, total_rows=48)
    assert la == lb
    assert_same_bits(a.grads, b.grads, "gradients")
    assert_same_bits(a.buffers, b.buffers, "running statistics")
    # per batch-norm layer: sums, squared deviations (f each), backward sums (2f)
    assert calls == [(0, 24), (24, 48), (0, 16), (16, 32), (0, 32), (0, 48)]


def test_sync_bn_hook_sums_like_a_doubled_batch():
    """Two copies of a batch, 'summed over processes' by doubling: the statistics and
    gradients of the batch stacked twice."""
    X, y = _data(n=32)
    a, b = fastnet.MLP([10, 24, 3], seed=2), fastnet.MLP([10, 24, 3], seed=2)
    eb = _engine(b, X, y)
    eb.set_reducer(lambda start, stop: eb.bn_sums[start:stop].__imul__(2))
    XX, yy = np.concatenate([X, X]), np.concatenate([y, y])
    la = _engine(a, XX, yy).step(0, 64, 0, 0, 5, 0, update=False)
    lb = eb.step(0, 32, 0, 0, 5, 0, update=False, total_weight=64, total_rows=64)
    assert 2 * lb == pytest.approx(la, rel=1e-6)
    np.testing.assert_allclose(2 * b.grads, a.grads, rtol=2e-5, atol=1e-7)
    np.testing.assert_allclose(b.buffers, a.buffers, rtol=1e-6, atol=1e-7)


def test_reducer_error_is_raised_by_the_step():
    X, y = _data(n=16)
    model = fastnet.MLP([10, 8, 3])
    engine = _engine(model, X, y)

    def broken(start, stop):
        raise RuntimeError("network down")
    engine.set_reducer(broken)
    with pytest.raises(RuntimeError, match="network down"):
        engine.step(0, 16, 0, 0, 5, 0, update=False, total_rows=16)
    engine.set_reducer(None)
    engine.step(0, 16, 0, 0, 5, 0, update=False)


def test_resolve():
    assert distributed.resolve(None) is None and distributed.resolve(False) is None
    d = distributed.Distributed(sync_bn=True)
    assert distributed.resolve(d) is d and isinstance(distributed.resolve(True),
                                                      distributed.Distributed)
    with pytest.raises(TypeError, match="distributed"):
        distributed.resolve("yes")


def test_plain_run_needs_no_mpi(tmp_path):
    """Without a launcher: rank 0 of 1, 'auto' is a plain fit, and mpi4py is never
    imported (so it need not be installed)."""
    code = ("import sys, numpy as np, fastnet\n"
            "from fastnet import distributed as d\n"
            "X = np.random.default_rng(0).normal(size=(64, 4)); y = (X[:, 0] > 0) * 1\n"
            "fastnet.MLP([4, 8, 2]).fit(X, y, epochs=1, verbose=0, distributed='auto')\n"
            "assert (d.rank(), d.size(), d.is_root(), d.resolve('auto')) == (0, 1, True, None)\n"
            "d.barrier()\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'\n")
    env = {k: v for k, v in child_env().items() if k not in distributed._LAUNCHER_VARS}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr


# ---- real ranks ------------------------------------------------------------------------

def test_two_ranks_train_like_one_process_with_the_double_batch(mpi, equivalence):
    results = equivalence
    for name, model_kw, fit_kw in worker().cases():
        if name.startswith("per_rank"):
            continue              # per-rank batch norm: no one-process twin
        model, hist = worker().train_case(model_kw, fit_kw, 128)
        mse = fit_kw.get("loss") == "mse"
        got = results[name]
        np.testing.assert_allclose(got["params"], model.params, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        np.testing.assert_allclose(got["buffers"], model.buffers, rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        for key in ("loss", "val_loss", "grad_norm") + (() if mse else ("accuracy",)):
            np.testing.assert_allclose(got["history"][key], hist.history[key], rtol=1e-4,
                                       err_msg=f"{name} {key}")


def test_every_rank_holds_identical_weights_after_every_epoch(mpi, equivalence):
    results = equivalence
    for name, got in results.items():
        assert len(got["crcs"]) == 4, name
        for epoch, per_rank in enumerate(got["crcs"]):
            assert per_rank[0] == per_rank[1], f"{name}: ranks differ after epoch {epoch}"


def test_same_seed_and_rank_count_same_bits(mpi, equivalence, tmp_path):
    first = equivalence
    second, _ = run_worker(tmp_path, "equivalence")
    for name in first:
        assert first[name]["crcs"] == second[name]["crcs"], name
        assert first[name]["history"]["loss"] == second[name]["history"]["loss"], name


def test_one_rank_is_a_plain_fit_bit_for_bit(mpi, tmp_path):
    (plain, per_rank, synced), _ = run_worker(tmp_path, "one_rank", ranks=1)
    assert plain == per_rank == synced


def test_shards_and_other_dtypes_train_like_the_array_on_every_rank(mpi, tmp_path):
    crcs, _ = run_worker(tmp_path, "staged")
    assert len(crcs) == 3 and len(set(crcs)) == 1, crcs


def test_early_stopping_and_checkpoints_are_decided_once(mpi, tmp_path):
    got, proc = run_worker(tmp_path, "decisions")
    every = got["every"]
    assert every[0] == every[1], f"ranks disagree: {every}"
    stopped, _, epochs, _ = every[0]
    assert stopped is not None and epochs < 40
    # only rank 0 printed epoch lines and wrote the checkpoint
    assert proc.stdout.count("Epoch 1/40") == 1, proc.stdout
    assert (tmp_path / "decisions.json.ckpt").exists()


def test_resumed_distributed_fit_is_bit_identical(mpi, tmp_path):
    (three, resumed, straight), _ = run_worker(tmp_path, "resume")
    for per_rank in (three, resumed, straight):
        assert per_rank[0] == per_rank[1]
    assert resumed == straight and three != straight


def test_ranks_that_disagree_all_get_a_clear_error(mpi, tmp_path):
    got, _ = run_worker(tmp_path, "disagree")
    data_errors, model_errors = zip(*got)
    for errors, what in ((data_errors, "X (shape"), (model_errors, "layer_sizes")):
        assert errors[0] is not None and errors[0] == errors[1], errors
        assert "ranks disagree" in errors[0] and what in errors[0], errors[0]
        assert "rank 0:" in errors[0] and "rank 1:" in errors[0]


def test_a_rank_that_raises_ends_the_job(mpi, tmp_path):
    proc = mpirun(tmp_path, sys.executable, WORKER, "crash", str(tmp_path / "x"))
    assert proc.returncode != 0
    assert "rank 1 of 2 raised RuntimeError: boom on purpose" in proc.stderr, proc.stderr
    assert "aborting all 2 ranks" in proc.stderr


def test_a_rank_that_fails_before_training_ends_the_job(mpi, tmp_path):
    proc = mpirun(tmp_path, sys.executable, WORKER, "bad_data", str(tmp_path / "x"))
    assert proc.returncode != 0
    assert "ValueError: X contains NaN or infinity" in proc.stderr, proc.stderr
    assert "uncaught ValueError on rank 1 of 2; aborting all ranks" in proc.stderr


def test_cli_train_under_mpirun(mpi, tmp_path):
    proc = mpirun(tmp_path, sys.executable, "-m", "fastnet", "train", "--epochs", "3",
                  "--out", str(tmp_path / "run"), "--no-plot")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("Test accuracy") == 1, proc.stdout
    assert "2 MPI ranks" in proc.stdout
    assert (tmp_path / "run" / "model.npz").exists()
    assert fastnet.load(tmp_path / "run" / "model.npz").layer_sizes[0] == 64
