"""What every check of deploy/ shares: where the repository and the tools are, the
manifests read as YAML, the metric names ctrbid exports, and a real bidder to start
(conftest.py makes one, with the Kubernetes ConfigMap's config, for the whole session).

The tools come from `make setup-deploy-tools`: hadolint, kubernetes-validate and
promql-parser in .venv, promtool on the PATH or in .venv/bin, the Argo Rollouts models and
TypeScript in .venv/deploy-node (only where npm exists). A missing tool fails its tests
with the command that installs it, except npm's, which are skipped without Node.js."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
NODE_PREFIX = REPO / ".venv" / "deploy-node"
BIN = Path(os.environ.get("CTRBID_BIN", REPO / "target" / "release" / "ctrbid"))
ORT_LIB = REPO / ".ort" / "libonnxruntime.so"

SETUP = "run `make setup-deploy-tools`"

# Kubernetes versions the manifests are validated against: an older release that many
# clusters still run, and the newest kubernetes-validate has the schemas of.
KUBE_VERSIONS = ("1.33.0", "1.37.0")

# The manifests, by the kustomization that applies them.
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_DEPLOYMENT = DEPLOY / "k8s" / "deployment"
ARGO = DEPLOY / "argo"

# Labels the Prometheus scrape config (deploy/prometheus/prometheus.yml) adds to every
# series, besides job and instance.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "node", "rollouts_pod_template_hash", "pod_template_hash"}


def load_yaml_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def tool(name: str) -> str:
    """A command-line tool from .venv/bin or the PATH; fails the test if neither has it."""
    local = VENV_BIN / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found: {SETUP}")
    return found


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# ---------------------------------------------------------------------------------------
# The metric names ctrbid exports

# How ctrbid renders each type (src/metrics.rs): a histogram as _bucket, _sum and _count;
# a summary as its quantiles under the bare name and _count, without _sum.
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_count")}


def names_in_source() -> set[str]:
    """Metric names in src/ (read, never changed): every `ctrbid_...` word, less those
    ending in `_` (prefixes of names built in code), each histogram and summary declared
    by a `# TYPE` line expanded to the series it renders."""
    names: set[str] = set()
    for path in (REPO / "src").rglob("*.rs"):
        text = path.read_text(errors="replace")
        names.update(n for n in re.findall(r"\bctrbid_[a-z0-9_]+", text) if not n.endswith("_"))
        for name, kind in re.findall(r"# TYPE (ctrbid_[a-z0-9_]+) (histogram|summary)", text):
            names.update(name + s for s in SUFFIXES[kind])
    return names


def parse_exposition(text: str) -> dict[str, set[str]]:
    """Series names in Prometheus text, each with the label names it was seen with."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s", line)
        if m:
            labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="', m.group(3) or ""))
            out.setdefault(m.group(1), set()).update(labels)
    return out


# ---------------------------------------------------------------------------------------
# A real bidder


def local_env(config: Path, workdir: Path) -> dict[str, str]:
    """The variables that stand in for the image's and the Secret's here: free ports on
    127.0.0.1, the local library, a temporary event log."""
    return dict(
        CTRBID_CONFIG=str(config),
        CTRBID_LISTEN="127.0.0.1:0",
        CTRBID_ADMIN_LISTEN="127.0.0.1:0",
        CTRBID_EVENTS_DIR=str(workdir / "events"),
        CTRBID_ONNXRUNTIME_LIBRARY=str(ORT_LIB),
        CTRBID_NOTICE_KEY="deploy-tests-notice-key-0123456789abcdef",
        CTRBID_ADMIN_TOKEN="deploy-tests-admin-token",
    )


def clean_environ() -> dict[str, str]:
    """This process's environment without CTRBID_* and ORT_DYLIB_PATH, which would
    change what the bidder under test reads."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CTRBID_") and k != "ORT_DYLIB_PATH"}


class Bidder:
    """`ctrbid serve` with the variables `env` (by default from the repository root with
    the config file `config`), until it says where it listens."""

    def __init__(self, config: Path | None = None, workdir: Path | None = None, *,
                 env: dict[str, str] | None = None, cwd: Path = REPO, binary: Path = BIN):
        env = {**clean_environ(), **(env if env is not None else local_env(config, workdir))}
        self.proc = subprocess.Popen(
            [str(binary), "serve"], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.log: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.log.append(line)
            m = re.search(r"listening on http://(\S+) .*admin http://([^;\s]+)", line)
            if m:
                self.public, self.admin = m.group(1), m.group(2)
                # Keep reading its output, so that the pipe never fills and blocks it.
                threading.Thread(target=lambda: self.log.extend(self.proc.stdout), daemon=True).start()
                return
        self.proc.kill()
        raise RuntimeError("ctrbid serve did not start:\n" + "".join(self.log))

    def get(self, port: str, path: str) -> tuple[int, str]:
        addr = self.admin if port == "admin" else self.public
        try:
            with urllib.request.urlopen(f"http://{addr}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def stop(self) -> float:
        """SIGTERM, then the seconds until the process exits."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        return time.monotonic() - start


def configmap_toml() -> str:
    (cm,) = load_yaml_docs(K8S_BASE / "configmap.yaml")
    return cm["data"]["ctrbid.toml"]


def can_start_bidder() -> str | None:
    """Why a bidder cannot be started here, or None."""
    if not BIN.exists():
        return f"{BIN} is missing (make build)"
    if not ORT_LIB.exists():
        return f"{ORT_LIB} is missing (make setup-ort)"
    return None
