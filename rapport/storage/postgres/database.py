"""PostgreSQL database: pooled readers, a group-committing writer per process, same queries."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache
from typing import Any, Literal, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from rapport.storage import migrate
from rapport.storage.base import Params, Row
from rapport.storage.writer import GroupCommitWriter, WriterBacked

T = TypeVar("T")
_MIGRATION_LOCK = 727_274_001


class PostgresDialect:
    name: Literal["sqlite", "postgres"] = "postgres"

    def greatest(self, a: str, b: str) -> str:
        return f"GREATEST({a}, {b})"

    def least(self, a: str, b: str) -> str:
        return f"LEAST({a}, {b})"

    @property
    def skip_locked(self) -> str:
        return "FOR UPDATE SKIP LOCKED"


DIALECT = PostgresDialect()
_PLACEHOLDER = re.compile(r"\?")


@lru_cache(maxsize=4096)
def translate(sql: str) -> str:
    """Portable SQL (``?`` placeholders) to psycopg's (``%s``; literal ``%`` doubled)."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


class PostgresConn:
    dialect = DIALECT

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> int:
        cur = self.raw.execute(translate(sql), params or None, prepare=False)
        return cur.rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        with self.raw.cursor() as cur:
            cur.executemany(translate(sql), list(rows))

    def insert_rows(self, head: str, width: int, tail: str, rows: Sequence[Params]) -> list[Row]:
        if not rows:
            return []
        sql = translate(head + " VALUES (" + ", ".join("?" * width) + ") " + tail)
        returning = " RETURNING " in f" {tail.upper()} "
        out: list[Row] = []
        with self.raw.cursor() as cur:
            cur.executemany(sql, list(rows), returning=returning)
            while returning:
                out.extend(cur.fetchall())
                if not cur.nextset():
                    break
        return out

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self.raw.execute(translate(sql), params or None).fetchall()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self.raw.execute(translate(sql), params or None).fetchone()
        return row

    def value(self, sql: str, params: Params = ()) -> Any:
        row = self.raw.execute(translate(sql), params or None).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.raw.close()


SESSION = "SET plan_cache_mode = force_custom_plan"
"""Every session plans each statement for its values. psycopg prepares a statement on the server once a
connection has run it five times, and PostgreSQL then keeps one generic plan for it, made from what it knew
of the table at that moment. With the statistics of an empty table (a new database just analysed) and a
table of one page, that plan is a sequential scan, and the long-lived writer connection keeps it while the
table grows, until the table is analysed again: each primary-key update of a batch then scans the whole
table (the send log's lease and sent marks fell to some 500 timers/s at 15,000 sends). A plan for the values
costs a little planning per statement and follows the table; the statements stay prepared (parsed once)."""


NO_JIT = "SET jit = off"
"""No JIT compilation of queries. PostgreSQL compiles a query whose estimated cost passes ``jit_above_cost``;
a segment refresh compares 50 rules in one query of some 500 expressions, and at 200,000 profiles it ran in
6.4 s with JIT, 8 s of it compiling (over the parallel workers), and in 2.5 s without. Rapport's other
statements are lookups and writes, which JIT does not speed up."""


def _configure(raw: psycopg.Connection[Any]) -> None:
    raw.execute(SESSION)
    raw.execute(NO_JIT)


def _connect(url: str) -> PostgresConn:
    raw = psycopg.connect(url, autocommit=True)
    _configure(raw)
    return PostgresConn(raw)


class PostgresDatabase(WriterBacked):
    dialect = DIALECT

    def __init__(self, url: str, *, max_backlog: int = 20_000, readers: int = 4) -> None:
        self.url = url
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=readers, kwargs={"autocommit": True}, configure=_configure, open=True
        )
        self._writer = GroupCommitWriter(
            lambda: _connect(url),
            begin="BEGIN",
            max_backlog=max_backlog,
            retryable=(psycopg.errors.UniqueViolation, psycopg.errors.SerializationFailure,
                       psycopg.errors.DeadlockDetected),
            name="rapport-postgres-writer",
        )
        self.write(self._migrate)

    @staticmethod
    def _migrate(conn: Any) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))
        for version, name, sql in migrate.pending(conn, "rapport.storage.postgres.migrations"):
            migrate.apply_migration(conn, version, name, sql)

    def read(self, fn: Callable[[Any], T]) -> T:
        with self._pool.connection() as raw:
            conn = PostgresConn(raw)
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

    def close(self) -> None:
        self._writer.close()
        self._pool.close()
