"""Storing resources: apply (idempotent, versioned, audited), diff against the stored state, export."""

from __future__ import annotations

import orjson

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
    """What applying ``text`` would change (validates it; writes nothing)."""
    return plan_changes(stored(conn, ws), parse_documents(text), prune=prune)


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
