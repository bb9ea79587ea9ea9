"""The model catalog (``model_versions``) and the reads training and scoring need: the population at an
instant, the target events after a cutoff, and who already holds a score."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row
from rapport.storage.sql.events import INTERNAL_PREFIX
from rapport.types import Millis

VERSION_COLUMNS = ("name, version, resource_version, status, trained_at, cutoff, spec, parameters, metrics,"
                   " scored_at, scored")


def next_version(conn: Conn, ws: str, name: str) -> int:
    row = conn.one("SELECT MAX(version) FROM model_versions WHERE workspace_id = ? AND name = ?", (ws, name))
    return 1 if row is None or row[0] is None else int(row[0]) + 1


def insert_version(conn: Conn, ws: str, name: str, version: int, resource_version: int, status: str,
                   trained_at: Millis, cutoff: Millis, spec: str, parameters: str, metrics: str) -> None:
    conn.execute(
        "INSERT INTO model_versions (workspace_id, name, version, resource_version, status, trained_at, cutoff, spec,"
        " parameters, metrics) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ws, name, version, resource_version, status, trained_at, cutoff, spec, parameters, metrics))


def mark_scored(conn: Conn, ws: str, name: str, version: int, at: Millis, scored: int) -> None:
    conn.execute("UPDATE model_versions SET scored_at = ?, scored = ? WHERE workspace_id = ? AND name = ?"
                 " AND version = ?", (at, scored, ws, name, version))


def versions(conn: Conn, ws: str, name: str | None = None) -> list[Row]:
    """Every stored version (of ``name``, or of every model), as ``VERSION_COLUMNS``, newest first per name."""
    if name is None:
        return conn.all(f"SELECT {VERSION_COLUMNS} FROM model_versions WHERE workspace_id = ?"
                        " ORDER BY name, version DESC", (ws,))
    return conn.all(f"SELECT {VERSION_COLUMNS} FROM model_versions WHERE workspace_id = ? AND name = ?"
                    " ORDER BY version DESC", (ws, name))


def latest(conn: Conn, ws: str) -> list[Row]:
    """(name, version) of the newest ready version of each model."""
    return conn.all("SELECT name, MAX(version) FROM model_versions WHERE workspace_id = ? AND status = 'ready'"
                    " GROUP BY name ORDER BY name", (ws,))


def version(conn: Conn, ws: str, name: str, number: int) -> Row | None:
    return conn.one(f"SELECT {VERSION_COLUMNS} FROM model_versions WHERE workspace_id = ? AND name = ?"
                    " AND version = ?", (ws, name, number))


def profiles_at(conn: Conn, ws: str, at: Millis | None) -> list[str]:
    """The live (not merged) profiles, in id order; with ``at``, those that existed then: created at or before
    it, or holding an event (not one Rapport wrote) with an event time at or before it, as imported history
    does."""
    if at is None:
        rows = conn.all("SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL", (ws,))
    else:
        rows = conn.all(
            "SELECT p.id FROM profiles p WHERE p.workspace_id = ? AND p.merged_into IS NULL AND (p.created_at <= ?"
            " OR EXISTS (SELECT 1 FROM events e WHERE e.workspace_id = ? AND e.profile_id = p.id AND e.ts <= ?"
            " AND e.message_id NOT LIKE ?))", (ws, at, ws, at, INTERNAL_PREFIX + "%"))
    return sorted(str(r[0]) for r in rows)


def target_events(conn: Conn, ws: str, event: str, after: Millis, upto: Millis) -> list[Row]:
    """(profile_id, origin_profile_id, ts, body) of the track events named ``event`` with ``after < ts <= upto``."""
    return conn.all(
        "SELECT profile_id, origin_profile_id, ts, body FROM events WHERE workspace_id = ? AND type = 'track'"
        " AND name = ? AND ts > ? AND ts <= ?", (ws, event, after, upto))


def holders(conn: Conn, ws: str, series: str) -> list[str]:
    """The profiles with at least one bucket of ``series``."""
    return sorted(str(r[0]) for r in conn.all(
        "SELECT DISTINCT profile_id FROM buckets WHERE workspace_id = ? AND series = ?", (ws, series)))


def latest_scores(conn: Conn, ws: str, series: str, profile_ids: Sequence[str]) -> dict[str, str | None]:
    """The newest stored value (JSON text, or None) of ``series`` for each of ``profile_ids`` that has one."""
    out: dict[str, tuple[int, int, str | None]] = {}
    for start in range(0, len(profile_ids), 500):
        chunk = list(profile_ids[start:start + 500])
        marks = ",".join("?" * len(chunk))
        for pid, ts, seq, value in conn.all(
                "SELECT profile_id, last_ts, last_seq, last_val FROM buckets WHERE workspace_id = ? AND series = ?"
                f" AND profile_id IN ({marks})", (ws, series, *chunk)):
            key = (int(ts), int(seq))
            prior = out.get(str(pid))
            if prior is None or key > prior[:2]:
                out[str(pid)] = (key[0], key[1], None if value is None else str(value))
    return {pid: found[2] for pid, found in out.items()}
