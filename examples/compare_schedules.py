"""Plot the seed's three learning-rate schedules: step decay, cosine, warmup + cosine.

    python examples/compare_schedules.py [OUTPUT.png]

Writes compare_schedules.png (or OUTPUT.png) when matplotlib is installed
(pip install "fastnet[plot]"); otherwise prints the learning rates as a table.
"""
import sys

from fastnet.schedules import cosine_schedule, step_decay, warmup_cosine

EPOCHS, LR, WARMUP = 100, 0.001, 10
epochs = list(range(EPOCHS))
curves = {
    "step decay (x0.5 every 30)": [step_decay(e, LR) for e in epochs],
    "cosine": [cosine_schedule(e, EPOCHS, LR) for e in epochs],
    f"warmup ({WARMUP}) + cosine": [warmup_cosine(e, WARMUP, EPOCHS, LR) for e in epochs],
}

try:
    from matplotlib.figure import Figure
except ImportError:
    print("matplotlib is not installed (pip install 'fastnet[plot]'); the learning rates:")
    print(f"{'epoch':>6s}" + "".join(f"{name.split(' (')[0]:>16s}" for name in curves))
    for e in (0, 5, 10, 20, 30, 50, 70, 90, 99):
        print(f"{e:>6d}" + "".join(f"{c[e]:>16.6f}" for c in curves.values()))
    sys.exit(0)

path = sys.argv[1] if len(sys.argv) > 1 else "compare_schedules.png"
fig = Figure(figsize=(8, 4.5), layout="constrained")
ax = fig.subplots()
for name, lrs in curves.items():
    ax.plot(epochs, lrs, label=name, drawstyle="steps-post" if "step" in name else None)
ax.set(title=f"Learning-rate schedules (initial lr {LR}, {EPOCHS} epochs)",
       xlabel="epoch", ylabel="learning rate")
ax.grid(alpha=0.3)
ax.legend()
fig.savefig(path, dpi=110)
print(f"saved {path}")
