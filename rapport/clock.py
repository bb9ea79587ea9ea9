"""Time and randomness: the only module that reads the wall clock or the random source.

Stage logic takes a ``Clock`` (and ids from it) as an argument, so tests pin time and ids.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

from rapport.types import Millis


class Clock(Protocol):
    def now_ms(self) -> Millis: ...

    def monotonic(self) -> float: ...

    def new_id(self, prefix: str) -> str: ...


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
"""Two base-36 digits at a time: every event, profile and ledger entry gets an id."""


def _encode(n: int, width: int) -> str:
    """The low ``width`` base-36 digits of ``n``, most significant first."""
    out = []
    while width >= 2:
        n, r = divmod(n, 1296)
        out.append(_PAIRS[r])
        width -= 2
    if width:
        out.append(_ALPHABET[n % 36])
    return "".join(reversed(out))


class SystemClock:
    """Wall clock; ids are time-ordered (ms prefix) with 64 random bits."""

    def now_ms(self) -> Millis:
        return time.time_ns() // 1_000_000

    def monotonic(self) -> float:
        return time.monotonic()

    def new_id(self, prefix: str) -> str:
        return f"{prefix}_{_encode(self.now_ms(), 9)}{_encode(int.from_bytes(os.urandom(8)), 13)}"


class FrozenClock:
    """A clock that moves only when told; ids come from a seeded generator."""

    def __init__(self, now_ms: Millis, seed: int = 0) -> None:
        self._now = now_ms
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def now_ms(self) -> Millis:
        return self._now

    def monotonic(self) -> float:
        return self._now / 1000.0

    def advance(self, ms: Millis) -> None:
        self._now += ms

    def set(self, now_ms: Millis) -> None:
        self._now = now_ms

    def new_id(self, prefix: str) -> str:
        with self._lock:
            bits = self._rng.getrandbits(64)
        return f"{prefix}_{_encode(self._now, 9)}{_encode(bits, 13)}"


def seeded_rng(seed: int) -> random.Random:
    """A deterministic generator for reproducible data (e.g. the demo shop): same seed, same sequence."""
    return random.Random(seed)


def to_datetime(ms: Millis) -> datetime:
    """UTC datetime for epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000.0, tz=UTC)


_ISO_MIN = -62_135_596_800_000
"""0001-01-01T00:00:00.000Z."""
_ISO_MAX = 253_402_300_799_999
"""9999-12-31T23:59:59.999Z."""


def to_iso(ms: Millis) -> str:
    """ISO-8601 UTC text with millisecond precision, e.g. ``2026-01-02T03:04:05.678Z`` (integer arithmetic: every
    stored event and each membership change is stamped with one)."""
    if not _ISO_MIN <= ms <= _ISO_MAX:
        raise ValueError(f"{ms} ms is outside the years 1 to 9999")
    seconds, milli = divmod(ms, 1000)
    t = time.gmtime(seconds)
    return (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}"
            f".{milli:03d}Z")


def parse_iso(text: str) -> Millis:
    """Epoch milliseconds for an ISO-8601 timestamp; naive times are taken as UTC.

    Raises ``ValueError`` for text that is not a timestamp.
    """
    t = text.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    dt = datetime.fromisoformat(t)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // timedelta(milliseconds=1)
