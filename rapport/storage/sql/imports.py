"""Progress of resumable loads (file imports, the demo generation): how far each source got."""

from __future__ import annotations

from rapport.storage.base import Conn
from rapport.types import Millis


def load_progress(conn: Conn, ws: str, source: str) -> tuple[int, int | None, Millis | None] | None:
    """(position, total, finished_at) saved for a source, or None when it never ran."""
    row = conn.one("SELECT position, total, finished_at FROM imports WHERE workspace_id = ? AND source = ?",
                   (ws, source))
    if row is None:
        return None
    return int(row[0]), None if row[1] is None else int(row[1]), None if row[2] is None else int(row[2])


def save_progress(conn: Conn, ws: str, source: str, position: int, total: int | None, now: Millis,
                  finished: bool) -> None:
    """Record how far a source got (and whether it reached the end)."""
    conn.execute(
        "INSERT INTO imports (workspace_id, source, position, total, updated_at, finished_at)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, source) DO UPDATE SET position = excluded.position,"
        " total = excluded.total, updated_at = excluded.updated_at, finished_at = excluded.finished_at",
        (ws, source, position, total, now, now if finished else None),
    )
