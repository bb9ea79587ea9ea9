"""The same storage behaviour on SQLite and PostgreSQL: group commit, savepoints, backlog, migrations, tenants."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from api.support import ApiClient, admin, apply_yaml, profile_of, track

from rapport.core import NewWorkspace, Rapport
from rapport.errors import Overloaded, Transient
from rapport.storage import Database, migrate, open_database
from rapport.storage.base import Conn
from rapport.storage.sql import consent as consent_sql
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import workspaces as ws_sql

if TYPE_CHECKING:
    from conftest import Backend

WAIT = 20.0
"""Seconds any single wait may take before the test fails instead of hanging."""


@pytest.fixture
def db(backend: Backend, tmp_path: Path) -> Iterator[Database]:
    database = open_database(backend.settings(tmp_path))
    try:
        yield database
    finally:
        database.close()


@pytest.fixture
def ws() -> str:
    """A workspace id of its own, so rows of other tests never count."""
    return f"ws_storage_{secrets.token_hex(6)}"


def insert(ws: str, label: str) -> Callable[[Conn], str]:
    def job(conn: Conn) -> str:
        conn.execute("INSERT INTO audit_log (workspace_id, actor, action, target, detail, at)"
                     " VALUES (?, ?, ?, ?, ?, ?)", (ws, "test", "write", label, "{}", 0))
        return label
    return job


def labels(db: Database, ws: str) -> list[str]:
    """What other connections see as committed."""
    return [r[0] for r in db.read(lambda c: c.all(
        "SELECT target FROM audit_log WHERE workspace_id = ? ORDER BY seq", (ws,)))]


class Held:
    """Keeps the writer busy inside a job until ``release``; what is submitted meanwhile forms one group."""

    def __init__(self, db: Database) -> None:
        self.gate = threading.Event()
        running = threading.Event()

        def hold(_conn: Conn) -> None:
            running.set()
            assert self.gate.wait(WAIT), "the test never released the writer"

        self.future = db.submit(hold)
        assert running.wait(WAIT), "the writer never started the holding job"

    def release(self) -> None:
        self.gate.set()
        self.future.result(timeout=WAIT)


def test_queued_jobs_share_one_commit_and_resolve_only_after_it(db: Database, ws: str) -> None:
    held = Held(db)
    futures = [db.submit(insert(ws, f"job{n}")) for n in range(5)]
    in_probe, finish_probe = threading.Event(), threading.Event()

    def probe(conn: Conn) -> int:
        in_probe.set()
        assert finish_probe.wait(WAIT)
        return int(conn.value("SELECT count(*) FROM audit_log WHERE workspace_id = ?", (ws,)))

    probe_future = db.submit(probe)
    futures += [db.submit(insert(ws, f"job{n}")) for n in range(5, 8)]
    seen_at_resolution: list[list[str]] = []
    futures[0].add_done_callback(lambda _f: seen_at_resolution.append(labels(db, ws)))
    held.release()

    assert in_probe.wait(WAIT)
    # Jobs 0-4 ran before the probe, in the same transaction: nothing is committed or resolved yet.
    assert labels(db, ws) == []
    assert not any(f.done() for f in futures)
    finish_probe.set()

    assert [f.result(timeout=WAIT) for f in futures] == [f"job{n}" for n in range(8)]
    assert probe_future.result(timeout=WAIT) == 5, "a job sees the uncommitted writes of its group"
    assert labels(db, ws) == [f"job{n}" for n in range(8)]
    assert seen_at_resolution == [[f"job{n}" for n in range(8)]], "a result is given only after the commit"


def test_concurrent_submitters_all_get_committed_results(db: Database, ws: str) -> None:
    def submit_many(thread: int) -> list[str]:
        futures = [db.submit(insert(ws, f"t{thread}-{n}")) for n in range(25)]
        return [f.result(timeout=WAIT) for f in futures]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(submit_many, range(8)))
    assert sorted(label for r in results for label in r) == sorted(f"t{t}-{n}" for t in range(8) for n in range(25))
    assert sorted(labels(db, ws)) == sorted(label for r in results for label in r)


def test_a_failing_job_rolls_back_only_itself(db: Database, ws: str) -> None:
    def fails_in_python(conn: Conn) -> None:
        insert(ws, "python-error")(conn)
        raise ValueError("this job fails")

    def fails_in_sql(conn: Conn) -> None:
        insert(ws, "sql-error")(conn)
        conn.execute("SELEC 1")

    held = Held(db)
    futures: list[Future[Any]] = [db.submit(insert(ws, "before")), db.submit(fails_in_python),
                                  db.submit(fails_in_sql), db.submit(insert(ws, "after"))]
    held.release()
    assert futures[0].result(timeout=WAIT) == "before"
    with pytest.raises(ValueError, match="this job fails"):
        futures[1].result(timeout=WAIT)
    with pytest.raises(Exception, match=r"(?i)syntax"):
        futures[2].result(timeout=WAIT)
    assert futures[3].result(timeout=WAIT) == "after"
    assert labels(db, ws) == ["before", "after"]
    assert db.write(insert(ws, "later")) == "later", "the writer goes on after failures"
    assert labels(db, ws) == ["before", "after", "later"]


def test_a_full_backlog_refuses_with_retry_after(backend: Backend, tmp_path: Path, ws: str) -> None:
    db = open_database(backend.settings(tmp_path), max_backlog=3)
    try:
        held = Held(db)
        queued = db.submit(insert(ws, "fits"), weight=2)
        with pytest.raises(Overloaded) as refused:
            db.submit(insert(ws, "too-much"))
        assert refused.value.retry_after >= 1 and refused.value.status == 429
        assert db.backlog() == 3
        held.release()
        assert queued.result(timeout=WAIT) == "fits"
        assert db.backlog() == 0
        assert db.submit(insert(ws, "oversize-alone"), weight=50).result(timeout=WAIT) == "oversize-alone", \
            "one job heavier than the limit is still taken when nothing waits"
        assert labels(db, ws) == ["fits", "oversize-alone"]
    finally:
        db.close()


def test_close_finishes_queued_writes_then_refuses(backend: Backend, tmp_path: Path, ws: str) -> None:
    db = open_database(backend.settings(tmp_path))
    held = Held(db)
    futures = [db.submit(insert(ws, f"queued{n}")) for n in range(3)]
    closing = threading.Thread(target=db.close)
    closing.start()
    held.release()
    closing.join(WAIT)
    assert not closing.is_alive()
    assert [f.result(timeout=0) for f in futures] == ["queued0", "queued1", "queued2"]
    with pytest.raises(Transient):
        db.submit(insert(ws, "too-late"))
    reopened = open_database(backend.settings(tmp_path))
    try:
        assert labels(reopened, ws) == ["queued0", "queued1", "queued2"]
    finally:
        reopened.close()


def migration_versions(db: Database) -> list[int]:
    return [r[0] for r in db.read(lambda c: c.all("SELECT version FROM schema_migrations ORDER BY version"))]


def expected_versions(backend: Backend) -> list[int]:
    package = f"rapport.storage.{backend.name}.migrations"
    return [version for version, _name, _sql in migrate.migration_files(package)]


def test_migrations_are_idempotent(empty_backend: Backend, tmp_path: Path, ws: str) -> None:
    first = open_database(empty_backend.settings(tmp_path))
    try:
        assert migration_versions(first) == expected_versions(empty_backend) != []
        first.write(insert(ws, "kept"))
    finally:
        first.close()
    for _ in range(2):
        again = open_database(empty_backend.settings(tmp_path))
        try:
            assert migration_versions(again) == expected_versions(empty_backend)
            assert labels(again, ws) == ["kept"]
        finally:
            again.close()


def test_concurrent_first_opens_migrate_once(empty_backend: Backend, tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=3) as pool:
        opened = list(pool.map(lambda _n: open_database(empty_backend.settings(tmp_path)), range(3)))
    try:
        for db in opened:
            assert migration_versions(db) == expected_versions(empty_backend)
    finally:
        for db in opened:
            db.close()


def test_both_databases_open_beside_each_other(db: Database, backend: Backend, tmp_path: Path, ws: str) -> None:
    other = open_database(backend.settings(tmp_path))
    try:
        other.write(insert(ws, "from-other"))
        db.write(insert(ws, "from-first"))
        assert labels(db, ws) == labels(other, ws) == ["from-other", "from-first"]
    finally:
        other.close()


# --- workspace guard ----------------------------------------------------------------------------------


def populated(client: ApiClient, rapport: Rapport, ws: NewWorkspace) -> dict[str, str]:
    """A profile with events, traits, consent, a merge, a conflict and a resource in ``ws``."""
    analytics = {"consent": {"categoryPreferences": {"Analytics": True}}}
    track(client, ws, "/v1/identify", {"anonymousId": "a1", "traits": {"plan": "free"}, "context": analytics})
    track(client, ws, "/v1/identify", {"userId": "u1", "traits": {"email": "a@example.com"}, "context": analytics})
    track(client, ws, "/v1/track", {"userId": "u1", "anonymousId": "a1", "event": "Order Completed",
                                    "messageId": "m1", "properties": {"revenue": 5}, "context": analytics})
    track(client, ws, "/v1/identify", {"userId": "u2", "traits": {"email": "a@example.com"}})
    apply_yaml(client, ws, "kind: ComputedTrait\nname: views\nevent: V\naggregate: count\n")
    profile = profile_of(client, ws, user_id="u1")
    merge = admin(client, ws, "GET", f"/api/v1/profiles/{profile['id']}/merges").json()["merges"][0]
    return {"profile": profile["id"], "merge": merge["id"]}


def reads(ws: str, ids: dict[str, str], series: list[str]) -> Callable[[Conn], dict[str, Any]]:
    """Every guarded read, for workspace ``ws``, of rows that belong to the profile in ``ids``."""
    pid = ids["profile"]

    def run(c: Conn) -> dict[str, Any]:
        return {
            "events.count": events_sql.count(c, ws),
            "events.max_seq": events_sql.max_seq(c, ws),
            "events.existing_keys": events_sql.existing_keys(c, ws, ["m1"]),
            "events.timeline": events_sql.timeline(c, ws, pid, None, 10),
            "events.of_profile": events_sql.of_profile(c, ws, pid),
            "events.scan": events_sql.scan(c, ws, 0, 10**12, 100),
            "events.by_message_id": events_sql.by_message_id(c, ws, "m1"),
            "identity.owners": identity_sql.owners(c, ws, [("user_id", "u1"), ("anonymous_id", "a1")]),
            "identity.profile_rows": identity_sql.profile_rows(c, ws, [pid]),
            "identity.identifiers_of": identity_sql.identifiers_of(c, ws, pid),
            "identity.live_root": identity_sql.live_root(c, ws, pid),
            "identity.merge_row": identity_sql.merge_row(c, ws, ids["merge"]),
            "identity.merges_of": identity_sql.merges_of(c, ws, [pid]),
            "identity.conflicts": identity_sql.conflicts(c, ws, None, 10),
            "profiles.traits": profiles_sql.traits(c, ws, pid),
            "profiles.buckets": profiles_sql.buckets(c, ws, pid, series),
            "consent.entries": consent_sql.entries(c, ws, [pid]),
            "resources.current": resources_sql.current(c, ws),
            "resources.history": resources_sql.history(c, ws, "ComputedTrait", "views"),
            "resources.generation": resources_sql.generation(c, ws),
            "audit.resource_actions": [r for r in ws_sql.audit_entries(c, ws, 0, 1000) if r[2].startswith("resource.")],
        }
    return run


def test_rows_of_one_workspace_are_invisible_to_another(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    other = rapport.create_workspace("other-" + workspace.workspace_id)
    ids = populated(client, rapport, workspace)
    series = list(rapport.runtime(workspace.workspace_id).series)
    mine = rapport.db.read(reads(workspace.workspace_id, ids, series))
    theirs = rapport.db.read(reads(other.workspace_id, ids, series))
    assert [k for k, v in mine.items() if not v] == [], "the owner sees every kind of row"
    assert {k: v for k, v in theirs.items() if v} == {}, "another workspace sees none of them"


def test_writes_for_one_workspace_leave_another_alone(
    client: ApiClient, rapport: Rapport, workspace: NewWorkspace
) -> None:
    other = rapport.create_workspace("other-" + workspace.workspace_id)
    ids = populated(client, rapport, workspace)
    series = list(rapport.runtime(workspace.workspace_id).series)
    before = rapport.db.read(reads(workspace.workspace_id, ids, series))
    pid, ws_b = ids["profile"], other.workspace_id
    credentials = rapport.db.read(lambda c: [r[0] for r in ws_sql.list_credentials(c, workspace.workspace_id)])

    def trespass(conn: Conn) -> None:
        identity_sql.merge(conn, ws_b, "mrg_trespass", "prf_elsewhere", pid, [], None, "test", 0)
        identity_sql.split(conn, ws_b, ids["merge"], "prf_elsewhere", pid, 0)
        profiles_sql.delete_derived(conn, ws_b, pid)
        for credential in credentials:
            assert ws_sql.revoke_credential(conn, ws_b, credential, 0) == 0

    rapport.db.write(trespass)
    after = rapport.db.read(reads(workspace.workspace_id, ids, series))
    assert after == before
    rapport.forget_credentials()
    assert track(client, workspace, "/v1/track", {"userId": "u1", "event": "Still Works"}).status_code == 200
    assert admin(client, workspace, "GET", "/api/v1/resources").status_code == 200


def test_postgres_sessions_plan_each_statement_for_its_values(backend: Backend, db: Database) -> None:
    """Prepared statements keep no generic plan: one made while a table was nearly empty (a sequential scan)
    would stay with the long-lived writer as the table grows and turn primary-key lookups into scans."""
    if backend.name != "postgres":
        pytest.skip("plan caching is a PostgreSQL matter; SQLite plans every statement")
    assert db.write(lambda c: c.value("SHOW plan_cache_mode")) == "force_custom_plan"
    assert db.read(lambda c: c.value("SHOW plan_cache_mode")) == "force_custom_plan"


def test_postgres_sessions_compile_no_query(backend: Backend, db: Database) -> None:
    """No JIT: compiling a refresh query's hundreds of expressions costs more than running it."""
    if backend.name != "postgres":
        pytest.skip("JIT compilation is a PostgreSQL matter")
    assert db.write(lambda c: c.value("SHOW jit")) == "off"
    assert db.read(lambda c: c.value("SHOW jit")) == "off"
