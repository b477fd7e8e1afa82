"""A circuit breaker per trunk: transient system faults pause dialing, then it resumes with backoff.

closed → (a transient fault: backend down, AMI lost, trunk congestion) → open for `backoff` seconds of
the campaign clock, doubled after every failed probe up to `max_backoff_s` → half_open: the engine first
asks the backend's `health()`, then lets one call through; its success closes the breaker, a fault
opens it again. A permanent fault (bad trunk configuration) opens it with no retry time: dialing on
that trunk stops until the service is restarted with a fixed configuration.

Transitions are logged once and stored (results.campaigns.set_breaker) for `campaign status` and the
web console.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Transition:
    state: str
    reason: str
    until: dt.datetime | None
    tripped: bool


class Breaker:
    def __init__(self, name: str, *, first_backoff_s: float = 5.0, max_backoff_s: float = 300.0) -> None:
        self.name = name
        self.state = "closed"
        self.reason = ""
        self.until: dt.datetime | None = None
        self.trips = 0
        self._first = first_backoff_s
        self._max = max_backoff_s
        self._backoff = first_backoff_s
        self._probing = False
        self.pending: list[Transition] = []  # transitions the engine still has to store

    def _move(self, state: str, reason: str, until: dt.datetime | None, *, tripped: bool = False) -> None:
        if state != self.state or reason != self.reason:
            shown = f" until {until.isoformat(timespec='seconds')}" if until else ""
            level = logging.WARNING if state != "closed" else logging.INFO
            log.log(level, "trunk %s: breaker %s%s%s", self.name, state, f" ({reason})" if reason else "", shown)
        self.state, self.reason, self.until = state, reason, until
        self.pending.append(Transition(state, reason, until, tripped))

    def allows(self, now: dt.datetime) -> bool:
        """Whether a call may start now (half_open: only the one probe)."""
        if self.state == "closed":
            return True
        if self.state == "open":
            if self.until is None or now < self.until:
                return False
            self._move("half_open", self.reason, None)
            self._probing = False
        if self._probing:
            return False
        return True

    def probing(self) -> None:
        """The half-open probe call is on its way."""
        if self.state == "half_open":
            self._probing = True

    def trip(self, now: dt.datetime, reason: str) -> dt.datetime:
        """A transient fault: open; returns when dialing may be tried again."""
        if self.state == "half_open":
            self._backoff = min(self._backoff * 2, self._max)
        elif self.state == "closed":
            self._backoff = self._first
        if self.state == "open" and self.until is not None and self.until > now:
            return self.until  # calls in flight failing one after the other: one trip
        self.trips += 1
        until = now + dt.timedelta(seconds=self._backoff)
        self._probing = False
        self._move("open", reason, until, tripped=True)
        return until

    def fail_permanently(self, now: dt.datetime, reason: str) -> None:
        self.trips += 1
        self._move("open", f"permanent: {reason}", None, tripped=True)

    @property
    def permanent(self) -> bool:
        return self.state == "open" and self.until is None

    def success(self) -> None:
        if self.state != "closed":
            self._backoff = self._first
            self._probing = False
            self._move("closed", "", None)

    def retry_at(self, now: dt.datetime) -> dt.datetime:
        return self.until if self.until is not None and self.until > now else now
