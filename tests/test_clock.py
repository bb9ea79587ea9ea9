"""Ids: the time prefix and random part are fixed-width base 36, so ids sort by creation time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.clock import FrozenClock, _encode, parse_iso, to_iso

ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def digit_by_digit(n: int, width: int) -> str:
    out = []
    for _ in range(width):
        n, r = divmod(n, 36)
        out.append(ALPHABET[r])
    return "".join(reversed(out))


@given(n=st.integers(0, 2**80), width=st.integers(0, 16))
def test_encoding_two_digits_at_a_time_is_base_36(n: int, width: int) -> None:
    assert _encode(n, width) == digit_by_digit(n, width)
    assert len(_encode(n, width)) == width


@given(first=st.integers(0, 36**9 - 2), gap=st.integers(1, 10**9))
def test_ids_sort_by_time(first: int, gap: int) -> None:
    clock = FrozenClock(first)
    earlier = clock.new_id("evt")
    clock.set(min(first + gap, 36**9 - 1))
    later = clock.new_id("evt")
    assert earlier < later and len(earlier) == len(later) == len("evt_") + 22


@given(ms=st.integers(-30_000_000_000_000, 250_000_000_000_000))  # years 1019 to 9892
def test_iso_text_is_exact_to_the_millisecond(ms: int) -> None:
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    assert to_iso(ms) == f"{moment.year:04d}-{moment:%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
    assert parse_iso(to_iso(ms)) == ms


def test_iso_text_covers_the_years_1_to_9999() -> None:
    assert to_iso(-62_135_596_800_000) == "0001-01-01T00:00:00.000Z"
    assert to_iso(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    for outside in (-62_135_596_800_001, 253_402_300_800_000, 10**20):
        with pytest.raises(ValueError, match="outside the years 1 to 9999"):
            to_iso(outside)
