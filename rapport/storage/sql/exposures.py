"""Experiment exposures: the first time a unit saw its variant starts its metric windows.

One row per (unit, experiment), keyed by the unit (``experiment_assignments.origin_profile_id``, which never
changes when profiles merge); later exposures raise ``last_at`` and the count. ``reason`` is ``variant`` for a
unit in an arm, else why it has none (``holdout``, ``global_holdout``, ``excluded``); results read the variant.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row
from rapport.types import Millis


def record(conn: Conn, ws: str, unit: str, experiment: str, variant: str | None, reason: str, source: str,
           at: Millis) -> None:
    """Note that ``unit`` was exposed to ``experiment`` (``variant``, or None when held out) at ``at``."""
    record_many(conn, ws, [(unit, experiment, variant, reason, source, at)])


def record_many(conn: Conn, ws: str, rows: Sequence[tuple[str, str, str | None, str, str, Millis]]) -> None:
    """``record`` for several (unit, experiment, variant, reason, source, at) at once."""
    if not rows:
        return
    dialect = conn.dialect
    conn.executemany(
        "INSERT INTO experiment_exposures (workspace_id, origin_profile_id, experiment, variant, reason, source,"
        " first_at, last_at, exposures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
        " ON CONFLICT (workspace_id, origin_profile_id, experiment) DO UPDATE SET"
        f" first_at = {dialect.least('experiment_exposures.first_at', 'excluded.first_at')},"
        f" last_at = {dialect.greatest('experiment_exposures.last_at', 'excluded.last_at')},"
        " exposures = experiment_exposures.exposures + 1",
        [(ws, unit, experiment, variant, reason, source, at, at) for unit, experiment, variant, reason, source, at
         in rows])


def of_experiment(conn: Conn, ws: str, experiment: str) -> list[Row]:
    """Every exposed unit of ``experiment``: (unit, variant, reason, source, first_at, last_at, exposures)."""
    return conn.all(
        "SELECT origin_profile_id, variant, reason, source, first_at, last_at, exposures FROM experiment_exposures"
        " WHERE workspace_id = ? AND experiment = ? ORDER BY origin_profile_id", (ws, experiment))
