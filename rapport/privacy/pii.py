"""Field-level encryption of personal data inside JSON documents (events, traits).

A value under a PII key (matched ignoring case) is replaced by a marker object
``{"$pii": "<base64 ciphertext>"}``; the ciphertext seals the value's JSON encoding, so any JSON
value (string, number, object, list) is hidden whole. The walks copy only the containers on the
path to a change and share every untouched subtree with the input, so treat input and output as
immutable. They run on the ingestion hot path.

``encrypt_fields`` matches keys at any depth of any document. ``encrypt_event`` applies the scope
of a Segment-spec message: ``name`` is a person's name only at the top of ``traits`` (and
``context.traits``); in ``properties`` and ``context`` it names products, pages, screens, apps and
SDKs, so there only the unambiguous fields (email, phone, ip, ...) match, at any depth. The consent
choices an SDK sends in ``context`` (Segment's ``consent``, RudderStack's ``consentManagement``) are
keyed by category names ("Email", "Phone") and hold only booleans and ids, so they are not walked.
"""

from __future__ import annotations

import binascii
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import orjson

from rapport.errors import ValidationError
from rapport.privacy.crypto import CryptoError
from rapport.types import Json, JsonObject

MARKER = "$pii"
MAX_DEPTH = 200
"""Deepest nesting walked; deeper documents are rejected rather than overflowing the stack."""

DEFAULT_PII_FIELDS: frozenset[str] = frozenset(
    {"email", "phone", "name", "first_name", "last_name", "address", "ip", "firstName", "lastName"}
)

TRAIT_ONLY_FIELDS: frozenset[str] = frozenset({"name"})
"""PII fields that are personal only at the top of ``traits``; elsewhere they name things."""

CONSENT_CONTEXT_KEYS: frozenset[str] = frozenset({"consent", "consentManagement"})
"""``context`` keys holding consent choices, not personal data: left as sent, since the consent
mapping reads them by category name."""

Encrypt = Callable[[bytes], bytes]
Decrypt = Callable[[bytes], bytes]


_SCALARS: frozenset[type] = frozenset({str, int, float, bool, type(None)})
_MEMO_LIMIT = 4096


class _Fields:
    """A field set ready for matching: lower-cased names, and a memo of keys already classified.

    Events repeat the same keys over and over, so a dict lookup per key replaces lower-casing it.
    """

    __slots__ = ("lowered", "memo")

    def __init__(self, fields: frozenset[str]) -> None:
        self.lowered = frozenset(f.lower() for f in fields)
        self.memo: dict[str, bool] = {}

    def classify(self, key: str) -> bool:
        hit = key.lower() in self.lowered
        if len(self.memo) >= _MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = hit
        return hit


@lru_cache(maxsize=64)
def _prepared(fields: frozenset[str]) -> _Fields:
    return _Fields(fields)


def is_marker(value: object) -> bool:
    """Whether ``value`` is an encrypted-value marker ``{"$pii": "..."}``."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(MARKER), str)


def encrypt_value(value: Json, enc: Encrypt) -> JsonObject:
    """The marker holding ``value`` (any JSON) encrypted with ``enc``."""
    sealed = enc(orjson.dumps(value))
    return {MARKER: binascii.b2a_base64(sealed, newline=False).decode("ascii")}


def decrypt_value(marker: Json, dec: Decrypt) -> Json:
    """The JSON value inside ``marker``; raises ``CryptoError`` if it is not a valid marker."""
    if not is_marker(marker):
        raise CryptoError(f"not an encrypted value marker: expected {{{MARKER!r}: <base64>}}")
    try:
        sealed = binascii.a2b_base64(marker[MARKER], strict_mode=True)
    except (binascii.Error, ValueError):
        raise CryptoError("encrypted value marker holds invalid base64") from None
    plain = dec(sealed)
    try:
        return orjson.loads(plain)
    except orjson.JSONDecodeError:
        raise CryptoError("decrypted value is not JSON") from None


def encrypt_fields(obj: JsonObject, fields: frozenset[str], enc: Encrypt) -> JsonObject:
    """A new object in which every value under a key in ``fields`` is an encrypted marker.

    Keys match ignoring case, at any depth, inside nested objects and lists. Values that are
    already markers are left as they are, so encrypting twice changes nothing; callers that
    accept documents from outside should reject those carrying markers (``contains_marker``).
    """
    out = _encrypt_dict(obj, _prepared(fields), enc, 0)
    return dict(out) if out is obj else out


def encrypt_event(body: JsonObject, fields: frozenset[str], enc: Encrypt) -> JsonObject:
    """A new message in which the PII of ``traits``, ``context.traits``, ``properties`` and
    ``context`` is encrypted (see the module's docstring for the scope of ``name``).

    Top-level keys (``userId``, ``event``, the page ``name`` ...) are not looked at.
    """
    deep = _prepared(fields - TRAIT_ONLY_FIELDS)
    full = _prepared(fields)
    out: dict[str, Any] | None = None
    for key in ("traits", "properties", "context"):
        value = body.get(key)
        if not isinstance(value, dict):
            continue
        if key == "traits":
            new = _encrypt_traits(value, full, deep, enc)
        elif key == "context":
            new = _encrypt_context(value, deep, enc)
            traits = new.get("traits")
            if isinstance(traits, dict):
                sealed = _encrypt_traits(traits, full, deep, enc)
                if sealed is not traits:
                    new = dict(new) if new is value else new
                    new["traits"] = sealed
        else:
            new = _encrypt_dict(value, deep, enc, 1)
        if new is not value:
            if out is None:
                out = dict(body)
            out[key] = new
    return dict(body) if out is None else out


def _encrypt_context(context: dict[str, Any], deep: _Fields, enc: Encrypt) -> dict[str, Any]:
    """``context`` with its PII sealed, its consent choices as sent."""
    if CONSENT_CONTEXT_KEYS.isdisjoint(context):
        return _encrypt_dict(context, deep, enc, 1)
    rest = {k: v for k, v in context.items() if k not in CONSENT_CONTEXT_KEYS}
    sealed = _encrypt_dict(rest, deep, enc, 1)
    if sealed is rest:
        return context
    return {k: (context[k] if k in CONSENT_CONTEXT_KEYS else sealed[k]) for k in context}


def _encrypt_traits(traits: dict[str, Any], full: _Fields, deep: _Fields, enc: Encrypt) -> dict[str, Any]:
    """Top-level trait keys match every PII field; nested values only the unambiguous ones."""
    out: dict[str, Any] | None = None
    for key, value in traits.items():
        hit = full.memo.get(key)
        if hit is None:
            hit = full.classify(key)
        if hit:
            if is_marker(value):
                continue
            new: Any = encrypt_value(value, enc)
        elif isinstance(value, dict):
            new = _encrypt_dict(value, deep, enc, 2)
        elif isinstance(value, list):
            new = _encrypt_list(value, deep, enc, 2)
        else:
            continue
        if new is not value:
            if out is None:
                out = dict(traits)
            out[key] = new
    return traits if out is None else out


def decrypt_fields(obj: JsonObject, dec: Decrypt) -> JsonObject:
    """A new object with every marker (at any depth) replaced by the value it holds."""
    if is_marker(obj):
        raise CryptoError("decrypt_fields takes a document; use decrypt_value for a single marker")
    out = _decrypt_dict(obj, dec, 0)
    return dict(out) if out is obj else out


def contains_marker(obj: Json) -> bool:
    """Whether ``obj`` is, or holds at any depth, an encrypted-value marker."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if is_marker(value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _too_deep() -> ValidationError:
    return ValidationError(f"document nested more than {MAX_DEPTH} levels deep", code="too_deeply_nested")


def _encrypt_dict(obj: dict[str, Any], fields: _Fields, enc: Encrypt, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _too_deep()
    memo = fields.memo
    out: dict[str, Any] | None = None
    for key, value in obj.items():
        hit = memo.get(key)
        if hit is None:
            hit = fields.classify(key)
        if hit:
            if is_marker(value):
                continue
            new: Any = encrypt_value(value, enc)
        elif type(value) in _SCALARS:
            continue
        elif isinstance(value, dict):
            new = _encrypt_dict(value, fields, enc, depth + 1)
            if new is value:
                continue
        elif isinstance(value, list):
            new = _encrypt_list(value, fields, enc, depth + 1)
            if new is value:
                continue
        else:
            continue
        if out is None:
            out = dict(obj)
        out[key] = new
    return obj if out is None else out


def _encrypt_list(items: list[Any], fields: _Fields, enc: Encrypt, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise _too_deep()
    out: list[Any] | None = None
    for i, value in enumerate(items):
        if type(value) in _SCALARS:
            continue
        if isinstance(value, dict):
            new: Any = _encrypt_dict(value, fields, enc, depth + 1)
        elif isinstance(value, list):
            new = _encrypt_list(value, fields, enc, depth + 1)
        else:
            continue
        if new is not value:
            if out is None:
                out = list(items)
            out[i] = new
    return items if out is None else out


def _decrypt_any(value: Any, dec: Decrypt, depth: int) -> Any:
    if isinstance(value, dict):
        if is_marker(value):
            return decrypt_value(value, dec)
        return _decrypt_dict(value, dec, depth + 1)
    if isinstance(value, list):
        return _decrypt_list(value, dec, depth + 1)
    return value


def _decrypt_dict(obj: dict[str, Any], dec: Decrypt, depth: int) -> dict[str, Any]:
    if depth > MAX_DEPTH:
        raise _too_deep()
    out: dict[str, Any] | None = None
    for key, value in obj.items():
        if type(value) not in _SCALARS:
            new = _decrypt_any(value, dec, depth)
            if new is not value:
                if out is None:
                    out = dict(obj)
                out[key] = new
    return obj if out is None else out


def _decrypt_list(items: list[Any], dec: Decrypt, depth: int) -> list[Any]:
    if depth > MAX_DEPTH:
        raise _too_deep()
    out: list[Any] | None = None
    for i, value in enumerate(items):
        if type(value) not in _SCALARS:
            new = _decrypt_any(value, dec, depth)
            if new is not value:
                if out is None:
                    out = list(items)
                out[i] = new
    return items if out is None else out
