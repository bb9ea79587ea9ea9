"""Publishing a new journey version: the old version drains, or its waiting enrollments move by a step map.

A published version never changes, and by default (``on_publish: drain``) an enrollment finishes on the
version it entered while new enrollments enter the new one. A version published with ``on_publish:
migrate`` and ``migrate: {old step: new step}`` moves the active enrollments of the version it replaced
that wait at a mapped step to the new version, at the mapped step:

- the timer is kept when the new step is the same kind of wait for as long (a ``delay`` of the same
  duration or until the same time of day, a ``wait_for`` with the same timeout); for the same kind of
  wait of another length, the time already waited counts (a person 10 hours into ``delay: 1d`` moved to
  ``delay: 2d`` waits 38 hours more); a wait of another kind starts at the move;
- enrollments waiting at a step the map does not name stay on the old version and drain there (they go
  on, step by step, as that version says): nobody is dropped or sent something their version did not
  plan because a step was left out of the map;
- a message already sent is never sent again: sends are keyed by enrollment and step id, and a moved
  enrollment keeps what it was sent, so map each wait to the step of the new version it corresponds to.

The map names steps of the version being replaced; enrollments still draining on older versions finish
there. The worker migrates each published version once: in batches of enrollments by id, each batch in one
transaction with the migration's cursor (``journey_migrations``), so a crash resumes where the last batch
ended and two workers never move one enrollment twice; every move is logged in ``journey_moves``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Final

from rapport.clock import Clock
from rapport.journeys.engine import JourneyLookup, decode_state, encode_state
from rapport.journeys.machine import Enrollment
from rapport.journeys.model import DelayStep, Journey, Step, StepId, WaitStep
from rapport.journeys.timing import next_local_time
from rapport.storage.base import Conn, Database
from rapport.storage.sql import journeys as sql
from rapport.storage.sql import resources as resources_sql
from rapport.types import Millis
from rapport.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger("rapport.journeys")

MIGRATION_BATCH: Final = 500
"""Enrollments examined per transaction of a migration."""

_DONE: set[tuple[str, str, int]] = set()
"""(workspace, journey, version) of migrations known to be finished (a finished one never runs again)."""


@dataclass(frozen=True, slots=True)
class Migration:
    """What one call did to the migration of ``journey`` ``version`` (from ``from_version``)."""

    journey: str
    version: int
    from_version: int | None
    moved: int = 0
    kept: int = 0
    done: bool = False


def moved(state: Enrollment, old: Journey, new: Journey, target: StepId, now: Millis) -> Enrollment:
    """``state``, waiting at a step of ``old``, moved at ``now`` to step ``target`` of ``new`` (a delay or
    wait_for), its timer kept or re-armed as the module docstring says."""
    if state.step_id is None:
        raise ValueError(f"enrollment {state.id!r} waits at no step, so there is nothing to move")
    before, after = old.step(state.step_id), new.step(target)
    if not isinstance(after, DelayStep | WaitStep):
        raise ValueError(f"step {target!r} of journey {new.name!r} version {new.version} is not a delay or "
                         "wait_for; an enrollment can only be moved to a step where it waits")
    return replace(state, version=new.version, step_id=target,
                   waiting_until=_rearm(before, after, state.waiting_until, state.timezone, now))


def _kind(step: Step) -> str:
    if isinstance(step, WaitStep):
        return "wait_for"
    if isinstance(step, DelayStep):
        return "delay_until" if step.until is not None else "delay"
    return type(step).__name__


def _length(step: DelayStep | WaitStep) -> Millis:
    return step.timeout_ms if isinstance(step, WaitStep) else step.ms or 0


def _rearm(before: Step, after: DelayStep | WaitStep, until: Millis | None, timezone: str, now: Millis) -> Millis:
    same_kind = _kind(before) == _kind(after)
    if same_kind and until is not None:
        if isinstance(after, DelayStep) and after.until is not None:
            assert isinstance(before, DelayStep)
            if before.until == after.until:
                return until
        else:
            assert isinstance(before, DelayStep | WaitStep)
            if _length(before) == _length(after):
                return until
            return until - _length(before) + _length(after)  # the time already waited counts
    if isinstance(after, DelayStep) and after.until is not None:
        return next_local_time(now, timezone, after.until)
    return now + _length(after)


def previous_version(conn: Conn, ws: str, name: str, version: int) -> int | None:
    """The version ``version`` of journey ``name`` replaced: the one before it, unless that was a deletion
    (a journey deleted and created again starts afresh)."""
    for row in resources_sql.history(conn, ws, "Journey", name):
        if int(row[0]) == version - 1:
            return None if row[3] else version - 1
    return None


def migrate_published(db: Database, rt: WorkspaceRuntime, versions: JourneyLookup, clock: Clock,
                      batch: int = MIGRATION_BATCH, max_batches: int | None = None) -> list[Migration]:
    """Run (or go on with) the migration of every published journey version of ``rt`` that asks for one;
    at most ``max_batches`` batches each (all of them by default)."""
    out = []
    for journey in rt.journeys.values():
        key = (rt.id, journey.name, journey.version)
        if journey.on_publish != "migrate" or not journey.migrate or key in _DONE:
            continue
        result = migrate(db, rt.id, journey, versions, clock, batch, max_batches)
        if result.done:
            _DONE.add(key)
        out.append(result)
    return out


def migrate(db: Database, ws: str, journey: Journey, versions: JourneyLookup, clock: Clock,
            batch: int = MIGRATION_BATCH, max_batches: int | None = None) -> Migration:
    """Move the waiting enrollments of the version ``journey`` replaced by its ``migrate`` map, batch after
    batch until done (or ``max_batches``, or another worker holds the migration)."""
    from_version = db.read(lambda c: previous_version(c, ws, journey.name, journey.version))
    if from_version is None:
        def nothing(conn: Conn) -> None:
            now = clock.now_ms()
            sql.start_migration(conn, ws, journey.name, journey.version, 0, now)
            sql.advance_migration(conn, ws, journey.name, journey.version, None, 0, 0, True, now)

        db.write(nothing)
        return Migration(journey.name, journey.version, None, done=True)
    old = versions(ws, journey.name, from_version)
    if old is None:
        raise LookupError(f"journey {journey.name!r} version {from_version} of workspace {ws!r} cannot be read, "
                          f"so version {journey.version} cannot migrate its enrollments")
    total = Migration(journey.name, journey.version, from_version)
    rounds = 0
    while max_batches is None or rounds < max_batches:
        step = db.write(lambda conn: _batch(conn, ws, old, journey, batch, clock.now_ms()))
        rounds += 1
        if step is None:  # another worker is running this migration
            break
        total = replace(total, moved=total.moved + step.moved, kept=total.kept + step.kept, done=step.done)
        if step.done:
            log.info("journey %r version %d migrated from version %d: %d enrollment(s) moved, %d left to drain",
                     journey.name, journey.version, from_version, total.moved, total.kept)
            break
    return total


def _batch(conn: Conn, ws: str, old: Journey, new: Journey, limit: int, now: Millis) -> Migration | None:
    """One batch of the migration in the caller's transaction; ``None`` when another worker holds it."""
    sql.start_migration(conn, ws, new.name, new.version, old.version, now)
    row = sql.claim_migration(conn, ws, new.name, new.version)
    if row is None:
        return None
    if row[3] == "done":
        return Migration(new.name, new.version, old.version, done=True)
    rows = sql.enrollments_on(conn, ws, new.name, old.version, None if row[4] is None else str(row[4]), limit)
    count = kept = 0
    for enrollment in rows:
        state = decode_state(enrollment[4])
        target = new.migrate.get(state.step_id) if state.step_id is not None else None
        if target is None or state.step_id not in old.by_id or target not in new.by_id:
            kept += 1
            log.info("enrollment %s of journey %r stays on version %d to drain: its step %s is not in the "
                     "migrate map of version %d", state.id, new.name, old.version, state.step_id, new.version)
            continue
        after = moved(state, old, new, target, now)
        sql.move_enrollment(conn, ws, state.id, new.version, encode_state(after), now)
        sql.set_timer(conn, ws, state.id, after.waiting_until)
        sql.record_move(conn, ws, (state.id, new.name, old.version, state.step_id, new.version, target,
                                   after.waiting_until, now))
        log.info("enrollment %s of journey %r moved from version %d step %s to version %d step %s (wakes at %s)",
                 state.id, new.name, old.version, state.step_id, new.version, target, after.waiting_until)
        count += 1
    done = len(rows) < limit
    sql.advance_migration(conn, ws, new.name, new.version, str(rows[-1][0]) if rows else None, count, kept,
                          done, now)
    return Migration(new.name, new.version, old.version, count, kept, done)


__all__ = ["MIGRATION_BATCH", "Migration", "migrate", "migrate_published", "moved", "previous_version"]
