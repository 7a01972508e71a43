"""Every script in examples/ runs as written (shortened through FASTNET_EXAMPLE_EPOCHS)."""
import os
import subprocess
import sys

import pytest
from conftest import child_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run_example(name, *args, cwd, extra_env=None, timeout=120):
    env = child_env(MPLBACKEND="Agg", FASTNET_EXAMPLE_EPOCHS="5")
    env.update(extra_env or {})
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stdout


def test_every_example_is_tested():
    scripts = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))
    assert scripts == ["compare_schedules.py", "digits_recipe.py", "init_experiment.py"]


def test_digits_recipe(tmp_path):
    out = run_example("digits_recipe.py", cwd=tmp_path)
    assert "test accuracy:" in out
    acc = float(out.rsplit("test accuracy:", 1)[1])
    assert acc > 0.8          # 5 epochs; the full 100-epoch run reaches ~0.98


def test_compare_schedules_png(tmp_path):
    pytest.importorskip("matplotlib")
    out = run_example("compare_schedules.py", cwd=tmp_path)
    png = tmp_path / "compare_schedules.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "saved compare_schedules.png" in out
    run_example("compare_schedules.py", str(tmp_path / "other.png"), cwd=tmp_path)
    assert (tmp_path / "other.png").is_file()


def test_compare_schedules_without_matplotlib(tmp_path):
    # a stub package named matplotlib without matplotlib.figure makes the import fail
    stub = tmp_path / "stub" / "matplotlib"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('no matplotlib here')\n")
    out = run_example("compare_schedules.py", cwd=tmp_path,
                      extra_env={"PYTHONPATH": child_env(str(stub.parent))["PYTHONPATH"]})
    assert "matplotlib is not installed" in out
    assert "0.000883" in out          # the seed's warmup+cosine lr at epoch 30
    assert not (tmp_path / "compare_schedules.png").exists()


def test_init_experiment(tmp_path):
    out = run_example("init_experiment.py", cwd=tmp_path)
    assert " he     init: mean=1.9387e-01, std=3.4086e-01, dead_neurons=12/64" in out
    assert "small  init" in out and "large  init" in out
    assert len([l for l in out.splitlines() if l.strip()[:2].strip().isdigit()]) == 20
