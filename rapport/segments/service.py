"""Keeping segment membership: live after each change, in batch by SQL, and on time.

Live: the ingestion job reports what it changed on each profile (traits, series, consent, merges);
only the segments whose rule reads a changed field are evaluated again, with the other segments of
their groups and the segments that test them with ``in_segment``. Entries and exits are written as
stays in ``segment_history`` and as ``Segment Entered`` / ``Segment Exited`` events on the profile's
timeline, in the same transaction as the change that caused them.

Batch: ``refresh`` selects each segment's profiles with the SQL engine and reconciles them with
the stored membership, reporting every difference it fixes (0 when live evaluation kept up).

On time: after each evaluation the profile's next flip instant (a window passing, a grant
expiring) is stored as a timer; ``run_due`` evaluates due profiles again.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from itertools import pairwise
from typing import Protocol, TypeVar

import orjson

from rapport.clock import Clock, to_iso
from rapport.journeys.feed import journey_hears
from rapport.rules import EvalContext, EventFn, Path
from rapport.rules.compile import Predicate, compile_rule
from rapport.segments import membership, monotone, stored, timing
from rapport.segments.membership import Change
from rapport.segments.sql import EVERYONE, MAX_RULES, Scope, compile_differences
from rapport.segments.sql import compile_rule as compile_sql
from rapport.storage.base import Conn, Database
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sql import segments as segments_sql
from rapport.types import Millis
from rapport.workspaces.runtime import CompiledSegment, WorkspaceRuntime

ENTERED = "Segment Entered"
EXITED = "Segment Exited"
INTERNAL_PREFIX = events_sql.INTERNAL_PREFIX
"""Message ids of events Rapport writes itself; they feed no computed trait."""


@dataclass(slots=True)
class Touched:
    """What one transaction changed on a profile."""

    traits: set[str] = field(default_factory=set)
    series: set[str] = field(default_factory=set)
    consent: set[str] = field(default_factory=set)
    structural: bool = False
    """Merged into, or recomputed: every segment may have changed."""
    created: bool = False
    """New in this transaction: it has nothing but what the other fields name, so only the segments
    reading those, and the segments that hold for a profile with no data at all, can take it."""


def readers(rt: WorkspaceRuntime, touched: Touched, nobody: Collection[str] = ()) -> set[str]:
    """The segments whose rule reads something ``touched`` changed (before groups and dependents);
    for a created profile also ``nobody``, the segments of a profile without data (``hold_for_nobody``)."""
    if touched.structural:
        return set(rt.segments)
    out: set[str] = set(nobody) if touched.created else set()
    for segment in rt.segments.values():
        if segment.rule is None:
            continue
        if (segment.traits & touched.traits or segment.series & touched.series
                or segment.consent & touched.consent):
            out.add(segment.name)
            continue
        for name in segment.computed:
            trait = rt.traits.get(name)
            if trait is not None and any(s.id in touched.series for s in trait.all_series()):
                out.add(segment.name)
                break
    return out


def hold_for_nobody(rt: WorkspaceRuntime, at: Millis) -> frozenset[str]:
    """The segments a profile without any data is in at ``at``: rules that hold with every value
    missing (``count("Order Completed") == 0``, ``not consent.email``) and groups' default segments."""
    nobody = RememberingContext(stored.StoredContext(rt, stored.ProfileData(), at))
    return frozenset(name for name, predicate in compiled(rt).items() if predicate(nobody)) | frozenset(
        s.name for s in rt.segments.values() if s.rule is None)


C = TypeVar("C")


def _per_generation(cache: dict[tuple[str, int], C], rt: WorkspaceRuntime, build: Callable[[], C]) -> C:
    """``build()`` once per workspace definitions generation (the cache is emptied past 256 entries)."""
    key = (rt.id, rt.generation)
    hit = cache.get(key)
    if hit is None:
        if len(cache) > 256:
            cache.clear()
        hit = cache[key] = build()
    return hit


_NEEDS: dict[tuple[str, int], dict[str, stored.Needs]] = {}
_COMPILED: dict[tuple[str, int], dict[str, Predicate]] = {}


def compiled(rt: WorkspaceRuntime) -> dict[str, Predicate]:
    """Each segment's rule compiled to closures (cached per definitions generation)."""
    return _per_generation(_COMPILED, rt, lambda: {
        s.name: compile_rule(s.rule) for s in rt.segments.values() if s.rule is not None})


def segment_needs(rt: WorkspaceRuntime) -> dict[str, stored.Needs]:
    """What each segment's rule reads of a profile (cached per definitions generation)."""
    return _per_generation(_NEEDS, rt, lambda: {
        s.name: stored.needs(s.rule, rt) for s in rt.segments.values() if s.rule is not None})


def union(items: Iterable[stored.Needs]) -> stored.Needs:
    out = stored.Needs()
    for n in items:
        out = stored.Needs(out.traits | n.traits, out.series | n.series, out.distinct | n.distinct,
                           out.consent or n.consent, out.segments | n.segments)
    return out


class MembershipWriter:
    """Evaluates segments for profiles inside a writer transaction and stores what changes."""

    def __init__(self, conn: Conn, rt: WorkspaceRuntime, clock: Clock) -> None:
        self.conn = conn
        self.rt = rt
        self.clock = clock

    def update(self, touched: Mapping[str, Touched], at: Millis) -> list[Change]:
        """Evaluate, for each profile, the segments its changes can affect; store and return the changes.

        A (profile, segment) pair whose truth the change cannot move is skipped (``monotone``): a
        member of a rule that new events in the touched series can only make true, or a non-member
        of one they can only make false, while no trait or consent the rule reads changed and no
        time-based flip of the profile is due at ``at``."""
        rt = self.rt
        if not rt.segments or not touched:
            return []
        memo: dict[tuple[bool, bool, frozenset[str], frozenset[str], frozenset[str]], set[str]] = {}
        wanted: dict[str, set[str]] = {}
        nobody = hold_for_nobody(rt, at) if any(t.created for t in touched.values()) else frozenset()
        for profile_id, what in touched.items():
            key = (what.structural, what.created, frozenset(what.traits), frozenset(what.series),
                   frozenset(what.consent))
            names = memo.get(key)
            if names is None:
                names = memo[key] = readers(rt, what, nobody)
            if names:
                wanted[profile_id] = names
        if not wanted:
            return []
        timers = workspace_clocks(rt)
        due = {} if timers.empty else segments_sql.timers_of(self.conn, rt.id, sorted(wanted))
        overdue = sorted(p for p, d in due.items() if d <= at)
        if overdue:  # flips due before this change happen first, each at its own instant
            catch_up(self.conn, rt, self.clock, at, overdue)
        shortcuts = monotone_shortcuts(rt)
        known: _Memberships | None = None
        if shortcuts and any(not touched[p].structural and shortcuts.keys() & names for p, names in wanted.items()):
            known = _memberships(self.conn, rt.id, sorted(wanted))  # after the catch-up's changes
            ready = {name for name, version in segments_sql.refreshed(self.conn, rt.id)
                     if name in shortcuts and rt.segments[name].version == version}
            for profile_id, names in wanted.items():
                what = touched[profile_id]
                flip = due.get(profile_id)
                if what.structural or what.created or (flip is not None and flip <= at):
                    continue
                series = frozenset(what.series)
                members = known.before.get(profile_id, set())
                wanted[profile_id] = {n for n in names if not (
                    n in ready and _skips(shortcuts[n], rt.segments[n], what, series, n in members,
                                          known.versions.get((profile_id, n))))}
        scope: dict[str, set[str]] = {}
        closures: dict[frozenset[str], set[str]] = {}
        for profile_id, names in wanted.items():
            if not names:
                continue
            frozen = frozenset(names)
            closed = closures.get(frozen)
            if closed is None:
                closed = closures[frozen] = membership.closure(names, rt.segments)
            scope[profile_id] = closed
        return self.evaluate(scope, at, known=known)

    def evaluate(self, scope: Mapping[str, Collection[str]], at: Millis | Mapping[str, Millis],
                 known: _Memberships | None = None) -> list[Change]:
        """Evaluate ``scope`` (profile -> segment names, closed under groups and dependents) as of ``at``
        (one instant, or one per profile). ``known``: the current memberships of (at least) the
        scope's profiles, when the caller already read them in this transaction."""
        rt = self.rt
        when = _instants(at)
        live = set(stored.live_profiles(self.conn, rt.id, scope))
        gone = [(p, None) for p in scope if p not in live]
        if gone:  # merged away: nothing to flip any more
            segments_sql.set_timers(self.conn, rt.id, gone)
        scope = {p: names for p, names in scope.items() if p in live}
        if not scope:
            return []
        if known is None:
            known = _memberships(self.conn, rt.id, sorted(scope))
        before = {p: set(known.before.get(p, ())) for p in scope}
        versions = known.versions
        wanted = set().union(*scope.values())
        out: list[Change] = []
        needs = segment_needs(rt)
        predicates = compiled(rt)
        for layer in membership.layers(wanted, rt.segments):
            qualified: dict[str, set[str]] = {p: set() for p in scope}
            ruled = [n for n in layer if rt.segments[n].rule is not None]
            ids = sorted(p for p, names in scope.items() if any(n in names for n in ruled))
            data = stored.load(self.conn, rt, union(needs[n] for n in ruled), ids) if ids else {}
            for profile_id in ids:
                context = RememberingContext(stored.StoredContext(rt, data[profile_id], when(profile_id)))
                for name in ruled:
                    if name in scope[profile_id] and predicates[name](context):
                        qualified[profile_id].add(name)
            for name in layer:
                if rt.segments[name].rule is None:
                    for profile_id, names in scope.items():
                        if name in names:
                            qualified[profile_id].add(name)
            layer_changes: list[Change] = []
            for profile_id, names in scope.items():
                evaluated = [n for n in layer if n in names]
                if not evaluated:
                    continue
                after = membership.resolve(qualified[profile_id], rt.segments, evaluated)
                layer_changes.extend(membership.changes(profile_id, before[profile_id], after, evaluated))
            self.store(layer_changes, versions, when)
            out.extend(layer_changes)
        self.set_timers(sorted(scope), when)
        return out

    def set_timers(self, profile_ids: Sequence[str], at: Millis | Callable[[str], Millis]) -> None:
        """Store each profile's next flip instant after ``at`` over all the workspace's segments (or none)."""
        when = _instants(at)
        c = workspace_clocks(self.rt)
        if c.empty:
            return
        rt = self.rt
        buckets: dict[str, dict[str, list[tuple[Millis, Millis]]]] = {p: {} for p in profile_ids}
        for profile_id, series, bucket, last in segments_sql.bucket_instants(self.conn, rt.id, profile_ids,
                                                                             sorted(c.series)):
            buckets[str(profile_id)].setdefault(str(series), []).append((int(bucket), int(last)))
        instants: dict[str, list[Millis]] = {p: [] for p in profile_ids}
        if c.consent:
            earliest = min((when(p) for p in profile_ids), default=0)
            for profile_id, instant in segments_sql.consent_instants(self.conn, rt.id, profile_ids, earliest):
                instants[str(profile_id)].append(int(instant))
        segments_sql.set_timers(self.conn, rt.id, [
            (p, timing.next_flip(c, buckets[p], instants[p], when(p))) for p in profile_ids])

    def exit_merged(self, losers: Sequence[str], at: Millis) -> list[Change]:
        """Profiles merged into others leave every segment."""
        closed = segments_sql.exit_all(self.conn, self.rt.id, losers, at)
        changes = [Change(str(p), str(s), False) for p, s in closed]
        self._events(changes, {}, _instants(at))
        return changes

    def store(self, changes: Sequence[Change], versions: Mapping[tuple[str, str], int],
              at: Millis | Callable[[str], Millis]) -> None:
        """Write ``changes`` (stays and events), each at its profile's instant."""
        if not changes:
            return
        rt, when = self.rt, _instants(at)
        segments_sql.exit_(self.conn, rt.id, [(c.segment, c.profile_id, when(c.profile_id))
                                              for c in changes if not c.entered])
        segments_sql.enter(self.conn, rt.id, [(c.segment, c.profile_id, rt.segments[c.segment].version,
                                              when(c.profile_id)) for c in changes if c.entered])
        self._events(changes, versions, when)

    def _events(self, changes: Sequence[Change], versions: Mapping[tuple[str, str], int],
                when: Callable[[str], Millis]) -> None:
        rt = self.rt
        rows = []
        stamps: dict[Millis, str] = {}  # most changes of a transaction share an instant
        for c in changes:
            at = when(c.profile_id)
            name = ENTERED if c.entered else EXITED
            segment = rt.segments.get(c.segment)
            version = segment.version if c.entered and segment else versions.get((c.profile_id, c.segment))
            message_id = f"{INTERNAL_PREFIX}segment:{c.segment}:{c.profile_id}:{at}:{'in' if c.entered else 'out'}"
            stamp = stamps.get(at)
            if stamp is None:
                stamp = stamps[at] = to_iso(at)
            body = {"type": "track", "event": name, "messageId": message_id, "timestamp": stamp,
                    "receivedAt": stamp, "properties": {"segment": c.segment, "version": version}}
            rows.append((rt.id, message_id, message_id, c.profile_id, c.profile_id, "track", name, None, None, at, at,
                         0, 0, orjson.dumps(body).decode()))
        if rows:
            seqs = events_sql.insert_events(self.conn, rows)
            if rt.journeys:
                journeys_sql.enqueue(self.conn, rt.id, [seqs[str(row[1])] for row in rows if str(row[1]) in seqs
                                                        and journey_hears(rt, "track", str(row[6]))])


@dataclass(frozen=True, slots=True)
class _Memberships:
    before: dict[str, set[str]]
    """Profile -> the segments it is in."""
    versions: dict[tuple[str, str], int]
    """(profile, segment) -> the rule version of the open stay."""


def _memberships(conn: Conn, ws: str, profile_ids: Sequence[str]) -> _Memberships:
    before: dict[str, set[str]] = {}
    versions: dict[tuple[str, str], int] = {}
    for profile_id, segment, version, _entered in segments_sql.current(conn, ws, profile_ids):
        before.setdefault(str(profile_id), set()).add(str(segment))
        versions[(str(profile_id), str(segment))] = int(version)
    return _Memberships(before, versions)


_SHORTCUTS: dict[tuple[str, int], dict[str, dict[str, int]]] = {}


def monotone_shortcuts(rt: WorkspaceRuntime) -> dict[str, dict[str, int]]:
    """Segment -> the direction of its rule in each series it reads, for the segments whose live
    evaluation may be skipped (a rule, no group, no ``in_segment``); cached per generation."""
    return _per_generation(_SHORTCUTS, rt, lambda: {
        s.name: monotone.directions(s.rule, rt) for s in rt.segments.values()
        if s.rule is not None and s.group is None and not s.segments})


def _skips(directions: dict[str, int], segment: CompiledSegment, what: Touched, series: frozenset[str],
           member: bool, version: int | None) -> bool:
    if segment.traits & what.traits or segment.consent & what.consent:
        return False
    if member and version != segment.version:
        return False
    return monotone.skippable(directions, series, member)


class RememberingContext:
    """An ``EvalContext`` that computes each field and event function once for all the rules it serves."""

    __slots__ = ("_functions", "_inner", "_paths", "now_ms")

    def __init__(self, inner: EvalContext) -> None:
        self._inner = inner
        self._paths: dict[Path, tuple[bool, object]] = {}
        self._functions: dict[EventFn, object | None] = {}
        self.now_ms = inner.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        hit = self._paths.get(path)
        if hit is None:
            hit = self._paths[path] = self._inner.lookup(path)
        return hit

    def event_function(self, fn: EventFn) -> object | None:
        if fn in self._functions:
            return self._functions[fn]
        value = self._functions[fn] = self._inner.event_function(fn)
        return value

    def in_segment(self, name: str) -> bool:
        return self._inner.in_segment(name)


def _instants(at: Millis | Mapping[str, Millis] | Callable[[str], Millis]) -> Callable[[str], Millis]:
    """``at`` as a function of the profile id."""
    if callable(at):
        return at
    if isinstance(at, int):
        instant = at
        return lambda _p: instant
    return at.__getitem__

_CLOCKS: dict[tuple[str, int], timing.Clocks] = {}


def workspace_clocks(rt: WorkspaceRuntime) -> timing.Clocks:
    """What makes the workspace's segments move with time (cached per definitions generation)."""
    return _per_generation(_CLOCKS, rt, lambda: timing.clocks(rt.segments.values(), rt))


def catch_up(conn: Conn, rt: WorkspaceRuntime, clock: Clock, at: Millis, profile_ids: Sequence[str] | None = None,
             limit: int = 2000) -> None:
    """Fire every time-based flip due at or before ``at`` (of ``profile_ids``, or of everyone), each as of
    its own instant, so that an evaluation at ``at`` of some segments only does not pass over the
    others' flips (a profile's timer is its earliest flip over all segments)."""
    writer = MembershipWriter(conn, rt, clock)
    every = set(rt.segments)
    while True:
        if profile_ids is None:
            rows = segments_sql.due_timers(conn, rt.id, at, limit)
        else:
            rows = [(p, d) for p, d in segments_sql.timers_of(conn, rt.id, profile_ids).items() if d <= at]
        if not rows:
            return
        writer.evaluate({p: every for p, _ in rows}, dict(rows))


def run_due(conn: Conn, rt: WorkspaceRuntime, clock: Clock, limit: int = 2000) -> int:
    """Evaluate profiles whose timer is due, each as of its own due instant; returns how many."""
    rows = segments_sql.due_timers(conn, rt.id, clock.now_ms(), limit)
    if not rows:
        return 0
    every = set(rt.segments)
    due = dict(rows)
    MembershipWriter(conn, rt, clock).evaluate({p: every for p in due}, due)
    return len(rows)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    segment: str
    members: int
    entered: int
    exited: int
    """Differences between the stored membership and the batch result, fixed by the refresh."""


def refresh(conn: Conn, rt: WorkspaceRuntime, clock: Clock, names: Iterable[str] | None = None,
            at: Millis | None = None) -> list[Reconciliation]:
    """Recompute membership of ``names`` (all segments by default, with their groups and dependents)
    over every live profile with the SQL engine, and store the differences, in the caller's
    transaction (``refresh_database`` keeps the writer free while it reads)."""
    def write(fn: Callable[[Conn], R]) -> R:
        return fn(conn)

    return _refresh(write, rt, clock, names, at)


R = TypeVar("R")


class _Reads(Protocol):
    def __call__(self, fns: list[Callable[[Conn], R]]) -> list[R]: ...


class _Write(Protocol):
    def __call__(self, fn: Callable[[Conn], R]) -> R: ...


READ_PARTS = min(8, max(2, os.cpu_count() or 2))
"""Reader connections a refresh splits the live profiles between, one per core (each range is read in
its own thread; SQLite and PostgreSQL run them side by side)."""
SPLIT_FROM = 50_000
"""Live profiles from which a refresh splits its reading."""
RECHECK_LIMIT = 20_000
"""Profiles found different beyond which the writer compares again range by range rather than those
profiles 500 at a time (a first population finds everyone different)."""
WRITE_PART = 5_000
"""Live profiles the writer compares and stores in one transaction when many differ, and retimes in one
transaction after a new rule version, so that ingestion runs between the parts of a large refresh."""


def refresh_database(db: Database, rt: WorkspaceRuntime, clock: Clock, names: Iterable[str] | None = None,
                     at: Millis | None = None,
                     after: Callable[[Conn, list[Reconciliation]], None] | None = None) -> list[Reconciliation]:
    """``refresh`` with the comparison read outside the writer: the live profiles are split in id
    ranges compared in parallel on reader connections, then the writer compares again only the profiles
    found different (live evaluation may have moved them since) and stores the changes, in transactions
    of at most ``WRITE_PART`` profiles. Ingestion waits only for those writes. ``after`` runs in the last
    transaction, with the report."""

    def reads(fns: list[Callable[[Conn], R]]) -> list[R]:
        if len(fns) == 1:
            return [db.read(fns[0])]
        with ThreadPoolExecutor(len(fns), thread_name_prefix="rapport-refresh") as pool:
            return list(pool.map(db.read, fns))

    return _refresh(db.write, rt, clock, names, at, reads=reads, after=after)


def _refresh(write: _Write, rt: WorkspaceRuntime, clock: Clock, names: Iterable[str] | None, at: Millis | None,
             *, reads: _Reads | None = None,
             after: Callable[[Conn, list[Reconciliation]], None] | None = None) -> list[Reconciliation]:
    """The refresh, writing with ``write``; with ``reads`` (functions run in parallel on read
    connections) it compares outside the writer first, else in the writer's transactions at once.

    Each writer transaction compares some profiles, stores their changes and stores their next flips,
    all as of one instant: the clock's then, after the flips due by then, unless the caller pins ``at``.
    Live evaluation between two transactions has moved membership to its own instant; comparing or
    timing as of an earlier one would undo what it did, or pass over a flip.
    """
    pinned = at is not None
    start = clock.now_ms() if at is None else at
    wanted = membership.closure(rt.segments if names is None else names, rt.segments)
    clocked = not workspace_clocks(rt).empty

    def instant(conn: Conn) -> Millis:
        if pinned:
            return start
        now = max(start, clock.now_ms())
        if clocked:
            catch_up(conn, rt, clock, now)
        return now

    def unrefreshed(conn: Conn) -> bool:
        done = segments_sql.refreshed(conn, rt.id)
        return any((n, rt.segments[n].version) not in done for n in wanted)

    # Timers hold each profile's next flip over every segment: a new rule version can move them for
    # anyone, so it retimes everyone; reconciling a version already computed, only the profiles it changed.
    fresh = write(unrefreshed) if reads is None else reads([unrefreshed])[0]
    if clocked and pinned:
        write(partial(catch_up, rt=rt, clock=clock, at=start))
    entered: dict[str, int] = dict.fromkeys(wanted, 0)
    exited: dict[str, int] = dict.fromkeys(wanted, 0)
    for layer in membership.layers(wanted, rt.segments):
        grouped = any(rt.segments[n].group is not None for n in layer)

        def store(conn: Conn, layer: list[str] = layer, grouped: bool = grouped,
                  scope: Scope = EVERYONE) -> list[Change]:
            at = instant(conn)
            changes = _grouped_changes(conn, rt, layer, at) if grouped else _differences(conn, rt, layer, at, scope)
            writer = MembershipWriter(conn, rt, clock)
            _store(writer, changes, at)
            retimed = _live_in(conn, rt.id, scope) if fresh else sorted({c.profile_id for c in changes})
            for i in range(0, len(retimed), 500):
                writer.set_timers(retimed[i:i + 500], at)
            return changes

        def different(scope: Scope, layer: list[str] = layer) -> Callable[[Conn], list[str]]:
            return lambda conn: [d.profile_id for d in _differences(conn, rt, layer, start, scope)]

        if grouped or reads is None:
            changes = write(store)
        else:
            candidates: list[str] | None = None
            if not fresh:
                scopes = reads([partial(_ranges, ws=rt.id, parts=READ_PARTS, least=SPLIT_FROM)])[0]
                candidates = sorted({p for ids in reads([different(s) for s in scopes]) for p in ids})
            if candidates is None or len(candidates) > RECHECK_LIMIT:
                # Everyone to compare again, range by range in the writer: a new version (whose flips
                # everyone needs timed) or a first population (cheaper than by id).
                parts = reads([partial(_ranges, ws=rt.id, size=WRITE_PART)])[0]
            else:
                parts = [Scope(ids=tuple(candidates[i:i + 500])) for i in range(0, len(candidates), 500)]
            changes = [c for scope in parts for c in write(partial(store, scope=scope))]
        for change in changes:
            (entered if change.entered else exited)[change.segment] += 1

    def finish(conn: Conn) -> list[Reconciliation]:
        for name in wanted:
            segments_sql.mark_refreshed(conn, rt.id, name, rt.segments[name].version, start)
        report = [Reconciliation(n, segments_sql.count(conn, rt.id, n), entered[n], exited[n]) for n in sorted(wanted)]
        if after is not None:
            after(conn, report)
        return report

    return write(finish)


def _live_in(conn: Conn, ws: str, scope: Scope) -> list[str]:
    """The live profiles in ``scope``, sorted."""
    if scope.ids is not None:
        return stored.live_profiles(conn, ws, scope.ids)
    return segments_sql.live_profiles(conn, ws, scope.low, scope.high)


def _ranges(conn: Conn, ws: str, *, parts: int = 0, least: int = 0, size: int = 0) -> list[Scope]:
    """Id ranges of the live profiles: ``parts`` of about as many each (one when fewer than ``least``
    live), or of ``size`` each."""
    if parts:
        live = segments_sql.live_count(conn, ws)
        size = 0 if parts <= 1 or live < least else -(-live // parts)
    cuts = segments_sql.live_bounds(conn, ws, size) if size else []
    bounds: list[str | None] = [None, *cuts, None]
    return [Scope(low=low, high=high) for low, high in pairwise(bounds)]


def _store(writer: MembershipWriter, changes: list[Change], at: Millis) -> None:
    """Write ``changes`` (stays, timeline events), with the rule versions of the stays they close."""
    versions = {(str(r[0]), str(r[1])): int(r[2]) for r in segments_sql.current(
        writer.conn, writer.rt.id, sorted({c.profile_id for c in changes if not c.entered}))}
    writer.store(changes, versions, at)


def _differences(conn: Conn, rt: WorkspaceRuntime, layer: Sequence[str], at: Millis,
                 scope: Scope = EVERYONE) -> list[Change]:
    """Entries and exits that bring the stored membership of ``layer`` (no groups) to the SQL result,
    for the profiles in ``scope`` (everyone by default)."""
    changes: list[Change] = []
    for start in range(0, len(layer), MAX_RULES):
        chunk = layer[start:start + MAX_RULES]
        sql, params = compile_differences([(n, rt.segments[n].rule) for n in chunk], rt, conn.dialect, at, scope)
        for profile_id, matched, stored_mask in conn.all(sql, params):
            now_in, was_in = int(matched), int(stored_mask)
            moved = now_in ^ was_in  # the segments that differ, not every segment of the layer
            before = {chunk[i] for i in _bits(moved & was_in)}
            after = {chunk[i] for i in _bits(moved & now_in)}
            changes.extend(membership.changes(str(profile_id), before, after, before | after))
    return changes


def _bits(mask: int) -> Iterator[int]:
    """The positions of the bits set in ``mask``, lowest first."""
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


def _grouped_changes(conn: Conn, rt: WorkspaceRuntime, layer: Sequence[str], at: Millis) -> list[Change]:
    """Entries and exits of a layer holding a group: every profile's qualified set, resolved."""
    everyone = segments_sql.live_profiles(conn, rt.id)
    stored: dict[str, set[str]] = {}
    qualified: dict[str, set[str]] = {}
    for name in layer:
        for profile_id in segments_sql.members(conn, rt.id, name):
            stored.setdefault(profile_id, set()).add(name)
        rule = rt.segments[name].rule
        if rule is None:
            ids: Iterable[str] = everyone
        else:
            sql, params = compile_sql(rule, rt, conn.dialect, at)
            ids = (str(r[0]) for r in conn.all(sql, params))
        for profile_id in ids:
            qualified.setdefault(profile_id, set()).add(name)
    none: set[str] = set()
    changes: list[Change] = []
    for profile_id in everyone:
        after = membership.resolve(qualified.get(profile_id, none), rt.segments, layer)
        changes.extend(membership.changes(profile_id, stored.get(profile_id, none), after, layer))
    return changes


def series_read(rt: WorkspaceRuntime, segment: CompiledSegment) -> set[str]:
    """Ids of every series the segment's rule reads (its event functions' and computed traits')."""
    out = set(segment.series)
    for name in segment.computed:
        trait = rt.traits.get(name)
        if trait is not None:
            out.update(key.id for key in trait.all_series())
    return out


def scheduled_refreshes(conn: Conn, rt: WorkspaceRuntime, at: Millis) -> list[str]:
    """Segments with a ``refresh`` cadence whose current version was last refreshed a cadence or more
    before ``at`` (never-refreshed versions are ``pending_refreshes``)."""
    times = segments_sql.refresh_times(conn, rt.id)
    out = []
    for s in rt.segments.values():
        every, last = s.refresh_ms, times.get((s.name, s.version))
        if every is not None and last is not None and last + every <= at:
            out.append(s.name)
    return sorted(out)


def next_refresh(segment: CompiledSegment, refreshed_at: Millis | None) -> Millis | None:
    """When the batch engine next refreshes ``segment`` on its cadence (None: on demand only)."""
    every = segment.refresh_ms
    return None if every is None or refreshed_at is None else refreshed_at + every


def pending_refreshes(conn: Conn, rt: WorkspaceRuntime) -> list[str]:
    """Segments whose current version has never been refreshed over the whole workspace."""
    done = segments_sql.refreshed(conn, rt.id)
    return sorted(s.name for s in rt.segments.values() if (s.name, s.version) not in done)
