"""The send gate: each refusal reason, DESIGN 4.8's order, caps in the person's calendar days, quiet hours,
consent withdrawn after scheduling, and arbitration between journeys."""

from __future__ import annotations

import dataclasses
from datetime import datetime, time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.consent import ConsentState, LedgerEntry, Purpose
from rapport.consent.purposes import Catalog
from rapport.errors import ValidationError
from rapport.journeys.gate import (
    ARBITRATION_WINDOW,
    REASON_CODES,
    Claim,
    FrequencyCap,
    GateDecision,
    GateInput,
    PastSend,
    QuietHours,
    Suppression,
    SuppressionCheck,
    decide,
)
from rapport.types import DAY, HOUR, MINUTE

MARKETING_EMAIL = Catalog.default().get("marketing_email")
NECESSARY = Catalog.default().get("necessary")
BERLIN = "Europe/Berlin"


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


NOON = utc("2026-06-10T12:00:00+02:00")
"""A Wednesday noon in Berlin: outside any usual quiet hours."""


def ledger(state: ConsentState, effective_at: int, seq: int = 1, purpose: str = "marketing_email") -> LedgerEntry:
    return LedgerEntry(id=f"cl_{seq}", seq=seq, profile_id="p1", purpose=purpose, state=state, legal_basis="consent",
                       source="api", policy_version=None, proof=None, recorded_at=effective_at,
                       effective_at=effective_at, expires_at=None)


GRANTED = (ledger("granted", NOON - 365 * DAY),)


def gate(**changes: Any) -> GateInput:
    """A message the gate lets through; each test changes what it is about."""
    base = GateInput(at=NOON, journey="cart_abandonment", channel="email", purpose=MARKETING_EMAIL, consent=GRANTED,
                     time_zone=BERLIN, priority=10, tags=frozenset({"promo"}))
    return dataclasses.replace(base, **changes)


def test_a_message_that_passes_every_check_is_sent() -> None:
    assert decide(gate()) == GateDecision("send")


# --- consent ------------------------------------------------------------------------------------------


def test_without_any_consent_record_the_message_is_refused() -> None:
    decision = decide(gate(consent=()))
    assert (decision.outcome, decision.reason) == ("refuse", "consent_missing")
    assert "'marketing_email'" in decision.detail and "no_record" in decision.detail


def test_consent_withdrawn_between_scheduling_and_sending_stops_the_send() -> None:
    scheduled_at, withdrawn_at = NOON - 45 * MINUTE, NOON - 10 * MINUTE
    entries = (*GRANTED, ledger("withdrawn", withdrawn_at, seq=2))
    assert decide(gate(at=scheduled_at, consent=entries)).outcome == "send"
    decision = decide(gate(consent=entries))
    assert (decision.outcome, decision.reason) == ("refuse", "consent_missing")
    assert "withdrawn" in decision.detail


def test_a_withdrawal_effective_after_the_send_instant_does_not_count_yet() -> None:
    entries = (*GRANTED, ledger("withdrawn", NOON + MINUTE, seq=2))
    assert decide(gate(consent=entries)).outcome == "send"


def test_consent_for_another_purpose_does_not_count() -> None:
    entries = (ledger("granted", NOON - DAY, purpose="marketing_sms"),)
    assert decide(gate(consent=entries)).reason == "consent_missing"


def test_transactional_messages_need_no_consent_record() -> None:
    assert decide(gate(purpose=NECESSARY, consent=())).outcome == "send"


# --- unsubscribes and suppression ---------------------------------------------------------------------


@pytest.mark.parametrize(("unsubscribed", "group", "detail"), [
    ({"email"}, None, "unsubscribed from channel 'email'"),
    ({"newsletter"}, "newsletter", "unsubscribed from subscription group 'newsletter'"),
], ids=["channel", "subscription-group"])
def test_unsubscribed_channels_and_groups_refuse(unsubscribed: set[str], group: str | None, detail: str) -> None:
    decision = decide(gate(unsubscribed=frozenset(unsubscribed), subscription_group=group))
    assert decision == GateDecision("refuse", "unsubscribed", detail)


def test_leaving_another_group_or_channel_does_not_refuse() -> None:
    assert decide(gate(unsubscribed=frozenset({"sms", "digest"}), subscription_group="newsletter")).outcome == "send"


@pytest.mark.parametrize(("suppressions", "reason"), [
    ((Suppression("hard_bounce", "email"),), "suppressed_bounce"),
    ((Suppression("complaint", None),), "suppressed_complaint"),
    ((Suppression("hard_bounce", "email"), Suppression("complaint", "email")), "suppressed_complaint"),
], ids=["bounce-on-channel", "complaint-on-every-channel", "complaint-reported-over-bounce"])
def test_bounce_and_complaint_suppression(suppressions: tuple[Suppression, ...], reason: str) -> None:
    assert decide(gate(suppressions=suppressions)).reason == reason


def test_a_suppression_on_another_channel_does_not_apply() -> None:
    assert decide(gate(suppressions=(Suppression("hard_bounce", "sms"),))).outcome == "send"


# --- suppression rules --------------------------------------------------------------------------------


def test_each_suppression_rule_refuses_with_its_name() -> None:
    bought = SuppressionCheck("recently_bought", True, "bought this product in the last 14 days")
    ticket = SuppressionCheck("open_ticket", lambda: True)
    decision = decide(gate(rules=(SuppressionCheck("never", False), bought, ticket)))
    expected = GateDecision("refuse", "suppression_rule:recently_bought", "bought this product in the last 14 days")
    assert decision == expected
    decision = decide(gate(rules=(ticket,)))
    assert decision == GateDecision("refuse", "suppression_rule:open_ticket", "suppression rule 'open_ticket' matched")


def test_rules_are_not_evaluated_once_an_earlier_check_refused() -> None:
    calls: list[str] = []

    def costly() -> bool:
        calls.append("evaluated")
        return False

    assert decide(gate(consent=(), rules=(SuppressionCheck("costly", costly),))).reason == "consent_missing"
    assert calls == []
    assert decide(gate(rules=(SuppressionCheck("costly", costly),))).outcome == "send"
    assert calls == ["evaluated"]


# --- frequency caps in the person's calendar days ----------------------------------------------------


def test_caps_count_in_the_persons_calendar_day_across_their_midnight() -> None:
    late = utc("2026-06-10T23:30:00+02:00")
    just_after_midnight = utc("2026-06-11T00:10:00+02:00")
    cap = (FrequencyCap("channel", limit=1),)
    sent = (PastSend(late, "email"),)
    # 40 minutes apart, but on two different local days: the cap of one a day is not reached.
    assert decide(gate(at=just_after_midnight, caps=cap, recent_sends=sent)).outcome == "send"
    decision = decide(gate(at=late + 10 * MINUTE, caps=cap, recent_sends=sent))
    assert (decision.outcome, decision.reason) == ("refuse", "frequency_cap:channel")
    assert decision.detail == ("1 message(s) on channel 'email' today (local day 2026-06-10); the cap is 1")


def test_in_a_far_time_zone_the_local_day_is_not_the_utc_day() -> None:
    # 09:00 and 11:00 UTC on 10 June are one UTC day, but 23:00 on the 10th and 01:00 on the 11th in
    # Kiritimati (UTC+14).
    first, second = utc("2026-06-10T09:00:00+00:00"), utc("2026-06-10T11:00:00+00:00")
    cap = (FrequencyCap("global", limit=1),)
    sent = (PastSend(first, "sms"),)
    assert decide(gate(at=second, caps=cap, recent_sends=sent, time_zone="Pacific/Kiritimati")).outcome == "send"
    assert decide(gate(at=second, caps=cap, recent_sends=sent, time_zone="UTC")).reason == "frequency_cap:global"


def test_a_multi_day_period_counts_whole_local_days() -> None:
    cap = (FrequencyCap("channel", limit=2, period_days=7),)
    six_days_ago_early = utc("2026-06-04T00:05:00+02:00")
    seven_days_ago_late = utc("2026-06-03T23:55:00+02:00")
    sends = (PastSend(six_days_ago_early, "email"), PastSend(NOON - HOUR, "email"))
    assert decide(gate(caps=cap, recent_sends=sends)).reason == "frequency_cap:channel"
    older = (PastSend(seven_days_ago_late, "email"), PastSend(NOON - HOUR, "email"))
    assert decide(gate(caps=cap, recent_sends=older)).outcome == "send"


@pytest.mark.parametrize(("cap", "sends", "reason"), [
    (FrequencyCap("channel", 1), (PastSend(NOON - HOUR, "sms"),), None),
    (FrequencyCap("channel", 1, channel="sms"), (PastSend(NOON - HOUR, "sms"),), None),
    (FrequencyCap("channel", 1, channel="email"), (PastSend(NOON - HOUR, "email"),), "frequency_cap:channel"),
    (FrequencyCap("tag", 1), (PastSend(NOON - HOUR, "sms", frozenset({"promo"})),), "frequency_cap:tag"),
    (FrequencyCap("tag", 1), (PastSend(NOON - HOUR, "email", frozenset({"news"})),), None),
    (FrequencyCap("tag", 1, tag="news"), (PastSend(NOON - HOUR, "email", frozenset({"news"})),), None),
    (FrequencyCap("global", 2), (PastSend(NOON - HOUR, "sms"), PastSend(NOON - 2 * HOUR, "push")),
     "frequency_cap:global"),
    (FrequencyCap("global", 2), (PastSend(NOON - HOUR, "sms"),), None),
    (FrequencyCap("global", 1), (PastSend(NOON + HOUR, "sms"),), None),
], ids=["channel-counts-only-its-channel", "cap-on-another-channel", "cap-on-this-channel", "tag-across-channels",
        "other-tags-do-not-count", "cap-on-a-tag-the-message-lacks", "global-reached", "global-under",
        "future-sends-do-not-count"])
def test_cap_scopes(cap: FrequencyCap, sends: tuple[PastSend, ...], reason: str | None) -> None:
    assert decide(gate(caps=(cap,), recent_sends=sends)).reason == reason


def test_a_cap_of_zero_blocks_the_scope_entirely_and_bad_caps_are_rejected() -> None:
    assert decide(gate(caps=(FrequencyCap("tag", 0, tag="promo"),))).reason == "frequency_cap:tag"
    with pytest.raises(ValidationError, match="period of at least 1 day"):
        FrequencyCap("global", 1, period_days=0)


# --- quiet hours ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("at", "tz", "until"), [
    ("2026-06-10T22:30:00+02:00", BERLIN, "2026-06-11T08:00:00+02:00"),
    ("2026-03-29T01:30:00+01:00", BERLIN, "2026-03-29T08:00:00+02:00"),
    ("2026-11-01T01:30:00-05:00", "America/New_York", "2026-11-01T08:00:00-05:00"),
    ("2026-06-10T04:00:00+00:00", "America/New_York", "2026-06-10T08:00:00-04:00"),
], ids=["berlin-evening", "berlin-spring-forward-night", "new-york-fall-back-night", "utc-day-new-york-night"])
def test_quiet_hours_hold_until_the_window_opens(at: str, tz: str, until: str) -> None:
    decision = decide(gate(at=utc(at), time_zone=tz, quiet=QuietHours(time(21), time(8))))
    assert (decision.outcome, decision.reason, decision.until) == ("hold", "quiet_hours", utc(until))
    assert "21:00-08:00" in decision.detail


def test_quiet_hours_drop_when_the_journey_says_so() -> None:
    decision = decide(gate(at=utc("2026-06-10T03:00:00+02:00"), quiet=QuietHours(time(21), time(8), "drop")))
    assert (decision.outcome, decision.reason, decision.until) == ("drop", "quiet_hours", None)


def test_outside_quiet_hours_the_message_goes() -> None:
    assert decide(gate(quiet=QuietHours(time(21), time(8)))).outcome == "send"


# --- arbitration ---------------------------------------------------------------------------------------


def test_a_higher_priority_journey_in_the_same_hour_defers_the_lower_one() -> None:
    sent = Claim("welcome", priority=50, at=NOON - 20 * MINUTE)
    decision = decide(gate(claims=(sent,)))
    assert (decision.outcome, decision.reason) == ("defer", "arbitration")
    assert decision.until == NOON + 40 * MINUTE
    assert "'welcome' (priority 50) sent" in decision.detail


def test_a_held_higher_priority_message_due_within_the_hour_also_defers() -> None:
    held = Claim("welcome", priority=50, at=NOON + 30 * MINUTE, state="held")
    decision = decide(gate(claims=(held,)))
    assert (decision.outcome, decision.until) == ("defer", NOON + 30 * MINUTE + ARBITRATION_WINDOW)
    assert "'welcome' (priority 50) holds" in decision.detail
    # With several rivals the highest is named, and the retry waits until all of them are an hour away.
    decision = decide(gate(claims=(held, Claim("digest", 99, NOON - 50 * MINUTE))))
    assert (decision.outcome, decision.until) == ("defer", NOON + 30 * MINUTE + ARBITRATION_WINDOW)
    assert "'digest' (priority 99) sent" in decision.detail


def test_a_deferral_is_not_into_the_hour_of_a_later_higher_claim() -> None:
    claims = (Claim("welcome", 50, NOON), Claim("digest", 50, NOON + ARBITRATION_WINDOW + 30 * MINUTE))
    assert decide(gate(claims=claims)).until == NOON + 30 * MINUTE + 2 * ARBITRATION_WINDOW


@pytest.mark.parametrize("claim", [
    Claim("welcome", priority=5, at=NOON - 10 * MINUTE),
    Claim("welcome", priority=10, at=NOON - 10 * MINUTE),
    Claim("welcome", priority=50, at=NOON - HOUR),
    Claim("cart_abandonment", priority=50, at=NOON - 10 * MINUTE),
], ids=["lower-priority", "equal-priority", "an-hour-ago", "same-journey"])
def test_arbitration_lets_the_message_through(claim: Claim) -> None:
    assert decide(gate(claims=(claim,))).outcome == "send"


@given(st.lists(st.tuples(st.integers(0, 100), st.integers(-2 * HOUR, 2 * HOUR)), max_size=6))
def test_a_deferred_message_is_clear_of_every_higher_claim_when_it_is_retried(claims: list[tuple[int, int]]) -> None:
    rivals = tuple(Claim(f"j{index}", priority, NOON + offset) for index, (priority, offset) in enumerate(claims))
    decision = decide(gate(claims=rivals))
    higher = [c for c in rivals if c.priority > 10]
    if decision.outcome == "send":
        assert all(abs(c.at - NOON) >= ARBITRATION_WINDOW for c in higher)
        return
    assert decision.until is not None
    assert all(abs(c.at - decision.until) >= ARBITRATION_WINDOW for c in higher)
    assert decide(gate(at=decision.until, claims=rivals)).outcome == "send"


# --- order and reasons ---------------------------------------------------------------------------------


def test_the_checks_run_in_design_order() -> None:
    everything_wrong = gate(
        consent=(), unsubscribed=frozenset({"email"}), suppressions=(Suppression("hard_bounce"),),
        rules=(SuppressionCheck("recently_bought", True),), caps=(FrequencyCap("global", 0),),
        quiet=QuietHours(time(0), time(23, 59)), claims=(Claim("welcome", 99, NOON),),
    )
    order = ["consent_missing", "unsubscribed", "suppressed_bounce", "suppression_rule:recently_bought",
             "frequency_cap:global", "quiet_hours", "arbitration"]
    fixes: list[dict[str, Any]] = [{"consent": GRANTED}, {"unsubscribed": frozenset()}, {"suppressions": ()},
                                   {"rules": ()}, {"caps": ()}, {"quiet": None}, {"claims": ()}]
    seen = []
    current = everything_wrong
    for fix in fixes:
        seen.append(decide(current).reason)
        current = dataclasses.replace(current, **fix)
    assert seen == order
    assert decide(current).outcome == "send"


def test_every_reason_code_is_documented() -> None:
    documented = {code.split(":")[0] for code in REASON_CODES}
    produced = {"consent_missing", "global_holdout", "unsubscribed", "suppressed_bounce", "suppressed_complaint",
                "suppression_rule", "frequency_cap", "quiet_hours", "arbitration"}
    assert documented == produced


def test_gate_values_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        gate().at = 0  # type: ignore[misc]
    assert isinstance(MARKETING_EMAIL, Purpose)


def test_the_global_holdout_gets_no_marketing_but_necessary_messages() -> None:
    held = decide(gate(held_out=True))
    assert (held.outcome, held.reason) == ("refuse", "global_holdout")
    assert decide(gate(held_out=True, purpose=NECESSARY)).outcome == "send"
    # Consent is still the more fundamental reason.
    assert decide(gate(held_out=True, consent=())).reason == "consent_missing"
