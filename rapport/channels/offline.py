"""The offline channel: tasks for people (a call list, an in-store follow-up), one list per channel, read and
completed through the admin API or exported as CSV.

Delivery is a row in ``offline_tasks``, keyed by the send's idempotency key, so a retried send stores
nothing twice and returns the first receipt. Given the keyring, a task is stored sealed under the data key of
the profile it is about, as in-app messages are (``rapport.channels.inapp``), and opened when read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from rapport.channels.base import Message
from rapport.channels.inapp import Sealer, StoredParts, StoringChannel
from rapport.clock import to_iso
from rapport.storage.base import Conn
from rapport.storage.sql import inbox as inbox_sql
from rapport.types import Json, JsonObject, Millis

CSV_HEADER: Final = ("id", "profile_id", "title", "body", "data", "created_at", "done_at")
FORMULA_START: Final = ("=", "+", "-", "@", "\t", "\r")
"""What makes a spreadsheet read a cell as a formula (OWASP's CSV injection list); such a cell gets a ``'``."""


@dataclass(frozen=True, slots=True)
class Task:
    """One task of an offline channel's list."""

    id: str
    channel: str
    profile_id: str
    title: str | None
    body: str | None
    data: JsonObject
    created_at: Millis
    done_at: Millis | None
    done_by: str | None

    @classmethod
    def from_row(cls, row: Sequence[Any], sealer: Sealer | None = None) -> Task:
        """From a row of ``inbox_sql.TASK_COLUMNS``; ``sealer`` opens a sealed one (without it, a sealed row
        reads as stored: no title or body, data the marker)."""
        title, body, data = row[3], row[4], orjson.loads(row[5])
        if sealer is not None:
            title, body, data = sealer.open("offline_tasks", str(row[2]), str(row[0]), title, body, data)
        return cls(str(row[0]), str(row[1]), str(row[2]), title, body, data, int(row[6]),
                   None if row[7] is None else int(row[7]), row[8])

    def to_json(self) -> dict[str, Json]:
        return {"id": self.id, "channel": self.channel, "profile_id": self.profile_id, "title": self.title,
                "body": self.body, "data": self.data, "created_at": to_iso(self.created_at),
                "done_at": None if self.done_at is None else to_iso(self.done_at), "done_by": self.done_by}


def defused(value: str) -> str:
    """``value`` as a spreadsheet shows it as text: a cell starting like a formula gets a leading ``'``."""
    return "'" + value if value.startswith(FORMULA_START) else value


def tasks_csv(tasks: Iterable[Task]) -> str:
    """The tasks as CSV (RFC 4180 quoting, CRLF line ends) under ``CSV_HEADER``; times in ISO 8601 UTC,
    ``data`` as JSON, and no cell that a spreadsheet would run as a formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_HEADER)
    for task in tasks:
        data = orjson.dumps(task.data).decode() if task.data else ""
        cells = (task.id, task.profile_id, task.title or "", task.body or "", data, to_iso(task.created_at),
                 "" if task.done_at is None else to_iso(task.done_at))
        writer.writerow([defused(cell) for cell in cells])
    return out.getvalue()


class OfflineChannel(StoringChannel):
    """Adds each message as a task for the profile ``message.to`` to the list ``name``: the title from
    ``subject``, the body from ``text``; the receipt's id is the task id (see ``StoringChannel``)."""

    TABLE = "offline_tasks"
    ID_PREFIX = "task"

    def store_row(self, conn: Conn, row_id: str, message: Message, parts: StoredParts,
                  now: Millis) -> tuple[str, Millis, bool]:
        return inbox_sql.store_task(conn, self.workspace_id, (
            row_id, self.name, message.idempotency_key, message.to, parts.title, parts.body, parts.data, now))
