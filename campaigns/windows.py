"""Calling windows: per-weekday local time ranges, holidays, in one IANA time zone (DST-safe via zoneinfo).

Spec format (config `campaign.windows`, campaign `windows` column)::

    {"daily": ["09:00-12:00", "14:00-20:00"], "sun": []}

Keys are `daily` (the default for every day) and `mon`..`sun` (override that weekday; an empty list
means no calls that day). Ranges are local wall-clock times `HH:MM-HH:MM`, start inclusive, end
exclusive; `24:00` is allowed as an end. Holidays are local dates `YYYY-MM-DD` without any calls.

Everything works on local wall-clock time, so a window is 09:00-12:00 on the clock on the wall on
both sides of a DST change; instants are converted with zoneinfo, never with fixed offsets.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_SEARCH_DAYS = 400


class WindowSpecError(ValueError):
    """A calling-window spec is unusable; the message names the key and the bad value."""


@dataclass(frozen=True, slots=True)
class CallingWindows:
    """When calls may start. `ranges[weekday]` holds (start_minute, end_minute) pairs, Monday = 0."""

    tz: ZoneInfo
    ranges: tuple[tuple[tuple[int, int], ...], ...]
    holidays: frozenset[dt.date] = field(default_factory=frozenset)

    @classmethod
    def parse(
        cls, spec: Mapping[str, Sequence[str]], holidays: Iterable[str | dt.date] = (), timezone: str = "Asia/Shanghai"
    ) -> CallingWindows:
        try:
            tz = ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise WindowSpecError(f"timezone: unknown time zone {timezone!r} (use an IANA name like Asia/Shanghai)") from exc
        unknown = [k for k in spec if k != "daily" and k not in WEEKDAYS]
        if unknown:
            raise WindowSpecError(f"windows: unknown key {unknown[0]!r}; use daily or one of {', '.join(WEEKDAYS)}")
        daily = _parse_ranges("daily", spec.get("daily", []))
        per_day = tuple(
            _parse_ranges(name, spec[name]) if name in spec else daily for name in WEEKDAYS
        )
        days: set[dt.date] = set()
        for i, h in enumerate(holidays):
            if isinstance(h, dt.date):
                days.add(h)
                continue
            try:
                days.add(dt.date.fromisoformat(str(h).strip()))
            except ValueError as exc:
                raise WindowSpecError(f"holidays[{i}]: {h!r} is not a date YYYY-MM-DD") from exc
        if not any(per_day):
            raise WindowSpecError("windows: no calling time on any weekday")
        return cls(tz=tz, ranges=per_day, holidays=frozenset(days))

    # ------------------------------------------------------------------ queries

    def local(self, when: dt.datetime) -> dt.datetime:
        return when.astimezone(self.tz)

    def _day_ranges(self, day: dt.date) -> tuple[tuple[int, int], ...]:
        if day in self.holidays:
            return ()
        return self.ranges[day.weekday()]

    def _at(self, day: dt.date, minute: int) -> dt.datetime:
        """The UTC instant of local wall time `minute` on `day` (1440 = next midnight)."""
        if minute >= 1440:
            day, minute = day + dt.timedelta(days=1), minute - 1440
        local = dt.datetime(day.year, day.month, day.day, minute // 60, minute % 60, tzinfo=self.tz)
        return local.astimezone(dt.UTC)

    def is_open(self, when: dt.datetime) -> bool:
        loc = self.local(when)
        minute = loc.hour * 60 + loc.minute + loc.second / 60 + loc.microsecond / 60e6
        return any(s <= minute < e for s, e in self._day_ranges(loc.date()))

    def window_end(self, when: dt.datetime) -> dt.datetime | None:
        """The instant the window containing `when` closes, or None when `when` is outside every window."""
        loc = self.local(when)
        minute = loc.hour * 60 + loc.minute + loc.second / 60 + loc.microsecond / 60e6
        for s, e in self._day_ranges(loc.date()):
            if s <= minute < e:
                return self._at(loc.date(), e)
        return None

    def next_open(self, when: dt.datetime) -> dt.datetime:
        """`when` itself if a call may start then, else the start of the next window.

        Raises:
            WindowSpecError: no window opens within 400 days (everything is a holiday).
        """
        when = when.astimezone(dt.UTC)
        if self.is_open(when):
            return when
        day = self.local(when).date()
        for _ in range(_SEARCH_DAYS):
            for s, _e in self._day_ranges(day):
                start = self._at(day, s)
                if start > when and self.is_open(start):
                    return start
            day += dt.timedelta(days=1)
        raise WindowSpecError(f"no calling window opens within {_SEARCH_DAYS} days after {when.isoformat()}")

    def next_day_open(self, when: dt.datetime) -> dt.datetime:
        """The first window opening on a later local day than `when` (for the per-day attempt limit)."""
        loc = self.local(when)
        tomorrow = dt.datetime.combine(loc.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.tz)
        return self.next_open(tomorrow.astimezone(dt.UTC))

    def local_date(self, when: dt.datetime) -> dt.date:
        return self.local(when).date()

    def day_start(self, when: dt.datetime) -> dt.datetime:
        """The UTC instant of local midnight of `when`'s local day."""
        return dt.datetime.combine(self.local_date(when), dt.time(0), tzinfo=self.tz).astimezone(dt.UTC)


def _parse_ranges(key: str, values: Sequence[str] | str) -> tuple[tuple[int, int], ...]:
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    out: list[tuple[int, int]] = []
    for i, raw in enumerate(values):
        m = _RANGE.match(str(raw))
        if not m:
            raise WindowSpecError(f"windows.{key}[{i}]: {raw!r} is not a range HH:MM-HH:MM")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2 != 0):
            raise WindowSpecError(f"windows.{key}[{i}]: {raw!r} has an impossible time")
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if end <= start:
            raise WindowSpecError(f"windows.{key}[{i}]: {raw!r} ends before it starts")
        out.append((start, end))
    out.sort()
    for (_s1, e1), (s2, _e2) in zip(out, out[1:], strict=False):
        if s2 < e1:
            raise WindowSpecError(f"windows.{key}: ranges overlap around {s2 // 60:02d}:{s2 % 60:02d}")
    return tuple(out)
