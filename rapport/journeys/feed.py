"""Events into journeys: which stored events the engine must see, and the consumer that feeds them to it.

Ingestion and segment membership changes queue, in the transaction that stores an event, the events a
journey of the workspace listens to (``journey_hears``). ``consume`` feeds them to the engine in queue
order and removes them in the transaction that stores what they caused, so every event reaches the
journeys exactly once and a slow journey never slows an acknowledgement. Segment changes from any path
(an event, a time-based flip, a refresh, an unmerge) arrive the same way, as ``Segment Entered`` and
``Segment Exited`` events.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from rapport.journeys.engine import JourneyEngine
from rapport.journeys.model import Journey, journey_rules
from rapport.journeys.model import build as build_journey
from rapport.rules import EventFn, Path
from rapport.segments import stored
from rapport.storage.base import Conn, Database
from rapport.storage.sql import journeys as sql
from rapport.storage.sql import resources as resources_sql
from rapport.types import DAY, Json, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

log = logging.getLogger("rapport.journeys")

LATE_ENTRY_MS: Millis = DAY
"""An event older than this when the engine sees it still steps enrollments but enrolls nobody: history
(an import, a backfill, a phone that was offline for a week) must not start journeys meant for the moment."""
TIMEZONE_TRAIT = "timezone"
"""The trait holding a person's IANA time zone (quiet hours, delays until a time of day)."""


def journey_hears(rt: WorkspaceRuntime, kind: str, name: str | None) -> bool:
    """Whether a stored event of type ``kind`` named ``name`` matters to the workspace's journeys."""
    if not rt.journeys:
        return False
    listens = rt.journey_events
    return listens is None or (kind == "track" and name in listens)


def event_name(kind: str, name: str | None) -> str:
    """The name journeys know an event by: a track event's name, else its type (``identify``, ``page``)."""
    return name if kind == "track" and name else kind


class Facts:
    """The ``EvalContext`` of one profile at ``now_ms``, loaded from storage the first time a rule reads it
    (most events step no rule at all)."""

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, profile_id: str, now_ms: Millis,
                 needs: stored.Needs) -> None:
        self.conn, self.rt, self.profile_id, self._now, self.needs = conn, rt, profile_id, now_ms, needs
        self._inner: stored.StoredContext | None = None

    @property
    def now_ms(self) -> Millis:
        return self._now

    def _ctx(self) -> stored.StoredContext:
        if self._inner is None:
            data = stored.load(self.conn, self.rt, self.needs, [self.profile_id])[self.profile_id]
            self._inner = stored.StoredContext(self.rt, data, self._now)
        return self._inner

    def lookup(self, path: Path) -> tuple[bool, object]:
        return self._ctx().lookup(path)

    def event_function(self, fn: EventFn) -> object | None:
        return self._ctx().event_function(fn)

    def in_segment(self, name: str) -> bool:
        return self._ctx().in_segment(name)


_NEEDS: dict[tuple[str, int], stored.Needs] = {}


def journey_needs(rt: WorkspaceRuntime) -> stored.Needs:
    """What the rules of the workspace's journeys read (cached per definitions generation)."""
    key = (rt.id, rt.generation)
    hit = _NEEDS.get(key)
    if hit is None:
        from rapport.segments.service import union

        hit = union(stored.needs(rule, rt) for journey in rt.journeys.values() for rule in journey_rules(journey))
        # The trait behind time zones is read with the rest, in one query.
        hit = stored.Needs(hit.traits | {TIMEZONE_TRAIT}, hit.series, hit.distinct, hit.consent, hit.segments)
        if len(_NEEDS) > 256:
            _NEEDS.clear()
        _NEEDS[key] = hit
    return hit


def facts_for(rt: WorkspaceRuntime) -> Callable[[Conn, str, str, Millis], Facts]:
    """The engine's ``facts`` hook for ``rt``: a profile's facts for branches stepped by timers."""
    def facts(conn: Conn, ws: str, profile_id: str, now: Millis) -> Facts:
        return Facts(conn, rt, profile_id, now, journey_needs(rt))
    return facts


class Versions:
    """Every published version of every journey, read from the resource history once and kept (a
    published version never changes). The engine's ``journeys`` lookup."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._known: dict[tuple[str, str, int], Journey | None] = {}

    def __call__(self, ws: str, name: str, version: int) -> Journey | None:
        key = (ws, name, version)
        if key in self._known:
            return self._known[key]
        found: Journey | None = None
        for row in self.db.read(lambda c: resources_sql.history(c, ws, "Journey", name)):
            if int(row[0]) == version and not row[3]:
                found = build_journey(orjson.loads(row[1]), version)
        if found is not None:  # an unknown version may be published a moment later: not remembered
            self._known[key] = found
        return found


@dataclass(frozen=True, slots=True)
class Consumed:
    events: int
    entered: int
    stepped: int


def consume(conn: Conn, rt: WorkspaceRuntime, engine: JourneyEngine, limit: int = 500) -> Consumed:
    """Feed up to ``limit`` queued events of ``rt`` to ``engine`` in order and remove them from the queue.

    Each event is fed in a savepoint: one whose journeys fail to step is logged and dropped (with
    what it had done rolled back) instead of blocking every later event of the workspace."""
    rows = sql.inbox(conn, rt.id, limit)
    if not rows:
        return Consumed(0, 0, 0)
    journeys = list(rt.journeys.values())
    needs = journey_needs(rt)
    fresh_after = engine.clock.now_ms() - LATE_ENTRY_MS
    entered = stepped = 0
    for _qseq, event_seq, profile_id, kind, name, ts, body in rows:
        at = int(ts)
        facts = Facts(conn, rt, str(profile_id), at, needs)
        found, zone = facts.lookup(Path("traits", (TIMEZONE_TRAIT,)))
        timezone = zone if found and isinstance(zone, str) else rt.settings.timezone
        conn.execute("SAVEPOINT journey_event")
        try:
            result = engine.on_event(conn, rt.id, journeys if at >= fresh_after else [], str(profile_id),
                                     event_name(str(kind), name),
                                     _properties(body), facts, at, timezone=timezone)
        except Exception:
            conn.execute("ROLLBACK TO SAVEPOINT journey_event")
            log.exception("event %s of workspace %s failed to step its journeys; skipped", event_seq, rt.id)
        else:
            entered += len(result.entered)
            stepped += len(result.stepped)
        conn.execute("RELEASE SAVEPOINT journey_event")
    sql.dequeue(conn, rt.id, int(rows[-1][0]))
    return Consumed(len(rows), entered, stepped)


def _properties(body: str | bytes) -> dict[str, Json]:
    """The event's properties as stored (personal values stay sealed markers)."""
    props = orjson.loads(body).get("properties")
    return props if isinstance(props, dict) else {}

