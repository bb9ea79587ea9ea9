"""Fixtures of the segment tests: workspace definitions without a database, and one ``Rapport`` per module
and backend, shared by hypothesis examples; PostgreSQL databases here sort text unlike code points."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from api.support import NOW
from conftest import POSTGRES_URL_ENV, Backend, fresh_postgres_database
from psycopg import sql

from rapport.clock import FrozenClock
from rapport.core import Rapport
from rapport.resources.parse import parse_documents
from rapport.types import WorkspaceId
from rapport.workspaces.runtime import WorkspaceRuntime, build_runtime


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """The root ``backend``, except that a PostgreSQL database compares text in a natural-language
    collation (ICU root locale: ``"a" < "B"``), so that SQL that relied on the server's collation instead
    of comparing code points would select other profiles than the evaluator here."""
    if request.param == "sqlite":
        yield Backend("sqlite", f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'rapport.db'}")
        return
    with fresh_postgres_database() as plain, psycopg.connect(os.environ[POSTGRES_URL_ENV], autocommit=True) as admin:
        name = f"{urlsplit(plain).path.lstrip('/')}_icu"
        try:
            admin.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'und'").format(
                sql.Identifier(name)))
        except psycopg.Error:  # a server without ICU: its default collation it is
            yield Backend("postgres", plain)
            return
        try:
            yield Backend("postgres", urlunsplit(urlsplit(plain)._replace(path=f"/{name}")))
        finally:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def store(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rapport]:
    """A ``Rapport`` on the module's database; hypothesis examples make their own workspaces in it."""
    clock = FrozenClock(NOW, seed=secrets.randbits(64))
    instance = Rapport(backend.settings(tmp_path_factory.mktemp("segments")), clock=clock)
    try:
        yield instance
    finally:
        instance.close()


DEFINITIONS = """
kind: ComputedTrait
name: skus_30d
event: Order Completed
aggregate: distinct
property: sku
window: 30d
---
kind: ComputedTrait
name: last_plan
event: Plan Changed
aggregate: last
property: plan
---
kind: ConsentPurpose
name: newsletter
legal_basis: legitimate_interest
description: The monthly newsletter
"""
"""Resources of the ``definitions`` workspace, besides the built-in computed traits and purposes."""


@pytest.fixture(scope="session")
def definitions() -> WorkspaceRuntime:
    """The built-in definitions plus ``DEFINITIONS``, in a workspace with a fixed id (``ws_golden``)."""
    specs = [(r.kind, r.spec, 1) for r in parse_documents(DEFINITIONS)]
    return build_runtime((WorkspaceId("ws_golden"), "golden", 0, b"", "{}"), 1, specs)
