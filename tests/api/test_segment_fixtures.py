"""Segment fixtures through the admin API: profiles a segment must or must not select, checked on
apply and on dry runs, with the reason of each failure (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from api.support import NOW, ApiClient, admin, apply_yaml, assert_error, profile_of, track
from rapport.api.app import run_backfills, run_segments
from rapport.clock import to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.errors import ValidationError
from rapport.resources import service as resources
from rapport.types import DAY

GRANT = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True}}}
TRAITS = """
kind: ComputedTrait
name: revenue_total
event: Order Completed
aggregate: sum
property: revenue
"""


def vip(fixtures: str) -> str:
    """The DESIGN 4.4 ``vip`` segment with ``fixtures`` (a YAML flow mapping)."""
    return ("kind: Segment\nname: vip\npurpose: marketing_email\n"
            "rule: computed.revenue_total > 200 and count(\"Order Completed\", within=30d) >= 1\n"
            f"fixtures: {fixtures}\n")


def identify(client: ApiClient, ws: NewWorkspace, user: str, **traits: Any) -> None:
    response = track(client, ws, "/v1/identify", {"userId": user, "traits": traits, "context": GRANT})
    assert response.status_code == 200, response.text


def order(client: ApiClient, ws: NewWorkspace, user: str, revenue: float, at: int) -> None:
    response = track(client, ws, "/v1/track", {"userId": user, "event": "Order Completed", "context": GRANT,
                                               "properties": {"revenue": revenue}, "timestamp": to_iso(at)})
    assert response.status_code == 200, response.text


def shop(client: ApiClient, ws: NewWorkspace) -> None:
    """``big`` spent 250 recently, ``small`` 120, ``old`` 300 two months ago."""
    identify(client, ws, "big", email="Big@Example.com")
    order(client, ws, "big", 250, NOW - 2 * DAY)
    identify(client, ws, "small", email="small@example.com")
    order(client, ws, "small", 120, NOW - 3 * DAY)
    identify(client, ws, "old")
    order(client, ws, "old", 300, NOW - 60 * DAY)


def settle(rapport: Rapport, ws: NewWorkspace) -> None:
    rapport.runtime(ws.workspace_id, fresh=True)
    run_backfills(rapport)
    run_segments(rapport)


def stored_segments(client: ApiClient, ws: NewWorkspace) -> list[str]:
    resources_now = admin(client, ws, "GET", "/api/v1/resources", params={"kind": "Segment"}).json()["resources"]
    return [r["name"] for r in resources_now]


def test_passing_fixtures_apply_with_a_new_trait_and_on_live_series(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    shop(client, workspace)
    # The trait is new: its series is folded from each fixture's events, not read from storage.
    fixtures = "{match: [user_id:big, email:big@example.com], no_match: [user_id:small, user_id:old]}"
    response = apply_yaml(client, workspace, TRAITS + "---\n" + vip(fixtures))
    assert response.status_code == 200, response.text
    settle(rapport, workspace)
    # Once backfilled, the stored series give the same verdicts; a profile id works as well.
    big = profile_of(client, workspace, user_id="big")["id"]
    again = apply_yaml(client, workspace, vip(f"{{match: [{big}], no_match: [phone:+4930123456789]}}"))
    assert_error(again, 400, "invalid_resource")  # the phone number names nobody
    again = apply_yaml(client, workspace, vip(f"{{match: [{big}], no_match: [user_id:small]}}"))
    assert again.status_code == 200, again.text
    catalog = admin(client, workspace, "GET", "/api/v1/segments/vip").json()
    assert catalog["fixtures"] == {"match": [big], "no_match": ["user_id:small"]}


def test_failing_fixtures_say_why_and_nothing_is_stored(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    shop(client, workspace)
    assert apply_yaml(client, workspace, TRAITS).status_code == 200
    settle(rapport, workspace)
    text = vip("{match: [user_id:big, user_id:small, user_id:old], no_match: [email:BIG@example.com]}")
    body = assert_error(apply_yaml(client, workspace, TRAITS + "---\n" + text), 400, "invalid_resource")
    assert body["message"] == "1 invalid resource document(s)"
    found = {d["field"]: d for d in body["details"]}
    assert set(found) == {"fixtures.match[1]", "fixtures.match[2]", "fixtures.no_match[0]"}
    assert all(d["document"] == 2 and d["kind"] == "Segment" and d["name"] == "vip" for d in body["details"])
    assert found["fixtures.match[1]"]["message"] == (
        "fixture user_id:small should match segment 'vip' but does not: computed.revenue_total = 120, needs > 200")
    assert found["fixtures.match[2]"]["message"] == (
        "fixture user_id:old should match segment 'vip' but does not: "
        'count("Order Completed", within=30d) = 0, needs >= 1')
    assert found["fixtures.no_match[0]"]["message"] == (
        "fixture email:BIG@example.com should not match segment 'vip' but does: "
        'computed.revenue_total = 250, needs > 200; count("Order Completed", within=30d) = 1, needs >= 1')
    assert stored_segments(client, workspace) == []


def test_an_unknown_fixture_is_an_error(client: ApiClient, workspace: NewWorkspace) -> None:
    shop(client, workspace)
    text = TRAITS + "---\n" + vip("{match: [user_id:big, user_id:u9, prf_0000000000000000000000]}")
    body = assert_error(apply_yaml(client, workspace, text), 400, "invalid_resource")
    assert [(d["field"], d["message"]) for d in body["details"]] == [
        ("fixtures.match[1]", "fixture user_id:u9 of segment 'vip': no profile has user_id 'u9'"),
        ("fixtures.match[2]", "fixture prf_0000000000000000000000 of segment 'vip': "
                              "no profile 'prf_0000000000000000000000'"),
    ]


def test_a_dry_run_reports_failing_fixtures_too(client: ApiClient, workspace: NewWorkspace) -> None:
    shop(client, workspace)
    text = TRAITS + "---\n" + vip("{no_match: [user_id:big]}")
    response = admin(client, workspace, "POST", "/api/v1/apply", params={"dry_run": "true"}, content=text.encode(),
                     headers={"Content-Type": "application/yaml"})
    body = assert_error(response, 400, "invalid_resource")
    assert body["details"][0]["field"] == "fixtures.no_match[0]"
    assert body["details"][0]["message"].startswith("fixture user_id:big should not match segment 'vip' but does: ")
    fine = admin(client, workspace, "POST", "/api/v1/apply", params={"dry_run": "true"},
                 content=(TRAITS + "---\n" + vip("{match: [user_id:big]}")).encode(),
                 headers={"Content-Type": "application/yaml"})
    assert fine.status_code == 200, fine.text
    assert [c["action"] for c in fine.json()["changes"]] == ["create", "create"]


def test_reasons_follow_or_and_not(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    identify(client, workspace, "pro", plan="pro", email="pro@example.com")
    identify(client, workspace, "free", plan="free")
    text = ("kind: Segment\nname: reachable_pro\n"
            'rule: (traits.plan == "pro" or traits.plan == "team") and not exists(traits.email)\n'
            "fixtures: {match: [user_id:pro, user_id:free]}\n")
    body = assert_error(apply_yaml(client, workspace, text), 400, "invalid_resource")
    assert [d["message"] for d in body["details"]] == [
        "fixture user_id:pro should match segment 'reachable_pro' but does not: "
        "traits.email = (encrypted), needs it missing",
        "fixture user_id:free should match segment 'reachable_pro' but does not: "
        'traits.plan = "free", needs == "pro"; traits.plan = "free", needs == "team"',
    ]


def test_fixture_in_segment_reads_stored_membership(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    identify(client, workspace, "a", plan="pro")
    assert apply_yaml(client, workspace, 'kind: Segment\nname: pro\nrule: traits.plan == "pro"\n').status_code == 200
    settle(rapport, workspace)
    text = 'kind: Segment\nname: not_pro\nrule: not in_segment("pro")\nfixtures: {no_match: [user_id:a]}\n'
    assert apply_yaml(client, workspace, text).status_code == 200
    wrong = 'kind: Segment\nname: not_pro\nrule: not in_segment("pro")\nfixtures: {match: [user_id:a]}\n'
    body = assert_error(apply_yaml(client, workspace, wrong), 400, "invalid_resource")
    assert body["details"][0]["message"] == (
        "fixture user_id:a should match segment 'not_pro' but does not: member of 'pro'")


@pytest.mark.parametrize(("fixtures", "field", "fragment"), [
    ("{match: [nope]}", "fixtures.match[0]", "neither '<identifier type>:<value>' nor a profile id"),
    ("{match: [user_id:a, fax:123]}", "fixtures.match[1]", "unknown identifier type 'fax'"),
    ("{match: [user_ids:a]}", "fixtures.match[0]", "(did you mean 'user_id'?)"),
    ("{match: [email:not-an-address]}", "fixtures.match[0]", "'not-an-address' is not a valid email"),
    ("{match: [phone:030123456]}", "fixtures.match[0]", "E.164 with its country code"),
    ("{match: [5]}", "fixtures.match[0]", "invalid fixtures.match[0] 5"),
    ("{match: [{user_id: a}]}", "fixtures.match[0]", "write 'user_id:a' with no space after ':'"),
    ("{match: [user_id:a, user_id:a]}", "fixtures.match[1]", "duplicate 'user_id:a'"),
    ("{match: [user_id:a], no_match: [user_id:b, user_id:a]}", "fixtures.no_match[1]",
     "listed in both fixtures.match[0] and fixtures.no_match[1]"),
    ("{matches: [user_id:a]}", "fixtures.matches", "(did you mean 'match'?)"),
    ("{match: user_id:a}", "fixtures.match", "a list of a profile"),
    ("[user_id:a]", "fixtures", "a mapping with fields 'match', 'no_match'"),
], ids=["no-type", "unknown-type", "near-type", "bad-email", "bad-phone", "number", "mapping", "duplicate",
        "both-lists", "unknown-field", "not-a-list", "not-a-mapping"])
def test_fixture_shapes_are_checked_precisely(
    client: ApiClient, workspace: NewWorkspace, fixtures: str, field: str, fragment: str
) -> None:
    text = f'kind: Segment\nname: s\nrule: traits.plan == "pro"\nfixtures: {fixtures}\n'
    body = assert_error(apply_yaml(client, workspace, text), 400, "invalid_resource")
    [detail] = [d for d in body["details"] if d["field"] == field]
    assert fragment in detail["message"], detail
    assert detail["line"] == 4


def test_a_ruleless_default_segment_cannot_have_fixtures(client: ApiClient, workspace: NewWorkspace) -> None:
    text = "kind: Segment\nname: rest\ngroup: lifecycle\ndefault: true\nfixtures: {match: [user_id:a]}\n"
    body = assert_error(apply_yaml(client, workspace, text), 400, "invalid_resource")
    assert body["details"][0]["field"] == "fixtures"
    assert "cannot have fixtures" in body["details"][0]["message"]


def test_callers_without_the_keyring_cannot_skip_fixtures(rapport: Rapport, workspace: NewWorkspace) -> None:
    text = 'kind: Segment\nname: s\nrule: traits.plan == "pro"\nfixtures: {match: [user_id:a]}\n'
    with pytest.raises(ValidationError) as caught:
        rapport.db.write(lambda c: resources.apply(c, workspace.workspace_id, text, "test", NOW))
    assert caught.value.details[0]["field"] == "fixtures"
    assert "passed no keyring" in caught.value.details[0]["message"]
    changes = rapport.db.write(lambda c: resources.apply(c, workspace.workspace_id, text.replace(
        "fixtures: {match: [user_id:a]}\n", ""), "test", NOW))
    assert [c.action for c in changes] == ["create"]
