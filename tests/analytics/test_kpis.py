"""KPI counting and small-cell suppression on hand-computed fixtures (pure)."""

from __future__ import annotations

from rapport.analytics.kpis import (
    ORDER,
    UNSUBSCRIBED,
    Counts,
    Outcome,
    Suppression,
    Touch,
    count,
    order_revenue,
    suppress,
    values,
)
from rapport.types import DAY

T0 = 1_700_000_000_000


def at(days: float) -> int:
    return T0 + int(days * DAY)


TOUCHES = [
    Touch("p1", ("j",), at(0), opened=True, clicked=True),
    Touch("p2", ("j",), at(0), opened=True),
    Touch("p3", ("j",), at(0)),
    Touch("p4", ("j",), at(0)), Touch("p4", ("j",), at(4)),
    Touch("p5", ("k",), at(0)), Touch("p5", ("k",), at(1)),
]
OUTCOMES = [
    Outcome("p1", ORDER, at(1), "o1", 50.0),       # converts, counts 50
    Outcome("p1", ORDER, at(5), "o2", 99.0),       # outside p1's 3-day window
    Outcome("p2", UNSUBSCRIBED, at(2), "u1"),
    Outcome("p3", ORDER, at(-1), "o3", 70.0),      # before the message
    Outcome("p4", ORDER, at(6), "o4", 30.0),       # within the window of p4's second message
    Outcome("p5", ORDER, at(2), "o5", 10.0),       # in both of p5's windows: counted once
]


def test_counts_match_the_hand_computation() -> None:
    got = count(TOUCHES, OUTCOMES, 3 * DAY)
    assert got["j"] == Counts(recipients=4, opened=2, clicked=1, converted=2, unsubscribed=1, revenue=80.0)
    assert got["k"] == Counts(1, 0, 0, 1, 0, 10.0)
    row = values(got["j"], Suppression(False))
    assert row == {"recipients": 4, "open_rate": 0.5, "ctr": 0.25, "conversion_rate": 0.5,
                   "revenue_per_recipient": 20.0, "unsubscribe_rate": 0.25, "suppressed": False, "reason": None}


def test_a_longer_window_attributes_more() -> None:
    got = count(TOUCHES, OUTCOMES, 5 * DAY)
    assert got["j"].converted == 2 and got["j"].revenue == 50.0 + 99.0 + 30.0


def test_a_click_counts_as_an_open_and_goal_events_convert() -> None:
    got = count([Touch("p", ("c",), at(0), clicked=True, goal="Signed Up")],
                [Outcome("p", "Signed Up", at(1), "s1"), Outcome("p", ORDER, at(1), "o", 5.0)], 3 * DAY)
    assert got["c"] == Counts(1, 1, 1, 1, 0, 5.0)


def test_cells_under_the_minimum_are_suppressed_at_9_not_at_10() -> None:
    hidden = suppress({"nine": 9, "ten": 10}, {}, 10)
    assert hidden == {"nine": Suppression(True, "fewer than 10 recipients"), "ten": Suppression(False)}
    row = values(Counts(9, 9, 0, 0, 0, 0.0), hidden["nine"])
    assert row["suppressed"] is True and row["reason"] == "fewer than 10 recipients"
    assert all(row[k] is None for k in ("recipients", "open_rate", "ctr", "conversion_rate",
                                        "revenue_per_recipient", "unsubscribe_rate"))


def test_complementary_suppression_hides_the_next_smallest_cell_of_the_group() -> None:
    recipients = {"small": 4, "mid": 12, "big": 30, "alone": 11}
    groups: dict[str, str | None] = {"small": "g", "mid": "g", "big": "g", "alone": None}
    hidden = suppress(recipients, groups, 10)
    assert [c for c in recipients if hidden[c].suppressed] == ["small", "mid"]
    assert "complementary" in (hidden["mid"].reason or "")
    # two small cells hidden whose sum (12) reaches the minimum: nothing more is hidden
    hidden = suppress({"a": 3, "b": 9, "c": 50}, {"a": "g", "b": "g", "c": "g"}, 10)
    assert [c for c in ("a", "b", "c") if hidden[c].suppressed] == ["a", "b"]
    assert hidden["b"].reason == "fewer than 10 recipients"
    # cells that overlap freely get no complement
    hidden = suppress({"a": 3, "b": 40}, {"a": None, "b": None}, 10)
    assert not hidden["b"].suppressed


def test_order_revenue() -> None:
    assert order_revenue({"revenue": 12.5, "total": 99}) == 12.5
    assert order_revenue({"total": 20}) == 20.0
    assert order_revenue({"products": [{"price": 2.5, "quantity": 2}, {"price": 1}, {"price": True}]}) == 6.0


def _derivable(total: int, recipients: dict[str, int], hidden: dict[str, Suppression]) -> int:
    """What subtracting the shown cells from the total gives away: the people of the hidden cells."""
    return total - sum(n for c, n in recipients.items() if not hidden[c].suppressed)


def test_an_empty_cell_does_not_stand_in_for_a_complement() -> None:
    # '*' = 107: with A (3) and the empty Z hidden, showing C (104) would give A = 107 - 104
    recipients = {"*": 107, "A": 3, "Z": 0, "C": 104}
    hidden = suppress(recipients, {"A": "g", "Z": "g", "C": "g"}, 10)
    assert hidden["A"].suppressed and hidden["Z"].suppressed
    assert hidden["C"].suppressed and "complementary" in (hidden["C"].reason or "")
    assert not hidden["*"].suppressed
    # a group with only empty cells suppressed has nothing to protect
    hidden = suppress({"Z": 0, "B": 20, "C": 30}, {"Z": "g", "B": "g", "C": "g"}, 10)
    assert [c for c in ("Z", "B", "C") if hidden[c].suppressed] == ["Z"]


def test_complements_are_added_until_the_hidden_cells_hold_the_minimum() -> None:
    # A (3) and B (4) hidden: showing C (100) would give A + B = 7, under the minimum
    recipients = {"A": 3, "B": 4, "C": 100}
    hidden = suppress({"*": 107, **recipients}, {"A": "g", "B": "g", "C": "g"}, 10)
    assert all(hidden[c].suppressed for c in recipients)
    assert "complementary" in (hidden["C"].reason or "")
    # one small cell: the smallest shown cells are added one by one until the hidden people reach 10
    recipients = {"a": 2, "b": 3, "c": 4, "d": 12, "e": 40}
    hidden = suppress(recipients, dict.fromkeys(recipients, "g"), 10)
    # a, b and c are small (9 people in all); d makes the hidden sum 21
    assert [c for c in recipients if hidden[c].suppressed] == ["a", "b", "c", "d"]
    assert _derivable(61, recipients, hidden) == 21
    # 5 + 4 = 9 hidden: one complement (the smallest shown cell, 11) is enough
    recipients = {"a": 5, "b": 4, "c": 11, "d": 12}
    hidden = suppress(recipients, dict.fromkeys(recipients, "g"), 10)
    assert [c for c in recipients if hidden[c].suppressed] == ["a", "b", "c"]
