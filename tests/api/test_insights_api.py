"""Recommendations and KPI reports through the admin API, on SQLite and PostgreSQL: hand-computed values,
exclusions, segment members only, personalization consent, small-cell suppression and its floor, events without
analytics consent left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

from api.support import NOW, ApiClient, admin, apply_yaml, assert_error, profile_of, track
from rapport.api.app import run_backfills, run_segments
from rapport.cli import app as cli
from rapport.clock import to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.storage.base import Conn
from rapport.storage.sql import feedback as feedback_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY

GRANT = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True, "Personalization": True}}}
ANALYTICS_ONLY = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True}}}
NO_ANALYTICS = {"consent": {"categoryPreferences": {"Analytics": False, "Email": True}}}
SEGMENTS = """
kind: Segment
name: gold
rule: traits.tier == "gold"
---
kind: Segment
name: silver
rule: traits.tier == "silver"
"""


def send(client: ApiClient, ws: NewWorkspace, *events: dict[str, Any], context: dict[str, Any] = GRANT) -> None:
    batch = [{"type": "track", "context": context, **e} for e in events]
    response = track(client, ws, "/v1/batch", {"batch": batch})
    assert response.status_code == 200, response.text


def identify(client: ApiClient, ws: NewWorkspace, user: str, context: dict[str, Any] = GRANT, **traits: Any) -> str:
    response = track(client, ws, "/v1/identify", {"userId": user, "traits": traits, "context": context})
    assert response.status_code == 200, response.text
    return str(profile_of(client, ws, user_id=user)["id"])


def order(user: str, at: int, *products: str, revenue: float = 10.0, order_id: str | None = None) -> dict[str, Any]:
    return {"userId": user, "event": "Order Completed", "timestamp": to_iso(at),
            "properties": {"order_id": order_id or f"{user}-{at}", "revenue": revenue,
                           "products": [{"product_id": p, "product_name": p.upper(), "price": 5, "quantity": 1}
                                        for p in products]}}


def settle(rapport: Rapport, ws: NewWorkspace) -> None:
    rapport.runtime(ws.workspace_id, fresh=True)
    run_backfills(rapport)
    run_segments(rapport)


def recommendations(client: ApiClient, ws: NewWorkspace, profile_id: str, **params: Any) -> list[tuple[str, float]]:
    response = admin(client, ws, "GET", f"/api/v1/profiles/{profile_id}/recommendations", params=params)
    assert response.status_code == 200, response.text
    return [(r["product_id"], r["score"]) for r in response.json()["recommendations"]]


@pytest.fixture
def shop(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> dict[str, str]:
    """The hand-computed baskets of tests/recommendations/test_build.py, bought two days ago by u1..u6; u1..u3 are
    gold members."""
    assert apply_yaml(client, workspace, SEGMENTS).status_code == 200
    ids = {u: identify(client, workspace, u, tier="gold" if u in ("u1", "u2", "u3") else "bronze")
           for u in ("u1", "u2", "u3", "u4", "u5", "u6")}
    at = NOW - 2 * DAY
    send(client, workspace, order("u1", at, "a", "b", "c"), order("u2", at, "a", "b"), order("u3", at, "a", "c"),
         order("u4", at, "b", "c"), order("u5", at, "a", "b", "d"), order("u6", at, "d"))
    settle(rapport, workspace)
    response = admin(client, workspace, "POST", "/api/v1/recommendations/build")
    assert response.status_code == 200, response.text
    assert response.json()["orders"] == 6 and response.json()["pairs"] == 6
    return ids


def test_bought_together_leaves_out_what_was_bought_and_returned(client: ApiClient, rapport: Rapport,
                                                                  workspace: NewWorkspace,
                                                                  shop: dict[str, str]) -> None:
    # u4 bought b and c: a goes with b at lift 3·6 / (4·4) = 1.125 (with c only at 1.0, no better than chance)
    assert recommendations(client, workspace, shop["u4"], kind="bought_together") == [("a", 1.125)]
    # u1 bought a, b and c: b would go with a, but it is bought already
    assert recommendations(client, workspace, shop["u1"], kind="bought_together") == []
    # u3 bought a and c: b goes with a at lift 1.125
    assert recommendations(client, workspace, shop["u3"], kind="bought_together") == [("b", 1.125)]
    send(client, workspace, {"userId": "u3", "event": "Product Returned", "timestamp": to_iso(NOW - DAY),
                             "properties": {"product_id": "b"}})
    assert recommendations(client, workspace, shop["u3"], kind="bought_together") == []
    # anchored on one product (a product page): u6 bought only d
    assert recommendations(client, workspace, shop["u6"], kind="bought_together", product="a") == [("b", 1.125)]


def test_popular_in_a_segment_counts_only_its_members(client: ApiClient, workspace: NewWorkspace,
                                                      shop: dict[str, str]) -> None:
    # gold (u1, u2, u3): a has 3 buyers, b 2 (u1, u2), c 2 (u1, u3); d was bought by non-members only
    assert recommendations(client, workspace, shop["u4"], kind="popular", segment="gold") == [("a", 3.0)]
    assert recommendations(client, workspace, shop["u6"], kind="popular", segment="gold") == [
        ("a", 3.0), ("b", 2.0), ("c", 2.0)]
    # everyone: a 4, b 4, c 3 buyers; u6 already has d
    assert recommendations(client, workspace, shop["u6"], kind="popular") == [("a", 4.0), ("b", 4.0), ("c", 3.0)]
    assert_error(admin(client, workspace, "GET", f"/api/v1/profiles/{shop['u6']}/recommendations",
                       params={"kind": "popular", "segment": "nope"}), 404, "segment_not_found")
    assert_error(admin(client, workspace, "GET", f"/api/v1/profiles/{shop['u6']}/recommendations",
                       params={"kind": "cheapest"}), 400, "invalid_kind")


def test_recommendations_are_served_only_to_people_who_allow_personalization(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, shop: dict[str, str]) -> None:
    u7 = identify(client, workspace, "u7", ANALYTICS_ONLY)
    for kind in ("bought_together", "popular", "replenishment"):
        response = admin(client, workspace, "GET", f"/api/v1/profiles/{u7}/recommendations", params={"kind": kind})
        assert response.status_code == 200, response.text
        assert response.json() == {"profile_id": u7, "kind": kind, "segment": None, "recommendations": [],
                                   "consent": "personalization not allowed"}
    # the same list as before while u6 allows it; nothing once withdrawn
    assert "consent" not in admin(client, workspace, "GET", f"/api/v1/profiles/{shop['u6']}/recommendations",
                                  params={"kind": "popular"}).json()
    send(client, workspace, {"userId": "u6", "event": "Preferences Saved", "timestamp": to_iso(NOW)},
         context={"consent": {"categoryPreferences": {"Personalization": False}}})
    response = admin(client, workspace, "GET", f"/api/v1/profiles/{shop['u6']}/recommendations",
                     params={"kind": "popular"})
    assert response.json()["recommendations"] == [] and response.json()["consent"] == "personalization not allowed"
    # requests that are wrong stay errors
    assert_error(admin(client, workspace, "GET", f"/api/v1/profiles/{u7}/recommendations",
                       params={"kind": "cheapest"}), 400, "invalid_kind")
    assert_error(admin(client, workspace, "GET", "/api/v1/profiles/nobody/recommendations"), 404,
                 "profile_not_found")


def test_replenishment_lists_people_due_and_serves_their_products(client: ApiClient, rapport: Rapport,
                                                                   workspace: NewWorkspace) -> None:
    ids = {u: identify(client, workspace, u) for u in ("r1", "r2", "r3")}
    day = NOW - 60 * DAY
    send(client, workspace,
         order("r1", day + 20 * DAY, "x"), order("r1", day + 30 * DAY, "x"),     # gap 10 days, last day 30
         order("r2", day + 25 * DAY, "x"), order("r2", day + 35 * DAY, "x"),     # gap 10, last day 35
         order("r3", day + 10 * DAY, "x"), order("r3", day + 22 * DAY, "x"))     # gap 12, last day 22
    assert admin(client, workspace, "POST", "/api/v1/recommendations/build").json()["products_with_interval"] == 1
    response = admin(client, workspace, "GET", "/api/v1/recommendations/replenishment",
                     params={"due_before": to_iso(day + 40 * DAY)})
    assert response.status_code == 200, response.text
    due = [(d["profile_id"], d["due_at"]) for d in response.json()["due"]]
    # median gap 10 days: r3 due day 32, r1 day 40 (on the boundary), r2 day 45 (later)
    assert due == [(ids["r3"], to_iso(day + 32 * DAY)), (ids["r1"], to_iso(day + 40 * DAY))]
    assert response.json()["withheld"] == 0
    assert [p for p, _ in recommendations(client, workspace, ids["r1"], kind="replenishment")] == ["x"]
    # r3 withdraws personalization: no longer listed (its purchase history would be used to speak to it)
    send(client, workspace, {"userId": "r3", "event": "Preferences Saved", "timestamp": to_iso(NOW)},
         context={"consent": {"categoryPreferences": {"Personalization": False}}})
    response = admin(client, workspace, "GET", "/api/v1/recommendations/replenishment",
                     params={"due_before": to_iso(day + 40 * DAY)})
    assert [d["profile_id"] for d in response.json()["due"]] == [ids["r1"]]
    assert response.json()["withheld"] == 1


def test_build_needs_models_write(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    token = rapport.create_token(workspace.workspace_id, "marketer", "m", "test")
    assert_error(admin(client, workspace, "POST", "/api/v1/recommendations/build", token=token), 403, "forbidden")


# --- KPIs ---------------------------------------------------------------------------------------------------

SENT_AT = NOW - 5 * DAY


def _sends(rapport: Rapport, ws: str, journey: str, people: list[str]) -> list[str]:
    keys = [f"{journey}:{pid}" for pid in people]

    def job(conn: Conn) -> None:
        journeys_sql.insert_sends(conn, ws, [(key, f"enr-{key}", journey, 1, "mail1", "send", "email", "t1", "[]",
                                              pid, SENT_AT, SENT_AT) for key, pid in zip(keys, people, strict=True)])
        journeys_sql.mark_sent(conn, [(ws, key, f"prov-{key}", "") for key in keys], SENT_AT)
    rapport.db.write(job)
    return keys


@pytest.fixture
def campaign(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> dict[str, str]:
    """welcome/mail1 to w0..w11 (w0..w9 gold, w10, w11 silver), promo/mail1 to 10 people, winback/mail1 to 9."""
    assert apply_yaml(client, workspace, SEGMENTS).status_code == 200
    ws = workspace.workspace_id
    w = [identify(client, workspace, f"w{i}", tier="gold" if i < 10 else "silver") for i in range(12)]
    p = [identify(client, workspace, f"p{i}") for i in range(10)]
    v = [identify(client, workspace, f"v{i}") for i in range(9)]
    keys = _sends(rapport, ws, "welcome", w)
    _sends(rapport, ws, "promo", p)
    _sends(rapport, ws, "winback", v)

    def engage(conn: Conn) -> None:
        for i in range(6):   # w0..w5 open, w0..w2 click
            feedback_sql.count_engagement(conn, ws, (keys[i], "open", "", None, w[i], SENT_AT + 3600_000))
        for i in range(3):
            feedback_sql.count_engagement(conn, ws, (keys[i], "click", "h", "https://x", w[i], SENT_AT + 3700_000))
    rapport.db.write(engage)
    send(client, workspace,
         order("w0", SENT_AT + DAY, "a", revenue=100.0),       # converts
         order("w2", SENT_AT + 2 * DAY, "a", revenue=20.0),    # converts
         order("w3", SENT_AT + 4 * DAY, "a", revenue=50.0),    # after the 3-day window
         order("w5", SENT_AT - DAY, "a", revenue=70.0),        # before the message
         {"userId": "w4", "event": "Unsubscribed", "timestamp": to_iso(SENT_AT + DAY), "properties": {}})
    settle(rapport, workspace)
    return {"period_from": to_iso(NOW - 10 * DAY), "period_to": to_iso(NOW)}


def kpis(client: ApiClient, ws: NewWorkspace, by: str, period: dict[str, str], **params: Any) -> dict[str, Any]:
    response = admin(client, ws, "GET", "/api/v1/kpis",
                     params={"by": by, "from": period["period_from"], "to": period["period_to"], **params})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _row(report: dict[str, Any], field: str, value: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for r in report["rows"] if r[field] == value)
    return found


WELCOME = {"recipients": 12, "open_rate": 0.5, "ctr": 0.25, "conversion_rate": round(2 / 12, 4),
           "revenue_per_recipient": 10.0, "unsubscribe_rate": round(1 / 12, 4), "suppressed": False, "reason": None}


def test_kpis_per_message_match_the_hand_computation(client: ApiClient, workspace: NewWorkspace,
                                                     campaign: dict[str, str]) -> None:
    report = kpis(client, workspace, "message", campaign)
    welcome = _row(report, "journey", "welcome")
    assert {k: welcome[k] for k in WELCOME} == WELCOME
    assert welcome["step"] == "mail1" and welcome["template"] == "t1"
    promo = _row(report, "journey", "promo")         # 10 recipients: shown
    assert promo["suppressed"] is False and promo["recipients"] == 10 and promo["open_rate"] == 0.0
    winback = _row(report, "journey", "winback")     # 9 recipients: suppressed
    assert winback["suppressed"] is True and winback["recipients"] is None and winback["open_rate"] is None
    assert winback["reason"] == "fewer than 10 recipients"
    assert report["total"]["recipients"] == 31


def test_kpis_per_journey_suppress_a_complement(client: ApiClient, workspace: NewWorkspace,
                                                campaign: dict[str, str]) -> None:
    report = kpis(client, workspace, "journey", campaign)
    assert {k: _row(report, "journey", "welcome")[k] for k in WELCOME} == WELCOME
    assert _row(report, "journey", "winback")["reason"] == "fewer than 10 recipients"
    promo = _row(report, "journey", "promo")  # the next smallest: total - welcome - promo would give winback
    assert promo["suppressed"] is True and "complementary" in promo["reason"]
    raised = kpis(client, workspace, "journey", campaign, min_count=13)
    assert raised["min_count"] == 13
    assert _row(raised, "journey", "welcome")["suppressed"] is True


def test_kpis_per_segment_count_members(client: ApiClient, workspace: NewWorkspace,
                                        campaign: dict[str, str]) -> None:
    report = kpis(client, workspace, "segment", campaign)
    gold = _row(report, "segment", "gold")   # w0..w9
    assert {k: gold[k] for k in ("recipients", "open_rate", "ctr", "conversion_rate", "revenue_per_recipient",
                                 "unsubscribe_rate", "members")} == {
        "recipients": 10, "open_rate": 0.6, "ctr": 0.3, "conversion_rate": 0.2, "revenue_per_recipient": 12.0,
        "unsubscribe_rate": 0.1, "members": 10}
    silver = _row(report, "segment", "silver")  # w10, w11
    assert silver["suppressed"] is True and silver["members"] is None
    during = kpis(client, workspace, "segment", campaign, membership="period")
    # the members joined after the messages went out (the segments were applied today)
    assert _row(during, "segment", "gold")["suppressed"] is True


def test_kpis_leave_out_events_stored_without_analytics_consent(client: ApiClient, rapport: Rapport,
                                                                workspace: NewWorkspace) -> None:
    """y0..y9 allow analytics, n0..n9 do not: all 20 get the journey's message, order within the window and get
    a campaign; only the events of y0..y9 are measured (the others' are stored minimized)."""
    ws = workspace.workspace_id
    yes = [identify(client, workspace, f"y{i}") for i in range(10)]
    no = [identify(client, workspace, f"n{i}", NO_ANALYTICS) for i in range(10)]
    _sends(rapport, ws, "news", yes + no)
    delivered = [{"userId": u, "event": "Email Delivered", "timestamp": to_iso(SENT_AT),
                  "properties": {"campaign_id": "c1"}} for u in [f"y{i}" for i in range(10)]]
    send(client, workspace, *delivered, *(order(f"y{i}", SENT_AT + DAY, "a", revenue=10.0) for i in range(10)))
    send(client, workspace, *({"userId": f"n{i}", "event": "Email Delivered", "timestamp": to_iso(SENT_AT),
                               "properties": {"campaign_id": "c1"}} for i in range(10)),
         *(order(f"n{i}", SENT_AT + DAY, "a", revenue=10.0) for i in range(10)),
         {"userId": "n0", "event": "Unsubscribed", "timestamp": to_iso(SENT_AT + DAY), "properties": {}},
         context=NO_ANALYTICS)
    settle(rapport, workspace)
    period = {"period_from": to_iso(NOW - 10 * DAY), "period_to": to_iso(NOW)}
    news = _row(kpis(client, workspace, "journey", period), "journey", "news")
    assert {k: news[k] for k in ("recipients", "conversion_rate", "revenue_per_recipient", "unsubscribe_rate")} == {
        "recipients": 20, "conversion_rate": 0.5, "revenue_per_recipient": 5.0, "unsubscribe_rate": 0.0}
    by_message = kpis(client, workspace, "message", period)
    assert _row(by_message, "campaign_id", "c1")["recipients"] == 10
    assert by_message["total"]["recipients"] == 20


def test_min_count_cannot_lower_the_floor(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    period = {"period_from": to_iso(NOW - DAY), "period_to": to_iso(NOW)}
    assert_error(admin(client, workspace, "GET", "/api/v1/kpis", params={"by": "journey", "min_count": 9}),
                 400, "min_count_below_floor")
    response = admin(client, workspace, "PATCH", "/api/v1/settings", json={"min_cell_count": 20})
    assert response.status_code == 200, response.text
    rapport.runtime(workspace.workspace_id, fresh=True)
    assert kpis(client, workspace, "journey", period)["min_count"] == 20
    assert_error(admin(client, workspace, "GET", "/api/v1/kpis", params={"by": "journey", "min_count": 10}),
                 400, "min_count_below_floor")
    assert_error(admin(client, workspace, "GET", "/api/v1/kpis", params={"by": "person"}), 400, "invalid_request")
    viewer = rapport.create_token(workspace.workspace_id, "viewer", "v", "test")
    assert_error(admin(client, workspace, "GET", "/api/v1/kpis", token=viewer), 403, "forbidden")


def test_the_commands_print_the_same_report(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                            campaign: dict[str, str], tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATABASE_URL", rapport.settings.database_url)
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path / "cli"))
    assert rapport.settings.master_key is not None
    monkeypatch.setenv("RAPPORT_MASTER_KEY", str(rapport.settings.master_key))
    runner = CliRunner()
    ws = workspace.workspace_id
    period = ["--from", campaign["period_from"], "--to", campaign["period_to"]]
    shown = runner.invoke(cli, ["insights", "kpis", "--by", "message", "-w", ws, *period, "--json"])
    assert shown.exit_code == 0, shown.output
    assert orjson.loads(shown.stdout) == kpis(client, workspace, "message", campaign)
    table = runner.invoke(cli, ["insights", "kpis", "--by", "journey", "-w", ws, *period], terminal_width=200)
    assert table.exit_code == 0, table.output
    assert "welcome" in table.stdout and "16.7%" in table.stdout and "50.0%" in table.stdout
    lowered = runner.invoke(cli, ["insights", "kpis", "-w", ws, "--min-count", "3"])
    assert lowered.exit_code == 1 and "below this workspace's minimum of 10" in lowered.output
    built = runner.invoke(cli, ["insights", "recommendations", "build", "-w", ws, "--json"])
    assert built.exit_code == 0 and orjson.loads(built.stdout)["orders"] == 4
    due = runner.invoke(cli, ["insights", "replenishment", "-w", ws, "--emit", "--json"])
    assert due.exit_code == 0 and orjson.loads(due.stdout) == {
        "due": [], "withheld": 0,
        "emitted": {"due": 0, "emitted": 0, "duplicates": 0, "unreachable": 0, "not_allowed": 0}}
