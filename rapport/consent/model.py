"""Consent values: purposes, append-only ledger entries, and the decisions derived from them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from rapport.errors import ValidationError
from rapport.types import Millis

ConsentState = Literal["granted", "denied", "withdrawn"]
LegalBasis = Literal["consent", "legitimate_interest", "contract", "legal_obligation", "vital_interest", "public_task"]
DecisionReason = Literal["necessary", "granted", "denied", "withdrawn", "expired", "no_record", "legal_basis"]

CONSENT_STATES: tuple[ConsentState, ...] = get_args(ConsentState)
LEGAL_BASES: tuple[LegalBasis, ...] = get_args(LegalBasis)

NECESSARY = "necessary"
"""The purpose that is always allowed (transactional messages, security, billing)."""


def _options(values: tuple[str, ...]) -> str:
    return ", ".join(repr(v) for v in sorted(values))


def parse_state(value: object) -> ConsentState:
    """``value`` as a consent state; raises ``ValidationError`` naming the valid states."""
    for state in CONSENT_STATES:
        if value == state:
            return state
    raise ValidationError(
        f"invalid consent state {value!r}; expected one of {_options(CONSENT_STATES)}",
        code="invalid_consent_state",
        details=[{"value": value, "valid": sorted(CONSENT_STATES)}],
    )


def parse_legal_basis(value: object) -> LegalBasis:
    """``value`` as a legal basis; raises ``ValidationError`` naming the valid bases."""
    for basis in LEGAL_BASES:
        if value == basis:
            return basis
    raise ValidationError(
        f"invalid legal basis {value!r}; expected one of {_options(LEGAL_BASES)}",
        code="invalid_legal_basis",
        details=[{"value": value, "valid": sorted(LEGAL_BASES)}],
    )


@dataclass(frozen=True, slots=True)
class Purpose:
    """Something the workspace uses personal data for, and the legal basis it relies on.

    ``channel`` ties a purpose to a delivery channel (``email``, ``sms``, ``push``) so the send
    gate can find the purpose a message needs. ``default_expiry_ms`` is how long a grant lasts
    when the recorder gives no explicit expiry; ``None`` means grants do not expire.
    """

    name: str
    legal_basis: LegalBasis
    description: str = ""
    channel: str | None = None
    default_expiry_ms: Millis | None = None

    @property
    def needs_consent(self) -> bool:
        """Whether using data for this purpose requires a recorded grant."""
        return self.name != NECESSARY and self.legal_basis == "consent"


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One append-only record of a person's choice about one purpose.

    ``seq`` orders entries recorded for the same instant (it is assigned on append).
    ``effective_at`` is when the person made the choice (e.g. the event timestamp);
    ``recorded_at`` is when Rapport stored it. Decisions follow ``effective_at``, so a late-arriving
    older event cannot override a newer choice. ``proof`` is a hash of IP / user agent, never raw.
    ``expires_at`` applies to grants only.
    """

    id: str
    seq: int
    profile_id: str
    purpose: str
    state: ConsentState
    legal_basis: LegalBasis
    source: str
    policy_version: str | None
    proof: str | None
    recorded_at: Millis
    effective_at: Millis
    expires_at: Millis | None

    @property
    def order_key(self) -> tuple[Millis, int]:
        """Sort key: the order in which entries take effect."""
        return (self.effective_at, self.seq)


@dataclass(frozen=True, slots=True)
class Decision:
    """Whether data may be used for ``purpose``, why, and the ledger entry that decided it.

    ``entry`` is ``None`` when no entry decided (``necessary``, ``no_record``, ``legal_basis``).
    """

    allowed: bool
    purpose: str
    reason: DecisionReason
    entry: LedgerEntry | None
