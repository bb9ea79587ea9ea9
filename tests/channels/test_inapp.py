"""The in-app channel on SQLite and PostgreSQL: each message lands once per idempotency key in the inbox of the
profile it addresses, and what it cannot store is a ``Terminal`` failure."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import pytest
from api.support import ApiClient, profile_of, track
from conftest import Backend

from rapport.channels.base import Channel, Message, Receipt
from rapport.channels.inapp import MAX_STORED_BYTES, InAppChannel
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport
from rapport.errors import Terminal
from rapport.types import MINUTE


def person(client: ApiClient, ws: NewWorkspace, user_id: str) -> str:
    """The profile id of a person the tracking API has just identified."""
    response = track(client, ws, "/v1/identify", {"userId": user_id, "traits": {"plan": "pro"}})
    assert response.status_code == 200, response.text
    profile_id: str = profile_of(client, ws, user_id=user_id)["id"]
    return profile_id


def stored(rapport: Rapport, ws: NewWorkspace) -> list[tuple[Any, ...]]:
    """(id, profile_id, channel, idempotency_key, title, body, data, created_at, read_at) of every message."""
    return rapport.db.read(lambda c: c.all(
        "SELECT id, profile_id, channel, idempotency_key, title, body, data, created_at, read_at"
        " FROM inbox_messages WHERE workspace_id = ? ORDER BY created_at, id", (ws.workspace_id,)))


def test_a_message_lands_once_and_a_repeat_returns_the_first_receipt(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    ada = person(client, workspace, "ada")
    channel: Channel = InAppChannel(rapport.db, workspace.workspace_id, "inbox", clock)
    message = Message("enr_1:step_2", ada, subject="Your cart", text="The lamp is waiting",
                      data={"cart_id": "c1", "items": [1, 2], "deep_link": "shop://cart"})
    first = asyncio.run(channel.send(message))
    clock.advance(5 * MINUTE)
    again = asyncio.run(channel.send(Message("enr_1:step_2", ada, subject="Changed", text="changed")))

    assert again == first
    assert first.accepted_at == clock.now_ms() - 5 * MINUTE
    [row] = stored(rapport, workspace)
    assert row[:6] == (first.provider_id, ada, "inbox", "enr_1:step_2", "Your cart", "The lamp is waiting")
    assert orjson.loads(row[6]) == {"cart_id": "c1", "items": [1, 2], "deep_link": "shop://cart"}
    assert (row[7], row[8]) == (first.accepted_at, None)


def test_concurrent_sends_of_one_key_store_one_message(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    ada = person(client, workspace, "ada")
    channel = InAppChannel(rapport.db, workspace.workspace_id, "inbox", clock)

    async def run() -> list[Receipt]:
        return list(await asyncio.gather(*(channel.send(Message("same-key", ada, text=f"try {n}")) for n in range(8))))

    receipts = asyncio.run(run())
    assert len(set(receipts)) == 1
    [row] = stored(rapport, workspace)
    assert row[0] == receipts[0].provider_id


def test_distinct_keys_are_distinct_messages_and_keys_are_per_workspace(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    other = rapport.create_workspace(f"{workspace.workspace_id}-other")
    ada, bob = person(client, workspace, "ada"), person(client, other, "bob")
    here = InAppChannel(rapport.db, workspace.workspace_id, "inbox", clock)
    there = InAppChannel(rapport.db, other.workspace_id, "inbox", clock)

    async def run() -> list[Receipt]:
        return [await here.send(Message("k1", ada, text="one")), await here.send(Message("k2", ada, text="two")),
                await there.send(Message("k1", bob, text="elsewhere"))]

    one, two, elsewhere = asyncio.run(run())
    assert len({one.provider_id, two.provider_id, elsewhere.provider_id}) == 3
    assert sorted((r[0], r[5]) for r in stored(rapport, workspace)) == sorted(
        [(one.provider_id, "one"), (two.provider_id, "two")])
    assert [(r[1], r[5]) for r in stored(rapport, other)] == [(bob, "elsewhere")]


def test_a_title_alone_is_enough_and_no_data_is_an_empty_object(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock) -> None:
    ada = person(client, workspace, "ada")
    asyncio.run(InAppChannel(rapport.db, workspace.workspace_id, "inbox", clock).send(
        Message("k", ada, subject="Only a title")))
    [row] = stored(rapport, workspace)
    assert (row[4], row[5], row[6]) == ("Only a title", None, "{}")


@pytest.mark.parametrize(("message", "code", "says"), [
    (Message("k", "{profile}"), "invalid_message", "title or a body"),
    (Message("k", "{profile}", text="x", data={"when": object()}), "invalid_message", "data is not JSON"),
    (Message("k", "{profile}", text="x" * (MAX_STORED_BYTES + 1)), "message_too_large", "the limit is"),
    (Message("k", "{profile}", text="é" * (MAX_STORED_BYTES // 2 + 1)), "message_too_large", "the limit is"),
    (Message("k", "prof_nobody", text="hello"), "unknown_recipient", "no profile 'prof_nobody'"),
    (Message("k", "ada@example.com", text="hello"), "unknown_recipient", "addresses profiles by id"),
], ids=["empty", "data-not-json", "too-large", "too-many-bytes", "unknown-profile", "an-email-address"])
def test_what_cannot_be_stored_is_terminal_and_stores_nothing(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock, message: Message, code: str,
        says: str) -> None:
    ada = person(client, workspace, "ada")
    to = ada if message.to == "{profile}" else message.to
    addressed = Message(message.idempotency_key, to, subject=message.subject, text=message.text, data=message.data)
    with pytest.raises(Terminal, match=says) as caught:
        asyncio.run(InAppChannel(rapport.db, workspace.workspace_id, "inbox", clock).send(addressed))
    assert caught.value.code == code
    assert stored(rapport, workspace) == []


def test_two_writers_racing_on_one_key_store_one_message(
        rapport: Rapport, workspace: NewWorkspace, client: ApiClient, clock: FrozenClock, backend: Backend,
        tmp_path: Path) -> None:
    """Two server processes (each its own writer and connections) send the same key at once."""
    ada = person(client, workspace, "ada")
    second = Rapport(backend.settings(tmp_path), clock=clock)
    try:
        channels = [InAppChannel(r.db, workspace.workspace_id, "inbox", clock) for r in (rapport, second)]
        start = threading.Barrier(8)

        def send(n: int) -> Receipt:
            start.wait()
            return asyncio.run(channels[n % 2].send(Message("raced", ada, text=f"from {n}")))

        with ThreadPoolExecutor(8) as pool:
            receipts = list(pool.map(send, range(8)))
    finally:
        second.close()
    assert len(set(receipts)) == 1
    [row] = stored(rapport, workspace)
    assert row[0] == receipts[0].provider_id
