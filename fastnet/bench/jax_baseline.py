"""The JAX baseline: the recipe as a JAX user writes a fast epoch.

The whole epoch is one jitted function: the shuffle
(``jax.random.permutation``), then ``lax.scan`` over the steps, each step
``jax.value_and_grad`` of (Linear(no bias) -> BatchNorm -> ReLU -> Dropout)
x hidden -> Linear(+bias) -> softmax cross-entropy, and
``optax.sgd(lr, momentum)`` (PyTorch-style momentum: ``trace = g +
momentum * trace; p -= lr * trace``).  Parameters and optimizer state are
donated to the call, so the epoch updates them without copies.  Batch-norm
running statistics are kept as PyTorch and fastnet keep them.

jax and optax are optional (``pip install 'fastnet[bench]'``);
``available()`` tells whether they import.  XLA's CPU thread pool is left
as JAX sets it up: no environment variable is set here.
"""
import math

import numpy as np

__all__ = ["JaxMLP", "available", "version"]

_modules = None


def _import_jax():
    global _modules
    if _modules is None:
        import jax
        import jax.numpy as jnp
        import optax
        _modules = jax, jnp, optax
    return _modules


def available():
    """True when jax, jaxlib and optax can be imported."""
    try:
        _import_jax()
    except ImportError:
        return False
    return True


def version():
    """"jax X (optax Y)", or None without them."""
    if not available():
        return None
    jax, _, optax = _import_jax()
    return f"{jax.__version__} (optax {optax.__version__})"


class JaxMLP:
    """The recipe in JAX: :meth:`train_epoch` runs one jitted ``lax.scan`` epoch.

    Parameters
    ----------
    layer_sizes : sequence of int
    dropout : float
    seed : int
        Seeds the initial weights and the epoch keys (shuffle, dropout).
    lr, momentum : float
        ``optax.sgd(lr, momentum=momentum)``.
    """

    def __init__(self, layer_sizes, dropout=0.3, seed=0, lr=0.01, momentum=0.9, eps=1e-5,
                 bn_momentum=0.1):
        jax, jnp, optax = _import_jax()
        self.layer_sizes = list(layer_sizes)
        self.rate = float(dropout)
        self.eps = eps
        self.bn_momentum = bn_momentum
        rng = np.random.default_rng(seed)
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        self.params = {
            "W": [jnp.asarray((rng.standard_normal((fi, fo)) * math.sqrt(2.0 / fi))
                              .astype(np.float32)) for fi, fo in pairs],
            "gamma": [jnp.ones(fo, jnp.float32) for _, fo in pairs[:-1]],
            "beta": [jnp.zeros(fo, jnp.float32) for _, fo in pairs[:-1]],
            "b": jnp.zeros(self.layer_sizes[-1], jnp.float32),
        }
        self.bn_state = {"mean": [jnp.zeros(fo, jnp.float32) for _, fo in pairs[:-1]],
                         "var": [jnp.ones(fo, jnp.float32) for _, fo in pairs[:-1]]}
        self.optimizer = optax.sgd(lr, momentum=momentum)
        self.opt_state = self.optimizer.init(self.params)
        self.key = jax.random.PRNGKey(seed)
        self._epochs = {}
        self._step = jax.jit(self._train_step)

    # ---- the model, as pure functions ----------------------------------------------

    def _loss(self, params, x, y, keep_masks):
        """Mean cross-entropy and the batch statistics; `keep_masks`: a bool
        array per hidden layer (True = kept), or None for no dropout."""
        jax, jnp, optax = _import_jax()
        h, stats = x, []
        keep = 1.0 - self.rate
        for l in range(len(params["W"]) - 1):
            z = h @ params["W"][l]
            mean = z.mean(axis=0)
            var = jnp.mean(jnp.square(z - mean), axis=0)
            z_norm = (z - mean) * jax.lax.rsqrt(var + self.eps)
            h = jax.nn.relu(params["gamma"][l] * z_norm + params["beta"][l])
            if keep_masks is not None:
                h = jnp.where(keep_masks[l], h * (1.0 / keep), 0.0)
            stats.append((mean, var))
        logits = h @ params["W"][-1] + params["b"]
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, stats

    def _masks(self, key, n):
        jax, _, _ = _import_jax()
        if self.rate == 0:
            return None
        keys = jax.random.split(key, len(self.layer_sizes) - 2)
        return [jax.random.bernoulli(k, 1.0 - self.rate, (n, f))
                for k, f in zip(keys, self.layer_sizes[1:-1])]

    def _train_step(self, params, opt_state, bn_state, x, y, keep_masks):
        """One SGD step: (params, opt_state, bn_state, loss)."""
        jax, _, optax = _import_jax()
        (loss, stats), grads = jax.value_and_grad(self._loss, has_aux=True)(
            params, x, y, keep_masks)
        updates, opt_state = self.optimizer.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        n, m = x.shape[0], self.bn_momentum
        bn_state = {
            "mean": [(1 - m) * rm + m * mean for rm, (mean, _) in zip(bn_state["mean"], stats)],
            "var": [(1 - m) * rv + (m * n / (n - 1)) * var
                    for rv, (_, var) in zip(bn_state["var"], stats)],
        }
        return params, opt_state, bn_state, loss

    def _epoch_fn(self, n, batch, shuffle):
        """The jitted epoch for n rows in batches of `batch` (n a multiple of it)."""
        jax, jnp, _ = _import_jax()
        steps = n // batch

        def epoch(params, opt_state, bn_state, key, X, y):
            key, perm_key, step_key = jax.random.split(key, 3)
            order = jax.random.permutation(perm_key, n) if shuffle else jnp.arange(n)
            xs = X[order].reshape(steps, batch, X.shape[1])
            ys = y[order].reshape(steps, batch)
            keys = jax.random.split(step_key, steps)

            def body(carry, batch_data):
                x, yb, k = batch_data
                params, opt_state, bn_state, loss = self._train_step(
                    *carry, x, yb, self._masks(k, batch))
                return (params, opt_state, bn_state), loss

            (params, opt_state, bn_state), losses = jax.lax.scan(
                body, (params, opt_state, bn_state), (xs, ys, keys))
            return params, opt_state, bn_state, key, jnp.mean(losses)

        return jax.jit(epoch, donate_argnums=(0, 1, 2, 3))

    # ---- the user's calls ---------------------------------------------------------

    def to_device(self, X, y):
        """(X, y) as JAX arrays (float32, int32), to pass to :meth:`train_epoch`."""
        _, jnp, _ = _import_jax()
        return jnp.asarray(X, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.int32)

    def train_epoch(self, X, y, batch_size=64, shuffle=True):
        """One epoch of (shuffled) mini-batches, finished before it returns.

        X, y: JAX arrays from :meth:`to_device` (NumPy arrays are converted
        on every call).  The number of rows must be a multiple of
        `batch_size`: ``lax.scan`` runs steps of one shape.  Returns the mean
        training loss."""
        n = X.shape[0]
        if n % batch_size:
            raise ValueError(f"the JAX epoch needs a row count that is a multiple of "
                             f"batch_size: {n} rows, batch_size {batch_size} (drop "
                             f"{n % batch_size} rows)")
        if isinstance(X, np.ndarray) or isinstance(y, np.ndarray):
            X, y = self.to_device(X, y)
        shape = (n, batch_size, bool(shuffle))
        fn = self._epochs.get(shape)
        if fn is None:
            fn = self._epochs[shape] = self._epoch_fn(*shape)
        self.params, self.opt_state, self.bn_state, self.key, loss = fn(
            self.params, self.opt_state, self.bn_state, self.key, X, y)
        return float(loss)                     # waits for the epoch

    def train_step(self, x, y, keep_masks=None):
        """One jitted step on the batch (x, y) with the given keep masks (bool, one
        per hidden layer; None: no dropout).  Returns the loss."""
        _, jnp, _ = _import_jax()
        masks = None if keep_masks is None else [jnp.asarray(m) for m in keep_masks]
        self.params, self.opt_state, self.bn_state, loss = self._step(
            self.params, self.opt_state, self.bn_state, jnp.asarray(x, jnp.float32),
            jnp.asarray(y, jnp.int32), masks)
        return float(loss)

    def get_weights(self):
        """NumPy copies in the order of ``fastnet.MLP.get_weights``."""
        out = []
        p, s = self.params, self.bn_state
        for l in range(len(p["W"]) - 1):
            out += [p["W"][l], p["gamma"][l], p["beta"][l], s["mean"][l], s["var"][l]]
        return [np.array(a) for a in out + [p["W"][-1], p["b"]]]

    def set_weights(self, weights):
        """Load arrays in fastnet's order (see :meth:`get_weights`); resets the
        optimizer state."""
        _, jnp, _ = _import_jax()
        w = [jnp.asarray(np.asarray(a, np.float32)) for a in weights]
        n_hidden = len(self.layer_sizes) - 2
        if len(w) != 5 * n_hidden + 2:
            raise ValueError(f"expected {5 * n_hidden + 2} arrays, got {len(w)}")
        self.params = {"W": [w[5 * l] for l in range(n_hidden)] + [w[-2]],
                       "gamma": [w[5 * l + 1] for l in range(n_hidden)],
                       "beta": [w[5 * l + 2] for l in range(n_hidden)],
                       "b": w[-1]}
        self.bn_state = {"mean": [w[5 * l + 3] for l in range(n_hidden)],
                         "var": [w[5 * l + 4] for l in range(n_hidden)]}
        self.opt_state = self.optimizer.init(self.params)
