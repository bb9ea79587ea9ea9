"""ConsentPurpose: a purpose of processing, its legal basis and how long a consent to it lasts."""

from __future__ import annotations

from typing import Final

from rapport.resources.checks import duration, one_of, text
from rapport.resources.fields import FieldErrors, check_document, optional, quoted, required
from rapport.resources.kinds import KindSpec, register
from rapport.types import JsonObject

LEGAL_BASES: Final = (
    "consent",
    "legitimate_interest",
    "contract",
    "legal_obligation",
    "vital_interest",
    "public_task",
)
CHANNELS: Final = ("email", "sms", "push", "inapp", "webhook", "offline")
NECESSARY: Final = "necessary"

FIELDS: Final = {
    "legal_basis": optional(one_of(*LEGAL_BASES), default="consent"),
    "description": required(text("a sentence telling people what the purpose covers")),
    "channel": optional(one_of(*CHANNELS)),
    "default_expiry": optional(duration()),
}


def validate(doc: JsonObject, ctx: FieldErrors) -> JsonObject:
    """Check a ConsentPurpose; ``necessary`` is always allowed, so its legal basis is never consent."""
    spec = check_document(doc, ctx, FIELDS)
    if spec.get("name") == NECESSARY and spec.get("legal_basis") == "consent":
        expected = f"one of {quoted(LEGAL_BASES[1:])}"
        ctx.add(
            f"{NECESSARY!r} is always allowed, so its legal_basis cannot be 'consent' "
            f"(the default); expected {expected}",
            expected,
            "legal_basis",
        )
    return spec


CONSENT_PURPOSE: Final = register(KindSpec("ConsentPurpose", validate, tuple(FIELDS)))
