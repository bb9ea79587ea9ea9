"""The in-app channel: messages stored in the recipient's inbox, which the app reads through ``/v1/inbox``.

Delivery is a row in ``inbox_messages``, keyed by the send's idempotency key, so a retried send stores
nothing twice and returns the first receipt.

A rendered message may quote personal data (a name, an order), so a channel given the keyring stores it sealed
under the data key of the profile it addresses, as events and traits are: ``title`` and ``body`` stay NULL and
``data`` holds one marker ``{"$pii": ...}`` of the whole message, bound to its table, workspace, profile and row
id. Erasing the profile destroys that key (and deletes the row). Reads open sealed rows and clear ones alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import orjson

from rapport.channels.base import Message, Receipt
from rapport.clock import Clock, SystemClock, to_iso
from rapport.errors import Overloaded, Terminal, Transient
from rapport.privacy import crypto, pii
from rapport.storage.base import Conn, Database
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import inbox as inbox_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import Json, JsonObject, Millis, WorkspaceId
from rapport.workspaces.keys import Keyring

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
    if pii.is_marker(dict(message.data)):
        raise Terminal(f"channel {channel!r}: the message data may not be a sealed value marker "
                       f"{{{pii.MARKER!r}: ...}}", code="invalid_message")
    try:
        data = orjson.dumps(dict(message.data))
    except TypeError as exc:
        raise Terminal(f"channel {channel!r}: the message data is not JSON: {exc}", code="invalid_message") from None
    size = len(data) + sum(len(part.encode()) for part in (message.subject or "", message.text or ""))
    if size > MAX_STORED_BYTES:
        raise Terminal(f"channel {channel!r}: the message takes {size} bytes; the limit is {MAX_STORED_BYTES}",
                       code="message_too_large")
    return StoredParts(message.subject, message.text, data.decode())


def _aad(table: str, ws: str, profile_id: str, row_id: str) -> bytes:
    return crypto.aad_for(table, ws, profile_id, row_id)


class Sealer:
    """Seals and opens the stored messages of one workspace under the data keys of the profiles they address;
    one per transaction (it reads the keys on the connection it is given)."""

    def __init__(self, conn: Conn, ws: str, keyring: Keyring) -> None:
        self.conn, self.ws, self.keyring = conn, ws, keyring
        self._wrapped_ws: bytes | None = None
        self._ciphers: dict[str, crypto.Cipher | None] = {}

    def cipher(self, profile_id: str) -> crypto.Cipher | None:
        """The cipher of ``profile_id``'s data key; ``None`` when the profile is gone (erased)."""
        if profile_id in self._ciphers:
            return self._ciphers[profile_id]
        found = None
        row = identity_sql.profile_rows(self.conn, self.ws, [profile_id]).get(profile_id)
        if row is not None:
            if self._wrapped_ws is None:
                workspace = ws_sql.workspace(self.conn, self.ws)
                assert workspace is not None, "a profile's workspace exists"
                self._wrapped_ws = bytes(workspace[3])
            found = self.keyring.profile_cipher(WorkspaceId(self.ws), self._wrapped_ws, profile_id, bytes(row[3]))
        self._ciphers[profile_id] = found
        return found

    def seal(self, table: str, profile_id: str, row_id: str, parts: StoredParts) -> StoredParts:
        """``parts`` as stored sealed: no title or body, and data the marker of the whole message."""
        cipher = self.cipher(profile_id)
        if cipher is None:
            raise Terminal(f"no profile {profile_id!r} to seal the message for", code="unknown_recipient")
        whole: JsonObject = {"title": parts.title, "body": parts.body, "data": orjson.loads(parts.data)}
        marker = pii.encrypt_value(whole, partial(cipher.encrypt, aad=_aad(table, self.ws, profile_id, row_id)))
        return StoredParts(None, None, orjson.dumps(marker).decode())

    def open(self, table: str, profile_id: str, row_id: str, title: str | None, body: str | None,
             data: JsonObject) -> tuple[str | None, str | None, JsonObject]:
        """(title, body, data) of a stored message, opened when sealed."""
        if not pii.is_marker(data):
            return title, body, data
        cipher = self.cipher(profile_id)
        if cipher is None:
            raise crypto.CryptoError(f"the data key of profile {profile_id!r} is gone; its messages cannot be read")
        whole = pii.decrypt_value(data, partial(cipher.decrypt, aad=_aad(table, self.ws, profile_id, row_id)))
        opened_title, opened_body = (whole.get(k) if isinstance(whole, dict) else None for k in ("title", "body"))
        opened_data = whole.get("data") if isinstance(whole, dict) else None
        if not isinstance(opened_data, dict) or not all(v is None or isinstance(v, str)
                                                        for v in (opened_title, opened_body)):
            raise crypto.CryptoError(f"sealed message {row_id!r} does not hold a message")
        return (opened_title if isinstance(opened_title, str) else None,
                opened_body if isinstance(opened_body, str) else None, opened_data)


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
    def from_row(cls, row: Sequence[Any], sealer: Sealer | None = None) -> InboxMessage:
        """From a row of ``inbox_sql.MESSAGE_COLUMNS``; ``sealer`` opens a sealed one (without it, a sealed row
        reads as stored: no title or body, data the marker)."""
        title, body, data = row[3], row[4], orjson.loads(row[5])
        if sealer is not None:
            title, body, data = sealer.open("inbox_messages", str(row[1]), str(row[0]), title, body, data)
        return cls(str(row[0]), str(row[1]), str(row[2]), title, body, data, int(row[6]),
                   None if row[7] is None else int(row[7]))

    def to_json(self) -> dict[str, Json]:
        read_at = None if self.read_at is None else to_iso(self.read_at)
        return {"id": self.id, "title": self.title, "body": self.body, "data": self.data,
                "created_at": to_iso(self.created_at), "read_at": read_at}


class StoringChannel:
    """A channel whose delivery is a row stored for the profile ``message.to`` (a profile id) in workspace
    ``workspace_id``, sealed under that profile's data key when given the ``keyring``; the receipt's id is the
    row's id. A repeat of an idempotency key stores nothing and returns the first receipt. Subclasses name the
    table and the id prefix and write the row."""

    TABLE: str
    ID_PREFIX: str

    def __init__(self, db: Database, workspace_id: str, name: str, clock: Clock | None = None,
                 keyring: Keyring | None = None) -> None:
        self.db = db
        self.workspace_id = workspace_id
        self.name = name
        self.clock: Clock = clock or SystemClock()
        self.keyring = keyring

    async def send(self, message: Message) -> Receipt:
        """Store ``message`` for its recipient (once per idempotency key)."""
        parts = stored_parts(message, self.name)
        ws = self.workspace_id
        new_id = self.clock.new_id(self.ID_PREFIX)
        now = self.clock.now_ms()

        def job(conn: Conn) -> tuple[str, Millis, bool]:
            require_profile(conn, ws, self.name, message.to)
            kept = parts if self.keyring is None else Sealer(conn, ws, self.keyring).seal(
                self.TABLE, message.to, new_id, parts)
            return self.store_row(conn, new_id, message, kept, now)

        row_id, accepted_at = await store(self.db, job)
        return Receipt(row_id, accepted_at)

    def store_row(self, conn: Conn, row_id: str, message: Message, parts: StoredParts,
                  now: Millis) -> tuple[str, Millis, bool]:
        """Store the row unless its idempotency key is stored: (id, created_at) of the row holding the key and
        whether this call stored it."""
        raise NotImplementedError


class InAppChannel(StoringChannel):
    """Stores each message in the inbox of the profile ``message.to``; the receipt's id is the inbox message
    id (see ``StoringChannel``)."""

    TABLE = "inbox_messages"
    ID_PREFIX = "inbox"

    def store_row(self, conn: Conn, row_id: str, message: Message, parts: StoredParts,
                  now: Millis) -> tuple[str, Millis, bool]:
        return inbox_sql.store_message(conn, self.workspace_id, (
            row_id, message.to, self.name, message.idempotency_key, parts.title, parts.body, parts.data, now))
