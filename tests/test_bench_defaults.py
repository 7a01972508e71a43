"""benchmarks/bench_defaults.py --quick on one bundled data set: the table's structure and
scores a working estimator must reach (above the majority class, at most 1)."""
import contextlib
import importlib.util
import io
import json
import os

import pytest

pytest.importorskip("sklearn")

from conftest import TESTS_DIR  # noqa: E402

BENCH = os.path.join(os.path.dirname(TESTS_DIR), "benchmarks", "bench_defaults.py")
CONFIGS = ("sklearn", "fastnet", "previous", "recipe", "cli")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_defaults", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def quick_run(bench, tmp_path_factory):
    """(exit code, stdout, the --json record) of a --quick run on iris."""
    path = tmp_path_factory.mktemp("bench") / "iris.json"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = bench.main(["--quick", "--datasets", "iris", "--threads", "1", "--quiet",
                           "--configs", ",".join(CONFIGS), "--json", str(path)])
    with open(path) as fh:
        return code, stdout.getvalue(), json.load(fh)


def _table(text, header_start):
    """The rows (lists of cells) of the markdown table whose header begins so."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_quick_table_structure(quick_run):
    code, output, _ = quick_run
    assert code == 0
    header, rule, *body = _table(output, "| data set | task |")
    assert header[:4] == ["data set", "task", "train / test", "features"]
    assert header[4:4 + len(CONFIGS)] == list(CONFIGS)
    assert "published MLP" in header and "sklearn fit s" in header
    assert len(rule) == len(header) and all(cell.strip(":") == "---" for cell in rule)
    assert [row[0] for row in body] == ["iris"]
    row = dict(zip(header, body[0]))
    assert row["task"] == "acc" and row["train / test"] == "112 / 38" and row["features"] == "4"
    for config in CONFIGS:
        mean, spread = (float(x) for x in row[config].split("±"))
        assert 0 <= mean <= 1 and 0 <= spread <= 1
    for config in CONFIGS[1:]:
        assert float(row[f"{config} time / sklearn"]) > 0
    goal_header, _, *goal_body = _table(output, "| data set | one test row |")
    assert goal_header[-1] == "goal" and [r[0] for r in goal_body] == ["iris"]
    assert float(goal_body[0][1]) == pytest.approx(1 / 38, abs=1e-4)
    assert goal_body[0][-1] == "met" or goal_body[0][-1].startswith("missed: ")


def test_quick_scores_are_sane(quick_run):
    """Every estimator beats always predicting the majority class; all 3 seeds ran."""
    _, output, record = quick_run
    (iris,) = record["records"]
    assert iris["n_test"] == 38 and iris["n_train"] == 112
    for config in CONFIGS:
        runs = iris["configs"][config]
        assert len(runs["scores"]) == 3 and len(runs["fit_seconds"]) == 3
        assert all(iris["majority_rate"] + 0.2 < s <= 1.0 for s in runs["scores"]), (
            config, runs["scores"], iris["majority_rate"])
        assert all(t > 0 for t in runs["fit_seconds"]) and all(e >= 1 for e in runs["epochs"])
        assert runs["mean"] == pytest.approx(sum(runs["scores"]) / 3)


def test_missing_package_is_skipped_with_a_message(bench, monkeypatch, capsys):
    """A data set whose package is not installed is skipped, and the output says why."""
    def unavailable(module, package):
        raise bench.MissingPackage(f"{package} is not installed")

    monkeypatch.setattr(bench, "_require", unavailable)
    assert bench.main(["--datasets", "penguins", "--configs", "sklearn", "--seeds", "1",
                       "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "penguins: skipped, palmerpenguins is not installed" in out
    assert "penguins: skipped" in err
    assert "| penguins |" not in out


def test_bad_arguments_name_the_choices(bench, capsys):
    with pytest.raises(SystemExit):
        bench.main(["--datasets", "nope"])
    assert "unknown data set nope; choose from iris" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--set", "dropout"])
    assert "--set takes name=value" in capsys.readouterr().err
