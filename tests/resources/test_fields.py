"""Field checkers: each error names its field, its YAML line and what was expected."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.resources.checks import (
    boolean,
    duration,
    list_of,
    mapping,
    nested,
    one_of,
    positive_number,
    reference,
    rule,
    text,
)
from rapport.resources.fields import INVALID, FieldErrors, Path, check_fields, optional, render_path, required

LINES: dict[Path, int] = {(): 3, ("events",): 5, ("events", "Signup"): 6, ("tags",): 9, ("tags", 1): 10}


def ctx_at(*path: str | int) -> FieldErrors:
    return FieldErrors(document=2, kind="TrackingPlan", name="web", lines=LINES).at(*path)


def only(ctx: FieldErrors) -> dict[str, Any]:
    assert len(ctx.details) == 1, ctx.details
    return ctx.details[0]


def test_render_path() -> None:
    assert render_path(()) == ""
    assert render_path(("events", "Signup", "purposes", 0)) == "events.Signup.purposes[0]"
    assert render_path(("steps", 0, "send")) == "steps[0].send"


def test_detail_shape_and_line_of_nearest_enclosing_field() -> None:
    ctx = ctx_at("events", "Signup", "schema")
    ctx.add("bad", "good")
    assert only(ctx) == {
        "document": 2,
        "line": 6,
        "kind": "TrackingPlan",
        "name": "web",
        "field": "events.Signup.schema",
        "message": "bad",
        "expected": "good",
    }
    assert ctx_at().line_of(("unknown",)) == 3
    assert FieldErrors().line_of(("x",)) == 1


def test_views_share_one_list() -> None:
    root = ctx_at()
    root.at("tags", 1).add("bad", "good")
    assert root.details[0]["line"] == 10 and root.details[0]["field"] == "tags[1]"


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (text(), "", "invalid tags[1] ''; expected a non-empty string"),
        (text(), "  ", "invalid tags[1] '  '; expected a non-empty string"),
        (text(), 3, "invalid tags[1] 3; expected a non-empty string"),
        (text(), None, "invalid tags[1] null; expected a non-empty string"),
        (text(), [1], "invalid tags[1] a list; expected a non-empty string"),
        (boolean(), "yes", "invalid tags[1] 'yes'; expected true or false"),
        (boolean(), 1, "invalid tags[1] 1; expected true or false"),
        (positive_number(), 0, "invalid tags[1] 0; expected a positive number"),
        (positive_number(), -1.5, "invalid tags[1] -1.5; expected a positive number"),
        (positive_number(), True, "invalid tags[1] true; expected a positive number"),
        (positive_number(), float("inf"), "invalid tags[1] inf; expected a positive number"),
        (positive_number(integer=True), 1.5, "invalid tags[1] 1.5; expected a positive whole number"),
        (
            duration(),
            "90 days",
            "invalid tags[1] '90 days'; expected a duration such as '30d': a whole number and one of "
            "'s', 'm' (minutes), 'h', 'd', 'w'",
        ),
        (
            duration(),
            "0d",
            "invalid tags[1] '0d'; expected a duration such as '30d': a whole number and one of "
            "'s', 'm' (minutes), 'h', 'd', 'w'",
        ),
        (
            duration(),
            90,
            "invalid tags[1] 90; expected a duration such as '30d': a whole number and one of "
            "'s', 'm' (minutes), 'h', 'd', 'w'",
        ),
        (
            reference("a consent purpose name"),
            "Marketing",
            "invalid tags[1] 'Marketing'; expected a consent purpose name (lower-case letters, digits "
            "and '_', starting with a letter, at most 63 characters)",
        ),
        (
            one_of("reject", "flag"),
            "flags",
            "unknown tags[1] 'flags' (did you mean 'flag'?); expected one of 'reject', 'flag'",
        ),
        (one_of("reject", "flag"), "zzz", "unknown tags[1] 'zzz'; expected one of 'reject', 'flag'"),
        (one_of("reject", "flag"), 1, "invalid tags[1] 1; expected one of 'reject', 'flag'"),
    ],
    ids=repr,
)
def test_scalar_checkers_reject_with_exact_message(check: Any, value: Any, message: str) -> None:
    ctx = ctx_at("tags", 1)
    assert check(value, ctx) is INVALID
    detail = only(ctx)
    assert detail["message"] == message
    assert detail["expected"] == check.expected
    assert (detail["field"], detail["line"]) == ("tags[1]", 10)


@pytest.mark.parametrize(
    ("check", "value"),
    [
        (text(), "Order Completed"),
        (boolean(), False),
        (positive_number(), 2.5),
        (positive_number(integer=True), 3),
        (duration(), "90d"),
        (duration(), " 12h "),
        (reference(), "marketing_email"),
        (one_of("a", "b"), "b"),
    ],
    ids=repr,
)
def test_scalar_checkers_keep_valid_values_as_written(check: Any, value: Any) -> None:
    ctx = ctx_at("x")
    assert check(value, ctx) == value
    assert ctx.details == []


def test_mapping_reports_bad_keys_and_values_and_drops_them() -> None:
    check = mapping(positive_number(), keys=reference("a tag"))
    ctx = ctx_at("events")
    assert check({"ok": 1, "Bad": 2, "fine": 0}, ctx) == {"ok": 1}
    assert [(d["field"], d["expected"]) for d in ctx.details] == [
        (
            "events.Bad",
            "a tag (lower-case letters, digits and '_', starting with a letter, at most 63 characters)",
        ),
        ("events.fine", "a positive number"),
    ]
    ctx = ctx_at("events")
    assert check([1], ctx) is INVALID
    assert only(ctx)["expected"] == (
        "a mapping of a tag (lower-case letters, digits and '_', starting with a letter, at most 63 characters)"
        " to a positive number"
    )


def test_list_of_reports_each_item_and_duplicates() -> None:
    check = list_of(text(), unique=True)
    ctx = ctx_at("tags")
    assert check(["a", "", "a", "b"], ctx) == ["a", "b"]
    assert [(d["field"], d["line"], d["message"]) for d in ctx.details] == [
        ("tags[1]", 10, "invalid tags[1] ''; expected a non-empty string"),
        ("tags[2]", 9, "duplicate 'a' in tags; expected a list of a non-empty string, each at most once"),
    ]
    ctx = ctx_at("tags")
    assert check("a", ctx) is INVALID
    assert (
        only(ctx)["message"] == "invalid tags 'a'; expected a list of a non-empty string, each at most once"
    )


def test_check_fields_unknown_missing_null_and_defaults() -> None:
    fields = {
        "event": required(text()),
        "window": optional(duration()),
        "tags": optional(list_of(text()), default=[]),
    }
    ctx = ctx_at()
    out = check_fields({"evnt": "x", "window": None}, ctx, fields)
    assert out == {"tags": []}
    assert ctx.details == [
        {
            "document": 2,
            "line": 3,
            "kind": "TrackingPlan",
            "name": "web",
            "field": "evnt",
            "message": "unknown field 'evnt' (did you mean 'event'?); expected one of 'event', 'window', 'tags'",
            "expected": "one of 'event', 'window', 'tags'",
        },
        {
            "document": 2,
            "line": 3,
            "kind": "TrackingPlan",
            "name": "web",
            "field": "event",
            "message": "missing required field 'event'; expected a non-empty string",
            "expected": "a non-empty string",
        },
    ]
    first = check_fields({"event": "x"}, ctx_at(), fields)
    first["tags"].append("changed")
    assert check_fields({"event": "x"}, ctx_at(), fields)["tags"] == []


def test_check_fields_orders_implicit_then_declared() -> None:
    fields = {"b": optional(text()), "a": optional(text())}
    out = check_fields(
        {"a": "1", "name": "n", "b": "2", "kind": "K"}, ctx_at(), fields, implicit=("kind", "name")
    )
    assert list(out) == ["kind", "name", "b", "a"]


def test_nested_fields_report_full_path() -> None:
    check = nested({"schema": required(text())})
    ctx = ctx_at("events", "Signup")
    check({"schem": "x"}, ctx)
    assert [(d["field"], d["line"]) for d in ctx.details] == [
        ("events.Signup.schem", 6),
        ("events.Signup.schema", 6),
    ]
    ctx = ctx_at("events", "Signup")
    assert check("x", ctx) is INVALID
    assert only(ctx)["message"] == "invalid events.Signup 'x'; expected a mapping with fields 'schema'"


def test_rule_syntax_error_names_rule_line_and_col() -> None:
    ctx = ctx_at("where")
    assert rule()("event.total > 3 and\n  event.x >", ctx) is INVALID
    assert only(ctx)["message"].startswith("invalid rule in where: line 2, col 12: expected ")
    assert only(ctx)["message"].endswith("\n  2 |   event.x >\n    |            ^")
    assert only(ctx)["expected"] == 'a rule, e.g. traits.plan == "pro"'
    assert (only(ctx)["field"], only(ctx)["line"]) == ("where", 3)


def test_rule_is_kept_as_written() -> None:
    text = 'traits.plan == "pro"\n  and computed.orders_90d > 1\n'
    assert rule()(text, ctx_at("rule")) == text


def test_event_filter_reads_only_event_properties() -> None:
    check = rule("a rule over event properties", event_filter=True)
    assert check("event.total > 3", ctx_at("where")) == "event.total > 3"
    ctx = ctx_at("where")
    text = 'event.total > 3 and traits.plan == "pro" and count("Order Completed") > 1 and in_segment("vip")'
    assert check(text, ctx) is INVALID
    prefix = "where filters one event and may only read event.<property>; it "
    assert [d["message"] for d in ctx.details] == [
        prefix + "reads 'traits.plan' at line 1, col 21",
        prefix + "uses count(...) at line 1, col 46",
        prefix + "uses in_segment('vip')",
    ]
    ctx = ctx_at("where")
    assert check("", ctx) is INVALID
    assert only(ctx)["message"] == "invalid where ''; expected a rule over event properties"
