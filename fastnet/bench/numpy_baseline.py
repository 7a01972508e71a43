"""The NumPy baseline: the seed article's recipe, written plainly in NumPy.

This is what a user would write without fastnet, in the style of the seed
text (Learn AI #38-#40): ``z = x @ W``, the seed's ``batch_norm`` function,
``np.maximum(0, z)``, the seed's binomial ``dropout``, softmax
cross-entropy, and SGD with PyTorch-style momentum::

    buf = momentum * buf + g
    p  -= lr * buf

Everything stays float32: the one place where the seed's code would silently
promote to float64 (the binomial mask divided by ``1 - rate``) is cast back
to the activations' dtype.  The gradient with respect to the network input is
not computed (nobody needs it, and fastnet and PyTorch skip it too).

No thread settings are touched: matrix products run on whatever BLAS NumPy
was built with, with the user's thread settings.
"""
import numpy as np

__all__ = [
    "NumpyMLP",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_forward_backward",
    "dropout",
    "dropout_fast",
    "linear_relu_forward_backward",
    "softmax_cross_entropy",
]


# ---- the seed's functions ------------------------------------------------------

def batch_norm(z, gamma, beta, eps=1e-5):
    """Batch normalization: normalize within the mini-batch,
    then scale and shift with learnable parameters.  (The seed's function.)"""
    mean = z.mean(axis=0)
    var = z.var(axis=0)
    z_norm = (z - mean) / np.sqrt(var + eps)
    return gamma * z_norm + beta, mean, var


def batch_norm_backward(dout, z, gamma, mean, var, eps=1e-5):
    """The standard batch-norm backward (training mode, biased batch variance).

    Returns (dz, dgamma, dbeta)."""
    n = z.shape[0]
    inv_std = 1.0 / np.sqrt(var + eps)
    z_norm = (z - mean) * inv_std
    dgamma = (dout * z_norm).sum(axis=0)
    dbeta = dout.sum(axis=0)
    dz_norm = dout * gamma
    dz = (inv_std / n) * (n * dz_norm - dz_norm.sum(axis=0)
                          - z_norm * (dz_norm * z_norm).sum(axis=0))
    return dz, dgamma, dbeta


def dropout(a, rate=0.5, training=True, random_state=np.random):
    """Inverted dropout, the seed's way: a binomial mask scaled by 1 / (1 - rate).

    Returns (out, mask); ``mask`` already holds the 1 / (1 - rate) scale, so
    the backward is ``dout * mask``.  The mask is cast to ``a.dtype`` (the
    seed's expression is float64)."""
    if not training or rate == 0:
        return a, None
    mask = (random_state.binomial(1, 1 - rate, a.shape) / (1 - rate)).astype(a.dtype)
    return a * mask, mask


def dropout_fast(a, rate, rng):
    """The faster idiom: ``rng.random(shape) < keep`` with a NumPy Generator.

    Returns (out, mask) with a bool mask (True = kept)."""
    keep = 1.0 - rate
    mask = rng.random(a.shape, dtype=np.float32) < keep
    return a * mask / keep, mask


def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy of int labels and its gradient w.r.t. the logits."""
    n = logits.shape[0]
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1, keepdims=True)
    probs = exp / sum_exp
    rows = np.arange(n)
    loss = np.mean(np.log(sum_exp[:, 0]) - shifted[rows, y])
    dlogits = probs
    dlogits[rows, y] -= 1
    dlogits /= n
    return float(loss), dlogits


# ---- kernel baselines (issue 2) -----------------------------------------------------

def linear_relu_forward_backward(x, W, b, dout):
    """Dense layer with ReLU, forward then backward.  Returns (out, dx, dW, db)."""
    z = x @ W + b
    out = np.maximum(z, 0)
    dz = dout * (out > 0)
    dW = x.T @ dz
    db = dz.sum(axis=0)
    dx = dz @ W.T
    return out, dx, dW, db


def batch_norm_forward_backward(x, gamma, beta, dout, eps=1e-5):
    """The seed's batch_norm, then the standard backward.  Returns (out, dx, dgamma, dbeta)."""
    out, mean, var = batch_norm(x, gamma, beta, eps)
    dx, dgamma, dbeta = batch_norm_backward(dout, x, gamma, mean, var, eps)
    return out, dx, dgamma, dbeta


# ---- the network ----------------------------------------------------------------------

class NumpyMLP:
    """(Linear(no bias) -> BatchNorm -> ReLU -> Dropout) x hidden, then Linear(+bias).

    Parameters are He-initialised float32 arrays; ``train_epoch`` runs one
    epoch of shuffled mini-batch SGD with momentum.  The recipe matches
    ``fastnet.MLP(sizes, dropout=rate).fit(..., optimizer=SGD(lr, momentum))``.
    """

    def __init__(self, layer_sizes, dropout=0.3, seed=0, dtype=np.float32, eps=1e-5,
                 bn_momentum=0.1):
        self.layer_sizes = list(layer_sizes)
        self.rate = dropout
        self.eps = eps
        self.bn_momentum = bn_momentum
        self.dtype = np.dtype(dtype)
        self.random_state = np.random.RandomState(seed)
        n_layers = len(self.layer_sizes) - 1
        self.W, self.gamma, self.beta = [], [], []
        self.running_mean, self.running_var = [], []
        for l in range(n_layers):
            fan_in, fan_out = self.layer_sizes[l], self.layer_sizes[l + 1]
            W = self.random_state.randn(fan_in, fan_out) * np.sqrt(2.0 / fan_in)
            self.W.append(W.astype(self.dtype))
            if l < n_layers - 1:
                self.gamma.append(np.ones(fan_out, dtype=self.dtype))
                self.beta.append(np.zeros(fan_out, dtype=self.dtype))
                self.running_mean.append(np.zeros(fan_out, dtype=self.dtype))
                self.running_var.append(np.ones(fan_out, dtype=self.dtype))
        self.b = np.zeros(self.layer_sizes[-1], dtype=self.dtype)
        self.velocity = [np.zeros_like(p) for p in self.parameters()]

    def parameters(self):
        """W of every layer, then gamma and beta of every hidden layer, then b."""
        return self.W + self.gamma + self.beta + [self.b]

    def forward_backward(self, x, y):
        """Loss and gradients of one training batch (in the order of parameters())."""
        n_hidden = len(self.W) - 1
        cache = []
        h = x
        for l in range(n_hidden):
            z = h @ self.W[l]
            z_bn, mean, var = batch_norm(z, self.gamma[l], self.beta[l], self.eps)
            self._update_running(l, mean, var, z.shape[0])
            a = np.maximum(0, z_bn)
            a, mask = dropout(a, self.rate, random_state=self.random_state)
            cache.append((h, z, mean, var, z_bn, mask))
            h = a
        logits = h @ self.W[-1] + self.b
        loss, dlogits = softmax_cross_entropy(logits, y)

        dW = [None] * len(self.W)
        dgamma = [None] * n_hidden
        dbeta = [None] * n_hidden
        dW[-1] = h.T @ dlogits
        db = dlogits.sum(axis=0)
        dh = dlogits @ self.W[-1].T
        for l in reversed(range(n_hidden)):
            h_in, z, mean, var, z_bn, mask = cache[l]
            if mask is not None:
                dh = dh * mask
            dh = dh * (z_bn > 0)
            dz, dgamma[l], dbeta[l] = batch_norm_backward(dh, z, self.gamma[l], mean, var,
                                                          self.eps)
            dW[l] = h_in.T @ dz
            if l > 0:                     # no gradient w.r.t. the network input
                dh = dz @ self.W[l].T
        return loss, dW + dgamma + dbeta + [db]

    def _update_running(self, l, mean, var, n):
        m = self.bn_momentum
        self.running_mean[l] *= 1 - m
        self.running_mean[l] += m * mean
        self.running_var[l] *= 1 - m
        self.running_var[l] += m * var * (n / (n - 1))

    def sgd_step(self, grads, lr, momentum):
        """PyTorch-style momentum: buf = momentum * buf + g; p -= lr * buf."""
        for p, g, v in zip(self.parameters(), grads, self.velocity):
            v *= momentum
            v += g
            p -= lr * v

    def train_epoch(self, X, y, batch_size=64, lr=0.01, momentum=0.9):
        """One epoch of shuffled mini-batches; returns the mean training loss."""
        n = X.shape[0]
        order = self.random_state.permutation(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:              # batch norm needs 2 rows (fastnet skips it too)
                continue
            loss, grads = self.forward_backward(X[idx], y[idx])
            self.sgd_step(grads, lr, momentum)
            total += loss * len(idx)
        return total / n
