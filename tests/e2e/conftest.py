"""Fixtures for end-to-end tests: a real ``rapport serve`` per storage backend, on a loopback port.

The database comes from the suite's ``backend`` fixture (SQLite always; PostgreSQL on a fresh
database when ``RAPPORT_TEST_POSTGRES_URL`` is set, skipped with the reason otherwise, a failure
under ``RAPPORT_REQUIRE_POSTGRES=1``). The server and the CLI get it through ``RAPPORT_*`` variables.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .harness import Stack, _server

if TYPE_CHECKING:
    from conftest import Backend

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``slow`` end-to-end tests run only when asked for with ``-m`` (e.g. ``-m slow``)."""
    if config.getoption("markexpr"):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow")
    for item in items:
        if "slow" in item.keywords and HERE in item.path.parents:
            item.add_marker(skip)


@pytest.fixture(scope="module")
def stack(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    base = tmp_path_factory.mktemp(f"e2e-{backend.name}")
    env = _server.server_env(backend.url, base / "data")
    created = _server.create_workspace(env, "e2e")
    with _server.Server(env, base / "server.log") as server:
        server.start()
        yield Stack(backend.name, server, created["workspace_id"], created["write_key"], created["admin_token"])
