"""Identifiers from raw values and Segment-spec messages, in the one normalized form stored and matched.

Rules, per type:

- every type: strings are trimmed; an empty result is no identifier (None); a value longer than
  ``MAX_LENGTH`` characters after trimming, or holding a NUL character, raises
  ``ValidationError(code="invalid_identifier")`` — it is a broken payload, not an absent value.
- ``email``: lower-cased; kept only with exactly one ``@``, text on both sides and no whitespace.
- ``phone``: E.164 (``+4930123456``) via ``phonenumbers``; numbers without a ``+`` country code need
  ``default_region`` (e.g. ``"DE"``); numbers libphonenumber does not consider valid give None.
- ``user_id``, ``anonymous_id``, ``device_id`` and workspace-defined types: the trimmed text. JSON
  numbers are accepted as Segment does (``123`` → ``"123"``). A float is accepted only when it is a
  whole number that a double holds exactly (|x| ≤ 2**53) and is written as that integer
  (``1.0`` → ``"1"``, as JavaScript's ``String(1.0)`` does), so ``1`` and ``1.0`` are one id;
  other floats (``1.5``, NaN, 1e300) give None. Numbers are not accepted for email or phone.
- booleans, objects, arrays and null give None for every type.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import lru_cache
from typing import Any

import phonenumbers

from rapport.errors import ValidationError
from rapport.identity.model import Identifier, valid_type_name

MAX_LENGTH = 256
_EXACT_FLOAT_LIMIT = 2**53
_TEXT_ONLY = frozenset({"email", "phone"})


def normalize(type: str, raw: object, *, default_region: str | None = None) -> Identifier | None:
    """The normalized identifier for a raw value, or None when the value is absent or unusable.

    Raises ``ValidationError`` for an invalid type name, an unknown ``default_region``, or a value
    over ``MAX_LENGTH`` characters.
    """
    if not valid_type_name(type):
        raise ValidationError(
            f"invalid identifier type {type!r}; expected lower-case letters, digits and '_' "
            "starting with a letter, e.g. 'user_id', 'email', 'phone', 'device_id', 'anonymous_id'",
            code="invalid_identifier_type",
        )
    text = _text(type, raw)
    if text is None:
        return None
    if type == "email":
        return _email(text)
    if type == "phone":
        return _phone(text, default_region)
    return Identifier(type, text)


def identifiers_from_event(
    event: Mapping[str, Any],
    *,
    default_region: str | None = None,
    custom_types: Collection[str] = (),
) -> list[Identifier]:
    """The identifiers a Segment-spec message carries, deduplicated, in extraction order.

    Reads ``userId``, ``anonymousId``, ``traits.email``/``context.traits.email``,
    ``traits.phone``/``context.traits.phone``, ``context.device.id`` (as ``device_id``) and, for each
    of ``custom_types``, ``traits.<type>``/``context.traits.<type>``. An alias message's
    ``previousId`` is not among them: see ``alias_previous``.
    """
    found: dict[Identifier, None] = {}
    for id_type, path, field in _sources(tuple(custom_types)):
        raw = _lookup(event, path)
        if raw is None:
            continue
        identifier = _at_field(field, id_type, raw, default_region)
        if identifier is not None:
            found.setdefault(identifier, None)
    return list(found)


@lru_cache(maxsize=64)
def _sources(custom_types: tuple[str, ...]) -> tuple[tuple[str, tuple[str, ...], str], ...]:
    """(type, path, dotted field name) to read, in extraction order (built once per set of custom types)."""
    sources: list[tuple[str, tuple[str, ...]]] = [
        ("user_id", ("userId",)),
        ("anonymous_id", ("anonymousId",)),
    ]
    for name in ("email", "phone", *custom_types):
        sources.append((name, ("traits", name)))
        sources.append((name, ("context", "traits", name)))
    sources.append(("device_id", ("context", "device", "id")))
    return tuple((id_type, path, ".".join(path)) for id_type, path in sources)


def alias_previous(event: Mapping[str, Any]) -> str | None:
    """The normalized ``previousId`` of an alias message (a user or anonymous id), else None."""
    if event.get("type") != "alias":
        return None
    raw = event.get("previousId")
    if raw is None:
        return None
    identifier = _at_field("previousId", "user_id", raw, None)
    return None if identifier is None else identifier.value


def _at_field(field: str, id_type: str, raw: object, default_region: str | None) -> Identifier | None:
    try:
        return normalize(id_type, raw, default_region=default_region)
    except ValidationError as error:
        raise ValidationError(
            f"{field}: {error.message}", code=error.code, details=[{"field": field, "type": id_type}]
        ) from error


def _lookup(event: Mapping[str, Any], path: tuple[str, ...]) -> object:
    node: object = event
    for key in path:
        if type(node) is not dict and not isinstance(node, Mapping):  # the exact type first: cheaper
            return None
        node = node.get(key)
    return node


def _text(type: str, raw: object) -> str | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, str):
        text = raw.strip()
    elif isinstance(raw, int) and type not in _TEXT_ONLY:
        if raw.bit_length() > 1024:  # over 300 digits: too long, and too big for str() to be cheap
            raise _too_long(type, None)
        text = str(raw)
    elif isinstance(raw, float) and type not in _TEXT_ONLY:
        if not raw.is_integer() or abs(raw) > _EXACT_FLOAT_LIMIT:
            return None
        text = str(int(raw))
    else:
        return None
    if not text:
        return None
    if len(text) > MAX_LENGTH:
        raise _too_long(type, len(text))
    if "\x00" in text:
        raise ValidationError(
            f"{type} identifier contains a NUL character, which no identifier may hold",
            code="invalid_identifier",
            details=[{"type": type}],
        )
    return text


def _too_long(type: str, length: int | None) -> ValidationError:
    size = "over 300" if length is None else str(length)
    return ValidationError(
        f"{type} identifier is {size} characters long; at most {MAX_LENGTH} are allowed",
        code="invalid_identifier",
        details=[{"type": type, "length": length, "max_length": MAX_LENGTH}],
    )


def _email(text: str) -> Identifier | None:
    lowered = text.lower()
    local, at, domain = lowered.partition("@")
    if not at or not local or not domain or "@" in domain or any(c.isspace() for c in lowered):
        return None
    return Identifier("email", lowered)


def _phone(text: str, default_region: str | None) -> Identifier | None:
    region = None
    if default_region is not None:
        region = default_region.upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ValidationError(
                f"unknown phone region {default_region!r}; expected an ISO 3166-1 alpha-2 code "
                "such as 'US', 'GB', 'DE'",
                code="invalid_region",
            )
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return Identifier("phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
