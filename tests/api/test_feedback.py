"""Email feedback through the real app: open pixel, click redirects, SES and SendGrid webhooks, suppressions."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from api.support import NOW, ApiClient, admin, assert_error, basic, bearer, profile_of, timeline, track
from rapport.api import feedback
from rapport.api.app import create_app
from rapport.channels import tracking
from rapport.channels.feedback import address_hash
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.journeys.gate import GateInput, Suppression, decide
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import feedback as feedback_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import MINUTE, WorkspaceId

KEY = "9f86d081884c7d659a2feaa0c55ad015"
SES_ID = "0102018e0a8b1c2d-5f1e2a3b-1111-4c4c-9d9d-aaaaaaaaaaaa-000000"
SMTP_ID = "<3a7bd3e2360a3d29eea436fcfb7e44c7@shop.example>"
SG_ID = "14c5d75ce93.dfd.64b469"
CART = "https://shop.example/cart?id=42"


@pytest.fixture
def subscribed() -> list[str]:
    """The SNS SubscribeURLs the app confirmed (instead of fetching them)."""
    return []


@pytest.fixture
def client(rapport: Rapport, subscribed: list[str], monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiClient]:
    """The real app, confirming SNS subscriptions into ``subscribed`` instead of fetching their URL."""
    async def confirm(url: str) -> None:
        subscribed.append(url)

    monkeypatch.setattr(feedback, "confirm_sns_subscription", confirm)
    app = create_app(rapport, worker=False)
    api = ApiClient(app)
    try:
        yield api
    finally:
        api.close()


def person(client: ApiClient, ws: NewWorkspace, user_id: str = "u1", email: str = "Ada@Example.com") -> str:
    response = track(client, ws, "/v1/identify", {"userId": user_id, "traits": {"email": email}})
    assert response.status_code == 200, response.text
    pid: str = profile_of(client, ws, user_id=user_id)["id"]
    return pid


def consent(client: ApiClient, ws: NewWorkspace, pid: str, purpose: str = "analytics",
            state: str = "granted") -> None:
    response = admin(client, ws, "POST", "/api/v1/consent", json={"profile_id": pid, "purpose": purpose,
                                                                  "state": state})
    assert response.status_code == 201, response.text


def sent(rapport: Rapport, ws: NewWorkspace, pid: str, key: str = KEY, provider_id: str | None = SMTP_ID,
         channel: str = "email") -> None:
    """A journey send of ``key`` to ``pid``, accepted by the provider as ``provider_id``."""
    def job(conn: Any) -> None:
        journeys_sql.insert_sends(conn, ws.workspace_id, [(key, "enr_1", "cart_abandonment", 3, "reminder", "send",
                                                           channel, "cart_reminder", "[]", pid, NOW, NOW)])
        if provider_id is not None:
            journeys_sql.mark_sent(conn, [(ws.workspace_id, key, provider_id, "250 OK")], NOW)
    rapport.db.write(job)


def tracking_key(rapport: Rapport, ws: NewWorkspace) -> bytes:
    return tracking.tracking_key(rapport.keyring, rapport.runtime(ws.workspace_id))


def open_path(rapport: Rapport, ws: NewWorkspace, key: str = KEY) -> str:
    return f"/t/o/{tracking.open_token(tracking_key(rapport, ws), ws.workspace_id, key)}"


def click_path(rapport: Rapport, ws: NewWorkspace, url: str = CART, key: str = KEY) -> str:
    return f"/t/c/{tracking.click_token(tracking_key(rapport, ws), ws.workspace_id, key, url)}"


def email_events(client: ApiClient, ws: NewWorkspace, pid: str) -> list[dict[str, Any]]:
    """(name, properties, timestamp) of the profile's email events, oldest first."""
    found = [e for e in timeline(client, ws, pid) if str(e["name"]).startswith("Email ")]
    return [{"name": e["name"], "properties": e["message"]["properties"], "timestamp": e["timestamp"]}
            for e in reversed(found)]


def engagement(rapport: Rapport, ws: NewWorkspace, key: str = KEY) -> list[tuple[str, str | None, int]]:
    rows = rapport.db.read(lambda c: feedback_sql.engagement_of(c, ws.workspace_id, key))
    return [(str(r[1]), r[3], int(r[5])) for r in rows]


def suppressions(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    return rapport.db.read(lambda c: c.all(
        "SELECT profile_id, channel, address_hash, reason, source, detail, recorded_at FROM suppressions"
        " WHERE workspace_id = ? ORDER BY recorded_at, reason", (ws.workspace_id,)))


def hashed(rapport: Rapport, ws: NewWorkspace, address: str) -> str:
    """How the workspace's suppressions name ``address``."""
    rt = rapport.runtime(ws.workspace_id)
    return address_hash(rapport.keyring, rt.id, rt.wrapped_key, address)


def assert_gif(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/gif"
    assert response.content == feedback.GIF and response.content.startswith(b"GIF89a")
    assert "no-store" in response.headers["cache-control"]


PROPS = {"journey": "cart_abandonment", "step": "reminder", "channel": "email"}


# --- the open pixel ------------------------------------------------------------------------------------------

def test_an_open_is_one_event_per_message_and_every_open_is_counted(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    for _ in range(3):
        assert_gif(client.get(open_path(rapport, workspace)))
        clock.advance(MINUTE)
    assert email_events(client, workspace, pid) == [{"name": "Email Opened", "properties": PROPS,
                                                     "timestamp": to_iso(NOW)}]
    assert engagement(rapport, workspace) == [("open", None, 3)]


def test_without_analytics_consent_an_open_stores_nothing(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    sent(rapport, workspace, pid)
    assert_gif(client.get(open_path(rapport, workspace)))
    assert email_events(client, workspace, pid) == [] and engagement(rapport, workspace) == []


def test_consent_is_read_at_the_moment_of_the_open(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    clock.advance(MINUTE)
    consent(client, workspace, pid, state="withdrawn")
    sent(rapport, workspace, pid)
    clock.advance(MINUTE)
    assert_gif(client.get(open_path(rapport, workspace)))
    assert email_events(client, workspace, pid) == [] and engagement(rapport, workspace) == []


@pytest.mark.parametrize("forgery", ["garbage", "altered", "other-workspace", "unknown-workspace", "click-token",
                                     "unknown-send"])
def test_a_bad_open_token_still_gets_the_gif_and_records_nothing(
        forgery: str, client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    good = open_path(rapport, workspace)
    other = rapport.create_workspace(f"other-{secrets.token_hex(4)}")
    path = {
        "garbage": "/t/o/not-a-token",
        "altered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        # Signed with another workspace's key but naming this workspace.
        "other-workspace": f"/t/o/{tracking.open_token(tracking_key(rapport, other), workspace.workspace_id, KEY)}",
        "unknown-workspace": "/t/o/" + tracking.open_token(tracking_key(rapport, workspace), WorkspaceId("ws_x"), KEY),
        "click-token": "/t/o/" + click_path(rapport, workspace).rsplit("/", 1)[1],
        "unknown-send": open_path(rapport, workspace, key="0" * 32),
    }[forgery]
    assert_gif(client.get(path))
    assert email_events(client, workspace, pid) == [] and engagement(rapport, workspace) == []


def test_an_instrumented_message_leads_back_to_the_app(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    """The URLs ``instrument_html`` writes are the ones these routes answer."""
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    urls = tracking.tracking_urls("http://rapport.test/", rapport.runtime(workspace.workspace_id), KEY,
                                  keyring=rapport.keyring)
    html = tracking.instrument_html(
        f'<html><body><p><a href="{CART}">Your cart</a> <a href="mailto:help@shop.example">help</a></p></body></html>',
        urls.open_url, urls.click_url_for)
    [pixel_src] = re.findall(r'<img src="([^"]+)"', html)
    [tracked] = [h for h in re.findall(r'href="([^"]+)"', html) if h.startswith("http://rapport.test/t/c/")]
    assert_gif(client.get(pixel_src))
    response = client.get(tracked.replace("&amp;", "&"))
    assert (response.status_code, response.headers["location"]) == (302, CART)
    assert [e["name"] for e in email_events(client, workspace, pid)] == ["Email Opened", "Email Link Clicked"]


# --- tracked links ---------------------------------------------------------------------------------------------

def test_a_click_redirects_to_the_signed_url_and_records_the_first_click_per_link(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    for _ in range(2):
        response = client.get(click_path(rapport, workspace))
        assert response.status_code == 302
        assert response.headers["location"] == CART
        assert "no-store" in response.headers["cache-control"]
        assert response.headers["referrer-policy"] == "no-referrer"
        clock.advance(MINUTE)
    other = "https://shop.example/product/7"
    assert client.get(click_path(rapport, workspace, other)).headers["location"] == other
    assert email_events(client, workspace, pid) == [
        {"name": "Email Link Clicked", "properties": {"url": CART, **PROPS}, "timestamp": to_iso(NOW)},
        {"name": "Email Link Clicked", "properties": {"url": other, **PROPS}, "timestamp": to_iso(NOW + 2 * MINUTE)},
    ]
    assert sorted(engagement(rapport, workspace)) == [("click", CART, 2), ("click", other, 1)]


def test_without_consent_a_click_still_redirects_but_records_nothing(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid, state="denied")
    sent(rapport, workspace, pid)
    response = client.get(click_path(rapport, workspace))
    assert (response.status_code, response.headers["location"]) == (302, CART)
    assert email_events(client, workspace, pid) == [] and engagement(rapport, workspace) == []


@pytest.mark.parametrize("forgery", ["garbage", "swapped-url", "open-token", "other-workspace", "unknown-workspace"])
def test_a_forged_click_token_is_a_400_and_never_a_redirect(
        forgery: str, client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    genuine = click_path(rapport, workspace).rsplit("/", 1)[1]
    evil = tracking.click_token(secrets.token_bytes(32), workspace.workspace_id, KEY, "https://evil.example/")
    other = rapport.create_workspace(f"other-{secrets.token_hex(4)}")
    token = {
        "garbage": "%3Cscript%3E",
        "swapped-url": f"{evil.split('.')[0]}.{genuine.split('.')[1]}",
        "open-token": open_path(rapport, workspace).rsplit("/", 1)[1],
        "other-workspace": tracking.click_token(tracking_key(rapport, other), workspace.workspace_id, KEY, CART),
        "unknown-workspace": tracking.click_token(tracking_key(rapport, workspace), WorkspaceId("ws_nope"), KEY, CART),
    }[forgery]
    response = client.get(f"/t/c/{token}")
    body = assert_error(response, 400, response.json()["code"])
    assert body["code"] in ("invalid_tracking_token", "invalid_tracking_signature")
    assert "location" not in response.headers
    assert email_events(client, workspace, pid) == [] and engagement(rapport, workspace) == []


# --- SES -----------------------------------------------------------------------------------------------------

def mail(destination: str = "ada@example.com") -> dict[str, Any]:
    return {"timestamp": "2026-03-02T09:14:55.000Z", "source": "hello@shop.example", "messageId": SES_ID,
            "destination": [destination], "commonHeaders": {"messageId": SMTP_ID, "subject": "Your cart"}}


def sns(notification: dict[str, Any]) -> dict[str, Any]:
    return {"Type": "Notification", "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback", "Message": json.dumps(notification),
            "Timestamp": "2026-03-02T09:15:01.123Z", "SignatureVersion": "1", "Signature": "EXAMPLE",
            "SigningCertURL": "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0000.pem"}


def bounce(address: str = "ada@example.com", kind: str = "Permanent", at: str = "2026-03-02T09:14:58.000Z",
           diagnostic: str = "smtp; 550 5.1.1 <ada@example.com>: user unknown") -> dict[str, Any]:
    return {"notificationType": "Bounce", "mail": mail(address), "bounce": {
        "bounceType": kind, "bounceSubType": "General", "timestamp": at,
        "bouncedRecipients": [{"emailAddress": address, "status": "5.1.1", "diagnosticCode": diagnostic}]}}


def complaint(address: str, at: str = "2026-03-02T10:00:02.000Z") -> dict[str, Any]:
    return {"notificationType": "Complaint", "mail": {**mail(address), "messageId": "unknown-ses-id",
                                                      "commonHeaders": {}},
            "complaint": {"complainedRecipients": [{"emailAddress": address}], "complaintFeedbackType": "abuse",
                          "timestamp": at}}


def ses(client: ApiClient, ws: NewWorkspace, payload: Any) -> httpx.Response:
    # SNS posts JSON as text/plain.
    return client.post("/v1/feedback/ses", content=json.dumps(payload).encode(),
                       headers={**basic(ws.admin_token), "Content-Type": "text/plain; charset=UTF-8"})


def test_a_permanent_bounce_suppresses_the_address_and_lands_on_the_timeline(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    sent(rapport, workspace, pid, provider_id=SES_ID)
    response = ses(client, workspace, sns(bounce()))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": 1, "matched": 1, "suppressed": 1, "events": 1}
    at = parse("2026-03-02T09:14:58.000Z")
    detail = "General; smtp; 550 5.1.1 <<address>>: user unknown"
    ada = hashed(rapport, workspace, "ada@example.com")
    assert suppressions(rapport, workspace) == [(pid, "email", ada, "hard_bounce", "ses", detail, at)]
    assert email_events(client, workspace, pid) == [{"name": "Email Bounced", "timestamp": to_iso(at), "properties": {
        "provider": "ses", "reason": detail, "bounce_type": "hard", **PROPS}}]
    # SNS delivers at least once: the same notification again changes nothing.
    again = ses(client, workspace, sns(bounce()))
    assert again.json() == {"success": True, "received": 1, "matched": 1, "suppressed": 0, "events": 0}
    assert len(suppressions(rapport, workspace)) == 1 and len(email_events(client, workspace, pid)) == 1
    assert rapport.db.read(lambda c: feedback_sql.suppressions_of(c, workspace.workspace_id, [pid])) == {
        pid: [Suppression("hard_bounce", "email", at)]}


def parse(text: str) -> int:
    from rapport.clock import parse_iso

    return parse_iso(text)


def test_feedback_matches_the_smtp_message_id_when_the_provider_id_is_unknown(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    sent(rapport, workspace, pid, provider_id=SMTP_ID)
    assert ses(client, workspace, bounce()).json()["matched"] == 1
    assert email_events(client, workspace, pid)[0]["properties"]["journey"] == "cart_abandonment"


def test_a_complaint_without_a_send_is_matched_by_address(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace, email="bob@example.org")
    response = ses(client, workspace, sns(complaint("  BOB@example.org ")))
    assert response.json() == {"success": True, "received": 1, "matched": 1, "suppressed": 1, "events": 1}
    [row] = suppressions(rapport, workspace)
    assert row[:5] == (pid, "email", hashed(rapport, workspace, "bob@example.org"), "complaint", "ses")
    assert email_events(client, workspace, pid) == [{
        "name": "Email Complained", "timestamp": "2026-03-02T10:00:02.000Z",
        "properties": {"provider": "ses", "reason": "abuse"}}]


def test_soft_bounces_and_deliveries_are_events_without_suppression(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    sent(rapport, workspace, pid, provider_id=SES_ID)
    delivery = {"notificationType": "Delivery", "mail": mail(), "delivery": {
        "timestamp": "2026-03-02T09:14:57.000Z", "recipients": ["ada@example.com"], "smtpResponse": "250 OK"}}
    assert ses(client, workspace, sns(delivery)).status_code == 200
    assert ses(client, workspace, sns(bounce(kind="Transient", diagnostic="mailbox full"))).status_code == 200
    assert suppressions(rapport, workspace) == []
    assert [(e["name"], e["properties"].get("bounce_type")) for e in email_events(client, workspace, pid)] == [
        ("Email Delivered", None), ("Email Bounced", "soft")]


def test_a_bounce_for_an_address_nobody_has_is_still_suppressed(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    response = ses(client, workspace, sns(bounce("ghost@example.net", diagnostic="550 no such user")))
    assert response.json() == {"success": True, "received": 1, "matched": 0, "suppressed": 1, "events": 0}
    ghost = hashed(rapport, workspace, "ghost@example.net")
    assert suppressions(rapport, workspace)[0][:4] == (None, "email", ghost, "hard_bounce")
    # The person turns up later and bounces again: the stored suppression gains the profile.
    pid = person(client, workspace, email="ghost@example.net")
    ses(client, workspace, sns(bounce("ghost@example.net", at="2026-03-03T09:00:00.000Z")))
    assert [r[0] for r in suppressions(rapport, workspace)] == [pid]


def test_no_raw_address_is_stored_with_a_suppression(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    person(client, workspace)
    ses(client, workspace, bounce(diagnostic="smtp; 550 ada@example.com (Ada.Lovelace+tag@Example.COM) unknown"))
    [row] = suppressions(rapport, workspace)
    assert "@" not in repr(row)
    assert row[5] == "General; smtp; 550 <address> (<address>) unknown"


def test_an_sns_subscription_is_confirmed_through_the_injected_fetch(
        client: ApiClient, workspace: NewWorkspace, subscribed: list[str]) -> None:
    url = "https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn&Token=2336412f37"
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "2336412f37", "SubscribeURL": url,
               "TopicArn": "arn:aws:sns:eu-west-1:123456789012:ses-feedback", "Message": "You have chosen..."}
    response = ses(client, workspace, message)
    assert response.json() == {"success": True, "subscription": "confirmed"}
    assert subscribed == [url]


@pytest.mark.parametrize("url", ["https://evil.example/?Action=ConfirmSubscription",
                                 "http://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription",
                                 "https://sns.eu-west-1.amazonaws.com.evil.example/", None])
def test_a_subscribe_url_off_sns_is_refused_and_never_fetched(
        url: str | None, client: ApiClient, workspace: NewWorkspace, subscribed: list[str]) -> None:
    message = {"Type": "SubscriptionConfirmation", "MessageId": "m", "Token": "t", "SubscribeURL": url}
    assert_error(ses(client, workspace, message), 400, "invalid_subscribe_url")
    assert subscribed == []


def test_webhooks_need_an_admin_token_that_may_change_consent(client: ApiClient, rapport: Rapport,
                                                              workspace: NewWorkspace) -> None:
    analyst = rapport.create_token(workspace.workspace_id, "analyst", "a", "test")
    for path in ("/v1/feedback/ses", "/v1/feedback/sendgrid"):
        assert_error(client.post(path, json=[]), 401, "missing_credentials")
        assert_error(client.post(path, json=[], headers=basic(workspace.write_key)), 403, "wrong_credential_kind")
        assert_error(client.post(path, json=[], headers=basic(analyst)), 403, "forbidden")
        assert client.post(path, json=[], headers=basic("wk_not-a-key")).status_code == 401
    assert suppressions(rapport, workspace) == []


def test_malformed_feedback_is_a_400_naming_the_field(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    body = assert_error(ses(client, workspace, {"notificationType": "Bounced", "mail": mail()}), 400,
                        "invalid_feedback")
    assert "notificationType" in body["message"]
    body = assert_error(client.post("/v1/feedback/sendgrid", json=[{"event": "bounce", "timestamp": 1}],
                                    headers=basic(workspace.admin_token)), 400, "invalid_feedback")
    assert "events[0].email" in body["message"]
    assert_error(client.post("/v1/feedback/sendgrid", content=b"{not json", headers=basic(workspace.admin_token)),
                 400, "invalid_json")


# --- SendGrid ------------------------------------------------------------------------------------------------

def test_a_sendgrid_batch_suppresses_withdraws_and_records(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    ada = person(client, workspace, "u1", "ada@example.com")
    bob = person(client, workspace, "u2", "bob@example.org")
    eve = person(client, workspace, "u3", "eve@example.com")
    for pid in (ada, bob, eve):
        consent(client, workspace, pid)
        consent(client, workspace, pid, "marketing_email")
    # SendGrid's send API returned SG_ID; its events name the message SG_ID plus a '.filter...' suffix.
    sent(rapport, workspace, ada, provider_id=SG_ID)
    sg = f"{SG_ID}.filter0001.16648.5515E0B88.0"
    t0 = NOW // 1000 + 60  # seconds, after the consents above
    events = [
        {"email": "ada@example.com", "timestamp": t0 + 0, "event": "processed", "sg_message_id": sg},
        {"email": "ada@example.com", "timestamp": t0 + 2, "event": "delivered", "response": "250 OK",
         "sg_message_id": sg},
        {"email": "ada@example.com", "timestamp": t0 + 65, "event": "open", "sg_message_id": sg},
        {"email": "ada@example.com", "timestamp": t0 + 66, "event": "click", "url": CART, "sg_message_id": sg},
        {"email": "bob@example.org", "timestamp": t0 + 3, "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist.", "sg_message_id": "x1"},
        {"email": "bob@example.org", "timestamp": t0 + 4, "event": "spamreport", "sg_message_id": "x1"},
        {"email": "eve@example.com", "timestamp": t0 + 10, "event": "unsubscribe", "sg_message_id": "x2"},
        {"email": "eve@example.com", "timestamp": t0 + 11, "event": "group_unsubscribe", "sg_message_id": "x2"},
    ]
    response = client.post("/v1/feedback/sendgrid", json=events, headers=basic(workspace.admin_token))
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "received": 7, "matched": 7, "suppressed": 2, "events": 7}
    assert [(e["name"], e["properties"].get("journey")) for e in email_events(client, workspace, ada)] == [
        ("Email Delivered", "cart_abandonment"), ("Email Opened", "cart_abandonment"),
        ("Email Link Clicked", "cart_abandonment")]
    assert sorted(engagement(rapport, workspace)) == [("click", CART, 1), ("open", None, 1)]
    # The pixel after the provider saw the open counts, but adds no second event.
    assert_gif(client.get(open_path(rapport, workspace)))
    assert engagement(rapport, workspace)[1] == ("open", None, 2)
    assert len(email_events(client, workspace, ada)) == 3
    assert [(r[0], r[3], r[4]) for r in suppressions(rapport, workspace)] == [
        (bob, "hard_bounce", "sendgrid"), (bob, "complaint", "sendgrid")]
    assert [e["name"] for e in email_events(client, workspace, bob)] == ["Email Bounced", "Email Complained"]
    # An unsubscribe at the provider withdraws the email purpose, once.
    assert [e["name"] for e in email_events(client, workspace, eve)] == ["Email Unsubscribed", "Email Unsubscribed"]
    history = admin(client, workspace, "GET", f"/api/v1/profiles/{eve}/consent").json()
    assert history["current"]["marketing_email"]["allowed"] is False
    withdrawals = [h for h in history["history"] if h["state"] == "withdrawn"]
    assert [(h["purpose"], h["source"]) for h in withdrawals] == [("marketing_email", "sendgrid_unsubscribe")]
    assert history["current"]["analytics"]["allowed"] is True


# --- suppressions for the gate and the admin API -------------------------------------------------------------

def test_the_gate_refuses_what_feedback_suppressed(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    ses(client, workspace, bounce())
    found = rapport.db.read(lambda c: feedback_sql.suppressions_of(c, workspace.workspace_id, [pid, "prf_none"]))
    assert list(found) == [pid]
    catalog = rapport.runtime(workspace.workspace_id).catalog
    gate = GateInput(at=NOW, journey="cart_abandonment", channel="email", purpose=catalog.get("necessary"),
                     suppressions=found[pid])
    assert decide(gate).reason == "suppressed_bounce"
    assert decide(GateInput(at=NOW, journey="j", channel="sms", purpose=catalog.get("necessary"),
                            suppressions=found[pid])).outcome == "send"


def test_a_merged_profile_keeps_the_suppressions_of_both(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    track(client, workspace, "/v1/identify", {"anonymousId": "anon-1", "traits": {"email": "bob@example.org"}})
    anon = profile_of(client, workspace, anonymous_id="anon-1")["id"]
    known = person(client, workspace, "u1", "ada@example.com")
    ses(client, workspace, bounce())
    ses(client, workspace, complaint("bob@example.org"))
    # The anonymous visitor logs in: the two profiles merge.
    track(client, workspace, "/v1/identify", {"userId": "u1", "anonymousId": "anon-1"})
    root = profile_of(client, workspace, user_id="u1")["id"]
    assert profile_of(client, workspace, anonymous_id="anon-1")["id"] == root
    assert root in (anon, known)
    found = rapport.db.read(lambda c: feedback_sql.suppressions_of(c, workspace.workspace_id, [root]))
    assert sorted(s.reason for s in found[root]) == ["complaint", "hard_bounce"]
    listed = admin(client, workspace, "GET", f"/api/v1/profiles/{anon}/suppressions").json()
    assert listed["profile_id"] == root and len(listed["suppressions"]) == 2


def test_the_admin_api_lists_and_lifts_suppressions_with_an_audit_entry(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    ses(client, workspace, bounce())
    ses(client, workspace, complaint("ada@example.com"))
    ada = hashed(rapport, workspace, "ada@example.com")
    listed = admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/suppressions")
    assert listed.status_code == 200, listed.text
    assert listed.json() == {"profile_id": pid, "suppressions": [
        {"channel": "email", "reason": "hard_bounce", "address_hash": ada, "source": "ses",
         "detail": "General; smtp; 550 5.1.1 <<address>>: user unknown", "recorded_at": "2026-03-02T09:14:58.000Z"},
        {"channel": "email", "reason": "complaint", "address_hash": ada, "source": "ses",
         "detail": "abuse", "recorded_at": "2026-03-02T10:00:02.000Z"}]}
    marketer = rapport.create_token(workspace.workspace_id, "marketer", "m", "test")
    lifted = admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/hard_bounce",
                   token=marketer)
    assert lifted.status_code == 200, lifted.text
    assert lifted.json() == {"profile_id": pid, "channel": "email", "reason": "hard_bounce", "deleted": 1,
                             "address_hashes": [ada]}
    remaining = rapport.db.read(lambda c: feedback_sql.suppressions_of(c, workspace.workspace_id, [pid]))
    assert [s.reason for s in remaining[pid]] == ["complaint"]
    entries = admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]
    assert entries[-1]["action"] == "suppression.delete" and entries[-1]["target"] == pid
    assert entries[-1]["detail"] == {"channel": "email", "reason": "hard_bounce",
                                     "address_hashes": [ada]}
    assert entries[-1]["actor"].startswith("admin_token:")
    assert_error(admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/hard_bounce"),
                 404, "suppression_not_found")
    assert_error(admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/complaint",
                       params={"address_hash": hashed(rapport, workspace, "other@example.com")}), 404,
                 "suppression_not_found")
    for bad in ("ADA", ada.upper(), ada + "0"):
        assert_error(admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/complaint",
                           params={"address_hash": bad}), 400, "invalid_address_hash")
    one = admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/complaint",
                params={"address_hash": ada})
    assert one.status_code == 200, one.text
    assert one.json()["address_hashes"] == [ada]
    assert rapport.db.read(lambda c: feedback_sql.suppressions_of(c, workspace.workspace_id, [pid])) == {}
    assert_error(admin(client, workspace, "DELETE", f"/api/v1/profiles/{pid}/suppressions/email/spam"), 400,
                 "invalid_suppression")


@pytest.mark.parametrize(("role", "read", "lift"), [("admin", 200, 200), ("marketer", 200, 200),
                                                    ("analyst", 200, 403), ("viewer", 403, 403)])
def test_roles_for_suppressions(role: str, read: int, lift: int, client: ApiClient, rapport: Rapport,
                                workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    ses(client, workspace, bounce())
    token = rapport.create_token(workspace.workspace_id, role, role, "test")  # type: ignore[arg-type]
    path = f"/api/v1/profiles/{pid}/suppressions"
    assert admin(client, workspace, "GET", path, token=token).status_code == read
    assert admin(client, workspace, "DELETE", f"{path}/email/hard_bounce", token=token).status_code == lift


def test_suppressions_stay_in_their_workspace(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    ses(client, workspace, bounce())
    other = rapport.create_workspace(f"other-{secrets.token_hex(4)}")
    for method, suffix in (("GET", ""), ("DELETE", "/email/hard_bounce")):
        assert_error(client.request(method, f"/api/v1/profiles/{pid}/suppressions{suffix}",
                                    headers=bearer(other.admin_token)), 404, "profile_not_found")
        assert_error(client.request(method, f"/api/v1/profiles/{pid}/suppressions{suffix}"), 401,
                     "missing_credentials")
        assert_error(client.request(method, f"/api/v1/profiles/{pid}/suppressions{suffix}",
                                    headers=bearer(workspace.write_key)), 403, "wrong_credential_kind")
    # The same address bouncing in the other workspace is that workspace's own record.
    ses(client, other, bounce())
    assert rapport.db.read(lambda c: feedback_sql.suppressions_of(c, WorkspaceId(other.workspace_id), [pid])) == {}
    assert len(suppressions(rapport, workspace)) == 1


def test_a_suppression_names_its_address_by_a_keyed_hash_of_the_workspace(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    other = rapport.create_workspace(f"other-{secrets.token_hex(4)}")
    ses(client, workspace, bounce("  Ada@Example.com "))
    ses(client, other, bounce("ada@example.com"))
    [mine] = [str(r[2]) for r in suppressions(rapport, workspace)]
    [theirs] = [str(r[2]) for r in suppressions(rapport, other)]
    assert re.fullmatch("[0-9a-f]{64}", mine) and re.fullmatch("[0-9a-f]{64}", theirs)
    # The same address hashes differently in each workspace, and never as its plain SHA-256, which anyone
    # could compute from a list of candidate addresses.
    assert mine != theirs
    assert hashlib.sha256(b"ada@example.com").hexdigest() not in (mine, theirs)
    assert mine == hashed(rapport, workspace, "ada@example.com") and theirs == hashed(rapport, other, "ADA@example.com")
    # Nor is it the lookup index of the address as an identifier: the two cannot be joined.
    rt = rapport.runtime(workspace.workspace_id)
    assert mine != rapport.keyring.blind_index(rt.id, rt.wrapped_key, "email", "ada@example.com")


def test_events_are_plain_track_events_with_internal_ids(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    pid = person(client, workspace)
    consent(client, workspace, pid)
    sent(rapport, workspace, pid)
    client.get(open_path(rapport, workspace))
    rows = rapport.db.read(lambda c: c.all(
        "SELECT message_id, type, name, restricted, body FROM events WHERE workspace_id = ? AND name = ?",
        (workspace.workspace_id, "Email Opened")))
    [(message_id, kind, name, restricted, body)] = rows
    assert message_id == f"rapport:email:open:{KEY}" and (kind, name, restricted) == ("track", "Email Opened", 0)
    assert orjson.loads(body)["messageId"] == message_id
    # Events Rapport writes itself do not count as ingested traffic: only the identify does.
    assert rapport.db.read(lambda c: events_sql.ingested_count(c, workspace.workspace_id)) == 1
