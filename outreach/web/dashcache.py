"""The dashboard's numbers per campaign, shared by every polling browser.

Computed at most once per campaign every `ttl_s` seconds. When they are older, the next request still gets
them at once while one background thread recomputes them (stale while revalidate), so a big campaign's
aggregates never hold up a page. Hours that can no longer change are counted once and kept
(results.dashboard.Timeline)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from outreach.services.campaigns import STATE_ZH
from outreach.web.metrics import dialer_health
from results.dashboard import Timeline, campaign_dashboard
from results.store import Store

log = logging.getLogger(__name__)


class DashboardCache:
    def __init__(self, ttl_s: float = 3.0) -> None:
        self.ttl_s = ttl_s
        self._lock = threading.Lock()
        self._data: dict[int, tuple[float, dict[str, Any]]] = {}
        self._timelines: dict[int, Timeline] = {}
        self._refreshing: set[int] = set()
        self._computing: dict[int, threading.Lock] = {}

    def _compute(self, store: Store, campaign_id: int) -> dict[str, Any]:
        with self._lock:
            lock = self._computing.setdefault(campaign_id, threading.Lock())
            timeline = self._timelines.setdefault(campaign_id, Timeline())
        with lock:  # one computation per campaign at a time
            data = campaign_dashboard(store, campaign_id, timeline)
            data["health"] = dialer_health(store)
            data["campaign"]["state_label"] = STATE_ZH.get(data["campaign"]["state"], data["campaign"]["state"])
            self._data[campaign_id] = (time.monotonic(), data)
            return data

    def _refresh(self, store: Store, campaign_id: int) -> None:
        try:
            self._compute(store, campaign_id)
        except Exception:  # the stale numbers stay; the next request tries again
            log.exception("dashboard refresh of campaign %d failed", campaign_id)
        finally:
            with self._lock:
                self._refreshing.discard(campaign_id)

    def get(self, store: Store, campaign_id: int) -> dict[str, Any]:
        """Raises LookupError for an unknown campaign."""
        hit = self._data.get(campaign_id)
        if hit is None:
            return self._compute(store, campaign_id)
        if time.monotonic() - hit[0] >= self.ttl_s:
            with self._lock:
                start = campaign_id not in self._refreshing
                self._refreshing.add(campaign_id)
            if start:
                threading.Thread(target=self._refresh, args=(store, campaign_id), daemon=True,
                                 name=f"dashboard-{campaign_id}").start()
        return hit[1]

    def forget(self, campaign_id: int) -> None:
        """After a change made through the app (start, pause...): the next request recomputes."""
        self._data.pop(campaign_id, None)
