"""The demo's cart-offer experiment: what the cart journey's offer split did over the simulated weeks.

The journey enrolls only fresh events, so the generated history never ran it. Once the shop is loaded, this
plays its last part forward: every cart abandoned in the last ``WEEKS`` weeks (no order within the journey's
first two days) by a person who allowed marketing email then reaches the split ``SPLIT_AFTER`` later, at most
once per ``REENTRY`` as the journey allows. The split assigns the person with the journey's own function (the
bucket a live enrollment would get), the exposure is recorded at that instant, and a share of each path comes
back to order within a week: more of them with an offer than in the holdout, most with free shipping. Orders go
through the real ingestion path, so the experiment's results read them like any other event.

Run once per workspace (saved in the ``imports`` table, like the generation's progress); a second run finds it
done. Seeded: the same shop gives the same experiment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from random import Random

import orjson

from rapport.clock import seeded_rng, to_iso
from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.core import Rapport
from rapport.ingestion.parse import ItemInvalid, parse_message
from rapport.ingestion.plans import check_plans
from rapport.journeys.model import HOLDOUT, Journey, SplitStep, walk
from rapport.journeys.split import assign
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import exposures as exposures_sql
from rapport.storage.sql import imports as imports_sql
from rapport.types import JsonObject, Millis, WorkspaceId

MINUTE, HOUR, DAY = 60_000, 3_600_000, 86_400_000
WEEKS = 12
SPLIT_AFTER: Millis = 15 * MINUTE + 23 * HOUR + DAY
"""From a cart to the journey's split: the 15-minute wait for an order, then 23 h and 1 d of delays."""
REENTRY: Millis = 7 * DAY
ORDER_RATES = {HOLDOUT: 0.05, "a": 0.085, "b": 0.11}
"""Chance that a person on each path orders within a week of the split."""
JOURNEY = "cart_abandonment"
EXPERIMENT = "cart_offer_test"
PURPOSE = "marketing_email"
SOURCE = "demo:cart-offer-experiment"
BATCH = 500


@dataclass(frozen=True, slots=True)
class Cart:
    profile_id: str
    user_id: str | None
    anonymous_id: str | None
    at: Millis
    product: JsonObject


@dataclass(frozen=True, slots=True)
class Played:
    exposed: int
    """People who reached the split (once or more)."""
    orders: int
    by_path: dict[str, int]
    skipped: bool = False


def split_of(journey: Journey) -> SplitStep:
    """The journey's (first) split step: the one the experiment measures."""
    for step in walk(journey.steps):
        if isinstance(step, SplitStep):
            return step
    raise LookupError(f"journey {journey.name!r} has no split step")


def abandoned(carts: Sequence[Cart], orders: dict[str, list[Millis]]) -> list[Cart]:
    """The carts the journey would have carried to its split: no order by the person within ``SPLIT_AFTER``,
    and no earlier such cart of the same person within ``REENTRY``."""
    kept: list[Cart] = []
    last: dict[str, Millis] = {}
    for cart in sorted(carts, key=lambda c: (c.at, c.profile_id)):
        if any(cart.at < t <= cart.at + SPLIT_AFTER for t in orders.get(cart.profile_id, ())):
            continue
        previous = last.get(cart.profile_id)
        if previous is not None and cart.at - previous < REENTRY:
            continue
        last[cart.profile_id] = cart.at
        kept.append(cart)
    return kept


def play(rapport: Rapport, ws: WorkspaceId) -> Played:
    """Play the split forward for the demo workspace ``ws`` (once)."""
    saved = rapport.db.read(lambda c: imports_sql.load_progress(c, ws, SOURCE))
    if saved is not None and saved[2] is not None:
        return Played(0, 0, {}, skipped=True)
    rt = rapport.runtime(ws)
    journey = rt.journeys.get(JOURNEY)
    purpose = rt.catalog.purposes.get(PURPOSE)
    if journey is None or purpose is None:
        return Played(0, 0, {}, skipped=True)
    split = split_of(journey)
    now = rapport.clock.now_ms()
    since = now - WEEKS * 7 * DAY
    carts, orders = rapport.db.read(lambda c: _history(c, ws, since))
    chosen = abandoned([c for c in carts if c.at + SPLIT_AFTER <= now], orders)
    ledgers = rapport.db.read(lambda c: _ledgers(c, ws, sorted({c.profile_id for c in chosen})))
    rng = seeded_rng(7)
    exposures: list[tuple[str, str, str | None, str, str, Millis]] = []
    messages: list[JsonObject] = []
    by_path: dict[str, int] = {}
    for cart in chosen:
        at = cart.at + SPLIT_AFTER
        if not may_use(ledgers.get(cart.profile_id, []), purpose, at).allowed:
            continue
        path = assign(journey.name, split, cart.profile_id)
        by_path[path] = by_path.get(path, 0) + 1
        held = path == HOLDOUT
        exposures.append((cart.profile_id, EXPERIMENT, None if held else path, "holdout" if held else "variant",
                          f"journey:{journey.name}/{split.id}", at))
        order = _maybe_order(rng, cart, at, ORDER_RATES.get(path, 0.0), now)
        if order is not None:
            messages.append(order)
    rapport.db.write(lambda c: exposures_sql.record_many(c, ws, exposures))
    for start in range(0, len(messages), BATCH):
        _ingest(rapport, ws, messages[start:start + BATCH])
    rapport.db.write(lambda c: imports_sql.save_progress(c, ws, SOURCE, len(exposures), len(exposures),
                                                         rapport.clock.now_ms(), True))
    return Played(len({e[0] for e in exposures}), len(messages), by_path)


def _maybe_order(rng: Random, cart: Cart, split_at: Millis, rate: float, now: Millis) -> JsonObject | None:
    """The order a person on a path with ``rate`` places within a week of the split (before ``now``), or None."""
    if rng.random() >= rate:
        return None
    at = split_at + HOUR + int(rng.random() * 6 * DAY)
    if at >= now:
        return None
    price = float(cart.product.get("price") or 25.0)
    ids: JsonObject = {"userId": cart.user_id} if cart.user_id else {"anonymousId": cart.anonymous_id}
    line = {k: cart.product[k] for k in ("product_id", "sku", "product_name", "category") if k in cart.product}
    return {"type": "track", "event": "Order Completed", **ids,
            "messageId": f"demo-cart-offer-{cart.profile_id}-{cart.at}",
            "timestamp": to_iso(at),
            "properties": {"order_id": f"ord_x{cart.at % 10**10:010d}", "revenue": round(price, 2),
                           "currency": str(cart.product.get("currency") or "EUR"),
                           "products": [{**line, "price": price, "quantity": 1}]}}


def _history(conn: Conn, ws: str, since: Millis) -> tuple[list[Cart], dict[str, list[Millis]]]:
    """Cart adds since ``since`` and every order time since then, by live profile."""
    carts = [Cart(str(r[0]), r[1], r[2], int(r[3]), _properties(r[4])) for r in conn.all(
        "SELECT profile_id, user_id, anonymous_id, ts, body FROM events WHERE workspace_id = ?"
        " AND name = 'Cart Added' AND ts >= ? AND restricted = 0", (ws, since))]
    orders: dict[str, list[Millis]] = {}
    for profile_id, ts in conn.all(
            "SELECT profile_id, ts FROM events WHERE workspace_id = ? AND name = 'Order Completed' AND ts >= ?",
            (ws, since)):
        orders.setdefault(str(profile_id), []).append(int(ts))
    return carts, orders


def _properties(body: bytes | str) -> JsonObject:
    properties = orjson.loads(body).get("properties")
    return properties if isinstance(properties, dict) else {}


def _ledgers(conn: Conn, ws: str, profile_ids: Sequence[str]) -> dict[str, list[LedgerEntry]]:
    found: dict[str, list[LedgerEntry]] = {}
    for start in range(0, len(profile_ids), 500):
        for row in consent_sql.entries(conn, ws, profile_ids[start:start + 500]):
            entry = consent_sql.ledger_entry(row)
            found.setdefault(entry.profile_id, []).append(entry)
    return found


def _ingest(rapport: Rapport, ws: WorkspaceId, raw: Sequence[JsonObject]) -> None:
    received = rapport.clock.now_ms()
    indexed = []
    for index, message in enumerate(raw):
        try:
            indexed.append((index, parse_message(message, implied_type=None, received_at=received, batch_sent_at=None,
                                                 batch_context=None, new_id=lambda: rapport.clock.new_id("msg"))))
        except ItemInvalid:
            continue
    accepted, quarantined, _refused = check_plans(rapport.runtime(ws).plans, indexed)
    if accepted or quarantined:
        rapport.ingest(ws, accepted, quarantined).result()
