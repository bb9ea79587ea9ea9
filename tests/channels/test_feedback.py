"""Bounce and complaint webhooks from SES (through SNS) and SendGrid, read into one feedback shape."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from rapport.channels.feedback import (
    SUPPRESSION_KIND,
    Feedback,
    address_hash,
    parse_sendgrid,
    parse_ses,
    sns_subscribe_url,
)
from rapport.clock import parse_iso
from rapport.errors import ValidationError
from rapport.privacy.crypto import generate_key, lookup_key, unwrap
from rapport.types import WorkspaceId
from rapport.workspaces.keys import Keyring

MAIL: dict[str, Any] = {
    "timestamp": "2026-03-02T09:14:55.000Z",
    "source": "hello@shop.example",
    "sourceArn": "arn:aws:ses:eu-west-1:123456789012:identity/shop.example",
    "sendingAccountId": "123456789012",
    "messageId": "0102018e0a8b1c2d-5f1e2a3b-1111-4c4c-9d9d-aaaaaaaaaaaa-000000",
    "destination": ["ada@example.com", "bob@example.org"],
    "headersTruncated": False,
    "commonHeaders": {"from": ["Shop <hello@shop.example>"], "to": ["ada@example.com"],
                      "messageId": "<9f86d081884c7d659a2feaa0c55ad015@shop.example>", "subject": "Your cart"},
}
SES_ID: str = MAIL["messageId"]
RFC_ID = "<9f86d081884c7d659a2feaa0c55ad015@shop.example>"


def sns(notification: dict[str, Any]) -> dict[str, Any]:
    """``notification`` as SNS delivers it to an HTTPS subscription."""
    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback",
        "Message": json.dumps(notification),
        "Timestamp": "2026-03-02T09:15:01.123Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+..",
        "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem",
        "UnsubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=...",
    }


PERMANENT_BOUNCE: dict[str, Any] = {
    "notificationType": "Bounce",
    "bounce": {
        "bounceType": "Permanent",
        "bounceSubType": "General",
        "bouncedRecipients": [{"emailAddress": "ada@example.com", "action": "failed", "status": "5.1.1",
                               "diagnosticCode": "smtp; 550 5.1.1 user unknown"}],
        "timestamp": "2026-03-02T09:14:58.000Z",
        "feedbackId": "0102018e0a8b2f3a-aaaa-bbbb-cccc-dddddddddddd-000000",
        "remoteMtaIp": "203.0.113.5",
        "reportingMTA": "dsn; a1-2.smtp-out.eu-west-1.amazonses.com",
    },
    "mail": MAIL,
}
AT = parse_iso("2026-03-02T09:14:58.000Z")


def test_a_permanent_bounce_is_a_hard_bounce_per_recipient() -> None:
    assert parse_ses(sns(PERMANENT_BOUNCE)) == [Feedback(
        "bounced_hard", "ada@example.com", AT, SES_ID, "General; smtp; 550 5.1.1 user unknown", RFC_ID)]


def test_an_unwrapped_notification_reads_the_same() -> None:
    assert parse_ses(PERMANENT_BOUNCE) == parse_ses(sns(PERMANENT_BOUNCE))


@pytest.mark.parametrize(("bounce_type", "kind"), [("Transient", "bounced_soft"), ("Undetermined", "bounced_soft")])
def test_transient_and_undetermined_bounces_are_soft(bounce_type: str, kind: str) -> None:
    note = {**PERMANENT_BOUNCE, "bounce": {
        **PERMANENT_BOUNCE["bounce"], "bounceType": bounce_type, "bounceSubType": "MailboxFull",
        "bouncedRecipients": [{"emailAddress": "ada@example.com"}, {"emailAddress": "bob@example.org"}]}}
    assert [(f.kind, f.address, f.reason) for f in parse_ses(sns(note))] == [
        (kind, "ada@example.com", "MailboxFull"), (kind, "bob@example.org", "MailboxFull")]


def test_a_complaint() -> None:
    note = {"notificationType": "Complaint", "mail": MAIL, "complaint": {
        "userAgent": "Yahoo!-Mail-Feedback/2.0", "complainedRecipients": [{"emailAddress": "bob@example.org"}],
        "complaintFeedbackType": "abuse", "arrivalDate": "2026-03-02T10:00:00.000Z",
        "timestamp": "2026-03-02T10:00:02.000Z", "feedbackId": "0102018e-complaint"}}
    assert parse_ses(sns(note)) == [Feedback(
        "complained", "bob@example.org", parse_iso("2026-03-02T10:00:02.000Z"), SES_ID, "abuse", RFC_ID)]


def test_a_delivery() -> None:
    note = {"notificationType": "Delivery", "mail": MAIL, "delivery": {
        "timestamp": "2026-03-02T09:14:57.000Z", "processingTimeMillis": 1546,
        "recipients": ["ada@example.com"], "smtpResponse": "250 2.6.0 Message received",
        "remoteMtaIp": "203.0.113.5", "reportingMTA": "a8-70.smtp-out.amazonses.com"}}
    [feedback] = parse_ses(sns(note))
    assert (feedback.kind, feedback.address, feedback.reason) == (
        "delivered", "ada@example.com", "250 2.6.0 Message received")


def test_event_publishing_opens_and_clicks_belong_to_the_destination() -> None:
    opened = {"eventType": "Open", "mail": {**MAIL, "destination": ["ada@example.com"]},
              "open": {"ipAddress": "192.0.2.1", "timestamp": "2026-03-02T11:00:00.000Z", "userAgent": "Mozilla"}}
    clicked = {"eventType": "Click", "mail": {**MAIL, "destination": ["ada@example.com"]},
               "click": {"ipAddress": "192.0.2.1", "timestamp": "2026-03-02T11:01:00.000Z",
                         "link": "https://shop.example/cart", "linkTags": {}, "userAgent": "Mozilla"}}
    assert [(f.kind, f.address, f.reason) for f in parse_ses(sns(opened)) + parse_ses(sns(clicked))] == [
        ("opened", "ada@example.com", ""), ("clicked", "ada@example.com", "https://shop.example/cart")]


def test_sns_subscription_confirmation_gives_no_feedback_but_a_url() -> None:
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "2336412f37",
               "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback",
               "SubscribeURL": "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37"}
    assert parse_ses(message) == []
    assert sns_subscribe_url(message) == message["SubscribeURL"]
    assert sns_subscribe_url(sns(PERMANENT_BOUNCE)) is None


@pytest.mark.parametrize("kind", ["Send", "Reject", "DeliveryDelay"])
def test_types_that_say_nothing_about_the_person_are_skipped(kind: str) -> None:
    assert parse_ses(sns({"eventType": kind, "mail": MAIL})) == []


@pytest.mark.parametrize(("payload", "problem"), [
    ([], "invalid SES notification: got a list; expected a JSON object"),
    ({"Type": "Notification", "Message": "{not json"},
     "invalid SNS message.Message: not JSON"),
    ({"Type": "Notification"},
     "invalid SNS message.Message: missing; expected the SES notification as a JSON string"),
    ({"Type": "Telegram", "Message": "{}"},
     "invalid SNS message.Type: got 'Telegram'; expected 'Notification' or one of"),
    ({"notificationType": "Bounced", "mail": MAIL},
     "invalid SES notification.notificationType: unknown type 'Bounced'; expected one of 'Bounce', 'Complaint'"),
    ({"notificationType": "Bounce", "mail": MAIL, "bounce": {**PERMANENT_BOUNCE["bounce"], "bounceType": "Hard"}},
     "invalid SES notification.bounce.bounceType: got 'Hard'; expected one of 'Permanent', 'Transient', "
     "'Undetermined'"),
    ({"notificationType": "Bounce", "mail": MAIL, "bounce": {**PERMANENT_BOUNCE["bounce"], "bouncedRecipients": []}},
     "invalid SES notification.bounce.bouncedRecipients: got a list; expected a non-empty list of recipients"),
    ({"notificationType": "Bounce", "mail": MAIL,
      "bounce": {**PERMANENT_BOUNCE["bounce"], "bouncedRecipients": [{"status": "5.1.1"}]}},
     "invalid SES notification.bounce.bouncedRecipients[0].emailAddress: missing; expected an email address"),
    ({"notificationType": "Bounce", "mail": MAIL, "bounce": {**PERMANENT_BOUNCE["bounce"], "timestamp": "soon"}},
     "invalid SES notification.bounce.timestamp: got 'soon'; expected an ISO-8601 timestamp"),
    ({"notificationType": "Bounce", "bounce": PERMANENT_BOUNCE["bounce"]},
     "invalid SES notification.mail: got null; expected a JSON object"),
    ({"notificationType": "Bounce", "mail": {**MAIL, "messageId": ""}, "bounce": PERMANENT_BOUNCE["bounce"]},
     "invalid SES notification.mail.messageId: got ''; expected the SES message id"),
], ids=["not-object", "message-not-json", "no-message", "unknown-sns-type", "unknown-ses-type", "bounce-type",
        "no-recipients", "recipient-without-address", "bad-timestamp", "no-mail", "empty-message-id"])
def test_malformed_ses_payloads_name_the_field(payload: Any, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_ses(sns(payload) if isinstance(payload, dict) and "mail" in payload else payload)
    assert caught.value.message.startswith(problem), caught.value.message
    assert caught.value.code == "invalid_feedback"


SENDGRID = [
    {"email": "ada@example.com", "timestamp": 1772442895, "smtp-id": RFC_ID, "event": "processed",
     "sg_event_id": "e0", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
    {"email": "ada@example.com", "timestamp": 1772442897, "smtp-id": RFC_ID, "event": "delivered",
     "response": "250 OK", "sg_event_id": "e1", "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"},
    {"email": "bob@example.org", "timestamp": 1772442898, "event": "bounce", "type": "bounce", "status": "5.1.1",
     "reason": "550 5.1.1 The email account that you tried to reach does not exist.", "sg_message_id": "sg2"},
    {"email": "cy@example.net", "timestamp": 1772442899, "event": "bounce", "type": "blocked", "status": "4.0.0",
     "reason": "421 Service temporarily unavailable", "sg_message_id": "sg3"},
    {"email": "dee@example.com", "timestamp": 1772442900, "event": "dropped", "reason": "Bounced Address",
     "sg_message_id": "sg4"},
    {"email": "eve@example.com", "timestamp": 1772442901, "event": "dropped", "reason": "Unsubscribed Address",
     "sg_message_id": "sg5"},
    {"email": "fay@example.com", "timestamp": 1772442902, "event": "dropped", "reason": "Spam Reporting Address",
     "sg_message_id": "sg6"},
    {"email": "gus@example.com", "timestamp": 1772442903, "event": "dropped", "reason": "Exceeded Message Size",
     "sg_message_id": "sg7"},
    {"email": "hal@example.com", "timestamp": 1772442904, "event": "spamreport", "sg_message_id": "sg8"},
    {"email": "ivy@example.com", "timestamp": 1772442905, "event": "unsubscribe", "sg_message_id": "sg9"},
    {"email": "ivy@example.com", "timestamp": 1772442906, "event": "group_unsubscribe", "asm_group_id": 42,
     "sg_message_id": "sg9"},
    {"email": "ada@example.com", "timestamp": 1772442960, "event": "open", "useragent": "Mozilla/5.0",
     "ip": "192.0.2.1", "sg_message_id": "sg1"},
    {"email": "ada@example.com", "timestamp": 1772442961, "event": "click", "url": "https://shop.example/cart",
     "url_offset": {"index": 0, "type": "html"}, "sg_message_id": "sg1"},
    {"email": "ada@example.com", "timestamp": 1772442962, "event": "deferred", "attempt": "1",
     "response": "400 try again later", "sg_message_id": "sg1"},
]


def test_sendgrid_events_map_to_feedback_in_order() -> None:
    feedback = parse_sendgrid(SENDGRID)
    assert [(f.kind, f.address) for f in feedback] == [
        ("delivered", "ada@example.com"),
        ("bounced_hard", "bob@example.org"),
        ("bounced_soft", "cy@example.net"),       # 'blocked': refused for now, not a dead mailbox
        ("bounced_hard", "dee@example.com"),      # dropped: already on the bounce list
        ("unsubscribed", "eve@example.com"),
        ("complained", "fay@example.com"),
        ("bounced_soft", "gus@example.com"),      # dropped for the message's size, not the address
        ("complained", "hal@example.com"),
        ("unsubscribed", "ivy@example.com"),
        ("unsubscribed", "ivy@example.com"),
        ("opened", "ada@example.com"),
        ("clicked", "ada@example.com"),
    ]
    assert feedback[0] == Feedback("delivered", "ada@example.com", 1772442897000,
                                   "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0", "250 OK", RFC_ID)
    assert feedback[1].reason == "550 5.1.1 The email account that you tried to reach does not exist.; 5.1.1"
    assert feedback[11].reason == "https://shop.example/cart"


@pytest.mark.parametrize(("payload", "problem"), [
    ({"event": "bounce"}, "invalid SendGrid events: got a mapping; expected a JSON array of events"),
    (["bounce"], "invalid SendGrid events[0]: got 'bounce'; expected a JSON object"),
    ([{"email": "a@b.example", "timestamp": 1}], "invalid SendGrid events[0].event: missing; expected one of"),
    ([{"email": "a@b.example", "timestamp": 1, "event": "bounced"}],
     "invalid SendGrid events[0].event: unknown event 'bounced'; expected one of 'delivered', 'bounce'"),
    ([{"timestamp": 1, "event": "open"}], "invalid SendGrid events[0].email: missing; expected an email address"),
    ([{"email": "a@b.example", "timestamp": "1772442897", "event": "open"}],
     "invalid SendGrid events[0].timestamp: got '1772442897'; expected unix seconds as a whole number"),
    ([{"email": "a@b.example", "timestamp": True, "event": "open"}],
     "invalid SendGrid events[0].timestamp: got true; expected unix seconds as a whole number"),
], ids=["not-array", "event-not-object", "no-event", "unknown-event", "no-email", "string-timestamp",
        "boolean-timestamp"])
def test_malformed_sendgrid_payloads_name_the_event_and_field(payload: Any, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_sendgrid(payload)
    assert caught.value.message.startswith(problem), caught.value.message


def test_feedback_is_frozen() -> None:
    [feedback] = parse_ses(PERMANENT_BOUNCE)
    with pytest.raises(AttributeError):
        feedback.kind = "delivered"  # type: ignore[misc]


def test_the_address_hash_is_the_workspace_blind_index_of_the_normalized_address() -> None:
    master = generate_key()
    keyring = Keyring(master)
    ws_a, ws_b = WorkspaceId("ws_a"), WorkspaceId("ws_b")
    wrapped_a, wrapped_b = keyring.new_workspace_key(ws_a), keyring.new_workspace_key(ws_b)
    mine = address_hash(keyring, ws_a, wrapped_a, "ada@example.com")
    # Written any way, the address hashes the same (it is normalized first).
    assert address_hash(keyring, ws_a, wrapped_a, "  Ada@EXAMPLE.com ") == mine
    # An HMAC-SHA256 under the workspace's lookup key, of the suppression kind and the normalized address.
    key = lookup_key(unwrap(master, wrapped_a, ws_a.encode()))
    assert SUPPRESSION_KIND == "suppression:email"
    assert mine == hmac.new(key, b"suppression:email\x00ada@example.com", hashlib.sha256).hexdigest()
    assert mine != hashlib.sha256(b"ada@example.com").hexdigest()
    assert mine != keyring.blind_index(ws_a, wrapped_a, "email", "ada@example.com")
    assert address_hash(keyring, ws_b, wrapped_b, "ada@example.com") != mine
    # An address the email normalizer refuses still gets a stable hash of its trimmed, lower-cased text.
    assert address_hash(keyring, ws_a, wrapped_a, " Not-An-Address ") == keyring.blind_index(
        ws_a, wrapped_a, SUPPRESSION_KIND, "not-an-address")
