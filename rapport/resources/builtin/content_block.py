"""ContentBlock: a piece of content in Liquid for one channel, with its locale variants, intent tags, validity
window, offer value, promoted products, per-person impression cap and eligibility rule.

A block declares its own language with ``locale`` (its ``title``/``body``) and may carry translations under
``locales: {de: {body: ...}, de-AT: {...}}``; the decision engine picks the closest one to the request's locale
(``rapport.content.compile.locale_chain``). Every Liquid part is parsed when the resource is applied; which
profile fields it may print is checked against the workspace's PII policy once the workspace is known
(``rapport.content.check``).
"""

from __future__ import annotations

import math
from typing import Final

from rapport.clock import parse_iso
from rapport.resources.builtin.template import liquid, locale
from rapport.resources.checks import duration, list_of, mapping, nested, one_of, reference, rule, text, whole_number
from rapport.resources.fields import Check, FieldErrors, check_document, optional, required, show
from rapport.resources.kinds import KindSpec, register
from rapport.types import Json, JsonObject

CHANNELS: Final = ("web", "app", "email", "push", "sms", "inapp")
"""Where a block is shown: a slot on a web page or app screen, or the body of a message."""
INSTANT_HELP: Final = "an ISO-8601 instant such as '2026-03-01T00:00:00Z'"


def instant() -> Check:
    """An ISO-8601 instant, kept as written."""

    def run(value: Json, ctx: FieldErrors) -> Json:
        if isinstance(value, str):
            try:
                parse_iso(value)
            except ValueError:
                pass
            else:
                return value
        return ctx.reject(value, INSTANT_HELP)

    return Check(INSTANT_HELP, run)


def amount() -> Check:
    """A finite number of at least zero (an offer's value); booleans are not numbers."""
    expected = "a number of at least 0, e.g. the offer's value in the shop's currency"

    def run(value: Json, ctx: FieldErrors) -> Json:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
        return value if ok else ctx.reject(value, expected)

    return Check(expected, run)


TRANSLATION: Final = {
    "title": optional(liquid("Liquid text for the title in this locale")),
    "body": required(liquid("Liquid text for the body in this locale")),
}
FIELDS: Final = {
    "channel": required(one_of(*CHANNELS)),
    "description": optional(text()),
    "locale": optional(locale()),
    "tags": optional(list_of(reference("a tag naming the block's intent, e.g. 'loyalty'"), unique=True)),
    "valid_from": optional(instant()),
    "valid_until": optional(instant()),
    "title": optional(liquid("Liquid text for the block's title")),
    "body": required(liquid("Liquid text for the block's body (HTML for web, app and email)")),
    "locales": optional(mapping(nested(TRANSLATION), keys=locale())),
    "value": optional(amount()),
    "products": optional(list_of(text("a product id"), unique=True)),
    "cap": optional(nested({"count": required(whole_number(1)), "per": required(duration())})),
    "when": optional(rule("a rule a person must match to see the block, e.g. computed.orders_90d > 0")),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a ContentBlock: each field, a validity window that opens before it closes, and translations
    that are not the block's own locale."""
    spec = check_document(doc, ctx, FIELDS)
    start, end = spec.get("valid_from"), spec.get("valid_until")
    if isinstance(start, str) and isinstance(end, str) and parse_iso(end) <= parse_iso(start):
        ctx.add(f"valid_until {show(end)} is not after valid_from {show(start)}; the block would never be shown",
                "a valid_until later than valid_from", "valid_until")
    own = spec.get("locale")
    locales = spec.get("locales")
    if isinstance(own, str) and isinstance(locales, dict) and own in locales:
        ctx.add(f"locales.{own} repeats the block's own locale {own!r}, whose text is 'title'/'body'",
                "translations into other locales than the block's own", "locales", own)
    return spec


CONTENT_BLOCK: Final = register(KindSpec("ContentBlock", validate, tuple(FIELDS)))
