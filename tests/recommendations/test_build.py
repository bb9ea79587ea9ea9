"""Recommendation aggregates and ranking on small hand-computed cases (pure)."""

from __future__ import annotations

import pytest

from rapport.recommendations.build import cooccurrence, intervals, last_purchases, popularity, purchase_times
from rapport.recommendations.model import (
    EVERYONE,
    LEAD_MS,
    Line,
    Order,
    Pair,
    ProductStats,
    Returned,
    lines_of,
    order_of,
    returned_of,
)
from rapport.recommendations.rank import History, bought_together, popular, replenishment
from rapport.types import DAY, HOUR

T0 = 1_700_000_000_000


def order(person: str, day: float, *products: str) -> Order:
    return Order(person, T0 + int(day * DAY), None, tuple(Line(p, p.upper(), None, 1.0) for p in products))


BASKETS = [order("p1", 0, "a", "b", "c"), order("p2", 0, "a", "b"), order("p3", 0, "a", "c"),
           order("p4", 0, "b", "c"), order("p5", 0, "a", "b", "d"), order("p6", 0, "d")]
"""N = 6; n(a) = 4, n(b) = 4, n(c) = 3, n(d) = 2; n(a,b) = 3, n(a,c) = 2, n(b,c) = 2, n(a,d) = n(b,d) = 1."""


def test_cooccurrence_confidence_and_lift_match_the_hand_computation() -> None:
    pairs = {(p.product_id, p.other_id): p for p in cooccurrence(BASKETS)}
    assert set(pairs) == {("a", "b"), ("b", "a"), ("a", "c"), ("c", "a"), ("b", "c"), ("c", "b")}
    assert pairs[("a", "b")] == Pair("a", "b", 3, 0.75, 1.125)       # 3/4; 3·6 / (4·4)
    assert pairs[("a", "c")] == Pair("a", "c", 2, 0.5, 1.0)          # 2/4; 2·6 / (4·3)
    assert pairs[("c", "a")].confidence == pytest.approx(2 / 3)       # 2/3; lift is symmetric
    assert pairs[("c", "a")].lift == pytest.approx(1.0)
    assert [p.other_id for p in cooccurrence(BASKETS) if p.product_id == "a"] == ["b", "c"]


def test_minimum_support_and_top_k() -> None:
    with_single = {(p.product_id, p.other_id) for p in cooccurrence(BASKETS, min_together=1)}
    assert ("a", "d") in with_single and ("d", "b") in with_single
    # lift(a → d) = 1 · 6 / (4 · 2) = 0.75: below b (1.125) and c (1.0)
    assert [p.other_id for p in cooccurrence(BASKETS, min_together=1, top=1) if p.product_id == "a"] == ["b"]
    assert [p.other_id for p in cooccurrence(BASKETS, min_together=1) if p.product_id == "a"] == ["b", "c", "d"]
    assert [(p.other_id, p.lift) for p in cooccurrence(BASKETS, min_together=1)
            if p.product_id == "d"] == [("a", 0.75), ("b", 0.75)]


def test_big_baskets_count_but_add_no_pairs() -> None:
    big = [order("p1", 0, "a", "b", "c")] * 3
    assert cooccurrence(big, max_basket=2) == []
    assert len(cooccurrence(big, max_basket=3)) == 6


def test_bought_together_excludes_bought_and_returned_items() -> None:
    pairs = cooccurrence(BASKETS)
    stats = {p: ProductStats(p, p.upper(), None, 1, 1, 1.0, 0, None) for p in "abcd"}
    got = bought_together(["a"], pairs, frozenset(), stats, 10)
    assert [(r.product_id, r.score) for r in got] == [("b", 1.125)]  # c: lift 1.0, no better than chance
    assert got[0].reason == "bought together with A in 3 orders (75% of its orders, lift 1.12)"
    assert bought_together(["a"], pairs, frozenset({"b"}), stats, 10) == []
    assert [r.product_id for r in bought_together(["c", "d"], pairs, frozenset(), stats, 10)] == []
    # an anchor is never recommended back; the best anchor wins for a shared candidate
    assert bought_together(["a", "b"], pairs, frozenset(), stats, 10) == []
    lifted = [Pair("a", "x", 2, 0.5, 2.0), Pair("b", "x", 3, 0.5, 3.0), Pair("b", "a", 3, 0.7, 1.5)]
    assert [(r.product_id, r.score) for r in bought_together(["a", "b"], lifted, frozenset(), stats, 10)] == [
        ("x", 3.0)]
    assert [r.product_id for r in bought_together(["b"], lifted, frozenset({"x"}), stats, 10)] == ["a"]


def test_a_history_excludes_what_was_bought_or_returned() -> None:
    orders = {"o1": Order("p", T0, "o1", (Line("x", None, None, 1), Line("y", None, None, 1)))}
    refund = returned_of("p", T0 + DAY, "Order Refunded", {"order_id": "o1"}, orders)
    assert refund == Returned("p", T0 + DAY, frozenset({"x", "y"}))
    ret = returned_of("p", T0 + DAY, "Product Returned", {"product_id": "z"}, {})
    assert ret == Returned("p", T0 + DAY, frozenset({"z"}))
    history = History((order("p", 0, "a"),), (ret,))
    assert history.bought | history.returned == {"a", "z"}
    rows = popularity([order(f"q{i}", 0, p) for i in range(3) for p in ("a", "b", "z")], {}, T0, T0 + DAY)
    got = popular(rows, history.bought | history.returned, {}, 10, 30 * DAY)
    assert [(r.product_id, r.score) for r in got] == [("b", 3.0)]
    assert got[0].reason == "bought by 3 people in the last 30 days"


def test_order_lines_merge_by_product_and_ignore_sealed_values() -> None:
    lines = lines_of({"products": [{"product_id": "a", "quantity": 2}, {"product_id": "a"},
                                   {"product_id": {"$pii": "sealed"}}, {"product_name": "no id"}, "junk"]})
    assert lines == (Line("a", None, None, 3.0),)
    assert order_of("p", T0, {"products": []}) is None


def test_popular_in_segment_counts_only_its_members_in_the_window() -> None:
    orders = [order("m1", 1, "a"), order("m2", 1, "a"), order("m1", 1, "b"), order("x1", 1, "b"),
              order("x2", 1, "b"), order("m3", -40, "c"), order("m4", -40, "c")]
    rows = popularity(orders, {"vip": {"m1", "m2", "m3", "m4"}}, T0 - 30 * DAY + DAY, T0 + 2 * DAY)
    by = {(r.segment, r.product_id): (r.buyers, r.units) for r in rows}
    assert by == {("vip", "a"): (2, 2.0), (EVERYONE, "a"): (2, 2.0), (EVERYONE, "b"): (3, 3.0)}
    # b has one member buyer: under the minimum of two, never shown as what vip buys


def test_repurchase_interval_is_the_median_gap_with_a_minimum_of_repeat_buyers() -> None:
    orders = [order("p1", 0, "x"), order("p1", 10, "x"), order("p1", 30, "x"),  # gaps 10, 20
              order("p2", 0, "x"), order("p2", 14, "x"),                       # gap 14
              order("p3", 5, "x"), order("p3", 5.5, "x"), order("p3", 20, "x"),  # same day once; gap 15
              order("p4", 3, "x"), order("p1", 0, "y"), order("p1", 7, "y")]
    times = purchase_times(orders)
    assert times[("p3", "x")] == [T0 + 5 * DAY, T0 + 20 * DAY]
    found = intervals(times)
    assert found["x"] == (3, int(14.5 * DAY))           # median of 10, 14, 15, 20 days
    assert found["y"] == (1, None)                        # one repeat buyer: below the minimum of 3
    assert intervals(times, min_repeat_buyers=4)["x"] == (3, None)


def test_due_dates_at_the_boundary() -> None:
    stats = {"x": ProductStats("x", "X", None, 5, 3, 5.0, 3, 10 * DAY)}
    history = History((order("p", 0, "x"),), ())
    due_at = T0 + 10 * DAY
    at_edge = replenishment(history, stats, due_at - LEAD_MS, 10)
    assert [(r.product_id, r.due_at) for r in at_edge] == [("x", due_at)]
    assert at_edge[0].score == pytest.approx(0.7)
    assert at_edge[0].reason == "last bought 7 days ago; people buy it again every 10 days"
    assert replenishment(history, stats, due_at - LEAD_MS - 1, 10) == []
    assert replenishment(history, stats, due_at - HOUR, 10, lead_ms=0) == []
    assert len(replenishment(history, stats, due_at, 10, lead_ms=0)) == 1


def test_replenishment_skips_products_returned_since_the_last_purchase() -> None:
    stats = {"x": ProductStats("x", "X", None, 5, 3, 5.0, 3, 10 * DAY)}
    back = Returned("p", T0 + DAY, frozenset({"x"}))
    assert replenishment(History((order("p", 0, "x"),), (back,)), stats, T0 + 20 * DAY, 10) == []
    again = History((order("p", 0, "x"), order("p", 2, "x")), (back,))  # bought again after the return
    assert [r.product_id for r in replenishment(again, stats, T0 + 20 * DAY, 10)] == ["x"]
    rows = last_purchases(purchase_times([order("p", 0, "x")]), [back])
    assert rows[0].returned_at == T0 + DAY
