"""Planning an apply: create, update, unchanged and prune, with readable diffs."""

from __future__ import annotations

import pytest

from rapport.errors import ValidationError
from rapport.resources import Resource, parse_documents, plan_changes

TEXT = """\
kind: ComputedTrait
name: orders_90d
event: Order Completed
aggregate: count
window: 90d
---
kind: ConsentPurpose
name: newsletter
description: Our weekly newsletter
"""


def stored(resources: list[Resource]) -> dict[tuple[str, str], Resource]:
    return {r.key: r for r in resources}


def test_first_apply_creates_everything() -> None:
    changes = plan_changes({}, parse_documents(TEXT))
    assert [(c.action, c.kind, c.name) for c in changes] == [
        ("create", "ComputedTrait", "orders_90d"),
        ("create", "ConsentPurpose", "newsletter"),
    ]
    first = changes[0]
    assert first.before is None and first.after == parse_documents(TEXT)[0].spec
    assert first.diff[:3] == ("--- /dev/null", "+++ ComputedTrait/orders_90d (desired)", "@@ -0,0 +1,6 @@")
    assert first.diff[3:] == (
        "+kind: ComputedTrait",
        "+name: orders_90d",
        "+event: Order Completed",
        "+aggregate: count",
        "+window: 90d",
        "+purpose: analytics",
    )


def test_applying_the_same_text_again_changes_nothing() -> None:
    current = stored(parse_documents(TEXT))
    changes = plan_changes(current, parse_documents(TEXT), prune=True)
    assert [c.action for c in changes] == ["unchanged", "unchanged"]
    assert all(c.diff == () for c in changes)
    assert changes[0].before == changes[0].after


def test_defaults_written_out_or_left_implicit_are_the_same_resource() -> None:
    explicit = TEXT.replace("window: 90d\n", "window: 90d\npurpose: analytics\n")
    changes = plan_changes(stored(parse_documents(TEXT)), parse_documents(explicit))
    assert [c.action for c in changes] == ["unchanged", "unchanged"]


def test_update_shows_a_unified_diff_of_the_yaml() -> None:
    current = stored(parse_documents(TEXT))
    changed = parse_documents(TEXT.replace("window: 90d", "window: 30d"))
    change = plan_changes(current, changed)[0]
    assert change.action == "update"
    assert change.before is not None and change.before["window"] == "90d"
    assert change.after is not None and change.after["window"] == "30d"
    assert change.diff == (
        "--- ComputedTrait/orders_90d (current)",
        "+++ ComputedTrait/orders_90d (desired)",
        "@@ -2,5 +2,5 @@",
        " name: orders_90d",
        " event: Order Completed",
        " aggregate: count",
        "-window: 90d",
        "+window: 30d",
        " purpose: analytics",
    )


def test_prune_deletes_only_missing_resources_of_the_kinds_applied() -> None:
    extra = parse_documents(
        "kind: ComputedTrait\nname: old\nevent: x\naggregate: count\n---\nkind: TrackingPlan\nname: web\n"
    )
    current = stored(parse_documents(TEXT) + extra)
    desired = parse_documents(TEXT)[:1]
    changes = plan_changes(current, desired, prune=True)
    assert [(c.action, c.kind, c.name) for c in changes] == [
        ("unchanged", "ComputedTrait", "orders_90d"),
        ("delete", "ComputedTrait", "old"),
    ]
    deleted = changes[1]
    assert deleted.after is None and deleted.before == extra[0].spec
    assert deleted.diff[:2] == ("--- ComputedTrait/old (current)", "+++ /dev/null")
    assert all(line.startswith("-") for line in deleted.diff[3:])
    assert [c.action for c in plan_changes(current, desired)] == ["unchanged"]


def test_duplicate_desired_resources_are_refused() -> None:
    [trait, _] = parse_documents(TEXT)
    with pytest.raises(ValidationError) as caught:
        plan_changes({}, [trait, trait])
    assert caught.value.code == "duplicate_resource"
    assert caught.value.message == (
        "duplicate ComputedTrait 'orders_90d' in the desired resources; expected each kind and name at most once"
    )
