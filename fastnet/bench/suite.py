"""End-to-end benchmark: one training epoch of the seed's recipe (issue 4).

fastnet ``MLP.fit(epochs=1)`` against the plain NumPy baseline
(:mod:`fastnet.bench.numpy_baseline`), PyTorch eager
(:mod:`fastnet.bench.torch_baseline`, when installed) and the GEMM floor:
the matrix products of the same epoch alone, through NumPy's BLAS into
preallocated outputs.  Everything is measured in one process, interleaved
round by round, and the medians are compared.

    >>> from fastnet import bench
    >>> rows = bench.run(configs=["toy", "digits"])
    >>> print(bench.format_table(rows))

Nothing here changes thread settings of NumPy's BLAS or of the environment;
``threads=`` sets fastnet's thread count (and PyTorch's) for the run only.
"""
import argparse
import gc
import math
import os
import platform
import statistics
import sys
import time
import tracemalloc
from collections import namedtuple
from contextlib import nullcontext

import numpy as np

import fastnet
from fastnet.bench import numpy_baseline, torch_baseline

__all__ = [
    "CONFIGS",
    "GOALS",
    "Config",
    "GemmFloor",
    "add_arguments",
    "blas_peak_gflops",
    "environment",
    "format_environment",
    "format_memory",
    "format_table",
    "format_threads_table",
    "gemm_flops",
    "main",
    "make_data",
    "measure_fit_memory",
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

# issue 4: (vs NumPy, vs PyTorch eager at 2 threads), median speed-ups
GOALS = {"toy": (10.0, 25.0), "digits": (5.0, 8.0), "mnist-like": (1.6, 1.6),
         "wide": (1.2, 1.2)}

DROPOUT = 0.3
LR = 0.01
MOMENTUM = 0.9
COOLDOWN = 0.15      # s between measurements: lets other thread pools stop spinning
# A sample is as many back-to-back epochs as last this long (timeit's autorange):
# a 2 ms epoch timed alone right after the cool-down sleep mostly measures a
# cold core (measured here: toy 2.5-4.3 ms that way, 1.7-1.9 ms back to back).
MIN_SAMPLE_SECONDS = 0.05


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


def epochs_per_sample(fn, min_seconds=MIN_SAMPLE_SECONDS):
    """Calls of fn per timing sample: the first of 1, 2, 5, 10, 20, 50, ...
    whose back-to-back run lasts at least `min_seconds` (as timeit.autorange)."""
    number = 1
    while True:
        for step in (1, 2, 5):
            n = number * step
            if n * _timed(fn, n) >= min_seconds or n >= 1000:
                return n
        number *= 10


def _fastnet_runner(cfg, X, y, threads):
    model = fastnet.MLP(list(cfg.sizes), dropout=DROPOUT, seed=0)
    opt = fastnet.optim.SGD(lr=LR, momentum=MOMENTUM)
    ctx = (lambda: fastnet.threads(threads)) if threads is not None else nullcontext

    def epoch():
        with ctx():
            model.fit(X, y, epochs=1, batch_size=cfg.batch, optimizer=opt, verbose=0)
    return epoch


def _numpy_runner(cfg, X, y):
    net = numpy_baseline.NumpyMLP(cfg.sizes, dropout=DROPOUT, seed=0)
    return lambda: net.train_epoch(X, y, cfg.batch, LR, MOMENTUM)


def _torch_runner(cfg, X, y, threads):
    torch = torch_baseline._import_torch()
    net = torch_baseline.TorchMLP(cfg.sizes, dropout=DROPOUT, seed=0, lr=LR, momentum=MOMENTUM,
                                  num_threads=2 if threads is None else threads)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)
    return lambda: net.train_epoch(Xt, yt, cfg.batch)


def _say(progress, msg):
    if progress is not None:
        progress(msg)


def _measure(runners, repeats, cooldown, progress, label):
    """Warm each runner up (and size its samples with epochs_per_sample), then
    `repeats` interleaved rounds (rotating the order), each sample the mean
    of that many back-to-back calls; returns {name: [seconds, ...]} and the
    others' CPU load."""
    number = {}
    for name, fn in runners.items():
        _say(progress, f"{label}: warm-up {name}")
        fn()
        number[name] = epochs_per_sample(fn)
        time.sleep(cooldown)
    times = {name: [] for name in runners}
    names = list(runners)
    with _CpuMonitor() as mon:
        for r in range(repeats):
            for name in names[r % len(names):] + names[:r % len(names)]:
                gc.collect()
                time.sleep(cooldown)
                times[name].append(_timed(runners[name], number[name]))
            _say(progress, f"{label}: round {r + 1}/{repeats}: " + ", ".join(
                f"{n} {times[n][-1]:.4g}s" for n in names))
    return times, mon.others


def _ratio(a, b):
    return None if a is None or b is None or b <= 0 else a / b


def run(configs=None, repeats=5, threads=None, with_torch=True, progress=None, *,
        cooldown=COOLDOWN, seed=0):
    """Time one training epoch of each config: fastnet, NumPy, PyTorch, GEMM floor.

    Parameters
    ----------
    configs : None (all four), a name, or a list of names / Config
        Names: "toy", "digits", "mnist-like", "wide".
    repeats : int
        Interleaved rounds after one warm-up; each timing is one epoch.
    threads : int, optional
        fastnet's (and PyTorch's) thread count for the run; None keeps
        fastnet's current setting and runs PyTorch at 2 threads.  NumPy's BLAS
        threads are never changed.
    with_torch : bool
        Include PyTorch eager when it can be imported.
    progress : callable(str), optional
        Receives a line per measurement step.
    cooldown : float
        Seconds of sleep before every measurement.

    Returns
    -------
    list of dict
        Per config: config, n, batch, sizes, fastnet_s, numpy_s, torch_s,
        floor_s (medians; torch_s is None without PyTorch), vs_numpy and
        vs_torch (speed-ups: baseline time / fastnet time), x_floor (fastnet
        time / floor time), numpy_x_floor, torch_x_floor, gflop (per epoch),
        floor_gflops (the floor's rate), peak_gflops (NumPy's BLAS on a
        2048^3 product, measured once per run), peak_floor_s (the epoch's
        GEMM FLOPs at that peak: the FLOP floor), x_peak_floor (fastnet time /
        FLOP floor), others_cpu (CPU cores other processes used while
        measuring; None if unknown), samples (all timings), threads.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    use_torch = bool(with_torch) and torch_baseline.available()
    configs = _configs(configs)
    _say(progress, "BLAS peak: 2048^3 sgemm")
    peak = blas_peak_gflops()
    rows = []
    for cfg in configs:
        X, y = make_data(cfg, seed)
        runners = {"fastnet": _fastnet_runner(cfg, X, y, threads),
                   "numpy": _numpy_runner(cfg, X, y)}
        if use_torch:
            runners["torch"] = _torch_runner(cfg, X, y, threads)
        runners["floor"] = GemmFloor(cfg, seed).epoch
        times, others = _measure(runners, repeats, cooldown, progress, cfg.name)
        med = {name: statistics.median(ts) for name, ts in times.items()}
        flops = gemm_flops(cfg)
        t_torch = med.get("torch")
        rows.append({
            "config": cfg.name, "n": cfg.n, "batch": cfg.batch, "sizes": list(cfg.sizes),
            "fastnet_s": med["fastnet"], "numpy_s": med["numpy"], "torch_s": t_torch,
            "floor_s": med["floor"],
            "vs_numpy": _ratio(med["numpy"], med["fastnet"]),
            "vs_torch": _ratio(t_torch, med["fastnet"]),
            "x_floor": _ratio(med["fastnet"], med["floor"]),
            "numpy_x_floor": _ratio(med["numpy"], med["floor"]),
            "torch_x_floor": _ratio(t_torch, med["floor"]),
            "gflop": flops / 1e9, "floor_gflops": flops / 1e9 / med["floor"],
            "peak_gflops": peak, "peak_floor_s": flops / 1e9 / peak,
            "x_peak_floor": med["fastnet"] / (flops / 1e9 / peak),
            "others_cpu": others, "samples": times,
            "threads": fastnet.get_num_threads() if threads is None else threads,
        })
        del runners
        gc.collect()
    return rows


def run_threads_scaling(configs=None, repeats=3, thread_counts=(1, 2), progress=None, *,
                        cooldown=COOLDOWN, seed=0):
    """fastnet's epoch time at each thread count (interleaved, medians).

    Returns a list of dict: config, times ({threads: seconds}), speedup
    (time at the first count / time at the last), others_cpu, samples.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    rows = []
    for cfg in _configs(configs):
        X, y = make_data(cfg, seed)
        runners = {t: _fastnet_runner(cfg, X, y, t) for t in thread_counts}
        times, others = _measure(runners, repeats, cooldown, progress, f"{cfg.name} threads")
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

def environment(with_torch=True):
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
    if with_torch and torch_baseline.available():
        info["torch"] = torch_baseline.version()
    else:
        info["torch"] = None
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
              f"(BLAS: {blas_text}), PyTorch {info['torch'] or 'n/a'}, "
              f"Python {info['python']}")]
    if info.get("loadavg"):
        lines.append("load average: " + ", ".join(f"{v:.2f}" for v in info["loadavg"]))
    return "\n".join(lines)


def _fmt_s(t):
    if t is None:
        return "n/a"
    return f"{t * 1e3:.1f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_x(r, goal=None):
    if r is None:
        return "n/a"
    text = f"{r:.2f}x"
    if goal is not None:
        text += f" ({'ok' if r >= goal else 'below'} {goal:g}x)"
    return text


def format_table(rows, goals=True):
    """Markdown table of :func:`run`'s rows (speed-ups, GEMM-floor multiples).

    With ``goals=True`` each speed-up is followed by issue 4's goal and
    whether it is met.  A last column flags rows measured while other
    processes used the CPU (>= 0.25 cores)."""
    head = ("| config | fastnet | NumPy | PyTorch | GEMM floor | vs NumPy | vs PyTorch "
            "| fastnet / GEMM floor | fastnet / FLOP floor | NumPy / GEMM floor "
            "| others' CPU |")
    lines = [head, "|---|" + "---:|" * 10]
    for r in rows:
        goal = GOALS.get(r["config"], (None, None)) if goals else (None, None)
        others = r.get("others_cpu")
        noise = "?" if others is None else f"{others:.2f}" + (" (noisy)" if others >= 0.25
                                                              else "")
        lines.append(
            f"| {r['config']} | {_fmt_s(r['fastnet_s'])} | {_fmt_s(r['numpy_s'])} | "
            f"{_fmt_s(r['torch_s'])} | {_fmt_s(r['floor_s'])} "
            f"({r['floor_gflops']:.0f} GFLOP/s) | {_fmt_x(r['vs_numpy'], goal[0])} | "
            f"{_fmt_x(r['vs_torch'], goal[1])} | {_fmt_x(r['x_floor'])} | "
            f"{_fmt_x(r.get('x_peak_floor'))} | {_fmt_x(r['numpy_x_floor'])} | {noise} |")
    if rows and rows[0].get("peak_gflops"):
        lines.append("")
        lines.append(f"GEMM floor: the epoch's matmuls alone through NumPy's BLAS; FLOP floor: "
                     f"their FLOPs at the BLAS peak measured here "
                     f"({rows[0]['peak_gflops']:.0f} GFLOP/s, 2048^3 sgemm).")
    return "\n".join(lines)


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


# ---- command line ---------------------------------------------------------------------------

def add_arguments(parser):
    """The options of ``fastnet bench`` (shared with ``python -m fastnet.bench``)."""
    parser.add_argument("--configs", default=None,
                        help="comma-separated subset of " + ",".join(CONFIGS) +
                             " (default: all; env FASTNET_BENCH_CONFIGS)")
    parser.add_argument("--repeats", type=int, default=5,
                        help="interleaved timed rounds per config (default 5)")
    parser.add_argument("--threads", type=int, default=None,
                        help="fastnet and PyTorch threads (default: fastnet's setting, "
                             "PyTorch 2)")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    parser.add_argument("--scaling", action="store_true",
                        help="also time fastnet at 1 and 2 threads")
    parser.add_argument("--memory", action="store_true",
                        help="also measure the peak memory of fit (mnist-like)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def run_from_args(args, out=None):
    """Run what ``args`` (from :func:`add_arguments`) asks and print the tables."""
    out = sys.stdout if out is None else out
    names = args.configs or os.environ.get("FASTNET_BENCH_CONFIGS")
    configs = [c.strip() for c in names.split(",") if c.strip()] if names else None
    if configs is not None:
        _configs(configs)             # unknown names fail before anything runs

    def progress(msg):
        print(msg, file=sys.stderr, flush=True)

    prog = None if args.quiet else progress
    print(format_environment(environment(not args.no_torch)), file=out)
    print(file=out)
    rows = run(configs, repeats=args.repeats, threads=args.threads,
               with_torch=not args.no_torch, progress=prog)
    print(f"One training epoch (median of {args.repeats} interleaved rounds; speed-up = "
          "baseline time / fastnet time):", file=out)
    print(format_table(rows), file=out)
    if args.scaling:
        trows = run_threads_scaling(configs, repeats=max(1, min(args.repeats, 3)),
                                    progress=prog)
        print("\nfastnet thread scaling:", file=out)
        print(format_threads_table(trows), file=out)
    if args.memory:
        print(file=out)
        print(format_memory(measure_fit_memory("mnist-like")), file=out)
    return 0


def main(argv=None):
    """``python -m fastnet.bench [options]``."""
    parser = add_arguments(argparse.ArgumentParser(
        prog="fastnet bench", description="Time one training epoch of the seed's recipe: "
        "fastnet vs NumPy vs PyTorch eager vs the GEMM floor."))
    return run_from_args(parser.parse_args(argv))
