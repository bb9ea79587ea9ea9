"""Delivery feedback storage: suppressed addresses, counted opens and clicks, and sends found by provider id.

Suppressions are keyed by address and channel, the address as its keyed hash
(``rapport.channels.feedback.address_hash``, the workspace's blind index of the normalized address), and carry
the profile the feedback was matched to. A profile keeps the suppressions of every profile merged into it:
reads walk the merge tree (``profiles.merged_into``) down from the profiles asked for, so a merge or an unmerge
needs no rows moved.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.journeys.gate import Suppression
from rapport.storage.base import Conn, Row
from rapport.storage.sql.journeys import SEND_COLUMNS

SUPPRESSION_COLUMNS = "profile_id, channel, address_hash, reason, source, detail, recorded_at"
ENGAGEMENT_COLUMNS = "idempotency_key, kind, target, url, profile_id, count, first_at, last_at"


def send_by_key(conn: Conn, ws: str, key: str) -> Row | None:
    """The send-log row (``SEND_COLUMNS`` of ``rapport.storage.sql.journeys``) of idempotency key ``key``."""
    return conn.one(f"SELECT {SEND_COLUMNS} FROM journey_sends WHERE workspace_id = ? AND idempotency_key = ?",
                    (ws, key))


def send_by_provider_id(conn: Conn, ws: str, provider_id: str) -> Row | None:
    """The send-log row (``SEND_COLUMNS``) the provider accepted as ``provider_id``, the latest if several."""
    return conn.one(
        f"SELECT {SEND_COLUMNS} FROM journey_sends WHERE workspace_id = ? AND provider_id = ?"
        " ORDER BY sent_at DESC, idempotency_key LIMIT 1", (ws, provider_id))


def store_suppression(conn: Conn, ws: str, row: Sequence[object]) -> bool:
    """Record a suppression (``SUPPRESSION_COLUMNS`` order); ``True`` when it is new.

    An address already suppressed for the channel and reason keeps its first record; it only gains a
    profile when it had none (feedback about an address nobody had, matched later).
    """
    return conn.execute(
        f"INSERT INTO suppressions (workspace_id, {SUPPRESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, channel, address_hash, reason) DO UPDATE SET profile_id = excluded.profile_id"
        " WHERE suppressions.profile_id IS NULL AND excluded.profile_id IS NOT NULL", (ws, *row)) == 1


def suppression_rows(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    """(root, ``SUPPRESSION_COLUMNS``...) of the suppressions of ``profile_ids`` and of every profile merged
    into them, where ``root`` is the profile asked for; by root, then oldest first."""
    out: list[Row] = []
    for start in range(0, len(profile_ids), 500):
        chunk = profile_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        out += conn.all(
            "WITH RECURSIVE tree (root, id) AS ("
            f" SELECT id, id FROM profiles WHERE workspace_id = ? AND id IN ({marks})"
            " UNION ALL SELECT tree.root, p.id FROM profiles p JOIN tree ON p.merged_into = tree.id"
            " WHERE p.workspace_id = ?)"
            " SELECT tree.root, s.profile_id, s.channel, s.address_hash, s.reason, s.source, s.detail, s.recorded_at"
            " FROM tree JOIN suppressions s ON s.profile_id = tree.id WHERE s.workspace_id = ?"
            " ORDER BY tree.root, s.recorded_at, s.channel, s.reason, s.address_hash",
            (ws, *chunk, ws, ws))
    return out


def suppressions_of(conn: Conn, ws: str, profile_ids: Sequence[str]) -> dict[str, list[Suppression]]:
    """The hard-bounce and complaint suppressions of each of ``profile_ids`` (those merged into it included),
    for the send gate; a profile without any is absent."""
    out: dict[str, list[Suppression]] = {}
    for row in suppression_rows(conn, ws, profile_ids):
        root, _pid, channel, _hash, reason, _source, _detail, recorded_at = row
        out.setdefault(str(root), []).append(Suppression(reason, str(channel), int(recorded_at)))
    return out


def delete_suppressions(conn: Conn, ws: str, profile_ids: Sequence[str], channel: str, reason: str,
                        address_hash: str | None = None) -> list[Row]:
    """Remove the ``channel``/``reason`` suppressions held by ``profile_ids`` (only the one of ``address_hash``
    when given); the removed rows (``SUPPRESSION_COLUMNS``)."""
    if not profile_ids:
        return []
    marks = ",".join("?" * len(profile_ids))
    params: list[object] = [ws, channel, reason, *profile_ids]
    sql = f"DELETE FROM suppressions WHERE workspace_id = ? AND channel = ? AND reason = ? AND profile_id IN ({marks})"
    if address_hash is not None:
        sql += " AND address_hash = ?"
        params.append(address_hash)
    return conn.all(sql + f" RETURNING {SUPPRESSION_COLUMNS}", params)


def count_engagement(conn: Conn, ws: str, row: Sequence[object]) -> int:
    """Count one open or click (idempotency_key, kind, target, url, profile_id, at); how many there have now
    been of that kind and target for the message (1 for the first)."""
    key, kind, target, url, profile_id, at = row
    return int(conn.value(
        "INSERT INTO email_engagement (workspace_id, idempotency_key, kind, target, url, profile_id, count, first_at,"
        " last_at) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?) ON CONFLICT (workspace_id, idempotency_key, kind, target)"
        " DO UPDATE SET count = email_engagement.count + 1, last_at = excluded.last_at RETURNING count",
        (ws, key, kind, target, url, profile_id, at, at)))


def engagement_of(conn: Conn, ws: str, key: str) -> list[Row]:
    """The counted opens and clicks (``ENGAGEMENT_COLUMNS``) of the message with idempotency key ``key``."""
    return conn.all(f"SELECT {ENGAGEMENT_COLUMNS} FROM email_engagement WHERE workspace_id = ?"
                    " AND idempotency_key = ? ORDER BY kind, first_at, target", (ws, key))
