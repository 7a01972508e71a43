"""The seed's full modern recipe on the digits that ship with fastnet.

He init, batch norm, dropout 0.3, AdamW, linear warmup + cosine decay, early
stopping on a validation split (best weights restored), then the accuracy on
a held-out, stratified test set.  Runs in a few seconds:

    python examples/digits_recipe.py

FASTNET_EXAMPLE_EPOCHS=5 shortens the run (used by the tests).
"""
import os

import fastnet
from fastnet.callbacks import EarlyStopping
from fastnet.datasets import load_digits, train_test_split
from fastnet.schedules import WarmupCosine

EPOCHS = int(os.environ.get("FASTNET_EXAMPLE_EPOCHS", "100"))

X, y = load_digits()                                    # pixels / 16, labels 0..9
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)

model = fastnet.MLP([64, 256, 128, 10], batch_norm=True, dropout=0.3, init="he", seed=0)
history = model.fit(
    X_train, y_train,
    epochs=EPOCHS,
    batch_size=64,
    optimizer="adamw",
    schedule=WarmupCosine(3e-3, warmup_epochs=max(1, EPOCHS // 20), total_epochs=EPOCHS),
    validation_split=0.15,
    early_stopping=EarlyStopping(patience=15),
    verbose=0,
)

print(f"trained {history.epochs} epochs, best validation loss at epoch "
      f"{history.best_epoch + 1} (weights restored)")
print(f"test accuracy: {model.evaluate(X_test, y_test)['accuracy']:.4f}")
