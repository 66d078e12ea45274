"""Wide & Deep CTR model and its calibrated wrapper.

* wide: one scalar weight per global index (an embedding of dim 1), summed
  over the F fields, plus a linear term on the D numeric features;
* deep: one embedding table (cardinality x dim) shared by all fields, the F
  vectors concatenated with ``num`` and fed to an MLP (ReLU) ending in 1 unit;
* ``logit = wide + deep + bias``.

``CalibratedModel`` adds the Platt step ``sigmoid(a * logit + b)`` so that the
exported graph emits calibrated probabilities.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class WideDeep(nn.Module):
    """Wide & Deep over pre-hashed global indices ``cat`` [N, F] and ``num`` [N, D]."""

    def __init__(
        self,
        cardinality: int,
        n_cat: int,
        n_num: int,
        embedding_dim: int = 8,
        hidden: tuple[int, ...] | list[int] = (64, 32),
        dropout: float = 0.0,
        sparse: bool = False,
        init_std: float = 0.01,
    ):
        super().__init__()
        self.cardinality, self.n_cat, self.n_num = cardinality, n_cat, n_num
        self.embedding_dim = embedding_dim
        self.wide_emb = nn.Embedding(cardinality, 1, sparse=sparse)
        self.deep_emb = nn.Embedding(cardinality, embedding_dim, sparse=sparse)
        self.wide_num = nn.Linear(n_num, 1, bias=False)
        layers: list[nn.Module] = []
        width = n_cat * embedding_dim + n_num
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        layers.append(nn.Linear(width, 1, bias=False))
        self.mlp = nn.Sequential(*layers)
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.wide_emb.weight)
        nn.init.normal_(self.deep_emb.weight, 0.0, init_std)
        nn.init.zeros_(self.wide_num.weight)

    def forward_with_rows(self, cat: torch.Tensor, num: torch.Tensor):
        """Logits [N] plus the embedding rows looked up (for the L2 penalty)."""
        wide_rows = self.wide_emb(cat)  # [N, F, 1]
        deep_rows = self.deep_emb(cat)  # [N, F, dim]
        wide = wide_rows.sum(dim=(1, 2)) + self.wide_num(num).squeeze(-1)
        deep_in = torch.cat([deep_rows.flatten(1), num], dim=1)
        deep = self.mlp(deep_in).squeeze(-1)
        return wide + deep + self.bias, wide_rows, deep_rows

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits, shape [N]."""
        return self.forward_with_rows(cat, num)[0]


class CalibratedModel(nn.Module):
    """``sigmoid(a * base(cat, num) + b)``: the graph that gets exported."""

    def __init__(self, base: nn.Module, a: float = 1.0, b: float = 0.0):
        super().__init__()
        self.base = base
        self.register_buffer("platt_a", torch.tensor(float(a), dtype=torch.float32))
        self.register_buffer("platt_b", torch.tensor(float(b), dtype=torch.float32))

    def forward(self, cat: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.base(cat, num) * self.platt_a + self.platt_b)


def build_model(model_cfg: dict, cardinality: int, n_cat: int, n_num: int, sparse: bool = False) -> WideDeep:
    """A ``WideDeep`` from the ``[model]`` table of the config."""
    kind = model_cfg.get("kind", "wide_deep")
    if kind != "wide_deep":
        raise ValueError(f"unknown model kind {kind!r} (only 'wide_deep' is implemented)")
    return WideDeep(
        cardinality=cardinality,
        n_cat=n_cat,
        n_num=n_num,
        embedding_dim=int(model_cfg.get("embedding_dim", 8)),
        hidden=[int(h) for h in model_cfg.get("hidden", [64, 32])],
        dropout=float(model_cfg.get("dropout", 0.0)),
        sparse=sparse,
        init_std=float(model_cfg.get("init_std", 0.01)),
    )


CHECKPOINT_FORMAT = "ctrbid_train.model_pt/1"


def save_checkpoint(path, model: CalibratedModel, config: dict, meta: dict, extra: dict | None = None) -> None:
    """Write ``model.pt``: state dict of the calibrated model + everything needed to rebuild it."""
    base = model.base
    torch.save(
        {
            "format": CHECKPOINT_FORMAT,
            "kind": "wide_deep",
            "config": config,
            "cardinality": base.cardinality,
            "n_cat": base.n_cat,
            "n_num": base.n_num,
            "platt": {"a": float(model.platt_a), "b": float(model.platt_b)},
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
        raise ValueError(f"{path} is not a ctrbid_train checkpoint (format {ckpt.get('format')!r})")
    base = build_model(ckpt["config"]["model"], ckpt["cardinality"], ckpt["n_cat"], ckpt["n_num"])
    model = CalibratedModel(base)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def _to_tensor(x, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype)
    # np.array copies: memory-mapped (read-only) arrays cannot back a tensor.
    return torch.from_numpy(np.array(x, dtype=torch.empty(0, dtype=dtype).numpy().dtype))


@torch.inference_mode()
def predict_logits(model: nn.Module, cat, num, batch_rows: int = 65536) -> torch.Tensor:
    """Model output for numpy/torch inputs, in batches, as a float32 tensor [N]."""
    model.eval()
    outs = []
    for start in range(0, cat.shape[0], batch_rows):
        c = _to_tensor(cat[start : start + batch_rows], torch.int64)
        n = _to_tensor(num[start : start + batch_rows], torch.float32)
        outs.append(model(c, n))
    return torch.cat(outs) if outs else torch.empty(0)
