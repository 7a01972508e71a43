"""Inference latency: fastnet's own predict_proba beside ONNX Runtime (and PyTorch eager).

For each network and batch size (1 row, 1024 rows) the script exports the model with
``MLP.to_onnx`` (and ``MLP.to_torch``), checks that the outputs agree, then times the
three in interleaved rounds (rotating the order, a short pause before each sample),
each sample the mean of as many back-to-back calls as last 50 ms
(:func:`fastnet.bench.suite.epochs_per_sample`).  It prints the median of the rounds
and their range.  Every contender gets the same thread count: fastnet through
``fastnet.threads``, ONNX Runtime through ``intra_op_num_threads`` (its other session
options at their defaults), PyTorch through ``torch.set_num_threads``.

The numbers move with the machine's load: run it on a quiet machine, and read ratios
from one run rather than times across runs::

    python benchmarks/onnx_latency.py                   # 1 and 2 threads, both networks
    python benchmarks/onnx_latency.py --threads 1 --repeats 9
"""
import argparse
import contextlib

import numpy as np

import fastnet
from fastnet.bench.suite import _measure, environment, format_environment

CONFIGS = {"digits": [64, 256, 128, 10], "mnist-like": [784, 512, 512, 512, 10]}
ROWS = (1, 1024)


def contenders(sizes, rows, threads, with_torch=True):
    """{name: callable} predicting probabilities for `rows` rows, and their agreement
    with fastnet's (max |difference|)."""
    import onnxruntime as ort
    model = fastnet.MLP(sizes, dropout=0.3, seed=0)
    X = np.random.default_rng(0).standard_normal((rows, sizes[0])).astype(np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.to_onnx(), options,
                                   providers=["CPUExecutionProvider"])
    runners = {"fastnet": lambda: model.predict_proba(X),
               "ONNX Runtime": lambda: session.run(None, {"input": X})[0]}
    if with_torch:
        import torch
        torch.set_num_threads(threads)
        module, Xt = model.to_torch(), torch.from_numpy(X)

        def torch_predict():
            with torch.inference_mode():
                return torch.softmax(module(Xt), dim=1)
        runners["PyTorch eager"] = torch_predict
    expected = model.predict_proba(X)
    agreement = {name: float(np.max(np.abs(np.asarray(fn()) - expected)))
                 for name, fn in runners.items() if name != "fastnet"}
    return runners, agreement


def measure(configs, rows_list, threads, repeats, with_torch, cooldown=0.05):
    rows_out = []
    for name in configs:
        for rows in rows_list:
            runners, agreement = contenders(CONFIGS[name], rows, threads, with_torch)
            with fastnet.threads(threads):
                times, _ = _measure(runners, repeats, cooldown, None, f"{name} x{rows}")
            rows_out.append({"config": name, "rows": rows, "threads": threads,
                             "times": times, "agreement": agreement})
    return rows_out


def _fmt(seconds):
    return f"{seconds * 1e6:.0f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def format_table(results):
    names = list(results[0]["times"])
    lines = ["| network | rows | threads | " + " | ".join(names)
             + " | fastnet / ONNX Runtime |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|"]
    for r in results:
        med = {n: float(np.median(t)) for n, t in r["times"].items()}
        cells = [f"{_fmt(med[n])} ({_fmt(min(r['times'][n]))}-{_fmt(max(r['times'][n]))})"
                 for n in names]
        lines.append(f"| {r['config']} {CONFIGS[r['config']]} | {r['rows']} | {r['threads']} | "
                     + " | ".join(cells)
                     + f" | {med['fastnet'] / med['ONNX Runtime']:.2f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS),
                        help=f"comma-separated subset of {','.join(CONFIGS)}")
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds")
    parser.add_argument("--no-torch", action="store_true", help="skip PyTorch")
    args = parser.parse_args(argv)
    torch = None
    if not args.no_torch:
        with contextlib.suppress(ImportError):
            import torch
    with_torch = torch is not None
    previous_torch_threads = torch.get_num_threads() if with_torch else None
    print(format_environment(environment(with_torch)))
    import onnxruntime
    print(f"ONNX Runtime {onnxruntime.__version__}; median of {args.repeats} rounds "
          "(range), time per call")
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        results += measure(args.configs.split(","), ROWS, threads, args.repeats, with_torch)
    print(format_table(results))
    worst = max(v for r in results for v in r["agreement"].values())
    print(f"largest |probability difference| from fastnet's: {worst:.2e}")
    if with_torch:
        torch.set_num_threads(previous_torch_threads)


if __name__ == "__main__":
    main()
