"""KPI reports from storage: per segment, journey or message over a period, small cells suppressed.

Messages are the journeys' sends that went out in the period (``journey_sends``, opens and clicks from
``email_engagement``) and, for ``by=message`` and ``by=segment``, email campaigns sent by another tool and
reported as ``Email Delivered`` events with a ``campaign_id`` (opens and clicks: ``Email Opened`` /
``Email Link Clicked`` events of the same campaign by the same person). A send made to a profile since merged
counts for the profile it was merged into; sends to erased people are left out. Only events stored with
analytics consent are read (``restricted = 0``): an order of a person without it is not a conversion.

``by=segment`` counts a message for the segments its recipient belongs to now (``membership=current``) or
belonged to when it was sent (``membership=period``); the ``members`` of a segment are its current members.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeAlias

import orjson

from rapport.analytics.kpis import (
    ATTRIBUTION_MS,
    ORDER,
    TOTAL,
    UNSUBSCRIBE_EVENTS,
    UNSUBSCRIBED,
    Outcome,
    Touch,
    count,
    order_revenue,
    suppress,
    values,
)
from rapport.clock import parse_iso, to_iso
from rapport.durations import format_duration, parse_duration
from rapport.errors import ValidationError
from rapport.storage.base import Conn
from rapport.storage.sql import kpis as sql
from rapport.storage.sql.erasure import ERASED
from rapport.types import DAY, JsonObject, Millis
from rapport.workspaces.runtime import WorkspaceRuntime

By: TypeAlias = Literal["segment", "journey", "message"]
BY: tuple[By, ...] = ("segment", "journey", "message")
Membership: TypeAlias = Literal["current", "period"]
DELIVERED, OPENED, CLICKED = "Email Delivered", "Email Opened", "Email Link Clicked"
DEFAULT_PERIOD_MS: Millis = 30 * DAY
CAMPAIGNS = "campaigns"
"""Complementary-suppression group of the campaigns' messages."""


@dataclass(frozen=True, slots=True)
class Query:
    by: By
    start: Millis
    end: Millis
    min_count: int
    window_ms: Millis = ATTRIBUTION_MS
    membership: Membership = "current"


def floor(rt: WorkspaceRuntime) -> int:
    """The workspace's minimum count (``min_cell_count`` setting, default 10)."""
    return rt.settings.min_cell_count


def checked_min_count(rt: WorkspaceRuntime, asked: int | None) -> int:
    """The minimum count of a report: the workspace's, or a higher one asked for; never lower."""
    least = floor(rt)
    if asked is None:
        return least
    if asked < least:
        raise ValidationError(f"'min_count' {asked} is below this workspace's minimum of {least}; it can only be "
                              "raised", code="min_count_below_floor")
    return asked


def _live(merged: Mapping[str, str], profile_id: str) -> str:
    seen = {profile_id}
    while profile_id in merged:
        profile_id = merged[profile_id]
        if profile_id in seen:
            break
        seen.add(profile_id)
    return profile_id


def _props(body: str | bytes) -> JsonObject:
    props = orjson.loads(body).get("properties")
    return props if isinstance(props, dict) else {}


@dataclass(frozen=True, slots=True)
class _Sent:
    profile_id: str
    at: Millis
    key: str
    """The cell of its message (``journey/step`` or ``campaign:<id>``)."""
    group: str
    labels: JsonObject
    opened: bool
    clicked: bool
    goal: str
    journey: str | None


def _sent(conn: Conn, rt: WorkspaceRuntime, q: Query, merged: Mapping[str, str]) -> list[_Sent]:
    ws = rt.id
    engaged = {(str(k), str(kind)) for k, kind in sql.engagement(conn, ws, q.start, q.end)}
    out: list[_Sent] = []
    for key, pid, journey, step, template, channel, sent_at in sql.journey_sends(conn, ws, q.start, q.end):
        if pid == ERASED:
            continue
        definition = rt.journeys.get(str(journey))
        goal = definition.goal.event if definition is not None and definition.goal is not None else ORDER
        out.append(_Sent(_live(merged, str(pid)), int(sent_at), f"{journey}/{step}", str(journey),
                         {"journey": journey, "step": step, "template": template, "channel": channel},
                         (str(key), "open") in engaged, (str(key), "click") in engaged, goal, str(journey)))
    if q.by == "journey":
        return out
    seen: dict[tuple[str, str], tuple[bool, bool]] = {}
    delivered: list[tuple[str, str, Millis, JsonObject]] = []
    for _seq, pid, name, ts, body in sql.named_events(conn, ws, (DELIVERED, OPENED, CLICKED), q.start,
                                                      q.end + q.window_ms):
        props = _props(body)
        campaign = props.get("campaign_id")
        if "journey" in props or not isinstance(campaign, str | int) or isinstance(campaign, bool):
            continue
        person = _live(merged, str(pid))
        if name == DELIVERED:
            if int(ts) < q.end:
                delivered.append((person, str(campaign), int(ts), props))
            continue
        opened, clicked = seen.get((person, str(campaign)), (False, False))
        seen[(person, str(campaign))] = (True, clicked or name == CLICKED)
    for person, campaign, at, props in delivered:
        opened, clicked = seen.get((person, campaign), (False, False))
        name = props.get("campaign_name")
        out.append(_Sent(person, at, f"campaign:{campaign}", CAMPAIGNS,
                         {"campaign_id": campaign, "campaign_name": name if isinstance(name, str) else None},
                         opened, clicked, ORDER, None))
    return out


def _outcomes(conn: Conn, rt: WorkspaceRuntime, q: Query, goals: set[str], merged: Mapping[str, str]
              ) -> list[Outcome]:
    until = q.end + q.window_ms
    names = sorted({ORDER, *UNSUBSCRIBE_EVENTS, *goals})
    out = []
    for seq, pid, name, ts, body in sql.named_events(conn, rt.id, names, q.start, until):
        person = _live(merged, str(pid))
        if name in UNSUBSCRIBE_EVENTS:
            out.append(Outcome(person, UNSUBSCRIBED, int(ts), f"e{seq}"))
            if name not in goals:
                continue
        revenue = order_revenue(_props(body)) if name == ORDER else 0.0
        out.append(Outcome(person, str(name), int(ts), f"e{seq}", revenue))
    for entry_id, pid, at in sql.link_unsubscribes(conn, rt.id, q.start, until):
        out.append(Outcome(_live(merged, str(pid)), UNSUBSCRIBED, int(at), f"c{entry_id}"))
    return out


def report(conn: Conn, rt: WorkspaceRuntime, q: Query) -> JsonObject:
    """The KPI table of ``q`` (see the module docstring and ``rapport.analytics.kpis``)."""
    if q.end <= q.start:
        raise ValidationError("'from' must be before 'to'", code="invalid_period")
    merged = sql.merged(conn, rt.id)
    sent = _sent(conn, rt, q, merged)
    labels: dict[str, JsonObject] = {}
    groups: dict[str, str | None] = {}
    members: dict[str, int] = {}
    touches: list[Touch] = []
    if q.by == "segment":
        current: dict[str, set[str]] = defaultdict(set)
        for segment, pid in sql.current_members(conn, rt.id):
            current[str(segment)].add(_live(merged, str(pid)))
        spans: dict[str, list[tuple[str, int, int | None]]] = defaultdict(list)
        if q.membership == "period":
            for segment, pid, entered, exited in sql.memberships(conn, rt.id, q.start, q.end):
                spans[_live(merged, str(pid))].append((str(segment), int(entered),
                                                       None if exited is None else int(exited)))
        of_person: dict[str, set[str]] = defaultdict(set)
        for segment, people in current.items():
            for person in people:
                of_person[person].add(segment)
        for name in sorted(rt.segments):
            labels[name] = {"segment": name}
            groups[name] = rt.segments[name].group
            members[name] = len(current.get(name, ()))
        for s in sent:
            if q.membership == "period":
                cells = {seg for seg, entered, exited in spans.get(s.profile_id, ())
                         if entered <= s.at and (exited is None or s.at < exited)}
            else:
                cells = of_person.get(s.profile_id, set())
            cells &= set(rt.segments)
            touches.append(Touch(s.profile_id, (TOTAL, *sorted(cells)), s.at, s.opened, s.clicked, s.goal))
    elif q.by == "journey":
        for s in sent:
            labels.setdefault(s.group, {"journey": s.group})
            groups[s.group] = ""
            touches.append(Touch(s.profile_id, (TOTAL, s.group), s.at, s.opened, s.clicked, s.goal))
    else:
        for s in sent:
            labels.setdefault(s.key, s.labels)
            groups[s.key] = s.group
            touches.append(Touch(s.profile_id, (TOTAL, s.key), s.at, s.opened, s.clicked, s.goal))
    outcomes = _outcomes(conn, rt, q, {s.goal for s in sent}, merged)
    counts = count(touches, outcomes, q.window_ms)
    recipients = {cell: counts[cell].recipients if cell in counts else 0 for cell in (TOTAL, *labels)}
    hidden = suppress(recipients, groups, q.min_count)
    rows = []
    for cell in sorted(labels):
        row: JsonObject = {**labels[cell], **values(counts.get(cell), hidden[cell])}
        if q.by == "segment":
            row["members"] = members[cell] if members[cell] >= q.min_count else None
        rows.append(row)
    return {"by": q.by, "from": to_iso(q.start), "to": to_iso(q.end),
            "attribution_window": format_duration(q.window_ms), "min_count": q.min_count,
            **({"membership": q.membership} if q.by == "segment" else {}),
            "rows": rows, "total": values(counts.get(TOTAL), hidden[TOTAL])}


def instant(name: str, value: str | None, default: Millis) -> Millis:
    """An ISO-8601 parameter as epoch milliseconds (``default`` when absent)."""
    if value is None:
        return default
    try:
        return parse_iso(value)
    except ValueError:
        raise ValidationError(f"'{name}' is not an ISO-8601 time: {value[:40]!r}", code="invalid_request") from None


def query_of(rt: WorkspaceRuntime, by: str, start: str | None, end: str | None, min_count: int | None, window: str,
             membership: str, now: Millis) -> Query:
    """A checked KPI query from request (or command line) parameters; the period defaults to the 30 days to now."""
    chosen = next((b for b in BY if b == by), None)
    if chosen is None:
        raise ValidationError(f"unknown 'by' {by!r}; expected one of {', '.join(BY)}", code="invalid_request")
    if membership not in ("current", "period"):
        raise ValidationError(f"unknown 'membership' {membership!r}; expected current or period",
                              code="invalid_request")
    until = instant("to", end, now)
    since = instant("from", start, until - DEFAULT_PERIOD_MS)
    return Query(chosen, since, until, checked_min_count(rt, min_count), parse_duration(window),
                 "current" if membership == "current" else "period")
