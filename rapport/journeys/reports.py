"""Reading journeys for the API and the CLI: the catalog with enrollment and send counts, per-step
statistics with delivery feedback, enrollments, and each person's messages with the gate's reason for every
one that did not go out.

Feedback counts, per step and for the whole journey (``feedback_counts``, one SQL query per journey):

- ``sent``: messages the channel's peer accepted (the send log);
- ``delivered``, ``bounced`` (hard and soft), ``complained``: provider feedback matched to a send (the
  ``Email Delivered``/``Bounced``/``Complained`` events the feedback webhooks store with the send's journey and
  step);
- ``opened``, ``clicked``: messages opened, and messages with at least one tracked click (each message counts
  once however often it is opened or clicked), from the people who allow analytics;
- ``unsubscribed``: provider-reported unsubscribes matched to a send, plus one-click and link unsubscribes
  attributed to the last message the person was sent before unsubscribing, within ``ATTRIBUTION_MS``.

Rates: ``bounce_rate`` divides by ``sent``; ``open_rate``, ``click_rate`` (CTR), ``unsubscribe_rate`` and
``complaint_rate`` by the messages that did not bounce (``sent - bounced``), which is the delivered count
whether or not the provider reports deliveries. A rate with nothing to divide by is ``null``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING

from rapport.clock import seeded_rng, to_iso
from rapport.consent.model import LedgerEntry
from rapport.errors import NotFoundError, ValidationError
from rapport.journeys.engine import decode_state
from rapport.journeys.model import Journey, walk
from rapport.profiles.service import ProfileReader
from rapport.rules import DictContext
from rapport.storage.base import Conn, Row
from rapport.storage.sql import journeys as sql
from rapport.storage.sql import resources as resources_sql
from rapport.types import DAY, JsonObject, Millis, WorkspaceId

if TYPE_CHECKING:
    from rapport.core import Rapport

STATUSES = ("active", "completed", "exited")
SEND_STATUSES = ("sent", "scheduled", "held", "refused", "failed")
MAX_PAGE = 1000
FEEDBACK = ("sent", "delivered", "opened", "clicked", "bounced", "complained", "unsubscribed")
ATTRIBUTION_MS: Millis = 7 * DAY
"""How long after a message an unsubscribe through the person's link is counted against it."""
FEEDBACK_EVENTS = {"Email Delivered": "delivered", "Email Bounced": "bounced", "Email Complained": "complained",
                   "Email Unsubscribed": "unsubscribed"}
"""The events the feedback webhooks store for a matched send, and the count each one feeds."""
ENGAGEMENT = {"open": "opened", "click": "clicked"}
UNSUBSCRIBE_SOURCE = "unsubscribe_link"
"""The consent ledger source of the one-click and preference-link unsubscribes (``rapport.api.preferences``)."""
PROPERTY_SQL = {
    "sqlite": ("json_extract(body, '$.properties.journey')", "json_extract(body, '$.properties.step')"),
    "postgres": ("(body::jsonb #>> '{properties,journey}')", "(body::jsonb #>> '{properties,step}')"),
}
"""Per dialect, SQL reading the ``journey`` and ``step`` properties of a stored event's JSON body."""


def feedback_counts(conn: Conn, ws: str, journey: str, attribution_ms: Millis = ATTRIBUTION_MS) -> list[Row]:
    """(step_id, count name, n) of the journey's messages: sent, engagement, provider feedback and attributed
    unsubscribes (see the module docstring), in one aggregate query."""
    journey_prop, step_prop = PROPERTY_SQL[conn.dialect.name]
    names = list(FEEDBACK_EVENTS)
    marks = ",".join("?" * len(names))
    return conn.all(
        "SELECT step_id, 'sent', count(*) FROM journey_sends WHERE workspace_id = ? AND journey = ?"
        " AND status = 'sent' GROUP BY step_id"
        " UNION ALL"
        " SELECT s.step_id, g.kind, count(DISTINCT s.idempotency_key) FROM email_engagement g"
        " JOIN journey_sends s ON s.workspace_id = g.workspace_id AND s.idempotency_key = g.idempotency_key"
        " WHERE g.workspace_id = ? AND s.journey = ? GROUP BY s.step_id, g.kind"
        " UNION ALL"
        f" SELECT {step_prop}, name, count(*) FROM events WHERE workspace_id = ? AND name IN ({marks})"
        f" AND {journey_prop} = ? GROUP BY {step_prop}, name"
        " UNION ALL"
        " SELECT s.step_id, 'link_unsubscribed', count(*) FROM consent_ledger c"
        " JOIN journey_sends s ON s.workspace_id = c.workspace_id AND s.profile_id = c.profile_id"
        " WHERE c.workspace_id = ? AND c.source = ? AND c.state = 'withdrawn' AND s.journey = ?"
        " AND s.status = 'sent' AND s.sent_at <= c.recorded_at AND s.sent_at >= c.recorded_at - ?"
        " AND NOT EXISTS (SELECT 1 FROM journey_sends later WHERE later.workspace_id = c.workspace_id"
        " AND later.profile_id = c.profile_id AND later.status = 'sent' AND later.sent_at <= c.recorded_at"
        " AND (later.sent_at > s.sent_at OR (later.sent_at = s.sent_at AND later.idempotency_key > s.idempotency_key)))"
        " GROUP BY s.step_id",
        (ws, journey, ws, journey, ws, *names, journey, ws, UNSUBSCRIBE_SOURCE, journey, attribution_ms))


def feedback_stats(counts: dict[str, int]) -> JsonObject:
    """The counts (``FEEDBACK``) with their rates."""
    out: dict[str, int | float | None] = {name: counts.get(name, 0) for name in FEEDBACK}
    sent, bounced = counts.get("sent", 0), counts.get("bounced", 0)
    reached = max(sent - bounced, 0)

    def rate(name: str, base: int) -> float | None:
        return round(counts.get(name, 0) / base, 4) if base else None

    out.update({"open_rate": rate("opened", reached), "click_rate": rate("clicked", reached),
                "unsubscribe_rate": rate("unsubscribed", reached), "bounce_rate": rate("bounced", sent),
                "complaint_rate": rate("complained", reached)})
    return dict(out)


def _when(value: object) -> str | None:
    return None if value is None else to_iso(int(value))  # type: ignore[call-overload]


def describe_entry(journey: Journey) -> JsonObject:
    entry = journey.entry
    if entry.kind == "schedule":
        return {"schedule": {"every_ms": entry.every_ms} if entry.every_ms is not None
                else {"at": entry.at.strftime("%H:%M") if entry.at else None}}
    return {entry.kind: entry.name}


def message_json(row: tuple[object, ...]) -> JsonObject:
    """One row of the send log (``sql.SEND_COLUMNS``) as the API shows it."""
    (_ws, key, enrollment_id, journey, version, step_id, kind, channel, template, _tags, profile_id, status,
     reason, detail, attempts, created_at, due_at, sent_at, provider_id, _owner) = row
    return {"idempotency_key": key, "journey": journey, "version": version, "step": step_id, "kind": kind,
            "channel": channel, "template": template, "profile_id": profile_id, "enrollment_id": enrollment_id,
            "status": status, "reason": reason, "detail": detail or None, "attempts": attempts,
            "created_at": _when(created_at), "due_at": _when(due_at) if status in ("scheduled", "held") else None,
            "sent_at": _when(sent_at), "provider_id": provider_id}


def enrollment_json(row: tuple[object, ...]) -> JsonObject:
    state = decode_state(str(row[4]))
    return {"id": state.id, "journey": state.journey, "version": state.version, "profile_id": state.profile_id,
            "status": state.status, "step": state.step_id, "waiting_until": _when(state.waiting_until),
            "entered_at": _when(state.entered_at), "finished_at": _when(state.finished_at), "reason": state.reason}


class Journeys:
    """One workspace's journeys, read through a ``Rapport``."""

    def __init__(self, rapport: Rapport, ws: WorkspaceId) -> None:
        self.rapport, self.ws = rapport, ws
        self.rt = rapport.runtime(ws)

    def journey(self, name: str) -> Journey:
        found = self.rt.journeys.get(name)
        if found is None:
            known = ", ".join(sorted(self.rt.journeys)) or "none yet"
            raise NotFoundError(f"no journey {name!r} (known: {known})", code="journey_not_found")
        return found

    def catalog(self) -> list[JsonObject]:
        """Every published journey with its enrollments by status and its messages by status."""
        enrollments: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(STATUSES, 0))
        sends: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(SEND_STATUSES, 0))

        def read(conn: Conn) -> None:
            for journey, _version, status, n in sql.enrollment_counts(conn, self.ws):
                enrollments[str(journey)][str(status)] = enrollments[str(journey)].get(str(status), 0) + int(n)
            for journey, _step, _channel, status, _reason, n in sql.send_counts(conn, self.ws):
                sends[str(journey)][str(status)] = sends[str(journey)].get(str(status), 0) + int(n)

        self.rapport.db.read(read)
        return [{"name": j.name, "version": j.version, "purpose": j.purpose, "priority": j.priority,
                 "entry": describe_entry(j), "reentry": j.reentry.policy, "steps": len(j.by_id),
                 "enrollments": enrollments[j.name], "messages": sends[j.name]}
                for j in sorted(self.rt.journeys.values(), key=lambda j: j.name)]

    def detail(self, name: str) -> JsonObject:
        """One journey: its catalog entry, its published versions, and per step the messages by status and
        the refusal reasons, plus how many active enrollments wait at each step."""
        journey = self.journey(name)
        waiting: dict[str, int] = defaultdict(int)
        steps: dict[str, JsonObject] = {}
        for step in walk(journey.steps):
            steps[step.id] = {"id": step.id, "kind": type(step).__name__.removesuffix("Step").lower(),
                              "messages": dict.fromkeys(SEND_STATUSES, 0), "reasons": {}, "waiting": 0}

        def read(conn: Conn) -> list[Row]:
            for _j, step_id, _channel, status, reason, n in sql.send_counts(conn, self.ws, name):
                entry = steps.setdefault(str(step_id), {"id": str(step_id), "kind": "send", "reasons": {},
                                                        "messages": dict.fromkeys(SEND_STATUSES, 0), "waiting": 0})
                entry["messages"][str(status)] += int(n)
                if reason is not None and status in ("refused", "failed", "held", "scheduled"):
                    reasons = entry["reasons"]
                    reasons[str(reason)] = reasons.get(str(reason), 0) + int(n)
            after: str | None = None
            while True:
                page = sql.enrollments_in(conn, self.ws, name, "active", after, 1000)
                for row in page:
                    state = decode_state(str(row[4]))
                    if state.step_id is not None:
                        waiting[state.step_id] += 1
                if len(page) < 1000:
                    break
                after = str(page[-1][0])
            return resources_sql.history(conn, self.ws, "Journey", name)

        history = self.rapport.db.read(read)
        for step_id, n in waiting.items():
            if step_id in steps:
                steps[step_id]["waiting"] = n
        by_step, total = self.feedback(name)
        for step_id, entry in steps.items():
            if entry["kind"] == "send" or step_id in by_step:
                entry["feedback"] = feedback_stats(by_step.get(step_id, {}))
        [listed] = [j for j in self.catalog() if j["name"] == name]
        return {**listed, "versions": [{"version": int(r[0]), "applied_at": _when(r[5]), "actor": r[4],
                                        "deleted": bool(r[3])} for r in history],
                "feedback": feedback_stats(total), "step_stats": list(steps.values())}

    def feedback(self, name: str) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """The journey's feedback counts per step and in total (see the module docstring)."""
        rows = self.rapport.db.read(lambda conn: feedback_counts(conn, self.ws, name))
        by_step: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(FEEDBACK, 0))
        total = dict.fromkeys(FEEDBACK, 0)
        for step_id, kind, n in rows:
            if step_id is None:
                continue
            count = ENGAGEMENT.get(str(kind)) or FEEDBACK_EVENTS.get(str(kind)) or str(kind).removeprefix("link_")
            if count in total:
                by_step[str(step_id)][count] += int(n)
                total[count] += int(n)
        return dict(by_step), total

    def enrollments(self, name: str, status: str | None, cursor: str | None, limit: int) -> JsonObject:
        self.journey(name)
        if status is not None and status not in STATUSES:
            raise ValidationError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}",
                                  code="invalid_request")
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError(f"'limit' must be from 1 to {MAX_PAGE}", code="invalid_request")
        rows = self.rapport.db.read(lambda c: sql.enrollments_in(c, self.ws, name, status, cursor, limit + 1))
        page = rows[:limit]
        return {"enrollments": [enrollment_json(r) for r in page],
                "next": str(page[-1][0]) if len(rows) > limit else None}

    def messages(self, profile_id: str) -> JsonObject:
        """A person's messages, oldest first, each with its status and, when it did not go out, why."""
        def read(conn: Conn) -> JsonObject:
            reader = ProfileReader(conn, self.rt, self.rapport.keyring)
            pid = reader.live_id(profile_id)
            return {"profile_id": pid,
                    "messages": [message_json(r) for r in sql.sends_of(conn, self.ws, profile_id=pid)],
                    "enrollments": [enrollment_json(r) for r in sql.enrollments_of(conn, self.ws, pid)]}
        out: JsonObject = self.rapport.db.read(read)
        return out

    def simulate(self, name: str, *, profiles: Sequence[str] = (), sample: int = 100, synthetic: int = 0,
                 days: int = 30, seed: int = 7) -> JsonObject:
        """Walk stored profiles (``profiles``, or a seeded sample of ``sample`` live ones) and ``synthetic``
        profiles (no data, every purpose granted) through journey ``name`` on a simulated clock for ``days``;
        nothing is stored or sent."""
        from rapport.journeys import feed, simulate
        from rapport.journeys.service import channel_purposes, frequency_caps
        from rapport.segments import stored
        from rapport.storage.sql import consent as consent_sql
        from rapport.storage.sql import segments as segments_sql

        journey = self.journey(name)
        rt = self.rt
        start = self.rapport.clock.now_ms()

        def read(conn: Conn) -> list[simulate.Person]:
            reader = ProfileReader(conn, rt, self.rapport.keyring)
            ids = [reader.live_id(p) for p in profiles]
            if not ids and sample:
                everyone = segments_sql.live_profiles(conn, self.ws)
                ids = seeded_rng(seed).sample(everyone, min(sample, len(everyone)))
            data = stored.load(conn, rt, feed.journey_needs(rt), ids)
            ledgers: dict[str, list[LedgerEntry]] = defaultdict(list)
            for row in consent_sql.entries(conn, self.ws, ids):
                ledgers[str(row[2])].append(consent_sql.ledger_entry(row))
            people = []
            for pid in ids:
                zone = data[pid].traits.get(feed.TIMEZONE_TRAIT)
                people.append(simulate.Person(
                    pid, partial(stored.StoredContext, rt, data[pid]), tuple(ledgers[pid]),
                    zone if isinstance(zone, str) else rt.settings.timezone))
            return people

        people = self.rapport.db.read(read)
        for index in range(synthetic):
            pid = f"synthetic-{index + 1}"
            grants = tuple(LedgerEntry(f"sim-{pid}-{p.name}", 0, pid, p.name, "granted", p.legal_basis, "simulation",
                                       None, None, start, start - 1, None) for p in rt.catalog)
            people.append(simulate.Person(pid, partial(DictContext, {"traits": {}, "computed": {}}), grants,
                                          rt.settings.timezone))
        caps = frequency_caps(rt)
        walks = simulate.simulate(journey, people, start, start + days * DAY, rt.catalog, channel_purposes(rt), caps)
        return {"journey": name, "version": journey.version, "start": to_iso(start), "days": days,
                "summary": simulate.summary(walks),
                "walks": [{"profile_id": w.profile_id, "status": w.status, "reason": w.reason, "steps": list(w.steps),
                           "paths": dict(w.paths),
                           "messages": [{"at": to_iso(m.at), "step": m.step, "channel": m.channel,
                                         "template": m.template, "outcome": m.outcome, "reason": m.reason}
                                        for m in w.messages]} for w in walks]}
