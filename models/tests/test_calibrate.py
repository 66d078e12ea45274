"""Platt scaling recovers known parameters."""

import numpy as np
import pytest

from ctrbid_train.calibrate import apply_platt, fit_platt


def _draw(a, b, n=200_000, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.normal(-3.0, 1.5, n)
    y = rng.random(n) < 1 / (1 + np.exp(-(a * z + b)))
    return z, y.astype(np.float32)


@pytest.mark.parametrize("a,b", [(0.7, -0.4), (1.3, 0.5), (1.0, 0.0)])
def test_recovers_known_parameters(a, b):
    z, y = _draw(a, b)
    fa, fb = fit_platt(z, y)
    assert fa == pytest.approx(a, abs=0.04)
    assert fb == pytest.approx(b, abs=0.12)


def test_fit_is_a_minimum():
    z, y = _draw(0.8, -0.2, n=50_000, seed=4)
    a, b = fit_platt(z, y)

    def loss(a_, b_):
        p = np.clip(apply_platt(z, a_, b_), 1e-12, 1 - 1e-12)
        return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))

    best = loss(a, b)
    for da, db in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert loss(a + da, b + db) > best


def test_calibrated_mean_matches_rate():
    # The intercept's first-order condition: mean prediction == observed rate.
    z, y = _draw(0.5, 1.0, n=20_000, seed=2)
    a, b = fit_platt(z, y)
    assert apply_platt(z, a, b).mean() == pytest.approx(y.mean(), rel=1e-6)


def test_single_class_rejected():
    with pytest.raises(ValueError):
        fit_platt([0.1, 0.2, 0.3], [0, 0, 0])
