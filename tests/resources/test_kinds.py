"""The kind registry: lookups, errors naming the valid kinds, and kinds built from fields."""

from __future__ import annotations

import pytest

from rapport.errors import ValidationError
from rapport.resources import KindSpec, get_kind, known_kinds, register
from rapport.resources.checks import text
from rapport.resources.fields import FieldErrors, optional

KINDS = ("one of 'Channel', 'ComputedTrait', 'ConsentPurpose', 'ContentBlock', 'Experiment', 'Journey', 'Metric', "
         "'Model', 'Placement', 'Segment', 'SubscriptionGroup', 'SuppressionRule', 'Template', 'TrackingPlan'")


def test_importing_the_package_registers_the_built_in_kinds() -> None:
    assert {"ComputedTrait", "ConsentPurpose", "TrackingPlan"} <= set(known_kinds())
    assert known_kinds() == tuple(sorted(known_kinds()))
    assert get_kind("ComputedTrait").name == "ComputedTrait"
    assert get_kind("ComputedTrait").fields[:2] == ("event", "aggregate")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("ComputedTrai", f"unknown kind 'ComputedTrai' (did you mean 'ComputedTrait'?); expected {KINDS}"),
        ("trackingplan", f"unknown kind 'trackingplan' (did you mean 'TrackingPlan'?); expected {KINDS}"),
        ("Audience", f"unknown kind 'Audience'; expected {KINDS}"),
    ],
)
def test_unknown_kind_names_the_valid_kinds_and_the_nearest(name: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        get_kind(name)
    assert caught.value.code == "unknown_kind"
    assert caught.value.message == message
    assert caught.value.details == [{"field": "kind", "message": message, "expected": KINDS}]


def test_register_refuses_bad_names_and_a_second_kind_of_the_same_name() -> None:
    spec = KindSpec.from_fields("ComputedTrait", {"x": optional(text())})
    with pytest.raises(ValueError, match="already registered"):
        register(spec)
    with pytest.raises(ValueError, match="CamelCase"):
        register(KindSpec.from_fields("computed_trait", {}))
    existing = get_kind("ComputedTrait")
    assert register(existing) is existing


def test_from_fields_checks_exactly_the_fields() -> None:
    spec = KindSpec.from_fields("Note", {"body": optional(text(), default="hello")})
    ctx = FieldErrors(kind="Note", name="n")
    assert spec.validate({"kind": "Note", "name": "n"}, ctx) == {"kind": "Note", "name": "n", "body": "hello"}
    assert ctx.details == []
    spec.validate({"kind": "Note", "name": "n", "bdy": "x"}, ctx)
    assert [d["message"] for d in ctx.details] == [
        "unknown field 'bdy' (did you mean 'body'?); expected one of 'kind', 'name', 'body'"
    ]
    assert spec.fields == ("body",)
