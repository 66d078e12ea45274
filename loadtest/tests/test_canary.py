"""``loadtest/canary.py`` without a server: the hot model it builds predicts ``scale``
times the click probability and nothing else changes; the noisy one moves each row's
logit by a fixed draw of the asked spread and nothing else; a judge's decision line (as the
bidder wrote it in a run of 2026-12-07) is read back into numbers."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "loadtest"))
import canary  # noqa: E402

DETAIL = (
    "judge, look 3: predicts more clicks than come, against the incumbent; over the same time: candidate 1228 wins, "
    "402 clicks, 38.2 expected, 21.6702 USD; incumbent 38835 wins, 12701 clicks, 973.8 expected, 668.1998 USD; "
    "observed/expected clicks 0.807 of the incumbent's (z -4.24), clicks per USD 0.976 of its (z -0.48), clicks per "
    "impression 1.001 of its (z 0.02)"
)


def test_the_hot_model_scales_pctr_only(tmp_path):
    source = ROOT / "tests/fixtures/models/two_heads.onnx"
    hot = canary.hot_model(source, 1.3, tmp_path / "hot.onnx")
    rng = np.random.default_rng(7)
    feeds = {"cat": rng.integers(0, 1000, size=(64, 25), dtype=np.int64),
             "num": rng.normal(size=(64, 3)).astype(np.float32)}
    base = ort.InferenceSession(str(source)).run(["pctr", "pcvr"], feeds)
    scaled = ort.InferenceSession(str(hot)).run(["pctr", "pcvr"], feeds)
    np.testing.assert_allclose(scaled[0], np.minimum(base[0] * 1.3, 1.0), rtol=1e-6)
    np.testing.assert_array_equal(scaled[1], base[1])
    meta = {p.key: p.value for p in onnx.load(str(hot)).metadata_props}
    assert meta["ctrbid.version"] == "1-pctr-x1.3"
    assert meta["ctrbid.spec_sha256"] == {p.key: p.value for p in onnx.load(str(source)).metadata_props}[
        "ctrbid.spec_sha256"]


def test_the_noisy_model_moves_each_rows_logit_by_its_own_fixed_draw(tmp_path):
    source = ROOT / "tests/fixtures/models/two_heads.onnx"
    noisy = canary.noisy_model(source, 0.6, tmp_path / "noisy.onnx")
    rng = np.random.default_rng(11)
    feeds = {"cat": rng.integers(0, 1 << 20, size=(4000, 25), dtype=np.int64),
             "num": rng.normal(size=(4000, 3)).astype(np.float32)}
    base = ort.InferenceSession(str(source)).run(["pctr", "pcvr"], feeds)
    session = ort.InferenceSession(str(noisy))
    moved = session.run(["pctr", "pcvr"], feeds)
    assert moved[0].shape == base[0].shape
    np.testing.assert_array_equal(moved[1], base[1])

    def logit(p):
        p = np.clip(p.astype(np.float64), 1e-7, 1 - 1e-7)
        return np.log(p / (1 - p))

    draw = (logit(moved[0]) - logit(base[0])).ravel()
    # Uniform with sd 0.6: within +-0.6 x sqrt(3), mean 0 and sd 0.6 within sampling error.
    assert np.abs(draw).max() <= 0.6 * 3 ** 0.5 + 1e-3
    assert abs(draw.mean()) < 0.04 and abs(draw.std() - 0.6) < 0.04, (draw.mean(), draw.std())
    # The same row, in another batch, gets the same draw.
    again = session.run(["pctr"], {k: v[::-1].copy() for k, v in feeds.items()})[0]
    np.testing.assert_allclose(again[::-1], moved[0], rtol=1e-6)
    assert {p.key: p.value for p in onnx.load(str(noisy)).metadata_props}["ctrbid.version"] == "1-noise-0.6"


def test_a_decision_is_read_back():
    run = {"variants": {
        "changes": [
            {"variant": "cand", "action": "add", "detail": "model m, share 0.03"},
            {"variant": "cand", "action": "look", "detail": "look 1: no decision yet"},
            {"variant": "cand", "action": "look", "detail": "look 2: no decision yet"},
            {"variant": "cand", "action": "rollback", "detail": DETAIL},
        ],
        "serving": [{"name": "main", "results": {"spend_usd": 700.0}}],
        "retired": [{"name": "cand", "results": {"spend_usd": 21.6702}}],
    }}
    d = canary.decision_of(run)
    assert (d["decision"], d["looks_without_decision"]) == ("rollback", 2)
    assert (d["candidate_clicks"], d["incumbent_clicks"], d["z"]) == (402, 12701, -4.24)
    assert abs(d["spend_share"] - 21.6702 / 668.1998) < 1e-12
    assert d["calibration_ratio"] == 0.807
    assert (d["per_usd_ratio"], d["per_usd_z"]) == (0.976, -0.48)
