"""The bench's baselines compute fastnet's training step, and the bench's protocol
measures what it says (issue 15, deliverable 5).  Nothing here is timed.

Every baseline (fast NumPy, the article's NumPy, PyTorch eager and
torch.compile, the JAX scan epoch) takes fastnet's initial weights and
runs two steps (so momentum is exercised) on the same unshuffled batches
with dropout off; the weight changes and the batch-norm running statistics
must match fastnet's within float32 rounding.  Dropout masks come from
different generators, so the dropout path is checked with the same keep
masks injected: against PyTorch autograd for the NumPy steps (float64), and
JAX against fast NumPy (float32).
"""
import contextlib
import json
import os
import tracemalloc

import numpy as np
import pytest
from conftest import assert_close

import fastnet
from fastnet.bench import jax_baseline, numpy_baseline, suite, torch_baseline

SIZES = [8, 32, 32, 32, 10]
BATCH = 16
LR, MOMENTUM = 0.1, 0.9
JAX_MISSING = "jax and optax are not installed (pip install 'fastnet[bench]')"
TINY = suite.Config("tiny", 256, 64, (4, 16, 16, 16, 3))
TINY_PROTOCOL = suite.Protocol(cooldown=0.0, min_sample_seconds=0.002, idle_pause=0.01,
                               idle_calls=2, peak_size=256)
_A = np.ones((64, 64), np.float32)


def tiny_neighbour():
    """A small stand-in for the ten 512x512 products of the neighbour figure."""
    _A @ _A


def _data(n=2 * BATCH, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, SIZES[0]), dtype=np.float32)
    return X, rng.integers(0, SIZES[-1], n)


def _masks(seed=2, rate=0.3):
    rng = np.random.default_rng(seed)
    return [rng.random((BATCH, f)) >= rate for f in SIZES[1:-1]]


def _fastnet_two_steps(X, y):
    """fastnet's initial weights and its weights after one unshuffled epoch of two steps."""
    model = fastnet.MLP(SIZES, dropout=0.0, seed=0)
    start = model.get_weights()
    model.fit(X, y, epochs=1, batch_size=BATCH, shuffle=False, verbose=0,
              optimizer=fastnet.optim.SGD(lr=LR, momentum=MOMENTUM))
    return start, model.get_weights(), model.weight_names()


def _numpy_steps(cls):
    def steps(start, X, y):
        net = cls(SIZES, dropout=0.0, seed=5)
        net.set_weights(start)
        net.train_epoch(X, y, BATCH, LR, MOMENTUM, shuffle=False)
        return net.get_weights()
    return steps


def _torch_steps(compile):
    def steps(start, X, y):
        pytest.importorskip("torch")
        net = torch_baseline.TorchMLP(SIZES, dropout=0.0, seed=5, lr=LR, momentum=MOMENTUM,
                                      num_threads=1, compile=compile)
        net.set_weights(start)
        net.train_epoch(X, y, BATCH, shuffle=False)
        return net.get_weights()
    return steps


def _jax_scan_steps(start, X, y):
    pytest.importorskip("jax", reason=JAX_MISSING)
    pytest.importorskip("optax", reason=JAX_MISSING)
    net = jax_baseline.JaxMLP(SIZES, dropout=0.0, seed=5, lr=LR, momentum=MOMENTUM)
    net.set_weights(start)
    Xd, yd = net.to_device(X, y)
    net.train_epoch(Xd, yd, BATCH, shuffle=False)       # the timed path: one lax.scan
    return net.get_weights()


STEPS = {"numpy": _numpy_steps(numpy_baseline.NumpyMLP),
         "numpy_article": _numpy_steps(numpy_baseline.ArticleNumpyMLP),
         "torch": _torch_steps(False), "torch_compile": _torch_steps(True),
         "jax": _jax_scan_steps}


@pytest.mark.parametrize("impl", list(STEPS))
def test_two_steps_match_fastnet(impl):
    X, y = _data()
    start, fastnet_after, names = _fastnet_two_steps(X, y)
    after = STEPS[impl](start, X, y)
    assert len(after) == len(names)
    for name, w0, ours, theirs in zip(names, start, after, fastnet_after):
        assert ours.dtype == np.float32, f"{impl} {name}: {ours.dtype}"
        if name.endswith(".w"):
            assert not np.array_equal(theirs, w0), f"fastnet did not change {name}"
        # the change the two steps made, against fastnet's (weights themselves
        # would hide a wrong step under their much larger magnitude)
        assert_close(ours.astype(np.float64) - w0, theirs.astype(np.float64) - w0,
                     dtype=np.float32, what=f"{impl} {name} change")


def _torch_reference(net, x, y, masks, rate):
    """Loss and gradients of the recipe by PyTorch autograd, same weights and masks."""
    torch = pytest.importorskip("torch")
    params = [torch.tensor(p, requires_grad=True) for p in net.parameters()]
    n = len(net.W)
    W, gamma, beta, b = params[:n], params[n:2 * n - 1], params[2 * n - 1:3 * n - 2], params[-1]
    h = torch.tensor(x)
    for l in range(n - 1):
        z = h @ W[l]
        zn = (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + 1e-5)
        h = torch.relu(gamma[l] * zn + beta[l])
        h = h * torch.tensor(masks[l], dtype=h.dtype) / (1 - rate)
    loss = torch.nn.functional.cross_entropy(h @ W[-1] + b, torch.tensor(y))
    loss.backward()
    return loss.item(), [p.grad.numpy() for p in params]


@pytest.mark.parametrize("cls", [numpy_baseline.NumpyMLP, numpy_baseline.ArticleNumpyMLP])
def test_numpy_gradients_match_torch_autograd(cls):
    """Both NumPy steps, with dropout masks injected, in float64 against autograd."""
    rng = np.random.default_rng(0)
    net = cls(SIZES, dropout=0.3, seed=1, dtype=np.float64)
    for gamma, beta in zip(net.gamma, net.beta):     # away from the initial 1 and 0
        gamma[:] = rng.uniform(0.5, 1.5, gamma.shape)
        beta[:] = rng.standard_normal(beta.shape)
    x, y = rng.standard_normal((BATCH, SIZES[0])), rng.integers(0, SIZES[-1], BATCH)
    masks = _masks()
    ref_loss, ref_grads = _torch_reference(net, x, y, masks, 0.3)
    loss, grads = net.forward_backward(x, y, masks)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for g, ref in zip(grads, ref_grads):
        np.testing.assert_allclose(g, ref, rtol=1e-9, atol=1e-12)


def test_jax_step_with_injected_masks_matches_fast_numpy():
    pytest.importorskip("jax", reason=JAX_MISSING)
    pytest.importorskip("optax", reason=JAX_MISSING)
    X, y = _data(BATCH)
    masks = _masks()
    fast = numpy_baseline.NumpyMLP(SIZES, dropout=0.3, seed=0)
    start = fast.get_weights()
    fast.train_step(X, y, LR, MOMENTUM, masks)
    net = jax_baseline.JaxMLP(SIZES, dropout=0.3, seed=0, lr=LR, momentum=MOMENTUM)
    net.set_weights(start)
    net.train_step(X, y, masks)
    for w0, ours, theirs in zip(start, net.get_weights(), fast.get_weights()):
        assert_close(ours.astype(np.float64) - w0, theirs.astype(np.float64) - w0,
                     dtype=np.float32)


def test_fast_and_article_numpy_take_the_same_step_with_the_same_masks():
    X, y = _data(BATCH)
    masks = _masks()
    fast = numpy_baseline.NumpyMLP(SIZES, dropout=0.3, seed=0)
    article = numpy_baseline.ArticleNumpyMLP(SIZES, dropout=0.3, seed=0)
    start = fast.get_weights()
    for w0, w in zip(start, article.get_weights()):       # the same initial weights
        np.testing.assert_array_equal(w0, w)
    loss_fast = fast.train_step(X, y, LR, MOMENTUM, masks)
    loss_article = article.train_step(X, y, LR, MOMENTUM, masks)
    assert loss_fast == pytest.approx(loss_article, rel=1e-5)
    for w0, a, b in zip(start, fast.get_weights(), article.get_weights()):
        assert a.dtype == b.dtype == np.float32
        assert_close(a.astype(np.float64) - w0, b.astype(np.float64) - w0, dtype=np.float32)


def test_fast_numpy_dropout_keeps_the_expected_fraction():
    net = numpy_baseline.NumpyMLP([16, 512, 512, 4], dropout=0.3, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((256, 16), dtype=np.float32)
    net.forward_backward(x, rng.integers(0, 4, 256))
    act = net._act[0][:256]
    kept = act[act > 0]
    assert 0.6 < np.count_nonzero(act) / act.size / 0.5 < 0.8      # ReLU halves, keep 0.7
    assert kept.dtype == np.float32


def _step_allocations(net, x, y, repeats=3):
    """Largest traced allocation peak of a training step, after a warm-up step."""
    net.train_step(x, y, LR, MOMENTUM)
    peaks = []
    for _ in range(repeats):
        tracemalloc.start()
        try:
            net.train_step(x, y, LR, MOMENTUM)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    return min(peaks)


def test_fast_numpy_step_allocates_no_activation_sized_temporaries():
    """The fast step works in its own buffers: a step's peak allocation is below one
    (batch, width) activation, where the article's allocates many.  (What the fast
    step does allocate is per-feature vectors and NumPy's fixed-size cast buffer
    of bool-times-float, 32 KiB.)"""
    sizes, batch = [64, 512, 512, 10], 256
    rng = np.random.default_rng(0)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch)
    activation = batch * sizes[1] * 4
    fast = _step_allocations(numpy_baseline.NumpyMLP(sizes, dropout=0.3), x, y)
    article = _step_allocations(numpy_baseline.ArticleNumpyMLP(sizes, dropout=0.3), x, y)
    assert fast < activation / 4, (fast, activation)
    assert article > 2 * activation, (article, activation)


def test_fast_numpy_kernels_match_the_article_functions():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((64, 48), dtype=np.float32) * 3 + 1
    dout = rng.standard_normal((64, 48), dtype=np.float32)
    gamma = rng.uniform(0.5, 1.5, 48).astype(np.float32)
    beta = rng.standard_normal(48, dtype=np.float32)
    article = numpy_baseline.batch_norm_forward_backward(x.astype(np.float64), gamma, beta,
                                                         dout.astype(np.float64))
    fast = numpy_baseline.batch_norm_forward_backward_fast(x, gamma, beta, dout)
    for a, f in zip(article, fast):
        assert f.dtype == np.float32
        assert_close(f, a)
    logits = rng.standard_normal((32, 7), dtype=np.float32) * 4
    labels = rng.integers(0, 7, 32)
    lf = logits.astype(np.float64)
    p = np.exp(lf - lf.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    ref_loss = -np.mean(np.log(p[np.arange(32), labels]))
    p[np.arange(32), labels] -= 1
    in_place = logits.copy()
    results = [numpy_baseline.softmax_cross_entropy(logits, labels),
               (numpy_baseline.softmax_cross_entropy_inplace(in_place, labels), in_place)]
    for loss, grad in results:
        assert loss == pytest.approx(ref_loss, rel=1e-5)
        assert grad.dtype == np.float32
        assert_close(grad, p / 32)


def test_jax_epoch_needs_whole_batches():
    pytest.importorskip("jax", reason=JAX_MISSING)
    pytest.importorskip("optax", reason=JAX_MISSING)
    net = jax_baseline.JaxMLP(SIZES, dropout=0.3)
    X, y = _data(40)
    with pytest.raises(ValueError, match="batch_size"):
        net.train_epoch(X, y, BATCH)


# ---- the protocol ------------------------------------------------------------------------

def test_after_blas_sampler_runs_the_work_before_every_timed_epoch():
    events = []
    sampler = suite._after_blas(lambda: events.append("epoch"), lambda: events.append("work"))
    seconds = sampler.sample(3)
    assert events == ["work", "epoch"] * 3
    assert seconds >= 0


def test_measure_idle_pauses_before_every_timed_call_and_pins_one_thread(monkeypatch):
    events = []
    state = {"threads": 2}

    @contextlib.contextmanager
    def one_thread():
        state["threads"] = 1
        try:
            yield
        finally:
            state["threads"] = 2

    monkeypatch.setattr(suite.time, "sleep", lambda s: events.append(("sleep", s)))
    protocol = suite.Protocol(cooldown=0.0, min_sample_seconds=0.0, idle_pause=0.05,
                              idle_calls=4, peak_size=0)
    out = suite.measure_idle(lambda n: events.append(("predict", n, state["threads"])),
                             one_thread, rows=(1, 64), protocol=protocol)
    assert [d["rows"] for d in out] == [1, 64]
    for d in out:
        assert d["ratio"] == pytest.approx(d["default_s"] / d["one_thread_s"])
    predicts = [e for e in events if e[0] == "predict"]
    # 2 blocks x 2 settings x 2 row counts x (1 untimed + 2 timed)
    assert len(predicts) == 24
    for threads in (1, 2):
        for n in (1, 64):
            assert predicts.count(("predict", n, threads)) == 6
    for i, e in enumerate(events):          # every call after a sleep is a timed one
        if e[0] == "sleep":
            assert e[1] == 0.05 and events[i + 1][0] == "predict"
    assert state["threads"] == 2


def _check_rows(rows, contenders):
    (r,) = rows
    assert r["contenders"] == contenders
    for name in contenders + ["floor"]:
        assert r["epoch_s"][name] > 0
        assert len(r["samples"][name]) == 2
    for name in contenders:
        assert r["x_floor"][name] == pytest.approx(r["epoch_s"][name] / r["epoch_s"]["floor"])
        if name != "fastnet":
            assert r["speedup"][name] == pytest.approx(
                r["epoch_s"][name] / r["epoch_s"]["fastnet"])
    libs = ["fastnet"] + (["torch"] if "torch" in contenders else [])
    assert sorted(r["neighbour"]) == sorted(libs)
    for lib in libs:
        assert r["neighbour"][lib] == pytest.approx(r["after_blas_s"][lib] / r["epoch_s"][lib])
        assert [d["rows"] for d in r["idle"][lib]] == [1, 64]


def _thread_settings():
    """The environment variables that steer thread pools and BLAS (jax's and torch's
    imports set logging and cache variables of their own, which are not the bench's)."""
    prefixes = ("OMP_", "OPENBLAS_", "MKL_", "GOMP_", "KMP_", "XLA_", "FASTNET_", "BLIS_")
    return {k: v for k, v in os.environ.items()
            if k.startswith(prefixes) or k.endswith("_NUM_THREADS")}


def test_run_measures_every_installed_contender_and_leaves_settings_alone():
    env = _thread_settings()
    threads = fastnet.get_num_threads()
    torch_threads = torch_baseline._import_torch().get_num_threads() \
        if torch_baseline.available() else None
    # torch.compile's column is the same TorchMLP(compile=True) that
    # test_two_steps_match_fastnet checks; compiling it again here would add ~5 s
    rows = suite.run([TINY], repeats=2, with_compile=False, protocol=TINY_PROTOCOL,
                     neighbour=tiny_neighbour)
    expected = ["fastnet", "numpy", "numpy_article"]
    if torch_baseline.available():
        expected.append("torch")
    if jax_baseline.available():
        expected.append("jax")
    _check_rows(rows, expected)
    assert _thread_settings() == env
    assert fastnet.get_num_threads() == threads
    if torch_threads is not None:
        assert torch_baseline._import_torch().get_num_threads() == torch_threads
    text = suite.format_table(rows)
    for label in ("NumPy (article)", "GEMM floor", "after NumPy BLAS / quiet",
                  "predict 64 rows idle / 1 thread"):
        assert label in text
    json.dumps(suite._jsonable(rows))


def test_run_without_optional_peers(monkeypatch):
    monkeypatch.setattr(jax_baseline, "available", lambda: False)
    rows = suite.run([TINY], repeats=2, with_torch=False, protocol=TINY_PROTOCOL,
                     neighbour=tiny_neighbour)
    _check_rows(rows, ["fastnet", "numpy", "numpy_article"])
    text = suite.format_table(rows)
    assert "JAX" not in text and "PyTorch" not in text


def test_a_peer_that_cannot_run_is_reported_not_fatal(monkeypatch):
    monkeypatch.setattr(jax_baseline, "available", lambda: True)

    def broken(cfg, X, y):
        raise RuntimeError("no XLA backend here\nsecond line")
    monkeypatch.setattr(suite, "_jax_epoch", broken)
    rows = suite.run([TINY], repeats=1, with_torch=False, with_idle=False,
                     protocol=TINY_PROTOCOL, neighbour=tiny_neighbour)
    (row,) = rows
    assert row["failed"] == {"jax": "RuntimeError: no XLA backend here"}
    assert "jax" not in row["epoch_s"] and row["contenders"] == ["fastnet", "numpy",
                                                                 "numpy_article"]
    assert "JAX could not run on tiny: RuntimeError: no XLA backend here" in \
        suite.format_table(rows)


def test_format_table_shows_goals_and_the_compile_note():
    row = {"config": "toy", "contenders": ["fastnet", "numpy", "torch", "torch_compile"],
           "epoch_s": {"fastnet": 0.002, "numpy": 0.010, "torch": 0.030,
                       "torch_compile": 0.033, "floor": 0.0015},
           "speedup": {"numpy": 5.0, "torch": 15.0, "torch_compile": 16.5},
           "x_floor": {"fastnet": 1.33, "numpy": 6.67, "torch": 20.0, "torch_compile": 22.0},
           "x_peak_floor": 1.5, "floor_gflops": 100.0, "peak_gflops": 150.0, "peak_size": 2048,
           "neighbour": {"fastnet": 1.1, "torch": 2.0},
           "idle": {"fastnet": [{"rows": 1, "default_s": 3e-4, "one_thread_s": 2e-4,
                                 "ratio": 1.5},
                                {"rows": 64, "default_s": 1e-3, "one_thread_s": 1e-3,
                                 "ratio": 1.0}]},
           "goals": suite.GOALS["toy"], "others_cpu": 0.0}
    text = suite.format_table([row])
    assert "5.00x (>= 6: missed)" in text
    assert "15.00x (>= 20: missed)" in text
    assert "1.10x (<= 1.25: ok)" in text
    assert "1.50x (<= 1.25: missed)" in text
    assert "torch.compile was no faster than PyTorch eager on toy (1.10x" in text
    assert "JAX" not in text


def test_command_line_quick_run_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert suite.main(["--quick", "--no-torch", "--no-jax", "--quiet", "--no-idle",
                       "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| toy |" in out and "quick protocol" in out
    result = json.loads(path.read_text())
    assert result["protocol"]["cooldown"] == suite.QUICK.cooldown
    assert result["goals"]["neighbour_at_most"] == suite.NEIGHBOUR_GOAL
    (row,) = result["rows"]
    assert row["config"] == "toy" and row["contenders"] == ["fastnet", "numpy",
                                                            "numpy_article"]
    assert row["neighbour"]["fastnet"] > 0 and row["idle"] == {}
