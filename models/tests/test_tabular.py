"""Public-dataset path with the real Rust binary: the Criteo sample through
``ctrbid features --criteo``, the zoo (two kinds, a few steps) and the report.

200 rows are far too few to judge a model; this proves the path: a one-head
(pCTR only) model per kind, exported, scored by the report against the file's
labels. Needs ``ctrbid`` from ``$CTRBID_BIN`` or ``target/release/ctrbid``.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import onnx
import pytest

from conftest import REPO_ROOT
from ctrbid_train.config import CONFIG_DIR
from ctrbid_train.data import load_features
from ctrbid_train.parity import default_ctrbid_bin
from ctrbid_train.zoo import run_zoo

pytestmark = pytest.mark.rust

CRITEO = REPO_ROOT / "tests" / "fixtures" / "datasets" / "criteo_sample.csv"
SPEC = REPO_ROOT / "models" / "specs" / "criteo.json"


def test_criteo_sample_features_zoo_report(tmp_path):
    ctrbid = default_ctrbid_bin()
    assert ctrbid.is_file(), f"Rust binary not found at {ctrbid}: run `cargo build --release` or set CTRBID_BIN"
    feat = tmp_path / "feat"
    proc = subprocess.run([str(ctrbid), "features", "--criteo", str(CRITEO), "--out", str(feat)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    fs = load_features(feat)
    assert (fs.rows, fs.n_cat, fs.n_num) == (200, 26, 13)
    assert fs.conv is None and fs.pctr_true is None
    labels = np.loadtxt(CRITEO, delimiter=",", skiprows=1, usecols=0, dtype=np.float32)
    assert np.array_equal(np.asarray(fs.click), labels)
    fs.check_indices()
    assert json.loads((feat / "meta.json").read_text())["spec_sha256"] == __import__("hashlib").sha256(SPEC.read_bytes()).hexdigest()

    overrides = {"train": {"batch_size": 32, "chunk_rows": 64}, "model": {"hidden": [8]}}
    report = run_zoo(feat, tmp_path / "zoo", configs=[CONFIG_DIR / "lr.toml", CONFIG_DIR / "deepfm.toml"], epochs=2, overrides=overrides)
    for kind in ("lr", "deepfm"):
        model = tmp_path / "zoo" / kind / "model.onnx"
        assert [o.name for o in onnx.load(str(model)).graph.output] == ["pctr"]
        heads = report["models"][kind]["heads"]
        assert set(heads) == {"ctr"} and heads["ctr"]["rows"] == 20
        assert 0.0 < heads["ctr"]["mean_prediction"] < 1.0
    assert "oracle" not in report["models"], "no true probabilities in public data"
    md = (tmp_path / "zoo" / "report.md").read_text()
    assert "| lr |" in md and "| deepfm |" in md and "pCVR" not in md
