"""One sitting of the load test: the ceiling, ONNX Runtime alone, the full bidder, its knobs.

    .venv/bin/python loadtest/report.py [scenario]     (or `make loadtest`; about 13 min)

For the scenario's corpus (``loadtest/scenarios/<name>/scenario.toml``; made with
``ctrbid simulate``), with ``target/release/ctrbid``:

1. **Sweeps**, open loop (``ctrbid loadgen``): the bidder with each ``workers`` count,
   and the same binary in ``--mode ceiling`` (parse, validate, a fixed bid of the same
   size: no selection, features, scoring or pricing). Each step is a fresh server,
   ``warmup_s`` of load, then ``step_s`` measured; a step is sustainable when the
   client's p99 is under ``sustainable_p99_ms``, at most ``max_shed_share`` is shed and
   nothing fails. The highest sustainable rate of each sweep is reported.
2. **At 70 %** of the bidder's highest sustainable rate (with the last ``workers`` entry):
   the bidder, the bidder with every request micro-batched (``--inline-scoring false``,
   what the default auto inline scoring is measured against) and the ceiling for
   ``p70_s`` each: latency in the process (the server's
   own histogram of the whole run, warm-up included) and at the client, CPU seconds per
   1,000 requests (the server's user + system time over the measured window), bid rate.
3. **The batcher's knobs** (``knob_inference_threads`` x ``knob_max_wait_us``), each
   pair on a fresh bidder at the same 70 % rate for ``knob_s``, every request batched.
4. **ONNX Runtime alone** (``ctrbid ort-alone``) on the candidate rows of the same
   corpus, in batches of the bidder's median batch at 70 %: CPU per 1,000 requests.

Writes ``target/loadtest/report/report.md``, ``report.json`` and ``latency.png``
(latency against offered rate). The load generator runs on the same cores as the
server: its CPU is not counted in the server's, but it competes for the cores.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(os.environ.get("BIN", ROOT / "target/release/ctrbid"))
PORT = int(os.environ.get("PORT", "18191"))
ADMIN = PORT + 1
OUT = Path(os.environ.get("REPORT_DIR", ROOT / "target/loadtest/report"))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[report] {msg}", file=sys.stderr, flush=True)


def cpu_times(pid: int) -> tuple[float, float]:
    """CPU seconds the process has run so far: (user, system)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def metrics() -> dict:
    text = urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/metrics", timeout=5).read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r"^(\w+)(\{[^}]*\})? (\S+)$", line)
        if m:
            out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


class Server:
    """``ctrbid serve`` with the deploy config, on loopback, until ``stop``."""

    def __init__(self, mode: str, workers: int, extra: list[str] = (), fifo: bool = False, bin: Path | None = None):
        args = [str(bin or BIN), "serve", "--config", "deploy/ctrbid.toml", "--mode", mode, "--workers", str(workers),
                "--listen", f"127.0.0.1:{PORT}", "--admin-listen", f"127.0.0.1:{ADMIN}", *extra]
        OUT.mkdir(parents=True, exist_ok=True)
        self.log = open(OUT / "serve.log", "ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self.log, stderr=self.log)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{ADMIN}/readyz", timeout=1)
                if fifo:
                    fifo_inference(self.proc.pid)
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise SystemExit(f"server ({mode}) did not become ready: see {OUT / 'serve.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def fifo_inference(pid: int) -> list[int]:
    """Run the server's inference threads under SCHED_FIFO priority 1: runnable, they
    preempt every ordinary thread (the load generator, the tokio workers). Needs
    CAP_SYS_NICE. Returns their thread ids."""
    tids = [int(p.name) for p in Path(f"/proc/{pid}/task").iterdir()
            if (p / "comm").read_text().startswith("ctrbid-infer")]
    for tid in tids:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(1))
    return tids


def loadgen(corpus: Path, rate: float, seconds: float, deadline_ms: float, nice: int | None = None) -> dict:
    """``ctrbid loadgen`` at ``rate``; ``nice`` (else ``LOADGEN_NICE``) runs it at that
    niceness: 19 has it yield the cores to the server, a stand-in for a second box. By
    default it shares them as an equal."""
    out = OUT / "loadgen.json"
    niceness = str(nice if nice is not None else os.environ.get("LOADGEN_NICE") or 0)
    prefix = ["nice", "-n", niceness] if niceness != "0" else []
    subprocess.run(
        [*prefix, str(BIN), "loadgen", "--url", f"http://127.0.0.1:{PORT}/openrtb2/bid", "--corpus", str(corpus),
         "--rate", f"{rate:.1f}", "--duration-s", str(seconds), "--warmup-s", "0",
         "--deadline-ms", str(int(deadline_ms)), "--json", str(out)],
        cwd=ROOT, check=True, stdout=subprocess.DEVNULL,
    )
    return json.loads(out.read_text())


def measure(mode: str, workers: int, rate: float, corpus: Path, sc: dict, seconds: float, extra: list[str] = (),
            warmup_corpus: Path | None = None, loadgen_nice: int | None = None, fifo: bool = False,
            bin: Path | None = None) -> dict:
    """One fresh server at one offered rate: warm-up (on ``warmup_corpus`` when given, so
    the measured requests are new to the server), then the measured window. The
    scenario's ``server_flags`` go to every server, then ``extra``; ``fifo`` gives its
    inference threads real-time priority (``fifo_inference``), ``loadgen_nice`` is the
    load generator's niceness; ``bin`` is the server's binary (else ``BIN``; the load
    generator is always ``BIN``)."""
    server = Server(mode, workers, [*sc.get("server_flags", []), *extra], fifo=fifo, bin=bin)
    try:
        loadgen(warmup_corpus or corpus, rate, float(sc["warmup_s"]), float(sc["sustainable_p99_ms"]), loadgen_nice)
        before, (user0, sys0) = metrics(), cpu_times(server.proc.pid)
        lg = loadgen(corpus, rate, seconds, float(sc["sustainable_p99_ms"]), loadgen_nice)
        (user1, sys1), after = cpu_times(server.proc.pid), metrics()
        cpu0, cpu1 = user0 + sys0, user1 + sys1
    finally:
        server.stop()
    delta = lambda key: after.get(key, 0.0) - before.get(key, 0.0)  # noqa: E731
    outcomes = {o: delta(f'ctrbid_requests_total{{outcome="{o}"}}') for o in ("bid", "no_bid", "shed", "invalid", "too_large")}
    served = sum(outcomes.values())
    c = lg["counts"]
    failed = c["5xx"] + c["4xx"] + c["errors"] + c.get("refused", 0) + c["timeouts"] + c["unsent"] + c["other_status"]
    q = lambda stage, p: after.get(f'ctrbid_stage_seconds{{stage="{stage}",quantile="{p}"}}', 0.0) * 1e3  # noqa: E731
    row = {
        "mode": mode,
        "workers": workers,
        "server_flags": list(extra),
        "server_bin": str(bin or BIN),
        "inference_fifo": fifo,
        "loadgen_nice": loadgen_nice,
        "offered_rate": rate,
        "achieved_rate": lg["achieved_rate"],
        "requests": lg["requests"],
        "client_ms": lg["latency_ms"]["all"],
        "in_process_ms": {"p50": q("total", 0.5), "p90": q("total", 0.9), "p99": q("total", 0.99), "p99_9": q("total", 0.999)},
        "inference_ms_p50": q("inference", 0.5),
        "batch_rows_p50": after.get('ctrbid_batch_rows{quantile="0.5"}', 0.0),
        "cpu_s": cpu1 - cpu0,
        "cpu_s_per_1000": 1000.0 * (cpu1 - cpu0) / max(served, 1.0),
        # The same split in user and kernel time: instruction counts (callgrind) see
        # the user part only.
        "cpu_user_s_per_1000": 1000.0 * (user1 - user0) / max(served, 1.0),
        "cpu_sys_s_per_1000": 1000.0 * (sys1 - sys0) / max(served, 1.0),
        "outcomes": outcomes,
        "bid_rate": outcomes["bid"] / max(served, 1.0),
        "shed_share": outcomes["shed"] / max(served, 1.0),
        "failed": failed,
        "start_lag_p99_ms": lg["start_lag_ms"]["p99"],
    }
    hits, misses = (delta(f'ctrbid_score_cache_lookups_total{{result="{r}"}}') for r in ("hit", "miss"))
    row["score_cache_hit_share"] = hits / (hits + misses) if hits + misses else None
    inline, batched = (delta(f'ctrbid_scoring_path_total{{path="{p}"}}') for p in ("inline", "batched"))
    row["inline_share"] = inline / (inline + batched) if inline + batched else None
    # The whole in-process time of the requests scored on each path (their stage total).
    qp = lambda path, p: after.get(f'ctrbid_scored_request_seconds{{path="{path}",quantile="{p}"}}', 0.0) * 1e3  # noqa: E731
    row["in_process_by_path_ms"] = {
        path: {"p50": qp(path, 0.5), "p99": qp(path, 0.99), "p99_9": qp(path, 0.999),
               "count": after.get(f'ctrbid_scored_request_seconds_count{{path="{path}"}}', 0.0)}
        for path in ("inline", "batched")
    }
    row["sustainable"] = (
        row["client_ms"]["p99"] <= float(sc["sustainable_p99_ms"])
        and row["shed_share"] <= float(sc["max_shed_share"])
        and failed == 0
    )
    log(f"{mode} w{workers} {' '.join(extra)} {rate:8.0f}/s: client p99 {row['client_ms']['p99']:.2f} ms, in-process p99 "
        f"{row['in_process_ms']['p99']:.2f} ms, shed {row['shed_share']:.1%}, cpu/1k {row['cpu_s_per_1000']:.3f} s"
        f"{'' if row['inline_share'] is None else ', inline %.0f %%' % (100 * row['inline_share'])}"
        f"{'' if row['sustainable'] else '  (not sustainable)'}")
    return row


def sweep(mode: str, workers: int, corpus: Path, sc: dict) -> list[dict]:
    rows, misses, rate = [], 0, float(sc["sweep_start"])
    while rate <= float(sc["sweep_max"]) and misses < 2:
        row = measure(mode, workers, rate, corpus, sc, float(sc["step_s"]))
        rows.append(row)
        misses = 0 if row["sustainable"] else misses + 1
        rate *= float(sc["sweep_factor"])
    return rows


def highest(rows: list[dict]) -> float:
    return max((r["offered_rate"] for r in rows if r["sustainable"]), default=0.0)


def ort_alone(corpus: Path, batch_rows: int) -> dict:
    out = OUT / "ort_alone.json"
    subprocess.run([str(BIN), "ort-alone", "--config", "deploy/ctrbid.toml", "--corpus", str(corpus),
                    "--batch-rows", str(batch_rows), "--seconds", "10", "--json", str(out)],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return json.loads(out.read_text())


def plot(sweeps: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, rows in sweeps.items():
        x = [r["offered_rate"] for r in rows]
        axes[0].plot(x, [r["client_ms"]["p99"] for r in rows], marker="o", label=f"{name} p99")
        axes[0].plot(x, [r["client_ms"]["p50"] for r in rows], linestyle="--", label=f"{name} p50")
        axes[1].plot(x, [r["in_process_ms"]["p99"] for r in rows], marker="o", label=f"{name} p99")
    for ax, title in zip(axes, ("at the client (from intended send time)", "inside the process")):
        ax.axhline(10.0, color="grey", linewidth=0.8)
        ax.set_xlabel("offered requests/s")
        ax.set_ylabel("latency, ms")
        ax.set_yscale("log")
        ax.set_title(f"Latency {title}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def fmt_row(name: str, r: dict) -> str:
    c, p = r["client_ms"], r["in_process_ms"]
    return (f"| {name} | {r['offered_rate']:,.0f} | {r['achieved_rate']:,.0f} | {p['p50']:.2f} / {p['p90']:.2f} / {p['p99']:.2f} / "
            f"{p['p99_9']:.2f} | {c['p50']:.2f} / {c['p90']:.2f} / {c['p99']:.2f} / {c['p99_9']:.2f} | {r['cpu_s_per_1000']:.3f} "
            f"| {r['bid_rate']:.1%} | {r['shed_share']:.2%} |")


def corpus(name: str, sc: dict) -> Path:
    """The scenario's request corpus (``target/loadtest/<name>/requests.jsonl``), made
    with ``ctrbid simulate`` from its seed and size unless already there."""
    corpus_dir = ROOT / "target/loadtest" / name
    path = corpus_dir / "requests.jsonl"
    if not path.is_file() or path.stat().st_size == 0:
        subprocess.run([str(BIN), "simulate", "--seed", str(sc["corpus_seed"]), "--impressions", str(sc["corpus_impressions"]),
                        "--out", str(corpus_dir)], check=True, stdout=subprocess.DEVNULL)
    return path


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "sim-mix"
    sc = tomllib.loads((ROOT / "loadtest/scenarios" / name / "scenario.toml").read_text())
    corpus_path = corpus(name, sc)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve.log").write_text("")
    started = time.time()

    workers = [int(w) for w in sc["workers"]]
    sweeps = {f"bidder, {w} worker{'s' if w > 1 else ''}": sweep("bid", w, corpus_path, sc) for w in workers}
    main_sweep = sweeps[f"bidder, {workers[-1]} worker{'s' if workers[-1] > 1 else ''}"]
    sweeps["ceiling, 2 workers"] = sweep("ceiling", 2, corpus_path, sc)
    capacity = {k: highest(v) for k, v in sweeps.items()}
    bidder_capacity = highest(main_sweep)
    if bidder_capacity == 0:
        raise SystemExit("no sustainable rate for the bidder: lower sweep_start")
    rate70 = 0.7 * bidder_capacity
    log(f"70 % of {bidder_capacity:,.0f}/s: {rate70:,.0f}/s")
    at70 = {
        "bidder": measure("bid", workers[-1], rate70, corpus_path, sc, float(sc["p70_s"])),
        "ceiling": measure("ceiling", workers[-1], rate70, corpus_path, sc, float(sc["p70_s"])),
        # The same bidder with every request micro-batched: what auto inline scoring buys.
        "bidder_batched": measure("bid", workers[-1], rate70, corpus_path, sc, float(sc["p70_s"]),
                                  ["--inline-scoring", "false"]),
    }
    batch = max(1, int(at70["bidder"]["batch_rows_p50"]))
    ort = ort_alone(corpus_path, batch)
    log(f"ORT alone, batches of {batch} rows: {ort['cpu_s_per_1000_requests']:.3f} CPU s per 1,000 requests")

    # The batcher's knobs at the same rate, one fresh server each.
    knobs = []
    for threads in sc.get("knob_inference_threads", []):
        for wait in sc.get("knob_max_wait_us", []):
            extra = ["--inference-threads", str(threads), "--max-wait-us", str(wait), "--inline-scoring", "false"]
            knobs.append(measure("bid", workers[-1], rate70, corpus_path, sc, float(sc["knob_s"]), extra))

    b, cl = at70["bidder"], at70["ceiling"]
    floor_cpu = cl["cpu_s_per_1000"] + ort["cpu_s_per_1000_requests"]
    ratios = {
        "cpu_bidder_over_ceiling_plus_ort": b["cpu_s_per_1000"] / floor_cpu,
        # None when the ceiling sustained no step (a box too busy for the sitting to mean much).
        "capacity_bidder_over_ceiling": (bidder_capacity / capacity["ceiling, 2 workers"]
                                         if capacity["ceiling, 2 workers"] > 0 else None),
        "capacity_bidder_over_ort_alone": bidder_capacity / ort["requests_per_s"],
    }
    report = {"scenario": name, "corpus_requests": ort["corpus_requests"], "sweeps": sweeps, "capacity": capacity,
              "at_70": at70, "knobs": knobs, "ort_alone": ort, "ratios": ratios, "minutes": (time.time() - started) / 60,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (OUT / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(sweeps, OUT / "latency.png")

    lines = [f"# Load test report: {name} ({report['date']})", "",
             f"Corpus: {ort['corpus_requests']:,} simulator requests ({ort['rows_per_request']:.1f} candidate rows each on average), "
             f"`ctrbid loadgen` open loop on the same 2 cores. Took {report['minutes']:.1f} min.", "",
             "## Highest sustainable rate", "",
             f"Sustainable: client p99 ≤ {sc['sustainable_p99_ms']} ms, shed ≤ {float(sc['max_shed_share']):.0%}, no errors; "
             f"steps of {sc['step_s']} s after {sc['warmup_s']} s of warm-up, each on a fresh server.", "",
             "| server | highest sustainable requests/s |", "|---|---|"]
    lines += [f"| {k} | {v:,.0f} |" for k, v in capacity.items()]
    lines += ["", f"## At 70 % of the bidder's highest sustainable rate ({rate70:,.0f} requests/s, {sc['p70_s']} s, {workers[-1]} tokio worker{'s' if workers[-1] > 1 else ''})", "",
              "| server | offered/s | answered/s | in process p50 / p90 / p99 / p99.9 ms | client p50 / p90 / p99 / p99.9 ms "
              "| CPU s per 1,000 requests | bid rate | shed |", "|---|---|---|---|---|---|---|---|",
              fmt_row("bidder", b), fmt_row("bidder, every request batched (`--inline-scoring false`)", at70["bidder_batched"]),
              fmt_row("ceiling", cl),
              f"| ONNX Runtime alone, batches of {batch} rows | – | {ort['requests_per_s']:,.0f} (1 thread, flat out) | – | – "
              f"| {ort['cpu_s_per_1000_requests']:.3f} | – | – |", "",
              f"- CPU per request, bidder / (ceiling + ORT alone): **{ratios['cpu_bidder_over_ceiling_plus_ort']:.2f}** "
              f"({b['cpu_s_per_1000']:.3f} / ({cl['cpu_s_per_1000']:.3f} + {ort['cpu_s_per_1000_requests']:.3f})); "
              f"user / kernel CPU s per 1,000 requests: bidder {b['cpu_user_s_per_1000']:.3f} / {b['cpu_sys_s_per_1000']:.3f}, "
              f"ceiling {cl['cpu_user_s_per_1000']:.3f} / {cl['cpu_sys_s_per_1000']:.3f}.",
              "- Highest sustainable rate, bidder / ceiling: "
              + ("– (the ceiling sustained no step: the box was too busy for this sitting's figures to mean much)"
                 if ratios["capacity_bidder_over_ceiling"] is None else f"{ratios['capacity_bidder_over_ceiling']:.2f}")
              + "; "
              f"bidder / ORT alone (one core flat out): {ratios['capacity_bidder_over_ort_alone']:.2f}.",
              f"- The bidder's median inference batch at 70 %: {b['batch_rows_p50']:.0f} rows, {b['inference_ms_p50']:.3f} ms; "
              f"scored inline: {'–' if b['inline_share'] is None else '%.1f %%' % (100 * b['inline_share'])}.",
              f"- The bidder's in-process latency by where a request was scored, p50 / p99 / p99.9 ms (requests): "
              + "; ".join(f"{k} {v['p50']:.2f} / {v['p99']:.2f} / {v['p99_9']:.2f} ({v['count']:,.0f})"
                          for k, v in b["in_process_by_path_ms"].items()) + ".",
              "", "In-process figures are the server's histograms over the run including its warm-up; client figures "
              "count from each request's intended send time (no coordinated omission).", "",
              ""]
    if knobs:
        lines += [f"## The batcher's knobs at {rate70:,.0f} requests/s ({sc['knob_s']} s each, every request batched: "
                  "`--inline-scoring false`)", "",
                  "| inference threads, max_wait_us | offered/s | answered/s | in process p50 / p90 / p99 / p99.9 ms "
                  "| client p50 / p90 / p99 / p99.9 ms | CPU s per 1,000 requests | bid rate | shed | median batch rows |",
                  "|---|---|---|---|---|---|---|---|---|"]
        lines += [fmt_row(f"{k['server_flags'][1]}, {k['server_flags'][3]}", k) + f" {k['batch_rows_p50']:.0f} |" for k in knobs]
        lines.append("")
    lines += ["## Sweeps", ""]
    for k, rows in sweeps.items():
        lines += [f"### {k}", "", "| offered/s | answered/s | in process p50 / p90 / p99 / p99.9 ms | client p50 / p90 / p99 / p99.9 ms "
                  "| CPU s per 1,000 | bid rate | shed | sustainable |", "|---|---|---|---|---|---|---|---|"]
        lines += [fmt_row("", r)[3:] + f" {'yes' if r['sustainable'] else 'no'} |" for r in rows]
        lines.append("")
    lines += ["![latency against offered rate](latency.png)", ""]
    (OUT / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
