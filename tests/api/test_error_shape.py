"""Every error of every API has one shape: ``{"code", "message", "details"}`` and the right status."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from api.support import ApiClient, admin, assert_error, basic, bearer, nothing_stored, track
from rapport.api.app import create_app
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport
from rapport.storage import open_database

if TYPE_CHECKING:
    from conftest import Backend

ORDER = {"userId": "u1", "event": "Order Completed", "properties": {"revenue": 10}}


def test_400_from_tracking(client: ApiClient, workspace: NewWorkspace) -> None:
    response = client.post("/v1/track", content=b'{"userId": "u1",', headers=basic(workspace.write_key))
    assert_error(response, 400, "invalid_json")


def test_400_from_admin(client: ApiClient, workspace: NewWorkspace) -> None:
    body = assert_error(admin(client, workspace, "GET", "/api/v1/profiles/lookup", params={"shoe_size": "9"}),
                        400, "invalid_lookup")
    assert body["details"] == [{"unknown": ["shoe_size"]}]


def test_400_from_admin_schema_validation(client: ApiClient, workspace: NewWorkspace) -> None:
    response = admin(client, workspace, "GET", "/api/v1/profiles/prf_x/events", params={"limit": "0"})
    body = assert_error(response, 400, "invalid_request")
    assert body["details"][0]["field"] == "query.limit"


def test_401_from_tracking(client: ApiClient) -> None:
    assert_error(client.post("/v1/track", json=ORDER), 401, "missing_credentials")
    assert_error(client.post("/v1/track", json=ORDER, headers=basic("wk_not-a-key")), 401, "invalid_credentials")


def test_401_from_admin(client: ApiClient) -> None:
    assert_error(client.get("/api/v1/resources"), 401, "missing_credentials")
    assert_error(client.get("/api/v1/resources", headers=bearer("rat_not-a-token")), 401, "invalid_credentials")


def test_403_from_tracking(client: ApiClient, workspace: NewWorkspace) -> None:
    response = client.post("/v1/track", json=ORDER, headers=basic(workspace.admin_token))
    assert_error(response, 403, "wrong_credential_kind")


def test_403_from_admin(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    viewer = rapport.create_token(workspace.workspace_id, "viewer", "viewer", "test")
    body = assert_error(admin(client, workspace, "GET", "/api/v1/profiles/lookup", token=viewer,
                              params={"user_id": "u1"}), 403, "forbidden")
    assert body["details"] == [{"required": "profiles:read", "role": "viewer"}]
    response = client.get("/api/v1/resources", headers=bearer(workspace.write_key))
    assert_error(response, 403, "wrong_credential_kind")


def test_404_from_tracking(client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(track(client, workspace, "/v1/trak", ORDER), 404, "not_found")


def test_404_from_admin(client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(admin(client, workspace, "GET", "/api/v1/profiles/lookup", params={"email": "no@body.example"}),
                 404, "profile_not_found")
    assert_error(admin(client, workspace, "GET", "/api/v1/profiles/prf_missing"), 404, "profile_not_found")
    assert_error(admin(client, workspace, "GET", "/api/v1/resources/Segment/nope/history"), 404,
                 "resource_not_found")
    assert_error(admin(client, workspace, "GET", "/api/v1/no-such-route"), 404, "not_found")


def test_405_has_the_shape_too(client: ApiClient, workspace: NewWorkspace) -> None:
    assert_error(client.get("/v1/track", headers=basic(workspace.write_key)), 405, "method_not_allowed")


def test_409_from_admin(client: ApiClient, workspace: NewWorkspace) -> None:
    track(client, workspace, "/v1/identify", {"anonymousId": "a1", "traits": {"plan": "free"}})
    track(client, workspace, "/v1/identify", {"userId": "u1", "traits": {"plan": "pro"}})
    track(client, workspace, "/v1/identify", {"userId": "u1", "anonymousId": "a1"})
    profile_id = admin(client, workspace, "GET", "/api/v1/profiles/lookup", params={"user_id": "u1"}).json()["id"]
    merge_id = admin(client, workspace, "GET", f"/api/v1/profiles/{profile_id}/merges").json()["merges"][0]["id"]
    path = f"/api/v1/profiles/{profile_id}/unmerge"
    assert admin(client, workspace, "POST", path, json={"merge_id": merge_id}).status_code == 200
    assert_error(admin(client, workspace, "POST", path, json={"merge_id": merge_id}), 409, "already_unmerged")


def test_413_from_tracking(client: ApiClient, rapport: Rapport, workspace: NewWorkspace) -> None:
    big = {**ORDER, "properties": {"blob": "x" * 40_000}}
    assert_error(track(client, workspace, "/v1/track", big), 413, "body_too_large")
    assert nothing_stored(rapport, workspace)


def test_413_from_admin(client: ApiClient, workspace: NewWorkspace) -> None:
    big = {"identifiers": {"user_id": "u1"}, "purpose": "analytics", "state": "granted", "source": "x" * 20_000}
    assert_error(admin(client, workspace, "POST", "/api/v1/consent", json=big), 413, "body_too_large")


@dataclass
class Saturated:
    """A Rapport whose writer accepts one job at a time, held busy until ``release``."""

    rapport: Rapport
    workspace: NewWorkspace
    client: ApiClient
    gate: threading.Event
    busy: Future[bool]

    def release(self) -> None:
        """Let the writer finish its job; returns once the backlog is empty again."""
        self.gate.set()
        assert self.busy.result(timeout=30)


@pytest.fixture
def saturated(backend: Backend, tmp_path: Path, clock: FrozenClock) -> Iterator[Saturated]:
    settings = backend.settings(tmp_path)
    rapport = Rapport(settings, clock=clock, db=open_database(settings, max_backlog=1))
    workspace = rapport.create_workspace("saturated-" + clock.new_id("t"))
    client = ApiClient(create_app(rapport, worker=False))
    gate = threading.Event()
    busy = rapport.db.submit(lambda _conn: gate.wait(30))
    try:
        yield Saturated(rapport, workspace, client, gate, busy)
    finally:
        gate.set()
        busy.result(timeout=30)
        client.close()
        rapport.close()


def test_429_from_tracking_carries_retry_after(saturated: Saturated) -> None:
    response = track(saturated.client, saturated.workspace, "/v1/track", ORDER)
    assert_error(response, 429, "overloaded")
    assert int(response.headers["Retry-After"]) >= 1
    saturated.release()
    assert nothing_stored(saturated.rapport, saturated.workspace)


def test_429_from_admin_carries_retry_after(saturated: Saturated) -> None:
    body = {"identifiers": {"user_id": "u1"}, "purpose": "analytics", "state": "granted"}
    response = admin(saturated.client, saturated.workspace, "POST", "/api/v1/consent", json=body)
    assert_error(response, 429, "overloaded")
    assert int(response.headers["Retry-After"]) >= 1


def test_429_clears_once_the_writer_catches_up(saturated: Saturated) -> None:
    assert track(saturated.client, saturated.workspace, "/v1/track", ORDER).status_code == 429
    saturated.release()
    assert saturated.rapport.db.backlog() == 0
    response = track(saturated.client, saturated.workspace, "/v1/track", ORDER)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True}
    assert saturated.client.get("/healthz").status_code == 200
