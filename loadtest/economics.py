"""Campaign economics: budget pacing, frequency caps and first-price bid shading, each
judged on `ctrbid exchange` runs against the bidder, the exchange's ledger the judge.

    .venv/bin/python loadtest/economics.py --out target/economics      (or `make economics`)
        [--requests-per-day 200000] [--rate 2000] [--hold-wall-s 0.5] [--ab-pairs 5]
        [--ab-requests 100000] [--ab-rate RATE]
        [--parts pacing,caps,shading,ab] [--rejudge]

Every run starts one bidder (``ctrbid serve`` on the simulation clock, on free ports, its
own event log), plays ``ctrbid exchange --seed 7`` against it, fetches ``/admin/pacing``
(``pacing.json``) and ``/metrics`` (``metrics.txt``) once the exchange is done, stops the
bidder with SIGTERM and keeps ``OUT/<run>/``: ``exchange/`` (ledger, report), ``events/``,
``bidder.log``, ``exchange.log``, ``run.json`` (commands, wall and CPU seconds). Every
bidder holds a bid in flight for 0.5 s of wall time (``--in-flight-s``, :func:`in_flight_s`).

1. **Pacing** (second price). ``calibrate``: the default catalog with every budget x 1000,
   unpaced, 1 day: each campaign's spend S. Budgets B = max(1, 0.4 S) for the campaigns
   that spent (``OUT/catalog-budgets.json``; the others keep 1000 x theirs and are not
   judged). ``unpaced`` and ``paced``, 2 days each: day 1 teaches the bidder its hourly
   traffic profile, day 2 is judged: spend against budget per campaign, spend per hour
   against the bidder's plan, and when each unpaced campaign ran dry.
2. **Frequency caps**: every campaign capped at 3 impressions a day, 2,000 users;
   ``caps-off`` and ``caps-on``, 1 day each: impressions over the cap by the ledger.
3. **First-price shading**: the budgets of part 1, every auction first price, 2 days,
   paced: ``truthful``, ``fixed`` (0.85), ``learnt``, ``oracle``; day 2's value bought and
   surplus.
4. **A/B cost**: everything off against everything on, on the same day of traffic and
   the catalog of part 2 (budgets that never bind: both arms bid in the same auctions),
   in the order off, on, off, on, ... (five pairs, ``--ab-pairs``; days of
   ``--ab-requests`` requests at ``--ab-rate``): the bidder's CPU per 1,000 requests,
   its in-process p99 and the exchange's answer latency p99, the median of each arm's
   runs compared; beside them the share of requests auto scoring batched, the p99 of
   those scored inline, and how many of the box's cores the bidder and the exchange
   kept busy.

Spend is the ledger's: billing notices answered 200 (``price`` / 1000, each rounded to the
micro-dollar as the bidder and the exchange's report round it), in the UTC hour of the
notice; value is the campaign's goal CPC x the true pCTR (CPC campaigns) or goal CPA x
pCTR x pCVR (CPA campaigns) of each impression. ``--rejudge`` judges the runs already in
``--out`` without playing them again. Writes ``OUT/report.md``, ``report.json`` and PNGs;
the judging functions take plain data (``loadtest/tests/test_economics.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "models"))
from ctrbid_train.bidder import Bidder  # noqa: E402

NOTICE_KEY = "economics-notice-key-0123456789abcdef-0123"
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
BIDDER = 0  # the bidder's index in the ledger: one bidder per run
PARTS = ("pacing", "caps", "shading", "ab")

# Part 1: the budgets, and what the judgement counts.
BUDGET_SHARE = 0.4  # of the calibration day's spend
UNBOUNDED = 1000.0  # budgets x this never bind
# Judged campaigns spent at least this on the calibration day (about 250 impressions at
# 20 USD CPM): below it a day holds too few impressions to pace, or to judge by the hour.
MIN_JUDGED_SPEND = 5.0
WITHIN_BUDGET = 0.01  # |spend / budget - 1| <= this: "within 1 %"
EMPTY_SHARE = 0.99  # an unpaced campaign is empty once it has spent this share of its budget
HOUR_TOLERANCE = 0.10  # an hour's spend within 10 % of its plan
EPS = 1e-9  # so that a share of exactly 1 % or 10 % counts as within it, whatever the float rounding
MIN_EXPECTED_IMPS = 100.0  # campaign-hours with at least this many expected impressions
# Part 2.
CAP = {"impressions": 3, "window_s": 86_400}
CAPS_USERS = 2000
# Part 3: the strategies and their flags (all paced), and the targets.
STRATEGIES = {
    "truthful": ["--shading", "fixed", "--shading-factor", "1"],
    "fixed": ["--shading", "fixed", "--shading-factor", "0.85"],
    "learnt": ["--shading", "learnt"],
    "oracle": ["--shading", "oracle", "--shading-oracle-seed", "7"],
}
LEARNT_OVER_FIXED_SURPLUS = 1.15
LEARNT_OVER_ORACLE_SURPLUS = 0.90
LEARNT_OVER_FIXED_VALUE = 1.0
# Part 4.
AB_ARMS = {
    "all-off": ["--pacing", "false", "--frequency-caps", "false", "--shading", "fixed"],
    "all-on": ["--pacing", "true", "--frequency-caps", "true", "--shading", "learnt"],
}
# off, on; off, on; ...: the median of five runs per arm outlasts a slow quarter hour of
# the box's neighbours (in one sitting a run's p99 went from 1.1 to 4 ms and back between
# runs of the same arm). Each run one simulated day of AB_REQUESTS requests, shorter than
# the other parts' days so that five pairs fit.
AB_PAIRS = 5
AB_REQUESTS = 100_000
AB_MAX_RATIO = 1.10  # all on against all off: CPU per request and p99 within 10 %
# The bidder's in-process latency of a whole request (src/metrics.rs): a Prometheus
# histogram's buckets when it has them, else its summary's 0.99 quantile.
LATENCY_FAMILY, LATENCY_LABEL = "ctrbid_stage_seconds", ('stage', 'total')


def log(msg: str) -> None:
    print(f"[economics] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------
# Running: one bidder, the exchange against it.


def serve_flags_of(binary: str) -> set[str]:
    """The long flags ``ctrbid serve --help`` lists."""
    text = subprocess.run([binary, "serve", "--help"], cwd=ROOT, capture_output=True, text=True).stdout
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", text))


def missing_flags(available: set[str], flags: list[str]) -> list[str]:
    return sorted({f for f in flags if f.startswith("--") and f not in available})


# A bid's hold (its price against the budget, its slot under the caps) must outlive the
# wall time its win notice takes (``--hold-wall-s``), in the auction clock's seconds.
HOLD_WALL_S = 0.5


def in_flight_s(a) -> int:
    """``pacing.in_flight_s`` for these runs: the production default (120 s) or
    ``--hold-wall-s`` of wall time, whichever is longer. A day compressed 1,300-fold turns
    120 s of auction time into 0.09 s of wall time, less than a loaded box may take to
    deliver a win notice; a hold that lapses first frees the bid's cap slot for a second
    bid to the same user. Longer is not free: a win whose bill never comes holds its price
    against the budget for the whole hold, and in the last hold of the day that money
    cannot be spent."""
    return max(120, math.ceil(a.hold_wall_s * 86_400 * a.rate / a.requests_per_day))


def play(a, name: str, catalog: Path, flags: list[str], days: int, exchange_flags: list[str] = ()) -> Path:
    """One fresh bidder with ``flags`` against ``days`` of the exchange; returns the run's
    directory (removed first: a bidder restores today's spend from its event log)."""
    flags = ["--in-flight-s", str(in_flight_s(a)), *flags]
    out = Path(a.out) / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    requests = a.requests_per_day * days
    xcmd = [a.bin, "exchange", "--out", str(out / "exchange"), "--seed", str(a.seed), "--requests", str(requests),
            "--days", str(days), "--rate", str(a.rate), *exchange_flags]
    bidder = Bidder(a.bin, out / "events", out / "bidder.log", ["--catalog", catalog, *flags], NOTICE_KEY, a.config)
    meta = {"name": name, "serve": bidder.cmd, "exchange": None, "days": days, "requests": requests}
    try:
        xcmd[2:2] = ["--bidder", bidder.url]
        meta["exchange"] = xcmd
        log(shlex.join(xcmd))
        cpu0, t0 = bidder.cpu_seconds(), time.monotonic()
        children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        with open(out / "exchange.log", "wb") as xlog:
            subprocess.run(xcmd, cwd=ROOT, stdout=xlog, stderr=subprocess.STDOUT, check=True)
        meta["wall_s"], meta["cpu_s"] = time.monotonic() - t0, bidder.cpu_seconds() - cpu0
        # The only child reaped meanwhile is the exchange: what it took of the same cores.
        children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        meta["exchange_cpu_s"] = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
        status, body = bidder.get("/admin/pacing")
        meta["pacing_status"] = status
        if status == 200:
            (out / "pacing.json").write_text(body)
        status, body = bidder.get("/metrics")
        meta["metrics_status"] = status
        (out / "metrics.txt").write_text(body if status == 200 else "")
    finally:
        bidder.stop()
    meta["bidder_exit"] = bidder.proc.returncode
    (out / "run.json").write_text(json.dumps(meta, indent=2) + "\n")
    return out


# ---------------------------------------------------------------------------------------
# Reading a ledger: one pass, keeping only what the judgement needs.


@dataclass
class Ledger:
    run: dict
    requests: int = 0
    requests_by_hour: Counter = field(default_factory=Counter)  # (day, UTC hour) -> requests
    users: dict = field(default_factory=dict)  # seq -> user.id (with users=True)
    latencies_ms: list = field(default_factory=list)  # the bidder's answers (with latencies=True)
    bids: Counter = field(default_factory=Counter)  # day -> the bidder's bids
    wins: Counter = field(default_factory=Counter)  # day -> its wins
    bills: list = field(default_factory=list)  # (ts_ms, cid, micro-USD), billing notices answered 200, once per bid
    impressions: list = field(default_factory=list)  # (ts_ms, cid, seq, price CPM, pctr, pcvr)

    @property
    def start_ts(self) -> int:
        return int(self.run["start_ts"])


def read_ledger(path: Path, users: bool = False, latencies: bool = False) -> Ledger:
    """Streams ``ledger.jsonl`` (hundreds of MB for a long run). Loss and win notices,
    clicks and conversions are skipped unparsed."""
    led, billed = None, set()
    with open(path, "rb") as f:
        for raw in f:
            head = raw[:40]
            if led is None:
                rec = json.loads(raw)
                if rec.get("type") != "run":
                    raise ValueError(f"{path} does not start with its run line")
                led = Ledger(run=rec)
                start_ms = led.start_ts * 1000
            elif head.startswith(b'{"type":"auction"'):
                rec = json.loads(raw)
                day = day_of(rec["ts_ms"], start_ms)
                for e in rec["entries"]:
                    if e["bidder"] == BIDDER and "bid_id" in e:
                        led.bids[day] += 1
                        led.wins[day] += e["outcome"] == "bid" and "loss" not in e
            elif head.startswith(b'{"type":"request"'):
                rec = json.loads(raw)
                led.requests += 1
                led.requests_by_hour[(day_of(rec["ts_ms"], start_ms), utc_hour(rec["ts_ms"]))] += 1
                if users:
                    led.users[rec["seq"]] = rec.get("user", "")
                if latencies:
                    led.latencies_ms += [x["latency_ms"] for x in rec["answers"] if x["bidder"] == BIDDER]
            elif head.startswith(b'{"type":"notice","kind":"bill"'):
                rec = json.loads(raw)
                if rec["bidder"] == BIDDER and rec.get("status") == 200 and rec["bid_id"] not in billed:
                    billed.add(rec["bid_id"])
                    led.bills.append((rec["ts_ms"], rec.get("cid") or "(unknown)", micro_usd(rec.get("price") or 0.0)))
            elif head.startswith(b'{"type":"impression"'):
                rec = json.loads(raw)
                if rec["bidder"] == BIDDER:
                    led.impressions.append((rec["ts_ms"], rec.get("cid") or "(unknown)", rec["seq"], rec["price"],
                                            rec["pctr"], rec["pcvr"]))
    if led is None:
        raise ValueError(f"{path} is empty")
    return led


# ---------------------------------------------------------------------------------------
# Judging: plain data in, plain data out.


def micro_usd(cpm: float) -> int:
    """What one impression at ``cpm`` costs, in micro-USD, rounded as the bidder rounds it
    (Rust's ``f64::round``: halves away from zero, not to even)."""
    x = cpm / 1000.0 * 1e6
    return int(math.floor(x + 0.5)) if x >= 0 else -int(math.floor(-x + 0.5))


def day_of(ts_ms: int, start_ms: int) -> int:
    """The run's day (0 the first) of a simulated time, counted from the run's start."""
    return (ts_ms - start_ms) // DAY_MS


def utc_hour(ts_ms: int) -> int:
    return (ts_ms // HOUR_MS) % 24


def spend_by_hour(bills: list, start_ts: int, day: int) -> dict[str, list[int]]:
    """Per campaign, micro-USD per UTC hour of the run's ``day``."""
    out: dict[str, list[int]] = defaultdict(lambda: [0] * 24)
    for ts, cid, micros in bills:
        if day_of(ts, start_ts * 1000) == day:
            out[cid][utc_hour(ts)] += micros
    return dict(out)


def requests_share_by_hour(requests_by_hour: Counter, day: int) -> list[float]:
    """The share of ``day``'s requests in each UTC hour (the exchange's traffic curve)."""
    counts = [requests_by_hour.get((day, h), 0) for h in range(24)]
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def calibrated_budgets(campaigns: list[dict], spend_usd: dict[str, float],
                       min_spend: float = MIN_JUDGED_SPEND) -> tuple[list[dict], list[str]]:
    """The campaigns with the budgets of part 1, and the ids of those judged: a campaign
    that spent S >= ``min_spend`` (and more than 0) on the calibration day gets
    max(0.01, round(0.4 S, 2)); one that spent less keeps 1000 x its budget (never
    binding) and is not judged."""
    out, judged = [], []
    for c in campaigns:
        c = dict(c)
        s = spend_usd.get(c["id"], 0.0)
        if s >= min_spend and s > 0:
            c["daily_budget"] = max(0.01, round(BUDGET_SHARE * s, 2))
            judged.append(c["id"])
        else:
            c["daily_budget"] = c["daily_budget"] * UNBOUNDED
        out.append(c)
    return out, judged


def budget_category(budget_usd: float, spend_micros: int, state: dict | None) -> str:
    """``over`` (spent more than the budget: must be none), ``within 1 %`` (|spend /
    budget - 1| <= 0.01), ``under, no traffic`` (under 99 % and the bidder never needed to
    throttle it: its final pacing rate 1, or nothing throttled; ``state`` is its entry of
    ``/admin/pacing``), else ``under`` (a miss; also when the bidder's state is unknown)."""
    budget_micros = round(budget_usd * 1e6)
    if spend_micros > budget_micros:
        return "over"
    if abs(spend_micros - budget_micros) <= WITHIN_BUDGET * budget_micros + EPS:
        return "within 1 %"
    if state is not None and (state.get("pacing_rate") == 1 or state.get("throttled") == 0):
        return "under, no traffic"
    return "under"


CATEGORIES = ("over", "within 1 %", "under, no traffic", "under")


def hourly_errors(spend: list[float], plan: list[float]) -> list[tuple[int, float]]:
    """(UTC hour, |spend - plan| / plan) for every hour with a plan above 0."""
    return [(h, abs(s - p) / p) for h, (s, p) in enumerate(zip(spend, plan)) if p > 0]


def error_summary(errors: list[float]) -> dict:
    """Share within 10 %, median and 90th percentile (linear interpolation) of errors."""
    if not errors:
        return {"hours": 0, "within_10pct": None, "median": None, "p90": None}
    return {"hours": len(errors), "within_10pct": sum(e <= HOUR_TOLERANCE + EPS for e in errors) / len(errors),
            "median": percentile(errors, 50), "p90": percentile(errors, 90)}


def poisson_within(n: float, tol: float = HOUR_TOLERANCE) -> float:
    """P(|X - n| <= tol n) for X ~ Poisson(n): how often a perfect pacer, whose wins
    arrive at exactly the planned rate but at random, lands an hour that buys ``n``
    impressions within ``tol`` of its plan. Optimistic for it: prices vary too."""
    if n <= 0:
        return 0.0
    lo, hi = math.ceil(n * (1 - tol) - EPS), math.floor(n * (1 + tol) + EPS)
    return sum(math.exp(k * math.log(n) - n - math.lgamma(k + 1)) for k in range(max(lo, 0), hi + 1))


def perfect_pacer_worst_hour(expected: list[float], draws: int = 2000, seed: int = 7) -> dict:
    """The worst of the hours' errors of a perfect pacer (see :func:`poisson_within`)
    whose hours buy ``expected`` impressions: its median over ``draws`` simulated days,
    and the share of days with every hour within 10 %."""
    n = np.asarray([x for x in expected if x > 0], dtype=np.float64)
    if not len(n):
        return {"median_worst": None, "days_every_hour_within_10pct": None}
    x = np.random.default_rng(seed).poisson(n, size=(draws, len(n)))
    worst_of_day = (np.abs(x - n) / n).max(axis=1)
    return {"median_worst": float(np.median(worst_of_day)),
            "days_every_hour_within_10pct": float((worst_of_day <= HOUR_TOLERANCE + EPS).mean())}


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def expected_impressions(plan_usd: float, ecpm: float | None) -> float | None:
    """Impressions an hour's plan buys at the campaign's eCPM (USD CPM)."""
    return plan_usd / (ecpm / 1000.0) if ecpm else None


def empty_at(bills: list[tuple[int, int]], budget_usd: float, day_start_ms: int) -> float | None:
    """Hours into the day at which a campaign's spend reached 99 % of its budget; ``bills``
    (ts_ms, micro-USD) of that day; None when it never did."""
    need, total = EMPTY_SHARE * budget_usd * 1e6, 0
    for ts, micros in sorted(bills):
        total += micros
        if total >= need:
            return (ts - day_start_ms) / HOUR_MS
    return None


def judge_pacing(budgets: dict[str, float], judged: list[str], spend: dict[str, list[int]],
                 states: dict[str, dict] | None, plans: dict[str, list[float]], ecpm: dict[str, float | None]) -> dict:
    """Day 2 of the paced run. ``spend`` micro-USD per campaign and UTC hour; ``states``
    the bidder's ``/admin/pacing`` by campaign (None: not available); ``plans`` USD per
    hour by campaign; ``ecpm`` the campaign's eCPM that day. Per campaign its category and
    hourly errors, then the summaries: over all campaign-hours, over those with at least
    100 expected impressions, and of the sums over the judged campaigns."""
    rows, errs, errs_big = [], [], []
    # A perfect pacer's chance of each campaign-hour within 10 % (all; at least 100).
    floor, floor_big = [], []
    expected_by_hour = [0.0] * 24
    total = {"all": ([0.0] * 24, [0.0] * 24), "binding": ([0.0] * 24, [0.0] * 24)}
    for cid in judged:
        s = [m / 1e6 for m in spend.get(cid, [0] * 24)]
        plan = plans.get(cid, [0.0] * 24)
        state = states.get(cid) if states is not None else None
        row = {"campaign": cid, "budget": budgets[cid], "spend": sum(s), "spend_over_budget": sum(s) / budgets[cid],
               "category": budget_category(budgets[cid], sum(spend.get(cid, [0])), state),
               "pacing_rate": state.get("pacing_rate") if state else None,
               "throttled": state.get("throttled") if state else None, "ecpm": ecpm.get(cid)}
        for h, e in hourly_errors(s, plan):
            errs.append(e)
            x = expected_impressions(plan[h], ecpm.get(cid))
            floor.append(poisson_within(x) if x is not None else None)
            if x is not None:
                expected_by_hour[h] += x
            if x is not None and x >= MIN_EXPECTED_IMPS:
                errs_big.append(e)
                floor_big.append(poisson_within(x))
        for key in ("all", "binding") if row["category"] != "under, no traffic" else ("all",):
            for h in range(24):
                total[key][0][h] += s[h]
                total[key][1][h] += plan[h]
        rows.append(row)
    agg = hourly_errors(*total["all"])
    counts = Counter(r["category"] for r in rows)
    return {
        "campaigns": rows,
        "categories": {c: counts.get(c, 0) for c in CATEGORIES},
        "hourly": error_summary(errs) | {"perfect_pacer_within_10pct": mean_of(floor)},
        "hourly_at_least_100_imps": error_summary(errs_big) | {"perfect_pacer_within_10pct": mean_of(floor_big)},
        "perfect_pacer_total": perfect_pacer_worst_hour(expected_by_hour),
        "total_spend_by_hour": total["all"][0],
        "total_plan_by_hour": total["all"][1],
        "aggregate_errors": [e for _, e in agg],
        "aggregate_within_10pct_every_hour": bool(agg) and all(e <= HOUR_TOLERANCE + EPS for _, e in agg),
        # The same sums without the campaigns short of traffic (their plan was out of reach).
        "aggregate_errors_binding": [e for _, e in hourly_errors(*total["binding"])],
    }


def over_cap(impressions: list[tuple[str, str, int]], cap: int, window_s: int) -> dict:
    """The bidder's rule judged on what the exchange showed: an impression (user, campaign,
    ts_ms) is over the cap when its (user, campaign) has more than ``cap`` impressions in
    (ts - window, ts], itself included (ties at one ts count in the order given). A pair is
    *at the cap* when some impression of it is the ``cap``-th in its window. Impressions
    without a user are not capped by the bidder: counted apart."""
    by_pair: dict[tuple[str, str], list[int]] = defaultdict(list)
    no_user = 0
    for user, cid, ts in impressions:
        if user:
            by_pair[(user, cid)].append(ts)
        else:
            no_user += 1
    window_ms, over, at_cap, over_pairs = window_s * 1000, 0, 0, 0
    for times in by_pair.values():
        times.sort()
        lo, pair_over, pair_max = 0, 0, 0
        for i, ts in enumerate(times):
            while times[lo] <= ts - window_ms:
                lo += 1
            n = i - lo + 1
            pair_max = max(pair_max, n)
            pair_over += n > cap
        over += pair_over
        at_cap += pair_max >= cap
        over_pairs += pair_over > 0
    return {"impressions": len(impressions), "without_user": no_user, "over_cap": over, "pairs": len(by_pair),
            "pairs_at_cap": at_cap, "pairs_over_cap": over_pairs}


def goals_of(campaigns: list[dict]) -> dict[str, tuple[float, float]]:
    """(goal CPC, goal CPA) per campaign, 0 where it has none."""
    return {c["id"]: (float(c.get("goal_cpc") or 0.0), float(c.get("goal_cpa") or 0.0)) for c in campaigns}


def value_and_spend(impressions: list[tuple[str, float, float, float]], goals: dict[str, tuple[float, float]]) -> dict:
    """From impressions (campaign, price USD CPM, true pCTR, pCVR): spend (price / 1000,
    to the micro-dollar), value (goal CPA x pCTR x pCVR for CPA campaigns, else goal CPC x
    pCTR), surplus = value - spend, and surplus per USD spent."""
    spend_micros, value = 0, 0.0
    for cid, price, pctr, pcvr in impressions:
        cpc, cpa = goals.get(cid, (0.0, 0.0))
        spend_micros += micro_usd(price)
        value += cpa * pctr * pcvr if cpa > 0 else cpc * pctr
    spend = spend_micros / 1e6
    return {"impressions": len(impressions), "spend": spend, "value": value, "surplus": value - spend,
            "surplus_per_usd": (value - spend) / spend if spend else None}


def quantile_from_buckets(buckets: list[tuple[float, float]], q: float) -> float | None:
    """A quantile from a Prometheus histogram's cumulative buckets (upper bound ``le``,
    count), as ``histogram_quantile`` computes it: linear within the bucket the rank falls
    in, from the bucket below's bound (0 for the first); a rank in the +Inf bucket gives the
    highest finite bound."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] == 0:
        return None
    rank = q * buckets[-1][1]
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 0.0)
        prev_le, prev_n = le, n
    return prev_le


def latency_p99_s(metrics_text: str) -> tuple[float | None, str]:
    """The bidder's in-process p99 of a whole request, seconds, and where it came from: the
    histogram's buckets when ``/metrics`` has them, else the summary's 0.99 quantile."""
    key, value = LATENCY_LABEL
    buckets, summary = [], None
    for line in metrics_text.splitlines():
        m = re.match(r"^(\w+)\{([^}]*)\} (\S+)$", line)
        if not m or f'{key}="{value}"' not in m.group(2):
            continue
        name, labels, v = m.groups()
        if name == LATENCY_FAMILY + "_bucket":
            le = re.search(r'le="([^"]+)"', labels).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(v)))
        elif name == LATENCY_FAMILY and 'quantile="0.99"' in labels:
            summary = float(v)
    if buckets:
        return quantile_from_buckets(buckets, 0.99), f"{LATENCY_FAMILY}_bucket{{{key}=\"{value}\"}}"
    return summary, f"{LATENCY_FAMILY}{{{key}=\"{value}\",quantile=\"0.99\"}}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b not in (None, 0) else None


def target(value: float | None, op: str, threshold: float) -> dict:
    met = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return {"value": value, "target": f"{op} {threshold:g}", "met": met}


# ---------------------------------------------------------------------------------------
# The parts: play, read, judge.


def load_catalog(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_catalog(catalog: dict, campaigns: list[dict], path: Path) -> Path:
    path.write_text(json.dumps({**catalog, "campaigns": campaigns}, indent=1) + "\n")
    return path


def with_budgets_x(campaigns: list[dict], k: float) -> list[dict]:
    return [{**c, "daily_budget": c["daily_budget"] * k} for c in campaigns]


def with_caps(campaigns: list[dict]) -> list[dict]:
    return [{**c, "frequency_cap": dict(CAP)} for c in campaigns]


def run_or_reuse(a, name: str, catalog: Path, flags: list[str], days: int, xflags: list[str] = ()) -> Path:
    if a.rejudge:
        out = Path(a.out) / name
        if not (out / "exchange" / "ledger.jsonl").is_file():
            raise RuntimeError(f"--rejudge: {out} has no ledger")
        return out
    return play(a, name, catalog, flags, days, list(xflags))


def run_meta(run_dir: Path) -> dict:
    p = run_dir / "run.json"
    return json.loads(p.read_text()) if p.is_file() else {}


def calibrate(a) -> tuple[Path, list[str], dict[str, float]]:
    """Part 1, step 1-2: the budgets catalog (``OUT/catalog-budgets.json``), the judged
    campaigns, and the calibration day's spend per campaign."""
    base = load_catalog(a.catalog)
    out = Path(a.out)
    unbounded = write_catalog(base, with_budgets_x(base["campaigns"], UNBOUNDED), out / "catalog-unbounded.json")
    run_dir = run_or_reuse(a, "calibrate", unbounded, ["--pacing", "false"], 1)
    led = read_ledger(run_dir / "exchange" / "ledger.jsonl")
    spend = {cid: sum(h) / 1e6 for cid, h in spend_by_hour(led.bills, led.start_ts, 0).items()}
    campaigns, judged = calibrated_budgets(base["campaigns"], spend)
    path = write_catalog(base, campaigns, out / "catalog-budgets.json")
    (out / "calibration.json").write_text(json.dumps({**calibration_key(a), "judged": judged,
                                                      "calibration_spend": spend}) + "\n")
    return path, judged, spend


def every_budget_binding(a) -> Path:
    """``OUT/catalog-budgets-all.json``: every campaign that bought anything on the
    calibration day gets 0.4 x that day's spend, so every strategy of part 3 spends about
    the same money and is judged by what it buys with it."""
    budgets_catalog(a)
    spend = json.loads((Path(a.out) / "calibration.json").read_text())["calibration_spend"]
    base = load_catalog(a.catalog)
    campaigns, _ = calibrated_budgets(base["campaigns"], spend, min_spend=0.0)
    return write_catalog(base, campaigns, Path(a.out) / "catalog-budgets-all.json")


def calibration_key(a) -> dict:
    """What the budgets depend on: a calibration of other traffic is made again."""
    return {"seed": a.seed, "requests_per_day": a.requests_per_day, "catalog": str(a.catalog)}


def budgets_catalog(a) -> Path:
    """``OUT/catalog-budgets.json``, calibrating first when it is not there or was made
    for other traffic."""
    path, meta = Path(a.out) / "catalog-budgets.json", Path(a.out) / "calibration.json"
    if path.is_file() and meta.is_file():
        made = json.loads(meta.read_text())
        if all(made.get(k) == v for k, v in calibration_key(a).items()):
            return path
    return calibrate(a)[0]


def pacing_states(run_dir: Path) -> dict[str, dict] | None:
    p = run_dir / "pacing.json"
    if not p.is_file():
        return None
    return {c["campaign"]: c for c in json.loads(p.read_text())["campaigns"]}


def ecpm_by_campaign(impressions: list, start_ts: int, day: int) -> dict[str, float | None]:
    spend, count = Counter(), Counter()
    for ts, cid, _seq, price, _ctr, _cvr in impressions:
        if day_of(ts, start_ts * 1000) == day:
            spend[cid] += price
            count[cid] += 1
    return {cid: spend[cid] / count[cid] for cid in count}


def part_pacing(a) -> dict:
    budgets_path, judged, calib_spend = calibrate(a)
    campaigns = load_catalog(budgets_path)["campaigns"]
    budgets = {c["id"]: c["daily_budget"] for c in campaigns}
    runs = {name: run_or_reuse(a, name, budgets_path, ["--pacing", flag], 2)
            for name, flag in (("unpaced", "false"), ("paced", "true"))}
    day = 1
    led = {name: read_ledger(d / "exchange" / "ledger.jsonl") for name, d in runs.items()}
    spend = {name: spend_by_hour(x.bills, x.start_ts, day) for name, x in led.items()}
    states = pacing_states(runs["paced"])
    paced = led["paced"]
    if states is not None:
        plans, plan_source = {c: s["plan_by_hour_usd"] for c, s in states.items()}, "the bidder's /admin/pacing"
    else:  # a binary without /admin/pacing: the exchange's traffic curve of that day
        share = requests_share_by_hour(paced.requests_by_hour, day)
        plans = {c: [budgets[c] * s for s in share] for c in judged}
        plan_source = "budget x the exchange's share of the day's requests per hour (no /admin/pacing)"
    result = judge_pacing(budgets, judged, spend["paced"], states, plans, ecpm_by_campaign(paced.impressions,
                                                                                          paced.start_ts, day))
    # The unpaced run: when each judged campaign ran dry, against the traffic's peak hour.
    day_start = (led["unpaced"].start_ts * 1000) + day * DAY_MS
    bills = defaultdict(list)
    for ts, cid, micros in led["unpaced"].bills:
        if day_of(ts, led["unpaced"].start_ts * 1000) == day:
            bills[cid].append((ts, micros))
    share = requests_share_by_hour(led["unpaced"].requests_by_hour, day)
    peak = max(range(24), key=lambda h: share[h])
    unpaced_spend = spend["unpaced"]
    for row in result["campaigns"]:
        cid = row["campaign"]
        row["unpaced_empty_at_h"] = empty_at(bills.get(cid, []), budgets[cid], day_start)
        row["unpaced_spend"] = sum(unpaced_spend.get(cid, [0])) / 1e6
        row["calibration_spend"] = calib_spend.get(cid, 0.0)
    emptied = [r["unpaced_empty_at_h"] for r in result["campaigns"] if r["unpaced_empty_at_h"] is not None]
    unpaced_total = [sum(unpaced_spend.get(c, [0] * 24)[h] for c in judged) / 1e6 for h in range(24)]
    plan_check = None
    if states is not None:  # the bidder's own book of the day against the ledger's
        plan_check = {"bidder_spend_by_hour_total": sum(sum(s.get("spend_by_hour_usd", [])) for c, s in states.items()
                                                         if c in set(judged)),
                      "ledger_spend_total": sum(result["total_spend_by_hour"])}
    result.update({
        "judged_day": day + 1,
        "plan_source": plan_source,
        "campaigns_total": len(campaigns),
        "campaigns_judged": len(judged),
        "campaigns_not_judged": len(campaigns) - len(judged),
        "calibration_spend_total": sum(calib_spend.values()),
        "budget_total": sum(budgets[c] for c in judged),
        "unpaced": {"emptied": len(emptied), "never_emptied": len(judged) - len(emptied),
                    "median_empty_at_h": statistics.median(emptied) if emptied else None,
                    "traffic_peak_hour": peak, "emptied_before_peak": sum(e < peak for e in emptied),
                    "total_spend_by_hour": unpaced_total},
        "plan_check": plan_check,
        "targets": {"no campaign over budget": target(result["categories"]["over"], "<=", 0),
                    "total spend within 10 % of the total plan every hour": {
                        "value": worst(result["aggregate_errors"]),
                        "target": "<= 0.1 every hour", "met": result["aggregate_within_10pct_every_hour"]}},
        "runs": {name: run_meta(d) for name, d in runs.items()} | {"calibrate": run_meta(Path(a.out) / "calibrate")},
    })
    plot_pacing(result, budgets, spend, plans, Path(a.out))
    return result


def impressions_with_users(led: Ledger) -> list[tuple[str, str, int]]:
    return [(led.users.get(seq, ""), cid, ts) for ts, cid, seq, *_ in led.impressions]


def part_caps(a) -> dict:
    base = load_catalog(a.catalog)
    goals = goals_of(base["campaigns"])
    capped = with_caps(with_budgets_x(base["campaigns"], UNBOUNDED))
    path = write_catalog(base, capped, Path(a.out) / "catalog-caps.json")
    out = {"cap": CAP, "users": CAPS_USERS, "runs": {}}
    for name, on in (("caps-off", "false"), ("caps-on", "true")):
        run_dir = run_or_reuse(a, name, path, ["--pacing", "false", "--frequency-caps", on], 1,
                               ["--users", str(CAPS_USERS)])
        led = read_ledger(run_dir / "exchange" / "ledger.jsonl", users=True)
        imps = [(cid, price, pctr, pcvr) for _ts, cid, _seq, price, pctr, pcvr in led.impressions]
        metrics = (run_dir / "metrics.txt").read_text() if (run_dir / "metrics.txt").is_file() else ""
        out["runs"][name] = {
            "caps": over_cap(impressions_with_users(led), CAP["impressions"], CAP["window_s"]),
            "bids": sum(led.bids.values()), "wins": sum(led.wins.values()),
            **value_and_spend(imps, goals),
            "requests_with_user": sum(1 for u in led.users.values() if u),
            "freqcap_metrics": [x for x in metrics.splitlines()
                                if x.startswith(("ctrbid_freqcap", "ctrbid_late_outcomes_total"))],
            "run": run_meta(run_dir),
        }
    on, off = out["runs"]["caps-on"], out["runs"]["caps-off"]
    out["prevented"] = off["caps"]["over_cap"]
    out["targets"] = {"caps-on impressions over the cap": target(on["caps"]["over_cap"], "<=", 0)}
    if on["caps"]["without_user"] == on["caps"]["impressions"] and on["caps"]["impressions"]:
        out["targets"]["caps-on impressions over the cap"]["met"] = None  # no user in the ledger: nothing judged
    return out


def part_shading(a) -> dict:
    path = every_budget_binding(a)
    campaigns = load_catalog(path)["campaigns"]
    goals = goals_of(campaigns)
    day, out = 1, {"judged_day": 2, "strategies": {}}
    for name, flags in STRATEGIES.items():
        run_dir = run_or_reuse(a, name, path, ["--pacing", "true", *flags], 2, ["--first-price-share", "1"])
        led = read_ledger(run_dir / "exchange" / "ledger.jsonl")
        start_ms = led.start_ts * 1000
        imps = [(cid, p, c, v) for ts, cid, _s, p, c, v in led.impressions if day_of(ts, start_ms) == day]
        bids, wins = led.bids.get(day, 0), led.wins.get(day, 0)
        out["strategies"][name] = {"bids": bids, "wins": wins, "win_rate": ratio(wins, bids),
                                   **value_and_spend(imps, goals), "run": run_meta(run_dir)}
    s = out["strategies"]
    out["targets"] = {
        "learnt / fixed surplus": target(ratio(s["learnt"]["surplus"], s["fixed"]["surplus"]), ">=",
                                         LEARNT_OVER_FIXED_SURPLUS),
        "learnt / oracle surplus": target(ratio(s["learnt"]["surplus"], s["oracle"]["surplus"]), ">=",
                                          LEARNT_OVER_ORACLE_SURPLUS),
        "learnt / fixed value bought": target(ratio(s["learnt"]["value"], s["fixed"]["value"]), ">=",
                                              LEARNT_OVER_FIXED_VALUE),
    }
    plot_shading(out, Path(a.out))
    return out


def part_ab(a) -> dict:
    """Budgets that never bind, so that both arms have the same auctions to bid in: with
    binding budgets the unpaced arm stops bidding when they run dry (before midday, part
    1) and is cheaper for doing less, not for the features' cost. The caps bind (the
    capped arm sends a few bids fewer)."""
    base = load_catalog(a.catalog)
    path = write_catalog(base, with_caps(with_budgets_x(base["campaigns"], UNBOUNDED)), Path(a.out) / "catalog-caps.json")
    # Its own day (and rate, when given): `load` in each run says how many of the box's
    # cores the bidder and the exchange kept busy together.
    ab = argparse.Namespace(**{**vars(a), "rate": a.ab_rate or a.rate, "requests_per_day": a.ab_requests})
    runs = []
    for i, arm in enumerate(ab_order(a.ab_pairs)):
        name = f"ab-{i + 1}-{arm}"
        run_dir = run_or_reuse(ab, name, path, AB_ARMS[arm], 1, ["--first-price-share", "0.5", "--users",
                                                                   str(CAPS_USERS)])
        led = read_ledger(run_dir / "exchange" / "ledger.jsonl", latencies=True)
        meta = run_meta(run_dir)
        metrics = (run_dir / "metrics.txt").read_text() if (run_dir / "metrics.txt").is_file() else ""
        p99_s, source = latency_p99_s(metrics)
        batched = scored_by_path(metrics)
        inline_p99 = re.search(r'ctrbid_scored_request_seconds\{path="inline",quantile="0\.99"\} (\S+)', metrics)
        runs.append({"run": name, "arm": arm, "requests": led.requests, "bids": sum(led.bids.values()),
                     "wins": sum(led.wins.values()), "cpu_s": meta.get("cpu_s"),
                     "cpu_s_per_1000": ratio(1000 * meta["cpu_s"], led.requests) if meta.get("cpu_s") else None,
                     "in_process_p99_ms": p99_s * 1e3 if p99_s is not None else None, "in_process_source": source,
                     "exchange_p99_ms": percentile(led.latencies_ms, 99) if led.latencies_ms else None,
                     "wall_s": meta.get("wall_s"), "load": box_load(meta),
                     "batched_share": ratio(batched.get("batched"), sum(batched.values())),
                     "inline_p99_ms": float(inline_p99.group(1)) * 1e3 if inline_p99 else None})
    keys = ("cpu_s_per_1000", "in_process_p99_ms", "exchange_p99_ms", "inline_p99_ms", "batched_share")
    median = {arm: {k: median_of([r[k] for r in runs if r["arm"] == arm]) for k in keys} for arm in AB_ARMS}
    on_over_off = {k: ratio(median["all-on"][k], median["all-off"][k]) for k in keys}
    return {"runs": runs, "median": median, "on_over_off": on_over_off,
            "targets": {"CPU per request, on / off": target(on_over_off["cpu_s_per_1000"], "<=", AB_MAX_RATIO),
                        "in-process p99, on / off": target(on_over_off["in_process_p99_ms"], "<=", AB_MAX_RATIO),
                        # Not a target of its own: the p99 of the requests scored inline on
                        # their worker, which leaves out how many auto scoring batched.
                        "in-process p99 of the inline-scored requests alone, on / off (a reading, not the target)":
                            target(on_over_off["inline_p99_ms"], "<=", AB_MAX_RATIO)}}


def scored_by_path(metrics_text: str) -> dict[str, float]:
    """Requests scored inline on their worker and batched on an inference thread
    (``ctrbid_scored_request_seconds_count{path=...}``): auto inline scoring sends a
    request to the batcher while the workers are busy, and those are the slow ones."""
    out = {}
    for line in metrics_text.splitlines():
        m = re.match(r'ctrbid_scored_request_seconds_count\{path="(\w+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def box_load(meta: dict) -> float | None:
    """The bidder's and the exchange's CPU seconds per wall second: how many of the box's
    cores the run kept busy."""
    if meta.get("cpu_s") is None or meta.get("exchange_cpu_s") is None or not meta.get("wall_s"):
        return None
    return (meta["cpu_s"] + meta["exchange_cpu_s"]) / meta["wall_s"]


def ab_order(pairs: int) -> list[str]:
    return ["all-off", "all-on"] * pairs


def median_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def mean_of(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


# ---------------------------------------------------------------------------------------
# Plots and the report.


def plot_pacing(result: dict, budgets: dict, spend: dict, plans: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = list(range(24))
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(hours, result["total_plan_by_hour"], color="black", linestyle="--", label="plan")
    ax.plot(hours, result["total_spend_by_hour"], marker="o", markersize=3, color="#4878a8", label="paced")
    ax.plot(hours, result["unpaced"]["total_spend_by_hour"], marker="o", markersize=3, color="#c8553d",
            label="unpaced")
    ax.set_xlabel(f"UTC hour of day {result['judged_day']}")
    ax.set_ylabel("spend per hour (USD)")
    ax.set_title(f"Spend of the {result['campaigns_judged']} judged campaigns per hour; plan: "
                 f"{'the bidder' if result['plan_source'].startswith('the bidder') else 'traffic share'}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "pacing_total.png", dpi=110)
    plt.close(fig)

    top = sorted(result["campaigns"], key=lambda r: -r["budget"])[:6]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6), sharex=True)
    for ax, row in zip(axes.flat, top):
        cid = row["campaign"]
        ax.plot(hours, plans.get(cid, [0] * 24), color="black", linestyle="--", label="plan")
        ax.plot(hours, [m / 1e6 for m in spend["paced"].get(cid, [0] * 24)], color="#4878a8", label="paced")
        ax.plot(hours, [m / 1e6 for m in spend["unpaced"].get(cid, [0] * 24)], color="#c8553d", label="unpaced")
        ax.set_title(f"{cid}: budget {budgets[cid]:,.2f} USD", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("UTC hour")
    axes[0][0].set_ylabel("USD per hour")
    axes[1][0].set_ylabel("USD per hour")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pacing_campaigns.png", dpi=110)
    plt.close(fig)


def plot_shading(result: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["strategies"])
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    ax.bar(x - 0.2, [result["strategies"][n]["value"] for n in names], width=0.4, color="#4878a8", label="value")
    ax.bar(x + 0.2, [result["strategies"][n]["surplus"] for n in names], width=0.4, color="#6a9f58",
           label="surplus")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.margins(y=0.25)
    ax.set_xticks(x, names)
    ax.set_ylabel(f"USD, day {result['judged_day']}")
    ax.set_title("First price: value bought and surplus by strategy")
    ax.legend(ncol=2, loc="upper right")
    fig.tight_layout()
    fig.savefig(out / "shading.png", dpi=110)
    plt.close(fig)


def percent(v) -> str:
    return f"{100 * v:.2f} %" if v is not None else "–"


def fmt(v, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def worst(errors: list[float]) -> float | None:
    return max(errors) if errors else None


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f} %"


def met(t: dict) -> str:
    return "**met**" if t["met"] else ("**not met**" if t["met"] is False else "not judged")


def targets_md(targets: dict, digits: int = 3) -> list[str]:
    return [f"- {name}: {fmt(t['value'], digits)} (target {t['target']}): {met(t)}" for name, t in targets.items()]


def pacing_md(r: dict) -> list[str]:
    u, h, hb = r["unpaced"], r["hourly"], r["hourly_at_least_100_imps"]
    lines = [
        "## 1. Budget pacing (second price)", "",
        f"Budgets: 0.4 x each campaign's spend on the calibration day (unpaced, budgets x {UNBOUNDED:g}), for the "
        f"campaigns that spent at least {MIN_JUDGED_SPEND:g} USD that day: {r['campaigns_judged']} campaigns judged, "
        f"total budget {r['budget_total']:,.2f} USD (calibration spend of all {r['calibration_spend_total']:,.2f} "
        f"USD); the other {r['campaigns_not_judged']} (too few impressions a day to pace or judge by the hour) kept "
        f"budgets x {UNBOUNDED:g} (not judged). Runs `unpaced` and `paced`, 2 days each: **day 1 is the learning day** (the "
        f"bidder's hourly traffic profile is flat before it), **day {r['judged_day']} is judged**, from the ledger "
        f"only. Plan per hour: {r['plan_source']}.", "",
        *targets_md(r["targets"]), "",
        "| paced, day 2 | campaigns |", "|---|---|",
        *[f"| {c} | {n} |" for c, n in r["categories"].items()], "",
        "`within 1 %`: |spend / budget - 1| <= 0.01; `under, no traffic`: under 99 % and the bidder never needed to "
        "throttle it (final pacing rate 1, or nothing throttled); `under`: a miss.", "",
        f"Hourly, day 2: each campaign-hour with a plan, error = |spend - plan| / plan; \"at least "
        f"{MIN_EXPECTED_IMPS:g} impressions\": the campaign-hours whose plan buys that many at the campaign's "
        "day-2 eCPM.", "",
        "| campaign-hours | hours | within 10 % | a perfect pacer's within 10 % | median error | p90 error |",
        "|---|---|---|---|---|---|",
        *[f"| {label} | {x['hours']:,} | {pct(x['within_10pct'])} | {pct(x.get('perfect_pacer_within_10pct'))} | "
          f"{pct(x['median'])} | {pct(x['p90'])} |"
          for label, x in (("all", h), (f"at least {MIN_EXPECTED_IMPS:g} impressions", hb))], "",
        "A perfect pacer: wins at exactly the planned rate, at random (Poisson) times, at the campaign's eCPM; "
        "what the dice alone allow at these counts (optimistic: prices vary too).", "",
        f"The sum over the judged campaigns: worst hour {pct(worst(r['aggregate_errors']))} off the plan; without "
        "the campaigns short of traffic (`under, no traffic`), worst hour "
        f"{pct(worst(r['aggregate_errors_binding']))}. A perfect pacer's worst hour at these counts: "
        f"{pct((r.get('perfect_pacer_total') or {}).get('median_worst'))} (median of 2,000 simulated days); every "
        f"hour within 10 % on {pct((r.get('perfect_pacer_total') or {}).get('days_every_hour_within_10pct'))} of "
        "its days.", "",
        f"Unpaced: {u['emptied']} of {r['campaigns_judged']} campaigns spent 99 % of their budget on day 2, at hour "
        f"{fmt(u['median_empty_at_h'], 1)} (median, UTC); {u['emptied_before_peak']} before the traffic's peak hour "
        f"({u['traffic_peak_hour']}:00); {u['never_emptied']} never did.", "",
    ]
    if r.get("plan_check"):
        c = r["plan_check"]
        lines += [f"The bidder's own spend by hour of the judged campaigns ({c['bidder_spend_by_hour_total']:,.2f} "
                  f"USD) against the ledger's day 2 ({c['ledger_spend_total']:,.2f} USD): they agree when "
                  "/admin/pacing's day is the judged one.", ""]
    lines += ["| hour | plan | paced | unpaced | paced error |", "|---|---|---|---|---|"]
    for hr in range(24):
        p, s = r["total_plan_by_hour"][hr], r["total_spend_by_hour"][hr]
        lines.append(f"| {hr} | {p:,.2f} | {s:,.2f} | {u['total_spend_by_hour'][hr]:,.2f} | "
                     f"{pct(abs(s - p) / p) if p > 0 else '–'} |")
    rows = sorted(r["campaigns"], key=lambda x: -x["budget"])
    misses = [x for x in rows[15:] if x["category"] in ("over", "under")]
    shown = rows[:15] + sorted(misses, key=lambda x: x["category"] != "over")[:15]
    lines += ["", f"Campaigns: the 15 largest budgets, then the largest of the other {len(misses)} over or under "
              f"(every one over first; {len(shown)} of {len(rows)}, all in report.json):", "",
              "| campaign | budget | paced spend | spend / budget | category | final pacing rate | throttled | eCPM "
              "| unpaced empty at (h) |", "|---|---|---|---|---|---|---|---|---|"]
    for x in shown:
        lines.append(f"| {x['campaign']} | {x['budget']:,.2f} | {x['spend']:,.2f} | {x['spend_over_budget']:.3f} | "
                     f"{x['category']} | {fmt(x['pacing_rate'], 3)} | {fmt(x['throttled'])} | {fmt(x['ecpm'])} | "
                     f"{fmt(x['unpaced_empty_at_h'], 1)} |")
    lines += ["", "![total spend per hour](pacing_total.png)", "", "![six largest budgets](pacing_campaigns.png)", ""]
    return lines


def caps_md(r: dict) -> list[str]:
    lines = [
        "## 2. Frequency caps", "",
        f"Every campaign capped at {r['cap']['impressions']} impressions per {r['cap']['window_s']:,} s, budgets x "
        f"{UNBOUNDED:g}, unpaced; the exchange with `--users {r['users']}`; 1 day each. An impression is over the cap "
        f"when its (user, campaign) has more than {r['cap']['impressions']} impressions in (ts - window, ts], itself "
        "included; users from the `request` records joined on `seq`.", "",
        *targets_md(r["targets"], 0), "",
        "| | " + " | ".join(r["runs"]) + " |", "|---|" + "---|" * len(r["runs"]),
    ]
    rows = [("impressions", lambda x: x["caps"]["impressions"]),
            ("without a user", lambda x: x["caps"]["without_user"]),
            ("over the cap", lambda x: x["caps"]["over_cap"]), ("(user, campaign) pairs", lambda x: x["caps"]["pairs"]),
            ("pairs at the cap", lambda x: x["caps"]["pairs_at_cap"]),
            ("pairs over the cap", lambda x: x["caps"]["pairs_over_cap"]),
            ("bids", lambda x: x["bids"]), ("wins", lambda x: x["wins"]), ("spend (USD)", lambda x: x["spend"]),
            ("value (USD)", lambda x: x["value"]), ("surplus (USD)", lambda x: x["surplus"]),
            ("surplus per USD", lambda x: x["surplus_per_usd"])]
    lines += [f"| {label} | " + " | ".join(fmt(get(x), 3 if "per" in label else 2) for x in r["runs"].values()) + " |"
              for label, get in rows]
    lines += ["", f"The caps prevented {r['prevented']:,} impressions over the cap (caps-off's count).", "",
              "The bidder's `ctrbid_freqcap` metrics and its count of win and loss notices that came after their "
              "bid's hold lapsed (caps-on):", "", "```"]
    lines += r["runs"]["caps-on"]["freqcap_metrics"] or ["(none)"]
    lines += ["```", ""]
    return lines


def shading_md(r: dict) -> list[str]:
    lines = [
        "## 3. First-price shading", "",
        "Every campaign that bought anything on the calibration day given 0.4 x that day's spend (binding for all, "
        "so every strategy has the same money and is judged by what it buys with it), every auction first price, "
        f"paced, 2 days; day {r['judged_day']} judged. Value: the goal price x the true probabilities of the "
        "impressions bought; surplus: value - spend.", "",
        *targets_md(r["targets"]), "",
        "| strategy | bids | wins | win rate | spend | value | surplus | surplus per USD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in r["strategies"].items():
        lines.append(f"| {name} | {s['bids']:,} | {s['wins']:,} | {pct(s['win_rate'])} | {s['spend']:,.2f} | "
                     f"{s['value']:,.2f} | {s['surplus']:,.2f} | {fmt(s['surplus_per_usd'], 3)} |")
    lines += ["", "![value and surplus by strategy](shading.png)", ""]
    return lines


def ab_md(r: dict) -> list[str]:
    lines = [
        "## 4. What it costs: everything off against everything on", "",
        f"The same day of traffic (`--first-price-share 0.5 --users {CAPS_USERS}`, the catalog of part 2: budgets that "
        "never bind, so both arms bid in the same auctions, and every campaign capped), in the order "
        f"{', '.join(ab_order(len(r['runs']) // 2))}; the arms compared by their medians. `all-off`: `{' '.join(AB_ARMS['all-off'])}`; `all-on`: "
        f"`{' '.join(AB_ARMS['all-on'])}`. CPU: the bidder's user + system seconds over the exchange's run; in-process "
        f"p99 from `/metrics` ({r['runs'][0]['in_process_source'] if r['runs'] else '–'}); exchange p99 from the "
        "ledger's `request.answers[].latency_ms`. **Wall-clock figures on this shared 2-core box swing by the hour**: "
        "only the interleaved ratio means much.", "",
        *targets_md(r["targets"]), "",
        "| run | arm | requests | bids | wins | CPU s per 1,000 requests | in-process p99 ms | exchange p99 ms | "
        "batched share | p99 of inline-scored, ms | box load (cores) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in r["runs"]:
        lines.append(f"| {x['run']} | {x['arm']} | {x['requests']:,} | {x.get('bids', 0):,} | {x.get('wins', 0):,} | "
                     f"{fmt(x['cpu_s_per_1000'], 3)} | {fmt(x['in_process_p99_ms'], 3)} | "
                     f"{fmt(x['exchange_p99_ms'], 3)} | {percent(x.get('batched_share'))} | {fmt(x.get('inline_p99_ms'), 3)} | "
                     f"{fmt(x.get('load'), 2)} |")
    for arm, m in r["median"].items():
        lines.append(f"| median | {arm} | | | | {fmt(m['cpu_s_per_1000'], 3)} | {fmt(m['in_process_p99_ms'], 3)} | "
                     f"{fmt(m['exchange_p99_ms'], 3)} | {percent(m['batched_share'])} | {fmt(m['inline_p99_ms'], 3)} | |")
    o = r["on_over_off"]
    lines += [f"| on / off | | | | | {fmt(o['cpu_s_per_1000'], 3)} | {fmt(o['in_process_p99_ms'], 3)} | "
              f"{fmt(o['exchange_p99_ms'], 3)} | | {fmt(o['inline_p99_ms'], 3)} | |", ""]
    return lines


RENDER = {"pacing": pacing_md, "caps": caps_md, "shading": shading_md, "ab": ab_md}
TITLES = {"pacing": "1. Budget pacing", "caps": "2. Frequency caps", "shading": "3. First-price shading",
          "ab": "4. What it costs"}


def markdown(report: dict) -> str:
    a = report["args"]
    lines = [f"# Campaign economics ({report['date']})", "",
             f"Command: `{report['command']}`; {a['requests_per_day']:,} requests per simulated day at {a['rate']:g} "
             f"requests/s, `--seed {a['seed']}`, the default world; bidder `{a['bin']}` with `{a['config']}`, a bid held "
             f"awaiting its outcome for {a.get('hold_wall_s', HOLD_WALL_S):g} s of wall time (`--in-flight-s "
             f"{report.get('in_flight_s', '?')}`). "
             f"Took {report['minutes']:.1f} min.", ""]
    for part, r in report["parts"].items():
        if "error" in r or "skipped" in r:
            lines += [f"## {TITLES[part]}", "", f"Not run: {r.get('skipped') or r.get('error')}", ""]
        else:
            lines += RENDER[part](r)
    return "\n".join(lines)


# Serve flags each part passes; a binary without one of them cannot run the part.
PART_FLAGS = {
    "pacing": ["--pacing", "--in-flight-s"],
    "caps": ["--pacing", "--frequency-caps", "--in-flight-s"],
    "shading": ["--pacing", "--in-flight-s", *{f for flags in STRATEGIES.values() for f in flags if f.startswith("--")}],
    "ab": sorted({"--in-flight-s", *(f for flags in AB_ARMS.values() for f in flags if f.startswith("--"))}),
}
PART_FUNCS = {"pacing": part_pacing, "caps": part_caps, "shading": part_shading, "ab": part_ab}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "target/economics"), help="every run's directory and the report")
    p.add_argument("--bin", default="target/release/ctrbid", help="the ctrbid binary")
    p.add_argument("--config", default="deploy/ctrbid.toml", help="the bidder's config")
    p.add_argument("--catalog", default="models/default/catalog.json", help="the seed-7 world's catalog")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests-per-day", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=2000.0, help="requests per second of wall time")
    p.add_argument("--hold-wall-s", type=float, default=HOLD_WALL_S,
                   help="how long, in wall seconds, a bid stays held (budget, cap slot) awaiting its outcome")
    p.add_argument("--ab-pairs", type=int, default=AB_PAIRS, help="part 4's runs: this many all-off, all-on pairs")
    p.add_argument("--ab-rate", type=float, help="part 4's requests per second of wall time (default: --rate)")
    p.add_argument("--ab-requests", type=int, default=AB_REQUESTS, help="part 4's requests per run (one simulated day)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"a subset of {','.join(PARTS)}")
    p.add_argument("--rejudge", action="store_true", help="judge the runs already in --out, without playing them")
    a = p.parse_args(argv)
    a.parts = [x.strip() for x in a.parts.split(",") if x.strip()]
    unknown = [x for x in a.parts if x not in PARTS]
    if unknown:
        p.error(f"unknown parts {unknown}: choose from {','.join(PARTS)}")
    return a


def run_parts(names: list[str], funcs: dict, a, skipped, say) -> dict:
    """Each part's result by name: ``funcs[name](a)``, ``{"skipped": why}`` when
    ``skipped(name)`` says why, or ``{"error": ...}`` when it failed (the others run on)."""
    parts = {}
    for part in names:
        why = skipped(part)
        if why:
            parts[part] = {"skipped": why}
            say(f"{part}: skipped, {why}")
            continue
        say(f"{part}: start")
        try:
            parts[part] = funcs[part](a)
        except (RuntimeError, subprocess.CalledProcessError, OSError, ValueError, KeyError) as e:
            parts[part] = {"error": f"{type(e).__name__}: {e}"}
            say(f"{part}: failed, {parts[part]['error']}")
    return parts


def display_command(argv: list[str]) -> str:
    exe = Path(sys.executable)
    try:
        exe = exe.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([str(exe), *argv])


def main(argv: list[str]) -> int:
    a = parse_args(argv[1:])
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    available = set() if a.rejudge else serve_flags_of(a.bin)
    def skipped(part: str) -> str | None:
        missing = [] if a.rejudge else missing_flags(available, PART_FLAGS[part])
        return f"`{a.bin} serve` has no {', '.join(missing)} (not landed in this binary)" if missing else None

    parts = run_parts(a.parts, PART_FUNCS, a, skipped, log)
    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": display_command(argv),
              "args": vars(a), "in_flight_s": in_flight_s(a), "minutes": (time.time() - started) / 60, "parts": parts}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "report.md").write_text(markdown(report) + "\n")
    log(f"report: {out / 'report.md'}")
    return 1 if any("error" in r or "skipped" in r for r in parts.values()) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
