"""The canary analysis against a real Prometheus scraping two real bidders.

Two `ctrbid serve` processes stand in for a stable and a canary pod: the fixture
incumbent tests/fixtures/models/two_heads.onnx on both, or on the canary
two_heads_hot.onnx (1.3 times the click probability). Each serves its model under its
pod-template hash (--variant-name, as CTRBID_VARIANT_NAME does in deploy/argo/rollout.yaml)
and Prometheus scrapes each with the target labels deploy/prometheus/prometheus.yml's
relabelling gives a Rollout's pod. The canary's notice base URL is the stable bidder's,
so every win and click of the canary's bids is counted by the stable process, as when
the Service sends a notice to another pod: only the variant name tells them apart.
`ctrbid exchange` plays one simulated day against both; then every metric of both
AnalysisTemplates is queried through Prometheus' HTTP API, with the args Argo would pass,
and classified by its own success and failure conditions (test_argo.phase).

Clicks: the simulator's click probabilities are about half the fixture's pCTR (the
fixture reads about 2.05 predicted clicks per click at --click-boost 1, the hot copy
about 2.6), so the exchange multiplies them by CLICK_BOOST = 1.85: the fixture then
reads about 1.1 and the hot copy about 1.4, either side of the calibration band's 1.25,
each on 340 to 560 clicks, above the template's own min-clicks (200), which the test
keeps. With --no-competition half the requests are won. The exchange's draws are seeded
per request; what moves between runs is which bidder wins what under load and pacing:
about 5 % on the hot canary's ratio, 1 % on the fixture's in these runs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

import promql
from support import BIN, ORT_LIB, REPO, VENV_BIN, Bidder, can_start_bidder, run
from test_argo import TEMPLATES, phase

NAMESPACE = "bid"
STABLE_HASH = "5d8c7b9f4"
CANARY_HASH = "7f6b9c58d"
NOTICE_KEY = "analysis-live-notice-key-0123456789abcdef"
MODELS = REPO / "tests" / "fixtures" / "models"
SEED = 7  # the world of `ctrbid simulate --seed 7` and of the exchange
REQUESTS = 24_000
RATE = 1_200.0
CLICK_BOOST = 1.85
SCRAPE_S = 1


def prometheus_binary() -> str | None:
    local = VENV_BIN / "prometheus"
    return str(local) if local.exists() else shutil.which("prometheus")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def wait_for(what: str, check, limit_s: float = 30, every_s: float = 0.2):
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        try:
            got = check()
        except OSError:
            got = None
        if got:
            return got
        time.sleep(every_s)
    pytest.fail(f"timed out waiting for {what}")


class Prometheus:
    """`prometheus` on a free loopback port, scraping `targets` (admin address ->
    rollouts_pod_template_hash) every SCRAPE_S seconds, its TSDB in `work`."""

    def __init__(self, binary: str, work: Path, targets: dict[str, tuple[str, str]]):
        config = {
            "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S}s"},
            "scrape_configs": [{
                "job_name": "ctrbid",
                "static_configs": [
                    {"targets": [addr], "labels": {"namespace": NAMESPACE, "pod": pod, "rollouts_pod_template_hash": h}}
                    for addr, (pod, h) in targets.items()
                ],
            }],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = open(work / "prometheus.log", "w")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
             f"--web.listen-address={self.url.removeprefix('http://')}"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )
        try:
            wait_for("Prometheus to be ready", lambda: self.proc.poll() is None and get(self.url + "/-/ready"))
        except BaseException:
            self.stop()
            raise

    def query(self, promql_text: str) -> tuple[str, list[float]]:
        """(result type, values) of an instant query: a vector's values, or a scalar."""
        body = json.loads(get(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": promql_text})))
        assert body["status"] == "success", body
        data = body["data"]
        if data["resultType"] == "vector":
            return "vector", [float(s["value"][1]) for s in data["result"]]
        if data["resultType"] == "scalar":
            return "scalar", [float(data["result"][1])]
        pytest.fail(f"an analysis query answered a {data['resultType']}: {promql_text}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def bidder_env(work: Path, name: str, model: str, catalog: Path, notice_base_url: str | None = None) -> dict[str, str]:
    env = dict(
        CTRBID_LISTEN="127.0.0.1:0",
        CTRBID_ADMIN_LISTEN="127.0.0.1:0",
        CTRBID_MODEL=str(MODELS / model),
        CTRBID_CATALOG=str(catalog),
        CTRBID_ONNXRUNTIME_LIBRARY=str(ORT_LIB),
        CTRBID_NOTICE_KEY=NOTICE_KEY,
        CTRBID_CLOCK="simulation",
        CTRBID_EVENTS_DIR="none",
        CTRBID_STATE_FILE=str(work / f"{name}-economics.json"),
        CTRBID_VARIANT_NAME=name,
    )
    if notice_base_url:
        env["CTRBID_NOTICE_BASE_URL"] = notice_base_url
    return env


@pytest.fixture(scope="module")
def tools(tmp_path_factory) -> tuple[str, Path]:
    """The Prometheus binary, and the catalog of the exchange's world."""
    why = can_start_bidder()
    if why:
        pytest.skip(why)
    prometheus = prometheus_binary()
    if prometheus is None:
        pytest.skip("no prometheus binary in .venv/bin or on the PATH: run `make setup-deploy-tools`")
    sim = tmp_path_factory.mktemp("world")
    r = run([str(BIN), "simulate", "--seed", str(SEED), "--impressions", "1", "--days", "1", "--out", str(sim)])
    assert r.returncode == 0, r.stderr
    return prometheus, sim / "catalog.json"


def sum_of(bidders: list[Bidder], line_start: str) -> float:
    total = 0.0
    for b in bidders:
        _, text = b.get("admin", "/metrics")
        total += sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines() if l.startswith(line_start))
    return total


def analyse(tools, tmp: Path, canary_model: str) -> dict[str, tuple[list[float], str]]:
    """Runs the exchange against a stable and a canary bidder under Prometheus, and
    returns every analysis metric's (result, phase)."""
    prometheus_bin, catalog = tools
    procs: list = []
    try:
        stable = Bidder(env=bidder_env(tmp, STABLE_HASH, "two_heads.onnx", catalog))
        procs.append(stable)
        canary = Bidder(env=bidder_env(tmp, CANARY_HASH, canary_model, catalog, f"http://{stable.public}"))
        procs.append(canary)
        prom = Prometheus(prometheus_bin, tmp, {
            stable.admin: (f"ctrbid-{STABLE_HASH}-a", STABLE_HASH), canary.admin: (f"ctrbid-{CANARY_HASH}-a", CANARY_HASH),
        })
        procs.append(prom)
        # Both targets scraped twice before any traffic: every counter starts at zero.
        wait_for("two scrapes of both bidders",
                 lambda: len(prom.query('count_over_time(up{job="ctrbid"}[1m]) >= 2')[1]) == 2)
        r = run([str(BIN), "exchange", "--bidder", f"http://{stable.public}", "--bidder", f"http://{canary.public}",
                 "--out", str(tmp / "exchange"), "--seed", str(SEED), "--requests", str(REQUESTS), "--rate", str(RATE),
                 "--days", "1", "--no-competition", "--click-boost", str(CLICK_BOOST), "--tmax-grace-ms", "5000"])
        assert r.returncode == 0, r.stderr
        print(r.stderr.strip().splitlines()[0])
        # Prometheus has the final counts once its last scrape shows every request and click.
        requests = sum_of([stable, canary], "ctrbid_requests_total{")
        clicks = sum_of([stable, canary], "ctrbid_variant_clicks_total{")
        wait_for("Prometheus to scrape the final counts", lambda: (
            prom.query('sum(ctrbid_requests_total{job="ctrbid"})')[1] == [requests]
            and prom.query('sum(ctrbid_variant_clicks_total{job="ctrbid"})')[1] == [clicks]))
        args = {"namespace": NAMESPACE, "canary-hash": CANARY_HASH, "stable-hash": STABLE_HASH,
                "prometheus-address": prom.url}
        out = {}
        for template in TEMPLATES.values():
            defaults = {a["name"]: a["value"] for a in template["spec"]["args"] if "value" in a}
            for m in template["spec"]["metrics"]:
                assert m["provider"]["prometheus"]["address"] == "{{args.prometheus-address}}"
                query = promql.argo_to_promql(m["provider"]["prometheus"]["query"], {**defaults, **args})
                _, result = prom.query(query)
                out[m["name"]] = (result, phase(m, result))
        for variant in (STABLE_HASH, CANARY_HASH):
            sel = f'{{variant="{variant}"}}'
            _, (pctr,) = prom.query(f"sum(ctrbid_variant_won_pctr_sum{sel})")
            _, (n,) = prom.query(f"sum(ctrbid_variant_clicks_total{sel})")
            print(f"{canary_model}: variant {variant}: {n:.0f} clicks, {pctr / n:.3f} predicted per click (totals)")
        for name, (result, verdict) in out.items():
            print(f"{canary_model}: {name} = {result} -> {verdict}")
        return out
    finally:
        # Killed, not drained: the drain is test_k8s's; here it would only cost time.
        for p in reversed(procs):
            if isinstance(p, Prometheus):
                p.stop()
            else:
                p.proc.kill()
                p.proc.wait(timeout=10)


def test_the_calibration_gate_fails_a_hot_canary(tools, tmp_path):
    got = analyse(tools, tmp_path, "two_heads_hot.onnx")
    assert got["calibration"][1] == "Failed", got
    # 1.3 times the predictions is ln 1.3 = 0.26 further from 1 than the stable model, at
    # the failure bound of 0.223 (it fails or is inconclusive, with these clicks).
    assert got["calibration-vs-stable"][1] != "Successful", got
    # The health metrics see a canary that answers as well as stable, and as often with a
    # bid; its p99 (canary over stable, on one busy machine) is only printed.
    for name in ("error-rate", "bid-rate"):
        assert got[name][1] == "Successful", (name, got)


def test_a_canary_serving_the_stable_model_passes_every_metric(tools, tmp_path):
    got = analyse(tools, tmp_path, "two_heads.onnx")
    assert got["calibration"][1] == "Successful", got
    # Every metric but p99: two bidders, Prometheus and the exchange share two cores, so
    # the canary's p99 over stable's is the box's noise (0.54 to 1.31 over seven runs,
    # against a failure bound of 1.5); a CI run must not fail on a busy neighbour. It is
    # printed, and its query is checked on synthetic series in test_argo.py.
    print("p99-latency:", got.get("p99-latency"))
    failed = [name for name, (_, verdict) in got.items() if verdict == "Failed" and name != "p99-latency"]
    assert not failed, got
