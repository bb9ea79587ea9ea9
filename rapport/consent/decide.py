"""Consent decisions: the one pure function every gate calls before using personal data.

Deny by default. ``necessary`` is always allowed. Otherwise the latest ledger entry for the
purpose that has taken effect by the instant of use decides (latest by ``effective_at``, ties by
``seq``); with no entry, only a purpose whose legal basis is not ``consent`` is allowed, and even
then an explicit denial or withdrawal forbids it (the right to object).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rapport.consent.model import NECESSARY, Decision, DecisionReason, LedgerEntry, Purpose
from rapport.consent.purposes import Catalog
from rapport.types import Millis


def may_use(entries: Sequence[LedgerEntry], purpose: Purpose, at: Millis) -> Decision:
    """Whether data may be used for ``purpose`` at instant ``at``, with the reason and deciding entry.

    ``entries`` may hold any profile's entries for any purposes in any order; only those for
    ``purpose`` with ``effective_at <= at`` count.
    """
    if purpose.name == NECESSARY:
        return Decision(True, purpose.name, "necessary", None)
    return _decide(purpose, latest_entry(entries, purpose.name, at), at)


def latest_entry(entries: Iterable[LedgerEntry], purpose: str, at: Millis) -> LedgerEntry | None:
    """The entry for ``purpose`` in effect at ``at``: latest by ``(effective_at, seq)``, or ``None``."""
    best: LedgerEntry | None = None
    for entry in entries:
        if entry.purpose != purpose or entry.effective_at > at:
            continue
        if best is None or _later(entry, best):
            best = entry
    return best


def current_state(entries: Iterable[LedgerEntry], catalog: Catalog, at: Millis) -> dict[str, Decision]:
    """The decision at ``at`` for every purpose of ``catalog``, keyed by purpose name (sorted).

    Entries for purposes the catalog does not know are ignored.
    """
    latest: dict[str, LedgerEntry] = {}
    for entry in entries:
        if entry.effective_at > at:
            continue
        best = latest.get(entry.purpose)
        if best is None or _later(entry, best):
            latest[entry.purpose] = entry
    out: dict[str, Decision] = {}
    for purpose in catalog:
        if purpose.name == NECESSARY:
            out[purpose.name] = Decision(True, purpose.name, "necessary", None)
        else:
            out[purpose.name] = _decide(purpose, latest.get(purpose.name), at)
    return out


ConsentRow = tuple[str, str, Millis, int, Millis | None]
"""A ledger entry as far as deciding reads it: (purpose, state, effective_at, seq, expires_at)."""


def allowed_purposes(rows: Iterable[ConsentRow], catalog: Iterable[Purpose], at: Millis) -> frozenset[str]:
    """The purposes of ``catalog`` (or of any purposes) allowed at ``at``: those ``current_state`` allows, from
    ledger rows read without the rest of each entry (readers that need only the answer: decisions, ingestion)."""
    latest: dict[str, ConsentRow] = {}
    for row in rows:
        if row[2] > at:
            continue
        best = latest.get(row[0])
        if best is None or row[2] > best[2] or (row[2] == best[2] and row[3] > best[3]):
            latest[row[0]] = row
    allowed: list[str] = []
    for purpose in catalog:
        if purpose.name == NECESSARY:
            allowed.append(purpose.name)
            continue
        chosen = latest.get(purpose.name)
        if _verdict(purpose, None if chosen is None else chosen[1], None if chosen is None else chosen[4], at)[0]:
            allowed.append(purpose.name)
    return frozenset(allowed)


def history(
    entries: Iterable[LedgerEntry], purpose: str | None = None, *, newest_first: bool = False
) -> list[LedgerEntry]:
    """Entries (for ``purpose`` only, when given) in the order they take effect.

    This is the order ``may_use`` reads them in: by ``effective_at``, ties by ``seq``; the last
    entry of the list, among those already effective, decides.
    """
    chosen = [e for e in entries if purpose is None or e.purpose == purpose]
    chosen.sort(key=lambda e: e.order_key, reverse=newest_first)
    return chosen


def _later(a: LedgerEntry, b: LedgerEntry) -> bool:
    return a.effective_at > b.effective_at or (a.effective_at == b.effective_at and a.seq > b.seq)


def _decide(purpose: Purpose, entry: LedgerEntry | None, at: Millis) -> Decision:
    allowed, reason, by_entry = _verdict(purpose, None if entry is None else entry.state,
                                         None if entry is None else entry.expires_at, at)
    return Decision(allowed, purpose.name, reason, entry if by_entry else None)


def _verdict(purpose: Purpose, state: str | None, expires_at: Millis | None, at: Millis
             ) -> tuple[bool, DecisionReason, bool]:
    """(allowed, reason, whether the entry decided) for the purpose's latest entry in effect (its ``state`` and
    ``expires_at``; ``state`` None: no entry)."""
    by_consent = purpose.legal_basis == "consent"
    if state is None:
        return (False, "no_record", False) if by_consent else (True, "legal_basis", False)
    if state == "granted":
        if expires_at is None or at < expires_at:
            return True, "granted", True
        if by_consent:
            return False, "expired", True
        # A lapsed grant leaves a purpose on another legal basis where it was without any grant.
        return True, "legal_basis", False
    return False, ("denied" if state == "denied" else "withdrawn"), True
