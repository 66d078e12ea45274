"""`ctrbid features --shard i/n` on a simulator log, joined by `ctrbid_train join-shards`:
the whole run's directory, file for file; and what the join refuses."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from ctrbid_train.__main__ import main
from ctrbid_train.data import FeatureError
from ctrbid_train.shards import ARRAYS, join

from conftest import REPO_ROOT
from test_pipeline import ctrbid  # noqa: F401  (the binary's fixture)

SPEC = REPO_ROOT / "models" / "feature_spec.json"


def _run(*cmd):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.fixture(scope="module")
def built(ctrbid, tmp_path_factory):  # noqa: F811
    """A small simulator log's features, whole and in three shards."""
    root = tmp_path_factory.mktemp("shards")
    _run(ctrbid, "simulate", "--out", root / "sim", "--impressions", 6000, "--seed", 3)
    _run(ctrbid, "features", "--sim", root / "sim", "--spec", SPEC, "--out", root / "whole")
    for i in range(3):
        _run(ctrbid, "features", "--sim", root / "sim", "--spec", SPEC, "--out", root / f"s{i}", "--shard", f"{i}/3")
    return root


def test_joined_shards_are_the_whole_run_file_for_file(built, tmp_path):
    # Given out of order: the join orders them by their shard index.
    shards = [str(built / f"s{i}") for i in (2, 0, 1)]
    assert main(["join-shards", "--out", str(tmp_path / "joined"), *shards]) == 0
    whole = sorted(p.name for p in (built / "whole").iterdir())
    assert sorted(p.name for p in (tmp_path / "joined").iterdir()) == whole
    assert {f"{a}.npy" for a in ARRAYS} <= set(whole)
    for name in whole:
        assert (tmp_path / "joined" / name).read_bytes() == (built / "whole" / name).read_bytes(), name
    # The shards really are parts: none holds all the rows.
    rows = [json.loads((built / f"s{i}" / "meta.json").read_text())["rows"] for i in range(3)]
    assert all(r > 0 for r in rows) and sum(rows) == json.loads((built / "whole" / "meta.json").read_text())["rows"]


def test_join_refuses_a_missing_shard_a_gap_or_another_input(built, tmp_path):
    with pytest.raises(FeatureError, match="need shards 0..2 of 3"):
        join([built / "s0", built / "s2"], tmp_path / "a")
    with pytest.raises(FeatureError, match="names no shard"):
        join([built / "whole"], tmp_path / "b")
    # A shard whose first row does not follow the one before it.
    moved = tmp_path / "s1"
    shutil.copytree(built / "s1", moved)
    meta = json.loads((moved / "meta.json").read_text())
    meta["shard"]["first_row"] += 1
    (moved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FeatureError, match="starts at row"):
        join([built / "s0", moved, built / "s2"], tmp_path / "c")
    # A shard of another spec.
    meta["shard"]["first_row"] -= 1
    meta["spec_sha256"] = "0" * 64
    (moved / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(FeatureError, match="another input or spec"):
        join([built / "s0", moved, built / "s2"], tmp_path / "d")
