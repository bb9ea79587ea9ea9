"""Stored events: dedupe, insert, timeline pages, and scans for backfills and recomputation."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row

EVENT_COLUMNS = (
    "seq, message_id, profile_id, origin_profile_id, type, name, user_id, anonymous_id, ts, received_at,"
    " restricted, flagged, body"
)


def existing_keys(conn: Conn, ws: str, keys: Sequence[str]) -> set[str]:
    """Which dedupe keys are already stored."""
    found: set[str] = set()
    for start in range(0, len(keys), 500):
        chunk = keys[start:start + 500]
        marks = ",".join("?" * len(chunk))
        found.update(row[0] for row in conn.all(
            f"SELECT dedupe_key FROM events WHERE workspace_id = ? AND dedupe_key IN ({marks})", (ws, *chunk)))
    return found


def insert_event(conn: Conn, row: Sequence[object]) -> int | None:
    """Insert one event; its sequence number, or None when the dedupe key is already stored."""
    value = conn.value(
        "INSERT INTO events (workspace_id, dedupe_key, message_id, profile_id, origin_profile_id, type, name,"
        " user_id, anonymous_id, ts, received_at, restricted, flagged, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, dedupe_key) DO NOTHING RETURNING seq",
        row,
    )
    return None if value is None else int(value)


_EVENT_INSERT = (
    "INSERT INTO events (workspace_id, dedupe_key, message_id, profile_id, origin_profile_id, type, name,"
    " user_id, anonymous_id, ts, received_at, restricted, flagged, body)"
)


def insert_events(conn: Conn, rows: Sequence[Sequence[object]]) -> dict[str, int]:
    """Insert events in order (rows as for ``insert_event``); the sequence number of each stored dedupe key.

    A dedupe key already stored is skipped and absent from the result. One batched insert
    (``Conn.insert_rows``) instead of one statement per event.
    """
    return {key: int(seq) for seq, key in conn.insert_rows(
        _EVENT_INSERT, 14, "ON CONFLICT (workspace_id, dedupe_key) DO NOTHING RETURNING seq, dedupe_key", rows)}


def timeline(conn: Conn, ws: str, profile_id: str, before: tuple[int, int] | None, limit: int) -> list[Row]:
    """Newest first; ``before`` is the (ts, seq) cursor of the previous page's last event."""
    if before is None:
        return conn.all(
            f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id = ?"
            " ORDER BY ts DESC, seq DESC LIMIT ?",
            (ws, profile_id, limit),
        )
    ts, seq = before
    return conn.all(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id = ?"
        " AND (ts < ? OR (ts = ? AND seq < ?)) ORDER BY ts DESC, seq DESC LIMIT ?",
        (ws, profile_id, ts, ts, seq, limit),
    )


def of_profile(conn: Conn, ws: str, profile_id: str) -> list[Row]:
    """Every event of a profile in time order (for recomputation after an unmerge)."""
    return conn.all(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id = ? ORDER BY ts, seq",
        (ws, profile_id),
    )


def named_of_profile(conn: Conn, ws: str, profile_id: str, name: str | None, after: int | None) -> list[Row]:
    """A profile's track events named ``name`` (its events of every type for ``None``) later than ``after`` (all
    for ``None``), in time order: what one person's event functions read when they are evaluated at send time."""
    sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND profile_id = ?"
    args: list[object] = [ws, profile_id]
    if name is not None:
        sql += " AND type = 'track' AND name = ?"
        args.append(name)
    if after is not None:
        sql += " AND ts > ?"
        args.append(after)
    return conn.all(sql + " ORDER BY ts, seq", args)


def scan(conn: Conn, ws: str, after_seq: int, upto_seq: int, limit: int) -> list[Row]:
    """Events by sequence, for backfills: ``after_seq < seq <= upto_seq``."""
    return conn.all(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
        (ws, after_seq, upto_seq, limit),
    )


def max_seq(conn: Conn, ws: str) -> int:
    return int(conn.value("SELECT coalesce(max(seq), 0) FROM events WHERE workspace_id = ?", (ws,)) or 0)


def count(conn: Conn, ws: str) -> int:
    return int(conn.value("SELECT count(*) FROM events WHERE workspace_id = ?", (ws,)) or 0)


INTERNAL_PREFIX = "rapport:"
"""Message ids of events Rapport writes itself (segment entries and exits) start with it."""
INTERNAL_PATTERN = INTERNAL_PREFIX + "%"
OPT_OUT_PATTERN = INTERNAL_PREFIX + "unsubscribed:%"
"""Events Rapport writes for a person's own act: an opt-out through a link or the preference center
(``rapport.consent.unsubscribed``). Measures that leave out what Rapport writes count these."""


def ingested_count(conn: Conn, ws: str) -> int:
    """Events that came in from outside (not the ones Rapport wrote itself)."""
    return int(conn.value("SELECT count(*) FROM events WHERE workspace_id = ? AND message_id NOT LIKE ?",
                          (ws, INTERNAL_PATTERN)) or 0)


def by_message_id(conn: Conn, ws: str, message_id: str) -> list[Row]:
    return conn.all(f"SELECT {EVENT_COLUMNS} FROM events WHERE workspace_id = ? AND message_id = ?",
                    (ws, message_id))
