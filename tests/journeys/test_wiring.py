"""Journeys in the running server: events ingested through the tracking API and segment changes reach the
workspace's journeys, and the worker's passes send real email through a real SMTP server (aiosmtpd on
loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import email
from collections.abc import Iterator
from email.message import Message as MimeMessage
from typing import Any

import pytest
from api.support import ApiClient, admin, apply_yaml, basic, track
from channels.support import Recorder, SmtpServer, serve_smtp

from rapport.api.app import journey_engines, run_journeys, run_segments
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport
from rapport.journeys import service as journeys_service
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR, MINUTE, WorkspaceId


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    yield from serve_smtp(Recorder())


def resources(port: int) -> str:
    return f"""
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: {port}
from: "Shop <hello@shop.example>"
---
kind: Template
name: welcome
channel: email
subject: "Welcome, {{{{ traits.first_name | default: 'friend' }}}}"
text: "Thanks for signing up on {{{{ event.plan }}}}."
---
kind: Template
name: tips
channel: email
subject: "Three tips"
text: "Tip one."
---
kind: Template
name: vip
channel: email
subject: "You are a VIP"
html: "<p>Hello {{{{ traits.first_name }}}}</p>"
---
kind: Segment
name: pro
rule: traits.plan == "pro"
---
kind: Journey
name: onboarding
purpose: marketing_email
entry: {{event: Signed Up}}
steps:
  - send: {{channel: email, template: welcome}}
  - delay: 1d
  - send: {{channel: email, template: tips}}
---
kind: Journey
name: vip_welcome
purpose: marketing_email
entry: {{segment_entered: pro}}
steps:
  - send: {{channel: email, template: vip}}
"""


class World:
    def __init__(self, rapport: Rapport, client: ApiClient, ws: NewWorkspace, smtp: SmtpServer) -> None:
        self.rapport, self.client, self.ws, self.smtp = rapport, client, ws, smtp
        self.engines = journey_engines(rapport)
        assert isinstance(rapport.clock, FrozenClock)
        self.clock: FrozenClock = rapport.clock

    def person(self, user_id: str, consent: bool, **traits: Any) -> None:
        response = track(self.client, self.ws, "/v1/identify", {"userId": user_id, "traits": traits})
        assert response.status_code == 200, response.text
        # Analytics consent keeps the events' properties (without it they are stored minimized).
        for purpose in ("analytics", "marketing_email") if consent else ("analytics",):
            response = admin(self.client, self.ws, "POST", "/api/v1/consent", json={
                "identifiers": {"user_id": user_id}, "purpose": purpose, "state": "granted",
                "source": "signup form"})
            assert response.status_code in (200, 201), response.text

    def event(self, user_id: str, name: str, **properties: Any) -> None:
        response = track(self.client, self.ws, "/v1/track", {"userId": user_id, "event": name,
                                                              "properties": properties})
        assert response.status_code == 200, response.text

    def work(self) -> None:
        """One background pass: segments first (their changes queue events), then journeys."""
        self.rapport.invalidate(self.ws.workspace_id)
        run_segments(self.rapport)
        asyncio.run(run_journeys(self.rapport, self.engines))

    def mail(self) -> list[MimeMessage]:
        return [email.message_from_bytes(r.content) for r in self.smtp.handler.received]

    def sends(self) -> list[tuple[Any, ...]]:
        return self.rapport.db.read(lambda c: journeys_sql.sends_of(c, self.ws.workspace_id))


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> World:
    response = apply_yaml(client, workspace, resources(smtp.port))
    assert response.status_code == 200, response.text
    return World(rapport, client, workspace, smtp)


def test_an_event_enrolls_and_the_worker_sends_each_step_on_time(world: World) -> None:
    world.person("u1", True, email="Ada@Example.com", first_name="Ada")
    world.event("u1", "Signed Up", plan="basic")
    world.work()
    [welcome] = world.mail()
    assert welcome["To"] == "ada@example.com"
    assert welcome["Subject"] == "Welcome, Ada"
    assert "Thanks for signing up on basic." in welcome.get_payload(decode=True).decode()  # type: ignore[union-attr]
    # RFC 8058: the one-click unsubscribe of the channel's purpose, on the server's public URL.
    assert "/unsubscribe/" in welcome["List-Unsubscribe"] and "purpose=marketing_email" in welcome["List-Unsubscribe"]
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    world.clock.advance(DAY - MINUTE)
    world.work()
    assert len(world.mail()) == 1, "the delay holds the second step until a full day has passed"
    world.clock.advance(MINUTE)
    world.work()
    assert [m["Subject"] for m in world.mail()] == ["Welcome, Ada", "Three tips"]
    world.work()
    assert len(world.mail()) == 2, "a further pass sends nothing again"
    assert {(row[5], row[11]) for row in world.sends()} == {("0", "sent"), ("2", "sent")}


def test_nobody_is_enrolled_or_mailed_without_consent(world: World) -> None:
    world.person("u2", False, email="bo@example.com")
    world.event("u2", "Signed Up", plan="basic")
    world.work()
    world.clock.advance(2 * DAY)
    world.work()
    assert world.mail() == [] and world.sends() == []


def test_entering_a_segment_enrolls_in_its_journey(world: World) -> None:
    world.person("u3", True, email="cy@example.com", first_name="Cy")
    world.work()
    assert world.mail() == []
    world.person("u3", True, plan="pro")
    world.work()
    [vip] = world.mail()
    assert vip["Subject"] == "You are a VIP" and vip["To"] == "cy@example.com"
    html = vip.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "<p>Hello Cy</p>" in html and "/t/o/" in html, "the open pixel of a person who allows analytics"


def test_a_hard_bounce_suppresses_the_next_message(world: World) -> None:
    world.person("b1", True, email="gone@example.com")
    world.event("b1", "Signed Up", plan="basic")
    world.work()
    [first] = world.sends()
    bounce = [{"email": "gone@example.com", "event": "bounce", "type": "bounce", "status": "5.1.1",
               "reason": "550 5.1.1 mailbox does not exist", "timestamp": world.clock.now_ms() // 1000,
               "sg_event_id": "evt-1", "smtp-id": first[18]}]
    response = world.client.post("/v1/feedback/sendgrid", json=bounce, headers=basic(world.ws.admin_token))
    assert response.status_code == 200, response.text
    world.clock.advance(DAY)
    world.work()
    assert len(world.mail()) == 1
    log = {row[5]: (row[11], row[12]) for row in world.sends()}
    assert log["2"] == ("refused", "suppressed_bounce")


def test_consent_withdrawn_before_a_delayed_step_stops_it(world: World) -> None:
    world.person("u4", True, email="di@example.com")
    world.event("u4", "Signed Up", plan="basic")
    world.work()
    assert len(world.mail()) == 1
    response = admin(world.client, world.ws, "POST", "/api/v1/consent", json={
        "identifiers": {"user_id": "u4"}, "purpose": "marketing_email", "state": "withdrawn", "source": "support"})
    assert response.status_code in (200, 201), response.text
    world.clock.advance(DAY + HOUR)
    world.work()
    assert len(world.mail()) == 1
    log = {row[5]: (row[11], row[12]) for row in world.sends()}
    assert log["2"] == ("refused", "consent_missing")


def test_a_channel_whose_secret_is_missing_keeps_its_sends_waiting(rapport: Rapport, client: ApiClient,
                                                                    workspace: NewWorkspace, smtp: SmtpServer) -> None:
    text = resources(smtp.port).replace('from: "Shop <hello@shop.example>"',
                                        'from: "Shop <hello@shop.example>"\nusername: shop\n'
                                        'password_env: RAPPORT_TEST_UNSET_SMTP_PASSWORD')
    assert apply_yaml(client, workspace, text).status_code == 200
    world = World(rapport, client, workspace, smtp)
    world.person("u5", True, email="ed@example.com")
    world.event("u5", "Signed Up", plan="basic")
    world.work()
    [row] = world.sends()
    assert (row[11], row[12]) == ("scheduled", "transient")
    assert "RAPPORT_TEST_UNSET_SMTP_PASSWORD" in row[13]
    assert world.mail() == []


def test_engines_are_rebuilt_when_definitions_change(world: World) -> None:
    rt = world.rapport.runtime(WorkspaceId(world.ws.workspace_id))
    engine = world.engines.of(rt)
    assert world.engines.of(rt) is engine
    assert apply_yaml(world.client, world.ws, resources(world.smtp.port).replace("Three tips", "Four tips")
                      ).status_code == 200
    fresh = world.rapport.runtime(WorkspaceId(world.ws.workspace_id), fresh=True)
    assert world.engines.of(fresh) is not engine
    assert journeys_service.channel_purposes(fresh) == {"email": "marketing_email"}


def test_the_api_shows_each_message_with_the_gates_reason(world: World) -> None:
    world.person("u6", True, email="fy@example.com")
    world.person("u7", True, email="gu@example.com")
    for user in ("u6", "u7"):
        world.event(user, "Signed Up", plan="basic")
    world.work()
    admin(world.client, world.ws, "POST", "/api/v1/consent", json={
        "identifiers": {"user_id": "u7"}, "purpose": "marketing_email", "state": "withdrawn", "source": "support"})
    world.clock.advance(DAY)
    world.work()
    [listed] = [j for j in admin(world.client, world.ws, "GET", "/api/v1/journeys").json()["journeys"]
                if j["name"] == "onboarding"]
    assert listed["enrollments"] == {"active": 0, "completed": 2, "exited": 0}
    assert listed["messages"] == {"sent": 3, "scheduled": 0, "held": 0, "refused": 1, "failed": 0}
    assert listed["entry"] == {"event": "Signed Up"} and listed["purpose"] == "marketing_email"
    detail = admin(world.client, world.ws, "GET", "/api/v1/journeys/onboarding").json()
    stats = {s["id"]: s for s in detail["step_stats"]}
    assert stats["0"]["messages"]["sent"] == 2 and stats["1"]["kind"] == "delay"
    assert stats["2"]["messages"]["refused"] == 1 and stats["2"]["reasons"] == {"consent_missing": 1}
    assert [v["version"] for v in detail["versions"]] == [1]
    pid = admin(world.client, world.ws, "GET", "/api/v1/profiles/lookup", params={"user_id": "u7"}).json()["id"]
    body = admin(world.client, world.ws, "GET", f"/api/v1/profiles/{pid}/messages").json()
    assert [(m["step"], m["status"], m["reason"]) for m in body["messages"]] == [
        ("0", "sent", None), ("2", "refused", "consent_missing")]
    assert "marketing_email" in body["messages"][1]["detail"]
    assert [e["status"] for e in body["enrollments"]] == ["completed"]
    first = admin(world.client, world.ws, "GET", "/api/v1/journeys/onboarding/enrollments",
                  params={"limit": 1}).json()
    second = admin(world.client, world.ws, "GET", "/api/v1/journeys/onboarding/enrollments",
                   params={"limit": 1, "cursor": first["next"]}).json()
    assert len(first["enrollments"]) == len(second["enrollments"]) == 1 and second["next"] is None
    assert first["enrollments"][0]["id"] != second["enrollments"][0]["id"]


def test_journey_routes_check_roles_and_names(world: World) -> None:
    viewer = world.rapport.create_token(WorkspaceId(world.ws.workspace_id), "viewer", "v", "test")
    response = admin(world.client, world.ws, "GET", "/api/v1/journeys", token=viewer)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    missing = admin(world.client, world.ws, "GET", "/api/v1/journeys/onbording")
    assert missing.status_code == 404 and "onboarding" in missing.json()["message"]
    bad = admin(world.client, world.ws, "GET", "/api/v1/journeys/onboarding/enrollments",
                params={"status": "paused"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_simulation_walks_profiles_without_storing_or_sending(world: World) -> None:
    from rapport.journeys.reports import Journeys

    world.person("s1", True, email="s1@example.com")
    world.person("s2", False, email="s2@example.com")
    journeys = Journeys(world.rapport, WorkspaceId(world.ws.workspace_id))
    ids = [admin(world.client, world.ws, "GET", "/api/v1/profiles/lookup", params={"user_id": u}).json()["id"]
           for u in ("s1", "s2")]
    out = journeys.simulate("onboarding", profiles=ids, synthetic=3, days=3)
    summary = out["summary"]
    assert (summary["profiles"], summary["entered"]) == (5, 4)
    assert summary["ended"] == {"completed": 4, "not_entered:no consent for purpose 'marketing_email'": 1}
    assert summary["messages"] == {"0 email/welcome: send": 4, "2 email/tips: send": 4}
    walks = {w["profile_id"]: w for w in out["walks"]}
    assert walks[ids[1]]["status"] == "not_entered" and "marketing_email" in walks[ids[1]]["reason"]
    day_later = [m["at"] for m in walks[ids[0]]["messages"]]
    assert day_later[1] > day_later[0]
    short = journeys.simulate("onboarding", profiles=ids[:1], days=0)
    assert short["summary"]["ended"] == {"active": 1}, "the delay of a day is past a zero-day horizon"
    assert world.mail() == [] and world.sends() == []


def test_old_events_step_enrollments_but_enroll_nobody(world: World) -> None:
    from rapport.clock import to_iso

    world.person("h1", True, email="h1@example.com")
    old = to_iso(world.clock.now_ms() - 2 * DAY)
    response = track(world.client, world.ws, "/v1/track", {"userId": "h1", "event": "Signed Up",
                                                            "timestamp": old,
                                                            "sentAt": to_iso(world.clock.now_ms())})
    assert response.status_code == 200, response.text
    world.work()
    assert world.sends() == [], "history does not start journeys"
    world.event("h1", "Signed Up", plan="basic")
    world.work()
    assert len(world.mail()) == 1
