"""The tools around journeys: test sends to seed addresses (a real aiosmtpd server captures them), message
preview as a profile with strict undefined, and per-journey and per-step statistics once delivery feedback
(opens, clicks, bounces, complaints, unsubscribes) has come back; on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
from channels.support import SmtpServer
from journeys.support import ANALYTICS_ONLY, ONBOARDING, SmtpWorld, documents, email_channel
from typer.testing import CliRunner

from api.support import ApiClient, admin, apply_yaml, assert_error, basic, proven
from rapport.channels.email import message_id
from rapport.cli import app as cli
from rapport.core import NewWorkspace, Rapport
from rapport.errors import ValidationError
from rapport.journeys.proofs import seed_addresses
from rapport.types import DAY
from rapport.workspaces import model

OTHERS = """
kind: Channel
name: sms
type: sms
url: http://127.0.0.1:9/2010-04-01
from: "+15550001111"
token_env: RAPPORT_TEST_UNSET_SMS_TOKEN
---
kind: Channel
name: inbox
type: inapp
---
kind: Template
name: inbox_note
channel: inbox
title: "Hi {{ traits.first_name | default: 'there' }}"
body: "Your plan: {{ event.plan | default: 'basic' }}"
---
kind: Template
name: welcome
channel: email
subject: "Welcome, {{ traits.first_name | default: 'friend' }}"
text: |
  Thanks for signing up on {{ event.plan | default: 'our plan' }}.
  Unsubscribe: {{ unsubscribe_url }}
---
kind: Template
name: nickname
channel: email
subject: "Hello"
text: |
  Dear customer,
  we call you {{ traits.nickname }} now.
---
kind: Template
name: sms_hello
channel: sms
text: "Hi {{ traits.first_name | default: 'there' }}"
---
kind: Journey
name: mixed
purpose: marketing_email
entry: {event: Joined}
steps:
  - send: {channel: email, template: welcome}
  - send: {channel: sms, template: sms_hello}
  - send: {channel: inbox, template: inbox_note}
"""


def resources(port: int) -> str:
    return documents(email_channel(port), ONBOARDING, OTHERS)


class World(SmtpWorld):
    def test_send(self, journey: str, body: Any, **kwargs: Any) -> Any:
        return self.call("POST", f"/api/v1/journeys/{journey}/test-sends", json=body, **kwargs)

    def seed_lists(self, lists: Any) -> Any:
        return self.call("PATCH", "/api/v1/settings", json={"seed_lists": lists})


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace, smtp: SmtpServer) -> World:
    world = World(rapport, client, workspace, smtp)
    world.apply(resources(smtp.port))
    return world


# --- test sends ----------------------------------------------------------------------------------------------

def test_a_seed_list_gets_every_send_step_as_the_profile_marked_as_a_test(world: World) -> None:
    saved = world.seed_lists({"qa": ["QA@Shop.example", "+15551230000"]})
    assert saved.status_code == 200, saved.text
    assert saved.json()["seed_lists"] == {"qa": {"email": ["qa@shop.example"], "phone": ["+15551230000"]}}
    pid = world.person("u1", ANALYTICS_ONLY, email="ada@example.com", first_name="Ada")  # no marketing consent
    response = world.test_send("onboarding", {"seed_list": "qa", "as_profile": pid, "event": {"plan": "pro"}})
    assert response.status_code == 200, response.text
    out = response.json()
    assert (out["sent"], out["failed"], out["as_profile"], out["seed_list"]) == (2, 0, pid, "qa")
    assert [(s["step"], s["to"], s["status"]) for s in out["sends"]] == [
        ("0", "qa@shop.example", "sent"), ("2", "qa@shop.example", "sent")]
    assert {"consent", "suppressions", "frequency_caps", "quiet_hours", "arbitration", "unsubscribe_link"} <= {
        n["check"] for n in out["not_applied"]}
    welcome, tips = sorted(world.mail(), key=lambda m: m["Subject"] != "[Test] Welcome, Ada")
    assert (welcome["To"], welcome["Subject"], tips["Subject"]) == ("qa@shop.example", "[Test] Welcome, Ada",
                                                                      "[Test] Three tips")
    body = welcome.get_payload(decode=True).decode()  # type: ignore[union-attr]
    assert "Thanks for signing up on pro." in body and "/unsubscribe/" not in body
    assert welcome["List-Unsubscribe"] is None, "a seed recipient must not unsubscribe the profile"
    keys = [s["idempotency_key"] for s in out["sends"]]
    assert welcome["Message-ID"] == message_id(keys[0], "shop.example")
    assert all(k.startswith(out["test_send_id"]) for k in keys) and len(set(keys)) == 2
    again = world.test_send("onboarding", {"seed_list": "qa", "as_profile": pid}).json()
    assert not {s["idempotency_key"] for s in again["sends"]} & set(keys), "every test send has its own keys"
    assert len(world.mail()) == 4
    # Not the journey's: nothing in its send log or statistics, and the audit log keeps both test sends.
    assert world.sends() == []
    detail = world.call("GET", "/api/v1/journeys/onboarding").json()
    assert detail["messages"]["sent"] == 0 and detail["feedback"]["sent"] == 0
    audit = [e for e in world.call("GET", "/api/v1/audit").json()["entries"] if e["action"] == "journey.test_send"]
    assert [(e["target"], e["detail"]["test_send_id"]) for e in audit] == [
        ("onboarding", out["test_send_id"]), ("onboarding", again["test_send_id"])]
    assert audit[0]["detail"]["sends"][0]["to"] == "qa@shop.example" and "consent" in audit[0]["detail"]["not_applied"]


def test_one_step_to_given_addresses_with_sample_data(world: World) -> None:
    out = world.test_send("onboarding", {"step": "0", "to": ["dev@shop.example", "ops@shop.example"]}).json()
    assert out["sample_data"] is True and out["as_profile"] is None
    assert sorted(s["to"] for s in out["sends"]) == ["dev@shop.example", "ops@shop.example"]
    subjects = {m["To"]: m["Subject"] for m in world.mail()}
    assert subjects == {"dev@shop.example": "[Test] Welcome, [first_name]",
                        "ops@shop.example": "[Test] Welcome, [first_name]"}


def test_steps_without_a_seed_address_are_skipped_and_provider_failures_reported(world: World) -> None:
    out = world.test_send("mixed", {"to": ["qa@shop.example"]}).json()
    assert [(s["step"], s["status"]) for s in out["sends"]] == [("0", "sent")]
    assert [(s["step"], s["reason"].split(",")[0]) for s in out["skipped"]] == [
        ("1", "no seed address of kind 'phone'"), ("2", "no seed address of kind 'profile'")]
    failing = world.test_send("mixed", {"step": "1", "to": ["+15551230000"]})
    assert failing.status_code == 200, failing.text
    [sms] = failing.json()["sends"]
    assert sms["status"] == "failed" and "RAPPORT_TEST_UNSET_SMS_TOKEN" in sms["error"]
    assert sms["error"].startswith("transient:")


def test_test_send_requests_are_checked(world: World) -> None:
    bad_step = world.test_send("onboarding", {"step": "1", "to": ["qa@shop.example"]})
    assert "'0', '2'" in assert_error(bad_step, 400, "invalid_request")["message"]
    assert_error(world.test_send("onboarding", {"to": ["a@shop.example"], "seed_list": "qa"}), 400,
                 "invalid_request")
    assert_error(world.test_send("onboarding", {}), 400, "invalid_request")
    assert_error(world.test_send("onboarding", {"to": ["a@shop.example"], "cc": []}), 400, "invalid_request")
    missing = assert_error(world.test_send("onboarding", {"seed_list": "qa"}), 404, "seed_list_not_found")
    assert "seed_lists" in missing["message"]
    bad = assert_error(world.test_send("onboarding", {"to": ["not-an-address"]}), 400, "invalid_seed_list")
    assert "to[0]" in bad["message"] and "E.164" in bad["message"]
    assert_error(world.test_send("onbording", {"to": ["a@shop.example"]}), 404, "journey_not_found")
    assert_error(world.test_send("onboarding", {"to": ["a@shop.example"], "as_profile": "prof_nope"}), 404,
                 "profile_not_found")
    analyst = world.rapport.create_token(world.id, "analyst", "a", "test")
    assert_error(world.test_send("onboarding", {"to": ["a@shop.example"]}, token=analyst), 403, "forbidden")
    too_many = [f"qa{n}@shop.example" for n in range(51)]
    assert "at most 50" in assert_error(world.seed_lists({"qa": too_many}), 400, "invalid_settings")["message"]
    assert_error(world.seed_lists({"qa": {"pager": ["x"]}}), 400, "invalid_settings")
    assert world.mail() == []


def test_rendering_as_a_profile_needs_the_right_to_read_profiles(world: World,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(model.ROLE_SCOPES, "marketer", model.ROLE_SCOPES["marketer"] - {"profiles:read"})
    marketer = world.rapport.create_token(world.id, "marketer", "m", "test")
    pid = world.person("m1", ANALYTICS_ONLY, email="m1@example.com")
    refused = world.test_send("onboarding", {"to": ["qa@shop.example"], "as_profile": pid}, token=marketer)
    assert "profiles:read" in assert_error(refused, 403, "forbidden")["message"]
    assert world.test_send("onboarding", {"to": ["qa@shop.example"]}, token=marketer).status_code == 200
    assert all(m["Subject"].startswith("[Test] ") for m in world.mail()) and len(world.mail()) == 2


def test_an_object_seed_list_reaches_the_in_app_inbox_of_a_team_profile(world: World) -> None:
    staff = world.person("staff", ANALYTICS_ONLY, email="staff@shop.example", first_name="Sam")
    assert world.seed_lists({"team": {"profile": [staff], "email": ["staff@shop.example"]}}).status_code == 200
    out = world.test_send("mixed", {"seed_list": "team", "as_profile": staff, "event": {"plan": "gold"}}).json()
    assert [(s["step"], s["channel"], s["status"]) for s in out["sends"]] == [
        ("0", "email", "sent"), ("2", "inbox", "sent")]
    inbox = world.client.get("/v1/inbox", params=proven(world.client, world.ws, {"user_id": "staff"}),
                             headers=basic(world.ws.write_key))
    assert inbox.status_code == 200, inbox.text
    [note] = inbox.json()["messages"]
    assert (note["title"], note["body"]) == ("[Test] Hi Sam", "Your plan: gold")


@pytest.mark.parametrize(("value", "expected"), [
    (["A@x.example", "+4930123456", "a@x.example"], {"email": ["a@x.example"], "phone": ["+4930123456"]}),
    ({"push_token": ["tok-1"], "profile": ["prof_1"]}, {"push_token": ["tok-1"], "profile": ["prof_1"]}),
], ids=["list", "object"])
def test_seed_addresses_are_normalized_by_kind(value: Any, expected: dict[str, list[str]]) -> None:
    assert seed_addresses(value, "to") == expected


@pytest.mark.parametrize(("value", "problem"), [
    (["tok-1"], "to[0] is 'tok-1', neither an email address nor a phone number"),
    ({"phone": ["0301234"]}, "to.phone[0] is '0301234', not a phone number in E.164 form"),
    ({"email": ["nobody"]}, "to.email[0] is 'nobody', not an email address"),
    ({"fax": ["1"]}, "unknown address kind 'fax'"),
    ([], "names no address"),
    ("qa@x.example", "must be a list"),
], ids=["token-in-list", "local-phone", "bad-email", "unknown-kind", "empty", "string"])
def test_bad_seed_addresses_are_named(value: Any, problem: str) -> None:
    with pytest.raises(ValidationError) as caught:
        seed_addresses(value, "to")
    assert problem in caught.value.message


# --- preview -------------------------------------------------------------------------------------------------

def test_preview_renders_as_a_profile_and_names_a_missing_value_with_its_line(world: World) -> None:
    pid = world.person("p1", email="bea@example.com", first_name="Bea")
    shown = world.call("POST", "/api/v1/templates/welcome/preview",
                       json={"profile_id": pid, "event": {"plan": "basic"}})
    assert shown.status_code == 200, shown.text
    out = shown.json()
    assert out["profile_id"] == pid and out["parts"]["subject"] == "Welcome, Bea"
    assert out["parts"]["text"].startswith("Thanks for signing up on basic.")
    assert "event.plan" in out["reads"] and "traits.first_name" in out["reads"]
    by_user = world.call("POST", "/api/v1/templates/welcome/preview", json={"user_id": "p1"}).json()
    assert by_user["profile_id"] == pid and "on our plan." in by_user["parts"]["text"], "default fills the gap"
    strict = world.call("POST", "/api/v1/templates/nickname/preview", json={"user_id": "p1"})
    body = assert_error(strict, 422, "template_undefined")
    assert "traits.nickname" in body["message"] and "line 2" in body["message"]
    assert body["details"][0]["variable"] == "traits.nickname" and body["details"][0]["line"] == 2
    assert body["details"][0]["field"] == "text"
    sample = world.call("POST", "/api/v1/templates/nickname/preview").json()
    assert sample["sample_data"] is True and "we call you [nickname] now." in sample["parts"]["text"]
    assert_error(world.call("POST", "/api/v1/templates/nope/preview", json={}), 404, "template_not_found")
    assert_error(world.call("POST", "/api/v1/templates/welcome/preview", json={"user_id": "ghost"}), 404,
                 "profile_not_found")
    assert_error(world.call("POST", "/api/v1/templates/welcome/preview", json={"user": "p1"}), 400,
                 "invalid_request")
    assert_error(world.call("POST", "/api/v1/templates/welcome/preview", json={"user_id": "p1", "event": []}),
                 400, "invalid_request")
    viewer = world.rapport.create_token(world.id, "viewer", "v", "test")
    assert_error(world.call("POST", "/api/v1/templates/welcome/preview", json={}, token=viewer), 403, "forbidden")


def test_the_preview_and_test_send_commands(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid = world.person("c1", email="cy@example.com", first_name="Cy")
    monkeypatch.setenv("RAPPORT_DATABASE_URL", world.rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    assert world.rapport.settings.master_key is not None
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(world.rapport.settings.master_key))
    runner = CliRunner()
    ws = world.ws.workspace_id
    shown = runner.invoke(cli, ["templates", "preview", "welcome", "-w", ws, "--profile", pid,
                                "--event", '{"plan": "gold"}'])
    assert shown.exit_code == 0, shown.output
    assert "Welcome, Cy" in shown.stdout and "Thanks for signing up on gold." in shown.stdout
    strict = runner.invoke(cli, ["templates", "preview", "nickname", "-w", ws, "--user-id", "c1"])
    assert strict.exit_code == 1 and "traits.nickname" in strict.output and "line 2" in strict.output
    sent = runner.invoke(cli, ["journeys", "test-send", "onboarding", "-w", ws, "--step", "2",
                               "--to", "qa@shop.example"])
    assert sent.exit_code == 0, sent.output
    assert "1 sent, 0 failed" in sent.stdout and "not applied because this is a test: consent" in sent.stdout
    assert [m["Subject"] for m in world.mail()] == ["[Test] Three tips"]


# --- statistics with feedback --------------------------------------------------------------------------------

def sendgrid(world: World, *events: dict[str, Any]) -> None:
    stamped = [{"timestamp": world.clock.now_ms() // 1000, "sg_event_id": f"e{n}-{e['event']}", **e}
               for n, e in enumerate(events)]
    response = world.client.post("/v1/feedback/sendgrid", json=stamped, headers=basic(world.ws.admin_token))
    assert response.status_code == 200, response.text


def test_statistics_count_delivery_feedback_per_step_and_journey(world: World, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    people = {name: world.person(name, email=f"{name}@example.com") for name in ("ann", "ben", "cat")}
    for name in people:
        world.event(name, "Signed Up")
    world.work()
    world.clock.advance(DAY)
    world.work()
    sent = {(str(r[10]), str(r[5])): str(r[18]) for r in world.sends() if r[11] == "sent"}
    assert len(sent) == 6

    def about(name: str, step: str, event: str, **extra: Any) -> dict[str, Any]:
        return {"email": f"{name}@example.com", "event": event, "smtp-id": sent[(people[name], step)], **extra}

    sendgrid(world,
             about("ann", "0", "delivered"), about("ann", "0", "open"), about("ann", "0", "open"),
             about("ann", "0", "click", url="https://shop.example/new"),
             about("ben", "0", "delivered"), about("ben", "0", "bounce", type="bounce", status="5.1.1"),
             about("cat", "0", "delivered"), about("cat", "0", "spamreport"),
             about("ann", "2", "delivered"), about("ann", "2", "open"),
             about("ben", "2", "unsubscribe"))
    # Cat unsubscribes with the link of her last message (the tips), which counts against that step.
    [tips_to_cat] = [m for m in world.mail() if m["To"] == "cat@example.com" and m["Subject"] == "Three tips"]
    link = urlsplit(tips_to_cat["List-Unsubscribe"].strip("<>"))
    world.clock.advance(DAY)
    done = world.client.post(f"{link.path}?{link.query}", data={"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200, done.text

    detail = world.call("GET", "/api/v1/journeys/onboarding").json()
    stats = {s["id"]: s for s in detail["step_stats"]}
    counts = ("sent", "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
    assert {k: stats["0"]["feedback"][k] for k in counts} == {
        "sent": 3, "delivered": 3, "opened": 1, "clicked": 1, "bounced": 1, "complained": 1, "unsubscribed": 0}
    assert {k: stats["2"]["feedback"][k] for k in counts} == {
        "sent": 3, "delivered": 1, "opened": 1, "clicked": 0, "bounced": 0, "complained": 0, "unsubscribed": 2}
    assert "feedback" not in stats["1"], "a delay sends nothing"
    first = stats["0"]["feedback"]
    assert (first["open_rate"], first["click_rate"], first["complaint_rate"], first["bounce_rate"]) == (
        0.5, 0.5, 0.5, 0.3333)
    assert stats["2"]["feedback"]["unsubscribe_rate"] == 0.6667
    total = detail["feedback"]
    assert {k: total[k] for k in counts} == {
        "sent": 6, "delivered": 4, "opened": 2, "clicked": 1, "bounced": 1, "complained": 1, "unsubscribed": 2}
    assert total["open_rate"] == 0.4 and total["click_rate"] == 0.2

    # Another workspace's feedback never counts here, and the command shows the same numbers.
    monkeypatch.setenv("RAPPORT_DATABASE_URL", world.rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(world.rapport.settings.master_key))
    shown = CliRunner().invoke(cli, ["journeys", "show", "onboarding", "-w", world.ws.workspace_id])
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.stdout)["feedback"] == total


def test_statistics_stay_in_their_workspace(world: World, rapport: Rapport, client: ApiClient,
                                            smtp: SmtpServer) -> None:
    pid = world.person("solo", email="solo@example.com")
    world.event("solo", "Signed Up")
    world.work()
    [row] = world.sends()
    sendgrid(world, {"email": "solo@example.com", "event": "delivered", "smtp-id": str(row[18])})
    other = rapport.create_workspace("other-stats")
    assert apply_yaml(client, other, resources(smtp.port)).status_code == 200
    theirs = admin(client, other, "GET", "/api/v1/journeys/onboarding").json()
    assert theirs["feedback"]["sent"] == theirs["feedback"]["delivered"] == 0
    mine = world.call("GET", "/api/v1/journeys/onboarding").json()["feedback"]
    assert (mine["sent"], mine["delivered"]) == (1, 1) and pid
