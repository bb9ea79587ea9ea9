"""The Segment-compatible tracking API: endpoints, gzip, dedupe, clock skew, write keys, tracking plans."""

from __future__ import annotations

import gzip
from typing import Any

import orjson
import pytest

from api.support import (
    NOW,
    ApiClient,
    admin,
    apply_yaml,
    assert_error,
    basic,
    event_rows,
    lookup,
    nothing_stored,
    profile_of,
    timeline,
    track,
)
from rapport.clock import parse_iso, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.types import MINUTE

ANALYTICS_OK = {"consent": {"categoryPreferences": {"Analytics": True}}}


def test_every_endpoint_stores_on_the_right_profile(client: ApiClient, workspace: NewWorkspace) -> None:
    calls: list[tuple[str, dict[str, Any]]] = [
        ("/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}, "context": ANALYTICS_OK}),
        ("/v1/track", {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 5}}),
        ("/v1/page", {"userId": "u1", "name": "Home", "properties": {"path": "/"}}),
        ("/v1/screen", {"userId": "u1", "name": "Cart"}),
        ("/v1/group", {"userId": "u1", "groupId": "acme", "traits": {"name": "Acme"}}),
        ("/v1/alias", {"userId": "u1", "previousId": "anon-1"}),
    ]
    for path, body in calls:
        response = track(client, workspace, path, body)
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}
    batch = {"batch": [{**body, "type": path.removeprefix("/v1/")} for path, body in calls]}
    response = track(client, workspace, "/v1/batch", batch)
    assert response.json() == {"success": True}
    track(client, workspace, "/v1/track", {"userId": "someone-else", "event": "Order Completed"})

    profile = profile_of(client, workspace, user_id="u1")
    assert profile_of(client, workspace, anonymous_id="anon-1")["id"] == profile["id"]
    events = timeline(client, workspace, profile["id"])
    kinds = sorted(e["type"] for e in events)
    assert kinds == sorted(["identify", "track", "page", "screen", "group", "alias"] * 2)
    names = {(e["type"], e["name"]) for e in events}
    assert {("track", "Order Completed"), ("page", "Home"), ("screen", "Cart"), ("group", "acme")} <= names
    assert all(e["profile_id"] == profile["id"] for e in events)
    assert all(e["message"]["userId"] == "u1" for e in events)
    track_event = next(e for e in events if e["type"] == "track")
    assert track_event["message"]["properties"] == {"revenue": 5}
    assert profile["traits"] == {"plan": "pro"}
    assert profile_of(client, workspace, user_id="someone-else")["id"] != profile["id"]


def test_gzip_bodies_are_accepted(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    single = gzip.compress(orjson.dumps({"userId": "u1", "event": "Zipped", "messageId": "z1"}))
    response = client.post("/v1/track", content=single,
                           headers={**basic(workspace.write_key), "Content-Encoding": "gzip"})
    assert response.json() == {"success": True}
    batch = gzip.compress(orjson.dumps({"batch": [
        {"type": "track", "userId": "u1", "event": "Zipped", "messageId": f"z{n}"} for n in range(2, 5)]}))
    response = client.post("/v1/batch", content=batch,
                           headers={**basic(workspace.write_key), "Content-Encoding": "GZIP"})
    assert response.json() == {"success": True}
    assert [r[0] for r in event_rows(rapport, workspace)] == ["z1", "z2", "z3", "z4"]


def test_same_message_id_is_stored_once(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    body = {"userId": "u1", "event": "Order Completed", "messageId": "m-1"}
    assert track(client, workspace, "/v1/track", body).json() == {"success": True}
    assert track(client, workspace, "/v1/track", {**body, "event": "Changed"}).json() == {"success": True}
    batch = {"batch": [{**body, "type": "track"}, {**body, "type": "track", "messageId": "m-2"},
                       {**body, "type": "track", "messageId": "m-2"}]}
    assert track(client, workspace, "/v1/batch", batch).json() == {"success": True}
    rows = event_rows(rapport, workspace)
    assert [(r[0], r[2]) for r in rows] == [("m-1", "Order Completed"), ("m-2", "Order Completed")]


def test_dedupe_is_per_workspace(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    other = rapport.create_workspace("other-" + workspace.workspace_id)
    body = {"userId": "u1", "event": "Order Completed", "messageId": "shared-id"}
    track(client, workspace, "/v1/track", body)
    track(client, other, "/v1/track", body)
    assert rapport.event_count(workspace.workspace_id) == 1
    assert rapport.event_count(other.workspace_id) == 1


def test_dedupe_can_be_turned_off_per_workspace(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "PATCH", "/api/v1/settings", json={"dedupe": False})
    assert response.status_code == 200 and response.json()["dedupe"] is False
    body = {"userId": "u1", "event": "Order Completed", "messageId": "m-1"}
    for _ in range(2):
        assert track(client, workspace, "/v1/track", body).json() == {"success": True}
    assert [r[0] for r in event_rows(rapport, workspace)] == ["m-1", "m-1"]


def test_generated_message_ids_are_distinct(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    for _ in range(3):
        track(client, workspace, "/v1/track", {"userId": "u1", "event": "No Id"})
    ids = [r[0] for r in event_rows(rapport, workspace)]
    assert len(set(ids)) == 3 and all(ids)


def test_clock_skew_is_corrected_with_sent_at(client: ApiClient, workspace: NewWorkspace) -> None:
    # The device clock runs 5 minutes fast; the event happened 1 minute before the device sent it.
    body = {"userId": "u1", "event": "Skewed", "timestamp": to_iso(NOW + 4 * MINUTE),
            "sentAt": to_iso(NOW + 5 * MINUTE)}
    track(client, workspace, "/v1/track", body)
    [event] = timeline(client, workspace, profile_of(client, workspace, user_id="u1")["id"])
    assert event["timestamp"] == to_iso(NOW - MINUTE)
    assert event["message"]["timestamp"] == to_iso(NOW - MINUTE)
    assert event["message"]["originalTimestamp"] == to_iso(NOW + 4 * MINUTE)
    assert event["message"]["receivedAt"] == to_iso(NOW)


def test_batch_sent_at_corrects_every_item(client: ApiClient, workspace: NewWorkspace) -> None:
    items = [{"type": "track", "userId": "u1", "event": f"E{n}", "timestamp": to_iso(NOW - 3 * MINUTE + n * MINUTE)}
             for n in range(3)]
    body = {"batch": items, "sentAt": to_iso(NOW + 10 * MINUTE)}
    track(client, workspace, "/v1/batch", body)
    events = timeline(client, workspace, profile_of(client, workspace, user_id="u1")["id"])
    stamps = {e["name"]: parse_iso(e["message"]["timestamp"]) for e in events}
    assert stamps == {"E0": NOW - 13 * MINUTE, "E1": NOW - 12 * MINUTE, "E2": NOW - 11 * MINUTE}


def test_timestamps_without_sent_at_are_kept_and_absent_ones_are_receive_time(
    client: ApiClient, workspace: NewWorkspace
) -> None:
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Given", "timestamp": "2026-01-05T08:00:00Z"})
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Absent"})
    events = timeline(client, workspace, profile_of(client, workspace, user_id="u1")["id"])
    stamps = {e["name"]: e["message"]["timestamp"] for e in events}
    assert stamps == {"Given": "2026-01-05T08:00:00.000Z", "Absent": to_iso(NOW)}


def test_write_key_in_body_works_and_is_never_stored(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    response = client.post("/v1/track", json={"userId": "u1", "event": "Keyed", "writeKey": workspace.write_key,
                                              "context": ANALYTICS_OK})
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    batch = {"writeKey": workspace.write_key, "batch": [
        {"type": "track", "userId": "u1", "event": "Keyed In Batch", "writeKey": workspace.write_key}]}
    assert client.post("/v1/batch", json=batch).json() == {"success": True}
    rows = event_rows(rapport, workspace)
    assert len(rows) == 2
    assert all(workspace.write_key not in str(row[5]) for row in rows)
    for event in timeline(client, workspace, profile_of(client, workspace, user_id="u1")["id"]):
        assert "writeKey" not in event["message"]


def test_basic_auth_wins_over_body_write_key(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    body = {"userId": "u1", "event": "Keyed", "writeKey": "wk_" + "Z" * 43}
    assert track(client, workspace, "/v1/track", body).json() == {"success": True}
    assert rapport.event_count(workspace.workspace_id) == 1


ORDER_PLAN = """
kind: TrackingPlan
name: shop
mode: {mode}
allow_unplanned: {unplanned}
events:
  Order Completed:
    schema:
      type: object
      required: [revenue]
      properties:
        revenue: {{type: number}}
"""


def use_plan(client: ApiClient, ws: NewWorkspace, mode: str, unplanned: bool = True) -> None:
    response = apply_yaml(client, ws, ORDER_PLAN.format(mode=mode, unplanned=str(unplanned).lower()))
    assert response.status_code == 200, response.text


GOOD_ORDER = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 12.5}, "messageId": "good"}
BAD_ORDER = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": "lots"}, "messageId": "bad"}


def quarantine_rows(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    return rapport.db.read(lambda c: c.all(
        "SELECT message_id, event_name, plan, violations FROM quarantine WHERE workspace_id = ? ORDER BY seq",
        (ws.workspace_id,)))


def test_plan_in_reject_mode_refuses_violations(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace, "reject")
    body = assert_error(track(client, workspace, "/v1/track", BAD_ORDER), 400, "tracking_plan_violation")
    assert "shop" in body["message"] and "revenue" in body["message"]
    assert nothing_stored(rapport, workspace)
    assert track(client, workspace, "/v1/track", GOOD_ORDER).json() == {"success": True}
    batch = {"batch": [{**BAD_ORDER, "type": "track", "messageId": "bad-2"}, {**GOOD_ORDER, "messageId": "good-2",
                                                                             "type": "track"}]}
    out = track(client, workspace, "/v1/batch", batch).json()
    assert out["success"] is True
    assert [(e["index"], e["code"]) for e in out["errors"]] == [(0, "tracking_plan_violation")]
    assert [r[0] for r in event_rows(rapport, workspace)] == ["good", "good-2"]
    assert quarantine_rows(rapport, workspace) == []


def test_plan_refuses_unplanned_events_when_told(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace, "reject", unplanned=False)
    body = assert_error(track(client, workspace, "/v1/track", {"userId": "u1", "event": "Order Complete"}), 400,
                        "tracking_plan_violation")
    assert "Order Complete" in body["message"]
    assert nothing_stored(rapport, workspace)


def test_plan_in_flag_mode_stores_flagged(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace, "flag")
    assert track(client, workspace, "/v1/track", BAD_ORDER).json() == {"success": True}
    assert track(client, workspace, "/v1/track", GOOD_ORDER).json() == {"success": True}
    assert [(r[0], bool(r[4])) for r in event_rows(rapport, workspace)] == [("bad", True), ("good", False)]
    events = timeline(client, workspace, profile_of(client, workspace, user_id="u1")["id"])
    assert {e["message_id"]: e["flagged"] for e in events} == {"bad": True, "good": False}
    assert quarantine_rows(rapport, workspace) == []


def test_plan_in_quarantine_mode_stores_apart(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace, "quarantine")
    response = track(client, workspace, "/v1/track", BAD_ORDER)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "quarantined": 1}
    assert rapport.event_count(workspace.workspace_id) == 0
    assert lookup(client, workspace, user_id="u1").status_code == 404
    [(message_id, event_name, plan, violations)] = quarantine_rows(rapport, workspace)
    assert (message_id, event_name, plan) == ("bad", "Order Completed", "shop")
    assert any("revenue" in v for v in orjson.loads(violations))
    assert track(client, workspace, "/v1/track", GOOD_ORDER).json() == {"success": True}
    assert [r[0] for r in event_rows(rapport, workspace)] == ["good"]
    assert len(quarantine_rows(rapport, workspace)) == 1


@pytest.mark.parametrize("mode", ["reject", "flag", "quarantine"])
def test_plan_lets_valid_events_through_untouched(
    mode: str, client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    use_plan(client, workspace, mode)
    assert track(client, workspace, "/v1/track", GOOD_ORDER).json() == {"success": True}
    assert track(client, workspace, "/v1/track", {"userId": "u1", "event": "Unplanned"}).json() == {"success": True}
    assert [(r[0] == "good", bool(r[4])) for r in event_rows(rapport, workspace)] == [(True, False), (False, False)]
    assert quarantine_rows(rapport, workspace) == []
    assert admin(client, workspace, "GET", "/api/v1/resources", params={"kind": "TrackingPlan"}).json()[
        "resources"][0]["spec"]["mode"] == mode
