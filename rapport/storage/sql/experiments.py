"""Stored experiment assignments: one row per (profile it was made for, experiment), counted for a live profile.

``origin_profile_id`` is the profile an assignment was made for and never changes; ``profile_id`` is the live
profile it counts for. A merge gives the loser's assignments to the winner, except in the experiments where the
winner has its own: there the loser's row is shadowed (``profile_id`` NULL, ``shadowed_by`` the winner), so the
winner keeps its variant. An unmerge gives the loser's side back what it held when it was merged away.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row
from rapport.types import Millis


def stored(conn: Conn, ws: str, profile_id: str, experiment: str) -> Row | None:
    """(variant, bucket, reason, origin_profile_id, assigned_at) of the assignment a live profile holds."""
    return conn.one(
        "SELECT variant, bucket, reason, origin_profile_id, assigned_at FROM experiment_assignments"
        " WHERE workspace_id = ? AND profile_id = ? AND experiment = ?", (ws, profile_id, experiment))


def insert(conn: Conn, ws: str, profile_id: str, experiment: str, variant: str | None, bucket: int, reason: str,
           now: Millis) -> bool:
    """Store a live profile's assignment unless it already holds one; whether this call stored it."""
    return conn.execute(
        "INSERT INTO experiment_assignments (workspace_id, origin_profile_id, experiment, profile_id, variant,"
        " bucket, reason, assigned_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (ws, profile_id, experiment, profile_id, variant, bucket, reason, now)) > 0


def merge(conn: Conn, ws: str, winner: str, loser: str) -> None:
    """Give ``loser``'s assignments to ``winner``, shadowing those of experiments the winner has its own for."""
    conn.execute(
        "UPDATE experiment_assignments SET profile_id = NULL, shadowed_by = ? WHERE workspace_id = ?"
        " AND profile_id = ? AND experiment IN (SELECT experiment FROM experiment_assignments"
        " WHERE workspace_id = ? AND profile_id = ?)", (winner, ws, loser, ws, winner))
    conn.execute("UPDATE experiment_assignments SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                 (winner, ws, loser))


def split(conn: Conn, ws: str, loser: str, members: Sequence[str]) -> None:
    """Give the restored ``loser`` (``members``: its subtree) the assignments its side held when it was merged.

    Those are the assignments made for its subtree that count for the other side now, or that a merge with a
    profile outside the subtree shadowed; those shadowed by a merge inside the subtree stay shadowed.
    """
    marks = ",".join("?" * len(members))
    conn.execute(
        "UPDATE experiment_assignments SET profile_id = ?, shadowed_by = NULL WHERE workspace_id = ?"
        f" AND origin_profile_id IN ({marks}) AND (profile_id IS NOT NULL OR shadowed_by NOT IN ({marks}))",
        (loser, ws, *members, *members))
