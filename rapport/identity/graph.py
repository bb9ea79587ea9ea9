"""The in-memory identity graph: the reference behaviour that the storage-backed service mirrors.

State and its meaning:

- Every profile has a creation ``seq`` and at most one parent link (loser → winner), set by a
  merge and removed by its unmerge; the links form a *merge forest*. The roots are the live
  profiles; any profile id resolves to the live profile at the root of its tree.
- Every identifier keeps its *origin*: the profile it was first attached to. It is held by the
  root of its origin's tree. Every event keeps its origin too (the profile ``resolve`` chose) and
  belongs to the root of that profile's tree. Merges and unmerges only change links, so they
  move identifiers and events together and can never lose either.
- ``unmerge`` removes one logged link: the loser becomes a root again and takes back everything
  whose origin lies in its subtree (itself and whatever merged into it before it lost); the
  winner's side keeps the rest.
- Identifiers new in an event are attached to the event's final profile, so unmerging a merge of
  that event leaves them there.

Blocks. An unmerge splits one live profile into two sides: the loser's subtree and what stays in
the winner's tree. It blocks every pair (w, l) of a profile w of the winner's side and a profile l
of the loser's side, as the sides stand at that moment. A profile id stands for the identifiers
and events that originated there, so this says: *what the unmerge split apart never shares a
profile again*. ``resolve`` gets the blocked pairs lifted to the live roots of their two members,
and an event that would join two live profiles holding the two members of a blocked pair
records a ``"blocked"`` conflict instead of merging them — whichever identifiers it carries,
including ones first seen after the unmerge: joining them would rejoin everything the unmerge
split, so rejoining is left to a person (the conflicts are there to review), not to the next
event that happens to carry both sides, such as another shared device. Blocks stay on the
original profiles rather than on whichever live profiles hold them, so:

- genuinely new evidence still merges: a third profile may join either side (it then keeps away
  from the other side only while it shares a profile with it), and if that merge is undone, the
  third profile is free of the block again, since it took no part in the split;
- a block outlives later merges and unmerges of either side: splitting one side again leaves
  each of its pieces blocked from the other side.

The SQL service (``rapport/identity/service.py``, ``rapport/storage/sql/identity.py``) stores and
lifts the same pairs, and a property test drives both with the same events and unmerges.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace

from rapport.errors import ConflictError, NotFoundError
from rapport.identity.model import (
    DEFAULT_RULES,
    ConflictRecord,
    Identifier,
    IdentityRules,
    MergeRecord,
    ProfileRef,
    Resolution,
)
from rapport.identity.resolve import resolve


class IdentityGraph:
    """Profiles, identifiers, events and the merge log of one workspace, held in memory."""

    def __init__(self, rules: IdentityRules = DEFAULT_RULES) -> None:
        self.rules = rules
        self._seq: dict[str, int] = {}
        self._parent: dict[str, str] = {}
        self._children: dict[str, set[str]] = {}
        self._origin: dict[Identifier, str] = {}
        self._originated: dict[str, set[Identifier]] = {}
        self._event_origin: dict[str, str] = {}
        self._merges: list[MergeRecord] = []
        self._merge_index: dict[str, int] = {}
        self._conflicts: list[ConflictRecord] = []
        self._blocked: set[frozenset[str]] = set()

    def observe(self, identifiers: Iterable[Identifier], event_id: str) -> Resolution:
        """Resolve an event carrying ``identifiers`` and apply the result; returns the resolution."""
        if event_id in self._event_origin:
            raise ConflictError(f"event {event_id!r} was already observed", code="duplicate_event")
        carried = list(dict.fromkeys(identifiers))
        owners = {i: self._ref(self.live_profile(self._origin[i])) for i in carried if i in self._origin}
        seq = len(self._seq) + 1
        new_profile = ProfileRef(f"p{seq}", seq, frozenset())
        resolution = resolve(carried, owners, self.rules, self._live_blocked(), new_profile)
        if resolution.created:
            self._add_profile(new_profile.id, new_profile.seq)
        for merge in resolution.merges:
            self._parent[merge.loser] = merge.winner
            self._children[merge.winner].add(merge.loser)
            merge_id = f"m{len(self._merges) + 1}"
            self._merge_index[merge_id] = len(self._merges)
            self._merges.append(MergeRecord(merge_id, merge.winner, merge.loser, merge.identifiers, event_id))
        for identifier in resolution.attach:
            self._origin[identifier] = resolution.profile_id
            self._originated[resolution.profile_id].add(identifier)
        self._conflicts.extend(ConflictRecord(event_id, c) for c in resolution.conflicts)
        self._event_origin[event_id] = resolution.profile_id
        return resolution

    def unmerge(self, merge_id: str) -> tuple[str, str]:
        """Undo a logged merge; returns the live profile keeping the winner's side and the revived loser.

        Raises ``NotFoundError`` for an unknown merge and ``ConflictError`` for one already undone.
        """
        position = self._merge_index.get(merge_id)
        if position is None:
            raise NotFoundError(f"no merge {merge_id!r}", code="merge_not_found")
        record = self._merges[position]
        if record.undone:
            raise ConflictError(f"merge {merge_id!r} is already undone", code="already_unmerged")
        del self._parent[record.loser]
        self._children[record.winner].discard(record.loser)
        self._merges[position] = replace(record, undone=True)
        root = self.live_profile(record.winner)
        loser_side = list(self._subtree(record.loser))
        self._blocked.update(frozenset((w, lo)) for w in self._subtree(root) for lo in loser_side)
        return root, record.loser

    def live_profile(self, profile_id: str) -> str:
        """The live profile that now holds ``profile_id`` (itself when it was never merged away)."""
        if profile_id not in self._seq:
            raise NotFoundError(f"no profile {profile_id!r}", code="profile_not_found")
        while profile_id in self._parent:
            profile_id = self._parent[profile_id]
        return profile_id

    def holder_of(self, identifier: Identifier) -> str | None:
        """The live profile holding ``identifier``, or None when it was never seen."""
        origin = self._origin.get(identifier)
        return None if origin is None else self.live_profile(origin)

    def identifiers_of(self, profile_id: str) -> frozenset[Identifier]:
        """The identifiers of the live profile that holds ``profile_id``."""
        return frozenset(i for p in self._subtree(self.live_profile(profile_id)) for i in self._originated[p])

    def profile_of_event(self, event_id: str) -> str:
        """The live profile an observed event belongs to now."""
        origin = self._event_origin.get(event_id)
        if origin is None:
            raise NotFoundError(f"no observed event {event_id!r}", code="event_not_found")
        return self.live_profile(origin)

    def live_profiles(self) -> frozenset[str]:
        """Every profile that has not been merged away."""
        return frozenset(p for p in self._seq if p not in self._parent)

    def partition(self) -> frozenset[frozenset[Identifier]]:
        """The identifier sets of the live profiles (profiles without identifiers left out)."""
        sets = (self.identifiers_of(p) for p in self.live_profiles())
        return frozenset(s for s in sets if s)

    def merges(self) -> list[MergeRecord]:
        """The merge log, oldest first, undone merges marked."""
        return list(self._merges)

    def conflicts(self) -> list[ConflictRecord]:
        """Every refused attach or merge, oldest first."""
        return list(self._conflicts)

    def blocked(self) -> frozenset[frozenset[str]]:
        """The pairs of profiles separated by an unmerge, as recorded (not lifted to live profiles)."""
        return frozenset(self._blocked)

    def _add_profile(self, profile_id: str, seq: int) -> None:
        self._seq[profile_id] = seq
        self._children[profile_id] = set()
        self._originated[profile_id] = set()

    def _ref(self, profile_id: str) -> ProfileRef:
        return ProfileRef(profile_id, self._seq[profile_id], self.identifiers_of(profile_id))

    def _subtree(self, profile_id: str) -> Iterator[str]:
        stack = [profile_id]
        while stack:
            current = stack.pop()
            yield current
            stack.extend(self._children[current])

    def _live_blocked(self) -> frozenset[frozenset[str]]:
        return frozenset(frozenset(self.live_profile(p) for p in pair) for pair in self._blocked)
