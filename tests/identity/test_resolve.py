"""The pure identity decision: table cases and order independence."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapport.identity.model import (
    DEFAULT_RULES,
    Conflict,
    Identifier,
    IdentityRules,
    Merge,
    ProfileRef,
    Resolution,
)
from rapport.identity.resolve import resolve

U1, U2, U3 = Identifier("user_id", "u1"), Identifier("user_id", "u2"), Identifier("user_id", "u3")
E1, E2 = Identifier("email", "ada@example.com"), Identifier("email", "bob@example.com")
P1 = Identifier("phone", "+12015550123")
D1 = Identifier("device_id", "d1")
A1, A2 = Identifier("anonymous_id", "a1"), Identifier("anonymous_id", "a2")
L1 = Identifier("loyalty", "l1")
NEW = ProfileRef("new", 99, frozenset())
NO_LIMITS = IdentityRules(limits={}, priority=DEFAULT_RULES.priority)


def ref(profile_id: str, seq: int, *identifiers: Identifier) -> ProfileRef:
    return ProfileRef(profile_id, seq, frozenset(identifiers))


def run(
    identifiers: Sequence[Identifier],
    *profiles: ProfileRef,
    rules: IdentityRules = DEFAULT_RULES,
    blocked: frozenset[frozenset[str]] = frozenset(),
) -> Resolution:
    owners = {i: p for p in profiles for i in p.identifiers if i in identifiers}
    return resolve(identifiers, owners, rules, blocked, NEW)


def test_unknown_identifiers_create_a_profile() -> None:
    result = run([A1, E1])
    assert result == Resolution("new", True, (E1, A1), (), ())


def test_no_identifiers_still_give_the_event_a_new_profile() -> None:
    assert run([]) == Resolution("new", True, (), (), ())


def test_new_identifiers_attach_to_the_known_profile() -> None:
    result = run([A1, E1, A1], ref("p", 1, A1))
    assert result == Resolution("p", False, (E1,), (), ())


def test_identifiers_already_held_change_nothing() -> None:
    assert run([A1, E1], ref("p", 1, A1, E1)) == Resolution("p", False, (), (), ())


@pytest.mark.parametrize(("email_seq", "anon_seq"), [(1, 2), (2, 1)], ids=["target-older", "holder-older"])
def test_merge_keeps_the_older_profile(email_seq: int, anon_seq: int) -> None:
    by_email, by_anon = ref("e", email_seq, E1), ref("a", anon_seq, A1, D1)
    result = run([A1, E1], by_email, by_anon)
    if email_seq < anon_seq:
        assert result == Resolution("e", False, (), (Merge("e", "a", frozenset({A1, D1})),), ())
    else:
        assert result == Resolution("a", False, (), (Merge("a", "e", frozenset({E1})),), ())


def test_new_user_id_with_another_users_identifier_starts_its_own_profile() -> None:
    result = run([U2, A1], ref("p", 1, U1, A1))
    assert result == Resolution("new", True, (U2,), (), (Conflict(A1, "p", "new", "limit"),))


def test_known_user_id_keeps_its_profile_and_refuses_the_other_users_identifier() -> None:
    result = run([U2, E1], ref("p", 1, U1, E1), ref("q", 2, U2))
    assert result == Resolution("q", False, (), (), (Conflict(E1, "p", "q", "limit"),))


def test_new_user_id_joins_a_profile_it_may_join_after_refusing_another() -> None:
    # The email's profile has another user id; the anonymous profile has none, so the event's
    # user id goes there, and the refusal made before that join names the anonymous profile.
    result = run([U2, E1, A1], ref("p", 1, U1, E1), ref("anon", 2, A1))
    assert result == Resolution("anon", False, (U2,), (), (Conflict(E1, "p", "anon", "limit"),))


def test_refused_new_identifier_before_the_first_join_names_the_joined_profile() -> None:
    rules = IdentityRules(limits={"user_id": 1, "email": 1}, priority=DEFAULT_RULES.priority)
    result = run([E1, E2, A1], ref("anon", 1, A1), rules=rules)
    assert result == Resolution("anon", False, (E1,), (), (Conflict(E2, None, "anon", "limit"),))


def test_two_new_user_ids_on_a_new_profile_keep_the_first_in_order() -> None:
    result = run([U2, U1, A1])
    assert result == Resolution("new", True, (U1, A1), (), (Conflict(U2, None, "new", "limit"),))


def test_merge_that_would_hold_two_user_ids_is_refused() -> None:
    result = run([E1, A1], ref("p", 1, U1, E1), ref("q", 2, U2, A1))
    assert result == Resolution("p", False, (), (), (Conflict(A1, "q", "p", "limit"),))


def test_refused_holder_gives_one_conflict_per_identifier() -> None:
    result = run([E1, A1, D1], ref("p", 1, U1, E1), ref("q", 2, U2, A1, D1))
    assert result.conflicts == (Conflict(D1, "q", "p", "limit"), Conflict(A1, "q", "p", "limit"))
    assert result.merges == ()


def test_identifier_attached_earlier_in_the_walk_counts_toward_a_merge_limit() -> None:
    profiles = (ref("q", 1, E1), ref("r", 2, U1, A1))
    assert run([E1, A1], *profiles) == Resolution("q", False, (), (Merge("q", "r", frozenset({U1, A1})),), ())
    result = run([U2, E1, A1], *profiles)
    assert result == Resolution("q", False, (U2,), (), (Conflict(A1, "r", "q", "limit"),))


def test_profile_already_over_a_tightened_limit_can_absorb_profiles_without_that_type() -> None:
    legacy = ref("old", 1, U1, U2, E1)
    result = run([E1, A1], legacy, ref("anon", 2, A1))
    assert result == Resolution("old", False, (), (Merge("old", "anon", frozenset({A1})),), ())
    result = run([E1, A1], legacy, ref("other", 2, U3, A1))
    assert result.conflicts == (Conflict(A1, "other", "old", "limit"),)
    u4 = Identifier("user_id", "u4")
    result = run([E1, u4], legacy)
    assert result == Resolution("new", True, (u4,), (), (Conflict(E1, "old", "new", "limit"),))


def test_limits_for_other_types() -> None:
    rules = IdentityRules(limits={"email": 2}, priority=DEFAULT_RULES.priority)
    held = ref("p", 1, A1, Identifier("email", "c@example.com"))
    result = run([A1, E1], held, rules=rules)
    assert result == Resolution("p", False, (E1,), (), ())
    # Two new emails outrank the anonymous id: they stay together and the anonymous id is refused.
    result = run([A1, E1, E2], held, rules=rules)
    assert result == Resolution("new", True, (E1, E2), (), (Conflict(A1, "p", "new", "limit"),))
    result = run([E1, E2, Identifier("email", "d@example.com")], rules=rules)
    assert result == Resolution("new", True, (E1, E2), (), (Conflict(Identifier("email", "d@example.com"), None,
                                                                      "new", "limit"),))


def test_blocked_pair_is_not_merged() -> None:
    blocked = frozenset({frozenset({"p", "q"})})
    result = run([A1, E1], ref("p", 1, E1), ref("q", 2, A1), blocked=blocked)
    assert result == Resolution("p", False, (), (), (Conflict(A1, "q", "p", "blocked"),))


def test_blocked_pair_is_checked_against_every_profile_joined_in_the_event() -> None:
    blocked = frozenset({frozenset({"young", "other"})})
    profiles = (ref("young", 3, E1), ref("old", 1, P1), ref("other", 2, A1))
    result = run([E1, P1, A1], *profiles, blocked=blocked)
    assert result == Resolution(
        "old",
        False,
        (),
        (Merge("old", "young", frozenset({E1})),),
        (Conflict(A1, "other", "old", "blocked"),),
    )


def test_one_event_merges_several_profiles() -> None:
    profiles = (ref("a", 3, A1), ref("b", 2, E1), ref("c", 1, D1))
    result = run([A1, E1, D1, P1], *profiles)
    assert result == Resolution(
        "c",
        False,
        (P1,),
        (Merge("c", "b", frozenset({E1})), Merge("c", "a", frozenset({A1}))),
        (),
    )


def test_chained_merge_records_what_the_loser_gained_earlier_in_the_event() -> None:
    profiles = (ref("a", 2, U1), ref("q", 3, E1), ref("p", 1, A1))
    result = run([A1, E1, U1, P1], *profiles)
    assert result == Resolution(
        "p",
        False,
        (P1,),
        (Merge("a", "q", frozenset({E1})), Merge("p", "a", frozenset({U1, E1}))),
        (),
    )


def test_priority_picks_the_target_and_so_the_refused_side() -> None:
    profiles = (ref("p", 1, U1, E1), ref("q", 2, U2, A1))
    by_default = run([A1, E1], *profiles)
    assert by_default == Resolution("p", False, (), (), (Conflict(A1, "q", "p", "limit"),))
    anon_first = IdentityRules(limits={"user_id": 1}, priority=("anonymous_id", "email"))
    by_anon = run([A1, E1], *profiles, rules=anon_first)
    assert by_anon == Resolution("q", False, (), (), (Conflict(E1, "p", "q", "limit"),))


def test_unlisted_types_rank_after_listed_ones() -> None:
    account = Identifier("account_no", "x1")
    profiles = (ref("acct", 1, account, U1), ref("anon", 2, A1, U2))
    result = run([account, A1], *profiles)
    assert result == Resolution("anon", False, (), (), (Conflict(account, "acct", "anon", "limit"),))


def test_owners_must_hold_their_identifiers() -> None:
    with pytest.raises(ValueError, match="does not hold it"):
        resolve([A1], {A1: ref("p", 1, E1)}, DEFAULT_RULES, frozenset(), NEW)


POOL = [U1, U2, U3, E1, E2, P1, D1, A1, A2, L1]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Identifier], list[ProfileRef], frozenset[frozenset[str]]]:
    """An event's identifiers, disjoint profiles holding some of them, and blocked pairs."""
    known = draw(st.lists(st.sampled_from(POOL), unique=True))
    labels = draw(st.lists(st.integers(0, 3), min_size=len(known), max_size=len(known)))
    seqs = draw(st.permutations(range(1, 5)))
    groups: dict[int, set[Identifier]] = {}
    for identifier, label in zip(known, labels, strict=True):
        groups.setdefault(label, set()).add(identifier)
    profiles = [ref(f"p{label}", seqs[label], *ids) for label, ids in groups.items()]
    carried = draw(st.lists(st.sampled_from(POOL), max_size=8))
    pairs = draw(st.sets(st.sampled_from([frozenset({f"p{a}", f"p{b}"}) for a in range(4) for b in range(a)])))
    return carried, profiles, frozenset(pairs)


@given(scenarios(), st.data(), st.sampled_from([DEFAULT_RULES, NO_LIMITS]))
def test_resolution_ignores_identifier_order_and_duplicates(
    scenario: tuple[list[Identifier], list[ProfileRef], frozenset[frozenset[str]]],
    data: st.DataObject,
    rules: IdentityRules,
) -> None:
    carried, profiles, blocked = scenario
    shuffled = data.draw(st.permutations([*carried, *carried[:2]]))
    first = run(carried, *profiles, rules=rules, blocked=blocked)
    assert run(shuffled, *profiles, rules=rules, blocked=blocked) == first


@given(scenarios())
def test_without_limits_or_blocks_every_holder_merges_into_the_oldest(
    scenario: tuple[list[Identifier], list[ProfileRef], frozenset[frozenset[str]]],
) -> None:
    carried, profiles, _ = scenario
    result = run(carried, *profiles, rules=NO_LIMITS)
    involved = {p.id: p for p in profiles if p.identifiers & set(carried)}
    assert result.conflicts == ()
    if involved:
        oldest = min(involved.values(), key=lambda p: p.seq)
        assert result.profile_id == oldest.id and not result.created
        assert {m.loser for m in result.merges} == set(involved) - {oldest.id}
    else:
        assert result.profile_id == "new" and result.created
    held = {i for p in profiles for i in p.identifiers}
    assert set(result.attach) == set(carried) - held


@given(scenarios(), st.sampled_from([DEFAULT_RULES, NO_LIMITS, IdentityRules(limits={"user_id": 1, "email": 1},
                                                                               priority=DEFAULT_RULES.priority)]))
def test_the_event_goes_with_its_highest_priority_identifier(
    scenario: tuple[list[Identifier], list[ProfileRef], frozenset[frozenset[str]]],
    rules: IdentityRules,
) -> None:
    """The leading identifier is never refused: it is attached, or its profile is the event's profile.

    And every conflict names a profile that ends up as the event's profile (directly or by losing a
    merge of this event), never a new profile the event did not create.
    """
    carried, profiles, blocked = scenario
    result = run(carried, *profiles, rules=rules, blocked=blocked)
    joined = {result.profile_id} | {m.loser for m in result.merges}
    assert all(c.target in joined for c in result.conflicts)
    if not carried:
        return
    first = min(carried, key=lambda i: (rules.rank(i.type), i))
    holder = next((p.id for p in profiles if first in p.identifiers), None)
    assert first not in {c.identifier for c in result.conflicts}
    if holder is None:
        assert first in result.attach
    else:
        assert holder in joined and not result.created
