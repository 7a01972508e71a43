"""Every plot fastnet draws: the command line's PNGs of training runs, lr range tests,
model diagnostics and the article's experiments ("Learn AI Series (#40) - Training
Neural Networks - Practical Challenges").

Plots are drawn on a :class:`matplotlib.figure.Figure` (no pyplot, no display). A
function that makes its own figure takes the path to save to and returns it, or None
(with a hint printed) when matplotlib is missing; one that draws on ``fig`` is given a
figure by its caller.
"""
import math

import numpy as np

from fastnet import schedules as _schedules

__all__ = ["figure", "save", "training_history", "lr_range_test", "model_diagnostics",
           "sigmoid_vanishing", "init_experiment", "batch_norm", "dropout", "lr_schedules",
           "early_stopping", "recipe_simulation"]

PLOT_HINT = "matplotlib is not installed (fastnet depends on it: pip install matplotlib)"


def figure(*args, **kwargs):
    """A matplotlib Figure (no pyplot, no display needed), or None with a hint."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        print(f"No PNG: {PLOT_HINT}")
        return None
    return Figure(*args, **kwargs)


def save(fig, path):
    fig.savefig(path, dpi=110)
    return path


def training_history(history, path, title, stopped=True):
    fig = figure(figsize=(15, 4.4), layout="constrained")
    if fig is None:
        return None
    h = history.history
    epochs = np.arange(1, len(h["loss"]) + 1)
    axes = fig.subplots(1, 3)
    best = history.best_epoch

    def mark_best(ax):
        if best is not None:
            ax.axvline(best + 1, color="0.4", ls="--", lw=1,
                       label=f"best epoch ({best + 1})" + (", restored" if stopped else ""))

    ax = axes[0]
    ax.plot(epochs, h["loss"], label="training loss", color="C0")
    if h.get("val_loss"):
        ax.plot(epochs, h["val_loss"], label="validation loss", color="C1")
    mark_best(ax)
    ax.set_yscale("log")
    ax.set(title="Loss (cross-entropy)", xlabel="epoch", ylabel="loss (log scale)")
    ax.legend()
    ax = axes[1]
    if h.get("accuracy"):
        ax.plot(epochs, h["accuracy"], label="training accuracy (dropout on)", color="C0")
    if h.get("val_accuracy"):
        ax.plot(epochs, h["val_accuracy"], label="validation accuracy", color="C1")
    mark_best(ax)
    ax.set_ylim(0.0, 1.01)
    ax.set(title="Accuracy", xlabel="epoch", ylabel="accuracy")
    ax.legend(loc="lower right")
    ax = axes[2]
    ax.plot(epochs, h["lr"], color="C2", label="learning rate")
    mark_best(ax)
    ax.set(title="Learning rate schedule", xlabel="epoch", ylabel="learning rate")
    ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    ax.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def lr_range_test(result, path, title):
    fig = figure(figsize=(8, 5), layout="constrained")
    if fig is None:
        return None
    ax = fig.subplots()
    stop = len(result.lrs) if result.diverged_at is None else result.diverged_at + 1
    ax.semilogx(result.lrs, result.losses, ".", color="0.6", ms=4, label="batch loss")
    ax.semilogx(result.lrs, result.smoothed, "-", color="C0", label="smoothed loss")
    ax.axvline(result.suggested_lr, color="C2", ls="--",
               label=f"suggested lr {result.suggested_lr:.3g}")
    if result.diverged_at is not None:
        ax.axvline(result.lrs[result.diverged_at], color="C3", ls=":",
                   label=f"diverged (lr {result.lrs[result.diverged_at]:.3g})")
    finite = [v for v in result.smoothed[:stop] if math.isfinite(v)]
    if finite:
        ax.set_ylim(0.9 * min(finite), 1.3 * max(finite))
    ax.set(title=title, xlabel="learning rate (log scale)", ylabel="training loss")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return save(fig, path)


def sigmoid_vanishing(fig, res):
    ax = fig.subplots()
    layers = [r["layer"] + 1 for r in res["layers"]]
    ax.semilogy(layers, [r["gradient"] for r in res["layers"]], "o-",
                label="|gradient| (product of sigmoid'(z))")
    ax.semilogy(layers, [r["worst_case"] for r in res["layers"]], "k--",
                label="0.25^n (largest possible)")
    ax.set(title="Vanishing gradients through sigmoid layers", xlabel="layers traversed (n)",
           ylabel="gradient magnitude (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()


def init_experiment(fig, runs):
    ax = fig.subplots()
    for name, rows in runs.items():
        ax.semilogy([r["layer"] + 1 for r in rows], [r["std"] for r in rows], "o-", ms=3,
                    label={"small": "small (0.01)", "large": "large (1.0)",
                           "he": "He (sqrt(2/fan_in))"}.get(name, name))
    ax.set(title="Activation std through 20 ReLU layers (width 64)", xlabel="layer",
           ylabel="activation std (log scale)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()


def batch_norm(fig, rows):
    axes = fig.subplots(1, 2)
    layers = [r["layer"] for r in rows]
    for ax, stat in zip(axes, ("mean", "std")):
        ax.plot(layers, [r[f"no_bn_{stat}"] for r in rows], "o-", label="without batch norm")
        ax.plot(layers, [r[f"bn_{stat}"] for r in rows], "s-", label="with batch norm")
        ax.set(title=f"Activation {stat} after ReLU", xlabel="layer", ylabel=stat)
        ax.grid(alpha=0.3)
        ax.legend()


def dropout(fig, res):
    ax = fig.subplots()
    n = len(res["original"])
    x = np.arange(n)
    series = [("original", res["original"])] + [
        (f"sample {s['sample']} (mean {s['mean']:.2f})", s["values"]) for s in res["samples"]]
    width = 0.8 / len(series)
    for i, (label, values) in enumerate(series):
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, [f"a{i + 1}" for i in range(n)])
    ax.set(title=f"Inverted dropout, rate {res['rate']}: dropped units are 0, kept ones "
                 "x2", xlabel="unit", ylabel="activation")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")


def lr_schedules(fig):
    ax = fig.subplots()
    epochs = np.arange(100)
    ax.plot(epochs, [_schedules.step_decay(e, 0.001) for e in epochs], drawstyle="steps-post",
            label="step decay (x0.5 every 30)")
    ax.plot(epochs, [_schedules.cosine_schedule(e, 100, 0.001) for e in epochs],
            label="cosine")
    ax.plot(epochs, [_schedules.warmup_cosine(e, 10, 100, 0.001) for e in epochs],
            label="warmup (10) + cosine")
    ax.set(title="Learning-rate schedules (initial lr 0.001, 100 epochs)", xlabel="epoch",
           ylabel="learning rate")
    ax.grid(alpha=0.3)
    ax.legend()


def _loss_axes(fig, res):
    """One axes with the training and validation loss curves of `res`; (ax, epochs)."""
    ax = fig.subplots()
    epochs = np.arange(len(res["train_losses"]))
    ax.plot(epochs, res["train_losses"], label="training loss")
    ax.plot(epochs, res["val_losses"], label="validation loss")
    return ax, epochs


def early_stopping(fig, res):
    ax, _ = _loss_axes(fig, res)
    ax.axvline(res["best_epoch"], color="C2", ls="--",
               label=f"best epoch {res['best_epoch']} (weights restored)")
    ax.axvline(res["stopped_epoch"], color="C3", ls=":",
               label=f"stop at epoch {res['stopped_epoch']} (patience {res['patience']})")
    ax.set(title="Early stopping on the simulated overfitting curve", xlabel="epoch",
           ylabel="loss")
    ax.grid(alpha=0.3)
    ax.legend()


def recipe_simulation(fig, res):
    ax, epochs = _loss_axes(fig, res)
    if res["stopped_epoch"] is not None:
        ax.axvline(res["stopped_epoch"], color="C3", ls=":",
                   label=f"early stop (epoch {res['stopped_epoch']})")
    ax.set(title="Simulated full-recipe run", xlabel="epoch", ylabel="loss")
    ax.grid(alpha=0.3)
    lr_ax = ax.twinx()
    lr_ax.plot(epochs, res["lrs"], color="C2", alpha=0.7, label="learning rate (right axis)")
    lr_ax.set_ylabel("learning rate")
    lines = ax.get_legend_handles_labels()
    more = lr_ax.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1])


def model_diagnostics(fig, flow, acts):
    ax1, ax2 = fig.subplots(1, 2)
    names = [r["name"] for r in flow]
    x = np.arange(len(flow))
    ax1.bar(x - 0.2, [r["grad_norm"] for r in flow], 0.4, label="|dW| (norm)")
    ax1.bar(x + 0.2, [r["mean_abs_grad"] for r in flow], 0.4, label="mean |dW|")
    ax1.set_yscale("log")
    ax1.set_xticks(x, names)
    ax1.set(title="Gradient flow per layer", xlabel="layer", ylabel="gradient (log scale)")
    ax1.grid(alpha=0.3, axis="y")
    ax1.legend()
    names = [r["name"] for r in acts]
    x = np.arange(len(acts))
    ax2.bar(x - 0.2, [r["std"] for r in acts], 0.4, label="activation std")
    ax2.bar(x + 0.2, [r["dead_fraction"] for r in acts], 0.4, label="dead fraction")
    ax2.set_xticks(x, names)
    ax2.set(title="Hidden activations (inference mode)", xlabel="layer", ylabel="value")
    ax2.grid(alpha=0.3, axis="y")
    ax2.legend()

