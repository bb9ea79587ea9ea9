"""The enrollment state machine: ``step(journey, state, event, now) -> (state, commands)``.

Pure: no storage, clock or channel. The engine stores the returned state and executes the
commands (send through the gate, set the timer, record the exit or conversion), so tests move
time by hand. The guarantees the engine relies on:

- no timer fires early: a ``Tick`` before the instant the enrollment waits for changes nothing;
- once an enrollment has exited, converted or completed, it never commands a send again;
- a send (or webhook) step is commanded at most once per enrollment, with an idempotency key
  derived from the enrollment and step ids, so a retried command cannot deliver twice;
- ``exit_when`` and the goal act on any incoming event, even while the enrollment waits.

Delays count from the instant the previous step was due, not from when a late timer was served:
after ``delay: 45m`` and ``delay: 23h`` the journey is at entry + 23h45m even if a worker was
behind. Steps whose time has already come run in the same call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal, TypeAlias

from rapport.journeys.model import (
    HOLDOUT,
    BranchStep,
    DelayStep,
    Journey,
    SendStep,
    SplitStep,
    Step,
    StepId,
    UpdateTraitStep,
    WaitStep,
    WebhookStep,
)
from rapport.journeys.split import assign
from rapport.journeys.timing import next_local_time
from rapport.rules import EvalContext, EventFn, Path, evaluate, evaluate_where
from rapport.types import Json, Millis

Status = Literal["pending", "active", "exited", "converted", "completed"]
FINISHED: frozenset[Status] = frozenset({"exited", "converted", "completed"})
EXIT_WHEN = "exit_when"
"""The reason of an exit caused by the journey's ``exit_when`` rule."""


def _frozen(properties: Mapping[str, Json]) -> Mapping[str, Json]:
    return MappingProxyType(dict(properties))


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One profile's walk through one journey version.

    ``step_id`` is the step it waits at (a delay or a wait), ``waiting_until`` the instant that
    wait ends; both are ``None`` when it is not waiting. ``sent`` holds the ids of the send and
    webhook steps already commanded. ``reason`` is the exit reason (``holdout`` for a profile a
    split kept out, ``exit_when`` for the journey's exit rule, else the exit step's reason).
    """

    id: str
    profile_id: str
    journey: str
    version: int
    status: Status = "pending"
    step_id: StepId | None = None
    waiting_until: Millis | None = None
    entered_at: Millis | None = None
    finished_at: Millis | None = None
    entry_properties: Mapping[str, Json] = field(default_factory=lambda: _frozen({}))
    timezone: str = "UTC"
    sent: frozenset[StepId] = frozenset()
    reason: str | None = None


def enroll(journey: Journey, enrollment_id: str, profile_id: str) -> Enrollment:
    """A pending enrollment of ``profile_id``; the ``Enter`` event starts it."""
    return Enrollment(enrollment_id, profile_id, journey.name, journey.version)


@dataclass(frozen=True, slots=True)
class Enter:
    """The entry trigger happened at ``at`` with the trigger event's ``properties``.

    ``facts`` are needed when the journey reaches a ``branch`` before its first wait
    (``Journey.reads_facts`` tells whether it has any); ``timezone`` is the person's, for delays
    until a time of day.
    """

    properties: Mapping[str, Json]
    at: Millis
    facts: EvalContext | None = None
    timezone: str = "UTC"


@dataclass(frozen=True, slots=True)
class Tick:
    """The enrollment's timer fired; ``facts`` as for ``Enter``."""

    facts: EvalContext | None = None


@dataclass(frozen=True, slots=True)
class Incoming:
    """An event of the profile arrived; ``facts`` describe the profile with this event included."""

    name: str
    properties: Mapping[str, Json]
    facts: EvalContext


Event: TypeAlias = Enter | Tick | Incoming


@dataclass(frozen=True, slots=True)
class Send:
    step_id: StepId
    channel: str
    template: str
    idempotency_key: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CallWebhook:
    step_id: StepId
    channel: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class UpdateTrait:
    step_id: StepId
    name: str
    value: Json


@dataclass(frozen=True, slots=True)
class Schedule:
    """Wake the enrollment (with a ``Tick``) at ``at``; replaces any earlier timer."""

    at: Millis


@dataclass(frozen=True, slots=True)
class Exit:
    reason: str


@dataclass(frozen=True, slots=True)
class Convert:
    """The goal event ``goal`` happened within the goal's window."""

    goal: str


@dataclass(frozen=True, slots=True)
class Assign:
    """The profile took ``path`` (or ``holdout``) at split step ``split``."""

    split: StepId
    path: str


Command: TypeAlias = Send | CallWebhook | UpdateTrait | Schedule | Exit | Convert | Assign
Result: TypeAlias = tuple[Enrollment, tuple[Command, ...]]


def idempotency_key(enrollment_id: str, step_id: StepId) -> str:
    """The key of the message a step sends for one enrollment: 32 hex digits of SHA-256, so it is the
    same on every retry and safe in a ``Message-ID`` or an HTTP header."""
    return hashlib.sha256(f"{enrollment_id}\x1f{step_id}".encode()).hexdigest()[:32]


def step(journey: Journey, state: Enrollment, event: Event, now: Millis) -> Result:
    """The enrollment after ``event`` at ``now``, and what the engine must do."""
    if (state.journey, state.version) != (journey.name, journey.version):
        raise ValueError(f"enrollment {state.id!r} is on journey {state.journey!r} version {state.version}, "
                         f"not {journey.name!r} version {journey.version}")
    if isinstance(event, Enter):
        return _enter(journey, state, event, now)
    if isinstance(event, Tick):
        return _tick(journey, state, event, now)
    return _incoming(journey, state, event, now)


def _enter(journey: Journey, state: Enrollment, event: Enter, now: Millis) -> Result:
    if state.status != "pending":
        return state, ()
    start = min(event.at, now)
    state = replace(state, status="active", entered_at=start, entry_properties=_frozen(event.properties),
                    timezone=event.timezone)
    return _run(journey, state, journey.first, start, now, event.facts)


def _tick(journey: Journey, state: Enrollment, event: Tick, now: Millis) -> Result:
    due = state.waiting_until
    if state.status != "active" or state.step_id is None or due is None or now < due:
        return state, ()
    cursor = _elapsed(journey, journey.step(state.step_id))
    state = replace(state, step_id=None, waiting_until=None)
    return _run(journey, state, cursor, due, now, event.facts)


def _elapsed(journey: Journey, node: Step) -> StepId | None:
    """Where the journey goes when the time of a delay or wait is up (a wait runs ``on_timeout``)."""
    if isinstance(node, WaitStep):
        return journey.start_of(node.on_timeout, node.id)
    assert isinstance(node, DelayStep), node
    return journey.next_after(node.id)


def _incoming(journey: Journey, state: Enrollment, event: Incoming, now: Millis) -> Result:
    """The goal first (an order that also meets ``exit_when`` still counts as a conversion), then
    ``exit_when``, then the wait the enrollment is in, if the event is the one it waits for."""
    goal = journey.goal
    if goal is not None and event.name == goal.event and _may_convert(state) and state.entered_at is not None \
            and now <= state.entered_at + goal.within_ms \
            and (goal.where is None or evaluate_where(goal.where, event.properties, now)):
        finished = state.finished_at if state.finished_at is not None else now
        state = replace(state, status="converted", step_id=None, waiting_until=None, finished_at=finished)
        return state, (Convert(goal.event),)
    if state.status != "active":
        return state, ()
    if journey.exit_when is not None and evaluate(journey.exit_when, _Facts(event.facts, event.properties)):
        return _finish(state, "exited", now, [Exit(EXIT_WHEN)], EXIT_WHEN)
    node = journey.step(state.step_id) if state.step_id is not None else None
    if isinstance(node, WaitStep) and state.waiting_until is not None and now < state.waiting_until \
            and event.name == node.event and _correlates(node, state, event):
        state = replace(state, step_id=None, waiting_until=None)
        return _run(journey, state, journey.start_of(node.on_event, node.id), now, now, event.facts)
    return state, ()


def _may_convert(state: Enrollment) -> bool:
    """Conversions count while the journey runs, after it completed, and for the holdout (which is
    kept out precisely to measure how often people convert without the journey)."""
    return state.status in ("active", "completed") or (state.status == "exited" and state.reason == HOLDOUT)


def _correlates(node: WaitStep, state: Enrollment, event: Incoming) -> bool:
    """Whether the event carries the entry event's value of ``correlate``; an entry event without that
    property matches nothing, so the wait times out."""
    if node.correlate is None:
        return True
    want, got = state.entry_properties.get(node.correlate), event.properties.get(node.correlate)
    return want is not None and got == want and isinstance(got, bool) == isinstance(want, bool)


def _run(journey: Journey, state: Enrollment, cursor: StepId | None, at: Millis, now: Millis,
         facts: EvalContext | None) -> Result:
    """Run steps from ``cursor``, the journey's time being ``at`` (≤ ``now``), until one must wait past
    ``now`` or the enrollment finishes."""
    commands: list[Command] = []
    while cursor is not None:
        node = journey.step(cursor)
        if isinstance(node, SendStep | WebhookStep):
            if node.id not in state.sent:
                key = idempotency_key(state.id, node.id)
                commands.append(Send(node.id, node.channel, node.template, key, node.tags)
                                if isinstance(node, SendStep) else CallWebhook(node.id, node.channel, key))
                state = replace(state, sent=state.sent | {node.id})
            cursor = journey.next_after(node.id)
        elif isinstance(node, UpdateTraitStep):
            commands.append(UpdateTrait(node.id, node.name, node.value))
            cursor = journey.next_after(node.id)
        elif isinstance(node, DelayStep | WaitStep):
            if isinstance(node, WaitStep):
                until = at + node.timeout_ms
            elif node.until is not None:
                until = next_local_time(at, state.timezone, node.until)
            else:
                until = at + (node.ms or 0)
            if until > now:
                commands.append(Schedule(until))
                return replace(state, step_id=node.id, waiting_until=until), tuple(commands)
            at, cursor = until, _elapsed(journey, node)
        elif isinstance(node, BranchStep):
            if facts is None:
                raise ValueError(f"step {node.id!r} of journey {journey.name!r} is a branch and needs the "
                                 "profile's facts; pass facts with the event")
            taken = evaluate(node.rule, _Facts(facts, state.entry_properties))
            cursor = journey.start_of(node.then if taken else node.otherwise, node.id)
        elif isinstance(node, SplitStep):
            path = assign(journey.name, node, state.profile_id)
            commands.append(Assign(node.id, path))
            if path == HOLDOUT:
                return _finish(state, "exited", at, [*commands, Exit(HOLDOUT)], HOLDOUT)
            chosen = next(p for p in node.paths if p.name == path)
            cursor = journey.start_of(chosen.steps, node.id)
        else:
            return _finish(state, "exited", at, [*commands, Exit(node.reason)], node.reason)
    return _finish(state, "completed", at, commands, None)


def _finish(state: Enrollment, status: Status, at: Millis, commands: list[Command], reason: str | None) -> Result:
    state = replace(state, status=status, step_id=None, waiting_until=None, finished_at=at, reason=reason)
    return state, tuple(commands)


@dataclass(frozen=True, slots=True)
class _Facts:
    """The profile's facts, with ``event.<name>`` read from ``event`` (the incoming event for
    ``exit_when``, the entry event for branches)."""

    facts: EvalContext
    event: Mapping[str, Json]

    @property
    def now_ms(self) -> Millis:
        return self.facts.now_ms

    def lookup(self, path: Path) -> tuple[bool, object]:
        if path.root != "event":
            return self.facts.lookup(path)
        current: object = self.event
        for part in path.parts:
            if not isinstance(current, Mapping) or part not in current:
                return False, None
            current = current[part]
        return True, current

    def event_function(self, fn: EventFn) -> object | None:
        return self.facts.event_function(fn)

    def in_segment(self, name: str) -> bool:
        return self.facts.in_segment(name)
