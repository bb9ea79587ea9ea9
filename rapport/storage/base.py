"""Storage protocols: what every backend (SQLite embedded, PostgreSQL scale-out) provides.

Queries are plain ``fn(conn) -> result`` functions written once in a portable SQL subset
(``?`` placeholders, ``INSERT ... ON CONFLICT``, ``RETURNING``); a backend supplies connections,
the single-writer group commit, migrations and the few dialect differences below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import Any, Literal, Protocol, TypeVar

T = TypeVar("T")
Row = tuple[Any, ...]
Params = Sequence[Any]


class Dialect(Protocol):
    @property
    def name(self) -> Literal["sqlite", "postgres"]: ...

    def greatest(self, a: str, b: str) -> str:
        """SQL for the larger of two expressions (NULLs ignored)."""
        ...

    def least(self, a: str, b: str) -> str: ...

    @property
    def skip_locked(self) -> str:
        """``FOR UPDATE SKIP LOCKED`` where supported, else empty."""
        ...


class Conn(Protocol):
    """One database connection inside a transaction (write) or a snapshot (read)."""

    @property
    def dialect(self) -> Dialect: ...

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; returns the number of rows changed."""
        ...

    def executemany(self, sql: str, rows: Iterable[Params]) -> None: ...

    def insert_rows(self, head: str, width: int, tail: str, rows: Sequence[Params]) -> list[Row]:
        """``head VALUES (?, ...) tail`` (``width`` placeholders) for every row, in order, the way the
        backend does it fastest; returns the rows a ``RETURNING`` clause in ``tail`` gives.

        SQLite runs multi-row statements (one statement, and one statement journal, per chunk);
        PostgreSQL one prepared statement per row, pipelined. Rows must not repeat a conflict key
        (PostgreSQL refuses to update one row twice in one statement).
        """
        ...

    def all(self, sql: str, params: Params = ()) -> list[Row]: ...

    def one(self, sql: str, params: Params = ()) -> Row | None: ...

    def value(self, sql: str, params: Params = ()) -> Any:
        """The first column of the first row, or None."""
        ...


WriteFn = Callable[[Conn], T]


class Database(Protocol):
    """A backend: reads on pooled connections, writes through one group-committing writer."""

    @property
    def dialect(self) -> Dialect: ...

    @property
    def url(self) -> str: ...

    def read(self, fn: Callable[[Conn], T]) -> T:
        """Run ``fn`` on a read connection (a consistent snapshot for its duration)."""
        ...

    def submit(self, fn: Callable[[Conn], T], weight: int = 1) -> Future[T]:
        """Queue ``fn`` for the writer; the future resolves after its transaction commits.

        Concurrent submissions share one commit (group commit); each runs in its own
        savepoint, so one failing job does not undo the others. ``weight`` (e.g. the number
        of events) counts toward the backlog that makes ``submit`` raise ``Overloaded``.
        """
        ...

    def write(self, fn: Callable[[Conn], T]) -> T:
        """``submit`` and wait."""
        ...

    def backlog(self) -> int:
        """Weight of the jobs waiting for the writer."""
        ...

    def close(self) -> None:
        """Finish queued writes, then close every connection."""
        ...
