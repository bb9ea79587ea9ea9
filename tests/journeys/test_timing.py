"""Local time for journeys: quiet hours and delays across DST changes, calendar days, the timing matrix."""

from __future__ import annotations

from datetime import UTC, date, datetime, time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.journeys.timing import (
    DEFAULT_TIMING,
    in_quiet_hours,
    local_day,
    next_local_time,
    parse_clock,
    quiet_hours,
    to_local,
    zone,
)
from rapport.types import DAY, HOUR, MINUTE

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def utc(text: str) -> int:
    """Epoch milliseconds of an ISO instant with an explicit offset."""
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def local(at: int, tz: str) -> str:
    return to_local(at, tz).isoformat()


# Berlin 2026: spring forward Sun 29 March 02:00 CET -> 03:00 CEST; fall back Sun 25 October 03:00 CEST -> 02:00 CET.
# New York 2026: spring forward Sun 8 March 02:00 EST -> 03:00 EDT; fall back Sun 1 November 02:00 EDT -> 01:00 EST.
QUIET_CASES = [
    # (tz, at as local ISO with offset, start, end, expected local ISO with offset)
    (BERLIN, "2026-03-28T23:30:00+01:00", "22:00", "08:00", "2026-03-29T08:00:00+02:00"),
    (BERLIN, "2026-03-29T01:10:00+01:00", "22:00", "02:30", "2026-03-29T03:00:00+02:00"),
    (BERLIN, "2026-03-29T01:59:00+01:00", "01:00", "02:00", "2026-03-29T03:00:00+02:00"),
    (BERLIN, "2026-03-29T03:15:00+02:00", "22:00", "02:30", "2026-03-29T03:15:00+02:00"),
    (BERLIN, "2026-10-24T23:00:00+02:00", "22:00", "08:00", "2026-10-25T08:00:00+01:00"),
    (BERLIN, "2026-10-25T02:15:00+02:00", "22:00", "02:30", "2026-10-25T02:30:00+02:00"),
    (BERLIN, "2026-10-25T02:45:00+02:00", "22:00", "02:30", "2026-10-25T02:45:00+02:00"),
    (BERLIN, "2026-10-25T02:15:00+01:00", "22:00", "02:30", "2026-10-25T02:30:00+01:00"),
    (NEW_YORK, "2026-03-07T21:30:00-05:00", "21:00", "09:00", "2026-03-08T09:00:00-04:00"),
    (NEW_YORK, "2026-03-08T01:30:00-05:00", "00:00", "02:30", "2026-03-08T03:00:00-04:00"),
    (NEW_YORK, "2026-10-31T22:00:00-04:00", "21:00", "09:00", "2026-11-01T09:00:00-05:00"),
    (NEW_YORK, "2026-11-01T01:20:00-04:00", "00:00", "01:30", "2026-11-01T01:30:00-04:00"),
    (NEW_YORK, "2026-11-01T01:20:00-05:00", "00:00", "01:30", "2026-11-01T01:30:00-05:00"),
    (BERLIN, "2026-06-10T12:00:00+02:00", "21:00", "08:00", "2026-06-10T12:00:00+02:00"),
    (BERLIN, "2026-06-10T21:00:00+02:00", "21:00", "08:00", "2026-06-11T08:00:00+02:00"),
    (BERLIN, "2026-06-10T07:59:00+02:00", "21:00", "08:00", "2026-06-10T08:00:00+02:00"),
    (BERLIN, "2026-06-10T08:00:00+02:00", "21:00", "08:00", "2026-06-10T08:00:00+02:00"),
    (BERLIN, "2026-06-10T13:00:00+02:00", "12:00", "14:00", "2026-06-10T14:00:00+02:00"),
    (BERLIN, "2026-06-10T13:00:00+02:00", "12:00", "12:00", "2026-06-10T13:00:00+02:00"),
]
QUIET_IDS = [
    "berlin-overnight-into-spring-forward", "berlin-end-skipped-by-spring-forward", "berlin-end-at-the-jump",
    "berlin-after-the-jump-is-outside", "berlin-overnight-into-fall-back", "berlin-first-pass-of-repeated-hour",
    "berlin-between-the-two-passes", "berlin-second-pass-of-repeated-hour", "new-york-overnight-into-spring-forward",
    "new-york-end-skipped-by-spring-forward", "new-york-overnight-into-fall-back",
    "new-york-first-pass-of-repeated-hour", "new-york-second-pass-of-repeated-hour", "midnight-window-outside",
    "midnight-window-at-start",
    "midnight-window-just-before-end", "midnight-window-at-end", "daytime-window", "empty-window",
]


@pytest.mark.parametrize(("tz", "at", "start", "end", "expected"), QUIET_CASES, ids=QUIET_IDS)
def test_quiet_hours_across_dst_and_midnight(tz: str, at: str, start: str, end: str, expected: str) -> None:
    released = quiet_hours(utc(at), tz, start, end)
    assert local(released, tz) == datetime.fromisoformat(expected).isoformat()
    assert released >= utc(at)
    assert not in_quiet_hours(released, tz, start, end)


def test_the_jump_instant_is_exact() -> None:
    released = quiet_hours(utc("2026-03-29T01:10:00+01:00"), BERLIN, time(22), time(2, 30))
    assert released == utc("2026-03-29T01:00:00+00:00")


@pytest.mark.parametrize(("tz", "at", "clock", "expected"), [
    (BERLIN, "2026-03-28T12:00:00+01:00", "09:00", "2026-03-29T09:00:00+02:00"),
    (BERLIN, "2026-03-29T08:59:00+02:00", "09:00", "2026-03-29T09:00:00+02:00"),
    (BERLIN, "2026-03-29T09:00:00+02:00", "09:00", "2026-03-29T09:00:00+02:00"),
    (BERLIN, "2026-03-29T00:30:00+01:00", "02:30", "2026-03-29T03:00:00+02:00"),
    (BERLIN, "2026-10-25T00:30:00+02:00", "02:30", "2026-10-25T02:30:00+02:00"),
    (BERLIN, "2026-10-25T02:40:00+02:00", "02:30", "2026-10-25T02:30:00+01:00"),
    (BERLIN, "2026-10-25T02:40:00+01:00", "02:30", "2026-10-26T02:30:00+01:00"),
    (NEW_YORK, "2026-03-08T01:59:00-05:00", "02:15", "2026-03-08T03:00:00-04:00"),
    (NEW_YORK, "2026-11-01T00:00:00-04:00", "09:00", "2026-11-01T09:00:00-05:00"),
    (NEW_YORK, "2026-12-31T23:00:00-05:00", "09:00", "2027-01-01T09:00:00-05:00"),
], ids=["berlin-day-of-spring-forward", "berlin-a-minute-before", "berlin-exactly-then", "berlin-skipped-time",
        "berlin-first-of-repeated", "berlin-second-of-repeated", "berlin-both-passed-next-day",
        "new-york-skipped-time", "new-york-day-of-fall-back", "new-york-over-new-year"])
def test_next_local_time(tz: str, at: str, clock: str, expected: str) -> None:
    assert local(next_local_time(utc(at), tz, clock), tz) == datetime.fromisoformat(expected).isoformat()


@given(st.integers(utc("2026-01-01T00:00:00+00:00"), utc("2027-12-31T00:00:00+00:00")),
       st.sampled_from([BERLIN, NEW_YORK, "Asia/Kolkata", "Australia/Lord_Howe", "UTC"]),
       st.integers(0, 23), st.integers(0, 59))
def test_next_local_time_is_the_first_instant_reading_that_time(at: int, tz: str, hour: int, minute: int) -> None:
    result = next_local_time(at, tz, time(hour, minute))
    assert at <= result < at + 2 * DAY
    wall = to_local(result, tz).time().replace(tzinfo=None)
    assert wall >= time(hour, minute)
    # A minute earlier the clock read something before the wanted time (or the result is ``at`` itself).
    if result > at:
        before = to_local(max(at, result - MINUTE), tz)
        assert before.time().replace(tzinfo=None) != time(hour, minute) or before.fold != to_local(result, tz).fold


@given(st.integers(utc("2026-01-01T00:00:00+00:00"), utc("2027-12-31T00:00:00+00:00")),
       st.sampled_from([BERLIN, NEW_YORK, "Pacific/Auckland"]),
       st.integers(0, 23), st.integers(0, 23))
def test_quiet_hours_release_outside_the_window_within_a_day(at: int, tz: str, start: int, end: int) -> None:
    released = quiet_hours(at, tz, time(start), time(end))
    assert at <= released <= at + DAY + HOUR
    assert not in_quiet_hours(released, tz, time(start), time(end))
    assert (released == at) == (not in_quiet_hours(at, tz, time(start), time(end)))


@pytest.mark.parametrize(("at", "tz", "day"), [
    ("2026-06-10T21:30:00+00:00", BERLIN, date(2026, 6, 10)),
    ("2026-06-10T22:10:00+00:00", BERLIN, date(2026, 6, 11)),
    ("2026-06-10T13:00:00+00:00", "Pacific/Kiritimati", date(2026, 6, 11)),
    ("2026-06-10T13:00:00+00:00", "Pacific/Pago_Pago", date(2026, 6, 10)),
    ("2026-06-11T03:30:00+00:00", NEW_YORK, date(2026, 6, 10)),
])
def test_local_day_is_the_persons_calendar_day(at: str, tz: str, day: date) -> None:
    assert local_day(utc(at), tz) == day


def test_clock_and_zone_errors_name_the_format() -> None:
    assert parse_clock("09:05") == time(9, 5)
    for bad in ["9:00", "24:00", "09:60", "noon"]:
        with pytest.raises(ValidationError, match="expected a local time of day as 'HH:MM'"):
            parse_clock(bad)
    with pytest.raises(ValidationError, match="unknown time zone 'Europe/Berlinn'; expected an IANA"):
        zone("Europe/Berlinn")
    with pytest.raises(ValidationError, match="unknown time zone"):
        quiet_hours(0, "../etc/passwd", "22:00", "08:00")


def test_the_default_timing_matrix() -> None:
    assert [(t.touch, t.after_ms) for t in DEFAULT_TIMING] == [
        ("event", 0), ("email", 15 * MINUTE), ("push", HOUR), ("sms", 24 * HOUR), ("offline", 72 * HOUR),
    ]
    assert datetime(2026, 1, 1, tzinfo=UTC).tzinfo is UTC
