"""Summaries (one SQL row per series and window) give exactly what evaluating the buckets gives.

A decision reads a person's computed values through ``storage.sql.profiles.summaries``; segments and every
other reader evaluate the buckets themselves (``profiles.computed.evaluate``, ``segments.functions``). Random
buckets are stored on each backend and every summarizable aggregate, window and instant must agree to the bit,
float sums included (both sum the buckets' totals one after another in bucket order).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rapport.profiles.computed import (
    Bucket,
    SeriesKey,
    Summary,
    SummaryKey,
    TraitDef,
    evaluate,
    evaluate_summary,
    summarizable,
    summarize,
    summary_fields,
    summary_keys,
)
from rapport.rules import EventFn
from rapport.segments.functions import function_value, series_key, summary_value
from rapport.storage import Database, open_database
from rapport.storage.sql import profiles as profiles_sql
from rapport.types import DAY, HOUR

if TYPE_CHECKING:
    from conftest import Backend

T0 = 1_790_000_000_000
ORDERS = SeriesKey("Order Completed", "revenue")
VISITS = SeriesKey("Page Viewed")
WINDOWS = [None, HOUR, DAY, 7 * DAY]


@pytest.fixture(scope="module")
def db(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    database = open_database(backend.settings(Path(tmp_path_factory.mktemp("summaries"))))
    try:
        yield database
    finally:
        database.close()


amounts = st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
                    st.integers(-1000, 1000).map(float), st.sampled_from([0.1, 0.2, 0.3, 19.99, 100.1, 1e-9]))


@st.composite
def bucket_lists(draw: st.DrawFn) -> list[Bucket]:
    seconds = sorted(set(draw(st.lists(st.integers(0, 10 * DAY // 1000), max_size=14))))
    out = []
    for index, second in enumerate(seconds):
        bucket = T0 + second * 1000
        values = draw(st.lists(amounts, min_size=1, max_size=3))
        numbers = [v for v in values if v is not None]
        first = bucket + draw(st.integers(0, 999))
        last = min(bucket + 999, first + draw(st.integers(0, 999)))
        total = 0.0
        for number in numbers:
            total += number
        out.append(Bucket(bucket, len(values), len(numbers), total, min(numbers) if numbers else None,
                          max(numbers) if numbers else None, first, index, None, last, index, None))
    return out


def store(db: Database, ws: str, profile: str, series: dict[str, list[Bucket]]) -> None:
    rows = [(ws, profile, sid, b.bucket, b.n, b.nn, b.total, b.vmin, b.vmax, b.first_ts, b.first_seq, b.first_val,
             b.last_ts, b.last_seq, b.last_val) for sid, buckets in series.items() for b in buckets]
    db.write(lambda conn: profiles_sql.upsert_buckets(conn, rows))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(orders=bucket_lists(), visits=bucket_lists(), at_offset=st.integers(-HOUR, 11 * DAY),
       on_edge=st.booleans(), edge=st.sampled_from([0, HOUR, DAY, 7 * DAY]))
def test_sql_summaries_evaluate_as_the_buckets(db: Database, orders: list[Bucket], visits: list[Bucket],
                                               at_offset: int, on_edge: bool, edge: int) -> None:
    ws, profile = f"ws_sum_{secrets.token_hex(4)}", "p1"
    store(db, ws, profile, {ORDERS.id: orders, VISITS.id: visits})
    at = T0 + at_offset
    if on_edge and orders:
        at = orders[len(orders) // 2].bucket + edge  # a bucket exactly at the instant or at a window's edge
    keys = frozenset((s.id, w) for s in (ORDERS, VISITS) for w in WINDOWS)
    got = db.read(lambda conn: profiles_sql.summaries(conn, ws, profile, keys, at))
    series = {ORDERS.id: orders, VISITS.id: visits}
    for (sid, window), summary in got.items():
        assert summary == summarize(series[sid], at, window), (sid, window)
    # A reader reads only the parts of a summary its aggregates need (``summary_fields``): read so, each gives the
    # same value as over the buckets.
    parts: dict[frozenset[str], dict[SummaryKey, Summary]] = {}

    def projected(name: str) -> dict[SummaryKey, Summary]:
        fields = summary_fields(name)
        if fields not in parts:
            parts[fields] = db.read(lambda conn: profiles_sql.summaries(conn, ws, profile, keys, at, fields))
        return parts[fields]

    for aggregate in ("count", "sum", "avg", "min", "max", "first", "last", "days_since"):
        for window in WINDOWS:
            key = VISITS if aggregate in ("first", "last") else ORDERS
            defn = TraitDef(f"{aggregate}_{window}", aggregate, key, window)  # type: ignore[arg-type]
            assert summarizable(defn)
            assert set(summary_keys(defn)) <= keys
            expected = evaluate(defn, series, at)
            for read in (got, projected(aggregate)):
                value = evaluate_summary(defn, read, at)
                assert value == expected and type(value) is type(expected), (aggregate, window, value, expected)
    ratio = TraitDef("ratio", "ratio", ORDERS, DAY, denominator=VISITS)
    assert evaluate_summary(ratio, got, at) == evaluate_summary(ratio, projected("ratio"), at) == evaluate(
        ratio, series, at)
    for fn in ("count", "sum", "avg", "min", "max", "last_seen", "first_seen", "days_since"):
        numeric = fn in ("sum", "avg", "min", "max")
        key = ORDERS if numeric else VISITS
        for window in WINDOWS:
            function = EventFn(fn, key.event, key.prop, window, None)  # type: ignore[arg-type]
            assert series_key(function) == key
            expected_value = function_value(function, series[key.id], at)
            assert summary_value(function, got[(key.id, window)], at) == expected_value, (fn, window)
            assert summary_value(function, projected(fn)[(key.id, window)], at) == expected_value, (fn, window)
    assert parts[frozenset()] != got or not any(got[k].nn or got[k].first_ts for k in got)  # parts were left out


def test_what_a_summary_cannot_answer_is_refused() -> None:
    for defn in (TraitDef("skus", "distinct", ORDERS), TraitDef("last_order", "last", ORDERS)):
        assert not summarizable(defn)
        with pytest.raises(ValueError, match="not computed from a summary"):
            evaluate_summary(defn, {(ORDERS.id, None): Summary(1, 1, 5.0, 5.0, 5.0, T0, T0)}, T0)
