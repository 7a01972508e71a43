"""fastnet.sklearn against scikit-learn's MLPs, side by side in one run (issue 7).

Acceptance: on digits (25 % stratified test split, random_state=0, pixels /
16) and scikit-learn's diabetes data (25 % test split, random_state=0,
features standardised on the training part; targets raw), with hidden sizes
(128, 128) and early stopping on both sides, fastnet's estimators score
(accuracy; R^2) at least as well as ``sklearn.neural_network.MLPClassifier``
/ ``MLPRegressor`` (early_stopping=True, other parameters default,
random_state=0) and fit at least 3x faster.

Both run with their default parameters and default thread counts (fastnet:
its OpenMP team; scikit-learn: NumPy's BLAS), in the same process, one
after the other.  Fit times are the best of ``ROUNDS`` fits per estimator,
taken in alternation so that a burst of load on a shared machine hits both;
the scores are deterministic (random_state=0).  The thread-for-thread
comparison (both on one thread) is printed too.

Run ``pytest benchmarks/test_bench_sklearn.py`` or, for the table alone,
``python benchmarks/test_bench_sklearn.py``.
"""
import time
import warnings

import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.datasets import load_diabetes, load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.neural_network import MLPClassifier as SkClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SkRegressor  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

import fastnet  # noqa: E402
from fastnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

HIDDEN = (128, 128)
ROUNDS = 3
SPEEDUP_GOAL = 3.0


def digits_split():
    X, y = load_digits(return_X_y=True)
    X = X / 16.0
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def diabetes_split():
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, random_state=0)
    scaler = StandardScaler().fit(X_tr)
    return scaler.transform(X_tr), scaler.transform(X_te), y_tr, y_te


def estimators(task, threads=None):
    """(name, factory) pairs; threads=1 pins both to one thread."""
    sk = SkClassifier if task == "digits" else SkRegressor
    fn = MLPClassifier if task == "digits" else MLPRegressor
    return [("sklearn", lambda: sk(hidden_layer_sizes=HIDDEN, early_stopping=True,
                                   random_state=0)),
            ("fastnet", lambda: fn(hidden_layer_sizes=HIDDEN, early_stopping=True,
                                   random_state=0, n_threads=threads))]


def _limit_blas(threads):
    if threads is None:
        import contextlib
        return contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return threadpool_limits(threads)


def compare(task, threads=None, rounds=ROUNDS):
    """Scores, best fit times, epochs for sklearn and fastnet on one task."""
    X_tr, X_te, y_tr, y_te = digits_split() if task == "digits" else diabetes_split()
    makers = estimators(task, threads)
    result = {name: {"times": []} for name, _ in makers}
    with _limit_blas(threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for r in range(rounds):
            order = makers if r % 2 == 0 else makers[::-1]
            for name, make in order:
                est = make()
                t0 = time.perf_counter()
                est.fit(X_tr, y_tr)
                result[name]["times"].append(time.perf_counter() - t0)
                result[name]["score"] = est.score(X_te, y_te)
                result[name]["epochs"] = est.n_iter_
    for res in result.values():
        res["time"] = min(res["times"])
    result["speedup"] = result["sklearn"]["time"] / result["fastnet"]["time"]
    return result


def table(results):
    lines = [f"{'task':<10}{'threads':<9}{'impl':<9}{'score':>8}{'epochs':>8}{'fit s':>9}"
             f"{'speed-up':>10}"]
    for (task, threads), res in results.items():
        metric = "acc" if task == "digits" else "R^2"
        for name in ("sklearn", "fastnet"):
            r = res[name]
            speed = f"{res['speedup']:.1f}x" if name == "fastnet" else ""
            lines.append(f"{task:<10}{threads or 'default':<9}{name:<9}"
                         f"{r['score']:>8.4f}{r['epochs']:>8d}{r['time']:>9.3f}{speed:>10}"
                         f"  ({metric})")
    return "\n".join(lines)


@pytest.fixture(scope="module")
def side_by_side():
    results = {}
    for task in ("digits", "diabetes"):
        results[(task, None)] = compare(task)
    print("\n" + table(results))
    return results


@pytest.mark.parametrize("task", ["digits", "diabetes"])
def test_score_at_least_sklearn(side_by_side, task):
    res = side_by_side[(task, None)]
    assert res["fastnet"]["score"] >= res["sklearn"]["score"], table(side_by_side)


@pytest.mark.parametrize("task", ["digits", "diabetes"])
def test_fit_3x_faster(side_by_side, task):
    res = side_by_side[(task, None)]
    assert res["speedup"] >= SPEEDUP_GOAL, table(side_by_side)


@pytest.mark.parametrize("impl", ["sklearn", "fastnet"])
@pytest.mark.parametrize("task", ["digits", "diabetes"])
def test_fit(benchmark, task, impl):
    """pytest-benchmark timings of one fit (default threads)."""
    X_tr, X_te, y_tr, y_te = digits_split() if task == "digits" else diabetes_split()
    make = dict(estimators(task))[impl]
    benchmark.group = f"sklearn-api fit {task}"
    benchmark.extra_info["impl"] = impl

    def fit():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return make().fit(X_tr, y_tr)

    est = benchmark.pedantic(fit, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    benchmark.extra_info["score"] = float(est.score(X_te, y_te))
    benchmark.extra_info["epochs"] = int(est.n_iter_)


def main():
    results = {}
    for threads in (None, 1):
        for task in ("digits", "diabetes"):
            results[(task, threads)] = compare(task, threads)
    print(f"fastnet {fastnet.__version__}, scikit-learn {sklearn.__version__}, "
          f"fastnet threads {fastnet.get_num_threads()}; best of {ROUNDS} fits each")
    print(table(results))


if __name__ == "__main__":
    main()
