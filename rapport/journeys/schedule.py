"""Entry on a schedule: when a journey's schedule comes round, the worker enrolls its audience.

A journey entered with ``entry: {schedule: {every: 1d}}`` or ``{schedule: {at: "09:00"}}`` names its
``audience``: the members of a segment, the profiles a rule selects, or the segment's members the rule
selects. Each occurrence enrolls the audience's members at that moment through the engine's ``enroll``,
so consent for the journey's purpose (and for the segment's own purpose) and the re-entry policy apply.

When it comes round:

- ``every: <duration>`` at each multiple of the duration since the Unix epoch, in UTC (``every: 1d`` at
  00:00 UTC, ``every: 1h`` on the hour, ``every: 15m`` at :00, :15, :30 and :45);
- ``at: "HH:MM"`` once a day when the workspace's clock reads that time, in the workspace's time zone
  (the ``timezone`` setting, UTC by default), across daylight saving time as ``delay: {until}`` does.

Only occurrences from the moment the schedule was published count (a new journey waits for the next one).
Each occurrence runs once: a row of ``journey_schedule_runs`` records it when it starts and carries the
cursor of its batches (members by profile id, a transaction each), so a crash resumes after the last batch
and a second worker neither runs it again nor enrolls anyone twice. After downtime only the latest missed
occurrence runs, once; the earlier ones are skipped. A rule reading event history waits until the series
it reads are backfilled, and a segment until its current version has been computed.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from functools import partial
from typing import Final

import orjson

from rapport.clock import Clock, to_iso
from rapport.consent.decide import may_use
from rapport.consent.model import Purpose
from rapport.journeys import feed
from rapport.journeys.engine import JourneyEngine
from rapport.journeys.model import Audience, Entry, Journey
from rapport.journeys.timing import local_day, next_local_time
from rapport.rules import Path, event_functions, paths
from rapport.segments.functions import series_key
from rapport.storage.base import Conn, Database
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import journeys as sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import segments as segments_sql
from rapport.types import DAY, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger("rapport.journeys")

SCHEDULE_BATCH: Final = 500
"""Audience members enrolled per transaction."""
OCCURRENCE_PROPERTY: Final = "scheduled_at"
"""The entry property of a scheduled enrollment: its occurrence as ISO-8601 UTC (``event.scheduled_at``)."""

_SINCE: dict[tuple[str, str, int], Millis] = {}
"""(workspace, journey, version) -> since when its schedule has been published (history never changes)."""
_DONE: weakref.WeakKeyDictionary[JourneyEngine, dict[str, Millis]] = weakref.WeakKeyDictionary()
"""Per engine (one worker's view of a workspace), the latest occurrence of each journey known to be done."""


@dataclass(frozen=True, slots=True)
class ScheduleRun:
    """What one call did to one occurrence of a journey's schedule."""

    journey: str
    occurrence: Millis
    enrolled: int = 0
    skipped: int = 0
    """Members not enrolled: no consent, kept out by the re-entry policy or an active enrollment, or failed."""
    done: bool = False


def latest_occurrence(entry: Entry, now: Millis, timezone: str) -> Millis | None:
    """The last instant at or before ``now`` when the schedule ``entry`` came round (see the module
    docstring), or ``None`` for an entry that is not a schedule."""
    if entry.kind != "schedule":
        return None
    if entry.every_ms:
        return now - now % entry.every_ms
    if entry.at is None:
        return None
    firsts: dict[object, Millis] = {}
    at = next_local_time(now - 3 * DAY, timezone, entry.at)
    while at <= now:
        # In the hour repeated when clocks fall back a time of day is read twice; the day's first counts.
        firsts.setdefault(local_day(at, timezone), at)
        at = next_local_time(at + 1, timezone, entry.at)
    return max(firsts.values(), default=None)


def published_since(conn: Conn, ws: str, journey: Journey) -> Millis | None:
    """When ``journey``'s current schedule was published: the apply of the oldest version of the latest run
    of versions with the same ``entry`` (changing steps keeps the schedule going; changing it restarts it)."""
    key = (ws, journey.name, journey.version)
    if key in _SINCE:
        return _SINCE[key]
    since: Millis | None = None
    entry: object = None
    for version, spec, _digest, deleted, _actor, applied_at in resources_sql.history(conn, ws, "Journey",
                                                                                     journey.name):
        if int(version) > journey.version:
            break
        current = None if deleted else orjson.loads(spec).get("entry")
        if current is None or current != entry:
            since = None if current is None else int(applied_at)
        entry = current
    if since is not None:
        _SINCE[key] = since
    return since


def run_schedules(db: Database, rt: WorkspaceRuntime, engine: JourneyEngine, clock: Clock,
                  batch: int = SCHEDULE_BATCH, max_batches: int | None = None) -> list[ScheduleRun]:
    """Enroll the audience of each of ``rt``'s scheduled journeys whose latest occurrence has not run yet (or
    go on with it), at most ``max_batches`` batches each (all of them by default)."""
    done = _DONE.setdefault(engine, {})
    out = []
    for journey in rt.journeys.values():
        audience = journey.audience
        if journey.entry.kind != "schedule" or audience is None:
            continue
        occurrence = latest_occurrence(journey.entry, clock.now_ms(), rt.settings.timezone)
        if occurrence is None or done.get(journey.name) == occurrence:
            continue
        since = db.read(partial(published_since, ws=rt.id, journey=journey))
        if since is None or occurrence < since:
            continue
        waiting = db.read(partial(_not_ready, rt=rt, audience=audience))
        if waiting:
            log.debug("journey %r: the %s occurrence waits: %s", journey.name, to_iso(occurrence), waiting)
            continue
        run = run_occurrence(db, rt, engine, journey, occurrence, clock, batch, max_batches)
        if run.done:
            done[journey.name] = occurrence
        out.append(run)
    return out


def run_occurrence(db: Database, rt: WorkspaceRuntime, engine: JourneyEngine, journey: Journey,
                   occurrence: Millis, clock: Clock, batch: int = SCHEDULE_BATCH,
                   max_batches: int | None = None) -> ScheduleRun:
    """Enroll ``journey``'s audience for the occurrence at ``occurrence``, batch after batch until done (or
    ``max_batches``, or another worker holds the run); a run already done enrolls nobody."""
    total = ScheduleRun(journey.name, occurrence)
    rounds = 0
    while max_batches is None or rounds < max_batches:
        step = db.write(lambda conn: _batch(conn, rt, engine, journey, occurrence, batch, clock.now_ms()))
        rounds += 1
        if step is None:  # another worker is enrolling this occurrence
            break
        total = ScheduleRun(journey.name, occurrence, total.enrolled + step.enrolled, total.skipped + step.skipped,
                            step.done)
        if step.done:
            if total.enrolled or total.skipped:
                log.info("journey %r: the %s occurrence enrolled %d profile(s), %d not enrolled", journey.name,
                         to_iso(occurrence), total.enrolled, total.skipped)
            break
    return total


def _batch(conn: Conn, rt: WorkspaceRuntime, engine: JourneyEngine, journey: Journey, occurrence: Millis,
           limit: int, now: Millis) -> ScheduleRun | None:
    """One batch of the run in the caller's transaction; ``None`` when another worker holds the run."""
    sql.start_schedule_run(conn, rt.id, journey.name, occurrence, journey.version, now)
    row = sql.claim_schedule_run(conn, rt.id, journey.name, occurrence)
    if row is None:
        return None
    if row[3] == "done":
        return ScheduleRun(journey.name, occurrence, done=True)
    assert journey.audience is not None
    last, members, full = _members(conn, rt, journey.audience, None if row[4] is None else str(row[4]), limit, now)
    enrolled = skipped = 0
    properties = {OCCURRENCE_PROPERTY: to_iso(occurrence)}
    needs = feed.journey_needs(rt)
    purpose = _segment_purpose(rt, journey.audience)
    if isinstance(purpose, str):
        log.error("journey %r: the purpose %r of its audience segment is not in the consent catalog; nobody "
                  "is enrolled through it", journey.name, purpose)
    for profile_id in members:
        conn.execute("SAVEPOINT journey_schedule")
        try:
            if purpose is not None and not _allowed(conn, rt.id, profile_id, purpose, now):
                entered = None
            else:
                facts = feed.Facts(conn, rt, profile_id, now, needs)
                found, zone = facts.lookup(Path("traits", (feed.TIMEZONE_TRAIT,)))
                timezone = zone if found and isinstance(zone, str) else rt.settings.timezone
                entered = engine.enroll(conn, rt.id, journey, profile_id, properties, now, facts=facts,
                                        timezone=timezone)
        except Exception:
            conn.execute("ROLLBACK TO SAVEPOINT journey_schedule")
            log.exception("profile %s could not be enrolled in journey %r by its schedule; skipped", profile_id,
                          journey.name)
            entered = None
        conn.execute("RELEASE SAVEPOINT journey_schedule")
        if entered is None:
            skipped += 1
        else:
            enrolled += 1
    done = not full
    sql.advance_schedule_run(conn, rt.id, journey.name, occurrence, last, enrolled, skipped, done, now)
    return ScheduleRun(journey.name, occurrence, enrolled, skipped, done)


def _members(conn: Conn, rt: WorkspaceRuntime, audience: Audience, after: str | None, limit: int,
             at: Millis) -> tuple[str | None, list[str], bool]:
    """The next page of the audience after profile id ``after``: (the page's last id, the members on it,
    whether the page was full, so that more may follow)."""
    if audience.segment is not None:
        ids = [str(r[0]) for r in segments_sql.page(conn, rt.id, audience.segment, after, limit)]
        members = ids if audience.rule is None or not ids else _matching(conn, rt, audience, at, ids)
        return (ids[-1] if ids else None), members, len(ids) == limit
    ids = _matching(conn, rt, audience, at, None, after, limit)
    return (ids[-1] if ids else None), ids, len(ids) == limit


def _matching(conn: Conn, rt: WorkspaceRuntime, audience: Audience, at: Millis, among: list[str] | None,
              after: str | None = None, limit: int = 0) -> list[str]:
    """Ids of the profiles the audience rule selects at ``at``: of ``among``, or a page after ``after``."""
    from rapport.segments.sql import compile_rule

    assert audience.rule is not None
    query, params = compile_rule(audience.rule, rt, conn.dialect, at)
    collate = ' COLLATE "C"' if conn.dialect.name == "postgres" else ""
    if among is None:
        return [str(r[0]) for r in conn.all(
            f"SELECT a.id FROM ({query}) a WHERE a.id{collate} > ? ORDER BY a.id{collate} LIMIT ?",
            [*params, after or "", limit])]
    marks = ", ".join("?" for _ in among)
    found = {str(r[0]) for r in conn.all(f"SELECT a.id FROM ({query}) a WHERE a.id IN ({marks})",
                                         [*params, *among])}
    return [profile_id for profile_id in among if profile_id in found]


def _segment_purpose(rt: WorkspaceRuntime, audience: Audience) -> Purpose | str | None:
    """The consent purpose the audience's segment needs to be acted on (DESIGN 4.7): ``None`` for none, its
    name when the consent catalog lacks it (nobody may then be enrolled through the segment)."""
    segment = rt.segments.get(audience.segment) if audience.segment is not None else None
    name = segment.purpose if segment is not None else None
    return None if name is None else rt.catalog.purposes.get(name, name)


def _allowed(conn: Conn, ws: str, profile_id: str, purpose: Purpose | str, at: Millis) -> bool:
    if isinstance(purpose, str):
        return False
    entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, ws, [profile_id])]
    return may_use(entries, purpose, at).allowed


def _not_ready(conn: Conn, rt: WorkspaceRuntime, audience: Audience) -> str | None:
    """Why the audience cannot be read correctly yet (its segment's current version was never computed, or
    a series its rule reads is still being backfilled), or ``None``."""
    if audience.segment is not None:
        segment = rt.segments.get(audience.segment)
        if segment is None:
            return f"segment {audience.segment!r} is not defined"
        if (segment.name, segment.version) not in segments_sql.refreshed(conn, rt.id):
            return f"segment {segment.name!r} version {segment.version} has not been computed yet"
    if audience.rule is not None:
        wanted = {series_key(fn).id for fn in event_functions(audience.rule)}
        for path in paths(audience.rule):
            trait = rt.traits.get(path.parts[0]) if path.root == "computed" and path.parts else None
            if trait is not None:
                wanted.update(key.id for key in trait.all_series())
        states = {str(r[0]): str(r[2]) for r in profiles_sql.series_states(conn, rt.id)}
        missing = sorted(s for s in wanted if states.get(s) != "live")
        if missing:
            return f"the series {', '.join(map(repr, missing))} of its audience rule are being backfilled"
    return None


__all__ = ["OCCURRENCE_PROPERTY", "SCHEDULE_BATCH", "ScheduleRun", "latest_occurrence", "published_since",
           "run_occurrence", "run_schedules"]
