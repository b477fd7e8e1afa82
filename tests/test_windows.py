"""Calling windows: weekday ranges, holidays, day boundaries, DST, bad specs."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from campaigns.windows import CallingWindows, WindowSpecError

SH = ZoneInfo("Asia/Shanghai")
DEFAULT = {"daily": ["09:00-12:00", "14:00-20:00"]}


def local(y: int, m: int, d: int, hh: int, mm: int = 0, tz: ZoneInfo = SH, fold: int = 0) -> dt.datetime:
    return dt.datetime(y, m, d, hh, mm, tzinfo=tz, fold=fold).astimezone(dt.UTC)


def test_default_windows_respect_the_midday_rest() -> None:
    w = CallingWindows.parse(DEFAULT)
    assert not w.is_open(local(2026, 11, 23, 8, 59))
    assert w.is_open(local(2026, 11, 23, 9, 0))
    assert w.is_open(local(2026, 11, 23, 11, 59))
    assert not w.is_open(local(2026, 11, 23, 12, 0))  # end is exclusive
    assert not w.is_open(local(2026, 11, 23, 13, 30))
    assert w.is_open(local(2026, 11, 23, 14, 0))
    assert not w.is_open(local(2026, 11, 23, 20, 0))


def test_next_open_moves_to_the_afternoon_and_to_the_next_morning() -> None:
    w = CallingWindows.parse(DEFAULT)
    assert w.next_open(local(2026, 11, 23, 12, 30)) == local(2026, 11, 23, 14, 0)
    assert w.next_open(local(2026, 11, 23, 20, 0)) == local(2026, 11, 24, 9, 0)
    assert w.next_open(local(2026, 11, 23, 23, 59)) == local(2026, 11, 24, 9, 0)
    inside = local(2026, 11, 23, 10, 17)
    assert w.next_open(inside) == inside
    assert w.window_end(inside) == local(2026, 11, 23, 12, 0)
    assert w.window_end(local(2026, 11, 23, 13, 0)) is None


def test_per_weekday_override_and_a_day_without_calls() -> None:
    w = CallingWindows.parse({"daily": ["09:00-12:00"], "sat": ["10:00-11:00"], "sun": []})
    # 2026-11-28 is a Saturday, 2026-11-29 a Sunday
    assert not w.is_open(local(2026, 11, 28, 9, 30))
    assert w.is_open(local(2026, 11, 28, 10, 30))
    assert w.next_open(local(2026, 11, 28, 11, 0)) == local(2026, 11, 30, 9, 0)  # Sunday skipped


def test_holidays_have_no_calls() -> None:
    w = CallingWindows.parse(DEFAULT, holidays=["2026-10-01", "2026-10-02"])
    assert not w.is_open(local(2026, 10, 1, 10, 0))
    assert w.next_open(local(2026, 9, 30, 20, 30)) == local(2026, 10, 3, 9, 0)
    assert w.next_day_open(local(2026, 9, 30, 15, 0)) == local(2026, 10, 3, 9, 0)


def test_midnight_boundary_and_24_00_end() -> None:
    w = CallingWindows.parse({"daily": ["00:00-24:00"]}, holidays=["2026-11-24"])
    assert w.is_open(local(2026, 11, 23, 23, 59))
    assert not w.is_open(local(2026, 11, 24, 0, 0))
    assert w.window_end(local(2026, 11, 23, 23, 0)) == local(2026, 11, 24, 0, 0)
    assert w.next_open(local(2026, 11, 24, 0, 0)) == local(2026, 11, 25, 0, 0)


def test_local_day_is_the_campaign_time_zone_not_utc() -> None:
    w = CallingWindows.parse(DEFAULT)
    # 2026-11-23 17:00 UTC is already 01:00 on the 24th in Shanghai
    assert w.local_date(dt.datetime(2026, 11, 23, 17, 0, tzinfo=dt.UTC)) == dt.date(2026, 11, 24)
    assert w.next_day_open(local(2026, 11, 23, 19, 0)) == local(2026, 11, 24, 9, 0)


def test_dst_spring_forward_and_fall_back_keep_wall_clock_windows() -> None:
    ny = ZoneInfo("America/New_York")
    w = CallingWindows.parse({"daily": ["01:00-04:00", "09:00-12:00"]}, timezone="America/New_York")
    # 2026-03-08: 02:00 local does not exist; 01:59 EST is followed by 03:00 EDT.
    assert w.is_open(local(2026, 3, 8, 1, 59, tz=ny))
    assert w.is_open(local(2026, 3, 8, 3, 0, tz=ny))
    assert w.next_open(local(2026, 3, 8, 4, 0, tz=ny)) == local(2026, 3, 8, 9, 0, tz=ny)
    # the 09:00 window is 13:00 UTC after the change and 14:00 UTC before it
    assert local(2026, 3, 8, 9, 0, tz=ny).hour == 13
    assert w.next_open(local(2026, 3, 7, 12, 0, tz=ny)).hour == 6  # 01:00 EST on the 8th = 06:00 UTC
    # 2026-11-01: 01:30 happens twice; both are inside the 01:00-04:00 window
    first = local(2026, 11, 1, 1, 30, tz=ny, fold=0)
    second = local(2026, 11, 1, 1, 30, tz=ny, fold=1)
    assert second - first == dt.timedelta(hours=1)
    assert w.is_open(first) and w.is_open(second)
    assert w.next_open(local(2026, 11, 1, 4, 30, tz=ny)) == local(2026, 11, 1, 9, 0, tz=ny)


@pytest.mark.parametrize(
    ("spec", "holidays", "tz", "message"),
    [
        ({"daily": ["9-12"]}, [], "Asia/Shanghai", r"windows.daily\[0\]: '9-12' is not a range"),
        ({"daily": ["12:00-09:00"]}, [], "Asia/Shanghai", "ends before it starts"),
        ({"daily": ["09:00-25:00"]}, [], "Asia/Shanghai", "impossible time"),
        ({"daily": ["09:00-12:00", "11:00-13:00"]}, [], "Asia/Shanghai", "overlap"),
        ({"monday": ["09:00-12:00"]}, [], "Asia/Shanghai", "unknown key 'monday'"),
        ({"daily": []}, [], "Asia/Shanghai", "no calling time"),
        (DEFAULT, ["2026-13-01"], "Asia/Shanghai", r"holidays\[0\]"),
        (DEFAULT, [], "Mars/Olympus", "unknown time zone"),
    ],
)
def test_bad_specs_name_the_key(spec: dict[str, list[str]], holidays: list[str], tz: str, message: str) -> None:
    with pytest.raises(WindowSpecError, match=message):
        CallingWindows.parse(spec, holidays, tz)


def test_all_holidays_is_an_error_not_a_hang() -> None:
    w = CallingWindows.parse({"daily": [], "mon": ["09:00-10:00"]})
    mondays = [dt.date(2026, 11, 23) + dt.timedelta(weeks=i) for i in range(60)]
    w2 = CallingWindows.parse({"daily": [], "mon": ["09:00-10:00"]}, holidays=mondays)
    assert w.next_open(local(2026, 11, 23, 11, 0)) == local(2026, 11, 30, 9, 0)
    with pytest.raises(WindowSpecError, match="no calling window opens"):
        w2.next_open(local(2026, 11, 23, 11, 0))
