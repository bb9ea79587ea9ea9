"""ComputedTrait documents: the DESIGN examples, every error, and round trips of random specs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.errors import ValidationError
from rapport.resources import Resource, dump_documents, parse_documents
from rapport.resources.builtin.computed_trait import AGGREGATES, NEEDS_PROPERTY

Errors = Callable[[str], list[dict[str, Any]]]
AGGREGATE = "one of 'count', 'sum', 'avg', 'min', 'max', 'first', 'last', 'distinct'"
PROPERTY = "an event property name, e.g. 'revenue'"
WHERE = "a rule over the event's properties, e.g. event.revenue > 100"

EXAMPLES = """\
kind: ComputedTrait
name: orders_90d
event: Order Completed
aggregate: count          # count | sum | avg | min | max | first | last | distinct
window: 90d               # optional; absent = all time
---
kind: ComputedTrait
name: revenue_total
event: Order Completed
aggregate: sum
property: revenue
"""


def head(name: str = "t") -> str:
    return f"kind: ComputedTrait\nname: {name}\n"


def err(line: int, field: str, message: str, expected: str, name: str = "t") -> dict[str, Any]:
    return {
        "document": 0,
        "line": line,
        "kind": "ComputedTrait",
        "name": name,
        "field": field,
        "message": message,
        "expected": expected,
    }


def test_design_examples_validate_to_canonical_specs() -> None:
    orders, revenue = parse_documents(EXAMPLES)
    assert orders.spec == {
        "kind": "ComputedTrait",
        "name": "orders_90d",
        "event": "Order Completed",
        "aggregate": "count",
        "window": "90d",
        "purpose": "analytics",
    }
    assert revenue.spec == {
        "kind": "ComputedTrait",
        "name": "revenue_total",
        "event": "Order Completed",
        "aggregate": "sum",
        "property": "revenue",
        "purpose": "analytics",
    }


def test_any_event_first_and_last_without_property() -> None:
    text = head() + "event: '*'\naggregate: last\ndescription: When the profile was last active\n"
    [trait] = parse_documents(text)
    assert trait.spec["event"] == "*" and "property" not in trait.spec


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        (
            "aggregate: count\n",
            [
                err(
                    1,
                    "event",
                    "missing required field 'event'; expected an event name, or '*' for any event",
                    "an event name, or '*' for any event",
                )
            ],
        ),
        (
            "event: x\n",
            [err(1, "aggregate", f"missing required field 'aggregate'; expected {AGGREGATE}", AGGREGATE)],
        ),
        (
            "event: x\naggregate: total\n",
            [err(4, "aggregate", f"unknown aggregate 'total'; expected {AGGREGATE}", AGGREGATE)],
        ),
        (
            "event: ''\naggregate: count\n",
            [
                err(
                    3,
                    "event",
                    "invalid event ''; expected an event name, or '*' for any event",
                    "an event name, or '*' for any event",
                )
            ],
        ),
        (
            "event: x\naggregate: count\nproperty: revenue\n",
            [
                err(
                    5,
                    "property",
                    "aggregate 'count' counts events and takes no property; use aggregate 'distinct' to count the "
                    "distinct values of a property",
                    "no 'property' with aggregate 'count'",
                )
            ],
        ),
        (
            "event: x\naggregate: avg\n",
            [err(1, "property", f"aggregate 'avg' needs a property; expected {PROPERTY}", PROPERTY)],
        ),
        (
            "event: x\naggregate: distinct\nproperty: 3\n",
            [err(5, "property", f"invalid property 3; expected {PROPERTY}", PROPERTY)],
        ),
        (
            "event: x\naggregate: count\nwindow: 90 days\n",
            [
                err(
                    5,
                    "window",
                    "invalid window '90 days'; expected a duration such as '30d': a whole number and one of 's', "
                    "'m' (minutes), 'h', 'd', 'w'",
                    "a duration such as '30d': a whole number and one of 's', 'm' (minutes), 'h', 'd', 'w'",
                )
            ],
        ),
        (
            "event: x\naggregate: count\npurpose: Marketing\n",
            [
                err(
                    5,
                    "purpose",
                    "invalid purpose 'Marketing'; expected a consent purpose name (lower-case letters, digits and "
                    "'_', starting with a letter, at most 63 characters)",
                    "a consent purpose name (lower-case letters, digits and '_', starting with a letter, at most "
                    "63 characters)",
                )
            ],
        ),
        (
            "event: x\naggregate: count\nwindw: 90d\n",
            [
                err(
                    5,
                    "windw",
                    "unknown field 'windw' (did you mean 'window'?); expected one of 'kind', 'name', 'event', "
                    "'aggregate', 'property', 'window', 'where', 'purpose', 'description'",
                    "one of 'kind', 'name', 'event', 'aggregate', 'property', 'window', 'where', 'purpose', "
                    "'description'",
                )
            ],
        ),
    ],
    ids=[
        "no-event",
        "no-aggregate",
        "bad-aggregate",
        "empty-event",
        "count-property",
        "avg-no-property",
        "property-not-text",
        "bad-window",
        "bad-purpose",
        "typo",
    ],
)
def test_errors(errors_of: Errors, body: str, errors: list[dict[str, Any]]) -> None:
    assert errors_of(head() + body) == errors


def test_where_is_parsed_and_kept_as_written() -> None:
    text = head() + "event: Order Completed\naggregate: count\nwhere: |\n  event.total > 100\n"
    [trait] = parse_documents(text)
    assert trait.spec["where"] == "event.total > 100\n"


def test_where_syntax_error_points_into_the_rule() -> None:
    text = head() + "event: x\naggregate: count\nwhere: |\n  event.total > 1 and\n  event.x >> 2\n"
    with pytest.raises(ValidationError) as caught:
        parse_documents(text)
    [error] = caught.value.details
    assert (error["field"], error["line"], error["expected"]) == ("where", 5, WHERE)
    assert error["message"].startswith("invalid rule in where: line 2, col 10: expected ")


def test_where_reads_only_event_properties(errors_of: Errors) -> None:
    text = head() + "event: x\naggregate: count\nwhere: traits.plan == 'pro'\n"
    message = (
        "where filters one event and may only read event.<property>; it reads 'traits.plan' at line 1, col 1"
    )
    assert errors_of(text) == [err(5, "where", message, WHERE)]


names = st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)
texts = st.text(
    st.characters(blacklist_categories=("Cs", "Cc")) | st.sampled_from("\n\t '\"#:-|>&*!%@`{}[],?"),
    min_size=1,
).filter(str.strip)
windows = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 10_000), st.sampled_from("smhdw"))


@st.composite
def computed_traits(draw: st.DrawFn) -> Resource:
    aggregate = draw(st.sampled_from(AGGREGATES))
    spec: dict[str, Any] = {
        "kind": "ComputedTrait",
        "name": draw(names),
        "event": draw(st.just("*") | texts),
        "aggregate": aggregate,
    }
    if aggregate in NEEDS_PROPERTY or (aggregate in ("first", "last") and draw(st.booleans())):
        spec["property"] = draw(texts)
    if draw(st.booleans()):
        spec["window"] = draw(windows)
    if draw(st.booleans()):
        spec["where"] = f"event.{draw(names)} > {draw(st.integers(-1000, 1000))}"
    spec["purpose"] = draw(st.just("analytics") | names)
    if draw(st.booleans()):
        spec["description"] = draw(texts)
    return Resource("ComputedTrait", spec["name"], spec)


@settings(max_examples=300)
@given(st.lists(computed_traits(), max_size=4, unique_by=lambda r: r.name))
def test_random_valid_specs_survive_dump_and_parse(traits: list[Resource]) -> None:
    again = parse_documents(dump_documents(traits))
    assert again == traits
    assert [r.digest for r in again] == [r.digest for r in traits]
    assert dump_documents(again) == dump_documents(traits)
