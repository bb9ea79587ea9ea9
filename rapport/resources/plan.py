"""Planning an apply: what creating, updating and pruning resources would change."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from rapport.errors import ValidationError
from rapport.resources.model import Change, ChangeAction, Resource
from rapport.resources.parse import dump_document


def plan_changes(
    current: Mapping[tuple[str, str], Resource], desired: Sequence[Resource], prune: bool = False
) -> list[Change]:
    """The changes that make ``current`` match ``desired``, in the order of ``desired``.

    A desired resource whose spec equals the stored one is ``unchanged``, so applying the same text
    twice changes nothing. With ``prune``, stored resources of the kinds present in ``desired`` that
    ``desired`` no longer lists become ``delete`` changes, sorted by kind and name; kinds absent from
    ``desired`` are left alone.
    """
    changes: list[Change] = []
    wanted: set[tuple[str, str]] = set()
    for resource in desired:
        if resource.key in wanted:
            raise ValidationError(
                f"duplicate {resource.kind} {resource.name!r} in the desired resources; "
                "expected each kind and name at most once",
                code="duplicate_resource",
            )
        wanted.add(resource.key)
        before = current.get(resource.key)
        if before is None:
            changes.append(_change("create", None, resource))
        elif before.digest == resource.digest:
            changes.append(Change("unchanged", resource.kind, resource.name, before.spec, resource.spec, ()))
        else:
            changes.append(_change("update", before, resource))
    if prune:
        kinds = {kind for kind, _ in wanted}
        for key in sorted(current):
            if key[0] in kinds and key not in wanted:
                changes.append(_change("delete", current[key], None))
    return changes


def _change(action: ChangeAction, before: Resource | None, after: Resource | None) -> Change:
    subject = after or before
    assert subject is not None
    label = f"{subject.kind}/{subject.name}"
    diff = difflib.unified_diff(
        dump_document(before).splitlines() if before else [],
        dump_document(after).splitlines() if after else [],
        fromfile=f"{label} (current)" if before else "/dev/null",
        tofile=f"{label} (desired)" if after else "/dev/null",
        lineterm="",
    )
    return Change(
        action,
        subject.kind,
        subject.name,
        before.spec if before else None,
        after.spec if after else None,
        tuple(diff),
    )
