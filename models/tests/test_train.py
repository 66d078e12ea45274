"""Training on synthetic arrays: quality, eval.json contents, CLI and contract checks."""

import json

import numpy as np
import pytest

from ctrbid_train import metrics
from ctrbid_train.__main__ import main
from ctrbid_train.data import FeatureError, load_features, split_bounds
from ctrbid_train.parity import ParityError, check_parity

from conftest import FAST_OVERRIDES, make_synthetic


def test_beats_constant_predictor(trained, synth_dir):
    _, report = trained
    fs = load_features(synth_dir)
    splits = report["splits"]
    s, e = splits["train"]["start"], splits["train"]["end"]
    t0, t1 = splits["test"]["start"], splits["test"]["end"]
    train_rate = float(np.mean(fs.click[s:e]))
    y_test = np.asarray(fs.click[t0:t1])
    constant_ll = metrics.log_loss(np.full(y_test.size, train_rate), y_test)
    test = report["test"]["ctr"]
    assert test["log_loss"] < constant_ll - 0.005
    assert test["ne"] < 0.97
    assert test["auc"] > 0.7
    assert 0.8 < test["calibration_ratio"] < 1.2


def test_eval_json_contents(trained):
    out, report = trained
    saved = json.loads((out / "eval.json").read_text())
    assert saved == json.loads(json.dumps(report))
    for split in ("valid", "test"):
        for head in ("ctr", "cvr"):
            r = saved[split][head]
            for key in ("auc", "log_loss", "ne", "calibration_ratio", "ece", "pr_auc", "rows"):
                assert key in r
            assert set(r["oracle"]) >= {"auc", "log_loss", "ne", "calibration_ratio"}
        r = saved[split]["ctr"]
        assert r["oracle"]["auc"] >= r["auc"] - 0.05  # the truth is (nearly) unbeatable
        # The CVR head is judged on the clicked rows.
        assert saved[split]["cvr"]["rows"] == r["positives"]
    assert saved["splits"]["train"]["rows"] == 32_000
    assert saved["splits"]["valid"]["rows"] == 4_000 and saved["splits"]["test"]["rows"] == 4_000
    assert saved["calibration"]["ctr"]["method"] in ("platt", "isotonic")
    assert set(saved["calibration"]["ctr"]["selection"]["held_out_log_loss"]) == {"none", "platt", "platt_slope", "isotonic"}
    t = saved["training"]
    assert 1 <= t["epochs_run"] <= FAST_OVERRIDES["train"]["epochs"]
    assert 1 <= t["best_epoch"] <= t["epochs_run"]
    assert t["seconds_per_epoch"] > 0
    assert saved["model_kind"] == "wide_deep" and saved["config"]["model"]["hidden"] == [64, 32]
    if saved["calibration"]["ctr"].get("note") is None:
        # Either fitted map makes the validation split's mean prediction match its rate.
        assert saved["valid"]["ctr"]["calibration_ratio"] == pytest.approx(1.0, abs=0.01)


def test_training_is_deterministic(tmp_path):
    feat = make_synthetic(tmp_path / "feat", 6_000, seed=11)
    from ctrbid_train.train import train

    overrides = {"model": {"hidden": [16]}, "train": {"batch_size": 512, "epochs": 1}}
    r1 = train(feat, tmp_path / "a", overrides=overrides, seed=5)
    r2 = train(feat, tmp_path / "b", overrides=overrides, seed=5)
    assert r1["test"]["ctr"]["log_loss"] == r2["test"]["ctr"]["log_loss"]
    assert r1["calibration"] == r2["calibration"]


def test_predict_cli_both_backends(trained, synth_dir, tmp_path):
    out, _ = trained
    assert main(["predict", "--model", str(out), "--features", str(synth_dir), "--out", str(tmp_path / "o.npy"), "--limit", "500"]) == 0
    assert main(["predict", "--model", str(out / "model.pt"), "--features", str(synth_dir), "--out", str(tmp_path / "t.npy"), "--backend", "torch", "--limit", "500"]) == 0
    a, b = np.load(tmp_path / "o.npy"), np.load(tmp_path / "t.npy")
    assert a.shape == b.shape == (500,) and a.dtype == np.float32
    assert np.max(np.abs(a - b)) <= 1e-5


def test_parity_fails_loudly_without_rust_binary(trained, synth_dir, tmp_path):
    out, _ = trained
    missing = tmp_path / "no-such-ctrbid"
    with pytest.raises(ParityError, match="--no-rust"):
        check_parity(out / "model.onnx", synth_dir, rows=100, ctrbid=missing)
    rc = main(["parity", "--model", str(out / "model.onnx"), "--features", str(synth_dir), "--rows", "100", "--ctrbid", str(missing)])
    assert rc == 1


def test_out_of_range_index_rejected(tmp_path):
    feat = make_synthetic(tmp_path / "feat", 1_000, seed=1)
    cat = np.load(feat / "cat.npy")
    cat[10, 3] = cat[10, 4]  # an index of the next field's range
    np.save(feat / "cat.npy", cat)
    with pytest.raises(FeatureError, match="column 3"):
        load_features(feat).check_indices()


def test_meta_mismatch_rejected(tmp_path):
    feat = make_synthetic(tmp_path / "feat", 500, seed=1)
    meta = json.loads((feat / "meta.json").read_text())
    meta["num_fields"] = meta["num_fields"][:2]
    (feat / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FeatureError, match="num fields"):
        load_features(feat)


def test_split_bounds_time_ordered():
    assert split_bounds(1000) == {"train": (0, 800), "valid": (800, 900), "test": (900, 1000)}
    with pytest.raises(FeatureError):
        split_bounds(3)
