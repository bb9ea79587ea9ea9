"""Journeys in the running server: events ingested through the tracking API and segment changes reach the
workspace's journeys, and the worker's passes send real email through a real SMTP server (aiosmtpd on
loopback), on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from api.support import ApiClient, basic, track
from channels.support import SmtpServer

from journeys.support import ANALYTICS_ONLY, ONBOARDING, SmtpWorld, documents, email_channel
from rapport.core import NewWorkspace, Rapport
from rapport.journeys import service as journeys_service
from rapport.types import DAY, HOUR, MINUTE

OTHERS = """
kind: Template
name: welcome
channel: email
subject: "Welcome, {{ traits.first_name | default: 'friend' }}"
text: "Thanks for signing up on {{ event.plan }}."
---
kind: Template
name: vip
channel: email
subject: "You are a VIP"
html: "<p>Hello {{ traits.first_name }}</p>"
---
kind: Segment
name: pro
rule: traits.plan == "pro"
---
kind: Journey
name: vip_welcome
purpose: marketing_email
entry: {segment_entered: pro}
steps:
  - send: {channel: email, template: vip}
"""


def resources(port: int) -> str:
    return documents(email_channel(port), ONBOARDING, OTHERS)


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> SmtpWorld:
    world = SmtpWorld(rapport, client, workspace, smtp)
    world.apply(resources(smtp.port))
    return world


def test_an_event_enrolls_and_the_worker_sends_each_step_on_time(world: SmtpWorld) -> None:
    world.person("u1", email="Ada@Example.com", first_name="Ada")
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


def test_nobody_is_enrolled_or_mailed_without_consent(world: SmtpWorld) -> None:
    world.person("u2", ANALYTICS_ONLY, email="bo@example.com")
    world.event("u2", "Signed Up", plan="basic")
    world.work()
    world.clock.advance(2 * DAY)
    world.work()
    assert world.mail() == [] and world.sends() == []


def test_entering_a_segment_enrolls_in_its_journey(world: SmtpWorld) -> None:
    world.person("u3", email="cy@example.com", first_name="Cy")
    world.work()
    assert world.mail() == []
    world.person("u3", plan="pro")
    world.work()
    [vip] = world.mail()
    assert vip["Subject"] == "You are a VIP" and vip["To"] == "cy@example.com"
    html = vip.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "<p>Hello Cy</p>" in html and "/t/o/" in html, "the open pixel of a person who allows analytics"


def test_a_hard_bounce_suppresses_the_next_message(world: SmtpWorld) -> None:
    world.person("b1", email="gone@example.com")
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


def test_consent_withdrawn_before_a_delayed_step_stops_it(world: SmtpWorld) -> None:
    world.person("u4", email="di@example.com")
    world.event("u4", "Signed Up", plan="basic")
    world.work()
    assert len(world.mail()) == 1
    world.consent("u4", ["marketing_email"], "withdrawn")
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
    world = SmtpWorld(rapport, client, workspace, smtp)
    world.apply(text)
    world.person("u5", email="ed@example.com")
    world.event("u5", "Signed Up", plan="basic")
    world.work()
    [row] = world.sends()
    assert (row[11], row[12]) == ("scheduled", "transient")
    assert "RAPPORT_TEST_UNSET_SMTP_PASSWORD" in row[13]
    assert world.mail() == []


def test_engines_are_rebuilt_when_definitions_change(world: SmtpWorld) -> None:
    rt = world.rapport.runtime(world.id)
    engine = world.engines.of(rt)
    assert world.engines.of(rt) is engine
    world.apply(resources(world.smtp.port).replace("Three tips", "Four tips"))
    fresh = world.rapport.runtime(world.id, fresh=True)
    assert world.engines.of(fresh) is not engine
    assert journeys_service.channel_purposes(fresh) == {"email": "marketing_email"}


def test_the_api_shows_each_message_with_the_gates_reason(world: SmtpWorld) -> None:
    world.person("u6", email="fy@example.com")
    world.person("u7", email="gu@example.com")
    for user in ("u6", "u7"):
        world.event(user, "Signed Up", plan="basic")
    world.work()
    world.consent("u7", ["marketing_email"], "withdrawn")
    world.clock.advance(DAY)
    world.work()
    [listed] = [j for j in world.call("GET", "/api/v1/journeys").json()["journeys"]
                if j["name"] == "onboarding"]
    assert listed["enrollments"] == {"active": 0, "completed": 2, "exited": 0}
    assert listed["messages"] == {"sent": 3, "scheduled": 0, "held": 0, "refused": 1, "failed": 0}
    assert listed["entry"] == {"event": "Signed Up"} and listed["purpose"] == "marketing_email"
    detail = world.call("GET", "/api/v1/journeys/onboarding").json()
    stats = {s["id"]: s for s in detail["step_stats"]}
    assert stats["0"]["messages"]["sent"] == 2 and stats["1"]["kind"] == "delay"
    assert stats["2"]["messages"]["refused"] == 1 and stats["2"]["reasons"] == {"consent_missing": 1}
    assert [v["version"] for v in detail["versions"]] == [1]
    pid = world.profile_id("u7")
    body = world.call("GET", f"/api/v1/profiles/{pid}/messages").json()
    assert [(m["step"], m["status"], m["reason"]) for m in body["messages"]] == [
        ("0", "sent", None), ("2", "refused", "consent_missing")]
    assert "marketing_email" in body["messages"][1]["detail"]
    assert [e["status"] for e in body["enrollments"]] == ["completed"]
    first = world.call("GET", "/api/v1/journeys/onboarding/enrollments",
                  params={"limit": 1}).json()
    second = world.call("GET", "/api/v1/journeys/onboarding/enrollments",
                   params={"limit": 1, "cursor": first["next"]}).json()
    assert len(first["enrollments"]) == len(second["enrollments"]) == 1 and second["next"] is None
    assert first["enrollments"][0]["id"] != second["enrollments"][0]["id"]


def test_journey_routes_check_roles_and_names(world: SmtpWorld) -> None:
    viewer = world.rapport.create_token(world.id, "viewer", "v", "test")
    response = world.call("GET", "/api/v1/journeys", token=viewer)
    assert response.status_code == 403 and response.json()["code"] == "forbidden"
    missing = world.call("GET", "/api/v1/journeys/onbording")
    assert missing.status_code == 404 and "onboarding" in missing.json()["message"]
    bad = world.call("GET", "/api/v1/journeys/onboarding/enrollments",
                params={"status": "paused"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_simulation_walks_profiles_without_storing_or_sending(world: SmtpWorld) -> None:
    from rapport.journeys.reports import Journeys

    ids = [world.person("s1", email="s1@example.com"), world.person("s2", ANALYTICS_ONLY, email="s2@example.com")]
    journeys = Journeys(world.rapport, world.id)
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


def test_old_events_step_enrollments_but_enroll_nobody(world: SmtpWorld) -> None:
    from rapport.clock import to_iso

    world.person("h1", email="h1@example.com")
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


def test_people_in_the_global_holdout_get_no_journey_messages(world: SmtpWorld) -> None:
    from rapport.experiments.assign import GlobalHoldout

    response = world.call("PATCH", "/api/v1/settings", json={"global_holdout": {"salt": "gh-1", "percent": 50}})
    assert response.status_code == 200, response.text
    assert response.json()["global_holdout"] == {"salt": "gh-1", "percent": 50}
    holdout = GlobalHoldout("gh-1", 50)
    users = [f"gh{n}" for n in range(12)]
    for user in users:
        world.person(user, email=f"{user}@example.com")
        world.event(user, "Signed Up", plan="basic")
    world.work()
    held = {u for u in users if holdout.holds(world.profile_id(u))}
    assert 0 < len(held) < len(users), "a 50% holdout over 12 people holds some and not others"
    assert sorted(m["To"] for m in world.mail()) == sorted(f"{u}@example.com" for u in users if u not in held)
    for user in users:
        [(status, reason)] = [(row[11], row[12]) for row in world.sends(world.profile_id(user))]
        assert (status, reason) == (("refused", "global_holdout") if user in held else ("sent", None))
    bad = world.call("PATCH", "/api/v1/settings", json={"global_holdout": {"salt": "gh-1", "percent": 80}})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_settings"
    cleared = world.call("PATCH", "/api/v1/settings", json={"global_holdout": None})
    assert cleared.status_code == 200 and cleared.json()["global_holdout"] is None
