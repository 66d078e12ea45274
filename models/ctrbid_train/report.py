"""The evaluation report: every model of a zoo, and the oracle, on the same test rows.

``build_report(runs, features_dir, out_dir)`` scores the test split with each
run's exported ``model.onnx`` (the graph the server runs, calibration
included) and writes

* ``report.md``: per head (CTR on every test row, CVR on the clicked ones) a
  table of AUC, log loss, normalised entropy, calibration ratio (against the
  labels and, on a simulator log, against the true probabilities), ECE (20
  equal-mass bins), PR-AUC, and inference cost (ONNX Runtime, µs per row at
  the bidder's batch sizes, one thread), the oracle row (the simulator's true probabilities) when the data
  has one, the labels' noise band on a calibration ratio, the AUC differences
  that matter (each model against LR, the oracle against each model) paired on
  the same rows with DeLong's 95 % intervals, the literature's order LR < FM <
  deep models checked step by step (and, where FM falls short on a spec that
  crosses fields, why), per-field calibration errors for the worst fields, and
  training times;
* ``reliability.png`` and ``roc.png``: reliability diagrams and ROC curves;
* ``report.json``: the same numbers.

Extra ONNX files (the INT8 variant) are scored alongside with ``extra``, in
batches of 64 rows like the bidder's micro-batches (a dynamically quantised
graph's output depends on the batch it is scored in).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import metrics
from .data import load_features, split_bounds
from .export import onnxruntime_session, predict_onnx

ORACLE = "oracle"
#: Rows per ONNX Runtime call when timing inference, and timed calls.
COST_BATCH, COST_CALLS = 64, 400
#: The batch sizes the bidder scores in: a request's candidates alone (about 50-70 rows,
#: inline scoring), a few of them, and a full micro-batch (``scoring.max_batch_rows``).
COST_BATCHES = (8, 64, 512)
#: Rows timed per pass at each batch size of ``cost_per_row``.
COST_ROWS = 25_600
#: A field value needs this many test rows to be its own group in the per-field error.
FIELD_MIN_ROWS = 200
TOP_FIELDS = 8


def inference_costs(paths: dict[str, Path], cat: np.ndarray, num: np.ndarray, batch: int = COST_BATCH, calls: int = COST_CALLS, rounds: int = 7) -> dict[str, float]:
    """ONNX Runtime rows/s of each model at ``batch`` rows per call, one intra-op thread.

    The models are timed in turns, ``rounds`` passes of ``calls`` calls each, and
    each keeps its fastest pass: on a shared machine a slow moment then costs every
    model a pass, not one model its figure.
    """
    blocks = []
    for k in range(calls):
        s = (k * batch) % max(cat.shape[0] - batch, 1)
        blocks.append({"cat": np.ascontiguousarray(cat[s : s + batch]), "num": np.ascontiguousarray(num[s : s + batch])})
    sessions = {n: onnxruntime_session(p, threads=1) for n, p in paths.items()}
    outputs = {n: [o.name for o in s.get_outputs()] for n, s in sessions.items()}
    for n, session in sessions.items():  # warm-up
        for feed in blocks[:20]:
            session.run(outputs[n], feed)
    best = dict.fromkeys(sessions, float("inf"))
    for _ in range(rounds):
        for n, session in sessions.items():
            t = time.perf_counter()
            for feed in blocks:
                session.run(outputs[n], feed)
            best[n] = min(best[n], time.perf_counter() - t)
    return {n: calls * batch / best[n] for n in sessions}


def cost_per_row(paths: dict[str, Path], cat: np.ndarray, num: np.ndarray, batches=COST_BATCHES) -> dict[str, dict[int, float]]:
    """Microseconds of ONNX Runtime per row of each model at each batch size (one thread)."""
    out: dict[str, dict[int, float]] = {n: {} for n in paths}
    for batch in batches:
        for n, rows_per_second in inference_costs(paths, cat, num, batch=batch, calls=max(COST_ROWS // batch, 20)).items():
            out[n][batch] = 1e6 / rows_per_second
    return out


def field_calibration(p: np.ndarray, y: np.ndarray, cat: np.ndarray, fields: list[str], min_rows: int = FIELD_MIN_ROWS) -> dict:
    """Per field: ``sum_v |sum_{i in v} (p_i - y_i)| / N`` over its values.

    Values with fewer than ``min_rows`` rows are pooled into one group. Even the
    true probabilities score above 0 (the labels are draws), so read a model's
    number against the oracle's.
    """
    out = {}
    n = p.size
    for f, name in enumerate(fields):
        values, inverse, counts = np.unique(cat[:, f], return_inverse=True, return_counts=True)
        group = np.where(counts[inverse] >= min_rows, inverse, -1) + 1  # 0: the pooled rare values
        gap = np.bincount(group, weights=p - y)
        out[name] = float(np.abs(gap).sum() / n)
    return out


def head_metrics(p: np.ndarray, y: np.ndarray) -> dict:
    m = metrics.summarize(p, y)
    return {k: m[k] for k in ("auc", "log_loss", "ne", "calibration_ratio", "ece", "pr_auc", "mean_prediction", "rows", "positives")}


def _curves(p: np.ndarray, y: np.ndarray, bins: int = 20) -> dict:
    order = np.argsort(p, kind="mergesort")
    groups = np.array_split(order, min(bins, p.size))
    rel = [(float(p[g].mean()), float(y[g].mean())) for g in groups]
    desc = np.argsort(-p, kind="mergesort")
    tp = np.cumsum(y[desc] > 0.5)
    fp = np.cumsum(y[desc] <= 0.5)
    step = max(1, p.size // 500)
    fpr = np.r_[0.0, fp[::step] / max(fp[-1], 1), 1.0]
    tpr = np.r_[0.0, tp[::step] / max(tp[-1], 1), 1.0]
    return {"reliability": rel, "roc": (fpr.tolist(), tpr.tolist())}


def _plot(curves: dict, heads: list[str], out_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for what, fname in (("reliability", "reliability.png"), ("roc", "roc.png")):
        fig, axes = plt.subplots(1, len(heads), figsize=(6.5 * len(heads), 5.5), squeeze=False)
        for ax, head in zip(axes[0], heads):
            for name, by_head in curves.items():
                if head not in by_head:
                    continue
                style = {"color": "black", "linestyle": "--", "linewidth": 2} if name == ORACLE else {}
                if what == "reliability":
                    xs, ys = zip(*by_head[head]["reliability"])
                    ax.plot(xs, np.maximum(ys, 1e-5), marker="o", markersize=3, label=name, **style)
                else:
                    fpr, tpr = by_head[head]["roc"]
                    ax.plot(fpr, tpr, label=name, **style)
            if what == "reliability":
                lo = min(min(x for x, _ in c[head]["reliability"]) for c in curves.values() if head in c)
                hi = max(max(x for x, _ in c[head]["reliability"]) for c in curves.values() if head in c)
                ax.plot([lo, hi], [lo, hi], color="grey", linewidth=0.8)
                ax.set_xscale("log")
                ax.set_yscale("log")
                ax.set_xlabel("mean prediction (20 equal-mass bins)")
                ax.set_ylabel("observed rate")
            else:
                ax.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
                ax.set_xlabel("false positive rate")
                ax.set_ylabel("true positive rate")
            ax.set_title(f"{'pCTR (all test rows)' if head == 'ctr' else 'pCVR (clicked test rows)'}")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        fig.savefig(out_dir / fname, dpi=90)
        plt.close(fig)
        files.append(fname)
    return files


def _fmt(x, digits=4):
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "–"
    if isinstance(x, (int, np.integer)):
        return f"{x:,}"
    return f"{x:.{digits}f}"


def _cost(r: dict) -> str:
    """A row's µs at each of ``COST_BATCHES``, as ``a / b / c``."""
    per_row = r.get("us_per_row")
    return "–" if not per_row else " / ".join(f"{per_row[b]:.2f}" for b in COST_BATCHES)


def _table(rows: dict, head: str) -> list[str]:
    batches = " / ".join(map(str, COST_BATCHES))
    lines = [
        f"| model | AUC | log loss | NE | calibration ratio | vs truth | ECE | PR-AUC | µs per row at batch {batches} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        m = r["heads"].get(head)
        if m is None:
            continue
        lines.append(
            f"| {name} | {_fmt(m['auc'])} | {_fmt(m['log_loss'], 5)} | {_fmt(m['ne'])} | {_fmt(m['calibration_ratio'], 3)} "
            f"| {_fmt(m.get('calibration_ratio_vs_truth'), 3)} | {_fmt(m['ece'], 5)} | {_fmt(m['pr_auc'])} | {'as above' if head != 'ctr' and r.get('us_per_row') else _cost(r)} |"
        )
    return lines


def _label_noise(rows: dict) -> list[str]:
    """Per head, the 95 % sampling band of a calibration ratio against the labels."""
    out = []
    for head, label in (("ctr", "pCTR"), ("cvr", "pCVR")):
        positives = next((r["heads"][head]["positives"] for r in rows.values() if head in r["heads"]), 0)
        if positives:
            out.append(f"{label} ± {196 / positives ** 0.5:.1f} % ({positives:,} positives)")
    return out


def build_report(
    runs: list[Path],
    features_dir: Path,
    out_dir: Path,
    extra: dict[str, Path] | None = None,
    title: str = "ctrbid model zoo",
    reference: str | None = None,
) -> dict:
    """Score every run (and ``extra`` ONNX files) on the test split; write the report files.

    ``reference`` (default: the first run) is the model whose worst fields the
    per-field table shows.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fs = load_features(features_dir)
    evals = {Path(r).name: json.loads((Path(r) / "eval.json").read_text()) for r in runs}
    split = next(iter(evals.values()))["config"]["split"] if evals else {"train": 0.8, "valid": 0.1}
    t0, t1 = split_bounds(fs.rows, float(split["train"]), float(split["valid"]))["test"]
    cat, num = np.asarray(fs.cat[t0:t1]), np.asarray(fs.num[t0:t1])
    click = np.asarray(fs.click[t0:t1], dtype=np.float64)
    conv = None if fs.conv is None else np.asarray(fs.conv[t0:t1], dtype=np.float64)
    clicked = click > 0.5
    fields = list(fs.meta["cat_fields"])
    models = {name: Path(r) / "model.onnx" for name, r in zip(evals, runs)}
    models.update(extra or {})

    # The simulator's true probabilities, when the log has them: a model's calibration
    # against them is free of the test labels' sampling noise (5 % on 389 conversions).
    truth_ctr = None if fs.pctr_true is None else np.asarray(fs.pctr_true[t0:t1], dtype=np.float64)
    truth_cvr = None if fs.pcvr_true is None else np.asarray(fs.pcvr_true[t0:t1], dtype=np.float64)[clicked]

    def against_truth(m: dict, p: np.ndarray, truth: np.ndarray | None) -> dict:
        m["calibration_ratio_vs_truth"] = None if truth is None else float(p.sum() / truth.sum())
        return m

    rows, curves, field_err, scores = {}, {}, {}, {"ctr": {}, "cvr": {}}
    for name, path in models.items():
        batch_rows = COST_BATCH if name in (extra or {}) else 65536
        preds = predict_onnx(onnxruntime_session(path), cat, num, batch_rows=batch_rows).astype(np.float64)
        heads = {"ctr": against_truth(head_metrics(preds[:, 0], click), preds[:, 0], truth_ctr)}
        scores["ctr"][name] = preds[:, 0]
        curves[name] = {"ctr": _curves(preds[:, 0], click)}
        field_err[name] = field_calibration(preds[:, 0], click, cat, fields)
        if preds.shape[1] > 1 and conv is not None:
            heads["cvr"] = against_truth(head_metrics(preds[clicked, 1], conv[clicked]), preds[clicked, 1], truth_cvr)
            scores["cvr"][name] = preds[clicked, 1]
            curves[name]["cvr"] = _curves(preds[clicked, 1], conv[clicked])
        rows[name] = {"path": str(path), "heads": heads, "rows_per_second": None, "us_per_row": None}
        ev = evals.get(name)
        if ev is not None:
            rows[name]["training"] = {k: ev["training"][k] for k in ("epochs_run", "best_epoch", "train_seconds", "seconds_per_epoch", "parameters")}
            rows[name]["calibration"] = {h: c.get("selection", {}).get("chosen", c["method"]) for h, c in ev["calibration"].items()}
    for name, per_row in cost_per_row(models, cat, num).items():
        rows[name]["us_per_row"] = per_row
        rows[name]["rows_per_second"] = 1e6 / per_row[COST_BATCH]
    if truth_ctr is not None:
        truth = truth_ctr
        heads = {"ctr": against_truth(head_metrics(truth, click), truth, truth)}
        scores["ctr"][ORACLE] = truth
        curves[ORACLE] = {"ctr": _curves(truth, click)}
        field_err[ORACLE] = field_calibration(truth, click, cat, fields)
        if fs.pcvr_true is not None and conv is not None and any("cvr" in r["heads"] for r in rows.values()):
            t_cvr = truth_cvr
            heads["cvr"] = against_truth(head_metrics(t_cvr, conv[clicked]), t_cvr, t_cvr)
            scores["cvr"][ORACLE] = t_cvr
            curves[ORACLE]["cvr"] = _curves(t_cvr, conv[clicked])
        rows[ORACLE] = {"path": None, "heads": heads, "rows_per_second": None, "us_per_row": None}

    head_names = ["ctr"] + (["cvr"] if any("cvr" in r["heads"] for r in rows.values()) else [])
    plots = _plot(curves, head_names, out_dir)
    report = {
        "title": title,
        "features": str(features_dir),
        "test_rows": int(t1 - t0),
        "test_range": [int(t0), int(t1)],
        "models": rows,
        "field_calibration_error": field_err,
        "plots": plots,
        "reference": reference or next(iter(models), ORACLE),
        "crosses": fs.meta.get("crosses", {}),
        "auc_differences": {
            "ctr": auc_differences(scores["ctr"], click, reference),
            "cvr": auc_differences(scores["cvr"], conv[clicked], reference) if scores["cvr"] else None,
        },
    }
    (out_dir / "report.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out_dir / "report.md").write_text(render_markdown(report, fields) + "\n")
    return report


#: The literature's ordering of the kinds (LR < FM < the deep models), on test AUC.
ORDER = (("lr",), ("fm",), ("deepfm", "wide_deep", "dcn_v2", "autoint", "finalmlp"))
#: Two-sided 95 % normal quantile: a difference is resolved when |d| > Z95 x its error.
Z95 = 1.96


def auc_differences(scores: dict[str, np.ndarray], y: np.ndarray, reference: str | None = None) -> dict | None:
    """Paired AUC differences on the test rows (``metrics.paired_auc``): each scorer
    against ``lr``, against the oracle and (with ``reference``, the served model)
    against that, and the literature's ordering of the kinds, each step with its
    standard error."""
    y = np.asarray(y, dtype=np.float64)
    if len(scores) < 2 or y.min() == y.max():
        return None
    auc, se = metrics.paired_auc(scores, y)
    diff = lambda a, b: {"a": a, "b": b, "diff": auc[a] - auc[b], "se": se[(a, b)]}  # noqa: E731
    reference = reference if reference in auc else None
    out = {"auc": auc, "vs_lr": {}, "vs_oracle": {}, "reference": reference, "vs_reference": {}, "ordering": None}
    for name in auc:
        if name != "lr" and "lr" in auc:
            out["vs_lr"][name] = diff(name, "lr")
        if reference is not None and name not in (reference, ORACLE):
            out["vs_reference"][name] = diff(name, reference)
        if name != ORACLE and ORACLE in auc:
            out["vs_oracle"][name] = diff(ORACLE, name)
    # Each tier's best model (lr; fm; the best deep model) against the tier below.
    tiers = [max((k for k in tier if k in auc), key=auc.get, default=None) for tier in ORDER]
    if all(tiers):
        steps = [diff(hi, lo) for lo, hi in zip(tiers, tiers[1:])]
        out["ordering"] = {"steps": steps, "holds": all(st["diff"] > 0 for st in steps)}
    return out


def _pm(d: dict) -> str:
    """``d`` as ``0.0012 ± 0.0004`` (95 %), marked when the interval holds 0."""
    resolved = abs(d["diff"]) > Z95 * d["se"]
    return f"{d['diff']:+.4f} ± {Z95 * d['se']:.4f}" + ("" if resolved else " (within noise)")


def _differences_markdown(report: dict) -> list[str]:
    out = []
    for head, label in (("ctr", "pCTR"), ("cvr", "pCVR")):
        d = (report.get("auc_differences") or {}).get(head)
        if not d:
            continue
        names = [n for n in d["auc"] if n != ORACLE]
        ref = d.get("reference")
        head_row = "| model | AUC | minus lr |" + (f" minus {ref} |" if ref else "") + " oracle minus model |"
        out += ["", f"### {label}", "", head_row, "|---|---|---|" + ("---|" if ref else "") + "---|"]
        for n in names:
            vs_lr = _pm(d["vs_lr"][n]) if n in d["vs_lr"] else "–"
            vs_ref = (f" {_pm(d['vs_reference'][n]) if n in d['vs_reference'] else '–'} |") if ref else ""
            vs_or = _pm(d["vs_oracle"][n]) if n in d["vs_oracle"] else "–"
            out.append(f"| {n} | {d['auc'][n]:.4f} | {vs_lr} |{vs_ref} {vs_or} |")
        o = d["ordering"]
        if o:
            steps = "; ".join(f"{st['a']} minus {st['b']} {_pm(st)}" for st in o["steps"])
            resolved = all(abs(st["diff"]) > Z95 * st["se"] for st in o["steps"])
            verdict = ("does not hold" if not o["holds"] else "holds" if resolved else "holds in the point estimates, not beyond noise")
            out += ["", f"LR < FM < deep models {verdict} here: {steps}."]
            fm_step = o["steps"][0]
            crosses = report.get("crosses") or {}
            # The explanation is measured on the simulator's log (it has an oracle) with a spec that crosses.
            if head == "ctr" and fm_step["diff"] <= Z95 * fm_step["se"] and crosses and ORACLE in d["auc"]:
                pairs = ", ".join(f"{a} x {b}" for a, b in crosses.values())
                out += ["", "Why FM does not beat LR here: this feature spec hands LR "
                        f"{len(crosses)} crossed fields ({pairs}) as weights of their own, the pairs FM would "
                        "otherwise learn in its embeddings. What FM can add must come from the other pairs, "
                        "each learnt from fewer rows, and on a short log their estimation noise outweighs them. "
                        "models/README.md (\"Model ordering\") measures both halves on the simulator's logs (what LR "
                        "loses without the crosses, and on how long a log FM overtakes it with them); those figures "
                        "come from those logs, not from the rows of this report."]
    if out:
        out = ["", "## AUC differences, paired", "",
               "On the same test rows, by DeLong's method: ± is 1.96 standard errors of the difference (95 %), "
               "far tighter than either AUC's own error because the models err on the same rows; "
               "\"within noise\" marks a difference the test rows cannot resolve."] + out
    return out


def render_markdown(report: dict, fields: list[str]) -> str:
    rows = report["models"]
    lines = [f"# {report['title']}", ""]
    lines.append(
        f"Test split: rows {report['test_range'][0]:,}..{report['test_range'][1]:,} of `{report['features']}` "
        "(the last rows in time order), scored with each model's exported ONNX graph, calibration included."
    )
    lines.append("")
    lines += ["## pCTR (every test impression, label: click)", ""] + _table(rows, "ctr")
    if any("cvr" in r["heads"] for r in rows.values()):
        lines += ["", "## pCVR (clicked test impressions, label: conversion)", ""] + _table(rows, "cvr")
    lines += ["", "ECE: 20 equal-mass bins. Calibration ratio: mean prediction / observed rate; "
              "vs truth: mean prediction / mean true probability on the same rows (simulator logs only). "
              "NE: log loss / entropy of the observed rate. µs per row: ONNX Runtime, one intra-op thread, every "
              f"output, at each batch size the fastest of 7 passes over {COST_ROWS:,} rows, the models timed in turns; "
              "the same graph serves both heads, so the cost is given once."]
    noise = _label_noise(rows)
    if noise:
        lines += ["", "The calibration ratio against the labels carries their sampling noise, about ± 1.96 / "
                  "sqrt(positives) (95 %): " + ", ".join(noise) + " on these test rows. A ratio inside that band "
                  "cannot be told from 1; the oracle's own ratio shows the size of the draw. On a simulator log "
                  "\"vs truth\" has no such noise."]
    if ORACLE in rows:
        gaps = {n: rows[ORACLE]["heads"]["ctr"]["auc"] - r["heads"]["ctr"]["auc"] for n, r in rows.items() if n != ORACLE}
        lines += ["", "AUC gap to the oracle (pCTR): " + ", ".join(f"{n} {g:.4f}" for n, g in gaps.items()) + "."]
    lines += _differences_markdown(report)
    trained = {n: r for n, r in rows.items() if "training" in r}
    if trained:
        lines += ["", "## Training", "", "| model | epochs run (best) | train seconds | s / epoch | parameters | calibration |", "|---|---|---|---|---|---|"]
        for n, r in trained.items():
            t = r["training"]
            cal = ", ".join(f"{h}: {m}" for h, m in r["calibration"].items())
            lines.append(f"| {n} | {t['epochs_run']} ({t['best_epoch']}) | {t['train_seconds']:.1f} | {t['seconds_per_epoch']:.1f} | {t['parameters']:,} | {cal} |")
    errs = report["field_calibration_error"]
    if errs:
        ref = report["reference"]
        top = sorted(fields, key=lambda f: -errs[ref][f])[:TOP_FIELDS]
        lines += ["", f"## Per-field calibration error (pCTR), the {len(top)} worst fields of {ref}", ""]
        lines.append("sum over a field's values of |sum(p) - sum(clicks)| / rows; values with fewer than "
                     f"{FIELD_MIN_ROWS} test rows pooled. The oracle's row is the noise floor of the labels.")
        lines += ["", "| model | " + " | ".join(top) + " |", "|---|" + "---|" * len(top)]
        for n in rows:
            if n in errs:
                lines.append(f"| {n} | " + " | ".join(f"{errs[n][f]:.5f}" for f in top) + " |")
    lines += ["", "## Plots", "", "![reliability](reliability.png)", "", "![roc](roc.png)"]
    return "\n".join(lines)
