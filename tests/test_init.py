"""Tests of fastnet.init: sample statistics, determinism, dtypes and argument checks."""
import math

import numpy as np
import pytest

from fastnet import init

NORMAL = {
    "he_normal": lambda i, o: math.sqrt(2.0 / i),
    "xavier_normal": lambda i, o: math.sqrt(2.0 / (i + o)),
    "lecun_normal": lambda i, o: math.sqrt(1.0 / i),
}
UNIFORM = {
    "he_uniform": lambda i, o: math.sqrt(6.0 / i),
    "xavier_uniform": lambda i, o: math.sqrt(6.0 / (i + o)),
    "lecun_uniform": lambda i, o: math.sqrt(3.0 / i),
}
ALL = sorted(NORMAL) + sorted(UNIFORM)


# ---------------------------------------------------------------------------
# distributions
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NORMAL))
@pytest.mark.parametrize("shape", [(2000, 2000), (3000, 1000)])
def test_normal_std_and_mean(name, shape):
    fan_in, fan_out = shape
    W = getattr(init, name)(fan_in, fan_out, seed=0, dtype="float64")
    std = NORMAL[name](fan_in, fan_out)
    assert W.shape == shape
    assert W.std() == pytest.approx(std, rel=0.01)
    assert abs(W.mean()) < 5 * std / math.sqrt(W.size)
    # Untruncated Gaussian: some samples lie beyond 4 std (expected ~190 of 3e6).
    assert (np.abs(W) > 4 * std).sum() > 50


@pytest.mark.parametrize("name", sorted(UNIFORM))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_uniform_bounds_and_std(name, dtype):
    fan_in, fan_out = 2000, 2000
    W = getattr(init, name)(fan_in, fan_out, seed=1, dtype=dtype)
    bound = UNIFORM[name](fan_in, fan_out)
    assert W.dtype == np.dtype(dtype)
    assert np.abs(W).max() <= np.asarray(bound, dtype=dtype)
    # The samples fill the interval: the extremes are within 0.1% of the bound.
    assert W.max() > 0.999 * bound and W.min() < -0.999 * bound
    assert W.std(dtype=np.float64) == pytest.approx(bound / math.sqrt(3.0), rel=0.01)


def test_xavier_is_glorot_and_lecun_is_the_seed_cheat_sheet():
    # For a non-square layer the two rules differ; the seed's "Xavier" is LeCun's.
    fan_in, fan_out = 256, 4096
    xav = init.xavier_normal(fan_in, fan_out, seed=3, dtype="float64")
    lec = init.lecun_normal(fan_in, fan_out, seed=3, dtype="float64")
    assert xav.std() == pytest.approx(math.sqrt(2 / (fan_in + fan_out)), rel=0.01)
    assert lec.std() == pytest.approx(math.sqrt(1 / fan_in), rel=0.01)
    # Same draws, different scale.
    np.testing.assert_allclose(xav / math.sqrt(2 / (fan_in + fan_out)),
                               lec / math.sqrt(1 / fan_in), rtol=1e-12)


def test_seed_cheat_sheet_numbers():
    fan_in = 256
    assert f"{init.calculate_gain('relu') / math.sqrt(fan_in):.4f}" == "0.0884"
    assert f"{math.sqrt(1 / fan_in):.4f}" == "0.0625"


def test_he_normal_equals_default_rng_draw():
    W = init.he_normal(64, 32, seed=123, dtype="float64")
    ref = np.random.default_rng(123).standard_normal((64, 32)) * math.sqrt(2 / 64)
    np.testing.assert_array_equal(W, ref)


# ---------------------------------------------------------------------------
# randomness
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_array(name):
    f = getattr(init, name)
    a = f(50, 40, seed=7)
    b = f(50, 40, seed=7)
    c = f(50, 40, seed=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("name", ALL)
def test_no_seed_gives_fresh_draws(name):
    f = getattr(init, name)
    assert not np.array_equal(f(30, 30), f(30, 30))


@pytest.mark.parametrize("name", ALL)
def test_rng_argument(name):
    f = getattr(init, name)
    g1, g2 = np.random.default_rng(5), np.random.default_rng(5)
    a1, a2 = f(20, 10, rng=g1), f(20, 10, rng=g1)
    b1, b2 = f(20, 10, rng=g2), f(20, 10, rng=g2)
    np.testing.assert_array_equal(a1, b1)  # same generator state, same draw
    np.testing.assert_array_equal(a2, b2)
    assert not np.array_equal(a1, a2)      # the generator was advanced
    # An rng seeded like seed= gives the seed= draw.
    np.testing.assert_array_equal(f(20, 10, rng=np.random.default_rng(9)), f(20, 10, seed=9))


def test_global_numpy_state_is_untouched():
    np.random.seed(0)
    expected = np.random.rand()
    np.random.seed(0)
    init.he_normal(10, 10, seed=1)
    init.xavier_uniform(10, 10)
    assert np.random.rand() == expected


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
def test_default_dtype_is_float32(name):
    W = getattr(init, name)(8, 4, seed=0)
    assert W.dtype == np.float32 and W.shape == (8, 4) and W.flags.c_contiguous


@pytest.mark.parametrize("dtype", ["float64", np.float64, np.dtype("float64")])
def test_float64_spellings(dtype):
    assert init.he_normal(4, 4, seed=0, dtype=dtype).dtype == np.float64


def test_float32_is_cast_of_float64_draw():
    w32 = init.he_uniform(100, 50, seed=2, dtype="float32")
    w64 = init.he_uniform(100, 50, seed=2, dtype="float64")
    np.testing.assert_array_equal(w32, w64.astype(np.float32))


@pytest.mark.parametrize("dtype", ["float16", np.int32, "int64", bool, "complex128", "nope",
                                   None, object])
def test_bad_dtype_raises_type_error(dtype):
    with pytest.raises(TypeError, match="dtype"):
        init.he_normal(4, 4, seed=0, dtype=dtype)


# ---------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("fan_in,fan_out,exc", [
    (0, 4, ValueError),
    (4, 0, ValueError),
    (-3, 4, ValueError),
    (4.0, 4, TypeError),
    (4, 2.5, TypeError),
    (True, 4, TypeError),
    (4, False, TypeError),
    ("4", 4, TypeError),
    (None, 4, TypeError),
])
def test_bad_fans(name, fan_in, fan_out, exc):
    with pytest.raises(exc, match="fan_"):
        getattr(init, name)(fan_in, fan_out, seed=0)


def test_numpy_int_fans_are_accepted():
    assert init.lecun_normal(np.int64(3), np.int32(5), seed=0).shape == (3, 5)


def test_seed_and_rng_together_raise():
    with pytest.raises(ValueError, match="not both"):
        init.he_normal(4, 4, seed=1, rng=np.random.default_rng(1))


@pytest.mark.parametrize("kwargs,exc", [
    ({"seed": -1}, ValueError),
    ({"seed": 1.5}, TypeError),
    ({"seed": "1"}, TypeError),
    ({"rng": np.random.RandomState(0)}, TypeError),
    ({"rng": 3}, TypeError),
])
def test_bad_seed_or_rng(kwargs, exc):
    with pytest.raises(exc):
        init.xavier_normal(4, 4, **kwargs)


def test_options_are_keyword_only():
    with pytest.raises(TypeError):
        init.he_normal(4, 4, 0)  # seed must be passed by keyword


# ---------------------------------------------------------------------------
# calculate_gain
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("nonlinearity,param,expected", [
    ("linear", None, 1.0),
    ("sigmoid", None, 1.0),
    ("tanh", None, 5.0 / 3.0),
    ("relu", None, math.sqrt(2.0)),
    ("leaky_relu", None, math.sqrt(2.0 / (1 + 0.01 ** 2))),
    ("leaky_relu", 0.2, math.sqrt(2.0 / 1.04)),
    ("leaky_relu", 0, math.sqrt(2.0)),
    ("leaky_relu", 1, 1.0),
    ("relu", 0.5, math.sqrt(2.0)),  # param ignored
])
def test_calculate_gain(nonlinearity, param, expected):
    assert init.calculate_gain(nonlinearity, param) == pytest.approx(expected, rel=1e-15)


def test_calculate_gain_matches_torch():
    torch = pytest.importorskip("torch")
    for name in ["linear", "sigmoid", "tanh", "relu", "leaky_relu"]:
        assert init.calculate_gain(name) == pytest.approx(torch.nn.init.calculate_gain(name))
    assert init.calculate_gain("leaky_relu", 0.3) == pytest.approx(
        torch.nn.init.calculate_gain("leaky_relu", 0.3))


def test_calculate_gain_unknown_lists_valid_names():
    with pytest.raises(ValueError) as err:
        init.calculate_gain("swish")
    msg = str(err.value)
    assert "swish" in msg
    for name in ["linear", "sigmoid", "tanh", "relu", "leaky_relu"]:
        assert name in msg


@pytest.mark.parametrize("slope", ["0.1", True, float("nan"), float("inf")])
def test_calculate_gain_bad_slope(slope):
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", slope)


def test_he_normal_std_is_relu_gain_over_sqrt_fan_in():
    W = init.he_normal(2000, 2000, seed=11, dtype="float64")
    assert W.std() == pytest.approx(init.calculate_gain("relu") / math.sqrt(2000), rel=0.01)


# ---------------------------------------------------------------------------
# get
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("name,func", [
    ("he", init.he_normal),
    ("xavier", init.xavier_normal),
    ("lecun", init.lecun_normal),
    ("glorot", init.xavier_normal),
    ("he_uniform", init.he_uniform),
    ("xavier_uniform", init.xavier_uniform),
    ("lecun_uniform", init.lecun_uniform),
])
def test_get(name, func):
    assert init.get(name) is func


def test_get_passes_callables_through():
    def custom(fan_in, fan_out, **kw):
        return np.zeros((fan_in, fan_out))
    assert init.get(custom) is custom


def test_get_unknown_name():
    with pytest.raises(ValueError, match="'he'"):
        init.get("kaiming_magic")


def test_get_bad_type():
    with pytest.raises(TypeError):
        init.get(3)


def test_public_names():
    for name in init.__all__:
        assert callable(getattr(init, name))
    assert set(ALL) <= set(init.__all__)
