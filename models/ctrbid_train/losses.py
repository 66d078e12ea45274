"""Training losses on raw logits: binary cross-entropy and focal loss.

Every loss takes ``log p`` and ``log(1 - p)`` (computed stably from logits by
the callers below) and 0/1 labels, and returns the mean over rows.

Focal loss (Lin et al. 2017) down-weights easy rows by ``(1 - p_t)^gamma``;
it ranks as well or better on imbalanced data but its probabilities are not
calibrated, which is why every head is calibrated after training.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOSSES = ("bce", "focal")
#: Upper bound of ``log p`` for a product of probabilities (keeps ``log(1 - p)`` finite).
_LOG_ONE = math.log1p(-1e-7)


def _bce(logp: torch.Tensor, log1mp: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return -(y * logp + (1 - y) * log1mp)


def _focal(logp: torch.Tensor, log1mp: torch.Tensor, y: torch.Tensor, gamma: float) -> torch.Tensor:
    p = logp.exp()
    return -(y * (1 - p).pow(gamma) * logp + (1 - y) * p.pow(gamma) * log1mp)


class Loss:
    """``kind`` is ``bce`` or ``focal`` (with ``gamma``); per-row terms, not reduced."""

    def __init__(self, kind: str = "bce", gamma: float = 2.0):
        if kind not in LOSSES:
            raise ValueError(f"train.loss must be one of {LOSSES}, got {kind!r}")
        self.kind, self.gamma = kind, float(gamma)

    def _terms(self, logp, log1mp, y):
        if self.kind == "bce":
            return _bce(logp, log1mp, y)
        return _focal(logp, log1mp, y, self.gamma)

    def of_logit(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row loss of ``sigmoid(z)`` against ``y``."""
        return self._terms(F.logsigmoid(z), F.logsigmoid(-z), y)

    def of_product(self, z1: torch.Tensor, z2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-row loss of ``sigmoid(z1) * sigmoid(z2)`` against ``y`` (ESMM's pCTCVR)."""
        logp = (F.logsigmoid(z1) + F.logsigmoid(z2)).clamp(max=_LOG_ONE)
        return self._terms(logp, torch.log(-torch.expm1(logp)), y)
