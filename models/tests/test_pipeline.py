"""End to end with the real Rust binary: simulate -> features -> train -> parity.

Needs ``ctrbid`` with the ``simulate``, ``features`` and ``score`` commands, from
``$CTRBID_BIN`` or ``target/release/ctrbid``. A missing binary is a failure,
not a skip (deselect with ``-m "not rust"`` to run the Python-only tests).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import MODELS_DIR, REPO_ROOT
from ctrbid_train.parity import default_ctrbid_bin

pytestmark = pytest.mark.rust

SPEC = MODELS_DIR / "feature_spec.json"

FAST_CONFIG = """
[model]
hidden = [64, 32]
[train]
batch_size = 512
lr = 0.003
emb_lr = 0.01
patience = 1
"""


def _run(cmd, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600, **kwargs)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def ctrbid():
    path = default_ctrbid_bin()
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"Rust binary not found at {path}: run `cargo build --release` or set CTRBID_BIN")
    return path


def test_simulate_features_train_parity(ctrbid, tmp_path):
    sim, feat, model = tmp_path / "sim", tmp_path / "feat", tmp_path / "model"
    _run([ctrbid, "simulate", "--out", sim, "--impressions", 40000, "--seed", 1])
    _run([ctrbid, "features", "--sim", sim, "--spec", SPEC, "--out", feat])

    # The features contract.
    meta = json.loads((feat / "meta.json").read_text())
    spec = json.loads(SPEC.read_text())
    buckets = [c["buckets"] for c in spec["categorical"]]
    assert meta["cat_fields"] == [c["name"] for c in spec["categorical"]]
    assert meta["num_fields"] == [n["name"] for n in spec["numeric"]]
    assert meta["field_buckets"] == buckets
    assert meta["field_offsets"] == list(np.concatenate([[0], np.cumsum(buckets)[:-1]]).tolist())
    assert meta["cardinality"] == sum(buckets)
    assert len(meta["spec_sha256"]) == 64
    cat = np.load(feat / "cat.npy", mmap_mode="r")
    rows = meta["rows"]
    assert cat.dtype == np.int64 and cat.shape == (rows, len(buckets))
    assert rows >= 40_000, "40000 impressions give at least 40000 rows"
    for name, dtype in [("num", np.float32), ("click", np.float32), ("conv", np.float32), ("ts", np.int64)]:
        arr = np.load(feat / f"{name}.npy", mmap_mode="r")
        assert arr.dtype == dtype and arr.shape[0] == rows, name
    assert np.all(np.diff(np.load(feat / "ts.npy")) >= 0), "rows must be in time order"
    click = np.load(feat / "click.npy")
    assert set(np.unique(click)) <= {0.0, 1.0} and 0.001 < click.mean() < 0.1

    env = dict(os.environ, PYTHONPATH=str(MODELS_DIR), CTRBID_BIN=str(ctrbid))
    py = sys.executable
    # Small batches: the real config's 4096-row batches give a 32k-row log only a few steps.
    config = tmp_path / "fast.toml"
    config.write_text(FAST_CONFIG)
    _run([py, "-m", "ctrbid_train", "train", "--features", feat, "--out", model, "--config", config, "--epochs", 2], env=env, cwd=REPO_ROOT)
    report = json.loads((model / "eval.json").read_text())
    assert report["training"]["epochs_run"] <= 2
    assert report["metadata_props"]["ctrbid.spec_sha256"] == meta["spec_sha256"]
    assert report["test"]["ctr"]["auc"] > 0.55
    assert report["heads"] == ["ctr", "cvr"], "simulator logs carry conversions"
    assert "oracle" in report["test"]["ctr"] and "oracle" in report["test"]["cvr"]

    _run(
        [py, "-m", "ctrbid_train", "parity", "--model", model / "model.onnx", "--features", feat, "--rows", 5000, "--ctrbid", ctrbid],
        env=env,
        cwd=REPO_ROOT,
    )
    parity = json.loads((model / "parity.json").read_text())
    assert parity["ok"] and parity["backends"] == ["torch", "onnxruntime", "rust"]
    for pair, diff in parity["max_abs_diff"].items():
        assert diff <= 1e-5, pair

    # predict (used by the server end-to-end test) agrees with the Rust scorer.
    _run([py, "-m", "ctrbid_train", "predict", "--model", model, "--features", feat, "--out", tmp_path / "p.npy", "--limit", 100], env=env, cwd=REPO_ROOT)
    assert np.load(tmp_path / "p.npy").shape == (100,)


def test_spec_sha_is_of_the_spec_file(ctrbid, tmp_path):
    """Informative: Rust's spec_sha256 should be the SHA-256 of the spec file's bytes
    (that is what the synthetic generator assumes)."""
    sim, feat = tmp_path / "sim", tmp_path / "feat"
    _run([ctrbid, "simulate", "--out", sim, "--impressions", 2000, "--seed", 2])
    _run([ctrbid, "features", "--sim", sim, "--spec", SPEC, "--out", feat])
    meta = json.loads((feat / "meta.json").read_text())
    assert meta["spec_sha256"] == hashlib.sha256(SPEC.read_bytes()).hexdigest()
