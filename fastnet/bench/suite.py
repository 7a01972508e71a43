"""End-to-end benchmark: one training epoch of the article's recipe, against every peer.

Contenders, each training (Linear -> BatchNorm -> ReLU -> Dropout 0.3) x 3,
then Linear, softmax cross-entropy, SGD with momentum 0.9 on shuffled
mini-batches, float32:

- fastnet ``MLP.fit(epochs=1)``;
- "NumPy": the fastest idiomatic NumPy step
  (:class:`fastnet.bench.numpy_baseline.NumpyMLP`);
- "NumPy (article)": the article's functions as written
  (:class:`fastnet.bench.numpy_baseline.ArticleNumpyMLP`);
- PyTorch eager and ``torch.compile`` (:mod:`fastnet.bench.torch_baseline`),
  when torch imports;
- JAX: a jitted ``lax.scan`` epoch with optax (:mod:`fastnet.bench.jax_baseline`),
  when jax and optax import (``pip install 'fastnet[bench]'``);
- the GEMM floor: the same epoch's matrix products alone through NumPy's BLAS.

The quiet protocol: every sample is as many back-to-back epochs as last
``min_sample_seconds`` (timeit's autorange), preceded by a ``cooldown``
pause (0.3 s) that lets other thread pools go to sleep; samples of all
contenders are interleaved round by round (the order rotates) and medians
are compared.  Two more figures show what users meet outside a quiet
benchmark:

- *neighbour*: fastnet's (and PyTorch's) epoch right after the user's own
  NumPy BLAS work (ten ``A @ A`` on 512x512 float32 before every epoch,
  nothing set in the environment) divided by the quiet epoch;
- *idle*: ``predict`` of 1 and of 64 rows after 50 ms without work
  (``time.sleep(0.05)`` before every call) divided by the same on one thread.

    >>> from fastnet import bench
    >>> rows = bench.run(configs=["toy", "digits"])
    >>> print(bench.format_table(rows))

Nothing here sets environment variables or changes NumPy's BLAS threads;
``threads=`` sets fastnet's and PyTorch's thread count for the run only.
The environment line of the output lists the variables that change how the
peers run (``OMP_*``, ``OPENBLAS_*``, ``MKL_*``, ``GOMP_*``, ``XLA_*``).  Some
machines set ``OPENBLAS_CORETYPE`` or ``OPENBLAS_L2_SIZE``, which slow
NumPy's products; to measure NumPy as it runs by default, unset them in the
command that starts the bench, never inside a program::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastnet bench --json bench.json

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import argparse
import contextlib
import gc
import json
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections import namedtuple

import numpy as np

import fastnet
from fastnet.bench import jax_baseline, numpy_baseline, torch_baseline

__all__ = [
    "CONFIGS",
    "CONTENDERS",
    "GOALS",
    "IDLE_GOAL",
    "NEIGHBOUR_GOAL",
    "QUICK",
    "QUIET",
    "Config",
    "GemmFloor",
    "Protocol",
    "add_arguments",
    "blas_peak_gflops",
    "environment",
    "epochs_per_sample",
    "format_environment",
    "format_memory",
    "format_table",
    "format_threads_table",
    "gemm_flops",
    "main",
    "make_data",
    "measure_fit_memory",
    "measure_idle",
    "neighbour_blas_work",
    "run",
    "run_from_args",
    "run_threads_scaling",
]

Config = namedtuple("Config", "name n batch sizes")

CONFIGS = {
    "toy": Config("toy", 2048, 64, (2, 64, 64, 64, 2)),
    "digits": Config("digits", 4096, 128, (64, 128, 128, 128, 10)),
    "mnist-like": Config("mnist-like", 4096, 256, (784, 512, 512, 512, 10)),
    "wide": Config("wide", 2048, 512, (1024, 2048, 2048, 2048, 10)),
}

# contender key -> column label, in table order (the GEMM floor is not a contender)
CONTENDERS = {
    "fastnet": "fastnet",
    "numpy": "NumPy",
    "numpy_article": "NumPy (article)",
    "torch": "PyTorch",
    "torch_compile": "torch.compile",
    "jax": "JAX",
}

# issue 15: fastnet's median speed-up over each peer (peer time / fastnet time)
GOALS = {
    "toy": {"numpy": 6.0, "torch": 20.0, "jax": 6.0},
    "digits": {"numpy": 4.0, "torch": 7.0, "jax": 4.0},
    "mnist-like": {"numpy": 1.6, "torch": 1.6, "jax": 1.6},
    "wide": {"numpy": 1.35, "torch": 1.2, "jax": 1.25},
}
NEIGHBOUR_GOAL = 1.25   # fastnet's epoch after NumPy BLAS work / quiet epoch, at most
IDLE_GOAL = 1.25        # predict after 50 ms idle / the same on one thread, at most

DROPOUT = 0.3
LR = 0.01
MOMENTUM = 0.9

Protocol = namedtuple("Protocol",
                      "cooldown min_sample_seconds idle_pause idle_calls peak_size")
Protocol.__doc__ = """How samples are taken.

cooldown : seconds of sleep before every sample (lets other thread pools stop spinning)
min_sample_seconds : a sample is as many back-to-back epochs as last this long; a
    2 ms epoch timed alone right after the pause mostly measures a cold core
idle_pause : seconds without work before every timed ``predict`` of the idle figure
idle_calls : timed predict calls per row count and thread setting
peak_size : n of the n^3 sgemm that measures the BLAS peak (the FLOP floor)
"""
QUIET = Protocol(cooldown=0.3, min_sample_seconds=0.05, idle_pause=0.05, idle_calls=8,
                 peak_size=2048)
# for tests and smoke runs: the same steps, shorter (its figures are not for reading)
QUICK = Protocol(cooldown=0.01, min_sample_seconds=0.005, idle_pause=0.05, idle_calls=2,
                 peak_size=512)

NEIGHBOUR_SIZE = 512       # the user's own NumPy work: ten A @ A on 512x512 float32
NEIGHBOUR_PRODUCTS = 10
IDLE_ROWS = (1, 64)


def _config(config):
    if isinstance(config, Config):
        return config
    try:
        return CONFIGS[config]
    except KeyError:
        raise ValueError(f"unknown config {config!r}; choose from {', '.join(CONFIGS)}") \
            from None


def _configs(configs):
    if configs is None:
        return list(CONFIGS.values())
    if isinstance(configs, (str, Config)):
        configs = [configs]
    return [_config(c) for c in configs]


def make_data(config, seed=0, dtype=np.float32):
    """Synthetic (X, y) for a config: Gaussian features, labels of a random linear
    teacher (so the task is learnable), from a seeded generator."""
    cfg = _config(config)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((cfg.n, cfg.sizes[0]), dtype=np.float32).astype(dtype, copy=False)
    teacher = rng.standard_normal((cfg.sizes[0], cfg.sizes[-1]), dtype=np.float32)
    y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    return X, y


def _steps(cfg):
    return math.ceil(cfg.n / cfg.batch)


def gemm_flops(config):
    """Floating-point operations of the matrix products of one epoch.

    Per step and layer (fan_in, fan_out) at batch B: forward ``x @ W`` and
    ``dW = h.T @ dz`` (2 B fan_in fan_out each), and ``dx = dz @ W.T`` for
    every layer but the first."""
    cfg = _config(config)
    pairs = list(zip(cfg.sizes[:-1], cfg.sizes[1:]))
    per_row = sum(3 * fi * fo for fi, fo in pairs) - pairs[0][0] * pairs[0][1]
    return 2.0 * cfg.batch * per_row * _steps(cfg)


class GemmFloor:
    """The matrix products of one training epoch alone, through NumPy's BLAS.

    ``epoch()`` runs, for every step, ``np.matmul(h, W, out=z)`` for every
    layer, then ``np.matmul(h.T, dz, out=dW)`` for every layer and
    ``np.matmul(dz, W.T, out=dh)`` for every layer but the first, into
    preallocated arrays (full batches only)."""

    def __init__(self, config, seed=0, dtype=np.float32):
        cfg = self.config = _config(config)
        rng = np.random.default_rng(seed)
        B = cfg.batch

        def rand(*shape):
            return rng.standard_normal(shape, dtype=np.float32).astype(dtype, copy=False)

        pairs = list(zip(cfg.sizes[:-1], cfg.sizes[1:]))
        self.h = [rand(B, fi) for fi, _ in pairs]
        self.W = [rand(fi, fo) for fi, fo in pairs]
        self.z = [np.empty((B, fo), dtype) for _, fo in pairs]
        self.dz = [rand(B, fo) for _, fo in pairs]
        self.dW = [np.empty((fi, fo), dtype) for fi, fo in pairs]
        self.dh = [np.empty((B, fi), dtype) for fi, _ in pairs]

    def step(self):
        h, W, z, dz, dW, dh = self.h, self.W, self.z, self.dz, self.dW, self.dh
        for l in range(len(W)):
            np.matmul(h[l], W[l], out=z[l])
        for l in reversed(range(len(W))):
            np.matmul(h[l].T, dz[l], out=dW[l])
            if l > 0:
                np.matmul(dz[l], W[l].T, out=dh[l])

    def epoch(self):
        for _ in range(_steps(self.config)):
            self.step()


def blas_peak_gflops(n=2048, repeats=3, dtype=np.float32):
    """Peak matrix-multiply rate of NumPy's BLAS here: the best of `repeats`
    timings of an (n, n) @ (n, n) product into a preallocated output, in
    GFLOP/s (with NumPy's BLAS thread settings as they are)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32).astype(dtype, copy=False)
    b = rng.standard_normal((n, n), dtype=np.float32).astype(dtype, copy=False)
    out = np.empty((n, n), dtype)
    np.matmul(a, b, out=out)                  # warm-up
    best = min(_timed(lambda: np.matmul(a, b, out=out)) for _ in range(repeats))
    return 2.0 * n ** 3 / best / 1e9


def neighbour_blas_work(seed=0):
    """The user's own NumPy work of the neighbour figure: a function that runs
    ten ``A @ A`` on a 512x512 float32 matrix, with NumPy's BLAS as it is."""
    A = np.random.default_rng(seed).standard_normal((NEIGHBOUR_SIZE, NEIGHBOUR_SIZE),
                                                    dtype=np.float32)
    A *= 1.0 / math.sqrt(NEIGHBOUR_SIZE)

    def work():
        for _ in range(NEIGHBOUR_PRODUCTS):
            A @ A
    return work


# ---- noise monitor --------------------------------------------------------------------

class _CpuMonitor:
    """CPU time used by *other* processes while we measure (Linux; else None).

    ``others`` is in cores: 0.0 on a quiet machine, 1.0 when another process
    kept one core busy the whole time."""

    def __init__(self):
        self.others = None
        self._t0 = None

    @staticmethod
    def _read():
        with open("/proc/stat") as fh:
            fields = fh.readline().split()[1:]
        values = [int(v) for v in fields]
        busy = sum(values) - values[3] - (values[4] if len(values) > 4 else 0)  # - idle, iowait
        with open("/proc/self/stat") as fh:
            stat = fh.read().rsplit(")", 1)[1].split()
        own = int(stat[11]) + int(stat[12])          # utime + stime (all threads)
        return busy, own, time.perf_counter()

    def __enter__(self):
        try:
            self._t0 = self._read()
        except (OSError, ValueError, IndexError):
            self._t0 = None
        return self

    def __exit__(self, *exc):
        if self._t0 is None:
            return False
        try:
            busy, own, t = self._read()
        except (OSError, ValueError, IndexError):
            return False
        hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        wall = t - self._t0[2]
        if wall > 0.2:        # jiffies are too coarse below that
            self.others = max(0.0, ((busy - self._t0[0]) - (own - self._t0[1])) / hz / wall)
        return False


# ---- timing ---------------------------------------------------------------------------

def _timed(fn, number=1):
    """Mean seconds of `number` back-to-back calls of fn."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


def epochs_per_sample(fn, min_seconds=QUIET.min_sample_seconds):
    """Calls of fn per timing sample: the first of 1, 2, 5, 10, 20, 50, ...
    whose back-to-back run lasts at least `min_seconds` (as timeit.autorange)."""
    number = 1
    while True:
        for step in (1, 2, 5):
            n = number * step
            if n * _timed(fn, n) >= min_seconds or n >= 1000:
                return n
        number *= 10


Sampler = namedtuple("Sampler", "epoch sample")
Sampler.__doc__ = """A contender's epoch and how one sample of it is taken.

epoch : callable running one epoch (sized by :func:`epochs_per_sample`)
sample : callable(number) -> mean seconds of one epoch over `number` epochs
"""


def _quiet(epoch):
    """Sampler of back-to-back epochs."""
    return Sampler(epoch, lambda number: _timed(epoch, number))


def _after_blas(epoch, work):
    """Sampler of epochs each run right after `work` (the user's NumPy BLAS
    calls, not timed): the neighbour figure."""
    def sample(number):
        total = 0.0
        for _ in range(number):
            work()
            total += _timed(epoch)
        return total / number
    return Sampler(epoch, sample)


def _fastnet_epoch(cfg, X, y, threads):
    """(model, epoch): ``model.fit(epochs=1)`` with a reused SGD optimizer."""
    model = fastnet.MLP(list(cfg.sizes), dropout=DROPOUT, seed=0)
    opt = fastnet.optim.SGD(lr=LR, momentum=MOMENTUM)
    ctx = (lambda: fastnet.threads(threads)) if threads is not None else contextlib.nullcontext

    def epoch():
        with ctx():
            model.fit(X, y, epochs=1, batch_size=cfg.batch, optimizer=opt, verbose=0)
    return model, epoch


def _numpy_epoch(cfg, X, y, article=False):
    cls = numpy_baseline.ArticleNumpyMLP if article else numpy_baseline.NumpyMLP
    net = cls(cfg.sizes, dropout=DROPOUT, seed=0)
    return lambda: net.train_epoch(X, y, cfg.batch, LR, MOMENTUM)


def _torch_epoch(cfg, X, y, threads, compile=False):
    """(net, epoch) of PyTorch eager or compiled."""
    torch = torch_baseline._import_torch()
    net = torch_baseline.TorchMLP(cfg.sizes, dropout=DROPOUT, seed=0, lr=LR, momentum=MOMENTUM,
                                  num_threads=2 if threads is None else threads,
                                  compile=compile)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    return net, lambda: net.train_epoch(Xt, yt, cfg.batch)


def _jax_epoch(cfg, X, y):
    net = jax_baseline.JaxMLP(cfg.sizes, dropout=DROPOUT, seed=0, lr=LR, momentum=MOMENTUM)
    Xd, yd = net.to_device(X, y)
    return lambda: net.train_epoch(Xd, yd, cfg.batch)


def _say(progress, msg):
    if progress is not None:
        progress(msg)


def _measure(samplers, repeats, protocol, progress, label):
    """Warm each contender up and size its samples with epochs_per_sample, then
    `repeats` interleaved rounds (rotating the order), each sample after the
    protocol's cooldown.  Returns ({name: [seconds, ...]}, {name: epochs per
    sample}, others' CPU load)."""
    number, sized = {}, {}
    for name, s in samplers.items():
        key = id(s.epoch)                  # a neighbour sampler shares its epoch's size
        if key not in sized:
            _say(progress, f"{label}: warm-up {name}")
            s.epoch()
            sized[key] = epochs_per_sample(s.epoch, protocol.min_sample_seconds)
            time.sleep(protocol.cooldown)
        number[name] = sized[key]
    times = {name: [] for name in samplers}
    names = list(samplers)
    # what lives now (models, data, imported libraries) is left out of the
    # collection before every sample: a full collection with torch and jax
    # loaded takes ~0.1 s, and only the garbage of the samples matters
    gc.collect()
    gc.freeze()
    try:
        with _CpuMonitor() as mon:
            for r in range(repeats):
                for name in names[r % len(names):] + names[:r % len(names)]:
                    gc.collect()
                    time.sleep(protocol.cooldown)
                    times[name].append(samplers[name].sample(number[name]))
                _say(progress, f"{label}: round {r + 1}/{repeats}: " + ", ".join(
                    f"{n} {times[n][-1]:.4g}s" for n in names))
    finally:
        gc.unfreeze()
    return times, number, mon.others


def measure_idle(predict, one_thread, rows=IDLE_ROWS, protocol=QUIET):
    """The idle figure of one library: predict after an idle pause, default
    threads against one thread.

    Parameters
    ----------
    predict : callable(n_rows)
        Runs the library's predict on `n_rows` rows.
    one_thread : callable() -> context manager
        Pins the library to one thread inside the block (and restores it).
    rows : sequence of int
    protocol : Protocol
        ``idle_pause`` seconds of sleep before every timed call,
        ``idle_calls`` timed calls per row count and setting, in two
        alternating blocks per setting; the first call after a change of
        setting is not timed (it may start or stop threads).

    Returns
    -------
    list of dict
        Per row count: rows, default_s, one_thread_s (medians) and ratio
        (default / one thread).
    """
    times = {(n, mode): [] for n in rows for mode in ("default", "one")}
    blocks = 2
    per_block = max(1, math.ceil(protocol.idle_calls / blocks))
    for _ in range(blocks):
        for mode, ctx in (("default", contextlib.nullcontext), ("one", one_thread)):
            with ctx():
                for n in rows:
                    predict(n)
                    for _ in range(per_block):
                        time.sleep(protocol.idle_pause)
                        t0 = time.perf_counter()
                        predict(n)
                        times[(n, mode)].append(time.perf_counter() - t0)
    out = []
    for n in rows:
        default, one = (statistics.median(times[(n, m)]) for m in ("default", "one"))
        out.append({"rows": n, "default_s": default, "one_thread_s": one,
                    "ratio": _ratio(default, one)})
    return out


def _fastnet_idle(model, X, threads, protocol):
    ctx = fastnet.threads(threads) if threads is not None else contextlib.nullcontext()
    with ctx:
        return measure_idle(lambda n: model.predict(X[:n]), lambda: fastnet.threads(1),
                            protocol=protocol)


def _torch_idle(net, X, protocol):
    torch = torch_baseline._import_torch()
    Xt = torch.from_numpy(X)
    with net.evaluating(), torch_baseline.torch_threads(net.num_threads):
        return measure_idle(lambda n: net.predict(Xt[:n]),
                            lambda: torch_baseline.torch_threads(1), protocol=protocol)


def _first_epoch(make):
    """(epoch, None) after a first epoch of an optional peer's runner, or (None,
    error text) when building or running it fails: torch.compile needs a
    working C++ toolchain, XLA a CPU it supports, and a peer that cannot run
    here must not end the bench."""
    try:
        epoch = make()
        epoch()
    except Exception as exc:      # any failure of the peer's own stack
        return None, f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return epoch, None


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def _contenders(with_torch, with_compile, with_jax):
    """The contender keys this run measures (those whose library imports)."""
    use_torch = bool(with_torch) and torch_baseline.available()
    names = ["fastnet", "numpy", "numpy_article"]
    if use_torch:
        names.append("torch")
        if with_compile:
            names.append("torch_compile")
    if with_jax and jax_baseline.available():
        names.append("jax")
    return names


def run(configs=None, repeats=5, threads=None, with_torch=True, progress=None, *,
        with_compile=True, with_jax=True, with_neighbour=True, with_idle=True,
        protocol=QUIET, neighbour=None, seed=0):
    """Time one training epoch of each config for every contender, with the
    neighbour and idle figures.

    Parameters
    ----------
    configs : None (all four), a name, or a list of names / Config
        Names: "toy", "digits", "mnist-like", "wide".
    repeats : int
        Interleaved rounds of samples after the warm-up.
    threads : int, optional
        fastnet's (and PyTorch's) thread count for the run; None keeps
        fastnet's current setting and runs PyTorch at 2 threads.  NumPy's BLAS
        threads and JAX's thread pool are never changed.
    with_torch, with_compile, with_jax : bool
        Include PyTorch eager, torch.compile (needs with_torch) and JAX when
        they import.
    with_neighbour, with_idle : bool
        Measure the neighbour and idle figures (fastnet, and PyTorch eager
        when it runs).
    progress : callable(str), optional
        Receives a line per measurement step.
    protocol : Protocol
        :data:`QUIET` (default) or :data:`QUICK` (tests, smoke runs).
    neighbour : callable, optional
        The user's own work run (untimed) before every epoch of the
        neighbour figure; default :func:`neighbour_blas_work`, ten ``A @ A``
        on 512x512 float32.

    Returns
    -------
    list of dict
        Per config: config, n, batch, sizes, steps, contenders (the keys
        measured, in table order), failed ({peer: error} for an optional peer
        that imports but cannot run here), epoch_s ({contender or "floor": median seconds}),
        speedup ({peer: peer time / fastnet time}), x_floor ({contender:
        time / GEMM floor}), x_peak_floor (fastnet / FLOP floor, the epoch's
        GEMM FLOPs at the BLAS peak), after_blas_s and neighbour ({"fastnet",
        "torch": epoch after NumPy BLAS work, and that / the quiet epoch}),
        idle ({"fastnet", "torch": :func:`measure_idle` rows}), goals
        (:data:`GOALS` of the config), gflop, floor_gflops, peak_gflops,
        epochs_per_sample, others_cpu (CPU cores other processes used while
        measuring; None if unknown), samples (every timing), threads.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if not isinstance(protocol, Protocol):
        raise TypeError(f"protocol must be a Protocol (QUIET, QUICK), got {protocol!r}")
    configs = _configs(configs)
    contenders = _contenders(with_torch, with_compile, with_jax)
    _say(progress, f"BLAS peak: {protocol.peak_size}^3 sgemm")
    peak = blas_peak_gflops(protocol.peak_size)
    work = neighbour_blas_work(seed) if neighbour is None else neighbour
    rows = []
    for cfg in configs:
        X, y = make_data(cfg, seed)
        model, fastnet_epoch = _fastnet_epoch(cfg, X, y, threads)
        samplers = {"fastnet": _quiet(fastnet_epoch),
                    "numpy": _quiet(_numpy_epoch(cfg, X, y)),
                    "numpy_article": _quiet(_numpy_epoch(cfg, X, y, article=True))}
        torch_net = None
        if "torch" in contenders:
            torch_net, torch_epoch = _torch_epoch(cfg, X, y, threads)
            samplers["torch"] = _quiet(torch_epoch)
        failed = {}
        # the lambdas run in this iteration (by _first_epoch), with this iteration's data
        for name, make in (("torch_compile",
                            lambda: _torch_epoch(cfg, X, y, threads, True)[1]),  # noqa: B023
                           ("jax", lambda: _jax_epoch(cfg, X, y))):  # noqa: B023
            if name in contenders:
                epoch, error = _first_epoch(make)
                if error is None:
                    samplers[name] = _quiet(epoch)
                else:
                    failed[name] = error
                    _say(progress, f"{cfg.name}: {CONTENDERS[name]} failed: {error}")
        samplers["floor"] = _quiet(GemmFloor(cfg, seed).epoch)
        if with_neighbour:
            samplers["fastnet_after_blas"] = _after_blas(fastnet_epoch, work)
            if torch_net is not None:
                samplers["torch_after_blas"] = _after_blas(torch_epoch, work)
        times, number, others = _measure(samplers, repeats, protocol, progress, cfg.name)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        measured = [name for name in contenders if name in med]
        epoch_s = {name: med[name] for name in measured + ["floor"]}
        idle = {}
        if with_idle:
            _say(progress, f"{cfg.name}: idle predict")
            idle["fastnet"] = _fastnet_idle(model, X, threads, protocol)
            if torch_net is not None:
                idle["torch"] = _torch_idle(torch_net, X, protocol)
        after = {lib: med[f"{lib}_after_blas"] for lib in ("fastnet", "torch")
                 if f"{lib}_after_blas" in med}
        flops = gemm_flops(cfg)
        rows.append({
            "config": cfg.name, "n": cfg.n, "batch": cfg.batch, "sizes": list(cfg.sizes),
            "steps": _steps(cfg), "contenders": measured, "failed": failed,
            "epoch_s": epoch_s,
            "speedup": {name: _ratio(med[name], med["fastnet"]) for name in measured
                        if name != "fastnet"},
            "x_floor": {name: _ratio(med[name], med["floor"]) for name in measured},
            "x_peak_floor": med["fastnet"] / (flops / 1e9 / peak),
            "after_blas_s": after,
            "neighbour": {lib: _ratio(t, med[lib]) for lib, t in after.items()},
            "idle": idle, "goals": dict(GOALS.get(cfg.name, {})),
            "gflop": flops / 1e9, "floor_gflops": flops / 1e9 / med["floor"],
            "peak_gflops": peak, "peak_size": protocol.peak_size,
            "epochs_per_sample": number, "others_cpu": others,
            "samples": times,
            "threads": fastnet.get_num_threads() if threads is None else threads,
        })
        del samplers, model, torch_net
        gc.collect()
    return rows


def run_threads_scaling(configs=None, repeats=3, thread_counts=(1, 2), progress=None, *,
                        protocol=QUIET, seed=0):
    """fastnet's epoch time at each thread count (interleaved, medians).

    Returns a list of dict: config, times ({threads: seconds}), speedup
    (time at the first count / time at the last), others_cpu, samples.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    rows = []
    for cfg in _configs(configs):
        X, y = make_data(cfg, seed)
        samplers = {t: _quiet(_fastnet_epoch(cfg, X, y, t)[1]) for t in thread_counts}
        times, _, others = _measure(samplers, repeats, protocol, progress,
                                    f"{cfg.name} threads")
        med = {t: statistics.median(ts) for t, ts in times.items()}
        first, last = thread_counts[0], thread_counts[-1]
        rows.append({"config": cfg.name, "times": med, "speedup": _ratio(med[first], med[last]),
                     "others_cpu": others, "samples": times})
    return rows


# ---- memory ---------------------------------------------------------------------------

class _EpochMemory:
    """fit callback: tracemalloc's current traced size at the end of every epoch."""

    def __init__(self):
        self.current = []

    def on_epoch_end(self, epoch, logs):
        self.current.append(tracemalloc.get_traced_memory()[0])


def _rss_kib(field):
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _reset_rss_peak():
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")            # resets VmHWM (Linux >= 4.0)
        return True
    except OSError:
        return False


def _fit_memory_once(cfg, X, y, epochs):
    gc.collect()
    rss_ok = _reset_rss_peak()
    rss_before = _rss_kib("VmRSS")
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        model = fastnet.MLP(list(cfg.sizes), dropout=DROPOUT, seed=0)
        opt = fastnet.optim.SGD(lr=LR, momentum=MOMENTUM)
        tracker = _EpochMemory()
        model.fit(X, y, epochs=epochs, batch_size=cfg.batch, optimizer=opt, verbose=0,
                  callbacks=[tracker])
        peak = tracemalloc.get_traced_memory()[1] - base
        current = [c - base for c in tracker.current]
    finally:
        tracemalloc.stop()
    rss_hwm = _rss_kib("VmHWM")
    rss_delta = (rss_hwm - rss_before) * 1024 if rss_ok and None not in (rss_hwm, rss_before) \
        else None
    return model, opt, peak, current, rss_delta


def measure_fit_memory(config="mnist-like", epochs=5, seed=0):
    """Peak memory of ``fit`` against the arrays training needs.

    Traced with tracemalloc (NumPy's array allocations are tracked) from
    the model's construction to the end of ``fit``, once for 1 epoch and
    once for `epochs` epochs (fresh models).  "required" is what the model
    and one batch need: parameters, gradients, batch-norm buffers, the
    optimizer's state and the engine's workspace (activations, masks,
    packing and scratch of one batch).  The training data itself is not
    counted.

    Returns a dict: config, required_bytes, breakdown (dict), peak_1_bytes,
    peak_n_bytes, epochs, ratio (peak_n / required), growth_bytes (traced
    size at the end of the last epoch minus at the end of the first),
    epoch_current_bytes, rss_peak_delta_bytes (peak RSS growth during the
    n-epoch fit, Linux only, None otherwise; RSS also sees BLIS's packing
    buffers, which tracemalloc does not).
    """
    cfg = _config(config)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 2:
        raise ValueError(f"epochs must be an int >= 2, got {epochs!r}")
    X, y = make_data(cfg, seed)
    _, _, peak_1, _, _ = _fit_memory_once(cfg, X, y, 1)
    model, opt, peak_n, current, rss_delta = _fit_memory_once(cfg, X, y, epochs)
    engine = model._engine(min(cfg.batch, cfg.n), "cross_entropy")
    opt_bytes = sum(a.nbytes for bufs in opt._buffers if bufs is not None
                    for a in bufs if a is not None)
    breakdown = {"params": model.params.nbytes, "grads": model.grads.nbytes,
                 "buffers": model.buffers.nbytes, "optimizer": opt_bytes,
                 "workspace": int(engine.workspace_bytes)}
    required = sum(breakdown.values())
    return {"config": cfg.name, "required_bytes": required, "breakdown": breakdown,
            "peak_1_bytes": peak_1, "peak_n_bytes": peak_n, "epochs": epochs,
            "ratio": peak_n / required, "growth_bytes": current[-1] - current[0],
            "epoch_current_bytes": current, "rss_peak_delta_bytes": rss_delta,
            "data_bytes": X.nbytes + y.nbytes}


# ---- reporting --------------------------------------------------------------------------


def environment(with_torch=True, with_jax=True):
    """Machine, library and thread facts to print beside the tables."""
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "fastnet": fastnet.__version__, "platform": platform.platform(),
            "cpu": _cpu_name(), "cpus": os.cpu_count()}
    try:
        info["fastnet_build"] = fastnet.build_info()
    except (ImportError, OSError, RuntimeError) as exc:   # informative only
        info["fastnet_build"] = repr(exc)
    try:
        from threadpoolctl import threadpool_info
        info["numpy_blas"] = [{k: d.get(k) for k in ("internal_api", "version",
                                                     "architecture", "num_threads",
                                                     "threading_layer")}
                              for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        info["numpy_blas"] = None
    info["torch"] = torch_baseline.version() if with_torch else None
    info["jax"] = jax_baseline.version() if with_jax else None
    # variables that change how the peers run; the bench only reports them
    info["env"] = {k: os.environ[k] for k in sorted(os.environ)
                   if k.startswith(("OMP_", "OPENBLAS_", "MKL_", "GOMP_", "XLA_", "FASTNET_"))}
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        info["loadavg"] = None
    return info


def _cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_environment(info):
    blas = info.get("numpy_blas")
    blas_text = ", ".join(f"{b['internal_api']} {b['version']} ({b['architecture']} kernels, "
                          f"{b['num_threads']} threads)" for b in blas) if blas else "unknown"
    build = info.get("fastnet_build")
    fn_threads = build.get("num_threads") if isinstance(build, dict) else "?"
    lines = [f"machine: {info['cpu']}, {info['cpus']} CPUs; {info['platform']}",
             (f"fastnet {info['fastnet']} ({fn_threads} threads), NumPy {info['numpy']} "
              f"(BLAS: {blas_text}), PyTorch {info.get('torch') or 'n/a'}, "
              f"JAX {info.get('jax') or 'n/a'}, Python {info['python']}")]
    if info.get("env"):
        lines.append("environment: " + " ".join(f"{k}={v}" for k, v in info["env"].items()))
    if info.get("loadavg"):
        lines.append("load average: " + ", ".join(f"{v:.2f}" for v in info["loadavg"]))
    return "\n".join(lines)


def _fmt_s(t):
    if t is None:
        return "n/a"
    if t < 1e-3:
        return f"{t * 1e6:.0f} us"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_x(r, goal=None, at_most=False):
    """A ratio, with the goal and whether it is met: "5.10x (goal 6x: below)"."""
    if r is None:
        return "n/a"
    text = f"{r:.2f}x"
    if goal is not None:
        met = r <= goal if at_most else r >= goal
        text += f" ({'<=' if at_most else '>='} {goal:g}: {'ok' if met else 'missed'})"
    return text


def _markdown(header, body):
    return "\n".join(["| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
                     + ["| " + " | ".join(r) + " |" for r in body])


def _measured(rows, key):
    """Contender keys measured in any row, in table order."""
    seen = {name for r in rows for name in r[key]}
    return [name for name in CONTENDERS if name in seen]


def _noise(r):
    others = r.get("others_cpu")
    return "?" if others is None else f"{others:.2f}" + (" (noisy)" if others >= 0.25 else "")


def format_table(rows, goals=True):
    """Markdown tables of :func:`run`'s rows.

    1. the median epoch of every contender and the GEMM floor;
    2. fastnet's speed-up over each peer (peer time / fastnet time), beside
       issue 15's goals when ``goals`` is true;
    3. every contender's epoch as a multiple of the GEMM floor (and fastnet's
       of the FLOP floor);
    4. the neighbour and idle figures (at most 1.25 is the goal), and the CPU
       other processes used while measuring (>= 0.25 cores: noisy).

    A note follows when torch.compile was no faster than PyTorch eager."""
    if not rows:
        return ""
    names = _measured(rows, "epoch_s")
    peers = [n for n in names if n != "fastnet"]
    times = _markdown(["config"] + [CONTENDERS[n] for n in names] + ["GEMM floor"], [
        [r["config"]] + [_fmt_s(r["epoch_s"].get(n)) for n in names]
        + [f"{_fmt_s(r['epoch_s']['floor'])} ({r['floor_gflops']:.0f} GFLOP/s)"]
        for r in rows])
    speed = _markdown(["config"] + [f"vs {CONTENDERS[n]}" for n in peers], [
        [r["config"]] + [_fmt_x(r["speedup"].get(n), r["goals"].get(n) if goals else None)
                         for n in peers] for r in rows])
    floor = _markdown(["config"] + [CONTENDERS[n] for n in names] + ["fastnet / FLOP floor"], [
        [r["config"]] + [_fmt_x(r["x_floor"].get(n)) for n in names]
        + [_fmt_x(r["x_peak_floor"])] for r in rows])
    parts = ["Epoch (median):", times, "",
             "fastnet's speed-up (peer's epoch / fastnet's epoch; issue 15's goal):", speed, "",
             ("Epoch / GEMM floor (the epoch's matrix products alone through NumPy's BLAS, "
              "same run):"), floor]
    outside = _format_neighbour_idle(rows, goals)
    if outside:
        parts += ["", ("Neighbours and idle gaps: the epoch right after ten A @ A "
                       f"({NEIGHBOUR_SIZE}x{NEIGHBOUR_SIZE} float32, NumPy) / the quiet epoch; "
                       "predict after 50 ms idle / the same on one thread:"), outside]
    parts.append("")
    parts.append(f"FLOP floor: the epoch's GEMM FLOPs at the BLAS peak measured here "
                 f"({rows[0]['peak_gflops']:.0f} GFLOP/s, {rows[0]['peak_size']}^3 sgemm).")
    note = _compile_note(rows)
    if note:
        parts.append(note)
    for r in rows:
        for name, error in r.get("failed", {}).items():
            parts.append(f"{CONTENDERS[name]} could not run on {r['config']}: {error}")
    return "\n".join(parts)


def _format_neighbour_idle(rows, goals):
    """The neighbour and idle columns of fastnet and PyTorch ("" if none was measured)."""
    labels = {"fastnet": "fastnet", "torch": "PyTorch"}
    libs = [lib for lib in labels
            if any(lib in r.get("neighbour", {}) or lib in r.get("idle", {}) for r in rows)]
    if not libs:
        return ""
    header, body = ["config"], []
    for lib in libs:
        header.append(f"{labels[lib]} after NumPy BLAS / quiet")
        header += [f"{labels[lib]} predict {n} row{'s' * (n != 1)} idle / 1 thread"
                   for n in IDLE_ROWS]
    header.append("others' CPU")
    for r in rows:
        line = [r["config"]]
        for lib in libs:
            with_goal = goals and lib == "fastnet"      # the goals are fastnet's
            line.append(_fmt_x(r.get("neighbour", {}).get(lib),
                               NEIGHBOUR_GOAL if with_goal else None, at_most=True))
            by_rows = {d["rows"]: d for d in r.get("idle", {}).get(lib, [])}
            for n in IDLE_ROWS:
                d = by_rows.get(n)
                line.append("n/a" if d is None else (
                    _fmt_x(d["ratio"], IDLE_GOAL if with_goal else None, at_most=True)
                    + f" ({_fmt_s(d['default_s'])} vs {_fmt_s(d['one_thread_s'])})"))
        line.append(_noise(r))
        body.append(line)
    return _markdown(header, body)


def _compile_note(rows):
    pairs = [(r["config"], _ratio(r["epoch_s"].get("torch_compile"), r["epoch_s"].get("torch")))
             for r in rows]
    slow = [(c, x) for c, x in pairs if x is not None and x >= 1.0]
    if not slow:
        return ""
    listed = ", ".join(f"{c} ({x:.2f}x eager's epoch)" for c, x in slow)
    return f"torch.compile was no faster than PyTorch eager on {listed}."


def format_threads_table(rows):
    """Markdown table of :func:`run_threads_scaling`'s rows."""
    counts = list(rows[0]["times"]) if rows else [1, 2]
    head = "| config | " + " | ".join(f"{t} thread{'s' * (t != 1)}" for t in counts) + \
        f" | speed-up {counts[0]} -> {counts[-1]} | others' CPU |"
    lines = [head, "|---|" + "---:|" * (len(counts) + 2)]
    for r in rows:
        others = r.get("others_cpu")
        lines.append(f"| {r['config']} | " + " | ".join(_fmt_s(r["times"][t]) for t in counts)
                     + f" | {_fmt_x(r['speedup'])} | "
                     + ("?" if others is None else f"{others:.2f}") + " |")
    return "\n".join(lines)


def _mib(b):
    return f"{b / 2**20:.2f} MiB"


def format_memory(result):
    """Text report of :func:`measure_fit_memory`."""
    r = result
    parts = ", ".join(f"{k} {_mib(v)}" for k, v in r["breakdown"].items())
    rss = r.get("rss_peak_delta_bytes")
    lines = [f"peak memory of fit ({r['config']}, tracemalloc):",
             f"  required {_mib(r['required_bytes'])} ({parts})",
             (f"  peak, 1 epoch: {_mib(r['peak_1_bytes'])}; {r['epochs']} epochs: "
              f"{_mib(r['peak_n_bytes'])} -> {r['ratio']:.2f}x required (goal <= 1.5x)"),
             f"  growth from epoch 1 to {r['epochs']}: {r['growth_bytes']} bytes"]
    if rss is not None:
        lines.append(f"  peak RSS growth during the {r['epochs']}-epoch fit: {_mib(rss)} "
                     "(coarse: sees BLIS buffers, but not memory the process already held)")
    return "\n".join(lines)


def _jsonable(value):
    """`value` with tuples as lists, NumPy scalars as Python numbers and every
    dict key a string (JSON's object keys)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ---- command line ---------------------------------------------------------------------------

def add_arguments(parser):
    """The options of ``fastnet bench`` (shared with ``python -m fastnet.bench``)."""
    if parser.epilog is None:
        parser.epilog = ("Nothing is set in the environment. Where OPENBLAS_CORETYPE or "
                         "OPENBLAS_L2_SIZE is set (it slows NumPy), unset it in the command: "
                         "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastnet bench")
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of " + ",".join(CONFIGS) +
                             " (default: all; with --quick: toy; env FASTNET_BENCH_CONFIGS)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved timed rounds per config (default 5; --quick: 2)")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastnet and PyTorch threads (default: fastnet's setting, "
                             "PyTorch 2)")
    parser.add_argument("--no-torch", action="store_true",
                        help="skip PyTorch (eager and torch.compile)")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip torch.compile (its first epoch compiles: tens of seconds)")
    parser.add_argument("--no-jax", action="store_true", help="skip JAX")
    parser.add_argument("--no-neighbour", action="store_true",
                        help="skip the epoch after NumPy BLAS work")
    parser.add_argument("--no-idle", action="store_true",
                        help="skip predict after idle gaps")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: short pauses and samples, 2 rounds, toy only, no "
                             "torch.compile (the figures are not for reading)")
    parser.add_argument("--json", metavar="PATH", default=None,
                        help="also write the environment and every figure as JSON to PATH")
    parser.add_argument("--scaling", action="store_true",
                        help="also time fastnet at 1 and 2 threads")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of fit (mnist-like)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def run_from_args(args, out=None):
    """Run what ``args`` (from :func:`add_arguments`) asks and print the tables."""
    out = sys.stdout if out is None else out
    quick = bool(getattr(args, "quick", False))
    names = args.configs or os.environ.get("FASTNET_BENCH_CONFIGS") or ("toy" if quick else None)
    configs = [c.strip() for c in names.split(",") if c.strip()] if names else None
    if configs is not None:
        _configs(configs)             # unknown names fail before anything runs
    repeats = args.repeats if args.repeats is not None else (2 if quick else 5)
    if repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {repeats}")
    protocol = QUICK if quick else QUIET
    with_torch = not args.no_torch
    with_jax = not getattr(args, "no_jax", False)

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    prog = None if args.quiet else progress
    info = environment(with_torch, with_jax)
    print(format_environment(info), file=out)
    print(file=out)
    t0 = time.perf_counter()
    rows = run(configs, repeats=repeats, threads=args.threads, with_torch=with_torch,
               with_compile=not (getattr(args, "no_compile", False) or quick),
               with_jax=with_jax, with_neighbour=not getattr(args, "no_neighbour", False),
               with_idle=not getattr(args, "no_idle", False), progress=prog,
               protocol=protocol)
    print(f"One training epoch, median of {repeats} interleaved rounds "
          f"({'quick' if quick else 'quiet'} protocol: {protocol.cooldown:g} s pause before "
          f"each sample of >= {protocol.min_sample_seconds:g} s of back-to-back epochs):",
          file=out)
    print(format_table(rows), file=out)
    result = {"environment": info, "protocol": protocol._asdict(), "repeats": repeats,
              "goals": {"speedup": GOALS, "neighbour_at_most": NEIGHBOUR_GOAL,
                        "idle_at_most": IDLE_GOAL},
              "rows": rows}
    if args.scaling:
        trows = run_threads_scaling(configs, repeats=max(1, min(repeats, 3)), progress=prog,
                                    protocol=protocol)
        print("\nfastnet thread scaling:", file=out)
        print(format_threads_table(trows), file=out)
        result["threads_scaling"] = trows
    if args.memory:
        memory = measure_fit_memory("mnist-like")
        print(file=out)
        print(format_memory(memory), file=out)
        result["memory"] = memory
    result["seconds"] = time.perf_counter() - t0
    print(f"\n(bench ran {result['seconds']:.0f} s)", file=out)
    if getattr(args, "json", None):
        with open(args.json, "w") as fh:
            json.dump(_jsonable(result), fh, indent=1)
            fh.write("\n")
        print(f"figures written to {args.json}", file=out)
    return 0


def main(argv=None):
    """``python -m fastnet.bench [options]``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="fastnet bench", description="Time one training epoch of the article's recipe: "
        "fastnet vs NumPy (fast and article-literal) vs PyTorch (eager, torch.compile) vs "
        "JAX vs the GEMM floor, plus the neighbour and idle figures."))
    return run_from_args(parser.parse_args(argv))
