"""The append-only consent ledger."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rapport.consent.decide import ConsentRow
from rapport.consent.model import LedgerEntry
from rapport.storage.base import Conn, Row

LEDGER_COLUMNS = ("id, seq, profile_id, purpose, state, legal_basis, source, policy_version, proof,"
                  " recorded_at, effective_at, expires_at, origin_profile_id, message_id")


def append(conn: Conn, ws: str, row: Sequence[object]) -> int:
    """Append (id, profile_id, origin_profile_id, purpose, state, legal_basis, source, policy_version,
    proof, recorded_at, effective_at, expires_at, message_id); returns its sequence number."""
    return int(conn.value(
        "INSERT INTO consent_ledger (workspace_id, id, profile_id, origin_profile_id, purpose, state, legal_basis,"
        " source, policy_version, proof, recorded_at, effective_at, expires_at, message_id)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
        (ws, *row),
    ))


def append_many(conn: Conn, ws: str, rows: Sequence[Sequence[object]]) -> None:
    """Append entries (rows as for ``append``) in order, so their ``seq`` follows that order."""
    conn.insert_rows(
        "INSERT INTO consent_ledger (workspace_id, id, profile_id, origin_profile_id, purpose, state,"
        " legal_basis, source, policy_version, proof, recorded_at, effective_at, expires_at, message_id)", 14, "",
        [(ws, *row) for row in rows],
    )


def entries(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    if not profile_ids:
        return []
    marks = ",".join("?" * len(profile_ids))
    return conn.all(
        f"SELECT {LEDGER_COLUMNS} FROM consent_ledger WHERE workspace_id = ? AND profile_id IN ({marks})"
        " ORDER BY effective_at, seq",
        (ws, *profile_ids),
    )


def states(conn: Conn, ws: str, profile_ids: Sequence[str]) -> list[Row]:
    """(profile_id, purpose, state, effective_at, seq, expires_at) of each ledger entry of ``profile_ids``: what
    deciding reads (``consent.decide.allowed_purposes``), answered from the ledger's index alone."""
    if not profile_ids:
        return []
    marks = ",".join("?" * len(profile_ids))
    return conn.all(
        "SELECT profile_id, purpose, state, effective_at, seq, expires_at FROM consent_ledger"
        f" WHERE workspace_id = ? AND profile_id IN ({marks})", (ws, *profile_ids))


def state_row(row: Sequence[Any]) -> ConsentRow:
    """A ``states`` row without its profile id, typed as ``allowed_purposes`` reads it."""
    _profile, purpose, state, effective, seq, expires = row
    return str(purpose), str(state), int(effective), int(seq), None if expires is None else int(expires)


def ledger_entry(row: Sequence[Any]) -> LedgerEntry:
    (entry_id, seq, profile_id, purpose, state, basis, source, policy, proof, recorded, effective,
     expires, _origin, _message) = row
    return LedgerEntry(
        id=str(entry_id), seq=int(seq), profile_id=str(profile_id), purpose=str(purpose),
        state=state, legal_basis=basis, source=str(source),
        policy_version=policy, proof=proof, recorded_at=int(recorded),
        effective_at=int(effective), expires_at=None if expires is None else int(expires),
    )
