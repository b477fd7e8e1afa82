"""The dashboard's numbers, computed at most once per campaign every few seconds, however many staff
browsers poll it (the aggregates scan a campaign's attempts)."""

from __future__ import annotations

import threading
import time
from typing import Any

from outreach.services.campaigns import STATE_ZH
from outreach.web.metrics import dialer_health
from results.dashboard import campaign_dashboard
from results.store import Store


class DashboardCache:
    def __init__(self, ttl_s: float = 3.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._locks: dict[int, threading.Lock] = {}
        self._data: dict[int, tuple[float, dict[str, Any]]] = {}

    def get(self, store: Store, campaign_id: int) -> dict[str, Any]:
        """Raises LookupError for an unknown campaign."""
        hit = self._data.get(campaign_id)
        if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
            return hit[1]
        with self._lock:
            lock = self._locks.setdefault(campaign_id, threading.Lock())
        with lock:  # one computation per campaign at a time; the others wait for its result
            hit = self._data.get(campaign_id)
            if hit is not None and time.monotonic() - hit[0] < self.ttl_s:
                return hit[1]
            data = campaign_dashboard(store, campaign_id)
            data["health"] = dialer_health(store)
            data["campaign"]["state_label"] = STATE_ZH.get(data["campaign"]["state"], data["campaign"]["state"])
            self._data[campaign_id] = (time.monotonic(), data)
            return data

    def forget(self, campaign_id: int) -> None:
        self._data.pop(campaign_id, None)
