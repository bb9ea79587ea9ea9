"""The JSON form of rules: its shape, and errors that name the bad field."""

from __future__ import annotations

from typing import Any

import pytest

from rapport.errors import ValidationError
from rapport.rules import from_json, parse, to_json


def test_json_form_shape_is_stable() -> None:
    rule = parse('computed.revenue_total > 200 and count("Order Completed", within=30d, where=event.x in [1]) >= 1')
    assert to_json(rule) == {
        "type": "and",
        "items": [
            {
                "type": "compare",
                "op": ">",
                "left": {"type": "path", "root": "computed", "parts": ["revenue_total"]},
                "right": {"type": "const", "value": 200},
            },
            {
                "type": "compare",
                "op": ">=",
                "left": {
                    "type": "event_fn",
                    "fn": "count",
                    "event": "Order Completed",
                    "property": None,
                    "within_ms": 2592000000,
                    "where": {
                        "type": "in",
                        "left": {"type": "path", "root": "event", "parts": ["x"]},
                        "values": [{"type": "const", "value": 1}],
                    },
                },
                "right": {"type": "const", "value": 1},
            },
        ],
    }


def test_other_node_shapes() -> None:
    rule = parse("exists(traits.a) or traits.b is not null or in_segment('v') or traits.c > 2026-01-31")
    items = to_json(rule)["items"]
    assert items[0] == {"type": "exists", "path": {"type": "path", "root": "traits", "parts": ["a"]}}
    assert items[1]["type"] == "is_null" and items[1]["negated"] is True
    assert items[2] == {"type": "in_segment", "name": "v"}
    assert items[3]["right"] == {"type": "date", "ms": 1769817600000, "text": "2026-01-31"}


PATH = {"type": "path", "root": "traits", "parts": ["a"]}
ONE = {"type": "const", "value": 1}


def _compare(**changes: Any) -> dict[str, Any]:
    return {"type": "compare", "op": "==", "left": PATH, "right": ONE, **changes}


def _count(**changes: Any) -> dict[str, Any]:
    fn = {"type": "event_fn", "fn": "count", "event": "E", "property": None, "within_ms": None, "where": None}
    return _compare(left={**fn, **changes})


BAD: list[tuple[object, str, str]] = [
    ([], "$", "expected an object with a 'type'"),
    ({"type": "xor"}, "$.type", "unknown type 'xor'; expected one of 'and', 'compare'"),
    ({"type": "and", "items": [_compare()]}, "$.items", "expected at least two items, got 1"),
    ({"type": "or", "items": [_compare(), {"type": "path"}]}, "$.items[1].type", "unknown type 'path'"),
    ({"type": "not"}, "$.item", "expected an object"),
    (_compare(op="=>"), "$.op", "unknown operator '=>'; expected one of '!=', '<', '<=', '==', '>', '>='"),
    (_compare(left={**PATH, "root": "trait"}), "$.left.root", "unknown path root 'trait'"),
    (_compare(left={**PATH, "parts": []}), "$.left.parts", "expected a non-empty list of strings"),
    (_compare(left={**PATH, "parts": ["a", 1]}), "$.left.parts", "expected a non-empty list of strings"),
    (
        _compare(right={"type": "const", "value": [1]}),
        "$.right.value",
        "expected str or int or float or bool or null",
    ),
    (_compare(right={"type": "const", "value": float("nan")}), "$.right.value", "expected a finite number"),
    (_compare(right={"type": "const"}), "$.right.value", "missing"),
    (_compare(right={"type": "duration", "ms": 1500}), "$.right.ms", "whole number of seconds"),
    (_compare(right={"type": "duration", "ms": True}), "$.right.ms", "expected int, got True"),
    (_compare(right={"type": "date", "ms": 10**18}), "$.right.ms", "years 1 to 9999"),
    (_compare(right={"type": "date", "ms": 0, "text": 5}), "$.right.text", "expected str"),
    (_compare(right={"type": "exists"}), "$.right.type", "unknown type 'exists'"),
    ({"type": "exists", "path": ONE}, "$.path.type", "unknown type 'const'; expected one of 'path'"),
    ({"type": "is_null", "path": PATH}, "$.negated", "missing"),
    ({"type": "in", "left": PATH, "values": [PATH]}, "$.values[0].type", "unknown type 'path'"),
    ({"type": "in_segment", "name": None}, "$.name", "expected str, got None"),
    (_count(fn="total"), "$.left.fn", "unknown function 'total'; expected one of 'avg', 'count'"),
    (_count(fn="sum"), "$.left.property", "sum needs the name of the property"),
    (_count(property="revenue"), "$.left.property", "count takes no property"),
    (_count(within_ms=0), "$.left.within_ms", "positive whole number of seconds"),
    (_count(where=_compare()), "$.left.where.left.root", "expected 'event' inside where, got 'traits'"),
    (
        _count(where={"type": "in_segment", "name": "v"}),
        "$.left.where",
        "in_segment cannot be used inside where",
    ),
    (
        _count(where=_compare(left={**PATH, "root": "event"}, right=_count()["left"])),
        "$.left.where.right",
        "event functions cannot be used inside where",
    ),
]


@pytest.mark.parametrize(("form", "field", "fragment"), BAD, ids=[f"{f}:{m[:20]}" for _, f, m in BAD])
def test_invalid_json_form_names_the_bad_field(form: object, field: str, fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        from_json(form)
    assert info.value.code == "invalid_rule"
    assert info.value.details[0]["field"] == field
    assert fragment in info.value.message
    assert info.value.message.startswith(f"invalid rule at {field}: ")
