"""A fleet behind one load balancer: three ``ctrbid serve`` instances sharing one real
``redis-server`` (``--fleet-backend redis``), judged on ``ctrbid exchange`` runs, the
exchange's ledger the judge.

    .venv/bin/python loadtest/fleet.py --out target/fleet      (or `make fleet`)
        [--instances 3] [--requests-per-day 200000] [--rate 1500] [--outage-s 30]
        [--ab-pairs 2] [--ab-requests 100000] [--timeout-ms 250] [--lease-interval-ms 50]
        [--parts fleet,outage,caps,ab] [--rejudge]

The exchange plays the load balancer (``--bidder a,b,c``: requests round robin, each
win, billing, loss, click and conversion notice to an instance drawn per notice) and
replays 5 % of the applied billing notices to a different instance than the one that
took them (``--replay-bills``). Budgets are part 1's of ``loadtest/economics.py``
(``OUT/catalog-budgets.json``: 0.4 of each campaign's spend on an unpaced calibration
day, calibrated here when absent), paced, holds of ``--hold-wall-s`` as there.

1. **fleet**: two days, day 1 the pacing controller's learning day, day 2 judged: spend
   per judged campaign against its budget (over: must be none; within 1 %), every
   replayed bill refused, and the fleet's own books (each instance's spend of its own
   bids, ``/admin/pacing``, summed) against the ledger's.
2. **outage**: the same two days, Redis killed ``--outage-s`` seconds (wall) in the
   middle of day 2 and started again on its files: answers by status (no 5xx), each
   instance's ``/readyz`` during the outage, spend against budget (the bound: none
   over), the books against the ledger after recovery, and the fleet's counts of what
   the outage let through (``ctrbid_fleet_reconciled_total``).
3. **caps**: every campaign capped at 3 a day per user (``loadtest/economics.py``'s
   part 2: budgets that never bind, no pacing, 2,000 users so that caps bind), one day
   played to the three instances and the same day to one instance alone: impressions
   over a cap in the ledger (must be none), and what the fleet's division of each cap
   costs in delivery (impressions, and (user, campaign) pairs that reached the cap)
   against the instance alone.
4. **ab**: one instance alone (``memory``) against one on Redis (``redis``), the same
   day of traffic, in the order memory, redis, memory, redis...: CPU per 1,000 requests
   and the in-process p99, the median of each arm.

Every run keeps ``OUT/<run>/``: ``exchange/`` (ledger, report), ``events-<instance>/``,
``bidder-<instance>.log``, ``redis/`` (its append-only file and log), ``pacing-*.json``,
``metrics-*.txt``, ``run.json``. Writes ``OUT/report.md`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import economics as eco  # noqa: E402

ROOT = eco.ROOT
PARTS = ("fleet", "outage", "caps", "ab")
REPLAY_SHARE = 0.05
WITHIN = eco.WITHIN_BUDGET
AB_MAX_RATIO = 1.15  # the target: Redis against in-process, within 15 %
# The simulated day runs 432 times faster than a real one at 1,000 requests/s: the
# production tick of 200 ms would be 86 simulated seconds between a bill's arrival at
# one instance and its maker hearing of it. 50 ms (22 simulated seconds) and a hold of
# 1 s of wall time (432 simulated seconds, against economics.py's 0.5 s) keep the
# outcomes of a bid inside its hold as the production settings do in real time.
LEASE_INTERVAL_MS = 50
# Three bidders, the exchange and Redis share two cores here: a claim waits on the
# scheduler, not on Redis, and at production's 50 ms 0.3 % of them timed out (each a
# replay let through, as in an outage). 250 ms measures the ledger, not the box.
TIMEOUT_MS = 250
HOLD_WALL_S = 1.0


def log(msg: str) -> None:
    eco.log(f"fleet: {msg}")


class Redis:
    """A ``redis-server`` on a free loopback port, its append-only file fsynced on every
    write in ``dir`` (what it acknowledged survives a kill), until :meth:`stop`."""

    def __init__(self, dir: Path):
        self.dir = dir.resolve()
        self.dir.mkdir(parents=True, exist_ok=True)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}"
        self.proc = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
             "--appendfsync", "always", "--protected-mode", "no", "--dir", str(self.dir),
             "--logfile", str(self.dir / "redis.log")], stdout=subprocess.DEVNULL)
        until = time.monotonic() + 10
        while time.monotonic() < until:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"redis-server on port {self.port} did not answer within 10 s")

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


def play(a, name: str, catalog: Path, days: int, instances: list[str], backend: str = "redis",
         outage: tuple[float, float] | None = None, xflags: list[str] = (), pacing: str = "true") -> Path:
    """``instances`` of one bidder (``backend``) against ``days`` of the exchange; with
    ``outage`` (start, length in wall seconds from the exchange's start) Redis is killed
    then and started again. Returns the run's directory."""
    out = Path(a.out) / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    redis = Redis(out / "redis") if backend == "redis" else None
    config = fleet_config(a, out)
    bidders = []
    meta = {"name": name, "days": days, "instances": instances, "backend": backend, "serve": [], "outage": None}
    try:
        for inst in instances:
            flags = ["--catalog", catalog, "--in-flight-s", str(eco.in_flight_s(a)), "--pacing", pacing]
            if redis:
                flags += ["--fleet-backend", "redis", "--redis-url", redis.url, "--fleet-instance", inst]
            b = eco.Bidder(a.bin, out / f"events-{inst}", out / f"bidder-{inst}.log", flags, eco.NOTICE_KEY, config)
            bidders.append(b)
            meta["serve"].append(b.cmd)
        requests = a.requests_per_day * days
        xcmd = [a.bin, "exchange", "--bidder", ",".join(b.url for b in bidders), "--out", str(out / "exchange"),
                "--seed", str(a.seed), "--requests", str(requests), "--days", str(days), "--rate", str(a.rate),
                *xflags]
        meta["exchange"] = xcmd
        log(shlex.join(xcmd))
        cpu0, t0 = sum(b.cpu_seconds() for b in bidders), time.monotonic()
        with open(out / "exchange.log", "wb") as xlog:
            exchange = subprocess.Popen(xcmd, cwd=ROOT, stdout=xlog, stderr=subprocess.STDOUT)
            if outage:
                meta["outage"] = run_outage(redis, bidders, exchange, t0, *outage)
            if exchange.wait() != 0:
                raise RuntimeError(f"{name}: the exchange failed: see {out / 'exchange.log'}")
        meta["wall_s"], meta["cpu_s"] = time.monotonic() - t0, sum(b.cpu_seconds() for b in bidders) - cpu0
        # Outcomes forwarded in the last tick reach their instance's inbox.
        time.sleep(1.0)
        for inst, b in zip(instances, bidders):
            for path, file in (("/admin/pacing", f"pacing-{inst}.json"), ("/metrics", f"metrics-{inst}.txt")):
                status, body = b.get(path)
                (out / file).write_text(body if status == 200 else "")
    finally:
        for b in bidders:
            b.stop()
        if redis:
            redis.stop()
    meta["bidder_exits"] = [b.proc.returncode for b in bidders]
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


def fleet_config(a, out: Path) -> str:
    """``a.config`` with ``fleet.lease_interval_ms`` and ``fleet.timeout_ms`` set (no flag
    sets them): ``OUT/<run>/ctrbid.toml``."""
    text = (ROOT / a.config).read_text()
    settings = {"lease_interval_ms": a.lease_interval_ms, "timeout_ms": a.timeout_ms}
    lines = text.splitlines()
    for key, value in settings.items():
        at = [i for i, line in enumerate(lines) if line.startswith(f"{key} =")]
        if len(at) != 1:
            raise RuntimeError(f"{a.config} has no single {key} line to set")
        lines[at[0]] = f"{key} = {value}"
    path = out / "ctrbid.toml"
    path.write_text("\n".join(lines) + "\n")
    return str(path.resolve())


def run_outage(redis: Redis, bidders, exchange, t0: float, at_s: float, length_s: float) -> dict:
    """Kills Redis at ``at_s`` for ``length_s`` (wall, from ``t0``), reading each
    instance's ``/readyz`` once a second meanwhile; what was seen."""
    while time.monotonic() - t0 < at_s:
        if exchange.poll() is not None:
            return {"error": "the exchange ended before the outage"}
        time.sleep(0.1)
    redis.kill()
    killed = time.monotonic()
    log(f"redis killed at {killed - t0:.1f} s")
    readyz, alive = Counter(), True
    while time.monotonic() - killed < length_s:
        for b in bidders:
            status, body = b.get("/readyz")
            readyz[f"{status} {body.split(':')[0].strip()}"] += 1
            alive &= b.proc.poll() is None
        time.sleep(1.0)
    redis.start()
    log(f"redis back at {time.monotonic() - t0:.1f} s")
    return {"killed_at_s": killed - t0, "down_s": time.monotonic() - killed, "readyz": dict(readyz),
            "bidders_alive": alive}


def books(run_dir: Path, instances: list[str]) -> dict[str, float]:
    """The fleet's books per campaign: each instance's spend of its own bids since it
    started (``spend_since_start_usd``), summed, USD."""
    total = defaultdict(float)
    for inst in instances:
        p = run_dir / f"pacing-{inst}.json"
        if p.is_file() and p.read_text():
            for c in json.loads(p.read_text())["campaigns"]:
                total[c["campaign"]] += c["spend_since_start_usd"]
    return dict(total)


def merged_states(run_dir: Path, instances: list[str]) -> dict[str, dict]:
    """Per campaign, what ``budget_category`` reads of ``/admin/pacing``: short of
    traffic when every instance ended at rate 1 or throttled nothing."""
    states: dict[str, dict] = {}
    for inst in instances:
        p = run_dir / f"pacing-{inst}.json"
        if not (p.is_file() and p.read_text()):
            continue
        for c in json.loads(p.read_text())["campaigns"]:
            s = states.setdefault(c["campaign"], {"pacing_rate": 1, "throttled": 0,
                                                  "plan_by_hour_usd": c["plan_by_hour_usd"]})
            s["pacing_rate"] = min(s["pacing_rate"], c["pacing_rate"])
            s["throttled"] += c["throttled"]
    return states


def metric_sum(run_dir: Path, instances: list[str], line_start: str) -> float:
    total = 0.0
    for inst in instances:
        p = run_dir / f"metrics-{inst}.txt"
        for line in (p.read_text().splitlines() if p.is_file() else []):
            if line.startswith(line_start):
                total += float(line.rsplit(" ", 1)[1])
    return total


def judge_run(run_dir: Path, instances: list[str], budgets: dict[str, float], judged: list[str], day: int) -> dict:
    led = eco.read_ledger(run_dir / "exchange" / "ledger.jsonl")
    spend = eco.spend_by_hour(led.bills, led.start_ts, day)
    states = merged_states(run_dir, instances)
    plans = {c: s["plan_by_hour_usd"] for c, s in states.items()}
    pacing = eco.judge_pacing(budgets, judged, spend, states, plans,
                              eco.ecpm_by_campaign(led.impressions, led.start_ts, day))
    report = json.loads((run_dir / "exchange" / "report.json").read_text())
    fleet = report["bidders"][0]
    # The books: the fleet's record of the run's spend against the ledger's, per campaign.
    book = books(run_dir, instances)
    ledger_all = defaultdict(int)
    for _ts, cid, micros in led.bills:
        ledger_all[cid] += micros
    ledger_today = {c: m / 1e6 for c, m in ledger_all.items()}
    diffs = {c: round(book.get(c, 0.0) - ledger_today.get(c, 0.0), 6) for c in set(book) | set(ledger_today)}
    off = {c: d for c, d in diffs.items() if abs(d) > 1e-6}
    over = [r for r in pacing["campaigns"] if r["category"] == "over"]
    return {
        "categories": pacing["categories"],
        "over": [{"campaign": r["campaign"], "budget": r["budget"], "spend": r["spend"]} for r in over],
        "worst_total_hour": eco.worst(pacing["aggregate_errors"]),
        "spend_over_budget": sorted(r["spend_over_budget"] for r in pacing["campaigns"]),
        "answers": {"requests": fleet["requests"], "200": fleet["answered_200"], "204": fleet["answered_204"],
                    "late": fleet["late_answers"], "errors": fleet["errors"]},
        "notices": report["notices"],
        "replays": report["replays"],
        "books": {"campaigns": len(diffs), "off_by_more_than_a_micro": len(off),
                  "largest": max(off.items(), key=lambda kv: abs(kv[1])) if off else None,
                  "ledger_total": round(sum(ledger_today.values()), 6), "fleet_total": round(sum(book.values()), 6)},
        "fleet_counts": {k: metric_sum(run_dir, instances, f'ctrbid_fleet_{k} ') for k in (
            'reconciled_total{result="double_applied"}', 'reconciled_total{result="shared"}',
            'outcomes_total{direction="forwarded"}', 'outcomes_total{direction="applied"}',
            'lease_refreshes_total', 'campaign_leases_total', 'notice_claims_total{result="unshared"}',
            'aggregate_events_total{direction="sent"}', 'aggregate_events_total{direction="taken"}',
            'redis_calls_total{result="ok"}', 'redis_calls_total{result="timeout"}')},
        "aggregates_events_per_instance": [metric_sum(run_dir, [i], "ctrbid_aggregates_events_total ")
                                           for i in instances],
        "lease_refused": metric_sum(run_dir, instances, "ctrbid_campaign_lease_refused_total"),
        "run": eco.run_meta(run_dir),
    }


def budgets_and_judged(a) -> tuple[Path, dict[str, float], list[str]]:
    path = eco.budgets_catalog(a)
    judged = json.loads((Path(a.out) / "calibration.json").read_text())["judged"]
    budgets = {c["id"]: c["daily_budget"] for c in eco.load_catalog(path)["campaigns"]}
    return path, budgets, judged


def names(a) -> list[str]:
    return [chr(ord("a") + i) for i in range(a.instances)]


def part_fleet(a) -> dict:
    path, budgets, judged = budgets_and_judged(a)
    run = Path(a.out) / "fleet" if a.rejudge else play(
        a, "fleet", path, 2, names(a), xflags=["--replay-bills", str(REPLAY_SHARE)])
    r = judge_run(run, names(a), budgets, judged, 1)
    r["targets"] = {
        "no campaign over budget": eco.target(r["categories"]["over"], "<=", 0),
        "every judged campaign within 1 % of its budget, or short of traffic": eco.target(
            r["categories"]["under"], "<=", 0),
        "every replayed bill refused": eco.target(r["replays"]["sent"] - r["replays"]["refused"], "<=", 0),
        "no errors (5xx or no answer within tmax + grace)": eco.target(r["answers"]["errors"], "<=", 0),
        "books match the ledger": eco.target(r["books"]["off_by_more_than_a_micro"], "<=", 0),
    }
    return r


def part_outage(a) -> dict:
    path, budgets, judged = budgets_and_judged(a)
    day_s = a.requests_per_day / a.rate
    outage = (1.5 * day_s - a.outage_s / 2, a.outage_s)
    run = Path(a.out) / "outage" if a.rejudge else play(
        a, "outage", path, 2, names(a), outage=outage, xflags=["--replay-bills", str(REPLAY_SHARE)])
    r = judge_run(run, names(a), budgets, judged, 1)
    r["outage"] = r["run"].get("outage")
    r["targets"] = {
        "no campaign over budget": eco.target(r["categories"]["over"], "<=", 0),
        "no errors (5xx or no answer within tmax + grace)": eco.target(r["answers"]["errors"], "<=", 0),
        "every instance alive through it (1: yes)": eco.target(int(bool(
            r["outage"] and r["outage"].get("bidders_alive")
            and all(e == 0 for e in r["run"].get("bidder_exits", [1])))), ">=", 1),
        "books match the ledger after recovery": eco.target(r["books"]["off_by_more_than_a_micro"], "<=", 0),
    }
    return r


def part_ab(a) -> dict:
    base = eco.load_catalog(a.catalog)
    path = eco.write_catalog(base, eco.with_budgets_x(base["campaigns"], eco.UNBOUNDED),
                             Path(a.out) / "catalog-unbounded.json")
    ab = argparse.Namespace(**{**vars(a), "requests_per_day": a.ab_requests})
    runs = []
    for i, arm in enumerate(["memory", "redis"] * a.ab_pairs):
        name = f"ab-{i + 1}-{arm}"
        run = Path(a.out) / name if a.rejudge else play(ab, name, path, 1, ["a"], backend=arm)
        led = eco.read_ledger(run / "exchange" / "ledger.jsonl", latencies=True)
        meta = eco.run_meta(run)
        metrics = (run / "metrics-a.txt").read_text() if (run / "metrics-a.txt").is_file() else ""
        p99_s, _ = eco.latency_p99_s(metrics)
        runs.append({"run": name, "arm": arm, "requests": led.requests, "bids": sum(led.bids.values()),
                     "cpu_s_per_1000": eco.ratio(1000 * meta["cpu_s"], led.requests) if meta.get("cpu_s") else None,
                     "in_process_p99_ms": p99_s * 1e3 if p99_s is not None else None,
                     "exchange_p99_ms": eco.percentile(led.latencies_ms, 99) if led.latencies_ms else None,
                     "redis_calls": metric_sum(run, ["a"], 'ctrbid_fleet_redis_calls_total{result="ok"}')})
    keys = ("cpu_s_per_1000", "in_process_p99_ms", "exchange_p99_ms", "redis_calls")
    median = {arm: {k: eco.median_of([r[k] for r in runs if r["arm"] == arm]) for k in keys} for arm in ("memory", "redis")}
    ratio = {k: eco.ratio(median["redis"][k], median["memory"][k]) for k in keys[:3]}
    return {"runs": runs, "median": median, "redis_over_memory": ratio,
            "targets": {"CPU per request, redis / memory": eco.target(ratio["cpu_s_per_1000"], "<=", AB_MAX_RATIO),
                        "in-process p99, redis / memory": eco.target(ratio["in_process_p99_ms"], "<=", AB_MAX_RATIO)}}


def part_caps(a) -> dict:
    base = eco.load_catalog(a.catalog)
    path = eco.write_catalog(base, eco.with_caps(eco.with_budgets_x(base["campaigns"], eco.UNBOUNDED)),
                             Path(a.out) / "catalog-caps.json")
    xflags = ["--users", str(eco.CAPS_USERS)]
    runs = {}
    for name, instances, backend in (("caps-fleet", names(a), "redis"), ("caps-one", ["a"], "memory")):
        run = Path(a.out) / name if a.rejudge else play(a, name, path, 1, instances, backend=backend,
                                                        xflags=xflags, pacing="false")
        led = eco.read_ledger(run / "exchange" / "ledger.jsonl", users=True)
        runs[name] = {"instances": len(instances), "backend": backend,
                      "caps": eco.over_cap(eco.impressions_with_users(led), eco.CAP["impressions"],
                                           eco.CAP["window_s"]),
                      "bids": sum(led.bids.values()), "wins": sum(led.wins.values()),
                      "capped": metric_sum(run, instances, "ctrbid_freqcap_capped_total "),
                      "fleet_members": [metric_sum(run, [i], "ctrbid_freqcap_fleet_members ") for i in instances],
                      "run": eco.run_meta(run)}
    fleet, one = runs["caps-fleet"]["caps"], runs["caps-one"]["caps"]
    return {"cap": eco.CAP, "users": eco.CAPS_USERS, "runs": runs,
            "fleet_over_one": {"impressions": eco.ratio(fleet["impressions"], one["impressions"]),
                               "pairs_at_cap": eco.ratio(fleet["pairs_at_cap"], one["pairs_at_cap"])},
            "targets": {"impressions over a cap, three instances": eco.target(fleet["over_cap"], "<=", 0)}}


PART_FUNCS = {"fleet": part_fleet, "outage": part_outage, "caps": part_caps, "ab": part_ab}


def markdown(report: dict) -> str:
    lines = [f"# A fleet on one Redis: {report['date']}", "", f"`{report['command']}`", ""]
    for name, r in report["parts"].items():
        lines += [f"## {name}", ""]
        if "error" in r or "skipped" in r:
            lines += [r.get("error") or r.get("skipped"), ""]
            continue
        lines += eco.targets_md(r["targets"]) + [""]
        body = {k: v for k, v in r.items() if k not in ("targets", "run", "runs")}
        lines += ["```json", json.dumps(body, indent=1), "```", ""]
        if "runs" in r:
            lines += ["```json", json.dumps(r["runs"], indent=1), "```", ""]
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "target/fleet"))
    p.add_argument("--bin", default="target/release/ctrbid")
    p.add_argument("--config", default="deploy/ctrbid.toml")
    p.add_argument("--catalog", default="models/default/catalog.json")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--instances", type=int, default=3)
    p.add_argument("--requests-per-day", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=1000.0, help="requests per second of wall time")
    p.add_argument("--hold-wall-s", type=float, default=HOLD_WALL_S,
                   help="how long, in wall seconds, a bid stays held awaiting its outcome")
    p.add_argument("--lease-interval-ms", type=int, default=LEASE_INTERVAL_MS,
                   help="fleet.lease_interval_ms of every instance")
    p.add_argument("--timeout-ms", type=int, default=TIMEOUT_MS, help="fleet.timeout_ms: a notice's claim waits this long")
    p.add_argument("--outage-s", type=float, default=30.0, help="how long Redis stays down, wall seconds")
    p.add_argument("--ab-pairs", type=int, default=2)
    p.add_argument("--ab-requests", type=int, default=100_000)
    p.add_argument("--parts", default=",".join(PARTS))
    p.add_argument("--rejudge", action="store_true")
    a = p.parse_args(argv)
    a.parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    if any(x not in PARTS for x in a.parts):
        p.error(f"parts: choose from {','.join(PARTS)}")
    return a


def main(argv: list[str]) -> int:
    a = parse_args(argv[1:])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    parts = eco.run_parts(a.parts, PART_FUNCS, a, lambda _part: None, log)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": eco.display_command(argv),
              "args": vars(a), "minutes": (time.time() - started) / 60, "parts": parts}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    log(f"report: {out / 'report.md'}")
    return 1 if any("error" in r for r in parts.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
