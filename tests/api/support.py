"""Helpers for API tests: a synchronous client over the real ASGI app, credentials, stored-row counts."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from typing import Any

import httpx
from starlette.types import ASGIApp

from rapport.clock import parse_iso
from rapport.core import NewWorkspace, Rapport

NOW = parse_iso("2026-03-02T10:00:00Z")
"""The frozen 'now' of every test clock."""
ERROR_KEYS = {"code", "message", "details"}
TENANT_TABLES = ("events", "profiles", "identifiers", "traits", "trait_values", "buckets", "consent_ledger",
                 "quarantine", "merges", "identity_conflicts")
"""Tables an ingested message can leave rows in."""


class ApiClient:
    """Plain synchronous calls into the app through ``httpx.ASGITransport`` (no server, no threads of ours).

    One event loop per client, kept for its lifetime, so the app sees one loop as under uvicorn.
    """

    def __init__(self, app: ASGIApp) -> None:
        self._runner = asyncio.Runner()
        self._client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://rapport.test")

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._runner.run(self._client.request(method, url, **kwargs))

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def patch(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("PATCH", url, **kwargs)

    def close(self) -> None:
        try:
            self._runner.run(self._client.aclose())
        finally:
            self._runner.close()


def basic(write_key: str) -> dict[str, str]:
    """HTTP Basic with the write key as user name and an empty password, as the Segment SDKs send it."""
    return {"Authorization": "Basic " + base64.b64encode(f"{write_key}:".encode()).decode()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def track(client: ApiClient, ws: NewWorkspace, path: str, body: Any, **headers: str) -> httpx.Response:
    """POST a JSON body to a tracking endpoint with the workspace's write key."""
    return client.post(path, json=body, headers={**basic(ws.write_key), **headers})


def admin(client: ApiClient, ws: NewWorkspace, method: str, path: str, *, token: str | None = None,
          **kwargs: Any) -> httpx.Response:
    """Call an admin route with the workspace's admin token (or ``token``)."""
    headers = {**bearer(token or ws.admin_token), **kwargs.pop("headers", {})}
    return client.request(method, path, headers=headers, **kwargs)


def user_hash(client: ApiClient, ws: NewWorkspace, user_id: str) -> str:
    """What the customer's server hands a browser with a user id: HMAC-SHA256 of it under the identity secret."""
    response = admin(client, ws, "GET", "/api/v1/settings/identity-secret")
    assert response.status_code == 200, response.text
    return hmac.new(bytes.fromhex(response.json()["identity_secret"]), user_id.encode(), hashlib.sha256).hexdigest()


def proven(client: ApiClient, ws: NewWorkspace, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (a decide body or inbox query) with the ``user_hash`` a write key needs to name a ``user_id``."""
    return {**fields, "user_hash": user_hash(client, ws, fields["user_id"])} if "user_id" in fields else fields


def apply_yaml(client: ApiClient, ws: NewWorkspace, text: str, *, token: str | None = None) -> httpx.Response:
    return admin(client, ws, "POST", "/api/v1/apply", token=token, content=text.encode(),
                 headers={"Content-Type": "application/yaml"})


def lookup(client: ApiClient, ws: NewWorkspace, **identifier: str) -> httpx.Response:
    return admin(client, ws, "GET", "/api/v1/profiles/lookup", params=identifier)


def profile_of(client: ApiClient, ws: NewWorkspace, **identifier: str) -> dict[str, Any]:
    """The unified profile holding an identifier (asserting that one exists)."""
    response = lookup(client, ws, **identifier)
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def timeline(client: ApiClient, ws: NewWorkspace, profile_id: str, limit: int = 500) -> list[dict[str, Any]]:
    """Every event of a profile, newest first (one page)."""
    response = admin(client, ws, "GET", f"/api/v1/profiles/{profile_id}/events", params={"limit": limit})
    assert response.status_code == 200, response.text
    events: list[dict[str, Any]] = response.json()["events"]
    return events


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the one error shape with this status and code; returns the body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == ERROR_KEYS, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], list)
    return body


def stored_counts(rapport: Rapport, ws: NewWorkspace) -> dict[str, int]:
    """Rows of the workspace in every table an ingested message can write to."""
    def count(conn: Any) -> dict[str, int]:
        return {table: int(conn.value(f"SELECT count(*) FROM {table} WHERE workspace_id = ?",
                                      (ws.workspace_id,))) for table in TENANT_TABLES}
    counts: dict[str, int] = rapport.db.read(count)
    return counts


def nothing_stored(rapport: Rapport, ws: NewWorkspace) -> bool:
    """True when no message left any row in the workspace."""
    return all(n == 0 for n in stored_counts(rapport, ws).values())


def event_rows(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    """(message_id, type, name, restricted, flagged, body) of every stored event, in arrival order."""
    return rapport.db.read(lambda c: c.all(
        "SELECT message_id, type, name, restricted, flagged, body FROM events WHERE workspace_id = ? ORDER BY seq",
        (ws.workspace_id,)))
