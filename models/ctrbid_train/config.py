"""Training configuration: TOML file (read with tomllib) over built-in defaults."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "configs" / "wide_deep.toml"

DEFAULTS: dict = {
    "model": {
        "kind": "wide_deep",
        "embedding_dim": 8,
        "hidden": [64, 32],
        "dropout": 0.0,
        "init_std": 0.01,
    },
    "train": {
        "seed": 42,
        "threads": 2,
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
    },
    "split": {"train": 0.8, "valid": 0.1},
    "calibration": {"method": "platt"},
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
    if cfg["calibration"]["method"] != "platt":
        raise ValueError("calibration.method: only 'platt' is implemented")
    if cfg["export"]["exporter"] not in ("dynamo", "torchscript"):
        raise ValueError("export.exporter must be 'dynamo' or 'torchscript'")
    return cfg
