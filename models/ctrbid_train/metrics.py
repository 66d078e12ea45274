"""Binary-classification metrics, numpy only.

All functions take predicted probabilities ``p`` and 0/1 labels ``y`` (any
float or int dtype) and compute in float64.
"""

from __future__ import annotations

import math

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before taking logs. The models
#: emit float32, whose resolution just below 1.0 is ~6e-8, so 1e-7 is the
#: tightest clip that does not depend on float32 rounding.
EPS = 1e-7


def _as_arrays(p, y) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if p.shape != y.shape:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} differ in length")
    return p, y


def auc(scores, y) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties get their average rank.

    Returns NaN when the labels hold a single class.
    """
    s, y = _as_arrays(scores, y)
    pos = y > 0.5
    n_pos = int(pos.sum())
    n_neg = y.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Boundaries of runs of equal scores; every member of a run gets the
    # average of the 1-based ranks the run spans.
    starts = np.flatnonzero(np.r_[True, s_sorted[1:] != s_sorted[:-1]])
    ends = np.r_[starts[1:], s_sorted.size]  # exclusive
    avg_rank = (starts + 1 + ends) / 2.0
    ranks = np.empty(s.size, dtype=np.float64)
    ranks[order] = np.repeat(avg_rank, ends - starts)
    rank_sum_pos = ranks[pos].sum()
    u = rank_sum_pos - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks of ``x``, ties sharing the average of the ranks they span."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], xs.size]
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + 1 + ends) / 2.0, ends - starts)
    return ranks


def paired_auc(scores: dict[str, np.ndarray], y) -> tuple[dict[str, float], dict[tuple[str, str], float]]:
    """AUCs of several scorers of the same rows and the standard error of every
    pairwise difference, by DeLong's method (DeLong et al. 1988, with the midrank
    algorithm of Sun and Xu 2014).

    The scorers share the rows, so their AUCs' errors are correlated: the error of
    ``AUC_a - AUC_b`` is far smaller than either AUC's own. Returns ``(auc,
    se)``: ``auc[name]``, and ``se[(a, b)]`` (= ``se[(b, a)]``) the standard error
    of ``auc[a] - auc[b]``. Needs both classes in ``y``.
    """
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    pos = y > 0.5
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        raise ValueError("paired_auc needs both classes in the labels")
    names = list(scores)
    v10, v01, aucs = [], [], {}
    for name in names:
        s = np.asarray(scores[name], dtype=np.float64).reshape(-1)
        if s.shape != y.shape:
            raise ValueError(f"scores {name!r} {s.shape} and labels {y.shape} differ in length")
        all_ranks = _midranks(s)
        x_ranks, y_ranks = _midranks(s[pos]), _midranks(s[~pos])
        # Per positive: the share of negatives it outranks; per negative: the share of
        # positives that outrank it (ties count a half).
        v10.append((all_ranks[pos] - x_ranks) / n)
        v01.append(1.0 - (all_ranks[~pos] - y_ranks) / m)
        aucs[name] = float(v10[-1].mean())
    s10 = np.atleast_2d(np.cov(np.vstack(v10)))
    s01 = np.atleast_2d(np.cov(np.vstack(v01)))
    se = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                var = (s10[i, i] + s10[j, j] - 2 * s10[i, j]) / m + (s01[i, i] + s01[j, j] - 2 * s01[i, j]) / n
                se[(a, b)] = float(math.sqrt(max(var, 0.0)))
    return aucs, se


def pr_auc(scores, y) -> float:
    """Area under the precision-recall curve as average precision:
    ``sum_k (R_k - R_{k-1}) P_k`` over the distinct score thresholds, high to low.

    Ties share a threshold. NaN without positives. A random ranking scores about
    the positive rate, so compare it with ``observed_rate``.
    """
    s, y = _as_arrays(scores, y)
    n_pos = float((y > 0.5).sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], (y[order] > 0.5).astype(np.float64)
    last = np.r_[s_sorted[1:] != s_sorted[:-1], True]  # last row of each run of equal scores
    tp = np.cumsum(y_sorted)[last]
    seen = (np.flatnonzero(last) + 1).astype(np.float64)
    recall = tp / n_pos
    precision = tp / seen
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def log_loss(p, y) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to EPS."""
    p, y = _as_arrays(p, y)
    if p.size == 0:
        return float("nan")
    p = np.clip(p, EPS, 1.0 - EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def entropy(rate: float) -> float:
    """Binary entropy (nats) of a Bernoulli(rate): the log loss of predicting the rate."""
    r = min(max(float(rate), EPS), 1.0 - EPS)
    return -(r * math.log(r) + (1.0 - r) * math.log1p(-r))


def normalized_entropy(p, y) -> float:
    """Log loss divided by the entropy of the empirical positive rate (He et al. 2014).

    Below 1 means better than always predicting the observed rate.
    """
    p, y = _as_arrays(p, y)
    return log_loss(p, y) / entropy(y.mean())


def calibration_ratio(p, y) -> float:
    """Mean prediction divided by the observed positive rate (1.0 is perfect)."""
    p, y = _as_arrays(p, y)
    observed = y.mean()
    return float(p.mean() / observed) if observed > 0 else float("nan")


def ece(p, y, bins: int = 20) -> float:
    """Expected calibration error with ``bins`` equal-mass bins.

    Rows are sorted by prediction and cut into ``bins`` groups of (almost)
    equal size; ECE = sum_b (n_b / N) * |mean(p_b) - mean(y_b)|.
    """
    p, y = _as_arrays(p, y)
    if p.size == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    total = 0.0
    for idx in np.array_split(order, min(bins, p.size)):
        total += abs(p[idx].sum() - y[idx].sum())
    return float(total / p.size)


def summarize(p, y, with_ece: bool = True) -> dict:
    """All metrics of one split as a JSON-ready dict."""
    p, y = _as_arrays(p, y)
    out = {
        "rows": int(y.size),
        "positives": int((y > 0.5).sum()),
        "observed_rate": float(y.mean()) if y.size else float("nan"),
        "mean_prediction": float(p.mean()) if p.size else float("nan"),
        "auc": auc(p, y),
        "log_loss": log_loss(p, y),
        "ne": normalized_entropy(p, y),
        "calibration_ratio": calibration_ratio(p, y),
        "pr_auc": pr_auc(p, y),
    }
    if with_ece:
        out["ece"] = ece(p, y)
    return out
