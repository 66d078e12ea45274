"""Platt scaling: fit ``p = sigmoid(a * logit + b)`` by Newton's method.

Two parameters, so the exact Hessian is a 2x2 matrix; each step is damped by
halving until the mean log loss decreases. Computed in float64.
"""

from __future__ import annotations

import numpy as np


def _loss(a: float, b: float, z: np.ndarray, y: np.ndarray) -> float:
    t = a * z + b
    # log(1 + exp(t)) - y * t, stable for large |t|
    return float(np.mean(np.logaddexp(0.0, t) - y * t))


def fit_platt(
    logits, y, max_iter: int = 100, tol: float = 1e-10, ridge: float = 1e-12
) -> tuple[float, float]:
    """Return (a, b) minimising the log loss of ``sigmoid(a * logits + b)`` against ``y``.

    ``ridge`` only keeps the Hessian invertible when logits are constant.
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if z.shape != y.shape or z.size == 0:
        raise ValueError("logits and labels must be non-empty and of equal length")
    if y.min() == y.max():
        raise ValueError("Platt scaling needs both classes in the calibration split")
    a, b = 1.0, 0.0
    loss = _loss(a, b, z, y)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(-(a * z + b)))
        r = p - y
        w = p * (1.0 - p)
        g = np.array([np.mean(r * z), np.mean(r)])
        h = np.array([[np.mean(w * z * z) + ridge, np.mean(w * z)], [np.mean(w * z), np.mean(w) + ridge]])
        if np.max(np.abs(g)) < tol:
            break
        step = np.linalg.solve(h, g)
        t = 1.0
        while t > 1e-8:
            a_new, b_new = a - t * step[0], b - t * step[1]
            new_loss = _loss(a_new, b_new, z, y)
            if new_loss <= loss:
                break
            t *= 0.5
        else:
            break
        converged = loss - new_loss < tol * 1e-2
        a, b, loss = a_new, b_new, new_loss
        if converged:
            break
    return float(a), float(b)


def apply_platt(logits, a: float, b: float) -> np.ndarray:
    """Calibrated probabilities ``sigmoid(a * logits + b)`` (float64)."""
    z = np.asarray(logits, dtype=np.float64)
    return 1.0 / (1.0 + np.exp(-(a * z + b)))
