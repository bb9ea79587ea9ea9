"""The demo shop end to end: generated through the real ingestion path, with computed traits that add up."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from api.support import NOW, ApiClient
from conftest import Backend
from typer.testing import CliRunner

from rapport.api.app import create_app
from rapport.cli import app as cli
from rapport.clock import FrozenClock, parse_iso, seeded_rng
from rapport.core import Rapport
from rapport.demo.run import VISITOR_EVERY, DemoOptions, DemoResult, Generation, resource_text, run_demo
from rapport.demo.shop import Shop, Story
from rapport.identity.normalize import normalize
from rapport.ingestion.parse import parse_message
from rapport.profiles.service import ProfileReader
from rapport.segments.service import refresh
from rapport.storage.base import Conn
from rapport.types import WorkspaceId

SMALL = DemoOptions(customers=50, months=1, seed=7)
ROOT = Path(__file__).resolve().parents[2]


def stories(options: DemoOptions, now: int = NOW) -> list[Story]:
    """What ``run_demo`` sends for ``options``, in order (customers, with a visitor every other one)."""
    shop = Shop(seeded_rng(options.seed), now, options.months)
    out = []
    for n in range(options.customers):
        out.append(shop.customer(n))
        if n % VISITOR_EVERY == 0:
            out.append(shop.visitor(n))
    return out


def message_count(options: DemoOptions) -> int:
    return sum(len(s.messages) for s in stories(options))


@pytest.fixture(scope="module")
def demo(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rapport, DemoResult]]:
    """One small demo per backend, shared by the read-only tests of this module."""
    rapport = Rapport(backend.settings(tmp_path_factory.mktemp("demo")), clock=FrozenClock(NOW, seed=1))
    try:
        yield rapport, run_demo(rapport, SMALL)
    finally:
        rapport.close()


def test_the_demo_loads_every_generated_message(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    gen = result.generation
    expected = message_count(SMALL)
    assert result.created and not gen.skipped
    assert gen.messages == gen.accepted == expected
    # The cart-offer experiment's weeks add the orders of people who came back after the split.
    assert result.played is not None
    assert result.events == expected + result.played.orders == rapport.event_count(result.workspace_id)
    assert gen.rejected == gen.duplicates == gen.quarantined == 0
    assert {c.name for c in result.changes} >= {"orders_90d", "revenue_total", "shop", "marketing_email"}


def _orders(conn: Conn, ws: WorkspaceId) -> dict[str, int]:
    rows = conn.all("SELECT profile_id, count(*) FROM events WHERE workspace_id = ? AND name = 'Order Completed'"
                    " AND restricted = 0 GROUP BY profile_id", (ws,))
    return {str(p): int(n) for p, n in rows}


def test_computed_order_traits_match_the_stored_orders(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    ws = result.workspace_id
    rt = rapport.runtime(ws)

    def check(conn: Conn) -> int:
        orders = _orders(conn, ws)
        reader = ProfileReader(conn, rt, rapport.keyring)
        live = [str(r[0]) for r in conn.all(
            "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL", (ws,))]
        buyers = 0
        for profile_id in live:
            computed = reader.computed(profile_id, NOW)
            assert computed["order_count"] == orders.get(profile_id, 0), profile_id
            events = [reader.event_json(r) for r in conn.all(
                "SELECT seq, message_id, profile_id, origin_profile_id, type, name, user_id, anonymous_id, ts,"
                " received_at, restricted, flagged, body FROM events WHERE workspace_id = ? AND profile_id = ?"
                " AND name = 'Order Completed' AND restricted = 0", (ws, profile_id))]
            revenue = sum(e["message"]["properties"]["revenue"] for e in events)
            assert computed["revenue_total"] == pytest.approx(revenue), profile_id
            assert computed["orders_90d"] == len(events)
            buyers += bool(events)
        return buyers

    assert rapport.db.read(check) >= 5


def test_a_demo_customer_is_found_by_email_through_the_api(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    assert result.sample is not None
    client = ApiClient(create_app(rapport, worker=False))
    auth = {"Authorization": f"Bearer {result.admin_token}"}
    try:
        found = client.get("/api/v1/profiles/lookup", params={"email": result.sample.email}, headers=auth)
        assert found.status_code == 200, found.text
        profile = found.json()
        assert profile["id"] == result.sample.profile_id
        assert result.sample.email in profile["identifiers"]["email"]
        assert profile["computed"]["order_count"] >= 1
        assert {"first_name", "last_name", "city", "plan"} <= set(profile["traits"])
        assert profile["consent"]["analytics"]["allowed"] is True
        timeline = client.get(f"/api/v1/profiles/{profile['id']}/events", params={"limit": 5}, headers=auth)
        assert timeline.status_code == 200 and len(timeline.json()["events"]) == 5
        history = client.get(f"/api/v1/profiles/{profile['id']}/consent", headers=auth)
        assert history.status_code == 200 and history.json()
    finally:
        client.close()


def test_running_the_demo_again_reuses_the_workspace(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, first = demo
    again = run_demo(rapport, SMALL)
    assert again.workspace_id == first.workspace_id and not again.created
    assert again.generation.skipped and again.events == first.events
    assert all(c.action == "unchanged" for c in again.changes)
    assert rapport.authenticate(again.admin_token).role == "admin"
    assert rapport.authenticate(again.write_key).kind == "write_key"


class _Stop(Exception):
    pass


def test_an_interrupted_demo_continues_where_it_stopped(rapport: Rapport) -> None:
    options = dataclasses.replace(SMALL, workspace=f"demo-{secrets.token_hex(4)}", batch_size=100)
    seen: list[int] = []

    def stop_after_two(stats: Generation, total: int) -> None:
        seen.append(stats.customers)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_demo(rapport, options, stop_after_two)
    resumed = run_demo(rapport, options)
    gen = resumed.generation
    assert 0 < gen.resumed_from == seen[-1] < options.customers
    assert resumed.played is not None
    assert resumed.events == message_count(options) + resumed.played.orders
    assert gen.accepted + gen.duplicates == gen.messages
    withdrawn = rapport.db.read(lambda c: c.value(
        "SELECT count(*) FROM consent_ledger WHERE workspace_id = ? AND state = 'withdrawn'",
        (resumed.workspace_id,)))
    assert withdrawn == sum(len(s.withdrawals) for s in stories(options))


def test_the_stories_are_reproducible_and_valid() -> None:
    first, again = stories(SMALL), stories(SMALL)
    assert first == again
    assert stories(dataclasses.replace(SMALL, seed=8))[0] != first[0]
    ids = [m["messageId"] for s in first for m in s.messages]
    assert len(ids) == len(set(ids))
    for story in first:
        times = [parse_iso(m["timestamp"]) for m in story.messages]
        assert times == sorted(times) and times[-1] < NOW
        for raw in story.messages:
            parse_message(raw, implied_type=None, received_at=NOW, batch_sent_at=None, batch_context=None,
                          new_id=lambda: "unused")
            phone = raw.get("traits", {}).get("phone")
            if phone is not None:
                normalized = normalize("phone", phone)
                assert normalized is not None and normalized.value == phone


def test_the_shop_has_the_promised_people() -> None:
    people = stories(DemoOptions(customers=400, months=6, seed=3))
    customers = [s for s in people if s.user_id is not None]
    messages = [m for s in people for m in s.messages]
    events = {m.get("event") for m in messages}
    assert {"Product Viewed", "Cart Added", "Order Completed", "Email Delivered", "Email Opened",
            "Email Link Clicked", "Ticket Created", "Unsubscribed"} <= events
    assert any(m["type"] == "page" and "userId" not in m for m in messages)
    assert sum(1 for s in people if s.user_id is None) == 200

    def anonymous_first(story: Story) -> bool:
        anonymous = {m["anonymousId"] for m in story.messages if "userId" not in m and "anonymousId" in m}
        return any(m.get("anonymousId") in anonymous for m in story.messages if "userId" in m)

    assert sum(anonymous_first(s) for s in customers) > 50
    identifies = [m for m in messages if m["type"] == "identify"]
    assert sum(1 for m in identifies if "email" in m["traits"]) > len(customers)
    assert any(m["context"]["consent"]["categoryPreferences"]["Analytics"] is False for m in identifies)
    assert sum(len(s.withdrawals) for s in customers) > 5
    orders = [m for m in messages if m.get("event") == "Order Completed"]
    assert any("currency" not in m["properties"] for m in orders)
    assert all(m["properties"]["revenue"] > 0 for m in orders)
    assert all(m["traits"]["phone"].startswith("+") for m in identifies if "phone" in m["traits"])


def test_the_default_demo_is_a_realistic_size() -> None:
    defaults = DemoOptions()
    assert defaults.customers >= 5000 and defaults.months >= 6
    assert message_count(defaults) >= 200_000


def test_the_packaged_resources_are_the_examples() -> None:
    examples = sorted((ROOT / "examples" / "demo").glob("*.yaml"))
    packaged = sorted((ROOT / "rapport" / "demo" / "resources").glob("*.yaml"))
    assert [p.name for p in examples] == [p.name for p in packaged] and examples
    for example, shipped in zip(examples, packaged, strict=True):
        assert example.read_text() == shipped.read_text(), example.name
    assert "kind: TrackingPlan" in resource_text()


def test_the_demo_command_prints_keys_and_a_tour(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAPPORT_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("RAPPORT_DATABASE_URL", raising=False)
    result = CliRunner().invoke(cli, ["demo", "--customers", "20", "--months", "1", "--no-serve", "--port", "8123"])
    assert result.exit_code == 0, result.output
    assert "write_key: wk_" in result.stdout and "admin_token: " in result.stdout
    assert "http://127.0.0.1:8123" in result.stdout
    assert "/api/v1/profiles/lookup?email=" in result.stdout


def test_live_segment_membership_equals_the_batch_refresh(demo: tuple[Rapport, DemoResult]) -> None:
    rapport, result = demo
    report = {r.segment: r for r in result.segments}
    assert set(report) == set(rapport.runtime(result.workspace_id).segments)
    assert [(r.segment, r.entered, r.exited) for r in result.segments if r.entered or r.exited] == []
    assert report["active"].members > 0, "the group's default segment takes everyone else"
    # A second refresh, later, still finds nothing to fix.
    again = rapport.db.write(lambda c: refresh(c, rapport.runtime(result.workspace_id), rapport.clock))
    assert sum(r.entered + r.exited for r in again) == 0
