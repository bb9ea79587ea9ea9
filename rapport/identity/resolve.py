"""The identity decision for one event: which profile it belongs to, what joins, what is refused.

``resolve`` is pure and deterministic. Its inputs are the event's identifiers, the live profile
holding each identifier that is already known (with all of that profile's identifiers), the
workspace rules, the pairs of live profiles that must never merge, and a fresh profile to use
when nothing is known. The algorithm:

1. Deduplicate the identifiers and order them by rule priority (``IdentityRules.rank`` of the
   type), then by value.
2. The target starts as the holder of the first known identifier in that order; when no
   identifier is known, the target is ``new_profile`` and ``created`` is True (a new profile never
   takes part in a merge, since a merge needs a known identifier).
3. The *group* is the set of profiles joined so far in this event (at first only the target) and
   the *combined set* their identifiers together with those attached so far. Walk the identifiers
   in order:

   - unknown: attach it, unless the combined set already holds ``limits[type]`` identifiers of its
     type → ``Conflict(reason="limit", holder=None)``;
   - held by a profile of the group: nothing;
   - held by another profile P: merge the group with P, unless
     (a) P and some profile of the group form a ``blocked`` pair → ``Conflict("blocked")``, or
     (b) for some limited type both the combined set and P hold identifiers of it, and together
     more than the limit → ``Conflict("limit")``. Requiring both sides to hold the type means a
     profile that already breaks a limit (rules tightened after the fact) can still absorb
     profiles without that type; with data that respects the limits this is exactly "the union
     would exceed the limit".
     On a merge the older profile (smaller ``seq``, then smaller id) wins and becomes the target;
     P joins the group and its identifiers the combined set. A refused P is refused again for
     each of its identifiers in the event (the group only grows, so the answer cannot change),
     giving one conflict per identifier.

4. The event belongs to the final target (``profile_id``). Each ``Conflict.target`` names the
   target at the moment of refusal (a live profile, which later merges resolve forward).

Applying a resolution: perform ``merges`` in order (each ``Merge.identifiers`` is what the loser
holds at that point, including what it gained from earlier merges of the same event, excluding
identifiers new in this event), then attach ``attach`` to ``profile_id``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, Sequence

from rapport.identity.model import (
    Conflict,
    ConflictReason,
    Identifier,
    IdentityRules,
    Merge,
    ProfileRef,
    Resolution,
)


def resolve(
    identifiers: Sequence[Identifier],
    owners: Mapping[Identifier, ProfileRef],
    rules: IdentityRules,
    blocked: frozenset[frozenset[str]],
    new_profile: ProfileRef,
) -> Resolution:
    """Decide which profile an event carrying ``identifiers`` belongs to; see the module docstring."""
    for identifier, ref in owners.items():
        if identifier not in ref.identifiers:
            raise ValueError(f"owners maps {identifier} to profile {ref.id!r}, which does not hold it")
    ordered = sorted(set(identifiers), key=lambda i: (rules.rank(i.type), i))
    target = next((owners[i] for i in ordered if i in owners), new_profile)
    created = target is new_profile
    group = {target.id}
    combined: set[Identifier] = set(target.identifiers)
    attach: list[Identifier] = []
    merges: list[Merge] = []
    conflicts: list[Conflict] = []
    for identifier in ordered:
        holder = owners.get(identifier)
        if holder is None:
            if _over_limit(rules, combined, (identifier,)):
                conflicts.append(Conflict(identifier, None, target.id, "limit"))
            else:
                attach.append(identifier)
                combined.add(identifier)
            continue
        if holder.id in group:
            continue
        reason = _refusal(rules, blocked, group, combined, holder)
        if reason is not None:
            conflicts.append(Conflict(identifier, holder.id, target.id, reason))
            continue
        if (holder.seq, holder.id) < (target.seq, target.id):
            merges.append(Merge(holder.id, target.id, frozenset(combined.difference(attach))))
            target = holder
        else:
            merges.append(Merge(target.id, holder.id, holder.identifiers))
        group.add(holder.id)
        combined |= holder.identifiers
    return Resolution(
        profile_id=target.id,
        created=created,
        attach=tuple(attach),
        merges=tuple(merges),
        conflicts=tuple(conflicts),
    )


def _refusal(
    rules: IdentityRules,
    blocked: frozenset[frozenset[str]],
    group: Collection[str],
    combined: Collection[Identifier],
    other: ProfileRef,
) -> ConflictReason | None:
    if any(frozenset((member, other.id)) in blocked for member in group):
        return "blocked"
    if _over_limit(rules, combined, other.identifiers):
        return "limit"
    return None


def _over_limit(rules: IdentityRules, held: Collection[Identifier], joining: Collection[Identifier]) -> bool:
    """True when ``joining`` would add to a limited type that ``held`` has and push it over."""
    if not rules.limits:
        return False
    held_counts = Counter(i.type for i in held)
    joining_counts = Counter(i.type for i in joining if i not in held)
    for id_type, extra in joining_counts.items():
        limit = rules.limit(id_type)
        if limit is None:
            continue
        have = held_counts[id_type]
        if have and have + extra > limit:
            return True
    return False
