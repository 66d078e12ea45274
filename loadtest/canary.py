"""The canary judge on a simulated day (``make canary``, about 6 minutes): the default
model serves as the incumbent, and beside it, on ``--share`` of the users, a candidate
that is either the same model predicting ``--scale`` times its click probability
("hot") or the same model under another name ("equal"). ``ctrbid exchange`` plays one
day against the bidder; its clicks are boosted (``--click-boost``) so that a day at a
small share brings the judge enough of them. The report says what the judge decided, at
which look, on what evidence, and what the candidate had spent against the incumbent
over the same time when it decided (the issue's target: a hot candidate is rolled back
before it has spent 5 % of what the incumbent spent; an equal one is neither promoted
nor rolled back).

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
    r"observed/expected clicks ([\d.]+) of the incumbent's \(z (-?[\d.]+)\)"
)


def log(msg: str) -> None:
    print(f"[canary] {msg}", file=sys.stderr, flush=True)


def hot_model(source: Path, scale: float, out: Path) -> Path:
    """``source`` with its ``pctr`` output times ``scale`` (at most 1), its version
    marked; everything else (inputs, the spec hash, the conversion head) as it was."""
    m = onnx.load(str(source))
    outputs = [o.name for o in m.graph.output]
    assert "pctr" in outputs, outputs
    for node in m.graph.node:
        node.output[:] = ["pctr_unscaled" if o == "pctr" else o for o in node.output]
    m.graph.initializer.extend([
        helper.make_tensor("pctr_scale", TensorProto.FLOAT, [], [scale]),
        helper.make_tensor("pctr_one", TensorProto.FLOAT, [], [1.0]),
    ])
    m.graph.node.extend([
        helper.make_node("Mul", ["pctr_unscaled", "pctr_scale"], ["pctr_scaled"]),
        helper.make_node("Min", ["pctr_scaled", "pctr_one"], ["pctr"]),
    ])
    for p in m.metadata_props:
        if p.key == "ctrbid.version":
            p.value = f"{p.value}-pctr-x{scale}"
    onnx.checker.check_model(m)
    onnx.save(m, str(out))
    return out


def admin(bidder: Bidder, method: str, path: str) -> tuple[int, str]:
    req = urllib.request.Request(bidder.admin + path, method=method,
                                 headers={"authorization": f"Bearer {ADMIN_TOKEN}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def play(a, name: str, candidate: Path) -> dict:
    """One bidder, the candidate added at ``a.share``, one day of the exchange."""
    out = Path(a.out) / name
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    bidder = Bidder(a.bin, out / "events", out / "bidder.log",
                    ["--catalog", a.catalog, "--admin-token", ADMIN_TOKEN], NOTICE_KEY, a.config)
    try:
        status, body = admin(bidder, "POST", f"/admin/variants/add?name=cand&share={a.share}&path={candidate}")
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
    return {"name": name, "wall_s": wall, "variants": variants, "exchange": xcmd}


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
                       calibration_ratio=float(g[8]), z=float(g[9]))
            out["spend_share"] = out["candidate_usd"] / out["incumbent_usd"] if out["incumbent_usd"] > 0 else None
    # The whole run's results, from the counters (a candidate rolled back stops at its decision).
    tallies = {v["name"]: v["results"] for v in run["variants"]["serving"] + run["variants"]["retired"]}
    out["results"] = tallies
    return out


def report(a, runs: dict) -> str:
    hot, equal = decision_of(runs["hot"]), decision_of(runs["equal"])
    lines = [
        f"# The canary judge on a simulated day ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})",
        "",
        f"`{shlex.join(sys.argv)}`: one day of {a.requests:,} requests at {a.rate:g}/s, click boost "
        f"{a.click_boost:g}, seed {a.seed}; the candidate on {a.share:.0%} of the users.",
        "",
        "| candidate | decision | looks before it | candidate clicks / expected | incumbent clicks / expected "
        "| observed/expected vs incumbent (z) | candidate spend / incumbent spend at the decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, d in (("hot (pCTR x %g)" % a.scale, hot), ("equal (same model)", equal)):
        if d["decision"] and "z" in d:
            lines.append(
                f"| {name} | {d['decision']} | {d['looks_without_decision']} | {d['candidate_clicks']} / "
                f"{d['candidate_expected']:.1f} | {d['incumbent_clicks']} / {d['incumbent_expected']:.1f} | "
                f"{d['calibration_ratio']:.3f} ({d['z']:.2f}) | {d['spend_share']:.2%} |")
        else:
            cand = d["results"].get("cand", {})
            main = d["results"].get("main", {})
            share = cand.get("spend_usd", 0) / main["spend_usd"] if main.get("spend_usd") else float("nan")
            lines.append(f"| {name} | none | {d['looks_without_decision']} | {cand.get('clicks')} / "
                         f"{cand.get('won_pctr', 0):.1f} | {main.get('clicks')} / {main.get('won_pctr', 0):.1f} | | "
                         f"{share:.2%} over the whole day |")
    hot_ok = hot["decision"] == "rollback" and hot.get("spend_share") is not None and hot["spend_share"] < 0.05
    equal_ok = equal["decision"] is None
    lines += [
        "",
        f"Target: the hot candidate rolled back before it spent 5 % of the incumbent's spend over the same time: "
        f"**{'met' if hot_ok else 'not met'}**; the equal one neither promoted nor rolled back: "
        f"**{'met' if equal_ok else 'not met'}**.",
        "",
    ]
    return "\n".join(lines)


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
    a = p.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    hot = hot_model(ROOT / a.model, a.scale, out / "hot.onnx")
    runs = {"hot": play(a, "hot", hot.resolve()), "equal": play(a, "equal", (ROOT / a.model).resolve())}
    text = report(a, runs)
    (out / "report.md").write_text(text)
    (out / "runs.json").write_text(json.dumps({k: decision_of(v) for k, v in runs.items()}, indent=2) + "\n")
    print(text)


if __name__ == "__main__":
    main()
