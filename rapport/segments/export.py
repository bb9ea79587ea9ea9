"""Segment exports: rows of current members encoded as CSV or Parquet, one page at a time.

The encoders take pages of rows (``Segments.export`` reads them, one read per page) and give bytes
as they go, so neither format holds a whole segment in memory: CSV writes each page's lines,
Parquet writes each page as one row group (its footer comes last).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, Literal, TypeAlias

from rapport.errors import ValidationError
from rapport.resources.fields import did_you_mean, quoted
from rapport.types import Json

Format: TypeAlias = Literal["csv", "parquet"]
FORMATS: Final[tuple[Format, ...]] = ("csv", "parquet")
MEDIA_TYPES: Final[dict[Format, str]] = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}
COLUMNS: Final = ("profile_id", "entered_at", "version", "activatable", "user_id", "anonymous_id")
"""Always exported; an identifier type with several values joins them with ``;``."""
PERSONAL: Final = ("email", "phone")
"""Exported only when asked for by name (and, through the API, allowed to read profiles)."""
PAGE: Final = 1000
"""Members per read, CSV chunk and Parquet row group."""

Row: TypeAlias = tuple[Json, ...]


def export_format(value: str) -> Format:
    """``value`` as an export format, or a ``ValidationError`` naming the valid ones."""
    for fmt in FORMATS:
        if value == fmt:
            return fmt
    raise ValidationError(f"unknown export format {value!r}{did_you_mean(value, FORMATS)}; expected one of "
                          f"{quoted(FORMATS)}", code="invalid_request")


def personal_columns(names: Iterable[str]) -> tuple[str, ...]:
    """The personal columns asked for, in their fixed order; an unknown name is a ``ValidationError``."""
    wanted = [n.strip() for n in names if n.strip()]
    for name in wanted:
        if name not in PERSONAL:
            raise ValidationError(f"cannot include {name!r}{did_you_mean(name, PERSONAL)}; expected a comma-separated "
                                  f"list of {quoted(PERSONAL)}", code="invalid_request")
    return tuple(c for c in PERSONAL if c in wanted)


def encode(fmt: Format, columns: Sequence[str], pages: Iterable[Sequence[Row]]) -> Iterator[bytes]:
    """The export file of ``pages`` (rows in the order of ``columns``), chunk by chunk."""
    return csv_chunks(columns, pages) if fmt == "csv" else parquet_chunks(columns, pages)


def _cell(value: Json) -> Json:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def csv_chunks(columns: Sequence[str], pages: Iterable[Sequence[Row]]) -> Iterator[bytes]:
    """A header line, then the lines of each page (RFC 4180 quoting, ``\\r\\n`` line ends)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield buffer.getvalue().encode()
    for page in pages:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows([_cell(v) for v in row] for row in page)
        yield buffer.getvalue().encode()


class _Sink:
    """A write-only file that hands over what was written so far (``drain``)."""

    def __init__(self) -> None:
        self._data = bytearray()
        self._position = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self._data += data
        self._position += len(data)
        return len(data)

    def tell(self) -> int:
        return self._position

    def flush(self) -> None:
        return None

    def close(self) -> None:
        self.closed = True

    def drain(self) -> bytes:
        out = bytes(self._data)
        self._data.clear()
        return out


def parquet_chunks(columns: Sequence[str], pages: Iterable[Sequence[Row]]) -> Iterator[bytes]:
    """A Parquet file with one row group per non-empty page; absent identifiers are nulls."""
    # Imported on use: pyarrow takes a while to import and only exports need it.
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {"version": pa.int64(), "activatable": pa.bool_()}
    schema = pa.schema([(name, types.get(name, pa.string())) for name in columns])
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema)
    try:
        for page in pages:
            if page:
                arrays = [pa.array(values, type=field.type)
                          for values, field in zip(zip(*page, strict=True), schema, strict=True)]
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema), row_group_size=len(page))
            yield sink.drain()
    finally:
        writer.close()
    yield sink.drain()
