"""Shared fixtures: synthetic features directories and a small trained model.

The synthetic arrays have the real layout of ``models/feature_spec.json``
(F, D and the cardinality of the default spec) and a known logistic truth, see
``ctrbid_train/synth.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

MODELS_DIR = Path(__file__).resolve().parents[1]
REPO_ROOT = MODELS_DIR.parent
if str(MODELS_DIR) not in sys.path:
    sys.path.insert(0, str(MODELS_DIR))

from ctrbid_train import synth  # noqa: E402

#: Small, fast training settings for the tests (the real ones are in configs/wide_deep.toml).
FAST_OVERRIDES = {
    "model": {"hidden": [64, 32]},
    "train": {"batch_size": 1024, "lr": 0.003, "emb_lr": 0.01, "epochs": 4, "patience": 1},
}


def make_synthetic(directory: Path, rows: int, seed: int = 0, **kwargs) -> Path:
    """Synthetic features directory (see ctrbid_train.synth.generate)."""
    return synth.generate(directory, rows, seed=seed, **kwargs)


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """40k synthetic rows, CTR ~3 %."""
    return make_synthetic(tmp_path_factory.mktemp("synth") / "feat", 40_000, seed=3, ctr=0.03)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, synth_dir):
    """(output directory, eval report) of a small model trained on ``synth_dir``."""
    from ctrbid_train.train import train

    out = tmp_path_factory.mktemp("model")
    report = train(synth_dir, out, overrides=FAST_OVERRIDES)
    return out, report
