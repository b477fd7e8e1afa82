"""The injectable clocks: virtual time jumps, scaled time runs faster, naive times are refused."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from campaigns.clock import ScaledClock, VirtualClock, WallClock

T0 = dt.datetime(2026, 11, 23, 1, 0, tzinfo=dt.UTC)


def test_virtual_clock_stands_still_and_jumps_forward_only() -> None:
    c = VirtualClock(T0)
    assert c.virtual and c.now() == T0 == c.now()
    asyncio.run(c.sleep_until(T0 + dt.timedelta(hours=5)))
    assert c.now() == T0 + dt.timedelta(hours=5)
    c.advance_to(T0)  # never backwards
    assert c.now() == T0 + dt.timedelta(hours=5)
    with pytest.raises(ValueError, match="naive datetime"):
        c.advance_to(dt.datetime(2026, 1, 1))


def test_scaled_clock_runs_faster_than_the_wall() -> None:
    c = ScaledClock(T0, speed=3600)
    asyncio.run(c.sleep_until(T0 + dt.timedelta(minutes=30)))  # half an hour in about half a second
    assert c.now() >= T0 + dt.timedelta(minutes=30)
    assert not c.virtual
    with pytest.raises(ValueError, match="speed must be positive"):
        ScaledClock(T0, speed=0)


def test_wall_clock_is_aware_utc() -> None:
    now = WallClock().now()
    assert now.tzinfo == dt.UTC
    asyncio.run(WallClock().sleep_until(now - dt.timedelta(seconds=5)))  # in the past: returns at once


def test_scaled_clocks_given_one_epoch_share_a_timeline() -> None:
    """Two workers started a moment apart agree on simulated time when they share the wall epoch."""
    import time

    from campaigns.clock import ScaledClock

    start = dt.datetime(2026, 11, 2, 9, 0, tzinfo=dt.UTC)
    epoch = time.time() - 10.0  # simulated time was `start` ten wall seconds ago
    a = ScaledClock(start, 60.0, epoch=epoch)
    time.sleep(0.05)
    b = ScaledClock(start, 60.0, epoch=epoch)
    assert abs((a.now() - b.now()).total_seconds()) < 1.0  # 50 ms apart would be 3 s without the epoch
    assert 595 <= (b.now() - start).total_seconds() <= 660
