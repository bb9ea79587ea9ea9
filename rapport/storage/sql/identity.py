"""The identity graph in SQL: identifiers, profiles, merges (logged, reversible), blocks, conflicts."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from rapport.storage.base import Conn, Row
from rapport.storage.sql import experiments as experiments_sql
from rapport.types import Millis


def owners(conn: Conn, ws: str, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """Current profile of each known (type, value_key)."""
    by_type: dict[str, list[str]] = {}
    for kind, key in keys:
        by_type.setdefault(kind, []).append(key)
    out: dict[tuple[str, str], str] = {}
    for kind, values in by_type.items():
        # One primary-key range per type (an OR of (type, value_key) pairs defeats the index).
        for start in range(0, len(values), 500):
            chunk = values[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for key, profile in conn.all(
                "SELECT value_key, profile_id FROM identifiers WHERE workspace_id = ? AND type = ?"
                f" AND value_key IN ({marks})", (ws, kind, *chunk)
            ):
                out[(kind, key)] = profile
    return out


def profile_rows(conn: Conn, ws: str, ids: Sequence[str]) -> dict[str, Row]:
    """(seq, id, merged_into, data_key, created_at, updated_at) by id."""
    out: dict[str, Row] = {}
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.all(
            "SELECT seq, id, merged_into, data_key, created_at, updated_at FROM profiles"
            f" WHERE workspace_id = ? AND id IN ({marks})", (ws, *chunk)
        ):
            out[row[1]] = row
    return out


def identifiers_of(conn: Conn, ws: str, profile_id: str) -> list[Row]:
    """(type, value_key, value_enc, origin_profile_id, first_seen) of a live profile."""
    # Sorted here: an ORDER BY on ``type`` leads SQLite's planner to the primary key (a scan of
    # the whole workspace) instead of the (workspace_id, profile_id) index.
    rows = conn.all(
        "SELECT type, value_key, value_enc, origin_profile_id, first_seen FROM identifiers"
        " WHERE workspace_id = ? AND profile_id = ?",
        (ws, profile_id),
    )
    return sorted(rows, key=lambda r: (r[0], r[4], r[1]))


def insert_profile(conn: Conn, ws: str, profile_id: str, data_key: bytes, now: Millis) -> int:
    return int(conn.value(
        "INSERT INTO profiles (workspace_id, id, data_key, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
        " RETURNING seq",
        (ws, profile_id, data_key, now, now),
    ))


def insert_profiles(conn: Conn, ws: str, rows: Sequence[tuple[str, bytes, Millis]]) -> None:
    """Insert new profiles (id, data_key, now), in order (so their ``seq`` follows that order)."""
    conn.insert_rows("INSERT INTO profiles (workspace_id, id, data_key, created_at, updated_at)", 5, "",
                     [(ws, pid, key, now, now) for pid, key, now in rows])


def identifiers_of_many(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    """(profile_id, type, value_key) of every identifier of the given live profiles."""
    out: list[Row] = []
    for start in range(0, len(profile_ids), 500):
        chunk = profile_ids[start:start + 500]
        marks = ",".join("?" * len(chunk))
        out.extend(conn.all(
            "SELECT profile_id, type, value_key FROM identifiers"
            f" WHERE workspace_id = ? AND profile_id IN ({marks})", (ws, *chunk)))
    return out


def attach(conn: Conn, ws: str, rows: Sequence[tuple[str, str, bytes | None, str, Millis]]) -> None:
    """Attach (type, value_key, value_enc, profile_id, first_seen); the profile is also the origin."""
    conn.insert_rows(
        "INSERT INTO identifiers (workspace_id, type, value_key, value_enc, profile_id, origin_profile_id,"
        " first_seen)", 7, "ON CONFLICT (workspace_id, type, value_key) DO NOTHING",
        [(ws, t, k, enc, p, p, at) for t, k, enc, p, at in rows],
    )


def has_blocks(conn: Conn, ws: str) -> bool:
    """True when some unmerge of the workspace left a block (most workspaces have none)."""
    return conn.one("SELECT 1 FROM merge_blocks WHERE workspace_id = ? LIMIT 1", (ws,)) is not None


def blocked_pairs(conn: Conn, ws: str, profiles: Sequence[str]) -> set[frozenset[str]]:
    """The pairs of the given live profiles that must not merge: blocks lifted to the roots holding them.

    A block names two profiles as they were split (see ``split``); it applies to whichever live
    profiles now hold them in their merge trees.
    """
    marks = ",".join("?" * len(profiles))
    rows = conn.all(
        "WITH RECURSIVE tree (id, root) AS ("
        f" SELECT id, id FROM profiles WHERE workspace_id = ? AND id IN ({marks})"
        " UNION ALL"
        " SELECT p.id, tree.root FROM profiles p JOIN tree ON p.merged_into = tree.id WHERE p.workspace_id = ?)"
        " SELECT ta.root, tb.root FROM merge_blocks mb JOIN tree ta ON ta.id = mb.a JOIN tree tb ON tb.id = mb.b"
        " WHERE mb.workspace_id = ?",
        (ws, *profiles, ws, ws),
    )
    return {frozenset((a, b)) for a, b in rows if a != b}


def record_conflict(
    conn: Conn, ws: str, kind: str, key: str, holder: str | None, target: str, reason: str,
    message_id: str | None, now: Millis,
) -> None:
    conn.execute(
        "INSERT INTO identity_conflicts (workspace_id, identifier_type, identifier_key, holder, target, reason,"
        " message_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ws, kind, key, holder, target, reason, message_id, now),
    )


def conflicts(conn: Conn, ws: str, profile_id: str | None, limit: int) -> list[Row]:
    if profile_id is None:
        return conn.all(
            "SELECT seq, identifier_type, identifier_key, holder, target, reason, message_id, recorded_at"
            " FROM identity_conflicts WHERE workspace_id = ? ORDER BY seq DESC LIMIT ?", (ws, limit))
    return conn.all(
        "SELECT seq, identifier_type, identifier_key, holder, target, reason, message_id, recorded_at"
        " FROM identity_conflicts WHERE workspace_id = ? AND (holder = ? OR target = ?) ORDER BY seq DESC LIMIT ?",
        (ws, profile_id, profile_id, limit))


_MOVED = ("identifiers", "events", "consent_ledger", "content_impressions")


def merge(
    conn: Conn, ws: str, merge_id: str, winner: str, loser: str,
    identifiers: Sequence[tuple[str, str]], message_id: str | None, reason: str, now: Millis,
) -> None:
    """Fold ``loser`` into ``winner``: rows move, traits keep the newest value, buckets add up."""
    for table in _MOVED:
        conn.execute(f"UPDATE {table} SET profile_id = ? WHERE workspace_id = ? AND profile_id = ?",
                     (winner, ws, loser))
    experiments_sql.merge(conn, ws, winner, loser)
    conn.execute(
        "INSERT INTO traits (workspace_id, profile_id, name, value, key_profile_id, source, ts, message_id)"
        " SELECT workspace_id, ?, name, value, key_profile_id, source, ts, message_id FROM traits"
        " WHERE workspace_id = ? AND profile_id = ?"
        " ON CONFLICT (workspace_id, profile_id, name) DO UPDATE SET value = excluded.value,"
        " key_profile_id = excluded.key_profile_id, source = excluded.source, ts = excluded.ts,"
        " message_id = excluded.message_id WHERE excluded.ts > traits.ts",
        (winner, ws, loser),
    )
    conn.execute("DELETE FROM traits WHERE workspace_id = ? AND profile_id = ?", (ws, loser))
    from rapport.storage.sql.profiles import BUCKET_MERGE

    conn.execute(
        "INSERT INTO buckets (workspace_id, profile_id, series, bucket, n, nn, total, vmin, vmax, first_ts,"
        " first_seq, first_val, last_ts, last_seq, last_val) SELECT workspace_id, ?, series, bucket, n, nn,"
        " total, vmin, vmax, first_ts, first_seq, first_val, last_ts, last_seq, last_val FROM buckets"
        " WHERE workspace_id = ? AND profile_id = ? " + BUCKET_MERGE(conn.dialect),
        (winner, ws, loser),
    )
    conn.execute("DELETE FROM buckets WHERE workspace_id = ? AND profile_id = ?", (ws, loser))
    conn.execute(
        "INSERT INTO bucket_values (workspace_id, profile_id, series, bucket, value)"
        " SELECT workspace_id, ?, series, bucket, value FROM bucket_values WHERE workspace_id = ? AND profile_id = ?"
        " ON CONFLICT DO NOTHING",
        (winner, ws, loser),
    )
    conn.execute("DELETE FROM bucket_values WHERE workspace_id = ? AND profile_id = ?", (ws, loser))
    conn.execute("UPDATE profiles SET merged_into = ?, updated_at = ? WHERE workspace_id = ? AND id = ?",
                 (winner, now, ws, loser))
    conn.execute("UPDATE profiles SET updated_at = ? WHERE workspace_id = ? AND id = ?", (now, ws, winner))
    conn.execute(
        "INSERT INTO merges (workspace_id, id, winner, loser, identifiers, message_id, reason, merged_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (ws, merge_id, winner, loser, orjson.dumps([list(i) for i in identifiers]).decode(), message_id,
         reason, now),
    )


def merge_row(conn: Conn, ws: str, merge_id: str) -> Row | None:
    return conn.one(
        "SELECT id, winner, loser, identifiers, message_id, reason, merged_at, undone_at FROM merges"
        " WHERE workspace_id = ? AND id = ?", (ws, merge_id))


def merges_of(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    marks = ",".join("?" * len(profile_ids))
    return conn.all(
        "SELECT id, winner, loser, identifiers, message_id, reason, merged_at, undone_at FROM merges"
        f" WHERE workspace_id = ? AND (winner IN ({marks}) OR loser IN ({marks})) ORDER BY seq",
        (ws, *profile_ids, *profile_ids))


def live_root(conn: Conn, ws: str, profile_id: str) -> str | None:
    """The live profile a (possibly merged) profile id now belongs to."""
    seen = set()
    current = profile_id
    while current not in seen:
        seen.add(current)
        row = conn.one("SELECT merged_into FROM profiles WHERE workspace_id = ? AND id = ?", (ws, current))
        if row is None:
            return None
        if row[0] is None:
            return current
        current = row[0]
    return None


def subtree(conn: Conn, ws: str, root: str) -> list[str]:
    """``root`` and every profile merged into it, directly or through others."""
    out, frontier = [root], [root]
    while frontier:
        marks = ",".join("?" * len(frontier))
        frontier = [r[0] for r in conn.all(
            f"SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IN ({marks})", (ws, *frontier))]
        out.extend(frontier)
    return out


def split(conn: Conn, ws: str, merge_id: str, winner_root: str, loser: str, now: Millis) -> None:
    """Undo a logged merge: the loser's subtree takes back its identifiers, events and consent.

    Blocks every pair of a profile left in ``winner_root``'s tree and one of the loser's subtree,
    as ``rapport.identity.graph`` explains; blocks stay on these profiles and are lifted to the
    live ones when read (``blocked_pairs``), so later merges and unmerges never move them.
    """
    members = subtree(conn, ws, loser)
    marks = ",".join("?" * len(members))
    conn.execute("UPDATE profiles SET merged_into = NULL, updated_at = ? WHERE workspace_id = ? AND id = ?",
                 (now, ws, loser))
    for table in _MOVED:
        conn.execute(
            f"UPDATE {table} SET profile_id = ? WHERE workspace_id = ? AND origin_profile_id IN ({marks})",
            (loser, ws, *members))
    experiments_sql.split(conn, ws, loser, members)
    conn.execute("UPDATE merges SET undone_at = ? WHERE workspace_id = ? AND id = ?", (now, ws, merge_id))
    kept = subtree(conn, ws, winner_root)
    pairs = sorted({(min(w, lo), max(w, lo)) for w in kept for lo in members})
    conn.insert_rows("INSERT INTO merge_blocks (workspace_id, a, b, created_at)", 4, "ON CONFLICT DO NOTHING",
                     [(ws, a, b, now) for a, b in pairs])
