"""Segment rules are checked against the workspace: errors point at the name with a caret and suggest."""

from __future__ import annotations

import pytest

from rapport.errors import ValidationError
from rapport.rules import RuleSyntaxError, parse
from rapport.segments.check import check_rule, ensure_segment_rule
from rapport.segments.sql import compile_rule
from rapport.segments.stored import matching
from rapport.storage.sqlite.database import DIALECT
from rapport.workspaces.runtime import WorkspaceRuntime

SEGMENTS = ("vip", "lapsed")


def _error(text: str, rt: WorkspaceRuntime, segments: tuple[str, ...] = SEGMENTS) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        check_rule(text, rt, segments)
    assert info.value.code == "invalid_rule"
    assert not isinstance(info.value, RuleSyntaxError)
    return info.value


def test_a_valid_rule_comes_back_parsed(definitions: WorkspaceRuntime) -> None:
    text = ('computed.revenue_total > 200 and count("Order Completed", within=30d) >= 1 and consent.newsletter'
            ' and in_segment("vip") and traits.plan == "pro" and computed.last_plan == "team"')
    assert check_rule(text, definitions, SEGMENTS) == parse(text)


def test_unknown_computed_trait_points_at_its_name_and_suggests(definitions: WorkspaceRuntime) -> None:
    error = _error("computed.ordrs_90d > 1", definitions)
    assert error.message.startswith(
        "line 1, col 10: unknown computed trait 'ordrs_90d' (did you mean 'orders_90d' or 'orders_30d'?); "
        "expected one of 'average_order_value', 'days_since_last_order', ")
    assert error.message.endswith("'skus_30d'\n  1 | computed.ordrs_90d > 1\n    |          ^")
    assert error.details[0] | {"problem": ""} == {"line": 1, "col": 10, "problem": "",
                                                   "suggestions": ["orders_90d", "orders_30d"]}


def test_unknown_purpose_on_a_later_line(definitions: WorkspaceRuntime) -> None:
    error = _error('traits.plan == "pro" and\n  consent.newsleter', definitions)
    assert error.message == (
        "line 2, col 11: unknown consent purpose 'newsleter' (did you mean 'newsletter'?); expected one of "
        "'advertising', 'analytics', 'marketing_email', 'marketing_push', 'marketing_sms', 'necessary', "
        "'newsletter', 'personalization'\n"
        "  2 |   consent.newsleter\n"
        "    |           ^"
    )


def test_unknown_segment_points_at_the_string(definitions: WorkspaceRuntime) -> None:
    assert _error('not in_segment( "vipp")', definitions).message == (
        "line 1, col 17: unknown segment 'vipp' (did you mean 'vip'?); expected one of 'lapsed', 'vip'\n"
        '  1 | not in_segment( "vipp")\n'
        "    |                 ^"
    )
    assert "unknown segment 'vip'; no segments are defined" in _error('in_segment("vip")', definitions, ()).message


def test_a_name_without_near_match_gets_the_list_only(definitions: WorkspaceRuntime) -> None:
    message = _error("computed.zzz > 1", definitions).message
    assert message.startswith("line 1, col 10: unknown computed trait 'zzz'; expected one of 'average_order_value'")


@pytest.mark.parametrize(("text", "col", "problem"), [
    ('context.locale == "de"', 1,
     "a segment rule cannot read context.locale (request context, which exists only when a decision is made); "
     "expected a path starting with one of 'computed', 'consent', 'traits'"),
    ("traits.a == 1 or event.total > 3", 18,
     "a segment rule cannot read event.total (a property of the event that triggers a journey step); expected a "
     "path starting with one of 'computed', 'consent', 'traits' or an event function such as "
     'count("Order Completed", where=event.total > 10)'),
    ("computed.order_count.x > 1", 22, "computed.order_count is one value and has no field 'x'; write "
                                       "computed.order_count"),
    ("consent.analytics.granted", 19, "consent.analytics is true or false and has no field 'granted'; write "
                                      "consent.analytics"),
], ids=["context", "event", "computed-field", "consent-field"])
def test_paths_a_segment_rule_cannot_read(text: str, col: int, problem: str, definitions: WorkspaceRuntime) -> None:
    error = _error(text, definitions)
    assert error.message.splitlines()[0] == f"line 1, col {col}: {problem}"
    assert error.message.splitlines()[2] == "    |" + " " * col + "^"


def test_where_rules_may_read_event_properties(definitions: WorkspaceRuntime) -> None:
    check_rule('count("Order Completed", where=event.total > 10) > 0', definitions, ())


@pytest.mark.parametrize("text", [
    "computed.last_plan > 2026-01-01",
    "2026-01-01 == computed.last_plan",
    "computed.last_plan in [1, 2026-01-01]",
    "computed.last_plan contains 2026-01-01",
], ids=["compare", "reversed", "in", "contains"])
def test_a_property_value_is_not_compared_with_a_date(text: str, definitions: WorkspaceRuntime) -> None:
    """SQL cannot tell which strings of an event property are ISO dates, so such a rule is refused
    (and the compiler refuses it too, should an unchecked rule reach it)."""
    message = _error(text, definitions).message
    assert "computed.last_plan is the last value of the event property 'plan'" in message
    assert "cannot be compared with a date" in message
    with pytest.raises(ValidationError, match="cannot compare with a date"):
        compile_rule(parse(text), definitions, DIALECT, 0)


def test_a_time_of_event_may_be_compared_with_a_date(definitions: WorkspaceRuntime) -> None:
    check_rule("computed.last_seen > 2026-01-01 and 2026-01-01 contains computed.last_plan", definitions, ())


def test_syntax_errors_stay_syntax_errors(definitions: WorkspaceRuntime) -> None:
    with pytest.raises(RuleSyntaxError):
        check_rule("computed.orders_90d >", definitions, ())


def test_the_engines_refuse_context_and_event_paths(definitions: WorkspaceRuntime) -> None:
    rule = parse('traits.a == 1 and context.locale == "de"')
    with pytest.raises(ValidationError, match=r"^line 1, col 19: a segment rule cannot read context\.locale"):
        ensure_segment_rule(rule)
    with pytest.raises(ValidationError, match=r"cannot read context\.locale"):
        compile_rule(rule, definitions, DIALECT, 0)
    with pytest.raises(ValidationError, match=r"cannot read context\.locale"):
        matching(None, definitions, rule, [], 0)  # type: ignore[arg-type]
