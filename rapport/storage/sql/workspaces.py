"""Workspaces, credentials and the audit log."""

from __future__ import annotations

from typing import Any

import orjson

from rapport.storage.base import Conn, Row
from rapport.types import JsonObject, Millis


def insert_workspace(conn: Conn, ws: str, name: str, now: Millis, wrapped_key: bytes, settings: JsonObject) -> None:
    conn.execute(
        "INSERT INTO workspaces (id, name, created_at, wrapped_key, settings) VALUES (?, ?, ?, ?, ?)",
        (ws, name, now, wrapped_key, orjson.dumps(settings).decode()),
    )


def workspace_by_name(conn: Conn, name: str) -> Row | None:
    return conn.one("SELECT id, name, created_at, wrapped_key, settings FROM workspaces WHERE name = ?", (name,))


def workspace(conn: Conn, ws: str) -> Row | None:
    """(id, name, created_at, wrapped_key, settings, identity_version, identity_previous_until)."""
    return conn.one("SELECT id, name, created_at, wrapped_key, settings, identity_version, identity_previous_until"
                    " FROM workspaces WHERE id = ?", (ws,))


def rotate_identity(conn: Conn, ws: str, previous_until: Millis) -> int:
    """Move the workspace to the next identity-verification secret, accepting the current one's hashes until
    ``previous_until``; the new version."""
    conn.execute("UPDATE workspaces SET identity_version = identity_version + 1, identity_previous_until = ?"
                 " WHERE id = ?", (previous_until, ws))
    return int(conn.value("SELECT identity_version FROM workspaces WHERE id = ?", (ws,)))


def list_workspaces(conn: Conn) -> list[Row]:
    return conn.all("SELECT id, name, created_at FROM workspaces ORDER BY created_at, id")


def update_settings(conn: Conn, ws: str, settings: JsonObject) -> None:
    conn.execute("UPDATE workspaces SET settings = ? WHERE id = ?", (orjson.dumps(settings).decode(), ws))


def insert_credential(
    conn: Conn, ws: str, cred_id: str, kind: str, role: str | None, digest: str, label: str | None, now: Millis
) -> None:
    conn.execute(
        "INSERT INTO credentials (workspace_id, id, kind, role, secret_hash, label, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (ws, cred_id, kind, role, digest, label, now),
    )


def credential_by_hash(conn: Conn, digest: str) -> Row | None:
    """The one lookup not keyed by workspace: a secret is what tells us the workspace."""
    return conn.one(
        "SELECT workspace_id, id, kind, role FROM credentials WHERE secret_hash = ? AND revoked_at IS NULL",
        (digest,),
    )


def list_credentials(conn: Conn, ws: str) -> list[Row]:
    return conn.all(
        "SELECT id, kind, role, label, created_at, revoked_at FROM credentials WHERE workspace_id = ?"
        " ORDER BY created_at, id",
        (ws,),
    )


def revoke_credential(conn: Conn, ws: str, cred_id: str, now: Millis) -> int:
    return conn.execute(
        "UPDATE credentials SET revoked_at = ? WHERE workspace_id = ? AND id = ? AND revoked_at IS NULL",
        (now, ws, cred_id),
    )


def audit(conn: Conn, ws: str, actor: str, action: str, target: str, detail: Any, now: Millis) -> None:
    conn.execute(
        "INSERT INTO audit_log (workspace_id, actor, action, target, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
        (ws, actor, action, target, orjson.dumps(detail).decode(), now),
    )


def audit_entries(conn: Conn, ws: str, after: int, limit: int) -> list[Row]:
    return conn.all(
        "SELECT seq, actor, action, target, detail, at FROM audit_log WHERE workspace_id = ? AND seq > ?"
        " ORDER BY seq LIMIT ?",
        (ws, after, limit),
    )
