"""Durations as written in resources and rules: ``90d``, ``12h``, ``15m``, ``30s``, ``2w``."""

from __future__ import annotations

import re

from rapport.errors import ValidationError
from rapport.types import DAY, HOUR, MINUTE, SECOND, WEEK, Millis

UNITS: dict[str, Millis] = {"s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, "w": WEEK}
_PATTERN = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")


def parse_duration(text: str) -> Millis:
    """Milliseconds for a duration such as ``30d``; raises ``ValidationError`` naming the units."""
    m = _PATTERN.match(text) if isinstance(text, str) else None
    if m is None or int(m.group(1)) <= 0:
        raise ValidationError(
            f"invalid duration {text!r}; expected a positive whole number followed by one of "
            "'s', 'm' (minutes), 'h', 'd', 'w', e.g. '30d'",
            code="invalid_duration",
        )
    return int(m.group(1)) * UNITS[m.group(2)]


def format_duration(ms: Millis) -> str:
    """The shortest exact text for a duration, e.g. ``2592000000`` → ``30d``."""
    for unit in ("w", "d", "h", "m", "s"):
        size = UNITS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms // SECOND}s"
