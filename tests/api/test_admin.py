"""The admin REST API: roles, tenant isolation, lookup, timeline, traits, consent, resources, merges."""

from __future__ import annotations

from typing import Any

import pytest

from api.support import (
    NOW,
    ApiClient,
    admin,
    apply_yaml,
    assert_error,
    lookup,
    profile_of,
    timeline,
    track,
)
from rapport.api.app import run_backfills
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.types import DAY, HOUR, MINUTE

ANALYTICS_OK = {"consent": {"categoryPreferences": {"Analytics": True}}}
TRAIT = """
kind: ComputedTrait
name: views
event: Viewed
aggregate: count
"""


def identify(client: ApiClient, ws: NewWorkspace, **body: Any) -> None:
    response = track(client, ws, "/v1/identify", body)
    assert response.status_code == 200, response.text


def grant(client: ApiClient, ws: NewWorkspace, purpose: str, state: str = "granted", **more: Any) -> dict[str, Any]:
    body = {"identifiers": {"user_id": "u1"}, "purpose": purpose, "state": state, **more}
    response = admin(client, ws, "POST", "/api/v1/consent", json=body)
    assert response.status_code == 201, response.text
    out: dict[str, Any] = response.json()
    return out


# --- roles ----------------------------------------------------------------------------------------

ROUTES: list[tuple[str, str, str, dict[str, Any], int]] = [
    # (scope, method, path, request arguments, status when allowed); {pid} is a real profile
    ("profiles:read", "GET", "/api/v1/profiles/lookup", {"params": {"user_id": "u1"}}, 200),
    ("profiles:read", "GET", "/api/v1/profiles/{pid}", {}, 200),
    ("events:read", "GET", "/api/v1/profiles/{pid}/events", {}, 200),
    ("profiles:read", "GET", "/api/v1/profiles/{pid}/traits", {}, 200),
    ("consent:read", "GET", "/api/v1/profiles/{pid}/consent", {}, 200),
    ("profiles:read", "GET", "/api/v1/profiles/{pid}/merges", {}, 200),
    ("profiles:write", "POST", "/api/v1/profiles/{pid}/unmerge", {"json": {"merge_id": "mrg_unknown"}}, 404),
    ("profiles:read", "GET", "/api/v1/identity/conflicts", {}, 200),
    ("consent:write", "POST", "/api/v1/consent",
     {"json": {"identifiers": {"user_id": "u1"}, "purpose": "analytics", "state": "granted"}}, 201),
    ("resources:write", "POST", "/api/v1/apply",
     {"content": TRAIT.encode(), "headers": {"Content-Type": "application/yaml"}}, 200),
    ("resources:read", "GET", "/api/v1/resources", {}, 200),
    ("resources:read", "GET", "/api/v1/resources/ComputedTrait/views/history", {}, 200),
    ("resources:read", "GET", "/api/v1/computed-traits", {}, 200),
    ("resources:read", "GET", "/api/v1/settings", {}, 200),
    ("settings:write", "PATCH", "/api/v1/settings", {"json": {"timezone": "Europe/Paris"}}, 200),
    ("settings:write", "GET", "/api/v1/audit", {}, 200),
    ("quarantine:read", "GET", "/api/v1/quarantine", {}, 200),
    ("quarantine:write", "POST", "/api/v1/quarantine/replay", {"json": {"all": True}}, 200),
    ("segments:read", "GET", "/api/v1/segments", {}, 200),
    ("segments:read", "POST", "/api/v1/segments/preview", {"json": {"rule": "exists(traits.plan)"}}, 200),
    ("segments:read", "GET", "/api/v1/segments/overlap", {"params": {"names": "nope"}}, 404),
    ("segments:read", "GET", "/api/v1/segments/nope", {}, 404),
    ("segments:read", "GET", "/api/v1/segments/nope/members", {}, 404),
    ("segments:read", "GET", "/api/v1/segments/nope/explain", {"params": {"profile_id": "{pid}"}}, 404),
    ("segments:read", "GET", "/api/v1/segments/nope/history", {}, 404),
    ("segments:write", "POST", "/api/v1/segments/refresh", {"json": {}}, 200),
]

ALLOWED = {
    "admin": {"profiles:read", "profiles:write", "events:read", "consent:read", "consent:write", "resources:read",
              "resources:write", "settings:write", "quarantine:read", "quarantine:write", "segments:read",
              "segments:write"},
    "marketer": {"profiles:read", "events:read", "consent:read", "consent:write", "resources:read",
                 "resources:write", "segments:read", "segments:write"},
    "analyst": {"profiles:read", "events:read", "consent:read", "resources:read", "quarantine:read",
                "segments:read"},
    "viewer": {"resources:read"},
}


@pytest.mark.parametrize("role", ["admin", "marketer", "analyst", "viewer"])
def test_roles_reach_exactly_their_routes(
    role: str, client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    identify(client, workspace, userId="u1", traits={"plan": "pro"})
    assert apply_yaml(client, workspace, TRAIT).status_code == 200
    pid = profile_of(client, workspace, user_id="u1")["id"]
    token = rapport.create_token(workspace.workspace_id, role, f"{role} token", "test")  # type: ignore[arg-type]
    wrong = []
    for scope, method, path, kwargs, allowed_status in ROUTES:
        response = admin(client, workspace, method, path.format(pid=pid), token=token, **kwargs)
        expected = allowed_status if scope in ALLOWED[role] else 403
        if response.status_code != expected:
            wrong.append(f"{method} {path}: {response.status_code} (expected {expected}) {response.text[:200]}")
        elif expected == 403:
            body = assert_error(response, 403, "forbidden")
            assert body["details"] == [{"required": scope, "role": role}]
    assert wrong == []


def test_every_route_needs_a_token(client: ApiClient, workspace: NewWorkspace) -> None:
    for _scope, method, path, kwargs, _status in ROUTES:
        response = client.request(method, path.format(pid="prf_x"), **kwargs)
        assert_error(response, 401, "missing_credentials")


def test_a_token_never_reaches_another_workspace(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    other = rapport.create_workspace("other-" + workspace.workspace_id)
    identify(client, other, userId="u1", anonymousId="a1", traits={"email": "b@other.example", "plan": "b"})
    identify(client, other, userId="u1", traits={"plan": "b2"})
    apply_yaml(client, other, TRAIT)
    theirs = profile_of(client, other, user_id="u1")["id"]
    for path in ("", "/events", "/traits", "/consent", "/merges"):
        assert_error(admin(client, workspace, "GET", f"/api/v1/profiles/{theirs}{path}"), 404, "profile_not_found")
    assert_error(lookup(client, workspace, email="b@other.example"), 404, "profile_not_found")
    assert_error(lookup(client, workspace, user_id="u1"), 404, "profile_not_found")
    assert_error(admin(client, workspace, "POST", "/api/v1/consent",
                       json={"profile_id": theirs, "purpose": "analytics", "state": "granted"}), 404,
                 "profile_not_found")
    assert_error(admin(client, workspace, "GET", "/api/v1/resources/ComputedTrait/views/history"), 404,
                 "resource_not_found")
    assert admin(client, workspace, "GET", "/api/v1/resources").json() == {"resources": []}
    assert admin(client, workspace, "GET", "/api/v1/identity/conflicts").json() == {"conflicts": []}
    audit = admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]
    assert all(entry["action"] != "resource.create" for entry in audit)

    # The same user id sent with this workspace's key makes a profile here and leaves theirs alone.
    identify(client, workspace, userId="u1", traits={"plan": "a"})
    mine = profile_of(client, workspace, user_id="u1")
    assert mine["id"] != theirs and mine["traits"] == {"plan": "a"}
    assert profile_of(client, other, user_id="u1")["traits"]["plan"] == "b2"
    assert rapport.event_count(other.workspace_id) == 2


def test_lookup_by_every_identifier(client: ApiClient, workspace: NewWorkspace) -> None:
    identify(client, workspace, userId="u-42", anonymousId="anon-42",
             traits={"email": "Ada.Lovelace@Example.COM", "phone": "+44 20 7183 8750"},
             context={"device": {"id": "dev-42"}})
    pid = profile_of(client, workspace, user_id="u-42")["id"]
    for query in ({"email": "ada.lovelace@example.com"}, {"email": "  ADA.LOVELACE@EXAMPLE.COM "},
                  {"phone": "+442071838750"}, {"phone": "+44 20 7183 8750"}, {"user_id": " u-42 "},
                  {"anonymous_id": "anon-42"}, {"device_id": "dev-42"}):
        assert profile_of(client, workspace, **query)["id"] == pid, query
    profile = profile_of(client, workspace, email="ada.lovelace@example.com")
    assert profile["identifiers"] == {"anonymous_id": ["anon-42"], "device_id": ["dev-42"],
                                      "email": ["ada.lovelace@example.com"], "phone": ["+442071838750"],
                                      "user_id": ["u-42"]}
    assert set(profile) >= {"id", "identifiers", "traits", "computed", "consent", "segments"}
    assert_error(lookup(client, workspace, email="nobody@example.com"), 404, "profile_not_found")
    assert_error(lookup(client, workspace, phone="+442071838751"), 404, "profile_not_found")
    assert_error(lookup(client, workspace, user_id="u-43"), 404, "profile_not_found")
    assert_error(lookup(client, workspace, email="not-an-email"), 400, "invalid_identifier")
    assert_error(admin(client, workspace, "GET", "/api/v1/profiles/lookup",
                       params={"user_id": "u-42", "email": "ada.lovelace@example.com"}), 400, "invalid_lookup")


def test_timeline_pages_with_a_cursor(client: ApiClient, workspace: NewWorkspace) -> None:
    stamps = [NOW - n * HOUR for n in (5, 1, 3, 3, 0, 6, 2)]  # two events share a timestamp
    batch = [{"type": "track", "userId": "u1", "event": f"E{i}", "timestamp": to_iso(ts), "messageId": f"m{i}"}
             for i, ts in enumerate(stamps)]
    track(client, workspace, "/v1/batch", {"batch": batch})
    pid = profile_of(client, workspace, user_id="u1")["id"]
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 3} | ({"cursor": cursor} if cursor else {})
        page = admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/events", params=params).json()
        pages.append(page["events"])
        cursor = page["next"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    seen = [e["message_id"] for p in pages for e in p]
    assert seen == ["m4", "m1", "m6", "m3", "m2", "m0", "m5"]
    assert timeline(client, workspace, pid) == [e for p in pages for e in p]
    assert_error(admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/events", params={"cursor": "%%%"}), 400,
                 "invalid_cursor")


def test_latest_event_time_wins_not_latest_arrival(client: ApiClient, workspace: NewWorkspace) -> None:
    newer, older = to_iso(NOW - HOUR), to_iso(NOW - DAY)
    identify(client, workspace, userId="u1", timestamp=newer, messageId="newer", traits={"plan": "gold"})
    identify(client, workspace, userId="u1", timestamp=older, messageId="older",
             traits={"plan": "silver", "city": "Lyon"})
    pid = profile_of(client, workspace, user_id="u1")["id"]
    assert profile_of(client, workspace, user_id="u1")["traits"] == {"plan": "gold", "city": "Lyon"}
    traits = admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/traits").json()
    assert traits["plan"] == {"value": "gold", "source": "identify", "updated_at": newer, "message_id": "newer"}
    assert traits["city"]["message_id"] == "older"


def test_latest_event_time_wins_inside_one_batch(client: ApiClient, workspace: NewWorkspace) -> None:
    batch = [{"type": "identify", "userId": "u1", "timestamp": to_iso(NOW - HOUR), "traits": {"plan": "gold"}},
             {"type": "identify", "userId": "u1", "timestamp": to_iso(NOW - DAY), "traits": {"plan": "silver"}}]
    track(client, workspace, "/v1/batch", {"batch": batch})
    assert profile_of(client, workspace, user_id="u1")["traits"] == {"plan": "gold"}


# --- consent --------------------------------------------------------------------------------------


def test_consent_grant_deny_withdraw_history_and_state(
    client: ApiClient, workspace: NewWorkspace, clock: FrozenClock
) -> None:
    identify(client, workspace, userId="u1")
    pid = profile_of(client, workspace, user_id="u1")["id"]
    granted = grant(client, workspace, "marketing_email", source="preference_center", policy_version="2026-01")
    assert granted | {"id": None} == {"id": None, "profile_id": pid, "purpose": "marketing_email",
                                      "state": "granted", "legal_basis": "consent"}
    state = profile_of(client, workspace, user_id="u1")["consent"]["marketing_email"]
    assert state == {"allowed": True, "reason": "granted", "entry_id": granted["id"]}
    clock.advance(MINUTE)
    denied = grant(client, workspace, "marketing_email", "denied")
    assert profile_of(client, workspace, user_id="u1")["consent"]["marketing_email"] == {
        "allowed": False, "reason": "denied", "entry_id": denied["id"]}
    clock.advance(MINUTE)
    withdrawn = grant(client, workspace, "marketing_email", "withdrawn")
    out = admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/consent").json()
    assert out["profile_id"] == pid
    assert [(e["id"], e["state"]) for e in out["history"]] == [
        (granted["id"], "granted"), (denied["id"], "denied"), (withdrawn["id"], "withdrawn")]
    first = out["history"][0]
    assert (first["source"], first["policy_version"], first["recorded_at"]) == ("preference_center", "2026-01",
                                                                                to_iso(NOW))
    assert out["current"]["marketing_email"] == {"allowed": False, "reason": "withdrawn",
                                                 "entry_id": withdrawn["id"]}
    assert out["current"]["necessary"]["allowed"] is True
    assert out["current"]["marketing_sms"] == {"allowed": False, "reason": "no_record", "entry_id": None}
    assert profile_of(client, workspace, user_id="u1")["consent"] == out["current"]
    audit = [e["action"] for e in admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]]
    assert audit[-3:] == ["consent.granted", "consent.denied", "consent.withdrawn"]


def test_consent_api_refuses_bad_entries(client: ApiClient, workspace: NewWorkspace) -> None:
    identify(client, workspace, userId="u1")
    for body, status, code in [
        ({"identifiers": {"user_id": "u1"}, "purpose": "marketing_mail", "state": "granted"}, 400, "unknown_purpose"),
        ({"identifiers": {"user_id": "nobody"}, "purpose": "analytics", "state": "granted"}, 404,
         "profile_not_found"),
        ({"identifiers": {"user_id": "u1"}, "purpose": "analytics", "state": "granted", "colour": "red"}, 400,
         "invalid_consent"),
        ({"purpose": "analytics", "state": "granted"}, 400, "invalid_consent"),
    ]:
        assert_error(admin(client, workspace, "POST", "/api/v1/consent", json=body), status, code)
    unknown_state = admin(client, workspace, "POST", "/api/v1/consent",
                          json={"identifiers": {"user_id": "u1"}, "purpose": "analytics", "state": "maybe"})
    assert unknown_state.status_code == 400 and "granted" in unknown_state.json()["message"]
    pid = profile_of(client, workspace, user_id="u1")["id"]
    assert admin(client, workspace, "GET", f"/api/v1/profiles/{pid}/consent").json()["history"] == []


def test_consent_expires(client: ApiClient, workspace: NewWorkspace, clock: FrozenClock) -> None:
    identify(client, workspace, userId="u1")
    entry = grant(client, workspace, "personalization", expires_at=to_iso(NOW + HOUR))
    assert profile_of(client, workspace, user_id="u1")["consent"]["personalization"]["allowed"] is True
    clock.advance(2 * HOUR)
    state = profile_of(client, workspace, user_id="u1")["consent"]["personalization"]
    assert state == {"allowed": False, "reason": "expired", "entry_id": entry["id"]}


def test_an_older_choice_arriving_late_does_not_override_a_newer_one(
    client: ApiClient, workspace: NewWorkspace
) -> None:
    identify(client, workspace, userId="u1", timestamp=to_iso(NOW - HOUR),
             context={"consent": {"categoryPreferences": {"Advertising": False}}})
    identify(client, workspace, userId="u1", timestamp=to_iso(NOW - DAY),
             context={"consent": {"categoryPreferences": {"Advertising": True}}})
    out = consent_of(client, workspace)
    assert sorted(e["state"] for e in out["history"]) == ["denied", "granted"]
    assert out["current"]["advertising"]["allowed"] is False


def consent_of(client: ApiClient, ws: NewWorkspace) -> dict[str, Any]:
    pid = profile_of(client, ws, user_id="u1")["id"]
    out: dict[str, Any] = admin(client, ws, "GET", f"/api/v1/profiles/{pid}/consent").json()
    return out


def test_segment_category_preferences_map_to_purposes(client: ApiClient, workspace: NewWorkspace) -> None:
    prefs = {"Analytics": True, "Advertising": False, "Email": True, "Strictly Necessary": True, "Weather": True}
    identify(client, workspace, userId="u1", context={"consent": {"categoryPreferences": prefs}})
    out = consent_of(client, workspace)
    assert sorted((e["purpose"], e["state"], e["source"]) for e in out["history"]) == [
        ("advertising", "denied", "sdk:segment"), ("analytics", "granted", "sdk:segment"),
        ("marketing_email", "granted", "sdk:segment")]
    allowed = {name: d["allowed"] for name, d in out["current"].items()}
    assert allowed | {"necessary": True} == {"advertising": False, "analytics": True, "marketing_email": True,
                                             "marketing_push": False, "marketing_sms": False, "necessary": True,
                                             "personalization": False}
    # The same choice sent again records nothing new; a change is recorded.
    identify(client, workspace, userId="u1", context={"consent": {"categoryPreferences": prefs}})
    identify(client, workspace, userId="u1", context={"consent": {"categoryPreferences": {"Email": False}}})
    history = consent_of(client, workspace)["history"]
    assert len(history) == 4 and (history[-1]["purpose"], history[-1]["state"]) == ("marketing_email", "denied")


def test_rudderstack_consent_management_maps_to_purposes(client: ApiClient, workspace: NewWorkspace) -> None:
    management = {"provider": "oneTrust", "allowedConsentIds": ["C0002", "C0003"], "deniedConsentIds": ["C0004"]}
    identify(client, workspace, userId="u1", context={"consentManagement": management})
    out = consent_of(client, workspace)
    assert sorted((e["purpose"], e["state"], e["source"]) for e in out["history"]) == [
        ("advertising", "denied", "sdk:rudderstack"), ("analytics", "granted", "sdk:rudderstack"),
        ("personalization", "granted", "sdk:rudderstack")]
    assert out["current"]["analytics"]["allowed"] is True
    assert out["current"]["advertising"]["allowed"] is False


def test_workspace_settings_map_custom_categories(client: ApiClient, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "PATCH", "/api/v1/settings",
                     json={"consent_mapping": {"segment": {"Newsletter": ["marketing_email"]}}})
    assert response.status_code == 200, response.text
    identify(client, workspace, userId="u1", context={"consent": {"categoryPreferences": {"Newsletter": True}}})
    out = consent_of(client, workspace)
    assert [(e["purpose"], e["state"]) for e in out["history"]] == [("marketing_email", "granted")]
    bad = admin(client, workspace, "PATCH", "/api/v1/settings",
                json={"consent_mapping": {"segment": {"Newsletter": ["newsletters"]}}})
    assert_error(bad, 400, "unknown_purpose")


def test_events_without_analytics_consent_are_minimized(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    order = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 50},
             "context": {"ip": "203.0.113.9", "page": {"path": "/checkout"}}}
    track(client, workspace, "/v1/track", {**order, "messageId": "before"})
    profile = profile_of(client, workspace, user_id="u1")
    [event] = timeline(client, workspace, profile["id"])
    assert event["restricted"] is True
    assert "properties" not in event["message"]
    assert event["message"].get("context", {}) == {}
    assert (event["name"], event["message"]["userId"]) == ("Order Completed", "u1")
    assert profile["computed"]["order_count"] == 0
    assert profile["computed"]["revenue_total"] in (0, None)

    grant(client, workspace, "analytics")
    track(client, workspace, "/v1/track", {**order, "messageId": "after", "properties": {"revenue": 20}})
    profile = profile_of(client, workspace, user_id="u1")
    latest = {e["message_id"]: e for e in timeline(client, workspace, profile["id"])}["after"]
    assert latest["restricted"] is False and latest["message"]["properties"] == {"revenue": 20}
    assert profile["computed"]["order_count"] == 1
    assert profile["computed"]["revenue_total"] == 20


def test_consent_in_the_event_itself_lets_it_through(client: ApiClient, workspace: NewWorkspace) -> None:
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 7},
                                           "context": ANALYTICS_OK})
    profile = profile_of(client, workspace, user_id="u1")
    [event] = timeline(client, workspace, profile["id"])
    assert event["restricted"] is False and event["message"]["properties"] == {"revenue": 7}
    assert profile["computed"]["revenue_total"] == 7


# --- resources ------------------------------------------------------------------------------------


def test_apply_reports_precise_validation_errors(client: ApiClient, workspace: NewWorkspace) -> None:
    text = """kind: ComputedTrait
name: fine
event: Viewed
aggregate: count
---
kind: ComputedTrait
name: typo
event: Viewed
aggregate: summ
---
kind: ComputedTrait
name: no_property
event: Order Completed
aggregate: sum
window: 30 days
"""
    body = assert_error(apply_yaml(client, workspace, text), 400, "invalid_resource")
    details = body["details"]
    assert body["message"] == "2 invalid resource document(s)"
    assert all(set(d) >= {"document", "line", "kind", "name", "field", "message", "expected"} for d in details)
    by_field = {(d["document"], d["field"]): d for d in details}
    assert set(by_field) == {(1, "aggregate"), (2, "property"), (2, "window")}
    typo = by_field[(1, "aggregate")]
    assert (typo["kind"], typo["name"], typo["line"]) == ("ComputedTrait", "typo", 9)
    assert "'summ'" in typo["message"] and "'sum'" in typo["expected"] and "'count'" in typo["expected"]
    assert by_field[(2, "window")]["line"] == 15
    assert admin(client, workspace, "GET", "/api/v1/resources").json() == {"resources": []}, "all or nothing"


def test_apply_needs_yaml(client: ApiClient, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "POST", "/api/v1/apply", content=TRAIT.encode(),
                     headers={"Content-Type": "application/json"})
    assert_error(response, 400, "unsupported_media_type")
    assert_error(apply_yaml(client, workspace, "kind: [unclosed"), 400, "invalid_yaml")


def test_apply_is_idempotent_and_versioned(client: ApiClient, workspace: NewWorkspace, clock: FrozenClock) -> None:
    def actions(text: str) -> list[tuple[str, str]]:
        response = apply_yaml(client, workspace, text)
        assert response.status_code == 200, response.text
        return [(c["action"], c["name"]) for c in response.json()["changes"]]

    assert actions(TRAIT) == [("create", "views")]
    clock.advance(MINUTE)
    assert actions(TRAIT) == [("unchanged", "views")]
    assert actions(TRAIT + "\n# a comment changes nothing\n") == [("unchanged", "views")]
    clock.advance(MINUTE)
    assert actions(TRAIT + "window: 30d\n") == [("update", "views")]
    dry = admin(client, workspace, "POST", "/api/v1/apply", params={"dry_run": "true"},
                content=(TRAIT + "window: 7d\n").encode(), headers={"Content-Type": "application/yaml"}).json()
    assert dry["dry_run"] is True and [c["action"] for c in dry["changes"]] == ["update"]
    history = admin(client, workspace, "GET", "/api/v1/resources/ComputedTrait/views/history").json()["versions"]
    assert [(v["version"], v["spec"].get("window"), v["applied_at"]) for v in history] == [
        (1, None, to_iso(NOW)), (2, "30d", to_iso(NOW + 2 * MINUTE))]
    [live] = admin(client, workspace, "GET", "/api/v1/resources").json()["resources"]
    assert (live["name"], live["version"], live["spec"]["window"]) == ("views", 2, "30d")
    audit = [(e["action"], e["target"]) for e in admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]]
    assert [a for a in audit if a[0].startswith("resource.")] == [("resource.create", "ComputedTrait/views"),
                                                                  ("resource.update", "ComputedTrait/views")]


def test_new_computed_trait_appears_after_backfill(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    for n in range(3):
        track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed", "context": ANALYTICS_OK,
                                               "properties": {"n": n}})
    track(client, workspace, "/v1/track", {"userId": "u2", "event": "Viewed"})  # no consent: not counted
    assert apply_yaml(client, workspace, TRAIT).status_code == 200
    states = {t["name"]: t for t in admin(client, workspace, "GET", "/api/v1/computed-traits").json()[
        "computed_traits"]}
    assert states["views"]["state"] == "backfilling" and states["views"]["builtin"] is False
    run_backfills(rapport)
    states = {t["name"]: t for t in admin(client, workspace, "GET", "/api/v1/computed-traits").json()[
        "computed_traits"]}
    assert (states["views"]["state"], states["views"]["progress"]) == ("live", 1.0)
    assert profile_of(client, workspace, user_id="u1")["computed"]["views"] == 3
    assert profile_of(client, workspace, user_id="u2")["computed"]["views"] == 0
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed", "context": ANALYTICS_OK})
    assert profile_of(client, workspace, user_id="u1")["computed"]["views"] == 4, "live after the backfill"


def test_computed_trait_on_an_empty_workspace_is_live_at_once(client: ApiClient, workspace: NewWorkspace) -> None:
    assert apply_yaml(client, workspace, TRAIT).status_code == 200
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed", "context": ANALYTICS_OK})
    assert profile_of(client, workspace, user_id="u1")["computed"]["views"] == 1


# --- identity -------------------------------------------------------------------------------------


def orders(client: ApiClient, ws: NewWorkspace, ids: dict[str, str], revenues: list[int]) -> None:
    for revenue in revenues:
        body = {**ids, "event": "Order Completed", "properties": {"revenue": revenue}, "context": ANALYTICS_OK}
        assert track(client, ws, "/v1/track", body).status_code == 200


def test_merge_then_unmerge_restores_both_profiles(client: ApiClient, workspace: NewWorkspace) -> None:
    identify(client, workspace, anonymousId="anon-1", traits={"color": "red"}, context=ANALYTICS_OK)
    orders(client, workspace, {"anonymousId": "anon-1"}, [10])
    identify(client, workspace, userId="u1", traits={"email": "u1@example.com", "plan": "pro"}, context=ANALYTICS_OK)
    orders(client, workspace, {"userId": "u1"}, [20, 30])
    anon_before = profile_of(client, workspace, anonymous_id="anon-1")
    user_before = profile_of(client, workspace, user_id="u1")
    anon_events = {e["message_id"] for e in timeline(client, workspace, anon_before["id"])}
    user_events = {e["message_id"] for e in timeline(client, workspace, user_before["id"])}
    assert anon_before["id"] != user_before["id"]

    track(client, workspace, "/v1/track", {"userId": "u1", "anonymousId": "anon-1", "event": "Signed In",
                                           "messageId": "joiner", "context": ANALYTICS_OK})
    merged = profile_of(client, workspace, user_id="u1")
    assert profile_of(client, workspace, anonymous_id="anon-1")["id"] == merged["id"]
    assert merged["identifiers"] == {"anonymous_id": ["anon-1"], "email": ["u1@example.com"], "user_id": ["u1"]}
    assert merged["traits"] == {"color": "red", "email": "u1@example.com", "plan": "pro"}
    assert (merged["computed"]["order_count"], merged["computed"]["revenue_total"]) == (3, 60)
    merged_events = {e["message_id"] for e in timeline(client, workspace, merged["id"])}
    assert merged_events == anon_events | user_events | {"joiner"}
    [merge] = admin(client, workspace, "GET", f"/api/v1/profiles/{merged['id']}/merges").json()["merges"]
    assert merge["message_id"] == "joiner" and merge["reason"] == "shared_identifier"
    assert merge["undone_at"] is None
    assert {merge["winner"], merge["loser"]} == {anon_before["id"], user_before["id"]}
    old_id = merge["loser"]
    assert admin(client, workspace, "GET", f"/api/v1/profiles/{old_id}").json()["id"] == merged["id"], \
        "a merged-away id leads to the surviving profile"

    response = admin(client, workspace, "POST", f"/api/v1/profiles/{merged['id']}/unmerge",
                     json={"merge_id": merge["id"]})
    assert response.status_code == 200, response.text
    assert sorted(response.json()["profiles"]) == sorted([anon_before["id"], user_before["id"]])
    anon_after = profile_of(client, workspace, anonymous_id="anon-1")
    user_after = profile_of(client, workspace, user_id="u1")
    assert anon_after["id"] == anon_before["id"] and user_after["id"] == user_before["id"]
    for before, after in ((anon_before, anon_after), (user_before, user_after)):
        assert after["identifiers"] == before["identifiers"]
        assert after["traits"] == before["traits"]
        assert after["computed"] == before["computed"]
        assert after["consent"] == before["consent"]
    # The event that joined them stays with the profile it was stored on, the merge's winner.
    assert {e["message_id"] for e in timeline(client, workspace, anon_after["id"])} == anon_events | (
        {"joiner"} if merge["winner"] == anon_after["id"] else set())
    assert {e["message_id"] for e in timeline(client, workspace, user_after["id"])} == user_events | (
        {"joiner"} if merge["winner"] == user_after["id"] else set())
    [logged] = admin(client, workspace, "GET", f"/api/v1/profiles/{user_after['id']}/merges").json()["merges"]
    assert logged["undone_at"] is not None

    # A later event carrying both sides is recorded as a conflict instead of merging them again.
    track(client, workspace, "/v1/track", {"userId": "u1", "anonymousId": "anon-1", "event": "Signed In Again",
                                           "messageId": "again", "context": ANALYTICS_OK})
    assert profile_of(client, workspace, anonymous_id="anon-1")["id"] == anon_before["id"]
    assert profile_of(client, workspace, user_id="u1")["id"] == user_before["id"]
    conflicts = admin(client, workspace, "GET", "/api/v1/identity/conflicts").json()["conflicts"]
    assert [(c["message_id"], c["reason"]) for c in conflicts] == [("again", "blocked")]
    assert {conflicts[0]["holder"], conflicts[0]["target"]} == {anon_before["id"], user_before["id"]}
    audit = [e["action"] for e in admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]]
    assert "identity.unmerge" in audit


def test_second_user_id_is_a_conflict_not_a_merge(client: ApiClient, workspace: NewWorkspace) -> None:
    identify(client, workspace, userId="u1", traits={"email": "shared@example.com"}, messageId="first")
    identify(client, workspace, userId="u2", traits={"email": "shared@example.com"}, messageId="clash")
    u1 = profile_of(client, workspace, user_id="u1")
    u2 = profile_of(client, workspace, user_id="u2")
    assert u2["id"] != u1["id"]
    [conflict] = admin(client, workspace, "GET", "/api/v1/identity/conflicts").json()["conflicts"]
    assert {k: conflict[k] for k in ("message_id", "identifier_type", "holder", "target", "reason")} == {
        "message_id": "clash", "identifier_type": "email", "holder": u1["id"], "target": u2["id"], "reason": "limit"}
    assert {e["message_id"] for e in timeline(client, workspace, u1["id"])} == {"first"}, \
        "an event of user u2 must not land on the profile of user u1"
    assert {e["message_id"] for e in timeline(client, workspace, u2["id"])} == {"clash"}
    # The shared email stays where it was; the new user id is kept, on its own profile.
    assert profile_of(client, workspace, email="shared@example.com")["id"] == u1["id"]
    assert u1["identifiers"] == {"email": ["shared@example.com"], "user_id": ["u1"]}
    assert u2["identifiers"] == {"user_id": ["u2"]}
    for profile in (u1, u2):
        assert admin(client, workspace, "GET", f"/api/v1/profiles/{profile['id']}/merges").json() == {"merges": []}


def test_alias_joins_anonymous_history_to_the_user(client: ApiClient, workspace: NewWorkspace) -> None:
    track(client, workspace, "/v1/track", {"anonymousId": "anon-7", "event": "Viewed", "messageId": "browse"})
    track(client, workspace, "/v1/alias", {"previousId": "anon-7", "userId": "u7", "messageId": "alias"})
    profile = profile_of(client, workspace, user_id="u7")
    assert profile_of(client, workspace, anonymous_id="anon-7")["id"] == profile["id"]
    assert {e["message_id"] for e in timeline(client, workspace, profile["id"])} == {"browse", "alias"}


def test_alias_merges_two_known_profiles(client: ApiClient, workspace: NewWorkspace) -> None:
    track(client, workspace, "/v1/track", {"anonymousId": "anon-8", "event": "Viewed", "messageId": "browse"})
    identify(client, workspace, userId="u8", traits={"plan": "pro"}, messageId="signup")
    assert profile_of(client, workspace, user_id="u8")["id"] != profile_of(client, workspace, anonymous_id="anon-8")[
        "id"]
    track(client, workspace, "/v1/alias", {"previousId": "anon-8", "userId": "u8", "messageId": "alias"})
    profile = profile_of(client, workspace, user_id="u8")
    assert profile_of(client, workspace, anonymous_id="anon-8")["id"] == profile["id"]
    assert {e["message_id"] for e in timeline(client, workspace, profile["id"])} == {"browse", "signup", "alias"}
    [merge] = admin(client, workspace, "GET", f"/api/v1/profiles/{profile['id']}/merges").json()["merges"]
    assert (merge["reason"], merge["message_id"]) == ("alias", "alias")
