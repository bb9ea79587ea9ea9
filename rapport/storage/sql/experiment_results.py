"""Experiment results: sufficient statistics per variant, computed by SQL from exposures and stored events.

A unit is an exposed ``experiment_exposures.origin_profile_id`` with a variant (held-out units are only counted,
except a journey split's holdout, which may be read as the arm ``holdout``). A unit counts only when its person
counts once and was measured with consent: not when a merge shadowed its assignment (the winner's counts), not
beside an earlier exposed unit of the same live profile (several journey units that became one person count once, as
the first exposed), and only when its live profile allowed the experiment's consent purpose at its first exposure
(when it was assigned and shown its variant). A later withdrawal keeps the unit: dropping it would hide exactly the
people a variant drove away (an unsubscribe guardrail would never see them); its events count as far as they were
stored with analytics consent. Its events are those of its live profile (the root its id is merged into, found by
following ``profiles.merged_into``; a merge moves the loser's events to the winner, so they count too), stored with
consent (``restricted = 0``), not written by Rapport itself (except the ``Unsubscribed`` events of opt-outs through
a link, the person's own act), and in a span given as offsets from the unit's first exposure, never later than the
analysis instant. Per variant the queries return ``n`` and the sums Σx, Σx², Σy, Σy², Σxy of two per-unit measures x
and y: the metric and its pre-exposure covariate (CUPED), or a ratio's numerator and denominator.
"""

from __future__ import annotations

from dataclasses import dataclass

from rapport.storage.base import Conn, Dialect, Row
from rapport.storage.sql.events import INTERNAL_PATTERN, OPT_OUT_PATTERN
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


@dataclass(frozen=True, slots=True)
class Population:
    """Which exposed units of ``experiment`` an analysis at ``now`` counts.

    ``purpose`` is the experiment's consent purpose, read on each unit's live root at its first exposure: with
    ``needs_grant`` only a grant in effect (not expired) admits the unit (deny by default); without it (a purpose
    on another legal basis) the unit counts unless its latest choice denied or withdrew the purpose; ``None``
    admits everyone. With ``holdout_arm`` a journey split's held-out units (reason ``holdout``) form the arm
    ``holdout``."""

    experiment: str
    now: Millis
    purpose: str | None
    needs_grant: bool = True
    holdout_arm: bool = False


CHAIN = (
    "WITH RECURSIVE chain (unit, variant, reason, first_at, pid, depth) AS ("
    " SELECT x.origin_profile_id, x.variant, x.reason, x.first_at, x.origin_profile_id, 0"
    " FROM experiment_exposures x WHERE x.workspace_id = ? AND x.experiment = ? AND x.first_at <= ?"
    " AND NOT EXISTS (SELECT 1 FROM experiment_assignments a WHERE a.workspace_id = ?"
    " AND a.origin_profile_id = x.origin_profile_id AND a.experiment = x.experiment AND a.shadowed_by IS NOT NULL)"
    " UNION ALL"
    " SELECT chain.unit, chain.variant, chain.reason, chain.first_at, p.merged_into, chain.depth + 1 FROM chain"
    " JOIN profiles p ON p.workspace_id = ? AND p.id = chain.pid WHERE p.merged_into IS NOT NULL"
    " AND chain.depth < 64),"
    " rooted AS (SELECT c.unit AS unit, c.variant AS variant, c.reason AS reason, c.first_at AS first_at,"
    " c.pid AS root, ROW_NUMBER() OVER (PARTITION BY c.pid ORDER BY c.first_at, c.unit) AS rn FROM chain c"
    " WHERE NOT EXISTS (SELECT 1 FROM profiles m WHERE m.workspace_id = ? AND m.id = c.pid"
    " AND m.merged_into IS NOT NULL)"
)
"""Every exposed unit with its live root (following ``profiles.merged_into``), except units whose assignment a
merge shadowed (the person counts with the winner's); ``rn = 1`` marks the first exposed unit of each root, so
several units that became one person count once."""
LATEST = (
    "(SELECT CASE WHEN l.state = 'granted'{expiry} THEN 1 ELSE 0 END FROM consent_ledger l"
    " WHERE l.workspace_id = ? AND l.profile_id = c.pid AND l.purpose = ? AND l.effective_at <= c.first_at"
    " ORDER BY l.effective_at DESC, l.seq DESC LIMIT 1)"
)
"""1 when the root's latest consent entry for the purpose in effect at the unit's first exposure allows it, 0 when
it does not, NULL without any entry: ``rapport.consent.decide.may_use`` in SQL."""
GRANTED = " AND " + LATEST.format(expiry=" AND (l.expires_at IS NULL OR l.expires_at > c.first_at)") + " = 1"
NOT_OBJECTED = " AND coalesce(" + LATEST.format(expiry="") + ", 1) = 1"
ARMS = " AND variant IS NOT NULL"
ARMS_OR_HELD = " AND (variant IS NOT NULL OR reason = 'holdout')"
IN_SEGMENT = (
    " AND EXISTS (SELECT 1 FROM segment_history h WHERE h.workspace_id = ? AND h.segment = ?"
    " AND h.profile_id IN (r.unit, r.root) AND h.entered_at <= r.first_at"
    " AND (h.exited_at IS NULL OR h.exited_at > r.first_at))"
)
JOINED = (
    " SELECT u.unit, e.ts, e.body FROM units u JOIN events e ON e.workspace_id = ? AND e.profile_id = u.root"
    " AND e.restricted = 0 AND (e.message_id NOT LIKE ? OR e.message_id LIKE ?) AND e.ts >= u.first_at + ?"
    " AND e.ts < u.first_at + ? AND e.ts < ?"
)
PER_UNIT_JOIN = (
    " FROM units u LEFT JOIN events e ON e.workspace_id = ? AND e.profile_id = u.root AND e.restricted = 0"
    " AND (e.message_id NOT LIKE ? OR e.message_id LIKE ?) AND e.ts >= u.first_at + ? AND e.ts < u.first_at + ?"
    " AND e.ts < ?"
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


def population(ws: str, pop: Population, *, arms: bool, first_until: Millis | None = None,
               first_after: Millis | None = None, segment: str | None = None) -> tuple[str, list[object]]:
    """The CTE ``units (unit, variant, reason, first_at, root)`` of ``pop`` and its bound values: one unit per live
    root, of those allowing the purpose at their first exposure; with ``arms`` only units in an arm (variant NULL
    becomes ``holdout`` for a journey split's holdout), first exposed in ``(first_after, first_until]`` and, with
    ``segment``, in that segment at their first exposure."""
    params: list[object] = [ws, pop.experiment, pop.now, ws, ws, ws]
    sql = CHAIN
    if pop.purpose is not None:
        sql += GRANTED if pop.needs_grant else NOT_OBJECTED
        params += [ws, pop.purpose]
    variant = "coalesce(variant, 'holdout')" if arms and pop.holdout_arm else "variant"
    sql += ("), units AS (SELECT unit, " + variant + " AS variant, reason, first_at, root FROM rooted r WHERE rn = 1")
    if arms:
        sql += ARMS_OR_HELD if pop.holdout_arm else ARMS
    if first_until is not None:
        sql += " AND first_at <= ?"
        params.append(first_until)
    if first_after is not None:
        sql += " AND first_at > ?"
        params.append(first_after)
    if segment is not None:
        sql += IN_SEGMENT
        params += [ws, segment]
    return sql + ")", params


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


def moments(conn: Conn, ws: str, pop: Population, x: Aggregate, y: Aggregate, *, first_until: Millis,
            segment: str | None = None) -> list[Row]:
    """Per arm: (variant, n, Σx, Σx², Σy, Σy², Σxy) over the units of ``pop`` first exposed at or before
    ``first_until`` (and, with ``segment``, in that segment at their first exposure); events before ``pop.now``.

    One join of each unit with its events over both spans, grouped by unit: a scan of the unit's events
    whatever plan the database picks, rather than one lookup per unit and measure."""
    x_sql, x_params = _measure(conn.dialect, x)
    y_sql, y_params = _measure(conn.dialect, y)
    head_sql, head = population(ws, pop, arms=True, first_until=first_until, segment=segment)
    join: list[object] = [ws, INTERNAL_PATTERN, OPT_OUT_PATTERN, min(x.start, y.start), max(x.end, y.end), pop.now]
    named = ""
    if x.event is not None and y.event is not None:
        named = NAMED_EITHER
        join += [x.event, y.event]
    sql = (head_sql + ", vals AS (SELECT u.variant AS variant, " + x_sql + " AS x, " + y_sql + " AS y"
           + PER_UNIT_JOIN + named + " GROUP BY u.unit, u.variant) " + SUMS)
    return conn.all(sql, [*head, *x_params, *y_params, *join])


def units(conn: Conn, ws: str, pop: Population, *, first_until: Millis, segment: str | None = None) -> list[Row]:
    """(unit, variant, first_at, live root) of every unit of ``pop`` in an arm, first exposed at or before
    ``first_until``."""
    head_sql, head = population(ws, pop, arms=True, first_until=first_until, segment=segment)
    return conn.all(head_sql + " SELECT unit, variant, first_at, root FROM units ORDER BY unit", head)


def unit_events(conn: Conn, ws: str, pop: Population, event: str | None, start: Millis, end: Millis, *,
                first_until: Millis, segment: str | None = None) -> list[Row]:
    """(unit, ts, body) of the events ``moments`` would read for a measure over ``[start, end)``, for measures
    whose filter only Python can evaluate (a ``where`` rule over event properties)."""
    head_sql, head = population(ws, pop, arms=True, first_until=first_until, segment=segment)
    params: list[object] = [ws, INTERNAL_PATTERN, OPT_OUT_PATTERN, start, end, pop.now]
    named = ""
    if event is not None:
        named = NAMED
        params.append(event)
    return conn.all(head_sql + JOINED + named + " ORDER BY u.unit, e.ts", [*head, *params])


def counts(conn: Conn, ws: str, pop: Population, *, first_after: Millis | None = None) -> list[Row]:
    """(variant, reason, units) of the units of ``pop``, held-out ones (variant NULL) included; with
    ``first_after`` only those first exposed after that instant."""
    head_sql, head = population(ws, pop, arms=False, first_after=first_after)
    return conn.all(head_sql + " SELECT variant, reason, count(*) FROM units GROUP BY variant, reason"
                    " ORDER BY variant, reason", head)


def first_exposure(conn: Conn, ws: str, experiment: str) -> Millis | None:
    """When the experiment's first unit was exposed, or None before any."""
    value = conn.value("SELECT min(first_at) FROM experiment_exposures WHERE workspace_id = ? AND experiment = ?",
                       (ws, experiment))
    return None if value is None else int(value)
