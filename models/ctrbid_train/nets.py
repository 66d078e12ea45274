"""The model zoo: one *tower* per architecture, over shared embedding rows.

Every model sees the same inputs: ``cat`` [N, F] global indices (one index
space for all fields, see the feature spec) and ``num`` [N, D]. The owner of
the towers (``model.CtrCvrModel``) looks the indices up once and hands each
tower

* ``wide`` [N, F]: the tower's own scalar weight per index (its linear part),
* ``emb`` [N, F, k]: rows of the embedding table the heads share,
* ``num`` [N, D],

* ``tokens`` [N, F + D, w]: for ``autoint`` only, the shared attention
  layers' output (``Interacting``), else None;

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
  concatenated embeddings and ``num``, joined by a linear layer;
* ``autoint``: AutoInt (Song et al. 2019): the fields' embeddings plus one token
  per numeric feature (``num_d * u_d``) go through multi-head self-attention
  layers with a residual projection (``relu(attention(x) + x W_res)``); each
  head reads the last layer's tokens, flattened, through a linear layer of its
  own, plus lr, and with ``hidden`` an MLP beside it (AutoInt+). The attention
  layers (``Interacting``) are a trunk the heads share, like the embeddings:
  they are most of the model's multiply-adds, and a second copy for the CVR
  head would double the cost of every candidate scored;
* ``finalmlp``: FinalMLP (Mao et al. 2023): two MLP streams over the
  concatenated embeddings and ``num``, each behind its own feature gate
  ``2 sigmoid(g_s)``, fused by a multi-head bilinear layer
  ``w1.a + w2.b + sum_h a_h^T W_h b_h + b`` over the two streams' outputs
  ``a``, ``b`` cut into ``fusion_heads`` pieces. No wide part. The paper's gate
  is an MLP over context fields; with none named (the reference
  implementation's default) its input is a learnt constant, so the gate is a
  learnt weight per input, which ``g_s`` is without the MLP.

Every op is plain tensor arithmetic, so all kinds export to ONNX opset 17 with
the TorchScript exporter.
"""

from __future__ import annotations

import torch
from torch import nn

KINDS = ("lr", "fm", "deepfm", "wide_deep", "dcn_v2", "autoint", "finalmlp")
#: Kinds that read the shared embedding table (``lr`` does not).
USES_EMBEDDINGS = {"fm", "deepfm", "wide_deep", "dcn_v2", "autoint", "finalmlp"}
#: Kinds with a linear part ``sum(wide) + num . a + b`` (and so a wide table per head).
HAS_WIDE = {"lr", "fm", "deepfm", "wide_deep", "autoint"}


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


class SelfAttention(nn.Module):
    """One AutoInt layer: ``relu(MultiHead(x) + x W_res)`` over ``x`` [N, T, width].

    Scaled dot-product attention per head (``heads`` x ``dim`` wide); output
    [N, T, heads x dim]. ``scaled_dot_product_attention`` is twice as fast to
    train on the CPU as the matmuls written out, and the TorchScript exporter
    writes it as those matmuls and a softmax (opset 17).
    """

    def __init__(self, width: int, heads: int, dim: int):
        super().__init__()
        self.heads, self.dim = heads, dim
        self.qkv = nn.Linear(width, 3 * heads * dim, bias=False)
        self.residual = nn.Linear(width, heads * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t = x.shape[0], x.shape[1]
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.dim).permute(2, 0, 3, 1, 4)  # 3 x [N, H, T, d]
        attended = nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, self.heads * self.dim)
        return torch.relu(attended + self.residual(x))


class Interacting(nn.Module):
    """AutoInt's interacting layers, shared by the heads: the fields' embeddings
    [N, F, k] and ``num`` [N, D] to tokens [N, F + D, heads x head_dim]."""

    def __init__(self, n_num: int, dim: int, layers: int, heads: int, head_dim: int):
        super().__init__()
        if layers < 1:
            raise ValueError("autoint needs at least one attention layer")
        self.num_tokens = nn.Parameter(torch.randn(n_num, dim) * 0.01)  # u_d: numeric feature d's token direction
        widths = [dim] + [heads * head_dim] * layers
        self.layers = nn.ModuleList(SelfAttention(widths[i], heads, head_dim) for i in range(layers))
        self.width = widths[-1]

    def forward(self, emb: torch.Tensor, num: torch.Tensor) -> torch.Tensor:
        x = torch.cat([emb, num.unsqueeze(-1) * self.num_tokens], dim=1)
        for layer in self.layers:
            x = layer(x)
        return x


class FinalMlp(nn.Module):
    """FinalMLP's two gated streams and bilinear fusion: ``x`` [N, width] to a logit [N]."""

    def __init__(self, width: int, hidden: list[int], dropout: float, fusion_heads: int):
        super().__init__()
        if not hidden or hidden[-1] % fusion_heads:
            raise ValueError(f"finalmlp: the streams' last width ({hidden[-1] if hidden else 0}) must be a multiple of fusion_heads ({fusion_heads})")
        self.fusion_heads = fusion_heads
        # Feature selection: per stream a learnt gate on each input, open at the start
        # (2 sigmoid(0) = 1: both streams see x as it is).
        self.gates = nn.Parameter(torch.zeros(2, width))
        self.streams = nn.ModuleList(mlp(width, hidden, dropout, out=None) for _ in range(2))
        piece = hidden[-1] // fusion_heads
        self.w1 = nn.Linear(hidden[-1], 1, bias=False)
        self.w2 = nn.Linear(hidden[-1], 1, bias=True)
        self.w12 = nn.Parameter(torch.randn(fusion_heads, piece, piece) * 0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = (stream(x * 2 * torch.sigmoid(gate)) for stream, gate in zip(self.streams, self.gates))
        n = x.shape[0]
        pa, pb = a.reshape(n, self.fusion_heads, 1, -1), b.reshape(n, self.fusion_heads, -1, 1)
        bilinear = (pa @ self.w12 @ pb).reshape(n, self.fusion_heads).sum(dim=1)
        return (self.w1(a) + self.w2(b)).squeeze(-1) + bilinear


class Tower(nn.Module):
    """One head's logit for one architecture ``kind`` (see the module doc)."""

    def __init__(
        self,
        kind: str,
        n_cat: int,
        n_num: int,
        dim: int,
        hidden: list[int],
        dropout: float,
        cross_layers: int,
        token_width: int = 16,
        fusion_heads: int = 2,
    ):
        """``token_width`` is the width of the shared attention layers' tokens (autoint)."""
        super().__init__()
        if kind not in KINDS:
            raise ValueError(f"unknown model kind {kind!r} (one of {', '.join(KINDS)})")
        self.kind = kind
        deep_in = n_cat * dim + n_num
        self.deep: nn.Module | None = None
        if kind in HAS_WIDE:
            self.linear = Linear(n_num)
        if kind in ("fm", "deepfm"):
            self.fm_weight = nn.Parameter(torch.ones(dim))
        if kind in ("deepfm", "wide_deep") or (kind == "autoint" and hidden):
            self.deep = mlp(deep_in, hidden, dropout)
        if kind == "autoint":
            self.attended = nn.Linear((n_cat + n_num) * token_width, 1, bias=False)
        if kind == "finalmlp":
            self.final = FinalMlp(deep_in, hidden, dropout, fusion_heads)
        if kind == "dcn_v2":
            self.cross = nn.ModuleList(nn.Linear(deep_in, deep_in) for _ in range(cross_layers))
            for layer in self.cross:
                nn.init.normal_(layer.weight, 0.0, 0.01)
                nn.init.zeros_(layer.bias)
            self.deep = mlp(deep_in, hidden, dropout, out=None)
            self.head = nn.Linear(deep_in + (hidden[-1] if hidden else deep_in), 1)

    def forward(self, wide: torch.Tensor, emb: torch.Tensor | None, num: torch.Tensor, tokens: torch.Tensor | None = None) -> torch.Tensor:
        if self.kind == "lr":
            return self.linear(wide, num)
        if self.kind == "dcn_v2":
            x0 = torch.cat([emb.flatten(1), num], dim=1)
            x = x0
            for layer in self.cross:
                x = x0 * layer(x) + x
            return self.head(torch.cat([x, self.deep(x0)], dim=1)).squeeze(-1)
        if self.kind == "finalmlp":
            return self.final(torch.cat([emb.flatten(1), num], dim=1))
        logit = self.linear(wide, num)
        if self.kind in ("fm", "deepfm"):
            logit = logit + (fm_pairs(emb) * self.fm_weight).sum(dim=1)
        if self.kind == "autoint":
            logit = logit + self.attended(tokens.flatten(1)).squeeze(-1)
        if self.deep is not None:
            logit = logit + self.deep(torch.cat([emb.flatten(1), num], dim=1)).squeeze(-1)
        return logit

    def set_bias(self, logit: float) -> None:
        """Start from the base rate: the bias is the logit of the training rate."""
        with torch.no_grad():
            if self.kind == "dcn_v2":
                self.head.bias.fill_(logit)
            elif self.kind == "finalmlp":
                self.final.w2.bias.fill_(logit)
            else:
                self.linear.bias.fill_(logit)
