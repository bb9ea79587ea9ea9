"""Message KPIs per cell (a segment, a journey or one message), counted in people, with small cells suppressed.

Pure: the service gathers the touches (messages sent in the period) and the outcomes (orders, goal events,
unsubscribes) and this module counts them.

For a cell, each measure counts distinct people among its recipients (people sent at least one of its
messages in the period):

- ``open_rate`` / ``ctr``: recipients who opened / clicked at least one of the cell's messages (a click counts
  as an open: images may be blocked);
- ``conversion_rate``: recipients with a conversion event (the journey's goal event, ``Order Completed`` for
  journeys without a goal and for campaigns) within the attribution window after one of the cell's messages;
- ``revenue_per_recipient``: revenue of the ``Order Completed`` events within the window after one of the cell's
  messages (each order counted once per cell) over the recipients;
- ``unsubscribe_rate``: recipients who unsubscribed within the window after one of the cell's messages.

Privacy (``suppress``): a cell with fewer recipients than the minimum count is suppressed: every value, the
recipient count included, is ``null``, with ``suppressed: true`` and the reason. Complementary suppression: in a
group of cells whose people add up to a published total (a journey's messages and the journey; the journeys
and their total; the segments of one exclusive segment group), the people of the suppressed cells can be found
by subtracting the shown cells from the total. So while the suppressed cells of a group hold some people but
fewer than the minimum in all, the smallest shown cell of the group is suppressed too, then the next, until
the suppressed cells hold at least the minimum (or the whole group is suppressed). Empty cells (no people)
count for nothing: hiding them protects no one. Cells that overlap freely (segments outside an exclusive group)
cannot be subtracted exactly and get no complement.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rapport.types import DAY, JsonObject, Millis

ORDER = "Order Completed"
UNSUBSCRIBE_EVENTS = ("Unsubscribed", "Email Unsubscribed")
UNSUBSCRIBED = "unsubscribed"
"""Outcome name the service gives an unsubscribe (an event above, or a withdrawal through the unsubscribe link)."""
ATTRIBUTION_MS: Millis = 3 * DAY
MIN_COUNT = 10
TOTAL = "*"
"""Key of the cell every touch belongs to."""


@dataclass(frozen=True, slots=True)
class Touch:
    """A message that reached ``profile_id`` at ``at``, counted in ``cells``; its conversion event is ``goal``."""

    profile_id: str
    cells: tuple[str, ...]
    at: Millis
    opened: bool = False
    clicked: bool = False
    goal: str = ORDER


@dataclass(frozen=True, slots=True)
class Outcome:
    """Something the person did: an order (with its revenue), a goal event, or ``UNSUBSCRIBED``; ``key`` is unique
    per stored event."""

    profile_id: str
    name: str
    at: Millis
    key: str
    revenue: float = 0.0


@dataclass(frozen=True, slots=True)
class Counts:
    recipients: int
    opened: int
    clicked: int
    converted: int
    unsubscribed: int
    revenue: float


@dataclass(slots=True)
class _Person:
    opened: bool = False
    clicked: bool = False
    converted: bool = False
    unsubscribed: bool = False
    orders: dict[str, float] = field(default_factory=dict)


def count(touches: Iterable[Touch], outcomes: Iterable[Outcome], window_ms: Millis = ATTRIBUTION_MS
          ) -> dict[str, Counts]:
    """Counts per cell (see the module docstring); outcomes count from a touch's time to ``window_ms`` after it."""
    by_person: dict[str, list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by_person[o.profile_id].append(o)
    for found in by_person.values():
        found.sort(key=lambda o: (o.at, o.key))
    times = {p: [o.at for o in found] for p, found in by_person.items()}
    people: dict[str, dict[str, _Person]] = defaultdict(dict)
    for t in touches:
        found = by_person.get(t.profile_id, [])
        at = times.get(t.profile_id, [])
        after = found[bisect.bisect_left(at, t.at):bisect.bisect_right(at, t.at + window_ms)]
        for cell in t.cells:
            person = people[cell].setdefault(t.profile_id, _Person())
            person.opened |= t.opened or t.clicked
            person.clicked |= t.clicked
            for o in after:
                if o.name == t.goal:
                    person.converted = True
                if o.name == ORDER:
                    person.orders[o.key] = o.revenue
                if o.name == UNSUBSCRIBED:
                    person.unsubscribed = True
    return {cell: Counts(len(who), sum(p.opened for p in who.values()), sum(p.clicked for p in who.values()),
                         sum(p.converted for p in who.values()), sum(p.unsubscribed for p in who.values()),
                         sum(sum(p.orders.values()) for p in who.values()))
            for cell, who in people.items()}


@dataclass(frozen=True, slots=True)
class Suppression:
    suppressed: bool
    reason: str | None = None


def suppress(recipients: Mapping[str, int], groups: Mapping[str, str | None], min_count: int,
             unit: str = "recipients") -> dict[str, Suppression]:
    """Which cells are suppressed and why (see the module docstring); ``groups`` maps a cell to the group whose
    cells add up to a published total (``None``: no such group)."""
    out = {cell: Suppression(True, f"fewer than {min_count} {unit}") if n < min_count else Suppression(False)
           for cell, n in recipients.items()}
    members: dict[str, list[str]] = defaultdict(list)
    for cell, group in groups.items():
        if group is not None and cell in recipients:
            members[group].append(cell)
    complement = Suppression(True, f"hidden so that a cell with fewer than {min_count} {unit} cannot be derived "
                                   "from the total (complementary suppression)")
    for cells in members.values():
        hidden = sum(recipients[c] for c in cells if out[c].suppressed)
        if hidden == 0:  # nothing small to protect: empty cells reveal nothing
            continue
        shown = sorted((c for c in cells if not out[c].suppressed), key=lambda c: (recipients[c], c))
        for cell in shown:
            if hidden >= min_count:
                break
            out[cell] = complement
            hidden += recipients[cell]
    return out


def _rate(n: int, base: int) -> float | None:
    return round(n / base, 4) if base else None


def values(counts: Counts | None, suppression: Suppression) -> JsonObject:
    """A cell's published values: counts as rates over its recipients, all ``null`` when suppressed."""
    c = counts or Counts(0, 0, 0, 0, 0, 0.0)
    if suppression.suppressed:
        return {"recipients": None, "open_rate": None, "ctr": None, "conversion_rate": None,
                "revenue_per_recipient": None, "unsubscribe_rate": None, "suppressed": True,
                "reason": suppression.reason}
    return {"recipients": c.recipients, "open_rate": _rate(c.opened, c.recipients),
            "ctr": _rate(c.clicked, c.recipients), "conversion_rate": _rate(c.converted, c.recipients),
            "revenue_per_recipient": round(c.revenue / c.recipients, 2) if c.recipients else None,
            "unsubscribe_rate": _rate(c.unsubscribed, c.recipients), "suppressed": False, "reason": None}


def order_revenue(properties: Mapping[str, object]) -> float:
    """An order's revenue: ``revenue``, else ``total``, else the sum of its products' price × quantity."""
    for name in ("revenue", "total"):
        value = properties.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    total = 0.0
    products = properties.get("products")
    if isinstance(products, Sequence) and not isinstance(products, str):
        for item in products:
            if isinstance(item, Mapping):
                price, quantity = item.get("price"), item.get("quantity", 1)
                if isinstance(price, int | float) and isinstance(quantity, int | float) \
                        and not isinstance(price, bool) and not isinstance(quantity, bool):
                    total += float(price) * float(quantity)
    return total
