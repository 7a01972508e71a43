"""Weight initialisers for dense layers.

Every initialiser returns a fresh array of shape ``(fan_in, fan_out)``, the
orientation used throughout fastnet (``z = x @ W``).  Samples are drawn in
float64 and cast once to the requested dtype, so float32 and float64 weights
drawn with the same seed agree to float32 precision.

Randomness comes from ``seed=`` (an int) or ``rng=`` (a
:class:`numpy.random.Generator`), never from NumPy's global state::

    he_normal(256, 128, seed=0)   # same array every time
    he_normal(256, 128, rng=gen)  # advances gen

With ``seed=s`` the draw is exactly that of ``numpy.random.default_rng(s)``.
With neither, fresh OS entropy is used.

A note on names.  The article's cheat sheet calls ``std = sqrt(1/fan_in)``
"Xavier".  Glorot & Bengio (2010) actually derive ``Var(W) = 2/(fan_in +
fan_out)``, which is what ``xavier_*`` means here (and in PyTorch and Keras);
the ``sqrt(1/fan_in)`` rule is LeCun's and is :func:`lecun_normal`.  For a
square layer (``fan_in == fan_out``) the two coincide.

=====================  ==============================================  =============
initialiser            distribution                                    suits
=====================  ==============================================  =============
``he_normal``          N(0, 2/fan_in)                                  ReLU
``he_uniform``         U(-sqrt(6/fan_in), sqrt(6/fan_in))              ReLU
``xavier_normal``      N(0, 2/(fan_in+fan_out))                        tanh, sigmoid
``xavier_uniform``     U(-sqrt(6/(fan_in+fan_out)), +...)              tanh, sigmoid
``lecun_normal``       N(0, 1/fan_in)                                  tanh, SELU
``lecun_uniform``      U(-sqrt(3/fan_in), sqrt(3/fan_in))              tanh, SELU
=====================  ==============================================  =============

The article is "Learn AI Series (#40) - Training Neural Networks - Practical Challenges".
"""
import math
import numbers

from fastnet._validation import float_dtype, generator, integer

__all__ = [
    "calculate_gain",
    "get",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "xavier_normal",
    "xavier_uniform",
]



# ---------------------------------------------------------------------------
# gain
# ---------------------------------------------------------------------------

# 1 / sqrt(E[f(z)^2]), z ~ N(0, 1), by quadrature (tests/test_init.py recomputes them)
_SECOND_MOMENT_GAINS = {"gelu": 1.5335304411955353, "silu": 1.6765324703310909}


def calculate_gain(nonlinearity, param=None):
    """Recommended gain (the factor on the std) for a nonlinearity.

    ================  ==============================
    nonlinearity      gain
    ================  ==============================
    ``"linear"``      1
    ``"identity"``    1
    ``"sigmoid"``     1
    ``"tanh"``        5/3
    ``"relu"``        sqrt(2)
    ``"leaky_relu"``  sqrt(2 / (1 + negative_slope^2))
    ``"gelu"``        1.5335304 (E[gelu(z)^2]^-1/2)
    ``"silu"``        1.6765325 (E[silu(z)^2]^-1/2)
    ================  ==============================

    Those of "linear", "sigmoid", "tanh", "relu" and "leaky_relu" are PyTorch's
    (``torch.nn.init.calculate_gain``); "identity" is "linear".
    PyTorch has none for GELU and SiLU; theirs here follow the rule behind
    the ReLU and leaky-ReLU gains: ``1 / sqrt(E[f(z)^2])`` for
    ``z ~ N(0, 1)``, which keeps the second moment of the activations
    through a layer (by quadrature).  He initialisation is
    ``std = gain("relu") / sqrt(fan_in)``.

    Parameters
    ----------
    nonlinearity : str
        One of the names in the table.
    param : float, optional
        The negative slope of ``"leaky_relu"`` (default 0.01); ignored for the
        other nonlinearities.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        For an unknown nonlinearity (the message lists the valid ones) or a
        slope that is not a finite real number.

    Examples
    --------
    >>> calculate_gain("relu")
    1.4142135623730951
    >>> calculate_gain("leaky_relu", 0.2)
    1.3867504905630728
    """
    if nonlinearity in ("linear", "identity", "sigmoid"):
        return 1.0
    if nonlinearity in _SECOND_MOMENT_GAINS:
        return _SECOND_MOMENT_GAINS[nonlinearity]
    if nonlinearity == "tanh":
        return 5.0 / 3.0
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif (isinstance(param, bool) or not isinstance(param, numbers.Real)
              or not math.isfinite(param)):
            raise ValueError(f"negative_slope {param!r} is not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1.0 + slope ** 2))
    valid = ["linear", "identity", "sigmoid", "tanh", "relu", "leaky_relu",
             *_SECOND_MOMENT_GAINS]
    raise ValueError(f"Unsupported nonlinearity {nonlinearity!r}, please use one of {valid}")


# ---------------------------------------------------------------------------
# shared argument handling
# ---------------------------------------------------------------------------

def _normal(fan_in, fan_out, std, seed, rng, dtype):
    fan_in = integer(fan_in, "fan_in", low=1)
    fan_out = integer(fan_out, "fan_out", low=1)
    dt = float_dtype(dtype)
    gen = generator(seed, rng)
    w = gen.standard_normal((fan_in, fan_out)) * std(fan_in, fan_out)
    return w.astype(dt, copy=False)


def _uniform(fan_in, fan_out, bound, seed, rng, dtype):
    fan_in = integer(fan_in, "fan_in", low=1)
    fan_out = integer(fan_out, "fan_out", low=1)
    dt = float_dtype(dtype)
    gen = generator(seed, rng)
    a = bound(fan_in, fan_out)
    w = gen.uniform(-a, a, size=(fan_in, fan_out))
    return w.astype(dt, copy=False)


# ---------------------------------------------------------------------------
# initialisers
# ---------------------------------------------------------------------------

def he_normal(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """He (Kaiming) normal initialisation for ReLU layers.

    ``W ~ N(0, std^2)`` with ``std = sqrt(2 / fan_in)``.

    ReLU zeroes about half of its inputs, so the surviving half needs twice
    the variance to keep the signal's second moment constant from layer to
    layer (the factor 2; ``calculate_gain("relu")**2``).

    Reference: He, K., Zhang, X., Ren, S. & Sun, J. (2015). *Delving Deep into
    Rectifiers: Surpassing Human-Level Performance on ImageNet
    Classification.* ICCV.

    Parameters
    ----------
    fan_in, fan_out : int
        Number of inputs and outputs of the layer (positive).
    seed : int, optional
        Seed for ``numpy.random.default_rng``; the same seed gives the same
        array.  Exclusive with ``rng``.
    rng : numpy.random.Generator, optional
        Generator to draw from (it is advanced).
    dtype : {"float32", "float64"}

    Returns
    -------
    ndarray of shape (fan_in, fan_out)

    Raises
    ------
    TypeError
        Non-int fans (bool included), a dtype other than float32/float64, or
        an ``rng`` that is not a Generator.
    ValueError
        A fan <= 0, a negative seed, or both ``seed`` and ``rng``.

    Examples
    --------
    >>> W = he_normal(256, 64, seed=0)
    >>> W.shape, W.dtype
    ((256, 64), dtype('float32'))
    """
    return _normal(fan_in, fan_out, lambda i, o: math.sqrt(2.0 / i), seed, rng, dtype)


def he_uniform(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """He (Kaiming) uniform initialisation for ReLU layers.

    ``W ~ U(-a, a)`` with ``a = sqrt(6 / fan_in)``, which has the same
    variance as :func:`he_normal` (``a^2 / 3 = 2 / fan_in``).

    Reference: He et al. (2015), see :func:`he_normal`.  Arguments, return
    value and exceptions as in :func:`he_normal`.
    """
    return _uniform(fan_in, fan_out, lambda i, o: math.sqrt(6.0 / i), seed, rng, dtype)


def xavier_normal(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """Xavier (Glorot) normal initialisation for tanh / sigmoid layers.

    ``W ~ N(0, std^2)`` with ``std = sqrt(2 / (fan_in + fan_out))``: the
    compromise between keeping the forward variance (``1/fan_in``) and the
    backward variance (``1/fan_out``) constant.

    Not to be confused with the article's "Xavier" ``sqrt(1/fan_in)``,
    which is :func:`lecun_normal`.

    Reference: Glorot, X. & Bengio, Y. (2010). *Understanding the difficulty
    of training deep feedforward neural networks.* AISTATS.

    Arguments, return value and exceptions as in :func:`he_normal`.
    """
    return _normal(fan_in, fan_out, lambda i, o: math.sqrt(2.0 / (i + o)), seed, rng, dtype)


def xavier_uniform(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """Xavier (Glorot) uniform initialisation.

    ``W ~ U(-a, a)`` with ``a = sqrt(6 / (fan_in + fan_out))`` (variance
    ``2 / (fan_in + fan_out)``, as :func:`xavier_normal`).

    Reference: Glorot & Bengio (2010), see :func:`xavier_normal`.  Arguments,
    return value and exceptions as in :func:`he_normal`.
    """
    return _uniform(fan_in, fan_out, lambda i, o: math.sqrt(6.0 / (i + o)), seed, rng, dtype)


def lecun_normal(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """LeCun normal initialisation.

    ``W ~ N(0, std^2)`` with ``std = sqrt(1 / fan_in)``: unit output
    variance for a linear (or tanh near 0) layer with unit-variance inputs.
    This is the rule the article's cheat sheet labels "Xavier" for
    sigmoid and tanh networks.

    Reference: LeCun, Y., Bottou, L., Orr, G. & Mueller, K.-R. (1998).
    *Efficient BackProp.* In Neural Networks: Tricks of the Trade, Springer.

    Arguments, return value and exceptions as in :func:`he_normal`.
    """
    return _normal(fan_in, fan_out, lambda i, o: math.sqrt(1.0 / i), seed, rng, dtype)


def lecun_uniform(fan_in, fan_out, *, seed=None, rng=None, dtype="float32"):
    """LeCun uniform initialisation.

    ``W ~ U(-a, a)`` with ``a = sqrt(3 / fan_in)`` (variance ``1 / fan_in``,
    as :func:`lecun_normal`).

    Reference: LeCun et al. (1998), see :func:`lecun_normal`.  Arguments,
    return value and exceptions as in :func:`he_normal`.
    """
    return _uniform(fan_in, fan_out, lambda i, o: math.sqrt(3.0 / i), seed, rng, dtype)


_BY_NAME = {
    "he": he_normal,
    "xavier": xavier_normal,
    "glorot": xavier_normal,
    "lecun": lecun_normal,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
}


def get(name):
    """The initialiser called ``name``, as used by ``MLP(init=...)``.

    ``"he"``, ``"xavier"`` (alias ``"glorot"``) and ``"lecun"`` give the
    normal variants; the full function names (``"he_uniform"``, ...) are
    accepted too.  A callable is returned unchanged, so ``get(init)`` works
    for both spellings of ``MLP(init=...)``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones).
    TypeError
        For anything that is neither a string nor a callable.
    """
    if isinstance(name, str):
        try:
            return _BY_NAME[name]
        except KeyError:
            raise ValueError(f"Unknown initialiser {name!r}, please use one of "
                             f"{sorted(_BY_NAME)} or a callable") from None
    if callable(name):
        return name
    raise TypeError(f"init must be a name or a callable, got {type(name).__name__}")
