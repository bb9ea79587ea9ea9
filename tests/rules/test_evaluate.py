"""Evaluator semantics: missing values, negation, kinds of values, dates, event functions."""

from __future__ import annotations

import pytest

from rapport.rules import DictContext, EventFn, Path, evaluate, evaluate_where, parse
from rapport.types import DAY, HOUR

NOW = 1769904000000  # 2026-02-01
ORDERS = "Order Completed"

PROFILE: dict[str, dict[str, object]] = {
    "traits": {
        "email": "ann@example.com",
        "age": 42,
        "score": 1.5,
        "vip": True,
        "zero": 0,
        "nothing": None,
        "age_text": "42",
        "tags": ["vip", "eu", 3, None],
        "address": {"city": "Paris"},
        "signup": "2026-01-15",
        "signup_ts": "2026-01-15T10:00:00Z",
        "signup_spaced": "2026-01-15 10:00:00",
        "bad_date": "soon",
        "wait": 15 * 60 * 1000,
    },
    "computed": {"orders_90d": 0, "revenue_total": 250.0},
    "consent": {"marketing_sms": True, "marketing_email": False},
    "context": {"page": {"path": "/shop/shoes"}},
}
FUNCTIONS: dict[EventFn, object] = {
    EventFn("count", ORDERS, within_ms=30 * DAY): 2,
    EventFn("count", ORDERS): 0,
    EventFn("avg", ORDERS, "revenue"): None,
    EventFn("sum", ORDERS, "revenue", 90 * DAY): 120.5,
    EventFn("last_seen", ORDERS): NOW - 31 * DAY,
    EventFn("last_seen", ORDERS, within_ms=30 * DAY): None,
    EventFn("last_seen", "Cart Added"): NOW - 29 * DAY - 12 * HOUR,
    EventFn("last_seen", "Broken"): "yesterday",
}
CTX = DictContext(PROFILE, NOW, FUNCTIONS, frozenset({"vip"}))

CASES: list[tuple[str, bool]] = [
    # missing values make comparisons false, and not of them true
    ("traits.missing > 1", False),
    ("not traits.missing > 1", True),
    ("traits.missing == 1", False),
    ("traits.missing != 1", False),
    ("not traits.missing != 1", True),
    ("traits.nothing == 0", False),
    ("traits.nothing == null", False),
    ("traits.age != null", False),
    ("null == null", False),
    ("traits.missing.deeper == 1", False),
    ("traits.address.city.deeper == 1", False),
    ("traits.missing contains 'a'", False),
    ("traits.tags contains traits.missing", False),
    ("traits.missing in [1, null]", False),
    ("not traits.missing in [1]", True),
    # null tests
    ("exists(traits.email)", True),
    ("exists(traits.nothing)", False),
    ("exists(traits.missing)", False),
    ("traits.nothing is null", True),
    ("traits.missing is null", True),
    ("traits.age is null", False),
    ("traits.age is not null", True),
    ("traits.nothing is not null", False),
    # numbers, and bools that are not numbers
    ("traits.age > 40", True),
    ("traits.age == 42.0", True),
    ("traits.score < 2", True),
    ("traits.age >= 42 and traits.age <= 42", True),
    ("traits.vip == 1", False),
    ("traits.vip != 1", True),
    ("traits.vip > 0", False),
    ("traits.zero == false", False),
    ("traits.zero != false", True),
    ("traits.vip", True),
    ("traits.vip == true", True),
    ("traits.vip >= true", False),
    ("traits.zero", False),
    ("traits.email", False),
    ("consent.marketing_sms", True),
    ("consent.marketing_email", False),
    ("not consent.marketing_email", True),
    ("consent.unknown", False),
    ("not consent.unknown", True),
    # strings with strings only
    ("traits.age_text == 42", False),
    ("traits.age_text != 42", True),
    ("traits.age_text > 4", False),
    ("traits.email > 'a'", True),
    ("traits.email < 5", False),
    ("'B' < 'a'", True),
    ("traits.email == 'ann@example.com'", True),
    ("traits.address.city == 'Paris'", True),
    ("context.page.path starts_with '/shop'", True),
    # contains, starts_with, in
    ("traits.tags contains 'vip'", True),
    ("traits.tags contains 3", True),
    ("traits.tags contains 3.0", True),
    ("traits.tags contains '3'", False),
    ("traits.tags contains true", False),
    ("traits.email contains '@example'", True),
    ("traits.email contains 1", False),
    ("traits.age contains 4", False),
    ("traits.email starts_with 'ann'", True),
    ("traits.tags starts_with 'v'", False),
    ("traits.age starts_with 4", False),
    ("traits.age in [1, 42]", True),
    ("traits.age in ['42']", False),
    ("traits.age in []", False),
    ("traits.vip in [1, true]", True),
    ("traits.vip in [1]", False),
    # dates: against numbers as epoch ms, and ISO strings
    ("traits.signup > 2026-01-01", True),
    ("traits.signup == 2026-01-15", True),
    ("traits.signup_ts > 2026-01-15", True),
    ("traits.signup_ts == 2026-01-15T11:00:00+01:00", True),
    ("traits.signup_spaced == 2026-01-15T10:00:00Z", True),
    ("traits.signup in [2026-01-14, 2026-01-15]", True),
    ("traits.bad_date < 2026-01-01", False),
    ("traits.bad_date > 2026-01-01", False),
    ("traits.bad_date == 2026-01-01", False),
    ("traits.bad_date != 2026-01-01", True),
    ("traits.vip != 2026-01-01", True),
    ("traits.age > 1970-01-01", True),
    ("2026-01-01 < 2026-02-01", True),
    ("last_seen('Order Completed') > 2025-12-01", True),
    # durations compare as milliseconds
    ("traits.wait == 15m", True),
    ("traits.wait < 1h", True),
    ("traits.age_text < 1h", False),
    # event functions
    ("computed.revenue_total > 200 and count('Order Completed', within=30d) >= 1", True),
    ("computed.orders_90d == 0 and exists(traits.email)", True),
    ("count('Order Completed') == 0", True),
    ("sum('Order Completed', 'revenue', within=90d) > 100", True),
    ("avg('Order Completed', 'revenue') > 0", False),
    ("avg('Order Completed', 'revenue') != 0", False),
    ("not avg('Order Completed', 'revenue') > 0", True),
    ("count('Never Happened') == 0", False),
    ("days_since('Order Completed') > 30", True),
    ("days_since('Order Completed') == 31", True),
    ("days_since('Cart Added') > 29 and days_since('Cart Added') < 30", True),
    ("days_since('Order Completed', within=30d) > 0", False),
    ("not days_since('Order Completed', within=30d) <= 30", True),
    ("days_since('Never Happened') > 30", False),
    ("days_since('Broken') > 30", False),
    # segments and boolean structure
    ("in_segment('vip')", True),
    ("in_segment('other')", False),
    ("traits.age > 40 and traits.missing > 1", False),
    ("traits.age > 40 or traits.missing > 1", True),
    ("not (traits.age > 40 or traits.missing > 1)", False),
    ("true and not false", True),
]


@pytest.mark.parametrize(("rule", "expected"), CASES, ids=[rule for rule, _ in CASES])
def test_evaluation(rule: str, expected: bool) -> None:
    assert evaluate(parse(rule), CTX) is expected


def test_days_since_reads_last_seen_with_the_same_window_and_filter() -> None:
    where = parse("event.total > 10")
    ctx = DictContext({}, NOW, {EventFn("last_seen", ORDERS, None, 7 * DAY, where): NOW - 3 * DAY})
    assert evaluate(parse("days_since('Order Completed', within=7d, where=event.total > 10) == 3"), ctx)
    assert not evaluate(parse("days_since('Order Completed', within=7d) == 3"), ctx)


def test_any_object_with_the_protocol_members_is_a_context() -> None:
    class Fixed:
        @property
        def now_ms(self) -> int:
            return NOW

        def lookup(self, path: Path) -> tuple[bool, object]:
            return (path.parts == ("plan",), "pro")

        def event_function(self, fn: EventFn) -> object | None:
            return NOW - DAY if fn.fn == "last_seen" else None

        def in_segment(self, name: str) -> bool:
            return name == "beta"

    rule = parse("traits.plan == 'pro' and days_since('Login') == 1 and in_segment('beta')")
    assert evaluate(rule, Fixed())


WHERE_CASES = [
    ("event.total > 50 and event.currency == 'EUR'", True),
    ("event.item.sku starts_with 'A'", True),
    ("event.missing is null", True),
    ("event.total > 100", False),
    ("not event.missing == 1", True),
    ("event.at > 2026-01-01", True),
]


@pytest.mark.parametrize(("rule", "expected"), WHERE_CASES, ids=[rule for rule, _ in WHERE_CASES])
def test_where_rules_read_event_properties(rule: str, expected: bool) -> None:
    properties = {"total": 60, "currency": "EUR", "item": {"sku": "A1"}, "at": "2026-01-20T08:00:00Z"}
    assert evaluate_where(parse(rule), properties, NOW) is expected
