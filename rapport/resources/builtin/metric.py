"""Metric: what an experiment measures per unit, counted from the unit's first exposure.

Types: ``conversion`` (did the event happen within the window), ``revenue`` (sum of a property within
the window), ``count`` (events within the window), ``retention`` (active on day N after exposure) and
``ratio`` (Σ numerator / Σ denominator over units, e.g. clicks per delivered email). ``direction`` says
which way is good, so that a guardrail moving the wrong way is flagged.
"""

from __future__ import annotations

from typing import Final

from rapport.resources.checks import duration, nested, one_of, positive_number, rule, text, whole_number
from rapport.resources.fields import FieldErrors, check_document, optional, required
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

TYPES: Final = ("conversion", "revenue", "count", "retention", "ratio")
DIRECTIONS: Final = ("increase", "decrease")

PART: Final = nested({
    "event": required(text("an event name, e.g. 'Email Delivered'")),
    "property": optional(text("an event property holding a number, e.g. 'revenue'")),
    "where": optional(rule("a rule over the event's properties, e.g. event.revenue > 100", event_filter=True)),
})

FIELDS: Final = {
    "type": required(one_of(*TYPES)),
    "event": optional(text("an event name, e.g. 'Order Completed'")),
    "property": optional(text("an event property holding a number, e.g. 'revenue'")),
    "where": optional(rule("a rule over the event's properties, e.g. event.revenue > 100", event_filter=True)),
    "window": optional(duration()),
    "day": optional(whole_number(1)),
    "numerator": optional(PART),
    "denominator": optional(PART),
    "direction": optional(one_of(*DIRECTIONS), default="increase"),
    "min_detectable_effect": optional(positive_number()),
    "description": optional(text()),
}

# Which fields each type needs (True), allows (None) or refuses (absent).
NEEDS: Final[dict[str, dict[str, bool | None]]] = {
    "conversion": {"event": True, "window": True, "where": None},
    "revenue": {"event": True, "property": True, "window": True, "where": None},
    "count": {"event": True, "window": True, "where": None},
    "retention": {"day": True, "event": None, "where": None},
    "ratio": {"numerator": True, "denominator": True, "window": True},
}
TYPED: Final = ("event", "property", "where", "window", "day", "numerator", "denominator")

HELP: Final = {
    "event": FIELDS["event"].check.expected,
    "property": FIELDS["property"].check.expected,
    "window": FIELDS["window"].check.expected,
    "day": "a whole number of days after exposure, e.g. 7",
    "numerator": "a mapping {event, property?, where?}",
    "denominator": "a mapping {event, property?, where?}",
    "where": FIELDS["where"].check.expected,
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Metric; which of event, property, window, day, numerator and denominator it needs depends on type."""
    spec = check_document(doc, ctx, FIELDS)
    kind = spec.get("type")
    if not isinstance(kind, str):
        return spec
    needs = NEEDS[kind]
    for name in TYPED:
        given = doc.get(name) is not None
        if needs.get(name) and not given:
            ctx.add(f"a {kind} metric needs {name!r}; expected {HELP[name]}", HELP[name], name)
        elif given and name not in needs:
            allowed = ", ".join(repr(n) for n in needs)
            ctx.add(f"a {kind} metric takes no {name!r}; it reads {allowed}", f"no {name!r} with type {kind!r}",
                    name)
    return spec


METRIC: Final = register(KindSpec("Metric", validate, tuple(FIELDS)))
