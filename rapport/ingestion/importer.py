"""Bulk import of events or profiles from CSV, JSONL and Parquet files, resumable after an interruption.

Each row becomes a Segment-spec message and takes the tracking API's path: ``parse_message``
(validation, clock skew), the workspace's tracking plans, then ``Rapport.ingest`` (identity,
consent gate, dedupe, encryption, computed traits). Rows are read in chunks; once a chunk is
committed, the position reached is saved in the ``imports`` table, so running the same import
again continues after the last committed chunk. A row without ``messageId`` gets one derived from
the source and its row number, so rows committed but not yet counted by a saved position are
deduplicated when they are read again.

Event rows: ``type`` (default ``track`` with an ``event``, else ``identify`` with traits),
``event``, ``userId``/``user_id``, ``anonymousId``/``anonymous_id``, ``messageId``, ``timestamp``,
... and dotted columns ``properties.x``, ``traits.x``, ``context.x`` (any depth). Profile rows:
``user_id``, ``anonymous_id``, ``message_id``, ``timestamp``, and every other column a trait
(``email``, ``phone``, ``first_name``, ``address.city``, ...; ``context.x`` columns go to the
context, e.g. ``context.consent.categoryPreferences.Email``). A profile row with neither a user nor
an anonymous id gets an anonymous id derived from its row, and is matched by email or phone.

Row numbers count data rows from 1 (CSV rows after the header, Parquet rows) and lines for JSONL.
A bad row is reported with its number, code and message, counted, and skipped.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
import re
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, Literal

import orjson

from rapport.clock import to_iso
from rapport.errors import ValidationError
from rapport.ingestion.model import IngestResult, IngestTally, Message
from rapport.ingestion.parse import parse_message
from rapport.ingestion.plans import check_plans
from rapport.storage.sql import imports as imports_sql
from rapport.types import Json, JsonObject, WorkspaceId

if TYPE_CHECKING:
    from rapport.core import Rapport

Kind = Literal["events", "profiles"]
KINDS: Final[tuple[Kind, ...]] = ("events", "profiles")
Format = Literal["csv", "jsonl", "parquet"]
SUFFIXES: Final[dict[str, Format]] = {
    ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet",
}
CHUNK: Final = 500
IN_FLIGHT: Final = 2
"""Chunks handed to the writer before the oldest is awaited (reading overlaps committing)."""
MAX_REPORTED: Final = 1000
"""Bad rows kept with their messages; all of them are counted."""

_NESTED: Final = ("properties", "traits", "context", "integrations")
_EVENT_ALIASES: Final = {
    "user_id": "userId", "anonymous_id": "anonymousId", "message_id": "messageId", "sent_at": "sentAt",
    "original_timestamp": "originalTimestamp", "group_id": "groupId", "previous_id": "previousId",
}
_PROFILE_FIELDS: Final = {
    "user_id": "userId", "userId": "userId", "anonymous_id": "anonymousId", "anonymousId": "anonymousId",
    "message_id": "messageId", "messageId": "messageId", "timestamp": "timestamp",
}
_TEXT_TRAITS: Final = frozenset({"email", "phone", "id", "zip", "zip_code", "postal_code", "postcode"})
_INT: Final = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_FLOAT: Final = re.compile(r"-?(?:0|[1-9][0-9]*)\.[0-9]+(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True, slots=True)
class RowError:
    """Why one row was not imported."""

    row: int
    code: str
    message: str

    def to_json(self) -> JsonObject:
        return {"row": self.row, "code": self.code, "message": self.message}


@dataclass(slots=True)
class ImportReport(IngestTally):
    """What an import run did; ``position`` is the number of rows of the file handled so far."""

    source: str
    kind: Kind
    total: int
    resumed_from: int
    position: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)
    finished: bool = False

    @property
    def rows(self) -> int:
        """Rows read in this run."""
        return self.position - self.resumed_from


def source_of(path: Path, kind: Kind) -> str:
    """The name an import is saved under: its kind and the file's absolute path."""
    return f"{kind}:{path.resolve()}"


def detect_format(path: Path) -> Format:
    """The file format from the name (``.csv``, ``.jsonl``/``.ndjson``, ``.parquet``; ``.gz`` for text)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    fmt = SUFFIXES.get(suffixes[-1]) if suffixes else None
    if fmt is None or (fmt == "parquet" and path.suffix.lower() == ".gz"):
        raise ValidationError(
            f"cannot tell the format of {path.name!r}; expected a name ending in .csv, .jsonl, .ndjson or"
            " .parquet (.csv.gz and .jsonl.gz too)", code="unknown_format")
    return fmt


# --- reading rows -----------------------------------------------------------------------------------

def _open_text(path: Path) -> IO[str]:
    if path.suffix.lower() == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return path.open("r", encoding="utf-8-sig", newline="")


def count_rows(path: Path, fmt: Format) -> int:
    """How many rows (JSONL: lines) the file holds."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    with _open_text(path) as f:
        if fmt == "jsonl":
            return sum(1 for _ in f)
        return max(0, sum(1 for _ in csv.reader(f)) - 1)


def read_rows(path: Path, fmt: Format, kind: Kind = "events",
              start: int = 0) -> Iterator[tuple[int, JsonObject | RowError]]:
    """(row number, row) after the first ``start`` rows; a row that cannot be read is a ``RowError``.

    CSV cells are text; they are given JSON types as ``kind`` expects (see ``_cell``).
    """
    if fmt == "parquet":
        yield from _parquet_rows(path, start)
        return
    with _open_text(path) as f:
        if fmt == "jsonl":
            yield from _jsonl_rows(f, start)
        else:
            yield from _csv_rows(f, start, kind)


def _jsonl_rows(f: IO[str], start: int) -> Iterator[tuple[int, JsonObject | RowError]]:
    for number, line in enumerate(f, 1):
        if number <= start or not line.strip():
            continue
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield number, RowError(number, "invalid_json", f"line {number} is not JSON: {exc}")
            continue
        if not isinstance(value, dict):
            yield number, RowError(number, "invalid_message",
                                   f"line {number} must be a JSON object, got {type(value).__name__}")
            continue
        yield number, value


def _csv_rows(f: IO[str], start: int, kind: Kind) -> Iterator[tuple[int, JsonObject | RowError]]:
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    columns = [c.strip() for c in header]
    if any(not c for c in columns):
        raise ValidationError("the CSV header has an empty column name", code="invalid_header")
    for number, cells in enumerate(reader, 1):
        if number <= start or not cells:
            continue
        if len(cells) > len(columns):
            yield number, RowError(number, "invalid_row",
                                   f"row {number} has {len(cells)} fields but the header has {len(columns)}")
            continue
        yield number, {c: _cell(c, v, kind) for c, v in zip(columns, cells, strict=False) if v != ""}


def _parquet_rows(path: Path, start: int) -> Iterator[tuple[int, JsonObject | RowError]]:
    import pyarrow.parquet as pq

    number = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=CHUNK):
        if number + batch.num_rows <= start:
            number += batch.num_rows
            continue
        for row in batch.to_pylist():
            number += 1
            if number > start:
                yield number, {k: _plain(v) for k, v in row.items() if v is not None}


def _cell(column: str, text: str, kind: Kind) -> Json:
    """A CSV cell as JSON.

    Message fields (ids, ``event``, ``timestamp``) stay text; a whole ``properties``/``traits``/
    ``context`` column is JSON; other values (dotted columns, and profile traits) become numbers,
    booleans or JSON where they read as such, except ids, emails, phones and postcodes.
    """
    head, _, rest = column.partition(".")
    if head in _NESTED and not rest:
        return _json_text(text)
    if kind == "events" and not (rest and head in _NESTED):
        return text
    if kind == "profiles" and column in _PROFILE_FIELDS:
        return text
    name = column.rsplit(".", 1)[-1]
    if name in _TEXT_TRAITS or name.endswith("_id") or name.endswith("Id"):
        return text
    return _scalar(text)


def _scalar(text: str) -> Json:
    if text in ("true", "false"):
        return text == "true"
    if _INT.fullmatch(text):
        return int(text)
    if _FLOAT.fullmatch(text):
        return float(text)
    if text[:1] in ("{", "["):
        return _json_text(text)
    return text


def _json_text(text: str) -> Json:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text


def _plain(value: Any) -> Json:
    """A Parquet value as JSON: times as ISO-8601 UTC, decimals as numbers, bytes as text."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return to_iso((aware - _EPOCH) // timedelta(milliseconds=1))
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# --- rows to messages ---------------------------------------------------------------------------------

def _put(target: JsonObject, path: list[str], value: Json, column: str) -> None:
    node = target
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ValidationError(f"column {column!r} nests under {part!r}, which already holds a value",
                                  code="invalid_column")
        node = child
    node[path[-1]] = value


def event_message(record: JsonObject) -> JsonObject:
    """A Segment message from an event row (dotted columns nest; snake_case id columns are accepted)."""
    message: JsonObject = {}
    for key, value in record.items():
        name = _EVENT_ALIASES.get(key, key)
        head, _, rest = name.partition(".")
        if rest and head in _NESTED:
            _put(message, [head, *rest.split(".")], value, key)
        elif isinstance(message.get(name), dict) and isinstance(value, dict):
            message[name] = {**value, **message[name]}
        else:
            message[name] = value
    if "type" not in message:
        if "event" in message:
            message["type"] = "track"
        elif "traits" in message:
            message["type"] = "identify"
        else:
            raise ValidationError("the row has no 'type' and no 'event': cannot tell what kind of message it is",
                                  code="invalid_type")
    return message


def profile_message(record: JsonObject) -> JsonObject:
    """An ``identify`` message from a profile row: ids and time as given, every other column a trait."""
    message: JsonObject = {"type": "identify", "traits": {}}
    for key, value in record.items():
        field_name = _PROFILE_FIELDS.get(key)
        if field_name is not None:
            message[field_name] = value
            continue
        head, _, rest = key.partition(".")
        if head == "context" and rest:
            _put(message, ["context", *rest.split(".")], value, key)
        elif head == "traits" and rest:
            _put(message, ["traits", *rest.split(".")], value, key)
        elif head in ("traits", "context") and isinstance(value, dict):
            message[head] = {**value, **message.get(head, {})}
        else:
            _put(message, ["traits", *key.split(".")], value, key)
    traits = message["traits"]
    if not any(message.get(k) for k in ("userId", "anonymousId")) and not any(
            isinstance(traits, dict) and traits.get(k) for k in ("email", "phone")):
        raise ValidationError("a profile row needs a user_id, anonymous_id, email or phone", code="missing_id")
    return message


def derived_id(source: str, row: int) -> str:
    """A message id that is the same every time this row of this source is imported."""
    return "imp-" + hashlib.sha256(f"{source}\x00{row}".encode()).hexdigest()[:32]


# --- the import -----------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Chunk:
    end: int
    future: Future[IngestResult] | None
    errors: list[RowError]


class Importer:
    """One import of one file into one workspace (``run`` does it)."""

    def __init__(self, rapport: Rapport, ws: WorkspaceId, path: Path, kind: Kind = "events", *,
                 chunk_size: int = CHUNK) -> None:
        if kind not in KINDS:
            raise ValidationError(f"unknown import kind {kind!r}; expected one of 'events', 'profiles'",
                                  code="invalid_kind")
        if not path.is_file():
            raise ValidationError(f"no file at {str(path)!r}", code="file_not_found")
        self.rapport, self.ws, self.path, self.kind = rapport, ws, path, kind
        self.fmt = detect_format(path)
        self.source = source_of(path, kind)
        self.chunk_size = max(1, chunk_size)

    def run(self, *, restart: bool = False, on_chunk: Callable[[ImportReport], None] | None = None) -> ImportReport:
        """Import from the saved position (or the start); ``on_chunk`` hears of each committed chunk."""
        db = self.rapport.db
        saved = None if restart else db.read(lambda c: imports_sql.load_progress(c, self.ws, self.source))
        start = saved[0] if saved is not None else 0
        total = count_rows(self.path, self.fmt)
        if start > total:
            start = 0  # the file was replaced by a shorter one: its rows are new
        report = ImportReport(self.source, self.kind, total, start, start)
        in_flight: deque[_Chunk] = deque()
        rows: list[tuple[int, JsonObject | RowError]] = []
        end = start
        for number, row in read_rows(self.path, self.fmt, self.kind, start):
            rows.append((number, row))
            end = number
            if len(rows) >= self.chunk_size:
                in_flight.append(self._submit(rows, end))
                rows = []
                while len(in_flight) >= IN_FLIGHT:
                    self._finish(in_flight.popleft(), report, on_chunk)
        if rows or end < total or not in_flight:
            in_flight.append(self._submit(rows, total))
        while in_flight:
            self._finish(in_flight.popleft(), report, on_chunk)
        return report

    def _submit(self, rows: list[tuple[int, JsonObject | RowError]], end: int) -> _Chunk:
        received = self.rapport.clock.now_ms()
        errors: list[RowError] = []
        indexed: list[tuple[int, Message]] = []
        for number, row in rows:
            if isinstance(row, RowError):
                errors.append(row)
                continue
            try:
                raw = event_message(row) if self.kind == "events" else profile_message(row)
                derived = functools.partial(derived_id, self.source, number)
                if not raw.get("messageId"):
                    raw["messageId"] = derived()
                if self.kind == "profiles" and raw.get("userId") is None and raw.get("anonymousId") is None:
                    raw["anonymousId"] = derived()
                indexed.append((number, parse_message(
                    raw, implied_type=None, received_at=received, batch_sent_at=None, batch_context=None,
                    new_id=derived)))
            except ValidationError as exc:
                errors.append(RowError(number, exc.code, exc.message))
        rt = self.rapport.runtime(self.ws)
        accepted, quarantined, refused = check_plans(rt.plans, indexed)
        errors.extend(RowError(e.index, e.code, e.message) for e in refused)
        future = self.rapport.ingest(self.ws, accepted, quarantined) if accepted or quarantined else None
        return _Chunk(end, future, sorted(errors, key=lambda e: e.row))

    def _finish(self, chunk: _Chunk, report: ImportReport,
                on_chunk: Callable[[ImportReport], None] | None) -> None:
        if chunk.future is not None:
            report.add(chunk.future.result())
        report.rejected += len(chunk.errors)
        report.errors.extend(chunk.errors[: max(0, MAX_REPORTED - len(report.errors))])
        report.position = chunk.end
        report.finished = chunk.end >= report.total
        now = self.rapport.clock.now_ms()
        self.rapport.db.write(lambda c: imports_sql.save_progress(
            c, self.ws, self.source, chunk.end, report.total, now, report.finished))
        if on_chunk is not None:
            on_chunk(report)


def import_file(rapport: Rapport, ws: WorkspaceId, path: Path, kind: Kind = "events", *, restart: bool = False,
                chunk_size: int = CHUNK, on_chunk: Callable[[ImportReport], None] | None = None) -> ImportReport:
    """Import a CSV, JSONL or Parquet file of events or profiles into a workspace (see the module doc)."""
    return Importer(rapport, ws, path, kind, chunk_size=chunk_size).run(restart=restart, on_chunk=on_chunk)
