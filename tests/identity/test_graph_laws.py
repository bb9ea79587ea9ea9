"""Laws of the identity graph under random events and unmerges, checked with hypothesis."""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from hypothesis import event, given, settings
from hypothesis import strategies as st

from rapport.identity.graph import IdentityGraph
from rapport.identity.model import DEFAULT_RULES, Identifier, IdentityRules, MergeRecord, Resolution

POOL = [Identifier(t, v) for t in ("user_id", "email", "anonymous_id", "device_id", "loyalty") for v in "abc"]
NO_LIMITS = IdentityRules(limits={}, priority=DEFAULT_RULES.priority)
LIMITED = IdentityRules(limits={"user_id": 1, "email": 2}, priority=DEFAULT_RULES.priority)

events = st.frozensets(st.sampled_from(POOL), min_size=1, max_size=4)
Op = tuple[str, frozenset[Identifier] | int]
small_events = st.frozensets(st.sampled_from(POOL), min_size=1, max_size=2)
observe_op = st.tuples(st.just("observe"), st.one_of(small_events, events))
unmerge_op = st.tuples(st.just("unmerge"), st.integers(0, 30))
ops = st.lists(st.one_of(observe_op, observe_op, observe_op, unmerge_op), min_size=2, max_size=25)


def components(event_sets: Iterable[frozenset[Identifier]]) -> frozenset[frozenset[Identifier]]:
    """Connected components of identifiers that co-occur in some event."""
    parent: dict[Identifier, Identifier] = {}

    def find(x: Identifier) -> Identifier:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for identifiers in event_sets:
        first, *rest = identifiers
        for other in rest:
            parent[find(other)] = find(first)
        find(first)
    blocks: dict[Identifier, set[Identifier]] = {}
    for x in parent:
        blocks.setdefault(find(x), set()).add(x)
    return frozenset(frozenset(b) for b in blocks.values())


@dataclass
class History:
    """A graph plus what the test knows independently about every event it saw."""

    graph: IdentityGraph
    created: list[str] = field(default_factory=list)
    attached: set[Identifier] = field(default_factory=set)
    events: list[str] = field(default_factory=list)

    def observe(self, identifiers: Iterable[Identifier]) -> Resolution:
        event_id = f"e{len(self.events) + 1}"
        result = self.graph.observe(identifiers, event_id)
        self.events.append(event_id)
        self.attached.update(result.attach)
        if result.created:
            self.created.append(result.profile_id)
        return result

    def run(self, steps: list[Op]) -> None:
        for kind, arg in steps:
            if kind == "observe":
                assert isinstance(arg, frozenset)
                self.observe(arg)
            else:
                assert isinstance(arg, int)
                active = [m for m in self.graph.merges() if not m.undone]
                if active:
                    self.graph.unmerge(active[arg % len(active)].id)

    def blocks_by_profile(self) -> dict[str, frozenset[Identifier]]:
        return {p: self.graph.identifiers_of(p) for p in self.graph.live_profiles()}


def check_invariants(history: History) -> None:
    graph = history.graph
    live = graph.live_profiles()
    for event_id in history.events:
        assert graph.profile_of_event(event_id) in live
    blocks = [graph.identifiers_of(p) for p in live]
    assert all(blocks), "every profile keeps the identifier it was created with"
    assert sum(len(b) for b in blocks) == len(history.attached) == len(set().union(*blocks, set()))
    assert set().union(*blocks, set()) == history.attached
    for block in blocks:
        counts = Counter(i.type for i in block)
        assert all(counts[t] <= n for t, n in graph.rules.limits.items())
    for pair in graph.blocked():
        first, second = sorted(pair)
        assert graph.live_profile(first) != graph.live_profile(second)
    active = [m for m in graph.merges() if not m.undone]
    assert len(live) == len(history.created) - len(active)
    order = {p: n for n, p in enumerate(history.created)}
    assert all(order[m.winner] < order[m.loser] for m in graph.merges())


@settings(max_examples=300)
@given(st.lists(events, max_size=12), st.data())
def test_without_limits_partition_is_the_co_occurrence_components_in_any_order(
    observed: list[frozenset[Identifier]], data: st.DataObject
) -> None:
    """With no limits and no unmerges, the partition does not depend on event order.

    For every permutation of the same events the partition equals the connected components of
    the graph whose edges join identifiers carried by the same event.
    """
    expected = components(observed)
    for order in (observed, data.draw(st.permutations(observed))):
        history = History(IdentityGraph(NO_LIMITS))
        for identifiers in order:
            history.observe(identifiers)
        assert history.graph.partition() == expected
        assert history.graph.conflicts() == []
        check_invariants(history)


@settings(max_examples=300)
@given(ops, st.sampled_from([DEFAULT_RULES, LIMITED, NO_LIMITS]))
def test_events_never_lose_their_profile(steps: list[Op], rules: IdentityRules) -> None:
    """After any sequence of observes and unmerges the graph stays consistent.

    Every observed event belongs to a live profile; the live profiles' identifier sets are
    non-empty, disjoint and together exactly the identifiers ever attached; every live profile
    respects the limits; no blocked pair shares a live profile; each active merge removed one
    live profile; and every merge was won by the older profile.
    """
    history = History(IdentityGraph(rules))
    for kind, arg in steps:
        history.run([(kind, arg)])
        check_invariants(history)


def joined(
    blocks: dict[str, frozenset[Identifier]], merges: Iterable[MergeRecord]
) -> tuple[dict[str, set[Identifier]], dict[str, str]]:
    """``blocks`` with each merge's loser block folded into its winner's, and where each profile went."""
    result = {p: set(b) for p, b in blocks.items()}
    home = {p: p for p in blocks}
    for merge in merges:
        winner, loser = home[merge.winner], home[merge.loser]
        result[winner] |= result.pop(loser)
        home = {p: winner if h == loser else h for p, h in home.items()}
    return result, home


@st.composite
def bridging_event(draw: st.DrawFn, blocks: list[frozenset[Identifier]]) -> frozenset[Identifier]:
    """An event carrying identifiers of several live profiles (so it tends to merge), or any event."""
    if len(blocks) < 2 or draw(st.integers(0, 3)) == 0:
        return draw(events)
    chosen = draw(st.lists(st.sampled_from(blocks), min_size=2, max_size=4, unique=True))
    picked = {draw(st.sampled_from(sorted(block))) for block in chosen}
    return frozenset(picked | draw(st.sets(st.sampled_from(POOL), max_size=2)))


@settings(max_examples=400)
@given(ops, st.data(), st.sampled_from([DEFAULT_RULES, LIMITED, NO_LIMITS]))
def test_unmerging_a_merge_of_the_last_event_restores_the_partition_before_it(
    steps: list[Op], data: st.DataObject, rules: IdentityRules
) -> None:
    """Unmerging a merge of the last event undoes exactly that merge.

    Let B be the live profiles and their identifier sets before the last event E, and R its
    resolution: merges M (logged in order), new identifiers N = R.attach, profile T. For each m
    in M, unmerging m right after E gives:

    1. the partition of B joined along every merge of M except m, with N added to T's block
       (with M = {m}: exactly B plus N on T's block, the partition before E);
    2. the revived loser holds exactly ``m.identifiers``; ``unmerge`` returns (T, m.loser);
    3. every event observed before E belongs to the profile its pre-E profile joined along
       M minus m (itself when not involved), and E belongs to T;
    4. only m is newly undone, and the new blocked pairs are every pair of a profile of T's tree and
       one of the revived loser's tree (so {m.winner, m.loser} among them);
    5. observing E's identifiers again records a "blocked" conflict and leaves m's two sides apart
       (it may still join profiles that E could not, e.g. one refused for a limit).

    And unmerging every merge of M, in any order, gives B plus N on T's block with every
    earlier event back on its pre-E profile.
    """
    history = History(IdentityGraph(rules))
    # A few single-identifier visits first, so the last event has several profiles to bridge.
    for identifier in data.draw(st.lists(st.sampled_from(POOL), unique=True, max_size=6)):
        history.observe([identifier])
    history.run(steps)
    before = history.blocks_by_profile()
    profile_before = {e: history.graph.profile_of_event(e) for e in history.events}
    blocked_before = history.graph.blocked()
    event(f"live profiles before: {min(len(before), 3)}")
    last = data.draw(bridging_event(sorted(before.values(), key=sorted)))
    result = history.observe(last)
    event(f"merges in the last event: {min(len(result.merges), 2)}")
    log = history.graph.merges()
    new_records = log[len(log) - len(result.merges) :]
    target = result.profile_id

    for undone in new_records:
        graph = copy.deepcopy(history.graph)
        assert graph.unmerge(undone.id) == (target, undone.loser)

        expected, home = joined(before, [m for m in new_records if m is not undone])
        expected[target] |= set(result.attach)
        assert graph.partition() == frozenset(frozenset(b) for b in expected.values())
        assert {p: graph.identifiers_of(p) for p in graph.live_profiles()} == expected

        assert graph.identifiers_of(undone.loser) == undone.identifiers
        for event_id, profile in profile_before.items():
            assert graph.profile_of_event(event_id) == home[profile]
        assert graph.profile_of_event(history.events[-1]) == target

        assert [m.id for m in graph.merges() if m.undone] == [m.id for m in log if m.undone] + [undone.id]
        sides = {root: {p for p in history.created if graph.live_profile(p) == root} for root in (target, undone.loser)}
        assert {undone.winner, undone.loser} <= sides[target] | sides[undone.loser]
        split_pairs = {frozenset({w, lo}) for w in sides[target] for lo in sides[undone.loser]}
        assert graph.blocked() == blocked_before | split_pairs

        again = graph.observe(last, "again")
        assert any(c.reason == "blocked" for c in again.conflicts)
        assert graph.live_profile(undone.winner) != graph.live_profile(undone.loser)

    if new_records:
        graph = copy.deepcopy(history.graph)
        for record in data.draw(st.permutations(new_records)):
            graph.unmerge(record.id)
        restored = {p: set(b) for p, b in before.items()}
        restored[target] |= set(result.attach)
        assert {p: graph.identifiers_of(p) for p in graph.live_profiles()} == restored
        assert {e: graph.profile_of_event(e) for e in profile_before} == profile_before
