"""Local times of day in the person's time zone, for ``delay: {until: '09:00'}``.

Wall-clock times are turned into instants with ``zoneinfo``, so they stay right across daylight
saving changes: on the night the clocks go back, 01:30 happens twice and the first counts; on the
night they go forward, a time in the skipped hour is taken with the offset before the jump (02:30
in Paris becomes 03:30), as if the clock had not jumped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from rapport.clock import to_datetime
from rapport.types import SECOND, Millis


@lru_cache(maxsize=512)
def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name`` (cached: enrollments share a handful of zones)."""
    return ZoneInfo(name)


@dataclass(frozen=True, slots=True, order=True)
class TimeOfDay:
    """A wall-clock time, minute precision."""

    hour: int
    minute: int

    @classmethod
    def parse(cls, text: str) -> TimeOfDay:
        """``'09:00'`` → ``TimeOfDay(9, 0)``; the text was checked by the Journey validator."""
        hour, minute = text.split(":")
        return cls(int(hour), int(minute))

    @property
    def minutes(self) -> int:
        """Minutes since local midnight."""
        return self.hour * 60 + self.minute

    def __str__(self) -> str:
        return f"{self.hour:02d}:{self.minute:02d}"


def _instant(local: datetime) -> Millis:
    return int(local.timestamp()) * SECOND


def _occurrences(day: date, time: TimeOfDay, tz: ZoneInfo) -> list[Millis]:
    """The instants at which the clocks of ``tz`` read ``time`` on ``day``: usually one, two when
    the clocks go back over it, and for a skipped time the instant it would have been."""
    out = []
    for fold in (0, 1):
        local = datetime(day.year, day.month, day.day, time.hour, time.minute, fold=fold, tzinfo=tz)
        instant = _instant(local)
        back = to_datetime(instant).astimezone(tz)
        # fold=1 only names a second, real occurrence; in a skipped hour it would point before the jump.
        if fold == 0 or (back.hour, back.minute) == (time.hour, time.minute):
            out.append(instant)
    return sorted(set(out))


def next_local_time(after: Millis, time: TimeOfDay, zone_name: str) -> Millis:
    """The first instant at or after ``after`` when the clocks of ``zone_name`` read ``time``."""
    tz = zone(zone_name)
    today = to_datetime(after).astimezone(tz).date()
    for offset in range(3):
        for instant in _occurrences(today + timedelta(days=offset), time, tz):
            if instant >= after:
                return instant
    raise AssertionError("a time of day occurs within any three days")  # pragma: no cover
