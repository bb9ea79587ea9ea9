"""Event functions read the series a computed trait of the same event, property and filter reads."""

from __future__ import annotations

import pytest

from rapport.profiles.computed import Bucket, bucket_of
from rapport.rules import EventFn, Path, evaluate, parse
from rapport.segments.functions import function_value, series_key
from rapport.segments.stored import ProfileData, StoredContext
from rapport.types import DAY, SECOND
from rapport.workspaces.runtime import WorkspaceRuntime, trait_from_spec

T = 1_767_225_600_000


def _fn(text: str) -> EventFn:
    rule = parse(f"{text} > 0")
    assert isinstance(rule.left, EventFn)  # type: ignore[union-attr]
    return rule.left  # type: ignore[union-attr]


@pytest.mark.parametrize(("fn", "spec", "shared"), [
    ('count("Order Completed")', {"event": "Order Completed"}, True),
    ('sum("Order Completed", "revenue", within=30d)', {"event": "Order Completed", "property": "revenue"}, True),
    ('count("Order Completed", where=event.revenue>10 and not(event.coupon=="X"))',
     {"event": "Order Completed", "where": 'event.revenue > 10 and not event.coupon == "X"'}, True),
    ('count("Order Completed", where=event.revenue > 10 and not event.coupon == "X")',
     {"event": "Order Completed", "where": 'not event.coupon == "X" and event.revenue > 10'}, False),
    ('count("Order Completed")', {"event": "Order Completed", "property": "revenue"}, False),
], ids=["plain", "property", "same-where-spelled-differently", "where-in-another-order", "other-property"])
def test_a_function_shares_the_series_of_the_same_computed_trait(fn: str, spec: dict[str, str], shared: bool) -> None:
    """The same canonical ``where`` text names the same series; the same logic written in another
    order is another series (fed separately, with equal values)."""
    trait = trait_from_spec({"name": "t", "aggregate": "count", **spec})
    assert (series_key(_fn(fn)) == trait.series) is shared
    assert (series_key(_fn(fn)).id == trait.series.id) is shared


def _buckets(*events: tuple[int, float | None]) -> list[Bucket]:
    out: dict[int, Bucket] = {}
    for seq, (ts, value) in enumerate(events, 1):
        out.setdefault(bucket_of(ts), Bucket(bucket_of(ts))).add(ts, seq, value, True)
    return list(out.values())


def test_values_without_events() -> None:
    assert function_value(_fn('count("E")'), [], T) == 0
    assert function_value(_fn('sum("E", "p")'), [], T) == 0
    for text in ('avg("E", "p")', 'min("E", "p")', 'max("E", "p")', 'last_seen("E")', 'first_seen("E")',
                 'days_since("E")'):
        assert function_value(_fn(text), [], T) is None, text


def test_values_over_a_window_ending_exactly_on_a_bucket() -> None:
    buckets = _buckets((T + 500, 2.0), (T + 10 * SECOND + 250, 3.0), (T + 10 * SECOND + 750, None))
    at = T + 30 * SECOND
    assert function_value(_fn('count("E", within=30s)'), buckets, at) == 2  # T's bucket leaves at T + 30s
    assert function_value(_fn('count("E", within=30s)'), buckets, at - 1) == 3
    assert function_value(_fn('count("E")'), buckets, T + 10 * SECOND) == 3  # a bucket counts from its start
    assert function_value(_fn('sum("E", "p")'), buckets, at) == 5
    assert function_value(_fn('avg("E", "p")'), buckets, at) == 2.5
    assert function_value(_fn('max("E", "p", within=30s)'), buckets, at) == 3
    assert function_value(_fn('last_seen("E")'), buckets, at) == T + 10 * SECOND + 750
    assert function_value(_fn('first_seen("E", within=30s)'), buckets, at) == T + 10 * SECOND + 250
    assert function_value(_fn('days_since("E")'), buckets, T + 10 * SECOND + 750 + DAY // 2) == 0.5


def test_days_since_is_derived_from_last_seen(definitions: WorkspaceRuntime) -> None:
    fn = _fn('last_seen("Order Completed")')
    data = ProfileData(series={series_key(fn).id: _buckets((T + 1, None))})
    ctx = StoredContext(definitions, data, T + 1 + DAY + DAY // 4)
    assert evaluate(parse('days_since("Order Completed") == 1.25'), ctx)
    assert not evaluate(parse('days_since("Order Completed", within=1d) > 0'), ctx)


def test_the_context_reads_traits_without_opening_sealed_values(definitions: WorkspaceRuntime) -> None:
    data = ProfileData(traits={"email": {"$pii": "c2VhbGVk"}, "address": {"city": "Berlin", "geo": [1]},
                               "$pii": "top-level name"})
    ctx = StoredContext(definitions, data, T)
    assert ctx.lookup(Path("traits", ("email",))) == (True, {"$pii": "c2VhbGVk"})
    assert ctx.lookup(Path("traits", ("email", "$pii"))) == (False, None)
    assert ctx.lookup(Path("traits", ("address", "city"))) == (True, "Berlin")
    assert ctx.lookup(Path("traits", ("address", "geo", "0"))) == (False, None)
    assert ctx.lookup(Path("traits", ("$pii",))) == (True, "top-level name")
    assert ctx.lookup(Path("computed", ("nope",))) == (False, None)
    assert ctx.lookup(Path("computed", ("order_count", "x"))) == (False, None)
    assert ctx.lookup(Path("computed", ("order_count",))) == (True, 0)
    assert ctx.lookup(Path("consent", ("necessary",))) == (True, True)
    assert ctx.lookup(Path("consent", ("newsletter",))) == (True, True)
    assert ctx.lookup(Path("consent", ("analytics",))) == (True, False)
    assert ctx.lookup(Path("consent", ("ghost",))) == (False, None)
    assert ctx.lookup(Path("context", ("locale",))) == (False, None)
