"""The fleet report's books, without a server: the fleet's spend summed over the
instances' ``/admin/pacing``, the pacing state the budget categories read, and counters
summed over the instances' ``/metrics``, on hand-written files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import fleet as f  # noqa: E402


def pacing(run: Path, inst: str, campaigns: list[dict]) -> None:
    (run / f"pacing-{inst}.json").write_text(json.dumps({"campaigns": campaigns}))


def campaign(cid: str, spend: float, rate: float, throttled: int) -> dict:
    return {"campaign": cid, "spend_since_start_usd": spend, "pacing_rate": rate, "throttled": throttled,
            "plan_by_hour_usd": [1.0] * 24}


def test_books_sum_each_instance_s_spend_of_its_own_bids(tmp_path):
    pacing(tmp_path, "a", [campaign("c1", 1.25, 1.0, 0), campaign("c2", 0.5, 0.4, 9)])
    pacing(tmp_path, "b", [campaign("c1", 0.75, 1.0, 0)])
    (tmp_path / "pacing-c.json").write_text("")  # an instance that did not answer
    assert f.books(tmp_path, ["a", "b", "c"]) == {"c1": 2.0, "c2": 0.5}


def test_a_campaign_is_short_of_traffic_only_if_no_instance_throttled_it(tmp_path):
    pacing(tmp_path, "a", [campaign("c1", 1.0, 1.0, 0), campaign("c2", 1.0, 1.0, 0)])
    pacing(tmp_path, "b", [campaign("c1", 1.0, 1.0, 0), campaign("c2", 1.0, 0.3, 12)])
    states = f.merged_states(tmp_path, ["a", "b"])
    assert states["c1"]["pacing_rate"] == 1 and states["c1"]["throttled"] == 0
    assert states["c2"]["pacing_rate"] == 0.3 and states["c2"]["throttled"] == 12
    # What the economics judgement makes of them, 10 % under a budget of 10.
    assert f.eco.budget_category(10.0, 9_000_000, states["c1"]) == "under, no traffic"
    assert f.eco.budget_category(10.0, 9_000_000, states["c2"]) == "under"


def test_counters_add_up_over_instances_and_a_prefix_does_not_match_longer_names(tmp_path):
    (tmp_path / "metrics-a.txt").write_text(
        'ctrbid_fleet_outcomes_total{direction="forwarded"} 7\nctrbid_fleet_lease_refreshes_total 3\n')
    (tmp_path / "metrics-b.txt").write_text(
        'ctrbid_fleet_outcomes_total{direction="forwarded"} 5\nctrbid_fleet_lease_refreshes_total_x 100\n')
    assert f.metric_sum(tmp_path, ["a", "b"], 'ctrbid_fleet_outcomes_total{direction="forwarded"} ') == 12
    assert f.metric_sum(tmp_path, ["a", "b", "missing"], "ctrbid_fleet_lease_refreshes_total ") == 3
