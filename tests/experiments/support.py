"""A simulated experiment on a journey split: resources, a seeded synthetic population sent through the tracking
API, exposures, and the sufficient statistics of every metric recomputed in Python from the same data."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from api.support import NOW, ApiClient, profile_of, track

from rapport.clock import to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.experiments.results import Sums
from rapport.experiments.service import sums_of
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import segments as segments_sql
from rapport.types import DAY, HOUR, MINUTE

BASE = NOW - 30 * DAY
"""Units are first exposed in the two days from here, so every window (and retention day) is over by NOW."""

RESOURCES = """
kind: Metric
name: converted_7d
type: conversion
event: Order Completed
window: 7d
---
kind: Metric
name: revenue_7d
type: revenue
event: Order Completed
property: revenue
window: 7d
---
kind: Metric
name: orders_7d
type: count
event: Order Completed
window: 7d
---
kind: Metric
name: retained_d7
type: retention
day: 7
---
kind: Metric
name: ctr
type: ratio
numerator: {event: Email Link Clicked}
denominator: {event: Email Delivered}
window: 7d
---
kind: Metric
name: big_order_7d
type: conversion
event: Order Completed
where: event.revenue >= 50
window: 7d
---
kind: Metric
name: unsubscribed_7d
type: conversion
event: Unsubscribed
window: 7d
direction: decrease
---
kind: Segment
name: vip
purpose: analytics
rule: traits.plan == "vip"
---
kind: Journey
name: checkout
purpose: personalization
entry: {event: Cart Added}
steps:
  - split:
      paths:
        control: {weight: 50, steps: [{update_trait: {name: arm, value: control}}]}
        bold: {weight: 50, steps: [{update_trait: {name: arm, value: bold}}]}
---
kind: Experiment
name: checkout_test
journey: checkout
split: "0"
purpose: personalization
metrics: [converted_7d, revenue_7d, orders_7d, retained_d7, ctr, big_order_7d]
guardrails: [unsubscribed_7d]
segments: [vip]
"""
WITH_HOLDOUT = RESOURCES.replace("      paths:\n        control:", "      holdout: 30\n      paths:\n        control:")
"""The same, with a journey split that holds 30 % out."""

# (event, property, exists, where, start, end) of each metric's value and second measure, written out here
# independently of the code under test.
Spec = tuple[str | None, str | None, bool, Callable[[dict[str, Any]], bool] | None, int, int]
ANY: Callable[[dict[str, Any]], bool] | None = None
BIG: Callable[[dict[str, Any]], bool] = lambda p: isinstance(p.get("revenue"), int) and p["revenue"] >= 50  # noqa: E731
REFERENCE: dict[str, tuple[Spec, Spec]] = {
    "converted_7d": (("Order Completed", None, True, ANY, 0, 7 * DAY), ("Order Completed", None, True, ANY,
                                                                        -7 * DAY, 0)),
    "revenue_7d": (("Order Completed", "revenue", False, ANY, 0, 7 * DAY), ("Order Completed", "revenue", False,
                                                                            ANY, -7 * DAY, 0)),
    "orders_7d": (("Order Completed", None, False, ANY, 0, 7 * DAY), ("Order Completed", None, False, ANY,
                                                                      -7 * DAY, 0)),
    "retained_d7": ((None, None, True, ANY, 7 * DAY, 8 * DAY), (None, None, True, ANY, -8 * DAY, 0)),
    "ctr": (("Email Link Clicked", None, False, ANY, 0, 7 * DAY), ("Email Delivered", None, False, ANY, 0, 7 * DAY)),
    "big_order_7d": (("Order Completed", None, True, BIG, 0, 7 * DAY), ("Order Completed", None, True, BIG,
                                                                        -7 * DAY, 0)),
    "unsubscribed_7d": (("Unsubscribed", None, True, ANY, 0, 7 * DAY), ("Unsubscribed", None, True, ANY,
                                                                        -7 * DAY, 0)),
}


@dataclass(frozen=True)
class Event:
    name: str | None  # None: an identify
    ts: int
    props: dict[str, Any] = field(default_factory=dict)


@dataclass
class Unit:
    user: str
    variant: str
    first_at: int
    index: int
    events: list[Event] = field(default_factory=list)
    consented: bool = True
    """Allows analytics: without it, the unit's events are stored minimized and none of them count."""
    measured: bool = True
    """Allows the experiment's purpose (personalization): without it, the unit is not in the analysis at all."""
    profile_id: str = ""
    elsewhere: list[Event] = field(default_factory=list)
    """Events sent under another identity that merges into the unit's profile later."""


def simulate(n: int = 120, seed: int = 7) -> list[Unit]:
    """A seeded population: bold converts more and clicks more, but many more of its people unsubscribe."""
    rng = random.Random(seed)
    units = []
    for i in range(n):
        variant = "control" if rng.random() < 0.5 else "bold"
        first = BASE + rng.randrange(0, 2 * DAY)
        u = Unit(f"u{i}", variant, first, i)
        u.events.append(Event(None, first - 20 * DAY, {}))
        for _ in range(rng.randint(0, 2)):
            u.events.append(Event("Order Completed", first - rng.randrange(1, 7 * DAY),
                                  {"revenue": rng.randint(5, 80)}))
        if rng.random() < (0.3 if variant == "control" else 0.5):
            for _ in range(rng.randint(1, 3)):
                u.events.append(Event("Order Completed", first + rng.randrange(0, 9 * DAY),
                                      {"revenue": rng.randint(5, 100)}))
        for _ in range(rng.randint(0, 4)):
            delivered = first + rng.randrange(0, 8 * DAY)
            u.events.append(Event("Email Delivered", delivered, {}))
            if rng.random() < (0.2 if variant == "control" else 0.35):
                u.events.append(Event("Email Link Clicked", delivered + 5 * MINUTE, {}))
        if rng.random() < 0.5:
            u.events.append(Event("Page Viewed", first + 7 * DAY + rng.randrange(0, DAY), {}))
        if rng.random() < 0.5:
            u.events.append(Event("Page Viewed", first + rng.randrange(0, 6 * DAY), {}))
        if rng.random() < (0.05 if variant == "control" else 0.35):
            u.events.append(Event("Unsubscribed", first + rng.randrange(0, 7 * DAY), {}))
        units.append(u)
    # Window edges: an order 1 ms before the window closes counts, one at its end does not.
    units[0].events.append(Event("Order Completed", units[0].first_at + 7 * DAY - 1, {"revenue": 11}))
    units[1].events.append(Event("Order Completed", units[1].first_at + 7 * DAY, {"revenue": 13}))
    units[2].consented = False  # stored minimized: none of its events may count
    units[4].measured = False  # refused the experiment's purpose: not a unit of the analysis
    return units


def message(unit: Unit, event: Event, number: int, anonymous: str | None = None) -> dict[str, Any]:
    who: dict[str, Any] = {"anonymousId": anonymous} if anonymous else {"userId": unit.user}
    body: dict[str, Any] = {**who, "timestamp": to_iso(event.ts), "messageId": f"{unit.user}-{number}"
                            + ("-anon" if anonymous else "")}
    body["context"] = {"consent": {"categoryPreferences": {"Analytics": unit.consented,
                                                           "Personalization": unit.measured}}}
    if event.name is None:
        return {**body, "type": "identify", "traits": {"plan": "basic"}}
    return {**body, "type": "track", "event": event.name, "properties": event.props}


def send(client: ApiClient, ws: NewWorkspace, messages: list[dict[str, Any]]) -> None:
    for start in range(0, len(messages), 250):
        response = track(client, ws, "/v1/batch", {"batch": messages[start:start + 250]})
        assert response.status_code == 200, response.text
        assert response.json() == {"success": True}


def ingest(client: ApiClient, ws: NewWorkspace, units: list[Unit]) -> None:
    """Everybody's events through the tracking API; the identify comes first so each person is one profile."""
    send(client, ws, [message(u, e, i) for u in units for i, e in enumerate(u.events)])
    for u in units:
        u.profile_id = profile_of(client, ws, user_id=u.user)["id"]


def browse_anonymously(client: ApiClient, ws: NewWorkspace, unit: Unit, events: list[Event]) -> None:
    """Before anything else, the unit's person browses anonymously: an older profile than their own."""
    send(client, ws, [message(unit, e, 100 + i, anonymous="anon-" + unit.user) for i, e in enumerate(events)])
    unit.elsewhere.extend(events)


def sign_in(client: ApiClient, ws: NewWorkspace, unit: Unit) -> None:
    """The person signs in on the anonymous device: the profiles merge and the older, anonymous one wins, so
    the unit's own profile is merged away and its events move to the other."""
    signed_in = Event("Signed In", unit.first_at - 10 * DAY)
    send(client, ws, [{**message(unit, signed_in, 999), "anonymousId": "anon-" + unit.user}])
    unit.elsewhere.append(signed_in)
    merged = profile_of(client, ws, user_id=unit.user)["id"]
    assert merged == profile_of(client, ws, anonymous_id="anon-" + unit.user)["id"]
    assert merged != unit.profile_id, "the unit's own profile was to be merged away"


def expose(rapport: Rapport, ws: NewWorkspace, units: list[Unit], experiment: str = "checkout_test") -> None:
    """Record each unit's exposures: a later one never moves the first."""
    rows: list[tuple[str, str, str | None, str, str, int]] = []
    for u in units:
        rows.append((u.profile_id, experiment, u.variant, "variant", "journey:checkout/0", u.first_at))
    rapport.db.write(lambda c: exposures_sql.record_many(c, ws.workspace_id, rows))
    later = [(u.profile_id, experiment, u.variant, "variant", "journey:checkout/0", u.first_at + HOUR)
             for u in units[::2]]
    rapport.db.write(lambda c: exposures_sql.record_many(c, ws.workspace_id, later))


def vip_members(rapport: Rapport, ws: NewWorkspace, units: list[Unit]) -> set[str]:
    """Write segment history: a third of the units were VIPs when first exposed (some others joined after, or
    left before); returns the users in the segment at their first exposure."""
    enter = [("vip", u.profile_id, 1, u.first_at - DAY if u.index % 3 == 0 else u.first_at + HOUR)
             for u in units if u.index % 3 != 2]
    leave = [("vip", u.profile_id, u.first_at - 1) for u in units if u.index % 9 == 0]
    rapport.db.write(lambda c: segments_sql.enter(c, ws.workspace_id, enter))
    rapport.db.write(lambda c: segments_sql.exit_(c, ws.workspace_id, leave))
    return {u.user for u in units if u.index % 3 == 0 and u.index % 9 != 0}


def _measure(unit: Unit, spec: Spec, now: int) -> float:
    event, prop, exists, where, start, end = spec
    if not unit.consented:
        return 0.0
    chosen = [e for e in (*unit.events, *unit.elsewhere) if (event is None or e.name == event)
              and unit.first_at + start <= e.ts < unit.first_at + end and e.ts < now
              and (where is None or where(e.props))]
    if exists:
        return 1.0 if chosen else 0.0
    if prop is None:
        return float(len(chosen))
    return float(sum(e.props[prop] for e in chosen))


def expected_sums(units: list[Unit], metric: str, now: int = NOW, members: set[str] | None = None,
                  ) -> dict[str, Sums]:
    """What the SQL must return, computed from the synthetic events."""
    x, y = REFERENCE[metric]
    return sums_of([(u.variant, _measure(u, x, now), _measure(u, y, now)) for u in units
                    if u.measured and u.first_at + x[5] <= now and (members is None or u.user in members)])


def grant(rapport: Rapport, ws: NewWorkspace, profile_ids: list[str], purpose: str = "personalization",
          state: str = "granted", at: int = NOW - 60 * DAY, expires_at: int | None = None) -> None:
    """Ledger entries for profiles that exist only as exposed units (no events, no profile row)."""
    rows = [(f"{state}-{purpose}-{pid}-{at}", pid, pid, purpose, state, "consent", "test", None, None, at, at,
             expires_at, None) for pid in profile_ids]
    rapport.db.write(lambda c: consent_sql.append_many(c, ws.workspace_id, rows))
