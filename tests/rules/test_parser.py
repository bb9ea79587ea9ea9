"""Parsing rule text: the DESIGN examples, precedence, literals, paths and event functions."""

from __future__ import annotations

import pytest

from rapport.rules import (
    And,
    Compare,
    Const,
    Contains,
    DateConst,
    DurationConst,
    EventFn,
    Exists,
    In,
    InSegment,
    IsNull,
    Node,
    Not,
    Or,
    Path,
    StartsWith,
    parse,
    to_text,
)
from rapport.types import DAY, HOUR, MINUTE, SECOND, WEEK

ORDERS = "Order Completed"


def traits(*parts: str) -> Path:
    return Path("traits", parts)


def computed(name: str) -> Path:
    return Path("computed", (name,))


def event(*parts: str) -> Path:
    return Path("event", parts)


def gt(left: Path | EventFn, value: int) -> Compare:
    return Compare(">", left, Const(value))


EXAMPLES: list[tuple[str, Node]] = [
    (
        'computed.revenue_total > 200 and count("Order Completed", within=30d) >= 1',
        And(
            (
                gt(computed("revenue_total"), 200),
                Compare(">=", EventFn("count", ORDERS, within_ms=30 * DAY), Const(1)),
            )
        ),
    ),
    (
        "computed.orders_90d == 0 and exists(traits.email)",
        And((Compare("==", computed("orders_90d"), Const(0)), Exists(traits("email")))),
    ),
    (
        'count("Order Completed", within=1h) >= 1',
        Compare(">=", EventFn("count", ORDERS, within_ms=HOUR), Const(1)),
    ),
    ("consent.marketing_sms", Compare("==", Path("consent", ("marketing_sms",)), Const(True))),
    ("computed.revenue_total > 100", gt(computed("revenue_total"), 100)),
    ('count("Order Completed") == 0', Compare("==", EventFn("count", ORDERS), Const(0))),
    (
        'sum("Order Completed", "revenue", within=90d) > 500',
        gt(EventFn("sum", ORDERS, "revenue", 90 * DAY), 500),
    ),
    ('days_since("Order Completed") > 30', gt(EventFn("days_since", ORDERS), 30)),
    (
        'avg("Order Completed", "revenue") >= 19.5',
        Compare(">=", EventFn("avg", ORDERS, "revenue"), Const(19.5)),
    ),
    ('min("Order Completed", "revenue") < 0', Compare("<", EventFn("min", ORDERS, "revenue"), Const(0))),
    (
        'max("Order Completed", "revenue") <= 1e3',
        Compare("<=", EventFn("max", ORDERS, "revenue"), Const(1000.0)),
    ),
    (
        'last_seen("Order Completed") < 2026-01-31',
        Compare("<", EventFn("last_seen", ORDERS), DateConst(1769817600000)),
    ),
    (
        'first_seen("Cart Added", within=2w) != null',
        Compare("!=", EventFn("first_seen", "Cart Added", None, 2 * WEEK), Const(None)),
    ),
    (
        'count("Order Completed", within=12h, where=event.total > 50 and event.currency == "EUR") >= 2',
        Compare(
            ">=",
            EventFn(
                "count",
                ORDERS,
                within_ms=12 * HOUR,
                where=And((gt(event("total"), 50), Compare("==", event("currency"), Const("EUR")))),
            ),
            Const(2),
        ),
    ),
    ('in_segment("vip")', InSegment("vip")),
    ('traits.country in ["DE", "FR"]', In(traits("country"), (Const("DE"), Const("FR")))),
    ("traits.score in []", In(traits("score"), ())),
    ('traits.tags contains "vip"', Contains(traits("tags"), Const("vip"))),
    ("traits.email starts_with 'admin@'", StartsWith(traits("email"), Const("admin@"))),
    ("traits.phone is null", IsNull(traits("phone"), negated=False)),
    ("traits.phone is not null", IsNull(traits("phone"), negated=True)),
    ("traits.address.city == 'Paris'", Compare("==", traits("address", "city"), Const("Paris"))),
    ('traits."first name" == "Ann"', Compare("==", traits("first name"), Const("Ann"))),
    ("traits.in.null == true", Compare("==", traits("in", "null"), Const(True))),
    ("context.page.path starts_with '/shop'", StartsWith(Path("context", ("page", "path")), Const("/shop"))),
    ("event.session_length > 15m", Compare(">", event("session_length"), DurationConst(15 * MINUTE))),
    ("traits.vip", Compare("==", traits("vip"), Const(True))),
    ("true", Compare("==", Const(True), Const(True))),
    ("false", Compare("==", Const(False), Const(True))),
    ("not traits.vip", Not(Compare("==", traits("vip"), Const(True)))),
]


@pytest.mark.parametrize(("text", "expected"), EXAMPLES, ids=[text for text, _ in EXAMPLES])
def test_examples_parse_to_their_ast_and_print_back(text: str, expected: Node) -> None:
    assert parse(text) == expected
    assert parse(to_text(expected)) == expected


a, b, c = (Compare("==", traits(n), Const(True)) for n in "abc")

PRECEDENCE: list[tuple[str, Node]] = [
    ("traits.a or traits.b and traits.c", Or((a, And((b, c))))),
    ("traits.a and traits.b or traits.c", Or((And((a, b)), c))),
    ("(traits.a or traits.b) and traits.c", And((Or((a, b)), c))),
    ("traits.a and traits.b and traits.c", And((a, b, c))),
    ("(traits.a and traits.b) and traits.c", And((And((a, b)), c))),
    ("not traits.a and traits.b", And((Not(a), b))),
    ("not (traits.a and traits.b)", Not(And((a, b)))),
    ("not not traits.a", Not(Not(a))),
    ("not traits.x == 1", Not(Compare("==", traits("x"), Const(1)))),
    ("((traits.a))", a),
]


@pytest.mark.parametrize(("text", "expected"), PRECEDENCE, ids=[text for text, _ in PRECEDENCE])
def test_precedence_is_or_then_and_then_not_then_comparison(text: str, expected: Node) -> None:
    assert parse(text) == expected
    assert parse(to_text(expected)) == expected


LITERALS: list[tuple[str, Const | DurationConst | DateConst]] = [
    ("-5", Const(-5)),
    ("-0.25", Const(-0.25)),
    ("2.5e-3", Const(0.0025)),
    ("1E+16", Const(1e16)),
    ("007", Const(7)),
    ("null", Const(None)),
    (r'"say \"hi\"\n\t\\ \u00e9"', Const('say "hi"\n\t\\ é')),
    (r"'it\'s'", Const("it's")),
    ('"it\'s"', Const("it's")),
    ("'say \"hi\"'", Const('say "hi"')),
    ("30s", DurationConst(30 * SECOND)),
    ("90d", DurationConst(90 * DAY)),
    ("2026-01-31", DateConst(1769817600000)),
    ("2026-01-31T10:00:00Z", DateConst(1769817600000 + 10 * HOUR)),
    ("2026-01-31T10:00", DateConst(1769817600000 + 10 * HOUR)),
    ("2026-01-31T12:00:00+02:00", DateConst(1769817600000 + 10 * HOUR)),
    ("2026-01-31T10:00:00.25Z", DateConst(1769817600000 + 10 * HOUR + 250)),
]


@pytest.mark.parametrize(("text", "expected"), LITERALS, ids=[text for text, _ in LITERALS])
def test_literals(text: str, expected: Const | DurationConst | DateConst) -> None:
    rule = parse(f"traits.x == {text}")
    assert isinstance(rule, Compare)
    assert rule.right == expected


def test_constants_of_different_types_are_different() -> None:
    assert parse("traits.x == 1") != parse("traits.x == 1.0")
    assert parse("traits.x == 1") != parse("traits.x == true")
    assert parse("traits.x == 0") != parse("traits.x == false")
    assert len({Const(1), Const(1.0), Const(True)}) == 3


def test_duration_and_date_text_is_kept_but_not_compared() -> None:
    rule = parse("traits.x > 24h and traits.y > 2026-01-31T02:00:00+02:00")
    assert rule == parse("traits.x > 1d and traits.y > 2026-01-31")
    assert to_text(rule) == "traits.x > 24h and traits.y > 2026-01-31T02:00:00+02:00"
    assert to_text(DurationConst(DAY)) == "1d"
    assert to_text(DateConst(1769817600000 + 1)) == "2026-01-31T00:00:00.001Z"


def test_keyword_arguments_come_in_any_order() -> None:
    one = parse('count("A", where=event.x == 1, within=3d) > 0')
    two = parse('count("A", within=3d, where=event.x == 1) > 0')
    assert one == two
    assert to_text(one) == 'count("A", within=3d, where=event.x == 1) > 0'


def test_rules_may_span_lines_and_spans_point_into_the_text() -> None:
    text = "traits.a == 1\n  and\n\tcount('X') > 2"
    rule = parse(text)
    assert isinstance(rule, And)
    second = rule.items[1]
    assert (second.span.line, second.span.col) == (3, 2)
    assert text[second.span.start : second.span.end] == "count('X') > 2"


def test_a_truth_test_prints_as_a_bare_path() -> None:
    assert to_text(parse("consent.marketing_sms == true")) == "consent.marketing_sms"
    assert to_text(parse("true == true and false")) == "true and false"
    assert to_text(parse("traits.x == false")) == "traits.x == false"
    assert to_text(parse("true == traits.x")) == "true == traits.x"


def test_printing_uses_minimal_parentheses() -> None:
    rule = And((Or((a, b)), Not(Or((b, c))), Not(a)))
    assert to_text(rule) == "(traits.a or traits.b) and not (traits.b or traits.c) and not traits.a"
