"""The durable journey engine on SQLite and PostgreSQL: the DESIGN cart-abandonment journey on a frozen clock,
re-entry, exactly-once sends across replays, retries and crashes, consent at dispatch, and timer leases."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Backend

from rapport.channels.base import Channel
from rapport.channels.memory import MemoryChannel
from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.errors import Terminal, Transient
from rapport.journeys.engine import (
    MAX_ATTEMPTS,
    SEGMENT_ENTERED,
    SEND_LEASE_MS,
    TIMER_RETRY_MS,
    EventResult,
    JourneyEngine,
    PendingSend,
    Recipient,
    backoff,
    journeys_of,
)
from rapport.journeys.gate import GateInput
from rapport.journeys.machine import EXIT_WHEN, idempotency_key
from rapport.journeys.model import HOLDOUT, Journey, SplitStep, build
from rapport.journeys.split import assign
from rapport.rules import DictContext, EvalContext
from rapport.rules.ast import EventFn
from rapport.storage.base import Conn, Database
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sqlite.database import SqliteDatabase
from rapport.types import DAY, HOUR, MINUTE, Json, Millis

CART_ABANDONMENT = """\
kind: Journey
name: cart_abandonment
purpose: marketing_email
entry: {event: Cart Added}
reentry: after 7d
exit_when: count("Order Completed", within=1h) >= 1
goal: {event: Order Completed, within: 3d}
steps:
  - wait_for:
      event: Order Completed
      correlate: cart_id
      timeout: 15m
      on_event: [{exit: converted}]
  - send: {channel: email, template: cart_reminder}
  - delay: 45m
  - send: {channel: push, template: cart_push}
  - delay: 23h
  - branch:
      if: consent.marketing_sms
      then: [{send: {channel: sms, template: cart_sms}}]
  - split:
      holdout: 10
      paths:
        a: {weight: 50, steps: [{send: {channel: email, template: cart_offer_10}}]}
        b: {weight: 50, steps: [{send: {channel: email, template: cart_offer_free_shipping}}]}
"""
TEMPLATES: Mapping[str, Mapping[str, Any]] = {
    "cart_reminder": {
        "subject": "{{ traits.first_name | default: 'Hi' }}, your cart is waiting",
        "text": "{% if computed.orders_90d > 0 %}Welcome back!{% else %}Still thinking it over?{% endif %}\n"
                "{{ event.product_name }} is still in your cart.",
    },
    "cart_push": {"title": "Your cart", "body": "{{ event.product_name }} is waiting"},
    "cart_sms": {"text": "Your {{ event.product_name }} is waiting"},
    "cart_offer_10": {"subject": "10% off", "text": "Take 10% off {{ event.product_name }}"},
    "cart_offer_free_shipping": {"subject": "Free shipping", "text": "Free shipping on {{ event.product_name }}"},
    "ping": {"subject": "Ping", "text": "ping"},
}
CART = {"cart_id": "c1", "product_name": "Desk Lamp"}
ORDERS_LAST_HOUR = EventFn("count", "Order Completed", within_ms=HOUR)


def journey(text: str, version: int = 1) -> Journey:
    return build(yaml.safe_load(text), version)


def simple(name: str, reentry: str, entry: str = "{event: Signed Up}", steps: str = "[{delay: 1h}, "
           "{send: {channel: email, template: ping}}]") -> Journey:
    return journey(f"kind: Journey\nname: {name}\npurpose: marketing_email\nentry: {entry}\nreentry: {reentry}\n"
                   f"steps: {steps}\n")


def facts(now: Millis, *, sms: bool = False, orders_last_hour: int = 0) -> DictContext:
    return DictContext({"traits": {}, "consent": {"marketing_sms": sms}}, now_ms=now,
                       functions={ORDERS_LAST_HOUR: orders_last_hour})


@dataclass
class Harness:
    """An engine over the module's database, memory channels and one workspace."""

    db: Database
    clock: FrozenClock
    ws: str
    engine: JourneyEngine
    channels: dict[str, MemoryChannel]
    journeys: list[Journey]

    def event(self, profile: str, name: str, properties: Mapping[str, Json] | None = None,
              ctx: EvalContext | None = None) -> EventResult:
        now = self.clock.now_ms()
        return self.db.write(lambda c: self.engine.on_event(c, self.ws, self.journeys, profile, name,
                                                            properties or {}, ctx or facts(now), now))

    def consent(self, profile: str, purpose: str, state: str) -> None:
        grant(self.db, self.clock, self.ws, profile, purpose, state)

    def dispatch(self, limit: int = 200) -> dict[str, int]:
        return dict(asyncio.run(self.engine.dispatch(limit, ws=self.ws)).counts)

    def run_due(self) -> list[str]:
        return self.engine.run_due(ws=self.ws)

    def log(self, profile: str) -> list[dict[str, Any]]:
        columns = [c.strip() for c in journeys_sql.SEND_COLUMNS.split(",")]
        rows = self.db.read(lambda c: journeys_sql.sends_of(c, self.ws, profile_id=profile))
        return [dict(zip(columns, row, strict=True)) for row in rows]

    def timer(self, enrollment_id: str) -> int | None:
        return self.db.read(lambda c: journeys_sql.timer(c, self.ws, enrollment_id))

    def sent(self, channel: str) -> list[str]:
        return [m.to for m in self.channels[channel].sent]


def grant(db: Database, clock: FrozenClock, ws: str, profile: str, purpose: str = "marketing_email",
          state: str = "granted") -> None:
    """Record the person's choice about ``purpose`` now, as the consent API does."""
    now = clock.now_ms()
    row = (clock.new_id("cns"), profile, profile, purpose, state, "consent", "api", None, None, now, now, None, None)
    db.write(lambda c: consent_sql.append(c, ws, row))


def recipient(conn: Conn, ws: str, profile_id: str, channel: str, group: str | None) -> Recipient | None:
    if profile_id.startswith("nobody"):
        return None
    return Recipient(f"{profile_id}@shop.example" if channel == "email" else f"device-{profile_id}",
                     traits={"first_name": "Ada"}, computed={"orders_90d": 0})


def make_engine(db: Database, clock: FrozenClock, journeys: list[Journey],
                channels: Mapping[str, Channel]) -> JourneyEngine:
    return JourneyEngine(db, clock, channels, journeys=journeys_of(journeys), templates=TEMPLATES,
                         recipient=recipient, facts=lambda conn, ws, profile, now: facts(now, sms=True))


@pytest.fixture
def h(rapport: Rapport, clock: FrozenClock) -> Iterator[Harness]:
    ws = rapport.create_workspace(f"journeys-{clock.new_id('t')}").workspace_id
    channels = {name: MemoryChannel(clock, name) for name in ("email", "push", "sms")}
    journeys = [journey(CART_ABANDONMENT)]
    yield Harness(rapport.db, clock, ws, make_engine(rapport.db, clock, journeys, channels), channels, journeys)


def test_the_cart_journey_reminds_after_15_minutes_and_the_goal_stops_the_rest(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    t0 = h.clock.now_ms()
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    assert h.timer(enrollment) == t0 + 15 * MINUTE

    h.clock.advance(15 * MINUTE - 1)
    assert h.run_due() == []
    assert h.dispatch() == {}
    assert h.log("p1") == []

    h.clock.advance(1)
    assert h.run_due() == [enrollment]
    [scheduled] = h.log("p1")
    assert (scheduled["status"], scheduled["step_id"], scheduled["template"]) == ("scheduled", "1", "cart_reminder")
    assert scheduled["idempotency_key"] == idempotency_key(enrollment, "1")
    assert h.timer(enrollment) == t0 + HOUR

    assert h.dispatch() == {"sent": 1}
    [message] = h.channels["email"].sent
    assert (message.to, message.subject) == ("p1@shop.example", "Ada, your cart is waiting")
    assert message.text == "Still thinking it over?\nDesk Lamp is still in your cart."
    assert message.idempotency_key == scheduled["idempotency_key"]
    [sent] = h.log("p1")
    assert (sent["status"], sent["provider_id"], sent["sent_at"]) == ("sent", "email-1", t0 + 15 * MINUTE)

    h.clock.advance(5 * MINUTE)
    assert h.event("p1", "Order Completed", {"cart_id": "c1"}).stepped == (enrollment,)
    [state] = h.engine.enrollments(h.ws, "p1")
    assert state.status == "converted"
    assert h.timer(enrollment) is None
    h.clock.advance(3 * DAY)
    assert h.run_due() == []
    assert h.dispatch() == {}
    assert (h.sent("push"), h.sent("sms"), len(h.sent("email"))) == ([], [], 1)


def test_an_order_during_the_first_wait_sends_nothing(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    h.clock.advance(5 * MINUTE)
    h.event("p1", "Order Completed", {"cart_id": "c1"})
    h.clock.advance(DAY)
    assert h.run_due() == []
    assert h.dispatch() == {}
    assert h.log("p1") == []
    assert h.engine.enrollments(h.ws, "p1")[0].status == "converted"
    assert h.timer(enrollment) is None


def test_exit_when_acts_mid_delay(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    h.clock.advance(15 * MINUTE)
    h.run_due()
    h.clock.advance(10 * MINUTE)
    # An order recorded through another source: the facts count it although this event is not the goal.
    now = h.clock.now_ms()
    assert h.event("p1", "Page Viewed", {}, facts(now, orders_last_hour=1)).stepped == (enrollment,)
    [state] = h.engine.enrollments(h.ws, "p1")
    assert (state.status, state.reason) == ("exited", EXIT_WHEN)
    assert h.timer(enrollment) is None
    h.clock.advance(2 * DAY)
    assert h.run_due() == []
    h.dispatch()
    assert h.sent("push") == []
    assert [r["template"] for r in h.log("p1")] == ["cart_reminder"]


def test_the_whole_journey_runs_on_the_frozen_clock(h: Harness) -> None:
    for purpose in ("marketing_email", "marketing_push", "marketing_sms"):
        h.consent("p1", purpose, "granted")
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    for step in (15 * MINUTE, 45 * MINUTE, 23 * HOUR):
        h.clock.advance(step)
        assert h.run_due() == [enrollment]
        h.dispatch()
    split = h.journeys[0].step("6")
    assert isinstance(split, SplitStep)
    path = assign("cart_abandonment", split, "p1")
    offer = {"a": ["cart_offer_10"], "b": ["cart_offer_free_shipping"], HOLDOUT: []}[path]
    assert [r["template"] for r in h.log("p1")] == ["cart_reminder", "cart_push", "cart_sms", *offer]
    assert h.channels["push"].sent[0].subject == "Your cart"
    assert h.channels["push"].sent[0].text == "Desk Lamp is waiting"
    assert h.channels["sms"].sent[0].text == "Your Desk Lamp is waiting"
    assert {r["status"] for r in h.log("p1")} == {"sent"}
    assert h.timer(enrollment) is None
    [state] = h.engine.enrollments(h.ws, "p1")
    assert (state.status, state.reason) == (("exited", HOLDOUT) if path == HOLDOUT else ("completed", None))
    assignments = h.db.read(lambda c: c.value("SELECT assignments FROM journey_enrollments WHERE workspace_id = ?"
                                              " AND id = ?", (h.ws, enrollment)))
    assert json.loads(assignments) == {"6": path}


def test_run_due_twice_at_the_same_instant_sends_once(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    h.clock.advance(15 * MINUTE)
    assert h.run_due() == [enrollment]
    assert h.run_due() == []
    h.dispatch()
    h.dispatch()
    assert len(h.log("p1")) == 1
    assert (len(h.channels["email"].sent), h.channels["email"].attempts) == (1, 1)


def test_a_replayed_tick_records_its_send_once(h: Harness) -> None:
    """A worker stepping from an older copy of the enrollment commands the same send again; its key is taken."""
    h.consent("p1", "marketing_email", "granted")
    [enrollment] = h.event("p1", "Cart Added", CART).entered
    old = h.db.read(lambda c: journeys_sql.enrollment(c, h.ws, enrollment))
    assert old is not None
    h.clock.advance(15 * MINUTE)
    h.run_due()
    h.dispatch()

    def rewind(conn: Conn) -> None:
        journeys_sql.update_enrollments(conn, h.ws, [(enrollment, old[4], "active", "{}", h.clock.now_ms())])
        journeys_sql.set_timer(conn, h.ws, enrollment, h.clock.now_ms())

    h.db.write(rewind)
    assert h.run_due() == [enrollment]
    h.dispatch()
    assert [r["status"] for r in h.log("p1")] == ["sent"]
    assert h.channels["email"].attempts == 1


def test_consent_withdrawn_after_scheduling_refuses_the_send(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    h.consent("p1", "marketing_email", "withdrawn")
    assert h.dispatch() == {"refused": 1}
    [row] = h.log("p1")
    assert (row["status"], row["reason"]) == ("refused", "consent_missing")
    assert "marketing_email" in row["detail"]
    assert h.channels["email"].attempts == 0
    assert h.dispatch() == {}


def test_each_message_needs_consent_for_its_channel(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    for step in (15 * MINUTE, 45 * MINUTE):
        h.clock.advance(step)
        h.run_due()
        h.dispatch()
    email, push = h.log("p1")
    assert (email["status"], push["status"], push["reason"]) == ("sent", "refused", "consent_missing")
    assert "marketing_push" in push["detail"]
    assert h.channels["push"].attempts == 0


def test_a_transactional_journey_sends_under_its_own_purpose(rapport: Rapport, clock: FrozenClock) -> None:
    ws = rapport.create_workspace(f"necessary-{clock.new_id('t')}").workspace_id
    receipt = journey("kind: Journey\nname: receipt\npurpose: necessary\nentry: {event: Order Completed}\n"
                      "steps: [{send: {channel: email, template: ping}}]\n")
    email = MemoryChannel(clock, "email")
    h = Harness(rapport.db, clock, ws, make_engine(rapport.db, clock, [receipt], {"email": email}),
                {"email": email}, [receipt])
    assert len(h.event("p1", "Order Completed").entered) == 1
    assert h.dispatch() == {"sent": 1}
    assert h.engine.message_purpose("necessary", "email").name == "necessary"
    assert h.engine.message_purpose("marketing_email", "push").name == "marketing_push"


def test_a_person_without_an_address_is_refused(h: Harness) -> None:
    h.consent("nobody", "marketing_email", "granted")
    h.event("nobody", "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    assert h.dispatch() == {"refused": 1}
    assert h.log("nobody")[0]["reason"] == "no_address"


def test_transient_failures_retry_with_backoff_and_terminal_ones_fail(h: Harness) -> None:
    for profile in ("p1", "p2"):
        h.consent(profile, "marketing_email", "granted")
        h.event(profile, "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    h.channels["email"].fail_next([Transient("smtp transient failure 451: try later"),
                                   Terminal("smtp permanent failure 550: no such user")])
    assert h.dispatch() == {"scheduled": 1, "failed": 1}
    rows = {r["profile_id"]: r for r in h.log("p1") + h.log("p2")}
    retry = next(r for r in rows.values() if r["status"] == "scheduled")
    failed = next(r for r in rows.values() if r["status"] == "failed")
    assert (retry["reason"], retry["attempts"]) == ("transient", 1)
    assert retry["due_at"] == h.clock.now_ms() + backoff(1)
    assert (failed["reason"], failed["attempts"]) == ("provider_refused", 1)
    assert "550" in failed["detail"]

    assert h.dispatch() == {}
    h.clock.advance(backoff(1))
    assert h.dispatch() == {"sent": 1}
    assert h.log(retry["profile_id"])[0]["attempts"] == 2
    assert len(h.channels["email"].sent) == 1


def test_a_send_failing_transiently_every_time_gives_up(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    h.channels["email"].fail_next([Transient("busy")] * MAX_ATTEMPTS)
    for attempt in range(1, MAX_ATTEMPTS):
        assert h.dispatch() == {"scheduled": 1}
        h.clock.advance(backoff(attempt))
    assert h.dispatch() == {"failed": 1}
    assert (h.log("p1")[0]["reason"], h.log("p1")[0]["attempts"]) == ("retries_exhausted", MAX_ATTEMPTS)


def test_a_crash_between_the_channel_and_the_mark_neither_loses_nor_repeats_the_send(
        h: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()

    def crash(*args: object) -> None:
        raise SystemError("worker killed")

    with monkeypatch.context() as patch:
        patch.setattr(h.engine, "_mark", crash)
        with pytest.raises(SystemError):
            h.dispatch()
    assert len(h.channels["email"].sent) == 1
    assert h.log("p1")[0]["status"] == "scheduled"  # leased: nobody else takes it yet
    assert h.dispatch() == {}
    h.clock.advance(SEND_LEASE_MS)
    assert h.dispatch() == {"sent": 1}
    assert (len(h.channels["email"].sent), h.channels["email"].repeats) == (1, 1)
    assert h.log("p1")[0]["status"] == "sent"


@pytest.mark.parametrize(("reentry", "again_at_3h", "again_at_8d"), [
    ("never", False, False),
    ("always", True, True),
    ("after 7d", False, True),
], ids=["never", "always", "after-7d"])
def test_reentry_policies(rapport: Rapport, clock: FrozenClock, reentry: str, again_at_3h: bool,
                          again_at_8d: bool) -> None:
    ws = rapport.create_workspace(f"reentry-{clock.new_id('t')}").workspace_id
    signup = simple("welcome", reentry)
    engine = make_engine(rapport.db, clock, [signup], {"email": MemoryChannel(clock, "email")})

    def enter() -> tuple[str, ...]:
        now = clock.now_ms()
        return rapport.db.write(lambda c: engine.on_event(c, ws, [signup], "p1", "Signed Up", {}, facts(now),
                                                          now)).entered

    grant(rapport.db, clock, ws, "p1")
    assert len(enter()) == 1
    clock.advance(10 * MINUTE)
    assert enter() == ()  # still active: one enrollment per journey and profile
    clock.advance(2 * HOUR)
    engine.run_due(ws=ws)
    assert [e.status for e in engine.enrollments(ws, "p1")] == ["completed"]
    clock.advance(HOUR - 10 * MINUTE)
    assert len(enter()) == int(again_at_3h)
    clock.advance(8 * DAY - 3 * HOUR)
    engine.run_due(ws=ws)
    assert len(enter()) == int(again_at_8d)


def test_segment_entry_needs_the_named_segment(h: Harness) -> None:
    vip = simple("vip_welcome", "never", entry="{segment_entered: vip}")
    h.journeys = [vip]
    h.engine = make_engine(h.db, h.clock, [vip], h.channels)
    h.consent("p1", "marketing_email", "granted")
    assert h.event("p1", SEGMENT_ENTERED, {"segment": "lapsed"}).entered == ()
    assert h.event("p1", "Segment Exited", {"segment": "vip"}).entered == ()
    assert len(h.event("p1", SEGMENT_ENTERED, {"segment": "vip"}).entered) == 1


def test_without_consent_for_the_journey_purpose_nobody_enters(h: Harness) -> None:
    assert h.event("p1", "Cart Added", CART).entered == ()
    h.consent("p1", "marketing_email", "granted")
    h.consent("p1", "marketing_email", "withdrawn")
    assert h.event("p1", "Cart Added", CART).entered == ()
    assert h.engine.enrollments(h.ws, "p1") == []
    h.consent("p1", "marketing_email", "granted")
    assert len(h.event("p1", "Cart Added", CART).entered) == 1


def test_a_timer_that_fails_to_step_is_leased_and_the_others_go_on(h: Harness) -> None:
    h.consent("p1", "marketing_email", "granted")
    h.consent("p2", "marketing_email", "granted")
    [first] = h.event("p1", "Cart Added", CART).entered
    [second] = h.event("p2", "Cart Added", CART).entered
    h.clock.advance(15 * MINUTE)
    h.db.write(lambda c: c.execute("UPDATE journey_enrollments SET state = ? WHERE workspace_id = ? AND id = ?",
                                   ("not json", h.ws, first)))
    assert h.run_due() == [second]
    assert h.run_due() == []
    row = h.db.read(lambda c: c.one("SELECT leased_until, lease_owner FROM journey_timers WHERE workspace_id = ?"
                                    " AND enrollment_id = ?", (h.ws, first)))
    assert row == (h.clock.now_ms() + MINUTE, h.engine.owner)


def test_two_workers_on_postgres_never_step_one_enrollment_twice(
        backend: Backend, rapport: Rapport, clock: FrozenClock) -> None:
    if backend.name != "postgres":
        pytest.skip("leases across processes are a PostgreSQL feature; SQLite has one writer")
    from rapport.storage.postgres.database import PostgresDatabase

    ws = rapport.create_workspace(f"leases-{clock.new_id('t')}").workspace_id
    signup = simple("welcome", "never")
    other = PostgresDatabase(backend.url)
    try:
        workers = [make_engine(db, clock, [signup], {"email": MemoryChannel(clock, "email")})
                   for db in (rapport.db, other)]
        profiles = [f"p{i}" for i in range(120)]
        for profile in profiles:
            grant(rapport.db, clock, ws, profile)
        now = clock.now_ms()
        rapport.db.write(lambda c: [workers[0].enroll(c, ws, signup, p, {}, now) for p in profiles])
        clock.advance(HOUR)
        stepped: list[list[str]] = [[], []]
        start = threading.Barrier(2)

        def work(index: int) -> None:
            start.wait()
            while batch := workers[index].run_due(limit=7, ws=ws):
                stepped[index].extend(batch)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not set(stepped[0]) & set(stepped[1])
        assert len(stepped[0]) + len(stepped[1]) == len(profiles)
        keys = rapport.db.read(lambda c: c.value("SELECT count(*) FROM journey_sends WHERE workspace_id = ?", (ws,)))
        assert keys == len(profiles)
    finally:
        other.close()


def test_quiet_hours_hold_the_send_until_the_window_ends(rapport: Rapport, clock: FrozenClock) -> None:
    ws = rapport.create_workspace(f"quiet-{clock.new_id('t')}").workspace_id
    # NOW is 10:00 UTC: inside the window, so the message waits for 12:00.
    quiet = journey("kind: Journey\nname: quiet\npurpose: marketing_email\nentry: {event: Signed Up}\n"
                    "quiet_hours: {start: '09:00', end: '12:00', action: hold}\n"
                    "steps: [{send: {channel: email, template: ping}}]\n")
    email = MemoryChannel(clock, "email")
    h = Harness(rapport.db, clock, ws, make_engine(rapport.db, clock, [quiet], {"email": email}), {"email": email},
                [quiet])
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Signed Up")
    assert h.dispatch() == {"held": 1}
    [row] = h.log("p1")
    noon = clock.now_ms() + 2 * HOUR
    assert (row["status"], row["reason"], row["due_at"]) == ("held", "quiet_hours", noon)
    clock.set(noon - 1)
    assert h.dispatch() == {}
    clock.set(noon)
    assert h.dispatch() == {"sent": 1}
    assert email.sent[0].to == "p1@shop.example"


def test_the_gate_hook_adds_what_the_workspace_configures(h: Harness) -> None:
    def unsubscribed_from_email(conn: Conn, send: PendingSend, base: GateInput) -> GateInput:
        assert (send.journey, send.template, send.profile_id) == ("cart_abandonment", "cart_reminder", "p1")
        return replace(base, unsubscribed=frozenset({"email"}))

    h.engine.gate_input = unsubscribed_from_email
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    assert h.dispatch() == {"refused": 1}
    assert (h.log("p1")[0]["reason"], h.channels["email"].attempts) == ("unsubscribed", 0)


def test_a_send_whose_gate_query_fails_is_retried_later_and_the_batch_goes_on(h: Harness) -> None:
    """A statement failing while one message is prepared (on PostgreSQL it would abort the transaction) costs
    that message a retry later, not the messages prepared after it."""
    def failing_for_p1(conn: Conn, send: PendingSend, base: GateInput) -> GateInput:
        conn.value("SELECT count(*) FROM journey_sends WHERE workspace_id = ?", (h.ws,))
        if send.profile_id == "p1":
            conn.value("SELECT no_such_column FROM journey_sends")
        return base

    h.engine.gate_input = failing_for_p1
    for profile in ("p0", "p1", "p2"):
        h.consent(profile, "marketing_email", "granted")
        h.event(profile, "Cart Added", CART)
    h.clock.advance(15 * MINUTE)
    h.run_due()
    assert h.dispatch() == {"sent": 2}
    assert sorted(m.to for m in h.channels["email"].sent) == ["p0@shop.example", "p2@shop.example"]
    [row] = h.log("p1")
    assert (row["status"], row["attempts"]) == ("scheduled", 1)
    assert h.dispatch() == {}, "leased until the retry is due"
    h.engine.gate_input = None
    h.clock.advance(TIMER_RETRY_MS)
    assert h.dispatch() == {"sent": 1}
    assert h.log("p1")[0]["status"] == "sent"


def test_a_send_on_an_unconfigured_channel_fails_with_the_known_ones(h: Harness) -> None:
    del h.channels["push"]
    h.engine.channels = h.channels
    h.consent("p1", "marketing_email", "granted")
    h.event("p1", "Cart Added", CART)
    for step in (15 * MINUTE, 45 * MINUTE):
        h.clock.advance(step)
        h.run_due()
        h.dispatch()
    push = h.log("p1")[1]
    assert (push["status"], push["reason"]) == ("failed", "unknown_channel")
    assert "'email', 'sms'" in push["detail"]


def test_a_worker_serves_every_workspace(rapport: Rapport, clock: FrozenClock) -> None:
    workspaces = [rapport.create_workspace(f"all-{clock.new_id('t')}").workspace_id for _ in range(2)]
    name = f"serve_{clock.new_id('j').lower().replace('-', '_')}"
    signup = simple(name, "never")
    email = MemoryChannel(clock, "email")
    engine = make_engine(rapport.db, clock, [signup], {"email": email})
    now = clock.now_ms()

    def sign_up(ws: str) -> Callable[[Conn], EventResult]:
        return lambda c: engine.on_event(c, ws, [signup], "p1", "Signed Up", {}, facts(now), now)

    for ws in workspaces:
        grant(rapport.db, clock, ws, "p1")
        rapport.db.write(sign_up(ws))
    clock.advance(HOUR)
    mine = {e.id for ws in workspaces for e in engine.enrollments(ws, "p1")}
    assert mine <= set(engine.run_due(limit=10_000))
    asyncio.run(engine.dispatch(limit=10_000))
    assert [m.to for m in email.sent].count("p1@shop.example") == 2


def test_on_postgres_a_timer_waits_while_an_event_holds_its_enrollment(
        backend: Backend, rapport: Rapport, clock: FrozenClock) -> None:
    """The timer worker skips an enrollment an event transaction has locked instead of overwriting its state."""
    if backend.name != "postgres":
        pytest.skip("SQLite's single writer never runs an event and a timer at once")
    import psycopg

    ws = rapport.create_workspace(f"race-{clock.new_id('t')}").workspace_id
    signup = simple("welcome", "never")
    engine = make_engine(rapport.db, clock, [signup], {"email": MemoryChannel(clock, "email")})
    grant(rapport.db, clock, ws, "p1")
    now = clock.now_ms()
    enrollment = rapport.db.write(lambda c: engine.enroll(c, ws, signup, "p1", {}, now))
    clock.advance(HOUR)
    with psycopg.connect(backend.url) as other:
        # Should the worker wait for the lock instead of skipping, the server ends this session and the test fails.
        other.execute("SET idle_in_transaction_session_timeout = '5s'")
        other.execute("SELECT id FROM journey_enrollments WHERE workspace_id = %s AND id = %s FOR UPDATE",
                      (ws, enrollment))
        assert engine.run_due(ws=ws) == []
        other.rollback()
    assert engine.run_due(ws=ws) == [enrollment]


def test_next_due_tells_a_worker_how_long_to_sleep(tmp_path: Path, clock: FrozenClock,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    db = SqliteDatabase(str(tmp_path / "alone.db"))
    try:
        signup = simple("welcome", "never")
        engine = make_engine(db, clock, [signup], {"email": MemoryChannel(clock, "email")})
        assert engine.next_due() is None
        grant(db, clock, "ws1", "p1")
        now = clock.now_ms()
        db.write(lambda c: engine.enroll(c, "ws1", signup, "p1", {}, now))
        assert engine.next_due() == now + HOUR
        clock.advance(HOUR)
        engine.run_due()
        assert engine.next_due() == now + HOUR  # the send waits for dispatch; the journey has no timer left

        def crash(*args: object) -> None:
            raise SystemError("worker killed")

        monkeypatch.setattr(engine, "_mark", crash)
        with pytest.raises(SystemError):
            asyncio.run(engine.dispatch())
        assert engine.next_due() == now + HOUR + SEND_LEASE_MS
    finally:
        db.close()
