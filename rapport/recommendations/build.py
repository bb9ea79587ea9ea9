"""The recommendation aggregates, computed from orders and returns in one pass (pure).

Bought together (item-item co-occurrence over orders): with ``N`` orders, ``n(a)`` the orders holding ``a`` and
``n(a, b)`` those holding both,

- ``confidence(a → b) = n(a, b) / n(a)``: the share of ``a``'s orders that also held ``b``;
- ``lift(a → b) = n(a, b) · N / (n(a) · n(b))``: how much more often than chance they go together.

Pairs need ``n(a, b) ≥ MIN_TOGETHER`` (minimum support, so one odd order recommends nothing) and are ranked by
lift, then support; the best ``TOP_PAIRS`` are kept per product. Orders with more than ``MAX_BASKET`` distinct
products count in ``N`` and ``n(a)`` but add no pairs.

Repurchase interval of a product: the median of the gaps between consecutive purchases of it by the same person
(purchases less than ``SAME_PURCHASE_MS`` apart count as one), over everyone; only for products at least
``MIN_REPEAT_BUYERS`` people bought twice or more.

Popular in a segment: distinct buyers (then units) among the segment's members over a window; a product needs
``MIN_POPULAR_BUYERS`` buyers.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from itertools import combinations, pairwise

from rapport.recommendations.model import (
    EVERYONE,
    MAX_BASKET,
    MIN_POPULAR_BUYERS,
    MIN_REPEAT_BUYERS,
    MIN_TOGETHER,
    SAME_PURCHASE_MS,
    TOP_PAIRS,
    LastPurchase,
    Order,
    Pair,
    Popular,
    ProductStats,
    Returned,
)
from rapport.types import Millis


def cooccurrence(orders: Iterable[Order], *, min_together: int = MIN_TOGETHER, top: int = TOP_PAIRS,
                 max_basket: int = MAX_BASKET) -> list[Pair]:
    """Bought-together pairs in both directions (see the module docstring), best first per product."""
    total = 0
    single: Counter[str] = Counter()
    both: Counter[tuple[str, str]] = Counter()
    for order in orders:
        basket = sorted(order.products)
        if not basket:
            continue
        total += 1
        single.update(basket)
        if len(basket) <= max_basket:
            both.update(combinations(basket, 2))
    by_product: dict[str, list[Pair]] = defaultdict(list)
    for (a, b), together in both.items():
        if together < min_together:
            continue
        for x, y in ((a, b), (b, a)):
            lift = together * total / (single[x] * single[y])
            by_product[x].append(Pair(x, y, together, together / single[x], lift))
    out: list[Pair] = []
    for product in sorted(by_product):
        ranked = sorted(by_product[product], key=lambda p: (-p.lift, -p.together, p.other_id))
        out.extend(ranked[:top])
    return out


def purchase_times(orders: Iterable[Order]) -> dict[tuple[str, str], list[Millis]]:
    """(person, product) -> the times the person bought it, oldest first, near-simultaneous ones as one."""
    raw: dict[tuple[str, str], list[Millis]] = defaultdict(list)
    for order in orders:
        for product in order.products:
            raw[(order.profile_id, product)].append(order.at)
    out: dict[tuple[str, str], list[Millis]] = {}
    for key, times in raw.items():
        kept: list[Millis] = []
        for at in sorted(times):
            if not kept or at - kept[-1] >= SAME_PURCHASE_MS:
                kept.append(at)
        out[key] = kept
    return out


def intervals(times: Mapping[tuple[str, str], Sequence[Millis]], *,
              min_repeat_buyers: int = MIN_REPEAT_BUYERS) -> dict[str, tuple[int, Millis | None]]:
    """Product -> (repeat buyers, median repurchase interval or ``None`` below the minimum)."""
    gaps: dict[str, list[Millis]] = defaultdict(list)
    repeat: Counter[str] = Counter()
    for (_person, product), kept in times.items():
        if len(kept) < 2:
            continue
        repeat[product] += 1
        gaps[product].extend(b - a for a, b in pairwise(kept))
    return {product: (repeat[product],
                      round(statistics.median(gaps[product])) if repeat[product] >= min_repeat_buyers else None)
            for product in repeat}


def product_stats(orders: Sequence[Order], times: Mapping[tuple[str, str], Sequence[Millis]], *,
                  min_repeat_buyers: int = MIN_REPEAT_BUYERS) -> list[ProductStats]:
    """Per product: orders, buyers, units, the latest name and category, and the repurchase interval."""
    count: Counter[str] = Counter()
    units: dict[str, float] = defaultdict(float)
    buyers: dict[str, set[str]] = defaultdict(set)
    named: dict[str, tuple[str | None, str | None]] = {}
    for order in sorted(orders, key=lambda o: o.at):
        for line in order.lines:
            count[line.product_id] += 1
            units[line.product_id] += line.quantity
            buyers[line.product_id].add(order.profile_id)
            old = named.get(line.product_id, (None, None))
            named[line.product_id] = (line.name or old[0], line.category or old[1])
    repeat = intervals(times, min_repeat_buyers=min_repeat_buyers)
    return [ProductStats(p, *named[p], count[p], len(buyers[p]), units[p], *repeat.get(p, (0, None)))
            for p in sorted(count)]


def popularity(orders: Iterable[Order], members: Mapping[str, frozenset[str] | set[str]], since: Millis,
               until: Millis, *, min_buyers: int = MIN_POPULAR_BUYERS) -> list[Popular]:
    """Per segment (and ``EVERYONE``), the products its members bought in ``[since, until]``: distinct buyers
    and units, products with fewer than ``min_buyers`` buyers left out."""
    buyers: dict[tuple[str, str], set[str]] = defaultdict(set)
    units: dict[tuple[str, str], float] = defaultdict(float)
    in_segments: dict[str, list[str]] = defaultdict(list)
    for segment, people in members.items():
        for person in people:
            in_segments[person].append(segment)
    for order in orders:
        if not since <= order.at <= until:
            continue
        for segment in (EVERYONE, *in_segments.get(order.profile_id, ())):
            for line in order.lines:
                buyers[(segment, line.product_id)].add(order.profile_id)
                units[(segment, line.product_id)] += line.quantity
    return [Popular(segment, product, len(who), units[(segment, product)])
            for (segment, product), who in sorted(buyers.items()) if len(who) >= min_buyers]


def last_purchases(times: Mapping[tuple[str, str], Sequence[Millis]],
                   returns: Iterable[Returned]) -> list[LastPurchase]:
    """Each person's last purchase of each product, with the latest return of it made at or after that purchase."""
    returned: dict[tuple[str, str], Millis] = {}
    for r in returns:
        for product in r.products:
            key = (r.profile_id, product)
            returned[key] = max(returned.get(key, r.at), r.at)
    out = []
    for (person, product), kept in sorted(times.items()):
        last = kept[-1]
        back = returned.get((person, product))
        out.append(LastPurchase(person, product, last, len(kept), back if back is not None and back >= last else None))
    return out
