"""The timing matrix the demo ships as a ready journey (DESIGN 4.8): in-app at once, email +15 min, push +1 h,
SMS +24 h, offline task +72 h, each touch through its own channel and its own consent. Run through the real
wiring: the tracking API, the worker's passes, a real SMTP server and recording HTTP providers on loopback."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from api.support import ApiClient, admin, apply_yaml, track
from channels.support import HttpServer, Recorder, Reply, SmtpServer, serve_http, serve_smtp

from rapport.api.app import run_journeys, run_segments
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport
from rapport.demo.run import resource_text
from rapport.journeys import service as journeys_service
from rapport.journeys.model import DelayStep, SendStep
from rapport.storage.sql import inbox as inbox_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR, MINUTE, SECOND, WorkspaceId

PUSH_PATH = "/v1/projects/demo-shop/messages:send"
SID = "AC00000000000000000000000000000000"
TOKENS = {"RAPPORT_PUSH_TOKEN": "push-secret", "RAPPORT_SMS_TOKEN": "sms-secret"}
OFFSETS = {"inbox": 0, "email": 15 * MINUTE, "push": HOUR, "sms": DAY, "store_follow_up": 3 * DAY}
"""The matrix: each channel's touch, counted from the entry event."""
EVERY_PURPOSE = ("analytics", "personalization", "marketing_email", "marketing_push", "marketing_sms",
                 "marketing_offline")


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from serve_smtp(Recorder())


@pytest.fixture
def push() -> Iterator[HttpServer]:
    for server in serve_http():
        server.default = Reply(200, b'{"name": "projects/demo-shop/messages/0:1"}')
        yield server


@pytest.fixture
def sms() -> Iterator[HttpServer]:
    for server in serve_http():
        server.default = Reply(201, b'{"sid": "SM1", "status": "queued"}')
        yield server


def demo_resources(smtp: SmtpServer, push: HttpServer, sms: HttpServer) -> str:
    """The packaged demo resources with their peers moved to the loopback servers of the test."""
    text = resource_text()
    for old, new in (("port: 2525", f"port: {smtp.port}"),
                     ("url: https://fcm.googleapis.com/v1/projects/demo-shop/messages:send",
                      f"url: {push.url}{PUSH_PATH}"),
                     ("url: https://api.twilio.com/2010-04-01", f"url: {sms.url}/2010-04-01")):
        assert old in text, old
        text = text.replace(old, new)
    return text


class World:
    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer, push: HttpServer,
                 sms: HttpServer, environ: dict[str, str]) -> None:
        self.rapport, self.client, self.ws = rapport, client, ws
        self.smtp, self.push, self.sms = smtp, push, sms
        delivery = journeys_service.Delivery(rapport.settings.base_url, environ)
        self.engines = journeys_service.Engines(rapport.db, rapport.keyring, rapport.clock, delivery)
        assert isinstance(rapport.clock, FrozenClock)
        self.clock: FrozenClock = rapport.clock

    def person(self, user_id: str, purposes: tuple[str, ...], **traits: Any) -> str:
        response = track(self.client, self.ws, "/v1/identify", {"userId": user_id, "traits": traits})
        assert response.status_code == 200, response.text
        for purpose in purposes:
            response = admin(self.client, self.ws, "POST", "/api/v1/consent", json={
                "identifiers": {"user_id": user_id}, "purpose": purpose, "state": "granted", "source": "app"})
            assert response.status_code in (200, 201), response.text
        found = admin(self.client, self.ws, "GET", "/api/v1/profiles/lookup", params={"user_id": user_id})
        pid: str = found.json()["id"]
        return pid

    def view(self, user_id: str) -> None:
        response = track(self.client, self.ws, "/v1/track", {
            "userId": user_id, "event": "Product Viewed",
            "properties": {"product_id": "p-42", "product_name": "Linen shirt", "price": 49.0, "currency": "EUR"}})
        assert response.status_code == 200, response.text

    def work(self) -> None:
        self.rapport.invalidate(WorkspaceId(self.ws.workspace_id))
        run_segments(self.rapport)
        asyncio.run(run_journeys(self.rapport, self.engines))

    def log(self, profile_id: str) -> dict[str, tuple[str, str | None, str | None, int | None]]:
        """Per channel of the timing matrix: (status, reason, detail, sent_at) of the person's send."""
        rows = self.rapport.db.read(lambda c: journeys_sql.sends_of(c, self.ws.workspace_id, profile_id=profile_id))
        return {str(r[7]): (str(r[11]), r[12], r[13], None if r[17] is None else int(r[17]))
                for r in rows if r[3] == "timing_matrix"}

    def delivered(self, profile_id: str) -> dict[str, int]:
        """How many messages each channel's peer (or store) holds for the person."""
        ws = self.ws.workspace_id
        inbox = self.rapport.db.read(lambda c: inbox_sql.messages(c, ws, [profile_id], 100))
        tasks = self.rapport.db.read(lambda c: inbox_sql.tasks(c, ws, "store_follow_up", open_only=False,
                                                                  limit=100))
        return {"inbox": len(inbox), "email": len(self.smtp.handler.received), "push": len(self.push.requests),
                "sms": len(self.sms.requests), "store_follow_up": sum(1 for t in tasks if t[2] == profile_id)}


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer, push: HttpServer,
          sms: HttpServer) -> World:
    response = apply_yaml(client, workspace, demo_resources(smtp, push, sms))
    assert response.status_code == 200, response.text
    return World(rapport, client, workspace, smtp, push, sms, TOKENS)


def test_the_packaged_timing_matrix_applies_with_the_promised_offsets(rapport: Rapport, client: ApiClient,
                                                                      workspace: NewWorkspace) -> None:
    response = apply_yaml(client, workspace, resource_text())
    assert response.status_code == 200, response.text
    changes = {(c["kind"], c["name"]): c["action"] for c in response.json()["changes"]}
    assert changes[("Journey", "timing_matrix")] == "create"
    assert {changes[("Channel", n)] for n in ("inbox", "push", "sms", "store_follow_up")} == {"create"}
    journey = rapport.runtime(WorkspaceId(workspace.workspace_id), fresh=True).journeys["timing_matrix"]
    at, offsets = 0, {}
    for step in journey.steps:
        if isinstance(step, DelayStep):
            assert step.ms is not None
            at += step.ms
        elif isinstance(step, SendStep):
            offsets[step.channel] = at
    assert offsets == OFFSETS
    assert journey.purpose == "personalization" and journey.entry.name == "Product Viewed"


def test_each_touch_goes_out_at_its_offset_through_its_own_channel(world: World) -> None:
    pid = world.person("m1", EVERY_PURPOSE, email="mia@example.com", phone="+14155550123", first_name="Mia",
                       push_token="device-token-1")
    start = world.clock.now_ms()
    world.view("m1")
    expected = dict.fromkeys(OFFSETS, 0)
    for channel, offset in sorted(OFFSETS.items(), key=lambda item: item[1]):
        if offset:
            world.clock.set(start + offset - SECOND)
            world.work()
            assert world.delivered(pid) == expected, f"nothing for {channel} a second before its offset"
            world.clock.set(start + offset)
        world.work()
        expected[channel] = 1
        assert world.delivered(pid) == expected, channel
        status, _reason, _detail, sent_at = world.log(pid)[channel]
        assert (status, sent_at) == ("sent", start + offset), channel
    world.clock.advance(30 * DAY)
    world.work()
    assert world.delivered(pid) == expected, "each touch goes out once"

    [mail] = [email.message_from_bytes(r.content) for r in world.smtp.handler.received]
    assert mail["To"] == "mia@example.com" and mail["Subject"] == "Mia, Linen shirt is still here"
    [push_request] = world.push.requests
    assert push_request.path == PUSH_PATH and push_request.headers["authorization"] == "Bearer push-secret"
    body = orjson.loads(push_request.body)["message"]
    assert body["token"] == "device-token-1" and body["notification"]["title"] == "Linen shirt is waiting"
    assert body["data"] == {"product_id": "p-42"}
    [sms_request] = world.sms.requests
    assert sms_request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert b"To=%2B14155550123" in sms_request.body and b"Linen+shirt" in sms_request.body
    ws = world.ws.workspace_id
    [note] = world.rapport.db.read(lambda c: inbox_sql.messages(c, ws, [pid], 10))
    assert note[3] == "Still thinking about Linen shirt?"
    [task] = world.rapport.db.read(lambda c: inbox_sql.tasks(c, ws, "store_follow_up", open_only=False, limit=10))
    assert task[4] == "Call Mia about Linen shirt; offer to hold one in store."


def test_each_touch_needs_its_own_channels_consent(world: World) -> None:
    pid = world.person("n1", ("analytics", "personalization", "marketing_push"), email="noa@example.com",
                       phone="+14155550199", push_token="device-token-2")
    world.view("n1")
    world.work()
    world.clock.advance(3 * DAY)
    for _ in range(5):  # each pass steps the enrollment past one more delay
        world.work()
    log = world.log(pid)
    assert {channel: entry[:2] for channel, entry in log.items()} == {
        "inbox": ("sent", None), "push": ("sent", None), "email": ("refused", "consent_missing"),
        "sms": ("refused", "consent_missing"), "store_follow_up": ("refused", "consent_missing")}
    assert "marketing_email" in str(log["email"][2]) and "marketing_sms" in str(log["sms"][2])
    assert "marketing_offline" in str(log["store_follow_up"][2])
    assert world.delivered(pid) == {"inbox": 1, "email": 0, "push": 1, "sms": 0, "store_follow_up": 0}


def test_without_provider_tokens_push_and_sms_wait_naming_the_missing_variable(
        rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer, push: HttpServer,
        sms: HttpServer) -> None:
    assert apply_yaml(client, workspace, demo_resources(smtp, push, sms)).status_code == 200
    world = World(rapport, client, workspace, smtp, push, sms, {})
    pid = world.person("o1", EVERY_PURPOSE, email="oli@example.com", phone="+14155550111", push_token="t-3")
    world.view("o1")
    world.work()
    world.clock.advance(DAY)
    for _ in range(3):
        world.work()
    log = world.log(pid)
    assert log["inbox"][0] == log["email"][0] == "sent"
    for channel, variable in (("push", "RAPPORT_PUSH_TOKEN"), ("sms", "RAPPORT_SMS_TOKEN")):
        status, reason, detail, _ = log[channel]
        assert (status, reason) == ("scheduled", "transient"), channel
        assert variable in str(detail) and "not set" in str(detail)
    assert push.requests == [] and sms.requests == []
