"""The durable journey engine: enrollments, timers and the send log in storage, driven by the pure machine.

``rapport.journeys.machine`` decides what happens; this module stores its decisions and carries them out:

- ``enroll`` and ``on_event`` run inside the caller's write transaction (ingestion's), so an event and the
  journey steps it causes commit together;
- ``run_due`` wakes enrollments whose timer is due, stepping each and storing its new state, its next timer
  and the sends it commands in one transaction;
- ``dispatch`` sends what the log holds as ``scheduled``: through the gate, the template and the channel.

Exactly once: a send is a log row keyed by its idempotency key (enrollment and step), inserted with
``ON CONFLICT DO NOTHING``, so a replayed step records nothing twice. Dispatch leases a row, calls the
channel with that key, and marks the row ``sent``; a row marked ``sent`` is never taken again. Marks are
committed as the channel answers (a group commit of whatever answered meanwhile), not once a whole batch
is done, so a crash leaves few sends whose answer is unrecorded. A crash between the channel call and the
mark leaves the row leased; when the lease ends another dispatch sends it again with the same key, which the
peer recognises (the email ``Message-ID`` is derived from it), so the message is neither lost nor
delivered twice; the send log notes that the retry followed an attempt left in doubt.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, TypeAlias, cast

import orjson

from rapport.channels.base import Channel, Message, Receipt
from rapport.clock import Clock
from rapport.consent.decide import current_state, may_use
from rapport.consent.model import LedgerEntry, Purpose
from rapport.consent.purposes import Catalog
from rapport.errors import Terminal, Transient, ValidationError
from rapport.journeys import gate
from rapport.journeys.machine import (
    Assign,
    CallWebhook,
    Command,
    Enrollment,
    Enter,
    Incoming,
    Send,
    Status,
    Tick,
    UpdateTrait,
    step,
)
from rapport.journeys.machine import enroll as new_enrollment
from rapport.journeys.model import HOLDOUT, Journey
from rapport.rules import EvalContext
from rapport.storage.base import Conn, Database, Row
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import journeys as sql
from rapport.templates.render import Parts, TemplateContext, render
from rapport.types import HOUR, MINUTE, SECOND, Json, Millis

log = logging.getLogger("rapport.journeys")

SEGMENT_ENTERED: Final = "Segment Entered"
SEGMENT_EXITED: Final = "Segment Exited"
"""The events segment membership changes emit; their ``segment`` property names the segment."""
SEND_LEASE_MS: Final[Millis] = 5 * MINUTE
"""How long a dispatcher holds a send it handed to a channel; after that another one may send it again
(with the same idempotency key). Longer than any channel's timeout and retries."""
TIMER_RETRY_MS: Final[Millis] = MINUTE
"""How long a timer whose enrollment failed to step is left alone before the next try."""
RETRY_BASE_MS: Final[Millis] = 30 * SECOND
RETRY_MAX_MS: Final[Millis] = HOUR
MAX_ATTEMPTS: Final = 8
"""Channel attempts before a transiently failing send is given up (about two hours with the backoff)."""

JourneyLookup: TypeAlias = Callable[[str, str, int], Journey | None]
"""(workspace, journey name, version) -> that published version, or ``None`` when it is unknown."""
FactsFn: TypeAlias = Callable[[Conn, str, str, Millis], EvalContext]
"""(conn, workspace, profile, now) -> the profile's facts, for journeys that branch after a wait."""
TraitFn: TypeAlias = Callable[[Conn, str, str, str, Json, Millis], None]
"""(conn, workspace, profile, trait, value, at): carry out an ``update_trait`` step."""
SplitHook: TypeAlias = Callable[[Conn, str, str, str, str, bool, str, Millis], None]
"""(conn, workspace, journey, split step id, path, held out by the split, enrollment's profile, at)."""


@dataclass(frozen=True, slots=True)
class Recipient:
    """How to reach a person on one channel, and what their messages may say about them."""

    to: str
    traits: Mapping[str, Json] = field(default_factory=dict)
    computed: Mapping[str, Json] = field(default_factory=dict)
    segments: tuple[str, ...] = ()
    unsubscribe_url: str | None = None
    instrument: Callable[[str, str], str] | None = None
    """(html, idempotency key) -> the html with open and click tracking, for a person who allows it."""


RecipientFn: TypeAlias = Callable[[Conn, str, str, str, str | None], Recipient | None]
"""(conn, workspace, profile, channel, the message's subscription group or ``None``) -> the recipient (whose
unsubscribe link leaves that group), or ``None`` when the person has no address there."""


@dataclass(frozen=True, slots=True)
class PendingSend:
    """A row of the send log that dispatch is about to act on."""

    workspace_id: str
    idempotency_key: str
    enrollment_id: str
    journey: str
    version: int
    step_id: str
    kind: str
    channel: str
    template: str | None
    tags: frozenset[str]
    profile_id: str
    attempts: int
    created_at: Millis
    in_doubt: str | None = None
    """The worker that was handed this send and died before recording what its channel answered: the message
    may have been delivered (a retry goes out with the same idempotency key)."""


@dataclass(slots=True)
class _Writes:
    """What stepping enrollments stores, gathered so that a batch of them is written in a few statements."""

    enrollments: list[tuple[str, str, str, str, int]] = field(default_factory=list)
    """(enrollment id, state, status, assignments, updated at)"""
    timers: list[tuple[str, int | None]] = field(default_factory=list)
    sends: list[tuple[object, ...]] = field(default_factory=list)

    def flush(self, conn: Conn, ws: str) -> None:
        if self.enrollments:
            sql.update_enrollments(conn, ws, self.enrollments)
        if self.timers:
            sql.set_timers(conn, ws, self.timers)
        if self.sends:
            sql.insert_sends(conn, ws, self.sends)


GateHook: TypeAlias = Callable[[Conn, PendingSend, gate.GateInput], gate.GateInput]
"""Completes the engine's gate input (consent, time zone, priority, tags, quiet hours) with what the
workspace configures elsewhere: unsubscribes, suppressions, suppression rules, frequency caps, claims."""


@dataclass(frozen=True, slots=True)
class EventResult:
    """What one event did: enrollments it started and existing enrollments it stepped."""

    entered: tuple[str, ...] = ()
    stepped: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DispatchResult:
    """How many sends ended in each status in one ``dispatch`` call."""

    counts: Mapping[str, int] = field(default_factory=dict)

    def __getitem__(self, status: str) -> int:
        return self.counts.get(status, 0)


def journeys_of(journeys: Sequence[Journey]) -> JourneyLookup:
    """A lookup over fixed journey versions, the same in every workspace (simulations and tests)."""
    by_key = {(j.name, j.version): j for j in journeys}
    return lambda _ws, name, version: by_key.get((name, version))


def encode_state(state: Enrollment) -> str:
    """The enrollment as stored JSON; ``decode_state`` reads it back unchanged."""
    return orjson.dumps({
        "id": state.id, "profile_id": state.profile_id, "journey": state.journey, "version": state.version,
        "status": state.status, "step_id": state.step_id, "waiting_until": state.waiting_until,
        "entered_at": state.entered_at, "finished_at": state.finished_at,
        "entry_properties": dict(state.entry_properties), "timezone": state.timezone,
        "sent": sorted(state.sent), "reason": state.reason,
    }).decode()


def decode_state(text: str | bytes) -> Enrollment:
    data = orjson.loads(text)
    return Enrollment(
        id=data["id"], profile_id=data["profile_id"], journey=data["journey"], version=int(data["version"]),
        status=cast(Status, data["status"]), step_id=data["step_id"], waiting_until=data["waiting_until"],
        entered_at=data["entered_at"], finished_at=data["finished_at"],
        entry_properties=MappingProxyType(dict(data["entry_properties"])), timezone=data["timezone"],
        sent=frozenset(data["sent"]), reason=data["reason"],
    )


def entry_matches(journey: Journey, name: str, properties: Mapping[str, Json]) -> bool:
    """Whether event ``name`` with ``properties`` enrolls a profile in ``journey``."""
    entry = journey.entry
    if entry.kind == "event":
        return name == entry.name
    if entry.kind in ("segment_entered", "segment_exited"):
        wanted = SEGMENT_ENTERED if entry.kind == "segment_entered" else SEGMENT_EXITED
        return name == wanted and properties.get("segment") == entry.name
    return False


def backoff(attempts: int) -> Millis:
    """The wait before attempt ``attempts + 1`` of a transiently failing send: doubling, capped."""
    return min(RETRY_MAX_MS, RETRY_BASE_MS << max(0, min(attempts - 1, 20)))


class JourneyEngine:
    """Stores enrollments and executes the machine's commands; see the module docstring for the guarantees.

    ``journeys`` resolves an enrollment's version; ``templates`` maps template names to their Liquid parts;
    ``recipient`` gives the address and template data of a person on a channel. Without ``facts``, a
    journey that branches after a wait cannot be stepped by ``run_due`` (its timers are retried later and
    the error logged). Without ``update_trait``, ``update_trait`` steps are logged and skipped.

    Consent: entering needs the journey's purpose; each message needs its channel's purpose (the catalog
    purpose whose ``channel`` is the channel's name, or ``channel_purposes[name]``), so a marketing journey's
    push needs ``marketing_push``. A journey whose purpose needs no consent (``necessary``, transactional
    messages) sends under its own purpose.
    """

    def __init__(
        self,
        db: Database,
        clock: Clock,
        channels: Mapping[str, Channel],
        *,
        journeys: JourneyLookup,
        templates: Mapping[str, Parts],
        recipient: RecipientFn,
        catalog: Catalog | None = None,
        facts: FactsFn | None = None,
        gate_input: GateHook | None = None,
        update_trait: TraitFn | None = None,
        channel_purposes: Mapping[str, str] | None = None,
        owner: str | None = None,
        send_lease_ms: Millis = SEND_LEASE_MS,
        split_exposure: SplitHook | None = None,
    ) -> None:
        self.split_exposure = split_exposure
        """Called when an enrollment passes a split: records the exposure of the Experiment measuring it."""
        self.db = db
        self.clock = clock
        self.channels = channels
        self.journeys = journeys
        self.templates = templates
        self.recipient = recipient
        self.catalog = catalog or Catalog.default()
        self.facts = facts
        self.gate_input = gate_input
        self.update_trait = update_trait
        self.channel_purposes = channel_purposes or {}
        self.owner = owner or clock.new_id("worker")
        self.send_lease_ms = send_lease_ms

    # --- entering and events (inside the caller's transaction) -------------------------------------------

    def enroll(self, conn: Conn, ws: str, journey: Journey, profile_id: str, properties: Mapping[str, Json],
               at: Millis, *, facts: EvalContext | None = None, timezone: str = "UTC") -> str | None:
        """Enroll ``profile_id`` in ``journey`` for an entry trigger at ``at``; the new enrollment's id, or
        ``None`` when the person has no consent for the journey's purpose at ``at`` (DESIGN 4.7: journeys are
        gated at entry as well as at every send), or the re-entry policy or an active enrollment in the
        journey keeps the profile out."""
        now = self.clock.now_ms()
        active = sql.is_active(conn, ws, journey.name, profile_id)
        if not journey.reentry.allows(sql.last_entered(conn, ws, journey.name, profile_id), active, at):
            return None
        purpose = self.catalog.purposes.get(journey.purpose)
        if purpose is None:  # deny by default; an event must not fail because a journey is misconfigured
            log.error("journey %r needs purpose %r, which the consent catalog lacks; nobody enters it",
                      journey.name, journey.purpose)
            return None
        entries = [consent_sql.ledger_entry(r) for r in consent_sql.entries(conn, ws, [profile_id])]
        if not may_use(entries, purpose, at).allowed:
            return None
        enrollment_id = self.clock.new_id("enr")
        pending = new_enrollment(journey, enrollment_id, profile_id)
        state, commands = step(journey, pending, Enter(properties, at, facts, timezone), max(now, at))
        assert state.entered_at is not None
        inserted = sql.insert_enrollment(conn, ws, (
            enrollment_id, journey.name, journey.version, profile_id, encode_state(state), "active", "{}",
            state.entered_at, now))
        if not inserted:
            return None
        sql.record_entry(conn, ws, journey.name, profile_id, at)
        self._apply(conn, ws, journey, state, commands, now, {})
        return enrollment_id

    def on_event(self, conn: Conn, ws: str, journeys: Sequence[Journey], profile_id: str, name: str,
                 properties: Mapping[str, Json], ctx: EvalContext, at: Millis, *,
                 timezone: str = "UTC") -> EventResult:
        """Feed event ``name`` of ``profile_id`` (at ``at``; ``ctx`` its facts with the event included) to the
        profile's enrollments (goal, ``exit_when``, ``wait_for``), then enroll it in the published
        ``journeys`` the event enters (``timezone``, the person's, places its quiet hours and delays until a
        time of day). An event that enrolls is not also fed to the new enrollment."""
        published = {(j.name, j.version): j for j in journeys}
        rows = list(sql.active_of(conn, ws, profile_id))
        seen = {str(r[0]) for r in rows}
        for journey in journeys:
            goal = journey.goal
            if goal is not None and goal.event == name:
                rows += [r for r in sql.finished_since(conn, ws, profile_id, journey.name, at - goal.within_ms)
                         if str(r[0]) not in seen]
        stepped: list[str] = []
        incoming = Incoming(name, properties, ctx)
        for row in rows:
            enrollment_id, journey_name, version = str(row[0]), str(row[1]), int(row[2])
            current = published.get((journey_name, version)) or self.journeys(ws, journey_name, version)
            if current is None:
                log.error("enrollment %s is on unknown journey %r version %d; event %r ignored for it",
                          enrollment_id, journey_name, version, name)
                continue
            before = decode_state(row[4])
            state, commands = step(current, before, incoming, at)
            if state != before or commands:
                self._apply(conn, ws, current, state, commands, at, orjson.loads(row[6]))
                stepped.append(enrollment_id)
        entered: list[str] = []
        for journey in journeys:
            if entry_matches(journey, name, properties):
                new = self.enroll(conn, ws, journey, profile_id, properties, at, facts=ctx, timezone=timezone)
                if new is not None:
                    entered.append(new)
        return EventResult(tuple(entered), tuple(stepped))

    # --- timers -------------------------------------------------------------------------------------------

    def run_due(self, limit: int = 500, *, ws: str | None = None) -> list[str]:
        """Step every enrollment whose timer is due (at most ``limit``; of workspace ``ws``, or of all), each
        in a savepoint of one transaction that also stores its new state, timer and sends; returns the
        enrollment ids stepped."""
        return self.db.write(lambda conn: self._run_due(conn, limit, ws))

    def _run_due(self, conn: Conn, limit: int, only: str | None) -> list[str]:
        now = self.clock.now_ms()
        done: list[str] = []
        due: dict[str, list[str]] = {}
        for ws, enrollment_id, _due in sql.due_timers(conn, now, limit, only):
            due.setdefault(ws, []).append(enrollment_id)
        for ws, ids in due.items():
            claimed = {str(r[0]): r for r in sql.claim_enrollments(conn, ws, ids)}
            writes = _Writes()
            for enrollment_id in ids:
                row = claimed.get(enrollment_id)
                if row is not None and row[5] != "active":
                    writes.timers.append((enrollment_id, None))  # it finished since the timer was set
                    done.append(enrollment_id)
                    continue
                if row is not None:
                    try:
                        stepped = self._step_alone(ws, row, now)
                    except Exception:
                        self._failed_tick(conn, ws, enrollment_id, now)
                        continue
                    if stepped is not None:
                        journey, state, commands = stepped
                        self._apply(conn, ws, journey, state, commands, now, orjson.loads(row[6]), writes)
                        done.append(enrollment_id)
                        continue
                # Gone, held by an event being stored (PostgreSQL), or its step reads or writes the profile:
                # stepped on its own, in a savepoint.
                conn.execute("SAVEPOINT journey_tick")
                try:
                    if self._tick(conn, ws, enrollment_id, now):
                        done.append(enrollment_id)
                except Exception:
                    conn.execute("ROLLBACK TO SAVEPOINT journey_tick")
                    self._failed_tick(conn, ws, enrollment_id, now)
                conn.execute("RELEASE SAVEPOINT journey_tick")
            writes.flush(conn, ws)
        return done

    def _step_alone(self, ws: str, row: Row, now: Millis) -> tuple[Journey, Enrollment, Sequence[Command]] | None:
        """Step a claimed active enrollment by its timer without touching storage; ``None`` when its step needs
        the profile's facts or updates a trait (``_tick`` steps those)."""
        journey = self._journey(ws, str(row[1]), int(row[2]))
        if journey.reads_facts:
            return None
        state, commands = step(journey, decode_state(row[4]), Tick(None), now)
        if any(isinstance(c, UpdateTrait) for c in commands):
            return None
        return journey, state, commands

    def _failed_tick(self, conn: Conn, ws: str, enrollment_id: str, now: Millis) -> None:
        log.exception("enrollment %s of workspace %s failed to step; retried in %d ms",
                      enrollment_id, ws, TIMER_RETRY_MS)
        sql.lease_timer(conn, ws, enrollment_id, now + TIMER_RETRY_MS, self.owner)

    def _tick(self, conn: Conn, ws: str, enrollment_id: str, now: Millis) -> bool:
        """Step one enrollment whose timer is due; ``False`` when an event being stored holds it (its timer
        stays due for the next round)."""
        if sql.enrollment(conn, ws, enrollment_id) is None:
            sql.set_timer(conn, ws, enrollment_id, None)
            return True
        row = sql.claim_enrollment(conn, ws, enrollment_id)
        if row is None:
            return False
        if row[5] != "active":
            sql.set_timer(conn, ws, enrollment_id, None)  # it finished since the timer was set
            return True
        journey = self._journey(ws, str(row[1]), int(row[2]))
        facts = None
        if journey.reads_facts:
            if self.facts is None:
                raise ValueError(f"journey {journey.name!r} branches on the profile's facts; the engine needs a "
                                 "facts function to step it")
            facts = self.facts(conn, ws, str(row[3]), now)
        state, commands = step(journey, decode_state(row[4]), Tick(facts), now)
        self._apply(conn, ws, journey, state, commands, now, orjson.loads(row[6]))
        return True

    def _journey(self, ws: str, name: str, version: int) -> Journey:
        journey = self.journeys(ws, name, version)
        if journey is None:
            raise LookupError(f"journey {name!r} version {version} of workspace {ws!r} is not known to the engine")
        return journey

    def _apply(self, conn: Conn, ws: str, journey: Journey, state: Enrollment, commands: Sequence[Command],
               now: Millis, assignments: dict[str, str], writes: _Writes | None = None) -> None:
        """Store ``state`` with its timer, record its sends and split assignments, update traits; with
        ``writes``, the rows are added there for the caller to write with others'."""
        now_writes = writes is None
        writes = writes if writes is not None else _Writes()
        for command in commands:
            if isinstance(command, Send | CallWebhook):
                kind, template, tags = (("send", command.template, command.tags) if isinstance(command, Send)
                                        else ("webhook", None, ()))
                writes.sends.append((command.idempotency_key, state.id, journey.name, journey.version,
                                     command.step_id, kind, command.channel, template,
                                     orjson.dumps(sorted(tags)).decode(), state.profile_id, now, now))
            elif isinstance(command, Assign):
                assignments[command.split] = command.path
                if self.split_exposure is not None:
                    self.split_exposure(conn, ws, journey.name, command.split, command.path,
                                        command.path == HOLDOUT, state.profile_id, now)
            elif isinstance(command, UpdateTrait):
                if self.update_trait is None:
                    log.warning("journey %r step %s sets trait %r but the engine has no trait writer; skipped",
                                journey.name, command.step_id, command.name)
                else:
                    self.update_trait(conn, ws, state.profile_id, command.name, command.value, now)
        writes.enrollments.append((state.id, encode_state(state), state.status, orjson.dumps(assignments).decode(),
                                   now))
        writes.timers.append((state.id, state.waiting_until if state.status == "active" else None))
        if now_writes:
            writes.flush(conn, ws)

    # --- sending ------------------------------------------------------------------------------------------

    async def dispatch(self, limit: int = 200, *, ws: str | None = None) -> DispatchResult:
        """Act on up to ``limit`` due sends (of workspace ``ws``, or of all): gate, render, lease and hand them
        to their channels at once, then mark each one. Returns how many ended in each status (``sent``,
        ``scheduled`` for a retry or a deferral, ``held``, ``refused``, ``failed``)."""
        counts: dict[str, int] = {}
        ready = await asyncio.to_thread(self.db.write, lambda conn: self._claim(conn, limit, ws, counts))
        if not ready:
            return DispatchResult(MappingProxyType(counts))
        # Group commit of the answers: while one commit of marks runs, the answers arriving meanwhile wait
        # for the next, so a send is recorded about one commit after its channel answered.
        answered: list[tuple[PendingSend, Message, Receipt | Transient | Terminal]] = []
        committing: asyncio.Task[None] | None = None

        async def commit() -> None:
            while answered:
                batch = answered[:]
                answered.clear()
                await asyncio.to_thread(self.db.write, lambda conn, batch=batch: self._mark(conn, batch, counts))

        for done in asyncio.as_completed([self._send(send, message) for send, message in ready]):
            answered.append(await done)
            if committing is None or committing.done():
                if committing is not None:
                    await committing  # surfaces a failed commit
                committing = asyncio.create_task(commit())
        if committing is not None:
            await committing
        await commit()
        return DispatchResult(MappingProxyType(counts))

    async def _send(self, send: PendingSend,
                    message: Message) -> tuple[PendingSend, Message, Receipt | Transient | Terminal]:
        try:
            return send, message, await self.channels[send.channel].send(message)
        except (Transient, Terminal) as exc:
            return send, message, exc
        except Exception as exc:  # an adapter bug must not strand the other sends of the batch
            log.exception("channel %r raised instead of classifying its failure", send.channel)
            return send, message, Transient(f"channel {send.channel!r} raised {type(exc).__name__}: {exc}")

    def _claim(self, conn: Conn, limit: int, ws: str | None,
               counts: dict[str, int]) -> list[tuple[PendingSend, Message]]:
        now = self.clock.now_ms()
        ready: list[tuple[PendingSend, Message]] = []
        sends = [_pending(row) for row in sql.due_sends(conn, now, limit, ws)]
        states: dict[tuple[str, str], Row] = {}
        consent: dict[tuple[str, str], list[LedgerEntry]] = {}
        for w in sorted({s.workspace_id for s in sends}):
            mine = [s for s in sends if s.workspace_id == w]
            rows = sql.enrollments_by_id(conn, w, sorted({s.enrollment_id for s in mine}))
            states.update(((w, key), row) for key, row in rows.items())
            for row in consent_sql.entries(conn, w, sorted({s.profile_id for s in mine})):
                consent.setdefault((w, str(row[2])), []).append(consent_sql.ledger_entry(row))
        leases: list[tuple[str, str, int]] = []
        outcomes: list[tuple[PendingSend, tuple[str, str, str, Millis | None]]] = []
        # Preparing only reads, so one savepoint serves the batch: rolling back to it after a failure keeps
        # a failed statement from aborting the transaction (PostgreSQL) and undoes nothing else.
        conn.execute("SAVEPOINT journey_prepare")
        for send in sends:
            try:
                outcome = self._prepare(conn, send, now, states.get((send.workspace_id, send.enrollment_id)),
                                        consent.get((send.workspace_id, send.profile_id), []))
            except Exception:
                conn.execute("ROLLBACK TO SAVEPOINT journey_prepare")
                log.exception("send %s of workspace %s could not be prepared; retried in %d ms",
                              send.idempotency_key, send.workspace_id, TIMER_RETRY_MS)
                leases.append((send.workspace_id, send.idempotency_key, now + TIMER_RETRY_MS))
                continue
            if isinstance(outcome, Message):
                leases.append((send.workspace_id, send.idempotency_key, now + self.send_lease_ms))
                ready.append((send, outcome))
            else:
                outcomes.append((send, outcome))
        conn.execute("RELEASE SAVEPOINT journey_prepare")
        for send, (status, reason, detail, due) in outcomes:
            if send.in_doubt is not None and status in ("refused", "failed"):
                detail += (f" (an earlier attempt, handed to worker {send.in_doubt} which stopped before recording"
                           " the channel's answer, may have been delivered)")
            sql.mark(conn, send.workspace_id, send.idempotency_key, status, reason, detail, due)
            counts[status] = counts.get(status, 0) + 1
        if leases:
            sql.lease_sends(conn, leases, self.owner)
        return ready

    def _prepare(self, conn: Conn, send: PendingSend, now: Millis, row: Row | None,
                 entries: list[LedgerEntry]) -> Message | tuple[str, str, str, Millis | None]:
        """The message to hand to the channel, or the (status, reason, detail, due) the send gets instead;
        ``row`` is the send's enrollment and ``entries`` the person's consent ledger."""
        ws = send.workspace_id
        journey = self.journeys(ws, send.journey, send.version)
        if journey is None:  # a lookup lagging a publish: look again later
            return "scheduled", "unknown_journey", f"journey {send.journey!r} version {send.version} is not known " \
                f"to this worker; retried in {TIMER_RETRY_MS} ms", now + TIMER_RETRY_MS
        if send.channel not in self.channels:
            return "failed", "unknown_channel", f"channel {send.channel!r} is not configured; expected one of " \
                f"{', '.join(map(repr, sorted(self.channels))) or 'none'}", None
        state = decode_state(row[4]) if row is not None else None
        try:
            purpose = self.message_purpose(journey.purpose, send.channel)
        except ValidationError as exc:
            return "failed", "unknown_purpose", str(exc), None
        checked = self._gate_input(conn, send, journey, purpose, state, entries, now)
        decision = gate.decide(checked)
        if decision.outcome in ("refuse", "drop"):
            return "refused", decision.reason or decision.outcome, decision.detail, None
        if decision.outcome == "hold":
            return "held", decision.reason or "hold", decision.detail, decision.until
        if decision.outcome == "defer":
            return "scheduled", decision.reason or "defer", decision.detail, decision.until
        recipient = self.recipient(conn, ws, send.profile_id, send.channel, checked.subscription_group)
        if recipient is None:
            return "refused", "no_address", f"the person has no address for channel {send.channel!r}", None
        event = dict(state.entry_properties) if state is not None else {}
        if send.template is None:
            data: dict[str, Json] = {"journey": send.journey, "step": send.step_id, "profile_id": send.profile_id,
                                     "event": event}
            return Message(send.idempotency_key, recipient.to, data=data)
        parts = self.templates.get(send.template)
        if parts is None:
            return "failed", "unknown_template", f"template {send.template!r} is not known", None
        consent = {name: d.allowed for name, d in current_state(entries, self.catalog, now).items()}
        context = TemplateContext(recipient.traits, recipient.computed, event, consent, recipient.segments,
                                  recipient.unsubscribe_url or "")
        try:
            out = render(parts, context, strict=False)
            return _message(send.idempotency_key, recipient, out)
        except ValidationError as exc:
            return "failed", exc.code or "template_error", str(exc), None

    def message_purpose(self, journey_purpose: str, channel: str) -> Purpose:
        """The purpose a message of a journey with ``journey_purpose`` on ``channel`` needs consent for;
        raises ``ValidationError`` for a purpose the catalog lacks."""
        own = self.catalog.get(journey_purpose)
        if not own.needs_consent:
            return own
        name = self.channel_purposes.get(channel) or next(
            (p.name for p in self.catalog.purposes.values() if p.channel == channel), None)
        return own if name is None else self.catalog.get(name)

    def _gate_input(self, conn: Conn, send: PendingSend, journey: Journey, purpose: Purpose,
                    state: Enrollment | None, entries: list[LedgerEntry], now: Millis) -> gate.GateInput:
        quiet = journey.quiet_hours
        base = gate.GateInput(
            at=now, journey=journey.name, channel=send.channel, purpose=purpose,
            consent=entries, time_zone=state.timezone if state is not None else "UTC", priority=journey.priority,
            tags=send.tags,
            quiet=None if quiet is None else gate.QuietHours(quiet.start, quiet.end, quiet.action))
        return base if self.gate_input is None else self.gate_input(conn, send, base)

    def _mark(self, conn: Conn, answered: Sequence[tuple[PendingSend, Message, Receipt | Transient | Terminal]],
              counts: dict[str, int]) -> None:
        now = self.clock.now_ms()
        sent: list[tuple[str, str, str, str]] = []
        for send, _message, result in answered:
            ws, key = send.workspace_id, send.idempotency_key
            attempts = send.attempts + 1
            if isinstance(result, Receipt):
                detail = result.detail
                if send.in_doubt is not None:
                    detail += (f"{'; ' if detail else ''}sent again with the same idempotency key after worker "
                               f"{send.in_doubt} stopped before recording an earlier attempt")
                sent.append((ws, key, result.provider_id, detail))
                status = "sent"
            elif isinstance(result, Transient) and attempts < MAX_ATTEMPTS:
                sql.mark(conn, ws, key, "scheduled", "transient", str(result), now + backoff(attempts), self.owner)
                status = "scheduled"
            else:
                reason = "retries_exhausted" if isinstance(result, Transient) else "provider_refused"
                sql.mark(conn, ws, key, "failed", reason, str(result), None, self.owner)
                status = "failed"
            counts[status] = counts.get(status, 0) + 1
        if sent:
            sql.mark_sent(conn, sent, now)

    def next_due(self) -> Millis | None:
        """When ``run_due`` or ``dispatch`` next has work, for a worker deciding how long to sleep."""
        return self.db.read(sql.next_due)

    # --- reading ------------------------------------------------------------------------------------------

    def enrollments(self, ws: str, profile_id: str) -> list[Enrollment]:
        """The profile's enrollments, oldest first."""
        return [decode_state(r[4]) for r in self.db.read(lambda c: sql.enrollments_of(c, ws, profile_id))]


def _pending(row: Row) -> PendingSend:
    (ws, key, enrollment_id, journey, version, step_id, kind, channel, template, tags, profile_id, _status,
     _reason, _detail, attempts, created_at, _due, _sent_at, _provider, lease_owner) = row
    return PendingSend(str(ws), str(key), str(enrollment_id), str(journey), int(version), str(step_id), str(kind),
                       str(channel), None if template is None else str(template), frozenset(orjson.loads(tags)),
                       str(profile_id), int(attempts), int(created_at),
                       None if lease_owner is None else str(lease_owner))


def _message(key: str, recipient: Recipient, out: Mapping[str, object]) -> Message:
    """The channel message of rendered template parts: ``title`` stands in for ``subject`` and ``body`` for
    ``text`` (push and in-app templates)."""
    def text(*names: str) -> str | None:
        for name in names:
            value = out.get(name)
            if isinstance(value, str):
                return value
        return None

    data = out.get("data")
    html = text("html")
    if html is not None and recipient.instrument is not None:
        html = recipient.instrument(html, key)
    return Message(key, recipient.to, subject=text("subject", "title"), text=text("text", "body"),
                   html=html, data=dict(data) if isinstance(data, Mapping) else {},
                   unsubscribe_url=recipient.unsubscribe_url)


__all__ = [
    "SEGMENT_ENTERED",
    "SEGMENT_EXITED",
    "DispatchResult",
    "EventResult",
    "JourneyEngine",
    "PendingSend",
    "Recipient",
    "backoff",
    "decode_state",
    "encode_state",
    "entry_matches",
    "journeys_of",
]
