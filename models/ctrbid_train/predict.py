"""Batch prediction with the trained model, via PyTorch or ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .data import load_features

BACKENDS = ("onnxruntime", "torch")


def resolve_model_files(model: str | Path) -> tuple[Path, Path]:
    """(model.onnx, model.pt) for a training output directory or either file inside it."""
    p = Path(model)
    directory = p if p.is_dir() else p.parent
    onnx_path = p if p.suffix == ".onnx" else directory / "model.onnx"
    pt_path = p if p.suffix == ".pt" else directory / "model.pt"
    return onnx_path, pt_path


def predict_rows(model: str | Path, cat: np.ndarray, num: np.ndarray, backend: str = "onnxruntime") -> np.ndarray:
    """Every calibrated output for the given rows: float32 [N, outputs] (pctr, then pcvr if any)."""
    onnx_path, pt_path = resolve_model_files(model)
    if backend == "onnxruntime":
        from .export import onnxruntime_session, predict_onnx

        if not onnx_path.exists():
            raise FileNotFoundError(f"no ONNX model at {onnx_path}")
        return predict_onnx(onnxruntime_session(onnx_path), cat, num)
    if backend == "torch":
        from .model import load_checkpoint, predict_batches

        if not pt_path.exists():
            raise FileNotFoundError(f"no PyTorch checkpoint at {pt_path}")
        net, _ = load_checkpoint(pt_path)
        return predict_batches(net, cat, num)
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


def predict(
    model: str | Path,
    features_dir: str | Path,
    out: str | Path,
    backend: str = "onnxruntime",
    limit: int | None = None,
    start: int = 0,
    output: str = "pctr",
) -> np.ndarray:
    """Score rows [start, start + limit) of a features directory; save the
    ``output`` column (``pctr`` or ``pcvr``) as float32 [rows] to ``out``."""
    fs = load_features(features_dir)
    end = fs.rows if limit is None else min(fs.rows, start + int(limit))
    preds = predict_rows(model, fs.cat[start:end], fs.num[start:end], backend)
    column = {"pctr": 0, "pcvr": 1}[output]
    if column >= preds.shape[1]:
        raise ValueError(f"{model} has no {output} output")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, np.ascontiguousarray(preds[:, column], dtype=np.float32))
    return preds[:, column]
