"""KPI reads: messages sent in a period, their opens and clicks, the events (stored with analytics consent) and
unsubscribes that follow them, merged profiles and segment membership."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row

UNSUBSCRIBE_SOURCE = "unsubscribe_link"


def journey_sends(conn: Conn, ws: str, start: int, end: int) -> list[Row]:
    """(idempotency_key, profile_id, journey, step_id, template, channel, sent_at) of the messages journeys sent in
    ``[start, end)``."""
    return conn.all("SELECT idempotency_key, profile_id, journey, step_id, template, channel, sent_at"
                    " FROM journey_sends WHERE workspace_id = ? AND status = 'sent' AND sent_at >= ? AND sent_at < ?"
                    " ORDER BY sent_at, idempotency_key", (ws, start, end))


def engagement(conn: Conn, ws: str, start: int, end: int) -> list[Row]:
    """(idempotency_key, kind) of the counted opens and clicks of the messages sent in ``[start, end)``."""
    return conn.all("SELECT DISTINCT g.idempotency_key, g.kind FROM email_engagement g"
                    " JOIN journey_sends s ON s.workspace_id = g.workspace_id AND s.idempotency_key = g.idempotency_key"
                    " WHERE g.workspace_id = ? AND s.status = 'sent' AND s.sent_at >= ? AND s.sent_at < ?",
                    (ws, start, end))


def named_events(conn: Conn, ws: str, names: Sequence[str], start: int, end: int) -> list[Row]:
    """(seq, profile_id, name, ts, body) of the track events named one of ``names`` in ``[start, end)``, only those
    stored with analytics consent (``restricted = 0``): an event kept minimized without it is never measured."""
    marks = ",".join("?" * len(names))
    return conn.all(f"SELECT seq, profile_id, name, ts, body FROM events WHERE workspace_id = ? AND type = 'track'"
                    f" AND name IN ({marks}) AND restricted = 0 AND ts >= ? AND ts < ? ORDER BY ts, seq",
                    (ws, *names, start, end))


def link_unsubscribes(conn: Conn, ws: str, start: int, end: int) -> list[Row]:
    """(id, profile_id, recorded_at) of the withdrawals through unsubscribe links recorded in ``[start, end)``."""
    return conn.all("SELECT id, profile_id, recorded_at FROM consent_ledger WHERE workspace_id = ? AND source = ?"
                    " AND state = 'withdrawn' AND recorded_at >= ? AND recorded_at < ?",
                    (ws, UNSUBSCRIBE_SOURCE, start, end))


def merged(conn: Conn, ws: str) -> dict[str, str]:
    """Profile -> the profile it was merged into, for every merged profile."""
    return {str(a): str(b) for a, b in conn.all(
        "SELECT id, merged_into FROM profiles WHERE workspace_id = ? AND merged_into IS NOT NULL", (ws,))}


def memberships(conn: Conn, ws: str, start: int, end: int) -> list[Row]:
    """(segment, profile_id, entered_at, exited_at) of the memberships that overlap ``[start, end)``."""
    return conn.all("SELECT segment, profile_id, entered_at, exited_at FROM segment_history WHERE workspace_id = ?"
                    " AND entered_at < ? AND (exited_at IS NULL OR exited_at > ?)", (ws, end, start))


def current_members(conn: Conn, ws: str) -> list[Row]:
    """(segment, profile_id) of every current membership."""
    return conn.all("SELECT segment, profile_id FROM segment_history WHERE workspace_id = ? AND exited_at IS NULL",
                    (ws,))
