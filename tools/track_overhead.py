"""Cost of fit(track_gradients=True) on the digits recipe (issue 9).

Config: digits (pixels / 16, 75 % stratified train split, seed 0), MLP
[64, 256, 128, 10], batch norm, dropout 0.3, AdamW lr 3e-3, batch 64.
Each round fits a few epochs with tracking off and on, alternating so both
see the same machine load; the figure is the best (minimum) per-epoch time
over all epochs of all rounds, per setting, and the overhead is
``best_on / best_off - 1``.  On a shared machine take the best of several
runs of this script.

    python tools/track_overhead.py [--rounds 15] [--epochs 5] [--threads N]
"""
import argparse

import numpy as np

import fastnet
from fastnet import datasets


class EpochTimes:
    """Callback keeping fit's per-epoch wall time (logs["time"])."""

    def __init__(self):
        self.times = []

    def on_epoch_end(self, epoch, logs):
        self.times.append(logs["time"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    X, y = datasets.load_digits()
    X_train, _, y_train, _ = datasets.train_test_split(X, y, test_size=0.25, seed=0)
    best = {False: np.inf, True: np.inf}
    with fastnet.threads(args.threads or fastnet.get_num_threads()):
        models = {flag: fastnet.MLP([64, 256, 128, 10], dropout=0.3, seed=0)
                  for flag in best}
        for _ in range(args.rounds):
            for flag, model in models.items():
                timer = EpochTimes()
                model.fit(X_train, y_train, epochs=args.epochs, batch_size=64,
                          optimizer="adamw", lr=3e-3, verbose=0, track_gradients=flag,
                          callbacks=[timer])
                best[flag] = min(best[flag], min(timer.times))
    print(f"best epoch, tracking off: {best[False] * 1e3:.2f} ms")
    print(f"best epoch, tracking on:  {best[True] * 1e3:.2f} ms")
    print(f"overhead: {100 * (best[True] / best[False] - 1):+.1f} %")


if __name__ == "__main__":
    main()
