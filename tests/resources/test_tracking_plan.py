"""TrackingPlan documents: schema errors located inside the schema, and checking events against a plan."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rapport.resources import parse_documents
from rapport.resources.builtin.tracking_plan import compile_plan, validate_event

Errors = Callable[[str], list[dict[str, Any]]]
SCHEMA = "a JSON Schema (draft 2020-12) as a mapping"

PLAN = """\
kind: TrackingPlan
name: web
allow_unplanned: false
events:
  Order Completed:
    schema:
      type: object
      required: [order_id, revenue]
      properties:
        order_id: {type: string}
        revenue: {type: number, minimum: 0}
        items:
          type: array
          items: {type: object, required: [sku]}
    purposes: [analytics]
  Cart Added:
    schema: {type: object}
identify:
  schema:
    type: object
    properties:
      email: {type: string, format: email}
page:
  schema: {type: object, required: [path]}
group:
  schema: {type: object, required: [plan]}
"""


def err(line: int, field: str, message: str, expected: str) -> dict[str, Any]:
    return {
        "document": 0,
        "line": line,
        "kind": "TrackingPlan",
        "name": "web",
        "field": field,
        "message": message,
        "expected": expected,
    }


def plan() -> dict[str, Any]:
    return parse_documents(PLAN)[0].spec


def test_defaults_are_filled_in() -> None:
    [minimal] = parse_documents("kind: TrackingPlan\nname: web\n")
    assert minimal.spec == {
        "kind": "TrackingPlan",
        "name": "web",
        "mode": "reject",
        "allow_unplanned": True,
        "events": {},
    }
    assert list(plan()) == ["kind", "name", "mode", "allow_unplanned", "events", "identify", "page", "group"]


def test_schema_errors_point_inside_the_schema(errors_of: Errors) -> None:
    text = (
        "kind: TrackingPlan\nname: web\nevents:\n"
        "  Signup:\n"
        "    schema:\n"
        "      type: objct\n"
        "      properties:\n"
        "        plan:\n"
        "          minLength: short\n"
        "      required: plan\n"
    )
    assert errors_of(text) == [
        err(
            6,
            "events.Signup.schema.type",
            "invalid JSON Schema in events.Signup.schema.type: unknown type 'objct' (did you mean 'object'?); "
            "expected one of 'array', 'boolean', 'integer', 'null', 'number', 'object', 'string'",
            SCHEMA,
        ),
        err(
            9,
            "events.Signup.schema.properties.plan.minLength",
            "invalid JSON Schema in events.Signup.schema.properties.plan.minLength: "
            "'short' is not of type 'integer'",
            SCHEMA,
        ),
        err(
            10,
            "events.Signup.schema.required",
            "invalid JSON Schema in events.Signup.schema.required: 'plan' is not of type 'array'",
            SCHEMA,
        ),
    ]


def test_entry_and_plan_field_errors(errors_of: Errors) -> None:
    text = (
        "kind: TrackingPlan\nname: web\nmode: drop\nallow_unplanned: no\nevents:\n"
        "  Signup: {schem: {}}\n"
        "  Login:\n    schema: [1]\n    purposes: [analytics, analytics, Ads]\n"
        "  '': {schema: {}}\n"
        "identify: {type: object}\n"
    )
    purpose = (
        "a consent purpose name (lower-case letters, digits and '_', starting with a letter, "
        "at most 63 characters)"
    )
    assert errors_of(text) == [
        err(
            3,
            "mode",
            "unknown mode 'drop'; expected one of 'reject', 'flag', 'quarantine'",
            "one of 'reject', 'flag', 'quarantine'",
        ),
        err(4, "allow_unplanned", "invalid allow_unplanned 'no'; expected true or false", "true or false"),
        err(
            6,
            "events.Signup.schem",
            "unknown field 'schem' (did you mean 'schema'?); expected one of 'schema', 'purposes'",
            "one of 'schema', 'purposes'",
        ),
        err(6, "events.Signup.schema", f"missing required field 'schema'; expected {SCHEMA}", SCHEMA),
        err(8, "events.Login.schema", f"invalid events.Login.schema a list; expected {SCHEMA}", SCHEMA),
        err(
            9,
            "events.Login.purposes[1]",
            "duplicate 'analytics' in events.Login.purposes; expected a list of consent purpose names, "
            "each at most once",
            "a list of consent purpose names, each at most once",
        ),
        err(
            9,
            "events.Login.purposes[2]",
            f"invalid events.Login.purposes[2] 'Ads'; expected {purpose}",
            purpose,
        ),
        err(10, "events.", "invalid events. ''; expected an event name", "an event name"),
        err(
            11,
            "identify.type",
            "unknown field 'type'; expected one of 'schema', 'purposes'",
            "one of 'schema', 'purposes'",
        ),
        err(11, "identify.schema", f"missing required field 'schema'; expected {SCHEMA}", SCHEMA),
    ]


def test_valid_messages_have_no_violations() -> None:
    spec = plan()
    track = {"type": "track", "event": "Order Completed", "properties": {"order_id": "o1", "revenue": 12.5}}
    assert validate_event(spec, track) == []
    assert validate_event(spec, {"type": "track", "event": "Cart Added"}) == []
    assert validate_event(spec, {"type": "identify", "traits": {"email": "a@b.example"}}) == []
    assert validate_event(spec, {"type": "page", "properties": {"path": "/"}}) == []
    assert validate_event(spec, {"type": "alias", "previousId": "x"}) == []
    assert validate_event(spec, {"type": "screen", "name": "Home"}) == []


def test_track_violations_name_the_property_path() -> None:
    message = {
        "type": "track",
        "event": "Order Completed",
        "properties": {"revenue": -1, "items": [{"sku": "a"}, {"name": "b"}]},
    }
    assert validate_event(plan(), message) == [
        "properties.items[1]: 'sku' is a required property",
        "properties.revenue: -1 is less than the minimum of 0",
        "properties: 'order_id' is a required property",
    ]


def test_unplanned_events() -> None:
    message = {"type": "track", "event": "Order Complete", "properties": {}}
    assert validate_event(plan(), message) == [
        "event: 'Order Complete' is not in the tracking plan (did you mean 'Order Completed'?)"
    ]
    lenient = {**plan(), "allow_unplanned": True}
    assert validate_event(lenient, message) == []
    assert validate_event(plan(), {"type": "track", "properties": {}}) == [
        "event: a track call needs an event name, got None"
    ]


def test_identify_page_and_group_check_their_payloads() -> None:
    spec = plan()
    assert validate_event(spec, {"type": "identify", "traits": {"email": "not an address"}}) == [
        "traits.email: 'not an address' is not a 'email'"
    ]
    assert validate_event(spec, {"type": "page", "properties": {}}) == [
        "properties: 'path' is a required property"
    ]
    assert validate_event(spec, {"type": "group", "groupId": "g1"}) == [
        "traits: 'plan' is a required property"
    ]
    assert validate_event({**spec, "identify": None}, {"type": "identify", "traits": {"email": 3}}) == []


def test_message_without_type_is_a_track_call_when_it_names_an_event() -> None:
    assert validate_event(plan(), {"event": "Order Completed", "properties": {"order_id": "o"}}) == [
        "properties: 'revenue' is a required property"
    ]


def test_unresolvable_reference_is_a_violation_not_a_crash() -> None:
    [broken] = parse_documents(
        "kind: TrackingPlan\nname: web\nevents:\n  Signup:\n    schema: {$ref: '#/$defs/missing'}\n"
    )
    [violation] = validate_event(broken.spec, {"type": "track", "event": "Signup", "properties": {}})
    assert violation.startswith("properties: the plan's schema has a reference that cannot be resolved: ")


def test_compiled_plans_are_reused_while_the_spec_is_unchanged() -> None:
    assert compile_plan(plan()) is compile_plan(plan())
    changed = {**plan(), "allow_unplanned": True}
    assert compile_plan(changed) is not compile_plan(plan())
    assert compile_plan(plan()).purposes["Order Completed"] == ("analytics",)
    assert compile_plan(plan()).purposes["Cart Added"] == ()
