"""Cost of fit(track_gradients=True) on the digits recipe (issue 9).

Config: digits (pixels / 16, 75 % stratified train split, seed 0), MLP
[64, 256, 128, 10], batch norm, dropout 0.3, AdamW lr 3e-3, batch 64.
Each round fits a few epochs with tracking off, on (4 sampled steps per
epoch, the default) and on at every step (track_gradients=22, digits has 22
steps per epoch), in turn so all see the same machine load; the figure is
the best (minimum) per-epoch time over all epochs of all rounds, per
setting, and the overhead is ``best_on / best_off - 1``.  On a shared
machine take several runs of this script.

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
    settings = {"off": False, "4 steps/epoch (default)": True, "every step": 22}
    best = dict.fromkeys(settings, np.inf)
    with fastnet.threads(args.threads or fastnet.get_num_threads()):
        models = {name: fastnet.MLP([64, 256, 128, 10], dropout=0.3, seed=0)
                  for name in settings}
        for _ in range(args.rounds):
            for name, model in models.items():
                timer = EpochTimes()
                model.fit(X_train, y_train, epochs=args.epochs, batch_size=64,
                          optimizer="adamw", lr=3e-3, verbose=0,
                          track_gradients=settings[name], callbacks=[timer])
                best[name] = min(best[name], min(timer.times))
    for name, value in best.items():
        extra = "" if name == "off" else f"  ({100 * (value / best['off'] - 1):+.1f} %)"
        print(f"best epoch, tracking {name:24s} {value * 1e3:7.2f} ms{extra}")


if __name__ == "__main__":
    main()
