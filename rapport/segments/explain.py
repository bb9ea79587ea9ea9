"""``explain``: a segment's rule for one stored profile, each node with its value."""

from __future__ import annotations

from rapport.rules.explain import explain
from rapport.segments.stored import StoredContext, load, needs
from rapport.storage.base import Conn
from rapport.types import JsonObject, Millis
from rapport.workspaces.runtime import CompiledSegment, WorkspaceRuntime


def explain_profile(conn: Conn, rt: WorkspaceRuntime, segment: CompiledSegment, profile_id: str,
                    at: Millis) -> JsonObject | None:
    """The rule tree of ``segment`` evaluated for ``profile_id`` at ``at`` (None: a default segment
    without a rule, whose membership follows the rest of its group)."""
    if segment.rule is None:
        return None
    data = load(conn, rt, needs(segment.rule, rt), [profile_id])[profile_id]
    return explain(segment.rule, StoredContext(rt, data, at))
