"""Delivery feedback from email providers (bounces, complaints, unsubscribes, opens, clicks) read from
their webhook payloads into one shape that suppression and statistics consume.

Two formats: Amazon SES notifications, as SNS delivers them (an envelope whose ``Message`` is the SES
JSON as a string) or unwrapped, and SendGrid's event webhook (a JSON array of events). The parsers are
pure: checking the SNS signature or SendGrid's signed-webhook header is the receiving endpoint's job.

``address_hash`` is how a suppression names the address it stops: the one function every writer, reader and
eraser of suppressions uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, Literal, TypeAlias

import orjson

from rapport.clock import parse_iso
from rapport.errors import ValidationError
from rapport.identity.normalize import normalize
from rapport.resources.fields import quoted, show
from rapport.types import Json, JsonObject, Millis, WorkspaceId
from rapport.workspaces.keys import Keyring

FeedbackKind: TypeAlias = Literal[
    "delivered", "bounced_hard", "bounced_soft", "complained", "unsubscribed", "opened", "clicked"
]


SUPPRESSION_KIND: Final = "suppression:email"
"""The blind-index kind of suppressed addresses: their own, so a suppression's hash never equals the lookup
index of the same address as an identifier (``email``), and the two cannot be joined."""


def address_hash(keyring: Keyring, workspace_id: WorkspaceId, wrapped_key: bytes, address: str) -> str:
    """How suppressions name an email address: the workspace's blind index (hex HMAC-SHA256 under the
    workspace's lookup key) of the normalized address, of kind ``SUPPRESSION_KIND``.

    Keyed, because suppressions outlive the erasure of the person they were about: without the workspace key
    the hash cannot be matched to an address by hashing a list of candidates, and the same address hashes
    differently in each workspace. An address the email normalizer refuses is trimmed and lower-cased."""
    try:
        ident = normalize("email", address)
    except ValidationError:
        ident = None
    text = ident.value if ident is not None else address.strip().lower()
    return keyring.blind_index(workspace_id, wrapped_key, SUPPRESSION_KIND, text)


@dataclass(frozen=True, slots=True)
class Feedback:
    """What happened to one message at one address.

    ``provider_message_id`` is the provider's id (SES ``mail.messageId``, SendGrid ``sg_message_id``);
    ``message_id`` the RFC 5322 ``Message-ID`` when the payload carries it, which the email channel derives
    from the idempotency key; ``reason`` the provider's explanation (diagnostic code, feedback type, URL).
    """

    kind: FeedbackKind
    address: str
    at: Millis
    provider_message_id: str | None
    reason: str = ""
    message_id: str | None = None


def _fail(where: str, problem: str) -> ValidationError:
    return ValidationError(f"invalid {where}: {problem}", code="invalid_feedback")


def _get(obj: Mapping[str, Json], key: str, where: str, kind: type | tuple[type, ...], expected: str) -> Json:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool) or (isinstance(value, str) and not value.strip()):
        got = "missing" if key not in obj else f"got {show(value)}"
        raise _fail(f"{where}.{key}", f"{got}; expected {expected}")
    return value


def _obj(value: Json, where: str) -> JsonObject:
    if not isinstance(value, dict):
        raise _fail(where, f"got {show(value)}; expected a JSON object")
    return value


def _time(value: Json, where: str) -> Millis:
    if not isinstance(value, str):
        raise _fail(where, f"got {show(value)}; expected an ISO-8601 timestamp")
    try:
        return parse_iso(value)
    except ValueError:
        raise _fail(where, f"got {show(value)}; expected an ISO-8601 timestamp") from None


# Amazon SES ---------------------------------------------------------------------------------------

SES_IGNORED: Final = frozenset({
    "Send", "Reject", "DeliveryDelay", "Rendering Failure", "Subscription", "AmazonSnsSubscriptionSucceeded",
})
"""SES notification types that say nothing about the recipient (sent, rejected for a virus, delayed,
template failure, subscription preferences) and produce no feedback."""
SNS_CONTROL: Final = frozenset({"SubscriptionConfirmation", "UnsubscribeConfirmation"})
SES_BOUNCE_KINDS: Final[dict[str, FeedbackKind]] = {
    "Permanent": "bounced_hard", "Transient": "bounced_soft", "Undetermined": "bounced_soft",
}


def parse_ses(payload: Json) -> list[Feedback]:
    """The feedback in one SES notification, SNS-wrapped or not: one ``Feedback`` per recipient.

    SNS control messages (``SubscriptionConfirmation``) give an empty list; see ``sns_subscribe_url``.
    Raises ``ValidationError`` naming the field when the payload is not an SES notification.
    """
    outer = _obj(payload, "SES notification")
    if "Type" in outer:
        kind = _get(outer, "Type", "SNS message", str, f"one of {quoted(['Notification', *sorted(SNS_CONTROL)])}")
        if kind in SNS_CONTROL:
            return []
        if kind != "Notification":
            raise _fail("SNS message.Type", f"got {show(kind)}; expected 'Notification' or one of "
                        f"{quoted(sorted(SNS_CONTROL))}")
        text = _get(outer, "Message", "SNS message", str, "the SES notification as a JSON string")
        try:
            inner = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            problem = f"not JSON ({exc}); expected the SES notification as a JSON string"
            raise _fail("SNS message.Message", problem) from None
        return _ses_notification(_obj(inner, "SNS message.Message"))
    return _ses_notification(outer)


def sns_subscribe_url(payload: Json) -> str | None:
    """The URL to visit to confirm an SNS subscription, for a ``SubscriptionConfirmation`` message."""
    if isinstance(payload, dict) and payload.get("Type") == "SubscriptionConfirmation":
        url = payload.get("SubscribeURL")
        return url if isinstance(url, str) and url.startswith("https://") else None
    return None


def _ses_notification(note: JsonObject) -> list[Feedback]:
    where = "SES notification"
    # Notifications name their type 'notificationType'; configuration-set events 'eventType'.
    key = "notificationType" if "notificationType" in note else "eventType"
    types = ["Bounce", "Complaint", "Delivery", "Open", "Click"]
    kind = _get(note, key, where, str, f"one of {quoted(types)}")
    if kind in SES_IGNORED:
        return []
    if kind not in types:
        raise _fail(f"{where}.{key}", f"unknown type {show(kind)}; expected one of {quoted(types)}")
    mail = _obj(note.get("mail"), f"{where}.mail")
    provider_id = _get(mail, "messageId", f"{where}.mail", str, "the SES message id")
    headers = mail.get("commonHeaders")
    header_id = headers.get("messageId") if isinstance(headers, dict) else None
    rfc_id = header_id if isinstance(header_id, str) else None
    body = _obj(note.get(kind.lower()), f"{where}.{kind.lower()}")
    at = _time(body.get("timestamp"), f"{where}.{kind.lower()}.timestamp")

    def make(kind: FeedbackKind, address: str, reason: str) -> Feedback:
        return Feedback(kind, address, at, provider_id, reason, rfc_id)

    if kind == "Bounce":
        bounce_type = _get(body, "bounceType", f"{where}.bounce", str, f"one of {quoted(SES_BOUNCE_KINDS)}")
        bounced = SES_BOUNCE_KINDS.get(bounce_type)
        if bounced is None:
            raise _fail(f"{where}.bounce.bounceType",
                        f"got {show(bounce_type)}; expected one of {quoted(SES_BOUNCE_KINDS)}")
        sub_type = body.get("bounceSubType")
        return [make(bounced, address, _join(sub_type, recipient.get("diagnosticCode")))
                for address, recipient in _recipients(body, "bouncedRecipients", f"{where}.bounce")]
    if kind == "Complaint":
        reason = _join(body.get("complaintFeedbackType"), body.get("complaintSubType"))
        return [make("complained", address, reason)
                for address, _ in _recipients(body, "complainedRecipients", f"{where}.complaint")]
    if kind == "Delivery":
        recipients = _addresses(body.get("recipients"), f"{where}.delivery.recipients")
        return [make("delivered", address, _join(body.get("smtpResponse"))) for address in recipients]
    # Opens and clicks name no recipient: they are the message's, i.e. its destination's.
    recipients = _addresses(mail.get("destination"), f"{where}.mail.destination")
    engaged: FeedbackKind = "opened" if kind == "Open" else "clicked"
    reason = _join(body.get("link")) if kind == "Click" else ""
    return [make(engaged, address, reason) for address in recipients]


def _recipients(body: JsonObject, key: str, where: str) -> list[tuple[str, JsonObject]]:
    items = body.get(key)
    if not isinstance(items, list) or not items:
        raise _fail(f"{where}.{key}", f"got {show(items)}; expected a non-empty list of recipients")
    out = []
    for index, item in enumerate(items):
        recipient = _obj(item, f"{where}.{key}[{index}]")
        address = _get(recipient, "emailAddress", f"{where}.{key}[{index}]", str, "an email address")
        out.append((address.strip(), recipient))
    return out


def _addresses(items: Json, where: str) -> list[str]:
    if not isinstance(items, list) or not items:
        raise _fail(where, f"got {show(items)}; expected a non-empty list of email addresses")
    for index, item in enumerate(items):
        if not (isinstance(item, str) and "@" in item):
            raise _fail(f"{where}[{index}]", f"got {show(item)}; expected an email address")
    return [item.strip() for item in items]


def _join(*parts: Json) -> str:
    return "; ".join(str(part) for part in parts if isinstance(part, str) and part)


# SendGrid -----------------------------------------------------------------------------------------

SENDGRID_IGNORED: Final = frozenset({"processed", "deferred", "group_resubscribe"})
"""Events about the provider's own progress (queued, will retry) or a re-subscription, which consent
records through the preference center instead."""
DROPPED_AS: Final[tuple[tuple[str, FeedbackKind], ...]] = (
    ("unsubscribed", "unsubscribed"), ("spam report", "complained"), ("spam reporting", "complained"),
    ("bounced", "bounced_hard"), ("invalid", "bounced_hard"),
)
"""A ``dropped`` event's ``reason`` says why the provider did not even try: the address is on one of its
suppression lists. Other reasons (message too large, ...) are about the message and become soft bounces."""


def _sendgrid_bounce(event: JsonObject) -> FeedbackKind:
    # type 'blocked' is a receiving server refusing for now (reputation, content); 'bounce' a hard bounce.
    return "bounced_soft" if event.get("type") == "blocked" else "bounced_hard"


def _sendgrid_dropped(event: JsonObject) -> FeedbackKind:
    reason = str(event.get("reason", "")).lower()
    return next((kind for text, kind in DROPPED_AS if text in reason), "bounced_soft")


SENDGRID_EVENTS: Final[dict[str, Callable[[JsonObject], FeedbackKind]]] = {
    "delivered": lambda _: "delivered",
    "bounce": _sendgrid_bounce,
    "dropped": _sendgrid_dropped,
    "spamreport": lambda _: "complained",
    "unsubscribe": lambda _: "unsubscribed",
    "group_unsubscribe": lambda _: "unsubscribed",
    "open": lambda _: "opened",
    "click": lambda _: "clicked",
}


def parse_sendgrid(payload: Json) -> list[Feedback]:
    """The feedback in one SendGrid event-webhook POST (a JSON array of events), in order.

    Raises ``ValidationError`` naming the event index and field when an event is malformed.
    """
    if not isinstance(payload, list):
        raise _fail("SendGrid events", f"got {show(payload)}; expected a JSON array of events")
    events = [*SENDGRID_EVENTS, *sorted(SENDGRID_IGNORED)]
    out: list[Feedback] = []
    for index, item in enumerate(payload):
        where = f"SendGrid events[{index}]"
        event = _obj(item, where)
        name = _get(event, "event", where, str, f"one of {quoted(events)}")
        if name in SENDGRID_IGNORED:
            continue
        classify = SENDGRID_EVENTS.get(name)
        if classify is None:
            raise _fail(f"{where}.event", f"unknown event {show(name)}; expected one of {quoted(events)}")
        address = _get(event, "email", where, str, "an email address")
        timestamp = _get(event, "timestamp", where, int, "unix seconds as a whole number")
        sg_id = event.get("sg_message_id")
        smtp_id = event.get("smtp-id")
        reason = _join(event.get("reason") or event.get("response"), event.get("status"), event.get("url"))
        out.append(Feedback(
            classify(event), address.strip(), timestamp * 1000, sg_id if isinstance(sg_id, str) else None,
            reason, smtp_id if isinstance(smtp_id, str) else None,
        ))
    return out
