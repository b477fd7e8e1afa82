"""The latency histograms of `/metrics` (the web console's operator metrics, prometheus-client) are fed
from the real per-turn latencies the drivers store: NLU time on every understood turn (text and voice),
recognition time on voice calls. A simulated campaign in virtual time (text) and one over in-memory media
(voice, tests/test_engine_media.py) both fill them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from campaigns.clock import VirtualClock
from campaigns.engine import CampaignEngine, EngineSettings
from dialer.simulated import SimulatedNetwork
from outreach.commands.campaign import build_sessions
from outreach.config import Config
from outreach.web.app import create_app
from results import campaigns as db
from results.store import Store
from tests.test_campaign_engine import START, attempts, make_campaign


def histogram(text: str, name: str) -> tuple[float, float]:
    """(count, sum) of histogram `name` in a Prometheus text exposition."""
    for family in text_string_to_metric_families(text):
        if family.name == name:
            values = {s.name: s.value for s in family.samples}
            return values[f"{name}_count"], values[f"{name}_sum"]
    raise AssertionError(f"no histogram {name} in /metrics")


def stored_latencies(store: Store, key: str) -> list[float]:
    return [float(t[key]) / 1000 for a in attempts(store) for t in a.turns or []
            if isinstance(t, dict) and isinstance(t.get(key), int | float)]


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    s = Store(sqlite_url)
    yield s
    s.close()


def test_a_text_campaign_fills_the_nlu_histogram(store: Store, tmp_path: object) -> None:
    make_campaign(store, n=20, windows={"daily": ["00:00-24:00"]})
    db.set_state(store, "c1", "running", now=START)
    eng = CampaignEngine(store, SimulatedNetwork(seed=4), VirtualClock(START), build_sessions(Config()),
                         settings=EngineSettings(worker="w1"))
    asyncio.run(eng.run_virtual())
    asyncio.run(eng.stop())
    nlu = stored_latencies(store, "nlu_ms")
    assert nlu and all(v >= 0 for v in nlu)
    spoken = [t for a in attempts(store) for t in a.turns or [] if t.get("event") == "utterance"]
    assert len(nlu) == len(spoken)  # every understood reply carries its NLU time
    with TestClient(create_app(Config(), store)) as client:
        text = client.get("/metrics").text
    count, total = histogram(text, "outreach_nlu_latency_seconds")
    assert count == len(nlu) and total == pytest.approx(sum(nlu))
