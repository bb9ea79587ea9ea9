"""Shared fixtures: API and storage tests run on SQLite and on PostgreSQL, each module on a fresh database.

PostgreSQL comes from ``RAPPORT_TEST_POSTGRES_URL`` (an admin URL such as
``postgresql://postgres@127.0.0.1:5432/postgres``): each test module creates its own database there
and drops it afterwards, so runs never see each other's rows; inside a module every test works in
its own workspace. Without the URL the PostgreSQL variants are skipped with the reason, unless
``RAPPORT_REQUIRE_POSTGRES=1`` (set in CI), which turns a missing or unreachable server into a failure.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from api.support import NOW, ApiClient
from channels.support import HttpServer, Recorder, Reply, SmtpServer, serve_http, serve_smtp
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from psycopg import sql

from rapport.api.app import create_app
from rapport.clock import FrozenClock
from rapport.core import NewWorkspace, Rapport
from rapport.settings import Secret, Settings

# Shared 2-core machines: generation speed varies with load, so timing health checks and
# deadlines would fail runs for reasons unrelated to behaviour.
hypothesis_settings.register_profile("rapport", suppress_health_check=[HealthCheck.too_slow], deadline=None)
# CI replays a fixed sequence of examples (the same on every run, so a green run stays green); developers'
# runs draw new ones, and what they find is kept as an explicit @example.
hypothesis_settings.register_profile("ci", parent=hypothesis_settings.get_profile("rapport"), derandomize=True,
                                     database=None)
hypothesis_settings.load_profile(os.environ.get("RAPPORT_HYPOTHESIS_PROFILE", "rapport"))

POSTGRES_URL_ENV = "RAPPORT_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "RAPPORT_REQUIRE_POSTGRES"
MASTER_KEY = Secret(base64.b64encode(secrets.token_bytes(32)).decode())
"""One master key for the session, so every ``Rapport`` opened on a module's database can read it."""


@dataclass(frozen=True, slots=True)
class Backend:
    """A fresh database for one test module."""

    name: Literal["sqlite", "postgres"]
    url: str

    def settings(self, data_dir: Path, **overrides: Any) -> Settings:
        return Settings(database_url=self.url, data_dir=data_dir, master_key=MASTER_KEY, **overrides)


def _postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    """Skip, or fail when PostgreSQL is required (CI): a missing server must never pass silently."""
    if _postgres_required():
        pytest.fail(f"{REQUIRE_POSTGRES_ENV} is set but {reason}", pytrace=False)
    pytest.skip(reason)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new, empty database on the test server (dropped afterwards); yields its URL."""
    admin_url = os.environ.get(POSTGRES_URL_ENV, "").strip()
    if not admin_url:
        _unavailable(f"PostgreSQL tests need {POSTGRES_URL_ENV}, an admin URL of a test server "
                     "(e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    if not admin_url.startswith(("postgresql://", "postgres://")):
        pytest.fail(f"{POSTGRES_URL_ENV} must be a postgresql:// URL", pytrace=False)
    try:
        conn = psycopg.connect(admin_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unavailable(f"PostgreSQL at {POSTGRES_URL_ENV} is unreachable: {str(exc).strip()}")
        raise
    name = f"rapport_test_{secrets.token_hex(6)}"
    with conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield _with_database(admin_url, name)
        finally:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The database of one test module, on each backend."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'rapport.db'}")
        return
    with fresh_postgres_database() as url:
        yield Backend("postgres", url)


@pytest.fixture
def empty_backend(backend: Backend, tmp_path: Path) -> Iterator[Backend]:
    """Another database on the same backend that nothing has opened yet (for migration tests)."""
    if backend.name == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path / 'empty.db'}")
        return
    with fresh_postgres_database() as url:
        yield Backend("postgres", url)


@pytest.fixture
def clock() -> FrozenClock:
    """Time stands still at ``NOW`` until a test moves it; ids differ between tests (seeded per test)."""
    return FrozenClock(NOW, seed=secrets.randbits(64))


@pytest.fixture
def rapport(backend: Backend, tmp_path: Path, clock: FrozenClock) -> Iterator[Rapport]:
    instance = Rapport(backend.settings(tmp_path), clock=clock)
    try:
        yield instance
    finally:
        instance.close()


@pytest.fixture
def workspace(rapport: Rapport) -> NewWorkspace:
    """A new workspace (its own tenant inside the module's database)."""
    return rapport.create_workspace(f"test-{secrets.token_hex(6)}")


@pytest.fixture
def client(rapport: Rapport) -> Iterator[ApiClient]:
    """The real ASGI app (tracking + admin API) without the background worker."""
    api = ApiClient(create_app(rapport, worker=False))
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    """A real SMTP server on loopback that accepts and records every message."""
    yield from serve_smtp(Recorder())


@pytest.fixture
def push() -> Iterator[HttpServer]:
    """A push provider (FCM's HTTP v1 API) on loopback that records every request and accepts it."""
    for server in serve_http():
        server.default = Reply(200, b'{"name": "projects/demo-shop/messages/0:1"}')
        yield server


@pytest.fixture
def sms() -> Iterator[HttpServer]:
    """An SMS provider (Twilio's Messages API) on loopback that records every request and queues it."""
    for server in serve_http():
        server.default = Reply(201, b'{"sid": "SM1", "status": "queued"}')
        yield server
