"""The send gate's suppression rules and subscription groups for one message about to go out.

``checks`` picks the workspace's ``SuppressionRule`` resources that concern a message (``applies_to``) and
hands them to the gate as ``SuppressionCheck`` callables, so a rule is only evaluated when every earlier
check (consent, subscriptions, bounces) let the message through. A rule reads the person's profile like a
segment rule (traits, computed traits, consent, segments), ``event.<property>`` and ``message.<property>``
from the event that started the message's journey, and answers its event functions from that one person's
stored events, so ``where=`` may compare each event with the message
(``where=event.product_id == message.product_id``), which no precomputed series could hold. Every stored
event counts, with or without analytics consent: a suppression rule can only withhold a message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rapport.journeys import gate
from rapport.journeys.engine import decode_state
from rapport.journeys.model import Journey, SendStep
from rapport.profiles.computed import Bucket, bucket_of, property_value
from rapport.profiles.service import ProfileReader
from rapport.resources.builtin.suppression_rule import SuppressionRuleDef
from rapport.rules import DictContext, EventFn, Path, evaluate, event_functions, paths, segments, to_text
from rapport.segments import stored
from rapport.segments.functions import function_value
from rapport.storage.base import Conn
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import journeys as journeys_sql
from rapport.storage.sql.events import INTERNAL_PREFIX
from rapport.types import Json, Millis
from rapport.workspaces.keys import Keyring
from rapport.workspaces.runtime import WorkspaceRuntime

ANY_EVENT = "*"


def message_group(journey: Journey | None, step_id: str) -> str | None:
    """The subscription group of the message a journey's step sends: the step's own, else the journey's."""
    if journey is None:
        return None
    step = journey.by_id.get(step_id)
    own = step.subscription_group if isinstance(step, SendStep) else None
    return own or journey.subscription_group


def entry_properties(conn: Conn, ws: str, enrollment_id: str) -> Mapping[str, Json]:
    """The properties of the event that started an enrollment: what its messages are about."""
    row = journeys_sql.enrollment(conn, ws, enrollment_id)
    return decode_state(row[4]).entry_properties if row is not None else {}


def concerned(rt: WorkspaceRuntime, journey: str, channel: str, tags: frozenset[str]) -> list[SuppressionRuleDef]:
    """The workspace's suppression rules that apply to a message of ``journey`` on ``channel`` with ``tags``."""
    return [r for r in rt.suppression_rules if r.applies_to.matches(journey, channel, tags)]


def checks(conn: Conn, rt: WorkspaceRuntime, keyring: Keyring, profile_id: str, rules: Sequence[SuppressionRuleDef],
           message: Mapping[str, Json], at: Millis) -> list[gate.SuppressionCheck]:
    """The gate's checks for ``rules`` about a message to ``profile_id`` at ``at`` whose entry event had
    ``message`` as properties; they share one lazily loaded view of the person."""
    if not rules:
        return []
    facts = MessageFacts(conn, rt, keyring, profile_id, message, at, _needs(rules, rt), _horizons(rules, at))
    return [gate.SuppressionCheck(rule.name, _verdict(rule, facts), _detail(rule, message)) for rule in rules]


def _verdict(rule: SuppressionRuleDef, facts: MessageFacts) -> Callable[[], bool]:
    return lambda: evaluate(rule.rule, facts)


def _detail(rule: SuppressionRuleDef, message: Mapping[str, Json]) -> str:
    """What the refusal log says: the rule, and the message values it compared."""
    read = sorted({p for p in _all_paths(rule) if p.root in ("message", "event")}, key=to_text)
    shown = []
    for path in read:
        found, value = DictContext({path.root: message}).lookup(path)
        shown.append(f"{to_text(path)} = {value!r}" if found else f"{to_text(path)} missing")
    where = f" for {', '.join(shown)}" if shown else ""
    return f"suppression rule {rule.name!r} holds{where}: {rule.text}"


def _all_paths(rule: SuppressionRuleDef) -> set[Path]:
    """The paths of the rule, those inside ``where=`` included."""
    found = set(paths(rule.rule))
    for fn in event_functions(rule.rule):
        if fn.where is not None:
            found |= paths(fn.where)
    return found


def _needs(rules: Sequence[SuppressionRuleDef], rt: WorkspaceRuntime) -> stored.Needs:
    """What the rules read of the stored profile: event functions are answered from events, not series."""
    traits: set[str] = set()
    series: set[str] = set()
    distinct: set[str] = set()
    consent = False
    members: set[str] = set()
    for rule in rules:
        wanted = stored.needs(rule.rule, rt)
        traits |= wanted.traits
        distinct |= wanted.distinct
        consent = consent or wanted.consent
        members |= segments(rule.rule)
        for path in paths(rule.rule):
            defn = rt.traits.get(path.parts[0]) if path.root == "computed" and path.parts else None
            if defn is not None:
                series.update(s.id for s in defn.all_series())
    return stored.Needs(frozenset(traits), frozenset(series), frozenset(distinct), consent, frozenset(members))


def _horizons(rules: Sequence[SuppressionRuleDef], at: Millis) -> dict[str | None, Millis | None]:
    """Per event name the rules count, the time before which no event of that name counts (``None``: all time)."""
    out: dict[str | None, Millis | None] = {}
    for rule in rules:
        for fn in event_functions(rule.rule):
            name = None if fn.event == ANY_EVENT else fn.event
            start = None if fn.within_ms is None else at - fn.within_ms - 1000
            if name not in out:
                out[name] = start
            else:
                prior = out[name]
                out[name] = None if prior is None or start is None else min(prior, start)
    return out


@dataclass(slots=True)
class MessageFacts:
    """The ``EvalContext`` of a suppression rule: one person at ``now_ms`` and the message being sent."""

    conn: Conn
    rt: WorkspaceRuntime
    keyring: Keyring
    profile_id: str
    message: Mapping[str, Json]
    now_ms: Millis
    needs: stored.Needs
    horizons: Mapping[str | None, Millis | None] = field(default_factory=dict)
    """Per event name, the instant after which its events may count (``_horizons``)."""
    _profile: stored.StoredContext | None = None
    _events: dict[str | None, list[tuple[int, int, Mapping[str, Json]]]] = field(default_factory=dict)
    _values: dict[EventFn, object | None] = field(default_factory=dict)

    def _stored(self) -> stored.StoredContext:
        if self._profile is None:
            data = stored.load(self.conn, self.rt, self.needs, [self.profile_id])[self.profile_id]
            self._profile = stored.StoredContext(self.rt, data, self.now_ms)
        return self._profile

    def lookup(self, path: Path) -> tuple[bool, object]:
        if path.root in ("message", "event"):
            return DictContext({path.root: self.message}).lookup(path)
        return self._stored().lookup(path)

    def in_segment(self, name: str) -> bool:
        return self._stored().in_segment(name)

    def event_function(self, fn: EventFn) -> object | None:
        if fn not in self._values:
            self._values[fn] = function_value(fn, self._buckets(fn), self.now_ms)
        return self._values[fn]

    def _buckets(self, fn: EventFn) -> list[Bucket]:
        """The person's events ``fn`` counts, folded into per-second buckets as series keep them."""
        out: dict[int, Bucket] = {}
        for seq, ts, properties in self._named(None if fn.event == ANY_EVENT else fn.event):
            if fn.within_ms is not None and bucket_of(ts) <= self.now_ms - fn.within_ms:
                continue
            if fn.where is not None and not evaluate(fn.where, DictContext(
                    {"event": properties, "message": self.message}, ts)):
                continue
            found, value = property_value(properties, fn.property) if fn.property else (False, None)
            bucket = out.get(bucket_of(ts))
            if bucket is None:
                bucket = out[bucket_of(ts)] = Bucket(bucket_of(ts))
            bucket.add(ts, seq, value if found else None, fn.property is not None)
        return [out[b] for b in sorted(out)]

    def _named(self, name: str | None) -> list[tuple[int, int, Mapping[str, Json]]]:
        """(seq, ts, properties) of the person's events named ``name`` (every event for ``None``), decrypted."""
        hit = self._events.get(name)
        if hit is None:
            reader = ProfileReader(self.conn, self.rt, self.keyring)
            hit = []
            for row in events_sql.named_of_profile(self.conn, self.rt.id, self.profile_id, name,
                                                       self.horizons.get(name)):
                if str(row[1]).startswith(INTERNAL_PREFIX):
                    continue  # written by Rapport (segment changes), as no series counts them either
                message = reader.event_json(row)["message"]
                props = message.get("properties") if isinstance(message, dict) else None
                hit.append((int(row[0]), int(row[8]), props if isinstance(props, dict) else {}))
            self._events[name] = hit
        return hit
