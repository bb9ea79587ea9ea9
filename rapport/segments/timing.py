"""When a segment's truth can change with no new event: the instants a profile must be evaluated again.

A rule reads time only through windows, ``days_since`` and consent expiry, so its value is constant
between these instants:

- a bucket of a windowed series enters the window at its own instant (events stamped in the
  future) and leaves it at ``bucket + window`` (``in_window``: ``bucket > T - window``);
- an all-time series' future buckets enter at their instant;
- ``days_since(...)``, a continuous number of days since the last matching event, crosses a
  constant ``c`` it is compared with at ``last + c days`` (``>=``) and one millisecond later (``>``);
  compared with anything else it is re-evaluated daily (a documented approximation);
- a computed ``days_since`` trait (whole days since the last event's second) changes at each day
  boundary after that second;
- a consent entry takes effect at ``effective_at`` and a grant lapses at ``expires_at``.

Durations are exact (``1d`` is 86,400,000 ms), so daylight-saving changes in the workspace time zone
do not move these instants. ``next_flip`` returns the earliest such instant after ``at``; the
scheduler evaluates the profile again then, exactly as of that instant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapport.profiles.computed import bucket_of
from rapport.rules.analysis import event_functions, nodes
from rapport.rules.ast import Compare, Const, DurationConst, EventFn, Node
from rapport.segments.functions import series_key as event_series_key
from rapport.types import DAY, Millis
from rapport.workspaces.runtime import CompiledSegment, WorkspaceRuntime


@dataclass(frozen=True, slots=True)
class Clocks:
    """What makes a set of rules move with time, by series id."""

    windows: frozenset[tuple[str, Millis | None]]
    """(series, window or None for all time): bucket entries and exits."""
    since: frozenset[tuple[str, Millis | None, tuple[float, ...] | None]]
    """``days_since`` functions: (series, window, the day counts compared with, or None if unknown)."""
    daily: frozenset[str]
    """Series of computed ``days_since`` traits."""
    consent: bool

    @property
    def series(self) -> frozenset[str]:
        return frozenset({s for s, _ in self.windows} | {s for s, _, _ in self.since} | self.daily)

    @property
    def empty(self) -> bool:
        return not (self.windows or self.since or self.daily or self.consent)


def _thresholds(rule: Node, fn: EventFn) -> tuple[float, ...] | None:
    """The constants ``fn`` (a ``days_since``) is compared with, or None when it meets anything else."""
    found: list[float] = []
    for node in nodes(rule):
        if isinstance(node, Compare) and fn in (node.left, node.right):
            other = node.right if node.left == fn else node.left
            if isinstance(other, Const) and isinstance(other.value, int | float) and not isinstance(other.value, bool):
                found.append(float(other.value))
            elif isinstance(other, DurationConst):
                found.append(other.ms / DAY)
            else:
                return None
    return tuple(sorted(set(found)))


def clocks(segments: Iterable[CompiledSegment], rt: WorkspaceRuntime) -> Clocks:
    windows: set[tuple[str, Millis | None]] = set()
    since: set[tuple[str, Millis | None, tuple[float, ...] | None]] = set()
    daily: set[str] = set()
    consent = False
    for segment in segments:
        if segment.rule is None:
            continue
        consent = consent or bool(segment.consent)
        for fn in event_functions(segment.rule):
            sid = event_series_key(fn).id
            if fn.fn == "days_since":
                since.add((sid, fn.within_ms, _thresholds(segment.rule, fn)))
            windows.add((sid, fn.within_ms))
        for name in segment.computed:
            trait = rt.traits.get(name)
            if trait is None:
                continue
            for key in trait.all_series():
                windows.add((key.id, trait.window_ms))
                if trait.aggregate == "days_since":
                    daily.add(key.id)
    return Clocks(frozenset(windows), frozenset(since), frozenset(daily), consent)


def next_flip(c: Clocks, buckets: Mapping[str, Sequence[tuple[Millis, Millis]]], consent_instants: Iterable[Millis],
              at: Millis) -> Millis | None:
    """The earliest instant after ``at`` at which the rules behind ``c`` may change value.

    ``buckets`` holds, per series, (bucket, last_ts) of the profile's buckets; ``consent_instants``
    the effective and expiry instants of its ledger entries.
    """
    best: Millis | None = None

    def consider(t: float) -> None:
        nonlocal best
        instant = math.ceil(t)
        if instant > at and (best is None or instant < best):
            best = instant

    for sid, window in c.windows:
        for bucket, _last in buckets.get(sid, ()):
            consider(bucket)  # a bucket in the future enters at its instant
            if window is not None:
                consider(bucket + window)
    for sid, window, thresholds in c.since:
        rows = [(b, last) for b, last in buckets.get(sid, ()) if b <= at and (window is None or b > at - window)]
        if not rows:
            continue
        last = max(last for _, last in rows)
        if thresholds is None:
            consider(at + DAY)
            continue
        for days in thresholds:
            consider(last + days * DAY)
            consider(last + days * DAY + 1)
    for sid in c.daily:
        seconds = [b for b, _ in buckets.get(sid, ()) if b <= at]
        if seconds:
            base = bucket_of(max(seconds))
            consider(base + ((at - base) // DAY + 1) * DAY)
    if c.consent:
        for instant in consent_instants:
            consider(instant)
    return best
