"""Journey storage: enrollments, their timers, the send log and the entry history used for re-entry.

The two queries a worker runs across workspaces (``due_timers`` and ``due_sends``) take their rows with
``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers on other processes skip what one of them holds; on
SQLite the single writer serialises them.
"""

from __future__ import annotations

from collections.abc import Sequence

from rapport.storage.base import Conn, Row

ENROLLMENT_COLUMNS = "id, journey, version, profile_id, state, status, assignments, entered_at, updated_at"
SEND_COLUMNS = ("workspace_id, idempotency_key, enrollment_id, journey, version, step_id, kind, channel, template,"
                " tags, profile_id, status, reason, detail, attempts, created_at, due_at, sent_at, provider_id,"
                " lease_owner")
OPEN_SENDS = "('scheduled', 'held')"
"""Send-log statuses dispatch still acts on; the others (sent, refused, failed) are final."""
ID_CHUNK = 500
"""Ids per ``IN (...)`` list: well under SQLite's bound-parameter limit."""


def enrollment(conn: Conn, ws: str, enrollment_id: str) -> Row | None:
    """The enrollment ``enrollment_id`` (``ENROLLMENT_COLUMNS``)."""
    return conn.one(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND id = ?",
                    (ws, enrollment_id))


def enrollments_of(conn: Conn, ws: str, profile_id: str) -> list[Row]:
    """Every enrollment of ``profile_id`` (``ENROLLMENT_COLUMNS``), oldest entry first."""
    return conn.all(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND profile_id = ?"
                    " ORDER BY entered_at, id", (ws, profile_id))


def active_of(conn: Conn, ws: str, profile_id: str) -> list[Row]:
    """The active enrollments of ``profile_id`` (``ENROLLMENT_COLUMNS``), locked on PostgreSQL until the
    transaction ends, so a timer firing in another process cannot overwrite what this event does to them."""
    if conn.dialect.name == "postgres":
        return conn.all(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ?"
                        " AND profile_id = ? AND status = 'active' ORDER BY entered_at, id FOR UPDATE",
                        (ws, profile_id))
    return conn.all(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND profile_id = ?"
                    " AND status = 'active' ORDER BY entered_at, id", (ws, profile_id))


def claim_enrollment(conn: Conn, ws: str, enrollment_id: str) -> Row | None:
    """The enrollment (``ENROLLMENT_COLUMNS``), locked until the transaction ends; on PostgreSQL ``None``
    while another transaction holds it (an event of the profile being stored), so a timer worker skips it
    this round instead of waiting for it."""
    dialect = conn.dialect
    return conn.one(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND id = ?"
                    f" {dialect.skip_locked}", (ws, enrollment_id))


def claim_enrollments(conn: Conn, ws: str, ids: Sequence[str]) -> list[Row]:
    """The enrollments among ``ids`` (``ENROLLMENT_COLUMNS``), locked until the transaction ends; on PostgreSQL
    those another transaction holds are left out (``claim_enrollment`` for many)."""
    return _by_ids(conn, ws, ids, lock=True)


def enrollments_by_id(conn: Conn, ws: str, ids: Sequence[str]) -> dict[str, Row]:
    """The enrollments among ``ids`` (``ENROLLMENT_COLUMNS``) by id, unlocked."""
    return {str(r[0]): r for r in _by_ids(conn, ws, ids, lock=False)}


def _by_ids(conn: Conn, ws: str, ids: Sequence[str], *, lock: bool) -> list[Row]:
    dialect = conn.dialect
    if dialect.name == "postgres":  # one array parameter instead of a list of them: one statement text, any size
        if not ids:
            return []
        query = f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND id = ANY(?::text[])"
        if lock:
            query += f" {dialect.skip_locked}"
        return conn.all(query, (ws, list(ids)))
    out: list[Row] = []
    for start in range(0, len(ids), ID_CHUNK):
        chunk = ids[start:start + ID_CHUNK]
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND id IN ({marks})"
        if lock:
            query += f" {dialect.skip_locked}"
        out += conn.all(query, (ws, *chunk))
    return out


def finished_since(conn: Conn, ws: str, profile_id: str, journey: str, since: int) -> list[Row]:
    """Finished enrollments of ``profile_id`` in ``journey`` entered at or after ``since`` (a goal may still
    count for them)."""
    return conn.all(f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND profile_id = ?"
                    " AND journey = ? AND status IN ('completed', 'exited') AND entered_at >= ?"
                    " ORDER BY entered_at, id", (ws, profile_id, journey, since))


def is_active(conn: Conn, ws: str, journey: str, profile_id: str) -> bool:
    return conn.one("SELECT 1 FROM journey_enrollments WHERE workspace_id = ? AND journey = ? AND profile_id = ?"
                    " AND status = 'active'", (ws, journey, profile_id)) is not None


def last_entered(conn: Conn, ws: str, journey: str, profile_id: str) -> int | None:
    """When ``profile_id`` last entered ``journey``, or ``None`` if never."""
    value = conn.value("SELECT last_entered_at FROM journey_entries WHERE workspace_id = ? AND journey = ?"
                       " AND profile_id = ?", (ws, journey, profile_id))
    return None if value is None else int(value)


def insert_enrollment(conn: Conn, ws: str, row: Sequence[object]) -> bool:
    """Store a new enrollment (``ENROLLMENT_COLUMNS`` order); ``False`` when the profile already has an
    active enrollment in the journey (the unique index on active enrollments refused it)."""
    return conn.execute(
        f"INSERT INTO journey_enrollments (workspace_id, {ENROLLMENT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT DO NOTHING", (ws, *row)) == 1


def record_entry(conn: Conn, ws: str, journey: str, profile_id: str, at: int) -> None:
    conn.execute(
        "INSERT INTO journey_entries (workspace_id, journey, profile_id, last_entered_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, journey, profile_id) DO UPDATE SET last_entered_at = excluded.last_entered_at",
        (ws, journey, profile_id, at))


def update_enrollments(conn: Conn, ws: str, rows: Sequence[tuple[str, str, str, str, int]]) -> None:
    """Store enrollments' new state, each (enrollment id, state, status, assignments, now)."""
    conn.executemany("UPDATE journey_enrollments SET state = ?, status = ?, assignments = ?, updated_at = ?"
                     " WHERE workspace_id = ? AND id = ?", [(*r[1:], ws, r[0]) for r in rows])


def set_timers(conn: Conn, ws: str, timers: Sequence[tuple[str, int | None]]) -> None:
    """``set_timer`` for many: (enrollment id, due instant or ``None``) each."""
    gone = [(ws, enrollment_id) for enrollment_id, due_at in timers if due_at is None]
    due = [(ws, enrollment_id, due_at) for enrollment_id, due_at in timers if due_at is not None]
    if gone and conn.dialect.name == "postgres":
        conn.execute("DELETE FROM journey_timers WHERE workspace_id = ? AND enrollment_id = ANY(?::text[])",
                     (ws, [enrollment_id for _, enrollment_id in gone]))
    elif gone:
        conn.executemany("DELETE FROM journey_timers WHERE workspace_id = ? AND enrollment_id = ?", gone)
    if due:
        conn.executemany(
            "INSERT INTO journey_timers (workspace_id, enrollment_id, due_at) VALUES (?, ?, ?)"
            " ON CONFLICT (workspace_id, enrollment_id) DO UPDATE SET due_at = excluded.due_at, leased_until = NULL,"
            " lease_owner = NULL", due)


def set_timer(conn: Conn, ws: str, enrollment_id: str, due_at: int | None) -> None:
    """Wake ``enrollment_id`` at ``due_at`` (replacing its timer and any lease on it), or never (``None``)."""
    if due_at is None:
        conn.execute("DELETE FROM journey_timers WHERE workspace_id = ? AND enrollment_id = ?", (ws, enrollment_id))
        return
    conn.execute(
        "INSERT INTO journey_timers (workspace_id, enrollment_id, due_at) VALUES (?, ?, ?)"
        " ON CONFLICT (workspace_id, enrollment_id) DO UPDATE SET due_at = excluded.due_at, leased_until = NULL,"
        " lease_owner = NULL", (ws, enrollment_id, due_at))


def timer(conn: Conn, ws: str, enrollment_id: str) -> int | None:
    value = conn.value("SELECT due_at FROM journey_timers WHERE workspace_id = ? AND enrollment_id = ?",
                       (ws, enrollment_id))
    return None if value is None else int(value)


def due_timers(conn: Conn, at: int, limit: int, ws: str | None = None) -> list[tuple[str, str, int]]:
    """(workspace_id, enrollment_id, due_at) of timers due at ``at`` and not leased, earliest first, in
    workspace ``ws`` or across workspaces (a worker serving them all); locked until the transaction ends."""
    dialect = conn.dialect
    if ws is None:
        rows = conn.all(
            "SELECT workspace_id, enrollment_id, due_at FROM journey_timers WHERE due_at <= ?"
            " AND (leased_until IS NULL OR leased_until <= ?) ORDER BY due_at, workspace_id, enrollment_id LIMIT ?"
            f" {dialect.skip_locked}", (at, at, limit))
    else:
        rows = conn.all(
            "SELECT workspace_id, enrollment_id, due_at FROM journey_timers WHERE workspace_id = ? AND due_at <= ?"
            " AND (leased_until IS NULL OR leased_until <= ?) ORDER BY due_at, enrollment_id LIMIT ?"
            f" {dialect.skip_locked}", (ws, at, at, limit))
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


def lease_timer(conn: Conn, ws: str, enrollment_id: str, until: int, owner: str) -> None:
    """Keep other workers off a timer until ``until`` (its enrollment failed to step; it is retried then)."""
    conn.execute("UPDATE journey_timers SET leased_until = ?, lease_owner = ? WHERE workspace_id = ?"
                 " AND enrollment_id = ?", (until, owner, ws, enrollment_id))


def next_due(conn: Conn) -> int | None:
    """The earliest instant a timer or an open send needs a worker (a lease postpones it), across workspaces,
    for a scheduler deciding how long to sleep."""
    dialect = conn.dialect
    timers = conn.value(f"SELECT min({dialect.greatest('due_at', 'leased_until')}) FROM journey_timers")
    sends = conn.value(f"SELECT min({dialect.greatest('due_at', 'leased_until')}) FROM journey_sends"
                       f" WHERE status IN {OPEN_SENDS}")
    found = [int(v) for v in (timers, sends) if v is not None]
    return min(found) if found else None


def insert_sends(conn: Conn, ws: str, rows: Sequence[Sequence[object]]) -> int:
    """Record intended sends, each (idempotency_key, enrollment_id, journey, version, step_id, kind, channel,
    template, tags json, profile_id, created_at, due_at), as ``scheduled``; a key already recorded is left
    as it is. Returns how many were new."""
    if not rows:
        return 0
    return len(conn.insert_rows(
        "INSERT INTO journey_sends (workspace_id, idempotency_key, enrollment_id, journey, version, step_id, kind,"
        " channel, template, tags, profile_id, created_at, due_at, status, attempts)", 15,
        "ON CONFLICT (workspace_id, idempotency_key) DO NOTHING RETURNING idempotency_key",
        [(ws, *row, "scheduled", 0) for row in rows]))


def due_sends(conn: Conn, at: int, limit: int, ws: str | None = None) -> list[Row]:
    """Open sends (``SEND_COLUMNS``) due at ``at`` and not leased to a worker, oldest due first, in workspace
    ``ws`` or across workspaces; locked until the transaction ends."""
    dialect = conn.dialect
    if ws is None:
        return conn.all(
            f"SELECT {SEND_COLUMNS} FROM journey_sends WHERE status IN {OPEN_SENDS} AND due_at <= ?"
            " AND (leased_until IS NULL OR leased_until <= ?) ORDER BY due_at, workspace_id, idempotency_key LIMIT ?"
            f" {dialect.skip_locked}", (at, at, limit))
    return conn.all(
        f"SELECT {SEND_COLUMNS} FROM journey_sends WHERE workspace_id = ? AND status IN {OPEN_SENDS} AND due_at <= ?"
        " AND (leased_until IS NULL OR leased_until <= ?) ORDER BY due_at, idempotency_key LIMIT ?"
        f" {dialect.skip_locked}", (ws, at, at, limit))


def lease_sends(conn: Conn, leases: Sequence[tuple[str, str, int]], owner: str) -> None:
    """Hand sends to ``owner``, each (workspace, idempotency key, until), counting an attempt; if the worker
    dies before marking one, another takes it over once its lease ends and sends again with the same
    idempotency key."""
    conn.executemany("UPDATE journey_sends SET leased_until = ?, lease_owner = ?, attempts = attempts + 1"
                     " WHERE workspace_id = ? AND idempotency_key = ?",
                     [(until, owner, ws, key) for ws, key, until in leases])


def mark_sent(conn: Conn, sent: Sequence[tuple[str, str, str, str]], at: int) -> None:
    """Record sends their channels accepted, each (workspace, idempotency key, provider id, detail); a send
    already marked ``sent`` keeps its first record."""
    conn.executemany(
        "UPDATE journey_sends SET status = 'sent', provider_id = ?, detail = ?, sent_at = ?, reason = NULL,"
        " leased_until = NULL, lease_owner = NULL WHERE workspace_id = ? AND idempotency_key = ? AND status <> 'sent'",
        [(provider_id, detail, at, ws, key) for ws, key, provider_id, detail in sent])


def mark(conn: Conn, ws: str, key: str, status: str, reason: str | None, detail: str, due_at: int | None,
         owner: str | None = None) -> None:
    """Record the outcome of a send that did not go out: ``scheduled``/``held`` again at ``due_at``, or final
    (``refused``, ``failed``). A send already marked ``sent`` is never changed back; with ``owner``, only a
    send still leased to ``owner`` is changed (once a lease ran out, the send belongs to whoever took it)."""
    if owner is None:
        conn.execute(
            "UPDATE journey_sends SET status = ?, reason = ?, detail = ?, due_at = coalesce(?, due_at),"
            " leased_until = NULL, lease_owner = NULL WHERE workspace_id = ? AND idempotency_key = ?"
            " AND status <> 'sent'", (status, reason, detail, due_at, ws, key))
        return
    conn.execute(
        "UPDATE journey_sends SET status = ?, reason = ?, detail = ?, due_at = coalesce(?, due_at),"
        " leased_until = NULL, lease_owner = NULL WHERE workspace_id = ? AND idempotency_key = ?"
        " AND status <> 'sent' AND lease_owner = ?", (status, reason, detail, due_at, ws, key, owner))


def sends_of(conn: Conn, ws: str, *, enrollment_id: str | None = None, profile_id: str | None = None) -> list[Row]:
    """The send log (``SEND_COLUMNS``) of an enrollment or a profile, oldest first."""
    sql = f"SELECT {SEND_COLUMNS} FROM journey_sends WHERE workspace_id = ?"
    params: list[object] = [ws]
    if enrollment_id is not None:
        sql += " AND enrollment_id = ?"
        params.append(enrollment_id)
    if profile_id is not None:
        sql += " AND profile_id = ?"
        params.append(profile_id)
    return conn.all(sql + " ORDER BY created_at, step_id", params)


# --- the inbox: stored events waiting for the engine -------------------------------------------------------

def enqueue(conn: Conn, ws: str, event_seqs: Sequence[int]) -> None:
    """Queue stored events (by ``events.seq``) for the journey engine, in this order."""
    if event_seqs:
        conn.executemany("INSERT INTO journey_inbox (workspace_id, event_seq) VALUES (?, ?)",
                         [(ws, seq) for seq in event_seqs])


def inbox(conn: Conn, ws: str, limit: int) -> list[Row]:
    """The oldest queued events of ``ws``: (inbox seq, event seq, profile id, type, name, ts, body), in queue
    order. On PostgreSQL the queue rows stay locked until the transaction ends, so a second consumer of the
    workspace waits and then sees what is left: events of a profile are fed in order."""
    sql = ("SELECT i.seq, e.seq, e.profile_id, e.type, e.name, e.ts, e.body FROM journey_inbox i"
           " JOIN events e ON e.workspace_id = i.workspace_id AND e.seq = i.event_seq"
           " WHERE i.workspace_id = ? ORDER BY i.seq LIMIT ?")
    if conn.dialect.name == "postgres":
        return conn.all(sql + " FOR UPDATE OF i", (ws, limit))
    return conn.all(sql, (ws, limit))


def dequeue(conn: Conn, ws: str, through: int) -> int:
    """Remove the queued events of ``ws`` up to inbox seq ``through`` (events erased meanwhile included)."""
    return conn.execute("DELETE FROM journey_inbox WHERE workspace_id = ? AND seq <= ?", (ws, through))


def inbox_size(conn: Conn, ws: str) -> int:
    return int(conn.value("SELECT count(*) FROM journey_inbox WHERE workspace_id = ?", (ws,)) or 0)


def recent_sends(conn: Conn, ws: str, profile_id: str, since: int) -> list[Row]:
    """(journey, channel, tags, status, sent_at, due_at) of the profile's sends that went out at or after
    ``since`` or wait to go out (scheduled or held): frequency caps count the first, arbitration reads both."""
    return conn.all(
        "SELECT journey, channel, tags, status, sent_at, due_at FROM journey_sends WHERE workspace_id = ?"
        " AND profile_id = ? AND ((status = 'sent' AND sent_at >= ?) OR status IN ('scheduled', 'held'))",
        (ws, profile_id, since))


def enrollment_counts(conn: Conn, ws: str) -> list[Row]:
    """(journey, version, status, count) over every enrollment of the workspace."""
    return conn.all("SELECT journey, version, status, count(*) FROM journey_enrollments WHERE workspace_id = ?"
                    " GROUP BY journey, version, status", (ws,))


def send_counts(conn: Conn, ws: str, journey: str | None = None) -> list[Row]:
    """(journey, step_id, channel, status, reason, count) of the send log, of one journey or all."""
    if journey is None:
        return conn.all("SELECT journey, step_id, channel, status, reason, count(*) FROM journey_sends"
                        " WHERE workspace_id = ? GROUP BY journey, step_id, channel, status, reason", (ws,))
    return conn.all("SELECT journey, step_id, channel, status, reason, count(*) FROM journey_sends"
                    " WHERE workspace_id = ? AND journey = ? GROUP BY journey, step_id, channel, status, reason",
                    (ws, journey))


def enrollments_in(conn: Conn, ws: str, journey: str, status: str | None, after: str | None,
                   limit: int) -> list[Row]:
    """A page of the journey's enrollments (``ENROLLMENT_COLUMNS``) by id, after id ``after``."""
    sql = f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND journey = ?"
    params: list[object] = [ws, journey]
    if status is not None:
        sql += " AND status = ?"
        params.append(status)
    if after is not None:
        sql += " AND id > ?"
        params.append(after)
    return conn.all(sql + " ORDER BY id LIMIT ?", (*params, limit))


# --- publishing with on_publish: migrate -------------------------------------------------------------------

MIGRATION_COLUMNS = "journey, version, from_version, status, after_enrollment, moved, kept, started_at, finished_at"


def start_migration(conn: Conn, ws: str, journey: str, version: int, from_version: int, now: int) -> None:
    """Record that ``version`` of ``journey`` migrates the enrollments of ``from_version`` (once: a migration
    already recorded is left as it is)."""
    conn.execute(
        "INSERT INTO journey_migrations (workspace_id, journey, version, from_version, status, started_at)"
        " VALUES (?, ?, ?, ?, 'running', ?) ON CONFLICT (workspace_id, journey, version) DO NOTHING",
        (ws, journey, version, from_version, now))


def claim_migration(conn: Conn, ws: str, journey: str, version: int) -> Row | None:
    """The migration of ``version`` (``MIGRATION_COLUMNS``), locked until the transaction ends; on PostgreSQL
    ``None`` while another worker holds it (it is running a batch of it)."""
    dialect = conn.dialect
    return conn.one(f"SELECT {MIGRATION_COLUMNS} FROM journey_migrations WHERE workspace_id = ? AND journey = ?"
                    f" AND version = ? {dialect.skip_locked}", (ws, journey, version))


def migration(conn: Conn, ws: str, journey: str, version: int) -> Row | None:
    """The migration of ``version`` of ``journey`` (``MIGRATION_COLUMNS``), if one was started."""
    return conn.one(f"SELECT {MIGRATION_COLUMNS} FROM journey_migrations WHERE workspace_id = ? AND journey = ?"
                    " AND version = ?", (ws, journey, version))


def enrollments_on(conn: Conn, ws: str, journey: str, version: int, after: str | None, limit: int) -> list[Row]:
    """The next ``limit`` active enrollments of ``version`` of ``journey`` by id after ``after``
    (``ENROLLMENT_COLUMNS``), locked on PostgreSQL until the transaction ends (a timer or an event waits)."""
    sql = (f"SELECT {ENROLLMENT_COLUMNS} FROM journey_enrollments WHERE workspace_id = ? AND journey = ?"
           " AND version = ? AND status = 'active' AND id > ? ORDER BY id LIMIT ?")
    if conn.dialect.name == "postgres":
        return conn.all(sql + " FOR UPDATE", (ws, journey, version, after or "", limit))
    return conn.all(sql, (ws, journey, version, after or "", limit))


def move_enrollment(conn: Conn, ws: str, enrollment_id: str, version: int, state: str, now: int) -> None:
    """Put an enrollment on journey version ``version`` with its new ``state``."""
    conn.execute("UPDATE journey_enrollments SET version = ?, state = ?, updated_at = ? WHERE workspace_id = ?"
                 " AND id = ?", (version, state, now, ws, enrollment_id))


def record_move(conn: Conn, ws: str, row: Sequence[object]) -> None:
    """Log a moved enrollment: (enrollment_id, journey, from_version, from_step, to_version, to_step,
    waiting_until, moved_at)."""
    conn.execute(
        "INSERT INTO journey_moves (workspace_id, enrollment_id, journey, from_version, from_step, to_version,"
        " to_step, waiting_until, moved_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
        " ON CONFLICT (workspace_id, enrollment_id, to_version) DO NOTHING", (ws, *row))


def advance_migration(conn: Conn, ws: str, journey: str, version: int, after: str | None, moved: int, kept: int,
                      done: bool, now: int) -> None:
    """Store how far the migration got (its cursor and counts, added to) and whether it is done."""
    conn.execute(
        "UPDATE journey_migrations SET after_enrollment = coalesce(?, after_enrollment), moved = moved + ?,"
        " kept = kept + ?, status = ?, finished_at = ? WHERE workspace_id = ? AND journey = ? AND version = ?",
        (after, moved, kept, "done" if done else "running", now if done else None, ws, journey, version))


def moves_of(conn: Conn, ws: str, journey: str) -> list[Row]:
    """(enrollment_id, from_version, from_step, to_version, to_step, waiting_until, moved_at) of every move of
    ``journey``'s enrollments, in order."""
    return conn.all("SELECT enrollment_id, from_version, from_step, to_version, to_step, waiting_until, moved_at"
                    " FROM journey_moves WHERE workspace_id = ? AND journey = ? ORDER BY moved_at, enrollment_id",
                    (ws, journey))


# --- scheduled entries -------------------------------------------------------------------------------------

SCHEDULE_RUN_COLUMNS = ("journey, occurrence_at, version, status, after_profile, enrolled, skipped, started_at,"
                        " finished_at")


def start_schedule_run(conn: Conn, ws: str, journey: str, occurrence: int, version: int, now: int) -> None:
    """Record that the occurrence of ``journey``'s schedule at ``occurrence`` runs (once: a run already
    recorded, by this worker or another, is left as it is)."""
    conn.execute(
        "INSERT INTO journey_schedule_runs (workspace_id, journey, occurrence_at, version, status, started_at)"
        " VALUES (?, ?, ?, ?, 'running', ?) ON CONFLICT (workspace_id, journey, occurrence_at) DO NOTHING",
        (ws, journey, occurrence, version, now))


def claim_schedule_run(conn: Conn, ws: str, journey: str, occurrence: int) -> Row | None:
    """The run (``SCHEDULE_RUN_COLUMNS``), locked until the transaction ends; on PostgreSQL ``None`` while
    another worker holds it (it is enrolling a batch of it)."""
    dialect = conn.dialect
    return conn.one(f"SELECT {SCHEDULE_RUN_COLUMNS} FROM journey_schedule_runs WHERE workspace_id = ?"
                    f" AND journey = ? AND occurrence_at = ? {dialect.skip_locked}", (ws, journey, occurrence))


def schedule_run(conn: Conn, ws: str, journey: str, occurrence: int) -> Row | None:
    return conn.one(f"SELECT {SCHEDULE_RUN_COLUMNS} FROM journey_schedule_runs WHERE workspace_id = ?"
                    " AND journey = ? AND occurrence_at = ?", (ws, journey, occurrence))


def advance_schedule_run(conn: Conn, ws: str, journey: str, occurrence: int, after: str | None, enrolled: int,
                         skipped: int, done: bool, now: int) -> None:
    """Store how far the run got (its cursor and counts, added to) and whether it is done."""
    conn.execute(
        "UPDATE journey_schedule_runs SET after_profile = coalesce(?, after_profile), enrolled = enrolled + ?,"
        " skipped = skipped + ?, status = ?, finished_at = ? WHERE workspace_id = ? AND journey = ?"
        " AND occurrence_at = ?",
        (after, enrolled, skipped, "done" if done else "running", now if done else None, ws, journey, occurrence))


def schedule_runs(conn: Conn, ws: str, journey: str) -> list[Row]:
    """Every run of ``journey``'s schedule (``SCHEDULE_RUN_COLUMNS``), oldest occurrence first."""
    return conn.all(f"SELECT {SCHEDULE_RUN_COLUMNS} FROM journey_schedule_runs WHERE workspace_id = ?"
                    " AND journey = ? ORDER BY occurrence_at", (ws, journey))
