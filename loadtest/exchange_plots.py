"""Plots of a `ctrbid exchange` run over its simulated day(s), from its timeseries.json.

    .venv/bin/python loadtest/exchange_plots.py OUT     (OUT: the run's --out directory)

Writes OUT/spend.png (spend per simulated hour, USD) and OUT/win_rate.png (wins per bid
per simulated hour, with the requests per hour on a second axis), one line per run
only: the exchange's hourly figures are over all bidders.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def load(out: Path) -> tuple[list[datetime], list[dict]]:
    series = json.loads((out / "timeseries.json").read_text())
    hours = series["hours"]
    times = [datetime.fromtimestamp(h["ts"], tz=timezone.utc) for h in hours]
    return times, hours


def plot(out: Path) -> list[Path]:
    times, hours = load(out)
    written = []

    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(times, [h["spend"] for h in hours], width=1 / 24, align="edge", color="#4878a8")
    ax.set_ylabel("spend per hour (USD)")
    ax.set_xlabel("simulated time (UTC)")
    ax.set_title("Spend per simulated hour")
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(out / "spend.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(9, 3.5))
    rates = [h["win_rate"] * 100 if h["win_rate"] is not None else float("nan") for h in hours]
    mid = [t + timedelta(minutes=30) for t in times]
    ax.plot(mid, rates, marker="o", markersize=3, color="#c8553d", label="win rate")
    ax.set_ylabel("wins per bid (%)")
    ax.set_ylim(0, max([r for r in rates if r == r] + [1]) * 1.2)
    ax.set_xlabel("simulated time (UTC)")
    ax.set_title("Win rate per simulated hour")
    twin = ax.twinx()
    twin.bar(times, [h["requests"] for h in hours], width=1 / 24, align="edge", color="#999999", alpha=0.3)
    twin.set_ylabel("requests per hour")
    ax.set_zorder(twin.get_zorder() + 1)
    ax.patch.set_visible(False)
    fig.autofmt_xdate()
    fig.tight_layout()
    written.append(out / "win_rate.png")
    fig.savefig(written[-1], dpi=120)
    plt.close(fig)
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for path in plot(Path(argv[1])):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
