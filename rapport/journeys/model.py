"""A published journey as an immutable tree of steps with stable ids, built from its validated spec.

A step's id is its place in the tree: ``"3"`` is the fourth top-level step, ``"6.a.0"`` the first
step of path ``a`` of the split at ``6``, ``"0.on_event.0"`` the first step run when the wait at
``0`` sees its event (likewise ``on_timeout``, ``then`` and ``else``). Ids depend only on the
shape of the version, which never changes once published, so an enrollment can keep its place
(and its sends' idempotency keys) across restarts.

When a step finishes, the journey goes on with the next step of the same list; when a nested list
ends, with the step after the one that holds it; when the top-level list ends, the journey is done.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time
from fractions import Fraction
from types import MappingProxyType
from typing import Literal, TypeAlias, cast

from rapport.durations import parse_duration
from rapport.errors import ValidationError
from rapport.journeys.timing import parse_clock
from rapport.resources.builtin.journey import HOLDOUT, JOURNEY
from rapport.resources.fields import FieldErrors
from rapport.rules import Node, event_functions, parse, paths, segments
from rapport.types import Json, JsonObject, Millis

StepId: TypeAlias = str
EntryKind = Literal["event", "segment_entered", "segment_exited", "schedule"]
PublishPolicy = Literal["drain", "migrate"]
QuietAction = Literal["hold", "drop"]


@dataclass(frozen=True, slots=True)
class SendStep:
    id: StepId
    channel: str
    template: str
    tags: tuple[str, ...] = ()
    subscription_group: str | None = None
    """The step's own ``SubscriptionGroup``, over the journey's."""


@dataclass(frozen=True, slots=True)
class DelayStep:
    """Wait ``ms``, or until the person's clock next reads ``until``."""

    id: StepId
    ms: Millis | None = None
    until: time | None = None


@dataclass(frozen=True, slots=True)
class WaitStep:
    """Wait for ``event`` (with ``correlate`` equal to the entry event's) for at most ``timeout_ms``."""

    id: StepId
    event: str
    timeout_ms: Millis
    correlate: str | None = None
    on_event: tuple[Step, ...] = ()
    on_timeout: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class BranchStep:
    id: StepId
    rule: Node
    then: tuple[Step, ...]
    otherwise: tuple[Step, ...] = ()


@dataclass(frozen=True, slots=True)
class SplitPath:
    name: str
    weight: Fraction
    steps: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class SplitStep:
    """Paths chosen by weight after ``holdout_percent`` of profiles are kept out (they exit)."""

    id: StepId
    paths: tuple[SplitPath, ...]
    holdout_percent: Fraction = Fraction(0)


@dataclass(frozen=True, slots=True)
class ExitStep:
    id: StepId
    reason: str


@dataclass(frozen=True, slots=True)
class UpdateTraitStep:
    """Set trait ``name`` to ``value`` (a JSON value; treat it as read-only)."""

    id: StepId
    name: str
    value: Json


@dataclass(frozen=True, slots=True)
class WebhookStep:
    id: StepId
    channel: str


Step: TypeAlias = SendStep | DelayStep | WaitStep | BranchStep | SplitStep | ExitStep | UpdateTraitStep | WebhookStep


@dataclass(frozen=True, slots=True)
class Entry:
    """What enrolls a profile: an event or segment by ``name``, or a schedule (``every_ms`` or ``at``)."""

    kind: EntryKind
    name: str | None = None
    every_ms: Millis | None = None
    at: time | None = None


@dataclass(frozen=True, slots=True)
class Audience:
    """Who a schedule enrolls: the members of ``segment``, those matching ``rule``, or members matching it."""

    segment: str | None = None
    rule: Node | None = None


@dataclass(frozen=True, slots=True)
class Reentry:
    """Whether a profile may enter again: ``never``, ``always`` (once the previous enrollment has
    finished) or ``after`` ``after_ms`` since its previous entry (and once it has finished)."""

    policy: Literal["never", "always", "after"]
    after_ms: Millis | None = None

    def allows(self, last_entered_at: Millis | None, still_active: bool, now: Millis) -> bool:
        """Whether a profile whose last enrollment entered at ``last_entered_at`` may enter at ``now``."""
        if last_entered_at is None:
            return True
        if still_active or self.policy == "never":
            return False
        return self.policy == "always" or now >= last_entered_at + (self.after_ms or 0)


@dataclass(frozen=True, slots=True)
class Goal:
    """A conversion: ``event`` (matching ``where``) within ``within_ms`` of entry."""

    event: str
    within_ms: Millis
    where: Node | None = None


@dataclass(frozen=True, slots=True)
class QuietHours:
    start: time
    end: time
    action: QuietAction = "hold"


@dataclass(frozen=True, slots=True)
class Journey:
    """One published version of a journey. Build it with ``build``."""

    name: str
    version: int
    purpose: str
    priority: int
    entry: Entry
    reentry: Reentry
    steps: tuple[Step, ...]
    exit_when: Node | None = None
    goal: Goal | None = None
    quiet_hours: QuietHours | None = None
    subscription_group: str | None = None
    """The ``SubscriptionGroup`` the journey's messages belong to (a send step may name its own)."""
    by_id: Mapping[StepId, Step] = field(default_factory=dict, compare=False, repr=False)
    following: Mapping[StepId, StepId | None] = field(default_factory=dict, compare=False, repr=False)
    audience: Audience | None = None
    on_publish: PublishPolicy = "drain"
    migrate: Mapping[StepId, StepId] = field(default_factory=dict)
    """With ``on_publish: migrate``: the step of the version this one replaced -> the step of this version
    its waiting enrollments move to (``rapport.journeys.versions``)."""

    @property
    def first(self) -> StepId | None:
        """The step an enrollment starts at, ``None`` for no steps."""
        return self.steps[0].id if self.steps else None

    def step(self, step_id: StepId) -> Step:
        """The step with id ``step_id``; an unknown id is a ``KeyError`` naming the journey version."""
        try:
            return self.by_id[step_id]
        except KeyError:
            raise KeyError(f"journey {self.name!r} version {self.version} has no step {step_id!r}") from None

    def next_after(self, step_id: StepId) -> StepId | None:
        """The step that runs once ``step_id`` (and whatever it holds) has finished; ``None`` ends the journey."""
        self.step(step_id)
        return self.following[step_id]

    def start_of(self, steps: tuple[Step, ...], holder: StepId) -> StepId | None:
        """Where the journey goes to run ``steps``, a list held by step ``holder``: its first step, or the
        step after ``holder`` for an empty list."""
        return steps[0].id if steps else self.next_after(holder)

    @property
    def reads_facts(self) -> bool:
        """Whether stepping needs the profile's facts outside incoming events (it has a ``branch``)."""
        return any(isinstance(step, BranchStep) for step in self.by_id.values())


def journey_rules(journey: Journey) -> list[Node]:
    """The rules a journey evaluates over the profile: ``exit_when`` and its branches' conditions."""
    rules = [journey.exit_when] if journey.exit_when is not None else []
    return rules + [step.rule for step in journey.by_id.values() if isinstance(step, BranchStep)]


def listened(journeys: Iterable[Journey]) -> frozenset[str] | None:
    """The names of the events ``journeys`` react to: their entry events (``Segment Entered``/``Exited`` for
    segment entries), ``wait_for`` and goal events, and the events their ``exit_when`` counts. ``None`` when
    an ``exit_when`` reads anything but event functions (traits, consent, segments): any event may then end
    an enrollment, so every event counts."""
    names: set[str] = set()
    for journey in journeys:
        entry = journey.entry
        if entry.kind == "event" and entry.name is not None:
            names.add(entry.name)
        elif entry.kind in ("segment_entered", "segment_exited"):
            names.add("Segment Entered" if entry.kind == "segment_entered" else "Segment Exited")
        names.update(step.event for step in journey.by_id.values() if isinstance(step, WaitStep))
        if journey.goal is not None:
            names.add(journey.goal.event)
        if journey.exit_when is not None:
            if paths(journey.exit_when) or segments(journey.exit_when):
                return None
            names.update(fn.event for fn in event_functions(journey.exit_when))
    return frozenset(names)


def walk(steps: tuple[Step, ...]) -> Iterator[Step]:
    """Every step of ``steps`` and of the lists they hold, in document order."""
    for step in steps:
        yield step
        for child in children(step):
            yield from walk(child)


def children(step: Step) -> tuple[tuple[Step, ...], ...]:
    """The step lists ``step`` holds, in document order."""
    if isinstance(step, WaitStep):
        return (step.on_event, step.on_timeout)
    if isinstance(step, BranchStep):
        return (step.then, step.otherwise)
    if isinstance(step, SplitStep):
        return tuple(path.steps for path in step.paths)
    return ()


def build(spec: JsonObject, version: int = 1) -> Journey:
    """The journey of a Journey document (validated here again, so a stored spec from an older
    release cannot slip through); raises ``ValidationError`` with the details of every problem."""
    name = spec.get("name")
    if not isinstance(name, str):
        raise ValidationError(f"a Journey spec needs its name; got {name!r}", code="invalid_resource")
    ctx = FieldErrors(kind="Journey", name=name)
    checked = JOURNEY.validate(spec, ctx)
    if ctx.details:
        raise ValidationError(f"invalid Journey {ctx.name!r}: {ctx.details[0]['message']}",
                              code="invalid_resource", details=ctx.details)
    steps = _steps(checked["steps"], "")
    following: dict[StepId, StepId | None] = {}
    _link(steps, None, following)
    by_id = {step.id: step for step in walk(steps)}
    goal = checked.get("goal")
    quiet = checked.get("quiet_hours")
    exit_when = checked.get("exit_when")
    return Journey(
        name=checked["name"],
        version=version,
        purpose=checked["purpose"],
        priority=checked["priority"],
        entry=_entry(checked["entry"]),
        reentry=_reentry(checked["reentry"]),
        steps=steps,
        exit_when=parse(exit_when) if exit_when is not None else None,
        goal=None if goal is None else Goal(
            goal["event"], parse_duration(goal["within"]),
            parse(goal["where"]) if goal.get("where") is not None else None),
        quiet_hours=None if quiet is None else QuietHours(
            parse_clock(quiet["start"]), parse_clock(quiet["end"]), quiet["action"]),
        subscription_group=checked.get("subscription_group"),
        by_id=MappingProxyType(by_id),
        following=MappingProxyType(following),
        audience=_audience(checked.get("audience")),
        on_publish=checked.get("on_publish") or "drain",
        migrate=MappingProxyType(dict(checked.get("migrate") or {})),
    )


def _link(steps: tuple[Step, ...], after: StepId | None, following: dict[StepId, StepId | None]) -> None:
    """Record, for every step, the step that follows it; a list's last step is followed by ``after``."""
    for index, step in enumerate(steps):
        nxt = steps[index + 1].id if index + 1 < len(steps) else after
        following[step.id] = nxt
        for child in children(step):
            _link(child, nxt, following)


def _id(prefix: str, index: int) -> StepId:
    return f"{prefix}{index}"


def _steps(items: list[JsonObject], prefix: str) -> tuple[Step, ...]:
    return tuple(_step(item, _id(prefix, index)) for index, item in enumerate(items))


def _step(item: JsonObject, step_id: StepId) -> Step:
    [(kind, body)] = item.items()
    if kind == "send":
        return SendStep(step_id, body["channel"], body["template"], tuple(body.get("tags", ())),
                        body.get("subscription_group"))
    if kind == "delay":
        if isinstance(body, dict):
            return DelayStep(step_id, until=parse_clock(body["until"]))
        return DelayStep(step_id, ms=parse_duration(body))
    if kind == "wait_for":
        return WaitStep(step_id, body["event"], parse_duration(body["timeout"]), body.get("correlate"),
                        _steps(body.get("on_event", []), f"{step_id}.on_event."),
                        _steps(body.get("on_timeout", []), f"{step_id}.on_timeout."))
    if kind == "branch":
        return BranchStep(step_id, parse(body["if"]), _steps(body["then"], f"{step_id}.then."),
                          _steps(body.get("else", []), f"{step_id}.else."))
    if kind == "split":
        paths = tuple(SplitPath(name, _fraction(path["weight"]), _steps(path["steps"], f"{step_id}.{name}."))
                      for name, path in body["paths"].items())
        return SplitStep(step_id, paths, _fraction(body.get("holdout", 0)))
    if kind == "exit":
        return ExitStep(step_id, body)
    if kind == "update_trait":
        return UpdateTraitStep(step_id, body["name"], body["value"])
    return WebhookStep(step_id, body["channel"])


def _fraction(number: int | float) -> Fraction:
    """A weight or percentage as written (``12.5`` is exactly 25/2, not its nearest double)."""
    return Fraction(str(number)) if isinstance(number, float) else Fraction(number)


def _entry(entry: JsonObject) -> Entry:
    [(kind, value)] = entry.items()
    if kind != "schedule":
        return Entry(cast(EntryKind, kind), name=value)
    if "every" in value:
        return Entry("schedule", every_ms=parse_duration(value["every"]))
    return Entry("schedule", at=parse_clock(value["at"]))


def _audience(audience: JsonObject | None) -> Audience | None:
    if audience is None:
        return None
    text = audience.get("rule")
    return Audience(audience.get("segment"), parse(text) if text is not None else None)


def _reentry(text: str) -> Reentry:
    if text in ("never", "always"):
        return Reentry("never" if text == "never" else "always")
    return Reentry("after", parse_duration(text.removeprefix("after").strip()))


__all__ = [
    "HOLDOUT",
    "Audience",
    "BranchStep",
    "DelayStep",
    "Entry",
    "ExitStep",
    "Goal",
    "Journey",
    "QuietHours",
    "Reentry",
    "SendStep",
    "SplitPath",
    "SplitStep",
    "Step",
    "StepId",
    "UpdateTraitStep",
    "WaitStep",
    "WebhookStep",
    "build",
    "children",
    "journey_rules",
    "listened",
    "walk",
]
