"""Feature values: each feature is a computed trait, read as ``computed.<name>`` at an instant.

Computed traits are time-bucketed series evaluable at any instant, so the same reader serves training
(every feature as of the cutoff, without scanning events) and scoring (as of now). A value becomes a
number: numbers as they are, booleans as 0/1, an instant (a ``first``/``last`` trait without a
property) as the days elapsed since it; anything else is missing.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from rapport.clock import parse_iso
from rapport.profiles.computed import SummaryKey, TraitDef, summary_fields
from rapport.rules import EvalContext, Path
from rapport.segments.stored import Needs, trait_needs
from rapport.types import DAY, Millis
from rapport.workspaces.runtime import WorkspaceRuntime


def as_number(defn: TraitDef | None, value: object, at: Millis) -> float | None:
    """A computed trait's value at ``at`` as a model input (None: missing)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
        return number if -math.inf < number < math.inf else None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if (isinstance(value, str) and defn is not None and defn.aggregate in ("first", "last")
            and defn.series.prop is None):
        try:
            return (at - parse_iso(value)) / DAY
        except ValueError:
            return None
    return None


def feature_values(features: Sequence[str], traits: Mapping[str, TraitDef],
                   ctx: EvalContext) -> dict[str, float | None]:
    """Each feature's value through ``ctx`` at its instant (e.g. a ``segments.stored.StoredContext``), read as the
    trait definitions ``traits`` say (a workspace's ``rt.traits``): training and serving share this one reader."""
    out: dict[str, float | None] = {}
    at = ctx.now_ms
    for name in features:
        path = _PATHS.get(name)
        if path is None:
            if len(_PATHS) >= 4096:
                _PATHS.clear()
            path = _PATHS[name] = Path("computed", (name,))
        found, value = ctx.lookup(path)
        out[name] = as_number(traits.get(name), value, at) if found else None
    return out


_PATHS: dict[str, Path] = {}
"""The rule path of each feature read (a model is scored on every decision that ranks with it)."""


def feature_needs(features: Iterable[str], rt: WorkspaceRuntime, *, consent: bool = False) -> Needs:
    """The stored data reading ``features`` needs (``segments.stored.load``), with the consent ledger."""
    series: set[str] = set()
    distinct: set[str] = set()
    windows: set[SummaryKey] = set()
    rows: set[str] = set()
    fields: set[str] = set()
    for name in features:
        defn = rt.traits.get(name)
        if defn is None:
            continue
        read, summaries, raw = trait_needs(defn)
        series |= read
        windows |= summaries
        rows |= raw
        if summaries:
            fields |= summary_fields(defn.aggregate)
        if defn.aggregate == "distinct":
            distinct.add(defn.series.id)
    return Needs(series=frozenset(series), distinct=frozenset(distinct), consent=consent, windows=frozenset(windows),
                 rows=frozenset(rows), fields=frozenset(fields))
