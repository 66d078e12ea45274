"""Prediction parity between PyTorch, Python ONNX Runtime and the Rust scorer.

The Rust scorer is run as
``<ctrbid> score --model M --features DIR --out preds.npy --limit ROWS
[--output pcvr]`` and must write float32 [ROWS] of that output (default
``pctr``) for the first ROWS rows, in row order. Every output of the model is
compared, for every pair of backends.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import tempfile
from itertools import combinations
from pathlib import Path

import numpy as np

from .data import load_features
from .predict import predict_rows, resolve_model_files

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TOLERANCE = 1e-5


class ParityError(RuntimeError):
    """Predictions disagree, or a scorer could not be run."""


def default_ctrbid_bin() -> Path:
    """``$CTRBID_BIN`` (made absolute against the working directory) if set, else
    ``target/release/ctrbid`` under the repository root."""
    env = os.environ.get("CTRBID_BIN")
    return Path(env).resolve() if env else REPO_ROOT / "target" / "release" / "ctrbid"


def run_rust_scorer(
    ctrbid: str | Path, model: Path, features_dir: Path, rows: int, output: str = "pctr", timeout: float = 600
) -> np.ndarray:
    """Run ``ctrbid score`` and return its predictions (float32 [rows])."""
    ctrbid = Path(ctrbid)
    if not ctrbid.is_file() or not os.access(ctrbid, os.X_OK):
        raise ParityError(
            f"Rust scorer not found or not executable at {ctrbid}. Build it with "
            "`cargo build --release`, point CTRBID_BIN (or --ctrbid) at the binary, "
            "or pass --no-rust to compare PyTorch and ONNX Runtime only."
        )
    with tempfile.TemporaryDirectory(prefix="ctrbid-parity-") as tmp:
        out = Path(tmp) / "preds.npy"
        cmd = [str(ctrbid), "score", "--model", str(model), "--features", str(features_dir), "--out", str(out), "--limit", str(rows)]
        if output != "pctr":
            cmd += ["--output", output]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise ParityError(
                f"`{shlex.join(cmd)}` failed with exit code {proc.returncode}:\n{proc.stderr.strip()[-4000:]}"
            )
        if not out.exists():
            raise ParityError(f"`{shlex.join(cmd)}` succeeded but wrote no {out}")
        preds = np.load(out)
    if preds.dtype != np.float32 or preds.shape != (rows,):
        raise ParityError(f"Rust scorer wrote {preds.dtype} {preds.shape}, expected float32 ({rows},)")
    return preds


def check_parity(
    model: str | Path,
    features_dir: str | Path,
    rows: int = 10_000,
    ctrbid: str | Path | None = None,
    use_rust: bool = True,
    tolerance: float = DEFAULT_TOLERANCE,
    out: str | Path | None = None,
) -> dict:
    """Score the first ``rows`` rows with every backend and compare each pair.

    Writes the report (default: ``parity.json`` next to the model) and raises
    ``ParityError`` if any pair differs by more than ``tolerance``.
    """
    onnx_path, pt_path = resolve_model_files(model)
    fs = load_features(features_dir)
    rows = min(int(rows), fs.rows)
    cat, num = fs.cat[:rows], fs.num[:rows]

    preds = {
        "torch": predict_rows(pt_path, cat, num, backend="torch"),
        "onnxruntime": predict_rows(onnx_path, cat, num, backend="onnxruntime"),
    }
    from .export import onnxruntime_session, output_names

    outputs = output_names(onnxruntime_session(onnx_path, threads=1))
    ctrbid_path = Path(ctrbid) if ctrbid else default_ctrbid_bin()
    if use_rust:
        preds["rust"] = np.stack(
            [run_rust_scorer(ctrbid_path, onnx_path, Path(features_dir), rows, output=o) for o in outputs], axis=1
        )

    diffs = {}
    for a, b in combinations(preds, 2):
        for j, name in enumerate(outputs):
            d = np.abs(preds[a][:, j].astype(np.float64) - preds[b][:, j].astype(np.float64))
            key = f"{a}_vs_{b}" if name == "pctr" else f"{a}_vs_{b}_{name}"
            diffs[key] = float(d.max(initial=0.0))
    ok = all(d <= tolerance for d in diffs.values())
    import onnxruntime
    import torch

    report = {
        "model": str(onnx_path),
        "features": str(features_dir),
        "rows": rows,
        "tolerance": tolerance,
        "max_abs_diff": diffs,
        "ok": ok,
        "backends": list(preds),
        "rust_bin": str(ctrbid_path) if use_rust else None,
        "outputs": outputs,
        "mean": {k: {o: float(v[:, j].mean()) if v.size else None for j, o in enumerate(outputs)} for k, v in preds.items()},
        "torch_version": torch.__version__,
        "onnxruntime_version": onnxruntime.__version__,
    }
    out_path = Path(out) if out else onnx_path.parent / "parity.json"
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    if not ok:
        bad = {k: v for k, v in diffs.items() if v > tolerance}
        raise ParityError(f"prediction mismatch above {tolerance}: {bad} (report in {out_path})")
    return report
