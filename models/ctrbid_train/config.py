"""Training configuration: TOML file (read with tomllib) over built-in defaults.

One file per model of the zoo lives in ``models/configs/`` (``lr.toml``,
``fm.toml``, ``deepfm.toml``, ``wide_deep.toml``, ``dcn_v2.toml``,
``autoint.toml``, ``finalmlp.toml``); each key
they leave out takes the default below. Unknown keys are errors.
"""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

from .nets import KINDS

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG_PATH = CONFIG_DIR / "wide_deep.toml"

DEFAULTS: dict = {
    "model": {
        "kind": "wide_deep",
        "embedding_dim": 8,
        "hidden": [64, 32],
        "cvr_hidden": None,  # the CVR tower's hidden layers; None: the same as `hidden`
        "dropout": 0.0,
        "init_std": 0.01,
        "cross_layers": 2,  # dcn_v2 only
        "attention_layers": 1,  # autoint only: self-attention layers (shared by the heads),
        "attention_heads": 2,  # heads per layer,
        "attention_dim": 8,  # and each head's width
        "fusion_heads": 2,  # finalmlp only: pieces of the bilinear fusion (divides the last hidden width)
    },
    "train": {
        "seed": 42,
        "threads": 1,
        "batch_size": 4096,
        "lr": 0.002,
        "emb_lr": 0.0005,
        "emb_optimizer": "sparse_adam",
        "emb_l2": 0.0,
        "weight_decay": 0.0,
        "epochs": 10,
        "patience": 2,
        "min_delta": 0.0,
        "eval_batch_size": 65536,
        "loss": "bce",  # or "focal" (calibration afterwards is then essential)
        "focal_gamma": 2.0,
        "chunk_rows": 1 << 20,  # rows in memory at a time (data.iter_batches)
        "device": "auto",  # "auto" (cuda when available), "cpu" or "cuda"
    },
    "cvr": {
        "enabled": "auto",  # "auto": a CVR head when the features have conversions
        "objective": "clicked",  # "clicked" (pCVR vs conv on clicked rows) or "esmm" (pCTR x pCVR vs click x conv on all rows)
        "weight": 1.0,  # weight of the CVR term in the training objective
    },
    "split": {"train": 0.8, "valid": 0.1},
    "calibration": {"method": "auto"},  # "auto" (held-out choice), "platt", "platt_slope" or "isotonic"
    "export": {"exporter": "torchscript", "opset": 17},
}


def merge(base: dict, override: dict) -> dict:
    """Recursive dict merge; ``override`` wins. Unknown sections/keys are rejected."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in out:
            raise KeyError(f"unknown config key {key!r}")
        if isinstance(out[key], dict):
            if not isinstance(value, dict):
                raise TypeError(f"config section {key!r} must be a table")
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: dict | None = None) -> dict:
    """Defaults, then the TOML file (``configs/wide_deep.toml`` if None), then ``overrides``."""
    cfg = copy.deepcopy(DEFAULTS)
    p = Path(path) if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or p.exists():
        with open(p, "rb") as fh:
            cfg = merge(cfg, tomllib.load(fh))
    if overrides:
        cfg = merge(cfg, overrides)
    if cfg["train"]["emb_optimizer"] not in ("sparse_adam", "adam"):
        raise ValueError("train.emb_optimizer must be 'sparse_adam' or 'adam'")
    if cfg["calibration"]["method"] not in ("auto", "platt", "platt_slope", "isotonic"):
        raise ValueError("calibration.method must be 'auto', 'platt', 'platt_slope' or 'isotonic'")
    if cfg["model"]["kind"] not in KINDS:
        raise ValueError(f"model.kind must be one of {', '.join(KINDS)}")
    if cfg["train"]["loss"] not in ("bce", "focal"):
        raise ValueError("train.loss must be 'bce' or 'focal'")
    if cfg["train"]["device"] not in ("auto", "cpu", "cuda"):
        raise ValueError("train.device must be 'auto', 'cpu' or 'cuda'")
    if cfg["cvr"]["enabled"] not in ("auto", True, False):
        raise ValueError("cvr.enabled must be 'auto', true or false")
    if cfg["cvr"]["objective"] not in ("esmm", "clicked"):
        raise ValueError("cvr.objective must be 'esmm' or 'clicked'")
    if cfg["export"]["exporter"] not in ("dynamo", "torchscript"):
        raise ValueError("export.exporter must be 'dynamo' or 'torchscript'")
    return cfg
