"""Real peers on loopback for the channel tests: an aiosmtpd SMTP server and a recording HTTP server."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

NOW_MS = 1_790_000_000_000
"""A fixed instant (2026-09-21) for the frozen clock of every channel test."""
SMTP_USER = "hello@shop.example"
SMTP_PASSWORD = "correct horse"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class Recorder:
    """Accepts every message and keeps its envelope and bytes."""

    received: list[Received] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        assert envelope.mail_from is not None and isinstance(envelope.content, bytes)
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return f"250 2.0.0 OK queued as Q{len(self.received)}"


class UnknownUser(Recorder):
    """Refuses every recipient as a mailbox that does not exist."""

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


class Greylist(Recorder):
    """Defers every message, as a greylisting server does on first contact."""

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "451 4.7.1 Greylisted, please try again later"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: Recorder


def serve_smtp(handler: Recorder, **smtp: Any) -> Iterator[SmtpServer]:
    """Run an aiosmtpd server with ``handler`` on a free loopback port while the generator is open."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


def authenticate(server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = (isinstance(data, LoginPassword) and data.login == SMTP_USER.encode()
          and data.password == SMTP_PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


@dataclass
class HttpServer:
    """Records every request and answers with the scripted replies in order, then with ``default``."""

    url: str
    requests: list[Request] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    default: Reply = Reply(200)

    def script(self, *replies: Reply) -> None:
        self.replies.extend(replies)


def serve_http() -> Iterator[HttpServer]:
    """Run a recording HTTP server on a free loopback port while the generator is open."""
    state = HttpServer("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {key.lower(): value for key, value in self.headers.items()}
            with lock:
                state.requests.append(Request("POST", self.path, headers, body))
                reply = state.replies.pop(0) if state.replies else state.default
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
