"""The NumPy baselines: the recipe's training step as NumPy users write it.

Two implementations of the same step, (Linear(no bias) -> BatchNorm -> ReLU
-> Dropout) x hidden, then Linear(+bias), softmax cross-entropy and SGD with
PyTorch-style momentum (``buf = momentum * buf + g; p -= lr * buf``):

:class:`NumpyMLP` (the bench's "NumPy" column)
    the fastest step an idiomatic NumPy user writes: float32 throughout,
    parameters and gradients in one flat buffer each (so the momentum update
    is three in-place calls over all of them), every activation in a buffer
    allocated once and written with ``out=``, batch norm forward and
    backward as in-place passes over that buffer, and dropout masks from
    ``Generator.random(dtype=np.float32) < keep``.
:class:`ArticleNumpyMLP` (the "NumPy (article)" column)
    the article's functions as written (Learn AI #38-#40): ``z = x @ W``,
    its ``batch_norm``, ``np.maximum(0, z)``, its ``np.random.binomial``
    dropout and a new array for every intermediate.  The one place where
    the article's code silently promotes to float64 (the binomial mask
    divided by ``1 - rate``) is cast back to the activations' dtype.

Both compute the same step as ``fastnet.MLP(sizes, dropout=rate).fit(...,
optimizer=fastnet.optim.SGD(lr, momentum))``, including the batch-norm
running statistics (tested step for step).  The gradient with respect to the
network input is not computed (nobody needs it; fastnet and PyTorch skip it
too).  No thread settings are touched: matrix products run on whatever BLAS
NumPy was built with, with the user's thread settings.

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import numpy as np

__all__ = [
    "ArticleNumpyMLP",
    "NumpyMLP",
    "batch_norm",
    "batch_norm_backward",
    "batch_norm_backward_inplace",
    "batch_norm_forward_backward",
    "batch_norm_forward_backward_fast",
    "batch_norm_inplace",
    "dropout",
    "dropout_fast",
    "linear_relu_forward_backward",
    "softmax_cross_entropy",
    "softmax_cross_entropy_inplace",
]


# ---- the article's functions -----------------------------------------------------

def batch_norm(z, gamma, beta, eps=1e-5):
    """Batch normalization: normalize within the mini-batch,
    then scale and shift with learnable parameters.  (The article's function.)"""
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


def dropout(a, rate=0.5, training=True, random_state=np.random, keep_mask=None):
    """Inverted dropout, the article's way: a binomial mask scaled by 1 / (1 - rate).

    Returns (out, mask); ``mask`` already holds the 1 / (1 - rate) scale, so
    the backward is ``dout * mask``.  The mask is cast to ``a.dtype`` (the
    article's expression is float64).  ``keep_mask`` (bool, True = kept)
    replaces the random draw, so tests can give every implementation the
    same mask."""
    if not training or rate == 0:
        return a, None
    kept = random_state.binomial(1, 1 - rate, a.shape) if keep_mask is None else keep_mask
    mask = (kept / (1 - rate)).astype(a.dtype)
    return a * mask, mask


# ---- the fast idioms ---------------------------------------------------------------

def dropout_fast(a, rate, rng):
    """The fast mask idiom: ``rng.random(shape, dtype=np.float32) < keep``.

    Returns (out, mask) with a bool mask (True = kept)."""
    keep = 1.0 - rate
    mask = rng.random(a.shape, dtype=np.float32) < keep
    return a * mask / keep, mask


def batch_norm_inplace(z, gamma, beta, out, eps=1e-5):
    """Batch norm written without needless temporaries.

    Normalises `z` in place (afterwards it holds x-hat, which the backward
    needs) and writes ``gamma * xhat + beta`` into `out`.  Returns (mean,
    var, inv_std), per feature (var is the biased batch variance)."""
    n = z.shape[0]
    mean = z.sum(axis=0) * (1.0 / n)
    z -= mean
    var = np.einsum("ij,ij->j", z, z) * (1.0 / n)
    inv_std = 1.0 / np.sqrt(var + eps)
    z *= inv_std
    np.multiply(z, gamma, out=out)
    out += beta
    return mean, var, inv_std


def batch_norm_backward_inplace(dout, xhat, gamma, inv_std, dgamma, dbeta, scratch):
    """The batch-norm backward in place: `dout` becomes dz.

    Uses ``sum(dout * gamma) = gamma * dbeta`` and ``sum(dout * gamma * xhat)
    = gamma * dgamma`` to write dz as ``gamma * inv_std * (dout - dbeta / n -
    xhat * dgamma / n)``.  `dgamma`, `dbeta` are written; `scratch` is an
    array of dout's shape."""
    n = dout.shape[0]
    np.sum(dout, axis=0, out=dbeta)
    np.einsum("ij,ij->j", dout, xhat, out=dgamma)
    np.multiply(xhat, dgamma * (1.0 / n), out=scratch)
    scratch += dbeta * (1.0 / n)
    dout -= scratch
    dout *= gamma * inv_std
    return dout


def softmax_cross_entropy_inplace(logits, y):
    """Mean softmax cross-entropy of int labels; `logits` becomes its gradient.

    Returns the loss as a Python float."""
    n = logits.shape[0]
    rows = np.arange(n)
    logits -= logits.max(axis=1, keepdims=True)
    picked = logits[rows, y]
    np.exp(logits, out=logits)
    sum_exp = logits.sum(axis=1, keepdims=True)
    loss = float(np.mean(np.log(sum_exp[:, 0]) - picked))
    logits /= sum_exp
    logits[rows, y] -= 1
    logits *= 1.0 / n
    return loss


# ---- kernel baselines (issue 2) -----------------------------------------------------

def softmax_cross_entropy(logits, y):
    """Mean softmax cross-entropy of int labels and its gradient w.r.t. the logits,
    written plainly (new arrays; `logits` unchanged)."""
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
    """The article's batch_norm, then the standard backward.  Returns (out, dx, dgamma, dbeta)."""
    out, mean, var = batch_norm(x, gamma, beta, eps)
    dx, dgamma, dbeta = batch_norm_backward(dout, x, gamma, mean, var, eps)
    return out, dx, dgamma, dbeta


def batch_norm_forward_backward_fast(x, gamma, beta, dout, eps=1e-5):
    """:func:`batch_norm_inplace` then :func:`batch_norm_backward_inplace` on copies
    of `x` and `dout` (the copies stand for the buffers a training step owns).
    Returns (out, dx, dgamma, dbeta)."""
    xhat, dx = x.copy(), dout.copy()
    out, scratch = np.empty_like(x), np.empty_like(x)
    _, _, inv_std = batch_norm_inplace(xhat, gamma, beta, out, eps)
    dgamma, dbeta = np.empty_like(gamma), np.empty_like(gamma)
    batch_norm_backward_inplace(dx, xhat, gamma, inv_std, dgamma, dbeta, scratch)
    return out, dx, dgamma, dbeta


# ---- the networks ----------------------------------------------------------------------

class _NumpyNet:
    """What both NumPy networks share: the layout, He initialisation, weights in
    fastnet's order, the batch-norm running statistics and the epoch loop.

    The parameters live in one flat array (``params``) with a view per
    parameter; ``parameters()`` lists the views: W of every layer, then gamma
    and beta of every hidden layer, then b.
    """

    def __init__(self, layer_sizes, dropout=0.3, seed=0, dtype=np.float32, eps=1e-5,
                 bn_momentum=0.1):
        self.layer_sizes = list(layer_sizes)
        self.rate = float(dropout)
        self.eps = eps
        self.bn_momentum = bn_momentum
        self.dtype = np.dtype(dtype)
        init_rng = np.random.RandomState(seed)
        pairs = list(zip(self.layer_sizes[:-1], self.layer_sizes[1:]))
        hidden = [fo for _, fo in pairs[:-1]]
        shapes = [(fi, fo) for fi, fo in pairs] + [(f,) for f in hidden] * 2 \
            + [(self.layer_sizes[-1],)]
        self.params = np.zeros(sum(int(np.prod(s)) for s in shapes), self.dtype)
        self.grads = np.zeros_like(self.params)
        self.velocity = np.zeros_like(self.params)
        self._param_views = _views(self.params, shapes)
        self._grad_views = _views(self.grads, shapes)
        self._velocity_views = _views(self.velocity, shapes)
        n_layers = len(pairs)
        self.W = self._param_views[:n_layers]
        self.gamma = self._param_views[n_layers:n_layers + len(hidden)]
        self.beta = self._param_views[n_layers + len(hidden):-1]
        self.b = self._param_views[-1]
        for W, (fan_in, _) in zip(self.W, pairs):
            W[...] = init_rng.randn(*W.shape) * np.sqrt(2.0 / fan_in)
        for gamma in self.gamma:
            gamma[...] = 1
        self.running_mean = [np.zeros(f, self.dtype) for f in hidden]
        self.running_var = [np.ones(f, self.dtype) for f in hidden]

    def parameters(self):
        """Views of W of every layer, then gamma and beta of every hidden layer, then b."""
        return list(self._param_views)

    def get_weights(self):
        """Copies in the order of ``fastnet.MLP.get_weights``: per hidden layer W,
        gamma, beta, running_mean, running_var; then W and b of the last layer."""
        out = []
        for l in range(len(self.W) - 1):
            out += [self.W[l], self.gamma[l], self.beta[l], self.running_mean[l],
                    self.running_var[l]]
        return [a.copy() for a in out + [self.W[-1], self.b]]

    def set_weights(self, weights):
        """Load arrays in the order of :meth:`get_weights` (fastnet's order)."""
        weights = list(weights)
        targets = []
        for l in range(len(self.W) - 1):
            targets += [self.W[l], self.gamma[l], self.beta[l], self.running_mean[l],
                        self.running_var[l]]
        targets += [self.W[-1], self.b]
        if len(weights) != len(targets):
            raise ValueError(f"expected {len(targets)} arrays, got {len(weights)}")
        for target, w in zip(targets, weights):
            target[...] = np.asarray(w).reshape(target.shape)

    def _update_running(self, l, mean, var, n):
        """PyTorch's (and fastnet's) running statistics, unbiased running variance."""
        m = self.bn_momentum
        self.running_mean[l] *= 1 - m
        self.running_mean[l] += m * mean
        self.running_var[l] *= 1 - m
        self.running_var[l] += (m * n / (n - 1)) * var

    def train_step(self, x, y, lr, momentum, masks=None):
        """One SGD step on the batch (x, y); returns its mean loss.  `masks`, a
        bool keep mask (True = kept) per hidden layer, replaces the random draw."""
        raise NotImplementedError

    def train_epoch(self, X, y, batch_size=64, lr=0.01, momentum=0.9, shuffle=True):
        """One epoch of (shuffled) mini-batches; returns the mean training loss."""
        n = X.shape[0]
        order = self._shuffle_rng.permutation(n) if shuffle else np.arange(n)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if len(idx) < 2:              # batch norm needs 2 rows (fastnet skips it too)
                continue
            total += self._train_rows(X, y, idx, lr, momentum) * len(idx)
        return total / n

    def _train_rows(self, X, y, idx, lr, momentum):
        return self.train_step(X[idx], y[idx], lr, momentum)


def _views(flat, shapes):
    views, offset = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        views.append(flat[offset:offset + size].reshape(shape))
        offset += size
    return views


class NumpyMLP(_NumpyNet):
    """The recipe's step as the fastest idiomatic NumPy: the bench's "NumPy" column.

    Every activation, mask and gradient of a batch lives in a buffer
    allocated for the largest batch and reused (``out=`` everywhere); the
    batch norm normalises its pre-activation buffer in place
    (:func:`batch_norm_inplace`) and its backward overwrites the incoming
    gradient (:func:`batch_norm_backward_inplace`); the dropout mask is
    ``Generator.random(dtype=np.float32) < keep`` into a preallocated bool
    buffer; the loss is softmax cross-entropy in float32, in place; the
    momentum update runs over the flat parameter buffer::

        buf *= momentum; buf += g; p -= lr * buf      (lr * buf into a scratch buffer)

    Parameters
    ----------
    layer_sizes : sequence of int
    dropout : float
        Dropout rate after every hidden ReLU.
    seed : int
        Seeds the initial weights (as :class:`ArticleNumpyMLP`) and the
        Generator of shuffling and dropout masks.
    dtype : numpy dtype
        float32 (the bench) or float64 (gradient checks).
    """

    def __init__(self, layer_sizes, dropout=0.3, seed=0, dtype=np.float32, eps=1e-5,
                 bn_momentum=0.1):
        super().__init__(layer_sizes, dropout, seed, dtype, eps, bn_momentum)
        self.rng = self._shuffle_rng = np.random.default_rng(seed)
        self._scratch = np.empty_like(self.params)
        self._capacity = 0

    def _allocate(self, batch):
        """The per-batch buffers, for batches of up to `batch` rows."""
        dt, sizes = self.dtype, self.layer_sizes

        def rows(width, dtype=dt):
            return np.empty((batch, width), dtype)

        hidden = sizes[1:-1]
        self._x = rows(sizes[0])
        self._xhat = [rows(f) for f in hidden]        # pre-activation, normalised in place
        self._act = [rows(f) for f in hidden]         # after batch norm, ReLU and dropout
        self._grad_act = [rows(f) for f in hidden]    # d loss / d act, then dz in place
        self._tmp = [rows(f) for f in hidden]         # backward scratch
        self._uniform = [rows(f, np.float32) for f in hidden]
        self._kept = [rows(f, bool) for f in hidden]
        self._logits = rows(sizes[-1])
        self._capacity = batch

    def forward_backward(self, x, y, masks=None):
        """Loss and gradients of one training batch.

        Returns (loss, grads): grads are views into the flat gradient buffer
        ``self.grads``, in the order of :meth:`parameters`, overwritten by
        the next call.  Updates the running statistics."""
        n = x.shape[0]
        if n > self._capacity:
            self._allocate(n)
        n_hidden = len(self.W) - 1
        keep = 1.0 - self.rate
        inv_std = [None] * n_hidden
        h = x
        for l in range(n_hidden):
            xhat, act = self._xhat[l][:n], self._act[l][:n]
            np.matmul(h, self.W[l], out=xhat)
            mean, var, inv_std[l] = batch_norm_inplace(xhat, self.gamma[l], self.beta[l], act,
                                                       self.eps)
            self._update_running(l, mean, var, n)
            np.maximum(act, 0, out=act)
            if self.rate > 0:
                kept = self._kept[l][:n]
                if masks is None:
                    uniform = self._uniform[l][:n]
                    self.rng.random(out=uniform, dtype=np.float32)
                    np.less(uniform, keep, out=kept)
                else:
                    np.copyto(kept, masks[l])
                act *= kept
                act *= 1.0 / keep
            h = act
        logits = self._logits[:n]
        np.matmul(h, self.W[-1], out=logits)
        logits += self.b
        loss = softmax_cross_entropy_inplace(logits, y)      # logits now hold d loss / d logits

        g = self._grad_views
        n_layers = len(self.W)
        dgamma, dbeta = g[n_layers:n_layers + n_hidden], g[n_layers + n_hidden:-1]
        np.matmul(h.T, logits, out=g[n_layers - 1])
        np.sum(logits, axis=0, out=g[-1])
        grad_out = logits
        for l in reversed(range(n_hidden)):
            dh, act = self._grad_act[l][:n], self._act[l][:n]
            np.matmul(grad_out, self.W[l + 1].T, out=dh)
            # act > 0 exactly where the ReLU passed and dropout kept: one mask for both
            alive = self._kept[l][:n]
            np.greater(act, 0, out=alive)
            dh *= alive
            if self.rate > 0:
                dh *= 1.0 / keep
            batch_norm_backward_inplace(dh, self._xhat[l][:n], self.gamma[l], inv_std[l],
                                        dgamma[l], dbeta[l], self._tmp[l][:n])
            np.matmul(x.T if l == 0 else self._act[l - 1][:n].T, dh, out=g[l])
            grad_out = dh
        return loss, list(g)

    def sgd_step(self, lr, momentum):
        """PyTorch-style momentum over the flat buffers: buf = momentum * buf + g;
        p -= lr * buf."""
        v = self.velocity
        v *= momentum
        v += self.grads
        np.multiply(v, lr, out=self._scratch)
        self.params -= self._scratch

    def train_step(self, x, y, lr, momentum, masks=None):
        loss, _ = self.forward_backward(x, y, masks)
        self.sgd_step(lr, momentum)
        return loss

    def _train_rows(self, X, y, idx, lr, momentum):
        if len(idx) > self._capacity:
            self._allocate(len(idx))
        x = self._x[:len(idx)]
        np.take(X, idx, axis=0, out=x)            # the batch gathered into its buffer
        return self.train_step(x, y[idx], lr, momentum)


class ArticleNumpyMLP(_NumpyNet):
    """The recipe's step written with the article's functions: the "NumPy (article)"
    column.

    ``z = h @ W``, :func:`batch_norm`, ``np.maximum(0, z)``, :func:`dropout`
    (``np.random.binomial`` masks from a seeded ``RandomState``), softmax
    cross-entropy, and a per-parameter momentum update; every intermediate is
    a new array.
    """

    def __init__(self, layer_sizes, dropout=0.3, seed=0, dtype=np.float32, eps=1e-5,
                 bn_momentum=0.1):
        super().__init__(layer_sizes, dropout, seed, dtype, eps, bn_momentum)
        self.random_state = self._shuffle_rng = np.random.RandomState(seed)

    def forward_backward(self, x, y, masks=None):
        """Loss and gradients of one training batch (new arrays, in the order of
        parameters()).  Updates the running statistics."""
        n_hidden = len(self.W) - 1
        cache = []
        h = x
        for l in range(n_hidden):
            z = h @ self.W[l]
            z_bn, mean, var = batch_norm(z, self.gamma[l], self.beta[l], self.eps)
            self._update_running(l, mean, var, z.shape[0])
            a = np.maximum(0, z_bn)
            a, mask = dropout(a, self.rate, random_state=self.random_state,
                              keep_mask=None if masks is None else masks[l])
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

    def sgd_step(self, grads, lr, momentum):
        """PyTorch-style momentum, parameter by parameter: buf = momentum * buf + g;
        p -= lr * buf."""
        for p, g, v in zip(self._param_views, grads, self._velocity_views):
            v *= momentum
            v += g
            p -= lr * v

    def train_step(self, x, y, lr, momentum, masks=None):
        loss, grads = self.forward_backward(x, y, masks)
        self.sgd_step(grads, lr, momentum)
        return loss
