"""MLPRegressor standardises targets of any finite size (W11): |y| around 1e200, whose
variance overflows float64, trains exactly like y itself instead of predicting inf."""
import numpy as np
import pytest

sk = pytest.importorskip("fastnet.sklearn")
pytestmark = pytest.mark.filterwarnings("ignore:.*max_iter:UserWarning")


def _data():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 5))
    return X, X @ rng.standard_normal(5) + 0.1 * rng.standard_normal(200)


def _fit(X, y):
    return sk.MLPRegressor(max_iter=15, random_state=0, n_threads=1).fit(X, y)


@pytest.mark.parametrize("exponent", [700, 1000, -1000])
def test_targets_scaled_by_a_power_of_two_give_the_scaled_predictions(exponent):
    X, y = _data()
    factor = 2.0 ** exponent
    plain, scaled = _fit(X, y), _fit(X, y * factor)
    assert np.all(np.isfinite(scaled.predict(X)))
    # the standardisation is exact in powers of two: the same network, bit for bit
    assert np.array_equal(scaled.predict(X), plain.predict(X) * factor)
    assert np.array_equal(scaled.y_scale_, plain.y_scale_ * factor)


def test_targets_around_1e200_train_like_ordinary_ones():
    X, y = _data()
    plain, huge = _fit(X, y), _fit(X, y * 1e200)
    prediction = huge.predict(X)
    assert np.all(np.isfinite(prediction))
    np.testing.assert_allclose(prediction / 1e200, plain.predict(X), rtol=1e-6, atol=1e-6)


def test_nearly_constant_huge_targets_predict_their_value():
    X, _ = _data()
    y = np.full(len(X), 3e250) * (1 + 1e-14 * np.sign(X[:, 0]))
    prediction = _fit(X, y).predict(X)
    assert np.all(np.isfinite(prediction))
    np.testing.assert_allclose(prediction, 3e250, rtol=1e-6)
