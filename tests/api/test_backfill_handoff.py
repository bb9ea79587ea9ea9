"""The hand-off from a backfill to the live path across processes (PostgreSQL's advisory lock)."""

from __future__ import annotations

import threading

import psycopg
import pytest
from conftest import Backend

from api.support import ApiClient, admin, apply_yaml, profile_of, track
from rapport.api.app import run_backfills
from rapport.core import NewWorkspace, Rapport
from rapport.storage.sql.profiles import SERIES_LOCK_CLASS

ANALYTICS_OK = {"consent": {"categoryPreferences": {"Analytics": True}}}
TRAIT = "kind: ComputedTrait\nname: views\nevent: Viewed\naggregate: count\n"


def states(client: ApiClient, workspace: NewWorkspace) -> dict[str, str]:
    body = admin(client, workspace, "GET", "/api/v1/computed-traits").json()
    return {t["name"]: t["state"] for t in body["computed_traits"]}


def test_backfill_waits_for_ingestion_transactions_of_other_processes(
    backend: Backend, client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    if backend.name != "postgres":
        pytest.skip("SQLite has one writer: its transactions are ordered without a lock")
    for _ in range(2):
        track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed", "context": ANALYTICS_OK})
    assert apply_yaml(client, workspace, TRAIT).status_code == 200
    assert states(client, workspace)["views"] == "backfilling"
    # Another process's ingestion transaction read the series' states and has not committed yet.
    with psycopg.connect(backend.url) as other:
        other.execute("SELECT pg_advisory_xact_lock_shared(%s, hashtext(%s))",
                      (SERIES_LOCK_CLASS, workspace.workspace_id))
        worker = threading.Thread(target=run_backfills, args=(rapport,))
        worker.start()
        worker.join(1.0)
        assert worker.is_alive(), "the backfill chunk must wait for the open ingestion transaction"
        assert states(client, workspace)["views"] == "backfilling"
        other.rollback()
    worker.join(10.0)
    assert not worker.is_alive()
    assert states(client, workspace)["views"] == "live"
    assert profile_of(client, workspace, user_id="u1")["computed"]["views"] == 2
    track(client, workspace, "/v1/track", {"userId": "u1", "event": "Viewed", "context": ANALYTICS_OK})
    assert profile_of(client, workspace, user_id="u1")["computed"]["views"] == 3
