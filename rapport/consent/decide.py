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
    name = purpose.name
    by_consent = purpose.legal_basis == "consent"
    if entry is None:
        if by_consent:
            return Decision(False, name, "no_record", None)
        return Decision(True, name, "legal_basis", None)
    if entry.state == "granted":
        if entry.expires_at is None or at < entry.expires_at:
            return Decision(True, name, "granted", entry)
        if by_consent:
            return Decision(False, name, "expired", entry)
        # A lapsed grant leaves a purpose on another legal basis where it was without any grant.
        return Decision(True, name, "legal_basis", None)
    reason: DecisionReason = "denied" if entry.state == "denied" else "withdrawn"
    return Decision(False, name, reason, entry)
