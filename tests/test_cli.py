"""The command line: every subcommand through fastnet.cli.main and one case each
through ``python -m fastnet``; error paths give exit code 2 and one line on stderr."""
import errno
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import TESTS_DIR, child_env

import fastnet
from fastnet.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(autouse=True)
def _agg(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")


def run_module(*args, timeout=120, cwd=None):
    # cwd never the checkout root: `python -m` would import its uncompiled fastnet/
    return subprocess.run([sys.executable, "-m", "fastnet", *args], capture_output=True,
                          text=True, timeout=timeout, env=child_env(MPLBACKEND="Agg"),
                          cwd=cwd or TESTS_DIR, check=False)


def assert_one_line_error(err, *needles):
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert "error:" in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]


# ---- help ----------------------------------------------------------------------------------

def test_help_explains_the_subcommands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for word in ("train", "diagnose", "bench", "digits", "--plot", "--model"):
        assert word in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "train" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["train", "diagnose", "lr-find", "bench"])
def test_subcommand_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"fastnet {command}" in out


def test_python_m_fastnet_help():
    proc = run_module("--help", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "train" in proc.stdout and "diagnose" in proc.stdout and "bench" in proc.stdout


def test_version(capsys):
    assert main(["--version"]) == 0
    assert fastnet.__version__ in capsys.readouterr().out


# ---- train -----------------------------------------------------------------------------------

def test_train_short_run_writes_model_history_and_png(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--epochs", "3", "--out", str(out), "--threads", "1", "-q"])
    text = capsys.readouterr().out
    assert code == 0
    assert "Test accuracy:" in text
    for name in ("model.npz", "history.json", "training_curves.png"):
        assert (out / name).is_file(), name
        assert str(out / name) in text
    record = json.loads((out / "history.json").read_text())
    assert record["epochs"] == 3 and len(record["history"]["loss"]) == 3
    assert record["layer_sizes"] == [64, 256, 128, 10]
    model = fastnet.load(out / "model.npz")
    from fastnet.datasets import load_digits
    X, _ = load_digits()
    assert model.predict(X[:5]).shape == (5,)


def test_train_default_recipe_reaches_97_percent(tmp_path, capsys):
    """`fastnet train` with no options (only --out, to keep the test's files apart)."""
    out = tmp_path / "default"
    assert main(["train", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    record = json.loads((out / "history.json").read_text())
    assert record["test_accuracy"] >= 0.97, text
    assert f"Test accuracy: {record['test_accuracy']:.4f}" in text
    assert (out / "model.npz").is_file()
    png = out / "training_curves.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the saved model is the restored best one and scores the printed accuracy
    from fastnet.datasets import load_digits, train_test_split
    X, y = load_digits()
    _, X_test, _, y_test = train_test_split(X, y, 0.25, seed=0)
    acc = fastnet.load(out / "model.npz").evaluate(X_test, y_test)["accuracy"]
    assert acc == pytest.approx(record["test_accuracy"])
    # early stopping on the validation split; one line per epoch
    assert record["best_epoch"] is not None
    assert text.count("val_loss") >= record["epochs"]


def test_train_options(tmp_path, capsys):
    out = tmp_path / "opts"
    code = main(["train", "--layers", "32", "--epochs", "4", "--batch-size", "32",
                 "--lr", "0.05", "--optimizer", "sgd", "--schedule", "step",
                 "--dropout", "0", "--no-batch-norm", "--patience", "0", "--seed", "3",
                 "--threads", "1", "--out", str(out), "--no-plot", "-q"])
    text = capsys.readouterr().out
    assert code == 0
    assert "no early stopping" in text and "no batch norm" in text
    assert not (out / "training_curves.png").exists()
    record = json.loads((out / "history.json").read_text())
    assert record["layer_sizes"] == [64, 32, 10] and record["epochs"] == 4
    model = fastnet.load(out / "model.npz")
    assert model.batch_norm is False and model.dropout == 0.0


@pytest.mark.parametrize("schedule", ["warmup_cosine", "cosine", "constant", "plateau"])
def test_train_schedules(schedule, tmp_path, capsys):
    code = main(["train", "--epochs", "3", "--schedule", schedule, "--threads", "1",
                 "--out", str(tmp_path), "--no-plot", "-q"])
    assert code == 0, capsys.readouterr().err
    lrs = json.loads((tmp_path / "history.json").read_text())["history"]["lr"]
    assert len(lrs) == 3
    if schedule == "constant":
        assert lrs == [3e-3] * 3
    if schedule == "warmup_cosine":
        assert lrs[0] == 0.0 and lrs[1] == pytest.approx(3e-3)


def test_train_on_csv_with_named_labels(tmp_path, capsys):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (40, 3)), rng.normal(2, 1, (40, 3))])
    labels = ["cat"] * 40 + ["dog"] * 40
    path = tmp_path / "pets.csv"
    with open(path, "w") as fh:
        fh.write("species,a,b,c\n")
        fh.writelines(f"{lab},{row[0]},{row[1]},{row[2]}\n" for lab, row in zip(labels, X))
    out = tmp_path / "out"
    code = main(["train", "--data", str(path), "--label-column", "species", "--layers", "8",
                 "--epochs", "30", "--out", str(out), "--standardize", "--threads", "1",
                 "--no-plot", "-q"])
    assert code == 0, capsys.readouterr().err
    record = json.loads((out / "history.json").read_text())
    assert record["classes"] == ["cat", "dog"]
    assert record["test_accuracy"] >= 0.9
    assert len(record["standardize"]["mean"]) == 3


def test_train_on_npz_images(tmp_path, capsys):
    from fastnet.datasets import load_digits
    X, y = load_digits()
    path = tmp_path / "images.npz"
    np.savez(path, X=X[:300].reshape(-1, 8, 8), y=y[:300])
    code = main(["train", "--data", str(path), "--epochs", "2", "--threads", "1",
                 "--out", str(tmp_path / "o"), "--no-plot", "-q"])
    assert code == 0, capsys.readouterr().err


def test_train_without_matplotlib_still_succeeds(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "noplot"
    assert main(["train", "--epochs", "2", "--threads", "1", "--out", str(out), "-q"]) == 0
    text = capsys.readouterr().out
    assert "No PNG: matplotlib is not installed" in text
    assert (out / "model.npz").is_file()
    assert not (out / "training_curves.png").exists()


def test_python_m_fastnet_train(tmp_path):
    proc = run_module("train", "--epochs", "2", "--threads", "1", "--out", str(tmp_path),
                      "--no-plot")
    assert proc.returncode == 0, proc.stderr
    assert "Test accuracy:" in proc.stdout
    assert "Epoch 2/2" in proc.stdout + proc.stderr
    assert (tmp_path / "model.npz").is_file()


# ---- train: errors ------------------------------------------------------------------------

def _write(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args, needle", [
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "ten"], "--epochs"),
    (["--bogus"], "--bogus"),
    (["--layers", "64,x"], "--layers"),
    (["--layers", "64,0"], "--layers"),
    (["--dropout", "1.0"], "--dropout"),
    (["--lr", "-1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--optimizer", "rmsprop"], "--optimizer"),
    (["--schedule", "linear"], "--schedule"),
    (["--threads", "0"], "--threads"),
    (["--test-size", "1"], "--test-size"),
])
def test_train_bad_options(args, needle, capsys):
    assert main(["train", *args]) == 2
    cap = capsys.readouterr()
    assert_one_line_error(cap.err, needle)


def test_train_bad_files(tmp_path, capsys):
    cases = [
        ([str(tmp_path / "missing.csv")], "no such file"),
        ([_write(tmp_path / "bad.csv", "a,b,label\n1,2,0\n3,oops,1\n")], "oops"),
        ([_write(tmp_path / "ragged.csv", "1,2,0\n3,1\n4,5,1\n")], "line 2"),
        ([_write(tmp_path / "one.csv", "a,label\n1,0\n2,0\n3,0\n")], "single class"),
        ([_write(tmp_path / "empty.csv", "")], "empty"),
        ([_write(tmp_path / "frac.csv", "1,0.5\n2,1.5\n3,0.5\n")], "class labels"),
        ([_write(tmp_path / "x.csv", "1,2,0\n3,4,1\n"), "--label-column", "species"],
         "species"),
        ([_write(tmp_path / "junk.npz", "not a zip")], "not a .npz"),
        ([_write(tmp_path / "data.txt", "1,2\n")], "unsupported file type"),
        ([str(tmp_path)], "directory"),
    ]
    np.savez(tmp_path / "nokeys.npz", a=np.zeros((3, 2)))
    cases.append(([str(tmp_path / "nokeys.npz")], "'X' and 'y'"))
    np.savez(tmp_path / "shape.npz", X=np.zeros((4, 2)), y=np.zeros(3))
    cases.append(([str(tmp_path / "shape.npz")], "y has shape"))
    np.savez(tmp_path / "nan.npz", X=np.full((4, 2), np.nan), y=np.array([0, 1, 0, 1]))
    cases.append(([str(tmp_path / "nan.npz")], "NaN"))
    np.savez(tmp_path / "obj.npz", X=np.array([[1, "a"]], dtype=object), y=np.zeros(1))
    cases.append(([str(tmp_path / "obj.npz")], "obj.npz"))
    for args, needle in cases:
        code = main(["train", "--data", *args, "--epochs", "1", "--out",
                     str(tmp_path / "out")])
        cap = capsys.readouterr()
        assert code == 2, (args, cap.out, cap.err)
        assert_one_line_error(cap.err, needle)


def test_train_label_column_without_data(capsys):
    assert main(["train", "--label-column", "x"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--label-column")


def test_train_out_is_a_file(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["train", "--epochs", "1", "--out", str(target)]) == 2
    assert_one_line_error(capsys.readouterr().err, "not a directory")


def test_python_m_fastnet_error_has_no_traceback(tmp_path):
    proc = run_module("train", "--data", str(tmp_path / "nope.csv"), timeout=60)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "no such file")
    proc = run_module("train", "--epochs", "-3", timeout=60)
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "--epochs")
    proc = run_module("train", "--seed", str(2**70), timeout=60)     # never reduced mod 2**64
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, "--seed", f"must be <= {2**64 - 1}")


# ---- train keeps its results ---------------------------------------------------------------

def train_child(*args, **popen):
    """`python -m fastnet train` on the digits, unbuffered, in the background."""
    env = child_env(MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "fastnet", "train", "--threads", "1",
                             "--no-plot", *args], env=env, cwd=TESTS_DIR, text=True, **popen)


def test_train_checks_the_output_directory_before_training(tmp_path, capsys, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("trained although the results could not be saved")

    monkeypatch.setattr(fastnet.MLP, "fit", no_training)
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "run", tmp_path / "file"):
        assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
        assert_one_line_error(capsys.readouterr().err, "--out")


def test_train_refuses_a_read_only_output_directory_before_training(tmp_path):
    from _privileges import read_only_dir, unprivileged
    out = read_only_dir(tmp_path / "ro")
    argv = unprivileged([sys.executable, "-m", "fastnet", "train", "--epochs", "1", "--out",
                         str(out), "--threads", "1"])
    if argv is None:
        pytest.skip("running as root without setpriv: file permissions cannot bind")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=TESTS_DIR,
                          env=child_env(MPLBACKEND="Agg"), check=False)
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc.stderr, "--out", "Permission denied")
    assert "Epoch" not in proc.stdout + proc.stderr


def test_train_saves_before_printing_the_summary(tmp_path, monkeypatch):
    class FailingTerminal(io.StringIO):
        def write(self, text):
            if "Test accuracy" in text:
                raise OSError(errno.EIO, "Input/output error")
            return super().write(text)

    monkeypatch.setattr(sys, "stdout", FailingTerminal())
    out = tmp_path / "run"
    assert main(["train", "--epochs", "2", "--threads", "1", "--out", str(out), "-q",
                 "--no-plot"]) == 2
    assert fastnet.load(out / "model.npz").layer_sizes == [64, 256, 128, 10]
    assert json.loads((out / "history.json").read_text())["epochs"] == 2


def test_train_survives_a_closed_stdout(tmp_path):
    """`fastnet train | head -1`: training goes on, the files are written, exit 0."""
    out = tmp_path / "piped"
    child = train_child("--epochs", "4", "--out", str(out), stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE)
    try:
        assert child.stdout.readline().startswith("Data:")
        child.stdout.close()                     # the reader goes away
        _, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 0, err
    assert "Traceback" not in err and "Broken pipe" not in err, err
    assert fastnet.load(out / "model.npz").layer_sizes[0] == 64
    assert json.loads((out / "history.json").read_text())["epochs"] == 4


def test_one_ctrl_c_saves_the_run_and_exits_130(tmp_path):
    out = tmp_path / "interrupted"
    child = train_child("--epochs", "100000", "--patience", "0", "--out", str(out),
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        for line in child.stdout:
            if line.startswith("Epoch 2/"):
                break
        child.send_signal(signal.SIGINT)
        rest, err = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 130, err
    assert "Interrupted (Ctrl-C)" in rest
    assert "interrupted" in err and str(out) in err
    record = json.loads((out / "history.json").read_text())
    assert record["interrupted"] is True and 2 <= record["epochs"] < 100000
    assert fastnet.load(out / "model.npz").layer_sizes[0] == 64


def _limit_address_space():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


@pytest.mark.parametrize("layers", ["1000000000", "99999999999999999999", "64,4000000000"])
def test_train_refuses_a_model_too_large_in_one_line(layers, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastnet", "train", "--layers", layers,
                           "--out", str(tmp_path / "o")], capture_output=True, text=True,
                          timeout=120, env=child_env(MPLBACKEND="Agg"), cwd=TESTS_DIR,
                          preexec_fn=_limit_address_space, check=False)
    assert proc.returncode == 2, proc.stderr
    assert_one_line_error(proc.stderr, "--layers", "GiB")
    assert not (tmp_path / "o").exists()


def test_help_documents_the_exit_codes(capsys):
    import fastnet.cli
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for needle in ("130", "| head", "2 bad option"):
        assert needle in text
    doc = " ".join(fastnet.cli.__doc__.split())
    assert "130" in doc and "| head" in doc and "One Ctrl-C" in doc


def test_pip_install_brings_what_the_png_needs():
    """The README's `pip install . && fastnet train` promises a PNG: matplotlib is a
    requirement of the installed distribution, not of an extra."""
    from importlib.metadata import requires
    plain = [r for r in requires("fastnet") or () if "extra ==" not in r]
    assert any(r.replace(" ", "").startswith("matplotlib") for r in plain), plain


# ---- train: CSV data ---------------------------------------------------------------------------

def _pandas_csv(path, n=80, header_names=None):
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(-2, 1, (n // 2, 3)), rng.normal(2, 1, (n // 2, 3))])
    y = np.repeat([0, 1], n // 2)
    frame = pd.DataFrame(np.column_stack([X, y]))
    if header_names is not None:
        frame.columns = header_names
    frame.to_csv(path, index=False)
    return str(path)


def test_train_detects_a_pandas_header_and_header_option_overrides(tmp_path, capsys):
    data = _pandas_csv(tmp_path / "p.csv")
    args = ["train", "--data", data, "--layers", "8", "--epochs", "2", "--threads", "1",
            "--no-plot", "-q"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert "80 rows, 3 features, 2 classes" in capsys.readouterr().out
    assert json.loads((tmp_path / "a" / "history.json").read_text())["classes"] == [0, 1]
    assert main([*args, "--out", str(tmp_path / "b"), "--header", "no"]) == 0
    assert "81 rows, 3 features, 3 classes" in capsys.readouterr().out
    assert main([*args, "--out", str(tmp_path / "c"), "--header", "maybe"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--header")
    assert main(["train", "--header", "yes", "--epochs", "1"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--header needs --data")


def test_train_warns_in_one_line_about_an_ambiguous_first_row(tmp_path, capsys):
    rows = ["0,1,2"] + [f"{i % 7},{(3 * i) % 5},{i % 3}" for i in range(40)]
    data = _write(tmp_path / "amb.csv", "\n".join(rows) + "\n")
    assert main(["train", "--data", data, "--layers", "4", "--epochs", "1", "--threads", "1",
                 "--no-plot", "-q", "--out", str(tmp_path / "o")]) == 0
    cap = capsys.readouterr()
    assert "41 rows" in cap.out
    assert_one_line_error(cap.err.replace("warning:", "error:"), "--header yes")


def test_train_keeps_big_integer_labels_apart(tmp_path, capsys):
    rng = np.random.default_rng(0)
    codes = [10000000000000000000, 20000000000000000000, 12345678901234567,
             12345678901234568]
    lines = [f"{rng.normal():.6f},{rng.normal():.6f},{codes[i % 4]}" for i in range(80)]
    data = _write(tmp_path / "codes.csv", "\n".join(lines) + "\n")
    assert main(["train", "--data", data, "--layers", "4", "--epochs", "1", "--threads", "1",
                 "--no-plot", "-q", "--out", str(tmp_path / "o")]) == 0
    assert "4 classes" in capsys.readouterr().out
    record = json.loads((tmp_path / "o" / "history.json").read_text())
    assert record["classes"] == sorted(codes)


@pytest.mark.parametrize("rows, options, needles", [
    (2, [], ["2 rows", "--test-size", "--val-size"]),
    (3, [], ["3 rows", "--test-size", "--val-size"]),
    (80, ["--val-size", "0.99"], ["--val-size 0.99"]),
    (80, ["--test-size", "0.99"], ["--test-size 0.99"]),
])
def test_train_names_the_split_options_when_rows_run_out(rows, options, needles, tmp_path,
                                                          capsys):
    lines = [f"{i},{i % 2}" for i in range(rows)]
    data = _write(tmp_path / "small.csv", "\n".join(lines) + "\n")
    assert main(["train", "--data", data, *options, "--epochs", "1",
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert_one_line_error(err, *needles)
    assert "test_size=" not in err


def test_csv_format_problems_reach_the_command_line_in_one_line(tmp_path, capsys):
    cases = [
        (_write(tmp_path / "semi.csv", "a;b;label\n1,5;2;0\n3;4;1\n"), "semicolons"),
        (_write(tmp_path / "comment.csv", "# exported\n1,2,0\n3,4,1\n"), "'#'"),
    ]
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\u00e9,b,label\n1,2,0\n3,4,1\n".encode("latin-1"))
    cases.append((str(latin), "not UTF-8"))
    for data, needle in cases:
        assert main(["train", "--data", data, "--epochs", "1",
                     "--out", str(tmp_path / "o")]) == 2
        assert_one_line_error(capsys.readouterr().err, needle)


# ---- diagnose --------------------------------------------------------------------------------

SEED_SCHEDULE_LINES = [
    " Epoch     Step   Cosine  Warmup+Cos",
    "    30 0.000500 0.000794    0.000883",
    "    99 0.000125 0.000001    0.000001",
]


def test_diagnose_prints_the_seeds_tables(capsys):
    assert main(["diagnose"]) == 0
    out = capsys.readouterr().out
    for line in SEED_SCHEDULE_LINES:
        assert line in out.splitlines()
    assert "    14      0.8839     1.4145   0.3924  0.5823" in out.splitlines()
    assert "After 50 layers (worst case): 0.25^50 = 7.89e-31" in out
    assert " he     init: mean=1.9387e-01, std=3.4086e-01, dead_neurons=12/64" in out
    assert "Before BN: mean=3.20, std=4.95" in out
    assert "Best validation loss at epoch 82: 0.1045" in out
    assert "With patience=10, early stopping would trigger at epoch ~92" in out
    assert "stops at epoch 92, best epoch 82" in out
    assert " Early stopping triggered at epoch 115" in out
    assert " Saved 85 epochs of wasted compute" in out
    assert "Dropout sample 4:" in out
    assert "ReLU:    He     -> std = sqrt(2/256) = 0.0884" in out


def test_diagnose_only_and_plots(tmp_path, capsys):
    assert main(["diagnose", "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["sigmoid_vanishing.png", "init_experiment.png",
                            "batch_norm.png", "dropout.png", "schedules.png",
                            "early_stopping.png", "recipe_simulation.png"])
    assert "Saved 7 plots" in out
    assert main(["diagnose", "--only", "schedules,init"]) == 0
    out = capsys.readouterr().out
    assert "Warmup+Cos" in out and "dead_neurons" in out and "Batch normalisation" not in out


def test_diagnose_sigmoid_seed(capsys):
    assert main(["diagnose", "--only", "sigmoid", "--seed", "5"]) == 0
    a = capsys.readouterr().out
    assert main(["diagnose", "--only", "sigmoid", "--seed", "5"]) == 0
    assert capsys.readouterr().out == a
    assert "RandomState(5)" in a


def test_diagnose_model(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "3", "--threads", "1", "--out", str(out), "-q",
                 "--no-plot"]) == 0
    capsys.readouterr()
    plots = tmp_path / "plots"
    assert main(["diagnose", "--model", str(out / "model.npz"), "--plot", str(plots)]) == 0
    text = capsys.readouterr().out
    assert "Gradient flow" in text and "Activation statistics" in text
    assert "hidden1" in text and "hidden2" in text and "output" in text
    assert "dead" in text
    assert "Training health" in text and "OK: no vanishing or exploding gradients" in text
    assert (plots / "model_diagnostics.png").is_file()
    # with a data file
    from fastnet.datasets import load_digits
    X, y = load_digits()
    np.savez(tmp_path / "d.npz", X=X[:200], y=y[:200])
    assert main(["diagnose", "--model", str(out / "model.npz"), "--data",
                 str(tmp_path / "d.npz")]) == 0
    assert "200 rows" in capsys.readouterr().out


def test_diagnose_errors(tmp_path, capsys):
    np.savez(tmp_path / "d.npz", X=np.zeros((5, 3)), y=np.array([0, 1, 0, 1, 0]))
    fastnet.MLP([64, 8, 10], seed=0).save(tmp_path / "m.npz")
    cases = [
        (["--model", str(tmp_path / "missing.npz")], "no such file"),
        (["--model", _write(tmp_path / "junk.npz", "junk")], "junk.npz"),
        (["--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz")],
         "3 features"),
        (["--data", str(tmp_path / "d.npz")], "--model"),
        (["--only", "nonsense"], "--only"),
        (["--plot", _write(tmp_path / "f", "x")], "not a directory"),
    ]
    for args, needle in cases:
        code = main(["diagnose", *args])
        cap = capsys.readouterr()
        assert code == 2, (args, cap.err)
        assert_one_line_error(cap.err, needle)


def test_python_m_fastnet_diagnose():
    proc = run_module("diagnose", "--only", "schedules", timeout=60)
    assert proc.returncode == 0, proc.stderr
    for line in SEED_SCHEDULE_LINES:
        assert line in proc.stdout.splitlines()


# ---- lr-find -------------------------------------------------------------------------------

def test_lr_find_prints_the_suggestion_and_writes_png_and_json(tmp_path, capsys):
    out = tmp_path / "lrf"
    assert main(["lr-find", "--steps", "40", "--threads", "1", "--out", str(out),
                 "--optimizer", "adamw"]) == 0
    text = capsys.readouterr().out
    assert "Suggested lr:" in text and "fastnet train --optimizer adamw --lr" in text
    assert (out / "lr_find.png").is_file()
    record = json.loads((out / "lr_find.json").read_text())
    assert len(record["lrs"]) == len(record["losses"]) <= 40
    assert record["lrs"][0] == pytest.approx(1e-7)
    # the same numbers as the API on the same training split
    from fastnet import datasets
    X, y = datasets.load_digits()
    X_train, _, y_train, _ = datasets.train_test_split(X, y, 0.25, seed=0)
    with fastnet.threads(1):
        ref = fastnet.MLP([64, 256, 128, 10], dropout=0.3, seed=0).lr_find(
            X_train, y_train, steps=40, optimizer="adamw", seed=0)
    assert record["losses"] == ref.losses
    assert record["suggested_lr"] == ref.suggested_lr
    assert f"Suggested lr: {ref.suggested_lr:.3g}" in text


def test_lr_find_without_matplotlib_still_succeeds(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "noplot"
    assert main(["lr-find", "--steps", "10", "--layers", "16", "--threads", "1",
                 "--out", str(out)]) == 0
    assert "No PNG: matplotlib is not installed" in capsys.readouterr().out
    assert (out / "lr_find.json").is_file() and not (out / "lr_find.png").exists()


@pytest.mark.parametrize("args, needle", [
    (["--steps", "2"], "--steps"),
    (["--start-lr", "0"], "--start-lr"),
    (["--start-lr", "1", "--end-lr", "0.1"], "--end-lr"),
    (["--optimizer", "lbfgs"], "--optimizer"),
    (["--data", "missing.csv"], "missing.csv"),
])
def test_lr_find_bad_options(args, needle, tmp_path, capsys):
    assert main(["lr-find", "--out", str(tmp_path / "o"), *args]) == 2
    assert_one_line_error(capsys.readouterr().err, needle)


def test_python_m_fastnet_lr_find(tmp_path):
    proc = run_module("lr-find", "--steps", "20", "--layers", "32", "--no-plot", "--out",
                      str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert "Suggested lr:" in proc.stdout


# ---- bench ---------------------------------------------------------------------------------

def test_bench_toy(capsys):
    pytest.importorskip("fastnet.bench")
    assert main(["bench", "--configs", "toy", "--repeats", "1", "--no-torch",
                 "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "toy" in out and "fastnet" in out


def test_bench_bad_config(capsys):
    pytest.importorskip("fastnet.bench")
    assert main(["bench", "--configs", "nope", "--repeats", "1", "--no-torch",
                 "--quiet"]) == 2
    assert_one_line_error(capsys.readouterr().err, "nope")


# ---- data larger than memory -------------------------------------------------------------

def test_train_on_a_npy_reads_the_map_in_place_like_the_same_rows_in_ram(tmp_path, capsys):
    from fastnet.datasets import load_digits
    X, y = load_digits()
    rows = np.column_stack([X, y]).astype(np.float32)
    np.save(tmp_path / "d.npy", rows)
    np.savez(tmp_path / "d.npz", X=X.astype(np.float32), y=y)
    records = []
    for data in ("d.npy", "d.npz"):
        out = tmp_path / data.replace(".", "_")
        assert main(["train", "--data", str(tmp_path / data), "--epochs", "3", "--threads",
                     "1", "--standardize", "--out", str(out), "--no-plot", "-q"]) == 0
        records.append(json.loads((out / "history.json").read_text()))
    capsys.readouterr()
    assert records[0]["history"]["loss"] == records[1]["history"]["loss"]
    assert records[0]["standardize"] == records[1]["standardize"]


def test_train_on_a_npy_adds_no_copy_of_the_data(tmp_path):
    import _memory
    path, out = tmp_path / "big.npy", tmp_path / "o"
    setup = f"""
import numpy as np
rows = np.lib.format.open_memmap({str(path)!r}, mode="w+", dtype=np.float32,
                                 shape=(131072, 129))          # 64 MB: features + label
for s in range(0, 131072, 16384):
    part = np.random.default_rng(s).standard_normal((16384, 129), dtype=np.float32)
    part[:, -1] = part[:, 0] > 0
    rows[s:s + 16384] = part
rows.flush()
del rows, part
from fastnet.cli import main
"""
    body = (f"assert main(['train', '--data', {str(path)!r}, '--epochs', '1', '--layers', "
            f"'32', '--out', {str(out)!r}, '--no-plot', '-q', '--standardize']) == 0")
    extra = _memory.extra_anon_bytes(setup, body, env=child_env(MPLBACKEND="Agg"),
                                     timeout=300)
    # reading the features as float64 and copying the splits cost 400 MB before
    assert extra <= 40 * 2**20, f"{extra / 2**20:.1f} MB extra for 64 MB of rows"
