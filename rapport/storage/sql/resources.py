"""Versioned resource definitions (every apply that changes a resource adds a version)."""

from __future__ import annotations

from rapport.storage.base import Conn, Row
from rapport.types import Millis

_CURRENT = """
SELECT r.kind, r.name, r.version, r.spec, r.digest, r.applied_at, r.actor
FROM resources r
WHERE r.workspace_id = ? AND r.deleted = 0 AND r.version = (
  SELECT max(v.version) FROM resources v
  WHERE v.workspace_id = r.workspace_id AND v.kind = r.kind AND v.name = r.name)
"""


def current(conn: Conn, ws: str, kind: str | None = None) -> list[Row]:
    """(kind, name, version, spec, digest, applied_at, actor) of every live resource."""
    if kind is None:
        return conn.all(_CURRENT + " ORDER BY r.kind, r.name", (ws,))
    return conn.all(_CURRENT + " AND r.kind = ? ORDER BY r.name", (ws, kind))


def latest_version(conn: Conn, ws: str, kind: str, name: str) -> int:
    value = conn.value(
        "SELECT max(version) FROM resources WHERE workspace_id = ? AND kind = ? AND name = ?", (ws, kind, name)
    )
    return int(value or 0)


def insert_version(
    conn: Conn, ws: str, kind: str, name: str, spec: str, digest: str, deleted: bool, actor: str, now: Millis
) -> int:
    version = latest_version(conn, ws, kind, name) + 1
    conn.execute(
        "INSERT INTO resources (workspace_id, kind, name, version, spec, digest, deleted, actor, applied_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (ws, kind, name, version, spec, digest, int(deleted), actor, now),
    )
    return version


def history(conn: Conn, ws: str, kind: str, name: str) -> list[Row]:
    return conn.all(
        "SELECT version, spec, digest, deleted, actor, applied_at FROM resources"
        " WHERE workspace_id = ? AND kind = ? AND name = ? ORDER BY version",
        (ws, kind, name),
    )


def generation(conn: Conn, ws: str) -> int:
    """Changes whenever any resource of the workspace changes (cheap to poll)."""
    return int(conn.value("SELECT coalesce(max(seq), 0) FROM resources WHERE workspace_id = ?", (ws,)) or 0)
