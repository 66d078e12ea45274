"""The model zoo: every kind trains, exports with both heads, and matches PyTorch;
focal loss; the streaming loader; the report and zoo commands."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from ctrbid_train.__main__ import main
from ctrbid_train.data import iter_batches, load_features
from ctrbid_train.export import onnxruntime_session, predict_onnx, read_metadata
from ctrbid_train.model import load_checkpoint, predict_batches
from ctrbid_train.nets import KINDS
from ctrbid_train.train import train

from conftest import make_synthetic

#: A few hundred steps: enough to move every weight, not to converge.
TINY = {"train": {"batch_size": 512, "epochs": 1, "lr": 0.003, "emb_lr": 0.01}, "model": {"hidden": [16, 8]}}


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("zoo") / "feat", 12_000, seed=7, ctr=0.05)


@pytest.fixture(scope="module")
def runs(small, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for kind in KINDS:
        overrides = {**TINY, "model": {**TINY["model"], "kind": kind}}
        out[kind] = (root / kind, train(small, root / kind, overrides=overrides))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_exports_both_heads_and_matches_torch(kind, runs, small):
    out, report = runs[kind]
    proto = onnx.load(str(out / "model.onnx"))
    assert [o.name for o in proto.graph.output] == ["pctr", "pcvr"]
    md = read_metadata(out / "model.onnx")
    assert md["ctrbid.kind"] == kind and md["ctrbid.heads"] == "pctr,pcvr"
    assert set(json.loads(md["ctrbid.calibration"])) == {"pctr", "pcvr"}
    fs = load_features(small)
    rows = slice(fs.rows - 3000, fs.rows)
    net, _ = load_checkpoint(out / "model.pt")
    p_torch = predict_batches(net, fs.cat[rows], fs.num[rows])
    p_ort = predict_onnx(onnxruntime_session(out / "model.onnx"), fs.cat[rows], fs.num[rows])
    assert p_ort.shape == p_torch.shape == (3000, 2)
    assert np.max(np.abs(p_ort - p_torch)) <= 1e-5
    assert np.all((p_ort > 0) & (p_ort < 1))
    # Trained for real: the CTR head ranks the synthetic truth better than chance.
    assert report["test"]["ctr"]["auc"] > 0.6, report["test"]["ctr"]["auc"]


def test_kinds_differ(runs):
    aucs = {k: r["test"]["ctr"]["auc"] for k, (_, r) in runs.items()}
    assert len(set(aucs.values())) == len(KINDS), aucs


def test_focal_loss_trains_and_is_calibrated_afterwards(small, tmp_path):
    # Focal loss shrinks the gradients of easy rows: it needs a few more steps.
    overrides = {**TINY, "train": {**TINY["train"], "loss": "focal", "focal_gamma": 1.0, "epochs": 3, "patience": 3}}
    report = train(small, tmp_path / "focal", overrides=overrides)
    ctr = report["test"]["ctr"]
    # Focal loss pulls raw probabilities towards 0.5; the calibration map undoes it.
    assert abs(ctr["uncalibrated"]["calibration_ratio"] - 1) > abs(ctr["calibration_ratio"] - 1)
    assert 0.8 < ctr["calibration_ratio"] < 1.2 and ctr["auc"] > 0.6


def test_clicked_only_cvr_objective(small, tmp_path):
    report = train(small, tmp_path / "clicked", overrides={**TINY, "cvr": {"objective": "clicked"}})
    assert report["heads"] == ["ctr", "cvr"] and report["test"]["cvr"]["rows"] == report["test"]["ctr"]["positives"]


def test_no_conversions_means_one_head(tmp_path):
    feat = make_synthetic(tmp_path / "feat", 4_000, seed=2)
    (feat / "conv.npy").unlink()
    report = train(feat, tmp_path / "m", overrides=TINY)
    assert report["heads"] == ["ctr"] and report["outputs"] == ["pctr"]
    assert [o.name for o in onnx.load(str(tmp_path / "m" / "model.onnx")).graph.output] == ["pctr"]


def test_loader_streams_every_row_once_in_bounded_chunks(small):
    fs = load_features(small)
    seen = []
    for cat, num, click, conv in iter_batches(fs, 100, 9_100, 256, np.random.default_rng(0), chunk_rows=2_048):
        assert cat.shape[0] <= 256 and num.shape[0] == click.shape[0] == conv.shape[0] == cat.shape[0]
        seen.append(cat)
    rows = np.concatenate(seen)
    assert rows.shape[0] == 9_000
    # Every row exactly once: compare sorted row tuples with the source range.
    want = np.asarray(fs.cat[100:9_100])
    assert np.array_equal(np.unique(rows, axis=0), np.unique(want, axis=0))
    # Shuffled: the first batch is not the first rows.
    assert not np.array_equal(seen[0], want[:256])


def test_report_command_writes_its_files(runs, small, tmp_path):
    dirs = [str(runs[k][0]) for k in ("lr", "wide_deep")]
    assert main(["report", "--features", str(small), "--out", str(tmp_path / "rep"), *dirs]) == 0
    md = (tmp_path / "rep" / "report.md").read_text()
    for needle in ("| lr |", "| wide_deep |", "| oracle |", "pCVR", "Per-field calibration error", "reliability.png",
                   "## AUC differences, paired", "| model | AUC | minus lr | oracle minus model |"):
        assert needle in md, needle
    for png in ("reliability.png", "roc.png"):
        data = (tmp_path / "rep" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    rep = json.loads((tmp_path / "rep" / "report.json").read_text())
    wd = rep["models"]["wide_deep"]
    assert wd["rows_per_second"] > 1_000
    assert set(wd["heads"]) == {"ctr", "cvr"} and 0.5 < wd["heads"]["ctr"]["auc"] <= 1
    assert rep["models"]["oracle"]["heads"]["ctr"]["auc"] > wd["heads"]["ctr"]["auc"] - 0.05
    diffs = rep["auc_differences"]["ctr"]
    gap = diffs["vs_oracle"]["wide_deep"]
    assert gap["diff"] == pytest.approx(rep["models"]["oracle"]["heads"]["ctr"]["auc"] - wd["heads"]["ctr"]["auc"])
    assert 0 < gap["se"] < 0.1
    assert diffs["ordering"] is None  # no fm among the runs: no ordering to judge


def test_zoo_selects_on_validation_and_exports(small, tmp_path):
    from ctrbid_train.config import CONFIG_DIR
    from ctrbid_train.zoo import run_zoo

    configs = [CONFIG_DIR / "lr.toml", CONFIG_DIR / "wide_deep.toml"]
    report = run_zoo(small, tmp_path / "zoo", configs=configs, export=tmp_path / "default", epochs=1, overrides={"train": {"batch_size": 512}})
    zoo = report["zoo"]
    sel = zoo["selection"]
    lowest = min(sel["scores"].values())
    assert zoo["best"] in sel["tied"] and sel["scores"][zoo["best"]] <= lowest * (1 + sel["tolerance"])
    assert sel["rows_per_second"][zoo["best"]] == max(sel["rows_per_second"][n] for n in sel["tied"])
    for f in ("model.onnx", "model.pt", "eval.json", "report.md", "reliability.png", "roc.png", "zoo.json"):
        assert (tmp_path / "default" / f).exists(), f
    assert json.loads((tmp_path / "default" / "eval.json").read_text())["model_kind"] == zoo["best"]
    for q in zoo["int8"]["variants"].values():
        ok = (
            all(v <= 0.001 for v in q["auc_loss"].values())
            and all(abs(v) <= 0.01 for v in q["calibration_shift"].values())
            and q["speedup"] > 1.0
            and q["batch_dependence"] <= 1e-4
        )
        assert q["serve"] == ok, q
    # Static scales make a row's score independent of its batch; dynamic ones do not.
    assert zoo["int8"]["variants"]["static"]["batch_dependence"] <= 1e-4
    assert (tmp_path / "default" / "model.int8.onnx").exists() == (zoo["int8"]["served"] is not None)
    assert "## Selection" in (tmp_path / "default" / "report.md").read_text()


def test_zoo_jobs_train_in_processes_of_their_own_with_the_same_results(small, tmp_path):
    """Two trainings at a time, each spawned in a process of its own: the same models
    as one after the other (fixed seeds, one thread each), reported in config order."""
    from ctrbid_train.config import CONFIG_DIR
    from ctrbid_train.zoo import run_zoo

    configs = [CONFIG_DIR / "lr.toml", CONFIG_DIR / "fm.toml"]
    overrides = {"train": {"batch_size": 512}}
    report = run_zoo(small, tmp_path / "zoo", configs=configs, epochs=1, overrides=overrides, jobs=2)
    assert list(report["zoo"]["wall_seconds"]) == ["lr", "fm"]
    assert all(s > 0 for s in report["zoo"]["wall_seconds"].values())
    alone = train(small, tmp_path / "lr-alone", config_path=CONFIG_DIR / "lr.toml", epochs=1, overrides=overrides)
    pooled = json.loads((tmp_path / "zoo" / "lr" / "eval.json").read_text())
    for split in ("valid", "test"):
        for head in ("ctr", "cvr"):
            assert pooled[split][head]["log_loss"] == alone[split][head]["log_loss"], (split, head)
