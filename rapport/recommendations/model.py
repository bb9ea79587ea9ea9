"""Frozen values of recommendations: what was bought or returned, the prebuilt aggregates, and a recommendation.

Read from event properties (``rapport.demo.shop`` shapes, the Segment e-commerce spec):

- ``Order Completed``: ``products[]`` of ``{product_id, product_name, category, price, quantity}``;
- ``Order Refunded``: ``products[]`` (or, without it, the whole order named by ``order_id``) is returned;
- ``Product Returned``: ``product_id`` (or ``products[]``);
- ``Product Viewed``, ``Cart Added``: ``product_id`` (the person's interest, used as anchors for bought together).

A value that is not a plain string or number (a sealed personal value) is ignored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, TypeAlias

from rapport.types import DAY, Json, JsonObject, Millis

Kind: TypeAlias = Literal["bought_together", "popular", "replenishment"]
KINDS: tuple[Kind, ...] = ("bought_together", "popular", "replenishment")
ORDER = "Order Completed"
REFUND = "Order Refunded"
RETURN = "Product Returned"
INTEREST = ("Product Viewed", "Cart Added")
HISTORY_EVENTS = (ORDER, REFUND, RETURN, *INTEREST)
"""The events a person's own history is read from when serving."""
EVERYONE = "*"
"""The ``rec_popular`` segment of everyone who bought (popular without a segment)."""

POPULAR_WINDOW_MS: Millis = 30 * DAY
MIN_TOGETHER = 2
"""Bought together needs at least this many orders holding both products (minimum support)."""
MIN_LIFT = 1.0
"""Bought together recommends a pair only above this lift: at 1 the products go together no more than chance."""
TOP_PAIRS = 50
"""Pairs kept per product, by lift."""
MAX_BASKET = 50
"""Orders with more distinct products than this add no pairs (bulk orders say little and cost n² pairs)."""
MIN_POPULAR_BUYERS = 2
"""A product is popular in a segment only once this many distinct members bought it: a single person's purchase
is never shown to others as what their segment buys."""
MIN_REPEAT_BUYERS = 3
"""A product has a repurchase interval only once this many people bought it at least twice."""
SAME_PURCHASE_MS: Millis = DAY
"""Purchases of a product by one person less than a day apart count as one (a split order, a second basket)."""
LEAD_MS: Millis = 3 * DAY
"""Replenishment: a product is due once its due date is at most this far ahead."""
INTEREST_WINDOW_MS: Millis = 30 * DAY
"""Products viewed or carted this recently anchor bought-together lists."""
PERSONALIZATION = "personalization"
"""The purpose a person must allow to get their own lists, per-person purchase rows and replenishment events."""
NOT_ALLOWED = "personalization not allowed"
"""Why a person got no recommendations: they do not allow ``PERSONALIZATION``."""


@dataclass(frozen=True, slots=True)
class Line:
    """One product of an order."""

    product_id: str
    name: str | None
    category: str | None
    quantity: float


@dataclass(frozen=True, slots=True)
class Order:
    """A completed order of one person."""

    profile_id: str
    at: Millis
    order_id: str | None
    lines: tuple[Line, ...]

    @property
    def products(self) -> frozenset[str]:
        return frozenset(line.product_id for line in self.lines)


@dataclass(frozen=True, slots=True)
class Returned:
    """Products a person returned (or had refunded) at ``at``."""

    profile_id: str
    at: Millis
    products: frozenset[str]


@dataclass(frozen=True, slots=True)
class Pair:
    """Bought together: of the orders holding ``product_id``, ``confidence`` also held ``other_id``;
    ``lift`` is that against ``other_id``'s share of all orders."""

    product_id: str
    other_id: str
    together: int
    confidence: float
    lift: float


@dataclass(frozen=True, slots=True)
class ProductStats:
    product_id: str
    name: str | None
    category: str | None
    orders: int
    buyers: int
    units: float
    repeat_buyers: int
    interval_ms: Millis | None


@dataclass(frozen=True, slots=True)
class Popular:
    segment: str
    product_id: str
    buyers: int
    units: float


@dataclass(frozen=True, slots=True)
class LastPurchase:
    """A person's last purchase of a product, for replenishment."""

    profile_id: str
    product_id: str
    last_at: Millis
    purchases: int
    returned_at: Millis | None


@dataclass(frozen=True, slots=True)
class Recommendation:
    """One recommended product: a score (higher first; its meaning depends on the kind) and why."""

    product_id: str
    score: float
    reason: str
    product_name: str | None = None
    due_at: Millis | None = None

    def to_json(self) -> JsonObject:
        from rapport.clock import to_iso

        out: JsonObject = {"product_id": self.product_id, "product_name": self.product_name,
                           "score": round(self.score, 6), "reason": self.reason}
        if self.due_at is not None:
            out["due_at"] = to_iso(self.due_at)
        return out


def _text(value: Json) -> str | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float):
        return str(value)
    return None


def _quantity(value: Json) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return 1.0


def lines_of(properties: JsonObject) -> tuple[Line, ...]:
    """The products of an order's (or a refund's) properties, merged by product id."""
    raw = properties.get("products")
    merged: dict[str, Line] = {}
    if isinstance(raw, list):
        for item in raw:
            if not isinstance(item, dict):
                continue
            pid = _text(item.get("product_id"))
            if pid is None:
                continue
            line = Line(pid, _text(item.get("product_name")), _text(item.get("category")),
                        _quantity(item.get("quantity")))
            prior = merged.get(pid)
            merged[pid] = line if prior is None else Line(pid, prior.name or line.name, prior.category or line.category,
                                                          prior.quantity + line.quantity)
    return tuple(merged.values())


def product_ids(properties: JsonObject) -> frozenset[str]:
    """``product_id`` and the ids of ``products[]``."""
    found = {line.product_id for line in lines_of(properties)}
    single = _text(properties.get("product_id"))
    if single is not None:
        found.add(single)
    return frozenset(found)


def order_of(profile_id: str, at: Millis, properties: JsonObject) -> Order | None:
    """An ``Order Completed`` event as an order (``None`` when it names no product)."""
    lines = lines_of(properties)
    if not lines:
        return None
    return Order(profile_id, at, _text(properties.get("order_id")), lines)


def returned_of(profile_id: str, at: Millis, name: str, properties: JsonObject,
                orders: dict[str, Order]) -> Returned | None:
    """A refund or return as the products it gives back; a refund naming only its order returns the whole order
    (``orders`` by order id)."""
    products = product_ids(properties)
    if not products and name == REFUND:
        order = orders.get(_text(properties.get("order_id")) or "")
        if order is not None:
            products = order.products
    return Returned(profile_id, at, products) if products else None


@dataclass(frozen=True, slots=True)
class Served:
    """A person's recommendations, best first; none, with the reason in ``withheld``, when their consent does not
    allow them."""

    items: tuple[Recommendation, ...]
    withheld: str | None = None

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_json(self) -> JsonObject:
        """``recommendations``, and ``consent`` (the reason) when they were withheld."""
        out: JsonObject = {"recommendations": [r.to_json() for r in self.items]}
        if self.withheld is not None:
            out["consent"] = self.withheld
        return out
