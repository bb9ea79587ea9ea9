"""Computed traits: definitions, time-bucketed partial aggregates, and evaluation at any instant.

A *series* is what a trait reads: one event name (or ``*`` for any message), an optional numeric
property and an optional ``where`` rule. Every series keeps, per profile, one bucket per second
of event time holding count, numeric count, sum, min, max, first and last. Traits that differ
only in aggregate or window share a series, so an ``Order Completed`` event updates a handful of
rows however many order traits exist.

Semantics (both this module and any SQL engine keep them): time resolves to whole seconds. An
event whose second starts at ``b`` counts at instant ``T`` when ``b <= T`` and, for a window
``w``, ``b > T - w``. Ties on time order by event sequence (arrival).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

import orjson

from rapport.clock import to_iso
from rapport.types import DAY, Json, Millis

BUCKET_MS: Millis = 1000
Aggregate = Literal["count", "sum", "avg", "min", "max", "first", "last", "distinct", "days_since", "ratio"]
ANY_EVENT = "*"


@dataclass(frozen=True, slots=True)
class SeriesKey:
    event: str
    prop: str | None = None
    where: str | None = None
    """Canonical rule text over the event's properties, or None."""
    id: str = field(init=False, compare=False, repr=False)
    """A short stable hash of the three fields: the series' id in storage."""

    def __post_init__(self) -> None:
        raw = f"{self.event}\x1f{self.prop or ''}\x1f{self.where or ''}".encode()
        object.__setattr__(self, "id", hashlib.blake2b(raw, digest_size=8).hexdigest())


@dataclass(frozen=True, slots=True)
class TraitDef:
    name: str
    aggregate: Aggregate
    series: SeriesKey
    window_ms: Millis | None = None
    purpose: str = "analytics"
    denominator: SeriesKey | None = None
    """For ``ratio``: count(series) / count(denominator) over the same window."""
    builtin: bool = False
    description: str = ""

    def all_series(self) -> tuple[SeriesKey, ...]:
        return (self.series,) if self.denominator is None else (self.series, self.denominator)


@dataclass(slots=True)
class Bucket:
    """Partial aggregate of one series for one profile over one second of event time."""

    bucket: Millis
    n: int = 0
    nn: int = 0
    total: float = 0.0
    vmin: float | None = None
    vmax: float | None = None
    first_ts: Millis = 0
    first_seq: int = 0
    first_val: str | None = None
    last_ts: Millis = 0
    last_seq: int = 0
    last_val: str | None = None
    values: set[str] = field(default_factory=set)

    def add(self, ts: Millis, seq: int, value: Json, has_property: bool,
            sealed: tuple[str, str] | None = None) -> None:
        """Fold one event into the bucket (``value`` is the property value, if the series has one).

        A personal value comes ``sealed``: (its encrypted marker as JSON, its keyed hash). The marker
        is kept as first/last value, the hash stands for it among distinct values, and no numeric
        summary (sum, min, max) of it is kept.
        """
        present = has_property and value is not None
        if sealed is not None and present:
            encoded: str | None = sealed[0]
            distinct = sealed[1]
        else:
            encoded = orjson.dumps(value).decode() if present else None
            distinct = encoded or "null"
        if self.n == 0 or (ts, seq) < (self.first_ts, self.first_seq):
            self.first_ts, self.first_seq, self.first_val = ts, seq, encoded
        if self.n == 0 or (ts, seq) > (self.last_ts, self.last_seq):
            self.last_ts, self.last_seq, self.last_val = ts, seq, encoded
        self.n += 1
        if present:
            self.values.add(distinct)
            number = numeric(value) if sealed is None else None
            if number is not None:
                self.nn += 1
                self.total += number
                self.vmin = number if self.vmin is None else min(self.vmin, number)
                self.vmax = number if self.vmax is None else max(self.vmax, number)


def numeric(value: Json) -> float | None:
    """The value as a finite number, or None (booleans are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def bucket_of(ts: Millis) -> Millis:
    return ts - ts % BUCKET_MS


def property_value(properties: Mapping[str, Any], path: str) -> tuple[bool, Json]:
    """(found, value) of a dotted property path."""
    node: Any = properties
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def in_window(bucket: Millis, at: Millis, window_ms: Millis | None) -> bool:
    return bucket <= at and (window_ms is None or bucket > at - window_ms)


def evaluate(defn: TraitDef, series: Mapping[str, Sequence[Bucket]], at: Millis) -> Json:
    """The trait's value at instant ``at`` from its series' buckets (None when undefined)."""
    rows = [b for b in series.get(defn.series.id, ()) if in_window(b.bucket, at, defn.window_ms)]
    agg = defn.aggregate
    if agg == "count":
        return sum(b.n for b in rows)
    if agg == "sum":
        total = float(sum(b.total for b in rows))
        return int(total) if total.is_integer() else total
    if agg == "avg":
        nn = sum(b.nn for b in rows)
        return None if nn == 0 else sum(b.total for b in rows) / nn
    if agg == "min":
        mins = [b.vmin for b in rows if b.vmin is not None]
        return _number(min(mins)) if mins else None
    if agg == "max":
        maxs = [b.vmax for b in rows if b.vmax is not None]
        return _number(max(maxs)) if maxs else None
    if agg == "distinct":
        return len(set().union(*(b.values for b in rows))) if rows else 0
    if agg == "ratio":
        assert defn.denominator is not None
        den = sum(b.n for b in series.get(defn.denominator.id, ()) if in_window(b.bucket, at, defn.window_ms))
        return None if den == 0 else sum(b.n for b in rows) / den
    if not rows:
        return None
    if agg == "first":
        first = min(rows, key=lambda b: (b.first_ts, b.first_seq))
        return _edge_value(defn, first.first_ts, first.first_val)
    last = max(rows, key=lambda b: (b.last_ts, b.last_seq))
    if agg == "days_since":
        return (at - bucket_of(last.last_ts)) // DAY
    return _edge_value(defn, last.last_ts, last.last_val)


def _number(x: float) -> Json:
    return int(x) if x.is_integer() else x


def _edge_value(defn: TraitDef, ts: Millis, encoded: str | None) -> Json:
    if defn.series.prop is None:
        return to_iso(ts)
    return None if encoded is None else orjson.loads(encoded)


class Summary(NamedTuple):
    """What the buckets of one series hold within one window at one instant: every aggregate except ``distinct``
    and a property's first or last value is computed from it (``evaluate_summary``), so a reader of a profile's
    current values can fetch one row per series instead of its buckets. ``total`` is the buckets' totals summed
    one after another in bucket order, exactly as ``evaluate`` sums them. A tuple: a decision makes several per
    request, and a tuple is built several times faster than a frozen dataclass."""

    n: int = 0
    nn: int = 0
    total: float = 0.0
    vmin: float | None = None
    vmax: float | None = None
    first_ts: Millis | None = None
    last_ts: Millis | None = None


SummaryKey = tuple[str, Millis | None]
"""(series id, window in milliseconds or None for all time)."""

SUMMARY_FIELDS: frozenset[str] = frozenset({"nn", "total", "vmin", "vmax", "ts"})
"""The parts of a ``Summary`` a reader may leave unread (``ts``: ``first_ts`` and ``last_ts``). ``n`` is always
read: it tells an empty window."""
_FIELDS_READ: dict[str, frozenset[str]] = {
    "count": frozenset(), "ratio": frozenset(), "sum": frozenset({"total"}), "avg": frozenset({"total", "nn"}),
    "min": frozenset({"vmin"}), "max": frozenset({"vmax"}), "first": frozenset({"ts"}), "last": frozenset({"ts"}),
    "days_since": frozenset({"ts"}), "first_seen": frozenset({"ts"}), "last_seen": frozenset({"ts"}),
}


def summary_fields(aggregate: str) -> frozenset[str]:
    """The parts of a ``Summary`` beyond ``n`` that ``evaluate_summary`` reads for a computed trait of
    ``aggregate``, or ``segments.functions.summary_value`` for an event function of that name (all of them for a
    name it does not know)."""
    return _FIELDS_READ.get(aggregate, SUMMARY_FIELDS)


def summarizable(defn: TraitDef) -> bool:
    """Whether ``evaluate_summary`` can compute ``defn`` (not distinct values, nor a property's first or last
    value, which need the buckets themselves)."""
    return defn.aggregate != "distinct" and not (defn.aggregate in ("first", "last") and defn.series.prop is not None)


def summary_keys(defn: TraitDef) -> tuple[SummaryKey, ...]:
    """The summaries ``evaluate_summary(defn, ...)`` reads."""
    return tuple((s.id, defn.window_ms) for s in defn.all_series())


def summarize(buckets: Iterable[Bucket], at: Millis, window_ms: Millis | None) -> Summary:
    """The summary of ``buckets`` (in bucket order) within the window ending at ``at``: what a SQL aggregate over
    the stored buckets returns (``rapport.storage.sql.profiles.summaries``)."""
    rows = [b for b in buckets if in_window(b.bucket, at, window_ms)]
    if not rows:
        return Summary()
    mins = [b.vmin for b in rows if b.vmin is not None]
    maxs = [b.vmax for b in rows if b.vmax is not None]
    return Summary(sum(b.n for b in rows), sum(b.nn for b in rows), float(sum(b.total for b in rows)),
                   min(mins) if mins else None, max(maxs) if maxs else None, min(b.first_ts for b in rows),
                   max(b.last_ts for b in rows))


def evaluate_summary(defn: TraitDef, summaries: Mapping[SummaryKey, Summary], at: Millis) -> Json:
    """``evaluate(defn, series, at)`` from the summaries of its series over its window (``summarizable(defn)``
    must hold; a missing summary stands for no buckets)."""
    s = summaries.get((defn.series.id, defn.window_ms)) or _EMPTY
    agg = defn.aggregate
    if agg == "count":
        return s.n
    if agg == "sum":
        return int(s.total) if s.total.is_integer() else s.total
    if agg == "avg":
        return None if s.nn == 0 else s.total / s.nn
    if agg == "min":
        return None if s.vmin is None else _number(s.vmin)
    if agg == "max":
        return None if s.vmax is None else _number(s.vmax)
    if agg == "ratio":
        assert defn.denominator is not None
        den = (summaries.get((defn.denominator.id, defn.window_ms)) or _EMPTY).n
        return None if den == 0 else s.n / den
    if agg not in ("first", "last", "days_since") or not summarizable(defn):
        raise ValueError(f"{agg} of {defn.name!r} is not computed from a summary")
    if s.first_ts is None or s.last_ts is None:
        return None
    if agg == "first":
        return to_iso(s.first_ts)
    if agg == "days_since":
        return (at - bucket_of(s.last_ts)) // DAY
    return to_iso(s.last_ts)


_EMPTY = Summary()


def evaluate_all(defs: Iterable[TraitDef], series: Mapping[str, Sequence[Bucket]], at: Millis) -> dict[str, Json]:
    return {d.name: evaluate(d, series, at) for d in defs}
