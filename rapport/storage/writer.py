"""The single writer with group commit shared by both backends.

Jobs queue up; the writer thread takes every job waiting (up to a limit), runs each in its own
savepoint inside one transaction, commits once, and only then resolves the jobs' futures. So a
caller told "done" holds a committed result, and concurrent requests share one fsync.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from rapport.errors import Overloaded, RapportError, Transient
from rapport.storage.base import Conn

T = TypeVar("T")
log = logging.getLogger("rapport.storage")


@dataclass(slots=True)
class _Job(Generic[T]):
    fn: Callable[[Conn], T]
    future: Future[T]
    weight: int


_STOP = object()


class GroupCommitWriter:
    """Runs write jobs on one connection in one thread, committing them in groups."""

    def __init__(
        self,
        connect: Callable[[], Conn],
        *,
        begin: str = "BEGIN",
        max_backlog: int = 20_000,
        max_group: int = 512,
        retryable: tuple[type[BaseException], ...] = (),
        name: str = "rapport-writer",
    ) -> None:
        self._connect = connect
        self._begin = begin
        self._max_backlog = max_backlog
        self._max_group = max_group
        self._retryable = retryable
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._backlog = 0
        self._lock = threading.Lock()
        self._closed = False
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise self._startup_error

    def backlog(self) -> int:
        return self._backlog

    def submit(self, fn: Callable[[Conn], T], weight: int = 1) -> Future[T]:
        with self._lock:
            if self._closed:
                raise Transient("the writer is shutting down", code="shutting_down")
            if self._backlog + weight > self._max_backlog and self._backlog > 0:
                raise Overloaded(
                    f"ingestion backlog is full ({self._backlog} events waiting); retry shortly",
                    retry_after=1,
                )
            self._backlog += weight
        fut: Future[T] = Future()
        self._queue.put(_Job(fn, fut, weight))
        return fut

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = self._connect()
        except BaseException as exc:  # reported to the constructor's caller
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            group: list[_Job[Any]] = [first]
            while len(group) < self._max_group:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stopping = True
                    break
                group.append(nxt)
            self._commit_group(conn, group)
        close = getattr(conn, "close", None)
        if close is not None:
            close()

    def _commit_group(self, conn: Conn, group: list[_Job[Any]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute(self._begin)
            for i, job in enumerate(group):
                outcomes.append(self._run_job(conn, job, i))
            conn.execute("COMMIT")
        except BaseException as exc:
            log.exception("group commit failed")
            try:
                conn.execute("ROLLBACK")
            except Exception:
                log.exception("rollback failed")
            err = exc if isinstance(exc, RapportError) else Transient(f"commit failed: {exc}")
            outcomes = [(False, err)] * len(group)
        with self._lock:
            self._backlog -= sum(job.weight for job in group)
        for job, (ok, value) in zip(group, outcomes, strict=True):
            if ok:
                job.future.set_result(value)
            else:
                job.future.set_exception(value)

    def _run_job(self, conn: Conn, job: _Job[Any], index: int) -> tuple[bool, Any]:
        savepoint = f"job{index}"
        for attempt in range(3):
            conn.execute(f"SAVEPOINT {savepoint}")
            try:
                result = job.fn(conn)
            except BaseException as exc:
                conn.execute(f"ROLLBACK TO SAVEPOINT {savepoint}")
                conn.execute(f"RELEASE SAVEPOINT {savepoint}")
                if isinstance(exc, self._retryable) and attempt < 2:
                    continue
                if not isinstance(exc, RapportError):
                    log.exception("write job failed")
                return False, exc
            conn.execute(f"RELEASE SAVEPOINT {savepoint}")
            return True, result
        raise AssertionError("unreachable")


class WriterBacked:
    """The write side every backend shares: jobs go to its ``GroupCommitWriter``."""

    _writer: GroupCommitWriter

    def submit(self, fn: Callable[[Conn], T], weight: int = 1) -> Future[T]:
        return self._writer.submit(fn, weight)

    def write(self, fn: Callable[[Conn], T]) -> T:
        return self.submit(fn).result()

    def backlog(self) -> int:
        return self._writer.backlog()
