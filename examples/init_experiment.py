"""Why initialisation matters: push random data through 20 ReLU layers.

The seed's experiment: weights drawn with std 0.01 ("small"), 1.0 ("large")
or sqrt(2 / fan_in) (He).  Small weights make the signal vanish, large ones
make it explode; He keeps the activations at the same scale in every layer.

    python examples/init_experiment.py
"""
from fastnet.diagnostics import init_experiment

N_LAYERS, WIDTH = 20, 64
runs = {name: init_experiment(N_LAYERS, WIDTH, name) for name in ("small", "large", "he")}

print(f"Activation statistics after {N_LAYERS} ReLU layers:\n")
for name, rows in runs.items():
    last = rows[-1]
    print(f" {name:6s} init: mean={last['mean']:.4e}, std={last['std']:.4e}, "
          f"dead_neurons={last['dead']}/{WIDTH}")

print("\nActivation std, layer by layer:")
print(f"{'layer':>6s}" + "".join(f"{name:>13s}" for name in runs))
for i in range(N_LAYERS):
    print(f"{i + 1:>6d}" + "".join(f"{runs[name][i]['std']:>13.3e}" for name in runs))
