"""ISO dates and instants as rules write and compare them, in epoch milliseconds (UTC).

One strict grammar serves date literals in rule text and date strings in profile data, so that
the evaluator and the SQL engines agree on what counts as a date:
``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM[:SS[.fraction]][Z|±HH:MM]``; without a zone, UTC.
Data values may also separate date and time with a space.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from rapport.errors import ValidationError
from rapport.types import DAY, Millis

_DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
_TIME = r"([0-9]{2}):([0-9]{2})(?::([0-9]{2})(?:\.([0-9]{1,9}))?)?(Z|[+-][0-9]{2}:[0-9]{2})?"
LITERAL_PATTERN = re.compile(rf"{_DATE}(?:T{_TIME})?")
"""A date literal in rule text; matched at the start of a number."""
_VALUE_PATTERN = re.compile(rf"{_DATE}(?:[T ]{_TIME})?")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

MIN_MS: Millis = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // _ONE_MS
MAX_MS: Millis = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // _ONE_MS


def match_to_ms(m: re.Match[str]) -> Millis | None:
    """Epoch milliseconds for a match of ``LITERAL_PATTERN``; ``None`` if it names no real instant."""
    year, month, day, hour, minute, second, fraction, zone = m.groups()
    tz = UTC
    if zone and zone != "Z":
        sign = -1 if zone[0] == "-" else 1
        offset = timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
        if offset >= timedelta(hours=24) or int(zone[4:6]) >= 60:
            return None
        tz = timezone(sign * offset)
    try:
        dt = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0), tzinfo=tz)
    except ValueError:
        return None
    return (dt - _EPOCH) // _ONE_MS + int((fraction or "0").ljust(3, "0")[:3])


def parse_iso(text: str) -> Millis | None:
    """Epoch milliseconds for a date string from profile or event data; ``None`` if it is not one."""
    m = _VALUE_PATTERN.fullmatch(text)
    return None if m is None else match_to_ms(m)


def format_iso(ms: Millis) -> str:
    """The canonical literal for an instant: a bare date at midnight UTC, else a ``Z`` timestamp."""
    if not MIN_MS <= ms <= MAX_MS:
        raise ValidationError(f"invalid date {ms}; expected an instant in the years 1 to 9999", code="invalid_rule")
    dt = _EPOCH + timedelta(milliseconds=ms)
    text = f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}"
    if ms % DAY == 0:
        return text
    text += f"T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    if ms % 1000:
        text += f".{ms % 1000:03d}"
    return text + "Z"
