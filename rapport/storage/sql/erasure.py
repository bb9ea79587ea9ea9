"""Erasure in SQL: every row about a set of profiles (a person: a live profile and those merged into it) is
deleted, or stripped to what must stay once nobody can be named by it.

What stays, and why:

- ``journey_sends``: the send log keeps its counts (sent per step, refusals by reason). An erased person's rows
  keep journey, step, channel, template, tags, status, reason and times; ``profile_id`` becomes ``ERASED``,
  ``detail`` (a provider's answer, which may quote the address) and ``provider_id`` (the key to the provider's
  own logs of the message) are cleared. Sends not made yet are refused with reason ``erased``.
- ``email_engagement``: counted opens and clicks stay for the reports, with ``ERASED`` for the profile and no
  URL (a link may carry personal query parameters; ``target``, its hash, still tells links apart).
- ``suppressions``: a hard bounce or complaint must keep stopping mail to the address, so the row stays keyed by
  the address hash (keyed by the workspace, so it names nobody without the workspace key), with no profile and
  no provider detail; a profile that later gains the address adopts it
  (``adopt_suppressions``).
- ``audit_log``: what was done and by whom stays; the erased profile ids and identifier values in a record are
  replaced by ``ERASED``.
- ``model_versions`` (the model catalog) names nobody; a model's scores are computed-trait buckets and go with
  them.
- ``journey_schedule_runs.after_profile`` and ``journey_migrations.after_enrollment`` are batch cursors (an id
  compared by order, nothing else): they stay, naming a row that no longer exists.

Everything else that names the profiles is deleted: the profile rows themselves with their wrapped data keys
(which also shreds any copy sealed under them), identifiers, merges and merge blocks, identity conflicts, events
and the journey inbox entries queued for them, traits and their flattened values, computed buckets, consent
entries, segment history and timers, journey enrollments, timers, moves and entries, in-app messages, offline
tasks, experiment assignments and exposures, content impressions.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from rapport.storage.base import Conn, Row

ERASED = "erased"
"""What stands in for an erased profile id or identifier value in rows kept for their counts."""

_CHUNK = 500

DELETED = (
    ("trait_values", "profile_id"), ("traits", "profile_id"), ("traits", "key_profile_id"),
    ("buckets", "profile_id"), ("bucket_values", "profile_id"),
    ("segment_history", "profile_id"), ("segment_timers", "profile_id"),
    ("journey_entries", "profile_id"), ("inbox_messages", "profile_id"), ("offline_tasks", "profile_id"),
    ("consent_ledger", "profile_id"), ("consent_ledger", "origin_profile_id"),
    ("identifiers", "profile_id"), ("identifiers", "origin_profile_id"),
    ("identity_conflicts", "holder"), ("identity_conflicts", "target"),
    ("merges", "winner"), ("merges", "loser"), ("merge_blocks", "a"), ("merge_blocks", "b"),
    ("events", "profile_id"), ("events", "origin_profile_id"),
    ("experiment_assignments", "profile_id"), ("experiment_assignments", "origin_profile_id"),
    ("experiment_exposures", "origin_profile_id"),
    ("rec_purchases", "profile_id"),
    ("content_impressions", "profile_id"), ("content_impressions", "origin_profile_id"),
    ("profiles", "id"),
)
"""(table, column naming a profile) of the rows deleted, in this order (the profiles last)."""

BY_ENROLLMENT = ("journey_timers", "journey_moves")
"""Tables keyed by enrollment: their rows of the person's enrollments go with the enrollments."""

AUDIT_MATCH = {
    "sqlite": "SELECT seq, target, detail FROM audit_log WHERE workspace_id = ?"
              " AND (target = ? OR instr(detail, ?) > 0)",
    "postgres": "SELECT seq, target, detail FROM audit_log WHERE workspace_id = ?"
                " AND (target = ? OR strpos(detail, ?) > 0)",
}
"""Per dialect, the audit records whose target is, or whose detail holds, a given text."""


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]


def erase_rows(conn: Conn, ws: str, profile_ids: Sequence[str]) -> dict[str, int]:
    """Delete or strip every row of ``profile_ids`` as the module's docstring says; rows touched per table."""
    counts: dict[str, int] = {}

    def count(table: str, n: int) -> None:
        if n:
            counts[table] = counts.get(table, 0) + n

    for chunk in _chunks(profile_ids):
        marks = ",".join("?" * len(chunk))
        count("journey_inbox", conn.execute(
            "DELETE FROM journey_inbox WHERE workspace_id = ? AND event_seq IN (SELECT seq FROM events"
            f" WHERE workspace_id = ? AND profile_id IN ({marks}))", (ws, ws, *chunk)))
        for table in BY_ENROLLMENT:
            count(table, conn.execute(
                f"DELETE FROM {table} WHERE workspace_id = ? AND enrollment_id IN (SELECT id FROM journey_enrollments"
                f" WHERE workspace_id = ? AND profile_id IN ({marks}))", (ws, ws, *chunk)))
        count("journey_enrollments", conn.execute(
            f"DELETE FROM journey_enrollments WHERE workspace_id = ? AND profile_id IN ({marks})", (ws, *chunk)))
        # Kept for the send log's counts, naming nobody (see the module's docstring).
        count("journey_sends", conn.execute(
            "UPDATE journey_sends SET profile_id = ?, detail = NULL, provider_id = NULL, leased_until = NULL,"
            " lease_owner = NULL, reason = CASE WHEN status IN ('scheduled', 'held') THEN ? ELSE reason END,"
            " status = CASE WHEN status IN ('scheduled', 'held') THEN 'refused' ELSE status END"
            f" WHERE workspace_id = ? AND profile_id IN ({marks})", (ERASED, ERASED, ws, *chunk)))
        count("email_engagement", conn.execute(
            "UPDATE email_engagement SET profile_id = ?, url = NULL"
            f" WHERE workspace_id = ? AND profile_id IN ({marks})", (ERASED, ws, *chunk)))
        # Kept so mail to the address stays stopped (see the module's docstring).
        count("suppressions", conn.execute(
            "UPDATE suppressions SET profile_id = NULL, detail = ''"
            f" WHERE workspace_id = ? AND profile_id IN ({marks})", (ws, *chunk)))
        for table, column in DELETED:
            count(table, conn.execute(f"DELETE FROM {table} WHERE workspace_id = ? AND {column} IN ({marks})",
                                      (ws, *chunk)))
    return counts


def audit_records(conn: Conn, ws: str, text: str) -> list[Row]:
    """(seq, target, detail) of the audit records whose target is ``text`` or whose detail contains it."""
    return conn.all(AUDIT_MATCH[conn.dialect.name], (ws, text, text))


def rewrite_audit(conn: Conn, ws: str, seq: int, target: str, detail: str) -> None:
    """Replace the target and detail of one audit record (only erasure does this)."""
    conn.execute("UPDATE audit_log SET target = ?, detail = ? WHERE workspace_id = ? AND seq = ?",
                 (target, detail, ws, seq))


def quarantined(conn: Conn, ws: str, after: int, limit: int) -> list[Row]:
    """(seq, payload) of the workspace's quarantined messages after ``seq``, in order."""
    return conn.all("SELECT seq, payload FROM quarantine WHERE workspace_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                    (ws, after, limit))


def delete_quarantined(conn: Conn, ws: str, seqs: Sequence[int]) -> int:
    """Delete these quarantined messages; how many went."""
    deleted = 0
    for start in range(0, len(seqs), _CHUNK):
        chunk = seqs[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        deleted += conn.execute(f"DELETE FROM quarantine WHERE workspace_id = ? AND seq IN ({marks})", (ws, *chunk))
    return deleted


def adopt_suppressions(conn: Conn, ws: str, rows: Sequence[tuple[str, str]]) -> int:
    """Give the suppressions that name no profile (kept from an erased person, or feedback about an address
    nobody had) to the profile that now has the address: ``rows`` are (address hash, profile id), the hash as
    ``rapport.channels.feedback.address_hash`` makes it. Rows adopted.

    Runs whenever ingestion attaches new email addresses, so it looks for orphans once per chunk of addresses
    and writes only where it finds one."""
    owner = dict(rows)
    hashes = sorted(owner)
    adopted = 0
    for start in range(0, len(hashes), _CHUNK):
        chunk = hashes[start:start + _CHUNK]
        marks = ",".join("?" * len(chunk))
        for (hashed,) in conn.all("SELECT DISTINCT address_hash FROM suppressions WHERE workspace_id = ?"
                                  f" AND profile_id IS NULL AND address_hash IN ({marks})", (ws, *chunk)):
            adopted += conn.execute("UPDATE suppressions SET profile_id = ? WHERE workspace_id = ?"
                                    " AND profile_id IS NULL AND address_hash = ?", (owner[hashed], ws, hashed))
    return adopted
