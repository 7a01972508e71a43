"""Range errors state the range that is enforced, the same way everywhere: fit's lr, the
optimizers', the schedules' and the scikit-learn wrappers' parameters (U10)."""
import re

import numpy as np
import pytest

import fastnet
from fastnet import optim, schedules


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    return X, (X[:, 0] > 0).astype(np.int64)


def message(call):
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    return str(info.value)


def stated_range(text):
    return re.search(r"must be in (\S+, \S+) got", text).group(1)


def test_fit_lr_zero_and_negative_state_the_same_range():
    X, y = _data()
    texts = [message(lambda lr=lr: fastnet.MLP([4, 8, 2]).fit(X, y, lr=lr, verbose=0))
             for lr in (-1, 0, 0.0, float("inf"))]
    assert {stated_range(t) for t in texts} == {"(0.0, inf),"}, texts
    for lr in (1e-12, 1e6):                                    # inside the range: accepted
        fastnet.MLP([4, 8, 2]).fit(X, y, lr=lr, epochs=1, verbose=0)


def test_unbounded_ends_are_stated_open():
    texts = [message(lambda: optim.SGD(lr=-1)), message(lambda: optim.Adam(eps=-1)),
             message(lambda: schedules.Constant(0)),
             message(lambda: schedules.CosineAnnealing(0.1, 10, min_lr=-1))]
    for text in texts:
        assert "inf]" not in text and "[-inf" not in text, text


def test_scikit_learn_parameters_state_their_range():
    sk = pytest.importorskip("fastnet.sklearn")
    X, y = _data()
    text = message(lambda: sk.MLPClassifier(learning_rate_init=0).fit(X, y))
    assert "None" not in text and "learning_rate_init must be in (0.0, inf)" in text, text
    text = message(lambda: sk.MLPClassifier(hidden_layer_sizes="big").fit(X, y))
    assert "'big'" in text and "got 'b'" not in text, text
    text = message(lambda: sk.MLPRegressor(dropout=1.0).fit(X, y.astype(float)))
    assert "dropout must be in [0.0, 1.0)" in text, text


def test_command_line_states_ranges_as_the_library_does():
    """The CLI's argparse types are thin adapters over fastnet._validation: the same
    range, stated the same way, without the name (argparse prefixes the option)."""
    import argparse

    from fastnet import _validation, cli
    for value, args, kwargs in [(0.0, (0.0, None), {"low_open": True}),
                                (1.0, (0.0, 1.0), {"high_open": True}),
                                (float("inf"), (0.0, None), {})]:
        with pytest.raises(argparse.ArgumentTypeError) as info:
            cli._float_in(*args, **kwargs)(str(value))
        library = message(lambda v=value, a=args, k=kwargs: _validation.real_number(v, "x", *a,
                                                                                 **k))
        assert library == "x " + str(info.value), (library, str(info.value))
    with pytest.raises(argparse.ArgumentTypeError, match=r"must be <= 9, got 10"):
        cli._int_at_least(0, 9)("10")
    assert message(lambda: _validation.integer(10, "x", 0, 9)) == "x must be <= 9, got 10"


def test_article_experiments_refuse_seeds_their_legacy_stream_cannot_take():
    from fastnet import diagnostics
    text = message(lambda: diagnostics.init_experiment(2, 4, seed=2**32))
    assert text.startswith("seed must be <= 4294967295"), text
    text = message(lambda: diagnostics.init_experiment(2, 4, seed=1.5))
    assert text == "seed must be an int, got float", text
