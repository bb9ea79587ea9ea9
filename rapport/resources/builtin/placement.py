"""Placement: a slot on a web page, app screen or message whose block is chosen per person.

Without consent for ``purpose`` (default ``personalization``) a person gets the ``default`` block. With it,
either the first of ``variants`` whose ``when`` rule matches wins, or the ``rank`` candidates are ordered by
expected value (a model's calibrated propensity × the offer's value) and the best eligible one wins; when
nothing is chosen the default is shown. Which blocks exist and fit the placement's channel, and what the rules
read, is checked once the workspace is known (``rapport.content.check``).
"""

from __future__ import annotations

from typing import Final

from rapport.resources.builtin.content_block import CHANNELS, amount
from rapport.resources.checks import list_of, nested, one_of, reference, rule, text
from rapport.resources.fields import FieldErrors, check_document, optional, required
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

DEFAULT_PURPOSE: Final = "personalization"
VARIANT: Final = {
    "block": required(reference("the name of a ContentBlock")),
    "when": required(rule('a rule, e.g. computed.revenue_total > 100 or context.page == "home"')),
}
CANDIDATE: Final = {
    "block": required(reference("the name of a ContentBlock")),
    "model": required(reference("the name of a Model giving the propensity to take this offer")),
    "value": optional(amount()),
    "when": optional(rule('a rule the person must match for this offer, e.g. context.page == "cart"')),
}
FIELDS: Final = {
    "channel": required(one_of(*CHANNELS)),
    "description": optional(text()),
    "purpose": optional(reference("a consent purpose; without it the default block is shown"),
                        default=DEFAULT_PURPOSE),
    "default": required(reference("the name of the ContentBlock shown when nothing else is")),
    "variants": optional(list_of(nested(VARIANT), expected="a list of {block, when} (the first match wins)")),
    "rank": optional(list_of(nested(CANDIDATE), expected="a list of {block, model, value?, when?} offers")),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a Placement; a slot chooses by rules or by ranking, not both."""
    spec = check_document(doc, ctx, FIELDS)
    if doc.get("variants") is not None and doc.get("rank") is not None:
        ctx.add("a placement chooses by 'variants' (rules, first match wins) or by 'rank' (expected value), "
                "not both", "one of 'variants' or 'rank'", "rank")
    return spec


PLACEMENT: Final = register(KindSpec("Placement", validate, tuple(FIELDS)))
