"""Synthetic features directories with a known logistic truth.

Stands in for ``ctrbid features`` in tests and benchmarks. The layout
(field order, buckets, offsets) comes from a feature spec, so the arrays have
the real shapes (F, D and cardinality of the default spec).

Truth: ``logit = bias + sum_f w[cat_f] + sum_{(i,j)} <u[cat_i], u[cat_j]> + num @ c``
where ``w`` are per-index weights, the pairwise latent dot products give the
deep part something a linear model cannot fit, and ``bias`` is solved so the
mean CTR is ``ctr``. Values are drawn with a Zipf-like long tail.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

DEFAULT_SPEC = Path(__file__).resolve().parent.parent / "feature_spec.json"
START_TS = 1_700_000_000


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def spec_layout(spec_path: str | Path = DEFAULT_SPEC) -> dict:
    """Field names, buckets and offsets of a feature spec, plus its SHA-256."""
    raw = Path(spec_path).read_bytes()
    spec = json.loads(raw)
    cat_fields = [c["name"] for c in spec["categorical"]]
    buckets = [int(c["buckets"]) for c in spec["categorical"]]
    offsets = np.concatenate([[0], np.cumsum(buckets)[:-1]]).astype(int).tolist()
    return {
        "spec_sha256": hashlib.sha256(raw).hexdigest(),
        "spec_name": spec.get("name", "synthetic"),
        "spec_version": spec.get("version", 1),
        "cat_fields": cat_fields,
        "num_fields": [n["name"] for n in spec["numeric"]],
        "field_offsets": offsets,
        "field_buckets": buckets,
        "cardinality": int(sum(buckets)),
    }


def generate(
    out: str | Path,
    rows: int,
    seed: int = 0,
    spec_path: str | Path = DEFAULT_SPEC,
    ctr: float = 0.02,
    weight_scale: float = 0.5,
    interaction_scale: float = 0.6,
) -> Path:
    """Write a synthetic features directory with ``rows`` rows; returns its path."""
    rng = np.random.default_rng(seed)
    layout = spec_layout(spec_path)
    offsets = np.asarray(layout["field_offsets"], dtype=np.int64)
    buckets = np.asarray(layout["field_buckets"], dtype=np.int64)
    n_fields, n_num, card = len(buckets), len(layout["num_fields"]), layout["cardinality"]

    # Which buckets each field actually uses (hash collisions allowed) and how
    # often: value k has weight 1 / (k + 2) ** 1.1, a long tail.
    cat = np.empty((rows, n_fields), dtype=np.int64)
    for f in range(n_fields):
        distinct = int(min(buckets[f], max(4, buckets[f] // 2)))
        positions = rng.integers(0, buckets[f], size=distinct)
        freq = 1.0 / (np.arange(distinct) + 2.0) ** 1.1
        draws = rng.choice(distinct, size=rows, p=freq / freq.sum())
        cat[:, f] = offsets[f] + positions[draws]

    # Truth: per-index weights, stronger for small fields (better observed).
    field_sigma = weight_scale / np.sqrt(1.0 + np.log2(buckets) / 8.0)
    sigma = np.repeat(field_sigma, buckets)
    w = rng.normal(0.0, 1.0, size=card) * sigma
    k = 4
    u = rng.normal(0.0, interaction_scale / np.sqrt(k), size=(card, k))
    pairs = [(f, (f + n_fields // 2) % n_fields) for f in range(0, n_fields, 4)]

    ts = START_TS + np.sort(rng.integers(0, 14 * 86_400, size=rows)).astype(np.int64)
    hour = (ts // 3600) % 24
    num = np.zeros((rows, n_num), dtype=np.float32)
    num[:, 0] = np.sin(2 * np.pi * hour / 24)
    if n_num > 1:
        num[:, 1] = np.cos(2 * np.pi * hour / 24)
    if n_num > 2:
        num[:, 2:] = np.clip(np.log1p(rng.lognormal(0.0, 1.0, size=(rows, n_num - 2))), 0.0, 5.0)
    coef = rng.normal(0.0, 0.3, size=n_num)

    logit = w[cat].sum(axis=1) + num.astype(np.float64) @ coef
    for i, j in pairs:
        logit += np.einsum("nk,nk->n", u[cat[:, i]], u[cat[:, j]])
    # Solve the bias so that the mean probability is `ctr` (bisection).
    lo, hi = -20.0, 10.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _sigmoid(logit + mid).mean() < ctr else (lo, mid)
    pctr = _sigmoid(logit + (lo + hi) / 2)
    click = (rng.random(rows) < pctr).astype(np.float32)
    pcvr = np.full(rows, 0.05, dtype=np.float32)
    conv = (click * (rng.random(rows) < pcvr)).astype(np.float32)

    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    np.save(d / "cat.npy", cat)
    np.save(d / "num.npy", num)
    np.save(d / "click.npy", click)
    np.save(d / "conv.npy", conv)
    np.save(d / "pctr_true.npy", pctr.astype(np.float32))
    np.save(d / "pcvr_true.npy", pcvr)
    np.save(d / "ts.npy", ts)
    meta = dict(layout, rows=int(rows), synthetic=True, seed=int(seed))
    (d / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return d
