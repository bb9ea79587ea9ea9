"""Membership from qualification: exclusive groups, priorities, defaults, and what changes.

A profile *qualifies* for a segment when the segment's rule holds for it. Outside a group, it is a
member of every segment it qualifies for. Inside an exclusive group it is a member of at most one:
the qualifying segment with the highest ``priority``; on equal priorities the segment whose name
sorts first wins (a documented, stable rule, so live and batch agree). A group's ``default``
segment takes every profile that qualifies for no other segment of the group (and, when the default
segment has a rule, also satisfies it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from rapport.workspaces.runtime import CompiledSegment


def rank(segment: CompiledSegment) -> tuple[int, str]:
    """Sort key inside a group: the first in this order wins."""
    return (-segment.priority, segment.name)


def groups(segments: Mapping[str, CompiledSegment]) -> dict[str, list[CompiledSegment]]:
    """Each exclusive group's segments, winners first (defaults last)."""
    out: dict[str, list[CompiledSegment]] = {}
    for segment in segments.values():
        if segment.group is not None:
            out.setdefault(segment.group, []).append(segment)
    for members in out.values():
        members.sort(key=lambda s: (s.is_default, *rank(s)))
    return out


def resolve(qualified: Collection[str], segments: Mapping[str, CompiledSegment],
            evaluated: Collection[str]) -> set[str]:
    """The segments among ``evaluated`` that a profile qualifying for ``qualified`` is a member of.

    ``evaluated`` must hold every segment of each group it touches (a group is decided whole).
    A default segment's own qualification is its rule (True when it has none).
    """
    members: set[str] = set()
    decided: set[str] = set()
    if not any(segments[name].group is not None for name in evaluated):
        return {name for name in evaluated if name in qualified}
    for name in evaluated:
        segment = segments[name]
        if segment.group is None:
            if name in qualified:
                members.add(name)
            continue
        if segment.group in decided:
            continue
        decided.add(segment.group)
        ordered = groups_of(segments, segment.group)
        winner = next((s for s in ordered if not s.is_default and s.name in qualified), None)
        if winner is None:
            winner = next((s for s in ordered if s.is_default and s.name in qualified), None)
        if winner is not None:
            members.add(winner.name)
    return members


def groups_of(segments: Mapping[str, CompiledSegment], group: str) -> list[CompiledSegment]:
    return sorted((s for s in segments.values() if s.group == group), key=lambda s: (s.is_default, *rank(s)))


def closure(names: Iterable[str], segments: Mapping[str, CompiledSegment]) -> set[str]:
    """``names`` plus every segment whose membership can change with theirs: the other segments of
    their groups, and the segments that test them with ``in_segment`` (transitively)."""
    out: set[str] = set()
    todo = [n for n in names if n in segments]
    readers: dict[str, set[str]] = {}
    for segment in segments.values():
        for used in segment.segments:
            readers.setdefault(used, set()).add(segment.name)
    while todo:
        name = todo.pop()
        if name in out:
            continue
        out.add(name)
        segment = segments[name]
        if segment.group is not None:
            todo.extend(s.name for s in segments.values() if s.group == segment.group and s.name not in out)
        todo.extend(r for r in readers.get(name, ()) if r not in out)
    return out


def layers(names: Collection[str], segments: Mapping[str, CompiledSegment]) -> list[list[str]]:
    """``names`` in evaluation order: a segment comes after the segments it tests with ``in_segment``,
    and a group's segments share a layer. Raises ``ValueError`` on a cycle."""
    unit_of: dict[str, str] = {n: f"group:{segments[n].group}" if segments[n].group else n for n in names}
    units: dict[str, list[str]] = {}
    for name in sorted(names):
        units.setdefault(unit_of[name], []).append(name)
    needs: dict[str, set[str]] = {
        unit: {unit_of[d] for m in members for d in segments[m].segments if d in unit_of} - {unit}
        for unit, members in units.items()
    }
    out: list[list[str]] = []
    done: set[str] = set()
    while len(done) < len(units):
        ready = sorted(u for u in units if u not in done and needs[u] <= done)
        if not ready:
            cycle = sorted(u for u in units if u not in done)
            raise ValueError(f"segments test each other in a cycle: {', '.join(cycle)}")
        out.append([m for u in ready for m in units[u]])
        done.update(ready)
    return out


@dataclass(frozen=True, slots=True)
class Change:
    profile_id: str
    segment: str
    entered: bool


def changes(profile_id: str, before: Collection[str], after: Collection[str], scope: Collection[str]) -> list[Change]:
    """Entries and exits among the segments of ``scope`` (sorted, exits first)."""
    exits = sorted(s for s in scope if s in before and s not in after)
    entries = sorted(s for s in scope if s in after and s not in before)
    return [Change(profile_id, s, False) for s in exits] + [Change(profile_id, s, True) for s in entries]
