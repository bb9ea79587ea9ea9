"""Storing resources: apply (idempotent, versioned, audited), diff against the stored state, export."""

from __future__ import annotations

import orjson

from rapport.errors import ValidationError
from rapport.resources.model import Change, Resource, canonical_json
from rapport.resources.parse import dump_documents, parse_documents
from rapport.resources.plan import plan_changes
from rapport.storage.base import Conn
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import JsonObject, Millis, WorkspaceId


def stored(conn: Conn, ws: WorkspaceId) -> dict[tuple[str, str], Resource]:
    return {(r[0], r[1]): Resource.from_spec(orjson.loads(r[3])) for r in resources_sql.current(conn, ws)}


def diff(conn: Conn, ws: WorkspaceId, text: str, prune: bool = False) -> list[Change]:
    """What applying ``text`` would change (validates it, references between resources included;
    writes nothing)."""
    current = stored(conn, ws)
    desired = parse_documents(text)
    changes = plan_changes(current, desired, prune=prune)
    check_references(conn, ws, current, changes, desired)
    return changes


def check_references(conn: Conn, ws: WorkspaceId, current: dict[tuple[str, str], Resource],
                     changes: list[Change], desired: list[Resource]) -> None:
    """Check what documents say about each other once applied: a segment's rule against the
    workspace's computed traits, purposes and segments (and no ``in_segment`` cycle)."""
    final = dict(current)
    for change in changes:
        key = (change.kind, change.name)
        if change.action == "delete":
            final.pop(key, None)
        elif change.after is not None:
            final[key] = Resource(change.kind, change.name, change.after)
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
    if details:
        raise ValidationError(f"{len(details)} invalid resource document(s)", code="invalid_resource",
                              details=details)


def apply(conn: Conn, ws: WorkspaceId, text: str, actor: str, now: Millis, prune: bool = False) -> list[Change]:
    """Validate every document, then store a new version of each changed resource (all or nothing)."""
    changes = diff(conn, ws, text, prune)
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
