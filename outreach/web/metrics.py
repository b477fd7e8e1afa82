"""Prometheus `/metrics`: read from the store at scrape time (calls by outcome, lines in use, SMS by state,
open escalations, campaigns by state, breaker state where the dialer stores it), plus latency histograms
of the turns the dialog runner recorded, and this process's own metrics."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from typing import Any

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from results.dashboard import latency_samples, metrics_snapshot
from results.store import Store

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0)


def _histogram(name: str, doc: str, values: list[float]) -> HistogramMetricFamily:
    buckets: list[tuple[str, float]] = []
    for b in LATENCY_BUCKETS:
        buckets.append((str(b), float(sum(1 for v in values if v <= b))))
    buckets.append(("+Inf", float(len(values))))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=sum(values))


def dialer_health(store: Store) -> dict[str, Any]:
    """Workers (alive, lines in use) and trunks (lines in use, breaker state) as the dialers store them."""
    from results.campaigns import dialer_overview

    over = dialer_overview(store, now=dt.datetime.now(dt.UTC))
    return {
        "breakers": {t["name"]: t["breaker"] for t in over["trunks"]},
        "trunks": over["trunks"],
        "workers_alive": sum(1 for w in over["workers"] if w["alive"]),
        "workers": [{"id": w["id"], "alive": w["alive"], "lines_in_use": w["lines_in_use"],
                     "heartbeat_at": w["heartbeat_at"]} for w in over["workers"]],
    }


class StoreCollector(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Any]:
        snap = metrics_snapshot(self.store)
        g = GaugeMetricFamily("outreach_call_attempts", "Call attempts stored, by outcome", labels=["outcome"])
        for k, v in sorted(snap["attempts"].items()):
            g.add_metric([k], v)
        yield g
        g = GaugeMetricFamily("outreach_lines_in_use", "Calls in progress (attempts dialing), by campaign",
                              labels=["campaign"])
        for k, v in sorted(snap["lines"].items()):
            g.add_metric([k], v)
        yield g
        g = GaugeMetricFamily("outreach_sms_messages", "SMS messages stored, by state", labels=["state"])
        for k, v in sorted(snap["sms"].items()):
            g.add_metric([k], v)
        yield g
        g = GaugeMetricFamily("outreach_escalations_open", "Escalations not closed, by kind", labels=["kind"])
        for k, v in sorted(snap["escalations"].items()):
            g.add_metric([k], v)
        yield g
        g = GaugeMetricFamily("outreach_campaigns", "Campaigns, by state", labels=["state"])
        for k, v in sorted(snap["campaigns"].items()):
            g.add_metric([k], v)
        yield g
        health = dialer_health(self.store)
        g = GaugeMetricFamily("outreach_breaker_open", "1 when a trunk's breaker is open (dialing paused)",
                              labels=["trunk"])
        for name, state in sorted(health["breakers"].items()):
            g.add_metric([str(name)], 1.0 if str(state) == "open" else 0.0)
        yield g
        g = GaugeMetricFamily("outreach_trunk_lines_in_use", "Calls in progress per trunk", labels=["trunk"])
        for t in health["trunks"]:
            g.add_metric([str(t["name"])], float(t["lines_in_use"]))
        yield g
        yield GaugeMetricFamily("outreach_workers_alive", "Dialer workers with a recent heartbeat",
                                value=float(health["workers_alive"]))
        lat = latency_samples(self.store)
        yield _histogram("outreach_turn_latency_seconds", "End of the resident's turn to the robot's reply", lat["turn"])
        yield _histogram("outreach_asr_latency_seconds", "Recognition latency per turn", lat["asr"])
        yield _histogram("outreach_nlu_latency_seconds", "Understanding latency per turn", lat["nlu"])


def metrics_response(store: Store) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store))
    from prometheus_client import PLATFORM_COLLECTOR, PROCESS_COLLECTOR

    for c in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR):
        try:
            registry.register(c)
        except ValueError:
            pass
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
