"""Loading and checking the arrays written by ``ctrbid features``.

A features directory holds ``cat.npy`` int64 [N, F] (global embedding
indices), ``num.npy`` float32 [N, D], ``click.npy`` / ``conv.npy`` float32 [N],
optionally ``pctr_true.npy`` / ``pcvr_true.npy`` float32 [N] (simulator truth),
``ts.npy`` int64 [N] and ``meta.json``. Arrays are memory-mapped; only the
slices a caller asks for are read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED_META = ("spec_sha256", "cat_fields", "num_fields", "cardinality")
SPLITS = ("train", "valid", "test")


class FeatureError(ValueError):
    """The features directory breaks the input contract."""


def _load(path: Path, required: bool = True):
    if not path.exists():
        if required:
            raise FeatureError(f"missing {path}")
        return None
    return np.load(path, mmap_mode="r")


@dataclass
class FeatureSet:
    """Memory-mapped view of one features directory."""

    directory: Path
    meta: dict
    cat: np.ndarray
    num: np.ndarray
    click: np.ndarray
    conv: np.ndarray | None
    pctr_true: np.ndarray | None
    pcvr_true: np.ndarray | None
    ts: np.ndarray | None

    @property
    def rows(self) -> int:
        return int(self.cat.shape[0])

    @property
    def n_cat(self) -> int:
        return int(self.cat.shape[1])

    @property
    def n_num(self) -> int:
        return int(self.num.shape[1])

    @property
    def cardinality(self) -> int:
        return int(self.meta["cardinality"])

    def check_indices(self, chunk_rows: int = 262_144) -> None:
        """Verify every index lies inside its field's [offset, offset + buckets).

        Falls back to [0, cardinality) when meta.json has no per-field offsets.
        Reads the cat array in chunks so it works on memory-mapped files.
        """
        offsets = self.meta.get("field_offsets")
        buckets = self.meta.get("field_buckets")
        if offsets is not None and buckets is not None:
            lo = np.asarray(offsets, dtype=np.int64)
            hi = lo + np.asarray(buckets, dtype=np.int64)
        else:
            lo = np.zeros(self.n_cat, dtype=np.int64)
            hi = np.full(self.n_cat, self.cardinality, dtype=np.int64)
        for start in range(0, self.rows, chunk_rows):
            block = np.asarray(self.cat[start : start + chunk_rows])
            bad = (block.min(axis=0) < lo) | (block.max(axis=0) >= hi)
            if bad.any():
                names = self.meta["cat_fields"]
                f = int(np.flatnonzero(bad)[0])
                raise FeatureError(
                    f"cat.npy column {f} ({names[f]}) has indices outside "
                    f"[{lo[f]}, {hi[f]}) near row {start}"
                )


def load_features(directory: str | Path) -> FeatureSet:
    """Open a features directory and check shapes, dtypes and meta.json."""
    d = Path(directory)
    meta_path = d / "meta.json"
    if not meta_path.exists():
        raise FeatureError(f"missing {meta_path}")
    meta = json.loads(meta_path.read_text())
    for key in REQUIRED_META:
        if key not in meta:
            raise FeatureError(f"{meta_path} lacks {key!r}")

    fs = FeatureSet(
        directory=d,
        meta=meta,
        cat=_load(d / "cat.npy"),
        num=_load(d / "num.npy"),
        click=_load(d / "click.npy"),
        conv=_load(d / "conv.npy", required=False),
        pctr_true=_load(d / "pctr_true.npy", required=False),
        pcvr_true=_load(d / "pcvr_true.npy", required=False),
        ts=_load(d / "ts.npy", required=False),
    )
    n = fs.cat.shape[0]
    if fs.cat.ndim != 2 or fs.cat.dtype != np.int64:
        raise FeatureError(f"cat.npy must be int64 [N, F], got {fs.cat.dtype} {fs.cat.shape}")
    if fs.num.ndim != 2 or fs.num.dtype != np.float32 or fs.num.shape[0] != n:
        raise FeatureError(f"num.npy must be float32 [{n}, D], got {fs.num.dtype} {fs.num.shape}")
    for name in ("click", "conv", "pctr_true", "pcvr_true", "ts"):
        arr = getattr(fs, name)
        if arr is not None and arr.shape != (n,):
            raise FeatureError(f"{name}.npy must have shape [{n}], got {arr.shape}")
    if len(meta["cat_fields"]) != fs.n_cat:
        raise FeatureError(f"meta.json lists {len(meta['cat_fields'])} cat fields, cat.npy has {fs.n_cat}")
    if len(meta["num_fields"]) != fs.n_num:
        raise FeatureError(f"meta.json lists {len(meta['num_fields'])} num fields, num.npy has {fs.n_num}")
    if fs.n_num < 1:
        raise FeatureError("the model needs at least one numeric field (num.npy has D = 0)")
    if "rows" in meta and int(meta["rows"]) != n:
        raise FeatureError(f"meta.json says {meta['rows']} rows, arrays have {n}")
    return fs


def split_bounds(rows: int, train_frac: float = 0.8, valid_frac: float = 0.1) -> dict[str, tuple[int, int]]:
    """Time-ordered split by row order: [train | valid | test] as (start, end) pairs."""
    if not (0 < train_frac < 1 and 0 < valid_frac < 1 and train_frac + valid_frac < 1):
        raise ValueError("need 0 < train, 0 < valid and train + valid < 1")
    a = int(rows * train_frac)
    b = int(rows * (train_frac + valid_frac))
    if a == 0 or b == a or b == rows:
        raise FeatureError(f"{rows} rows are too few for a train/valid/test split")
    return {"train": (0, a), "valid": (a, b), "test": (b, rows)}


#: Rows copied out of the memory maps at a time while training: 1M rows of the
#: default spec (25 int64 + 3 float32 + 2 labels) are about 220 MB.
DEFAULT_CHUNK_ROWS = 1 << 20


def iter_batches(
    fs: FeatureSet,
    start: int,
    end: int,
    batch_size: int,
    gen: np.random.Generator,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
):
    """Training batches over rows [start, end) in a seeded order, streamed.

    The range is cut into chunks of ``chunk_rows``; each epoch visits the chunks
    in a random order and the rows of a chunk in a random order, so at most one
    chunk is in memory: a 10M-row log trains in the memory of one chunk, not of
    the whole split. (Shuffling is within a chunk, so a batch mixes rows of
    about the same period; the chunks are large enough for that not to matter.)
    Yields ``(cat int64 [B, F], num float32 [B, D], click float32 [B], conv
    float32 [B] or None)`` as numpy arrays.
    """
    if chunk_rows < batch_size:
        raise ValueError("chunk_rows must be at least batch_size")
    bounds = [(s, min(s + chunk_rows, end)) for s in range(start, end, chunk_rows)]
    for k in gen.permutation(len(bounds)):
        s, e = bounds[k]
        cat = np.array(fs.cat[s:e], dtype=np.int64)
        num = np.array(fs.num[s:e], dtype=np.float32)
        click = np.array(fs.click[s:e], dtype=np.float32)
        conv = None if fs.conv is None else np.array(fs.conv[s:e], dtype=np.float32)
        order = gen.permutation(e - s)
        for b in range(0, e - s, batch_size):
            idx = order[b : b + batch_size]
            yield cat[idx], num[idx], click[idx], None if conv is None else conv[idx]
        del cat, num, click, conv
