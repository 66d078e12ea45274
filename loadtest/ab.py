"""Two server settings against each other, interleaved, at fixed offered rates.

    .venv/bin/python loadtest/ab.py NAME --a "FLAGS" --b "FLAGS" [--rates 2000,5000]
                                    [--rounds 3] [--seconds 15] [--scenario sim-mix]

Besides server flags, a side may hold ``--workers N``, ``--loadgen-nice N`` (the load
generator's niceness for that side), ``--inference-fifo`` (real-time priority for the
inference thread, ``report.fifo_inference``) and ``--bin PATH`` (that side's server
binary, to compare two builds: copy the old one aside before building the new; the load
generator is ``target/release/ctrbid`` for both). For instance the batcher's adaptive wait (``make loadtest-ab``):

    .venv/bin/python loadtest/ab.py batch-wait --a "--adaptive-wait false" --b "--adaptive-wait true"

On a shared, noisy box one run of a setting says little: consecutive runs of the same
settings differ by 10-30 %. So at each rate, ``rounds`` times, A and B run one after the
other (the order alternating by round), each on a fresh server with the scenario's
warm-up, through ``report.measure``. The report gives each run, and per rate the
medians of A and B and their ratio B / A: in-process p50 / p90 / p99 / p99.9, client
p99, CPU seconds per 1,000 requests, median batch rows, shed share, the share scored
inline, and the in-process p99 / p99.9 of the requests scored on each path. Writes
``target/loadtest/ab/NAME.md`` and ``NAME.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("REPORT_DIR", str(Path(__file__).resolve().parent.parent / "target/loadtest/ab"))
import report  # noqa: E402  (the sitting's server and load generator)

ROOT, OUT, log = report.ROOT, report.OUT, report.log

# (label, how to read it from a `report.measure` row)
FIGURES = [
    ("in-process p50 ms", lambda r: r["in_process_ms"]["p50"]),
    ("in-process p90 ms", lambda r: r["in_process_ms"]["p90"]),
    ("in-process p99 ms", lambda r: r["in_process_ms"]["p99"]),
    ("in-process p99.9 ms", lambda r: r["in_process_ms"]["p99_9"]),
    ("client p99 ms", lambda r: r["client_ms"]["p99"]),
    ("CPU s per 1,000", lambda r: r["cpu_s_per_1000"]),
    ("batch rows p50", lambda r: r["batch_rows_p50"]),
    ("shed %", lambda r: 100.0 * r["shed_share"]),
    ("scored inline %", lambda r: 100.0 * (r.get("inline_share") or 0.0)),
    # The same in-process histogram split by where a request's rows were scored; a run in
    # which no request took the path has no figure for it.
    ("inline p99 ms", lambda r: by_path(r, "inline", "p99")),
    ("inline p99.9 ms", lambda r: by_path(r, "inline", "p99_9")),
    ("batched p99 ms", lambda r: by_path(r, "batched", "p99")),
    ("batched p99.9 ms", lambda r: by_path(r, "batched", "p99_9")),
]


def by_path(row: dict, path: str, quantile: str) -> float | None:
    figures = row["in_process_by_path_ms"][path]
    return figures[quantile] if figures["count"] > 0 else None


def take(flags: list[str], name: str, has_value: bool = True) -> tuple[list[str], str | None]:
    """``flags`` without ``name`` (and its value), and the value ("" for a switch; None
    when absent)."""
    if name not in flags:
        return flags, None
    i = flags.index(name)
    return flags[:i] + flags[i + 1 + has_value:], flags[i + 1] if has_value else ""


def side_setup(flags: list[str], default_workers: int) -> tuple[list[str], dict]:
    """A side's server flags, and what the harness does for it rather than the server:
    ``--workers N`` (``report.Server`` passes it), ``--loadgen-nice N`` (the load
    generator's niceness), ``--inference-fifo`` (``report.fifo_inference``) and ``--bin
    PATH`` (the server binary)."""
    flags, workers = take(flags, "--workers")
    flags, bin_ = take(flags, "--bin")
    flags, nice = take(flags, "--loadgen-nice")
    flags, fifo = take(flags, "--inference-fifo", has_value=False)
    return flags, {"workers": int(workers) if workers else default_workers,
                   "loadgen_nice": int(nice) if nice else None, "fifo": fifo is not None,
                   "bin": Path(bin_) if bin_ else None}


def summarise(runs: list[dict]) -> dict:
    """Each figure's median over the runs that have it (None when none has)."""
    out = {}
    for label, get in FIGURES:
        values = [v for v in (get(r) for r in runs) if v is not None]
        out[label] = statistics.median(values) if values else None
    return out


def markdown(res: dict) -> str:
    out = [f"# A/B: {res['name']}", "",
           f"{res['date']}, scenario `{res['scenario']}`, {res['rounds']} rounds of {res['seconds']:g} s per side "
           f"and rate, {res['workers']} tokio workers unless the flags say otherwise; A then B in even rounds, B then A in odd ones.", "",
           f"- A: `{' '.join(res['a']) or '(defaults)'}`", f"- B: `{' '.join(res['b']) or '(defaults)'}`", "",
           f"Command: `{res['command']}`", ""]
    for rate in res["rates"]:
        a, b = rate["a"], rate["b"]
        out += [f"## {rate['rate']:,.0f} requests/s: medians", "", "| | A | B | B / A |", "|---|---|---|---|"]
        for label, _ in FIGURES:
            cell = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
            ratio = f"{b[label] / a[label]:.2f}" if a[label] and b[label] is not None else "–"
            out.append(f"| {label} | {cell(a[label])} | {cell(b[label])} | {ratio} |")
        out += ["", "Runs (in-process p50 / p99 / p99.9 ms, CPU s per 1,000):", ""]
        for side in ("a", "b"):
            runs = ", ".join(f"{r['in_process_ms']['p50']:.2f} / {r['in_process_ms']['p99']:.2f} / "
                             f"{r['in_process_ms']['p99_9']:.2f}, {r['cpu_s_per_1000']:.3f}" for r in rate[f"{side}_runs"])
            out.append(f"- {side.upper()}: {runs}")
        out.append("")
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("name", help="report name: target/loadtest/ab/NAME.md")
    p.add_argument("--a", default="", help="server flags of A (one shell-quoted string)")
    p.add_argument("--b", default="", help="server flags of B")
    p.add_argument("--rates", default="5000", help="offered requests/s, comma-separated")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run")
    p.add_argument("--workers", type=int, default=2, help="tokio workers, unless a side's flags say --workers N")
    p.add_argument("--scenario", default="sim-mix")
    args = p.parse_args()

    sc = tomllib.loads((ROOT / "loadtest/scenarios" / args.scenario / "scenario.toml").read_text())
    corpus = report.corpus(args.scenario, sc)
    a, b = shlex.split(args.a), shlex.split(args.b)
    OUT.mkdir(parents=True, exist_ok=True)
    rates = []
    for rate in (float(r) for r in args.rates.split(",")):
        runs = {"a": [], "b": []}
        for round_ in range(args.rounds):
            for side in ("ab" if round_ % 2 == 0 else "ba"):
                flags, setup = side_setup(a if side == "a" else b, args.workers)
                runs[side].append(report.measure("bid", setup["workers"], rate, corpus, sc, args.seconds, flags,
                                                 loadgen_nice=setup["loadgen_nice"], fifo=setup["fifo"],
                                                 bin=setup["bin"]))
        rates.append({"rate": rate, "a": summarise(runs["a"]), "b": summarise(runs["b"]),
                      "a_runs": runs["a"], "b_runs": runs["b"]})
    res = {"name": args.name, "scenario": args.scenario, "a": a, "b": b, "rounds": args.rounds, "seconds": args.seconds,
           "workers": args.workers, "rates": rates, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "command": "loadtest/ab.py " + shlex.join(sys.argv[1:])}
    (OUT / f"{args.name}.json").write_text(json.dumps(res, indent=2) + "\n")
    (OUT / f"{args.name}.md").write_text(markdown(res))
    log(f"wrote {OUT / (args.name + '.md')}")
    print(markdown(res))


if __name__ == "__main__":
    main()
