"""A lean HTTP/1.1 keep-alive load generator for ``POST /v1/batch`` (loopback only).

Requests are built as bytes before the clock starts, so the client spends its time on sockets,
not on JSON. Two drivers: ``closed_loop`` (N connections, each sends its next batch as soon as
the previous one is acknowledged: throughput) and ``open_loop`` (batches sent on a fixed
schedule whatever the server does: latency, measured from the scheduled send time so a stalled
server cannot hide its queue).
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import ipaddress
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field


def check_loopback(host: str) -> None:
    if not ipaddress.ip_address(host).is_loopback:
        raise SystemExit(f"refusing to send load to {host}: only loopback addresses are allowed")


def build_request(host: str, port: int, write_key: str, body: bytes, *, compress: bool = False) -> bytes:
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    extra = ""
    if compress:
        body = gzip.compress(body, compresslevel=1)
        extra = "Content-Encoding: gzip\r\n"
    head = (f"POST /v1/batch HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


@dataclass
class Outcome:
    acked_requests: int = 0
    failed_requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    """Seconds from (scheduled) send to the complete 200 response, per acknowledged request."""
    first_error: str | None = None
    started: float = 0.0
    finished: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.finished - self.started


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length = 0
        for line in lines[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


async def exchange(conn: Connection, host: str, port: int, raw: bytes) -> tuple[Connection, int, bytes]:
    """Send ``raw`` and read the answer; a connection the server closed meanwhile (keep-alive timeout)
    is replaced and the request sent again (a resent batch is deduplicated on its message ids)."""
    try:
        status, body = await conn.request(raw)
    except (asyncio.IncompleteReadError, ConnectionError):
        conn.close()
        conn = await Connection.open(host, port)
        status, body = await conn.request(raw)
    return conn, status, body


def _record(out: Outcome, status: int, body: bytes, latency: float) -> None:
    out.statuses[status] = out.statuses.get(status, 0) + 1
    if status == 200 and b'"success":true' in body:
        out.acked_requests += 1
        out.latencies.append(latency)
    else:
        out.failed_requests += 1
        if out.first_error is None:
            out.first_error = f"{status}: {body[:300]!r}"


async def closed_loop(host: str, port: int, requests: Sequence[bytes], *, connections: int,
                      max_seconds: float) -> Outcome:
    """Send every request (or stop at ``max_seconds``) over ``connections`` keep-alive connections."""
    check_loopback(host)
    out = Outcome()
    conns = [await Connection.open(host, port) for _ in range(connections)]
    position = 0
    deadline = 0.0

    async def worker(conn: Connection) -> None:
        nonlocal position
        while position < len(requests) and time.perf_counter() < deadline:
            raw = requests[position]
            position += 1
            sent = time.perf_counter()
            conn, status, body = await exchange(conn, host, port, raw)
            _record(out, status, body, time.perf_counter() - sent)
        conn.close()

    out.started = time.perf_counter()
    deadline = out.started + max_seconds
    await asyncio.gather(*(worker(c) for c in conns))
    out.finished = time.perf_counter()
    return out


async def open_loop(host: str, port: int, requests: Sequence[bytes], *, rate: float, max_seconds: float,
                    max_connections: int = 256) -> Outcome:
    """Send request i at ``start + i / rate`` (seconds), on any idle connection; latency from that instant."""
    check_loopback(host)
    out = Outcome()
    idle: deque[Connection] = deque([await Connection.open(host, port) for _ in range(8)])
    opened = len(idle)
    count = min(len(requests), int(rate * max_seconds))
    tasks: list[asyncio.Task[None]] = []

    async def send(raw: bytes, due: float) -> None:
        nonlocal opened
        if idle:
            conn = idle.popleft()  # round robin: no connection idles into the server's keep-alive timeout
        else:
            opened += 1
            if opened > max_connections:
                raise SystemExit(f"open loop needs more than {max_connections} connections: the server fell behind")
            conn = await Connection.open(host, port)
        conn, status, body = await exchange(conn, host, port, raw)
        _record(out, status, body, time.perf_counter() - due)
        idle.append(conn)

    out.started = time.perf_counter()
    for i in range(count):
        due = out.started + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(send(requests[i], due)))
    await asyncio.gather(*tasks)
    out.finished = time.perf_counter()
    for c in idle:
        c.close()
    return out


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]
