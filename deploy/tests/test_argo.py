"""deploy/argo: the Rollout and the AnalysisTemplates.

* Against Argo Rollouts' own API types, from the npm package
  @kubernetes-models/argo-rollouts (generated from
  github.com/argoproj/argo-rollouts/pkg/apis/rollouts/v1alpha1): its validators (types,
  enums, required fields), and TypeScript's excess-property check on its types, which
  catches the unknown fields the validators let through. Installed by
  `make setup-deploy-tools` where npm exists; skipped without Node.js.
* The analysis: every query parses and reads only metrics ctrbid exports; promtool
  evaluates each on made-up canary and stable series, and the metric's success and
  failure conditions (Argo's expr language, evaluated here the way Argo's
  utils/evaluate does) classify the result as intended.
"""

from __future__ import annotations

import copy
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import promql
from support import ARGO, NODE_PREFIX, SETUP, TARGET_LABELS, load_yaml_docs, run, tool

TEMPLATES = {d["metadata"]["name"]: d for d in load_yaml_docs(ARGO / "analysis-template.yaml")}
(ROLLOUT,) = load_yaml_docs(ARGO / "rollout.yaml")
ARGO_DOCS = [ROLLOUT, *TEMPLATES.values()]
MODULES = NODE_PREFIX / "node_modules"
# Values of the templates' args in the checks below.
ARGS = {"namespace": "bid", "canary-hash": "c1", "stable-hash": "s1", "min-clicks": "200",
        "prometheus-address": "http://prometheus:9090"}


def node_tools() -> Path:
    if not shutil.which("node"):
        pytest.skip("Node.js is not installed: the Argo Rollouts schema checks need it")
    if not (MODULES / "@kubernetes-models" / "argo-rollouts").exists():
        pytest.fail(f"{MODULES} lacks @kubernetes-models/argo-rollouts: {SETUP}")
    return MODULES


# --- Argo's API types ---------------------------------------------------------------------


def argo_validate(docs: list[dict]) -> list[dict]:
    modules = node_tools()
    r = subprocess.run(
        ["node", str(Path(__file__).parent / "argo" / "validate.mjs"), str(modules)],
        input=json.dumps(docs), capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_the_argo_objects_pass_argo_rollouts_validators():
    results = argo_validate(ARGO_DOCS)
    assert [r["kind"] for r in results] == ["Rollout", "AnalysisTemplate", "AnalysisTemplate"]
    assert all(r["error"] is None for r in results), results


def test_argo_rollouts_validators_refuse_broken_copies():
    wrong_type = copy.deepcopy(ROLLOUT)
    wrong_type["spec"]["strategy"]["canary"]["steps"][0]["setWeight"] = "ten"
    no_provider = copy.deepcopy(TEMPLATES["ctrbid-canary-health"])
    del no_provider["spec"]["metrics"][0]["provider"]
    not_argo = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Canary", "metadata": {"name": "x"}}
    results = argo_validate([wrong_type, no_provider, not_argo])
    assert "setWeight" in results[0]["error"]
    assert "provider" in results[1]["error"]
    assert results[2]["error"]


def typescript_check(docs: list[dict], work: Path) -> subprocess.CompletedProcess:
    """tsc on `const x: IKind = <object>` per object: an object literal with a property
    its type lacks is an error (TS2353), at any depth, the pod template included."""
    modules = node_tools()
    tsc = modules / ".bin" / "tsc"
    lines = []
    for i, doc in enumerate(docs):
        kind = doc["kind"]
        lines.append(f'import type {{ I{kind} as T{i} }} from "@kubernetes-models/argo-rollouts/argoproj.io/v1alpha1/{kind}";')
        lines.append(f"export const doc{i}: T{i} = {json.dumps(doc, indent=1)};")
    # Inside the install folder, so that the imports resolve to its node_modules.
    work.mkdir(parents=True, exist_ok=True)
    source = work / "manifests.ts"
    source.write_text("\n".join(lines) + "\n")
    return run([str(tsc), "--noEmit", "--strict", "--skipLibCheck", "--module", "nodenext",
                "--moduleResolution", "nodenext", "--target", "es2022", str(source)])


@pytest.fixture
def ts_work(request):
    work = NODE_PREFIX / "check" / request.node.name
    yield work
    shutil.rmtree(work, ignore_errors=True)


def test_the_argo_objects_have_no_field_argo_does_not_know(ts_work):
    r = typescript_check(ARGO_DOCS, ts_work)
    assert r.returncode == 0, r.stdout + r.stderr


def test_typescript_refuses_unknown_fields(ts_work):
    typo = copy.deepcopy(TEMPLATES["ctrbid-canary-health"])
    typo["spec"]["metrics"][0]["successCondtion"] = typo["spec"]["metrics"][0].pop("successCondition")
    deep = copy.deepcopy(ROLLOUT)
    deep["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = []
    r = typescript_check([typo, deep], ts_work)
    assert r.returncode != 0
    assert "successCondtion" in r.stdout and "readinessProbes" in r.stdout, r.stdout


# --- the Rollout ----------------------------------------------------------------------------


def template_args(template: dict) -> tuple[set[str], set[str]]:
    """(every arg the template declares, those without a default value)."""
    args = template["spec"]["args"]
    return {a["name"] for a in args}, {a["name"] for a in args if "value" not in a}


def analysis_refs() -> list[dict]:
    canary = ROLLOUT["spec"]["strategy"]["canary"]
    refs = [canary["analysis"]]
    refs += [s["analysis"] for s in canary["steps"] if "analysis" in s]
    return refs


def test_every_analysis_reference_names_a_template_and_gives_its_args():
    used = set()
    for ref in analysis_refs():
        passed = {a["name"]: a for a in ref["args"]}
        assert passed["canary-hash"]["valueFrom"] == {"podTemplateHashValue": "Latest"}
        assert passed["stable-hash"]["valueFrom"] == {"podTemplateHashValue": "Stable"}
        assert passed["namespace"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        for t in ref["templates"]:
            template = TEMPLATES[t["templateName"]]
            used.add(t["templateName"])
            declared, required = template_args(template)
            assert required <= set(passed) <= declared, (t, required, set(passed))
    assert used == set(TEMPLATES)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_a_template_uses_only_the_args_it_declares(name):
    template = TEMPLATES[name]
    declared, _ = template_args(template)
    used = set(re.findall(r"\{\{\s*args\.([a-z0-9-]+)\s*\}\}", json.dumps(template["spec"]["metrics"])))
    assert used == declared, (used, declared)


def test_the_canary_steps():
    canary = ROLLOUT["spec"]["strategy"]["canary"]
    steps = canary["steps"]
    weights = [s["setWeight"] for s in steps if "setWeight" in s]
    assert weights == sorted(weights) and weights[0] == 10 and weights[-1] == 100, weights
    assert all(any("pause" in s for s in steps[i + 1 : i + 2]) for i, s in enumerate(steps) if s.get("setWeight") in (10, 25, 50))
    assert any("analysis" in s for s in steps), "a gate before all traffic"
    assert canary["analysis"]["startingStep"] >= 1
    assert canary["maxUnavailable"] == 0


# --- the analysis metrics -----------------------------------------------------------------------


def metrics() -> list[tuple[str, dict]]:
    return [(t, m) for t, tmpl in TEMPLATES.items() for m in tmpl["spec"]["metrics"]]


@pytest.mark.parametrize("template,metric", metrics(), ids=lambda x: x if isinstance(x, str) else x["name"])
def test_each_metric_says_when_it_passes_fails_how_often_and_how_many_times(template, metric):
    for key in ("successCondition", "failureCondition", "interval", "count", "failureLimit"):
        assert key in metric, key
    # A comment explains each metric (the line above `- name: <metric>`).
    text = (ARGO / "analysis-template.yaml").read_text()
    before = text.split(f"- name: {metric['name']}\n")[0].rstrip().splitlines()[-1].strip()
    assert before.startswith("#"), f"{metric['name']}: no comment says why"


@pytest.mark.parametrize("template,metric", metrics(), ids=lambda x: x if isinstance(x, str) else x["name"])
def test_each_query_reads_only_what_ctrbid_exports(template, metric, known_metrics):
    query = promql.argo_to_promql(metric["provider"]["prometheus"]["query"], ARGS)
    assert not promql.problems(query, known_metrics, TARGET_LABELS)


def test_the_query_check_bites(known_metrics):
    assert promql.problems('sum(rate(ctrbid_request_total{outcome="error"}[2m]))', known_metrics, TARGET_LABELS)
    assert promql.problems("sum(rate(ctrbid_requests_total[2m])", known_metrics, TARGET_LABELS)
    with pytest.raises(KeyError):
        promql.argo_to_promql("x{pod=\"{{args.canary-pod}}\"}", ARGS)


# Argo's conditions are expressions in expr-lang over `result` (here a vector's values).
# Those of these templates use only this much of it, which reads the same in Python.
CONDITION = re.compile(r"^(len\(result\)|result\[0\]|[0-9.]+|&&|\|\||[<>]=?|==|[()]|\s)+$")


def evaluate(condition: str, result: list[float]) -> bool:
    assert CONDITION.match(condition), f"condition outside what this test reads: {condition}"
    py = condition.replace("&&", " and ").replace("||", " or ")
    return bool(eval(py, {"__builtins__": {}}, {"len": len, "result": result}))  # noqa: S307


def phase(metric: dict, result: list[float]) -> str:
    """What Argo makes of one measurement (utils/evaluate.EvaluateResult, both
    conditions set): Failed if the failure condition holds, else Successful if the
    success condition does, else Inconclusive."""
    if evaluate(metric["failureCondition"], result):
        return "Failed"
    return "Successful" if evaluate(metric["successCondition"], result) else "Inconclusive"


def metric(name: str) -> dict:
    return next(m for _, m in metrics() if m["name"] == name)


def test_the_conditions_classify_as_their_comments_say():
    cases = [
        ("error-rate", [0.0], "Successful"), ("error-rate", [0.002], "Failed"),
        ("error-rate", [math.nan], "Inconclusive"), ("error-rate", [], "Inconclusive"),
        ("p99-latency", [1.2], "Successful"), ("p99-latency", [1.4], "Inconclusive"), ("p99-latency", [1.6], "Failed"),
        ("bid-rate", [0.95], "Successful"), ("bid-rate", [1.5], "Successful"),
        ("bid-rate", [0.85], "Inconclusive"), ("bid-rate", [0.7], "Failed"),
        ("calibration", [1.0], "Successful"), ("calibration", [0.79], "Failed"), ("calibration", [1.3], "Failed"),
        ("calibration", [], "Inconclusive"),
        ("calibration-vs-stable", [-0.2], "Successful"), ("calibration-vs-stable", [0.05], "Successful"),
        ("calibration-vs-stable", [0.15], "Inconclusive"), ("calibration-vs-stable", [0.3], "Failed"),
    ]
    for name, result, expected in cases:
        assert phase(metric(name), result) == expected, (name, result)


# Made-up series, per minute for 40 minutes, in namespace "bid": stable pods of hash s1
# (pod "s"), canary pods of hash c1 (pod "c"). Each scenario: its series, and per metric
# the value the query must give at 35 min (None: no result; "NaN") and how Argo then
# classifies the measurement.
STEPS = 40


def counter(labels: str, per_minute: float) -> tuple[str, str]:
    return labels, f"0+{per_minute}x{STEPS}"


def requests(pod: str, h: str, bid: float, no_bid: float, error: float) -> list[tuple[str, str]]:
    base = f'job="ctrbid",namespace="bid",pod="{pod}",rollouts_pod_template_hash="{h}"'
    return [counter(f'ctrbid_requests_total{{{base},outcome="{o}"}}', n) for o, n in (("bid", bid), ("no_bid", no_bid), ("error", error))]


def durations(pod: str, h: str, cumulative: dict[str, float]) -> list[tuple[str, str]]:
    base = f'job="ctrbid",namespace="bid",pod="{pod}",rollouts_pod_template_hash="{h}"'
    return [counter(f'ctrbid_request_duration_seconds_bucket{{{base},le="{le}"}}', n) for le, n in cumulative.items()]


FAST = {"0.001": 100, "0.002": 100, "0.003": 100, "+Inf": 100}  # p99 0.99 ms
SLOWER = {"0.001": 90, "0.002": 90, "0.003": 100, "+Inf": 100}  # p99 2.9 ms


def notices(variant: str, won_pctr: float, clicks: float, pods=(("s", "s1"), ("c", "c1"))) -> list[tuple[str, str]]:
    """A variant's notices (its name is the hash of the release that bid), spread evenly
    over `pods`, whatever pod bid: the Service picks the pod a notice reaches."""
    out = []
    for pod, h in pods:
        base = f'job="ctrbid",namespace="bid",pod="{pod}",rollouts_pod_template_hash="{h}",variant="{variant}"'
        out += [counter(f"ctrbid_variant_won_pctr_sum{{{base}}}", won_pctr / len(pods)),
                counter(f"ctrbid_variant_clicks_total{{{base}}}", clicks / len(pods))]
    return out


# Variants are named by the release's pod-template hash (CTRBID_VARIANT_NAME in
# rollout.yaml): the canary's variant is "c1", the stable's "s1".
SCENARIOS = {
    "a sick canary": (
        requests("s", "s1", 60, 40, 0) + requests("c", "c1", 30, 69, 1) + durations("s", "s1", FAST) + durations("c", "c1", SLOWER),
        {"error-rate": (0.01, "Failed"), "p99-latency": (2.9, "Failed"), "bid-rate": (0.5, "Failed")},
    ),
    "a healthy canary": (
        requests("s", "s1", 60, 40, 0) + requests("c", "c1", 57, 43, 0) + durations("s", "s1", SLOWER) + durations("c", "c1", FAST),
        {"error-rate": (0.0, "Successful"), "p99-latency": (0.99 / 2.9, "Successful"), "bid-rate": (0.95, "Successful")},
    ),
    "a canary without traffic": (
        requests("s", "s1", 60, 40, 0) + requests("c", "c1", 0, 0, 0) + durations("s", "s1", FAST)
        + durations("c", "c1", {le: 0 for le in FAST}),
        {"error-rate": ("NaN", "Inconclusive"), "p99-latency": ("NaN", "Inconclusive"), "bid-rate": ("NaN", "Inconclusive")},
    ),
    "a calibrated canary": (
        notices("s1", 20, 20) + notices("c1", 10.5, 10),
        {"calibration": (1.05, "Successful"), "calibration-vs-stable": (math.log(1.05), "Successful")},
    ),
    "a canary 50 % high": (
        notices("s1", 20, 20) + notices("c1", 15, 10),
        {"calibration": (1.5, "Failed"), "calibration-vs-stable": (math.log(1.5), "Failed")},
    ),
    "a canary 50 % high whose notices all reach stable pods": (
        notices("s1", 20, 20) + notices("c1", 15, 10, pods=(("s", "s1"), ("s2", "s1"))),
        {"calibration": (1.5, "Failed"), "calibration-vs-stable": (math.log(1.5), "Failed")},
    ),
    "a canary better than a poor stable": (
        notices("s1", 26, 20) + notices("c1", 11, 10),
        {"calibration": (1.1, "Successful"), "calibration-vs-stable": (math.log(1.1) - math.log(1.3), "Successful")},
    ),
    "a canary with too few clicks": (
        notices("s1", 20, 20) + notices("c1", 3, 2),
        {"calibration": (None, "Inconclusive"), "calibration-vs-stable": (None, "Inconclusive")},
    ),
    "a stable with too few clicks": (
        notices("s1", 2, 2) + notices("c1", 10.5, 10),
        {"calibration": (1.05, "Successful"), "calibration-vs-stable": (None, "Inconclusive")},
    ),
    "a new image serving the stable model": (
        notices("s1", 22, 20) + notices("c1", 22, 20),
        {"calibration": (1.1, "Successful"), "calibration-vs-stable": (0.0, "Successful")},
    ),
}


def rule_name(metric_name: str) -> str:
    return "analysis:" + metric_name.replace("-", "_")


def promtool_scenarios(tmp: Path, scenarios: dict) -> subprocess.CompletedProcess:
    """promtool evaluates every analysis query (as a recording rule) in each scenario and
    compares it with the expected value (within 1e-9; `!= bool` itself for NaN)."""
    rules = {"groups": [{"name": "analysis", "rules": [
        {"record": rule_name(m["name"]), "expr": promql.argo_to_promql(m["provider"]["prometheus"]["query"], ARGS)}
        for _, m in metrics()
    ]}]}
    tests = []
    for title, (series, expected) in scenarios.items():
        checks = []
        for name, (value, _) in expected.items():
            r = rule_name(name)
            if value is None:
                checks.append({"expr": r, "eval_time": "35m", "exp_samples": []})
            elif value == "NaN":
                checks.append({"expr": f"{r} != bool {r}", "eval_time": "35m", "exp_samples": [{"labels": "{}", "value": 1}]})
            else:
                checks.append({"expr": f"abs({r} - {value!r}) < bool 1e-9", "eval_time": "35m", "exp_samples": [{"labels": "{}", "value": 1}]})
        tests.append({"name": title, "interval": "1m",
                      "input_series": [{"series": s, "values": v} for s, v in series], "promql_expr_test": checks})
    (tmp / "analysis.rules.yml").write_text(yaml.safe_dump(rules, sort_keys=False))
    (tmp / "analysis.test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["analysis.rules.yml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    return run([tool("promtool"), "test", "rules", str(tmp / "analysis.test.yml")])


def test_the_queries_measure_what_they_claim_on_made_up_series(tmp_path):
    r = promtool_scenarios(tmp_path, SCENARIOS)
    assert r.returncode == 0, r.stdout + r.stderr
    for title, (_, expected) in SCENARIOS.items():
        for name, (value, want) in expected.items():
            result = [] if value is None else [math.nan if value == "NaN" else value]
            assert phase(metric(name), result) == want, (title, name, value)


def test_the_scenario_check_bites(tmp_path):
    wrong = {"a sick canary, misread": (SCENARIOS["a sick canary"][0], {"error-rate": (0.02, "Failed")})}
    r = promtool_scenarios(tmp_path, wrong)
    assert r.returncode != 0 and "analysis:error_rate" in r.stdout + r.stderr
