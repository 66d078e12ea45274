"""Metrics against hand-computed values."""

import math

import numpy as np
import pytest

from ctrbid_train import metrics


def brute_force_auc(s, y):
    pos = [a for a, t in zip(s, y) if t == 1]
    neg = [a for a, t in zip(s, y) if t == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


def test_auc_simple():
    assert metrics.auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.75)


def test_auc_ties_count_half():
    # positive 0.5 ties negative 0.5 (1/2), beats 0.2 (1); positive 0.9 beats both (2) -> 3.5 / 4
    assert metrics.auc([0.5, 0.5, 0.2, 0.9], [0, 1, 0, 1]) == pytest.approx(0.875)
    assert metrics.auc([0.3] * 6, [0, 1, 0, 1, 1, 0]) == pytest.approx(0.5)


def test_auc_perfect_and_inverted():
    assert metrics.auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1]) == 1.0
    assert metrics.auc([0.9, 0.8, 0.2, 0.1], [0, 0, 1, 1]) == 0.0


def test_auc_single_class_is_nan():
    assert math.isnan(metrics.auc([0.1, 0.2], [1, 1]))


def test_auc_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 7, size=300) / 7.0  # heavy ties
    y = (rng.random(300) < 0.3 + 0.4 * s).astype(int)
    assert metrics.auc(s, y) == pytest.approx(brute_force_auc(s, y), abs=1e-12)


def test_paired_auc_matches_auc_and_the_spread_of_differences():
    # Two noisy scorers of the same latent score: DeLong's standard error of their AUC
    # difference must match the spread of that difference over independent samples.
    rng = np.random.default_rng(3)
    diffs, ses = [], []
    for _ in range(200):
        z = rng.normal(size=2000)
        y = (rng.random(2000) < 1 / (1 + np.exp(-(1.2 * z - 2.5)))).astype(int)
        a, b = z + rng.normal(scale=0.5, size=z.size), z + rng.normal(scale=0.8, size=z.size)
        auc, se = metrics.paired_auc({"a": a, "b": b}, y)
        assert auc["a"] == pytest.approx(metrics.auc(a, y), abs=1e-12)
        assert auc["b"] == pytest.approx(metrics.auc(b, y), abs=1e-12)
        assert se[("a", "b")] == se[("b", "a")]
        diffs.append(auc["a"] - auc["b"])
        ses.append(se[("a", "b")])
    assert np.mean(diffs) > 0  # the less noisy scorer ranks better
    assert np.mean(ses) == pytest.approx(np.std(diffs), rel=0.15)


def test_paired_auc_of_a_scorer_with_itself_has_no_error():
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.5, 0.5])
    y = np.array([0, 0, 1, 1, 0, 1])
    auc, se = metrics.paired_auc({"x": s, "same": s.copy()}, y)
    assert auc["x"] == pytest.approx(brute_force_auc(s, y)) and se[("x", "same")] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        metrics.paired_auc({"x": s, "same": s}, np.ones(6))


def test_log_loss_hand_value():
    expected = -(math.log(0.9) + math.log(0.8)) / 2
    assert metrics.log_loss([0.9, 0.2], [1, 0]) == pytest.approx(expected)
    assert expected == pytest.approx(0.164252, abs=1e-6)


def test_log_loss_clips_certain_mistakes():
    assert metrics.log_loss([0.0], [1]) == pytest.approx(-math.log(metrics.EPS))
    assert math.isfinite(metrics.log_loss([1.0, 0.0], [0, 1]))


def test_normalized_entropy():
    y = [1, 0, 0, 0]
    assert metrics.normalized_entropy([0.25] * 4, y) == pytest.approx(1.0)
    p = [0.9, 0.2, 0.1, 0.3]
    ll = -(math.log(0.9) + math.log(0.8) + math.log(0.9) + math.log(0.7)) / 4
    h = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    assert h == pytest.approx(0.562335, abs=1e-6)
    assert metrics.normalized_entropy(p, y) == pytest.approx(ll / h)


def test_calibration_ratio():
    assert metrics.calibration_ratio([0.2, 0.2, 0.2, 0.2], [1, 0, 0, 0]) == pytest.approx(0.8)
    assert math.isnan(metrics.calibration_ratio([0.1], [0]))


def test_ece_hand_value():
    # two equal-mass bins: {0.1, 0.1} vs labels {0, 1}: |0.1 - 0.5| = 0.4;
    # {0.9, 0.9} vs {1, 1}: 0.1; weighted: 0.5 * 0.4 + 0.5 * 0.1 = 0.25
    assert metrics.ece([0.1, 0.9, 0.1, 0.9], [0, 1, 1, 1], bins=2) == pytest.approx(0.25)


def test_ece_twenty_equal_mass_bins():
    # 40 rows -> 20 bins of 2 rows, each bin holds one prediction value
    p = np.repeat(np.linspace(0.05, 0.95, 20), 2)
    y = np.tile([1, 0], 20)  # every bin has observed rate 0.5
    expected = np.mean(np.abs(np.linspace(0.05, 0.95, 20) - 0.5))
    assert metrics.ece(p, y) == pytest.approx(expected)


def test_ece_small_for_calibrated_predictions():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 0.2, 200_000)
    y = rng.random(p.size) < p
    assert metrics.ece(p, y) < 0.003
    assert metrics.calibration_ratio(p, y) == pytest.approx(1.0, abs=0.02)


def test_summarize_values_by_hand():
    # Five rows, two clicks; the positive 0.3 ties a negative 0.3.
    p = [0.1, 0.6, 0.3, 0.8, 0.3]
    y = [0, 1, 1, 0, 0]
    s = metrics.summarize(p, y)
    assert set(s) == {"rows", "positives", "observed_rate", "mean_prediction", "auc", "log_loss", "ne", "calibration_ratio", "pr_auc", "ece"}
    assert s["rows"] == 5 and s["positives"] == 2
    assert s["observed_rate"] == pytest.approx(2 / 5)
    assert s["mean_prediction"] == pytest.approx(2.1 / 5)
    # Pairs (positive, negative): 0.6 beats 0.1 and 0.3, loses to 0.8 (2); 0.3 beats 0.1,
    # ties 0.3, loses to 0.8 (1.5): 3.5 of 6.
    assert s["auc"] == pytest.approx(3.5 / 6)
    ll = -(math.log(0.9) + math.log(0.6) + math.log(0.3) + math.log(0.2) + math.log(0.7)) / 5
    assert ll == pytest.approx(0.757254, abs=1e-6)
    assert s["log_loss"] == pytest.approx(ll)
    h = -(0.4 * math.log(0.4) + 0.6 * math.log(0.6))  # entropy of the 40 % click rate
    assert h == pytest.approx(0.673012, abs=1e-6)
    assert s["ne"] == pytest.approx(ll / h)
    # sum(p) / sum(y) (same rows on both sides): 2.1 / 2.
    assert s["calibration_ratio"] == pytest.approx(1.05)
    # Average precision, thresholds high to low: 0.8 (0 of 1 seen), 0.6 (recall 1/2 at
    # precision 1/2), the tied 0.3s (recall 1 at precision 2/4), 0.1 (adds no recall).
    assert s["pr_auc"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.5)
    # Five rows, 20 bins asked: one row a bin, ECE = mean |p - y| = (0.1 + 0.4 + 0.7 + 0.8 + 0.3) / 5.
    assert s["ece"] == pytest.approx(2.3 / 5)
    assert "ece" not in metrics.summarize(p, y, with_ece=False)
