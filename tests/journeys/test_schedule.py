"""Entry on a schedule, on SQLite and PostgreSQL with a frozen clock: each occurrence enrolls exactly the
audience's members who allow the journey's purpose, once, even with a second worker or after a crash; after
downtime the missed occurrence runs once; audiences are checked at apply."""

from __future__ import annotations

import threading
from datetime import time
from typing import Any

import pytest
from api.support import ApiClient

from journeys.support import ANALYTICS_ONLY, MARKETING, MemoryWorld, documents, email_channel
from rapport.clock import parse_iso, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.journeys import schedule
from rapport.journeys.engine import JourneyEngine
from rapport.journeys.model import Entry
from rapport.storage.sql import journeys as journeys_sql
from rapport.types import DAY, HOUR, MINUTE
from rapport.workspaces.runtime import WorkspaceRuntime

BASE = documents(email_channel(), """
kind: Template
name: news
channel: email
subject: "We miss you"
text: "Come back ({{ event.scheduled_at }})."
---
kind: Segment
name: at_risk
rule: traits.plan == "lapsed"
""")
NINE = "2026-03-03T09:00:00Z"
"""The first occurrence of the daily 09:00 schedule after the tests publish it."""


def winback(entry: str = '{schedule: {at: "09:00"}}', audience: str = "audience: {segment: at_risk}",
            reentry: str = "always") -> str:
    return BASE + f"""---
kind: Journey
name: winback
purpose: marketing_email
entry: {entry}
{audience}
reentry: {reentry}
steps:
  - send: {{channel: email, template: news}}
"""


class World(MemoryWorld):
    def member(self, user_id: str, plan: str, consent: bool = True) -> None:
        """A person on ``plan`` with an address of their own, who allows marketing email unless not ``consent``."""
        self.person(user_id, MARKETING if consent else ANALYTICS_ONLY, email=f"{user_id}@example.com", plan=plan)

    def mail(self) -> list[str]:
        return sorted(m.to for m in self.email.sent)

    def runs(self) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self.rapport.db.read(lambda c: journeys_sql.schedule_runs(c, self.id, "winback"))]

    def at(self, iso: str) -> None:
        self.clock.set(parse_iso(iso))


@pytest.fixture
def world(rapport: Rapport, client: ApiClient, workspace: NewWorkspace) -> World:
    return World(rapport, client, workspace)


def lapsed_at_nine(world: World, prefix: str, count: int) -> tuple[list[str], WorkspaceRuntime]:
    """``count`` lapsed members (``prefix`` and a number) of the published winback journey, and the workspace at
    its 09:00 occurrence, which has not run yet."""
    world.apply(winback(reentry="always"))
    people = [f"{prefix}{i}" for i in range(count)]
    for user in people:
        world.member(user, "lapsed")
    world.work()
    world.at(NINE)
    return people, world.rapport.runtime(world.id, fresh=True)


def test_an_occurrence_enrolls_exactly_the_audience_members_with_consent_once(world: World) -> None:
    world.apply(winback())
    world.member("lapsed", "lapsed")
    world.member("silent", "lapsed", consent=False)
    world.member("active", "pro")
    world.work()
    assert world.mail() == [] and world.runs() == [], "today's 09:00 came before the journey was published"
    world.at("2026-03-03T08:59:00Z")
    world.work()
    assert world.mail() == []
    world.at("2026-03-03T09:00:00Z")
    world.work()
    assert world.mail() == ["lapsed@example.com"]
    assert "2026-03-03T09:00:00.000Z" in (world.email.sent[0].text or "")
    world.work()
    other = world.worker()  # a second worker
    world.work(other)
    world.clock.advance(HOUR)
    world.work(other)
    assert world.mail() == ["lapsed@example.com"], "one occurrence enrolls once, whichever worker looks"
    [run] = world.runs()
    assert run[1:4] == (parse_iso("2026-03-03T09:00:00Z"), 1, "done")
    assert run[5:7] == (1, 1), "one enrolled, one without consent skipped"
    world.at("2026-03-04T09:00:00Z")
    world.work(other)
    assert world.mail() == ["lapsed@example.com"] * 2, "the next day's occurrence enrolls again (reentry: always)"


def test_a_missed_occurrence_runs_once_after_downtime(world: World) -> None:
    world.apply(winback())
    world.member("lapsed", "lapsed")
    world.work()
    world.at("2026-03-06T15:00:00Z")  # down since the publish: four 09:00s went by
    world.work()
    world.work()
    assert world.mail() == ["lapsed@example.com"]
    assert [to_iso(r[1]) for r in world.runs()] == ["2026-03-06T09:00:00.000Z"]


def test_a_rule_audience_on_an_interval(world: World) -> None:
    world.apply(winback(entry="{schedule: {every: 1d}}",
                        audience='audience: {rule: \'traits.plan == "lapsed" or traits.plan == "trial"\'}'))
    world.member("lapsed", "lapsed")
    world.member("trial", "trial")
    world.member("pro", "pro")
    world.work()
    assert world.mail() == []
    world.at("2026-03-03T00:00:00Z")  # every: 1d runs at 00:00 UTC
    world.work()
    assert world.mail() == ["lapsed@example.com", "trial@example.com"]


def test_a_segment_and_a_rule_enroll_the_members_the_rule_selects(world: World) -> None:
    world.apply(winback(audience="audience: {segment: at_risk, rule: 'traits.tier == \"gold\"'}"))
    world.member("gold", "lapsed")
    world.identify("gold", tier="gold")
    world.member("plain", "lapsed")
    world.member("pro", "pro")
    world.identify("pro", tier="gold")
    world.at("2026-03-03T09:00:00Z")
    world.work()
    assert world.mail() == ["gold@example.com"]


def test_the_segments_own_purpose_is_needed_too(world: World) -> None:
    world.apply(winback().replace('rule: traits.plan == "lapsed"',
                                  'rule: traits.plan == "lapsed"\npurpose: marketing_sms'))
    world.member("email_only", "lapsed")
    world.member("both", "lapsed")
    world.consent("both", ["marketing_sms"])
    world.at("2026-03-03T09:00:00Z")
    world.work()
    assert world.mail() == ["both@example.com"]
    assert world.runs()[0][5:7] == (1, 1)


def test_a_run_goes_on_in_batches_after_a_crash_without_enrolling_twice(world: World) -> None:
    people, rt = lapsed_at_nine(world, "p", 5)
    journey, occurrence = rt.journeys["winback"], parse_iso(NINE)
    engine = world.engines.of(rt)
    first = schedule.run_occurrence(world.rapport.db, rt, engine, journey, occurrence, world.clock, batch=2,
                                    max_batches=1)
    assert (first.enrolled, first.done) == (2, False)
    [run] = world.runs()
    assert run[3] == "running" and run[4] is not None
    # The worker died; another picks the run up at its cursor.
    other = world.worker().of(rt)
    rest = schedule.run_occurrence(world.rapport.db, rt, other, journey, occurrence, world.clock, batch=2)
    assert (rest.enrolled, rest.skipped, rest.done) == (3, 0, True)
    again = schedule.run_occurrence(world.rapport.db, rt, other, journey, occurrence, world.clock, batch=2)
    assert (again.enrolled, again.done) == (0, True)
    world.work()
    assert world.mail() == sorted(f"{u}@example.com" for u in people)
    [run] = world.runs()
    assert run[3:6] == ("done", run[4], 5)


def test_two_workers_at_once_enroll_each_member_once(world: World) -> None:
    people, rt = lapsed_at_nine(world, "w", 12)
    journey, occurrence = rt.journeys["winback"], parse_iso(NINE)
    engines = [world.worker().of(rt) for _ in range(2)]
    results: list[schedule.ScheduleRun] = []

    def work(engine: JourneyEngine) -> None:
        while True:
            run = schedule.run_occurrence(world.rapport.db, rt, engine, journey, occurrence, world.clock, batch=1)
            results.append(run)
            if run.done:
                return

    threads = [threading.Thread(target=work, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r.enrolled for r in results) == len(people) and sum(r.skipped for r in results) == 0
    world.work()
    assert world.mail() == sorted(f"{u}@example.com" for u in people)


def test_changing_the_steps_keeps_the_schedule_and_changing_it_starts_afresh(world: World) -> None:
    world.apply(winback())
    world.member("lapsed", "lapsed")
    world.work()
    world.at("2026-03-03T08:00:00Z")
    world.apply(winback().replace("  - send:", "  - delay: 1m\n  - send:"))
    world.at("2026-03-03T09:00:00Z")
    world.work()
    world.clock.advance(MINUTE)
    world.work()
    assert world.mail() == ["lapsed@example.com"], "published before 09:00 with the same schedule: it runs"
    world.at("2026-03-03T10:30:00Z")
    world.apply(winback(entry='{schedule: {at: "10:00"}}'))
    world.work()
    assert len(world.runs()) == 1, "a schedule changed at 10:30 first comes round tomorrow at 10:00"
    world.at("2026-03-04T10:00:00Z")
    world.work()
    assert world.mail() == ["lapsed@example.com"] * 2


def test_a_schedule_waits_for_its_segment_to_be_computed(world: World) -> None:
    world.apply(winback())
    world.member("lapsed", "lapsed")
    world.at("2026-03-03T09:00:00Z")
    rt = world.rapport.runtime(world.id, fresh=True)
    engine = world.engines.of(rt)
    assert schedule.run_schedules(world.rapport.db, rt, engine, world.clock) == []
    assert world.runs() == [], "an uncomputed segment would enroll nobody: the occurrence waits"
    world.work()
    assert world.mail() == ["lapsed@example.com"]


def test_apply_checks_the_audience(world: World) -> None:
    [missing] = world.refused(winback(audience=""))
    assert missing["field"] == "audience" and "has no audience, so it would enroll nobody" in missing["message"]
    [unknown] = world.refused(winback(audience="audience: {segment: at_rsk}"))
    assert unknown["field"] == "audience.segment"
    assert unknown["message"] == ("unknown Segment 'at_rsk' (did you mean 'at_risk'?) in audience.segment of "
                                  "journey 'winback'; expected one of 'at_risk'")
    [event] = world.refused(winback(entry="{event: Signed Up}"))
    assert event["field"] == "audience" and "entered on a schedule" in event["message"]
    [empty] = world.refused(winback(audience="audience: {}"))
    assert empty["field"] == "audience" and "audience is empty" in empty["message"]
    [syntax] = world.refused(winback(audience="audience: {rule: 'traits.plan =='}"))
    assert syntax["field"] == "audience.rule"
    [semantic] = world.refused(winback(audience="audience: {rule: 'computed.orders_90 > 1'}"))
    assert semantic["field"] == "audience.rule" and "orders_90" in semantic["message"]
    [foreign] = world.refused(winback(audience="audience: {rule: 'event.cart_id == \"c1\"'}"))
    assert foreign["field"] == "audience.rule" and "event.cart_id" in foreign["message"]
    world.apply(winback())
    response = world.call("POST", "/api/v1/apply", params={"prune": "true"},
                     content=BASE.replace("kind: Segment\nname: at_risk", "kind: Segment\nname: other").encode()
                     + b"---\n" + winback().split("---\n")[-1].encode(),
                     headers={"Content-Type": "application/yaml"})
    assert response.status_code == 400, response.text
    [in_use] = response.json()["details"]
    assert in_use["field"] == "audience.segment" and "at_risk" in in_use["message"]


@pytest.mark.parametrize(("entry", "timezone", "now", "expected"), [
    (Entry("schedule", every_ms=DAY), "UTC", "2026-03-02T10:00:00Z", "2026-03-02T00:00:00Z"),
    (Entry("schedule", every_ms=15 * MINUTE), "UTC", "2026-03-02T10:14:59Z", "2026-03-02T10:00:00Z"),
    (Entry("schedule", at=time(9)), "UTC", "2026-03-02T08:59:59Z", "2026-03-01T09:00:00Z"),
    (Entry("schedule", at=time(9)), "UTC", "2026-03-02T09:00:00Z", "2026-03-02T09:00:00Z"),
    (Entry("schedule", at=time(9)), "Europe/Berlin", "2026-03-02T10:00:00Z", "2026-03-02T08:00:00Z"),
    (Entry("schedule", at=time(9)), "Europe/Berlin", "2026-07-02T07:30:00Z", "2026-07-02T07:00:00Z"),
    # Spring forward: 02:30 does not exist in Berlin on 29 March 2026; the jump to 03:00 stands for it.
    (Entry("schedule", at=time(2, 30)), "Europe/Berlin", "2026-03-29T05:00:00Z", "2026-03-29T01:00:00Z"),
    # Fall back: 02:30 happens twice on 25 October 2026; the day's first counts, the second is no new occurrence.
    (Entry("schedule", at=time(2, 30)), "Europe/Berlin", "2026-10-25T01:45:00Z", "2026-10-25T00:30:00Z"),
], ids=["every-day", "every-15m", "before-today", "on-the-dot", "berlin-winter", "berlin-summer",
        "spring-forward", "fall-back"])
def test_latest_occurrence(entry: Entry, timezone: str, now: str, expected: str) -> None:
    assert schedule.latest_occurrence(entry, parse_iso(now), timezone) == parse_iso(expected)


def test_the_workspace_time_zone_places_at(world: World) -> None:
    response = world.call("PATCH", "/api/v1/settings", json={"timezone": "America/New_York"})
    assert response.status_code == 200, response.text
    world.apply(winback())
    world.member("lapsed", "lapsed")
    world.work()  # published at 05:00 in New York
    world.at("2026-03-02T13:59:00Z")  # 08:59 EST; 09:00 UTC went by an hour before the publish
    world.work()
    assert world.mail() == []
    world.at("2026-03-02T14:00:00Z")  # 09:00 EST
    world.work()
    assert world.mail() == ["lapsed@example.com"]
    assert [r[1] for r in world.runs()] == [parse_iso("2026-03-02T14:00:00Z")]
