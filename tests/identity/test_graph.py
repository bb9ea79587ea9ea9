"""The reference identity graph: example histories and its laws under random events and unmerges."""

from __future__ import annotations

import copy

import pytest

from rapport.errors import ConflictError, NotFoundError
from rapport.identity.graph import IdentityGraph
from rapport.identity.model import DEFAULT_RULES, Conflict, ConflictRecord, Identifier, MergeRecord

U1, U2 = Identifier("user_id", "u1"), Identifier("user_id", "u2")
E1 = Identifier("email", "ada@example.com")
A1, A2, A3 = (Identifier("anonymous_id", f"a{n}") for n in (1, 2, 3))
D1 = Identifier("device_id", "d1")


def test_anonymous_visits_then_login_merge_into_the_oldest_profile() -> None:
    graph = IdentityGraph()
    assert graph.observe([A1], "e1").profile_id == "p1"
    assert graph.observe([A2], "e2").profile_id == "p2"
    assert graph.observe([A2, U1], "e3").profile_id == "p2"
    result = graph.observe([A1, U1, E1], "e4")
    assert result.profile_id == "p1"
    assert graph.merges() == [MergeRecord("m1", "p1", "p2", frozenset({A2, U1}), "e4")]
    assert graph.partition() == {frozenset({A1, A2, U1, E1})}
    assert {graph.profile_of_event(e) for e in ("e1", "e2", "e3", "e4")} == {"p1"}
    assert graph.live_profile("p2") == "p1"
    assert graph.holder_of(A2) == "p1"
    assert graph.holder_of(A3) is None


def test_unmerge_gives_the_loser_back_its_identifiers_and_events() -> None:
    graph = IdentityGraph()
    graph.observe([A1], "e1")
    graph.observe([A2, U1], "e2")
    graph.observe([A1, A2, E1], "e3")
    assert graph.unmerge("m1") == ("p1", "p2")
    assert graph.identifiers_of("p1") == {A1, E1}
    assert graph.identifiers_of("p2") == {A2, U1}
    assert (graph.profile_of_event("e1"), graph.profile_of_event("e2")) == ("p1", "p2")
    assert graph.profile_of_event("e3") == "p1"
    assert graph.merges()[0].undone
    assert graph.blocked() == {frozenset({"p1", "p2"})}


def test_unmerged_pair_is_not_merged_again() -> None:
    graph = IdentityGraph()
    graph.observe([A1], "e1")
    graph.observe([A2], "e2")
    graph.observe([A1, A2], "e3")
    graph.unmerge("m1")
    result = graph.observe([A2, A1, A3], "e4")
    assert result.merges == ()
    assert result.conflicts == (Conflict(A2, "p2", "p1", "blocked"),)
    assert graph.conflicts() == [ConflictRecord("e4", Conflict(A2, "p2", "p1", "blocked"))]
    assert graph.partition() == {frozenset({A1, A3}), frozenset({A2})}


def test_block_follows_both_sides_through_later_merges() -> None:
    graph = IdentityGraph()
    graph.observe([A1], "e1")  # p1
    graph.observe([A2], "e2")  # p2
    graph.observe([A3], "e3")  # p3
    graph.observe([A2, A3], "e4")  # m1: p2 <- p3
    graph.unmerge("m1")
    graph.observe([A1, A2], "e5")  # m2: p1 <- p2, so p1 now carries the p2 side of the block
    result = graph.observe([A1, A3], "e6")
    assert result.conflicts == (Conflict(A3, "p3", "p1", "blocked"),)
    assert graph.partition() == {frozenset({A1, A2}), frozenset({A3})}


def test_block_outlives_a_later_unmerge_of_one_side() -> None:
    graph = IdentityGraph()
    for n, identifier in enumerate([A1, A2, A3], start=1):
        graph.observe([identifier], f"e{n}")
    graph.observe([A1, A3], "e4")  # m1: p1 <- p3
    graph.observe([A3, A2], "e5")  # m2: p1 <- p2, through p3's identifier
    graph.unmerge("m2")
    assert graph.blocked() == {frozenset({"p1", "p2"}), frozenset({"p3", "p2"})}
    graph.unmerge("m1")
    # p3 was on the winner's side when p2 was split off: the same evidence does not rejoin them.
    result = graph.observe([A3, A2], "e6")
    assert result.conflicts == (Conflict(A3, "p3", "p2", "blocked"),)
    assert graph.partition() == {frozenset({A1}), frozenset({A2}), frozenset({A3})}


def test_third_profile_that_joined_one_side_is_free_again_once_unmerged() -> None:
    graph = IdentityGraph()
    for n, identifier in enumerate([A3, A1, A2], start=1):
        graph.observe([identifier], f"e{n}")  # p1 holds A3, p2 A1, p3 A2
    graph.observe([A1, A2], "e4")  # m1: p2 <- p3
    graph.unmerge("m1")
    graph.observe([A2, A3], "e5")  # m2: p1 <- p3, new evidence joining the older p1 to one side
    assert graph.observe([A1, A3], "e6").conflicts == (Conflict(A3, "p1", "p2", "blocked"),)
    graph.unmerge("m2")
    result = graph.observe([A1, A3], "e7")  # p1 took no part in the split
    assert result.conflicts == ()
    assert [(m.winner, m.loser) for m in result.merges] == [("p1", "p2")]
    assert graph.partition() == {frozenset({A1, A3}), frozenset({A2})}


def test_unmerge_of_an_earlier_merge_takes_the_loser_subtree_out_of_a_later_winner() -> None:
    graph = IdentityGraph()
    for n, identifier in enumerate([A1, A2, A3, D1], start=1):
        graph.observe([identifier], f"e{n}")
    graph.observe([A2, A3], "e5")  # m1: p2 <- p3
    graph.observe([A1, A2, E1], "e6")  # m2: p1 <- p2 (with p3 inside)
    graph.observe([D1, E1], "e7")  # m3: p1 <- p4
    assert graph.partition() == {frozenset({A1, A2, A3, D1, E1})}
    assert graph.unmerge("m2") == ("p1", "p2")
    assert graph.partition() == {frozenset({A1, D1, E1}), frozenset({A2, A3})}
    assert [graph.profile_of_event(f"e{n}") for n in range(1, 8)] == ["p1", "p2", "p2", "p1", "p2", "p1", "p1"]
    assert graph.unmerge("m1") == ("p2", "p3")
    assert graph.identifiers_of("p3") == {A3}


def test_user_id_limit_records_a_conflict() -> None:
    graph = IdentityGraph(DEFAULT_RULES)
    graph.observe([U1, A1], "e1")
    graph.observe([U2, A2], "e2")
    result = graph.observe([A1, A2], "e3")
    assert result.conflicts == (Conflict(A2, "p2", "p1", "limit"),)
    assert graph.merges() == []
    assert len(graph.conflicts()) == 1


def test_errors() -> None:
    graph = IdentityGraph()
    graph.observe([A1], "e1")
    graph.observe([A2], "e2")
    graph.observe([A1, A2], "e3")
    with pytest.raises(ConflictError) as duplicate:
        graph.observe([A3], "e1")
    assert duplicate.value.code == "duplicate_event"
    with pytest.raises(NotFoundError):
        graph.unmerge("m9")
    graph.unmerge("m1")
    with pytest.raises(ConflictError) as again:
        graph.unmerge("m1")
    assert again.value.code == "already_unmerged"
    with pytest.raises(NotFoundError):
        graph.profile_of_event("nope")
    with pytest.raises(NotFoundError):
        graph.live_profile("p9")


def test_event_without_identifiers_gets_its_own_profile() -> None:
    graph = IdentityGraph()
    result = graph.observe([], "e1")
    assert result.created and graph.profile_of_event("e1") == result.profile_id
    assert graph.partition() == frozenset()
    assert graph.live_profiles() == {result.profile_id}


def test_copies_are_independent() -> None:
    graph = IdentityGraph()
    graph.observe([A1], "e1")
    graph.observe([A2], "e2")
    graph.observe([A1, A2], "e3")
    twin = copy.deepcopy(graph)
    twin.unmerge("m1")
    assert graph.partition() == {frozenset({A1, A2})}
