"""The served model: one or two heads over shared embeddings, and its calibrated form.

``CtrCvrModel`` owns

* one embedding table ``emb`` (cardinality x dim) that every head reads
  (absent for ``lr``),
* for ``autoint``, the attention layers ``interacting`` (``nets.Interacting``),
* per head, a wide table (cardinality x 1, for the kinds with a linear part,
  ``nets.HAS_WIDE``) and a tower
  of the configured kind (``nets.Tower``).

Heads: ``ctr`` (probability of a click per impression) and, when the data has
conversions, ``cvr`` (probability of a conversion given a click). Its forward
returns the raw logits ``[N, heads]``. Training (``train.py``) fits the CVR
head either ESMM-style (Ma et al. 2018: ``pCTR x pCVR`` against
``click x conv`` over every impression, so the CVR head learns from the whole
traffic and is not biased to the clicked sample) or on clicked rows only.

``CalibratedModel`` applies each head's calibration map (``calibrate.py``) and
is what gets exported: outputs ``pctr`` [N] and, with a CVR head, ``pcvr`` [N].
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .calibrate import Calibrator
from .nets import HAS_WIDE, KINDS, USES_EMBEDDINGS, Interacting, Tower

HEADS = ("ctr", "cvr")
OUTPUT_OF_HEAD = {"ctr": "pctr", "cvr": "pcvr"}


class CtrCvrModel(nn.Module):
    """Raw logits ``[N, len(heads)]`` over ``cat`` [N, F] and ``num`` [N, D]."""

    def __init__(
        self,
        kind: str,
        cardinality: int,
        n_cat: int,
        n_num: int,
        heads: tuple[str, ...] = ("ctr",),
        embedding_dim: int = 8,
        hidden: list[int] | tuple[int, ...] = (64, 32),
        cvr_hidden: list[int] | tuple[int, ...] | None = None,
        dropout: float = 0.0,
        cross_layers: int = 2,
        sparse: bool = False,
        init_std: float = 0.01,
        attention: tuple[int, int, int] = (1, 2, 8),
        fusion_heads: int = 2,
    ):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
        if not heads or heads[0] != "ctr" or any(h not in HEADS for h in heads) or len(set(heads)) != len(heads):
            raise ValueError(f"heads must be ('ctr',) or ('ctr', 'cvr'), got {heads!r}")
        self.kind, self.heads = kind, tuple(heads)
        self.cardinality, self.n_cat, self.n_num = cardinality, n_cat, n_num
        self.embedding_dim = embedding_dim
        self.emb = None
        if kind in USES_EMBEDDINGS:
            self.emb = nn.Embedding(cardinality, embedding_dim, sparse=sparse)
            nn.init.normal_(self.emb.weight, 0.0, init_std)
        self.wide = nn.ModuleDict()
        if kind in HAS_WIDE:
            for h in self.heads:
                self.wide[h] = nn.Embedding(cardinality, 1, sparse=sparse)
                nn.init.zeros_(self.wide[h].weight)
        # AutoInt's attention layers: one trunk for both heads, as the embeddings are.
        self.interacting = Interacting(n_num, embedding_dim, *attention) if kind == "autoint" else None
        token_width = self.interacting.width if self.interacting is not None else 0
        # The CVR tower may be narrower: its truth has fewer interactions, and every
        # multiply-add of either tower is paid on every candidate the bidder scores.
        widths = {"ctr": list(hidden), "cvr": list(hidden if cvr_hidden is None else cvr_hidden)}
        self.towers = nn.ModuleDict(
            {
                h: Tower(kind, n_cat, n_num, embedding_dim, widths[h], dropout, cross_layers, token_width, fusion_heads)
                for h in self.heads
            }
        )

    def embedding_tables(self) -> list[nn.Parameter]:
        """The tables indexed by ``cat`` (sparse gradients when built with ``sparse``)."""
        tables = [w.weight for w in self.wide.values()]
        if self.emb is not None:
            tables.append(self.emb.weight)
        return tables

    def forward_with_rows(self, cat: torch.Tensor, num: torch.Tensor):
        """Logits [N, heads] plus every embedding row looked up (for an L2 penalty).

        In training mode each distinct index is looked up once and the rows are
        gathered from that (same values, same gradients): a batch of 4096 rows x
        25 fields holds about 8,000 distinct indices of its 102,400, and the
        sparse gradient the optimiser has to coalesce shrinks as much.
        """
        if self.training:
            index, inverse = torch.unique(cat, return_inverse=True)

            def lookup(table: nn.Embedding) -> torch.Tensor:
                return table(index)[inverse]

        else:

            def lookup(table: nn.Embedding) -> torch.Tensor:
                return table(cat)

        emb = lookup(self.emb) if self.emb is not None else None
        rows = [] if emb is None else [emb]
        tokens = self.interacting(emb, num) if self.interacting is not None else None
        logits = []
        for h in self.heads:
            wide = None
            if h in self.wide:
                w = lookup(self.wide[h])  # [N, F, 1]
                rows.append(w)
                wide = w.squeeze(-1)
            logits.append(self.towers[h](wide, emb, num, tokens))
        return torch.stack(logits, dim=1), rows

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return self.forward_with_rows(cat, num)[0]


class CalibratedModel(nn.Module):
    """Calibrated probabilities: ``pctr`` [N], or ``(pctr, pcvr)`` with a CVR head."""

    def __init__(self, base: CtrCvrModel, calibrations: dict[str, dict] | None = None):
        super().__init__()
        self.base = base
        calibrations = calibrations or {}
        self.calibrators = nn.ModuleDict(
            {h: Calibrator(calibrations[h]) if h in calibrations else Calibrator.identity() for h in base.heads}
        )
        self.calibrations = {h: calibrations.get(h, {"method": "platt", "a": 1.0, "b": 0.0}) for h in base.heads}

    @property
    def output_names(self) -> list[str]:
        return [OUTPUT_OF_HEAD[h] for h in self.base.heads]

    def forward(self, cat: torch.Tensor, num: torch.Tensor):
        z = self.base(cat, num)
        out = tuple(self.calibrators[h](z[:, i]) for i, h in enumerate(self.base.heads))
        return out[0] if len(out) == 1 else out


class ServingGraph(nn.Module):
    """What gets exported for a ``CalibratedModel``: the same outputs and arithmetic,
    with every table indexed by ``cat`` (the shared embeddings, each head's wide
    weights) concatenated column-wise into one ``table`` [cardinality, k + heads], so
    the graph gathers each index once instead of once per table.

    ONNX Runtime's Gather copies one row per index: on the bidder's requests (about 70
    rows of 25 fields) the three gathers of a two-head Wide & Deep were the largest
    single cost of inference (``perf`` of ``benches/handler.rs``: memmove, 15 % of the
    samples). A snapshot of the weights: build it after training.
    """

    def __init__(self, model: CalibratedModel):
        super().__init__()
        base = model.base
        self.heads = base.heads
        self.output_names = model.output_names
        self.towers = base.towers
        self.interacting = base.interacting
        self.calibrators = model.calibrators
        tables = []
        self.emb_dim = 0
        if base.emb is not None:
            tables.append(base.emb.weight.detach())
            self.emb_dim = base.embedding_dim
        self.wide_column: dict[str, int] = {}
        for h in base.heads:
            if h in base.wide:
                self.wide_column[h] = self.emb_dim + len(self.wide_column)
                tables.append(base.wide[h].weight.detach())
        self.register_buffer("table", torch.cat(tables, dim=1).contiguous())

    def forward(self, cat: torch.Tensor, num: torch.Tensor):
        rows = nn.functional.embedding(cat, self.table)  # [N, F, emb_dim + wide columns]
        emb = rows[:, :, : self.emb_dim] if self.emb_dim else None
        tokens = self.interacting(emb, num) if self.interacting is not None else None
        out = []
        for h in self.heads:
            wide = rows[:, :, self.wide_column[h]] if h in self.wide_column else None
            out.append(self.calibrators[h](self.towers[h](wide, emb, num, tokens)))
        return out[0] if len(out) == 1 else tuple(out)


def build_model(model_cfg: dict, cardinality: int, n_cat: int, n_num: int, heads=("ctr",), sparse: bool = False) -> CtrCvrModel:
    """A ``CtrCvrModel`` from the ``[model]`` table of the config."""
    return CtrCvrModel(
        kind=model_cfg.get("kind", "wide_deep"),
        cardinality=cardinality,
        n_cat=n_cat,
        n_num=n_num,
        heads=tuple(heads),
        embedding_dim=int(model_cfg.get("embedding_dim", 8)),
        hidden=[int(h) for h in model_cfg.get("hidden", [64, 32])],
        cvr_hidden=None if model_cfg.get("cvr_hidden") is None else [int(h) for h in model_cfg["cvr_hidden"]],
        dropout=float(model_cfg.get("dropout", 0.0)),
        cross_layers=int(model_cfg.get("cross_layers", 2)),
        sparse=sparse,
        init_std=float(model_cfg.get("init_std", 0.01)),
        attention=tuple(int(model_cfg.get(k, d)) for k, d in (("attention_layers", 1), ("attention_heads", 2), ("attention_dim", 8))),
        fusion_heads=int(model_cfg.get("fusion_heads", 2)),
    )


CHECKPOINT_FORMAT = "ctrbid_train.model_pt/2"


def save_checkpoint(path, model: CalibratedModel, config: dict, meta: dict, extra: dict | None = None) -> None:
    """Write ``model.pt``: the calibrated model's state dict + everything needed to rebuild it."""
    base = model.base
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "kind": base.kind,
            "heads": list(base.heads),
            "config": config,
            "cardinality": base.cardinality,
            "n_cat": base.n_cat,
            "n_num": base.n_num,
            "calibrations": model.calibrations,
            "meta": meta,
            "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "extra": extra or {},
        },
        path,
    )


def load_checkpoint(path) -> tuple[CalibratedModel, dict]:
    """Rebuild the calibrated model from ``model.pt`` (eval mode) and return it with the raw checkpoint."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a ctrbid_train checkpoint of format {CHECKPOINT_FORMAT} (found {ckpt.get('format')!r})")
    base = build_model(ckpt["config"]["model"], ckpt["cardinality"], ckpt["n_cat"], ckpt["n_num"], heads=ckpt["heads"])
    model = CalibratedModel(base, ckpt["calibrations"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _to_tensor(x, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    # np.array copies: memory-mapped (read-only) arrays cannot back a tensor.
    return torch.from_numpy(np.array(x, dtype=torch.empty(0, dtype=dtype).numpy().dtype))


@torch.inference_mode()
def predict_batches(model: nn.Module, cat, num, batch_rows: int = 65536, device: torch.device | str = "cpu") -> np.ndarray:
    """Model output for numpy/torch inputs, in batches: float32 [N, outputs].

    For a ``CtrCvrModel`` the columns are the heads' raw logits; for a
    ``CalibratedModel`` its calibrated outputs in ``output_names`` order.
    """
    model.eval()
    outs = []
    for start in range(0, cat.shape[0], batch_rows):
        c = _to_tensor(cat[start : start + batch_rows], torch.int64).to(device)
        n = _to_tensor(num[start : start + batch_rows], torch.float32).to(device)
        o = model(c, n)
        if isinstance(o, tuple):
            o = torch.stack(o, dim=1)
        elif o.dim() == 1:
            o = o.unsqueeze(1)
        outs.append(o.float().cpu().numpy())
    if not outs:
        width = len(model.heads) if isinstance(model, CtrCvrModel) else len(model.output_names)
        return np.empty((0, width), dtype=np.float32)
    return np.concatenate(outs)
