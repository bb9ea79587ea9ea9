"""Static analysis of rules: fields read, event functions and segments used."""

from __future__ import annotations

from rapport.rules import EventFn, Path, event_functions, parse, paths, segments
from rapport.types import DAY

RULE = parse(
    "traits.email starts_with 'a' and (computed.orders_90d == 0 or not exists(traits.address.city))"
    " and count('Order Completed', within=30d, where=event.total > 5) >= 1"
    " and traits.x in [1] and traits.phone is null and consent.marketing_sms"
    " and sum('Order Completed', 'revenue') > count('Order Completed', within=30d, where=event.total > 5)"
    " and in_segment('vip') and not in_segment('churned') and context.page contains 'shop'"
)


def test_paths_are_every_field_read_outside_where() -> None:
    assert paths(RULE) == {
        Path("traits", ("email",)),
        Path("computed", ("orders_90d",)),
        Path("traits", ("address", "city")),
        Path("traits", ("x",)),
        Path("traits", ("phone",)),
        Path("consent", ("marketing_sms",)),
        Path("context", ("page",)),
    }


def test_event_functions_are_distinct_and_in_order() -> None:
    assert event_functions(RULE) == (
        EventFn("count", "Order Completed", within_ms=30 * DAY, where=parse("event.total > 5")),
        EventFn("sum", "Order Completed", "revenue"),
    )


def test_segments() -> None:
    assert segments(RULE) == {"vip", "churned"}
    assert segments(parse("traits.a == 1")) == frozenset()
