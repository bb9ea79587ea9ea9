"""``explain``: a segment's rule for one stored profile, each node with its value."""

from __future__ import annotations

from rapport.privacy.pii import is_marker
from rapport.rules.explain import explain, to_text_value
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
    return masked(explain(segment.rule, StoredContext(rt, data, at)))


ENCRYPTED = "(encrypted)"


def masked(tree: JsonObject) -> JsonObject:
    """``tree`` with personal values that are stored encrypted shown as ``(encrypted)`` in the reasons
    and values (the rule engines compare them as opaque markers; their ciphertext tells a reader nothing)."""
    out = dict(tree)
    reason = out.get("reason")
    for key in ("left", "right", "path_value"):
        value = out.get(key)
        if is_marker(value):
            if isinstance(reason, str):
                reason = reason.replace(to_text_value(value), ENCRYPTED)
            out[key] = ENCRYPTED
    if reason is not None:
        out["reason"] = reason
    children = out.get("children")
    if isinstance(children, list):
        out["children"] = [masked(c) if isinstance(c, dict) else c for c in children]
    return out
