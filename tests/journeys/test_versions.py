"""Publishing a new journey version, on SQLite and PostgreSQL with a frozen clock: by default old enrollments
drain on their version while new ones enter the new one; with ``on_publish: migrate`` the worker moves
waiting enrollments by the step map (timers kept or re-armed), once, in durable batches; steps the map
leaves out drain; bad maps are refused at apply with the missing steps named."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import yaml
from api.support import ApiClient

from journeys.support import MemoryWorld, documents, email_channel
from rapport.core import NewWorkspace, Rapport
from rapport.journeys import versions
from rapport.journeys.engine import decode_state
from rapport.journeys.machine import Enrollment
from rapport.journeys.model import build
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR, MINUTE

BASE = documents(email_channel(), """
kind: Template
name: welcome
channel: email
subject: "Welcome"
text: "Welcome."
---
kind: Template
name: tips
channel: email
subject: "Tips"
text: "Tips, first edition."
---
kind: Template
name: tips_v2
channel: email
subject: "Tips v2"
text: "Tips, second edition."
---
kind: Template
name: last
channel: email
subject: "Last"
text: "The last word."
---
kind: Template
name: last_v2
channel: email
subject: "Last v2"
text: "The last word, again."
""")


def onboarding(tips: str = "tips", policy: str = "", delay: str = "1d") -> str:
    return BASE + f"""---
kind: Journey
name: onboarding
purpose: marketing_email
entry: {{event: Signed Up}}
{policy}
steps:
  - send: {{channel: email, template: welcome}}
  - delay: {delay}
  - send: {{channel: email, template: {tips}}}
"""


def two_waits(last: str = "last", policy: str = "") -> str:
    """A journey with a wait before each of two messages: '1' (1 h) and '3' (1 d)."""
    return BASE + f"""---
kind: Journey
name: series
purpose: marketing_email
entry: {{event: Signed Up}}
{policy}
steps:
  - send: {{channel: email, template: welcome}}
  - delay: 1h
  - send: {{channel: email, template: tips}}
  - delay: 1d
  - send: {{channel: email, template: {last}}}
"""


class World(MemoryWorld):
    def signs_up(self, user_id: str) -> None:
        self.person(user_id, email=f"{user_id}@example.com")
        self.event(user_id, "Signed Up")

    def mail(self) -> list[tuple[str, str | None]]:
        return [(m.to, m.subject) for m in self.email.sent]

    def enrollment(self, user_id: str, journey: str) -> Enrollment:
        pid = self.profile_id(user_id)
        [state] = [decode_state(r[4]) for r in self.rapport.db.read(
            lambda c: journeys_sql.enrollments_of(c, self.id, pid)) if r[1] == journey]
        return state

    def timer(self, enrollment_id: str) -> int | None:
        return self.rapport.db.read(lambda c: journeys_sql.timer(c, self.id, enrollment_id))

    def migration(self, journey: str, version: int) -> tuple[Any, ...] | None:
        return self.rapport.db.read(lambda c: journeys_sql.migration(c, self.id, journey, version))

    def moves(self, journey: str) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.rapport.db.read(lambda c: journeys_sql.moves_of(c, self.id, journey))]


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> World:
    return World(rapport, client, workspace)


MIGRATE_DELAY = 'on_publish: migrate\nmigrate: {"1": "1"}'


def test_by_default_old_enrollments_drain_on_their_version_and_new_ones_enter_the_new(world: World) -> None:
    world.apply(onboarding())
    world.signs_up("old")
    world.work()
    world.clock.advance(HOUR)
    world.apply(onboarding(tips="tips_v2"))
    world.signs_up("new")
    world.work()
    assert (world.enrollment("old", "onboarding").version, world.enrollment("new", "onboarding").version) == (1, 2)
    world.clock.advance(DAY)
    world.work()
    assert sorted(world.mail()) == [("new@example.com", "Tips v2"), ("new@example.com", "Welcome"),
                                    ("old@example.com", "Tips"), ("old@example.com", "Welcome")]
    assert world.migration("onboarding", 2) is None, "draining needs no migration"


def test_migrate_moves_a_mid_delay_enrollment_which_then_sends_the_new_step_once(world: World) -> None:
    world.apply(onboarding())
    world.signs_up("ada")
    world.work()
    before = world.enrollment("ada", "onboarding")
    assert (before.version, before.step_id) == (1, "1")
    due = world.timer(before.id)
    assert due == world.clock.now_ms() + DAY
    world.clock.advance(6 * HOUR)
    world.apply(onboarding(tips="tips_v2", policy=MIGRATE_DELAY))
    world.work()
    after = world.enrollment("ada", "onboarding")
    assert (after.version, after.step_id, after.waiting_until) == (2, "1", due), "same delay: the timer is kept"
    assert world.timer(after.id) == due
    assert after.sent == before.sent and after.entered_at == before.entered_at
    [move] = world.moves("onboarding")
    assert move[:6] == (after.id, 1, "1", 2, "1", due)
    assert world.migration("onboarding", 2)[3:7] == ("done", after.id, 1, 0)  # type: ignore[index]
    world.clock.advance(DAY - 6 * HOUR - MINUTE)
    world.work()
    assert world.mail() == [("ada@example.com", "Welcome")], "no wait fires early after a move"
    world.clock.advance(MINUTE)
    world.work()
    world.work()
    world.clock.advance(DAY)
    world.work()
    assert world.mail() == [("ada@example.com", "Welcome"), ("ada@example.com", "Tips v2")]
    assert world.email.repeats == 0
    assert world.enrollment("ada", "onboarding").status == "completed"
    assert len(world.moves("onboarding")) == 1, "a migration runs once per publish"


def test_unmapped_steps_keep_draining_on_the_old_version(world: World) -> None:
    world.apply(two_waits())
    world.signs_up("early")
    world.work()
    world.clock.advance(2 * HOUR)
    world.work()  # 'early' is past '1' and waits at '3'
    world.signs_up("late")
    world.work()  # 'late' waits at '1'
    world.clock.advance(10 * MINUTE)
    world.apply(two_waits(last="last_v2", policy='on_publish: migrate\nmigrate: {"3": "3"}'))
    world.work()
    early, late = world.enrollment("early", "series"), world.enrollment("late", "series")
    assert (early.version, early.step_id) == (2, "3")
    assert (late.version, late.step_id) == (1, "1"), "a step the map leaves out drains on its version"
    assert world.migration("series", 2)[5:7] == (1, 1)  # type: ignore[index]  # moved, kept
    world.clock.advance(2 * DAY)
    world.work()
    world.work()
    mail = world.mail()
    assert sorted(s for to, s in mail if to == "early@example.com") == ["Last v2", "Tips", "Welcome"]
    assert sorted(s for to, s in mail if to == "late@example.com") == ["Last", "Tips", "Welcome"]


def test_a_crashed_migration_resumes_and_moves_each_enrollment_once(world: World) -> None:
    world.apply(onboarding())
    people = [f"p{i}" for i in range(5)]
    for user in people:
        world.signs_up(user)
    world.work()
    world.clock.advance(HOUR)
    world.apply(onboarding(tips="tips_v2", policy=MIGRATE_DELAY))
    rt = world.rapport.runtime(world.id, fresh=True)
    journey = rt.journeys["onboarding"]
    first = versions.migrate(world.rapport.db, world.id, journey, world.engines.versions, world.clock, batch=2,
                             max_batches=1)
    assert (first.moved, first.done) == (2, False)
    assert world.migration("onboarding", 2)[3] == "running"  # type: ignore[index]
    # The worker died here; another one (a fresh engine set) picks the migration up where it stopped.
    other = world.worker()
    rest = versions.migrate(world.rapport.db, world.id, journey, other.versions, world.clock, batch=2)
    assert (rest.moved, rest.kept, rest.done) == (3, 0, True)
    again = versions.migrate(world.rapport.db, world.id, journey, other.versions, world.clock, batch=2)
    assert (again.moved, again.done) == (0, True)
    moved = [m[0] for m in world.moves("onboarding")]
    assert sorted(moved) == sorted(world.enrollment(u, "onboarding").id for u in people)
    assert all(world.enrollment(u, "onboarding").version == 2 for u in people)
    world.clock.advance(DAY)
    world.work()
    assert sorted(s for _to, s in world.mail() if s != "Welcome") == ["Tips v2"] * 5


def test_two_workers_at_once_move_each_enrollment_once(world: World) -> None:
    world.apply(onboarding())
    people = [f"w{i}" for i in range(8)]
    for user in people:
        world.signs_up(user)
    world.work()
    world.apply(onboarding(tips="tips_v2", policy=MIGRATE_DELAY))
    journey = world.rapport.runtime(world.id, fresh=True).journeys["onboarding"]
    results: list[versions.Migration] = []

    def work() -> None:
        lookup = world.worker().versions
        while True:
            result = versions.migrate(world.rapport.db, world.id, journey, lookup, world.clock, batch=1)
            results.append(result)
            if result.done:
                return

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.moved for r in results) == len(people)
    assert sorted(m[0] for m in world.moves("onboarding")) == sorted(
        world.enrollment(u, "onboarding").id for u in people)


def test_a_longer_delay_counts_the_time_already_waited(world: World) -> None:
    world.apply(onboarding())
    world.signs_up("bo")
    world.work()
    entered = world.clock.now_ms()
    world.clock.advance(10 * HOUR)
    world.apply(onboarding(tips="tips_v2", policy=MIGRATE_DELAY, delay="2d"))
    world.work()
    after = world.enrollment("bo", "onboarding")
    assert (after.version, after.waiting_until) == (2, entered + 2 * DAY)
    assert world.timer(after.id) == entered + 2 * DAY


def _journey(steps: str, version: int) -> Any:
    return build(yaml.safe_load(f"kind: Journey\nname: j\npurpose: marketing_email\nentry: {{event: X}}\n"
                                f"steps: {steps}\n"), version)


@pytest.mark.parametrize(("old_steps", "new_steps", "target", "expected"), [
    ("[{delay: 1d}]", "[{delay: 1d}]", "0", "kept"),
    ("[{delay: 1d}]", "[{delay: 2d}]", "0", "begun + 2d"),
    ("[{delay: 1d}]", "[{delay: 12h}]", "0", "begun + 12h"),
    ("[{delay: 1d}]", "[{wait_for: {event: Y, timeout: 3h}}]", "0", "now + 3h"),
    ("[{wait_for: {event: Y, timeout: 3h}}]", "[{wait_for: {event: Z, timeout: 3h}}]", "0", "kept"),
    ("[{wait_for: {event: Y, timeout: 3h}}]", "[{wait_for: {event: Y, timeout: 5h}}]", "0", "begun + 5h"),
    ("[{delay: {until: '09:00'}}]", "[{delay: {until: '09:00'}}]", "0", "kept"),
    ("[{delay: {until: '09:00'}}]", "[{delay: {until: '18:00'}}]", "0", "next 18:00"),
    ("[{delay: 1d}]", "[{send: {channel: e, template: t}}, {delay: 6h}]", "1", "begun + 6h"),
], ids=["same-delay", "longer-delay", "shorter-delay", "delay-to-wait", "same-wait", "longer-wait", "same-until",
        "other-until", "nested-position"])
def test_timers_are_kept_or_rearmed_by_the_kind_of_wait(old_steps: str, new_steps: str, target: str,
                                                        expected: str) -> None:
    from rapport.clock import parse_iso

    old, new = _journey(old_steps, 1), _journey(new_steps, 2)
    begun = parse_iso("2026-03-02T06:00:00Z")
    now = begun + 4 * HOUR
    step = old.steps[0]
    length = {"DelayStep": getattr(step, "ms", None), "WaitStep": getattr(step, "timeout_ms", None)}[
        type(step).__name__]
    waiting = begun + length if length else parse_iso("2026-03-03T09:00:00Z")
    state = Enrollment("e1", "p1", "j", 1, "active", "0", waiting, begun, timezone="UTC")
    out = versions.moved(state, old, new, target, now)
    assert (out.version, out.step_id) == (2, target)
    until = {
        "kept": waiting,
        "begun + 2d": begun + 2 * DAY,
        "begun + 12h": begun + 12 * HOUR,
        "now + 3h": now + 3 * HOUR,
        "begun + 5h": begun + 5 * HOUR,
        "next 18:00": parse_iso("2026-03-02T18:00:00Z"),
        "begun + 6h": begun + 6 * HOUR,
    }[expected]
    assert out.waiting_until == until


def test_apply_refuses_a_map_naming_steps_that_do_not_exist_or_where_nobody_waits(world: World) -> None:
    world.apply(two_waits())
    [unknown] = world.refused(two_waits(policy='on_publish: migrate\nmigrate: {"9": "3"}'))
    assert unknown["field"] == "migrate.9"
    assert unknown["message"] == ("migrate key '9' is not a step of version 1, the version being replaced; "
                                  "enrollments wait only at delay and wait_for steps; expected one of '1', '3'")
    [send] = world.refused(two_waits(policy='on_publish: migrate\nmigrate: {"2": "3"}'))
    assert "migrate key '2' is a send step of version 1, where no enrollment waits" in send["message"]
    [target] = world.refused(two_waits(policy='on_publish: migrate\nmigrate: {"1": "7"}'))
    assert target["field"] == "migrate.1"
    assert target["message"] == ("migrate target '7' (for '1') is not a step of this version; expected a delay or "
                                 "wait_for step: one of '1', '3'")
    [to_send] = world.refused(two_waits(policy='on_publish: migrate\nmigrate: {"1": "4"}'))
    assert "migrate target '4' (for '1') is a send step of this version" in to_send["message"]
    [number] = world.refused(two_waits(policy='on_publish: migrate\nmigrate: {"1": 3}'))
    assert "write it in quotes, '3'" in number["message"] and number["field"] == "migrate.1"
    [without] = world.refused(two_waits(policy='migrate: {"1": "1"}'))
    assert without["field"] == "migrate" and "on_publish is 'drain'" in without["message"]
    [no_map] = world.refused(two_waits(policy="on_publish: migrate"))
    assert no_map["field"] == "on_publish" and "needs migrate" in no_map["message"]
    [empty] = world.refused(two_waits(policy="on_publish: migrate\nmigrate: {}"))
    assert empty["field"] == "migrate" and "nobody would move" in empty["message"]
    [policy] = world.refused(two_waits(policy="on_publish: migrat"))
    assert policy["field"] == "on_publish" and "'drain', 'migrate'" in policy["message"]
    world.apply(two_waits(last="last_v2", policy='on_publish: migrate\nmigrate: {"1": "1", "3": "3"}'))


def test_a_first_version_with_a_map_has_nothing_to_migrate(world: World) -> None:
    world.apply(two_waits(policy='on_publish: migrate\nmigrate: {"1": "1"}'))
    world.signs_up("cy")
    world.work()
    assert world.enrollment("cy", "series").version == 1
    assert world.migration("series", 1)[2:4] == (0, "done")  # type: ignore[index]
    assert world.moves("series") == []
