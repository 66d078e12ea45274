"""The loop, run end to end on one machine (``python -m ctrbid_train loop``; ``make loop``).

1. **Collect.** The default model bids for ``--train-days`` simulated days against
   ``ctrbid exchange`` (the simulator as a live exchange: auctions against competing
   demand, notices, users who click and convert with the simulator's true
   probabilities). The bidder runs on the simulation clock with its event log on.
2. **Join.** ``ctrbid features --events`` turns the bidder's own log into training
   arrays: the rows exactly as it scored them, labelled with the clicks and conversions
   that came back (``--truth`` adds the exchange's true probabilities, for evaluation
   only: training never reads them).
3. **Retrain** a model (``--config``, Wide & Deep by default; ``--zoo``: every model of
   the zoo, the best on validation data served) on those arrays, and, to
   tell selection bias from sample size, the same model on a uniformly logged
   simulator log of as many impressions over the same days (the data the default model
   was trained on, at the same size).
4. **Judge the models on the truth**: AUC (against the clicks, paired by DeLong's
   method, and against the true probabilities) and calibration (mean prediction over
   mean true probability) on a uniformly logged test log of the day after, every
   impression of the world's traffic; and on the impressions each model bought.
5. **Serve.** The day after the collection is played twice with the same seed (the
   same requests, the same competing bids): once by the default model, once by the
   retrained one. The exchange's reports stand side by side.

Everything lands in ``--out``; ``loop_report.md`` and ``loop_report.json`` sum it up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import metrics
from .bidder import Bidder
from .data import load_features
from .predict import predict_rows

DAY_S = 86_400
NOTICE_KEY = "loop-notice-key-0123456789abcdef-0123"
REPO = Path(__file__).resolve().parents[2]


def log(msg: str) -> None:
    print(f"loop: {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> None:
    log(" ".join(str(c) for c in cmd))
    subprocess.run([str(c) for c in cmd], check=True, cwd=REPO, **kw)


def play(args, name: str, model: Path, start_ts: int, days: int, requests: int, explore: float) -> Path:
    """One bidder with ``model`` against the exchange; returns the run's directory."""
    out = Path(args.out) / name
    flags = ["--model", model, "--explore-share", explore, *(args.serve_flag or [])]
    bidder = Bidder(args.bin, out / "events", out / "bidder.log", flags, NOTICE_KEY)
    try:
        run([
            args.bin, "exchange", "--bidder", bidder.url, "--out", out / "exchange", "--seed", args.seed,
            "--requests", requests, "--days", days, "--rate", args.rate, "--start-ts", start_ts,
            *(args.exchange_flag or []),
        ])
    finally:
        bidder.stop()
    return out


def train(args, features: Path, out: Path) -> Path:
    """One model (``--config``), or with ``--zoo`` the whole zoo, its best on validation
    data exported to ``out/best``; returns the model to serve."""
    if args.zoo:
        cmd = [sys.executable, "-m", "ctrbid_train", "zoo", "--features", features, "--out", out, "--export",
               out / "best", "--jobs", 2]
        model = out / "best" / "model.onnx"
    else:
        cmd = [sys.executable, "-m", "ctrbid_train", "train", "--features", features, "--out", out, "--config",
               args.config]
        model = out / "model.onnx"
    if args.epochs:
        cmd += ["--epochs", args.epochs]
    run(cmd, env={**os.environ, "PYTHONPATH": str(REPO / "models")})
    return model


def judge(models: dict[str, Path], features: Path) -> dict:
    """Each model on a features directory with the truth: AUC against the clicks (paired,
    with the standard error of each difference from the first model), AUC against the
    true pCTR's ranking (as a sharper yardstick: the truth has no label noise), log loss,
    calibration against the labels and the truth."""
    fs = load_features(features)
    click = np.asarray(fs.click, dtype=np.float64)
    truth = np.asarray(fs.pctr_true, dtype=np.float64)
    preds = {name: predict_rows(m, fs.cat[:], fs.num[:])[:, 0].astype(np.float64) for name, m in models.items()}
    preds["oracle (true pCTR)"] = truth
    if 0 < click.sum() < len(click):
        aucs, se = metrics.paired_auc(preds, click)
    else:  # one class only (a tiny run): no AUC
        aucs, se = {name: float("nan") for name in preds}, {}
    base = next(iter(models))
    out = {"rows": int(fs.rows), "clicks": int(click.sum()), "models": {}}
    for name, p in preds.items():
        out["models"][name] = {
            "auc": aucs[name],
            "auc_minus_first": aucs[name] - aucs[base],
            "se_of_difference": se.get((name, base), 0.0),
            "log_loss": metrics.log_loss(p, click),
            "calibration_vs_labels": metrics.calibration_ratio(p, click),
            "calibration_vs_truth": float(p.mean() / truth.mean()),
            "rank_corr_with_truth": float(np.corrcoef(np.argsort(np.argsort(p)), np.argsort(np.argsort(truth)))[0, 1]),
        }
    return out


def market(report_json: Path) -> dict:
    r = json.loads(report_json.read_text())
    t = r["totals"]
    keys = ("bids", "wins", "win_rate", "spend", "impressions", "clicks", "conversions", "ecpm", "ecpc", "ecpa",
            "expected_clicks", "expected_conversions", "value", "surplus")
    out = {k: t.get(k) for k in keys}
    out["requests"] = r["requests"]
    out["expected_clicks_per_usd"] = t["expected_clicks"] / t["spend"] if t["spend"] else None
    return out


def loop(args) -> dict:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = Path(args.bin)
    default_model = Path(args.model)
    start = int(args.start_ts)
    started = time.monotonic()

    # 1-2. The default model collects its own log, which becomes training arrays.
    week = play(args, "collect", default_model, start, args.train_days, args.requests_per_day * args.train_days, args.explore)
    own = out / "features-own"
    run([binary, "features", "--events", week / "events", "--truth", week / "exchange" / "ledger.jsonl", "--out", own,
         "--label-wait-s", "0"])
    own_rows = json.loads((own / "meta.json").read_text())["rows"]

    # 3. Retrain on it; and on a uniformly logged simulator log of as many impressions.
    retrained = train(args, own, out / "model-own")
    uniform_sim = out / "sim-uniform"
    run([binary, "simulate", "--seed", args.seed, "--impressions", own_rows, "--start-ts", start, "--days",
         args.train_days, "--out", uniform_sim])
    uniform = out / "features-uniform"
    run([binary, "features", "--sim", uniform_sim, "--out", uniform])
    uniform_model = train(args, uniform, out / "model-uniform")

    # 4. Every model on the truth: a uniform log of the next day, and what each bought.
    next_day = start + args.train_days * DAY_S
    test_sim = out / "sim-test"
    run([binary, "simulate", "--seed", args.seed, "--impressions", args.test_impressions, "--start-ts", next_day,
         "--days", 1, "--out", test_sim])
    test = out / "features-test"
    run([binary, "features", "--sim", test_sim, "--out", test])
    models = {"default (5M uniform impressions)": default_model, "retrained on its own log": retrained,
              f"trained on {own_rows:,} uniform impressions": uniform_model}
    on_uniform = judge(models, test)

    # 5. The next day, played by the default model and by the retrained one.
    served = {}
    for name, model in (("default", default_model), ("retrained", retrained)):
        run_dir = play(args, f"serve-{name}", model, next_day, 1, args.requests_per_day, 0.0)
        feats = out / f"features-serve-{name}"
        run([binary, "features", "--events", run_dir / "events", "--truth", run_dir / "exchange" / "ledger.jsonl",
             "--out", feats, "--label-wait-s", "0"])
        served[name] = {"market": market(run_dir / "exchange" / "report.json"),
                        "bought": judge({name: model}, feats)["models"][name]}
    own_meta = json.loads((own / "meta.json").read_text())
    report = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "func"},
        "collect": {"market": market(week / "exchange" / "report.json"), "join": own_meta.get("join"), "rows": own_rows},
        "judged_on_uniform_next_day": on_uniform,
        "next_day": served,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "loop_report.json").write_text(json.dumps(report, indent=2))
    (out / "loop_report.md").write_text(markdown(report))
    log(f"done in {report['seconds']} s: {out / 'loop_report.md'}")
    return report


def fmt(v, digits=4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}"


def markdown(r: dict) -> str:
    a = r["args"]
    lines = [
        "# The loop",
        "",
        f"Seed {a['seed']}; {a['train_days']} simulated days of {a['requests_per_day']:,} requests collected by the default "
        f"model (exploration {a['explore']}), retrained with "
        f"{'the zoo (its best on validation data)' if a.get('zoo') else '`' + a['config'] + '`'}; the next day played by each model; "
        f"{r['seconds']:.0f} s in all. Command: `python -m ctrbid_train loop` with these arguments.",
        "",
        "## What the default model's log holds",
        "",
    ]
    j = r["collect"]["join"] or {}
    lines += [
        f"{r['collect']['rows']:,} training rows (impressions bought) from {j.get('bids', 0):,} logged bids: "
        f"{j.get('clicked_rows', 0):,} clicked, {j.get('converted_rows', 0):,} converted; "
        f"{j.get('won_not_shown', 0):,} won but not shown, {j.get('shown_by_click_only', 0):,} shown by a click alone, "
        f"{j.get('duplicate_notices', 0):,} repeated notices, {j.get('notices_without_bid', 0):,} bids with notices but no record.",
        "",
        "## The models on the truth: a uniformly logged test day",
        "",
    ]
    u = r["judged_on_uniform_next_day"]
    lines += [
        f"{u['rows']:,} impressions, {u['clicks']:,} clicks. AUC against the clicks with the paired standard error of its "
        "difference from the default model; rank correlation with the true pCTR; calibration = mean prediction / mean.",
        "",
        "| model | AUC | minus default (± 1.96 se) | rank corr. with truth | log loss | calibration vs labels | vs truth |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in u["models"].items():
        lines.append(
            f"| {name} | {m['auc']:.4f} | {m['auc_minus_first']:+.4f} ± {1.96 * m['se_of_difference']:.4f} | "
            f"{m['rank_corr_with_truth']:.4f} | {m['log_loss']:.5f} | {m['calibration_vs_labels']:.3f} | {m['calibration_vs_truth']:.3f} |"
        )
    lines += ["", "## The next day, played by each model (same requests, same competing bids)", ""]
    keys = ["requests", "bids", "wins", "win_rate", "spend", "impressions", "clicks", "conversions", "ecpm", "ecpc",
            "expected_clicks", "expected_clicks_per_usd", "value", "surplus"]
    names = list(r["next_day"])
    lines += ["| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(fmt(r["next_day"][n]["market"][k]) for n in names) + " |")
    for k in ("auc", "calibration_vs_truth", "rank_corr_with_truth"):
        lines.append(f"| {k} on what it bought | " + " | ".join(fmt(r["next_day"][n]["bought"][k]) for n in names) + " |")
    lines += ["", "The collection week, for reference:", "", "| | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys),
              "| default | " + " | ".join(fmt(r["collect"]["market"][k]) for k in keys) + " |", ""]
    return "\n".join(lines) + "\n"


def add_parser(sub) -> None:
    p = sub.add_parser("loop", help="collect with the default model, retrain on its own log, serve it (make loop)")
    p.add_argument("--out", required=True, help="directory for every run, model and loop_report.md")
    p.add_argument("--bin", default=str(REPO / "target/release/ctrbid"), help="the ctrbid binary")
    p.add_argument("--model", default=str(REPO / "models/default/model.onnx"), help="the model that collects")
    p.add_argument("--config", default=str(REPO / "models/configs/wide_deep.toml"), help="the model config retrained")
    p.add_argument("--zoo", action="store_true", help="retrain the whole zoo (every config) and serve its best")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--start-ts", type=int, default=1_767_571_200, help="start of the collection, Unix seconds")
    p.add_argument("--train-days", type=int, default=7)
    p.add_argument("--requests-per-day", type=int, default=30_000)
    p.add_argument("--rate", type=float, default=2000.0, help="requests/s of wall time")
    p.add_argument("--test-impressions", type=int, default=200_000, help="the uniform test day's impressions")
    p.add_argument("--explore", type=float, default=0.0, help="bidding.explore_share while collecting")
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--exchange-flag", action="append", help="one more flag for `ctrbid exchange` (repeatable)")
    p.add_argument("--serve-flag", action="append", help="one more flag for `ctrbid serve` (repeatable)")
    p.set_defaults(func=lambda args: loop(args) and 0)
