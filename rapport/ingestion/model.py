"""Frozen values of the ingestion stage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rapport.identity.model import Identifier
from rapport.types import JsonObject, Millis

MessageType = Literal["track", "identify", "page", "screen", "group", "alias"]
MESSAGE_TYPES: tuple[MessageType, ...] = ("track", "identify", "page", "screen", "group", "alias")

MAX_EVENT_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024
MAX_DEPTH = 32
MAX_ID_LENGTH = 256


@dataclass(frozen=True, slots=True)
class Message:
    """One accepted Segment-spec message, with its corrected time and generated id if any."""

    type: MessageType
    message_id: str
    user_id: str | None
    anonymous_id: str | None
    name: str | None
    """Event name for ``track``; page/screen name for ``page``/``screen``; group id for ``group``."""
    ts: Millis
    received_at: Millis
    body: JsonObject
    """The message as sent (properties, traits, context, ...) with the corrected timestamps."""
    previous_id: str | None = None
    flagged: bool = False
    identifiers: tuple[Identifier, ...] | None = None
    """What ``identifiers_from_event(body)`` found when the message was parsed (None: not computed)."""


@dataclass(frozen=True, slots=True)
class ItemError:
    """Why one item of a batch was refused; the batch's other items are still stored."""

    index: int
    code: str
    message: str

    def to_json(self) -> JsonObject:
        return {"index": self.index, "code": self.code, "message": self.message}


@dataclass(frozen=True, slots=True)
class Quarantined:
    message: Message
    plan: str
    violations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class IngestResult:
    accepted: int
    duplicates: int
    quarantined: int
    restricted: int


@dataclass(slots=True, kw_only=True)
class IngestTally:
    """Running totals of the ``IngestResult``s of a longer run (an import, the demo, a replay).

    Keyword-only, so reports that extend it keep their own fields first.
    """

    accepted: int = 0
    duplicates: int = 0
    quarantined: int = 0
    restricted: int = 0

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates
        self.quarantined += result.quarantined
        self.restricted += result.restricted
