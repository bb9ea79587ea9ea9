"""Syntax errors point at line:col with a caret and name the valid options."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.rules import Node, RuleSyntaxError, parse, to_text

from .strategies import rules


def _error(text: str) -> RuleSyntaxError:
    with pytest.raises(RuleSyntaxError) as info:
        parse(text)
    return info.value


def test_missing_operator_shows_the_line_a_caret_and_the_operators() -> None:
    error = _error("computed.revenue_total 200")
    assert error.message == (
        "line 1, col 24: expected one of '!=', '<', '<=', '==', '>', '>=', 'contains', 'in', 'is', "
        "'starts_with'; got '200'\n"
        "  1 | computed.revenue_total 200\n"
        "    |                        ^"
    )
    assert (error.line, error.col) == (1, 24)
    assert error.code == "rule_syntax"
    assert isinstance(error, ValidationError)
    assert error.to_json()["details"] == [{"line": 1, "col": 24, "problem": error.problem}]


def test_error_on_a_later_line_shows_that_line() -> None:
    error = _error("traits.a == 1\n  and (traits.b > 2 or traits.c <)")
    assert error.message == (
        "line 2, col 34: expected a path such as traits.email, a literal or a function such as "
        "count(...); got ')'\n"
        "  2 |   and (traits.b > 2 or traits.c <)\n"
        "    |                                  ^"
    )


def test_unknown_root_suggests_the_nearest() -> None:
    assert _error('trait.email == "a"').message == (
        "line 1, col 1: expected a path starting with one of 'computed', 'consent', 'context', 'event', "
        "'traits'; got 'trait' (did you mean 'traits'?)\n"
        '  1 | trait.email == "a"\n'
        "    | ^"
    )


def test_unknown_function_suggests_the_nearest() -> None:
    assert _error('cuont("Order Completed") >= 1').message == (
        "line 1, col 1: expected one of 'avg', 'count', 'days_since', 'exists', 'first_seen', "
        "'in_segment', 'last_seen', 'max', 'min', 'sum'; got 'cuont' (did you mean 'count'?)\n"
        '  1 | cuont("Order Completed") >= 1\n'
        "    | ^"
    )


def test_unterminated_string_points_at_its_quote() -> None:
    assert _error('traits.a == "abc').message == (
        'line 1, col 13: unterminated string; close it with "\n  1 | traits.a == "abc\n    |             ^'
    )


PROBLEMS = [
    ("traits.x = 5", 10, "(did you mean '=='?)"),
    ("traits.a == 1 AND traits.b == 2", 15, "(keywords are lower-case: 'and')"),
    ('count("X", wihtin=30d) > 1', 12, "got 'wihtin' (did you mean 'within'?)"),
    ('count("X", "revenue") > 1', 12, "count takes no property"),
    ('sum("X", within=3d) > 1', 10, 'expected the property to aggregate as a quoted string, e.g. sum("Order'),
    ('count("X", within=30) > 1', 19, "expected a duration such as 30d"),
    ('count("X", within=1d, within=2d) > 1', 23, "within= is given twice"),
    ('count("X", where=traits.a == 1) > 1', 18, "expected a path starting with 'event.'"),
    ('count("X", where=count("Y") > 1) > 1', 18, "event functions cannot be nested in where="),
    ('count("X", where=in_segment("a")) > 1', 18, "got 'in_segment'"),
    ('count("X")', 11, "count(...) is a value, not a condition"),
    ('count("X") is null', 1, "expected a path before 'is null'"),
    ("count > 1", 7, "expected '('"),
    ("traits.x in [traits.y]", 14, "expected a literal"),
    ("traits.a == 1 traits.b", 15, "expected 'and', 'or' or end of rule"),
    ("traits.a > 1 > 0", 14, "expected 'and', 'or' or end of rule"),
    ("(traits.a", 10, "expected ')'; got end of rule"),
    ("traits", 7, "expected '.'"),
    ("traits.", 8, "expected a field name after '.'"),
    ("", 1, "got end of rule"),
    ("not", 4, "got end of rule"),
    ("traits.a and", 13, "got end of rule"),
    ("in_segment(vip)", 12, 'expected a segment name as a quoted string, e.g. in_segment("vip")'),
    (
        'traits.a == "a\\qb"',
        15,
        "invalid escape \\q in string; expected one of \\\\ \\\" \\' \\n \\r \\t \\uXXXX",
    ),
    ('traits.a == "\\ud800"', 14, "surrogates are not characters"),
    ("traits.a > 2026-02-30", 12, "invalid date '2026-02-30'"),
    ("traits.a > 2026-01-31T25:00", 12, "invalid date '2026-01-31T25:00'"),
    ("traits.a > 2026-1-31", 12, "invalid date '2026-1-31'"),
    ("traits.a > 30x", 12, "invalid number '30x'"),
    ("traits.a > 1.5h", 12, "invalid number '1.5h'"),
    ("traits.a > 0d", 12, "invalid duration '0d'"),
    ("traits.a > -3d", 12, "durations are positive"),
    ("traits.a == 1e999", 13, "out of range"),
    ("traits.a && traits.b", 10, "unexpected character '&'; use 'and'"),
    ("!traits.a", 1, "unexpected character '!'; use 'not'"),
    ("traits.prénom == 1", 10, "unexpected character 'é'"),
]


@pytest.mark.parametrize(("text", "col", "fragment"), PROBLEMS, ids=[text or "<empty>" for text, _, _ in PROBLEMS])
def test_problem_is_reported_at_its_column(text: str, col: int, fragment: str) -> None:
    error = _error(text)
    assert (error.line, error.col) == (1, col)
    assert fragment in error.problem
    assert error.message.endswith(" " * (col - 1) + "^")


_FRAGMENTS = st.sampled_from(
    [
        "traits.a",
        "count(",
        '"x"',
        "'y'",
        ")",
        "(",
        "[",
        "]",
        ",",
        ".",
        "==",
        ">",
        "and",
        "or",
        "not",
        "in",
        "is",
        "null",
        "within=",
        "where=",
        "30d",
        "2026-01-31",
        "-1.5e3",
        "\\",
        "\n",
        " ",
        "event.b",
        "exists(",
    ]
)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=30), st.lists(_FRAGMENTS, max_size=12).map("".join)))
def test_any_text_parses_or_raises_a_rule_syntax_error(text: str) -> None:
    try:
        parse(text)
    except RuleSyntaxError as error:
        assert error.line >= 1 and error.col >= 1
        assert error.message.splitlines()[-1].strip().endswith("^")


@settings(max_examples=200)
@given(rules, st.data())
def test_a_damaged_rule_raises_only_rule_syntax_errors(rule: Node, data: st.DataObject) -> None:
    text = to_text(rule)
    cut = data.draw(st.integers(0, len(text)))
    with contextlib.suppress(RuleSyntaxError):
        parse(text[:cut] + text[cut + 1 :])
