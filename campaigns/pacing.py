"""Pacing: a token bucket on the campaign clock. With burst 1 (the default) new calls are evenly spaced
at 1/rate seconds: SIP trunks that allow 1-3 new calls a second reject bursts (SIP 503)."""

from __future__ import annotations

import datetime as dt


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up. Time comes from the caller (any clock)."""

    def __init__(self, rate: float, burst: int = 1) -> None:
        if rate <= 0:
            raise ValueError(f"pacing rate must be positive, got {rate}")
        if burst < 1:
            raise ValueError(f"pacing burst must be at least 1, got {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._at: dt.datetime | None = None

    def _refill(self, now: dt.datetime) -> None:
        if self._at is None:
            self._at = now
            return
        gained = (now - self._at).total_seconds() * self.rate
        if gained > 0:
            self._tokens = min(float(self.burst), self._tokens + gained)
            self._at = now

    def try_take(self, now: dt.datetime) -> bool:
        """Take one token at `now` if there is one."""
        self._refill(now)
        if self._tokens >= 1.0 - 1e-9:
            self._tokens -= 1.0
            return True
        return False

    def next_available(self, now: dt.datetime) -> dt.datetime:
        """The earliest instant >= now at which `try_take` succeeds."""
        self._refill(now)
        base = max(now, self._at) if self._at is not None else now  # never before the last token taken
        missing = 1.0 - self._tokens
        if missing <= 1e-9:
            return base
        return base + dt.timedelta(seconds=missing / self.rate)
