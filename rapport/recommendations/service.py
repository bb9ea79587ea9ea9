"""Recommendations with storage: build the aggregates, serve a person's lists, list and emit replenishment.

``build`` makes one pass over the stored orders, refunds and returns (by sequence, in pages) and replaces the
workspace's aggregates as a whole: a rebuild, not an incremental update, because pair counts and medians do not
subtract cleanly when an order is erased. Serving reads the prebuilt tables plus the person's own events, so
what they bought a minute ago is already left out.

Consent: the aggregates (pairs, popularity, intervals) count only events stored with analytics consent
(``restricted = 0``). Everything about one person is personalization and needs that purpose (deny by default;
a catalog without it allows no one): the per-person purchase rows are kept only for people who allow it at
build time, ``recommend`` serves nobody else (an empty list with the reason, not an error), and ``emit`` checks
each person again before their ``Replenishment Due`` event (it personalizes the messages they get).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from rapport.clock import to_datetime, to_iso
from rapport.consent.decide import may_use
from rapport.consent.model import LedgerEntry
from rapport.errors import NotFoundError, ValidationError
from rapport.ingestion.model import IngestTally, Message
from rapport.ingestion.parse import parse_message
from rapport.recommendations import build as agg
from rapport.recommendations import rank
from rapport.recommendations.model import (
    EVERYONE,
    HISTORY_EVENTS,
    INTEREST,
    KINDS,
    LEAD_MS,
    NOT_ALLOWED,
    ORDER,
    PERSONALIZATION,
    POPULAR_WINDOW_MS,
    REFUND,
    RETURN,
    Kind,
    LastPurchase,
    Order,
    Pair,
    Popular,
    ProductStats,
    Recommendation,
    Returned,
    Served,
    order_of,
    product_ids,
    returned_of,
)
from rapport.storage.base import Conn, Row
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import recommendations as sql
from rapport.storage.sql import segments as segments_sql
from rapport.storage.sql.events import INTERNAL_PREFIX
from rapport.types import JsonObject, Millis, WorkspaceId
from rapport.workspaces.runtime import WorkspaceRuntime

if TYPE_CHECKING:
    from rapport.core import Rapport

PAGE = 5000
CONSENT_CHUNK = 500
REPLENISHMENT_EVENT = "Replenishment Due"
MAX_LIMIT = 100


@dataclass(frozen=True, slots=True)
class BuildReport:
    built_at: Millis
    orders: int
    products: int
    pairs: int
    with_interval: int
    popular: int
    people: int

    def to_json(self) -> JsonObject:
        return {"built_at": to_iso(self.built_at), "orders": self.orders, "products": self.products,
                "pairs": self.pairs, "products_with_interval": self.with_interval, "popular_rows": self.popular,
                "people": self.people}


@dataclass(frozen=True, slots=True)
class Due:
    """A person due to buy a product again."""

    profile_id: str
    product_id: str
    product_name: str | None
    last_purchased_at: Millis
    due_at: Millis

    def to_json(self) -> JsonObject:
        return {"profile_id": self.profile_id, "product_id": self.product_id, "product_name": self.product_name,
                "last_purchased_at": to_iso(self.last_purchased_at), "due_at": to_iso(self.due_at)}

    @property
    def message_id(self) -> str:
        """One event per person, product and due date, whoever emits it and however often."""
        day = to_datetime(self.due_at).strftime("%Y-%m-%d")
        return f"{INTERNAL_PREFIX}replenishment:{self.profile_id}:{self.product_id}:{day}"


@dataclass(frozen=True, slots=True)
class EmitReport:
    due: int
    emitted: int
    duplicates: int
    unreachable: int
    not_allowed: int = 0
    """Due items left out because the person no longer allows personalization."""

    def to_json(self) -> JsonObject:
        return {"due": self.due, "emitted": self.emitted, "duplicates": self.duplicates,
                "unreachable": self.unreachable, "not_allowed": self.not_allowed}


def _properties(body: str | bytes) -> JsonObject:
    props = orjson.loads(body).get("properties")
    return props if isinstance(props, dict) else {}


def personalized(conn: Conn, rt: WorkspaceRuntime, profile_ids: Iterable[str], at: Millis) -> set[str]:
    """The people among ``profile_ids`` who allow personalization at ``at``, from their consent ledgers (deny by
    default: no entry, or a catalog without the purpose, allows no one)."""
    if PERSONALIZATION not in rt.catalog:
        return set()
    purpose = rt.catalog.get(PERSONALIZATION)
    ids: Sequence[str] = sorted(set(profile_ids))
    ledgers: dict[str, list[LedgerEntry]] = defaultdict(list)
    for start in range(0, len(ids), CONSENT_CHUNK):
        for row in consent_sql.entries(conn, rt.id, ids[start:start + CONSENT_CHUNK]):
            ledgers[str(row[2])].append(consent_sql.ledger_entry(row))
    return {p for p in ids if may_use(ledgers[p], purpose, at).allowed}


def _scan(conn: Conn, ws: str) -> Iterator[tuple[str, str, Millis, JsonObject]]:
    """(profile, event name, time, properties) of every order, refund and return stored with analytics consent,
    by sequence."""
    after = 0
    while True:
        rows = sql.named_events(conn, ws, (ORDER, REFUND, RETURN), after, PAGE)
        for _seq, profile_id, name, ts, body in rows:
            yield str(profile_id), str(name), int(ts), _properties(body)
        if len(rows) < PAGE:
            return
        after = int(rows[-1][0])


def _orders_and_returns(events: Iterable[tuple[str, str, Millis, JsonObject]]) -> tuple[list[Order], list[Returned]]:
    """Orders, and refunds and returns as the products they give back."""
    orders: list[Order] = []
    by_id: dict[tuple[str, str], Order] = {}
    backs: list[tuple[str, str, Millis, JsonObject]] = []
    for profile_id, name, at, props in events:
        if name == ORDER:
            order = order_of(profile_id, at, props)
            if order is not None:
                orders.append(order)
                if order.order_id is not None:
                    by_id[(profile_id, order.order_id)] = order
        else:
            backs.append((profile_id, name, at, props))
    returns = []
    for profile_id, name, at, props in backs:  # after every order: a refund may be stored before its order
        oid = props.get("order_id")
        mine = {oid: by_id[(profile_id, oid)]} if isinstance(oid, str) and (profile_id, oid) in by_id else {}
        returned = returned_of(profile_id, at, name, props, mine)
        if returned is not None:
            returns.append(returned)
    return orders, returns


@dataclass(frozen=True, slots=True)
class Built:
    """The aggregates of one build, computed and not yet stored."""

    at: Millis
    window_ms: Millis
    orders: int
    stats: list[ProductStats]
    pairs: list[Pair]
    popular: list[Popular]
    purchases: list[LastPurchase]

    def report(self) -> BuildReport:
        return BuildReport(self.at, self.orders, len(self.stats), len(self.pairs),
                           sum(s.interval_ms is not None for s in self.stats), len(self.popular),
                           len({p.profile_id for p in self.purchases}))


def compute(conn: Conn, rt: WorkspaceRuntime, now: Millis, *, window_ms: Millis = POPULAR_WINDOW_MS) -> Built:
    """The workspace's aggregates from its stored events (those with analytics consent) and current segment
    members, and the last purchases of the people who allow personalization at ``now`` (reads only)."""
    orders, returns = _orders_and_returns(_scan(conn, rt.id))
    times = agg.purchase_times(orders)
    members = {name: segments_sql.members(conn, rt.id, name) for name in sorted(rt.segments)}
    allowed = personalized(conn, rt, (person for person, _product in times), now)
    purchases = [p for p in agg.last_purchases(times, returns) if p.profile_id in allowed]
    return Built(now, window_ms, len(orders), agg.product_stats(orders, times), agg.cooccurrence(orders),
                 agg.popularity(orders, members, now - window_ms, now), purchases)


def store(conn: Conn, ws: str, built: Built) -> BuildReport:
    """Replace the workspace's aggregates with ``built`` (in a write transaction)."""
    sql.replace(
        conn, ws,
        [(s.product_id, s.name, s.category, s.orders, s.buyers, s.units, s.repeat_buyers, s.interval_ms)
         for s in built.stats],
        [(p.product_id, p.other_id, p.together, p.confidence, p.lift) for p in built.pairs],
        [(p.segment, p.product_id, p.buyers, p.units) for p in built.popular],
        [(p.profile_id, p.product_id, p.last_at, p.purchases, p.returned_at) for p in built.purchases],
        (built.at, built.orders, len(built.stats), len(built.pairs), built.window_ms))
    return built.report()


def build(conn: Conn, rt: WorkspaceRuntime, now: Millis, *, window_ms: Millis = POPULAR_WINDOW_MS) -> BuildReport:
    """Recompute and store the workspace's aggregates on one connection (a write transaction)."""
    return store(conn, rt.id, compute(conn, rt, now, window_ms=window_ms))


def _stats(row: Row) -> ProductStats:
    pid, name, category, orders, buyers, units, repeat, interval = row
    return ProductStats(str(pid), None if name is None else str(name), None if category is None else str(category),
                        int(orders), int(buyers), float(units), int(repeat),
                        None if interval is None else int(interval))


def history(conn: Conn, ws: str, profile_id: str) -> rank.History:
    """A person's orders, returns and viewed or carted products, from their events."""
    rows = [(profile_id, str(name), int(ts), _properties(body)) for name, ts, body in
            sql.history(conn, ws, profile_id, HISTORY_EVENTS)]
    orders, returns = _orders_and_returns([r for r in rows if r[1] not in INTEREST])
    interest = tuple((p, at) for _pid, name, at, props in rows if name in INTEREST for p in product_ids(props))
    return rank.History(tuple(orders), tuple(returns), interest)


def kind_of(value: str) -> Kind:
    for kind in KINDS:
        if kind == value:
            return kind
    raise ValidationError(f"unknown recommendation kind {value!r}; expected one of {', '.join(KINDS)}",
                          code="invalid_kind")


def recommend(conn: Conn, rt: WorkspaceRuntime, profile_id: str, kind: Kind | str, *, segment: str | None = None,
              limit: int = 10, now: Millis, product: str | None = None) -> Served:
    """A person's recommendations of ``kind`` (see ``rapport.recommendations.rank``), best first; none (withheld
    with the reason ``NOT_ALLOWED``) when the person does not allow personalization at ``now``.

    ``segment`` picks the popular list (everyone's without it); ``product`` anchors a bought-together list on
    one product instead of the person's own purchases and interest. A merged profile id reads its live profile.
    """
    kind = kind_of(kind)
    if not 1 <= limit <= MAX_LIMIT:
        raise ValidationError(f"'limit' must be a whole number from 1 to {MAX_LIMIT}", code="invalid_request")
    if segment is not None and segment not in rt.segments:
        known = ", ".join(sorted(rt.segments)) or "none yet"
        raise NotFoundError(f"no segment {segment!r} (known: {known})", code="segment_not_found")
    live = identity_sql.live_root(conn, rt.id, profile_id)
    if live is None:
        raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
    if live not in personalized(conn, rt, [live], now):
        return Served((), NOT_ALLOWED)
    return Served(tuple(_ranked(conn, rt, live, kind, segment, limit, now, product)))


def _ranked(conn: Conn, rt: WorkspaceRuntime, live: str, kind: Kind, segment: str | None, limit: int, now: Millis,
            product: str | None) -> list[Recommendation]:
    """The list of ``kind`` for the live profile ``live`` (its consent already checked)."""
    mine = history(conn, rt.id, live)
    excluded = mine.bought | mine.returned
    if kind == "bought_together":
        anchors = [product] if product is not None else mine.anchors(now)
        pairs = [Pair(str(a), str(b), int(t), float(c), float(lift)) for a, b, t, c, lift in sql.pairs_of(
            conn, rt.id, anchors)]
        products = {s.product_id: s for s in map(_stats, sql.products(conn, rt.id, sorted(
            set(anchors) | {p.other_id for p in pairs})))}
        return rank.bought_together(anchors, pairs, excluded, products, limit)
    if kind == "popular":
        build_row = sql.last_build(conn, rt.id)
        window = int(build_row[4]) if build_row is not None else POPULAR_WINDOW_MS
        rows = [Popular(str(s), str(p), int(b), float(u)) for s, p, b, u in
                sql.popular(conn, rt.id, segment or EVERYONE, limit + len(excluded))]
        products = {s.product_id: s for s in map(_stats, sql.products(conn, rt.id, [r.product_id for r in rows]))}
        return rank.popular(rows, excluded, products, limit, window)
    products = {s.product_id: s for s in map(_stats, sql.products(conn, rt.id, sorted(mine.bought)))}
    return rank.replenishment(mine, products, now, limit)


def due(conn: Conn, ws: str, before: Millis, limit: int = 10_000) -> list[Due]:
    """Everyone due to buy a product again by ``before`` (from the last build), soonest first."""
    return [Due(str(pid), str(product), None if name is None else str(name), int(last), int(due_at))
            for pid, product, name, last, _interval, due_at in sql.due(conn, ws, before, limit)]


def due_allowed(conn: Conn, rt: WorkspaceRuntime, before: Millis, limit: int, now: Millis) -> tuple[list[Due], int]:
    """The first ``limit`` people due by ``before`` (``due``), kept only where they allow personalization at
    ``now`` (their purchase history is used to speak to them), and how many of those were withheld."""
    listed = due(conn, rt.id, before, limit)
    allowed = personalized(conn, rt, (d.profile_id for d in listed), now)
    kept = [d for d in listed if d.profile_id in allowed]
    return kept, len(listed) - len(kept)


def replenishment_message(d: Due, user_id: str | None, anonymous_id: str | None, now: Millis) -> Message:
    """The ``Replenishment Due`` track message for ``d``, addressed by one of the person's identifiers."""
    raw: JsonObject = {"type": "track", "event": REPLENISHMENT_EVENT, "messageId": d.message_id,
                       "timestamp": to_iso(now),
                       "properties": {"product_id": d.product_id, "product_name": d.product_name,
                                      "due_at": to_iso(d.due_at), "last_purchased_at": to_iso(d.last_purchased_at)}}
    if user_id is not None:
        raw["userId"] = user_id
    else:
        raw["anonymousId"] = anonymous_id
    return parse_message(raw, implied_type=None, received_at=now, batch_sent_at=None, batch_context=None,
                         new_id=lambda: d.message_id)


def emit(rapport: Rapport, ws: WorkspaceId, before: Millis | None = None, *, lead_ms: Millis = LEAD_MS,
         chunk: int = 500) -> EmitReport:
    """Ingest a ``Replenishment Due`` event for everyone due by ``before`` (default now + ``lead_ms``) who allows
    personalization now (the event personalizes the messages they get), through the normal ingestion path
    (journeys can start on it); the message id makes it once per person, product and due date, so running it
    again stores nothing new."""
    now = rapport.clock.now_ms()
    until = now + lead_ms if before is None else before
    rt = rapport.runtime(ws)
    listed = rapport.db.read(lambda c: due(c, ws, until))
    allowed = rapport.db.read(lambda c: personalized(c, rt, (d.profile_id for d in listed), now))
    ids = sorted(allowed)
    handles = rapport.db.read(lambda c: sql.handles(c, ws, ids))
    messages: list[Message] = []
    unreachable = not_allowed = 0
    for d in listed:
        if d.profile_id not in allowed:
            not_allowed += 1
            continue
        user_id, anonymous_id = handles.get(d.profile_id, (None, None))
        if user_id is None and anonymous_id is None:
            unreachable += 1
            continue
        messages.append(replenishment_message(d, user_id, anonymous_id, now))
    tally = IngestTally()
    for start in range(0, len(messages), chunk):
        tally.add(rapport.ingest(ws, messages[start:start + chunk]).result())
    return EmitReport(len(listed), tally.accepted, tally.duplicates, unreachable, not_allowed)


def build_now(rapport: Rapport, ws: WorkspaceId, *, window_ms: Millis = POPULAR_WINDOW_MS) -> BuildReport:
    """Build at the clock's now: computed on a read snapshot, so the writer is held only while the tables are
    replaced."""
    rt = rapport.runtime(ws)
    now = rapport.clock.now_ms()
    built = rapport.db.read(lambda c: compute(c, rt, now, window_ms=window_ms))
    return rapport.db.write(lambda c: store(c, ws, built))
