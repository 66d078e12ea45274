"""Command line: ``PYTHONPATH=models python -m ctrbid_train <command> ...``.

Commands:
  train    train, calibrate, evaluate, export one model (model.onnx, model.pt, eval.json);
           on several processes or machines under torchrun (see ctrbid_train/distributed.py):
           torchrun --nproc-per-node 2 -m ctrbid_train train --features DIR --out DIR
  zoo      train every model (LR, FM, DeepFM, Wide & Deep, DCN-v2), pick the best on
           validation data, INT8 variant, report, export the best (e.g. to models/default)
  report   evaluation report (Markdown + PNG) of trained models on a features directory
  parity   PyTorch vs ONNX Runtime vs Rust scorer on the same rows (parity.json)
  predict  score a features directory with model.onnx or model.pt
  synth    write a synthetic features directory (testing / benchmarks)
  drift-reference
           the distribution of a model's training rows and predictions, for the
           bidder's drift measure (<model>.drift.json next to the model)
  loop     collect with the default model against `ctrbid exchange`, retrain on the
           bidder's own event log, judge on the truth, serve the new model (make loop)
"""

from __future__ import annotations

import argparse
import json
import sys


def _cmd_train(args) -> int:
    from .train import train

    report = train(args.features, args.out, config_path=args.config, epochs=args.epochs, seed=args.seed)
    if report is None:  # a rank other than 0 under torchrun: rank 0 writes and prints
        return 0
    test = report["test"]
    summary = {
        "out": args.out,
        "test": {h: {k: t[k] for k in ("auc", "log_loss", "ne", "calibration_ratio", "ece")} for h, t in test.items() if isinstance(t, dict)},
        "oracle_auc": {h: t.get("oracle", {}).get("auc") for h, t in test.items() if isinstance(t, dict)},
        "epochs_run": report["training"]["epochs_run"],
        "seconds_per_epoch": report["training"]["seconds_per_epoch"],
    }
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_zoo(args) -> int:
    from .zoo import run_zoo

    report = run_zoo(
        args.features,
        args.out,
        configs=args.config or None,
        export=args.export,
        epochs=args.epochs,
        reuse=args.reuse,
        jobs=args.jobs,
        row_budget_us=args.row_budget_us,
    )
    print((__import__("pathlib").Path(args.out) / "report.md").read_text())
    int8 = report["zoo"]["int8"]
    print(json.dumps({"best": report["zoo"]["best"], "int8_served": int8["served"], "int8": {m: v["reason"] for m, v in int8["variants"].items()}}, indent=2))
    return 0


def _cmd_report(args) -> int:
    from pathlib import Path

    from .report import build_report

    build_report([Path(r) for r in args.runs], Path(args.features), Path(args.out))
    print((Path(args.out) / "report.md").read_text())
    return 0


def _cmd_parity(args) -> int:
    from .parity import ParityError, check_parity

    try:
        report = check_parity(
            args.model,
            args.features,
            rows=args.rows,
            ctrbid=args.ctrbid,
            use_rust=not args.no_rust,
            tolerance=args.tolerance,
            out=args.out,
        )
    except ParityError as exc:
        print(f"parity: FAILED: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report["max_abs_diff"], indent=2))
    print(f"parity: OK ({report['rows']} rows, tolerance {report['tolerance']})", file=sys.stderr)
    return 0


def _cmd_predict(args) -> int:
    from .predict import predict

    preds = predict(args.model, args.features, args.out, backend=args.backend, limit=args.limit, start=args.start, output=args.output)
    print(f"wrote {preds.shape[0]} predictions to {args.out} (mean {float(preds.mean()) if preds.size else float('nan'):.6f})", file=sys.stderr)
    return 0


def _cmd_cvr_study(args) -> int:
    from .cvr_study import render, study, write

    result = study(args.run, args.features)
    if args.out:
        write(result, args.out)
    print(render(result))
    return 0


def _cmd_join_shards(args) -> int:
    from .shards import join

    out = join(args.shards, args.out)
    print(f"joined {len(args.shards)} shards into {out}", file=sys.stderr)
    return 0


def _cmd_synth(args) -> int:
    from .synth import generate

    generate(args.out, args.rows, seed=args.seed, spec_path=args.spec, ctr=args.ctr)
    print(f"wrote {args.rows} synthetic rows to {args.out}", file=sys.stderr)
    return 0


def _cmd_drift_reference(args) -> int:
    from .drift import write_reference

    out = write_reference(args.model, args.features, args.out, rows=args.rows, top=args.top, bins=args.bins)
    print(f"wrote {out}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctrbid_train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train + calibrate + evaluate + export")
    p.add_argument("--features", required=True, help="directory written by `ctrbid features`")
    p.add_argument("--out", required=True, help="output directory (model.onnx, model.pt, eval.json)")
    p.add_argument("--config", default=None, help="TOML config (default models/configs/wide_deep.toml)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (overrides the config)")
    p.add_argument("--seed", type=int, default=None, help="random seed (overrides the config)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("zoo", help="train every model kind, select, report, export the best")
    p.add_argument("--features", required=True, help="directory written by `ctrbid features`")
    p.add_argument("--out", required=True, help="output directory (one subdirectory per model, report.md, plots)")
    p.add_argument("--config", action="append", help="a model config (repeatable; default: every file of models/configs)")
    p.add_argument("--export", default=None, help="copy the best model and the report here (e.g. models/default)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (overrides the configs)")
    p.add_argument("--reuse", action="store_true", help="reuse runs already trained in --out")
    p.add_argument("--jobs", type=int, default=1, help="train this many models at a time, one process each (default 1)")
    p.add_argument("--row-budget-us", type=float, default=None, help="the most ONNX Runtime µs per row a served model may take (default: zoo.ROW_BUDGET_X times Wide & Deep's, timed in the same run)")
    p.set_defaults(func=_cmd_zoo)

    p = sub.add_parser("report", help="evaluation report of trained models")
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True, help="directory for report.md, report.json and the PNG plots")
    p.add_argument("runs", nargs="+", help="training output directories (model.onnx + eval.json)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("parity", help="compare PyTorch, ONNX Runtime and the Rust scorer")
    p.add_argument("--model", required=True, help="model.onnx (model.pt must sit next to it)")
    p.add_argument("--features", required=True)
    p.add_argument("--rows", type=int, default=10_000, help="score the first ROWS rows")
    p.add_argument("--ctrbid", default=None, help="Rust binary (default $CTRBID_BIN or target/release/ctrbid)")
    p.add_argument("--no-rust", action="store_true", help="compare PyTorch and ONNX Runtime only")
    p.add_argument("--tolerance", type=float, default=1e-5, help="max |diff| allowed per pair")
    p.add_argument("--out", default=None, help="report path (default parity.json next to the model)")
    p.set_defaults(func=_cmd_parity)

    p = sub.add_parser("predict", help="write pctr float32 [rows] for a features directory")
    p.add_argument("--model", required=True, help="training output directory, model.onnx or model.pt")
    p.add_argument("--features", required=True)
    p.add_argument("--out", required=True, help="output .npy")
    p.add_argument("--backend", choices=["onnxruntime", "torch"], default="onnxruntime")
    p.add_argument("--limit", type=int, default=None, help="only the first LIMIT rows (after --start)")
    p.add_argument("--start", type=int, default=0, help="first row to score")
    p.add_argument("--output", choices=["pctr", "pcvr"], default="pctr", help="which model output to write")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("cvr-study", help="a trained run's pCVR calibrated several ways, scored on the test split")
    p.add_argument("--run", required=True, help="training output directory (model.pt)")
    p.add_argument("--features", required=True, help="the features directory it was trained on")
    p.add_argument("--out", default=None, help="also write the figures as JSON here")
    p.set_defaults(func=_cmd_cvr_study)

    p = sub.add_parser("join-shards", help="join the directories of `ctrbid features --shard i/n` into one")
    p.add_argument("--out", required=True, help="the joined features directory")
    p.add_argument("shards", nargs="+", help="every shard's directory, in any order")
    p.set_defaults(func=_cmd_join_shards)

    p = sub.add_parser("synth", help="synthetic features directory with a known logistic truth")
    p.add_argument("--out", required=True)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--ctr", type=float, default=0.02)
    p.add_argument("--spec", default=None, help="feature spec for the layout (default models/feature_spec.json)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("drift-reference", help="a model's training distribution for the bidder's drift measure")
    p.add_argument("--model", required=True, help="model.onnx")
    p.add_argument("--features", required=True, help="the features directory it was trained on")
    p.add_argument("--out", default=None, help="default: <model>.drift.json next to the model")
    p.add_argument("--rows", type=int, default=200_000, help="rows sampled at an even stride")
    p.add_argument("--top", type=int, default=20, help="values kept per categorical field")
    p.add_argument("--bins", type=int, default=10, help="quantile bins per numeric field")
    p.set_defaults(func=_cmd_drift_reference)

    from .loop import add_parser as add_loop_parser

    add_loop_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "spec", "x") is None:
        from .synth import DEFAULT_SPEC

        args.spec = DEFAULT_SPEC
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
