"""The score cache under load: the bidder with and without it, on streams with and without repeats.

    .venv/bin/python loadtest/cache.py [scenario]     (or `make loadtest-cache`; about 5 min)

For the scenario (``loadtest/scenarios/repeat/scenario.toml``) and each of its ``mix``
entries, a request stream is written from a ``ctrbid simulate`` corpus: each request is
the next fresh one or, with the mix's shares, re-offers one sent within a window (a new
request id; every other byte the same: the same impression from another SSP, or a page
reload). The stream is longer than a run, so no line is sent twice unless the mix
repeats it (a cycled corpus would be a repetition no exchange sends). Warm-up uses fresh
requests of its own.

Then for every mix, ``rounds`` times, the bidder with ``--score-cache-entries 0`` and with
the configured cache, alternating, each on a fresh server at ``rate`` for ``measure_s``:
in-process and client latency, CPU seconds per 1,000 requests, the cache's hit share
(per candidate row), bid rate. Writes ``target/loadtest/cache/report.md`` and
``report.json``.
"""

from __future__ import annotations

import json
import os
import random
import re
import statistics
import sys
import time
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("REPORT_DIR", str(Path(__file__).resolve().parent.parent / "target/loadtest/cache"))
import report  # noqa: E402  (the sitting's server and load generator)

ROOT, OUT, log = report.ROOT, report.OUT, report.log
ID = re.compile(rb'^\{"id":"([^"]*)"')


def stream(fresh: list[bytes], mix: dict, n: int, rate: float, seed: int) -> tuple[list[bytes], int]:
    """``n`` requests: fresh ones in order, and repeats as the mix says. Returns the
    stream and how many fresh requests it used."""
    rng = random.Random(seed)
    resend, reload = float(mix.get("resend_share", 0.0)), float(mix.get("reload_share", 0.0))
    resend_w = max(1, int(float(mix.get("resend_window_s", 0.0)) * rate))
    reload_w = max(1, int(float(mix.get("reload_window_s", 0.0)) * rate))
    out: list[bytes] = []
    used = 0
    for i in range(n):
        u = rng.random()
        window = resend_w if u < resend else reload_w if u < resend + reload else 0
        if window and out:
            j = max(0, i - rng.randint(1, window))
            body = out[j]
            m = ID.match(body)
            assert m, "every corpus line starts with its id"
            out.append(b'{"id":"' + m.group(1) + b"-r%d" % i + b'"' + body[m.end():])
        else:
            if used == len(fresh):
                raise SystemExit(f"the corpus has {len(fresh)} requests; the stream needs more: raise corpus_impressions")
            out.append(fresh[used])
            used += 1
    return out, used


def write(lines: list[bytes], path: Path) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def main() -> None:
    name = sys.argv[1] if len(sys.argv) > 1 else "repeat"
    sc = tomllib.loads((ROOT / "loadtest/scenarios" / name / "scenario.toml").read_text())
    for key in ("cache_entries", "rounds"):  # quick experiments: CACHE_ENTRIES=..., ROUNDS=...
        if os.environ.get(key.upper()):
            sc[key] = int(os.environ[key.upper()])
    corpus = report.corpus(name, sc)
    fresh = [line for line in corpus.read_bytes().split(b"\n") if line]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "serve.log").write_text("")
    started = time.time()

    rate, workers = float(sc["rate"]), int(sc["workers"])
    # A few seconds more than a run, so the load generator never wraps around.
    n = int(rate * (float(sc["measure_s"]) + 3))
    warm_n = int(rate * (float(sc["warmup_s"]) + 1))
    warmup = write(fresh[-warm_n:], OUT / "warmup.jsonl")
    streams = {}
    for k, mix in enumerate(sc["mix"]):
        lines, used = stream(fresh[:-warm_n], mix, n, rate, int(sc["stream_seed"]) + k)
        streams[mix["name"]] = write(lines, OUT / f"stream-{k}.jsonl")
        log(f"{mix['name']}: {n:,} requests, {used:,} fresh")

    runs: dict[str, dict[str, list[dict]]] = {m["name"]: {"off": [], "on": []} for m in sc["mix"]}
    for r in range(int(sc["rounds"])):
        for mix_name, path in streams.items():
            for setting in ("off", "on") if r % 2 == 0 else ("on", "off"):
                extra = ["--score-cache-entries", "0" if setting == "off" else str(sc.get("cache_entries", 1 << 18))]
                row = report.measure("bid", workers, rate, path, sc, float(sc["measure_s"]), extra, warmup_corpus=warmup)
                row["round"] = r
                runs[mix_name][setting].append(row)
                log(f"  round {r} {mix_name} cache {setting}: hit share {row['score_cache_hit_share']}")

    def median(rows: list[dict], get) -> float:
        return statistics.median(get(x) for x in rows)

    summary = {}
    for mix_name, by in runs.items():
        s = {}
        for setting, rows in by.items():
            s[setting] = {
                "cpu_s_per_1000": median(rows, lambda x: x["cpu_s_per_1000"]),
                "in_process_p50_ms": median(rows, lambda x: x["in_process_ms"]["p50"]),
                "in_process_p99_ms": median(rows, lambda x: x["in_process_ms"]["p99"]),
                "in_process_p99_9_ms": median(rows, lambda x: x["in_process_ms"]["p99_9"]),
                "client_p99_ms": median(rows, lambda x: x["client_ms"]["p99"]),
                "bid_rate": median(rows, lambda x: x["bid_rate"]),
                "shed_share": median(rows, lambda x: x["shed_share"]),
                "hit_share": median(rows, lambda x: x["score_cache_hit_share"] or 0.0),
            }
        s["cpu_on_over_off"] = s["on"]["cpu_s_per_1000"] / s["off"]["cpu_s_per_1000"]
        summary[mix_name] = s
    result = {"scenario": name, "rate": rate, "workers": workers, "requests_per_stream": n, "runs": runs,
              "summary": summary, "minutes": (time.time() - started) / 60,
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (OUT / "report.json").write_text(json.dumps(result, indent=2) + "\n")

    lines = [f"# Score cache under load: {name} ({result['date']})", "",
             f"{sc['description']}. {rate:,.0f} requests/s offered for {sc['measure_s']} s per run, "
             f"{workers} workers, medians of {sc['rounds']} rounds (cache off and on alternating, each run on a fresh "
             f"server warmed up on other requests). Took {result['minutes']:.1f} min.", "",
             "| stream | score cache | row hit share | in process p50 / p99 / p99.9 ms | client p99 ms "
             "| CPU s per 1,000 requests | bid rate | shed |", "|---|---|---|---|---|---|---|---|"]
    for mix_name, s in summary.items():
        for setting in ("off", "on"):
            x = s[setting]
            lines.append(f"| {mix_name} | {setting} | {x['hit_share']:.1%} | {x['in_process_p50_ms']:.2f} / "
                         f"{x['in_process_p99_ms']:.2f} / {x['in_process_p99_9_ms']:.2f} | {x['client_p99_ms']:.2f} "
                         f"| {x['cpu_s_per_1000']:.3f} | {x['bid_rate']:.1%} | {x['shed_share']:.2%} |")
    lines.append("")
    lines += [f"- {mix_name}: CPU per request with the cache / without: **{s['cpu_on_over_off']:.2f}**"
              for mix_name, s in summary.items()]
    lines.append("")
    (OUT / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
