"""Storing resources: apply (idempotent, versioned, audited), diff against the stored state, export."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson

from rapport.errors import ValidationError
from rapport.resources.fields import did_you_mean
from rapport.resources.model import Change, Resource, canonical_json
from rapport.resources.parse import dump_documents, parse_documents
from rapport.resources.plan import plan_changes
from rapport.storage.base import Conn
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, Millis, WorkspaceId

if TYPE_CHECKING:
    from rapport.workspaces.keys import Keyring
    from rapport.workspaces.runtime import WorkspaceRuntime


def stored(conn: Conn, ws: WorkspaceId) -> dict[tuple[str, str], Resource]:
    return {(r[0], r[1]): Resource.from_spec(orjson.loads(r[3])) for r in resources_sql.current(conn, ws)}


def diff(conn: Conn, ws: WorkspaceId, text: str, prune: bool = False, *, now: Millis,
         keyring: Keyring | None = None) -> list[Change]:
    """What applying ``text`` at ``now`` would change (validates it, references between resources and
    segment fixtures included; writes nothing). Fixtures are resolved with ``keyring``."""
    current = stored(conn, ws)
    desired = parse_documents(text)
    changes = plan_changes(current, desired, prune=prune)
    check_references(conn, ws, current, changes, desired, now=now, keyring=keyring)
    return changes


def check_references(conn: Conn, ws: WorkspaceId, current: dict[tuple[str, str], Resource],
                     changes: list[Change], desired: list[Resource], *, now: Millis,
                     keyring: Keyring | None = None) -> None:
    """Check what documents say about each other once applied: a segment's rule against the
    workspace's computed traits, purposes and segments (and no ``in_segment`` cycle); then, with the
    rules sound, each desired segment's fixtures against the stored profiles at ``now``.

    Fixtures need ``keyring`` (e-mail and phone are found by blind index, events are encrypted);
    without it a segment with fixtures is an error rather than a check silently skipped."""
    final = dict(current)
    for change in changes:
        key = (change.kind, change.name)
        if change.action == "delete":
            final.pop(key, None)
        elif change.after is not None:
            final[key] = Resource(change.kind, change.name, change.after)
    from rapport.content.check import content_problems
    from rapport.resources.builtin.journey import publish_problems

    delivery = (_delivery_problems(final, desired) + publish_problems(conn, ws, current, final, desired)
                + content_problems(conn, ws, final, desired))
    if delivery:
        documents = len({d["document"] for d in delivery})
        raise ValidationError(f"{documents} invalid resource document(s)", code="invalid_resource", details=delivery)
    if not any(kind == "Segment" for kind, _ in final):
        return
    # Imported on use: only workspaces with segments need the rule engines.
    from rapport.segments.check import check_rule
    from rapport.segments.membership import layers
    from rapport.workspaces.runtime import build_runtime

    row = ws_sql.workspace(conn, ws)
    if row is None:
        return
    rt = build_runtime(row, -1, [(r.kind, r.spec, 0) for r in final.values()])
    names = set(rt.segments)
    position = {(r.kind, r.name): i + 1 for i, r in enumerate(desired)}
    details: list[JsonObject] = []
    for resource in desired:
        if resource.kind != "Segment" or not resource.spec.get("rule"):
            continue
        try:
            check_rule(str(resource.spec["rule"]), rt, names)
        except ValidationError as exc:
            details.append({"document": position[resource.key], "kind": "Segment", "name": resource.name,
                            "field": "rule", "message": exc.message, "expected": "a rule over known fields"})
    if not details:
        try:
            layers(list(names), rt.segments)
        except ValueError as exc:
            details.append({"document": 0, "kind": "Segment", "name": "", "field": "rule", "message": str(exc),
                            "expected": "segments that do not test each other in a cycle"})
    if not details:
        details = _fixture_failures(conn, rt, desired, position, now, keyring)
    if details:
        documents = len({d["document"] for d in details})
        raise ValidationError(f"{documents} invalid resource document(s)", code="invalid_resource", details=details)


def _delivery_problems(final: dict[tuple[str, str], Resource], desired: list[Resource]) -> list[JsonObject]:
    """Templates name an existing channel whose messages they can make; journeys send through existing
    channels and templates that fit each other (every journey and template of the final state is
    checked, so deleting a channel still in use is refused; document 0 is one not in this apply)."""
    from rapport.resources.builtin import experiment, model, subscription_group, suppression_rule
    from rapport.resources.builtin.journey import check_deliveries
    from rapport.resources.builtin.template import MESSAGE_TYPE_OF_CHANNEL, PARTS, parts_problem

    channels = {name: str(r.spec.get("type")) for (kind, name), r in final.items() if kind == "Channel"}
    templates = {name: str(r.spec.get("channel")) for (kind, name), r in final.items() if kind == "Template"}
    position = {(r.kind, r.name): i + 1 for i, r in enumerate(desired)}
    details: list[JsonObject] = []

    def add(resource: Resource, field: str, message: str, expected: str) -> None:
        details.append({"document": position.get(resource.key, 0), "kind": resource.kind, "name": resource.name,
                        "field": field, "message": message, "expected": expected})

    for (kind, name), resource in sorted(final.items()):
        if kind == "Template":
            channel = templates[name]
            if channel not in channels:
                add(resource, "channel", f"unknown channel {channel!r}{did_you_mean(channel, channels)}",
                    "the name of a Channel")
                continue
            message_type = MESSAGE_TYPE_OF_CHANNEL.get(channels[channel])
            parts = frozenset(p for p in PARTS if p in resource.spec)
            problem = (f"channel {channel!r} is a webhook; webhooks post the event and take no template"
                       if message_type is None else parts_problem(parts, message_type))
            if problem is not None:
                add(resource, "channel", f"template {name!r} for channel {channel!r}: {problem}",
                    "parts that fit the channel's type")
        elif kind == "Journey":
            for field, message in check_deliveries(resource.spec, channels, templates):
                add(resource, field, message, "channels and templates that exist and fit each other")
    specs = {key: r.spec for key, r in final.items()}
    for kind, name, field, message in (*suppression_rule.reference_problems(specs),
                                       *subscription_group.reference_problems(specs),
                                       *experiment.reference_problems(specs),
                                       *model.reference_problems(specs)):
        add(final[(kind, name)], field, message, "names of resources that exist")
    return details


def _fixture_failures(conn: Conn, rt: WorkspaceRuntime, desired: list[Resource],
                      position: dict[tuple[str, str], int], now: Millis, keyring: Keyring | None) -> list[JsonObject]:
    """One detail per fixture of a desired segment that its rule puts on the wrong side at ``now``."""
    from rapport.segments.fixtures import check_fixtures

    details: list[JsonObject] = []
    for resource in desired:
        segment = rt.segments.get(resource.name) if resource.kind == "Segment" else None
        if segment is None or not segment.spec.get("fixtures"):
            continue
        base = {"document": position[resource.key], "kind": "Segment", "name": resource.name}
        if keyring is None:
            details.append({**base, "field": "fixtures", "expected": "a caller that passes the workspace keys",
                            "message": f"fixtures of segment {resource.name!r} cannot be checked: this caller of "
                                       "resources.service passed no keyring (apply through the API or the CLI)"})
            continue
        details += [{**base, "field": f.field, "message": f.message, "expected": f.expected}
                    for f in check_fixtures(conn, rt, segment, keyring, now)]
    return details


def apply(conn: Conn, ws: WorkspaceId, text: str, actor: str, now: Millis, prune: bool = False, *,
          keyring: Keyring | None = None) -> list[Change]:
    """Validate every document (segment fixtures at ``now``, resolved with ``keyring``), then store a
    new version of each changed resource (all or nothing)."""
    changes = diff(conn, ws, text, prune, now=now, keyring=keyring)
    for change in changes:
        if change.action == "unchanged":
            continue
        spec = change.after if change.after is not None else change.before
        assert spec is not None
        resources_sql.insert_version(conn, ws, change.kind, change.name, canonical_json(spec).decode(),
                                     Resource(change.kind, change.name, spec).digest, change.action == "delete",
                                     actor, now)
        ws_sql.audit(conn, ws, actor, f"resource.{change.action}", f"{change.kind}/{change.name}", {}, now)
    return changes


def export(conn: Conn, ws: WorkspaceId, kind: str | None = None) -> str:
    resources = [Resource.from_spec(orjson.loads(r[3])) for r in resources_sql.current(conn, ws, kind)]
    return dump_documents(resources)


def change_json(change: Change) -> JsonObject:
    return {"action": change.action, "kind": change.kind, "name": change.name, "diff": list(change.diff)}
