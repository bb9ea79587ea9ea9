"""Fixtures for the channel tests: each test gets its own peer on a free loopback port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from channels.support import (
    Greylist,
    HttpServer,
    Recorder,
    SmtpServer,
    UnknownUser,
    authenticate,
    free_port,
    serve_http,
    serve_smtp,
)


@pytest.fixture
def channel_kind() -> None:
    """The ``Channel`` kind is registered (``rapport.resources`` imports every built-in kind)."""
    from rapport.resources import kinds

    assert "Channel" in kinds.known_kinds()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    yield from serve_smtp(Recorder())


@pytest.fixture
def unknown_user_server() -> Iterator[SmtpServer]:
    yield from serve_smtp(UnknownUser())


@pytest.fixture
def greylist_server() -> Iterator[SmtpServer]:
    yield from serve_smtp(Greylist())


@pytest.fixture
def auth_smtp_server() -> Iterator[SmtpServer]:
    """Requires AUTH as ``SMTP_USER`` with ``SMTP_PASSWORD`` (over plain loopback)."""
    yield from serve_smtp(Recorder(), authenticator=authenticate, auth_required=True, auth_require_tls=False)


@pytest.fixture
def http_server() -> Iterator[HttpServer]:
    yield from serve_http()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers, to make a peer time out."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port: int = sock.getsockname()[1]
        yield port


@pytest.fixture
def closed_port() -> int:
    """A port nothing listens on: connecting is refused."""
    return free_port()
