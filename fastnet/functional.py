"""Native kernels of fastnet, one function per operation of an MLP.

Each function validates its arguments (dtype, shape, layout), then runs one
C kernel without the GIL on fastnet's thread team (see
:func:`fastnet.set_num_threads`).  float32 and float64 are supported; the
output dtype is the input dtype.  Inputs are never modified, except the
running buffers of :func:`batch_norm`, which are documented as updated in
place.  NaN in gives NaN out.
"""
import numpy as np

from fastnet import _kernels, _network
from fastnet._validation import (
    c_array,
    float_array,
    label_array,
    real_number,
    same_shape,
    seed_value,
    vector_for,
)

__all__ = ["linear_forward", "linear_backward", "batch_norm", "batch_norm_backward",
           "dropout", "dropout_backward", "softmax_cross_entropy", "softmax", "mse_loss",
           "huber_loss", "binary_cross_entropy_with_logits"]

# None is the identity; the names are the engine's (fastnet._network.ACTIVATIONS)
_ACTIVATIONS = {None: _network.ACTIVATIONS["identity"], **_network.ACTIVATIONS}
# activations whose derivative is taken from their input (the pre-activation)
_NEEDS_PRE = ("gelu", "silu")


def _activation_code(activation):
    try:
        return _ACTIVATIONS[activation]
    except (KeyError, TypeError):
        names = ", ".join(repr(name) for name in _ACTIVATIONS)
        raise ValueError(f"activation must be one of {names}, got {activation!r}") from None


def _negative_slope(value):
    return real_number(value, "negative_slope", low=0.0)


def _matmul_shapes(x, x_name, w, w_name):
    if x.shape[1] != w.shape[0]:
        raise ValueError(f"{x_name} has shape {x.shape} and {w_name} has shape {w.shape}: "
                         f"{x_name}.shape[1] must equal {w_name}.shape[0]")


def linear_forward(x, W, b=None, activation=None, *, negative_slope=0.01, return_pre=False):
    """Dense layer ``out = activation(x @ W + b)``.

    The bias add and the activation are applied to each tile of the product
    while it is in registers (no second pass over ``out``).

    Parameters
    ----------
    x : array (N, fan_in)
    W : array (fan_in, fan_out)
    b : array (fan_out,), optional
    activation : {None, "identity", "relu", "leaky_relu", "tanh", "sigmoid", "gelu", "silu"}
        None and "identity": no activation.  "leaky_relu" is
        ``max(z, 0) + negative_slope * min(z, 0)``, "gelu" the exact (erf)
        form ``z * Phi(z)``, "silu" ``z * sigmoid(z)``, as PyTorch's.
    negative_slope : float >= 0
        The slope of "leaky_relu" below 0 (PyTorch's default, 0.01).
    return_pre : bool
        Also return the pre-activation ``x @ W + b`` (from the same
        epilogue), which :func:`linear_backward` needs for "gelu" and "silu".

    Returns
    -------
    out : array (N, fan_out)
    pre : array (N, fan_out)
        Only with ``return_pre=True``.

    Raises
    ------
    ValueError
        An unknown activation, a negative slope, or shapes that do not chain.
    """
    act = _activation_code(activation)
    slope = _negative_slope(negative_slope)
    x = float_array(x, "x", ndim=2)
    W = float_array(W, "W", ndim=2, dtype=x.dtype)
    _matmul_shapes(x, "x", W, "W")
    if b is not None:
        b = float_array(b, "b", ndim=1, dtype=x.dtype)
        vector_for(b, "b", W.shape[1], W.shape, "W")
    out, pre = _kernels.linear_forward(x, W, b, act, slope, bool(return_pre))
    return (out, pre) if return_pre else out


def linear_backward(dout, x, W, out=None, activation=None, *, pre=None, negative_slope=0.01):
    """Gradients of :func:`linear_forward`.

    The activation's derivative is applied to ``dout`` in the same pass that
    sums ``db``.  It is taken from the forward output ``out`` (ReLU:
    ``out > 0``; leaky ReLU: 1 or ``negative_slope``; tanh, sigmoid), or,
    for "gelu" and "silu", whose derivative the output does not determine,
    from the pre-activation ``pre`` (``linear_forward(..., return_pre=True)``).

    Parameters
    ----------
    dout : array (N, fan_out)
    x, W : the forward's inputs
    out : array (N, fan_out), optional
        The forward output; needed by "relu", "leaky_relu", "tanh", "sigmoid".
    activation : as in :func:`linear_forward`
    pre : array (N, fan_out), optional
        The pre-activation; needed by "gelu" and "silu".
    negative_slope : float >= 0
        As in :func:`linear_forward`.

    Returns
    -------
    dx : array (N, fan_in)
        ``dz @ W.T``, with ``dz = dout * activation'`` (or ``dout``).
    dW : array (fan_in, fan_out)
        ``x.T @ dz``.
    db : array (fan_out,)
        Column sums of ``dz``.

    Raises
    ------
    ValueError
        An unknown activation, a missing ``out`` or ``pre``, or shapes that
        do not chain.
    """
    act = _activation_code(activation)
    slope = _negative_slope(negative_slope)
    x = float_array(x, "x", ndim=2)
    W = float_array(W, "W", ndim=2, dtype=x.dtype)
    dout = float_array(dout, "dout", ndim=2, dtype=x.dtype)
    _matmul_shapes(x, "x", W, "W")
    if dout.shape != (x.shape[0], W.shape[1]):
        raise ValueError(f"dout has shape {dout.shape} but x has shape {x.shape} and W has "
                         f"shape {W.shape}, so x @ W has shape {(x.shape[0], W.shape[1])}")
    given = {"out": out, "pre": pre}
    used = {"out": None, "pre": None}      # what the activation's derivative reads
    if act != _ACTIVATIONS[None]:
        name = "pre" if activation in _NEEDS_PRE else "out"
        if given[name] is None:
            what = ("the pre-activation (linear_forward(..., return_pre=True))"
                    if name == "pre" else "the forward output")
            raise ValueError(f"activation={activation!r} needs {name}, {what}")
        used[name] = float_array(given[name], name, ndim=2, dtype=x.dtype)
        same_shape(used[name], name, dout, "dout")
    return _kernels.linear_backward(dout, x, W, used["out"], used["pre"], act, slope)


def batch_norm(x, gamma, beta, eps=1e-5, *, training=True, running_mean=None,
               running_var=None, momentum=0.1):
    """Batch normalisation ``out = gamma * (x - mean) / sqrt(var + eps) + beta``.

    In training, ``mean`` and ``var`` are the batch's, with the biased
    variance (Ioffe & Szegedy 2015).  Running buffers, when given, are
    updated in place the PyTorch way::

        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var  = (1 - momentum) * running_var  + momentum * var * N / (N - 1)

    With ``training=False`` the running buffers are required and used.

    Returns
    -------
    out : array (N, F)
    mean, var : arrays (F,)
        The statistics used (batch statistics in training, copies of the
        running buffers otherwise).

    Raises
    ------
    ValueError
        Training on a batch of one row (its variance is undefined), shapes
        that do not match, momentum outside [0, 1], negative eps.
    """
    x = float_array(x, "x", ndim=2)
    gamma = float_array(gamma, "gamma", ndim=1, dtype=x.dtype)
    beta = float_array(beta, "beta", ndim=1, dtype=x.dtype)
    vector_for(gamma, "gamma", x.shape[1], x.shape, "x")
    vector_for(beta, "beta", x.shape[1], x.shape, "x")
    eps = real_number(eps, "eps", low=0.0)
    momentum = real_number(momentum, "momentum", low=0.0, high=1.0)
    training = bool(training)
    if training and x.shape[0] < 2:
        raise ValueError(f"batch_norm in training needs at least 2 rows, x has shape "
                         f"{x.shape} (the batch variance of one row is undefined)")
    if (running_mean is None) != (running_var is None):
        raise ValueError("pass both running_mean and running_var, or neither")
    if running_mean is not None:
        running_mean = _running_buffer(running_mean, "running_mean", x)
        running_var = _running_buffer(running_var, "running_var", x)
    elif not training:
        raise ValueError("batch_norm with training=False needs running_mean and running_var")
    return _kernels.batch_norm(x, gamma, beta, eps, training, running_mean, running_var,
                               momentum)


def _running_buffer(buf, name, x):
    if not isinstance(buf, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (it is updated in place), "
                        f"got {type(buf).__name__}")
    if buf.dtype != x.dtype:
        raise TypeError(f"{name} has dtype {buf.dtype} but x has dtype {x.dtype}")
    vector_for(buf, name, x.shape[1], x.shape, "x")
    if not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError(f"{name} must be a writeable contiguous array (updated in place)")
    return buf


def batch_norm_backward(dout, x, gamma, mean, var, eps=1e-5):
    """Gradients of training-mode :func:`batch_norm`.

    With ``xhat = (x - mean) / sqrt(var + eps)``::

        dbeta  = sum(dout, axis=0)
        dgamma = sum(dout * xhat, axis=0)
        dx     = gamma / sqrt(var + eps) * (dout - mean(dout) - xhat * mean(dout * xhat))

    computed in two passes over each block of features.

    Returns
    -------
    dx : array (N, F)
    dgamma, dbeta : arrays (F,)
    """
    x = float_array(x, "x", ndim=2)
    dout = float_array(dout, "dout", ndim=2, dtype=x.dtype)
    same_shape(dout, "dout", x, "x")
    gamma = float_array(gamma, "gamma", ndim=1, dtype=x.dtype)
    mean = float_array(mean, "mean", ndim=1, dtype=x.dtype)
    var = float_array(var, "var", ndim=1, dtype=x.dtype)
    for vec, name in ((gamma, "gamma"), (mean, "mean"), (var, "var")):
        vector_for(vec, name, x.shape[1], x.shape, "x")
    eps = real_number(eps, "eps", low=0.0)
    return _kernels.batch_norm_backward(dout, x, gamma, mean, var, eps)


def _rate(rate):
    return real_number(rate, "rate", low=0.0, high=1.0, high_open=True)


def dropout(x, rate, *, training=True, seed=None, rng=None):
    """Inverted dropout ``out = x * mask / (1 - rate)`` (Srivastava et al. 2014).

    The mask comes from a counter-based generator keyed by the seed: element
    (i, j) of ``x`` viewed as an (n, f) array (leading axes flattened into
    rows; a 1-D ``x`` is one row) is kept when the 32-bit hash of
    ``(seed, i * f + j)`` documented in ``csrc/fn_rng.h`` is below
    ``floor((1 - rate) * 2**32)``.  The same seed gives the same mask bit for
    bit, whatever the thread count.

    Parameters
    ----------
    x : array, any shape
    rate : float in [0, 1)
        Probability of dropping an element.
    training : bool
        With False (or ``rate == 0``) ``x`` is returned unchanged with an
        all-ones mask.
    seed : int, optional / rng : numpy.random.Generator, optional
        Source of the mask; without either a fresh seed is drawn.

    Returns
    -------
    out : array like x
    mask : bool array like x (True = kept)
    """
    rate = _rate(rate)
    x = float_array(x, "x")
    key = seed_value(seed, rng)
    if not training or rate == 0.0:
        return x, np.ones(x.shape, dtype=bool)
    rows = x.reshape(-1, x.shape[-1]) if x.ndim >= 2 else x.reshape(1, -1)
    out, mask = _kernels.dropout(rows, rate, key)
    return out.reshape(x.shape), mask.view(np.bool_).reshape(x.shape)


def dropout_backward(dout, mask, rate):
    """Gradient of :func:`dropout`: ``dx = dout * mask / (1 - rate)``."""
    rate = _rate(rate)
    dout = float_array(dout, "dout")
    mask = mask if type(mask) is np.ndarray else np.asarray(mask)
    if mask.dtype not in (np.bool_, np.uint8):
        raise TypeError(f"mask must be a bool or uint8 array, got dtype {mask.dtype}")
    same_shape(mask, "mask", dout, "dout")
    # no shortcut for rate == 0: dx = dout * mask still applies the mask
    mask = c_array(mask).view(np.uint8)
    return _kernels.dropout_backward(dout.reshape(-1), mask.reshape(-1), rate).reshape(
        dout.shape)


def softmax_cross_entropy(logits, y, *, sample_weight=None):
    """Mean softmax cross-entropy and its gradient, in one pass per row.

    ``loss = mean_i(logsumexp(logits_i) - logits_i[y_i])``, computed with
    the row maximum subtracted (stable for any finite logits), and
    ``dlogits = (softmax(logits) - onehot(y)) / N``.  With ``sample_weight``
    the mean is weighted: ``sum w_i l_i / sum w_i``.

    Parameters
    ----------
    logits : array (N, C)
    y : int array (N,), labels in [0, C)

    Returns
    -------
    loss : float
    dlogits : array (N, C)
    """
    logits = float_array(logits, "logits", ndim=2)
    y = label_array(y, "y", logits.shape[0], logits.shape[1], "logits", logits.shape)
    w = _sample_weight(sample_weight, logits, "logits")
    loss, dlogits, _ = _kernels.softmax_cross_entropy(logits, y, w, True)
    return loss, dlogits


def _sample_weight(sample_weight, ref, ref_name):
    if sample_weight is None:
        return None
    w = float_array(sample_weight, "sample_weight", ndim=1, dtype=ref.dtype)
    if w.shape[0] != ref.shape[0]:
        raise ValueError(f"sample_weight has shape {w.shape} but {ref_name} has shape "
                         f"{ref.shape}; sample_weight must have shape ({ref.shape[0]},)")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or not np.any(w > 0):
        raise ValueError("sample_weight must be finite, >= 0 and not all 0")
    return w


def softmax(logits):
    """Row-wise softmax of (N, C) logits."""
    logits = float_array(logits, "logits", ndim=2)
    return _kernels.softmax(logits)


def _target_loss(loss, pred, target, sample_weight, pred_name="pred", delta=1.0):
    """(loss, gradient) of one of the engine's elementwise losses against targets."""
    pred = float_array(pred, pred_name, ndim=2)
    target = float_array(target, "target", ndim=2, dtype=pred.dtype)
    same_shape(pred, pred_name, target, "target")
    w = _sample_weight(sample_weight, pred, pred_name)
    value, grad, _ = _kernels.target_loss(pred, target, w, _network.LOSSES[loss], delta, True)
    return value, grad


def mse_loss(pred, target, *, sample_weight=None):
    """Mean squared error over all elements and its gradient ``2 (pred - target) / size``.

    With ``sample_weight`` (one per row) the mean is weighted:
    ``sum_i w_i sum_j e_ij^2 / (d sum_i w_i)``.
    """
    return _target_loss("mse", pred, target, sample_weight)


def huber_loss(pred, target, *, delta=1.0, sample_weight=None):
    """Mean Huber loss over all elements and its gradient (PyTorch's ``HuberLoss``).

    ``l = e^2 / 2`` where ``|e| <= delta``, else ``delta (|e| - delta / 2)``,
    with ``e = pred - target``; the gradient is ``clip(e, -delta, delta) / size``.
    Rows are weighted as in :func:`mse_loss`.

    Parameters
    ----------
    pred, target : array (N, D)
    delta : float > 0
    sample_weight : array (N,), optional

    Returns
    -------
    loss : float
    dpred : array (N, D)
    """
    delta = real_number(delta, "delta", low=0.0, low_open=True)
    return _target_loss("huber", pred, target, sample_weight, delta=delta)


def binary_cross_entropy_with_logits(logits, target, *, sample_weight=None):
    """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1], and its
    gradient (PyTorch's ``BCEWithLogitsLoss``).

    ``l = max(z, 0) - z t + log(1 + exp(-|z|))`` per element (stable for any finite
    logit z), gradient ``(sigmoid(z) - t) / size``; rows are weighted as in
    :func:`mse_loss`.

    Parameters
    ----------
    logits, target : array (N, D); target in [0, 1]
    sample_weight : array (N,), optional

    Returns
    -------
    loss : float
    dlogits : array (N, D)

    Raises
    ------
    ValueError
        Targets outside [0, 1] (or NaN), or shapes that differ.
    """
    logits = float_array(logits, "logits", ndim=2)
    target = float_array(target, "target", ndim=2, dtype=logits.dtype)
    if not np.all((target >= 0) & (target <= 1)):
        raise ValueError("target must hold values in [0, 1] (binary labels or probabilities)")
    return _target_loss("bce", logits, target, sample_weight, pred_name="logits")
