"""ComputedTrait: a per-profile aggregate of one event, or of every event, over an optional window."""

from __future__ import annotations

from typing import Final

from rapport.resources.checks import duration, one_of, reference, rule, text
from rapport.resources.fields import FieldErrors, check_document, optional, required
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

AGGREGATES: Final = ("count", "sum", "avg", "min", "max", "first", "last", "distinct")
NEEDS_PROPERTY: Final = frozenset({"sum", "avg", "min", "max", "distinct"})
"""Aggregates of a property's values; ``first``/``last`` without a property give the event time."""

FIELDS: Final = {
    "event": required(text("an event name, or '*' for any event")),
    "aggregate": required(one_of(*AGGREGATES)),
    "property": optional(text("an event property name, e.g. 'revenue'")),
    "window": optional(duration()),
    "where": optional(
        rule("a rule over the event's properties, e.g. event.revenue > 100", event_filter=True)
    ),
    "purpose": optional(reference("a consent purpose name"), default="analytics"),
    "description": optional(text()),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a ComputedTrait; ``property`` is required, optional or forbidden by ``aggregate``."""
    spec = check_document(doc, ctx, FIELDS)
    aggregate, given = spec.get("aggregate"), doc.get("property") is not None
    if aggregate == "count" and given:
        expected = "no 'property' with aggregate 'count'"
        ctx.add(
            "aggregate 'count' counts events and takes no property; "
            "use aggregate 'distinct' to count the distinct values of a property",
            expected,
            "property",
        )
    elif aggregate in NEEDS_PROPERTY and not given:
        expected = FIELDS["property"].check.expected
        ctx.add(f"aggregate {aggregate!r} needs a property; expected {expected}", expected, "property")
    return spec


COMPUTED_TRAIT: Final = register(KindSpec("ComputedTrait", validate, tuple(FIELDS)))
