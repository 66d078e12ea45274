"""The load-test scripts' arithmetic, without a server: medians per side, figures of a
scoring path only from runs in which some request took it, the report's ratios."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import ab  # noqa: E402
import report  # noqa: E402


def run(p99: float, cpu: float, inline: tuple[float, float], batched: tuple[float, float]) -> dict:
    """A ``report.measure`` row with the fields ``ab.FIGURES`` reads; ``inline`` and
    ``batched`` are (p99 ms, requests)."""
    path = lambda p99_ms, count: {"p50": p99_ms / 4, "p99": p99_ms, "p99_9": 2 * p99_ms, "count": count}  # noqa: E731
    total = inline[1] + batched[1]
    return {
        "in_process_ms": {"p50": 0.1, "p90": 0.2, "p99": p99, "p99_9": 2 * p99},
        "client_ms": {"p99": 3 * p99},
        "cpu_s_per_1000": cpu,
        "batch_rows_p50": 64.0,
        "shed_share": 0.0,
        "inline_share": inline[1] / total if total else None,
        "in_process_by_path_ms": {"inline": path(*inline), "batched": path(*batched)},
    }


def test_a_path_figure_comes_only_from_runs_that_took_the_path():
    runs = [run(0.5, 0.20, (0.4, 990), (9.0, 10)), run(0.6, 0.22, (0.5, 1000), (0.0, 0)), run(0.7, 0.24, (0.6, 995), (12.0, 5))]
    s = ab.summarise(runs)
    assert s["in-process p99 ms"] == 0.6
    assert s["CPU s per 1,000"] == 0.22
    assert s["inline p99 ms"] == 0.5
    # The run with no batched request has no batched figure: the median of 9 and 12, not of 0, 9, 12.
    assert s["batched p99 ms"] == 10.5
    assert s["batched p99.9 ms"] == 21.0


def test_a_path_no_run_took_has_no_figure_and_no_ratio():
    a = [run(7.0, 0.21, (0.0, 0), (7.0, 1000))] * 3  # every request batched
    b = [run(0.5, 0.20, (0.5, 1000), (0.0, 0))] * 3  # every request inline
    res = {"name": "t", "scenario": "s", "rounds": 3, "seconds": 10, "workers": 2, "a": ["--inline-scoring", "false"],
           "b": [], "date": "d", "command": "c",
           "rates": [{"rate": 3338.0, "a": ab.summarise(a), "b": ab.summarise(b), "a_runs": a, "b_runs": b}]}
    text = ab.markdown(res)
    assert "| inline p99 ms | – | 0.500 | – |" in text
    assert "| batched p99 ms | 7.000 | – | – |" in text
    assert "| in-process p99 ms | 7.000 | 0.500 | 0.07 |" in text


def test_the_highest_sustainable_rate_is_the_highest_sustainable_step():
    rows = [{"offered_rate": r, "sustainable": ok} for r, ok in [(1000, True), (1250, True), (1562, False), (1953, True), (2441, False)]]
    assert report.highest(rows) == 1953
    assert report.highest([{"offered_rate": 1000, "sustainable": False}]) == 0.0
