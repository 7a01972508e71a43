"""Plain NumPy float64 references of fastnet.functional, the error scales
they are compared with (see conftest.assert_close), a pure-Python
Philox4x32-10, and a registry of the kernels with sample inputs used by the
generic tests (layouts, bad input, determinism).

Every reference works in float64 on float64 copies of its inputs, and is
written from the textbook definition, not from fastnet's code."""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import fastnet.functional as F

f64 = np.float64


def _d(a):
    return None if a is None else np.asarray(a, dtype=f64)


# --------------------------------------------------------------------------
# References.  Each returns a list of (expected, scale) pairs, one per output.
# --------------------------------------------------------------------------

def ref_linear_forward(x, W, b=None, activation=None):
    x, W, b = _d(x), _d(W), _d(b)
    z = x @ W
    scale = np.abs(x) @ np.abs(W)
    if b is not None:
        z = z + b
        scale = scale + np.abs(b)
    if activation == "relu":
        z = np.where(z < 0, 0.0, z)          # NaN stays NaN
    return [(z, scale)]


def relu_grad_mask(out):
    """The API's ReLU mask: `out > 0` (so 0 where out is NaN; a NaN in the
    incoming gradient still propagates through the product)."""
    return (_d(out) > 0).astype(f64)


def ref_linear_backward(dout, x, W, out=None, activation=None):
    dout, x, W = _d(dout), _d(x), _d(W)
    dz = dout * relu_grad_mask(out) if activation == "relu" else dout
    adz = np.abs(dz)
    return [(dz @ W.T, adz @ np.abs(W).T),
            (x.T @ dz, np.abs(x).T @ adz),
            (dz.sum(axis=0), adz.sum(axis=0))]


def ref_batch_norm(x, gamma, beta, eps=1e-5, training=True, running_mean=None,
                   running_var=None, momentum=0.1):
    """Returns [(out), (mean), (var)] and, with buffers, the updated buffers."""
    x, gamma, beta = _d(x), _d(gamma), _d(beta)
    n = x.shape[0]
    if training:
        mean = x.mean(axis=0)
        var = ((x - mean) ** 2).mean(axis=0)          # biased: used to normalise
        var_scale = var + (x ** 2).mean(axis=0)
    else:
        mean, var = _d(running_mean).copy(), _d(running_var).copy()
        var_scale = np.abs(var)
    invstd = 1.0 / np.sqrt(var + eps)
    out = gamma * (x - mean) * invstd + beta
    out_scale = np.abs(gamma) * invstd * (np.abs(x) + np.abs(mean)) + np.abs(beta)
    res = [(out, out_scale), (mean, np.abs(x).mean(axis=0)), (var, var_scale)]
    if training and running_mean is not None:
        rm, rv = _d(running_mean), _d(running_var)
        unbiased = var * n / (n - 1)                   # unbiased: running_var
        res.append(((1 - momentum) * rm + momentum * mean,
                    np.abs(rm) + np.abs(x).mean(axis=0)))
        res.append(((1 - momentum) * rv + momentum * unbiased,
                    np.abs(rv) + var_scale * n / (n - 1)))
    return res


def ref_batch_norm_backward(dout, x, gamma, mean, var, eps=1e-5):
    dout, x, gamma, mean, var = map(_d, (dout, x, gamma, mean, var))
    invstd = 1.0 / np.sqrt(var + eps)
    xhat = (x - mean) * invstd
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = gamma * invstd * (dout - dout.mean(axis=0) - xhat * (dout * xhat).mean(axis=0))
    # first-order error scales: xhat carries an error ~ u * (|x| + |mean|) * invstd
    a = np.abs(xhat) + (np.abs(x) + np.abs(mean)) * invstd
    ad = np.abs(dout)
    dx_scale = np.abs(gamma) * invstd * (ad + ad.mean(axis=0) + a * (ad * a).mean(axis=0))
    return [(dx, dx_scale), (dgamma, (ad * a).sum(axis=0)), (dbeta, ad.sum(axis=0))]


def ref_dropout_apply(x, mask, rate):
    x = _d(x)
    return [(x * np.asarray(mask, dtype=f64) / (1.0 - rate), np.abs(x) / (1.0 - rate))]


def _row_weights(n, sample_weight):
    w = np.ones(n) if sample_weight is None else _d(sample_weight)
    return w, w.sum()


def ref_softmax(logits, dtype=np.float64):
    z = _d(logits)
    m = z.max(axis=1, keepdims=True)
    e = np.exp(z - m)
    p = e / e.sum(axis=1, keepdims=True)
    tiny = np.finfo(dtype).tiny * 1e5
    return [(p, p * (1.0 + np.abs(z - m)) + tiny)]


def ref_softmax_cross_entropy(logits, y, sample_weight=None, dtype=np.float64):
    z = _d(logits)
    y = np.asarray(y)
    n, c = z.shape
    rows = np.arange(n)
    m = z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z - m).sum(axis=1)) + m[:, 0]
    per_row = lse - z[rows, y]
    w, wsum = _row_weights(n, sample_weight)
    loss = np.sum(w * per_row) / wsum
    p = np.exp(z - lse[:, None])
    onehot = np.zeros_like(z)
    onehot[rows, y] = 1.0
    dlogits = (p - onehot) * (w / wsum)[:, None]
    tiny = np.finfo(dtype).tiny * 1e5
    row_range = np.abs(z - m).max(axis=1)
    loss_scale = np.sum(w * (1.0 + np.log(c) + row_range)) / wsum
    d_scale = (w / wsum)[:, None] * ((p + onehot) * (1.0 + np.abs(z - m)) + tiny)
    return [(np.float64(loss), loss_scale), (dlogits, d_scale)]


def ref_mse(pred, target, sample_weight=None):
    p, t = _d(pred), _d(target)
    n, d = p.shape
    w, wsum = _row_weights(n, sample_weight)
    total = wsum * d
    e = p - t
    mag = np.abs(p) + np.abs(t)
    loss = np.sum(w[:, None] * e * e) / total
    dpred = 2.0 * w[:, None] * e / total
    return [(np.float64(loss), np.sum(w[:, None] * mag * mag) / total),
            (dpred, 2.0 * w[:, None] * mag / total)]


# --------------------------------------------------------------------------
# The dropout generator, written from its documentation in csrc/fn_rng.h
# --------------------------------------------------------------------------
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


def hash32(x):
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def dropout_bits(seed, layer, step, element):
    key = splitmix64(seed ^ splitmix64(((layer << 32) | step) & _M64))
    return hash32(hash32((element & _M32) ^ (key & _M32)) ^ (key >> 32))


def dropout_mask_reference(n, f, rate, seed):
    """The documented mask of dropout on an (n, f) array: element (i, j) is
    kept iff dropout_bits(seed, 0, 0, i * f + j) < floor((1 - rate) * 2**32)."""
    threshold = int(np.floor((1.0 - rate) * 2.0 ** 32))
    mask = np.zeros((n, f), dtype=bool)
    for i in range(n):
        for j in range(f):
            mask[i, j] = dropout_bits(seed, 0, 0, i * f + j) < threshold
    return mask


# --------------------------------------------------------------------------
# Registry: every kernel with a sample-input builder and its reference.
# --------------------------------------------------------------------------

@dataclass
class Kernel:
    name: str
    make: Callable          # make(rng, dtype, n, k, m) -> dict of arguments
    call: Callable          # call(args) -> tuple of outputs (arrays / floats)
    ref: Callable           # ref(args, dtype) -> list of (expected, scale)
    float_args: tuple       # float array arguments (in validation order)
    # (argument, function giving a wrong shape from the args, partner argument)
    mismatches: list = field(default_factory=list)
    training_bn: bool = False


def _rand(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def _mk_linear_fwd(rng, dtype, n, k, m):
    return {"x": _rand(rng, (n, k), dtype), "W": _rand(rng, (k, m), dtype, 1 / np.sqrt(k)),
            "b": _rand(rng, m, dtype)}


def _mk_linear_bwd(rng, dtype, n, k, m):
    a = _mk_linear_fwd(rng, dtype, n, k, m)
    out = F.linear_forward(a["x"], a["W"], a["b"], activation="relu")
    return {"dout": _rand(rng, (n, m), dtype), "x": a["x"], "W": a["W"], "out": out}


def _mk_bn(rng, dtype, n, k, m):
    return {"x": _rand(rng, (n, k), dtype, 2.0) + dtype(0.5),
            "gamma": (rng.uniform(0.5, 1.5, k)).astype(dtype), "beta": _rand(rng, k, dtype),
            "running_mean": _rand(rng, k, dtype, 0.1),
            "running_var": rng.uniform(0.5, 2.0, k).astype(dtype)}


def _call_bn(training):
    def call(a):
        rm, rv = (np.array(a[k], copy=True) if isinstance(a[k], np.ndarray) else a[k]
                  for k in ("running_mean", "running_var"))
        out, mean, var = F.batch_norm(a["x"], a["gamma"], a["beta"], training=training,
                                      running_mean=rm, running_var=rv)
        return out, mean, var, rm, rv
    return call


def _ref_bn(training):
    def ref(a, dtype):
        r = ref_batch_norm(a["x"], a["gamma"], a["beta"], training=training,
                           running_mean=a["running_mean"], running_var=a["running_var"])
        if not training:   # buffers unchanged
            r += [(_d(a["running_mean"]), 0.0), (_d(a["running_var"]), 0.0)]
        return r
    return ref


def _mk_bn_bwd(rng, dtype, n, k, m):
    x = _rand(rng, (n, k), dtype, 2.0) + dtype(0.5)
    return {"dout": _rand(rng, (n, k), dtype), "x": x,
            "gamma": rng.uniform(0.5, 1.5, k).astype(dtype),
            "mean": x.astype(f64).mean(axis=0).astype(dtype),
            "var": x.astype(f64).var(axis=0).astype(dtype)}


RATE = 0.3
SEED = 0x1234_5678_9ABC


def _mk_dropout(rng, dtype, n, k, m):
    return {"x": _rand(rng, (n, k), dtype)}


def _call_dropout(a):
    return F.dropout(a["x"], RATE, seed=SEED)


def _ref_dropout(a, dtype):
    mask = dropout_mask_reference(*a["x"].shape, RATE, SEED) if a["x"].size <= 4096 else None
    if mask is None:
        mask = F.dropout(a["x"], RATE, seed=SEED)[1]
    return ref_dropout_apply(a["x"], mask, RATE) + [(mask.astype(f64), 0.0)]


def _mk_dropout_bwd(rng, dtype, n, k, m):
    return {"dout": _rand(rng, (n, k), dtype), "mask": rng.random((n, k)) >= RATE}


def _mk_xent(weighted):
    def make(rng, dtype, n, k, m):
        a = {"logits": _rand(rng, (n, k), dtype, 3.0), "y": rng.integers(0, k, n)}
        if weighted:
            a["sample_weight"] = rng.uniform(0.0, 2.0, n).astype(dtype)
        return a
    return make


def _mk_mse(weighted):
    def make(rng, dtype, n, k, m):
        a = {"pred": _rand(rng, (n, k), dtype), "target": _rand(rng, (n, k), dtype)}
        if weighted:
            a["sample_weight"] = rng.uniform(0.0, 2.0, n).astype(dtype)
        return a
    return make


def _shape_plus(arg, axis):
    def wrong(a):
        s = list(a[arg].shape)
        s[axis] += 1
        return tuple(s)
    return wrong


KERNELS = [
    Kernel("linear_forward", _mk_linear_fwd,
           lambda a: (F.linear_forward(a["x"], a["W"], a["b"], activation="relu"),),
           lambda a, dt: ref_linear_forward(a["x"], a["W"], a["b"], "relu"),
           ("x", "W", "b"),
           [("W", _shape_plus("W", 0), "x"), ("b", _shape_plus("b", 0), "W")]),
    Kernel("linear_backward", _mk_linear_bwd,
           lambda a: F.linear_backward(a["dout"], a["x"], a["W"], a["out"], activation="relu"),
           lambda a, dt: ref_linear_backward(a["dout"], a["x"], a["W"], a["out"], "relu"),
           ("x", "W", "dout", "out"),
           [("W", _shape_plus("W", 0), "x"), ("dout", _shape_plus("dout", 1), "W"),
            ("dout", _shape_plus("dout", 0), "x"), ("out", _shape_plus("out", 0), "dout")]),
    Kernel("batch_norm_train", _mk_bn, _call_bn(True), _ref_bn(True),
           ("x", "gamma", "beta", "running_mean", "running_var"),
           [("gamma", _shape_plus("gamma", 0), "x"), ("beta", _shape_plus("beta", 0), "x"),
            ("running_mean", _shape_plus("running_mean", 0), "x"),
            ("running_var", _shape_plus("running_var", 0), "x")], training_bn=True),
    Kernel("batch_norm_eval", _mk_bn, _call_bn(False), _ref_bn(False),
           ("x", "gamma", "beta", "running_mean", "running_var"),
           [("gamma", _shape_plus("gamma", 0), "x"),
            ("running_var", _shape_plus("running_var", 0), "x")]),
    Kernel("batch_norm_backward", _mk_bn_bwd,
           lambda a: F.batch_norm_backward(a["dout"], a["x"], a["gamma"], a["mean"], a["var"]),
           lambda a, dt: ref_batch_norm_backward(a["dout"], a["x"], a["gamma"], a["mean"],
                                                 a["var"]),
           ("x", "dout", "gamma", "mean", "var"),
           [("dout", _shape_plus("dout", 0), "x"), ("gamma", _shape_plus("gamma", 0), "x"),
            ("mean", _shape_plus("mean", 0), "x"), ("var", _shape_plus("var", 0), "x")]),
    Kernel("dropout", _mk_dropout, _call_dropout, _ref_dropout, ("x",)),
    Kernel("dropout_backward", _mk_dropout_bwd,
           lambda a: (F.dropout_backward(a["dout"], a["mask"], RATE),),
           lambda a, dt: ref_dropout_apply(a["dout"], a["mask"], RATE),
           ("dout",), [("mask", _shape_plus("mask", 1), "dout")]),
    Kernel("softmax_cross_entropy", _mk_xent(False),
           lambda a: F.softmax_cross_entropy(a["logits"], a["y"]),
           lambda a, dt: ref_softmax_cross_entropy(a["logits"], a["y"], dtype=dt),
           ("logits",), [("y", _shape_plus("y", 0), "logits")]),
    Kernel("softmax_cross_entropy_weighted", _mk_xent(True),
           lambda a: F.softmax_cross_entropy(a["logits"], a["y"],
                                             sample_weight=a["sample_weight"]),
           lambda a, dt: ref_softmax_cross_entropy(a["logits"], a["y"], a["sample_weight"],
                                                   dtype=dt),
           ("logits", "sample_weight"),
           [("sample_weight", _shape_plus("sample_weight", 0), "logits")]),
    Kernel("softmax", lambda rng, dtype, n, k, m: {"logits": _rand(rng, (n, k), dtype, 3.0)},
           lambda a: (F.softmax(a["logits"]),),
           lambda a, dt: ref_softmax(a["logits"], dt), ("logits",)),
    Kernel("mse_loss", _mk_mse(False), lambda a: F.mse_loss(a["pred"], a["target"]),
           lambda a, dt: ref_mse(a["pred"], a["target"]), ("pred", "target"),
           [("target", _shape_plus("target", 1), "pred"),
            ("target", _shape_plus("target", 0), "pred")]),
    Kernel("mse_loss_weighted", _mk_mse(True),
           lambda a: F.mse_loss(a["pred"], a["target"], sample_weight=a["sample_weight"]),
           lambda a, dt: ref_mse(a["pred"], a["target"], a["sample_weight"]),
           ("pred", "target", "sample_weight"),
           [("sample_weight", _shape_plus("sample_weight", 0), "pred")]),
]
KERNEL_IDS = [k.name for k in KERNELS]
BY_NAME = {k.name: k for k in KERNELS}


def as_tuple(result):
    return result if isinstance(result, tuple) else (result,)
