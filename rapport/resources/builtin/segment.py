"""Segment: the profiles a rule selects, with its governance (owner, purpose, sensitivity) and its
place in an exclusive group (priority, default)."""

from __future__ import annotations

from typing import Final

from rapport.resources.checks import boolean, one_of, reference, rule, text, whole_number
from rapport.resources.fields import FieldErrors, check_document, optional
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

SENSITIVITIES: Final = ("low", "normal", "high")

FIELDS: Final = {
    "description": optional(text()),
    "owner": optional(text("a team or person, e.g. 'crm'")),
    "purpose": optional(reference("a consent purpose name; members without it are not activatable")),
    "sensitivity": optional(one_of(*SENSITIVITIES), default="normal"),
    "group": optional(reference("an exclusive group name: a profile sits in at most one segment of a group")),
    "priority": optional(whole_number(0), default=0),
    "default": optional(boolean(), default=False),
    "rule": optional(rule('a rule, e.g. computed.orders_90d == 0 and exists(traits.email)')),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Segment; ``priority`` and ``default`` only mean something inside a ``group``."""
    spec = check_document(doc, ctx, FIELDS)
    if spec.get("default") and not spec.get("group"):
        ctx.add("'default: true' makes the fallback segment of a group; it needs 'group'", "a 'group' name",
                "group")
    if doc.get("rule") is None and not spec.get("default"):
        expected = FIELDS["rule"].check.expected
        ctx.add(f"missing field 'rule' (only a group's default segment may omit it); expected {expected}",
                expected, "rule")
    return spec


SEGMENT: Final = register(KindSpec("Segment", validate, tuple(FIELDS)))
