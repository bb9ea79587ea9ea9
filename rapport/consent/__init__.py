"""Consent: purposes, the append-only ledger's values, and the decisions every gate asks for."""

from __future__ import annotations

from rapport.consent.decide import allowed_purposes, current_state, history, latest_entry, may_use
from rapport.consent.mapping import ConsentMapping, Extracted
from rapport.consent.model import (
    CONSENT_STATES,
    LEGAL_BASES,
    NECESSARY,
    ConsentState,
    Decision,
    DecisionReason,
    LedgerEntry,
    LegalBasis,
    Purpose,
    parse_legal_basis,
    parse_state,
)
from rapport.consent.purposes import DEFAULT_PURPOSES, Catalog

__all__ = [
    "CONSENT_STATES",
    "DEFAULT_PURPOSES",
    "LEGAL_BASES",
    "NECESSARY",
    "Catalog",
    "ConsentMapping",
    "ConsentState",
    "Decision",
    "DecisionReason",
    "Extracted",
    "LedgerEntry",
    "LegalBasis",
    "Purpose",
    "allowed_purposes",
    "current_state",
    "history",
    "latest_entry",
    "may_use",
    "parse_legal_basis",
    "parse_state",
]
