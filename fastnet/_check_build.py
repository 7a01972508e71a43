"""Fail ``import fastnet`` clearly where its compiled extensions are missing.

That is fastnet's own source tree (a fresh clone, or the checkout's root as the
current directory, which Python searches first): without this check the first
``from fastnet import _parallel`` reports a circular import.
"""
import importlib.util
import os

if importlib.util.find_spec("fastnet._parallel") is None:
    raise ImportError(
        f"fastnet's compiled extensions are missing from {os.path.dirname(__file__)}: this "
        "is fastnet's source tree, which Python imported instead of an installed fastnet. "
        "Install it (pip install .) and run Python from another directory, or build it in "
        "place (pip install -e . or python setup.py build_ext --inplace).",
        name="fastnet")
