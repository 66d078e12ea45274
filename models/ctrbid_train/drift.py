"""The drift reference of a model: how its training rows were distributed, field by field,
and how its predictions on them were, for the bidder to measure live traffic against
(the population stability index, ``src/variants/drift.rs``).

Written next to the model as ``<model>.drift.json`` (``model.onnx`` gives
``model.drift.json``), where the bidder looks for it when the model opens:

    {"format": "ctrbid.drift.v1", "model_version": ..., "spec_sha256": ..., "rows": N,
     "cat": [{"name": f, "values": [bucket, ...], "shares": [p, ..., p_other]}, ...],
     "num": [{"name": f, "edges": [e1, ...], "shares": [p0, ..., pk]}, ...],
     "pctr": {"name": "pctr", "edges": [...], "shares": [...]}}

A categorical field keeps its ``top`` most frequent bucket values, each with its share of
the rows, and one share for every other value (last). A numeric field (and the
predictions) keeps the edges of its ``bins`` quantile bins, duplicates merged; value ``v``
falls in bin ``#{e : e <= v}``, so ``shares`` has one more entry than ``edges``. Shares
are of the sampled rows and add up to 1.

    PYTHONPATH=models python -m ctrbid_train drift-reference --model models/default/model.onnx \\
        --features data/features
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .data import load_features
from .export import read_metadata
from .predict import predict_rows

FORMAT = "ctrbid.drift.v1"


def reference_path(model: str | Path) -> Path:
    """Where the bidder looks for ``model``'s reference: ``model.onnx`` -> ``model.drift.json``."""
    p = Path(model)
    return p.with_name(p.stem + ".drift.json")


def _categorical(name: str, column: np.ndarray, top: int) -> dict:
    values, counts = np.unique(column, return_counts=True)
    # Most frequent first; ties by value, so the file is a function of the data.
    order = np.lexsort((values, -counts))[:top]
    n = column.shape[0]
    shares = [float(c) / n for c in counts[order]]
    return {"name": name, "values": [int(v) for v in values[order]], "shares": shares + [max(0.0, 1.0 - sum(shares))]}


def _numeric(name: str, column: np.ndarray, bins: int) -> dict:
    column = column.astype(np.float64)
    finite = column[np.isfinite(column)]
    quantiles = np.quantile(finite, np.arange(1, bins) / bins) if finite.size else np.array([])
    edges = np.unique(quantiles.astype(np.float32)).astype(np.float64)
    # Bin of v: the number of edges <= v (NaN falls in bin 0, as the bidder puts it).
    index = np.searchsorted(edges, column, side="right")
    index[np.isnan(column)] = 0
    counts = np.bincount(index, minlength=edges.size + 1)
    return {"name": name, "edges": [float(e) for e in edges], "shares": [float(c) / column.shape[0] for c in counts]}


def build_reference(model: str | Path, features: str | Path, rows: int = 200_000, top: int = 20, bins: int = 10) -> dict:
    """The reference of ``model`` from the training arrays in ``features``: ``rows`` rows
    at an even stride over all of them (every row when there are fewer)."""
    fs = load_features(features)
    meta = read_metadata(model)
    if meta.get("ctrbid.spec_sha256") != fs.meta["spec_sha256"]:
        raise ValueError(f"{model} was built for feature spec {meta.get('ctrbid.spec_sha256')}, "
                         f"{features} has {fs.meta['spec_sha256']}")
    stride = max(1, fs.rows // max(1, rows))
    picked = np.arange(0, fs.rows, stride)[:rows]
    cat, num = np.ascontiguousarray(fs.cat[picked]), np.ascontiguousarray(fs.num[picked])
    pctr = predict_rows(model, cat, num)[:, 0]
    return {
        "format": FORMAT,
        "model_version": meta.get("ctrbid.version", ""),
        "spec_sha256": fs.meta["spec_sha256"],
        "features": str(features),
        "rows": int(picked.size),
        "cat": [_categorical(n, cat[:, j], top) for j, n in enumerate(fs.meta["cat_fields"])],
        "num": [_numeric(n, num[:, j], bins) for j, n in enumerate(fs.meta["num_fields"])],
        "pctr": _numeric("pctr", pctr, bins),
    }


def write_reference(model: str | Path, features: str | Path, out: str | Path | None = None, **kw) -> Path:
    out = Path(out) if out else reference_path(model)
    ref = build_reference(model, features, **kw)
    out.write_text(json.dumps(ref, indent=1) + "\n")
    return out
