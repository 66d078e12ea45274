"""deploy/grafana: the dashboard is valid JSON with unique panel ids and a layout that
fits, every PromQL expression in it parses and reads only metrics (and labels) ctrbid
exports, and the provisioning files point at it."""

from __future__ import annotations

import copy
import json
import re

import promql_parser
import yaml

import promql
from support import DEPLOY, TARGET_LABELS

GRAFANA = DEPLOY / "grafana"
DASHBOARD = json.loads((GRAFANA / "ctrbid.json").read_text())


def panels(dash: dict) -> list[dict]:
    out = []
    for p in dash["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # a collapsed row holds its panels
    return out


def variable_query(v: dict) -> str:
    q = v.get("query")
    return q.get("query", "") if isinstance(q, dict) else (q or "")


def dashboard_problems(dash: dict, known: dict) -> list[str]:
    out = []
    ids = [p.get("id") for p in panels(dash)]
    if len(ids) != len(set(ids)) or None in ids:
        out.append(f"panel ids are not unique: {sorted(i for i in ids if ids.count(i) > 1)}")
    boxes = []
    for p in panels(dash):
        g = p["gridPos"]
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            out.append(f"panel {p['id']} is wider than the grid")
        for q in boxes:
            if g["x"] < q["x"] + q["w"] and q["x"] < g["x"] + g["w"] and g["y"] < q["y"] + q["h"] and q["y"] < g["y"] + g["h"]:
                out.append(f"panel {p['id']} overlaps another")
        boxes.append(g)
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    for p in panels(dash):
        if p["type"] == "row":
            continue
        refs = [t["refId"] for t in p["targets"]]
        if len(refs) != len(set(refs)):
            out.append(f"panel {p['id']}: refIds repeat")
        for t in [p, *p["targets"]]:
            if t["datasource"] != {"type": "prometheus", "uid": "${datasource}"}:
                out.append(f"panel {p['id']}: data source is not the dashboard's variable")
        for t in p["targets"]:
            for used in re.findall(r"\$(\w+)", t["expr"]):
                if used not in variables and not used.startswith("__"):
                    out.append(f"panel {p['id']}: ${used} is not a variable of the dashboard")
            out += [f"panel {p['id']} ({p['title']}): {e}" for e in promql.problems(promql.grafana_to_promql(t["expr"]), known, TARGET_LABELS)]
    for v in variables.values():
        if v["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", variable_query(v))
        if not m:
            out.append(f"variable {v['name']}: not a label_values() query")
            continue
        selector, label = m.groups()
        out += [f"variable {v['name']}: {e}" for e in promql.problems(selector, known, TARGET_LABELS)]
        name = selector.split("{")[0]
        if known.get(name) is not None and label not in known[name] | TARGET_LABELS:
            out.append(f"variable {v['name']}: {name} has no label {label}")
    return out


def test_the_dashboard_reads_only_what_ctrbid_exports(known_metrics):
    problems = dashboard_problems(DASHBOARD, known_metrics)
    assert not problems, "\n".join(problems)


def test_the_dashboard_check_bites(known_metrics):
    unknown = copy.deepcopy(DASHBOARD)
    target = next(p for p in unknown["panels"] if p["type"] != "row")["targets"][0]
    target["expr"] = target["expr"].replace("ctrbid_requests_total", "ctrbid_request_total")
    assert any("unknown metric ctrbid_request_total" in e for e in dashboard_problems(unknown, known_metrics))
    repeated = copy.deepcopy(DASHBOARD)
    repeated["panels"][2]["id"] = repeated["panels"][1]["id"]
    assert any("not unique" in e for e in dashboard_problems(repeated, known_metrics))
    unparsable = copy.deepcopy(DASHBOARD)
    next(p for p in unparsable["panels"] if p["type"] != "row")["targets"][0]["expr"] = "sum(rate(ctrbid_requests_total[5m])"
    assert any("does not parse" in e for e in dashboard_problems(unparsable, known_metrics))
    no_variable = copy.deepcopy(DASHBOARD)
    next(p for p in no_variable["panels"] if p["type"] != "row")["targets"][0]["expr"] = 'ctrbid_requests_total{namespace="$cluster"}'
    assert any("$cluster" in e for e in dashboard_problems(no_variable, known_metrics))
    if known_metrics["ctrbid_requests_total"] is not None:  # labels known from a running bidder
        bad_label = copy.deepcopy(DASHBOARD)
        target = next(p for p in bad_label["panels"] if p["type"] != "row")["targets"][0]
        target["expr"] = 'sum by (outcomes) (rate(ctrbid_requests_total{namespace="$namespace"}[5m]))'
        assert any("outcomes" in e for e in dashboard_problems(bad_label, known_metrics))


def used_metrics() -> set[str]:
    out = set()
    for p in panels(DASHBOARD):
        for t in p.get("targets", []):
            out |= {n for n, _ in promql.selectors(promql_parser.parse(promql.grafana_to_promql(t["expr"])))}
    return out


def test_the_dashboard_covers_the_bidder():
    """Each part of the bidder has its panels."""
    wanted = {
        "ctrbid_requests_total", "ctrbid_no_bids_total", "ctrbid_request_duration_seconds_bucket",
        "ctrbid_stage_duration_seconds_bucket", "ctrbid_scoring_path_total", "ctrbid_campaign_spend_usd",
        "ctrbid_campaign_budget_usd", "ctrbid_campaign_pacing_rate", "ctrbid_notices_total",
        "ctrbid_eventlog_queue_depth", "ctrbid_events_bids_total", "ctrbid_variant_requests_total",
        "ctrbid_variant_bids_total", "ctrbid_variant_wins_total", "ctrbid_variant_clicks_total",
        "ctrbid_variant_won_pctr_sum", "ctrbid_variant_request_duration_seconds_bucket", "ctrbid_variant_share",
        "ctrbid_variant_info", "ctrbid_drift_prediction_psi", "ctrbid_drift_feature_psi",
        "ctrbid_variant_shadow_pctr_sum", "ctrbid_variant_shadow_other_top_total",
    }
    assert wanted <= used_metrics(), wanted - used_metrics()


def test_the_dashboard_is_what_grafana_loads():
    assert DASHBOARD["uid"] and DASHBOARD["title"] and isinstance(DASHBOARD["schemaVersion"], int)
    variables = {v["name"]: v for v in DASHBOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    used = set(re.findall(r"\$(\w+)", json.dumps([t["expr"] for p in panels(DASHBOARD) for t in p.get("targets", [])])))
    used |= set(re.findall(r"\$(\w+)", json.dumps([variable_query(v) for v in variables.values()])))
    assert set(variables) - {"datasource"} <= used, "a variable no panel uses"


def test_provisioning_points_at_the_dashboard_and_a_prometheus():
    ds = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    assert ds["apiVersion"] == 1
    (source,) = ds["datasources"]
    assert source["type"] == "prometheus" and source["url"].startswith("http")
    dash = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "ctrbid.yml").read_text())
    assert dash["apiVersion"] == 1
    (provider,) = dash["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
