"""The session's fixtures: a bidder started with the Kubernetes ConfigMap's ctrbid.toml,
its /metrics, and the metric names ctrbid exports (support.py has the rest)."""

from __future__ import annotations

import pytest

from support import Bidder, can_start_bidder, configmap_toml, names_in_source, parse_exposition


@pytest.fixture(scope="session")
def bidder(tmp_path_factory):
    """A bidder serving with the Kubernetes ConfigMap's ctrbid.toml; the image's and the
    Secret's variables are replaced by local ones (free ports, the local library, a
    temporary event log)."""
    why = can_start_bidder()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("bidder")
    config = work / "ctrbid.toml"
    config.write_text(configmap_toml())
    b = Bidder(config, work)
    yield b
    b.stop()


@pytest.fixture(scope="session")
def scraped(bidder) -> dict[str, set[str]]:
    status, text = bidder.get("admin", "/metrics")
    assert status == 200
    return parse_exposition(text)


@pytest.fixture(scope="session")
def known_metrics(request) -> dict[str, set[str] | None]:
    """Every metric name ctrbid exports, each with its label names where a running
    bidder showed them (None where only the source names it): the source's names, and a
    live bidder's /metrics where one can be started."""
    known: dict[str, set[str] | None] = {n: None for n in names_in_source()}
    if can_start_bidder() is None:
        for name, labels in request.getfixturevalue("scraped").items():
            known[name] = labels
    return known
