"""Experiment results: sufficient statistics per variant, computed by SQL from exposures and stored events.

A unit is an exposed ``experiment_exposures.origin_profile_id`` with a variant (held-out units are only
counted, except a journey split's holdout, which may be read as the arm ``holdout``). Its events are those
of its live profile (the root its id is merged into, found by following ``profiles.merged_into``; a merge
moves the loser's events to the winner, so they count too), stored with consent (``restricted = 0``), not
written by Rapport itself, and in a span given as offsets from the unit's first exposure, never later than
the analysis instant. Per variant the queries return ``n`` and the sums Σx, Σx², Σy, Σy², Σxy of two
per-unit measures x and y: the metric and its pre-exposure covariate (CUPED), or a ratio's numerator and
denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport.storage.base import Conn, Dialect, Row
from rapport.storage.sql.events import INTERNAL_PATTERN
from rapport.types import Millis


@dataclass(frozen=True, slots=True)
class Aggregate:
    """One per-unit measure: events named ``event`` (every event for None) with ts in
    ``[first_at + start, first_at + end)``; their count, the sum of the numeric property ``prop``, or with
    ``exists`` 1 when there is at least one, else 0."""

    event: str | None
    prop: str | None
    exists: bool
    start: Millis
    end: Millis


EXPOSED = (
    "WITH RECURSIVE chain (unit, variant, first_at, pid, depth) AS ("
    " SELECT origin_profile_id, variant, first_at, origin_profile_id, 0 FROM experiment_exposures"
    " WHERE workspace_id = ? AND experiment = ? AND variant IS NOT NULL AND first_at <= ?"
)
EXPOSED_OR_HELD = (
    "WITH RECURSIVE chain (unit, variant, first_at, pid, depth) AS ("
    " SELECT origin_profile_id, coalesce(variant, 'holdout'), first_at, origin_profile_id, 0"
    " FROM experiment_exposures WHERE workspace_id = ? AND experiment = ?"
    " AND (variant IS NOT NULL OR reason = 'holdout') AND first_at <= ?"
)
"""The units of a journey split's experiment: its holdout is the arm ``holdout``."""
ROOTS = (
    " UNION ALL"
    " SELECT chain.unit, chain.variant, chain.first_at, p.merged_into, chain.depth + 1 FROM chain JOIN profiles p"
    " ON p.workspace_id = ? AND p.id = chain.pid WHERE p.merged_into IS NOT NULL AND chain.depth < 64),"
    " units AS (SELECT c.unit AS unit, c.variant AS variant, c.first_at AS first_at, c.pid AS root FROM chain c"
    " WHERE NOT EXISTS (SELECT 1 FROM profiles m WHERE m.workspace_id = ? AND m.id = c.pid"
    " AND m.merged_into IS NOT NULL)"
)
IN_SEGMENT = (
    " AND EXISTS (SELECT 1 FROM segment_history h WHERE h.workspace_id = ? AND h.segment = ?"
    " AND h.profile_id IN (c.unit, c.pid) AND h.entered_at <= c.first_at"
    " AND (h.exited_at IS NULL OR h.exited_at > c.first_at))"
)
JOINED = (
    " SELECT u.unit, e.ts, e.body FROM units u JOIN events e ON e.workspace_id = ? AND e.profile_id = u.root"
    " AND e.restricted = 0 AND e.message_id NOT LIKE ? AND e.ts >= u.first_at + ? AND e.ts < u.first_at + ?"
    " AND e.ts < ?"
)
PER_UNIT_JOIN = (
    " FROM units u LEFT JOIN events e ON e.workspace_id = ? AND e.profile_id = u.root AND e.restricted = 0"
    " AND e.message_id NOT LIKE ? AND e.ts >= u.first_at + ? AND e.ts < u.first_at + ? AND e.ts < ?"
)
NAMED = " AND e.type = 'track' AND e.name = ?"
NAMED_EITHER = " AND e.type = 'track' AND e.name IN (?, ?)"
IN_SPAN = "e.ts >= u.first_at + ? AND e.ts < u.first_at + ?"
NUMBER = {
    "sqlite": "CASE WHEN json_type(e.body, ?) IN ('integer', 'real') THEN json_extract(e.body, ?) END",
    "postgres": ("CASE WHEN jsonb_typeof(CAST(e.body AS jsonb) -> 'properties' -> ?) = 'number'"
                 " THEN CAST(CAST(e.body AS jsonb) -> 'properties' ->> ? AS DOUBLE PRECISION) END"),
}
SUMS = (
    "SELECT variant, count(*), coalesce(sum(x), 0), coalesce(sum(x * x), 0), coalesce(sum(y), 0),"
    " coalesce(sum(y * y), 0), coalesce(sum(x * y), 0) FROM vals GROUP BY variant ORDER BY variant"
)


def _chain(holdout_arm: bool) -> str:
    return (EXPOSED_OR_HELD if holdout_arm else EXPOSED) + ROOTS


def _property_key(dialect: Dialect, prop: str) -> str:
    """How the dialect's number expression names ``prop``: a JSON path (SQLite) or a key (PostgreSQL)."""
    if dialect.name == "sqlite":
        return '$.properties."' + prop.replace('"', "") + '"'
    return prop


def _measure(dialect: Dialect, agg: Aggregate) -> tuple[str, list[object]]:
    """SQL aggregating one unit's joined events ``e`` to its measure, and its bound values."""
    cond = IN_SPAN + (NAMED if agg.event is not None else "")
    params: list[object] = [agg.start, agg.end]
    if agg.event is not None:
        params.append(agg.event)
    if agg.exists:
        return "coalesce(max(CASE WHEN " + cond + " THEN 1 ELSE 0 END), 0)", params
    if agg.prop is None:
        return "coalesce(sum(CASE WHEN " + cond + " THEN 1 ELSE 0 END), 0)", params
    key = _property_key(dialect, agg.prop)
    return "coalesce(sum(CASE WHEN " + cond + " THEN " + NUMBER[dialect.name] + " END), 0)", [*params, key, key]


def moments(conn: Conn, ws: str, experiment: str, x: Aggregate, y: Aggregate, *, now: Millis,
            first_until: Millis, segment: str | None = None, holdout_arm: bool = False) -> list[Row]:
    """Per variant: (variant, n, Σx, Σx², Σy, Σy², Σxy) over the units first exposed at or before
    ``first_until`` (and, with ``segment``, in that segment at their first exposure); events up to ``now``.

    One join of each unit with its events over both spans, grouped by unit: a scan of the unit's events
    whatever plan the database picks, rather than one lookup per unit and measure."""
    x_sql, x_params = _measure(conn.dialect, x)
    y_sql, y_params = _measure(conn.dialect, y)
    head: list[object] = [ws, experiment, first_until, ws, ws]
    segment_sql = ""
    if segment is not None:
        segment_sql = IN_SEGMENT
        head += [ws, segment]
    join: list[object] = [ws, INTERNAL_PATTERN, min(x.start, y.start), max(x.end, y.end), now]
    named = ""
    if x.event is not None and y.event is not None:
        named = NAMED_EITHER
        join += [x.event, y.event]
    sql = (_chain(holdout_arm) + segment_sql + "), vals AS (SELECT u.variant AS variant, " + x_sql + " AS x, "
           + y_sql + " AS y" + PER_UNIT_JOIN + named + " GROUP BY u.unit, u.variant) " + SUMS)
    return conn.all(sql, [*head, *x_params, *y_params, *join])


def units(conn: Conn, ws: str, experiment: str, *, first_until: Millis, segment: str | None = None,
          holdout_arm: bool = False) -> list[Row]:
    """(unit, variant, first_at, live root) of every unit first exposed at or before ``first_until``."""
    head: list[object] = [ws, experiment, first_until, ws, ws]
    segment_sql = ""
    if segment is not None:
        segment_sql = IN_SEGMENT
        head += [ws, segment]
    return conn.all(_chain(holdout_arm) + segment_sql + ") SELECT unit, variant, first_at, root FROM units"
                    " ORDER BY unit", head)


def unit_events(conn: Conn, ws: str, experiment: str, event: str | None, start: Millis, end: Millis, *,
                now: Millis, first_until: Millis, segment: str | None = None, holdout_arm: bool = False) -> list[Row]:
    """(unit, ts, body) of the events ``moments`` would read for a measure over ``[start, end)``, for measures
    whose filter only Python can evaluate (a ``where`` rule over event properties)."""
    head: list[object] = [ws, experiment, first_until, ws, ws]
    segment_sql = ""
    if segment is not None:
        segment_sql = IN_SEGMENT
        head += [ws, segment]
    params: list[object] = [ws, INTERNAL_PATTERN, start, end, now]
    named = ""
    if event is not None:
        named = NAMED
        params.append(event)
    return conn.all(_chain(holdout_arm) + segment_sql + ")" + JOINED + named + " ORDER BY u.unit, e.ts",
                    [*head, *params])


def counts(conn: Conn, ws: str, experiment: str) -> list[Row]:
    """(variant, reason, units) of every exposed unit, held-out ones (variant NULL) included."""
    return conn.all(
        "SELECT variant, reason, count(*) FROM experiment_exposures WHERE workspace_id = ? AND experiment = ?"
        " GROUP BY variant, reason ORDER BY variant, reason", (ws, experiment))


def first_exposure(conn: Conn, ws: str, experiment: str) -> Millis | None:
    """When the experiment's first unit was exposed, or None before any."""
    value = conn.value("SELECT min(first_at) FROM experiment_exposures WHERE workspace_id = ? AND experiment = ?",
                       (ws, experiment))
    return None if value is None else int(value)
