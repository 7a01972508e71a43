"""The article's experiments, as functions that return data, and the report that prints
them as its tables.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical
Challenges": vanishing gradients, weight initialisation, batch normalisation,
dropout, learning-rate schedules and early stopping, each with a code block.  Each
function here reproduces one block with the article's exact semantics and
random-number usage and returns plain Python data (lists of dicts, dicts of floats
and lists) that tests and notebooks can check; :func:`print_report` (``fastnet
diagnose``) prints them as the article's tables, with plots from
:mod:`fastnet.plotting`.

======================================  ==========================================
function                                block of the article
======================================  ==========================================
:func:`sigmoid_vanishing`               gradient through 10 sigmoid layers
:func:`init_experiment`                 ``forward_activations``: small/large/He init
:func:`init_cheat_sheet`                the initialisation cheat sheet
:func:`batch_norm_demo`                 "Before BN / After BN" on one batch
:func:`batch_norm_experiment`           ``simulate_layer_stats`` with and without BN
:func:`dropout_demo`                    4 dropout samples of ``[1..8]``
:func:`dropout_rate_guide`              typical dropout rates by layer type
:func:`schedule_table`                  step / cosine / warmup+cosine table
:func:`early_stopping_experiment`       simulated 200-epoch overfitting curve
:func:`modern_recipe`                   ``modern_training_recipe()``
:func:`recipe_simulation`               the simulated "full recipe" run
======================================  ==========================================

Where the article is deterministic (it calls ``np.random.seed(42)``), the same
legacy :class:`numpy.random.RandomState` stream is used, so the numbers are the
article's to the last printed digit; where it is not, the function takes a ``seed``
and documents its choice.  No function touches NumPy's global random state.  The
same names are importable from :mod:`fastnet.diagnostics`.
"""
import math
import os

import numpy as np

from fastnet import _activations, plotting
from fastnet._validation import integer, one_of

__all__ = [
    "EXPERIMENTS",
    "batch_norm_demo",
    "batch_norm_experiment",
    "dropout_demo",
    "dropout_rate_guide",
    "early_stopping_experiment",
    "init_cheat_sheet",
    "init_experiment",
    "modern_recipe",
    "print_report",
    "recipe_simulation",
    "schedule_table",
    "sigmoid_vanishing",
]

#: The experiments of :func:`print_report`, in the article's order.
EXPERIMENTS = ("sigmoid", "init", "batchnorm", "dropout", "schedules", "early-stopping",
               "recipe")
INIT_STRATEGIES = ("small", "large", "he", "xavier", "lecun")
ACTIVATIONS = ("relu", "tanh", "sigmoid")


def _sigmoid(z):
    """The article's sigmoid: ``1 / (1 + exp(-clip(z, -500, 500)))``."""
    return _activations.ACTIVATIONS["sigmoid"].numpy(z)


def _seed_arg(seed, name="seed", allow_none=False):
    """A seed of NumPy's legacy RandomState (the article's streams): [0, 2**32)."""
    return integer(seed, name, 0, 2**32 - 1, allow_none=allow_none)


def sigmoid_vanishing(n_layers=10, seed=None):
    """The article's gradient through a stack of sigmoid layers.

    As in the article: ``gradient = 1``, then for each layer draw one
    pre-activation ``z ~ N(0, 1)`` and multiply by ``sigmoid'(z) =
    s(z) (1 - s(z))``, which is at most 0.25 (at z = 0).  So after ``n``
    layers ``|gradient| <= 0.25**n``; the article calls that bound the "worst
    case".

    Parameters
    ----------
    n_layers : int >= 1
    seed : int, optional
        Seed of the legacy ``numpy.random.RandomState`` the ``z`` are drawn
        from (``rs.randn()`` once per layer, the article's call).  The article
        draws from NumPy's global state without seeding, so its table changes
        from run to run; ``None`` does the same (fresh entropy).

    Returns
    -------
    dict with
        ``layers``: list of dicts (``layer``, ``z``, ``derivative``,
        ``gradient`` = |product so far|, ``worst_case`` = 0.25**(layer+1));
        ``final_gradient``: the gradient after ``n_layers``;
        ``worst_case_50``: 0.25**50 (7.89e-31);
        ``weakening_50``: 1 / 0.25**50 (1.27e+30).
    """
    n_layers = integer(n_layers, "n_layers", 1)
    rs = np.random.RandomState(_seed_arg(seed, allow_none=True))
    gradient = 1.0
    layers = []
    for layer in range(n_layers):
        z = rs.randn()
        sig_deriv = _sigmoid(z) * (1 - _sigmoid(z))
        gradient *= sig_deriv
        layers.append({"layer": layer, "z": float(z), "derivative": float(sig_deriv),
                       "gradient": float(abs(gradient)), "worst_case": 0.25 ** (layer + 1)})
    return {"layers": layers, "final_gradient": float(abs(gradient)),
            "worst_case_50": 0.25 ** 50, "weakening_50": 1.0 / 0.25 ** 50}


def _init_scale(init, n_in, n_out):
    if init == "small":
        return 0.01
    if init == "large":
        return 1.0
    if init == "he":
        return math.sqrt(2.0 / n_in)
    if init == "xavier":                  # Glorot & Bengio (2010)
        return math.sqrt(2.0 / (n_in + n_out))
    return math.sqrt(1.0 / n_in)          # lecun: the article's "Xavier"


def init_experiment(n_layers=20, width=64, init="he", activation="relu", n_samples=100,
                    seed=42, *, data_seed=None):
    """Push random data through a deep, randomly initialised stack (the article's
    ``forward_activations``) and record the activations layer by layer.

    The article's semantics, generalised::

        X = randn(n_samples, width)                       # data, see below
        np.random.seed(seed)                              # the article's seed(42)
        a = X
        for i in range(n_layers):
            W = np.random.randn(a.shape[1], width) * scale(init, fan_in=a.shape[1])
            a = activation(a @ W)                         # no bias

    with ``scale`` 0.01 ("small"), 1.0 ("large"), ``sqrt(2/fan_in)`` ("he"),
    ``sqrt(2/(fan_in+fan_out))`` ("xavier", Glorot) or ``sqrt(1/fan_in)``
    ("lecun", what the article's cheat sheet calls Xavier).  The weights come
    from ``numpy.random.RandomState(seed)``, the same stream as the article's
    ``np.random.seed(42)``, so every strategy sees the same standard-normal
    draws, only scaled differently.

    The data: the article draws ``X = np.random.randn(100, 64)`` from
    whatever global state earlier code left (unseeded), so its X is not
    reproducible.  Here X is drawn from ``RandomState(data_seed)``, default
    ``seed + 1``: deterministic, and not the same stream as the weights (with
    ``RandomState(seed)`` the data's first 64 rows would *be* the first
    weight matrix, unscaled).

    Without biases, ReLU is positively homogeneous, so "small", "large" and
    "he" give the same pattern (and the same dead units), scaled by
    ``(scale / sqrt(2/width)) ** n_layers``: small collapses towards 0
    (~1e-26 after 20 layers), large explodes (~1e14), He stays O(1).

    Parameters
    ----------
    n_layers : int >= 1
    width : int >= 1
        Units per layer (and features of X).
    init : {"small", "large", "he", "xavier", "lecun"}
    activation : {"relu", "tanh", "sigmoid"}
    n_samples : int >= 1
    seed : int
        Seed of the weights.
    data_seed : int, optional, keyword-only
        Seed of X (default ``seed + 1``).

    Returns
    -------
    list of dict, one per layer, with keys ``layer``, ``mean``, ``std``,
        ``dead`` (units that are 0 for every sample), ``dead_fraction`` and
        ``width``; for tanh/sigmoid also ``saturated_fraction``.  The last
        row is what the article prints.
    """
    n_layers = integer(n_layers, "n_layers", 1)
    width = integer(width, "width", 1)
    n_samples = integer(n_samples, "n_samples", 1)
    init = one_of(init, "init", INIT_STRATEGIES)
    activation = one_of(activation, "activation", ACTIVATIONS)
    seed = _seed_arg(seed)
    data_seed = seed + 1 if data_seed is None else _seed_arg(data_seed, "data_seed")
    X = np.random.RandomState(data_seed).randn(n_samples, width)
    rs = np.random.RandomState(seed)
    a = X
    rows = []
    for i in range(n_layers):
        n_in = a.shape[1]
        W = rs.randn(n_in, width) * _init_scale(init, n_in, width)
        a = _activations.forward(a @ W, activation)
        row = {"layer": i, "width": width}
        row.update(_activations.unit_stats(a, activation))
        rows.append(row)
    return rows


def init_cheat_sheet(fan_in=256):
    """The article's initialisation cheat sheet, with fastnet's names.

    The article's "Xavier" (``std = sqrt(1/fan_in)``) is LeCun's rule,
    :func:`fastnet.init.lecun_normal`; Glorot's Xavier
    (:func:`fastnet.init.xavier_normal`) is ``sqrt(2/(fan_in+fan_out))``,
    the same for a square layer.

    Returns
    -------
    list of dict with keys ``activation``, ``seed_name``, ``formula``,
        ``std`` and ``fastnet`` (the initialiser to use).
    """
    fan_in = integer(fan_in, "fan_in", 1)
    return [
        {"activation": "ReLU", "seed_name": "He", "formula": f"sqrt(2/{fan_in})",
         "std": float(np.sqrt(2 / fan_in)), "fastnet": "he_normal"},
        {"activation": "Sigmoid", "seed_name": "Xavier", "formula": f"sqrt(1/{fan_in})",
         "std": float(np.sqrt(1 / fan_in)), "fastnet": "lecun_normal"},
        {"activation": "Tanh", "seed_name": "Xavier", "formula": f"sqrt(1/{fan_in})",
         "std": float(np.sqrt(1 / fan_in)), "fastnet": "lecun_normal"},
    ]


def _bn(z):
    """The article's batch_norm with gamma = 1, beta = 0, eps = 1e-5, via fastnet's kernel."""
    from fastnet import functional
    ones = np.ones(z.shape[1], dtype=z.dtype)
    out, _, _ = functional.batch_norm(z, ones, np.zeros_like(ones), 1e-5, training=True)
    return out


def batch_norm_demo(seed=42):
    """The article's "Before BN / After BN" demo on one shifted, scaled batch.

    ``np.random.seed(42); z = randn(32, 64) * 5 + 3``, then batch norm
    (gamma 1, beta 0), computed with :func:`fastnet.functional.batch_norm`
    in float64.  The article prints ``before: mean 3.20, std 4.95`` and
    ``after: mean 0.0000, std 1.0000``.

    Returns
    -------
    dict with ``before_mean``, ``before_std``, ``after_mean``, ``after_std``.
    """
    rs = np.random.RandomState(_seed_arg(seed))
    z = rs.randn(32, 64) * 5 + 3
    z_bn = _bn(z)
    return {"before_mean": float(z.mean()), "before_std": float(z.std()),
            "after_mean": float(z_bn.mean()), "after_std": float(z_bn.std())}


def batch_norm_experiment(n_layers=15, seed=42):
    """The article's ``simulate_layer_stats``: He-initialised ReLU layers of width
    128 on a batch of 64, with and without batch norm.

    Same random-number order as the article: one ``np.random.seed(42)``,
    then the run without BN (its ``x = randn(64, 128)`` and one
    ``W = randn(128, 128) * sqrt(2/128)`` per layer), then the run with BN
    continuing the same stream.  Per layer::

        z = x @ W
        z = BN(z)            # with BN only: batch statistics, gamma 1, beta 0
        x = relu(z)

    Batch norm is :func:`fastnet.functional.batch_norm` in float64 (the
    article's formula, biased variance, eps 1e-5).  With BN every layer's ReLU
    output has the statistics of ``relu(N(0, 1))``: mean ``1/sqrt(2 pi)
    = 0.399``, std ``sqrt(1/2 - 1/(2 pi)) = 0.584``; without it they drift
    (the article's table: mean 0.57 -> 0.88, std 0.84 -> 1.41 over 15 layers).

    Returns
    -------
    list of dict, one per layer: ``layer``, ``no_bn_mean``, ``no_bn_std``,
        ``bn_mean``, ``bn_std`` (of the post-ReLU activations, the article's
        table), and ``no_bn_pre_mean``, ``no_bn_pre_std``, ``bn_pre_mean``,
        ``bn_pre_std`` (of the pre-activations ``z``; with BN that is the BN
        output: mean 0, std 1 at every layer).
    """
    n_layers = integer(n_layers, "n_layers", 1)
    rs = np.random.RandomState(_seed_arg(seed))

    def simulate(use_bn):
        x = rs.randn(64, 128)
        stats = []
        for _ in range(n_layers):
            W = rs.randn(128, 128) * np.sqrt(2.0 / 128)
            z = x @ W
            if use_bn:
                z = _bn(z)
            x = np.maximum(0, z)
            stats.append((float(x.mean()), float(x.std()), float(z.mean()), float(z.std())))
        return stats

    no_bn = simulate(False)
    bn = simulate(True)
    return [{"layer": i, "no_bn_mean": a[0], "no_bn_std": a[1], "bn_mean": b[0],
             "bn_std": b[1], "no_bn_pre_mean": a[2], "no_bn_pre_std": a[3],
             "bn_pre_mean": b[2], "bn_pre_std": b[3]}
            for i, (a, b) in enumerate(zip(no_bn, bn))]


def dropout_demo(n_samples=4, rate=0.5, seed=42):
    """The article's dropout demo: inverted dropout of ``a = [1, 2, ..., 8]``.

    Each sample is ``fastnet.functional.dropout(a, rate, seed=seed + i)``.
    The masks come from fastnet's counter-based generator (a keyed hash of
    the seed and the element index, the same bits for any thread count), not
    from the article's ``np.random.binomial`` after ``np.random.seed(42)``,
    so the dropped positions differ from the article's; what the demo shows
    is the same: about ``rate`` of the units are zeroed, survivors are scaled
    by ``1 / (1 - rate)``, and the mean is preserved on average.

    Returns
    -------
    dict with ``original`` (list), ``original_mean``, ``rate`` and
        ``samples``: list of dicts (``sample`` from 1, ``values``, ``mean``,
        ``active``, ``seed``).
    """
    from fastnet import functional
    n_samples = integer(n_samples, "n_samples", 1)
    seed = _seed_arg(seed)
    a = np.arange(1.0, 9.0)
    samples = []
    for i in range(n_samples):
        dropped, _ = functional.dropout(a, rate, seed=seed + i)
        samples.append({"sample": i + 1, "values": [float(v) for v in dropped],
                        "mean": float(dropped.mean()), "active": int((dropped != 0).sum()),
                        "seed": seed + i})
    return {"original": [float(v) for v in a], "original_mean": float(a.mean()),
            "rate": float(rate), "samples": samples}


def dropout_rate_guide():
    """The article's "typical dropout rates by layer type" as (layer type, range, why)."""
    return [
        ("Input layer", "0.0 - 0.1", "rarely drop inputs"),
        ("Convolutional layers", "0.1 - 0.3", "spatial structure matters"),
        ("Fully connected hidden", "0.3 - 0.5", "the classic"),
        ("Just before output", "0.0", "don't randomize predictions"),
    ]


def schedule_table(epochs=(0, 5, 10, 20, 30, 50, 70, 90, 99), initial_lr=0.001,
                   total_epochs=100, warmup_epochs=10):
    """The article's schedule comparison, from :mod:`fastnet.schedules`.

    ``step_decay(e, 0.001)``, ``cosine_schedule(e, 100, 0.001)`` and
    ``warmup_cosine(e, 10, 100, 0.001)`` for each epoch ``e``; printed with
    six decimals this is the article's table exactly (see
    :mod:`fastnet.schedules`).

    Returns
    -------
    list of dict with keys ``epoch``, ``step``, ``cosine``, ``warmup_cosine``.
    """
    from fastnet import schedules
    rows = []
    for e in epochs:
        e = integer(e, "epoch", 0)
        rows.append({
            "epoch": e,
            "step": float(schedules.step_decay(e, initial_lr)),
            "cosine": float(schedules.cosine_schedule(e, total_epochs, initial_lr)),
            "warmup_cosine": float(schedules.warmup_cosine(e, warmup_epochs, total_epochs,
                                                           initial_lr)),
        })
    return rows


def _overfitting_curve(epochs=200):
    """The article's simulated curve: train loss keeps falling, val loss turns up after 80."""
    train, val = [], []
    for epoch in range(epochs):
        train_loss = 0.8 * np.exp(-epoch / 30) + 0.05
        val_loss = 0.8 * np.exp(-epoch / 30) + 0.05 + 0.001 * max(0, epoch - 80) ** 1.3
        train.append(float(train_loss))
        val.append(float(val_loss))
    return train, val


def early_stopping_experiment(patience=10, epochs=200):
    """Early stopping on the article's simulated 200-epoch overfitting curve.

    The curve (deterministic)::

        train = 0.8 exp(-epoch/30) + 0.05
        val   = train + 0.001 * max(0, epoch - 80) ** 1.3

    The article's arithmetic: best epoch = argmin(val) = 82 (val 0.1045),
    trigger epoch = best + patience = 92, saved = 200 - 92 = 108 epochs.
    Then the same curve is fed, epoch by epoch, to
    :meth:`fastnet.callbacks.EarlyStopping.check` with the epoch's "weights"
    ``[np.array([epoch, train_loss])]``, to show that it asks to stop at the
    end of epoch ``best + patience`` and keeps a copy of the best epoch's
    weights.

    Returns
    -------
    dict with ``train_losses``, ``val_losses`` (lists), ``best_epoch``,
        ``best_val_loss``, ``train_loss_at_best``, ``final_train_loss``,
        ``final_val_loss``, ``trigger_epoch`` (best + patience),
        ``epochs_saved``, ``patience``, and from the callback
        ``stopped_epoch``, ``stopper_best_epoch``, ``stopper_best_loss`` and
        ``restored_weights`` (the kept copy, as a list of lists).
    """
    from fastnet.callbacks import EarlyStopping
    patience = integer(patience, "patience", 1)
    epochs = integer(epochs, "epochs", 2)
    train, val = _overfitting_curve(epochs)
    best = int(np.argmin(val))
    stopper = EarlyStopping(patience=patience)
    stopped = None
    for epoch in range(epochs):
        if stopper.check(val[epoch], [np.array([epoch, train[epoch]])], epoch=epoch):
            stopped = epoch
            break
    return {
        "train_losses": train,
        "val_losses": val,
        "patience": patience,
        "epochs": epochs,
        "best_epoch": best,
        "best_val_loss": val[best],
        "train_loss_at_best": train[best],
        "final_train_loss": train[-1],
        "final_val_loss": val[-1],
        "trigger_epoch": best + patience,
        "epochs_saved": epochs - best - patience,
        "stopped_epoch": stopped,
        "stopper_best_epoch": stopper.best_epoch,
        "stopper_best_loss": stopper.best_loss,
        "restored_weights": [w.tolist() for w in stopper.best_weights],
    }


def modern_recipe():
    """The article's ``modern_training_recipe()`` checklist as {section: [items]}."""
    return {
        "1. ARCHITECTURE": ["ReLU activations for hidden layers",
                            "He initialization (sqrt(2/fan_in))",
                            "Batch norm after linear, before activation"],
        "2. REGULARIZATION": ["Dropout (0.3-0.5) after activation in FC layers",
                              "Early stopping (patience 5-20 epochs)",
                              "Optional: L2 weight decay"],
        "3. OPTIMIZATION": ["Warmup + cosine LR schedule",
                            "Adam optimizer (AdamW in fastnet: decoupled weight decay)",
                            "Mini-batch gradient descent (batch size 32-256)"],
        "4. MONITORING": ["Track train AND validation loss every epoch",
                          "Watch for divergence (exploding gradients)",
                          "Watch for the train-val gap (overfitting)"],
    }


def recipe_simulation(lr_initial=0.001, warmup_epochs=10, total_epochs=200, patience=15,
                      dropout_rate=0.3, log_every=40):
    """The article's simulated "full recipe" run.

    For each epoch: ``lr = warmup_cosine(epoch, 10, 200, 0.001)``
    (:func:`fastnet.schedules.warmup_cosine`), the simulated losses::

        train = 0.6 exp(-epoch/25) + 0.02
        val   = 0.65 exp(-epoch/25) + 0.03 + 0.0005 * max(0, epoch - 100) ** 1.2

    and ``EarlyStopping(patience=15).check(val, [np.array([train])])``
    (:class:`fastnet.callbacks.EarlyStopping`).  The article's output: stops at
    epoch 115, best validation loss 0.0419 (epoch 100), 85 epochs saved.
    As in the article, ``best_epoch`` is ``stopped_epoch - patience``.

    Returns
    -------
    dict with ``config`` (the article's printed configuration), ``log`` (rows
        every ``log_every`` epochs: ``epoch``, ``lr``, ``train``, ``val``),
        ``lrs``, ``train_losses``, ``val_losses`` (every epoch run),
        ``stopped_epoch`` (None if never triggered), ``best_loss``,
        ``best_epoch``, ``epochs_saved`` and ``total_epochs``.
    """
    from fastnet.callbacks import EarlyStopping
    from fastnet.schedules import warmup_cosine
    total_epochs = integer(total_epochs, "total_epochs", 1)
    patience = integer(patience, "patience", 1)
    log_every = integer(log_every, "log_every", 1)
    stopper = EarlyStopping(patience=patience)
    log, lrs, train_losses, val_losses = [], [], [], []
    stopped = None
    epoch = 0
    for epoch in range(total_epochs):
        lr = float(warmup_cosine(epoch, warmup_epochs, total_epochs, lr_initial))
        train_loss = float(0.6 * np.exp(-epoch / 25) + 0.02)
        val_loss = float(0.65 * np.exp(-epoch / 25) + 0.03
                         + 0.0005 * max(0, epoch - 100) ** 1.2)
        lrs.append(lr)
        train_losses.append(train_loss)
        val_losses.append(val_loss)
        if epoch % log_every == 0:
            log.append({"epoch": epoch, "lr": lr, "train": train_loss, "val": val_loss})
        if stopper.check(val_loss, [np.array([train_loss])]):
            stopped = epoch
            break
    return {
        "config": {"Initial LR": lr_initial, "Warmup": f"{warmup_epochs} epochs",
                   "Total budget": f"{total_epochs} epochs", "Dropout": dropout_rate,
                   "Early stop": f"patience={patience}", "Init": "He (ReLU network)",
                   "Batch norm": "Yes (every hidden layer)"},
        "log": log,
        "lrs": lrs,
        "train_losses": train_losses,
        "val_losses": val_losses,
        "stopped_epoch": stopped,
        "best_loss": float(stopper.best_loss),
        "best_epoch": None if stopped is None else stopped - patience,
        "epochs_saved": total_epochs - epoch if stopped is not None else 0,
        "total_epochs": total_epochs,
    }


# ---------------------------------------------------------------------------
# the report
# ---------------------------------------------------------------------------

def heading(text):
    """Print `text` underlined, after a blank line: a section of a printed report."""
    print()
    print(text)
    print("=" * len(text))


def print_report(selected=None, seed=0, plot_dir=None):
    """Print the article's experiments as its tables (and save their plots).

    Parameters
    ----------
    selected : sequence of str, optional
        Names of :data:`EXPERIMENTS` to run, in the report's order (default all).
    seed : int
        Seed of the sigmoid experiment's pre-activations (the article leaves them
        unseeded).
    plot_dir : str, optional
        Directory to save one PNG per experiment in (none without it).

    Returns
    -------
    list of str
        The paths of the saved plots.
    """
    selected = list(EXPERIMENTS) if selected is None else selected
    saved = []
    drawing = plot_dir is not None

    def plot(fn, name, *data):
        nonlocal drawing
        if not drawing:
            return
        fig = plotting.figure(figsize=(7.5, 4.6), layout="constrained")
        if fig is None:
            drawing = False       # matplotlib is missing: said once
            return
        fn(fig, *data)
        saved.append(plotting.save(fig, os.path.join(plot_dir, name)))

    if "sigmoid" in selected:
        res = sigmoid_vanishing(10, seed=seed)
        _print_sigmoid(res, seed)
        plot(plotting.sigmoid_vanishing, "sigmoid_vanishing.png", res)
    if "init" in selected:
        runs = {s: init_experiment(20, 64, s) for s in ("small", "large", "he")}
        _print_init(runs)
        _print_cheat_sheet(init_cheat_sheet(256))
        plot(plotting.init_experiment, "init_experiment.png", runs)
    if "batchnorm" in selected:
        _print_bn_demo(batch_norm_demo())
        rows = batch_norm_experiment(15)
        _print_bn(rows)
        plot(plotting.batch_norm, "batch_norm.png", rows)
    if "dropout" in selected:
        res = dropout_demo()
        _print_dropout(res, dropout_rate_guide())
        plot(plotting.dropout, "dropout.png", res)
    if "schedules" in selected:
        _print_schedules(schedule_table())
        plot(plotting.lr_schedules, "schedules.png")
    if "early-stopping" in selected:
        res = early_stopping_experiment(10)
        _print_early_stopping(res)
        plot(plotting.early_stopping, "early_stopping.png", res)
    if "recipe" in selected:
        _print_recipe(modern_recipe())
        res = recipe_simulation()
        _print_simulation(res)
        plot(plotting.recipe_simulation, "recipe_simulation.png", res)
    if saved:
        print()
        print(f"Saved {len(saved)} plot{'s' if len(saved) != 1 else ''} in {plot_dir}:")
        for path in saved:
            print(f"  {path}")
    return saved


def _print_sigmoid(res, seed):
    n = len(res["layers"])
    heading("Vanishing gradients: the gradient through sigmoid layers")
    print(f"Gradient magnitude through {n} sigmoid layers "
          f"(one z ~ N(0, 1) per layer, RandomState({seed})):")
    for r in res["layers"]:
        print(f" Layer {r['layer']}: gradient = {r['gradient']:.10f}   "
              f"(z = {r['z']:+.4f}, sigmoid'(z) = {r['derivative']:.4f}; "
              f"0.25^{r['layer'] + 1} = {r['worst_case']:.10f})")
    print(f"\nAfter {n} layers: gradient is {res['final_gradient']:.2e}")
    print(f"After 50 layers (worst case): 0.25^50 = {res['worst_case_50']:.2e}")
    print(f"That's {res['weakening_50']:.2e}x weaker than the output layer")


def _print_init(runs):
    heading("Weight initialisation: activations through 20 ReLU layers (width 64)")
    n_layers = len(next(iter(runs.values())))
    print(f"Activation statistics after {n_layers} ReLU layers:\n")
    for name, rows in runs.items():
        last = rows[-1]
        print(f" {name:6s} init: mean={last['mean']:.4e}, std={last['std']:.4e}, "
              f"dead_neurons={last['dead']}/{last['width']}")
    print("\nActivation std per layer:")
    names = list(runs)
    print(f" {'Layer':>5s}" + "".join(f" {n + ' std':>12s}" for n in names))
    for i in range(n_layers):
        print(f" {i:>5d}" + "".join(f" {runs[n][i]['std']:>12.4e}" for n in names))
    print("\n small (0.01) collapses towards 0, large (1.0) explodes, He (sqrt(2/fan_in)) "
          "stays O(1).")


def _print_cheat_sheet(rows):
    print("\nInitialization cheat sheet:")
    for r in rows:
        print(f" {r['activation'] + ':':8s} {r['seed_name']:6s} -> std = {r['formula']} = "
              f"{r['std']:.4f}   (fastnet.init.{r['fastnet']})")
    print(" (The article's 'Xavier' sqrt(1/fan_in) is LeCun's rule; Glorot's Xavier, "
          "fastnet.init.xavier_normal, is sqrt(2/(fan_in+fan_out)).)")


def _print_bn_demo(res):
    heading("Batch normalisation")
    print(f"Before BN: mean={res['before_mean']:.2f}, std={res['before_std']:.2f}")
    print(f"After BN: mean={res['after_mean']:.4f}, std={res['after_std']:.4f}")


def _print_bn(rows):
    print("\nActivations after ReLU, 15 He-initialised layers of width 128, batch 64:")
    print(f"{'Layer':>6s} {'No BN mean':>11s} {'No BN std':>10s} "
          f"{'BN mean':>8s} {'BN std':>7s}")
    print("-" * 50)
    for r in rows:
        print(f"{r['layer']:>6d} {r['no_bn_mean']:>11.4f} {r['no_bn_std']:>10.4f} "
              f"{r['bn_mean']:>8.4f} {r['bn_std']:>7.4f}")
    pre_mean = max(abs(r["bn_pre_mean"]) for r in rows)
    pre_std = [r["bn_pre_std"] for r in rows]
    print(f"With BN, every layer's batch-norm output (before ReLU) has |mean| <= "
          f"{pre_mean:.1e} and std {min(pre_std):.4f}..{max(pre_std):.4f}, so after ReLU "
          "mean ~0.40, std ~0.58\n(those of relu(N(0, 1))); without BN the statistics "
          "drift from layer to layer.")


def _print_dropout(res, guide):
    heading("Dropout")
    a = np.array(res["original"])
    print(f"Original activations: {a}")
    print(f"Mean: {res['original_mean']:.2f}")
    print()
    for s in res["samples"]:
        print(f"Dropout sample {s['sample']}: {np.array(s['values']).round(2)}")
        print(f" Mean: {s['mean']:.2f} Active: {s['active']}/{len(a)}")
    print(f"(rate {res['rate']}; masks from fastnet.functional.dropout with seeds "
          f"{res['samples'][0]['seed']}..{res['samples'][-1]['seed']})")
    print("\nTypical dropout rates by layer type:")
    for layer, rate, why in guide:
        print(f" {layer + ':':23s} {rate:10s} ({why})")


def _print_schedules(rows):
    heading("Learning-rate schedules (initial lr 0.001, 100 epochs, 10 warmup)")
    print(f"{'Epoch':>6s} {'Step':>8s} {'Cosine':>8s} {'Warmup+Cos':>11s}")
    print("-" * 38)
    for r in rows:
        print(f"{r['epoch']:>6d} {r['step']:>8.6f} {r['cosine']:>8.6f} "
              f"{r['warmup_cosine']:>11.6f}")


def _print_early_stopping(res):
    heading("Early stopping on the simulated overfitting curve")
    n, p, best = res["epochs"], res["patience"], res["best_epoch"]
    print(f"Training loss at epoch {n}: {res['final_train_loss']:.4f} (still decreasing)")
    print(f"Validation loss at epoch {n}: {res['final_val_loss']:.4f} (INCREASING)")
    print(f"\nBest validation loss at epoch {best}: {res['best_val_loss']:.4f}")
    print(f"Training loss at epoch {best}: {res['train_loss_at_best']:.4f}")
    print(f"\nWith patience={p}, early stopping would trigger at epoch ~{res['trigger_epoch']}")
    print(f"Saving you {res['epochs_saved']} epochs of wasted compute")
    print("AND giving you better generalization (lower val loss)")
    kept = res["restored_weights"][0]
    print(f"\nfastnet.callbacks.EarlyStopping(patience={p}).check over the curve: stops at "
          f"epoch {res['stopped_epoch']}, best epoch {res['stopper_best_epoch']} "
          f"(val {res['stopper_best_loss']:.4f}); kept weights are epoch {int(kept[0])}'s.")


def _print_recipe(recipe):
    heading("Putting it all together")
    print("Modern deep learning training recipe:")
    print("=" * 50)
    for section, items in recipe.items():
        print()
        print(section)
        for item in items:
            print(f" - {item}")


def _print_simulation(res):
    print()
    print("Training config:")
    for key, value in res["config"].items():
        print(f" {key}: {value}")
    print()
    for r in res["log"]:
        print(f" Epoch {r['epoch']:>3d}: lr={r['lr']:.6f}, train={r['train']:.4f}, "
              f"val={r['val']:.4f}")
    if res["stopped_epoch"] is not None:
        print(f"\n Early stopping triggered at epoch {res['stopped_epoch']}")
        print(f" Best validation loss: {res['best_loss']:.4f}")
    print(f"\n Would have trained {res['total_epochs']} epochs without early stopping")
    print(f" Saved {res['epochs_saved']} epochs of wasted compute")
