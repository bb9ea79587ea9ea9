"""SQLite database: WAL mode, one writer thread with group commit, pooled readers.

The writer never checkpoints: copying WAL pages back into the database file (and its fsync) would
otherwise land on whichever commit crosses SQLite's auto-checkpoint threshold, stalling every
request in that group. A checkpointer thread does it beside the writer on its own connection
(WAL lets it run while the writer appends), so commits pay only for their own WAL fsync.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from rapport.storage import migrate
from rapport.storage.base import Params, Row
from rapport.storage.writer import GroupCommitWriter, WriterBacked

T = TypeVar("T")
log = logging.getLogger("rapport.storage")

_SQLITE_CONFIG_MEMSTATUS = 9
_SQLITE_STATUS_MEMORY_USED = 0


def _without_memory_statistics() -> bool:
    """Turn off SQLite's memory statistics for this process; True when done.

    SQLite counts every allocation of every connection under one global mutex, so two threads running
    large queries at once (a refresh's reader ranges, the writer beside a reader) take turns at it and
    run no faster than one. Turning it off needs SQLite shut down and initialized again, which is safe
    only while it holds no memory: no connection is open. Where that is not so, or where the library
    cannot be reached (or passes variadic arguments differently than ``ctypes`` does: Linux only),
    nothing changes but the speed.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import _sqlite3

        lib = ctypes.CDLL(_sqlite3.__file__)  # resolves to the library the module is linked with
        used, peak = ctypes.c_int64(), ctypes.c_int64()
        if lib.sqlite3_status64(_SQLITE_STATUS_MEMORY_USED, ctypes.byref(used), ctypes.byref(peak), 0) != 0:
            return False
        if used.value != 0 or lib.sqlite3_shutdown() != 0:
            return False
        done = lib.sqlite3_config(_SQLITE_CONFIG_MEMSTATUS, ctypes.c_int(0)) == 0
        lib.sqlite3_initialize()
        return bool(done)
    except (OSError, AttributeError):
        return False


UNSHARED_ALLOCATIONS = _without_memory_statistics()  # once: with statistics off, "no memory held" cannot be told
"""Whether SQLite's allocations run without the process-wide statistics mutex (see above)."""


class SqliteDialect:
    name: Literal["sqlite", "postgres"] = "sqlite"

    def greatest(self, a: str, b: str) -> str:
        return f"max(coalesce({a}, {b}), coalesce({b}, {a}))"

    def least(self, a: str, b: str) -> str:
        return f"min(coalesce({a}, {b}), coalesce({b}, {a}))"

    @property
    def skip_locked(self) -> str:
        return ""


DIALECT = SqliteDialect()


class SqliteConn:
    """A ``Conn`` over one sqlite3 connection (autocommit mode; transactions are explicit)."""

    dialect = DIALECT

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Params = ()) -> int:
        return self.raw.execute(sql, params).rowcount

    def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        self.raw.executemany(sql, rows)

    def insert_rows(self, head: str, width: int, tail: str, rows: Sequence[Params]) -> list[Row]:
        row_marks = "(" + ", ".join("?" * width) + ")"
        step = max(1, min(200, 30_000 // width))  # under SQLite's 32766 bound parameters
        out: list[Row] = []
        for start in range(0, len(rows), step):
            chunk = rows[start:start + step]
            sql = head + " VALUES " + ", ".join([row_marks] * len(chunk)) + " " + tail
            out.extend(self.raw.execute(sql, [v for row in chunk for v in row]).fetchall())
        return out

    def all(self, sql: str, params: Params = ()) -> list[Row]:
        return self.raw.execute(sql, params).fetchall()

    def one(self, sql: str, params: Params = ()) -> Row | None:
        row: Row | None = self.raw.execute(sql, params).fetchone()
        return row

    def value(self, sql: str, params: Params = ()) -> Any:
        row = self.raw.execute(sql, params).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        self.raw.close()


CHECKPOINT_EVERY_S = 0.25
"""How often the checkpointer copies committed WAL pages into the database file."""


def _wal(raw: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Switch to WAL. Switching needs the file to itself for a moment and SQLite answers "locked" at
    once (without its busy handler) when another connection opens it at the same instant, so retry."""
    deadline = time.perf_counter() + patience_s
    while True:
        try:
            raw.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.perf_counter() > deadline:
                raise
            time.sleep(0.005)


def _connect(path: str, *, readonly: bool, autocheckpoint: bool = True) -> SqliteConn:
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    raw.execute("PRAGMA busy_timeout = 30000")
    raw.execute("PRAGMA foreign_keys = ON")
    if path != ":memory:":
        _wal(raw)
    # FULL: a commit is on disk before the writer answers (acknowledged means durable).
    raw.execute("PRAGMA synchronous = FULL")
    raw.execute("PRAGMA cache_size = -65536")
    raw.execute("PRAGMA temp_store = MEMORY")
    if not autocheckpoint:
        raw.execute("PRAGMA wal_autocheckpoint = 0")
    if readonly:
        raw.execute("PRAGMA query_only = ON")
    return SqliteConn(raw)


class SqliteDatabase(WriterBacked):
    """The embedded backend. One process may hold it; other processes (the CLI) share the file."""

    dialect = DIALECT

    def __init__(self, path: str, *, max_backlog: int = 20_000, readers: int = 4) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.url = f"sqlite:///{path}"
        background = path != ":memory:"
        self._writer = GroupCommitWriter(
            lambda: _connect(path, readonly=False, autocheckpoint=not background),
            begin="BEGIN IMMEDIATE",
            max_backlog=max_backlog,
            name="rapport-sqlite-writer",
        )
        self._readers: queue.SimpleQueue[SqliteConn] = queue.SimpleQueue()
        self._all_readers: list[SqliteConn] = []
        self._readers_lock = threading.Lock()
        self._max_readers = readers
        self.write(self._migrate)
        self._stop_checkpoints = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if background:
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, name="rapport-sqlite-checkpointer", daemon=True)
            self._checkpointer.start()

    def _checkpoint_loop(self) -> None:
        conn = _connect(self.path, readonly=False)
        try:
            while not self._stop_checkpoints.wait(CHECKPOINT_EVERY_S):
                self._checkpoint(conn, "PASSIVE")  # never blocks the writer or readers
            self._checkpoint(conn, "TRUNCATE")
        finally:
            conn.close()

    @staticmethod
    def _checkpoint(conn: SqliteConn, mode: str) -> None:
        try:
            conn.execute(f"PRAGMA wal_checkpoint({mode})")
        except sqlite3.Error:
            log.exception("WAL checkpoint failed; the next one retries")

    @staticmethod
    def _migrate(conn: Any) -> None:
        for version, name, sql in migrate.pending(conn, "rapport.storage.sqlite.migrations"):
            migrate.apply_migration(conn, version, name, sql)

    def read(self, fn: Callable[[Any], T]) -> T:
        try:
            conn = self._readers.get_nowait()
        except queue.Empty:
            conn = _connect(self.path, readonly=True)
            with self._readers_lock:
                self._all_readers.append(conn)
        try:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        finally:
            self._readers.put(conn)

    def close(self) -> None:
        self._writer.close()
        self._stop_checkpoints.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        with self._readers_lock:
            for conn in self._all_readers:
                conn.close()
            self._all_readers.clear()
