"""Local time for journeys: quiet hours, delays until a time of day, calendar days, the seeds' timing.

Instants are epoch milliseconds (UTC); what a person experiences is their wall clock in their IANA
time zone. Frequency caps count the person's calendar days, and quiet hours and ``delay: {until:
"09:00"}`` are defined by that wall clock, so the two days a year when it jumps need a stated rule:

* Spring forward (a wall time that does not exist, e.g. 02:30 in Berlin on the last Sunday of
  March): the wall clock gets past that time at the instant of the jump, so that instant is used (a
  quiet window ending at 02:30 opens at 03:00 summer time, not half an hour after the clock passed
  its end).
* Fall back (a wall time that happens twice, e.g. 02:30 in Berlin on the last Sunday of October):
  the first occurrence at or after the instant in question is used. Quiet hours follow what the wall
  clock reads, so during the repeated hour a person whose window ended at the first 02:30 is inside it
  again at the second 02:15, and it opens again at the second 02:30.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rapport.errors import ValidationError
from rapport.types import DAY, HOUR, MINUTE, SECOND, Millis

Zone: TypeAlias = ZoneInfo | str
"""A time zone: a ``ZoneInfo`` or its IANA name, e.g. ``"Europe/Berlin"``."""
LocalTime: TypeAlias = time | str
"""A wall-clock time of day: a ``datetime.time`` or ``"HH:MM"``."""

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_CLOCK: Final = re.compile(r"([01]\d|2[0-3]):([0-5]\d)")
CLOCK_HELP: Final = "a local time of day as 'HH:MM' (24-hour clock), e.g. '09:00'"


def parse_clock(text: str) -> time:
    """``"21:30"`` → ``time(21, 30)``; anything else is a ``ValidationError`` naming the format."""
    m = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        raise ValidationError(f"invalid time of day {text!r}; expected {CLOCK_HELP}", code="invalid_time_of_day")
    return time(int(m.group(1)), int(m.group(2)))


@lru_cache(maxsize=512)
def _named_zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(
            f"unknown time zone {name!r}; expected an IANA time zone name such as 'Europe/Berlin'",
            code="invalid_time_zone",
        ) from exc


def zone(tz: Zone) -> ZoneInfo:
    """The ``ZoneInfo`` for ``tz``; an unknown name is a ``ValidationError``."""
    return tz if isinstance(tz, ZoneInfo) else _named_zone(tz)


def _clock(value: LocalTime) -> time:
    return value if isinstance(value, time) else parse_clock(value)


def to_local(at: Millis, tz: Zone) -> datetime:
    """The instant ``at`` on the wall clock of ``tz`` (an aware datetime, ``fold`` set in a repeated hour)."""
    return (EPOCH + timedelta(milliseconds=at)).astimezone(zone(tz))


def _millis(moment: datetime) -> Millis:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def local_day(at: Millis, tz: Zone) -> date:
    """The person's calendar day at instant ``at``: what frequency caps count in."""
    return to_local(at, tz).date()


def _wall(at: Millis, tz: ZoneInfo) -> datetime:
    """The naive wall-clock reading at ``at``."""
    return to_local(at, tz).replace(tzinfo=None)


def _instants_of(wall: datetime, tz: ZoneInfo) -> list[Millis]:
    """The instants at which the wall clock of ``tz`` reads ``wall``: one, two (fall back), or for a time
    skipped by spring forward the instant of the jump, when the clock first reads past it."""
    found = sorted({
        at
        for fold in (0, 1)
        if _wall(at := _millis(wall.replace(tzinfo=tz, fold=fold)), tz) == wall
    })
    if found:
        return found
    # In a gap the two folds map to instants on either side of the jump, between which the wall clock
    # only increases, so a binary search over seconds finds the first instant reading past ``wall``.
    ends = sorted(_millis(wall.replace(tzinfo=tz, fold=fold)) for fold in (0, 1))
    low, high = ends
    while high - low > SECOND:
        middle = (low + high) // 2
        if _wall(middle, tz) > wall:
            high = middle
        else:
            low = middle
    return [high - high % SECOND]


def next_local_time(at: Millis, tz: Zone, clock: LocalTime) -> Millis:
    """The first instant at or after ``at`` when the person's wall clock reads ``clock`` (``delay: {until}``).

    A ``clock`` skipped by spring forward resolves to the jump; a repeated one to its first occurrence
    at or after ``at`` (see the module docstring).
    """
    tzinfo, wanted = zone(tz), _clock(clock)
    day = local_day(at, tzinfo)
    # Three days always suffice: every calendar day reaches (or jumps over) every wall time once.
    for offset in range(3):
        for instant in _instants_of(datetime.combine(day + timedelta(days=offset), wanted), tzinfo):
            if instant >= at:
                return instant
    raise AssertionError("unreachable: every local day reaches every wall time")  # pragma: no cover


def next_reading(after: Millis, tz: Zone, reading: LocalTime) -> Millis:
    """``next_local_time`` under the name the journey machine uses: when the clock next reads ``reading``."""
    return next_local_time(after, tz, reading)


def in_quiet_hours(at: Millis, tz: Zone, start: LocalTime, end: LocalTime) -> bool:
    """Whether the person's wall clock at ``at`` is in ``[start, end)``; a window with ``start`` after ``end``
    crosses midnight (``21:00``–``08:00``), and ``start == end`` is no window at all."""
    first, last = _clock(start), _clock(end)
    now = _wall(at, zone(tz)).time()
    if first < last:
        return first <= now < last
    if first > last:
        return now >= first or now < last
    return False


def quiet_hours(at: Millis, tz: Zone, start: LocalTime, end: LocalTime) -> Millis:
    """``at`` when it is outside the quiet window ``[start, end)``, else the instant the window ends.

    The end is where the person's wall clock next reads ``end``; across DST see the module docstring.
    """
    if not in_quiet_hours(at, tz, start, end):
        return at
    return next_local_time(at, tz, end)


Touch: TypeAlias = Literal["event", "email", "push", "sms", "offline"]


@dataclass(frozen=True, slots=True)
class TimedTouch:
    """One touch of the seeds' timing matrix: which kind of message and how long after the trigger."""

    touch: Touch
    after_ms: Millis
    description: str


DEFAULT_TIMING: Final[tuple[TimedTouch, ...]] = (
    TimedTouch("event", 0, "immediate event-based touch (in-app message or webhook)"),
    TimedTouch("email", 15 * MINUTE, "email 15 minutes after the trigger"),
    TimedTouch("push", HOUR, "push notification 1 hour after the trigger"),
    TimedTouch("sms", DAY, "SMS 24 hours after the trigger"),
    TimedTouch("offline", 3 * DAY, "offline / in-store task 72 hours after the trigger"),
)
"""The seeds' default timing matrix (DESIGN 4.8), in the order the touches happen."""
