"""What a decision reads and writes: a person's traits by name, impressions of capped blocks, purchases."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row
from rapport.types import Millis

OWNING_EVENTS = ("Order Completed", "Order Refunded", "Product Returned")
"""Events whose products the person bought or returned: offers promoting them are not shown again."""


def traits(conn: Conn, ws: str, profile_id: str, names: Sequence[str]) -> list[Row]:
    """(name, value JSON, key_profile_id) of the profile's traits among ``names``."""
    if not names:
        return []
    marks = ",".join("?" * len(names))
    return conn.all(
        "SELECT name, value, key_profile_id FROM traits WHERE workspace_id = ? AND profile_id = ?"
        f" AND name IN ({marks})", (ws, profile_id, *names))


def impressions(conn: Conn, ws: str, profile_id: str, blocks: Sequence[str], since: Millis) -> list[Row]:
    """(block, at) of the profile's impressions of ``blocks`` after ``since``."""
    if not blocks:
        return []
    marks = ",".join("?" * len(blocks))
    return conn.all(
        "SELECT block, at FROM content_impressions WHERE workspace_id = ? AND profile_id = ?"
        f" AND block IN ({marks}) AND at > ?", (ws, profile_id, *blocks, since))


def record_impressions(conn: Conn, ws: str, rows: Sequence[tuple[str, str, str, Millis]]) -> None:
    """Store (profile_id, block, placement, at) impressions (each remembers its profile as its origin, so merges
    and unmerges move it as they move events)."""
    if rows:
        conn.executemany(
            "INSERT INTO content_impressions (workspace_id, profile_id, origin_profile_id, block, placement, at)"
            " VALUES (?, ?, ?, ?, ?, ?)", [(ws, row[0], *row) for row in rows])


def owning_event_bodies(conn: Conn, ws: str, profile_id: str, limit: int) -> list[Row]:
    """(body,) of the profile's ``limit`` newest ``OWNING_EVENTS`` track events."""
    marks = ",".join("?" * len(OWNING_EVENTS))
    return conn.all(
        "SELECT body FROM events WHERE workspace_id = ? AND profile_id = ? AND type = 'track'"
        f" AND name IN ({marks}) ORDER BY ts DESC, seq DESC LIMIT ?", (ws, profile_id, *OWNING_EVENTS, limit))


def assignments(conn: Conn, ws: str, profile_id: str, experiments: Sequence[str]) -> list[Row]:
    """(experiment, variant, bucket, reason, origin_profile_id) of the live profile's stored assignments in
    ``experiments``, in one query."""
    if not experiments:
        return []
    marks = ",".join("?" * len(experiments))
    return conn.all(
        "SELECT experiment, variant, bucket, reason, origin_profile_id FROM experiment_assignments"
        f" WHERE workspace_id = ? AND profile_id = ? AND experiment IN ({marks})", (ws, profile_id, *experiments))


def owner_and_consent(conn: Conn, ws: str, id_type: str, value_key: str) -> list[Row]:
    """(profile_id, purpose, state, effective_at, seq, expires_at) of the profile holding the identifier, one row
    per consent ledger entry (the ledger columns NULL when it has none); no row for an unknown identifier. Finding
    a person and reading their consent is the first thing every decision does: one statement, answered from the
    ledger's index."""
    return conn.all(
        "SELECT i.profile_id, c.purpose, c.state, c.effective_at, c.seq, c.expires_at FROM identifiers i"
        " LEFT JOIN consent_ledger c ON c.workspace_id = i.workspace_id AND c.profile_id = i.profile_id"
        " WHERE i.workspace_id = ? AND i.type = ? AND i.value_key = ?", (ws, id_type, value_key))
