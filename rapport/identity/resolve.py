"""The identity decision for one event: which profile it belongs to, what joins, what is refused.

``resolve`` is pure and deterministic. Its inputs are the event's identifiers, the live profile
holding each identifier that is already known (with all of that profile's identifiers), the
workspace rules, the pairs of live profiles that must never merge, and a fresh profile to use
when the event starts one. The algorithm:

1. Deduplicate the identifiers and order them by rule priority (``IdentityRules.rank`` of the
   type), then by value.
2. The *group* is the set of profiles joined so far in this event, at first empty; the *combined
   set* is their identifiers together with those attached so far; the *target* is the oldest
   profile of the group, or ``new_profile`` while the group is empty. Walk the identifiers in
   order:

   - unknown: attach it, unless the combined set already holds ``limits[type]`` identifiers of its
     type → ``Conflict(reason="limit", holder=None)``;
   - held by a profile of the group: nothing;
   - held by another profile P: join P to the group, unless
     (a) P and some profile of the group form a ``blocked`` pair → ``Conflict("blocked")``, or
     (b) for some limited type both the combined set and P hold identifiers of it, and together
     more than the limit → ``Conflict("limit")``. Requiring both sides to hold the type means a
     profile that already breaks a limit (rules tightened after the fact) can still absorb
     profiles without that type; with data that respects the limits this is exactly "the union
     would exceed the limit".
     The first profile joined becomes the target (no merge: ``new_profile`` is never created).
     Each later one merges with the target: the older profile (smaller ``seq``, then smaller id)
     wins and becomes the target. A refused P is refused again for each of its identifiers in the
     event (the group only grows, so the answer cannot change), giving one conflict per identifier.

   The first identifier always joins (nothing can refuse it), so the event goes with its
   highest-priority identifier: an event carrying a new ``user_id`` and another user's known
   ``anonymous_id`` under ``user_id`` limit 1 starts a profile for the new user id and records the
   anonymous id as a conflict, where taking the holder of the first *known* identifier would put
   the event on the other user's profile and drop the new user id. The shared identifier stays
   where it is.

3. The event belongs to the final target (``profile_id``); ``created`` is True when no profile
   joined, and ``new_profile`` is then the target. Each ``Conflict.target`` names the target at the
   moment of refusal (a live profile, which later merges resolve forward); a refusal before the
   first join names the first profile joined, as ``new_profile`` then never exists.

Applying a resolution: perform ``merges`` in order (each ``Merge.identifiers`` is what the loser
holds at that point, including what it gained from earlier merges of the same event, excluding
identifiers new in this event), then attach ``attach`` to ``profile_id``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import replace

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
    target: ProfileRef | None = None
    group: set[str] = set()
    combined: set[Identifier] = set()
    attach: list[Identifier] = []
    merges: list[Merge] = []
    conflicts: list[Conflict] = []
    for identifier in ordered:
        holder = owners.get(identifier)
        target_id = new_profile.id if target is None else target.id
        if holder is None:
            if _over_limit(rules, combined, (identifier,)):
                conflicts.append(Conflict(identifier, None, target_id, "limit"))
            else:
                attach.append(identifier)
                combined.add(identifier)
            continue
        if holder.id in group:
            continue
        reason = _refusal(rules, blocked, group, combined, holder)
        if reason is not None:
            conflicts.append(Conflict(identifier, holder.id, target_id, reason))
            continue
        if target is None:
            target = holder
            # Refusals so far were against the profile this event was about to start; it joins
            # ``holder`` instead, so they name ``holder``.
            if conflicts:
                conflicts = [replace(c, target=holder.id) for c in conflicts]
        elif (holder.seq, holder.id) < (target.seq, target.id):
            merges.append(Merge(holder.id, target.id, frozenset(combined.difference(attach))))
            target = holder
        else:
            merges.append(Merge(target.id, holder.id, holder.identifiers))
        group.add(holder.id)
        combined |= holder.identifiers
    return Resolution(
        profile_id=new_profile.id if target is None else target.id,
        created=target is None,
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
    if blocked and any(frozenset((member, other.id)) in blocked for member in group):
        return "blocked"
    if _over_limit(rules, combined, other.identifiers):
        return "limit"
    return None


def _over_limit(rules: IdentityRules, held: Collection[Identifier], joining: Collection[Identifier]) -> bool:
    """True when ``joining`` would add to a limited type that ``held`` has and push it over."""
    limits = rules.limits
    if not limits:
        return False
    # Runs for every identifier of every event that is not a plain repeat: count only the limited
    # types that join, and the held identifiers only of those.
    extra: dict[str, int] = {}
    for identifier in joining:
        if identifier.type in limits and identifier not in held:
            extra[identifier.type] = extra.get(identifier.type, 0) + 1
    for id_type, count in extra.items():
        have = sum(1 for i in held if i.type == id_type)
        if have and have + count > limits[id_type]:
            return True
    return False
