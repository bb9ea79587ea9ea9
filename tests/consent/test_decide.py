"""may_use, current_state and history: every reason, ordering, expiry edges, and a reference model."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rapport.consent import (
    NECESSARY,
    Catalog,
    ConsentState,
    Decision,
    DecisionReason,
    LedgerEntry,
    LegalBasis,
    Purpose,
    allowed_purposes,
    current_state,
    history,
    may_use,
)

T0 = 1_700_000_000_000
ANALYTICS = Purpose("analytics", "consent")
PROFILING = Purpose("profiling", "legitimate_interest")
NECESSARY_PURPOSE = Purpose(NECESSARY, "contract")


def entry(
    seq: int,
    state: ConsentState,
    effective_at: int = T0,
    *,
    purpose: str = "analytics",
    recorded_at: int | None = None,
    expires_at: int | None = None,
    legal_basis: LegalBasis = "consent",
) -> LedgerEntry:
    return LedgerEntry(
        id=f"cl_{seq}",
        seq=seq,
        profile_id="p1",
        purpose=purpose,
        state=state,
        legal_basis=legal_basis,
        source="api",
        policy_version="2026-01",
        proof=None,
        recorded_at=effective_at if recorded_at is None else recorded_at,
        effective_at=effective_at,
        expires_at=expires_at,
    )


GRANT = entry(1, "granted")
DENY = entry(1, "denied")
GRANT_EXPIRING = entry(1, "granted", expires_at=T0 + 100)

# (id, entries, purpose, at, allowed, reason, index of deciding entry or None)
CASES: list[tuple[str, list[LedgerEntry], Purpose, int, bool, DecisionReason, int | None]] = [
    ("necessary-without-entries", [], NECESSARY_PURPOSE, T0, True, "necessary", None),
    (
        "necessary-ignores-denial",
        [entry(1, "denied", purpose=NECESSARY)],
        NECESSARY_PURPOSE,
        T0,
        True,
        "necessary",
        None,
    ),
    ("no-entries", [], ANALYTICS, T0, False, "no_record", None),
    (
        "other-purpose-only",
        [entry(1, "granted", purpose="advertising")],
        ANALYTICS,
        T0,
        False,
        "no_record",
        None,
    ),
    ("granted", [GRANT], ANALYTICS, T0 + 5, True, "granted", 0),
    ("granted-at-effective-instant", [GRANT], ANALYTICS, T0, True, "granted", 0),
    ("future-entry-ignored", [GRANT], ANALYTICS, T0 - 1, False, "no_record", None),
    ("granted-before-expiry", [GRANT_EXPIRING], ANALYTICS, T0 + 99, True, "granted", 0),
    ("expired-exactly-at-expires-at", [GRANT_EXPIRING], ANALYTICS, T0 + 100, False, "expired", 0),
    ("expired-after", [GRANT_EXPIRING], ANALYTICS, T0 + 10_000, False, "expired", 0),
    ("denied", [DENY], ANALYTICS, T0, False, "denied", 0),
    (
        "withdrawn-after-grant",
        [entry(1, "granted"), entry(2, "withdrawn", T0 + 10)],
        ANALYTICS,
        T0 + 10,
        False,
        "withdrawn",
        1,
    ),
    (
        "grant-before-withdrawal-takes-effect",
        [entry(1, "granted"), entry(2, "withdrawn", T0 + 10)],
        ANALYTICS,
        T0 + 9,
        True,
        "granted",
        0,
    ),
    (
        "regrant-after-withdrawal",
        [entry(1, "withdrawn"), entry(2, "granted", T0 + 10)],
        ANALYTICS,
        T0 + 10,
        True,
        "granted",
        1,
    ),
    (
        "new-grant-after-expiry",
        [entry(1, "granted", expires_at=T0 + 5), entry(2, "granted", T0 + 10)],
        ANALYTICS,
        T0 + 20,
        True,
        "granted",
        1,
    ),
    (
        "late-recorded-older-denial-does-not-override",
        [entry(1, "granted", T0 + 10, recorded_at=T0 + 10), entry(2, "denied", T0, recorded_at=T0 + 50)],
        ANALYTICS,
        T0 + 60,
        True,
        "granted",
        0,
    ),
    (
        "effective-order-beats-list-order",
        [entry(5, "denied", T0 + 10), entry(9, "granted", T0)],
        ANALYTICS,
        T0 + 10,
        False,
        "denied",
        0,
    ),
    (
        "tie-broken-by-seq-deny-last",
        [entry(2, "denied"), entry(1, "granted")],
        ANALYTICS,
        T0,
        False,
        "denied",
        0,
    ),
    (
        "tie-broken-by-seq-grant-last",
        [entry(2, "granted"), entry(1, "denied")],
        ANALYTICS,
        T0,
        True,
        "granted",
        0,
    ),
    ("legitimate-interest-without-record", [], PROFILING, T0, True, "legal_basis", None),
    (
        "legitimate-interest-objection",
        [entry(1, "denied", purpose="profiling")],
        PROFILING,
        T0,
        False,
        "denied",
        0,
    ),
    (
        "legitimate-interest-withdrawn",
        [entry(1, "granted", purpose="profiling"), entry(2, "withdrawn", T0 + 1, purpose="profiling")],
        PROFILING,
        T0 + 1,
        False,
        "withdrawn",
        1,
    ),
    (
        "legitimate-interest-granted",
        [entry(1, "granted", purpose="profiling")],
        PROFILING,
        T0,
        True,
        "granted",
        0,
    ),
    (
        "legitimate-interest-lapsed-grant-falls-back",
        [entry(1, "granted", purpose="profiling", expires_at=T0 + 1)],
        PROFILING,
        T0 + 1,
        True,
        "legal_basis",
        None,
    ),
    (
        "legitimate-interest-objection-not-yet-effective",
        [entry(1, "denied", T0 + 10, purpose="profiling")],
        PROFILING,
        T0,
        True,
        "legal_basis",
        None,
    ),
]


@pytest.mark.parametrize(
    ("entries", "purpose", "at", "allowed", "reason", "decider"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_may_use(
    entries: list[LedgerEntry],
    purpose: Purpose,
    at: int,
    allowed: bool,
    reason: DecisionReason,
    decider: int | None,
) -> None:
    decision = may_use(entries, purpose, at)
    expected_entry = None if decider is None else entries[decider]
    assert decision == Decision(allowed, purpose.name, reason, expected_entry)


def test_every_reason_is_covered_by_the_table() -> None:
    reasons = {case[5] for case in CASES}
    assert reasons == {"necessary", "granted", "denied", "withdrawn", "expired", "no_record", "legal_basis"}


def test_current_state_covers_the_catalog() -> None:
    catalog = Catalog.from_resources([{"name": "profiling", "legal_basis": "legitimate_interest"}])
    entries = [
        entry(1, "granted"),
        entry(2, "denied", purpose="marketing_email"),
        entry(3, "granted", purpose="retired_purpose"),
    ]
    state = current_state(entries, catalog, T0)
    assert list(state) == catalog.names()
    assert {name: d.reason for name, d in state.items()} == {
        "advertising": "no_record",
        "analytics": "granted",
        "marketing_email": "denied",
        "marketing_push": "no_record",
        "marketing_sms": "no_record",
        NECESSARY: "necessary",
        "personalization": "no_record",
        "profiling": "legal_basis",
    }
    assert state["analytics"].entry == entries[0]


def test_history_orders_by_effect() -> None:
    a = entry(3, "granted", T0)
    b = entry(1, "denied", T0 + 5)
    c = entry(2, "withdrawn", T0)
    other = entry(4, "granted", T0, purpose="advertising")
    assert history([a, b, c, other], "analytics") == [c, a, b]
    assert history([a, b, c, other], "analytics", newest_first=True) == [b, a, c]
    assert history([b, other, a]) == [a, other, b]


PURPOSES = ["analytics", "advertising", NECESSARY]
STATES: list[ConsentState] = ["granted", "denied", "withdrawn"]


@st.composite
def ledgers(draw: st.DrawFn) -> list[LedgerEntry]:
    n = draw(st.integers(0, 12))
    seqs = draw(st.permutations(range(n)))
    out = []
    for seq in seqs:
        effective = draw(st.integers(0, 20))
        expires = draw(st.none() | st.integers(0, 30))
        out.append(
            entry(
                seq,
                draw(st.sampled_from(STATES)),
                effective,
                purpose=draw(st.sampled_from(PURPOSES)),
                recorded_at=draw(st.integers(0, 40)),
                expires_at=expires,
            )
        )
    return out


def reference(entries: list[LedgerEntry], purpose: Purpose, at: int) -> tuple[bool, str, LedgerEntry | None]:
    """The rules read literally: sort the relevant entries, look at the last one."""
    if purpose.name == NECESSARY:
        return True, "necessary", None
    relevant = sorted(
        (e for e in entries if e.purpose == purpose.name and e.effective_at <= at),
        key=lambda e: (e.effective_at, e.seq),
    )
    other_basis = purpose.legal_basis != "consent"
    if not relevant:
        return (True, "legal_basis", None) if other_basis else (False, "no_record", None)
    last = relevant[-1]
    if last.state != "granted":
        return False, last.state, last
    if last.expires_at is None or at < last.expires_at:
        return True, "granted", last
    return (True, "legal_basis", None) if other_basis else (False, "expired", last)


@settings(max_examples=400)
@given(
    ledgers(),
    st.sampled_from(PURPOSES),
    st.sampled_from(["consent", "legitimate_interest", "contract"]),
    st.integers(-1, 35),
)
def test_may_use_matches_reference(entries: list[LedgerEntry], name: str, basis: LegalBasis, at: int) -> None:
    purpose = Purpose(name, basis)
    decision = may_use(entries, purpose, at)
    assert (decision.allowed, decision.reason, decision.entry) == reference(entries, purpose, at)


@given(ledgers(), st.integers(-1, 35))
def test_current_state_agrees_with_may_use(entries: list[LedgerEntry], at: int) -> None:
    catalog = Catalog.default()
    state = current_state(entries, catalog, at)
    for purpose in catalog:
        assert state[purpose.name] == may_use(entries, purpose, at)


def test_entries_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GRANT.state = "denied"  # type: ignore[misc]


@settings(max_examples=300)
@given(ledgers(), st.sampled_from(["consent", "legitimate_interest"]), st.integers(-1, 35))
def test_allowed_purposes_from_rows_agree_with_current_state(entries: list[LedgerEntry], basis: LegalBasis,
                                                           at: int) -> None:
    catalog = Catalog.of([Purpose("analytics", "consent"), Purpose("advertising", basis)])
    rows = [(e.purpose, e.state, e.effective_at, e.seq, e.expires_at) for e in entries]
    expected = {name for name, decision in current_state(entries, catalog, at).items() if decision.allowed}
    assert allowed_purposes(rows, catalog, at) == expected
