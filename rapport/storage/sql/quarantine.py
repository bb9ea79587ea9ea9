"""Quarantined messages: stored apart by a tracking plan, listed, and marked once replayed.

A row is open until it is replayed; replaying keeps the row (id, message id, plan, violations,
times) as a trace but empties its payload, since the event itself is then stored.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row
from rapport.types import Millis

COLUMNS = "seq, id, message_id, event_name, plan, violations, payload, received_at"
OPEN = f"SELECT {COLUMNS} FROM quarantine WHERE workspace_id = ? AND replayed_at IS NULL"
CHUNK = 500
"""Ids bound per statement (well under every backend's parameter limit)."""

QuarantineRow = tuple[str, str, str | None, str, str, bytes, Millis]
"""(id, message_id, event_name, plan, violations as a JSON list, sealed payload, received_at)."""


def insert_many(conn: Conn, ws: str, rows: Sequence[QuarantineRow]) -> None:
    """Store quarantined messages of one workspace."""
    conn.executemany(
        "INSERT INTO quarantine (workspace_id, id, message_id, event_name, plan, violations, payload, received_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(ws, *row) for row in rows],
    )


def newest(conn: Conn, ws: str, event: str | None, before_seq: int | None, limit: int) -> list[Row]:
    """Open messages, newest first, optionally of one event; ``before_seq`` is the previous page's last ``seq``."""
    before = before_seq if before_seq is not None else 2**62
    if event is None:
        return conn.all(OPEN + " AND seq < ? ORDER BY seq DESC LIMIT ?", (ws, before, limit))
    return conn.all(OPEN + " AND event_name = ? AND seq < ? ORDER BY seq DESC LIMIT ?", (ws, event, before, limit))


def oldest(conn: Conn, ws: str, event: str | None, after_seq: int, limit: int) -> list[Row]:
    """Open messages in arrival order after ``after_seq``, optionally of one event (what a replay walks)."""
    if event is None:
        return conn.all(OPEN + " AND seq > ? ORDER BY seq LIMIT ?", (ws, after_seq, limit))
    return conn.all(OPEN + " AND event_name = ? AND seq > ? ORDER BY seq LIMIT ?", (ws, event, after_seq, limit))


def by_ids(conn: Conn, ws: str, ids: Sequence[str]) -> list[Row]:
    """The open messages among ``ids``, in arrival order."""
    found: list[Row] = []
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        found.extend(conn.all(OPEN + f" AND id IN ({marks})", (ws, *chunk)))
    return sorted(found, key=lambda row: int(row[0]))


def count_open(conn: Conn, ws: str, event: str | None = None) -> int:
    if event is None:
        return int(conn.value("SELECT count(*) FROM quarantine WHERE workspace_id = ? AND replayed_at IS NULL",
                              (ws,)) or 0)
    return int(conn.value("SELECT count(*) FROM quarantine WHERE workspace_id = ? AND replayed_at IS NULL"
                          " AND event_name = ?", (ws, event)) or 0)


def claim(conn: Conn, ws: str, ids: Sequence[str], now: Millis) -> set[str]:
    """Mark open messages replayed (emptying their payloads); the ids this call marked.

    An id another replay marked first is not returned, so the caller stores only what it claimed
    (on PostgreSQL a concurrent claim waits for the row lock, then finds the row no longer open).
    """
    claimed: set[str] = set()
    for start in range(0, len(ids), CHUNK):
        chunk = ids[start:start + CHUNK]
        marks = ",".join("?" * len(chunk))
        claimed.update(str(row[0]) for row in conn.all(
            "UPDATE quarantine SET replayed_at = ?, payload = ? WHERE workspace_id = ? AND replayed_at IS NULL"
            f" AND id IN ({marks}) RETURNING id", (now, b"", ws, *chunk)))
    return claimed


def update_violations(conn: Conn, ws: str, rows: Sequence[tuple[str, str, str]]) -> None:
    """Record why open messages still fail: rows of (plan, violations as a JSON list, id)."""
    conn.executemany(
        "UPDATE quarantine SET plan = ?, violations = ? WHERE workspace_id = ? AND id = ? AND replayed_at IS NULL",
        [(plan, violations, ws, qid) for plan, violations, qid in rows],
    )
