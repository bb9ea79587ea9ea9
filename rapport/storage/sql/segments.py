"""Segment membership: stays (entered, exited) per profile and segment, flip timers, refresh marks."""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row

_CHUNK = 500


def current(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    """(profile_id, segment, version, entered_at) of the open stays of ``profile_ids``."""
    out: list[Row] = []
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(conn.all(
            "SELECT profile_id, segment, version, entered_at FROM segment_history"
            f" WHERE workspace_id = ? AND exited_at IS NULL AND profile_id IN ({marks})", (ws, *chunk)))
    return out


def members(conn: Conn, ws: str, segment: str) -> set[str]:
    """Every profile currently in ``segment``."""
    return {str(r[0]) for r in conn.all(
        "SELECT profile_id FROM segment_history WHERE workspace_id = ? AND segment = ? AND exited_at IS NULL",
        (ws, segment))}


def page(conn: Conn, ws: str, segment: str, after: str | None, limit: int) -> list[Row]:
    """(profile_id, version, entered_at) of current members ordered by profile id, after ``after``."""
    return conn.all(
        "SELECT profile_id, version, entered_at FROM segment_history WHERE workspace_id = ? AND segment = ?"
        " AND exited_at IS NULL AND profile_id > ? ORDER BY profile_id LIMIT ?",
        (ws, segment, after or "", limit))


def count(conn: Conn, ws: str, segment: str) -> int:
    return int(conn.value(
        "SELECT count(*) FROM segment_history WHERE workspace_id = ? AND segment = ? AND exited_at IS NULL",
        (ws, segment)))


def history(conn: Conn, ws: str, *, segment: str | None, profile_id: str | None, before: int | None,
            limit: int) -> list[Row]:
    """(seq, segment, profile_id, version, entered_at, exited_at) newest first."""
    sql = ("SELECT seq, segment, profile_id, version, entered_at, exited_at FROM segment_history"
           " WHERE workspace_id = ?")
    params: list[object] = [ws]
    if segment is not None:
        sql += " AND segment = ?"
        params.append(segment)
    if profile_id is not None:
        sql += " AND profile_id = ?"
        params.append(profile_id)
    if before is not None:
        sql += " AND seq < ?"
        params.append(before)
    return conn.all(sql + " ORDER BY seq DESC LIMIT ?", (*params, limit))


def enter(conn: Conn, ws: str, rows: Sequence[tuple[str, str, int, int]]) -> None:
    """Open a stay for each (segment, profile_id, version, entered_at)."""
    if rows:
        conn.insert_rows("INSERT INTO segment_history (workspace_id, segment, profile_id, version, entered_at)", 5,
                         "", [(ws, *row) for row in rows])


def exit_(conn: Conn, ws: str, rows: Sequence[tuple[str, str, int]]) -> None:
    """Close the open stay of each (segment, profile_id) at its instant (one statement batch: on
    PostgreSQL a round trip per row would dominate a scheduler pass)."""
    if rows:
        conn.executemany(
            "UPDATE segment_history SET exited_at = ? WHERE workspace_id = ? AND segment = ? AND profile_id = ?"
            " AND exited_at IS NULL", [(at, ws, segment, profile_id) for segment, profile_id, at in rows])


def exit_all(conn: Conn, ws: str, profile_ids: Sequence[str], at: int) -> list[Row]:
    """Close every open stay of ``profile_ids`` (merged away); returns (profile_id, segment) closed."""
    closed = [(str(r[0]), str(r[1])) for r in current(conn, ws, profile_ids)]
    exit_(conn, ws, [(s, p, at) for p, s in closed])
    return closed


def set_timers(conn: Conn, ws: str, rows: Sequence[tuple[str, int | None]]) -> None:
    """Each (profile_id, due_at): the profile's next re-evaluation, or none."""
    gone = [(ws, p) for p, due in rows if due is None]
    if gone:
        conn.executemany("DELETE FROM segment_timers WHERE workspace_id = ? AND profile_id = ?", gone)
    due = [(ws, p, d) for p, d in rows if d is not None]
    if due:
        conn.executemany(
            "INSERT INTO segment_timers (workspace_id, profile_id, due_at) VALUES (?, ?, ?)"
            " ON CONFLICT (workspace_id, profile_id) DO UPDATE SET due_at = excluded.due_at", due)


def timers_of(conn: Conn, ws: str, profile_ids: Sequence[str]) -> dict[str, int]:
    """profile_id -> due_at of the timers of ``profile_ids``."""
    out: dict[str, int] = {}
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.update((str(r[0]), int(r[1])) for r in conn.all(
            f"SELECT profile_id, due_at FROM segment_timers WHERE workspace_id = ? AND profile_id IN ({marks})",
            (ws, *chunk)))
    return out


def due_timers(conn: Conn, ws: str, at: int, limit: int) -> list[tuple[str, int]]:
    """(profile_id, due_at) of timers due at ``at``, earliest first."""
    return [(str(r[0]), int(r[1])) for r in conn.all(
        "SELECT profile_id, due_at FROM segment_timers WHERE workspace_id = ? AND due_at <= ?"
        " ORDER BY due_at, profile_id LIMIT ?", (ws, at, limit))]


def next_due(conn: Conn, ws: str) -> int | None:
    value = conn.value("SELECT min(due_at) FROM segment_timers WHERE workspace_id = ?", (ws,))
    return None if value is None else int(value)


def refreshed(conn: Conn, ws: str) -> set[tuple[str, int]]:
    return {(str(r[0]), int(r[1])) for r in conn.all(
        "SELECT segment, version FROM segment_refreshes WHERE workspace_id = ?", (ws,))}


def refresh_times(conn: Conn, ws: str) -> dict[tuple[str, int], int]:
    """(segment, version) -> when that version was last refreshed by the batch engine."""
    return {(str(r[0]), int(r[1])): int(r[2]) for r in conn.all(
        "SELECT segment, version, refreshed_at FROM segment_refreshes WHERE workspace_id = ?", (ws,))}


def mark_refreshed(conn: Conn, ws: str, segment: str, version: int, at: int) -> None:
    conn.execute(
        "INSERT INTO segment_refreshes (workspace_id, segment, version, refreshed_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, segment, version) DO UPDATE SET refreshed_at = excluded.refreshed_at",
        (ws, segment, version, at))


def live_profiles(conn: Conn, ws: str, low: str | None = None, high: str | None = None) -> list[str]:
    """The live profiles' ids in order, from ``low`` (included) to ``high`` (excluded) when given."""
    sql = "SELECT id FROM profiles WHERE workspace_id = ? AND merged_into IS NULL"
    params: list[object] = [ws]
    if low is not None:
        sql += " AND id >= ?"
        params.append(low)
    if high is not None:
        sql += " AND id < ?"
        params.append(high)
    return [str(r[0]) for r in conn.all(sql + " ORDER BY id", params)]


def live_bounds(conn: Conn, ws: str, size: int) -> list[str]:
    """Ids cutting the workspace's live profiles in ranges of ``size`` each (the last may hold fewer),
    in the database's id order: the first id of every range but the first (one scan of the ids)."""
    return [str(r[0]) for r in conn.all(
        "SELECT id FROM (SELECT id, row_number() OVER (ORDER BY id) AS r FROM profiles"
        " WHERE workspace_id = ? AND merged_into IS NULL) AS ordered WHERE (r - 1) % ? = 0 AND r > 1 ORDER BY id",
        (ws, max(1, size)))]


def live_count(conn: Conn, ws: str) -> int:
    return int(conn.value("SELECT count(*) FROM profiles WHERE workspace_id = ? AND merged_into IS NULL", (ws,)))


def bucket_instants(conn: Conn, ws: str, profile_ids: Sequence[str], series: Sequence[str]) -> list[Row]:
    """(profile_id, series, bucket, last_ts) of the profiles' buckets of ``series``."""
    out: list[Row] = []
    if not series:
        return out
    series_marks = ",".join("?" * len(series))
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(conn.all(
            "SELECT profile_id, series, bucket, last_ts FROM buckets"
            f" WHERE workspace_id = ? AND profile_id IN ({marks}) AND series IN ({series_marks})",
            (ws, *chunk, *series)))
    return out


def consent_instants(conn: Conn, ws: str, profile_ids: Sequence[str], after: int) -> list[Row]:
    """(profile_id, instant) of ledger entries taking effect or lapsing after ``after``."""
    out: list[Row] = []
    for start in range(0, len(profile_ids), _CHUNK):
        chunk = profile_ids[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        out.extend(conn.all(
            f"SELECT profile_id, effective_at FROM consent_ledger WHERE workspace_id = ? AND profile_id IN ({marks})"
            " AND effective_at > ?", (ws, *chunk, after)))
        out.extend(conn.all(
            f"SELECT profile_id, expires_at FROM consent_ledger WHERE workspace_id = ? AND profile_id IN ({marks})"
            " AND expires_at > ?", (ws, *chunk, after)))
    return out
