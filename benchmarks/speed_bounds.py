"""What bounds fastnet's epoch where issue 15's goals are missed: three probes.

``products``
    One large product's speed per core and at two threads: fastnet's tile kernel
    (BLIS) against OpenBLAS called single-threaded (NumPy's own library inside
    ``threadpoolctl.threadpool_limits(1)``, restored on exit), and two *independent*
    single-threaded products run at once on two threads (the column halves, the row
    halves, and twice the same half) against OpenBLAS's own two-thread product, which
    shares its packed panels between the threads.  fastnet's fixed tile grid runs
    independent products per tile, so their scaling at two threads bounds its large
    products.
``neighbour``
    fastnet's epoch right after the user's NumPy BLAS work (ten ``A @ A``, 512x512
    float32, as ``fastnet bench``) and right after 5 ms of plain Python, over the
    back-to-back quiet epoch, at fastnet's thread count and at one thread, with the
    team's stall counters: what is the team's and what is the machine's.
``overhead``
    The Python part of a one-epoch ``fit``: all of fit minus the stepper's step calls
    (the native steps with the thread governor's few microseconds around them).

Nothing is set in the environment; only ``products`` limits NumPy's BLAS, inside a
``with`` block.  Run from any directory (unset ``OPENBLAS_CORETYPE`` and
``OPENBLAS_L2_SIZE`` in the command where a machine sets them)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/speed_bounds.py
"""
import argparse
import statistics
import threading
import time

import numpy as np

import fastnet
from fastnet import _stepper
from fastnet import functional as F
from fastnet._parallel import team_stats
from fastnet.bench import suite

PROBES = ["products", "neighbour", "overhead"]
PRODUCTS = [(512, 2048, 2048), (256, 784, 512), (256, 512, 512)]   # m, k, n (wide, mnist)


def median_seconds(fn, repeats=9):
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def at_once(fn, other, repeats=10):
    """Run fn `repeats` times on this thread while another thread runs other as often
    (threads started once per call, so short products are repeated to amortise it)."""
    thread = threading.Thread(target=lambda: [other() for _ in range(repeats)])
    thread.start()
    for _ in range(repeats):
        fn()
    thread.join()


def _product_rates(a, b):
    """GFLOP/s of a @ b by each contender (see the module's docstring)."""
    from threadpoolctl import threadpool_limits
    m, n = a.shape[0], b.shape[1]
    b_left, b_right = np.ascontiguousarray(b[:, :n // 2]), np.ascontiguousarray(b[:, n // 2:])
    a_top, a_bottom = np.ascontiguousarray(a[:m // 2]), np.ascontiguousarray(a[m // 2:])
    flop = 2.0 * m * n * a.shape[1] / 1e9
    rate = {}
    for threads in (1, 2):
        with fastnet.threads(threads):
            rate[f"fastnet {threads} thr"] = flop / median_seconds(
                lambda: F.linear_forward(a, b))
    rate["OpenBLAS 2 thr"] = flop / median_seconds(lambda: a @ b)
    with threadpool_limits(1):
        rate["OpenBLAS 1 thr"] = flop / median_seconds(lambda: a @ b)
        rate["x2 column halves"] = 10 * flop / median_seconds(
            lambda: at_once(lambda: a @ b_left, lambda: a @ b_right), 5)
        rate["x2 row halves"] = 10 * flop / median_seconds(
            lambda: at_once(lambda: a_top @ b, lambda: a_bottom @ b), 5)
        rate["x2 same half"] = 10 * flop / median_seconds(
            lambda: at_once(lambda: a @ b_left, lambda: a @ b_left), 5)
    return rate


def products():
    rng = np.random.default_rng(0)
    print("GFLOP/s of one product (m, k, n); 'x2': two independent 1-thread products at "
          "once")
    for m, k, n in PRODUCTS:
        rate = _product_rates(rng.standard_normal((m, k), dtype=np.float32),
                              rng.standard_normal((k, n), dtype=np.float32))
        print(f"  {(m, k, n)}: " + ", ".join(f"{name} {r:.0f}" for name, r in rate.items()))


def _after(epoch, before):
    """Seconds of one epoch run right after before()."""
    before()
    return suite._timed(epoch)


def neighbour(configs, rounds):
    blas_work = suite.neighbour_blas_work()

    def python_work():
        end = time.perf_counter() + 0.005
        while time.perf_counter() < end:
            pass
    print("epoch after other work / back-to-back quiet epoch (medians of interleaved rounds)")
    for name in configs:
        cfg = suite.CONFIGS[name]
        X, y = suite.make_data(cfg)
        for threads in (None, 1):
            _, epoch = suite._fastnet_epoch(cfg, X, y, threads)
            number = suite.epochs_per_sample(epoch)
            quiet, after_blas, after_python = [], [], []
            before = team_stats()
            for _ in range(rounds):
                time.sleep(0.3)
                quiet.append(suite._timed(epoch, number))
                after_blas += [_after(epoch, blas_work) for _ in range(3)]
                after_python += [_after(epoch, python_work) for _ in range(3)]
            after = team_stats()
            q = statistics.median(quiet)
            counts = {k: after[k] - before[k] for k in ("launches", "stalls", "serial_quiet")}
            label = "fastnet's threads" if threads is None else "1 thread"
            print(f"  {name}, {label}: quiet {q * 1e3:.2f} ms, after NumPy BLAS "
                  f"{statistics.median(after_blas) / q:.2f}x, after 5 ms of Python "
                  f"{statistics.median(after_python) / q:.2f}x; team: {counts}")


def overhead(config, fits):
    native = [0.0]
    wrapped = {}
    for name in ("run_block", "step"):
        method = getattr(_stepper.LocalStepper, name)

        def timed(self, *args, _method=method):
            t0 = time.perf_counter()
            try:
                return _method(self, *args)
            finally:
                native[0] += time.perf_counter() - t0
        wrapped[name] = method
        setattr(_stepper.LocalStepper, name, timed)
    try:
        cfg = suite.CONFIGS[config]
        X, y = suite.make_data(cfg)
        _, epoch = suite._fastnet_epoch(cfg, X, y, None)
        for _ in range(20):
            epoch()
        native[0] = 0.0
        t0 = time.perf_counter()
        for _ in range(fits):
            epoch()
        total = (time.perf_counter() - t0) / fits
    finally:
        for name, method in wrapped.items():
            setattr(_stepper.LocalStepper, name, method)
    steps = native[0] / fits
    print(f"{config}: fit(epochs=1) {total * 1e6:.0f} us = native steps {steps * 1e6:.0f} us "
          f"+ Python {(total - steps) * 1e6:.0f} us ({(total - steps) / total:.0%})")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("probes", nargs="*", metavar="PROBE",
                        help=f"any of {', '.join(PROBES)} (default: all)")
    parser.add_argument("--configs", default="toy,digits,mnist-like")
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args(argv)
    unknown = set(args.probes) - set(PROBES)
    if unknown:
        parser.error(f"unknown probe(s) {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(PROBES)}")
    args.probes = args.probes or PROBES
    print(suite.format_environment(suite.environment(with_torch=False, with_jax=False)))
    if "products" in args.probes:
        products()
    if "neighbour" in args.probes:
        neighbour(args.configs.split(","), args.rounds)
    if "overhead" in args.probes:
        overhead("toy", 300)


if __name__ == "__main__":
    main()
