"""Model diagnostics for a (trained) :class:`fastnet.MLP`, as functions that return data.

:func:`gradient_flow` gives per-layer gradient norms (from :meth:`MLP.gradients`),
:func:`activation_stats` per hidden layer mean, std, dead units and saturation in
inference mode (from :func:`hidden_activations`, a NumPy forward pass).  Nothing
here prints or plots: ``fastnet diagnose --model`` turns the data into tables and
plots, and tests and notebooks can check it.

The article's experiments (``sigmoid_vanishing``, ``init_experiment``, ...) live in
:mod:`fastnet.experiments`; their names are importable from here too.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import math

import numpy as np

from fastnet import _activations
from fastnet.experiments import (
    batch_norm_demo,
    batch_norm_experiment,
    dropout_demo,
    dropout_rate_guide,
    early_stopping_experiment,
    init_cheat_sheet,
    init_experiment,
    modern_recipe,
    recipe_simulation,
    schedule_table,
    sigmoid_vanishing,
)

__all__ = [
    "activation_stats",
    "batch_norm_demo",
    "batch_norm_experiment",
    "dropout_demo",
    "dropout_rate_guide",
    "early_stopping_experiment",
    "gradient_flow",
    "init_cheat_sheet",
    "init_experiment",
    "modern_recipe",
    "recipe_simulation",
    "schedule_table",
    "sigmoid_vanishing",
]


# ---------------------------------------------------------------------------
# model diagnostics
# ---------------------------------------------------------------------------

def _layer_name(model, l):
    return "output" if l == model.n_layers - 1 else f"hidden{l + 1}"


def gradient_flow(model, X, y, *, seed=0):
    """Per-layer gradient magnitudes of one training-mode pass over (X, y).

    Uses :meth:`fastnet.MLP.gradients` (batch statistics as in training,
    running statistics untouched, dropout mask drawn from ``seed``, no
    update), so the numbers are what the next optimizer step would see.
    Vanishing gradients show as ``grad_norm`` shrinking towards the input
    layer; exploding ones as a huge ``grad_norm`` or ``grad_to_weight``.

    Parameters
    ----------
    model : fastnet.MLP
    X : array (n, layer_sizes[0])
    y : labels (n,) for a classifier, targets for a regressor
        (the loss is the model's, ``model.loss``).
    seed : int, keyword-only
        Seed of the dropout mask (irrelevant without dropout).

    Returns
    -------
    list of dict, one per Linear layer (input side first), with keys
        ``layer`` (index from 0), ``name`` ("hidden1", ..., "output"),
        ``shape`` ((fan_in, fan_out) of W), ``grad_norm`` (Frobenius norm
        of dL/dW), ``mean_abs_grad`` (mean |dL/dW|), ``max_abs_grad``,
        ``weight_norm`` (||W||), ``grad_to_weight`` (grad_norm /
        weight_norm), ``bias_grad_norm`` (norm of dL/db, or of dL/dbeta with
        batch norm), and ``loss`` (the batch loss, the same in every row).
    """
    loss, grads = model.gradients(X, y, seed=seed)
    rows = []
    for l, (layer, g) in enumerate(zip(model.layers, grads)):
        dw = np.asarray(g["w"], dtype=np.float64)
        w = np.asarray(layer["w"], dtype=np.float64)
        gnorm = float(np.linalg.norm(dw))
        wnorm = float(np.linalg.norm(w))
        bias = g.get("b", g.get("beta"))
        rows.append({
            "layer": l,
            "name": _layer_name(model, l),
            "shape": tuple(int(s) for s in w.shape),
            "grad_norm": gnorm,
            "mean_abs_grad": float(np.mean(np.abs(dw))),
            "max_abs_grad": float(np.max(np.abs(dw))),
            "weight_norm": wnorm,
            "grad_to_weight": gnorm / wnorm if wnorm > 0 else math.inf,
            "bias_grad_norm": float(np.linalg.norm(bias)) if bias is not None else 0.0,
            "loss": float(loss),
        })
    return rows


def hidden_activations(model, X):
    """Post-activation outputs of every hidden layer, in inference mode.

    The native forward pass only returns the network's outputs, so this
    recomputes the hidden layers in float64 NumPy from the model's parameter
    views (``model.layers``), exactly as inference runs them::

        z = a @ W (+ b without batch norm)
        z = gamma * (z - running_mean) / sqrt(running_var + eps) + beta   (batch norm)
        a = activation(z)                  (dropout is the identity at inference)

    Returns
    -------
    list of (pre_activation, activation) float64 arrays, one pair per hidden layer.
    """
    a = model._check_x(X, dtype=np.float64)
    out = []
    for layer in model.layers[:-1]:
        z = a @ np.asarray(layer["w"], dtype=np.float64)
        if "b" in layer:
            z = z + layer["b"]
        if "gamma" in layer:
            var = np.asarray(layer["running_var"], dtype=np.float64)
            z = ((z - layer["running_mean"]) / np.sqrt(var + model.bn_eps)
                 * layer["gamma"] + layer["beta"])
        a = _activations.forward(z, model.activation, model)
        out.append((z, a))
    return out


def activation_stats(model, X):
    """Per hidden layer statistics of the activations, in inference mode.

    Computed in NumPy from the model's parameters (see
    :func:`hidden_activations`; the native forward returns only outputs).
    A *dead* unit outputs exactly 0 for every row of ``X`` (a dead ReLU: its
    gradient is 0 too, so it never recovers).

    Parameters
    ----------
    model : fastnet.MLP
    X : array (n, layer_sizes[0])

    Returns
    -------
    list of dict, one per hidden layer, with keys ``layer``, ``name``,
        ``width``, ``mean``, ``std`` (over all rows and units of the
        post-activation output), ``dead`` (count), ``dead_fraction``,
        ``pre_mean``, ``pre_std`` (the pre-activation, after batch norm), and
        for tanh/sigmoid ``saturated_fraction`` (share of outputs within 0.01
        of the activation's bounds).
    """
    rows = []
    for l, (z, a) in enumerate(hidden_activations(model, X)):
        row = {"layer": l, "name": _layer_name(model, l), "width": int(a.shape[1])}
        row.update(_activations.unit_stats(a, model.activation))
        row["pre_mean"] = float(z.mean())
        row["pre_std"] = float(z.std())
        rows.append(row)
    return rows


# ---------------------------------------------------------------------------
# vanishing gradients
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# initialisation
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# batch normalisation
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# dropout
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# learning-rate schedules
# ---------------------------------------------------------------------------


# ---------------------------------------------------------------------------
# early stopping
# ---------------------------------------------------------------------------


