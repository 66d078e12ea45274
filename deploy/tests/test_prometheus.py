"""deploy/prometheus: promtool's checks of the rules and the configuration, the rules'
unit tests (rules.test.yml), the metric names the rules read, and the scrape config's
relabelling applied to a canary pod of the Rollout."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

import promql
from support import ARGO, DEPLOY, TARGET_LABELS, load_yaml_docs, run, tool

PROM = DEPLOY / "prometheus"
RULES = yaml.safe_load((PROM / "rules.yml").read_text())
CONFIG = yaml.safe_load((PROM / "prometheus.yml").read_text())


def promtool(*args: str, cwd: Path = PROM):
    return run([tool("promtool"), *args], cwd=cwd)


def all_rules() -> list[dict]:
    return [r for g in RULES["groups"] for r in g["rules"]]


def test_promtool_checks_the_rules():
    r = promtool("check", "rules", "rules.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_refuses_a_rule_with_a_bad_expression(tmp_path):
    broken = (PROM / "rules.yml").read_text().replace(
        "expr: sum by (namespace, outcome) (rate(ctrbid_requests_total[5m]))",
        "expr: sum by (namespace, outcome) (rate(ctrbid_requests_total[5m])",
    )
    assert broken != (PROM / "rules.yml").read_text()
    (tmp_path / "rules.yml").write_text(broken)
    r = promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert r.returncode != 0


def test_the_rules_unit_tests_pass():
    r = promtool("test", "rules", "rules.test.yml")
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_unit_tests_catch_a_wrong_threshold(tmp_path):
    """An alert that no longer fires where it should fails rules.test.yml."""
    broken = (PROM / "rules.yml").read_text().replace(
        "expr: namespace:ctrbid_shed_share:ratio_rate5m > 0.01", "expr: namespace:ctrbid_shed_share:ratio_rate5m > 0.05"
    )
    assert broken != (PROM / "rules.yml").read_text()
    (tmp_path / "rules.yml").write_text(broken)
    shutil.copy(PROM / "rules.test.yml", tmp_path)
    r = promtool("test", "rules", "rules.test.yml", cwd=tmp_path)
    assert r.returncode != 0 and "CtrbidSheddingHigh" in r.stdout + r.stderr


def test_every_alert_is_unit_tested_firing_and_silent():
    tests = yaml.safe_load((PROM / "rules.test.yml").read_text())["tests"]
    cases = [c for t in tests for c in t.get("alert_rule_test", [])]
    for alert in (r["alert"] for r in all_rules() if "alert" in r):
        mine = [c for c in cases if c["alertname"] == alert]
        assert any(c["exp_alerts"] for c in mine), f"{alert}: never shown firing"
        if alert != "CtrbidFleetOverspend":  # its silent case is the other campaign, beside it
            assert any(not c["exp_alerts"] for c in mine), f"{alert}: never shown silent"


def test_every_alert_says_how_bad_and_what_happened():
    for r in all_rules():
        if "alert" in r:
            assert r["labels"]["severity"] in {"critical", "warning"}, r["alert"]
            assert r["annotations"]["summary"] and r["annotations"]["description"], r["alert"]


def test_the_rules_read_only_what_ctrbid_exports(known_metrics):
    known = dict(known_metrics)
    known.update({r["record"]: None for r in all_rules() if "record" in r})
    known["up"] = {"job", "instance"}  # Prometheus' own, per target
    for r in all_rules():
        problems = promql.problems(r["expr"], known, TARGET_LABELS)
        assert not problems, (r.get("record") or r.get("alert"), problems)
    assert promql.problems("rate(ctrbid_requests_totl[5m])", known, TARGET_LABELS)
    assert promql.problems('rate(ctrbid_requests_total{outcomes="bid"}[5m])', known, TARGET_LABELS) or known[
        "ctrbid_requests_total"
    ] is None


# --- the scrape configuration --------------------------------------------------------------


def without_kubernetes_discovery(config: dict) -> dict:
    """The configuration with each job's Kubernetes discovery replaced by a static target.
    Debian's promtool (the one `make setup-deploy-tools` takes) is built without Kubernetes
    discovery and refuses `kubernetes_sd_configs` as an unknown field; everything else,
    relabelling included, it checks."""
    config = yaml.safe_load(yaml.safe_dump(config))
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = [{"targets": ["127.0.0.1:9090"]}]
    return config


def test_promtool_checks_the_configuration(tmp_path):
    shutil.copy(PROM / "rules.yml", tmp_path)
    (tmp_path / "prometheus.yml").write_text((PROM / "prometheus.yml").read_text())
    r = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    if r.returncode != 0 and "field kubernetes_sd_configs not found" in r.stdout + r.stderr:
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(without_kubernetes_discovery(CONFIG)))
        r = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_promtool_refuses_a_broken_configuration(tmp_path):
    broken = without_kubernetes_discovery(CONFIG)
    broken["scrape_configs"][0]["relabel_configs"][0]["action"] = "keepit"
    shutil.copy(PROM / "rules.yml", tmp_path)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(broken))
    r = promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert r.returncode != 0


def test_discovery_lists_the_bidders_pods():
    (job,) = [j for j in CONFIG["scrape_configs"] if j["job_name"] == "ctrbid"]
    (sd,) = job["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    (selector,) = sd["selectors"]
    key, value = selector["label"].split("=")
    (rollout,) = load_yaml_docs(ARGO / "rollout.yaml")
    assert rollout["spec"]["template"]["metadata"]["labels"][key] == value


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def discovered_targets(pod_template: dict, pod_labels: dict, namespace: str, name: str, ip: str) -> list[dict]:
    """The targets Prometheus' Kubernetes discovery (role pod) makes of a pod: one per
    declared container port, with the meta labels it sets."""
    meta = {
        "__meta_kubernetes_namespace": namespace,
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": ip,
        "__meta_kubernetes_pod_node_name": "node-1",
    }
    for k, v in pod_labels.items():
        meta[f"__meta_kubernetes_pod_label_{sanitize(k)}"] = v
    for k, v in pod_template["metadata"].get("annotations", {}).items():
        meta[f"__meta_kubernetes_pod_annotation_{sanitize(k)}"] = v
    out = []
    for c in pod_template["spec"]["containers"]:
        for p in c["ports"]:
            out.append({**meta, "__address__": f"{ip}:{p['containerPort']}", "__meta_kubernetes_pod_container_name": c["name"],
                        "__meta_kubernetes_pod_container_port_name": p["name"],
                        "__meta_kubernetes_pod_container_port_number": str(p["containerPort"])})
    return out


def relabel(labels: dict, configs: list[dict]) -> dict | None:
    """Prometheus' relabelling (the actions this configuration uses); None: dropped."""
    labels = dict(labels)
    for c in configs:
        action = c.get("action", "replace")
        value = c.get("separator", ";").join(labels.get(s, "") for s in c.get("source_labels", []))
        rx = re.compile(c.get("regex", "(.*)"))
        m = rx.fullmatch(value)
        if action == "keep":
            if not m:
                return None
        elif action == "drop":
            if m:
                return None
        elif action == "replace":
            if m:
                result = re.sub(r"\$(\d+)|\$\{(\d+)\}", lambda g: m.group(int(g.group(1) or g.group(2))) or "", c.get("replacement", "$1"))
                if result:
                    labels[c["target_label"]] = result
                else:
                    labels.pop(c["target_label"], None)
        else:
            raise AssertionError(f"relabel action {action} is not emulated here")
    return {k: v for k, v in labels.items() if not k.startswith("__meta_")}


def test_a_canary_pod_is_scraped_on_its_admin_port_with_its_template_hash():
    (rollout,) = load_yaml_docs(ARGO / "rollout.yaml")
    template = rollout["spec"]["template"]
    labels = {**template["metadata"]["labels"], "rollouts-pod-template-hash": "6d4f8b7c9"}
    (job,) = CONFIG["scrape_configs"]
    targets = [relabel(t, job["relabel_configs"]) for t in discovered_targets(template, labels, "bid", "ctrbid-6d4f8b7c9-x2x", "10.1.2.3")]
    kept = [t for t in targets if t is not None]
    assert len(kept) == 1, "one target per pod: the admin port"
    (t,) = kept
    assert t["__address__"] == "10.1.2.3:9090"
    assert t["__metrics_path__"] == "/metrics"
    assert t["namespace"] == "bid" and t["pod"] == "ctrbid-6d4f8b7c9-x2x"
    assert t["rollouts_pod_template_hash"] == "6d4f8b7c9"
    assert "pod_template_hash" not in t
    assert set(t) - {"__address__", "__metrics_path__"} <= TARGET_LABELS


def test_a_pod_that_does_not_ask_is_not_scraped():
    (rollout,) = load_yaml_docs(ARGO / "rollout.yaml")
    template = yaml.safe_load(yaml.safe_dump(rollout["spec"]["template"]))
    template["metadata"]["annotations"]["prometheus.io/scrape"] = "false"
    (job,) = CONFIG["scrape_configs"]
    targets = discovered_targets(template, template["metadata"]["labels"], "bid", "p", "10.1.2.4")
    assert all(relabel(t, job["relabel_configs"]) is None for t in targets)


@pytest.mark.parametrize("rule", [r for r in all_rules() if "record" in r], ids=lambda r: r["record"])
def test_recording_rule_names_follow_level_metric_operations(rule):
    level, metric, ops = rule["record"].split(":")
    assert level and metric.startswith("ctrbid_") and ops, rule["record"]
