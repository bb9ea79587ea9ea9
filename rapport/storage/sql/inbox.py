"""Storage of the channels that deliver into Rapport itself: in-app inbox messages and offline tasks.

Both tables keep one row per idempotency key: ``store_message`` and ``store_task`` insert with
``ON CONFLICT DO NOTHING`` and return the row that holds the key, the first one, whether or not this call
stored it. Reads of a person's inbox take the ids of a live profile and every profile merged into it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from rapport.storage.base import Conn, Row

MESSAGE_COLUMNS = "id, profile_id, channel, title, body, data, created_at, read_at"
TASK_COLUMNS = "id, channel, profile_id, title, body, data, created_at, done_at, done_by"


def store_message(conn: Conn, ws: str, row: Sequence[object]) -> tuple[str, int, bool]:
    """Store an inbox message, ``row`` being (id, profile_id, channel, idempotency_key, title, body, data json,
    created_at), unless its idempotency key is already stored. Returns the (id, created_at) of the message
    holding the key and whether this call stored it."""
    return _store_once(conn, ws, "inbox_messages", row, row[3])


def messages(conn: Conn, ws: str, profile_ids: Sequence[str], limit: int,
             before: tuple[int, str] | None = None) -> list[Row]:
    """Inbox messages (``MESSAGE_COLUMNS``) of these profiles, newest first, after the (created_at, id)
    position ``before`` when given."""
    marks = ",".join("?" * len(profile_ids))
    if before is None:
        return conn.all(
            f"SELECT {MESSAGE_COLUMNS} FROM inbox_messages WHERE workspace_id = ? AND profile_id IN ({marks})"
            " ORDER BY created_at DESC, id DESC LIMIT ?", (ws, *profile_ids, limit))
    at, last = before
    return conn.all(
        f"SELECT {MESSAGE_COLUMNS} FROM inbox_messages WHERE workspace_id = ? AND profile_id IN ({marks})"
        " AND (created_at < ? OR (created_at = ? AND id < ?)) ORDER BY created_at DESC, id DESC LIMIT ?",
        (ws, *profile_ids, at, at, last, limit))


def message(conn: Conn, ws: str, profile_ids: Sequence[str], message_id: str) -> Row | None:
    """The inbox message ``message_id`` (``MESSAGE_COLUMNS``) if it belongs to one of these profiles."""
    marks = ",".join("?" * len(profile_ids))
    return conn.one(f"SELECT {MESSAGE_COLUMNS} FROM inbox_messages WHERE workspace_id = ? AND id = ?"
                    f" AND profile_id IN ({marks})", (ws, message_id, *profile_ids))


def unread(conn: Conn, ws: str, profile_ids: Sequence[str]) -> int:
    """How many inbox messages of these profiles are not read yet."""
    marks = ",".join("?" * len(profile_ids))
    return int(conn.value(f"SELECT count(*) FROM inbox_messages WHERE workspace_id = ? AND profile_id IN ({marks})"
                          " AND read_at IS NULL", (ws, *profile_ids)) or 0)


def mark_read(conn: Conn, ws: str, profile_ids: Sequence[str], message_id: str, at: int) -> Row | None:
    """Mark the message read at ``at`` unless it already was (the first read time stays); returns the
    message (``MESSAGE_COLUMNS``), or ``None`` when none of these profiles has it."""
    marks = ",".join("?" * len(profile_ids))
    conn.execute(f"UPDATE inbox_messages SET read_at = ? WHERE workspace_id = ? AND id = ? AND profile_id IN ({marks})"
                 " AND read_at IS NULL", (at, ws, message_id, *profile_ids))
    return message(conn, ws, profile_ids, message_id)


def store_task(conn: Conn, ws: str, row: Sequence[object]) -> tuple[str, int, bool]:
    """Store an offline task, ``row`` being (id, channel, idempotency_key, profile_id, title, body, data json,
    created_at), unless its idempotency key is already stored. Returns the (id, created_at) of the task
    holding the key and whether this call stored it."""
    return _store_once(conn, ws, "offline_tasks", row, row[2])


def tasks(conn: Conn, ws: str, channel: str, *, open_only: bool, limit: int,
          after: tuple[int, str] | None = None) -> list[Row]:
    """Tasks (``TASK_COLUMNS``) of the offline channel ``channel``, oldest first, only those not done with
    ``open_only``, after the (created_at, id) position ``after`` when given."""
    if after is None:
        return conn.all(f"SELECT {TASK_COLUMNS} FROM offline_tasks WHERE workspace_id = ? AND channel = ?"
                        " AND (done_at IS NULL OR ? = 0) ORDER BY created_at, id LIMIT ?",
                        (ws, channel, int(open_only), limit))
    at, last = after
    return conn.all(f"SELECT {TASK_COLUMNS} FROM offline_tasks WHERE workspace_id = ? AND channel = ?"
                    " AND (done_at IS NULL OR ? = 0) AND (created_at > ? OR (created_at = ? AND id > ?))"
                    " ORDER BY created_at, id LIMIT ?", (ws, channel, int(open_only), at, at, last, limit))


def task(conn: Conn, ws: str, channel: str, task_id: str) -> Row | None:
    """The task ``task_id`` (``TASK_COLUMNS``) of the offline channel ``channel``."""
    return conn.one(f"SELECT {TASK_COLUMNS} FROM offline_tasks WHERE workspace_id = ? AND channel = ? AND id = ?",
                    (ws, channel, task_id))


def mark_done(conn: Conn, ws: str, channel: str, task_id: str, at: int, actor: str) -> Row | None:
    """Mark the task done at ``at`` by ``actor`` unless it already was (the first completion stays); returns
    the task (``TASK_COLUMNS``), or ``None`` when the channel has no such task."""
    conn.execute("UPDATE offline_tasks SET done_at = ?, done_by = ? WHERE workspace_id = ? AND channel = ? AND id = ?"
                 " AND done_at IS NULL", (at, actor, ws, channel, task_id))
    return task(conn, ws, channel, task_id)


STORED_HEAD: Final = {"inbox_messages": "id, profile_id, channel, idempotency_key",
                      "offline_tasks": "id, channel, idempotency_key, profile_id"}
"""The leading columns (constant SQL) of a stored message or task row; title, body, data and created_at follow."""


def _store_once(conn: Conn, ws: str, table: str, row: Sequence[object], key: object) -> tuple[str, int, bool]:
    """Insert ``row`` into ``table`` unless idempotency key ``key`` is stored there: (id, created_at) of the row
    holding the key, and whether this call stored it."""
    column = STORED_HEAD[table]
    new = conn.execute(
        f"INSERT INTO {table} (workspace_id, {column}, title, body, data, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (workspace_id, idempotency_key) DO NOTHING", (ws, *row))
    found = conn.one(f"SELECT id, created_at FROM {table} WHERE workspace_id = ? AND idempotency_key = ?", (ws, key))
    assert found is not None, "the key was just stored, here or by an earlier send"
    return str(found[0]), int(found[1]), new == 1
