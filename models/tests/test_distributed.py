"""Two processes under torchrun (DDP, gloo) train the model one process trains (ctrbid_train/distributed.py).

Every rank draws the same batches and trains on its part of each, its loss
weighted, and DDP averages the gradients: one process's gradient up to the
order of float sums. Over five seeds of this test's run (2026-12-07) the two
processes' test AUC equalled one process's on both heads and the log loss
moved by at most 1.7e-8; two-process runs repeat bit for bit. ``TOLERANCE``
is 1e-5: one swapped pair of scores moves this split's CTR AUC by 5.4e-6,
while both ranks training on the same half of each batch moved the CTR AUC by
7.3e-3 and its log loss by 1.6e-3, and summing the ranks' gradients instead of
averaging them moved them by 5.0e-4 and 5.8e-5.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ctrbid_train.distributed import Dist, from_env, part
from ctrbid_train.train import train

from conftest import MODELS_DIR, REPO_ROOT, make_synthetic

#: The most a test metric (AUC, log loss, per head) of two processes may differ from one process's.
TOLERANCE = 1e-5

CONFIG = """
[model]
kind = "wide_deep"
hidden = [32]
cvr_hidden = [8]
[train]
batch_size = 1001          # odd: the ranks' parts differ by a row, which the loss weights undo
lr = 0.003
emb_lr = 0.01
epochs = 3
patience = 1
"""


def _free_port() -> int:
    """A port free now (another process could take it before torchrun binds it: unlikely)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(nproc: int, features: Path, out: Path, config: Path) -> subprocess.CompletedProcess:
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [
        str(torchrun),
        "--nproc-per-node", str(nproc),
        "--master-addr", "127.0.0.1",
        "--master-port", str(_free_port()),
        "-m", "ctrbid_train", "train",
        "--features", str(features), "--out", str(out), "--config", str(config),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(MODELS_DIR), "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def small_dir(tmp_path_factory) -> Path:
    """20k synthetic rows, CTR ~5 %, with conversions: both heads train."""
    return make_synthetic(tmp_path_factory.mktemp("ddp") / "feat", 20_000, seed=5, ctr=0.05)


def test_two_processes_match_one(small_dir, tmp_path):
    config = tmp_path / "config.toml"
    config.write_text(CONFIG)
    one = train(small_dir, tmp_path / "one", config_path=config)
    run = _torchrun(2, small_dir, tmp_path / "two", config)
    assert run.returncode == 0, run.stderr[-4000:]
    two = json.loads((tmp_path / "two" / "eval.json").read_text())

    assert two["training"]["world_size"] == 2 and two["training"]["backend"] == "gloo"
    assert one["training"]["world_size"] == 1 and one["training"]["backend"] is None
    assert two["training"]["best_epoch"] == one["training"]["best_epoch"]
    assert two["training"]["epochs_run"] == one["training"]["epochs_run"]
    for head in ("ctr", "cvr"):
        for key in ("auc", "log_loss"):
            assert two["test"][head][key] == pytest.approx(one["test"][head][key], abs=TOLERANCE), (head, key)
    assert run.stdout.count('"out"') == 1  # the summary, printed by rank 0 alone


def test_parts_average_to_the_batch_mean():
    for world in (1, 2, 3, 8):
        ranks = [Dist(rank=r, world=world, backend=None if world == 1 else "gloo", device=torch.device("cpu")) for r in range(world)]
        for rows in sorted({1, max(1, world - 1), world, world + 1, 1001, 4096}):
            parts = [part(rows, d) for d in ranks]
            if rows >= world:  # the parts tile the batch, sizes within one row
                assert parts[0][0] == 0 and parts[-1][1] == rows
                assert all(parts[r][1] == parts[r + 1][0] for r in range(world - 1))
                assert max(hi - lo for lo, hi, _ in parts) - min(hi - lo for lo, hi, _ in parts) <= 1
            else:  # each rank gets the whole batch
                assert all(p == (0, rows, 1.0) for p in parts)
            # DDP's mean over ranks of the weighted part means is the batch mean.
            x = np.random.default_rng(rows).random(rows)
            assert sum(w * x[lo:hi].mean() for lo, hi, w in parts) / world == pytest.approx(x.mean(), rel=1e-12)
            assert sum(w * rows / world for _, _, w in parts) == pytest.approx(rows)  # rows stood for


def test_one_process_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = from_env(torch.device("cpu"), sparse_gradients=True)
    assert (d.rank, d.world, d.backend, d.is_main) == (0, 1, None, True)


def test_nccl_with_sparse_gradients_is_refused(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    with pytest.raises(ValueError, match="emb_optimizer = 'adam'"):
        from_env(torch.device("cuda"), sparse_gradients=True)
    d = from_env(torch.device("cuda"), sparse_gradients=False)
    assert (d.rank, d.world, d.backend, d.device, d.is_main) == (1, 2, "nccl", torch.device("cuda", 1), False)
    assert from_env(torch.device("cpu"), sparse_gradients=True).backend == "gloo"
