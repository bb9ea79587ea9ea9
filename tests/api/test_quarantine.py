"""Quarantine through the admin API: list quarantined messages, fix the plan, replay them into profiles."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import pytest

from api.support import (
    NOW,
    ApiClient,
    admin,
    apply_yaml,
    assert_error,
    event_rows,
    lookup,
    profile_of,
    timeline,
    track,
)
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.ingestion import quarantine as quarantine_service
from rapport.types import MINUTE
from rapport.workspaces.model import Role

PLAN = """
kind: TrackingPlan
name: shop
mode: {mode}
events:
  Order Completed:
    schema:
      type: object
      required: [{required}]
      properties:
        revenue: {{type: {revenue}}}
        currency: {{type: string}}
  Cart Added:
    schema:
      type: object
      required: [cart_id]
"""
BROKEN = {"mode": "quarantine", "required": "revenue", "revenue": "number"}
"""The plan as first written: revenue must be a number (the shop's app sends text)."""
FIXED = {"mode": "quarantine", "required": "revenue", "revenue": "[number, string]"}
CONSENT = {"consent": {"categoryPreferences": {"Analytics": True}}}


def use_plan(client: ApiClient, ws: NewWorkspace, **fields: str) -> None:
    response = apply_yaml(client, ws, PLAN.format(**{**BROKEN, **fields}))
    assert response.status_code == 200, response.text


def order(message_id: str, revenue: Any = "12.50", user: str = "u1", **properties: Any) -> dict[str, Any]:
    props = {"revenue": revenue, **properties} if revenue is not None else dict(properties)
    return {"type": "track", "userId": user, "event": "Order Completed", "messageId": message_id,
            "properties": props, "context": CONSENT}


def cart(message_id: str, user: str = "u1") -> dict[str, Any]:
    return {"type": "track", "userId": user, "event": "Cart Added", "messageId": message_id, "properties": {},
            "context": CONSENT}


def send(client: ApiClient, ws: NewWorkspace, *messages: dict[str, Any], quarantined: int | None = None) -> None:
    response = track(client, ws, "/v1/batch", {"batch": list(messages)})
    assert response.status_code == 200, response.text
    assert response.json().get("quarantined", 0) == (len(messages) if quarantined is None else quarantined)


def listing(client: ApiClient, ws: NewWorkspace, *, token: str | None = None, **params: Any) -> httpx.Response:
    return admin(client, ws, "GET", "/api/v1/quarantine", token=token, params=params)


def every_page(client: ApiClient, ws: NewWorkspace, limit: int, **params: Any) -> list[list[dict[str, Any]]]:
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        response = listing(client, ws, limit=limit, **params, **({"cursor": cursor} if cursor else {}))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["messages"])
        cursor = body["next"]
        if cursor is None:
            return pages


def open_ids(client: ApiClient, ws: NewWorkspace, **params: Any) -> list[str]:
    return [m["message_id"] for page in every_page(client, ws, 500, **params) for m in page]


def replay(client: ApiClient, ws: NewWorkspace, body: Any, *, token: str | None = None) -> httpx.Response:
    return admin(client, ws, "POST", "/api/v1/quarantine/replay", token=token, json=body)


def replayed(client: ApiClient, ws: NewWorkspace, body: Any) -> dict[str, Any]:
    response = replay(client, ws, body)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def counts(report: dict[str, Any]) -> dict[str, int]:
    return {k: v for k, v in report.items() if k != "errors"}


def outcome(matched: int = 0, accepted: int = 0, duplicates: int = 0, restricted: int = 0, quarantined: int = 0,
            invalid: int = 0, not_found: int = 0) -> dict[str, int]:
    return {"matched": matched, "replayed": accepted + duplicates, "accepted": accepted, "duplicates": duplicates,
            "restricted": restricted, "quarantined": quarantined, "invalid": invalid, "not_found": not_found}


# --- listing --------------------------------------------------------------------------------------------

def test_quarantined_messages_are_listed_newest_first_in_pages(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock
) -> None:
    use_plan(client, workspace)
    sent = ["o1", "c1", "o2", "o3", "c2"]
    for message_id in sent:
        send(client, workspace, cart(message_id) if message_id.startswith("c") else order(message_id))
        clock.advance(MINUTE)
    pages = every_page(client, workspace, 2)
    assert [[m["message_id"] for m in page] for page in pages] == [["c2", "o3"], ["o2", "c1"], ["o1"]]
    newest = pages[0][1]
    assert set(newest) == {"id", "message_id", "event", "type", "plan", "violations", "received_at", "payload"}
    assert (newest["event"], newest["type"], newest["plan"]) == ("Order Completed", "track", "shop")
    assert newest["violations"] == ["properties.revenue: '12.50' is not of type 'number'"]
    assert newest["received_at"] == to_iso(NOW + 3 * MINUTE)
    assert newest["payload"]["properties"] == {"revenue": "12.50"}
    assert newest["payload"]["userId"] == "u1" and newest["payload"]["messageId"] == "o3"
    assert open_ids(client, workspace, event="Cart Added") == ["c2", "c1"]
    assert [[m["message_id"] for m in p] for p in every_page(client, workspace, 1, event="Order Completed")] == [
        ["o3"], ["o2"], ["o1"]]
    assert open_ids(client, workspace, event="Unknown") == []
    assert rapport.event_count(workspace.workspace_id) == 0


def test_payloads_are_stored_encrypted(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1", email="ann.secret@example.com"))
    [(payload,)] = rapport.db.read(lambda c: c.all("SELECT payload FROM quarantine WHERE workspace_id = ?",
                                                   (workspace.workspace_id,)))
    assert b"ann.secret" not in bytes(payload) and b"Order Completed" not in bytes(payload)
    [message] = listing(client, workspace).json()["messages"]
    assert message["payload"]["properties"]["email"] == "ann.secret@example.com"


def test_listing_refuses_bad_paging(client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(listing(client, workspace, cursor="not-a-cursor"), 400, "invalid_cursor")
    assert_error(listing(client, workspace, limit=0), 400, "invalid_request")
    assert_error(listing(client, workspace, limit=501), 400, "invalid_request")


# --- roles and tenants ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("role", "reads", "replays"), [
    ("admin", True, True), ("analyst", True, False), ("marketer", False, False), ("viewer", False, False),
])
def test_roles(role: Role, reads: bool, replays: bool, client: ApiClient, rapport: Rapport,
               workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1"))
    token = rapport.create_token(workspace.workspace_id, role, role, "test")
    read = listing(client, workspace, token=token)
    if reads:
        assert read.status_code == 200 and [m["message_id"] for m in read.json()["messages"]] == ["o1"]
    else:
        body = assert_error(read, 403, "forbidden")
        assert body["details"] == [{"required": "quarantine:read", "role": role}]
    write = replay(client, workspace, {"all": True}, token=token)
    if replays:
        assert write.status_code == 200, write.text
    else:
        assert_error(write, 403, "forbidden")
        assert open_ids(client, workspace) == ["o1"]


def test_a_write_key_cannot_read_the_quarantine(client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(listing(client, workspace, token=workspace.write_key), 403, "wrong_credential_kind")
    assert_error(client.get("/api/v1/quarantine"), 401, "missing_credentials")


def test_another_workspace_sees_and_replays_nothing(client: ApiClient, rapport: Rapport,
                                                     workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1"), order("o2"))
    other = rapport.create_workspace(f"{workspace.workspace_id}-other")
    assert listing(client, other).json() == {"messages": [], "next": None}
    assert listing(client, other, event="Order Completed").json()["messages"] == []
    ids = [m["id"] for m in listing(client, workspace).json()["messages"]]
    stolen = replayed(client, other, {"ids": ids})
    assert counts(stolen) == outcome(not_found=2)
    assert [e["code"] for e in stolen["errors"]] == ["quarantine_not_found"] * 2
    assert counts(replayed(client, other, {"all": True})) == outcome()
    assert open_ids(client, workspace) == ["o2", "o1"]
    assert rapport.event_count(other.workspace_id) == rapport.event_count(workspace.workspace_id) == 0


# --- replay -----------------------------------------------------------------------------------------------

def test_fix_the_plan_and_replay(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                 clock: FrozenClock) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1", "10.00"), order("o2", "20.00"), cart("c1"), quarantined=3)
    assert lookup(client, workspace, user_id="u1").status_code == 404
    clock.advance(5 * MINUTE)
    use_plan(client, workspace, **FIXED)
    report = replayed(client, workspace, {"event": "Order Completed"})
    assert counts(report) == outcome(matched=2, accepted=2)
    assert report["errors"] == []
    person = profile_of(client, workspace, user_id="u1")
    events = timeline(client, workspace, person["id"])
    assert [(e["message_id"], e["message"]["properties"]["revenue"]) for e in events] == [
        ("o2", "20.00"), ("o1", "10.00")]
    assert {e["timestamp"] for e in events} == {to_iso(NOW)}
    assert open_ids(client, workspace) == ["c1"]

    again = replayed(client, workspace, {"all": True})
    assert counts(again) == outcome(matched=1, quarantined=1)
    assert again["errors"][0]["violations"] == ["properties: 'cart_id' is a required property"]
    assert [r[0] for r in event_rows(rapport, workspace)] == ["o1", "o2"]
    assert open_ids(client, workspace) == ["c1"]


def test_replaying_twice_stores_nothing_twice(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1"), order("o2"))
    ids = [m["id"] for m in listing(client, workspace).json()["messages"]]
    use_plan(client, workspace, **FIXED)
    assert counts(replayed(client, workspace, {"ids": ids})) == outcome(matched=2, accepted=2)
    assert listing(client, workspace).json() == {"messages": [], "next": None}
    second = replayed(client, workspace, {"ids": ids})
    assert counts(second) == outcome(not_found=2)
    assert counts(replayed(client, workspace, {"all": True})) == outcome()
    assert [r[0] for r in event_rows(rapport, workspace)] == ["o1", "o2"]
    trace = rapport.db.read(lambda c: c.all(
        "SELECT message_id, replayed_at, length(payload) FROM quarantine WHERE workspace_id = ? ORDER BY seq",
        (workspace.workspace_id,)))
    assert [(r[0], r[1] is not None, r[2]) for r in trace] == [("o1", True, 0), ("o2", True, 0)]


def test_a_message_resent_meanwhile_is_a_duplicate(client: ApiClient, rapport: Rapport,
                                                   workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1", "oops"), order("o2", "oops"))
    use_plan(client, workspace, **FIXED)
    send(client, workspace, order("o1", "fixed by the sender"), quarantined=0)
    report = replayed(client, workspace, {"all": True})
    assert counts(report) == outcome(matched=2, accepted=1, duplicates=1)
    rows = event_rows(rapport, workspace)
    assert [(r[0], orjson.loads(r[5])["properties"]["revenue"]) for r in rows] == [
        ("o1", "fixed by the sender"), ("o2", "oops")]
    assert open_ids(client, workspace) == []


def test_what_still_fails_stays_with_its_new_violations(client: ApiClient, rapport: Rapport,
                                                        workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("with-currency", currency="EUR"), order("without-currency"), cart("c1"))
    use_plan(client, workspace, **{**FIXED, "required": "revenue, currency"})
    report = replayed(client, workspace, {"event": "Order Completed"})
    assert counts(report) == outcome(matched=2, accepted=1, quarantined=1)
    [error] = report["errors"]
    assert (error["message_id"], error["code"]) == ("without-currency", "tracking_plan_violation")
    assert error["violations"] == ["properties: 'currency' is a required property"]
    messages = {m["message_id"]: m for m in listing(client, workspace).json()["messages"]}
    assert set(messages) == {"without-currency", "c1"}
    assert messages["without-currency"]["violations"] == ["properties: 'currency' is a required property"]
    assert messages["c1"]["violations"] == ["properties: 'cart_id' is a required property"]
    assert [r[0] for r in event_rows(rapport, workspace)] == ["with-currency"]


def test_a_plan_now_in_reject_mode_keeps_messages_in_quarantine(client: ApiClient, rapport: Rapport,
                                                                workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1"))
    use_plan(client, workspace, mode="reject")
    report = replayed(client, workspace, {"all": True})
    assert counts(report) == outcome(matched=1, quarantined=1)
    assert report["errors"][0]["message"].startswith("still violates tracking plan 'shop'")
    assert open_ids(client, workspace) == ["o1"]
    use_plan(client, workspace, mode="flag")
    assert counts(replayed(client, workspace, {"all": True})) == outcome(matched=1, accepted=1)
    assert [(r[0], bool(r[4])) for r in event_rows(rapport, workspace)] == [("o1", True)]


def test_replay_keeps_the_corrected_time(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                         clock: FrozenClock) -> None:
    use_plan(client, workspace)
    # The client's clock runs an hour ahead: the event happened 10 minutes before the request.
    sent_at = NOW + 60 * MINUTE
    skewed = {**order("o1"), "timestamp": to_iso(sent_at - 10 * MINUTE)}
    response = track(client, workspace, "/v1/batch", {"batch": [skewed], "sentAt": to_iso(sent_at)})
    assert response.json() == {"success": True, "quarantined": 1}
    item = {**order("o2"), "timestamp": to_iso(sent_at - 20 * MINUTE), "sentAt": to_iso(sent_at)}
    assert track(client, workspace, "/v1/batch", {"batch": [item]}).json()["quarantined"] == 1
    clock.advance(3 * 60 * MINUTE)
    use_plan(client, workspace, **FIXED)
    assert counts(replayed(client, workspace, {"all": True})) == outcome(matched=2, accepted=2)
    person = profile_of(client, workspace, user_id="u1")
    events = {e["message_id"]: e for e in timeline(client, workspace, person["id"])}
    assert events["o1"]["timestamp"] == to_iso(NOW - 10 * MINUTE)
    assert events["o2"]["timestamp"] == to_iso(NOW - 20 * MINUTE)
    assert events["o2"]["received_at"] == to_iso(NOW)
    assert events["o2"]["message"]["sentAt"] == to_iso(sent_at)
    assert events["o2"]["message"]["originalTimestamp"] == to_iso(sent_at - 20 * MINUTE)


def test_a_failed_replay_leaves_everything_as_it_was(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    use_plan(client, workspace)
    send(client, workspace, order("o1"), order("o2"))
    use_plan(client, workspace, **FIXED)

    def crash(*_: Any) -> None:
        raise RuntimeError("the process died here")

    with monkeypatch.context() as patched, pytest.raises(RuntimeError, match="died"):
        # The last write of the replay's transaction, after the events and the claim.
        patched.setattr(quarantine_service.ws_sql, "audit", crash)
        quarantine_service.replay(rapport, workspace.workspace_id, quarantine_service.Selection(), "test")
    assert rapport.event_count(workspace.workspace_id) == 0
    assert open_ids(client, workspace) == ["o2", "o1"]
    assert counts(replayed(client, workspace, {"all": True})) == outcome(matched=2, accepted=2)
    assert [r[0] for r in event_rows(rapport, workspace)] == ["o1", "o2"]


@pytest.mark.parametrize("body", [
    {}, {"ids": []}, {"ids": "q1"}, {"ids": [1]}, {"event": ""}, {"all": False}, {"all": True, "event": "x"},
    {"everything": True}, [], "all",
], ids=repr)
def test_replay_says_what_it_needs(body: Any, client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(replay(client, workspace, body), 400, "invalid_request")


def test_replay_in_chunks(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    use_plan(client, workspace)
    send(client, workspace, *[order(f"o{n}", user=f"u{n % 3}") for n in range(7)], cart("c1"))
    use_plan(client, workspace, **FIXED)
    report = quarantine_service.replay(rapport, workspace.workspace_id, quarantine_service.Selection(), "test",
                                       chunk_size=2)
    assert (report.matched, report.accepted, report.quarantined) == (8, 7, 1)
    assert sorted(r[0] for r in event_rows(rapport, workspace)) == [f"o{n}" for n in range(7)]
    audit = admin(client, workspace, "GET", "/api/v1/audit").json()["entries"]
    replays = [e for e in audit if e["action"] == "quarantine.replay"]
    assert len(replays) == 4 and sum(len(e["detail"]["replayed"]) for e in replays) == 7
    assert {e["actor"] for e in replays} == {"test"}
