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


# --- isotonic maps, the choice between methods, the exported calibrator --------

import torch  # noqa: E402

from ctrbid_train.calibrate import Calibrator, apply, apply_isotonic, choose, fit_isotonic  # noqa: E402


def _grid(cal):
    z = torch.linspace(-20.0, 10.0, 20_001)
    return Calibrator(cal)(z).numpy()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_isotonic_map_is_monotone_and_bounded(seed):
    z, y = _draw(0.9, -0.3, n=30_000, seed=seed)
    kx, ky = fit_isotonic(z, y)
    assert np.all(np.diff(kx) > 0) and np.all(np.diff(ky) >= 0)
    assert len(kx) <= 256
    p = _grid({"method": "isotonic", "x": kx.tolist(), "y": ky.tolist()})
    assert np.all(np.diff(p) >= 0), "the exported map must never decrease"
    assert p.min() >= 1e-6 and p.max() < 1.0


def test_platt_map_is_monotone():
    p = _grid({"method": "platt", "a": 0.8, "b": -0.2})
    assert np.all(np.diff(p) >= 0)


def test_isotonic_fixes_a_miscalibration_platt_cannot():
    # The truth is not a sigmoid of the logit: a step at z = -3.
    rng = np.random.default_rng(5)
    z = rng.normal(-3.0, 1.0, 200_000)
    y = (rng.random(z.size) < np.where(z > -3.0, 0.08, 0.01)).astype(np.float64)
    cal = choose(z, y, "auto")
    assert cal["method"] == "isotonic"
    scores = cal["selection"]["held_out_log_loss"]
    assert scores["isotonic"] < scores["platt"]
    assert apply(cal, np.array([-5.0]))[0] == pytest.approx(0.01, abs=0.003)
    assert apply(cal, np.array([-1.0]))[0] == pytest.approx(0.08, abs=0.01)


def test_auto_keeps_platt_when_the_truth_is_a_sigmoid():
    z, y = _draw(0.7, -0.4, n=100_000, seed=9)
    assert choose(z, y, "auto")["method"] == "platt"


def test_torch_calibrator_matches_numpy():
    z, y = _draw(1.1, 0.2, n=20_000, seed=3)
    kx, ky = fit_isotonic(z, y)
    zz = np.linspace(-9, 3, 5_000)
    got = Calibrator({"method": "isotonic", "x": kx.tolist(), "y": ky.tolist()})(torch.tensor(zz, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(got, apply_isotonic(zz, kx, ky), atol=2e-6)


def test_isotonic_single_block():
    kx, ky = fit_isotonic([0.0, 0.0, 0.0, 0.0], [0, 1, 0, 0])
    assert apply_isotonic([-3.0, 0.0, 3.0], kx, ky) == pytest.approx([0.25, 0.25, 0.25])


def test_platt_slope_keeps_the_heads_mean_and_fits_its_slope():
    # An over-confident head: the truth is sigmoid(0.6 z - 1.5) for logits z.
    z, y = _draw(0.6, -1.5, n=200_000, seed=4)
    cal = choose(z, y, "platt_slope")
    assert cal["method"] == "platt" and cal["a"] == pytest.approx(0.6, abs=0.05)
    head = 1.0 / (1.0 + np.exp(-z))
    assert apply(cal, z).mean() == pytest.approx(head.mean(), rel=1e-6)


def test_auto_is_judged_on_the_later_rows():
    # The head is right, but the earlier half of the calibration period clicked 20 %
    # more (a noisy period): a map fitted on it must not win on the later half.
    rng = np.random.default_rng(8)
    z = rng.normal(-4.0, 1.0, 400_000)
    shift = np.where(np.arange(z.size) < z.size // 2, np.log(1.2), 0.0)
    y = (rng.random(z.size) < 1.0 / (1.0 + np.exp(-(z + shift)))).astype(np.float64)
    cal = choose(z, y, "auto")
    scores = cal["selection"]["held_out_log_loss"]
    assert cal["selection"]["fitted_on"].startswith("earlier half")
    assert scores["platt"] > min(scores["none"], scores["platt_slope"])
    assert cal["selection"]["chosen"] in ("none", "platt_slope")


def test_cvr_study_serves_what_training_served_and_levels_on_train_and_valid(trained, synth_dir):
    """``cvr_study``: its "auto" way is the map training chose, so it reproduces the
    served model's test pCVR calibration; its "level from train + valid" map puts the
    mean prediction on those splits' clicked rows at their conversion rate."""
    import numpy as np

    from ctrbid_train import calibrate
    from ctrbid_train.cvr_study import WAYS, study
    from ctrbid_train.data import load_features
    from ctrbid_train.model import load_checkpoint, predict_batches

    out, report = trained
    result = study(out, synth_dir)
    assert list(result["ways"]) == list(WAYS)
    served = report["test"]["cvr"]
    auto = result["ways"]["auto"]
    assert auto["calibration_ratio"] == pytest.approx(served["calibration_ratio"], rel=1e-5)
    assert auto["calibration_ratio_vs_truth"] == pytest.approx(served["calibration_ratio_vs_truth"], rel=1e-5)
    assert result["conversions"]["test"] == int(round(served["positives"]))

    fs = load_features(synth_dir)
    end = report["splits"]["valid"]["end"]
    idx = np.flatnonzero(np.asarray(fs.click[:end]) > 0.5)
    model, _ = load_checkpoint(out / "model.pt")
    z = predict_batches(model.base, fs.cat[idx], fs.num[idx])[:, 1]
    rate = float(np.asarray(fs.conv[idx], dtype=np.float64).mean())
    level = result["ways"]["level from train + valid"]["map"]
    assert level["a"] == 1.0
    assert calibrate.apply(level, z).mean() == pytest.approx(rate, rel=1e-6)
    assert result["conversions"]["train"] + result["conversions"]["valid"] == int(round(rate * idx.size))
