"""The arithmetic of ``loadtest/overload.sh`` (issue 28): the capacity search's next step,
the capacity it found, the recovery after 4 C, the targets, and the Markdown report.

    python3 loadtest/overload.py next DIR       # the search's next rate, or nothing: done
    python3 loadtest/overload.py capacity DIR   # the highest sustainable rate, or nothing
    python3 loadtest/overload.py report DIR REPORT.md

``overload.sh`` runs the processes and leaves in DIR, per run of ``ctrbid loadgen`` named
NAME: ``NAME.json`` (loadgen's ``--json``), ``NAME.m0`` / ``NAME.m1`` / ``NAME.m2`` (the
server's ``/metrics`` at the phase's start, at the end of its warm-up, at its end; empty
when the scrape failed), ``NAME.server.json`` (RSS, CPU ticks, liveness), ``NAME.rss``
(``time KiB`` samples of the server's RSS); ``params.json`` (the knobs) and ``run.json``
(what ran). The 4 C run is one loadgen run of two phases (``--phases``: 4 C, then the
recovery rate, on the same connections) with the recovery phase in windows
(``--window-ms``); ``rec-K.m0`` is the server's ``/metrics`` at window K's start.
Standard library only, so the script needs no virtual environment.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

SHED = 'ctrbid_requests_total{outcome="shed"}'
BID = 'ctrbid_requests_total{outcome="bid"}'
LATE = "ctrbid_late_answers_total"
PHASE_LABELS = {"p70": "0.7 C", "x2": "2 C", "x4": "4 C"}


# ---------------------------------------------------------------- reading what ran

def load(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def metrics(path: Path) -> dict[str, float]:
    """A Prometheus text file as {series: value}; {} when missing or empty."""
    out: dict[str, float] = {}
    try:
        text = path.read_text()
    except OSError:
        return out
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        try:
            out[key] = float(value)
        except ValueError:
            pass
    return out


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float | None:
    if key in before and key in after:
        return after[key] - before[key]
    return None


def errors_of(s: dict) -> dict[str, int]:
    """loadgen's failure counts, grouped as the report names them."""
    c = s["counts"]
    out = {
        "non_2xx": c["4xx"] + c["5xx"] + c["other_status"],
        "5xx": c["5xx"],
        "connection": c["errors"] + c["refused"],
        "timeouts": c["timeouts"],
        "unsent": c["unsent"],
    }
    out["total"] = out["non_2xx"] + out["connection"] + out["timeouts"] + out["unsent"]
    return out


def within(s: dict, ms: float) -> float | None:
    """Share of recorded requests answered 200/204 within ``ms`` of their due time."""
    for w in s.get("within", []):
        if abs(w["ms"] - ms) < 1e-9:
            return w["share"]
    return None


def on_time_bids(s: dict, ms: float) -> int | None:
    """The 200s answered within ``ms`` of their intended send time: loadgen's exact count
    of on-time 200s, when its deadline is ``ms`` (else unknown)."""
    if "on_time" not in s or abs(s.get("deadline_ms", -1) - ms) > 1e-9:
        return None
    return s["on_time"]["200"]


def phase_of(doc: dict, k: int) -> dict | None:
    """Phase ``k`` of a loadgen summary; a summary without phases is its own phase 0."""
    phases = doc.get("phases")
    if not phases:
        return doc if k == 0 else None
    return phases[k] if k < len(phases) else None


# ---------------------------------------------------------------- capacity search

def step_verdict(s: dict, shed: float | None, p: dict) -> tuple[bool, str]:
    """A step is sustainable when the client's p99 (every request, from its intended send
    time) is at most ``slo_p99_ms``, at most ``capacity_max_shed`` of the recorded
    requests were shed (server counter after the warm-up; unknown counts as none) and
    nothing failed."""
    p99 = s["latency_ms"]["all"]["p99"]
    errs = errors_of(s)["total"]
    share = (shed or 0) / s["requests"] if s["requests"] else 1.0
    why = []
    if s["requests"] == 0:
        why.append("nothing recorded")
    if p99 > p["slo_p99_ms"]:
        why.append(f"p99 {p99:.2f} ms > {p['slo_p99_ms']:g}")
    if share > p["capacity_max_shed"]:
        why.append(f"shed {100 * share:.2f} % > {100 * p['capacity_max_shed']:g} %")
    if errs:
        why.append(f"{errs} errors")
    return (not why, "; ".join(why) or "sustainable")


def search_steps(out: Path) -> list[dict]:
    """The search's steps so far, in order: rate, summary, shed, verdict."""
    p = load(out / "params.json") or {}
    steps = []
    found = [(int(m[1]), q) for q in out.glob("search-*.json") if (m := re.fullmatch(r"search-(\d+)\.json", q.name))]
    for _, path in sorted(found):
        s = load(path)
        if s is None:
            continue
        shed = delta(metrics(path.with_suffix(".m1")), metrics(path.with_suffix(".m2")), SHED)
        ok, why = step_verdict(s, shed, p)
        steps.append({"name": path.stem, "rate": s["offered_rate"], "summary": s, "shed": shed, "ok": ok, "why": why})
    return steps


def next_rate(results: list[tuple[float, bool]], start: float, p: dict) -> float | None:
    """The next rate to try, or None when the search is done.

    From ``start`` (wrk's closed-loop figure): up by ``search_up`` while every step
    passed, down by ``search_down`` while every step failed, then bisection between the
    highest pass and the lowest fail above it, until they are within ``search_tol`` of
    each other or ``search_steps`` steps have run."""
    if not results:
        return round(start, 1)
    if len(results) >= p["search_steps"]:
        return None
    passed = [r for r, ok in results if ok]
    failed = [r for r, ok in results if not ok]
    lo = max(passed, default=None)
    above = [r for r in failed if lo is None or r > lo]
    hi = min(above, default=None)
    if hi is None:
        rate = lo * p["search_up"]
    elif lo is None:
        rate = hi * p["search_down"]
    elif (hi - lo) <= p["search_tol"] * hi:
        return None
    else:
        rate = (lo + hi) / 2
    rate = round(rate, 1)
    return rate if rate > 0 else None


def capacity(steps: list[dict]) -> float | None:
    return max((st["rate"] for st in steps if st["ok"]), default=None)


# ---------------------------------------------------------------- phases

def rss_samples(path: Path) -> list[tuple[float, float]]:
    """(time s, MiB) samples."""
    out = []
    try:
        for line in path.read_text().splitlines():
            t, kib = line.split()
            out.append((float(t), float(kib) / 1024))
    except (OSError, ValueError):
        pass
    return out


def bounded(samples: list[tuple[float, float]], until: float | None, growth: float) -> tuple[bool | None, str]:
    """Memory is bounded when the peak of the phase's second half is at most ``growth``
    above the first half's (it levelled off instead of climbing with the backlog)."""
    pts = [(t, m) for t, m in samples if until is None or t <= until]
    if len(pts) < 4:
        return None, "too few RSS samples"
    t0, t1 = pts[0][0], pts[-1][0]
    mid = (t0 + t1) / 2
    first = max(m for t, m in pts if t <= mid)
    second = max(m for t, m in pts if t > mid)
    ok = second <= first * (1 + growth)
    return ok, f"peak {first:.0f} MiB in the first half, {second:.0f} MiB in the second (at most +{100 * growth:g} %)"


def phase(out: Path, name: str, secs: float, cap: float, p: dict) -> dict | None:
    """A phase's figures: its loadgen run's first phase (the 4 C run's second phase is
    the recovery), the server's counters and samples around it."""
    doc = load(out / f"{name}.json")
    s = None if doc is None else phase_of(doc, 0)
    if s is None:
        return None
    srv = load(out / f"{name}.server.json") or {}
    m1, m2 = metrics(out / f"{name}.m1"), metrics(out / f"{name}.m2")
    shed = delta(m1, m2, SHED)
    rss = rss_samples(out / f"{name}.rss")
    load_end = srv.get("load_end")
    # The reading taken where the load ended counts too (the sampler runs every 0.25 s).
    last = [(load_end if load_end is not None else max((t for t, _ in rss), default=0.0) + 1e-3,
             float(srv["rss_after_mib"]))] if rss and srv.get("rss_after_mib") is not None else []
    ok_mem, mem_why = bounded(rss + last, load_end, p["rss_growth_max"])  # over the load, not the recovery
    bids = s["counts"]["200"]
    bids_on_time = on_time_bids(s, p["tmax_ms"])
    cpu = None
    if srv.get("cpu_ticks1") is not None and srv.get("wall_s"):
        cpu = (srv["cpu_ticks1"] - srv["cpu_ticks0"]) / srv["clk_tck"] / srv["wall_s"]
    return {
        "name": name,
        "summary": s,
        "secs": secs,
        "offered": s["offered_rate"],
        "offered_c": s["offered_rate"] / cap if cap else None,
        "requests": s["requests"],
        "within_tmax": within(s, p["tmax_ms"]),
        "within_slo": within(s, p["slo_p99_ms"]),
        "p50": s["latency_ms"]["all"]["p50"],
        "p99": s["latency_ms"]["all"]["p99"],
        "p99_9": s["latency_ms"]["all"]["p99_9"],
        "p99_200": s["latency_ms"]["200"]["p99"],
        "errors": errors_of(s),
        "bids": bids,
        "no_bids": s["counts"]["204"],
        "bids_per_s": bids / secs,
        "bids_c": bids / secs / cap if cap else None,
        "on_time_bids": bids_on_time,
        "on_time_bids_per_s": None if bids_on_time is None else bids_on_time / secs,
        "shed": shed,
        "shed_share": shed / s["requests"] if shed is not None and s["requests"] else None,
        "late": delta(m1, m2, LATE),
        "rss_before": srv.get("rss_before_mib"),
        "rss_after": srv.get("rss_after_mib"),
        "rss_peak": max([m for t, m in rss if load_end is None or t <= load_end]
                        + [v for v in (srv.get("rss_before_mib"), srv.get("rss_after_mib")) if v is not None],
                        default=None),
        "rss_peak_after_load": max((m for t, m in rss if load_end is not None and t > load_end), default=None),
        "rss_after_recovery": srv.get("rss_after_recovery_mib"),
        "mem_bounded": ok_mem,
        "mem_why": mem_why,
        "cpu_share": cpu,
        "start_lag_p99": s["start_lag_ms"]["p99"],
        "alive": srv.get("alive"),
        "healthz": srv.get("healthz"),
        "readyz": srv.get("readyz"),
    }


# ---------------------------------------------------------------- recovery

def recovery(out: Path, p: dict) -> dict | None:
    """The windows after 4 C: the second phase of ``x4.json`` (loadgen's windows by
    intended send time), the server's metrics at each window's start in ``rec-K.m0``
    (and after the last in ``rec-N.m0``). A window is normal when its client p99 is at
    most ``slo_p99_ms``, nothing failed and at most ``recovery_max_shed`` of its requests
    were shed; recovery is the start of the first window from which every later one is
    normal."""
    w = p["recovery_window_s"]
    doc = load(out / "x4.json")
    rec = None if doc is None else phase_of(doc, 1)
    if rec is None:
        return None
    windows = [recovery_window(k, x, delta(metrics(out / f"rec-{k}.m0"), metrics(out / f"rec-{k + 1}.m0"), SHED), p)
               for k, x in enumerate(rec.get("windows", []))]
    if not windows:
        return None
    return {
        "rate": rec["offered_rate"],
        "windows": windows,
        "recovered_s": settled_from(windows, "normal", w),
        "p99_back_s": settled_from([{"ok": x["p99"] <= p["slo_p99_ms"]} for x in windows], "ok", w),
        "measured_s": len(windows) * w,
    }


def recovery_window(k: int, s: dict, shed: float | None, p: dict) -> dict:
    """One of loadgen's windows (``phases[1].windows[k]``) judged normal or not."""
    share = shed / s["requests"] if shed is not None and s["requests"] else None
    errs = errors_of(s)["total"]
    p99 = s["latency_ms"]["p99"]
    why = []
    if s["requests"] == 0:
        why.append("nothing recorded")
    if p99 > p["slo_p99_ms"]:
        why.append(f"p99 {p99:.1f} ms")
    if share is not None and share > p["recovery_max_shed"]:
        why.append(f"shed {100 * share:.2f} %")
    if errs:
        why.append(f"{errs} errors")
    return {"k": k, "start_s": s["start_s"], "span_s": s["span_s"], "summary": s, "shed": shed, "shed_share": share,
            "p99": p99, "errors": errs, "normal": not why, "why": "; ".join(why) or "normal"}


def settled_from(windows: list[dict], key: str, w: float) -> float | None:
    """Start (s) of the first window from which every window has ``key`` true."""
    start = None
    for i, x in enumerate(windows):
        if x[key]:
            start = i * w if start is None else start
        else:
            start = None
    return start


# ---------------------------------------------------------------- targets

def targets(ph: dict[str, dict], rec: dict | None, cap: float | None, p: dict) -> list[tuple[str, str, str, bool | None]]:
    """(phase, target, figure, met) for each of issue 28's targets whose phase ran;
    met is None when the figure is unknown."""
    rows: list[tuple[str, str, str, bool | None]] = []
    tmax = p["tmax_ms"]
    slo = p["slo_p99_ms"]
    if (f := ph.get("x2")) is not None:
        w = f["within_tmax"]
        rows.append(("2 C", f">= 99 % answered within {tmax:g} ms", pct(w), None if w is None else w >= 0.99))
        e = f["errors"]["total"]
        rows.append(("2 C", "0 errors", str(e), e == 0))
        b = f["on_time_bids_per_s"]
        if b is None or not cap:
            rows.append(("2 C", "bids answered >= 0.8 C per second", "n/a", None))
        else:
            rows.append(("2 C", f"bids answered within {tmax:g} ms >= 0.8 C per second",
                         f"{bid_rate(b, cap)} (any latency: {f['bids_per_s']:,.0f}/s = {f['bids_c']:.2f} C)",
                         b >= 0.8 * cap))
    if (f := ph.get("p70")) is not None:
        s = f["shed_share"]
        rows.append(("0.7 C", "shed < 0.1 %", pct(s, 3), None if s is None else s < 0.001))
        rows.append(("0.7 C", f"client p99 < {slo:g} ms", f"{f['p99']:.2f} ms", f["p99"] < slo))
    if (f := ph.get("x4")) is not None:
        alive = bool(f["alive"]) and f["healthz"] == "200"
        rows.append(("4 C", "no crash", f"process {'alive' if f['alive'] else 'gone'}, /healthz {f['healthz']}", alive))
        rows.append(("4 C", "memory bounded", f["mem_why"], f["mem_bounded"]))
        w = f["within_tmax"]
        rows.append(("4 C", f">= 95 % answered within {tmax:g} ms", pct(w), None if w is None else w >= 0.95))
        target_s = p["recovery_target_s"]
        if rec is None:
            rows.append(("4 C", f"recovery within {target_s:g} s", "not measured", None))
        else:
            r = rec["recovered_s"]
            fig = (f"normal from {r:g} s after the overload ended" if r is not None
                   else f"not normal by the end of the {rec['measured_s']:g} s measured")
            rows.append(("4 C", f"recovery within {target_s:g} s", fig, r is not None and r <= target_s))
    return rows


# ---------------------------------------------------------------- the report

def fmt(v, f: str = "{}", none: str = "n/a") -> str:
    return none if v is None else f.format(v)


def pct(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{100 * v:.{digits}f} %"


def bid_rate(b: float | None, cap: float | None) -> str:
    if b is None:
        return "n/a"
    return f"{b:,.0f}/s" + (f" ({b / cap:.2f} C)" if cap else "")


def met(v: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "unknown"}[v]


def report(out: Path) -> str:
    p = load(out / "params.json") or {}
    run = load(out / "run.json") or {}
    cap = run.get("capacity")
    steps = search_steps(out)
    ph: dict[str, dict] = {}
    for name in run.get("ran", []):
        f = phase(out, name, run["secs"][name], cap, p)
        if f is not None:
            ph[name] = f
    rec = recovery(out, p) if "x4" in ph else None
    L: list[str] = []
    layout = run.get("layout", "?")
    L.append(f"# Overload test ({layout} layout), {run.get('date', '?')}")
    L.append("")
    if layout == "split":
        L.append(f"- layout **split**: the server on CPU {run.get('server_cpus')} "
                 f"({run.get('server_threads_note', '')}), the load generator on CPU {run.get('gen_cpus')} "
                 f"(wrk -t{run.get('wrk_threads')}, loadgen --threads {run.get('loadgen_threads')}), by `taskset`")
    else:
        L.append(f"- layout **shared**: server and load generator on the same {run.get('nproc')} CPUs "
                 f"({run.get('server_threads_note', '')}; wrk -t{run.get('wrk_threads')}, "
                 f"loadgen --threads {run.get('loadgen_threads')})")
    L.append(f"- server: `{run.get('bin')}` ({run.get('rev')}), config `{run.get('config')}`; "
             f"threads seen: {run.get('server_threads', '?')}")
    L.append(f"- corpus: {run.get('corpus_lines')} simulator requests (seed 7), tmax {run.get('tmax')}; "
             f"the server's deadline min(tmax − network allowance, budget) = {run.get('server_deadline')}; "
             f"load from `ctrbid loadgen` (open loop, latency from each request's intended send time)")
    L.append(f"- client: on time = 200/204 within {p.get('tmax_ms', 0):g} ms of the intended send time; "
             f"timeout {run.get('timeout_ms')} ms; warm-up {run.get('warmup_s')} s per phase, not recorded")
    L.append(f"- box load average (1 min) at start / end: {run.get('load_start')} / {run.get('load_end')} "
             f"(anything well above what this run itself puts on the CPUs is another tenant)")
    if run.get("nbr_body"):
        L.append("- **note**: the config answers no-bid with 200 (`nbr_body = true`): the 200 count is not the bid count")
    L.append("")

    # capacity
    L.append("## Capacity")
    L.append("")
    src = run.get("capacity_source", "?")
    if cap is None:
        L.append(f"No sustainable rate was found ({src}): the phases did not run.")
    else:
        L.append(f"C = **{cap:,.0f} requests/s** ({src}).")
    if run.get("wrk_rps") is not None:
        L.append("")
        L.append(f"wrk closed loop (-t{run.get('wrk_threads')} -c{run.get('wrk_connections')}, "
                 f"{run.get('capacity_s')} s): {run['wrk_rps']:,.0f} requests/s, p99 {run.get('wrk_p99', '?')}: "
                 f"the search's starting point, not C.")
    if steps:
        L.append("")
        L.append(f"Search: open loop, {p.get('search_warmup_s', 0):g} s warm-up + {p.get('search_s', 0):g} s "
                 f"measured per step; sustainable = client p99 ≤ {p.get('slo_p99_ms', 0):g} ms, shed ≤ "
                 f"{100 * p.get('capacity_max_shed', 0):g} %, no error; "
                 f"{len(steps)} steps in {run.get('search_wall_s', '?')} s (budget {p.get('search_budget_s', 0):g} s, "
                 f"at most {p.get('search_steps')} steps, stop within {100 * p.get('search_tol', 0):g} %).")
        L.append("")
        L.append("| step | offered (req/s) | p50 ms | p99 ms | shed | errors | generator lag p99 ms | verdict |")
        L.append("|---:|---:|---:|---:|---:|---:|---:|---|")
        for i, st in enumerate(steps, 1):
            s = st["summary"]
            share = st["shed"] / s["requests"] if st["shed"] is not None and s["requests"] else None
            L.append(f"| {i} | {st['rate']:,.0f} | {s['latency_ms']['all']['p50']:.2f} | "
                     f"{s['latency_ms']['all']['p99']:.2f} | {pct(share)} | {errors_of(s)['total']} | "
                     f"{s['start_lag_ms']['p99']:.2f} | {'pass' if st['ok'] else 'fail: ' + st['why']} |")
    L.append("")

    if ph:
        L.append("## Phases")
        L.append("")
        names = list(ph)
        L.append("| | " + " | ".join(f"{PHASE_LABELS.get(n, n)} ({ph[n]['secs']:g} s)" for n in names) + " |")
        L.append("|---|" + "---:|" * len(names))

        def row(label: str, fn) -> None:
            L.append(f"| {label} | " + " | ".join(fn(ph[n]) for n in names) + " |")

        tmax = p.get("tmax_ms", 100)
        row("offered rate (req/s)", lambda f: f"{f['offered']:,.0f} ({fmt(f['offered_c'], '{:.2f}')} C)")
        row("requests recorded", lambda f: f"{f['requests']:,}")
        row(f"answered within {tmax:g} ms at the client", lambda f: pct(f["within_tmax"]))
        row("client p50 / p99 ms", lambda f: f"{f['p50']:.2f} / {f['p99']:.2f}")
        row("client p99.9 ms; p99 of the 200s", lambda f: f"{f['p99_9']:.2f}; {f['p99_200']:.2f}")
        row("errors, all", lambda f: str(f["errors"]["total"]))
        row("… non-2xx / of which 5xx", lambda f: f"{f['errors']['non_2xx']} / {f['errors']['5xx']}")
        row("… connection errors / client timeouts / unsent", lambda f:
            f"{f['errors']['connection']} / {f['errors']['timeouts']} / {f['errors']['unsent']}")
        row("200 (bid) / 204", lambda f: f"{f['bids']:,} / {f['no_bids']:,}")
        row("bids answered per second (× C)", lambda f: f"{f['bids_per_s']:,.0f} ({fmt(f['bids_c'], '{:.2f}')} C)")
        row(f"… of which within {tmax:g} ms", lambda f: bid_rate(f["on_time_bids_per_s"], cap))
        row("shed (server counter, after warm-up)", lambda f: f"{fmt(f['shed'], '{:,.0f}')} ({pct(f['shed_share'], 3)})")
        row("answered after tmax − allowance (server counter)", lambda f: fmt(f["late"], "{:,.0f}"))
        row("server RSS MiB before / after / peak (of the load)", lambda f:
            f"{fmt(f['rss_before'])} / {fmt(f['rss_after'])} / {fmt(f['rss_peak'], '{:.0f}')}")
        row("server CPU (cores, over the phase)", lambda f: fmt(f["cpu_share"], "{:.2f}"))
        row("generator start lag p99 ms", lambda f: f"{f['start_lag_p99']:.2f}")
        row("server alive, /healthz, /readyz after", lambda f:
            f"{'yes' if f['alive'] else '**no**'}, {f['healthz']}, {f['readyz']}")
        L.append("")
        L.append("Bids per second: 200 answers (any latency) over the phase's measured seconds; within tmax: "
                 "loadgen's exact count of 200s answered within tmax of their intended send time, over the same "
                 "seconds. Shed: the server's "
                 "`ctrbid_requests_total{outcome=\"shed\"}` from the end of the warm-up (±0.05 s) to the phase's "
                 "end, over the requests recorded. A generator start lag p99 of more than a few ms means the "
                 "generator, not the server, was short of CPU.")
        L.append("")

    if rec is not None:
        L.append("## Recovery after 4 C")
        L.append("")
        L.append(f"When the 4 C schedule ended (its requests still in flight), {p['recovery_rate']:g} C was sent "
                 f"from that instant on, by the same `ctrbid loadgen` run on the same connections (`--phases`), "
                 f"and judged in windows of {p['recovery_window_s']:g} s by intended send time (`--window-ms`). "
                 f"Normal = p99 ≤ {p['slo_p99_ms']:g} ms, no error, "
                 f"shed ≤ {100 * p['recovery_max_shed']:g} %. Shed is the server's counter between window starts "
                 f"over the window's requests: it includes 4 C requests still queued, so it can pass 100 %.")
        L.append("")
        L.append("| window (s after the end) | offered (req/s) | requests | p50 ms | p99 ms | shed | errors | |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for x in rec["windows"]:
            s = x["summary"]
            span = f"{x['start_s']:g}–{x['start_s'] + x['span_s']:g}"
            L.append(f"| {span} | {rec['rate']:,.0f} | {s['requests']:,} | {s['latency_ms']['p50']:.2f} | "
                     f"{x['p99']:.2f} | {fmt(x['shed'], '{:,.0f}')} ({pct(x['shed_share'])}) | {x['errors']} | {x['why']} |")
        L.append("")
        x4 = ph["x4"]
        L.append(f"- server RSS after the windows: {fmt(x4['rss_after_recovery'])} MiB, peak during them "
                 f"{fmt(x4['rss_peak_after_load'], '{:.0f}')} MiB")
        r, b = rec["recovered_s"], rec["p99_back_s"]
        L.append(f"- normal answers from: {fmt(r, '{:g} s', 'not within the windows measured')}; "
                 f"p99 back under {p['slo_p99_ms']:g} ms from: {fmt(b, '{:g} s', 'not within the windows measured')}")
        L.append("")

    rows = targets(ph, rec, cap, p)
    if rows:
        L.append("## Issue 28's targets")
        L.append("")
        L.append("| at | target | measured | |")
        L.append("|---|---|---|---|")
        for at, t, fig, ok in rows:
            L.append(f"| {at} | {t} | {fig} | {met(ok)} |")
        L.append("")
    return "\n".join(L)


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("next", "capacity", "report"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(argv[1])
    if argv[0] == "next":
        p = load(out / "params.json")
        steps = search_steps(out)
        r = next_rate([(st["rate"], st["ok"]) for st in steps], float(p["search_start"]), p)
        if steps:
            st = steps[-1]
            print(f"step {len(steps)}: {st['rate']:.0f} req/s: {'pass' if st['ok'] else 'fail'} ({st['why']})",
                  file=sys.stderr)
        if r is not None:
            print(f"{r:.1f}")
    elif argv[0] == "capacity":
        c = capacity(search_steps(out))
        if c is not None:
            print(f"{c:.1f}")
    else:
        Path(argv[2]).write_text(report(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
