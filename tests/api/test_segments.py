"""Segments through the admin API: the DESIGN 4.4 examples, live entries, on-time exits, preview,
members, explain, history, overlap, refresh, errors and roles (on SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

from api.support import (
    NOW,
    ApiClient,
    admin,
    apply_yaml,
    assert_error,
    profile_of,
    timeline,
    track,
)
from rapport.api.app import run_backfills, run_segments
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.types import DAY, HOUR, MINUTE

GRANT = {"consent": {"categoryPreferences": {"Analytics": True, "Email": True}}}
DESIGN = """
kind: ComputedTrait
name: orders_90d
event: Order Completed
aggregate: count          # count | sum | avg | min | max | first | last | distinct
window: 90d               # optional; absent = all time
---
kind: ComputedTrait
name: revenue_total
event: Order Completed
aggregate: sum
property: revenue
---
kind: Segment
name: vip
description: High spenders who bought recently
owner: crm
purpose: marketing_email  # consent purpose required to act on this segment
priority: 100             # wins over lower priorities inside the same exclusive group
group: lifecycle          # exclusive group: a profile sits in at most one segment of a group
rule: computed.revenue_total > 200 and count("Order Completed", within=30d) >= 1
---
kind: Segment
name: lapsed
owner: crm
purpose: marketing_email
priority: 10
group: lifecycle
rule: computed.orders_90d == 0 and exists(traits.email)
"""


def identify(client: ApiClient, ws: NewWorkspace, user: str, **traits: Any) -> None:
    response = track(client, ws, "/v1/identify", {"userId": user, "traits": traits, "context": GRANT})
    assert response.status_code == 200, response.text


def order(client: ApiClient, ws: NewWorkspace, user: str, revenue: float, at: int) -> None:
    response = track(client, ws, "/v1/track", {"userId": user, "event": "Order Completed", "context": GRANT,
                                               "properties": {"revenue": revenue}, "timestamp": to_iso(at)})
    assert response.status_code == 200, response.text


def segments_of(client: ApiClient, ws: NewWorkspace, user: str) -> list[str]:
    return list(profile_of(client, ws, user_id=user)["segments"])


def settle(rapport: Rapport, ws: NewWorkspace) -> None:
    rapport.runtime(ws.workspace_id, fresh=True)
    run_backfills(rapport)
    run_segments(rapport)


def test_design_examples_apply_and_behave(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock
) -> None:
    identify(client, workspace, "buyer", email="buyer@example.com")
    order(client, workspace, "buyer", 150, NOW - 2 * DAY)
    order(client, workspace, "buyer", 100, NOW - 10 * DAY)
    identify(client, workspace, "dormant", email="dormant@example.com")
    identify(client, workspace, "anon-ish", plan="free")  # no email: in neither segment
    assert apply_yaml(client, workspace, DESIGN).status_code == 200
    settle(rapport, workspace)
    assert segments_of(client, workspace, "buyer") == ["vip"]
    assert segments_of(client, workspace, "dormant") == ["lapsed"]
    assert segments_of(client, workspace, "anon-ish") == []

    # Live: an email makes a profile lapsed at once; an order of 250 makes it vip instead (the group).
    identify(client, workspace, "anon-ish", email="late@example.com")
    assert segments_of(client, workspace, "anon-ish") == ["lapsed"]
    order(client, workspace, "anon-ish", 250, NOW)
    assert segments_of(client, workspace, "anon-ish") == ["vip"]
    names = [(e["name"], e["message"]["properties"]["segment"]) for e in timeline(
        client, workspace, profile_of(client, workspace, user_id="anon-ish")["id"])
        if e["name"] in ("Segment Entered", "Segment Exited")]
    assert sorted(names) == [("Segment Entered", "lapsed"), ("Segment Entered", "vip"), ("Segment Exited", "lapsed")]

    # On time: "a purchase within 30 days" ends exactly 30 days after the last order's second.
    last_order = NOW - 2 * DAY
    clock.set(last_order + 30 * DAY - 1)
    run_segments(rapport)
    assert segments_of(client, workspace, "buyer") == ["vip"]
    clock.set(last_order + 30 * DAY + 5 * MINUTE)
    run_segments(rapport)
    assert segments_of(client, workspace, "buyer") == []
    stays = admin(client, workspace, "GET", "/api/v1/segments/vip/history").json()["stays"]
    buyer = profile_of(client, workspace, user_id="buyer")["id"]
    [stay] = [s for s in stays if s["profile_id"] == buyer]
    assert stay["exited_at"] == to_iso(last_order + 30 * DAY)
    # ... and lapsed once no order is left in 90 days.
    clock.set(NOW - 2 * DAY + 90 * DAY + HOUR)
    run_segments(rapport)
    assert segments_of(client, workspace, "buyer") == ["lapsed"]
    report = admin(client, workspace, "POST", "/api/v1/segments/refresh", json={}).json()["segments"]
    assert {r["name"]: r["differences"] for r in report} == {"lapsed": 0, "vip": 0}


def test_preview_counts_and_pages(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    for i in range(5):
        identify(client, workspace, f"u{i}", plan="pro" if i % 2 == 0 else "free", age=20 + i)
    body = {"rule": 'traits.plan == "pro" and traits.age >= 21', "limit": 1}
    first = admin(client, workspace, "POST", "/api/v1/segments/preview", json=body).json()
    assert first["count"] == 2 and len(first["members"]) == 1 and first["next"]
    assert first["members"][0]["identifiers"]["user_id"] in (["u2"], ["u4"])
    second = admin(client, workspace, "POST", "/api/v1/segments/preview",
                   json={**body, "cursor": first["next"]}).json()
    assert second["next"] is None and len(second["members"]) == 1
    ids = {first["members"][0]["identifiers"]["user_id"][0], second["members"][0]["identifiers"]["user_id"][0]}
    assert ids == {"u2", "u4"}
    past = admin(client, workspace, "POST", "/api/v1/segments/preview",
                 json={"rule": 'count("Order Completed") >= 1', "as_of": "2020-01-01T00:00:00Z"}).json()
    assert past["count"] == 0


def test_bad_rules_are_precise_errors(client: ApiClient, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "POST", "/api/v1/segments/preview", json={"rule": "computed.ordrs_90d > 1"})
    body = assert_error(response, 400, "invalid_rule")
    assert "ordrs_90d" in body["message"]
    response = apply_yaml(client, workspace, "kind: Segment\nname: s\nrule: computed.revenue_totl > 1\n")
    body = assert_error(response, 400, "invalid_resource")
    assert body["details"][0]["field"] == "rule" and "revenue_total" in body["details"][0]["message"]
    cycle = "kind: Segment\nname: a\nrule: in_segment(\"b\")\n---\nkind: Segment\nname: b\nrule: in_segment(\"a\")\n"
    assert "cycle" in assert_error(apply_yaml(client, workspace, cycle), 400, "invalid_resource")["details"][0][
        "message"]


def test_members_explain_overlap_and_activation(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    identify(client, workspace, "a", plan="pro")
    no_email = {"consent": {"categoryPreferences": {"Analytics": True, "Email": False}}}
    track(client, workspace, "/v1/identify", {"userId": "b", "traits": {"plan": "pro"}, "context": no_email})
    identify(client, workspace, "c", plan="free")
    segs = ('kind: Segment\nname: pro\npurpose: marketing_email\nrule: traits.plan == "pro"\n---\n'
            'kind: Segment\nname: anyone\nrule: exists(traits.plan)\n')
    assert apply_yaml(client, workspace, segs).status_code == 200
    settle(rapport, workspace)
    members = admin(client, workspace, "GET", "/api/v1/segments/pro/members").json()["members"]
    assert sorted((m["identifiers"]["user_id"][0], m["activatable"]) for m in members) == [("a", True),
                                                                                           ("b", False)]
    apart = admin(client, workspace, "GET", "/api/v1/segments/pro/members",
                  params={"activatable": "false"}).json()["members"]
    assert [m["identifiers"]["user_id"] for m in apart] == [["b"]]
    c = profile_of(client, workspace, user_id="c")["id"]
    why = admin(client, workspace, "GET", "/api/v1/segments/pro/explain", params={"profile_id": c}).json()
    assert why["member"] is False and why["tree"]["value"] is False
    assert why["tree"]["reason"] == 'traits.plan = "free", needs == "pro"'
    overlap = admin(client, workspace, "GET", "/api/v1/segments/overlap", params={"names": "pro,anyone"}).json()
    assert overlap["matrix"] == [[2, 2], [2, 3]]
    catalog = {s["name"]: s for s in admin(client, workspace, "GET", "/api/v1/segments").json()["segments"]}
    assert catalog["pro"]["lineage"]["traits"] == ["plan"] and catalog["pro"]["members"] == 2
    assert_error(admin(client, workspace, "GET", "/api/v1/segments/nope/members"), 404, "segment_not_found")


def test_versions_list_what_changed(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    first = "kind: Segment\nname: buyers\nowner: crm\nrule: computed.orders_90d >= 1\n"
    assert apply_yaml(client, workspace, first).status_code == 200
    second = ("kind: Segment\nname: buyers\nowner: growth\nrefresh: 1d\n"
              "rule: computed.orders_90d >= 2\n")
    assert apply_yaml(client, workspace, second).status_code == 200
    assert apply_yaml(client, workspace, second).status_code == 200, "an identical apply makes no version"
    body = admin(client, workspace, "GET", "/api/v1/segments/buyers/versions").json()
    assert [v["version"] for v in body["versions"]] == [1, 2]
    assert {c["field"] for c in body["versions"][0]["changes"]} >= {"owner", "rule"}
    assert body["versions"][1]["changes"] == [
        {"field": "owner", "before": "crm", "after": "growth"},
        {"field": "rule", "before": "computed.orders_90d >= 1", "after": "computed.orders_90d >= 2"},
        {"field": "refresh", "before": None, "after": "1d"},
    ]
    assert body["versions"][1]["spec"]["owner"] == "growth"
    assert_error(admin(client, workspace, "GET", "/api/v1/segments/nobody/versions"), 404, "segment_not_found")


def test_a_refresh_cadence_reconciles_on_time(client: ApiClient, rapport: Rapport, workspace: NewWorkspace,
                                              clock: FrozenClock) -> None:
    fast = "kind: Segment\nname: fast\nrule: computed.orders_90d >= 1\nrefresh: 30s\n"
    response = apply_yaml(client, workspace, fast)
    detail = assert_error(response, 400, "invalid_resource")["details"][0]
    assert detail["field"] == "refresh" and "1m" in detail["message"]
    doc = "kind: Segment\nname: buyers\nrefresh: 1h\nrule: computed.orders_90d >= 1\n"
    assert apply_yaml(client, workspace, doc).status_code == 200
    settle(rapport, workspace)
    identify(client, workspace, "u1", email="u1@example.com")
    order(client, workspace, "u1", 10, clock.now_ms())
    assert segments_of(client, workspace, "u1") == ["buyers"]
    entry = admin(client, workspace, "GET", "/api/v1/segments/buyers").json()
    first = entry["refreshed_at"]
    assert entry["refresh"] == "1h" and entry["next_refresh_at"] == to_iso(NOW + HOUR)
    assert first == to_iso(NOW)
    # Membership that drifted from the rule (here: removed behind the engine's back) is put right by
    # the next scheduled refresh, not before.
    rapport.db.write(lambda c: c.execute("DELETE FROM segment_history WHERE workspace_id = ?",
                                         (workspace.workspace_id,)))
    clock.set(NOW + HOUR - 1)
    run_segments(rapport)
    assert segments_of(client, workspace, "u1") == []
    assert admin(client, workspace, "GET", "/api/v1/segments/buyers").json()["refreshed_at"] == first
    clock.set(NOW + HOUR)
    run_segments(rapport)
    assert segments_of(client, workspace, "u1") == ["buyers"]
    entry = admin(client, workspace, "GET", "/api/v1/segments/buyers").json()
    assert entry["refreshed_at"] == to_iso(NOW + HOUR) and entry["next_refresh_at"] == to_iso(NOW + 2 * HOUR)
    without = apply_yaml(client, workspace, "kind: Segment\nname: manual\nrule: computed.orders_90d >= 1\n")
    assert without.status_code == 200
    settle(rapport, workspace)
    assert admin(client, workspace, "GET", "/api/v1/segments/manual").json()["next_refresh_at"] is None


def test_explain_masks_encrypted_values(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    identify(client, workspace, "a", email="a@example.com")
    doc = "kind: Segment\nname: no_email\nrule: not exists(traits.email)\n"
    assert apply_yaml(client, workspace, doc).status_code == 200
    settle(rapport, workspace)
    a = profile_of(client, workspace, user_id="a")["id"]
    response = admin(client, workspace, "GET", "/api/v1/segments/no_email/explain", params={"profile_id": a})
    leaf = response.json()["tree"]["children"][0]
    assert leaf == {**leaf, "path_value": "(encrypted)", "negated": True,
                    "reason": "traits.email = (encrypted), needs it missing"}
    assert "$pii" not in response.text and "a@example.com" not in response.text


def _counting_writes(rapport: Rapport, monkeypatch: Any) -> list[object]:
    """Every writer transaction from now on (its function), in order."""
    writes: list[object] = []
    real = rapport.db.write

    def write(fn: Any, *args: Any, **kwargs: Any) -> Any:
        writes.append(fn)
        return real(fn, *args, **kwargs)

    monkeypatch.setattr(rapport.db, "write", write)
    return writes


def test_a_refresh_read_in_ranges_finds_every_difference(client: ApiClient, rapport: Rapport,
                                                         workspace: NewWorkspace, monkeypatch: Any) -> None:
    """Split between reader connections (as for a large workspace), a refresh still finds a stored
    membership that drifted from the rules, at either end and in the middle of the id order, and fixes it."""
    from rapport.segments import service

    monkeypatch.setattr(service, "SPLIT_FROM", 0)
    monkeypatch.setattr(service, "READ_PARTS", 3)
    users = [f"r{i}" for i in range(9)]
    for i, user in enumerate(users):
        identify(client, workspace, user, plan="pro" if i % 2 == 0 else "free")
        order(client, workspace, user, 10.0, NOW - HOUR)
    apply_yaml(client, workspace, "kind: Segment\nname: pros\nrule: traits.plan == \"pro\"\n---\n"
                                  "kind: Segment\nname: buyers\nrule: count(\"Order Completed\", within=1d) >= 1\n")
    settle(rapport, workspace)
    pros = {profile_of(client, workspace, user_id=u)["id"] for u in users[::2]}
    ordered = sorted(profile_of(client, workspace, user_id=u)["id"] for u in users)
    lost = [ordered[0], ordered[4]]  # their stays are closed behind the engine's back
    extra = max(set(ordered) - pros)  # gets a stay in "pros" it does not qualify for

    def drift(conn: Any) -> None:
        conn.execute("UPDATE segment_history SET exited_at = ? WHERE workspace_id = ? AND profile_id IN (?, ?)"
                     " AND exited_at IS NULL", (NOW, workspace.workspace_id, *lost))
        conn.execute("INSERT INTO segment_history (workspace_id, segment, profile_id, version, entered_at)"
                     " VALUES (?, 'pros', ?, 1, ?)", (workspace.workspace_id, extra, NOW))

    rapport.db.write(drift)
    report = {r["name"]: r for r in admin(client, workspace, "POST", "/api/v1/segments/refresh",
                                          json={}).json()["segments"]}
    assert report["buyers"]["entered"] == 2 and report["buyers"]["exited"] == 0
    assert report["pros"]["entered"] == len(pros & set(lost)) and report["pros"]["exited"] == 1
    assert report["pros"]["members"] == 5 and report["buyers"]["members"] == 9
    assert [u for u in users if segments_of(client, workspace, u) == ["buyers", "pros"]] == users[::2]
    assert [u for u in users if segments_of(client, workspace, u) == ["buyers"]] == users[1::2]
    again = admin(client, workspace, "POST", "/api/v1/segments/refresh", json={}).json()["segments"]
    assert all(r["entered"] == 0 and r["exited"] == 0 for r in again)
    # Many differences (a first population): the writer compares again range by range, in transactions
    # of WRITE_PART profiles (2 here: 5 ranges of the 9 profiles).
    monkeypatch.setattr(service, "RECHECK_LIMIT", 1)
    monkeypatch.setattr(service, "WRITE_PART", 2)
    writes = _counting_writes(rapport, monkeypatch)
    rapport.db.write(drift)
    report = {r["name"]: r for r in admin(client, workspace, "POST", "/api/v1/segments/refresh",
                                          json={}).json()["segments"]}
    assert report["buyers"]["entered"] == 2 and report["pros"]["exited"] == 1
    assert [u for u in users if segments_of(client, workspace, u) == ["buyers", "pros"]] == users[::2]
    called = [(getattr(getattr(w, "func", w), "__name__", ""), getattr(w, "keywords", {})) for w in writes]
    names = [name for name, _ in called]
    assert names == ["drift", *["store"] * 5, "finish"]
    scopes = [keywords["scope"] for name, keywords in called if name == "store"]
    assert [s.low for s in scopes] == [None, *(s.high for s in scopes[:-1])] and scopes[-1].high is None


def test_a_refresh_does_not_undo_what_live_evaluation_did_after_it_read(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock, monkeypatch: Any) -> None:
    """The writer compares again as of its own instant: an order placed after the refresh read (a later
    second) keeps its buyer a member, where comparing as of the reading instant would exit it."""
    from rapport.segments import service

    identify(client, workspace, "late", plan="pro")
    apply_yaml(client, workspace, "kind: Segment\nname: buyers\nrule: count(\"Order Completed\", within=1d) >= 1\n")
    settle(rapport, workspace)
    late = profile_of(client, workspace, user_id="late")["id"]
    rapport.db.write(lambda c: c.execute(  # a stay it does not qualify for: the reading finds it different
        "INSERT INTO segment_history (workspace_id, segment, profile_id, version, entered_at) VALUES (?, ?, ?, 1, ?)",
        (workspace.workspace_id, "buyers", late, clock.now_ms())))
    real = service._differences

    def read_then_order(conn: Any, rt: Any, layer: Any, at: int, scope: Any = None) -> Any:
        found = real(conn, rt, layer, at, scope)
        if scope is not None and scope.ids is None:  # the reading, before the writer's pass
            clock.set(at + 1000)
            order(client, workspace, "late", 20, at + 1000)
        return found

    monkeypatch.setattr(service, "_differences", read_then_order)
    report = service.refresh_database(rapport.db, rapport.runtime(workspace.workspace_id), clock)
    assert report == [service.Reconciliation("buyers", 1, 0, 0)]
    assert segments_of(client, workspace, "late") == ["buyers"]
    moves = [e for e in timeline(client, workspace, late) if e["name"] in ("Segment Entered", "Segment Exited")]
    assert moves == []


def test_a_flip_due_while_a_new_version_is_populated_in_parts_is_not_passed_over(
        client: ApiClient, rapport: Rapport, workspace: NewWorkspace, clock: FrozenClock, monkeypatch: Any) -> None:
    """Each part of a population times its profiles' next flips as of the instant it compared them: a
    member whose window ends while later parts are written still leaves on time."""
    from rapport.segments import service

    for user in ("a", "b"):
        order(client, workspace, user, 10, NOW - 30 * MINUTE)
    real = service._differences

    def then_two_hours_pass(conn: Any, rt: Any, layer: Any, at: int, scope: Any = None) -> Any:
        found = real(conn, rt, layer, at, scope)
        clock.set(at + 2 * HOUR)
        return found

    monkeypatch.setattr(service, "WRITE_PART", 1)
    monkeypatch.setattr(service, "_differences", then_two_hours_pass)
    apply_yaml(client, workspace, "kind: Segment\nname: buyers\nrule: count(\"Order Completed\", within=1h) >= 1\n")
    settle(rapport, workspace)
    monkeypatch.setattr(service, "_differences", real)
    run_segments(rapport)
    stays = admin(client, workspace, "GET", "/api/v1/segments/buyers/history").json()["stays"]
    first = min(profile_of(client, workspace, user_id=u)["id"] for u in ("a", "b"))
    # The first part entered its profile; the second, two hours on, fired its exit at its instant first.
    assert [(s["profile_id"], s["entered_at"], s["exited_at"]) for s in stays] == [
        (first, to_iso(NOW), to_iso(NOW + 30 * MINUTE))]
    report = service.refresh_database(rapport.db, rapport.runtime(workspace.workspace_id), clock)
    assert report == [service.Reconciliation("buyers", 0, 0, 0)]
