"""The send gate: whether one message may go to one person now, in DESIGN 4.8's order, with the reason.

The gate is pure: the service gathers the person's consent entries, unsubscribes, suppressions,
recent sends and competing journeys' claims into a ``GateInput`` and acts on the ``GateDecision``
(send, hold until, drop, defer until, or refuse). Checks run in the order of DESIGN 4.8 — consent for
the channel's purpose, unsubscribes, bounce and complaint suppression, suppression rules, frequency
caps, quiet hours — and then arbitration between journeys; the first check that stops the message
decides, so the logged reason is the most fundamental one (a message without consent is reported as
such even if it would also break a cap).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, time, timedelta
from typing import Final, Literal

from rapport.consent.decide import may_use
from rapport.consent.model import NECESSARY, LedgerEntry, Purpose
from rapport.errors import ValidationError
from rapport.journeys.timing import Zone, in_quiet_hours, local_day, quiet_hours
from rapport.types import HOUR, Millis

Outcome = Literal["send", "hold", "drop", "defer", "refuse"]
CapScope = Literal["channel", "tag", "global"]
QuietAction = Literal["hold", "drop"]
SuppressionReason = Literal["hard_bounce", "complaint"]

REASON_CODES: Final = (
    "consent_missing",
    "global_holdout",
    "unsubscribed",
    "suppressed_bounce",
    "suppressed_complaint",
    "suppression_rule:<name>",
    "frequency_cap:<scope>",
    "quiet_hours",
    "arbitration",
)
"""Every reason a message does not go out now; ``<name>`` and ``<scope>`` are filled in."""

ARBITRATION_WINDOW: Final[Millis] = HOUR
"""Two journeys' messages closer than this count as 'the same hour' for arbitration."""


@dataclass(frozen=True, slots=True)
class Suppression:
    """A hard bounce or complaint recorded for the person's address; ``channel`` ``None`` covers every channel."""

    reason: SuppressionReason
    channel: str | None = None
    recorded_at: Millis = 0


@dataclass(frozen=True, slots=True)
class SuppressionCheck:
    """A ``SuppressionRule`` resource applied to this message: its rule's verdict, or a callable giving it.

    A callable is only called when every earlier check passed, so costly rules (event counts over a
    window) are evaluated only for messages that could otherwise go out.
    """

    name: str
    suppress: bool | Callable[[], bool]
    detail: str = ""

    def applies(self) -> bool:
        """Whether the rule stops the message."""
        return self.suppress() if callable(self.suppress) else self.suppress


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``limit`` messages in ``period_days`` of the person's calendar days (today included).

    ``scope`` ``channel`` counts sends on ``channel`` (``None``: the message's own channel); ``tag``
    counts sends carrying ``tag`` (``None``: each tag of the message, separately); ``global`` counts
    every send.
    """

    scope: CapScope
    limit: int
    period_days: int = 1
    channel: str | None = None
    tag: str | None = None

    def __post_init__(self) -> None:
        if self.limit < 0 or self.period_days < 1:
            raise ValidationError(
                f"invalid frequency cap: limit {self.limit}, period_days {self.period_days}; "
                "expected a limit of at least 0 and a period of at least 1 day",
                code="invalid_frequency_cap",
            )


@dataclass(frozen=True, slots=True)
class PastSend:
    """A message already sent to the person."""

    at: Millis
    channel: str
    tags: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class QuietHours:
    """No messages while the person's wall clock is in ``[start, end)``; ``hold`` waits for the end, ``drop``
    discards the message."""

    start: time
    end: time
    action: QuietAction = "hold"


@dataclass(frozen=True, slots=True)
class Claim:
    """Another journey's message to the same person: sent at ``at``, or held to go out at ``at``."""

    journey: str
    priority: int
    at: Millis
    state: Literal["sent", "held"] = "sent"


@dataclass(frozen=True, slots=True)
class GateInput:
    """Everything the gate needs to decide about one message to one person at instant ``at``.

    ``consent`` holds the person's ledger entries (any purposes, any order); the decision reads them at
    ``at``, so a withdrawal recorded after the message was scheduled stops it. ``unsubscribed`` names the
    channels and subscription groups the person left.
    """

    at: Millis
    journey: str
    channel: str
    purpose: Purpose
    consent: Sequence[LedgerEntry] = ()
    time_zone: Zone = "UTC"
    priority: int = 0
    tags: frozenset[str] = frozenset()
    subscription_group: str | None = None
    unsubscribed: frozenset[str] = frozenset()
    suppressions: Sequence[Suppression] = ()
    rules: Sequence[SuppressionCheck] = ()
    caps: Sequence[FrequencyCap] = ()
    recent_sends: Sequence[PastSend] = ()
    quiet: QuietHours | None = None
    claims: Sequence[Claim] = ()
    held_out: bool = False
    """The person is in the workspace's global holdout (the control group of all messaging)."""


@dataclass(frozen=True, slots=True)
class GateDecision:
    """What to do with the message: ``reason`` is ``None`` only for ``send``; ``until`` is set for ``hold``
    and ``defer`` (when to ask the gate again)."""

    outcome: Outcome
    reason: str | None = None
    detail: str = ""
    until: Millis | None = None


SEND: Final = GateDecision("send")


def decide(gate: GateInput) -> GateDecision:
    """The gate's decision for one message, the checks in DESIGN 4.8's order."""
    for check in (_consent, _global_holdout, _unsubscribe, _suppression, _rules, _caps, _quiet_hours, _arbitration):
        decision = check(gate)
        if decision is not None:
            return decision
    return SEND


def _consent(gate: GateInput) -> GateDecision | None:
    verdict = may_use(gate.consent, gate.purpose, gate.at)
    if verdict.allowed:
        return None
    return GateDecision("refuse", "consent_missing",
                        f"no consent for purpose {gate.purpose.name!r} of channel {gate.channel!r}: {verdict.reason}")


def _global_holdout(gate: GateInput) -> GateDecision | None:
    # Necessary messages (receipts, password resets) are not marketing: the control group still gets them.
    if gate.held_out and gate.purpose.name != NECESSARY:
        return GateDecision("refuse", "global_holdout",
                            "the person is in the workspace's global holdout: no marketing messages")
    return None


def _unsubscribe(gate: GateInput) -> GateDecision | None:
    if gate.channel in gate.unsubscribed:
        return GateDecision("refuse", "unsubscribed", f"unsubscribed from channel {gate.channel!r}")
    group = gate.subscription_group
    if group is not None and group in gate.unsubscribed:
        return GateDecision("refuse", "unsubscribed", f"unsubscribed from subscription group {group!r}")
    return None


def _suppression(gate: GateInput) -> GateDecision | None:
    found = {s.reason for s in gate.suppressions if s.channel is None or s.channel == gate.channel}
    # A complaint is reported over a bounce: it is the person's own choice, not a delivery failure.
    if "complaint" in found:
        detail = f"the person complained about messages on {gate.channel!r}"
        return GateDecision("refuse", "suppressed_complaint", detail)
    if "hard_bounce" in found:
        return GateDecision("refuse", "suppressed_bounce", f"the address on {gate.channel!r} hard-bounced")
    return None


def _rules(gate: GateInput) -> GateDecision | None:
    for rule in gate.rules:
        if rule.applies():
            return GateDecision("refuse", f"suppression_rule:{rule.name}",
                                rule.detail or f"suppression rule {rule.name!r} matched")
    return None


def _caps(gate: GateInput) -> GateDecision | None:
    today = local_day(gate.at, gate.time_zone)
    for cap in gate.caps:
        first_day = today - timedelta(days=cap.period_days - 1)
        counted = [s for s in gate.recent_sends if s.at <= gate.at
                   and first_day <= local_day(s.at, gate.time_zone) <= today]
        for what, matches in _cap_targets(cap, gate):
            sent = sum(1 for s in counted if matches(s))
            if sent >= cap.limit:
                days = "today" if cap.period_days == 1 else f"in the last {cap.period_days} days"
                detail = f"{sent} message(s) {what} {days} ({_days(first_day, today)}); the cap is {cap.limit}"
                return GateDecision("refuse", f"frequency_cap:{cap.scope}", detail)
    return None


def _cap_targets(cap: FrequencyCap, gate: GateInput) -> list[tuple[str, Callable[[PastSend], bool]]]:
    """What the cap counts for this message: a description and a test on past sends; empty when the cap
    does not concern this message (another channel, a tag it does not carry)."""
    if cap.scope == "global":
        return [("on any channel", lambda send: True)]
    if cap.scope == "channel":
        channel = cap.channel or gate.channel
        return [] if channel != gate.channel else [(f"on channel {channel!r}", lambda send: send.channel == channel)]
    tags = [cap.tag] if cap.tag is not None else sorted(gate.tags)
    return [(f"tagged {tag!r}", _has_tag(tag)) for tag in tags if tag in gate.tags]


def _has_tag(tag: str) -> Callable[[PastSend], bool]:
    return lambda send: tag in send.tags


def _days(first: date, last: date) -> str:
    return f"local day {last.isoformat()}" if first == last else f"local days {first.isoformat()} to {last.isoformat()}"


def _quiet_hours(gate: GateInput) -> GateDecision | None:
    quiet = gate.quiet
    if quiet is None or not in_quiet_hours(gate.at, gate.time_zone, quiet.start, quiet.end):
        return None
    window = f"{quiet.start:%H:%M}-{quiet.end:%H:%M} in {gate.time_zone}"
    if quiet.action == "drop":
        return GateDecision("drop", "quiet_hours", f"inside quiet hours {window}; the journey drops such messages")
    until = quiet_hours(gate.at, gate.time_zone, quiet.start, quiet.end)
    return GateDecision("hold", "quiet_hours", f"inside quiet hours {window}; held until the window ends", until)


def _arbitration(gate: GateInput) -> GateDecision | None:
    higher = [c for c in gate.claims if c.journey != gate.journey and c.priority > gate.priority]
    rivals = _conflicts(higher, gate.at)
    if not rivals:
        return None
    winner = max(rivals, key=lambda c: (c.priority, c.at))
    # Retry when no higher-priority message is within the window, so the retry is not deferred again by
    # a claim that only came within reach because of the deferral.
    until = gate.at
    while conflicts := _conflicts(higher, until):
        until = max(c.at for c in conflicts) + ARBITRATION_WINDOW
    verb = "sent" if winner.state == "sent" else "holds"
    detail = (f"journey {winner.journey!r} (priority {winner.priority}) {verb} a message within the hour; "
              f"this journey has priority {gate.priority}")
    return GateDecision("defer", "arbitration", detail, until)


def _conflicts(claims: Sequence[Claim], at: Millis) -> list[Claim]:
    return [c for c in claims if abs(c.at - at) < ARBITRATION_WINDOW]
