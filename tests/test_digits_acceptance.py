"""Acceptance (issue 3): the seed's full recipe on scikit-learn's digits.

He init, batch norm, dropout 0.3, AdamW, warmup + cosine, early stopping on
a validation split; 25 % stratified test split (random_state=0), pixels / 16.
With the default seed the test accuracy must be >= 0.975, and a run on 2
threads must give the same bits as a run on 1 thread.

Seeds 0..11 of this recipe gave test accuracies 0.978-0.991 when it was
chosen (0.987 for the default seed).
"""
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import child_env

import fastnet
from fastnet.schedules import WarmupCosine

RECIPE = dict(layers=[64, 256, 128, 10], dropout=0.3, lr=2e-3, weight_decay=0.01,
              warmup=5, epochs=100, batch_size=64, validation_split=0.1, patience=20)


def digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    X, y = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def train(n_threads, seed=None):
    """The full recipe; returns (model, history, test accuracy)."""
    X_train, X_test, y_train, y_test = digits_split()
    r = RECIPE
    with fastnet.threads(n_threads):
        model = fastnet.MLP(r["layers"], activation="relu", batch_norm=True,
                            dropout=r["dropout"], init="he", seed=seed)
        history = model.fit(X_train, y_train, epochs=r["epochs"], batch_size=r["batch_size"],
                            optimizer="adamw", lr=r["lr"], weight_decay=r["weight_decay"],
                            schedule=WarmupCosine(r["lr"], r["warmup"], r["epochs"]),
                            validation_split=r["validation_split"],
                            early_stopping=r["patience"], verbose=0)
        accuracy = model.evaluate(X_test, y_test)["accuracy"]
    return model, history, accuracy


def _main(out_path, n_threads):
    """Subprocess entry: train on n_threads and save weights and history."""
    model, history, accuracy = train(n_threads)
    h = history.history
    np.savez(out_path, accuracy=accuracy, best_epoch=history.best_epoch,
             epochs=history.epochs,
             **{f"w{i}": w for i, w in enumerate(model.get_weights())},
             **{f"h_{k}": np.asarray(v, dtype=np.float64) for k, v in h.items()})


@pytest.fixture(scope="module")
def one_thread_run():
    return train(1)


def test_full_recipe_reaches_the_accuracy_bar(one_thread_run):
    model, history, accuracy = one_thread_run
    assert not history.diverged
    assert history.best_epoch is not None
    # early stopping restored the best epoch's weights
    assert history.stopped_epoch is None or history.stopped_epoch == history.best_epoch + 20
    assert accuracy >= 0.975, f"test accuracy {accuracy:.4f} < 0.975"


def test_full_recipe_is_bit_identical_at_1_and_2_threads(one_thread_run, tmp_path):
    """The 2-thread run goes to a subprocess with OMP_WAIT_POLICY=PASSIVE: on a busy
    shared machine, spinning OpenMP workers make a 2-thread run of this size ~100x
    slower; the wait policy changes how idle threads wait, never what they compute."""
    model, history, accuracy = one_thread_run
    out = tmp_path / "two_threads.npz"
    here = os.path.dirname(os.path.abspath(__file__))
    env = child_env(OMP_WAIT_POLICY="PASSIVE")
    code = (f"import sys; sys.path.insert(0, {here!r}); import test_digits_acceptance as t; "
            f"t._main({str(out)!r}, 2)")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300, cwd=tmp_path)
    with np.load(out, allow_pickle=False) as two:
        weights = model.get_weights()
        for i, w in enumerate(weights):
            assert two[f"w{i}"].tobytes() == w.tobytes(), \
                f"{model.weight_names()[i]} differs between 1 and 2 threads"
        assert int(two["epochs"]) == history.epochs
        assert int(two["best_epoch"]) == history.best_epoch
        for k, v in history.history.items():
            assert two[f"h_{k}"].tobytes() == np.asarray(v, dtype=np.float64).tobytes(), k
        assert float(two["accuracy"]) == accuracy
