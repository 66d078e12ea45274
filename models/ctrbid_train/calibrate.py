"""Calibration maps from a head's raw logit to a probability, fitted on held-out rows.

* **Platt**: ``p = sigmoid(a * z + b)``, fitted by damped Newton steps on the
  exact 2x2 Hessian (float64).
* **Platt, slope only** (``platt_slope``): the same map, with ``a`` fitted on
  the calibration rows and ``b`` then set so that the mean prediction on them
  stays the head's own. The slope (how over- or under-confident the head is)
  can only be learnt on rows the model did not train on; the level (the mean
  rate) the head learnt from the training split, which holds eight times as
  many positives. A CVR head calibrated on a few hundred conversions otherwise
  takes on that split's noise in full (on the 5M-impression default log the
  validation split's 389 conversions are 8.5 % above their true rate).
* **Isotonic**: the pool-adjacent-violators fit of the click rate against the
  logit, on at most ``ISOTONIC_BINS`` equal-mass pre-bins (so the map has at
  most that many knots), stored as knots ``(x_k, y_k)``: ``x`` the mean logit
  of a block, ``y`` its rate, floored at ``ISOTONIC_FLOOR``. Between knots the
  map interpolates linearly in ``z``, outside it is flat. Invariant: ``x`` is
  strictly increasing and ``y`` non-decreasing, so the map is monotone.

``choose`` fits each map on the earlier half of the calibration rows (they are
in time order), scores them and the identity map (``sigmoid(z)``, the head as
trained) on the later half, and refits the winner on all rows. Fitted on the
past and judged on the future, as a served model is: interleaved halves share
their period's noise, so a map that follows the noise of the calibration
period wins there and loses on the next one (on the default log, Platt fitted
on even rows moved the test calibration ratio from 1.002 to 1.021). Choosing
on the rows a map was fitted on would always pick isotonic.

``Calibrator`` is the map as a torch module with the same arithmetic in
float32, so it is exported inside the ONNX graph (the server never
post-processes).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

METHODS = ("platt", "platt_slope", "isotonic", "auto")
ISOTONIC_BINS = 256
#: Lowest probability an isotonic block may map to (a block without positives
#: would otherwise answer 0, and a log loss of infinity on the next positive).
ISOTONIC_FLOOR = 1e-6


def _loss(a: float, b: float, z: np.ndarray, y: np.ndarray) -> float:
    t = a * z + b
    # log(1 + exp(t)) - y * t, stable for large |t|
    return float(np.mean(np.logaddexp(0.0, t) - y * t))


def fit_platt(logits, y, max_iter: int = 100, tol: float = 1e-10, ridge: float = 1e-12) -> tuple[float, float]:
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


def level_intercept(logits, a: float, target_mean: float, iters: int = 60) -> float:
    """The ``b`` with ``mean(sigmoid(a * logits + b)) == target_mean`` (bisection:
    the mean is increasing in ``b``)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    lo, hi = -30.0, 30.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if apply_platt(z, a, mid).mean() < target_mean:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def fit_platt_slope(logits, y) -> tuple[float, float]:
    """Platt's slope from ``(logits, y)``, with the intercept that keeps the head's
    mean prediction ``mean(sigmoid(logits))`` on these rows (see the module doc)."""
    a, _ = fit_platt(logits, y)
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    return a, level_intercept(z, a, float(apply_platt(z, 1.0, 0.0).mean()))


def _pav(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool adjacent violators on points sorted by ``x``: block mean ``x``, mean ``y``, weight."""
    xs, ys, ws = [], [], []
    for xi, yi, wi in zip(x, y, w):
        xs.append(xi * wi)
        ys.append(yi * wi)
        ws.append(wi)
        # Merge while the last block's rate is below the one before it.
        while len(ws) > 1 and ys[-1] * ws[-2] <= ys[-2] * ws[-1]:
            xw, yw, ww = xs.pop(), ys.pop(), ws.pop()
            xs[-1] += xw
            ys[-1] += yw
            ws[-1] += ww
    ws_a = np.asarray(ws)
    return np.asarray(xs) / ws_a, np.asarray(ys) / ws_a, ws_a


def fit_isotonic(logits, y, bins: int = ISOTONIC_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Knots ``(x, y)`` of the isotonic map (see the module doc)."""
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if z.shape != t.shape or z.size == 0:
        raise ValueError("logits and labels must be non-empty and of equal length")
    order = np.argsort(z, kind="mergesort")
    groups = np.array_split(order, min(bins, z.size))
    bx = np.array([z[g].mean() for g in groups])
    by = np.array([t[g].mean() for g in groups])
    bw = np.array([g.size for g in groups], dtype=np.float64)
    kx, ky, kw = _pav(bx, by, bw)
    # Pre-bins of equal logits can leave neighbouring blocks at the same x: pool
    # them (weighted), so x is strictly increasing; pooling neighbours whose rates
    # are in order keeps the rates in order.
    group = np.cumsum(np.r_[True, np.diff(kx) > 1e-9]) - 1
    w = np.bincount(group, weights=kw)
    kx = np.bincount(group, weights=kx * kw) / w
    ky = np.bincount(group, weights=ky * kw) / w
    ky = np.clip(ky, ISOTONIC_FLOOR, 1.0 - ISOTONIC_FLOOR)
    if kx.size == 1:  # one block: a constant map, two knots for the interpolation
        kx, ky = np.array([kx[0] - 1.0, kx[0] + 1.0]), np.array([ky[0], ky[0]])
    return kx, ky


def apply_isotonic(logits, knots_x: np.ndarray, knots_y: np.ndarray) -> np.ndarray:
    """The isotonic map at ``logits`` (float64), flat outside the knots."""
    return np.interp(np.asarray(logits, dtype=np.float64), knots_x, knots_y)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def _fit(method: str, z: np.ndarray, y: np.ndarray) -> dict:
    if method == "platt":
        a, b = fit_platt(z, y)
        return {"method": "platt", "a": a, "b": b}
    if method == "platt_slope":
        # Stored and exported as a Platt map: only the fit differs.
        a, b = fit_platt_slope(z, y)
        return {"method": "platt", "a": a, "b": b, "fit": "slope; intercept keeps the head's mean"}
    kx, ky = fit_isotonic(z, y)
    return {"method": "isotonic", "x": kx.tolist(), "y": ky.tolist()}


def apply(cal: dict, logits) -> np.ndarray:
    """A fitted map (``_fit``'s dict) at ``logits``."""
    if cal["method"] == "platt":
        return apply_platt(logits, cal["a"], cal["b"])
    return apply_isotonic(logits, np.asarray(cal["x"]), np.asarray(cal["y"]))


def choose(logits, y, method: str = "auto") -> dict:
    """Fit the calibration map for one head; ``auto`` picks by held-out log loss.

    The result holds the map and, for ``auto``, the log loss of each method on
    the held-out half (``selection``).
    """
    z = np.asarray(logits, dtype=np.float64).reshape(-1)
    t = np.asarray(y, dtype=np.float64).reshape(-1)
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if t.size == 0 or t.min() == t.max():
        # Nothing to fit (a tiny log whose held-out rows hold one class): keep sigmoid(z).
        return {"method": "platt", "a": 1.0, "b": 0.0, "note": "calibration rows hold one class: identity map"}
    if method != "auto":
        return _fit(method, z, t)
    half = z.size // 2
    fit_half, test_half = slice(0, half), slice(half, None)
    identity = {"method": "platt", "a": 1.0, "b": 0.0}
    scores = {"none": _log_loss(apply(identity, z[test_half]), t[test_half])}
    for m in ("platt", "platt_slope", "isotonic"):
        try:
            scores[m] = _log_loss(apply(_fit(m, z[fit_half], t[fit_half]), z[test_half]), t[test_half])
        except ValueError:  # a half without positives: Platt cannot be fitted
            scores[m] = float("inf")
    best = min(scores, key=scores.get)
    out = {**identity, "note": "the identity map scored best on held-out rows"} if best == "none" else _fit(best, z, t)
    out["selection"] = {
        "chosen": best,
        "held_out_log_loss": scores,
        "fitted_on": "earlier half (time order)",
        "scored_on": "later half",
    }
    return out


class Calibrator(nn.Module):
    """A fitted map as a torch module: logits [N] -> probabilities [N] (float32)."""

    def __init__(self, cal: dict):
        super().__init__()
        self.method = cal["method"]
        if self.method == "platt":
            self.register_buffer("a", torch.tensor(float(cal["a"])))
            self.register_buffer("b", torch.tensor(float(cal["b"])))
        else:
            x = torch.tensor(cal["x"], dtype=torch.float64)
            y = torch.tensor(cal["y"], dtype=torch.float64)
            # f(z) = y0 + sum_k slope_k * (clamp(z, x_k, x_k+1) - x_k): linear
            # interpolation between knots, flat outside, one fused broadcast.
            self.register_buffer("lo", x[:-1].float())
            self.register_buffer("hi", x[1:].float())
            self.register_buffer("slope", ((y[1:] - y[:-1]) / (x[1:] - x[:-1])).float())
            self.register_buffer("y0", y[:1].float())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.method == "platt":
            return torch.sigmoid(z * self.a + self.b)
        zc = torch.minimum(torch.maximum(z.unsqueeze(-1), self.lo), self.hi)
        return self.y0 + ((zc - self.lo) * self.slope).sum(dim=-1)

    @staticmethod
    def identity() -> "Calibrator":
        """``sigmoid(z)``: the map of a head before calibration."""
        return Calibrator({"method": "platt", "a": 1.0, "b": 0.0})
