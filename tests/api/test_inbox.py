"""The inbox API (a person's in-app messages, with the write key) and the task lists of offline channels (with
an admin token), through the real ASGI app on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import Iterator
from typing import Any

import pytest

from api.support import ApiClient, admin, apply_yaml, assert_error, basic, bearer, profile_of, proven, track
from rapport.api.app import create_app
from rapport.channels.base import Message, Receipt
from rapport.channels.inapp import InAppChannel
from rapport.channels.offline import OfflineChannel
from rapport.clock import FrozenClock, to_iso
from rapport.core import NewWorkspace, Rapport
from rapport.types import MINUTE

CHANNELS = """\
kind: Channel
name: app_inbox
type: inapp
---
kind: Channel
name: call_list
type: offline
---
kind: Channel
name: email
type: smtp
host: 127.0.0.1
port: 1025
from: "Shop <hello@shop.example>"
"""


@pytest.fixture
def api(rapport: Rapport) -> Iterator[ApiClient]:
    """The app (the inbox routes are part of it)."""
    client = ApiClient(create_app(rapport, worker=False))
    try:
        yield client
    finally:
        client.close()


def person(api: ApiClient, ws: NewWorkspace, user_id: str | None = None, anonymous_id: str | None = None) -> str:
    """Identify a person through the tracking API; returns their profile id."""
    body = {k: v for k, v in (("userId", user_id), ("anonymousId", anonymous_id)) if v is not None}
    response = track(api, ws, "/v1/identify", body)
    assert response.status_code == 200, response.text
    key, value = ("user_id", user_id) if user_id is not None else ("anonymous_id", anonymous_id)
    assert value is not None
    profile_id: str = profile_of(api, ws, **{key: value})["id"]
    return profile_id


def deliver(rapport: Rapport, ws: NewWorkspace, clock: FrozenClock, profile_id: str, *titles: str,
            step: int = 1) -> list[Receipt]:
    """Send one in-app message per title, a minute apart, each under its own key."""
    channel = InAppChannel(rapport.db, ws.workspace_id, "app_inbox", clock)
    receipts = []
    for n, title in enumerate(titles):
        clock.advance(MINUTE)
        message = Message(f"{profile_id}:{step}:{n}", profile_id, subject=title, text=f"about {title}",
                          data={"n": n})
        receipts.append(asyncio.run(channel.send(message)))
    return receipts


def read_inbox(api: ApiClient, ws: NewWorkspace, **params: Any) -> dict[str, Any]:
    response = api.get("/v1/inbox", params=proven(api, ws, params), headers=basic(ws.write_key))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- the person's inbox ------------------------------------------------------------------------------------


def test_the_inbox_lists_a_persons_messages_newest_first_with_the_unread_count(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada = person(api, workspace, "ada")
    first, second = deliver(rapport, workspace, clock, ada, "Welcome", "Your cart")
    body = read_inbox(api, workspace, user_id="ada")
    assert body == {"unread": 2, "next": None, "messages": [
        {"id": second.provider_id, "title": "Your cart", "body": "about Your cart", "data": {"n": 1},
         "created_at": to_iso(second.accepted_at), "read_at": None},
        {"id": first.provider_id, "title": "Welcome", "body": "about Welcome", "data": {"n": 0},
         "created_at": to_iso(first.accepted_at), "read_at": None},
    ]}


def test_pages_follow_the_before_cursor_to_the_end(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada = person(api, workspace, "ada")
    receipts = deliver(rapport, workspace, clock, ada, *(f"m{n}" for n in range(5)))
    seen, before, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"user_id": "ada", "limit": 2}
        if before is not None:
            params["before"] = before
        body = read_inbox(api, workspace, **params)
        pages += 1
        assert body["unread"] == 5
        seen += [m["id"] for m in body["messages"]]
        before = body["next"]
        if before is None:
            break
    assert pages == 3
    assert seen == [r.provider_id for r in reversed(receipts)]


def test_messages_at_the_same_instant_page_without_loss_or_repeat(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada = person(api, workspace, "ada")
    channel = InAppChannel(rapport.db, workspace.workspace_id, "app_inbox", clock)
    ids = {asyncio.run(channel.send(Message(f"k{n}", ada, text=str(n)))).provider_id for n in range(7)}
    seen: list[str] = []
    params: dict[str, Any] = {"user_id": "ada", "limit": 3}
    while True:
        body = read_inbox(api, workspace, **params)
        seen += [m["id"] for m in body["messages"]]
        if body["next"] is None:
            break
        params["before"] = body["next"]
    assert len(seen) == 7 and set(seen) == ids


def test_the_inbox_follows_identity_an_anonymous_visitors_messages_join_their_account(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    account = person(api, workspace, user_id="ada")
    visitor = person(api, workspace, anonymous_id="anon-ada")
    assert visitor != account
    [early] = deliver(rapport, workspace, clock, visitor, "Before signing in")
    assert [m["id"] for m in read_inbox(api, workspace, anonymous_id="anon-ada")["messages"]] == [early.provider_id]

    merged = track(api, workspace, "/v1/identify", {"userId": "ada", "anonymousId": "anon-ada"})
    assert merged.status_code == 200, merged.text
    assert profile_of(api, workspace, anonymous_id="anon-ada")["id"] == profile_of(api, workspace, user_id="ada")["id"]
    [late] = deliver(rapport, workspace, clock, account, "After", step=2)
    for who in ({"user_id": "ada"}, {"anonymous_id": "anon-ada"}):
        body = read_inbox(api, workspace, **who)
        assert [m["id"] for m in body["messages"]] == [late.provider_id, early.provider_id]
        assert body["unread"] == 2


def test_marking_read_is_idempotent_and_lowers_the_unread_count(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada = person(api, workspace, "ada")
    first, _second = deliver(rapport, workspace, clock, ada, "One", "Two")
    clock.advance(MINUTE)
    read_at = clock.now_ms()
    response = api.post(f"/v1/inbox/{first.provider_id}/read", params=proven(api, workspace, {"user_id": "ada"}),
                        headers=basic(workspace.write_key))
    assert response.status_code == 200, response.text
    assert response.json()["unread"] == 1
    assert response.json()["message"]["read_at"] == to_iso(read_at)

    clock.advance(MINUTE)
    again = api.post(f"/v1/inbox/{first.provider_id}/read", params=proven(api, workspace, {"user_id": "ada"}),
                     headers=basic(workspace.write_key))
    assert again.status_code == 200, again.text
    assert again.json() == response.json()
    listed = {m["id"]: m["read_at"] for m in read_inbox(api, workspace, user_id="ada")["messages"]}
    assert listed[first.provider_id] == to_iso(read_at)
    assert read_inbox(api, workspace, user_id="ada")["unread"] == 1


def test_a_write_key_never_reaches_another_persons_messages(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada, bob = person(api, workspace, "ada"), person(api, workspace, "bob")
    [for_ada] = deliver(rapport, workspace, clock, ada, "For Ada")
    deliver(rapport, workspace, clock, bob, "For Bob")
    assert [m["title"] for m in read_inbox(api, workspace, user_id="bob")["messages"]] == ["For Bob"]

    stolen = api.post(f"/v1/inbox/{for_ada.provider_id}/read", params=proven(api, workspace, {"user_id": "bob"}),
                      headers=basic(workspace.write_key))
    assert_error(stolen, 404, "message_not_found")
    assert_error(api.get("/v1/inbox", params=proven(api, workspace, {"user_id": "bob", "before": for_ada.provider_id}),
                         headers=basic(workspace.write_key)), 400, "invalid_cursor")
    assert read_inbox(api, workspace, user_id="ada")["messages"][0]["read_at"] is None


def test_another_workspaces_write_key_sees_nothing_of_this_one(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    ada = person(api, workspace, "ada")
    [message] = deliver(rapport, workspace, clock, ada, "Private")
    other = rapport.create_workspace(f"{workspace.workspace_id}-other")
    person(api, other, "ada")
    assert read_inbox(api, other, user_id="ada") == {"messages": [], "unread": 0, "next": None}
    assert_error(api.post(f"/v1/inbox/{message.provider_id}/read", params=proven(api, other, {"user_id": "ada"}),
                          headers=basic(other.write_key)), 404, "message_not_found")


def test_an_unknown_person_has_an_empty_inbox_and_nothing_to_mark(
        workspace: NewWorkspace, api: ApiClient) -> None:
    assert read_inbox(api, workspace, user_id="never-seen") == {"messages": [], "unread": 0, "next": None}
    assert_error(api.post("/v1/inbox/inbox_x/read", params=proven(api, workspace, {"user_id": "never-seen"}),
                          headers=basic(workspace.write_key)), 404, "message_not_found")


@pytest.mark.parametrize(("params", "code"), [
    ({}, "invalid_person"),
    ({"user_id": "ada", "anonymous_id": "a1"}, "invalid_person"),
    ({"email": "ada@example.com"}, "invalid_person"),
    ({"user_id": "ada", "limit": 0}, "invalid_request"),
    ({"user_id": "ada", "limit": 101}, "invalid_request"),
    ({"user_id": "ada", "limit": "many"}, "invalid_request"),
    ({"user_id": "ada", "before": "inbox_nope"}, "invalid_cursor"),
], ids=["no-person", "two-identifiers", "email", "limit-0", "limit-101", "limit-text", "unknown-cursor"])
def test_a_bad_inbox_query_is_a_400_in_the_error_shape(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock, params: dict[str, Any],
        code: str) -> None:
    deliver(rapport, workspace, clock, person(api, workspace, "ada"), "Hello")
    assert_error(api.get("/v1/inbox", params=proven(api, workspace, params), headers=basic(workspace.write_key)),
                 400, code)


def test_the_inbox_needs_the_write_key(workspace: NewWorkspace, api: ApiClient) -> None:
    assert_error(api.get("/v1/inbox", params={"user_id": "ada"}), 401, "missing_credentials")
    assert_error(api.get("/v1/inbox", params={"user_id": "ada"}, headers=basic("wk_not_a_key")), 401,
                 "invalid_credentials")
    assert_error(api.get("/v1/inbox", params={"user_id": "ada"}, headers=basic(workspace.admin_token)), 403,
                 "wrong_credential_kind")
    assert_error(api.post("/v1/inbox/inbox_x/read", params={"user_id": "ada"}), 401, "missing_credentials")


# --- offline task lists ------------------------------------------------------------------------------------


def add_tasks(rapport: Rapport, ws: NewWorkspace, clock: FrozenClock, profile_id: str, *titles: str,
              channel: str = "call_list") -> list[str]:
    calls = OfflineChannel(rapport.db, ws.workspace_id, channel, clock)
    ids = []
    for n, title in enumerate(titles):
        clock.advance(MINUTE)
        message = Message(f"{channel}:{profile_id}:{title}", profile_id, subject=title, text=f"call about {n}",
                          data={"n": n})
        ids.append(asyncio.run(calls.send(message)).provider_id)
    return ids


def with_channels(api: ApiClient, ws: NewWorkspace) -> None:
    response = apply_yaml(api, ws, CHANNELS)
    assert response.status_code == 200, response.text


def test_tasks_are_listed_oldest_first_and_done_ones_leave_the_open_list(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    ada = person(api, workspace, "ada")
    first, second = add_tasks(rapport, workspace, clock, ada, "Call Ada", "Visit Ada")
    listed = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks")
    assert listed.status_code == 200, listed.text
    assert [(t["id"], t["title"], t["profile_id"], t["done_at"]) for t in listed.json()["tasks"]] == [
        (first, "Call Ada", ada, None), (second, "Visit Ada", ada, None)]
    assert listed.json()["next"] is None

    clock.advance(MINUTE)
    done_at = clock.now_ms()
    done = admin(api, workspace, "POST", f"/api/v1/channels/call_list/tasks/{first}/done")
    assert done.status_code == 200, done.text
    assert done.json()["done_at"] == to_iso(done_at)
    assert done.json()["done_by"].startswith("admin_token:")
    clock.advance(MINUTE)
    again = admin(api, workspace, "POST", f"/api/v1/channels/call_list/tasks/{first}/done")
    assert again.json() == done.json()

    still_open = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks", params={"open": "true"})
    assert [t["id"] for t in still_open.json()["tasks"]] == [second]
    everything = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks", params={"open": "false"})
    assert [t["id"] for t in everything.json()["tasks"]] == [first, second]


def test_task_pages_follow_the_after_cursor(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    ids = add_tasks(rapport, workspace, clock, person(api, workspace, "ada"), *(f"t{n}" for n in range(5)))
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        body = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks", params=params).json()
        seen += [t["id"] for t in body["tasks"]]
        if body["next"] is None:
            break
        params["after"] = body["next"]
    assert seen == ids


def test_the_csv_export_lists_the_tasks_with_formulas_defused(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    ada = person(api, workspace, "ada")
    first, second = add_tasks(rapport, workspace, clock, ada, "=HYPERLINK(\"http://evil.example\")", "Call, then visit")
    admin(api, workspace, "POST", f"/api/v1/channels/call_list/tasks/{first}/done")
    response = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks.csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="call_list-tasks.csv"'
    rows = list(csv.reader(io.StringIO(response.text, newline="")))
    assert rows[0] == ["id", "profile_id", "title", "body", "data", "created_at", "done_at"]
    assert [(r[0], r[1], r[2], r[4]) for r in rows[1:]] == [
        (first, ada, "'=HYPERLINK(\"http://evil.example\")", '{"n":0}'), (second, ada, "Call, then visit", '{"n":1}')]
    assert rows[1][6] != "" and rows[2][6] == ""
    open_only = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks.csv", params={"open": "true"})
    assert [r[0] for r in list(csv.reader(io.StringIO(open_only.text, newline="")))[1:]] == [second]


def test_a_viewer_reads_tasks_but_cannot_mark_them_done(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    [task] = add_tasks(rapport, workspace, clock, person(api, workspace, "ada"), "Call Ada")
    viewer = rapport.create_token(workspace.workspace_id, "viewer", "front desk", "cli")
    listed = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks", token=viewer)
    assert [t["id"] for t in listed.json()["tasks"]] == [task]
    assert admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks.csv", token=viewer).status_code == 200
    refused = assert_error(admin(api, workspace, "POST", f"/api/v1/channels/call_list/tasks/{task}/done",
                                 token=viewer), 403, "forbidden")
    assert refused["details"] == [{"required": "resources:write", "role": "viewer"}]
    marketer = rapport.create_token(workspace.workspace_id, "marketer", "crm", "cli")
    assert admin(api, workspace, "POST", f"/api/v1/channels/call_list/tasks/{task}/done",
                 token=marketer).status_code == 200


@pytest.mark.parametrize(("path", "method", "status", "code"), [
    ("/api/v1/channels/nope/tasks", "GET", 404, "channel_not_found"),
    ("/api/v1/channels/nope/tasks.csv", "GET", 404, "channel_not_found"),
    ("/api/v1/channels/email/tasks", "GET", 400, "not_offline_channel"),
    ("/api/v1/channels/app_inbox/tasks.csv", "GET", 400, "not_offline_channel"),
    ("/api/v1/channels/call_list/tasks/task_nope/done", "POST", 404, "task_not_found"),
    ("/api/v1/channels/email/tasks/task_nope/done", "POST", 400, "not_offline_channel"),
    ("/api/v1/channels/call_list/tasks?after=task_nope", "GET", 400, "invalid_cursor"),
    ("/api/v1/channels/call_list/tasks?limit=0", "GET", 400, "invalid_request"),
    ("/api/v1/channels/call_list/tasks?open=perhaps", "GET", 400, "invalid_request"),
], ids=["unknown", "unknown-csv", "smtp", "inapp", "unknown-task", "done-on-smtp", "unknown-cursor", "limit-0",
        "open-not-bool"])
def test_bad_task_requests_get_the_error_shape(
        workspace: NewWorkspace, api: ApiClient, path: str, method: str, status: int, code: str) -> None:
    with_channels(api, workspace)
    assert_error(admin(api, workspace, method, path), status, code)


def test_task_routes_need_an_admin_token_of_the_workspace(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    [task] = add_tasks(rapport, workspace, clock, person(api, workspace, "ada"), "Call Ada")
    assert_error(api.get("/api/v1/channels/call_list/tasks"), 401, "missing_credentials")
    assert_error(api.get("/api/v1/channels/call_list/tasks", headers=bearer(workspace.write_key)), 403,
                 "wrong_credential_kind")
    other = rapport.create_workspace(f"{workspace.workspace_id}-other")
    assert_error(admin(api, other, "GET", "/api/v1/channels/call_list/tasks"), 404, "channel_not_found")
    with_channels(api, other)
    assert admin(api, other, "GET", "/api/v1/channels/call_list/tasks").json()["tasks"] == []
    assert_error(admin(api, other, "POST", f"/api/v1/channels/call_list/tasks/{task}/done"), 404, "task_not_found")


def test_a_deleted_channel_keeps_its_tasks_readable(
        rapport: Rapport, workspace: NewWorkspace, api: ApiClient, clock: FrozenClock) -> None:
    with_channels(api, workspace)
    [task] = add_tasks(rapport, workspace, clock, person(api, workspace, "ada"), "Call Ada")
    pruned = admin(api, workspace, "POST", "/api/v1/apply", params={"prune": "true"},
                   content=b"kind: Channel\nname: email\ntype: smtp\nhost: 127.0.0.1\nfrom: a@b.example\n",
                   headers={"Content-Type": "application/yaml"})
    assert pruned.status_code == 200, pruned.text
    live = admin(api, workspace, "GET", "/api/v1/resources", params={"kind": "Channel"}).json()["resources"]
    assert [r["name"] for r in live] == ["email"]
    listed = admin(api, workspace, "GET", "/api/v1/channels/call_list/tasks")
    assert [t["id"] for t in listed.json()["tasks"]] == [task]


def test_the_openapi_document_describes_the_routes(api: ApiClient) -> None:
    paths = api.get("/openapi.json").json()["paths"]
    assert {p["name"] for p in paths["/v1/inbox"]["get"]["parameters"]} == {"user_id", "anonymous_id", "limit",
                                                                            "before"}
    assert "post" in paths["/v1/inbox/{message_id}/read"]
    assert {p["name"] for p in paths["/api/v1/channels/{name}/tasks"]["get"]["parameters"]} == {
        "name", "open", "limit", "after"}
    assert "get" in paths["/api/v1/channels/{name}/tasks.csv"]
    assert "post" in paths["/api/v1/channels/{name}/tasks/{task_id}/done"]


def test_a_user_id_needs_its_user_hash(rapport: Rapport, workspace: NewWorkspace, api: ApiClient,
                                      clock: FrozenClock) -> None:
    deliver(rapport, workspace, clock, person(api, workspace, "ada", "anon-ada-7"), "Private")
    # The write key is public: without the proof anyone could read any user id's messages.
    for params in ({"user_id": "ada"}, {"user_id": "ada", "user_hash": "00" * 32}):
        refused = assert_error(api.get("/v1/inbox", params=params, headers=basic(workspace.write_key)), 403,
                               "identity_not_verified")
        assert "Private" not in str(refused)
    assert_error(api.post("/v1/inbox/inbox_x/read", params={"user_id": "ada"}, headers=basic(workspace.write_key)),
                 403, "identity_not_verified")
    assert [m["title"] for m in read_inbox(api, workspace, user_id="ada")["messages"]] == ["Private"]
    assert [m["title"] for m in read_inbox(api, workspace, anonymous_id="anon-ada-7")["messages"]] == ["Private"]
