"""The in-memory engine over stored profiles: loads what a rule reads and evaluates it per profile.

``rapport.rules.evaluate`` decides; this module supplies its ``EvalContext`` from stored rows:
``traits.*`` read the decoded trait JSON (encrypted personal values stay opaque markers),
``computed.*`` evaluate computed traits over their buckets (``rapport.profiles.computed``), event
functions read the buckets of their series (``segments.functions``), ``consent.*`` asks
``rapport.consent.decide.may_use`` and ``in_segment`` reads the membership history. The SQL compiler
(``segments.sql``) must select the same profiles.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import NamedTuple

import orjson

from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.privacy.pii import is_marker
from rapport.profiles.computed import (
    Bucket,
    Summary,
    SummaryKey,
    TraitDef,
    evaluate_summary,
    summarizable,
    summary_fields,
    summary_keys,
)
from rapport.profiles.computed import evaluate as evaluate_trait
from rapport.rules import EventFn, Node, Path, evaluate, event_functions, paths, segments
from rapport.segments.check import ensure_segment_rule
from rapport.segments.functions import function_value, series_key, summary_value
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql.consent import ledger_entry
from rapport.types import Json, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

_CHUNK = 500
"""Profiles per query: well under SQLite's bound-parameter limit."""


_NO_TRAITS: Mapping[str, Json] = MappingProxyType({})
_NO_SERIES: Mapping[str, Sequence[Bucket]] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Stay:
    """One stay of a profile in a segment (a ``segment_history`` row); open while ``exited_at`` is None."""

    segment: str
    entered_at: Millis
    exited_at: Millis | None = None

    def covers(self, at: Millis) -> bool:
        return self.entered_at <= at and (self.exited_at is None or self.exited_at > at)


class ProfileData(NamedTuple):
    """What rules can read about one profile: its traits (name → JSON as stored), the buckets of
    series by series id, its consent ledger entries and its segment stays. A tuple: a decision makes one per
    request, a segment refresh one per profile."""

    traits: Mapping[str, Json] = _NO_TRAITS
    series: Mapping[str, Sequence[Bucket]] = _NO_SERIES
    ledger: Sequence[LedgerEntry] = ()
    stays: Sequence[Stay] = ()


@dataclass(frozen=True, slots=True)
class Needs:
    """The stored data a rule reads: trait names, series ids (and those whose distinct values it
    counts), whether it reads consent, and the segments it tests."""

    traits: frozenset[str] = frozenset()
    series: frozenset[str] = frozenset()
    distinct: frozenset[str] = frozenset()
    consent: bool = False
    segments: frozenset[str] = frozenset()
    windows: frozenset[SummaryKey] = frozenset()
    """The (series, window) pairs read through a summary (``rapport.profiles.computed.Summary``)."""
    rows: frozenset[str] = frozenset()
    """The series read by what a summary cannot answer (distinct values, a property's first or last value)."""
    fields: frozenset[str] = frozenset()
    """The parts of those summaries read beyond their count (``rapport.profiles.computed.summary_fields``)."""


def trait_needs(defn: TraitDef) -> tuple[set[str], set[SummaryKey], set[str]]:
    """(series, summaries, series needing their buckets) that reading computed trait ``defn`` takes."""
    series = {s.id for s in defn.all_series()}
    if summarizable(defn):
        return series, set(summary_keys(defn)), set()
    return series, set(), {defn.series.id}


def needs(rule: Node, rt: WorkspaceRuntime) -> Needs:
    """What ``rule`` reads of a profile in workspace ``rt``."""
    found = paths(rule)
    functions = event_functions(rule)
    series = {series_key(fn).id for fn in functions}
    windows = {(series_key(fn).id, fn.within_ms) for fn in functions}
    fields: set[str] = set().union(*(summary_fields(fn.fn) for fn in functions))
    distinct: set[str] = set()
    rows: set[str] = set()
    for path in found:
        defn = rt.traits.get(path.parts[0]) if path.root == "computed" and path.parts else None
        if defn is not None:
            read, summaries, raw = trait_needs(defn)
            series |= read
            windows |= summaries
            rows |= raw
            if summaries:
                fields |= summary_fields(defn.aggregate)
            if defn.aggregate == "distinct":
                distinct.add(defn.series.id)
    return Needs(
        traits=frozenset(p.parts[0] for p in found if p.root == "traits" and p.parts),
        series=frozenset(series),
        distinct=frozenset(distinct),
        consent=any(p.root == "consent" for p in found),
        segments=segments(rule),
        windows=frozenset(windows),
        rows=frozenset(rows),
        fields=frozenset(fields),
    )


class StoredContext(NamedTuple):
    """The ``EvalContext`` of one profile at instant ``now_ms`` (a tuple: one is made per profile evaluated)."""

    rt: WorkspaceRuntime
    data: ProfileData
    now_ms: Millis
    summaries: Mapping[SummaryKey, Summary] | None = None
    """Summaries at ``now_ms`` (``storage.sql.profiles.summaries``): a computed value or event function whose
    summary is here is read from it, anything else from ``data.series``."""

    def lookup(self, path: Path) -> tuple[bool, object]:
        if not path.parts:
            return False, None
        if path.root == "traits":
            return self._trait(path.parts)
        if len(path.parts) != 1:
            return False, None
        name = path.parts[0]
        if path.root == "computed":
            return self.computed(name)
        if path.root == "consent":
            purpose = self.rt.catalog.purposes.get(name)
            return (False, None) if purpose is None else (True, may_use(self.data.ledger, purpose, self.now_ms).allowed)
        return False, None

    def computed(self, name: str) -> tuple[bool, object]:
        """(found, value) of computed trait ``name``: ``lookup`` of ``computed.<name>``."""
        defn = self.rt.traits.get(name)
        if defn is None:
            return False, None
        summaries = self.summaries
        if summaries is not None and (defn.series.id, defn.window_ms) in summaries and summarizable(defn):
            return True, evaluate_summary(defn, summaries, self.now_ms)
        return True, evaluate_trait(defn, self.data.series, self.now_ms)

    def _trait(self, parts: Sequence[str]) -> tuple[bool, object]:
        """The value at a trait path; an encrypted marker is a value, never a container."""
        if parts[0] not in self.data.traits:
            return False, None
        current: object = self.data.traits[parts[0]]
        for part in parts[1:]:
            if not isinstance(current, dict) or is_marker(current) or part not in current:
                return False, None
            current = current[part]
        return True, current

    def event_function(self, fn: EventFn) -> object | None:
        sid = series_key(fn).id
        summary = self.summaries.get((sid, fn.within_ms)) if self.summaries is not None else None
        if summary is not None:
            return summary_value(fn, summary, self.now_ms)
        return function_value(fn, self.data.series.get(sid, ()), self.now_ms)

    def in_segment(self, name: str) -> bool:
        return any(stay.segment == name and stay.covers(self.now_ms) for stay in self.data.stays)


def _chunks(ids: Sequence[str]) -> Iterable[tuple[list[str], str]]:
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start:start + _CHUNK])
        yield chunk, ",".join("?" * len(chunk))


def live_profiles(conn: Conn, ws: str, profile_ids: Iterable[str]) -> list[str]:
    """The profiles among ``profile_ids`` that exist and are not merged into another, sorted."""
    out: list[str] = []
    for chunk, marks in _chunks(sorted(set(profile_ids))):
        # Filtered here, not by ``merged_into IS NULL``: the planner would take that index and read
        # every live profile of the workspace instead of looking the ids up.
        out += [str(r[0]) for r in conn.all(
            f"SELECT id, merged_into FROM profiles WHERE workspace_id = ? AND id IN ({marks})",
            (ws, *chunk)) if r[1] is None]
    return sorted(out)


def load(conn: Conn, rt: WorkspaceRuntime, wanted: Needs, profile_ids: Sequence[str]) -> dict[str, ProfileData]:
    """The data ``wanted`` of each of ``profile_ids`` (every id gets an entry, empty when it has no rows)."""
    ws = rt.id
    traits: dict[str, dict[str, Json]] = defaultdict(dict)
    buckets: dict[str, dict[str, list[Bucket]]] = defaultdict(lambda: defaultdict(list))
    ledger: dict[str, list[LedgerEntry]] = defaultdict(list)
    stays: dict[str, list[Stay]] = defaultdict(list)
    names, series, distinct, members = (sorted(wanted.traits), sorted(wanted.series), sorted(wanted.distinct),
                                        sorted(wanted.segments))
    for chunk, marks in _chunks(profile_ids):
        if names:
            name_marks = ",".join("?" * len(names))
            for pid, name, value in conn.all(
                    f"SELECT profile_id, name, value FROM traits WHERE workspace_id = ? AND profile_id IN ({marks})"
                    f" AND name IN ({name_marks})", (ws, *chunk, *names)):
                traits[pid][name] = orjson.loads(value)
        if series:
            _load_buckets(conn, ws, chunk, marks, series, distinct, buckets)
        if wanted.consent:
            for row in consent_sql.entries(conn, ws, chunk):
                ledger[str(row[2])].append(ledger_entry(row))
        if members:
            segment_marks = ",".join("?" * len(members))
            for pid, segment, entered, exited in conn.all(
                    "SELECT profile_id, segment, entered_at, exited_at FROM segment_history WHERE workspace_id = ?"
                    f" AND profile_id IN ({marks}) AND segment IN ({segment_marks})", (ws, *chunk, *members)):
                stays[pid].append(Stay(str(segment), int(entered), None if exited is None else int(exited)))
    return {pid: ProfileData(traits.get(pid, {}), {s: tuple(b) for s, b in buckets.get(pid, {}).items()},
                             tuple(ledger.get(pid, ())), tuple(stays.get(pid, ())))
            for pid in profile_ids}


def _load_buckets(conn: Conn, ws: str, chunk: list[str], marks: str, series: list[str], distinct: list[str],
                  out: dict[str, dict[str, list[Bucket]]]) -> None:
    series_marks = ",".join("?" * len(series))
    index: dict[tuple[str, str, int], Bucket] = {}
    for row in conn.all(
            "SELECT profile_id, series, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val, last_ts,"
            f" last_seq, last_val FROM buckets WHERE workspace_id = ? AND profile_id IN ({marks})"
            f" AND series IN ({series_marks})", (ws, *chunk, *series)):
        pid, sid, bucket, n, nn, total, vmin, vmax, first_ts, first_seq, first_val, last_ts, last_seq, last_val = row
        b = Bucket(int(bucket), int(n), int(nn), float(total), vmin, vmax, int(first_ts), int(first_seq), first_val,
                   int(last_ts), int(last_seq), last_val)
        out[str(pid)][str(sid)].append(b)
        index[(str(pid), str(sid), b.bucket)] = b
    if distinct:
        distinct_marks = ",".join("?" * len(distinct))
        for pid, sid, bucket, value in conn.all(
                "SELECT profile_id, series, bucket, value FROM bucket_values WHERE workspace_id = ?"
                f" AND profile_id IN ({marks}) AND series IN ({distinct_marks})", (ws, *chunk, *distinct)):
            hit = index.get((str(pid), str(sid), int(bucket)))
            if hit is not None:
                hit.values.add(str(value))


def matching(conn: Conn, rt: WorkspaceRuntime, rule: Node, profile_ids: Sequence[str], at: Millis) -> set[str]:
    """The live profiles among ``profile_ids`` that satisfy ``rule`` at instant ``at``."""
    ensure_segment_rule(rule)
    live = live_profiles(conn, rt.id, profile_ids)
    data = load(conn, rt, needs(rule, rt), live)
    return {pid for pid in live if evaluate(rule, StoredContext(rt, data[pid], at))}
