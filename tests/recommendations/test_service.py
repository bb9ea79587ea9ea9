"""Replenishment events through ingestion, once per person, product and due date; erasure of the per-person
rows (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from api.support import NOW, ApiClient, admin, profile_of, timeline, track

from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.recommendations import service
from rapport.types import DAY

GRANT = {"consent": {"categoryPreferences": {"Analytics": True}}}
START = NOW - 60 * DAY


def buy(client: ApiClient, ws: NewWorkspace, user: str, *days: int) -> str:
    batch = [{"type": "track", "userId": user, "event": "Order Completed", "context": GRANT,
              "timestamp": to_iso(START + d * DAY),
              "properties": {"order_id": f"{user}-{d}", "products": [{"product_id": "x", "product_name": "Coffee"}]}}
             for d in days]
    assert track(client, ws, "/v1/batch", {"batch": batch}).status_code == 200
    return str(profile_of(client, ws, user_id=user)["id"])


def replenishment_events(client: ApiClient, ws: NewWorkspace, profile_id: str) -> list[dict[str, Any]]:
    return [e for e in timeline(client, ws, profile_id) if e["name"] == service.REPLENISHMENT_EVENT]


def test_emit_is_idempotent_and_goes_through_ingestion(client: ApiClient, rapport: Rapport,
                                                       workspace: NewWorkspace, clock: FrozenClock) -> None:
    ws = workspace.workspace_id
    r1 = buy(client, workspace, "r1", 20, 30)   # interval 10 days (median of 10, 10, 12): due day 40
    r2 = buy(client, workspace, "r2", 25, 35)   # due day 45
    r3 = buy(client, workspace, "r3", 10, 22)   # due day 32
    assert service.build_now(rapport, ws).with_interval == 1
    before = START + 40 * DAY
    first = service.emit(rapport, ws, before)
    assert first.to_json() == {"due": 2, "emitted": 2, "duplicates": 0, "unreachable": 0}
    again = service.emit(rapport, ws, before)
    assert again.to_json() == {"due": 2, "emitted": 0, "duplicates": 2, "unreachable": 0}
    clock.advance(DAY)   # a later run, after a rebuild: same due dates, nothing new
    service.build_now(rapport, ws)
    assert service.emit(rapport, ws, before).emitted == 0
    events = replenishment_events(client, workspace, r1)
    assert len(events) == 1
    assert events[0]["message"]["properties"] == {"product_id": "x", "product_name": "Coffee",
                                       "due_at": to_iso(START + 40 * DAY),
                                       "last_purchased_at": to_iso(START + 30 * DAY)}
    assert len(replenishment_events(client, workspace, r3)) == 1
    assert replenishment_events(client, workspace, r2) == []
    # bought again: the interval becomes 10.5 days (gaps 10, 11, 10, 12), r1 is due on a new date (day 51.5);
    # r3's due date moves by 12 hours within the same day, so it is not emitted again
    buy(client, workspace, "r1", 41)
    service.build_now(rapport, ws)
    third = service.emit(rapport, ws, START + 52 * DAY)
    assert (third.due, third.emitted) == (3, 2)  # r1 (day 51.5) and r2 (day 45.5)
    assert len(replenishment_events(client, workspace, r1)) == 2


def test_erasure_removes_the_persons_purchase_rows(client: ApiClient, rapport: Rapport,
                                                   workspace: NewWorkspace) -> None:
    ws = workspace.workspace_id
    r1 = buy(client, workspace, "r1", 20, 30)
    r2 = buy(client, workspace, "r2", 25, 35)
    buy(client, workspace, "r3", 10, 22)
    service.build_now(rapport, ws)

    def rows() -> set[str]:
        return {str(r[0]) for r in rapport.db.read(lambda c: c.all(
            "SELECT profile_id FROM rec_purchases WHERE workspace_id = ?", (ws,)))}
    assert {r1, r2} <= rows()
    assert admin(client, workspace, "DELETE", f"/api/v1/profiles/{r1}").status_code == 200
    assert r1 not in rows() and r2 in rows()
    assert [d.profile_id for d in rapport.db.read(lambda c: service.due(c, ws, NOW))] != []
    assert r1 not in {d.profile_id for d in rapport.db.read(lambda c: service.due(c, ws, NOW))}
