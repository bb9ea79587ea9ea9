"""The in-app channel: messages stored in the recipient's inbox, which the app reads through ``/v1/inbox``.

Delivery is a row in ``inbox_messages``, keyed by the send's idempotency key, so a retried send stores
nothing twice and returns the first receipt.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from rapport.channels.base import Message, Receipt
from rapport.clock import Clock, SystemClock, to_iso
from rapport.errors import Overloaded, Terminal, Transient
from rapport.storage.base import Conn, Database
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import inbox as inbox_sql
from rapport.types import Json, JsonObject, Millis

MAX_STORED_BYTES: Final = 64 * 1024
"""The most a stored message (title, body and data as JSON) may take: a message, not a document."""


@dataclass(frozen=True, slots=True)
class StoredParts:
    """What a channel that stores its messages keeps of one: title, body and the data object as JSON."""

    title: str | None
    body: str | None
    data: str


def stored_parts(message: Message, channel: str) -> StoredParts:
    """The parts of ``message`` to store: ``subject`` is the title and ``text`` the body. Raises ``Terminal``
    (no attempt will do better) when it has neither, when its data is not JSON, or when it is too large."""
    if not (message.subject or message.text):
        raise Terminal(f"channel {channel!r} stores a title or a body; the rendered message has neither",
                       code="invalid_message")
    try:
        data = orjson.dumps(dict(message.data))
    except TypeError as exc:
        raise Terminal(f"channel {channel!r}: the message data is not JSON: {exc}", code="invalid_message") from None
    size = len(data) + sum(len(part.encode()) for part in (message.subject or "", message.text or ""))
    if size > MAX_STORED_BYTES:
        raise Terminal(f"channel {channel!r}: the message takes {size} bytes; the limit is {MAX_STORED_BYTES}",
                       code="message_too_large")
    return StoredParts(message.subject, message.text, data.decode())


async def store(db: Database, fn: Callable[[Conn], tuple[str, Millis, bool]]) -> tuple[str, Millis]:
    """Run the storing job ``fn`` on the writer off the event loop; a full writer is a ``Transient`` failure
    of the send (the dispatcher retries it later), not the API's 429."""
    try:
        found = await asyncio.to_thread(db.write, fn)
    except Overloaded as exc:
        raise Transient(f"the database is busy: {exc.message}", code="overloaded") from None
    return found[0], found[1]


def require_profile(conn: Conn, ws: str, channel: str, profile_id: str) -> None:
    """Raise ``Terminal`` unless ``profile_id`` is a profile of the workspace (merged ones count: their
    messages are read through the profile they were merged into)."""
    if identity_sql.live_root(conn, ws, profile_id) is None:
        raise Terminal(f"channel {channel!r} addresses profiles by id; no profile {profile_id!r} in this workspace",
                       code="unknown_recipient")


@dataclass(frozen=True, slots=True)
class InboxMessage:
    """One message of a person's inbox, as the inbox API shows it."""

    id: str
    profile_id: str
    channel: str
    title: str | None
    body: str | None
    data: JsonObject
    created_at: Millis
    read_at: Millis | None

    @classmethod
    def from_row(cls, row: Sequence[Any]) -> InboxMessage:
        """From a row of ``inbox_sql.MESSAGE_COLUMNS``."""
        return cls(str(row[0]), str(row[1]), str(row[2]), row[3], row[4], orjson.loads(row[5]), int(row[6]),
                   None if row[7] is None else int(row[7]))

    def to_json(self) -> dict[str, Json]:
        read_at = None if self.read_at is None else to_iso(self.read_at)
        return {"id": self.id, "title": self.title, "body": self.body, "data": self.data,
                "created_at": to_iso(self.created_at), "read_at": read_at}


class InAppChannel:
    """Stores each message in the inbox of the profile ``message.to`` (a profile id) in workspace
    ``workspace_id``; the receipt's id is the inbox message id. A repeat of an idempotency key stores nothing
    and returns the first receipt."""

    def __init__(self, db: Database, workspace_id: str, name: str, clock: Clock | None = None) -> None:
        self.db = db
        self.workspace_id = workspace_id
        self.name = name
        self.clock: Clock = clock or SystemClock()

    async def send(self, message: Message) -> Receipt:
        """Put ``message`` in the recipient's inbox (once per idempotency key)."""
        parts = stored_parts(message, self.name)
        ws = self.workspace_id
        new_id = self.clock.new_id("inbox")
        now = self.clock.now_ms()

        def job(conn: Conn) -> tuple[str, Millis, bool]:
            require_profile(conn, ws, self.name, message.to)
            return inbox_sql.store_message(conn, ws, (new_id, message.to, self.name, message.idempotency_key,
                                                      parts.title, parts.body, parts.data, now))

        message_id, accepted_at = await store(self.db, job)
        return Receipt(message_id, accepted_at)
