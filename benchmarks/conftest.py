"""pytest-benchmark suite: fastnet against NumPy (and PyTorch, JAX), side by side in one run.

Run with ``pytest benchmarks/`` (not part of the unit tests in ``tests/``).

Every benchmark group compares implementations of one operation at one
shape (kernels, issue 2) or one training configuration (issue 4); each test
records its median here, ratios go into ``benchmark.extra_info`` (so
``--benchmark-json`` keeps them), and a table of median ratios is printed at
the end of the session.

The NumPy and PyTorch baselines live in ``fastnet/bench/`` (installed with
the package, so ``python -m fastnet bench`` prints the same epoch table
without pytest).

Options (also as environment variables):

``--bench-configs=toy,digits`` / ``FASTNET_BENCH_CONFIGS``
    training configurations to run (default: all four).
``--quick`` / ``FASTNET_BENCH_QUICK=1``
    only toy and digits, and fewer rounds.
``--bench-rounds=N`` / ``FASTNET_BENCH_ROUNDS``
    timed rounds per training benchmark.
``--fastnet-threads=N``
    fastnet's thread count for the session (default: fastnet's own default,
    which honours OMP_NUM_THREADS).  NumPy's and PyTorch's are not changed.
"""
import os

import pytest

from fastnet.bench import suite

# kernel goals of issue 2: speed-up over NumPy (median ratio)
KERNEL_GOALS = {
    "linear_relu 64x64x64": 1.3, "linear_relu 128x128x128": 1.3,
    "linear_relu 256x512x512": 1.0, "linear_relu 512x2048x2048": 1.0,
    "batch_norm": 3.0, "dropout": 3.0, "softmax_xent": 2.0,
}

_RESULTS = {"kernel": {}, "training": {}}     # kind -> group -> impl -> median seconds
_EXTRA = {"kernel": {}, "training": {}}       # kind -> group -> impl -> extra_info dict


def pytest_addoption(parser):
    group = parser.getgroup("fastnet benchmarks")
    group.addoption("--bench-configs", default=None,
                    help="comma-separated training configs (" + ",".join(suite.CONFIGS) +
                         "); env FASTNET_BENCH_CONFIGS")
    group.addoption("--quick", action="store_true", default=False,
                    help="training configs toy,digits only, fewer rounds; env "
                         "FASTNET_BENCH_QUICK=1")
    group.addoption("--bench-rounds", type=int, default=None,
                    help="timed rounds per training benchmark; env FASTNET_BENCH_ROUNDS")
    group.addoption("--fastnet-threads", type=int, default=None,
                    help="fastnet's thread count for the session (NumPy's and PyTorch's "
                         "are not changed)")


@pytest.fixture(scope="session", autouse=True)
def _fastnet_threads(request):
    n = request.config.getoption("--fastnet-threads")
    if n is None:
        yield
        return
    import fastnet
    with fastnet.threads(n):
        yield


def quick(config):
    return config.getoption("--quick") or os.environ.get("FASTNET_BENCH_QUICK", "") not in (
        "", "0")


def training_configs(config):
    names = config.getoption("--bench-configs") or os.environ.get("FASTNET_BENCH_CONFIGS")
    if names:
        chosen = [n.strip() for n in names.split(",") if n.strip()]
        unknown = [n for n in chosen if n not in suite.CONFIGS]
        if unknown:
            raise pytest.UsageError(f"unknown training config(s) {unknown}; choose from "
                                    f"{', '.join(suite.CONFIGS)}")
        return chosen
    return ["toy", "digits"] if quick(config) else list(suite.CONFIGS)


def _training_rounds(config, name):
    rounds = config.getoption("--bench-rounds") or os.environ.get("FASTNET_BENCH_ROUNDS")
    if rounds:
        return max(1, int(rounds))
    default = {"toy": 10, "digits": 10, "mnist-like": 5, "wide": 3}[name]
    return max(3, default // 2) if quick(config) else default


TRAINING_IMPLS = ["fastnet", "fastnet@1t", "numpy", "numpy_article", "torch", "torch_compile",
                  "jax", "floor"]


def pytest_generate_tests(metafunc):
    if "train_case" in metafunc.fixturenames:
        cases = [pytest.param((name, impl), id=f"{name}-{impl}")
                 for name in training_configs(metafunc.config) for impl in TRAINING_IMPLS]
        metafunc.parametrize("train_case", cases)


@pytest.fixture
def training_config_names(request):
    """The training configs this session runs (--bench-configs, --quick)."""
    return training_configs(request.config)


@pytest.fixture
def training_rounds(request):
    """training_rounds(name): timed rounds of a training benchmark."""
    return lambda name: _training_rounds(request.config, name)


def kernel_goal(group):
    if group in KERNEL_GOALS:
        return KERNEL_GOALS[group]
    return KERNEL_GOALS.get(group.split(" ")[0])


def _median(benchmark):
    stats = getattr(benchmark, "stats", None)      # None with --benchmark-disable
    stats = getattr(stats, "stats", None)
    return None if stats is None else stats.median


def _update_ratios(kind, group):
    res, extras = _RESULTS[kind][group], _EXTRA[kind][group]
    fast = res.get("fastnet")
    info = {}
    if fast:
        for impl, t in res.items():
            if impl != "fastnet" and not impl.startswith("fastnet") and impl != "floor":
                info[f"vs_{impl}"] = t / fast          # speed-up of fastnet over impl
        if res.get("floor"):
            info["x_floor"] = fast / res["floor"]
        if res.get("fastnet@1t"):
            info["threads_speedup"] = res["fastnet@1t"] / fast
    for extra in extras.values():
        extra.update(info)


@pytest.fixture
def record(benchmark):
    """record(kind, group, impl): file this benchmark's median under (kind, group)."""
    def _record(kind, group, impl):
        benchmark.extra_info.update({"group": group, "impl": impl})
        median = _median(benchmark)
        if median is None:
            return
        _RESULTS[kind].setdefault(group, {})[impl] = median
        _EXTRA[kind].setdefault(group, {})[impl] = benchmark.extra_info
        _update_ratios(kind, group)
    return _record


def _fmt_s(t):
    if t is None:
        return "n/a"
    if t < 1e-3:
        return f"{t * 1e6:.1f} us"
    return f"{t * 1e3:.2f} ms" if t < 1 else f"{t:.2f} s"


def _fmt_x(a, b):
    return "n/a" if not a or not b else f"{a / b:.2f}x"


def _goal(ratio, goal):
    if goal is None or ratio is None:
        return ""
    return f"{goal:g}x {'ok' if ratio >= goal else 'BELOW'}"


def _table(header, rows):
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths)) + " |"
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    body = ["| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths)) + " |" for r in rows]
    return [line, sep] + body


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    tr = terminalreporter
    kernels, training = _RESULTS["kernel"], _RESULTS["training"]
    if kernels:
        tr.write_sep("=", "fastnet vs NumPy: kernels, float32 (median ratios, speed-up)")
        rows = []
        for group, res in kernels.items():
            fast, ref = res.get("fastnet"), res.get("numpy")
            ratio = ref / fast if fast and ref else None
            rows.append([group, _fmt_s(fast), _fmt_s(ref), _fmt_x(ref, fast),
                         _goal(ratio, kernel_goal(group)),
                         _fmt_x(res.get("numpy-fast"), fast) if "numpy-fast" in res else ""])
        for line in _table(["group", "fastnet", "NumPy", "vs NumPy", "goal",
                            "vs NumPy fast idiom"], rows):
            tr.write_line(line)
    if training:
        tr.write_sep("=", "fastnet vs its peers: one training epoch (median ratios)")
        peak = suite.blas_peak_gflops()
        peers = [impl for impl in suite.CONTENDERS if impl != "fastnet"
                 and any(impl in res for res in training.values())]
        rows = []
        for group, res in training.items():
            fast = res.get("fastnet")
            goals = suite.GOALS.get(group, {})
            row = [group, _fmt_s(fast)] + [_fmt_s(res.get(p)) for p in peers] \
                + [_fmt_s(res.get("floor"))]
            for p in peers:
                ratio = res[p] / fast if fast and res.get(p) else None
                row.append(_fmt_x(res.get(p), fast) + (
                    f" ({_goal(ratio, goals[p])})" if p in goals and ratio else ""))
            row += [_fmt_x(fast, res.get("floor")),
                    _fmt_x(fast, suite.gemm_flops(group) / 1e9 / peak),
                    _fmt_x(res.get("fastnet@1t"), fast)]
            rows.append(row)
        labels = [suite.CONTENDERS[p] for p in peers]
        for line in _table(["config", "fastnet"] + labels + ["GEMM floor"]
                           + [f"vs {label}" for label in labels]
                           + ["fastnet/GEMM floor", "fastnet/FLOP floor", "2 vs 1 thread"],
                           rows):
            tr.write_line(line)
        tr.write_line("vs X = X's median / fastnet's median (issue 15's goal in brackets); "
                      "GEMM floor = the same epoch's matmuls alone (NumPy BLAS, preallocated "
                      "outputs); FLOP floor = their FLOPs at the BLAS peak measured now "
                      f"({peak:.0f} GFLOP/s, 2048^3 sgemm); 2 vs 1 thread = fastnet at 1 "
                      "thread / at its default count.  The neighbour and idle figures are "
                      "in `fastnet bench`.")
    if kernels or training:
        import fastnet
        info = suite.environment(with_torch=any("torch" in r for r in training.values()),
                                 with_jax=any("jax" in r for r in training.values()))
        tr.write_line(suite.format_environment(info))
        tr.write_line(f"fastnet threads: {fastnet.get_num_threads()}. Timings on a shared "
                      "machine are provisional.")
