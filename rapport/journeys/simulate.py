"""Simulating a journey: the pure machine and the send gate on a simulated clock, over stored or synthetic
profiles, without storing or sending anything.

Each profile enters at ``start`` (consent for the journey's purpose permitting), its timers fire as soon as
they are due, waits for events time out (no event arrives in a simulation), branches read the profile's
facts at the simulated instant, and every message goes through the gate (consent for its channel's purpose,
frequency caps within the walk, quiet hours in the person's time zone) to say whether it would be sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.consent.purposes import Catalog
from rapport.journeys import gate
from rapport.journeys.machine import Assign, Enter, Exit, Send, Tick, step
from rapport.journeys.machine import enroll as new_enrollment
from rapport.journeys.model import Journey
from rapport.rules import EvalContext
from rapport.types import Json, Millis

MAX_STEPS = 10_000
"""Timer firings per walk before the simulation gives up on it (a journey is a tree, so this is a bug guard)."""


@dataclass(frozen=True, slots=True)
class Person:
    """A profile as the simulation sees it: its facts at any instant, its consent ledger and time zone."""

    id: str
    facts: Callable[[Millis], EvalContext]
    consent: Sequence[LedgerEntry] = ()
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Message:
    at: Millis
    step: str
    channel: str
    template: str
    outcome: str
    """``send``, or what the gate would do instead (``refuse``, ``hold``, ``drop``, ``defer``)."""
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Walk:
    """Where one profile went: the steps it reached, the messages, and how it ended."""

    profile_id: str
    entered: bool
    status: str
    """``completed``, ``exited``, ``active`` (still waiting at the horizon) or ``not_entered``."""
    reason: str | None = None
    steps: tuple[str, ...] = ()
    messages: tuple[Message, ...] = ()
    paths: Mapping[str, str] = field(default_factory=dict)


def simulate(journey: Journey, people: Sequence[Person], start: Millis, horizon: Millis, catalog: Catalog,
             channel_purposes: Mapping[str, str], caps: Sequence[gate.FrequencyCap] = (),
             properties: Mapping[str, Json] | None = None) -> list[Walk]:
    """Walk each of ``people`` through ``journey`` from ``start`` until it ends or ``horizon`` passes."""
    return [_walk(journey, person, start, horizon, catalog, channel_purposes, caps, properties or {})
            for person in people]


def _walk(journey: Journey, person: Person, start: Millis, horizon: Millis, catalog: Catalog,
          channel_purposes: Mapping[str, str], caps: Sequence[gate.FrequencyCap],
          properties: Mapping[str, Json]) -> Walk:
    purpose = catalog.purposes.get(journey.purpose)
    if purpose is None or not may_use(person.consent, purpose, start).allowed:
        return Walk(person.id, False, "not_entered", f"no consent for purpose {journey.purpose!r}")
    state = new_enrollment(journey, f"sim-{person.id}", person.id)
    state, commands = step(journey, state, Enter(properties, start, person.facts(start), person.timezone), start)
    visited: list[str] = []
    messages: list[Message] = []
    paths: dict[str, str] = {}
    past: list[gate.PastSend] = []
    now = start
    for _ in range(MAX_STEPS):
        for command in commands:
            if isinstance(command, Send):
                messages.append(_gate(journey, person, command, now, catalog, channel_purposes, caps, past))
            elif isinstance(command, Assign):
                paths[command.split] = command.path
            elif isinstance(command, Exit):
                visited.append(f"exit:{command.reason}")
        if state.step_id is not None and (not visited or visited[-1] != state.step_id):
            visited.append(state.step_id)
        if state.status != "active" or state.waiting_until is None or state.waiting_until > horizon:
            break
        now = max(now, state.waiting_until)
        state, commands = step(journey, state, Tick(person.facts(now)), now)
    return Walk(person.id, True, state.status, state.reason, tuple(visited), tuple(messages), paths)


def _gate(journey: Journey, person: Person, send: Send, at: Millis, catalog: Catalog,
          channel_purposes: Mapping[str, str], caps: Sequence[gate.FrequencyCap],
          past: list[gate.PastSend]) -> Message:
    own = catalog.get(journey.purpose)
    purpose = catalog.get(channel_purposes[send.channel]) if own.needs_consent and send.channel in \
        channel_purposes else own
    quiet = journey.quiet_hours
    decision = gate.decide(gate.GateInput(
        at=at, journey=journey.name, channel=send.channel, purpose=purpose, consent=person.consent,
        time_zone=person.timezone, priority=journey.priority, tags=frozenset(send.tags), caps=caps,
        recent_sends=tuple(past),
        quiet=None if quiet is None else gate.QuietHours(quiet.start, quiet.end, quiet.action)))
    if decision.outcome == "send":
        past.append(gate.PastSend(at, send.channel, frozenset(send.tags)))
    return Message(at, send.step_id, send.channel, send.template, decision.outcome, decision.reason)


def summary(walks: Sequence[Walk]) -> dict[str, object]:
    """Totals over walks: how many entered, how each ended, steps reached, messages by step and outcome."""
    ended = Counter(w.status if w.reason is None or w.status == "completed" else f"{w.status}:{w.reason}"
                    for w in walks)
    reached = Counter(s for w in walks for s in dict.fromkeys(w.steps))
    sent = Counter(f"{m.step} {m.channel}/{m.template}: {m.outcome}" + (f" ({m.reason})" if m.reason else "")
                   for w in walks for m in w.messages)
    paths = Counter(f"{split}->{path}" for w in walks for split, path in w.paths.items())
    return {"profiles": len(walks), "entered": sum(w.entered for w in walks), "ended": dict(sorted(ended.items())),
            "steps_reached": dict(sorted(reached.items())), "messages": dict(sorted(sent.items())),
            "paths": dict(sorted(paths.items()))}
