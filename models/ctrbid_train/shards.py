"""Joining the shards of ``ctrbid features --shard i/n`` into one features directory.

``n`` processes or machines build one input's arrays in parallel, each its own
contiguous range of rows (models/README.md, How it is built). ``join(shards,
out)`` checks that the directories are shards ``0..n-1`` of one input (each one's
``meta.json`` names the same spec, fields and input, and each shard's
``first_row`` is the number of rows before it), then writes every array
concatenated in shard order, streamed block by block through memory maps, and
the first shard's ``meta.json`` with the total rows and without its ``shard``
entry. The result is the directory the whole run writes, file for file
(``tests/test_shards.py``), so ``train``, ``zoo`` and DDP training read it as any
other.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import FeatureError, load_features

#: The arrays a features directory may hold, in the order they are written.
ARRAYS = ("cat", "num", "click", "conv", "pctr_true", "pcvr_true", "ts")
#: Rows copied at a time.
BLOCK_ROWS = 1 << 20


def _shard_meta(directory: Path) -> dict:
    meta = json.loads((directory / "meta.json").read_text())
    if "shard" not in meta:
        raise FeatureError(f"{directory}/meta.json names no shard: it was not written by `ctrbid features --shard`")
    return meta


def _check(metas: list[tuple[Path, dict]]) -> None:
    """The shards are 0..n-1 of one input, contiguous, nothing missing or twice."""
    count = metas[0][1]["shard"]["count"]
    indices = [m["shard"]["index"] for _, m in metas]
    if indices != list(range(count)) or any(m["shard"]["count"] != count for _, m in metas):
        raise FeatureError(f"need shards 0..{count - 1} of {count}, each once; got {sorted(indices)}")

    def same(meta: dict) -> dict:
        return {k: v for k, v in meta.items() if k not in ("rows", "shard")}

    first_row = 0
    for path, meta in metas:
        if same(meta) != same(metas[0][1]):
            raise FeatureError(f"{path} is a shard of another input or spec than {metas[0][0]}")
        if meta["shard"]["first_row"] != first_row:
            raise FeatureError(f"{path} starts at row {meta['shard']['first_row']}, but the shards before it end at row {first_row}")
        first_row += int(meta["rows"])


def join(shards: list[str | Path], out: str | Path) -> Path:
    """Write the shards' arrays, concatenated in shard order, into ``out`` (see the module doc)."""
    if not shards:
        raise FeatureError("no shards to join")
    metas = sorted(((Path(d), _shard_meta(Path(d))) for d in shards), key=lambda pm: pm[1]["shard"]["index"])
    _check(metas)
    sets = [load_features(path) for path, _ in metas]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    total = sum(fs.rows for fs in sets)
    for name in ARRAYS:
        parts = [getattr(fs, name) for fs in sets]
        if all(p is None for p in parts):
            continue
        if any(p is None for p in parts):
            raise FeatureError(f"{name}.npy is in some shards and not in others")
        joined = np.lib.format.open_memmap(out / f"{name}.npy", mode="w+", dtype=parts[0].dtype, shape=(total, *parts[0].shape[1:]))
        at = 0
        for part in parts:
            for s in range(0, part.shape[0], BLOCK_ROWS):
                block = part[s : s + BLOCK_ROWS]
                joined[at : at + block.shape[0]] = block
                at += block.shape[0]
        joined.flush()
        del joined
    meta = {k: v for k, v in metas[0][1].items() if k != "shard"}
    meta["rows"] = total
    # As `ctrbid features` writes it: keys sorted, two-space indent, no newline at the end.
    (out / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out
