"""Ranking one person's recommendations from the prebuilt aggregates and their own history (pure).

Every list leaves out what the person returned; bought-together and popular lists also leave out what they
already bought (replenishment is about buying it again, unless they returned it since).

- bought together: anchors are the products the person bought, plus those they viewed or put in a cart in the
  last ``INTEREST_WINDOW_MS`` (or one product asked for); a candidate scores its best lift over the anchors, and
  only a lift above ``MIN_LIFT`` (1: bought together more often than chance) recommends it.
- popular: score is the number of distinct buyers among the segment's members (everyone without a segment).
- replenishment: a product is due when ``last purchase + interval ≤ now + lead``; score is the time since the
  last purchase over the interval (1.0 = due today; higher = overdue), most overdue first.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from rapport.recommendations.build import last_purchases, purchase_times
from rapport.recommendations.model import (
    EVERYONE,
    INTEREST_WINDOW_MS,
    LEAD_MS,
    MIN_LIFT,
    Order,
    Pair,
    Popular,
    ProductStats,
    Recommendation,
    Returned,
)
from rapport.types import DAY, Millis


@dataclass(frozen=True, slots=True)
class History:
    """One person's orders, returns and recent interest (product id, when), read from their events."""

    orders: tuple[Order, ...]
    returns: tuple[Returned, ...]
    interest: tuple[tuple[str, Millis], ...] = ()

    @property
    def bought(self) -> frozenset[str]:
        return frozenset(p for order in self.orders for p in order.products)

    @property
    def returned(self) -> frozenset[str]:
        return frozenset(p for r in self.returns for p in r.products)

    def anchors(self, now: Millis) -> list[str]:
        """Products that anchor bought-together lists, most recent first."""
        seen: dict[str, Millis] = {}
        for order in self.orders:
            for p in order.products:
                seen[p] = max(seen.get(p, order.at), order.at)
        for p, at in self.interest:
            if now - INTEREST_WINDOW_MS <= at <= now:
                seen[p] = max(seen.get(p, at), at)
        return sorted(seen, key=lambda p: (-seen[p], p))


def _name(products: Mapping[str, ProductStats], product: str) -> str:
    stats = products.get(product)
    return stats.name if stats is not None and stats.name else product


def bought_together(anchors: Sequence[str], pairs: Iterable[Pair], excluded: frozenset[str],
                    products: Mapping[str, ProductStats], limit: int) -> list[Recommendation]:
    """Candidates paired with any anchor, each scored by its best lift above ``MIN_LIFT`` (ties: more orders
    together)."""
    wanted = set(anchors)
    best: dict[str, Pair] = {}
    for pair in pairs:
        if pair.product_id not in wanted or pair.other_id in excluded or pair.other_id in wanted \
                or pair.lift <= MIN_LIFT:
            continue
        held = best.get(pair.other_id)
        if held is None or (pair.lift, pair.together) > (held.lift, held.together):
            best[pair.other_id] = pair
    ranked = sorted(best.values(), key=lambda p: (-p.lift, -p.together, p.other_id))[:limit]
    return [Recommendation(
        p.other_id, p.lift,
        f"bought together with {_name(products, p.product_id)} in {p.together} orders "
        f"({p.confidence:.0%} of its orders, lift {p.lift:.2f})",
        products[p.other_id].name if p.other_id in products else None) for p in ranked]


def popular(rows: Iterable[Popular], excluded: frozenset[str], products: Mapping[str, ProductStats],
            limit: int, window_ms: Millis) -> list[Recommendation]:
    """The segment's most bought products the person has neither bought nor returned."""
    kept = sorted((r for r in rows if r.product_id not in excluded), key=lambda r: (-r.buyers, -r.units,
                                                                                   r.product_id))[:limit]
    days = window_ms // DAY
    return [Recommendation(
        r.product_id, float(r.buyers),
        f"bought by {r.buyers} people in the last {days} days" if r.segment == EVERYONE
        else f"bought by {r.buyers} members of segment {r.segment!r} in the last {days} days",
        products[r.product_id].name if r.product_id in products else None) for r in kept]


def replenishment(history: History, products: Mapping[str, ProductStats], now: Millis, limit: int, *,
                  lead_ms: Millis = LEAD_MS) -> list[Recommendation]:
    """The person's products due for repurchase (see the module docstring)."""
    due: list[Recommendation] = []
    for last in last_purchases(purchase_times(history.orders), history.returns):
        stats = products.get(last.product_id)
        if stats is None or stats.interval_ms is None or stats.interval_ms <= 0 or last.returned_at is not None:
            continue
        due_at = last.last_at + stats.interval_ms
        if due_at > now + lead_ms:
            continue
        due.append(Recommendation(
            last.product_id, (now - last.last_at) / stats.interval_ms,
            f"last bought {(now - last.last_at) // DAY} days ago; people buy it again every "
            f"{round(stats.interval_ms / DAY)} days", stats.name, due_at))
    return sorted(due, key=lambda r: (-r.score, r.product_id))[:limit]
