"""The canary judge on simulated days (``make canary``, about 8 minutes), three of them:

- **hot**: the default model serves as the incumbent and, on ``--share`` of the users, a
  candidate that is the same model predicting ``--scale`` times its click probability;
- **equal**: the same, the candidate the same model under another name;
- **better**: the incumbent is the default model blinded by noise (``--noise``: each
  row's logit moved by a uniform draw of that standard deviation, keyed by the row, so
  it ranks and prices worse and wins most where its noise runs high), and the
  candidate, on ``--better-share`` of the users, is the default model itself.

``ctrbid exchange`` plays one day against the bidder each time; its clicks are boosted
(``--click-boost``) so that a day at a small share brings the judge enough of them. The
report says what the judge decided, at which look, on what evidence, and what the
candidate had spent against the incumbent over the same time when it decided (the
issue's targets: a hot candidate is rolled back before it has spent 5 % of what the
incumbent spent; a genuinely better one is promoted; an equal one is neither).

    .venv/bin/python loadtest/canary.py --out target/canary
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "models"))
from ctrbid_train.bidder import Bidder  # noqa: E402

NOTICE_KEY = "canary-notice-key-0123456789abcdef-0123456"
ADMIN_TOKEN = "canary-admin-token-0123456789"
# What the judge writes in a decision's log line (src/variants/judge.rs, Evidence).
EVIDENCE = re.compile(
    r"candidate (\d+) wins, (\d+) clicks, ([\d.]+) expected, ([\d.]+) USD; "
    r"incumbent (\d+) wins, (\d+) clicks, ([\d.]+) expected, ([\d.]+) USD; "
    r"observed/expected clicks ([\d.]+) of the incumbent's \(z (-?[\d.]+)\), "
    r"clicks per USD ([\d.]+) of its \(z (-?[\d.]+)\)"
)


def log(msg: str) -> None:
    print(f"[canary] {msg}", file=sys.stderr, flush=True)


def _detach_pctr(source: Path, name: str) -> onnx.ModelProto:
    """``source`` with the node output ``pctr`` renamed ``name``: the caller computes
    ``pctr`` from it."""
    m = onnx.load(str(source))
    outputs = [o.name for o in m.graph.output]
    assert "pctr" in outputs, outputs
    for node in m.graph.node:
        node.output[:] = [name if o == "pctr" else o for o in node.output]
    return m


def _save(m: onnx.ModelProto, version_suffix: str, out: Path) -> Path:
    """Checks and writes ``m``, its ``ctrbid.version`` marked with ``version_suffix``."""
    for p in m.metadata_props:
        if p.key == "ctrbid.version":
            p.value = f"{p.value}-{version_suffix}"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def hot_model(source: Path, scale: float, out: Path) -> Path:
    """``source`` with its ``pctr`` output times ``scale`` (at most 1), its version
    marked; everything else (inputs, the spec hash, the conversion head) as it was."""
    m = _detach_pctr(source, "pctr_unscaled")
    m.graph.initializer.extend([
        helper.make_tensor("pctr_scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("pctr_one", TensorProto.FLOAT, [], [1.0]),
    ])
    m.graph.node.extend([
        helper.make_node("Mul", ["pctr_unscaled", "pctr_scale"], ["pctr_scaled"]),
        helper.make_node("Min", ["pctr_scaled", "pctr_one"], ["pctr"]),
    ])
    return _save(m, f"pctr-x{scale}", out)


def noisy_model(source: Path, noise: float, out: Path) -> Path:
    """``source`` with each row's ``pctr`` logit moved by ``noise`` x a uniform draw of
    unit variance, the draw a hash of the row's ``cat`` inputs (so a row always gets the
    same one): a model no better than ``source`` anywhere and worse on average, still
    calibrated near enough over all rows. Its version marked; the rest as it was."""
    m = _detach_pctr(source, "pctr_clean")
    width = next(i for i in m.graph.input if i.name == "cat").type.tensor_type.shape.dim[1].dim_value
    rank = len(next(o for o in m.graph.output if o.name == "pctr").type.tensor_type.shape.dim)
    # Weights of the row hash: fixed, irrational-looking, one per cat column.
    weights = [((k + 1) * 0.6180339887) % 1.0 + 0.1 for k in range(width)]
    consts = {
        "noise_w": ([width, 1], weights), "noise_k": ([], [43758.5453]), "noise_half": ([], [0.5]),
        "noise_scale": ([], [noise * 12 ** 0.5]), "noise_lo": ([], [1e-7]), "noise_hi": ([], [1 - 1e-7]),
        "noise_one": ([], [1.0]),
    }
    m.graph.initializer.extend(helper.make_tensor(n, TensorProto.FLOAT, d, v) for n, (d, v) in consts.items())
    m.graph.initializer.append(helper.make_tensor("noise_shape", TensorProto.INT64, [1], [-1]))
    n = helper.make_node
    m.graph.node.extend([
        # u = frac(sin(cat . w) x k), uniform enough on [0, 1); centred and scaled.
        n("Cast", ["cat"], ["noise_cat"], to=TensorProto.FLOAT),
        n("MatMul", ["noise_cat", "noise_w"], ["noise_dot"]),
        n("Sin", ["noise_dot"], ["noise_sin"]),
        n("Mul", ["noise_sin", "noise_k"], ["noise_big"]),
        n("Floor", ["noise_big"], ["noise_floor"]),
        n("Sub", ["noise_big", "noise_floor"], ["noise_u"]),
        n("Sub", ["noise_u", "noise_half"], ["noise_c"]),
        n("Mul", ["noise_c", "noise_scale"], ["noise_2d"]),
        # The draw in pctr's shape ([N] or [N, 1]).
        *([n("Reshape", ["noise_2d", "noise_shape"], ["noise"])] if rank == 1 else
          [n("Identity", ["noise_2d"], ["noise"])]),
        # pctr = sigmoid(logit(clip(p)) + noise)
        n("Clip", ["pctr_clean", "noise_lo", "noise_hi"], ["noise_p"]),
        n("Sub", ["noise_one", "noise_p"], ["noise_q"]),
        n("Div", ["noise_p", "noise_q"], ["noise_odds"]),
        n("Log", ["noise_odds"], ["noise_logit"]),
        n("Add", ["noise_logit", "noise"], ["noise_moved"]),
        n("Sigmoid", ["noise_moved"], ["pctr"]),
    ])
    return _save(m, f"noise-{noise}", out)


def admin(bidder: Bidder, method: str, path: str) -> tuple[int, str]:
    req = urllib.request.Request(bidder.admin + path, method=method,
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def play(a, name: str, incumbent: Path, candidate: Path, share: float) -> dict:
    """One bidder serving ``incumbent``, the candidate added at ``share``, one day of the
    exchange."""
    out = Path(a.out) / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bidder = Bidder(a.bin, out / "events", out / "bidder.log",
                    ["--catalog", a.catalog, "--model", incumbent, "--admin-token", ADMIN_TOKEN], NOTICE_KEY, a.config)
    try:
        status, body = admin(bidder, "POST", f"/admin/variants/add?name=cand&share={share}&path={candidate}")
        if status != 200:
            raise RuntimeError(f"adding the candidate: {status} {body}")
        xcmd = [a.bin, "exchange", "--bidder", bidder.url, "--out", str(out / "exchange"), "--seed", str(a.seed),
                "--requests", str(a.requests), "--days", "1", "--rate", str(a.rate),
                "--click-boost", str(a.click_boost)]
        log(shlex.join(xcmd))
        t0 = time.monotonic()
        with open(out / "exchange.log", "wb") as xlog:
            subprocess.run(xcmd, cwd=ROOT, stdout=xlog, stderr=subprocess.STDOUT, check=True)
        wall = time.monotonic() - t0
        time.sleep(2)  # the judge looks once a second: its last look
        status, body = bidder.get("/admin/variants")
        if status != 200:
            raise RuntimeError(f"/admin/variants: {status} {body}")
        variants = json.loads(body)
    finally:
        bidder.stop()
    (out / "variants.json").write_text(json.dumps(variants, indent=2) + "\n")
    return {"name": name, "wall_s": wall, "variants": variants, "exchange": xcmd, "share": share}


def decision_of(run: dict) -> dict:
    """The judge's decision on the candidate, its look and its evidence."""
    changes = [c for c in run["variants"]["changes"] if c["variant"] == "cand"]
    looks = [c for c in changes if c["action"] == "look"]
    decided = [c for c in changes if c["action"] in ("promote", "rollback")]
    out = {"looks_without_decision": len(looks), "decision": None}
    if decided:
        d = decided[0]
        out["decision"] = d["action"]
        out["detail"] = d["detail"]
        m = EVIDENCE.search(d["detail"])
        if m:
            g = m.groups()
            out.update(candidate_clicks=int(g[1]), candidate_expected=float(g[2]), candidate_usd=float(g[3]),
                       incumbent_clicks=int(g[5]), incumbent_expected=float(g[6]), incumbent_usd=float(g[7]),
                       calibration_ratio=float(g[8]), z=float(g[9]), per_usd_ratio=float(g[10]),
                       per_usd_z=float(g[11]))
            out["spend_share"] = out["candidate_usd"] / out["incumbent_usd"] if out["incumbent_usd"] > 0 else None
    # The whole run's results, from the counters (a candidate rolled back stops at its decision).
    tallies = {v["name"]: v["results"] for v in run["variants"]["serving"] + run["variants"]["retired"]}
    out["results"] = tallies
    return out


def report(a, runs: dict) -> str:
    lines = [
        f"# The canary judge on simulated days ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`{shlex.join(sys.argv)}`: each run one day of {a.requests:,} requests at {a.rate:g}/s, click boost "
        f"{a.click_boost:g}, seed {a.seed}.",
        "",
        "| incumbent | candidate (share of users) | decision | looks before it | candidate clicks / expected "
        "| incumbent clicks / expected | observed/expected vs incumbent (z) | clicks per USD vs incumbent (z) "
        "| candidate spend / incumbent spend at the decision |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    names = {
        "hot": ("default", f"hot: default, pCTR x {a.scale:g}"),
        "equal": ("default", "equal: default, another name"),
        "better": (f"default with logit noise sd {a.noise:g}", "better: default"),
    }
    decided = {}
    for key, run in runs.items():
        d = decided[key] = decision_of(run)
        incumbent, candidate = names[key]
        candidate += f" ({run['share']:.0%})"
        if d["decision"] and "z" in d:
            lines.append(
                f"| {incumbent} | {candidate} | {d['decision']} | {d['looks_without_decision']} | "
                f"{d['candidate_clicks']} / {d['candidate_expected']:.1f} | {d['incumbent_clicks']} / "
                f"{d['incumbent_expected']:.1f} | {d['calibration_ratio']:.3f} ({d['z']:.2f}) | "
                f"{d['per_usd_ratio']:.3f} ({d['per_usd_z']:.2f}) | {d['spend_share']:.2%} |")
        else:
            cand = d["results"].get("cand", {})
            main = d["results"].get("main", {})
            share = cand.get("spend_usd", 0) / main["spend_usd"] if main.get("spend_usd") else float("nan")
            lines.append(f"| {incumbent} | {candidate} | none | {d['looks_without_decision']} | {cand.get('clicks')} / "
                         f"{cand.get('won_pctr', 0):.1f} | {main.get('clicks')} / {main.get('won_pctr', 0):.1f} | | | "
                         f"{share:.2%} over the whole day |")

    def verdict(key: str, ok) -> str:
        return "not run" if key not in decided else ("met" if ok(decided[key]) else "not met")

    hot_ok = verdict("hot", lambda d: d["decision"] == "rollback" and (d.get("spend_share") or 1.0) < 0.05)
    better_ok = verdict("better", lambda d: d["decision"] == "promote")
    equal_ok = verdict("equal", lambda d: d["decision"] is None)
    lines += [
        "",
        f"Targets: the hot candidate rolled back before it spent 5 % of the incumbent's spend over the same time: "
        f"**{hot_ok}**; the better one promoted: **{better_ok}**; the equal one neither promoted nor rolled back: "
        f"**{equal_ok}**.",
        "",
    ]
    return "\n".join(lines), decided


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=str(ROOT / "target/canary"))
    p.add_argument("--bin", default="target/release/ctrbid")
    p.add_argument("--config", default="deploy/ctrbid.toml")
    p.add_argument("--catalog", default="models/default/catalog.json", help="the seed-7 world's catalog")
    p.add_argument("--model", default="models/default/model.onnx", help="the incumbent (as the config serves it)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--requests", type=int, default=200_000)
    p.add_argument("--rate", type=float, default=1500)
    p.add_argument("--share", type=float, default=0.03)
    p.add_argument("--scale", type=float, default=1.3)
    p.add_argument("--click-boost", type=float, default=15)
    p.add_argument("--noise", type=float, default=0.6, help="the better run's incumbent: logit noise sd")
    p.add_argument("--better-share", type=float, default=0.2)
    p.add_argument("--only", choices=["hot", "equal", "better"], action="append", help="run only these")
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    default = (ROOT / a.model).resolve()
    plays = {
        "hot": lambda: play(a, "hot", default, hot_model(default, a.scale, out / "hot.onnx").resolve(), a.share),
        "equal": lambda: play(a, "equal", default, default, a.share),
        "better": lambda: play(a, "better", noisy_model(default, a.noise, out / "noisy.onnx").resolve(), default,
                               a.better_share),
    }
    runs = {k: run() for k, run in plays.items() if not a.only or k in a.only}
    text, decided = report(a, runs)
    (out / "report.md").write_text(text)
    (out / "runs.json").write_text(json.dumps(decided, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
