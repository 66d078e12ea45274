"""The model zoo: one *tower* per architecture, over shared embedding rows.

Every model sees the same inputs: ``cat`` [N, F] global indices (one index
space for all fields, see the feature spec) and ``num`` [N, D]. The owner of
the towers (``model.CtrCvrModel``) looks the indices up once and hands each
tower

* ``wide`` [N, F]: the tower's own scalar weight per index (its linear part),
* ``emb`` [N, F, k]: rows of the embedding table the heads share,
* ``num`` [N, D],

and the tower returns one logit per row. The kinds:

* ``lr``: ``sum(wide) + num . a + b`` (the wide part alone);
* ``fm``: lr + the factorisation-machine pairwise term
  ``sum_k r_k * 0.5 * ((sum_f e_fk)^2 - sum_f e_fk^2)``; ``r`` [k] is the
  tower's own weight per embedding dimension (1 at start), so the CTR and CVR
  heads can share the embeddings and still weigh interactions differently;
* ``deepfm``: fm + an MLP on the concatenated embeddings and ``num``;
* ``wide_deep``: lr + the same MLP;
* ``dcn_v2``: DCN-v2 (Wang et al. 2021), cross layers
  ``x_{l+1} = x_0 * (W_l x_l + b_l) + x_l`` in parallel with the MLP, on the
  concatenated embeddings and ``num``, joined by a linear layer.

Every op is plain tensor arithmetic, so all kinds export to ONNX opset 17 with
the TorchScript exporter.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("lr", "fm", "deepfm", "wide_deep", "dcn_v2")
#: Kinds that read the shared embedding table (``lr`` does not).
USES_EMBEDDINGS = {"fm", "deepfm", "wide_deep", "dcn_v2"}


def mlp(width: int, hidden: list[int], dropout: float, out: int | None = 1) -> nn.Sequential:
    """ReLU layers ``hidden`` on ``width`` inputs, then a bias-free linear to ``out`` (if any)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    if out is not None:
        layers.append(nn.Linear(width, out, bias=False))
    return nn.Sequential(*layers)


class Linear(nn.Module):
    """The part every kind but DCN-v2 shares: ``sum(wide) + num . a + b``."""

    def __init__(self, n_num: int):
        super().__init__()
        self.num = nn.Linear(n_num, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(1))
        nn.init.zeros_(self.num.weight)

    def forward(self, wide: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        return wide.sum(dim=1) + self.num(num).squeeze(-1) + self.bias


def fm_pairs(emb: torch.Tensor) -> torch.Tensor:
    """Per-dimension FM pairwise sums ``0.5 * ((sum_f e)^2 - sum_f e^2)``: [N, k]."""
    s = emb.sum(dim=1)
    return 0.5 * (s * s - (emb * emb).sum(dim=1))


class Tower(nn.Module):
    """One head's logit for one architecture ``kind`` (see the module doc)."""

    def __init__(self, kind: str, n_cat: int, n_num: int, dim: int, hidden: list[int], dropout: float, cross_layers: int):
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
        self.kind = kind
        deep_in = n_cat * dim + n_num
        if kind != "dcn_v2":
            self.linear = Linear(n_num)
        if kind in ("fm", "deepfm"):
            self.fm_weight = nn.Parameter(torch.ones(dim))
        if kind in ("deepfm", "wide_deep"):
            self.deep = mlp(deep_in, hidden, dropout)
        if kind == "dcn_v2":
            self.cross = nn.ModuleList(nn.Linear(deep_in, deep_in) for _ in range(cross_layers))
            for layer in self.cross:
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.zeros_(layer.bias)
            self.deep = mlp(deep_in, hidden, dropout, out=None)
            self.head = nn.Linear(deep_in + (hidden[-1] if hidden else deep_in), 1)

    def forward(self, wide: torch.Tensor, emb: torch.Tensor | None, num: torch.Tensor) -> torch.Tensor:
        if self.kind == "lr":
            return self.linear(wide, num)
        if self.kind == "dcn_v2":
            x0 = torch.cat([emb.flatten(1), num], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x
            return self.head(torch.cat([x, self.deep(x0)], dim=1)).squeeze(-1)
        logit = self.linear(wide, num)
        if self.kind in ("fm", "deepfm"):
            logit = logit + (fm_pairs(emb) * self.fm_weight).sum(dim=1)
        if self.kind in ("deepfm", "wide_deep"):
            logit = logit + self.deep(torch.cat([emb.flatten(1), num], dim=1)).squeeze(-1)
        return logit

    def set_bias(self, logit: float) -> None:
        """Start from the base rate: the bias is the logit of the training rate."""
        with torch.no_grad():
            if self.kind == "dcn_v2":
                self.head.bias.fill_(logit)
            else:
                self.linear.bias.fill_(logit)
