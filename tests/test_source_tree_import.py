"""`import fastnet` from fastnet's own unbuilt source tree (a fresh clone, or the checkout's
root as the current directory) says to install or build, instead of reporting a circular
import; the installed package, as these tests import it, is unaffected."""
import os
import shutil
import subprocess
import sys

import fastnet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_importing_the_unbuilt_source_tree_says_to_install_it(tmp_path):
    source = os.path.join(ROOT, "fastnet")
    shutil.copytree(source, tmp_path / "fastnet",
                    ignore=lambda d, names: [n for n in names if n.endswith((".so", ".pyd"))
                                             or n == "__pycache__"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # -S: no site packages, so no editable-install finder can supply another fastnet
    proc = subprocess.run([sys.executable, "-S", "-c", "import fastnet"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError:"), proc.stderr
    assert "pip install ." in last and "build_ext --inplace" in last, last
    assert "circular" not in proc.stderr, proc.stderr


def test_the_package_these_tests_use_has_its_extensions():
    from fastnet import _parallel
    assert os.path.dirname(_parallel.__file__) == os.path.dirname(fastnet.__file__)
