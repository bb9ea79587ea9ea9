"""The timing matrix the demo ships as a ready journey (DESIGN 4.8): in-app at once, email +15 min, push +1 h,
SMS +24 h, offline task +72 h, each touch through its own channel and its own consent. Run through the real
wiring: the tracking API, the worker's passes, a real SMTP server and recording HTTP providers on loopback."""

from __future__ import annotations

import orjson
import pytest
from api.support import ApiClient, apply_yaml, basic, proven
from channels.support import HttpServer, SmtpServer

from journeys.support import EVERY_PURPOSE, PUSH_PATH, demo_resources
from journeys.support import MATRIX_OFFSETS as OFFSETS
from journeys.support import PROVIDER_TOKENS as TOKENS
from journeys.support import TimingMatrixWorld as World
from rapport.core import NewWorkspace, Rapport
from rapport.demo.run import resource_text
from rapport.journeys.model import DelayStep, SendStep
from rapport.storage.sql import inbox as inbox_sql
from rapport.types import DAY, SECOND, WorkspaceId

SID = "AC00000000000000000000000000000000"


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer, push: HttpServer,
          sms: HttpServer) -> World:
    world = World(rapport, client, workspace, smtp, push, sms, TOKENS)
    world.apply(demo_resources(smtp, push, sms))
    return world


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

    [mail] = world.mail()
    assert mail["To"] == "mia@example.com" and mail["Subject"] == "Mia, Linen shirt is still here"
    [push_request] = world.push.requests
    assert push_request.path == PUSH_PATH and push_request.headers["authorization"] == "Bearer push-secret"
    body = orjson.loads(push_request.body)["message"]
    assert body["token"] == "device-token-1" and body["notification"]["title"] == "Linen shirt is waiting"
    assert body["data"] == {"product_id": "p-42"}
    [sms_request] = world.sms.requests
    assert sms_request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    assert b"To=%2B14155550123" in sms_request.body and b"Linen+shirt" in sms_request.body
    # Stored sealed under the person's key; the end user's app and the store staff read them in clear.
    response = world.client.get("/v1/inbox", params=proven(world.client, world.ws, {"user_id": "m1"}),
                                headers=basic(world.ws.write_key))
    assert response.status_code == 200, response.text
    [note] = response.json()["messages"]
    assert note["title"] == "Still thinking about Linen shirt?"
    response = world.call("GET", "/api/v1/channels/store_follow_up/tasks")
    assert response.status_code == 200, response.text
    [task] = response.json()["tasks"]
    assert task["body"] == "Call Mia about Linen shirt; offer to hold one in store."
    ws = world.ws.workspace_id
    [stored] = world.rapport.db.read(lambda c: inbox_sql.messages(c, ws, [pid], 10))
    assert "Linen shirt" not in repr(stored), "the stored row holds no clear text"


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
    world = World(rapport, client, workspace, smtp, push, sms, {})
    world.apply(demo_resources(smtp, push, sms))
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
