"""Training: time-ordered split, Wide & Deep with early stopping, Platt
calibration, evaluation and export.

``train(features_dir, out_dir, ...)`` writes ``model.onnx``, ``model.pt`` and
``eval.json`` into ``out_dir`` and returns the evaluation dict.
"""

from __future__ import annotations

import copy
import json
import math
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .calibrate import fit_platt
from .config import load_config
from .data import FeatureSet, load_features, split_bounds
from .export import ctrbid_metadata, export_onnx, onnxruntime_session, predict_onnx
from .metrics import summarize
from .model import CalibratedModel, build_model, predict_logits, save_checkpoint

MODEL_KIND = "wide_deep"
MODEL_VERSION = "1"


def log(msg: str) -> None:
    print(f"[ctrbid_train] {msg}", file=sys.stderr, flush=True)


def seed_everything(seed: int, threads: int) -> None:
    """Fixed seeds for python, numpy and torch; CPU thread count."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def jsonable(x):
    """NaN/inf -> None, numpy scalars -> python, recursively (strict JSON)."""
    if isinstance(x, dict):
        return {k: jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _split_tensors(fs: FeatureSet, start: int, end: int):
    """Copy one row range of cat/num/click out of the memory maps."""
    cat = torch.from_numpy(np.array(fs.cat[start:end], dtype=np.int64))
    num = torch.from_numpy(np.array(fs.num[start:end], dtype=np.float32))
    y = torch.from_numpy(np.array(fs.click[start:end], dtype=np.float32))
    return cat, num, y


def _make_optimizers(model: nn.Module, tcfg: dict) -> list[torch.optim.Optimizer]:
    emb = [model.wide_emb.weight, model.deep_emb.weight]
    emb_ids = {id(p) for p in emb}
    mlp_weights = [p for n, p in model.named_parameters() if n.startswith("mlp.") and p.dim() > 1]
    others = [p for p in model.parameters() if id(p) not in emb_ids and all(p is not q for q in mlp_weights)]
    dense_groups = [
        {"params": mlp_weights, "weight_decay": float(tcfg["weight_decay"])},
        {"params": others, "weight_decay": 0.0},
    ]
    lr, emb_lr = float(tcfg["lr"]), float(tcfg["emb_lr"])
    if tcfg["emb_optimizer"] == "sparse_adam":
        return [torch.optim.SparseAdam(emb, lr=emb_lr), torch.optim.AdamW(dense_groups, lr=lr)]
    return [torch.optim.AdamW(dense_groups + [{"params": emb, "weight_decay": 0.0, "lr": emb_lr}], lr=lr)]


def _run_epoch(model, opts, cat, num, y, batch_size: int, emb_l2: float, gen: torch.Generator) -> float:
    """One pass over the training rows in a seeded random order; returns the mean BCE."""
    model.train()
    loss_fn = nn.BCEWithLogitsLoss()
    perm = torch.randperm(cat.shape[0], generator=gen)
    total, seen = 0.0, 0
    for start in range(0, cat.shape[0], batch_size):
        idx = perm[start : start + batch_size]
        logits, wide_rows, deep_rows = model.forward_with_rows(cat[idx], num[idx])
        loss = loss_fn(logits, y[idx])
        objective = loss
        if emb_l2 > 0:
            objective = loss + emb_l2 * (wide_rows.square().sum() + deep_rows.square().sum()) / idx.numel()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        objective.backward()
        for opt in opts:
            opt.step()
        total += float(loss.detach()) * idx.numel()
        seen += idx.numel()
    return total / max(seen, 1)


def _bce_from_logits(logits: torch.Tensor, y: np.ndarray) -> float:
    return float(nn.functional.binary_cross_entropy_with_logits(logits.double(), torch.from_numpy(np.asarray(y, dtype=np.float64))))


def _split_report(p_cal: np.ndarray, p_raw: np.ndarray, y: np.ndarray, truth: np.ndarray | None) -> dict:
    report = summarize(p_cal, y)
    report["uncalibrated"] = summarize(p_raw, y)
    if truth is not None:
        oracle = summarize(truth, y)
        report["oracle"] = {k: oracle[k] for k in ("auc", "log_loss", "ne", "calibration_ratio", "ece", "mean_prediction")}
        report["auc_gap_to_oracle"] = oracle["auc"] - report["auc"]
    return report


def train(
    features_dir: str | Path,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    overrides: dict | None = None,
) -> dict:
    """Train, calibrate, evaluate and export; returns the eval.json dict."""
    cfg = load_config(config_path, overrides)
    if epochs is not None:
        cfg["train"]["epochs"] = int(epochs)
    if seed is not None:
        cfg["train"]["seed"] = int(seed)
    tcfg = cfg["train"]
    seed_everything(int(tcfg["seed"]), int(tcfg["threads"]))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    fs = load_features(features_dir)
    fs.check_indices()
    bounds = split_bounds(fs.rows, float(cfg["split"]["train"]), float(cfg["split"]["valid"]))
    log(f"{fs.rows} rows, F={fs.n_cat}, D={fs.n_num}, cardinality={fs.cardinality}, splits={bounds}")

    cat, num, y = _split_tensors(fs, *bounds["train"])
    v0, v1 = bounds["valid"]
    t0, t1 = bounds["test"]
    y_valid = np.asarray(fs.click[v0:v1], dtype=np.float64)
    y_test = np.asarray(fs.click[t0:t1], dtype=np.float64)

    sparse = tcfg["emb_optimizer"] == "sparse_adam"
    model = build_model(cfg["model"], fs.cardinality, fs.n_cat, fs.n_num, sparse=sparse)
    rate = float(y.double().mean())
    rate = min(max(rate, 1e-6), 1 - 1e-6)
    with torch.no_grad():
        model.bias.fill_(math.log(rate / (1 - rate)))
    opts = _make_optimizers(model, tcfg)
    gen = torch.Generator().manual_seed(int(tcfg["seed"]))
    eval_rows = int(tcfg["eval_batch_size"])

    history: list[dict] = []
    best_loss, best_state, best_epoch, bad_epochs = float("inf"), None, 0, 0
    train_seconds = 0.0
    wall_start = time.perf_counter()
    for epoch in range(1, int(tcfg["epochs"]) + 1):
        t = time.perf_counter()
        train_loss = _run_epoch(model, opts, cat, num, y, int(tcfg["batch_size"]), float(tcfg["emb_l2"]), gen)
        epoch_seconds = time.perf_counter() - t
        train_seconds += epoch_seconds
        t = time.perf_counter()
        valid_loss = _bce_from_logits(predict_logits(model, fs.cat[v0:v1], fs.num[v0:v1], eval_rows), y_valid)
        eval_seconds = time.perf_counter() - t
        history.append(
            {
                "epoch": epoch,
                "train_log_loss": train_loss,
                "valid_log_loss": valid_loss,
                "train_seconds": epoch_seconds,
                "valid_eval_seconds": eval_seconds,
            }
        )
        improved = valid_loss < best_loss - float(tcfg["min_delta"])
        log(
            f"epoch {epoch}: train {train_loss:.5f} valid {valid_loss:.5f} "
            f"({epoch_seconds:.1f}s train, {eval_seconds:.1f}s eval){' *' if improved else ''}"
        )
        if improved:
            best_loss, best_epoch, bad_epochs = valid_loss, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad_epochs += 1
            if bad_epochs >= int(tcfg["patience"]):
                log(f"early stop: no improvement for {bad_epochs} epochs, best epoch {best_epoch}")
                break
    total_seconds = time.perf_counter() - wall_start
    model.load_state_dict(best_state)
    model.eval()
    del cat, num, y

    # Platt calibration on the validation split.
    logits_valid = predict_logits(model, fs.cat[v0:v1], fs.num[v0:v1], eval_rows).double().numpy()
    a, b = fit_platt(logits_valid, y_valid)
    log(f"platt: a={a:.6f} b={b:.6f}")
    calibrated = CalibratedModel(model, a, b).eval()

    logits_test = predict_logits(model, fs.cat[t0:t1], fs.num[t0:t1], eval_rows).double().numpy()
    p_valid = predict_logits(calibrated, fs.cat[v0:v1], fs.num[v0:v1], eval_rows).numpy()
    p_test = predict_logits(calibrated, fs.cat[t0:t1], fs.num[t0:t1], eval_rows).numpy()
    truth = fs.pctr_true
    valid_report = _split_report(p_valid, 1 / (1 + np.exp(-logits_valid)), y_valid, None if truth is None else truth[v0:v1])
    test_report = _split_report(p_test, 1 / (1 + np.exp(-logits_test)), y_test, None if truth is None else truth[t0:t1])
    valid_report["note"] = "Platt parameters were fitted on this split"

    trained_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    headline = {k: test_report[k] for k in ("auc", "log_loss", "ne", "calibration_ratio", "ece", "rows")}
    headline["split"] = "test"
    metadata = ctrbid_metadata(
        fs.meta, MODEL_KIND, MODEL_VERSION, trained_at, jsonable(headline), fs.n_cat, fs.n_num
    )
    onnx_path = out / "model.onnx"
    t = time.perf_counter()
    export_info = export_onnx(
        calibrated,
        onnx_path,
        fs.cardinality,
        fs.n_cat,
        fs.n_num,
        metadata,
        exporter=cfg["export"]["exporter"],
        opset=int(cfg["export"]["opset"]),
    )
    export_info["seconds"] = time.perf_counter() - t
    # Quick self-check of the exported graph on test rows.
    check_rows = min(4096, t1 - t0)
    session = onnxruntime_session(onnx_path)
    p_onnx = predict_onnx(session, fs.cat[t0 : t0 + check_rows], fs.num[t0 : t0 + check_rows])
    export_info["max_abs_diff_torch_vs_onnxruntime"] = float(np.max(np.abs(p_onnx - p_test[:check_rows]), initial=0.0))
    log(f"exported {onnx_path} ({export_info['bytes']} bytes, opset {export_info['opset']}, {export_info['exporter']})")

    epochs_run = len(history)
    report = {
        "model_kind": MODEL_KIND,
        "model_version": MODEL_VERSION,
        "pipeline_version": __version__,
        "trained_at": trained_at,
        "features": {
            "directory": str(features_dir),
            "rows": fs.rows,
            "cat_fields": fs.n_cat,
            "num_fields": fs.n_num,
            "cardinality": fs.cardinality,
            "spec_sha256": fs.meta["spec_sha256"],
            "spec_name": fs.meta.get("spec_name"),
        },
        "splits": {k: {"start": s, "end": e, "rows": e - s} for k, (s, e) in bounds.items()},
        "valid": valid_report,
        "test": test_report,
        "platt": {"a": a, "b": b, "fitted_on": "valid"},
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "best_valid_log_loss_uncalibrated": best_loss,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(epochs_run, 1),
            "total_seconds_with_validation": total_seconds,
            "threads": torch.get_num_threads(),
            "torch_version": torch.__version__,
            "history": history,
        },
        "config": cfg,
        "export": export_info,
        "metadata_props": metadata,
    }
    report = jsonable(report)
    save_checkpoint(out / "model.pt", calibrated, cfg, fs.meta, {"trained_at": trained_at, "metrics": headline})
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    log(
        f"test: auc {test_report['auc']:.4f} logloss {test_report['log_loss']:.5f} ne {test_report['ne']:.4f} "
        f"calib {test_report['calibration_ratio']:.4f} ece {test_report['ece']:.5f}"
        + (f" | oracle auc {test_report['oracle']['auc']:.4f}" if "oracle" in test_report else "")
    )
    return report
