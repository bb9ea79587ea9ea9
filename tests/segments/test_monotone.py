"""Skipping live evaluations that a change cannot affect gives the same membership as evaluating.

Two shortcuts: members of rules that new events can only make true (and non-members of rules they
can only make false) are not evaluated again, and a profile created in the batch is evaluated only
for the segments reading what it has plus those that hold for a profile without data.
``directions`` is checked on a table of rules; then random event streams (with late events, trait
changes and the scheduler running at random moments) go through two workspaces with the same
segments, one with the shortcuts and one evaluating everything, and their membership histories
must be equal.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.api.app import run_backfills
from rapport.clock import FrozenClock, to_iso
from rapport.core import Rapport
from rapport.ingestion.parse import parse_message
from rapport.resources import service as resources
from rapport.rules import parse
from rapport.segments import monotone
from rapport.segments import service as segments_service
from rapport.segments.functions import series_key
from rapport.types import DAY, HOUR, MINUTE, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

PING = series_key(parse('count("Ping") >= 1').left).id  # type: ignore[union-attr]
ORDER = series_key(parse('count("Order Completed") >= 1').left).id  # type: ignore[union-attr]


@pytest.mark.parametrize(("rule", "expected"), [
    ('count("Ping") >= 1', {PING: monotone.RISING}),
    ('count("Ping", within=1h) > 2', {PING: monotone.RISING}),
    ('3 <= count("Ping")', {PING: monotone.RISING}),
    ('count("Ping", within=1h) == 0', {PING: monotone.FALLING}),
    ('count("Ping") != 0', {PING: monotone.RISING}),
    ('count("Ping") < 2', {PING: monotone.FALLING}),
    ('not (count("Ping") >= 2)', {PING: monotone.FALLING}),
    ('not not count("Ping") >= 2', {PING: monotone.RISING}),
    ('count("Ping") >= 1 and count("Ping", within=1h) == 0', {PING: monotone.UNKNOWN}),
    ('count("Ping") == 2', {PING: monotone.UNKNOWN}),
    ('count("Ping") >= 1.5 or count("Order Completed") == 0', {PING: monotone.RISING, ORDER: monotone.FALLING}),
    ('sum("Order Completed", "revenue") > 10', {}),
    ('computed.orders_30d >= 1 and consent.analytics', {ORDER: monotone.RISING}),
    ('computed.revenue_30d > 100', {}),
    ('count("Ping") in [1, 2]', {PING: monotone.UNKNOWN}),
    ('count("Ping") >= true', {PING: monotone.UNKNOWN}),
    ('days_since("Ping") > 3', {PING: monotone.UNKNOWN}),
])
def test_directions(rule: str, expected: dict[str, int], definitions: WorkspaceRuntime) -> None:
    found = monotone.directions(parse(rule), definitions)
    assert {k: v for k, v in found.items() if k in (PING, ORDER)} == expected


def test_skippable() -> None:
    rising = {PING: monotone.RISING, ORDER: monotone.UNKNOWN}
    assert monotone.skippable(rising, frozenset({PING}), member=True)
    assert not monotone.skippable(rising, frozenset({PING}), member=False)
    assert not monotone.skippable(rising, frozenset({PING, ORDER}), member=True)
    assert not monotone.skippable(rising, frozenset({"other"}), member=True), "a rule not reading it is not asked"


SEGMENTS = {
    "pinged_twice": 'count("Ping", within=15m) >= 2',
    "quiet_hour": 'count("Ping", within=1h) == 0',
    "pro_buyer": 'count("Order Completed") >= 1 and traits.plan == "pro"',
    "recent_buyer": "computed.orders_30d >= 1",
    "not_busy": 'not (count("Ping", within=1h) > 3)',
    "lapsed": 'count("Ping") >= 1 and count("Ping", within=15m) == 0',
    "either": 'count("Ping", within=1h) != 0 or sum("Order Completed", "revenue", within=1d) > 100',
    "never_bought": 'count("Order Completed") == 0 and not exists(traits.plan)',
}
DOCS = "---\n".join(f"kind: Segment\nname: {name}\nrule: '{rule}'\n" for name, rule in SEGMENTS.items())
USERS = ("u1", "u2", "u3")
GRANT = {"consent": {"categoryPreferences": {"Analytics": True}}}
START: Millis = 1_780_000_000_000

steps = st.lists(st.tuples(
    st.sampled_from([0, 1_000, MINUTE, 15 * MINUTE - 1, 15 * MINUTE, 15 * MINUTE + 1, HOUR, DAY]),
    st.one_of(
        st.just(("tick",)),
        st.tuples(st.just("ingest"), st.lists(st.tuples(
            st.sampled_from(USERS), st.sampled_from(["Ping", "Ping", "Order Completed", "identify"]),
            st.sampled_from([0, 0, 0, 10 * MINUTE, 2 * HOUR]), st.sampled_from(["free", "pro"])),
            min_size=1, max_size=4)))),
    min_size=1, max_size=12)


@contextmanager
def shortcuts(enabled: bool) -> Iterator[None]:
    if enabled:
        yield
        return
    with mock.patch.object(segments_service, "monotone_shortcuts", lambda _rt: {}), mock.patch.object(
            segments_service, "hold_for_nobody", lambda rt, _at: frozenset(rt.segments)):
        yield


History = set[tuple[str, str, int, int | None]]


def play(rapport: Rapport, clock: FrozenClock, plan: list[Any], *, shortcut: bool) -> History:
    """Run ``plan`` in a new workspace; its membership history as (user, segment, entered, exited)."""
    clock.set(START)
    ws = rapport.create_workspace(clock.new_id("monotone")).workspace_id
    rapport.db.write(lambda c: resources.apply(c, ws, DOCS, "test", clock.now_ms()))
    rt = rapport.runtime(ws, fresh=True)
    run_backfills(rapport)
    rapport.db.write(lambda c: segments_service.refresh(c, rt, clock))
    with shortcuts(shortcut):
        for advance, action in plan:
            clock.set(clock.now_ms() + advance)
            if action[0] == "tick":
                while rapport.db.write(lambda c: segments_service.run_due(c, rt, clock)):
                    pass
                continue
            messages = []
            for user, event, late, plan_name in action[1]:
                raw: dict[str, Any] = {"userId": user, "timestamp": to_iso(clock.now_ms() - late), "context": GRANT}
                if event == "identify":
                    raw.update(type="identify", traits={"plan": plan_name})
                else:
                    raw.update(type="track", event=event, properties={"revenue": 60})
                messages.append(parse_message(raw, implied_type=None, received_at=clock.now_ms(), batch_sent_at=None,
                                              batch_context=None, new_id=lambda: clock.new_id("msg")))
            rapport.ingest(ws, messages).result()
        clock.set(clock.now_ms() + 2 * DAY)
        while rapport.db.write(lambda c: segments_service.run_due(c, rt, clock)):
            pass
    users: dict[str, str] = dict(rapport.db.read(lambda c: c.all(
        "SELECT DISTINCT profile_id, user_id FROM events WHERE workspace_id = ? AND user_id IS NOT NULL", (ws,))))
    rows = rapport.db.read(lambda c: c.all(
        "SELECT profile_id, segment, entered_at, exited_at FROM segment_history WHERE workspace_id = ?", (ws,)))
    return {(users[p], s, int(e), None if x is None else int(x)) for p, s, e, x in rows}


@settings(max_examples=40)
@given(plan=steps)
def test_the_shortcut_changes_no_membership(store: Rapport, plan: list[Any]) -> None:
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    assert play(store, clock, plan, shortcut=True) == play(store, clock, plan, shortcut=False)


def test_a_member_of_a_rising_rule_is_not_evaluated_again(store: Rapport) -> None:
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    evaluated: list[set[str]] = []
    original = segments_service.MembershipWriter.evaluate

    def spy(self: segments_service.MembershipWriter, scope: Any, at: Any, known: Any = None) -> Any:
        evaluated.append(set().union(*scope.values()) if scope else set())
        return original(self, scope, at, known)

    with mock.patch.object(segments_service.MembershipWriter, "evaluate", spy):
        history = play(store, clock, [(0, ("ingest", [("u1", "Ping", 0, "free")] * 2)),
                                      (MINUTE, ("ingest", [("u1", "Ping", 0, "free")]))], shortcut=True)
    first, second = evaluated[:2]  # the two batches; the scheduler's passes follow
    assert {"pinged_twice", "not_busy", "lapsed"} <= first
    assert second == {"not_busy", "lapsed"}, "members of rising rules and non-members of falling ones are skipped"
    assert {h for h in history if h[0] == "u1" and h[1] == "pinged_twice"} == {
        ("u1", "pinged_twice", START, START + 15 * MINUTE)}


@pytest.mark.parametrize("shortcut", [True, False])
def test_a_change_to_other_segments_does_not_pass_over_a_due_flip(store: Rapport, shortcut: bool) -> None:
    """The order arrives exactly when the two pings leave the 15-minute window: the batch re-evaluates
    only the segments reading orders, yet ``pinged_twice`` must still end at its own boundary."""
    clock = store.clock
    assert isinstance(clock, FrozenClock)
    history = play(store, clock, [(0, ("ingest", [("u1", "Ping", 0, "free")] * 2)),
                                  (15 * MINUTE, ("ingest", [("u1", "Order Completed", 0, "free")])),
                                  (0, ("ingest", [("u1", "Ping", 0, "free")]))], shortcut=shortcut)
    assert {h for h in history if h[1] == "pinged_twice"} == {("u1", "pinged_twice", START, START + 15 * MINUTE)}
