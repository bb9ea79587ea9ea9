"""Properties of the journey engine over random interleavings of events, clock moves, timer runs, dispatches,
dispatches that crash before marking, and consent withdrawals: nothing is lost, nothing is delivered twice
except as a same-key repeat after a crash, and nothing reaches a person after their consent was withdrawn."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from journeys.test_engine import CART_ABANDONMENT, facts, grant, journey, make_engine
from rapport.channels.base import Message, Receipt
from rapport.channels.memory import MemoryChannel
from rapport.clock import FrozenClock, parse_iso
from rapport.journeys.engine import SEND_LEASE_MS, EventResult, JourneyEngine
from rapport.storage.base import Conn
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sqlite.database import SqliteDatabase
from rapport.types import DAY, HOUR, MINUTE

T0 = parse_iso("2026-06-01T10:00:00Z")
PROFILES = ("p0", "p1", "p2")
PURPOSES = {"email": "marketing_email", "push": "marketing_push", "sms": "marketing_sms"}
CART_JOURNEY = journey(CART_ABANDONMENT)

op = st.one_of(
    st.tuples(st.just("event"), st.sampled_from(PROFILES),
              st.sampled_from(["Cart Added", "Cart Added", "Order Completed", "Page Viewed"])),
    st.tuples(st.just("advance"), st.sampled_from([MINUTE, 10 * MINUTE, 15 * MINUTE, 45 * MINUTE, 2 * HOUR,
                                                   23 * HOUR, 2 * DAY])),
    st.tuples(st.just("run_due")),
    st.tuples(st.just("dispatch")),
    st.tuples(st.just("crash")),
    st.tuples(st.just("withdraw"), st.sampled_from(PROFILES), st.sampled_from(sorted(PURPOSES.values()))),
)


class RecordingChannel(MemoryChannel):
    """A memory channel that also keeps the order of every delivery, repeats included."""

    def __init__(self, clock: FrozenClock, name: str) -> None:
        super().__init__(clock, name)
        self.calls: list[str] = []

    async def send(self, message: Message) -> Receipt:
        receipt = await super().send(message)
        self.calls.append(message.idempotency_key)
        return receipt


class Crash(Exception):
    """The worker died after the channel accepted its messages and before it marked them."""


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(str(tmp_path_factory.mktemp("engine-properties") / "rapport.db"))
    try:
        yield database
    finally:
        database.close()


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a profile, stored as ingestion would: inside a write transaction."""

    engine: JourneyEngine
    ws: str
    profile: str
    name: str
    at: int

    def store(self, conn: Conn) -> EventResult:
        return self.engine.on_event(conn, self.ws, [CART_JOURNEY], self.profile, self.name,
                                    {"cart_id": "c1", "product_name": "Lamp"}, facts(self.at, sms=True), self.at)


def crash(*_args: object) -> None:
    raise Crash


def run(db: SqliteDatabase, ops: list[tuple[Any, ...]]) -> tuple[int, int]:
    """Play ``ops``, recover, check the properties; returns (messages delivered, same-key repeats)."""
    ws = f"ws-{secrets.token_hex(6)}"
    clock = FrozenClock(T0, seed=7)
    channels = {name: RecordingChannel(clock, name) for name in PURPOSES}
    engine = make_engine(db, clock, [CART_JOURNEY], dict(channels))
    withdrawn: dict[tuple[str, str], int] = {}
    """(profile, purpose) -> how many deliveries its channel had made when the purpose was withdrawn."""
    crashed = 0
    in_doubt: set[str] = set()
    """Keys a channel accepted in a dispatch whose worker died before marking them."""
    for profile in PROFILES:
        for purpose in PURPOSES.values():
            grant(db, clock, ws, profile, purpose)

    def dispatch(worker: JourneyEngine) -> None:
        asyncio.run(worker.dispatch(ws=ws))

    finished: dict[str, set[str]] = {}
    """The send keys of each finished enrollment when it was first seen finished."""

    def note_finished() -> None:
        keys_of: dict[str, set[str]] = {}
        for row in db.read(lambda c: journeys_sql.sends_of(c, ws)):
            keys_of.setdefault(row[2], set()).add(row[1])
        for profile in PROFILES:
            for state in engine.enrollments(ws, profile):
                if state.finished_at is not None:
                    finished.setdefault(state.id, keys_of.get(state.id, set()))

    for step in ops:
        kind = step[0]
        now = clock.now_ms()
        if kind == "event":
            event = Event(engine, ws, step[1], step[2], now)
            db.write(event.store)
        elif kind == "advance":
            clock.advance(step[1])
        elif kind == "run_due":
            engine.run_due(ws=ws)
        elif kind == "dispatch":
            dispatch(engine)
        elif kind == "crash":
            before = sum(len(c.sent) + c.repeats for c in channels.values())
            calls = {name: len(c.calls) for name, c in channels.items()}
            crasher = make_engine(db, clock, [CART_JOURNEY], dict(channels))
            crasher._mark = crash  # type: ignore[method-assign, assignment]
            try:
                dispatch(crasher)
            except Crash:
                crashed += sum(len(c.sent) + c.repeats for c in channels.values()) - before
                in_doubt.update(key for name, c in channels.items() for key in c.calls[calls[name]:])
        else:
            _, profile, purpose = step
            grant(db, clock, ws, profile, purpose, "withdrawn")
            channel_name = next(name for name, p in PURPOSES.items() if p == purpose)
            withdrawn.setdefault((profile, purpose), len(channels[channel_name].calls))
        note_finished()

    # Recovery: leases run out, timers and sends are served until nothing is left to do.
    clock.advance(SEND_LEASE_MS)
    for _ in range(4):
        engine.run_due(ws=ws, limit=10_000)
        dispatch(engine)
        clock.advance(DAY)
    log = {row[1]: row for row in db.read(lambda c: journeys_sql.sends_of(c, ws))}
    delivered = {}
    for channel_name, channel in channels.items():
        for message in channel.sent:
            assert message.idempotency_key not in delivered, "two channels delivered one send"
            delivered[message.idempotency_key] = (channel_name, message, channel.receipts[message.idempotency_key])
    # Nothing lost: every message a channel accepted is marked sent, with the provider's id, unless its worker
    # died before marking it and the retry was then refused (consent withdrawn meanwhile): that row says the
    # earlier attempt may have been delivered.
    for key, (channel_name, _message, receipt) in delivered.items():
        row = log[key]
        if row[11] == "refused" and key in in_doubt:
            assert "may have been delivered" in row[13], row
            continue
        assert (row[7], row[11], row[18]) == (channel_name, "sent", receipt.provider_id)
    # Nothing invented: every row marked sent was accepted by its channel.
    assert {key for key, row in log.items() if row[11] == "sent"} <= set(delivered)
    # Repeats happen only for sends whose worker crashed before marking them, and carry the same key.
    assert sum(c.repeats for c in channels.values()) <= crashed
    # Consent: nothing (not even a repeat) reached a person after the withdrawal of the channel's purpose.
    for (profile, purpose), seen in withdrawn.items():
        channel_name = next(name for name, p in PURPOSES.items() if p == purpose)
        late = [key for key in channels[channel_name].calls[seen:] if log[key][10] == profile]
        assert not late, f"{late} went out after {profile} withdrew {purpose}"
    # Nothing is left in flight: every send ended (or waits for quiet hours, which this journey has none of).
    assert {row[11] for row in log.values()} <= {"sent", "refused"}
    # No enrollment commanded a send after it finished.
    note_finished()
    for enrollment_id, keys in finished.items():
        assert {key for key, row in log.items() if row[2] == enrollment_id} == keys
    return len(delivered), sum(c.repeats for c in channels.values())


@settings(max_examples=40)
@given(ops=st.lists(op, max_size=25))
# A withdrawal in the same millisecond as a delivery, after it; and one between a crashed delivery and its retry.
@example(ops=[("event", "p0", "Cart Added"), ("advance", 15 * MINUTE), ("run_due",), ("dispatch",),
              ("withdraw", "p0", "marketing_email")])
@example(ops=[("event", "p0", "Cart Added"), ("advance", 15 * MINUTE), ("run_due",), ("crash",),
              ("withdraw", "p0", "marketing_email")])
def test_random_interleavings_lose_nothing_and_repeat_nothing(db: SqliteDatabase, ops: list[tuple[Any, ...]]) -> None:
    run(db, ops)


def test_the_property_runner_sees_a_full_journey(db: SqliteDatabase) -> None:
    """A crash after the reminder went out, then the recovery drain walks the cart to its end: the reminder is
    repeated once with its key and marked sent, push and SMS follow, and the offer unless p0 is in the holdout."""
    delivered, repeats = run(db, [("event", "p0", "Cart Added"), ("advance", 15 * MINUTE), ("run_due",), ("crash",)])
    assert (delivered in (3, 4), repeats) == (True, 1)
