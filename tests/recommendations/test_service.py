"""Replenishment events through ingestion, once per person, product and due date; erasure of the per-person
rows; consent: aggregates from events stored with analytics consent, everything about one person only for people
who allow personalization (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import orjson
from api.support import NOW, ApiClient, admin, profile_of, timeline, track

from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.recommendations import service
from rapport.recommendations.model import NOT_ALLOWED, Served
from rapport.storage.base import Conn
from rapport.storage.sql import events as events_sql
from rapport.types import DAY, JsonObject

GRANT: JsonObject = {"consent": {"categoryPreferences": {"Analytics": True, "Personalization": True}}}
ANALYTICS_ONLY: JsonObject = {"consent": {"categoryPreferences": {"Analytics": True, "Personalization": False}}}
START = NOW - 60 * DAY


def buy(client: ApiClient, ws: NewWorkspace, user: str, *days: int, context: JsonObject = GRANT) -> str:
    batch = [{"type": "track", "userId": user, "event": "Order Completed", "context": context,
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
    assert first.to_json() == {"due": 2, "emitted": 2, "duplicates": 0, "unreachable": 0, "not_allowed": 0}
    again = service.emit(rapport, ws, before)
    assert again.to_json() == {"due": 2, "emitted": 0, "duplicates": 2, "unreachable": 0, "not_allowed": 0}
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


def purchase_rows(rapport: Rapport, ws: str) -> set[str]:
    return {str(r[0]) for r in rapport.db.read(lambda c: c.all(
        "SELECT profile_id FROM rec_purchases WHERE workspace_id = ?", (ws,)))}


def withdraw_personalization(client: ApiClient, ws: NewWorkspace, user: str, at: int) -> None:
    body = {"type": "track", "userId": user, "event": "Preferences Saved", "timestamp": to_iso(at),
            "context": {"consent": {"categoryPreferences": {"Personalization": False}}}}
    assert track(client, ws, "/v1/track", body).status_code == 200


def test_per_person_rows_and_replenishment_need_personalization(client: ApiClient, rapport: Rapport,
                                                               workspace: NewWorkspace, clock: FrozenClock) -> None:
    ws = workspace.workspace_id
    r1 = buy(client, workspace, "r1", 20, 30)   # due day 40
    r2 = buy(client, workspace, "r2", 25, 35)   # due day 45
    r3 = buy(client, workspace, "r3", 10, 22, context=ANALYTICS_ONLY)   # would be due day 32
    # r3's orders still count in the aggregates (analytics allowed): three repeat buyers give the interval
    built = service.build_now(rapport, ws)
    assert (built.with_interval, built.people) == (1, 2)
    assert purchase_rows(rapport, ws) == {r1, r2}
    assert [d.profile_id for d in rapport.db.read(lambda c: service.due(c, ws, START + 50 * DAY))] == [r1, r2]
    rt = rapport.runtime(ws)
    served = rapport.db.read(lambda c: service.recommend(c, rt, r3, "replenishment", now=NOW))
    assert served == Served((), NOT_ALLOWED) and list(served) == []
    assert [r.product_id for r in rapport.db.read(lambda c: service.recommend(
        c, rt, r1, "replenishment", now=NOW))] == ["x"]
    # r1 withdraws after the build: listed from the build, but no event, and served nothing
    withdraw_personalization(client, workspace, "r1", NOW - 3600_000)
    report = service.emit(rapport, ws, START + 50 * DAY)
    assert report.to_json() == {"due": 2, "emitted": 1, "duplicates": 0, "unreachable": 0, "not_allowed": 1}
    assert replenishment_events(client, workspace, r1) == []
    assert len(replenishment_events(client, workspace, r2)) == 1
    assert replenishment_events(client, workspace, r3) == []
    assert rapport.db.read(lambda c: service.recommend(c, rt, r1, "popular", now=NOW)).withheld == NOT_ALLOWED
    clock.advance(DAY)   # the next build keeps no row for r1
    service.build_now(rapport, ws)
    assert purchase_rows(rapport, ws) == {r2}


def test_aggregates_read_only_events_stored_with_analytics_consent(client: ApiClient, rapport: Rapport,
                                                                   workspace: NewWorkspace) -> None:
    ws = workspace.workspace_id
    owner = buy(client, workspace, "r1", 20, 30)
    buy(client, workspace, "r2", 25, 35)

    def stored(restricted: int) -> None:
        """Orders of r1 with y and z together, stored with or without analytics consent."""
        def job(conn: Conn) -> None:
            events_sql.insert_events(conn, [
                (ws, f"k{restricted}-{i}", f"m{restricted}-{i}", owner, owner, "track", "Order Completed", "r1",
                 None, START + (40 + i) * DAY, NOW, restricted, 0, orjson.dumps({"properties": {"products": [
                     {"product_id": "y"}, {"product_id": "z"}]}}).decode()) for i in range(2)])
        rapport.db.write(job)

    stored(1)
    built = service.build_now(rapport, ws)
    assert (built.orders, built.products, built.pairs) == (4, 1, 0)
    stored(0)   # the same orders with consent do count: y and z in 2 orders make a pair both ways
    built = service.build_now(rapport, ws)
    assert (built.orders, built.products, built.pairs) == (6, 3, 2)
