"""Event functions of segment rules (``count("Order Completed", within=30d)``) over computed-trait series.

An event function reads the same time-bucketed series a computed trait of the same event, property
and ``where`` rule reads, so ``count("Order Completed", within=30d)`` and a ``ComputedTrait`` counting
``Order Completed`` over 30 days are one series, fed once per event. The window is ``within``; the
bucket semantics are those of ``rapport.profiles.computed`` (an event counts at ``T`` when its second
starts at or before ``T`` and, with a window ``w``, after ``T - w``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from rapport.profiles.computed import (
    Aggregate,
    Bucket,
    SeriesKey,
    Summary,
    TraitDef,
    evaluate,
    evaluate_summary,
    in_window,
)
from rapport.rules import EventFn, to_text
from rapport.types import DAY, Millis

_AGGREGATES: dict[str, Aggregate] = {"count": "count", "sum": "sum", "avg": "avg", "min": "min", "max": "max"}
"""The event functions that are computed-trait aggregates of the same name."""


@lru_cache(maxsize=8192)
def series_key(fn: EventFn) -> SeriesKey:
    """The series ``fn`` reads: its event, property and canonical ``where`` text, exactly as a
    ``ComputedTrait`` with the same fields names it (``workspaces.runtime.trait_from_spec``)."""
    return SeriesKey(fn.event, fn.property, to_text(fn.where) if fn.where is not None else None)


def function_value(fn: EventFn, buckets: Sequence[Bucket], at: Millis) -> object | None:
    """The value of ``fn`` at instant ``at`` from the buckets of its series (``series_key(fn)``).

    ``count`` and ``sum`` are numbers (0 without events); ``avg``, ``min`` and ``max`` numbers or
    ``None`` without numeric values; ``last_seen``/``first_seen`` the epoch milliseconds of the
    last/first event in the window, or ``None``; ``days_since`` the days (a float) since ``last_seen``.
    """
    if fn.fn in ("last_seen", "first_seen", "days_since"):
        rows = [b for b in buckets if in_window(b.bucket, at, fn.within_ms)]
        if not rows:
            return None
        if fn.fn == "first_seen":
            return min(b.first_ts for b in rows)
        last = max(b.last_ts for b in rows)
        return last if fn.fn == "last_seen" else (at - last) / DAY
    key = series_key(fn)
    defn = TraitDef(name=fn.fn, aggregate=_AGGREGATES[fn.fn], series=key, window_ms=fn.within_ms)
    value: object | None = evaluate(defn, {key.id: buckets}, at)
    return value


def summary_value(fn: EventFn, summary: Summary, at: Millis) -> object | None:
    """``function_value(fn, buckets, at)`` from the summary of those buckets over ``fn``'s window."""
    if fn.fn in ("last_seen", "first_seen", "days_since"):
        if summary.first_ts is None or summary.last_ts is None:
            return None
        if fn.fn == "first_seen":
            return summary.first_ts
        return summary.last_ts if fn.fn == "last_seen" else (at - summary.last_ts) / DAY
    key = series_key(fn)
    defn = TraitDef(name=fn.fn, aggregate=_AGGREGATES[fn.fn], series=key, window_ms=fn.within_ms)
    value: object | None = evaluate_summary(defn, {(key.id, fn.within_ms): summary}, at)
    return value
