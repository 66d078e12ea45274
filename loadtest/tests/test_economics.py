"""The economics report's judgement, without a server: every judging function of
``loadtest/economics.py`` on hand-worked synthetic records, exact numbers asserted."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import economics as e  # noqa: E402

H = e.HOUR_MS
DAY = e.DAY_MS
START_TS = 1_767_571_200  # 2026-01-05 00:00 UTC, the exchange's default
START = START_TS * 1000


# Frequency caps: (user, campaign, ts_ms) -> over the cap when more than 3 in (ts - window, ts].


def check_caps(times_s: list[int], expected_over: int, cap: int = 3, window_s: int = 100):
    imps = [("u1", "c1", t * 1000) for t in times_s]
    assert e.over_cap(imps, cap, window_s)["over_cap"] == expected_over


def test_over_cap_counts_the_impression_itself_and_the_window_edges():
    check_caps([0, 10, 20], 0)  # three: at the cap, not over
    check_caps([0, 10, 20, 30], 1)  # the fourth within 100 s is over
    check_caps([0, 10, 20, 100], 0)  # 0 is exactly one window before 100: out of (0, 100]
    check_caps([0, 10, 20, 99], 1)  # 99 - 100 < 0: 0 is still in the window
    check_caps([0, 0, 0, 0], 1)  # ties: the fourth at the same ms is over
    check_caps([0, 10, 20, 30, 40, 200, 210, 220, 230], 3)  # 30 and 40 over, then 230 in a new window
    check_caps([30, 0, 20, 10], 1)  # order of arrival does not matter


def test_over_cap_keys_by_user_and_campaign_and_skips_users_without_id():
    imps = [("u1", "c1", 0), ("u1", "c1", 1), ("u1", "c2", 2), ("u2", "c1", 3), ("u1", "c1", 4), ("u1", "c1", 5),
            ("", "c1", 6), ("", "c1", 7), ("", "c1", 8), ("", "c1", 9)]
    assert e.over_cap(imps, 3, 86_400) == {"impressions": 10, "without_user": 4, "over_cap": 1, "pairs": 3,
                                           "pairs_at_cap": 1, "pairs_over_cap": 1}


# Pacing: day selection, spend by hour, the budgets, the categories, hourly errors.


def test_days_count_from_the_runs_start_and_hours_are_utc():
    assert e.day_of(START, START) == 0
    assert e.day_of(START + DAY - 1, START) == 0
    assert e.day_of(START + DAY, START) == 1
    assert e.day_of(START + 2 * DAY + 5, START) == 2
    assert e.utc_hour(START + 13 * H + 59 * 60_000) == 13
    # A run that starts at 06:00 UTC: its day 1 begins then, its hours are still UTC hours.
    six = START + 6 * H
    assert e.day_of(START + 29 * H, six) == 0
    assert e.day_of(START + 30 * H, six) == 1
    assert e.utc_hour(START + 30 * H) == 6


def test_spend_by_hour_keeps_the_day_asked_for():
    bills = [(START + 2 * H, "c1", 100), (START + DAY + 2 * H, "c1", 7), (START + DAY + 2 * H + 5, "c1", 3),
             (START + DAY + 23 * H, "c2", 40), (START + 2 * DAY, "c1", 1000)]
    s = e.spend_by_hour(bills, START_TS, 1)
    assert s["c1"][2] == 10 and sum(s["c1"]) == 10
    assert s["c2"][23] == 40 and sum(s["c2"]) == 40
    assert e.spend_by_hour(bills, START_TS, 0) == {"c1": [0, 0, 100] + [0] * 21}


def test_micro_usd_rounds_as_the_bidder_does():
    assert e.micro_usd(18.07) == 18_070  # 18.07 USD CPM: 0.01807 USD an impression
    assert e.micro_usd(0.0025) == 3  # 2.5 micro-USD: halves away from zero, as Rust's f64::round
    assert e.micro_usd(0.0035) == 4
    assert e.micro_usd(0.0034) == 3


def test_calibrated_budgets():
    campaigns = [{"id": "a", "daily_budget": 500.0}, {"id": "b", "daily_budget": 300.0},
                 {"id": "c", "daily_budget": 200.0}, {"id": "d", "daily_budget": 100.0}]
    out, judged = e.calibrated_budgets(campaigns, {"a": 123.456, "b": 5.0, "c": 4.99, "d": 0.0})
    assert [c["daily_budget"] for c in out] == [49.38, 2.0, 200_000.0, 100_000.0]
    assert judged == ["a", "b"]
    assert campaigns[0]["daily_budget"] == 500.0  # the input is not changed


@pytest.mark.parametrize("budget, spend_micros, state, category", [
    (10.0, 10_000_001, None, "over"),
    (10.0, 10_000_000, None, "within 1 %"),
    (10.0, 9_900_000, None, "within 1 %"),
    (10.0, 9_899_999, None, "under"),
    (10.0, 9_899_999, {"pacing_rate": 1.0, "throttled": 12}, "under, no traffic"),
    (10.0, 5_000_000, {"pacing_rate": 0.4, "throttled": 0}, "under, no traffic"),
    (10.0, 5_000_000, {"pacing_rate": 0.4, "throttled": 3}, "under"),
    (10.0, 10_000_100, {"pacing_rate": 1.0, "throttled": 0}, "over"),
])
def test_budget_category(budget, spend_micros, state, category):
    assert e.budget_category(budget, spend_micros, state) == category


def test_hourly_errors_skip_hours_without_a_plan():
    spend = [11.0, 9.0, 5.0, 0.0]
    plan = [10.0, 10.0, 0.0, 4.0]
    assert e.hourly_errors(spend, plan) == [(0, pytest.approx(0.1)), (1, pytest.approx(0.1)), (3, 1.0)]


def test_error_summary():
    s = e.error_summary([0.05, 0.10, 0.2, 0.4, 0.0])
    assert s == {"hours": 5, "within_10pct": 0.6, "median": 0.1, "p90": pytest.approx(0.32)}
    assert e.error_summary([])["median"] is None


def test_expected_impressions():
    assert e.expected_impressions(2.0, 20.0) == 100.0  # 2 USD at 0.02 USD an impression
    assert e.expected_impressions(2.0, None) is None


def test_poisson_within_sums_the_pmf_inside_the_band():
    # Poisson(10): 9, 10, 11 are within 10 %; their pmf by hand.
    pmf = [math.exp(-10) * 10 ** k / math.factorial(k) for k in (9, 10, 11)]
    assert e.poisson_within(10) == pytest.approx(sum(pmf), rel=1e-12)
    assert e.poisson_within(100) == pytest.approx(0.70652, abs=1e-5)  # P(90 <= X <= 110)
    assert e.poisson_within(0) == 0.0
    assert e.poisson_within(10_000) > 0.9999


def test_perfect_pacer_worst_hour_is_the_worst_of_the_day():
    big = e.perfect_pacer_worst_hour([1e6] * 24)  # sd 0.1 %: every hour within 10 %
    assert big["days_every_hour_within_10pct"] == 1.0 and big["median_worst"] < 0.01
    small = e.perfect_pacer_worst_hour([10] * 24)  # sd 32 %: some hour misses on nearly every day
    assert small["days_every_hour_within_10pct"] < 0.01 and small["median_worst"] > 0.4
    assert e.perfect_pacer_worst_hour([0.0] * 24)["median_worst"] is None


def test_empty_at_is_the_bill_that_crosses_99_percent():
    day0 = START + DAY
    bills = [(day0 + 3 * H, 500_000), (day0 + 1 * H, 400_000), (day0 + 7 * H + 30 * 60_000, 89_999),
             (day0 + 8 * H, 1)]
    assert e.empty_at(bills, 1.0, day0) == 8.0  # 0.989999 at 07:30, 0.99 at 08:00
    assert e.empty_at(bills[:3], 1.0, day0) is None


def test_judge_pacing():
    budgets = {"a": 24.0, "b": 10.0, "idle": 1000.0}
    spend = {"a": [1_100_000] * 12 + [900_000] * 12, "b": [0] * 23 + [5_000_000]}
    states = {"a": {"pacing_rate": 0.5, "throttled": 100}, "b": {"pacing_rate": 1.0, "throttled": 0}}
    plans = {"a": [1.0] * 24, "b": [10.0 / 24] * 24}
    # a: 1 USD an hour at an eCPM of 5 USD is 200 impressions an hour; b: 0.4167 USD at 10 USD, 41.7.
    r = e.judge_pacing(budgets, ["a", "b"], spend, states, plans, {"a": 5.0, "b": 10.0})
    assert r["categories"] == {"over": 0, "within 1 %": 1, "under, no traffic": 1, "under": 0}
    assert [x["spend"] for x in r["campaigns"]] == [pytest.approx(24.0), 5.0]
    assert r["hourly"]["hours"] == 48
    # a: every hour 10 % off (within); b: 23 hours 100 % off, one 1100 % off.
    assert r["hourly"]["within_10pct"] == 0.5
    assert r["hourly_at_least_100_imps"]["hours"] == 24
    assert r["hourly_at_least_100_imps"]["within_10pct"] == 1.0
    assert r["hourly_at_least_100_imps"]["median"] == pytest.approx(0.1)
    assert r["total_plan_by_hour"][0] == pytest.approx(1 + 10 / 24)
    assert r["total_spend_by_hour"][23] == pytest.approx(5.9)
    assert r["aggregate_within_10pct_every_hour"] is False


def test_requests_share_by_hour():
    counts = {(1, 0): 1, (1, 5): 3, (0, 5): 100}
    share = e.requests_share_by_hour(counts, 1)
    assert share[0] == 0.25 and share[5] == 0.75 and sum(share) == 1.0


# Value, spend and surplus: CPC campaigns at goal CPC x pCTR, CPA at goal CPA x pCTR x pCVR.


def test_value_and_spend_cpc_and_cpa():
    goals = e.goals_of([{"id": "cpc", "goal_cpc": 0.5}, {"id": "cpa", "goal_cpa": 20.0}])
    imps = [("cpc", 10.0, 0.02, 0.1), ("cpc", 30.0, 0.04, 0.5), ("cpa", 20.0, 0.01, 0.05), ("unknown", 5.0, 0.5, 0.5)]
    r = e.value_and_spend(imps, goals)
    # spend (10 + 30 + 20 + 5) / 1000 = 0.065; value 0.5 x 0.06 + 20 x 0.0005 = 0.04
    assert r["impressions"] == 4
    assert r["spend"] == 0.065
    assert r["value"] == pytest.approx(0.04)
    assert r["surplus"] == pytest.approx(-0.025)
    assert r["surplus_per_usd"] == pytest.approx(-0.025 / 0.065)
    assert e.value_and_spend([], goals)["surplus_per_usd"] is None


# Latency: p99 from a Prometheus histogram's buckets, or the summary's quantile.


def test_quantile_from_buckets_interpolates_linearly():
    buckets = [(0.001, 500.0), (0.002, 900.0), (0.005, 990.0), (0.01, 1000.0), (float("inf"), 1000.0)]
    assert e.quantile_from_buckets(buckets, 0.99) == pytest.approx(0.005)  # rank 990: the top of (0.002, 0.005]
    assert e.quantile_from_buckets(buckets, 0.995) == pytest.approx(0.0075)  # half into (0.005, 0.01]
    assert e.quantile_from_buckets(buckets, 0.25) == pytest.approx(0.0005)  # from 0 in the first bucket
    assert e.quantile_from_buckets(buckets, 0.7) == pytest.approx(0.0015)
    # A rank in +Inf: the highest finite bound.
    assert e.quantile_from_buckets([(0.001, 90.0), (float("inf"), 100.0)], 0.99) == 0.001
    assert e.quantile_from_buckets([(0.001, 0.0), (float("inf"), 0.0)], 0.99) is None


def test_latency_p99_from_metrics_text():
    summary = ('ctrbid_stage_seconds{stage="parse",quantile="0.99"} 0.000010000\n'
               'ctrbid_stage_seconds{stage="total",quantile="0.9"} 0.000400000\n'
               'ctrbid_stage_seconds{stage="total",quantile="0.99"} 0.001234000\n'
               'ctrbid_stage_seconds_count{stage="total"} 1000\n')
    assert e.latency_p99_s(summary) == (0.001234, 'ctrbid_stage_seconds{stage="total",quantile="0.99"}')
    histogram = summary + ''.join(
        f'ctrbid_stage_seconds_bucket{{stage="total",le="{le}"}} {n}\n'
        for le, n in (("0.001", 980), ("0.002", 1000), ("+Inf", 1000)))
    p99, source = e.latency_p99_s(histogram)
    assert p99 == pytest.approx(0.0015)
    assert source == 'ctrbid_stage_seconds_bucket{stage="total"}'


def test_percentile_and_targets():
    assert e.percentile(list(range(101)), 99) == 99.0
    assert e.target(1.2, ">=", 1.15)["met"] is True
    assert e.target(0.0, "<=", 0)["met"] is True
    assert e.target(None, ">=", 1)["met"] is None
    assert e.ratio(3.0, 0.0) is None


# The ledger reader, on a few lines in the exchange's serde layout.


def test_read_ledger(tmp_path):
    lines = [
        {"type": "run", "version": 1, "bidders": ["http://b"], "seed": 7, "requests": 3, "days": 2,
         "start_ts": START_TS, "rate": 1000.0},
        {"type": "request", "seq": 0, "request_id": "r0", "ts_ms": START + 5, "publisher": "p", "user": "u9", "at": 2,
         "tmax_ms": 100, "imps": 1, "answers": [{"bidder": 0, "status": 200, "latency_ms": 1.5, "late": False,
                                                 "bids": 1}]},
        {"type": "auction", "seq": 0, "request_id": "r0", "imp_id": "1", "ts_ms": START + DAY + 5, "floor": 0.5,
         "at": 2, "kind": "banner", "publisher": "p",
         "entries": [{"bidder": 0, "outcome": "bid", "bid_id": "b1", "price": 20.0, "crid": "cr", "cid": "c1"}],
         "competing": 3.0, "winner": {"bidder": 0, "bid_id": "b1"}, "competing_won": False, "clearing_price": 3.01},
        {"type": "auction", "seq": 1, "request_id": "r1", "imp_id": "1", "ts_ms": START + DAY + 6, "floor": 0.5,
         "at": 2, "kind": "banner", "publisher": "p",
         "entries": [{"bidder": 0, "outcome": "bid", "bid_id": "b2", "price": 2.0, "loss": 102},
                     {"bidder": 0, "outcome": "no_bid"}], "competing": 3.0, "winner": None, "competing_won": True},
        {"type": "notice", "kind": "win", "bidder": 0, "bid_id": "b1", "seq": 0, "imp_id": "1", "cid": "c1",
         "ts_ms": START + DAY + 55, "price": 3.01, "status": 200, "attempts": 1},
        {"type": "notice", "kind": "bill", "bidder": 0, "bid_id": "b1", "seq": 0, "imp_id": "1", "cid": "c1",
         "ts_ms": START + DAY + 1005, "price": 3.01, "status": 200, "attempts": 1},
        {"type": "notice", "kind": "bill", "bidder": 0, "bid_id": "b1", "seq": 0, "imp_id": "1", "cid": "c1",
         "ts_ms": START + DAY + 1006, "price": 3.01, "status": 200, "attempts": 1},  # a repeat: counted once
        {"type": "notice", "kind": "bill", "bidder": 0, "bid_id": "b3", "seq": 2, "imp_id": "1", "cid": "c1",
         "ts_ms": START + DAY + 1007, "price": 9.0, "status": 503, "attempts": 3},  # refused: no spend
        {"type": "impression", "bidder": 0, "bid_id": "b1", "seq": 0, "imp_id": "1", "cid": "c1", "crid": "cr",
         "ts_ms": START + DAY + 1005, "price": 3.01, "pctr": 0.01, "pcvr": 0.2, "pctr_used": 0.01},
    ]
    path = tmp_path / "ledger.jsonl"
    path.write_text("".join(json.dumps(x, separators=(",", ":")) + "\n" for x in lines))
    led = e.read_ledger(path, users=True, latencies=True)
    assert led.start_ts == START_TS
    assert led.requests == 1 and led.requests_by_hour == {(0, 0): 1}
    assert led.users == {0: "u9"} and led.latencies_ms == [1.5]
    assert led.bids == {1: 2} and led.wins == {1: 1}
    assert led.bills == [(START + DAY + 1005, "c1", 3010)]
    assert led.impressions == [(START + DAY + 1005, "c1", 0, 3.01, 0.01, 0.2)]


def test_judge_pacing_sums_without_the_campaigns_short_of_traffic():
    budgets = {"a": 24.0, "b": 24.0}
    spend = {"a": [1_000_000] * 24, "b": [500_000] * 24}  # b spent half: no traffic, by its state
    states = {"a": {"pacing_rate": 0.3, "throttled": 9}, "b": {"pacing_rate": 1.0, "throttled": 0}}
    r = e.judge_pacing(budgets, ["a", "b"], spend, states, {"a": [1.0] * 24, "b": [1.0] * 24}, {})
    assert r["aggregate_errors"] == [0.25] * 24  # 1.5 against 2
    assert r["aggregate_errors_binding"] == [0.0] * 24
    assert r["hourly_at_least_100_imps"]["hours"] == 0  # no eCPM: no expected impressions
