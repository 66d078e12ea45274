"""Training one model: time-ordered split, early stopping, calibration, evaluation, export.

``train(features_dir, out_dir, ...)`` writes ``model.onnx``, ``model.pt`` and
``eval.json`` into ``out_dir`` and returns the evaluation dict. Under
``torchrun`` the processes train one model data-parallel (``distributed.py``);
rank 0 writes and returns the dict, the other ranks return None. The CTR head
is evaluated on every test row against the click; the CVR head on the clicked
test rows against the conversion (what it predicts: a conversion given a
click). With simulator data the report carries the oracle (the true
probabilities) for both.
"""

from __future__ import annotations

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
from . import calibrate, distributed
from .config import load_config
from .data import FeatureSet, iter_batches, load_features, split_bounds
from .export import ctrbid_metadata, export_onnx, onnxruntime_session, predict_onnx
from .losses import Loss
from .metrics import summarize
from .model import OUTPUT_OF_HEAD, CalibratedModel, ServingGraph, build_model, predict_batches, save_checkpoint

MODEL_VERSION = "2"
#: The headline metrics of a head (eval.json, the ONNX metadata, the report).
HEADLINE = ("auc", "log_loss", "ne", "calibration_ratio", "ece", "pr_auc", "rows")


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


def pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but torch sees no CUDA device")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def heads_for(fs: FeatureSet, cvr_cfg: dict) -> tuple[str, ...]:
    """('ctr',) or ('ctr', 'cvr'): a CVR head needs conversions in the data."""
    has_conv = fs.conv is not None and float(np.asarray(fs.conv[: min(fs.rows, 1 << 22)]).max(initial=0.0)) > 0
    enabled = cvr_cfg["enabled"]
    if enabled is True and not has_conv:
        raise ValueError(f"cvr.enabled = true but {fs.directory} has no conversions (conv.npy)")
    return ("ctr", "cvr") if (enabled is True or (enabled == "auto" and has_conv)) else ("ctr",)


def _make_optimizers(model: nn.Module, tcfg: dict) -> list[torch.optim.Optimizer]:
    tables = model.embedding_tables()
    table_ids = {id(p) for p in tables}
    matrices = [p for n, p in model.named_parameters() if id(p) not in table_ids and p.dim() > 1]
    matrix_ids = {id(p) for p in matrices}
    others = [p for p in model.parameters() if id(p) not in table_ids and id(p) not in matrix_ids]
    dense_groups = [
        {"params": matrices, "weight_decay": float(tcfg["weight_decay"])},
        {"params": others, "weight_decay": 0.0},
    ]
    lr, emb_lr = float(tcfg["lr"]), float(tcfg["emb_lr"])
    if tcfg["emb_optimizer"] == "sparse_adam":
        return [torch.optim.SparseAdam(tables, lr=emb_lr), torch.optim.AdamW(dense_groups, lr=lr)]
    return [torch.optim.AdamW(dense_groups + [{"params": tables, "weight_decay": 0.0, "lr": emb_lr}], lr=lr)]


class Objective:
    """The training objective of a one- or two-head model, per batch.

    CTR: ``loss(pCTR, click)``. CVR, ESMM: ``loss(pCTR x pCVR, click x conv)``
    over all rows; CVR, clicked: ``loss(pCVR, conv)`` on clicked rows, summed
    and divided by the batch size (so its weight grows with the click rate).
    """

    def __init__(self, loss: Loss, heads: tuple[str, ...], cvr_cfg: dict):
        self.loss, self.heads = loss, heads
        self.objective, self.weight = cvr_cfg["objective"], float(cvr_cfg["weight"])

    def parts(self, z: torch.Tensor, click: torch.Tensor, conv: torch.Tensor | None) -> dict[str, torch.Tensor]:
        out = {"ctr": self.loss.of_logit(z[:, 0], click).mean()}
        if "cvr" in self.heads:
            if self.objective == "esmm":
                out["cvr"] = self.loss.of_product(z[:, 0], z[:, 1], click * conv).mean()
            else:
                out["cvr"] = (self.loss.of_logit(z[:, 1], conv) * click).sum() / click.numel()
        return out

    def total(self, parts: dict[str, torch.Tensor]) -> torch.Tensor:
        return parts["ctr"] + self.weight * parts["cvr"] if "cvr" in parts else parts["ctr"]


def _to(device, *arrays):
    return [None if a is None else torch.from_numpy(a).to(device) for a in arrays]


def _run_epoch(net, opts, objective, fs, bounds, tcfg, gen, dist: distributed.Dist) -> dict:
    """One pass over the training rows; returns the mean of each objective part over every rank's rows.

    ``net`` is ``distributed.wrap(model)``: its forward returns the logits and
    the embedding rows looked up. Each rank trains on its part of every global
    batch, its loss weighted so that DDP's mean gradient is the whole batch's
    (``distributed.part``).
    """
    net.train()
    sums: dict[str, float] = {}
    seen = 0
    emb_l2 = float(tcfg["emb_l2"])
    for batch in iter_batches(fs, *bounds, int(tcfg["batch_size"]), gen, int(tcfg["chunk_rows"])):
        batch_rows = batch[0].shape[0]
        lo, hi, weight = distributed.part(batch_rows, dist)
        cat, num, click, conv = _to(dist.device, *(None if a is None else a[lo:hi] for a in batch))
        z, rows = net(cat, num)
        parts = objective.parts(z, click, conv)
        total = objective.total(parts)
        if emb_l2 > 0:
            total = total + emb_l2 * sum(r.square().sum() for r in rows) / cat.shape[0]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        (total * weight).backward()
        for opt in opts:
            opt.step()
        n = weight * batch_rows / dist.world  # the rows this rank stands for
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach()) * n
        seen += n
    seen, *totals = distributed.all_sum(dist, [float(seen), *sums.values()])
    return {k: v / max(seen, 1) for k, v in zip(sums, totals)}


@torch.inference_mode()
def _valid_objective(objective, z: np.ndarray, click: np.ndarray, conv: np.ndarray | None) -> dict:
    """The training objective (BCE) on held-out rows, in float64."""
    zt = torch.from_numpy(z.astype(np.float64))
    parts = objective.parts(zt, torch.from_numpy(click), None if conv is None else torch.from_numpy(conv))
    return {k: float(v) for k, v in parts.items()}


def _head_report(p: np.ndarray, p_raw: np.ndarray, y: np.ndarray, truth: np.ndarray | None) -> dict:
    report = summarize(p, y)
    report["uncalibrated"] = summarize(p_raw, y, with_ece=False)
    if truth is not None:
        oracle = summarize(truth, y)
        report["oracle"] = {k: oracle[k] for k in HEADLINE + ("mean_prediction",)}
        report["auc_gap_to_oracle"] = oracle["auc"] - report["auc"]
        # Noise-free calibration, simulator only: mean prediction / mean true probability.
        report["calibration_ratio_vs_truth"] = float(p.mean() / truth.mean()) if truth.size else float("nan")
    return report


def evaluate_split(probs: np.ndarray, logits: np.ndarray, heads, click, conv, pctr_true, pcvr_true) -> dict:
    """Per head metrics of one split (CVR on the clicked rows)."""
    sigmoid = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    out = {"ctr": _head_report(probs[:, 0], sigmoid[:, 0], click, pctr_true)}
    if "cvr" in heads:
        clicked = click > 0.5
        out["cvr"] = _head_report(
            probs[clicked, 1], sigmoid[clicked, 1], conv[clicked], None if pcvr_true is None else pcvr_true[clicked]
        )
        out["cvr"]["note"] = "conversion given a click, on the clicked rows of the split"
    return out


def _slice(arr, s, e, dtype=np.float64):
    return None if arr is None else np.asarray(arr[s:e], dtype=dtype)


def train(
    features_dir: str | Path,
    out_dir: str | Path,
    config_path: str | Path | None = None,
    epochs: int | None = None,
    seed: int | None = None,
    overrides: dict | None = None,
) -> dict | None:
    """Train, calibrate, evaluate and export; returns the eval.json dict (None on a rank other than 0)."""
    cfg = load_config(config_path, overrides)
    if epochs is not None:
        cfg["train"]["epochs"] = int(epochs)
    if seed is not None:
        cfg["train"]["seed"] = int(seed)
    tcfg, kind = cfg["train"], cfg["model"]["kind"]
    seed_everything(int(tcfg["seed"]), int(tcfg["threads"]))  # the same on every rank
    sparse = tcfg["emb_optimizer"] == "sparse_adam"
    dist = distributed.from_env(pick_device(tcfg["device"]), sparse_gradients=sparse)
    device = dist.device
    out = Path(out_dir)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)

    fs = load_features(features_dir)
    fs.check_indices()
    heads = heads_for(fs, cfg["cvr"])
    bounds = split_bounds(fs.rows, float(cfg["split"]["train"]), float(cfg["split"]["valid"]))
    if dist.is_main:
        log(
            f"{kind}: {fs.rows} rows, F={fs.n_cat}, D={fs.n_num}, cardinality={fs.cardinality}, heads={heads}, "
            f"splits={bounds}, device={device}, processes={dist.world}"
        )
    (v0, v1), (t0, t1) = bounds["valid"], bounds["test"]
    split = {
        name: {
            "click": _slice(fs.click, s, e),
            "conv": _slice(fs.conv, s, e) if "cvr" in heads else None,
            "pctr_true": _slice(fs.pctr_true, s, e),
            "pcvr_true": _slice(fs.pcvr_true, s, e) if "cvr" in heads else None,
        }
        for name, (s, e) in (("valid", (v0, v1)), ("test", (t0, t1)))
    }

    model = build_model(cfg["model"], fs.cardinality, fs.n_cat, fs.n_num, heads=heads, sparse=sparse)
    tr0, tr1 = bounds["train"]
    train_click = np.asarray(fs.click[tr0:tr1], dtype=np.float64)  # 8 bytes a row: fine at 10M rows
    click_rate = min(max(float(train_click.mean()), 1e-6), 1 - 1e-6)
    model.towers["ctr"].set_bias(math.log(click_rate / (1 - click_rate)))
    if "cvr" in heads:
        train_conv = np.asarray(fs.conv[tr0:tr1], dtype=np.float64)
        conv_rate = min(max(float(train_conv.sum() / max(train_click.sum(), 1.0)), 1e-4), 0.5)
        model.towers["cvr"].set_bias(math.log(conv_rate / (1 - conv_rate)))
        del train_conv
    del train_click
    model.to(device)
    if dist.world > 1:  # the weights are drawn (the same on every rank); dropout masks must differ per rank
        torch.manual_seed(int(tcfg["seed"]) + dist.rank)
    opts = _make_optimizers(model, tcfg)
    objective = Objective(Loss(tcfg["loss"], tcfg["focal_gamma"]), heads, cfg["cvr"])
    bce_objective = Objective(Loss("bce"), heads, cfg["cvr"])
    gen = np.random.default_rng(int(tcfg["seed"]))
    eval_rows = int(tcfg["eval_batch_size"])

    def logits_of(s, e):
        return predict_batches(model, fs.cat[s:e], fs.num[s:e], eval_rows, device=device)

    history: list[dict] = []
    best_loss, best_state, best_epoch, bad_epochs = float("inf"), None, 0, 0
    train_seconds = 0.0
    wall_start = time.perf_counter()
    with distributed.joined(dist):
        net = distributed.wrap(model, dist)
        for epoch in range(1, int(tcfg["epochs"]) + 1):
            t = time.perf_counter()
            train_parts = _run_epoch(net, opts, objective, fs, bounds["train"], tcfg, gen, dist)
            epoch_seconds = time.perf_counter() - t
            train_seconds += epoch_seconds
            stop = False
            if dist.is_main:  # validation and the early-stopping decision: rank 0 alone
                t = time.perf_counter()
                valid_parts = _valid_objective(bce_objective, logits_of(v0, v1), split["valid"]["click"], split["valid"]["conv"])
                valid_loss = valid_parts["ctr"] + float(cfg["cvr"]["weight"]) * valid_parts.get("cvr", 0.0)
                eval_seconds = time.perf_counter() - t
                history.append(
                    {
                        "epoch": epoch,
                        "train_objective": train_parts,
                        "valid_bce": valid_parts,
                        "valid_log_loss": valid_loss,
                        "train_seconds": epoch_seconds,
                        "valid_eval_seconds": eval_seconds,
                    }
                )
                improved = valid_loss < best_loss - float(tcfg["min_delta"])
                log(
                    f"{kind} epoch {epoch}: train {train_parts} valid {valid_parts} "
                    f"({epoch_seconds:.1f}s train, {eval_seconds:.1f}s eval){' *' if improved else ''}"
                )
                if improved:
                    best_loss, best_epoch, bad_epochs = valid_loss, epoch, 0
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    bad_epochs += 1
                    stop = bad_epochs >= int(tcfg["patience"])
                    if stop:
                        log(f"early stop: no improvement for {bad_epochs} epochs, best epoch {best_epoch}")
            stop, best_epoch = distributed.broadcast_ints(dist, [int(stop), best_epoch])
            if stop:
                break
    total_seconds = time.perf_counter() - wall_start
    if not dist.is_main:
        log(f"rank {dist.rank} of {dist.world}: trained {epoch} epochs (best {best_epoch}); rank 0 evaluates and writes {out}")
        return None
    model.load_state_dict(best_state)
    model.eval()

    # Calibration of each head on the validation split (CVR: its clicked rows).
    z_valid, z_test = logits_of(v0, v1), logits_of(t0, t1)
    method = cfg["calibration"]["method"]
    calibrations = {"ctr": calibrate.choose(z_valid[:, 0], split["valid"]["click"], method)}
    if "cvr" in heads:
        clicked = split["valid"]["click"] > 0.5
        calibrations["cvr"] = calibrate.choose(z_valid[clicked, 1], split["valid"]["conv"][clicked], method)
    for h, c in calibrations.items():
        chosen = c["selection"]["chosen"] if "selection" in c else c["method"]
        log(f"calibration {h}: {chosen}" + (f" (held-out log loss {c['selection']['held_out_log_loss']})" if "selection" in c else ""))
    calibrated = CalibratedModel(model.to("cpu"), calibrations).eval()  # exported and saved from the CPU
    p_valid = predict_batches(calibrated, fs.cat[v0:v1], fs.num[v0:v1], eval_rows)
    p_test = predict_batches(calibrated, fs.cat[t0:t1], fs.num[t0:t1], eval_rows)
    valid_report = evaluate_split(p_valid, z_valid, heads, **split["valid"])
    test_report = evaluate_split(p_test, z_test, heads, **split["test"])
    valid_report["note"] = "the calibration maps were fitted on this split"

    trained_at = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    headline = {OUTPUT_OF_HEAD[h]: {k: test_report[h][k] for k in HEADLINE} for h in heads}
    headline.update({k: test_report["ctr"][k] for k in HEADLINE})  # the CTR head's, at top level
    headline["split"] = "test"
    metadata = ctrbid_metadata(
        fs.meta,
        kind,
        MODEL_VERSION,
        trained_at,
        jsonable(headline),
        fs.n_cat,
        fs.n_num,
        heads=calibrated.output_names,
        calibration={OUTPUT_OF_HEAD[h]: c["method"] for h, c in calibrations.items()},
    )
    onnx_path = out / "model.onnx"
    t = time.perf_counter()
    export_info = export_onnx(
        ServingGraph(calibrated).eval(),
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
    p_onnx = predict_onnx(onnxruntime_session(onnx_path), fs.cat[t0 : t0 + check_rows], fs.num[t0 : t0 + check_rows])
    export_info["max_abs_diff_torch_vs_onnxruntime"] = float(np.max(np.abs(p_onnx - p_test[:check_rows]), initial=0.0))
    log(f"exported {onnx_path} ({export_info['bytes']} bytes, opset {export_info['opset']}, outputs {calibrated.output_names})")

    epochs_run = len(history)
    report = {
        "model_kind": kind,
        "model_version": MODEL_VERSION,
        "pipeline_version": __version__,
        "trained_at": trained_at,
        "heads": list(heads),
        "outputs": calibrated.output_names,
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
        "calibration": calibrations,
        "training": {
            "epochs_run": epochs_run,
            "best_epoch": best_epoch,
            "best_valid_objective": best_loss,
            "train_seconds": train_seconds,
            "seconds_per_epoch": train_seconds / max(epochs_run, 1),
            "total_seconds_with_validation": total_seconds,
            "threads": torch.get_num_threads(),
            "device": str(device),
            "world_size": dist.world,
            "backend": dist.backend,
            "parameters": int(sum(p.numel() for p in model.parameters())),
            "torch_version": torch.__version__,
            "history": history,
        },
        "config": cfg,
        "export": export_info,
        "metadata_props": metadata,
    }
    report = jsonable(report)
    save_checkpoint(out / "model.pt", calibrated, cfg, fs.meta, {"trained_at": trained_at, "metrics": jsonable(headline)})
    (out / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    ctr = test_report["ctr"]
    log(
        f"{kind} test ctr: auc {ctr['auc']:.4f} logloss {ctr['log_loss']:.5f} ne {ctr['ne']:.4f} "
        f"calib {ctr['calibration_ratio']:.4f} ece {ctr['ece']:.5f}"
        + (f" | oracle auc {ctr['oracle']['auc']:.4f}" if "oracle" in ctr else "")
        + (f" | cvr auc {test_report['cvr']['auc']:.4f} calib {test_report['cvr']['calibration_ratio']:.4f}" if "cvr" in heads else "")
    )
    return report
