"""Injectable clocks: the wall clock for the real service, a virtual clock for tests and the demo.

Every time the campaign engine uses comes from a `Clock`. With `VirtualClock` hours of retries pass
in milliseconds: `sleep_until` simply moves the clock forward.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Protocol


class Clock(Protocol):
    """Aware UTC time, and a way to wait for a point in time."""

    @property
    def virtual(self) -> bool: ...

    def now(self) -> dt.datetime: ...

    async def sleep_until(self, when: dt.datetime) -> None: ...


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError(f"naive datetime {when!r}: clocks work in aware UTC time")
    return when.astimezone(dt.UTC)


class WallClock:
    """Real time."""

    virtual = False

    def now(self) -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    async def sleep_until(self, when: dt.datetime) -> None:
        delay = (_aware(when) - self.now()).total_seconds()
        if delay > 0:
            await asyncio.sleep(delay)


class ScaledClock:
    """Time that runs `speed` times faster than the wall clock, starting at `start`.

    For a live-looking simulated campaign (`outreach run --speed 60`): one wall second is a minute.
    """

    virtual = False

    def __init__(self, start: dt.datetime, speed: float, *, epoch: float | None = None) -> None:
        """`epoch`: the wall instant (Unix seconds) at which simulated time is `start`. Workers given the same
        start, speed and epoch share one simulated timeline; without it the timeline starts now, in this
        process (two processes started a moment apart would then be offset by that moment times `speed`)."""
        if speed <= 0:
            raise ValueError(f"speed must be positive, got {speed}")
        self._start = _aware(start)
        self._speed = speed
        self._t0 = time.monotonic() - (time.time() - epoch if epoch is not None else 0.0)

    def now(self) -> dt.datetime:
        return self._start + dt.timedelta(seconds=(time.monotonic() - self._t0) * self._speed)

    async def sleep_until(self, when: dt.datetime) -> None:
        delay = (_aware(when) - self.now()).total_seconds() / self._speed
        if delay > 0:
            await asyncio.sleep(delay)


class VirtualClock:
    """Simulated time: it stands still until someone sleeps, then jumps to the wake-up time."""

    virtual = True

    def __init__(self, start: dt.datetime) -> None:
        self._now = _aware(start)

    def now(self) -> dt.datetime:
        return self._now

    def advance_to(self, when: dt.datetime) -> None:
        when = _aware(when)
        if when > self._now:
            self._now = when

    async def sleep_until(self, when: dt.datetime) -> None:
        self.advance_to(when)
        await asyncio.sleep(0)
