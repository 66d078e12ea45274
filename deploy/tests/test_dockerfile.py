"""deploy/Dockerfile without a container engine (none runs here): hadolint, what each
COPY takes from the build context and whether .dockerignore lets it in, that the build
stage's files are enough for cargo, that its environment names real `ctrbid serve`
variables, and its HEALTHCHECK command run against a real bidder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import dockerfile as df
from support import (
    BIN,
    DEPLOY,
    K8S_DEPLOYMENT,
    ORT_LIB,
    REPO,
    Bidder,
    can_start_bidder,
    clean_environ,
    configmap_toml,
    load_yaml_docs,
    run,
    tool,
)

DOCKERFILE = DEPLOY / "Dockerfile"
TEXT = DOCKERFILE.read_text()
STAGES = df.stages(TEXT)
RUNTIME = STAGES[-1]
ARGS = {**df.global_args(TEXT), **df.stage_args(RUNTIME)}
IGNORE = df.DockerIgnore((REPO / ".dockerignore").read_text())


def serve_variables() -> set[str]:
    """The environment variables `ctrbid serve` reads: its flags' `env = "CTRBID_..."`
    (src/cli/serve.rs, read only)."""
    return set(re.findall(r'env = "(CTRBID_[A-Z0-9_]+)"', (REPO / "src" / "cli" / "serve.rs").read_text()))


def unknown_variables(names) -> list[str]:
    known = serve_variables()
    return sorted(n for n in names if n not in known)


def hadolint(path: Path) -> subprocess.CompletedProcess:
    return run([tool("hadolint"), "--no-color", str(path)])


# --- lint -------------------------------------------------------------------------------


def test_hadolint_finds_nothing():
    r = hadolint(DOCKERFILE)
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_hadolint_refuses_a_broken_copy(tmp_path):
    broken = tmp_path / "Dockerfile"
    broken.write_text(TEXT.replace("FROM debian:${DEBIAN_RELEASE}-slim", "FROM debian:latest\nRUN apt-get install -y curl"))
    r = hadolint(broken)
    assert r.returncode != 0
    for rule in ("DL3007", "DL3008", "DL3015"):  # :latest, unpinned apt package, no --no-install-recommends
        assert rule in r.stdout, r.stdout


# --- the build context --------------------------------------------------------------------


def context_sources() -> list[str]:
    return [s for stage in STAGES for frm, srcs, _ in df.copies(stage) if frm is None for s in srcs]


def test_every_copy_source_exists_and_is_in_the_build_context():
    sources = context_sources()
    assert sources
    for src in sources:
        path = REPO / src
        assert path.exists(), f"COPY {src}: not in the repository"
        files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        assert files, src
        for f in files:
            rel = f.relative_to(REPO).as_posix()
            assert not IGNORE.excluded(rel), f"COPY {src}: .dockerignore leaves {rel} out"


def test_the_build_context_is_small_and_holds_nothing_else():
    context = IGNORE.context(REPO)
    allowed = tuple(s if (REPO / s).is_file() else s.rstrip("/") + "/" for s in context_sources())
    stray = [c for c in context if not c.startswith(allowed)]
    assert not stray, f".dockerignore lets in what no COPY takes: {stray[:10]}"
    size = sum((REPO / c).stat().st_size for c in context)
    assert size < 30e6, f"the build context is {size / 1e6:.0f} MB"
    for big in ("target", ".venv", "data", ".ort", ".git", "tests", "fuzz", "loadtest"):
        assert IGNORE.excluded(big + "/x"), big


def test_the_dockerignore_reader_bites():
    rules = df.DockerIgnore("*\n!src/\n!models/default/model.onnx\n**/__pycache__\n")
    assert not rules.excluded("src/main.rs")
    assert rules.excluded("src/__pycache__/x.pyc")
    assert rules.excluded("models/default/model.pt")
    assert not rules.excluded("models/default/model.onnx")
    assert rules.excluded("target/release/ctrbid")


def build_context_copy(dest: Path, leave_out: str | None = None) -> None:
    """What the build stage copies, into `dest`."""
    for frm, srcs, _ in df.copies(STAGES[0]):
        for src in srcs:
            if src == leave_out:
                continue
            s = REPO / src
            if s.is_dir():
                shutil.copytree(s, dest / src, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy(s, dest / src)


def cargo_fetch(where: Path) -> subprocess.CompletedProcess:
    # `cargo fetch --locked` reads the manifest as `cargo build --locked` does (every
    # target's file must exist, Cargo.lock must match Cargo.toml) without compiling;
    # --offline: the crates are in the local registry since `make build`.
    return run(["cargo", "fetch", "--offline", "--locked"], cwd=where)


def test_the_build_stage_has_what_cargo_build_locked_reads(tmp_path):
    if not shutil.which("cargo"):
        pytest.skip("cargo is not on the PATH")
    build = STAGES[0]
    (cmd,) = [i.args for i in build.instructions if i.keyword == "RUN"]
    assert "cargo build --release --locked --bin ctrbid" in cmd
    build_context_copy(tmp_path)
    r = cargo_fetch(tmp_path)
    # A crate missing from the local registry is this machine's state, not the image's;
    # a lock file that does not match Cargo.toml ("--locked was passed") is a failure.
    if r.returncode != 0 and "offline" in r.stderr and "--locked was passed" not in r.stderr:
        pytest.skip("some crates are not in the local registry yet (run `cargo build` and `cargo test` first)")
    assert r.returncode == 0, r.stderr


def test_without_benches_cargo_refuses_the_manifest(tmp_path):
    if not shutil.which("cargo"):
        pytest.skip("cargo is not on the PATH")
    build_context_copy(tmp_path, leave_out="benches")
    r = cargo_fetch(tmp_path)
    assert r.returncode != 0 and "bench" in r.stderr, r.stderr


def test_rust_image_is_at_least_the_crates_rust_version():
    need = tomllib.loads((REPO / "Cargo.toml").read_text())["package"]["rust-version"]
    have = ARGS["RUST_VERSION"]
    assert tuple(map(int, have.split("."))) >= tuple(map(int, need.split(".")[:2])), (have, need)


# --- ONNX Runtime ---------------------------------------------------------------------------


def test_onnxruntime_is_the_version_make_setup_ort_installs():
    make = re.search(r"^ORT_VERSION\s*:=\s*(\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    pinned = re.search(r"^onnxruntime==(\S+)", (DEPLOY / "onnxruntime.txt").read_text(), re.M).group(1)
    assert ARGS["ORT_VERSION"] == pinned == make
    hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", (DEPLOY / "onnxruntime.txt").read_text())
    assert len(hashes) >= 1
    (ort,) = [s for s in STAGES if s.name == "onnxruntime"]
    (cmd,) = [i.args for i in ort.instructions if i.keyword == "RUN"]
    assert "--require-hashes" in cmd and "--no-deps" in cmd


def test_the_library_lands_where_the_environment_points():
    (lib,) = [dest for frm, _, dest in df.copies(RUNTIME) if frm == "onnxruntime"]
    assert df.expand(df.env(RUNTIME)["CTRBID_ONNXRUNTIME_LIBRARY"], ARGS) == df.expand(lib, ARGS)


# --- the runtime image --------------------------------------------------------------------------


def image_files() -> set[str]:
    """Absolute paths of the files the runtime stage copies in."""
    workdir = next(i.args for i in RUNTIME.instructions if i.keyword == "WORKDIR")
    out = set()
    for _, srcs, dest in df.copies(RUNTIME):
        dest = df.expand(dest, ARGS)
        into_folder = len(srcs) > 1 or dest.endswith("/")
        dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
        for s in srcs:
            out.add(os.path.join(dest, os.path.basename(s)) if into_folder else dest)
    return {os.path.normpath(p) for p in out}


def test_the_configured_model_spec_and_catalog_are_in_the_image():
    workdir = next(i.args for i in RUNTIME.instructions if i.keyword == "WORKDIR")
    files = image_files()
    model = tomllib.loads((DEPLOY / "ctrbid.toml").read_text())["model"]
    for key in ("path", "spec", "catalog"):
        assert os.path.normpath(os.path.join(workdir, model[key])) in files, (key, files)
    # The ConfigMap points at the same files.
    model = tomllib.loads(configmap_toml())["model"]
    for key in ("path", "spec", "catalog"):
        assert os.path.normpath(os.path.join(workdir, model[key])) in files
    env = df.env(RUNTIME)
    assert env["CTRBID_CONFIG"] in files


def test_the_environment_names_only_serve_variables():
    assert not unknown_variables(df.env(RUNTIME)), unknown_variables(df.env(RUNTIME))
    assert unknown_variables(["CTRBID_LISTEN", "CTRBID_LISTEN_ADDR"]) == ["CTRBID_LISTEN_ADDR"]


def test_ports_user_and_stop_signal_agree_with_the_manifests():
    env = df.env(RUNTIME)
    exposed = {int(p.split("/")[0]) for i in RUNTIME.instructions if i.keyword == "EXPOSE" for p in i.args.split()}
    listen = {int(env["CTRBID_LISTEN"].rsplit(":", 1)[1]), int(env["CTRBID_ADMIN_LISTEN"].rsplit(":", 1)[1])}
    assert exposed == listen == {8080, 9090}
    (deployment,) = load_yaml_docs(K8S_DEPLOYMENT / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert {p["containerPort"] for p in container["ports"]} == exposed
    user = next(i.args for i in RUNTIME.instructions if i.keyword == "USER")
    assert user == f'{pod["securityContext"]["runAsUser"]}:{pod["securityContext"]["runAsGroup"]}'
    assert next(i.args for i in RUNTIME.instructions if i.keyword == "STOPSIGNAL") == "SIGTERM"
    # The drain of the config the image bakes ends within `docker stop`'s default 10 s.
    server = tomllib.loads((DEPLOY / "ctrbid.toml").read_text())["server"]
    assert (server["drain_delay_ms"] + server["grace_period_ms"]) / 1000 < 10


def healthcheck_command() -> list[str]:
    (hc,) = [i.args for i in RUNTIME.instructions if i.keyword == "HEALTHCHECK"]
    return df.exec_form(hc.split("CMD", 1)[1].strip())


def test_the_healthcheck_asks_a_bidders_admin_port(bidder):
    cmd = healthcheck_command()
    port = bidder.admin.rsplit(":", 1)[1]
    ok = subprocess.run(cmd, env={**os.environ, "CTRBID_ADMIN_LISTEN": f"0.0.0.0:{port}"}, capture_output=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    # A port nobody listens on: unhealthy.
    closed = subprocess.run(cmd, env={**os.environ, "CTRBID_ADMIN_LISTEN": "0.0.0.0:1"}, capture_output=True, timeout=10)
    assert closed.returncode != 0


def image_layout(root: Path) -> None:
    """The runtime stage's files, laid out under `root` as the image would hold them:
    the context's files copied, the build stage's binary and the onnxruntime stage's
    library taken from this checkout (`make build`, `make setup-ort`: the same library,
    from the same wheel)."""
    workdir = next(i.args for i in RUNTIME.instructions if i.keyword == "WORKDIR")
    built = {"build": BIN, "onnxruntime": ORT_LIB}
    for frm, srcs, dest in df.copies(RUNTIME):
        dest = df.expand(dest, ARGS)
        into_folder = len(srcs) > 1 or dest.endswith("/")
        dest = dest if dest.startswith("/") else os.path.join(workdir, dest)
        for s in srcs:
            target = root / (os.path.join(dest, os.path.basename(s)) if into_folder else dest).lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if frm is None:
                shutil.copy(REPO / s, target)
            else:
                target.symlink_to(built[frm])


def image_env(root: Path) -> dict[str, str]:
    """The image's environment, its paths under `root`."""
    return {k: str(root / v.lstrip("/")) if v.startswith("/") else v for k, v in
            ((k, df.expand(v, ARGS)) for k, v in df.env(RUNTIME).items())}


def test_the_image_layout_and_environment_start_a_bidder(tmp_path):
    """What the image would run, without an engine: its files where it puts them, its
    environment, its working directory and its baked config. Only the ports differ (free
    ones on 127.0.0.1 here), and the notice key, which is given at run time."""
    why = can_start_bidder()
    if why:
        pytest.skip(why)
    root = tmp_path / "image"
    image_layout(root)
    env = image_env(root)
    workdir = root / next(i.args for i in RUNTIME.instructions if i.keyword == "WORKDIR").lstrip("/")
    binary = root / "usr/local/bin/ctrbid"
    # As the image has it, listening on 0.0.0.0: start-up refuses without the URL
    # exchanges reach the bidder at.
    refused = subprocess.run([str(binary), "serve"], cwd=workdir, env={**clean_environ(), **env},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "notice_base_url" in refused.stdout + refused.stderr
    env.update(CTRBID_LISTEN="127.0.0.1:0", CTRBID_ADMIN_LISTEN="127.0.0.1:0",
               CTRBID_NOTICE_KEY="deploy-tests-notice-key-0123456789abcdef")
    b = Bidder(env=env, cwd=workdir, binary=binary)
    try:
        assert b.get("admin", "/readyz")[0] == 200
        status = b.get("admin", "/admin/status")[1]
        assert "models/default/model.onnx" in status
    finally:
        b.stop()
