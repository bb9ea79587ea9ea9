"""Turn raw Segment-spec JSON into ``Message`` values: shape checks, limits, clock-skew correction."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from rapport.clock import parse_iso, to_iso
from rapport.consent.mapping import ConsentMapping
from rapport.errors import ValidationError
from rapport.identity.normalize import identifiers_from_event
from rapport.ingestion.model import (
    MAX_DEPTH,
    MAX_EVENT_BYTES,
    MAX_ID_LENGTH,
    MESSAGE_TYPES,
    ItemError,
    Message,
    MessageType,
)
from rapport.privacy.pii import MARKER
from rapport.types import JsonObject, Millis

_OBJECT_FIELDS = ("properties", "traits", "context", "integrations")
_CONSENT_SHAPE = ConsentMapping()
"""Checks the shape of SDK consent context (which does not depend on a workspace's mapping)."""


class ItemInvalid(ValidationError):
    """One message is unacceptable; ``code`` says why."""


def _fail(code: str, message: str) -> ItemInvalid:
    return ItemInvalid(message, code=code)


def _no_nul(text: str, field: str) -> None:
    """Stored columns cannot hold NUL (PostgreSQL refuses it), so a field holding one is invalid."""
    if "\x00" in text:
        raise _fail("invalid_field", f"'{field}' contains a NUL character")


def _id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail("invalid_field", f"'{field}' must be a string or a number, got {type(value).__name__}")
    text = value.strip() if isinstance(value, str) else str(int(value) if float(value).is_integer() else value)
    if len(text) > MAX_ID_LENGTH:
        raise _fail("invalid_field", f"'{field}' is longer than {MAX_ID_LENGTH} characters")
    _no_nul(text, field)
    return text or None


def _time(value: Any, field: str) -> Millis | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _fail("invalid_timestamp", f"'{field}' must be an ISO-8601 string, got {type(value).__name__}")
    try:
        return parse_iso(value)
    except ValueError:
        raise _fail("invalid_timestamp", f"'{field}' is not an ISO-8601 timestamp: {value[:40]!r}") from None


def structure_problem(value: Any, limit: int = MAX_DEPTH) -> ItemInvalid | None:
    """Why ``value`` cannot be stored as sent, or None: it nests dicts/lists deeper than ``limit``,
    or an object in it uses the key ``$pii``, which is reserved for values encrypted at rest (a
    client sending one could pass off its own bytes as an encrypted field)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return _fail("too_deep", f"message nests deeper than {limit} levels")
        if isinstance(node, dict):
            if MARKER in node:
                return _fail("reserved_key", f"the key {MARKER!r} is reserved for encrypted values")
            stack.extend((v, depth + 1) for v in node.values() if isinstance(v, dict | list))
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node if isinstance(v, dict | list))
    return None


def parse_message(
    raw: Any,
    *,
    implied_type: MessageType | None,
    received_at: Millis,
    batch_sent_at: Millis | None,
    batch_context: Mapping[str, Any] | None,
    new_id: Callable[[], str],
    size: int | None = None,
) -> Message:
    """Validate one message and correct its timestamp; raises ``ItemInvalid``."""
    if not isinstance(raw, dict):
        raise _fail("invalid_message", f"a message must be a JSON object, got {type(raw).__name__}")
    if size is None:
        size = len(orjson.dumps(raw))
    if size > MAX_EVENT_BYTES:
        raise _fail("event_too_large", f"message is {size} bytes; the limit is {MAX_EVENT_BYTES} bytes")
    kind = raw.get("type", implied_type)
    if implied_type is not None and kind != implied_type:
        raise _fail("invalid_type", f"'type' is {kind!r} but this endpoint takes {implied_type!r} messages")
    if kind not in MESSAGE_TYPES:
        raise _fail("invalid_type", f"unknown message type {kind!r}; expected one of {', '.join(MESSAGE_TYPES)}")
    for field in _OBJECT_FIELDS:
        if field in raw and raw[field] is not None and not isinstance(raw[field], dict):
            raise _fail("invalid_field", f"'{field}' must be an object, got {type(raw[field]).__name__}")
    problem = structure_problem(raw)
    if problem is not None:
        raise problem
    user_id = _id(raw.get("userId"), "userId")
    anonymous_id = _id(raw.get("anonymousId"), "anonymousId")
    previous_id = None
    name: str | None = None
    if kind == "alias":
        previous_id = _id(raw.get("previousId"), "previousId")
        if previous_id is None or user_id is None:
            raise _fail("missing_id", "an alias needs both 'previousId' and 'userId'")
    elif user_id is None and anonymous_id is None:
        raise _fail("missing_id", "a message needs 'userId' or 'anonymousId'")
    if kind == "track":
        name = raw.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _fail("missing_event", "a track message needs a non-empty string 'event'")
        if len(name) > 200:
            raise _fail("invalid_field", "'event' is longer than 200 characters")
        _no_nul(name, "event")
        name = name.strip()
    elif kind in ("page", "screen"):
        value = raw.get("name")
        if value is not None and not isinstance(value, str):
            raise _fail("invalid_field", f"'name' must be a string, got {type(value).__name__}")
        if value is not None:
            _no_nul(value, "name")
        name = value
    elif kind == "group":
        name = _id(raw.get("groupId"), "groupId")
        if name is None:
            raise _fail("missing_id", "a group message needs 'groupId'")
    message_id = raw.get("messageId")
    if message_id is None:
        message_id = new_id()
    elif not isinstance(message_id, str) or not message_id.strip() or len(message_id) > MAX_ID_LENGTH:
        raise _fail("invalid_field", f"'messageId' must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    else:
        _no_nul(message_id, "messageId")
    original = _time(raw.get("timestamp"), "timestamp")
    if original is None:
        original = _time(raw.get("originalTimestamp"), "originalTimestamp")
    sent_at = _time(raw.get("sentAt"), "sentAt")
    if sent_at is None:
        sent_at = batch_sent_at
    ts = corrected_timestamp(original, sent_at, received_at)
    body: JsonObject = dict(raw)
    body.pop("writeKey", None)
    body["type"] = kind
    body["messageId"] = message_id
    if original is not None:
        body["originalTimestamp"] = to_iso(original)
    body["timestamp"] = to_iso(ts)
    body["receivedAt"] = to_iso(received_at)
    if batch_context and isinstance(batch_context, dict):
        merged = dict(batch_context)
        merged.update(body.get("context") or {})
        body["context"] = merged
    if kind == "identify":
        # RudderStack's clients send identify traits only as context.traits; root traits win.
        context_traits = (body.get("context") or {}).get("traits")
        if isinstance(context_traits, dict) and context_traits:
            body["traits"] = {**context_traits, **(body.get("traits") or {})}
        for trait in body.get("traits") or {}:
            _no_nul(trait, "traits")
    try:
        # Checked here, not in the writer, so one bad item of a batch cannot fail the others.
        identifiers = tuple(identifiers_from_event(body))
        context = body.get("context")
        if isinstance(context, dict):
            _CONSENT_SHAPE.extract(context)
    except ValidationError as exc:
        raise _fail(exc.code, exc.message) from None
    return Message(
        type=kind,
        message_id=message_id,
        user_id=user_id,
        anonymous_id=anonymous_id,
        name=name,
        ts=ts,
        received_at=received_at,
        body=body,
        previous_id=previous_id,
        identifiers=identifiers,
    )


def corrected_timestamp(original: Millis | None, sent_at: Millis | None, received_at: Millis) -> Millis:
    """Segment's clock-skew correction: ``receivedAt - (sentAt - originalTimestamp)``.

    Without ``sentAt`` the client's timestamp is trusted as is; without any timestamp the
    receive time is used.
    """
    if original is None:
        return received_at
    if sent_at is None:
        return original
    return received_at - (sent_at - original)


def parse_batch(
    payload: Any,
    *,
    received_at: Millis,
    new_id: Callable[[], str],
) -> tuple[list[tuple[int, Message]], list[ItemError]]:
    """Messages of a ``/v1/batch`` body plus an error for each bad item (by index)."""
    if not isinstance(payload, dict):
        raise ValidationError("the body must be a JSON object with a 'batch' list", code="invalid_body")
    items = payload.get("batch")
    if not isinstance(items, list):
        raise ValidationError("'batch' must be a list of messages", code="invalid_body")
    sent_at = _batch_time(payload.get("sentAt"))
    context = payload.get("context")
    if context is not None and not isinstance(context, dict):
        raise ValidationError("'context' must be an object", code="invalid_body")
    problem = structure_problem(context) if context is not None else None
    if problem is not None:
        raise ValidationError(f"batch 'context': {problem.message}", code=problem.code)
    good: list[tuple[int, Message]] = []
    bad: list[ItemError] = []
    for index, item in enumerate(items):
        try:
            good.append((index, parse_message(
                item, implied_type=None, received_at=received_at, batch_sent_at=sent_at,
                batch_context=context, new_id=new_id,
            )))
        except ItemInvalid as exc:
            bad.append(ItemError(index, exc.code, exc.message))
    return good, bad


def _batch_time(value: Any) -> Millis | None:
    try:
        return _time(value, "sentAt")
    except ItemInvalid as exc:
        raise ValidationError(exc.message, code=exc.code) from None

