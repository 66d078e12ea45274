"""The overload test's arithmetic, without a server: the capacity search's steps, the
recovery windows (loadgen's windows of the 4 C run's second phase), the memory check, the
bids within tmax (loadgen's exact count) and the targets, on hand-written loadgen
summaries and metrics files."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import overload as o  # noqa: E402

P = {"search_steps": 7, "search_up": 1.5, "search_down": 0.5, "search_tol": 0.05, "slo_p99_ms": 10,
     "capacity_max_shed": 0.01, "tmax_ms": 100, "recovery_window_s": 1, "recovery_max_shed": 0.001,
     "recovery_target_s": 2, "rss_growth_max": 0.1, "recovery_rate": 0.5, "search_start": 1000}


def counts(ok=900, nc=100, unsent=0, s5xx=0) -> dict:
    return {"200": ok, "204": nc, "other_status": 0, "4xx": 0, "5xx": s5xx, "errors": 0, "refused": 0,
            "timeouts": 0, "unsent": unsent}


def summary(rate=1000.0, requests=1000, p99=1.0, ok=900, nc=100, w100=1.0, unsent=0, s5xx=0,
            ok_on_time=None) -> dict:
    """A loadgen summary; the on-time 200s default to the 200s less the late answers."""
    pct = {"count": requests, "p50": p99 / 2, "p90": p99, "p99": p99, "p99_9": p99, "max": p99}
    late = requests - round(w100 * requests)
    ok_on_time = max(0, ok - late) if ok_on_time is None else ok_on_time
    return {"offered_rate": rate, "requests": requests, "counts": counts(ok, nc, unsent, s5xx),
            "deadline_ms": 100.0, "on_time": {"200": ok_on_time, "204": round(w100 * requests) - ok_on_time},
            "within": [{"ms": 100.0, "share": w100}, {"ms": 10.0, "share": w100}, {"ms": 1000.0, "share": 1.0}],
            "latency_ms": {"all": pct, "200": pct}, "start_lag_ms": pct}


def window(start_s: float, p99: float, requests=500, unsent=0) -> dict:
    """One of loadgen's ``--window-ms`` windows of 1 s."""
    return {"start_s": start_s, "span_s": 1.0, "requests": requests,
            "counts": counts(ok=requests - unsent, nc=0, unsent=unsent), "on_time": {"200": requests, "204": 0},
            "on_time_share": 1.0, "latency_ms": {"p50": p99 / 2, "p99": p99}}


def x4_run(d: Path, x4: dict, p99s: list[float], **kw) -> None:
    """``x4.json``: loadgen's two phases, 4 C then the recovery in 1 s windows."""
    rec = summary(rate=500, requests=500 * len(p99s)) | {"windows": [window(k, p, **kw) for k, p in enumerate(p99s)]}
    (d / "x4.json").write_text(json.dumps(x4 | {"phases": [x4, rec]}))


def shed_file(path: Path, n: float) -> None:
    path.write_text(f'# HELP x\nctrbid_requests_total{{outcome="shed"}} {n}\nctrbid_late_answers_total 0\n')


def test_the_search_goes_down_while_it_fails_then_bisects():
    assert o.next_rate([], 1000, P) == 1000
    assert o.next_rate([(1000, False)], 1000, P) == 500
    assert o.next_rate([(1000, False), (500, True)], 1000, P) == 750
    assert o.next_rate([(1000, False), (500, True), (750, False)], 1000, P) == 625


def test_the_search_goes_up_while_it_passes():
    assert o.next_rate([(1000, True)], 1000, P) == 1500
    assert o.next_rate([(1000, True), (1500, True)], 1000, P) == 2250


def test_the_search_stops_within_its_tolerance_or_its_steps():
    assert o.next_rate([(1000, False), (960, True)], 1000, P) is None  # within 5 %
    steps = [(1000, False)] * 7
    assert o.next_rate(steps, 1000, P) is None


def test_a_fail_below_the_highest_pass_does_not_bound_the_search():
    # Noise: 500 failed once, 750 passed; the bracket is 750..1000.
    assert o.next_rate([(1000, False), (500, False), (750, True)], 1000, P) == 875


def test_a_step_is_sustainable_only_with_low_p99_little_shedding_and_no_error():
    assert o.step_verdict(summary(p99=9.9), 5, P)[0]
    assert not o.step_verdict(summary(p99=10.5), 0, P)[0]
    assert not o.step_verdict(summary(p99=1), 11, P)[0]  # 1.1 % shed
    assert not o.step_verdict(summary(p99=1, unsent=1), 0, P)[0]
    assert not o.step_verdict(summary(p99=1, s5xx=1), 0, P)[0]


def test_capacity_is_the_highest_sustainable_step(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps(P))
    for i, (rate, p99) in enumerate([(1000, 30), (500, 2), (750, 4), (875, 12)], 1):
        (tmp_path / f"search-{i}.json").write_text(json.dumps(summary(rate=rate, p99=p99)))
        (tmp_path / f"search-{i}.server.json").write_text("{}")  # not a step
        shed_file(tmp_path / f"search-{i}.m1", 0)
        shed_file(tmp_path / f"search-{i}.m2", 0)
    steps = o.search_steps(tmp_path)
    assert [s["rate"] for s in steps] == [1000, 500, 750, 875]
    assert o.capacity(steps) == 750


def test_recovery_is_the_first_window_from_which_all_are_normal(tmp_path):
    p99s = [400, 3, 50, 2, 2]
    x4_run(tmp_path, summary(rate=4000), p99s)
    for k in range(len(p99s) + 1):
        shed_file(tmp_path / f"rec-{k}.m0", 100)
    rec = o.recovery(tmp_path, P)
    assert [w["normal"] for w in rec["windows"]] == [False, True, False, True, True]
    assert rec["recovered_s"] == 3
    assert rec["measured_s"] == 5
    assert rec["rate"] == 500


def test_shedding_or_failing_keeps_a_window_from_being_normal(tmp_path):
    x4_run(tmp_path, summary(rate=4000), [1, 1, 1])
    for k, shed in enumerate([0, 50, 50, 50]):  # counter at each window's start
        shed_file(tmp_path / f"rec-{k}.m0", shed)
    rec = o.recovery(tmp_path, P)
    assert [w["normal"] for w in rec["windows"]] == [False, True, True]
    assert rec["recovered_s"] == 1
    assert rec["p99_back_s"] == 0
    x4_run(tmp_path, summary(rate=4000), [1, 1, 1], unsent=1)
    assert [w["why"] for w in o.recovery(tmp_path, P)["windows"]] == ["shed 10.00 %; 1 errors", "1 errors", "1 errors"]


def test_the_4c_phase_is_the_first_of_its_run(tmp_path):
    x4_run(tmp_path, summary(rate=4000, requests=40000, ok=8000), [1, 1])
    f = o.phase(tmp_path, "x4", 10, 1000, P)
    assert (f["offered"], f["requests"], f["bids"]) == (4000, 40000, 8000)
    assert o.phase_of({"requests": 5}, 0) == {"requests": 5}
    assert o.phase_of({"requests": 5}, 1) is None


def test_memory_is_bounded_when_it_levels_off():
    flat = [(t / 4, 100 + (10 if t == 3 else 0)) for t in range(20)]
    assert o.bounded(flat, None, 0.1)[0] is True
    climbing = [(t / 4, 100 + 5 * t) for t in range(20)]
    assert o.bounded(climbing, None, 0.1)[0] is False
    # Samples after the load's end do not count.
    assert o.bounded(flat + [(10, 500)], 9, 0.1)[0] is True
    assert o.bounded(flat[:2], None, 0.1)[0] is None


def test_bids_within_tmax_are_loadgens_exact_count():
    assert o.on_time_bids(summary(ok=900, nc=100, w100=0.99, ok_on_time=895), 100) == 895
    # Unknown at another deadline, or from a loadgen without the count.
    assert o.on_time_bids(summary(ok_on_time=895), 30) is None
    s = summary()
    del s["on_time"]
    assert o.on_time_bids(s, 100) is None


def phase_files(d: Path, name: str, s: dict, shed: int, alive: bool = True) -> None:
    (d / f"{name}.json").write_text(json.dumps(s))
    shed_file(d / f"{name}.m1", 0)
    shed_file(d / f"{name}.m2", shed)
    (d / f"{name}.server.json").write_text(json.dumps(
        {"rss_before_mib": 100, "rss_after_mib": 110, "cpu_ticks0": 0, "cpu_ticks1": 100, "clk_tck": 100,
         "wall_s": 1, "load_end": None, "alive": alive, "healthz": "200", "readyz": "200"}))
    (d / f"{name}.rss").write_text("".join(f"{t / 4} {100 * 1024}\n" for t in range(8)))


def test_the_targets_and_the_report(tmp_path):
    (tmp_path / "params.json").write_text(json.dumps(P))
    cap = 1000
    phase_files(tmp_path, "p70", summary(rate=700, requests=7000, p99=4, ok=6990, nc=10), shed=3)
    # 2 C: 99.5 % on time (100 late), 1,800 bids/s over 10 s, 1,795/s within tmax.
    phase_files(tmp_path, "x2", summary(rate=2000, requests=20000, p99=60, ok=18000, nc=2000, w100=0.995,
                                        ok_on_time=17950), shed=2000)
    x4 = summary(rate=4000, requests=40000, p99=900, ok=8000, nc=30000, w100=0.5, unsent=2000)
    phase_files(tmp_path, "x4", x4, shed=30000)
    x4_run(tmp_path, x4, [90, 2, 2])
    for k in range(4):
        shed_file(tmp_path / f"rec-{k}.m0", 0)
    (tmp_path / "run.json").write_text(json.dumps(
        {"layout": "split", "capacity": cap, "capacity_source": "given", "ran": ["p70", "x2", "x4"],
         "secs": {"p70": 10, "x2": 10, "x4": 10}}))
    ph = {n: o.phase(tmp_path, n, 10, cap, P) for n in ("p70", "x2", "x4")}
    rows = {(at, t.split(" ")[0] + t.split(" ")[-1]): ok for at, t, _, ok in o.targets(ph, o.recovery(tmp_path, P), cap, P)}
    assert rows[("2 C", ">=ms")] is True
    assert rows[("2 C", "0errors")] is True
    assert rows[("2 C", "bidssecond")] is True
    assert rows[("0.7 C", "shed%")] is True  # 3 of 7,000
    assert rows[("0.7 C", "clientms")] is True
    assert rows[("4 C", "nocrash")] is True
    assert rows[("4 C", "memorybounded")] is True
    assert rows[("4 C", ">=ms")] is False
    assert rows[("4 C", "recoverys")] is True  # normal from 1 s
    text = o.report(tmp_path)
    assert "| 2 C | bids answered within 100 ms >= 0.8 C per second | 1,795/s (1.79 C)" in text
    assert "| … of which within 100 ms | 699/s (0.70 C) | 1,795/s (1.79 C) | 0/s (0.00 C) |" in text
    assert "| 4 C | >= 95 % answered within 100 ms | 50.00 % | **not met** |" in text
    assert "| 1–2 | 500 | 500 | 1.00 | 2.00 | 0 (0.00 %) | 0 | normal |" in text
