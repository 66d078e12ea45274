"""deploy/k8s and the Kubernetes half of deploy/argo: every manifest against the
Kubernetes API's schemas (kubernetes-validate, strict: an unknown field is an error) for
each of KUBE_VERSIONS; the kustomizations; and what the manifests promise about the
bidder, checked against the bidder itself: the ConfigMap's config loads, the probes'
paths answer on the admin port, the variables are `ctrbid serve`'s, and SIGTERM drains
within the pod's grace period."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import time
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from support import (
    ARGO,
    BIN,
    DEPLOY,
    K8S_BASE,
    K8S_DEPLOYMENT,
    KUBE_VERSIONS,
    REPO,
    Bidder,
    can_start_bidder,
    clean_environ,
    configmap_toml,
    load_yaml_docs,
    local_env,
)
from test_dockerfile import unknown_variables

ARGO_KINDS = {"Rollout", "AnalysisTemplate"}


def manifests() -> list[Path]:
    return sorted(
        p
        for p in [*(DEPLOY / "k8s").rglob("*.yaml"), *ARGO.glob("*.yaml")]
        if p.name != "kustomization.yaml"
    )


def kubernetes_objects() -> list[tuple[str, dict]]:
    """(where, object) of every core Kubernetes object, the Rollout's pod template among
    them (as a v1 PodTemplate; the Argo objects themselves are checked in test_argo.py)."""
    out = []
    for path in manifests():
        for doc in load_yaml_docs(path):
            rel = path.relative_to(REPO).as_posix()
            if doc["kind"] == "Rollout":
                out.append((rel + " (pod template)", {"apiVersion": "v1", "kind": "PodTemplate",
                                                      "metadata": {"name": "rollout"}, "template": doc["spec"]["template"]}))
            elif doc["kind"] not in ARGO_KINDS:
                out.append((rel, doc))
    return out


def validate(doc: dict, version: str) -> str | None:
    """kubernetes-validate's complaint about `doc`, strict, or None."""
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{'/'.join(map(str, e.path))}: {e.message}"
    return None


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_manifest_is_valid_kubernetes(version):
    objects = kubernetes_objects()
    assert len(objects) >= 10
    problems = [f"{where} {doc['kind']}: {err}" for where, doc in objects if (err := validate(doc, version))]
    assert not problems, "\n".join(problems)


def deployment() -> dict:
    (d,) = load_yaml_docs(K8S_DEPLOYMENT / "deployment.yaml")
    return d


def rollout() -> dict:
    (r,) = load_yaml_docs(ARGO / "rollout.yaml")
    return r


def test_kubernetes_validate_refuses_broken_copies():
    version = KUBE_VERSIONS[-1]
    unknown = deployment()
    unknown["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = []
    assert "readinessProbes" in (validate(unknown, version) or "")
    wrong_type = deployment()
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "fifteen"
    assert validate(wrong_type, version)
    misplaced = deployment()
    misplaced["spec"]["terminationGracePeriodSeconds"] = 15  # belongs to the pod spec
    assert validate(misplaced, version)


# --- kustomize -------------------------------------------------------------------------------


def kustomize(folder: Path) -> list[dict]:
    """The objects `kubectl apply -k folder` applies: these kustomizations only list
    resources (no patches, prefixes or generators), so the objects are the resources'."""
    k = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(k) <= {"apiVersion", "kind", "resources"}, f"{folder}: only resources are rendered here"
    out = []
    for res in k["resources"]:
        path = (folder / res).resolve()
        assert path.exists(), f"{folder}/kustomization.yaml: {res} does not exist"
        out.extend(kustomize(path) if path.is_dir() else load_yaml_docs(path))
    return out


OVERLAYS = [K8S_DEPLOYMENT, ARGO]


@pytest.mark.parametrize("folder", OVERLAYS, ids=lambda p: p.relative_to(REPO).as_posix())
def test_a_kustomization_applies_each_object_once(folder):
    objects = kustomize(folder)
    keys = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(keys) == len(set(keys)), keys
    assert not any("namespace" in o["metadata"] for o in objects), "namespace-agnostic: apply with -n"
    kinds = {k for k, _ in keys}
    assert {"ConfigMap", "Service", "NetworkPolicy", "PodDisruptionBudget", "HorizontalPodAutoscaler"} <= kinds
    assert "Secret" not in kinds, "the Secret is a template, never applied as it is"
    workloads = kinds & {"Deployment", "Rollout"}
    assert len(workloads) == 1, workloads
    if shutil.which("kubectl"):
        r = subprocess.run(["kubectl", "kustomize", str(folder)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        canon = lambda docs: sorted(json.dumps(d, sort_keys=True) for d in docs)  # noqa: E731
        assert canon(yaml.safe_load_all(r.stdout)) == canon(objects)


def test_every_manifest_is_applied_by_a_kustomization_or_is_a_template():
    applied = set()
    for folder in [K8S_BASE, *OVERLAYS]:
        k = yaml.safe_load((folder / "kustomization.yaml").read_text())
        applied |= {(folder / r).resolve() for r in k["resources"]}
    for path in manifests():
        assert path.resolve() in applied or path.name.endswith(".example.yaml"), f"{path} is in no kustomization"


# --- the pod template -------------------------------------------------------------------------


# Each names its model variant after the pod-template hash its controller labels the pod
# with; the one line where the two pod templates differ.
VARIANT_LABEL = {"Rollout": "rollouts-pod-template-hash", "Deployment": "pod-template-hash"}


def variant_name_source(obj: dict) -> str:
    (c,) = obj["spec"]["template"]["spec"]["containers"]
    (env,) = [e for e in c["env"] if e["name"] == "CTRBID_VARIANT_NAME"]
    return env["valueFrom"]["fieldRef"]["fieldPath"]


def test_the_rollout_and_the_deployment_share_one_pod_template():
    as_deployment = json.loads(json.dumps(rollout()["spec"]["template"]).replace(
        VARIANT_LABEL["Rollout"], VARIANT_LABEL["Deployment"]))
    assert as_deployment == deployment()["spec"]["template"]
    assert rollout()["spec"]["selector"] == deployment()["spec"]["selector"]


def test_each_release_names_its_variant_after_its_pod_template_hash():
    for obj in (rollout(), deployment()):
        assert variant_name_source(obj) == f"metadata.labels['{VARIANT_LABEL[obj['kind']]}']", obj["kind"]


def pod() -> dict:
    return deployment()["spec"]["template"]


def container() -> dict:
    (c,) = pod()["spec"]["containers"]
    return c


def named_port(name: str) -> int:
    return next(p["containerPort"] for p in container()["ports"] if p["name"] == name)


def test_the_autoscaler_owns_the_replica_count():
    for workload in (deployment(), rollout()):
        assert "replicas" not in workload["spec"], "a replicas field would reset the autoscaler's count at every apply"
    for path, kind in ((K8S_DEPLOYMENT / "hpa.yaml", "Deployment"), (ARGO / "hpa.yaml", "Rollout")):
        (hpa,) = load_yaml_docs(path)
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"]["kind"] == kind
        assert hpa["spec"]["scaleTargetRef"]["name"] == deployment()["metadata"]["name"]
        (metric,) = hpa["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"


def test_selectors_match_the_pods():
    labels = pod()["metadata"]["labels"]
    (pdb,) = load_yaml_docs(K8S_BASE / "pdb.yaml")
    (svc,) = load_yaml_docs(K8S_BASE / "service.yaml")
    (netpol,) = load_yaml_docs(K8S_BASE / "networkpolicy.yaml")
    for selector in (
        deployment()["spec"]["selector"]["matchLabels"],
        pdb["spec"]["selector"]["matchLabels"],
        svc["spec"]["selector"],
        netpol["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items(), selector


def test_the_service_carries_the_public_port_only():
    (svc,) = load_yaml_docs(K8S_BASE / "service.yaml")
    (port,) = svc["spec"]["ports"]
    assert port["targetPort"] == "http" and named_port("http") == 8080


def test_the_admin_port_is_open_to_prometheus_only():
    (netpol,) = load_yaml_docs(K8S_BASE / "networkpolicy.yaml")
    assert netpol["spec"]["policyTypes"] == ["Ingress"]
    rules = netpol["spec"]["ingress"]
    by_port = {p["port"]: rule for rule in rules for p in rule["ports"]}
    assert set(by_port) == {"http", "admin"}
    assert "from" not in by_port["http"], "bids and notices come from anywhere"
    (peer,) = by_port["admin"]["from"]
    assert peer["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    assert peer["namespaceSelector"] == {}, "Prometheus may run in another namespace"
    assert {named_port("admin"), named_port("http")} == {9090, 8080}
    # Prometheus scrapes the admin port the annotations name.
    ann = pod()["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true"
    assert int(ann["prometheus.io/port"]) == named_port("admin")


def test_probes_ask_the_admin_port():
    c = container()
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}


def test_probe_and_scrape_paths_answer_on_a_bidders_admin_port(bidder):
    c = container()
    for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
        status, body = bidder.get("admin", c[probe]["httpGet"]["path"])
        assert status == 200, (probe, status, body)
    status, body = bidder.get("admin", pod()["metadata"]["annotations"]["prometheus.io/path"])
    assert status == 200 and "ctrbid_requests_total" in body
    # ... and not on the public port.
    assert bidder.get("public", "/readyz")[0] == 404


def test_resources_give_the_guaranteed_class():
    r = container()["resources"]
    assert r["requests"] == r["limits"], "requests equal to limits: Guaranteed QoS"
    assert float(r["limits"]["cpu"]).is_integer(), "whole CPUs, which the static CPU manager can pin"


def test_the_container_runs_locked_down():
    sc = container()["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod()["spec"]["securityContext"]["runAsNonRoot"]
    writable = {m["mountPath"] for m in container()["volumeMounts"] if not m.get("readOnly")}
    events_dir = tomllib.loads(configmap_toml())["events"]["dir"]
    assert any(events_dir == w or events_dir.startswith(w + "/") for w in writable), (events_dir, writable)


# --- variables and secrets ----------------------------------------------------------------------


def test_the_environment_names_only_serve_variables():
    names = [e["name"] for e in container()["env"]]
    assert not unknown_variables(names), unknown_variables(names)


def test_the_secrets_come_from_the_secret_the_template_describes():
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container()["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert set(refs) == {"CTRBID_ADMIN_TOKEN", "CTRBID_NOTICE_KEY"}
    (secret,) = load_yaml_docs(K8S_BASE / "secret.example.yaml")
    for ref in refs.values():
        assert ref["name"] == secret["metadata"]["name"]
        assert ref["key"] in secret["stringData"]
        assert not ref.get("optional"), "a missing Secret must stop the pod, not start it without its key"
    for value in secret["stringData"].values():
        assert value.startswith("REPLACE-ME"), "placeholders, clearly marked"
    assert "TEMPLATE, NOT A SECRET" in (K8S_BASE / "secret.example.yaml").read_text()


# --- the drain ----------------------------------------------------------------------------------


def drain_settings() -> tuple[float, float, float, int]:
    """(preStop sleep s, drain_delay s, grace_period s, terminationGracePeriodSeconds)."""
    server = tomllib.loads(configmap_toml())["server"]
    command = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", "a tool the image has (coreutils)"
    return (
        float(command[1]),
        server["drain_delay_ms"] / 1000,
        server["grace_period_ms"] / 1000,
        pod()["spec"]["terminationGracePeriodSeconds"],
    )


def grace_period_fits(pre_stop: float, drain: float, grace: float, termination: int) -> bool:
    """The kubelet's grace period counts from the start of preStop: it must cover the
    sleep, the drain delay and the grace period, with 3 s or more for saving state and
    exiting, and not keep a dead pod around for long."""
    worst = pre_stop + drain + grace
    return worst + 3 <= termination <= worst + 30


def test_the_grace_period_covers_prestop_drain_and_grace():
    assert grace_period_fits(*drain_settings()), drain_settings()


def test_a_bidder_drains_within_the_grace_period(tmp_path):
    why = can_start_bidder()
    if why:
        pytest.skip(why)
    _, drain, grace, _ = drain_settings()
    config = tmp_path / "ctrbid.toml"
    config.write_text(configmap_toml())
    b = Bidder(config, tmp_path)
    assert b.get("admin", "/readyz")[0] == 200
    start = time.monotonic()
    b.proc.send_signal(15)
    # Not ready as soon as the signal is handled, while the listener still takes
    # connections: within the first half of the drain delay.
    seen = None
    while time.monotonic() - start < drain / 2:
        seen = b.get("admin", "/readyz")
        if seen[0] != 200:
            break
        time.sleep(0.02)
    assert seen and seen[0] == 503 and "draining" in seen[1], seen
    assert b.get("public", "/healthz")[0] == 404, "the public port still answers during the drain"
    b.proc.wait(timeout=drain + grace + 10)
    took = time.monotonic() - start
    assert drain * 0.9 <= took <= drain + grace + 1, took


def test_a_bad_key_in_the_configmap_stops_the_bidder(tmp_path):
    """The check bites: the bidder refuses a config with an unknown key, naming it."""
    why = can_start_bidder()
    if why:
        pytest.skip(why)
    config = tmp_path / "ctrbid.toml"
    config.write_text(configmap_toml().replace("drain_delay_ms", "drain_delay"))
    env = {**clean_environ(), **local_env(config, tmp_path)}
    r = subprocess.run([str(BIN), "serve"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "drain_delay" in r.stdout + r.stderr, r.stdout + r.stderr


def test_the_configmap_is_what_the_bidder_serves_with(bidder):
    """The session's bidder was started with the ConfigMap's file: it is ready, and
    serves the model the file names."""
    status, body = bidder.get("admin", "/admin/status")
    assert status == 200, body
    status_json = json.loads(body)
    model = tomllib.loads(configmap_toml())["model"]["path"]
    assert model in json.dumps(status_json), status_json
    assert bidder.get("admin", "/readyz")[0] == 200


def test_broken_copies_of_the_pod_template_fail_these_checks():
    """The pod checks above bite: a template whose env names a variable serve does not
    read, or whose grace period is shorter than the drain, is caught."""
    c = copy.deepcopy(container())
    c["env"].append({"name": "CTRBID_ADMIN_PORT", "value": "9090"})
    assert unknown_variables(e["name"] for e in c["env"]) == ["CTRBID_ADMIN_PORT"]
    pre_stop, drain, grace, _ = drain_settings()
    assert not grace_period_fits(pre_stop, drain, grace, 5)
    assert not grace_period_fits(pre_stop, drain, grace + 60, 15)
