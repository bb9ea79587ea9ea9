"""The running Rapport: database, keys, clock and per-workspace runtimes, shared by API, CLI and tests."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass

import orjson

from rapport.clock import Clock, SystemClock
from rapport.errors import AuthError, NotFoundError, ValidationError
from rapport.ingestion.model import IngestResult, Message, Quarantined
from rapport.ingestion.service import BatchJob
from rapport.privacy.keyfile import load_or_create_master_key
from rapport.profiles.builtins import BUILTIN_TRAITS
from rapport.settings import Settings
from rapport.storage import Database, open_database
from rapport.storage.base import Conn
from rapport.storage.sql import events as events_sql
from rapport.storage.sql import profiles as profiles_sql
from rapport.storage.sql import resources as resources_sql
from rapport.storage.sql import workspaces as ws_sql
from rapport.types import WorkspaceId
from rapport.workspaces.credentials import kind_of, new_secret, secret_hash
from rapport.workspaces.keys import Keyring
from rapport.workspaces.model import CredentialKind, Principal, Role, WorkspaceSettings
from rapport.workspaces.runtime import WorkspaceRuntime, build_runtime

REFRESH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class NewWorkspace:
    workspace_id: WorkspaceId
    write_key: str
    admin_token: str


class Rapport:
    """One per process: owns the database and caches; thread-safe."""

    def __init__(self, settings: Settings, *, clock: Clock | None = None, db: Database | None = None) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self.db = db or open_database(settings)
        key_path = settings.data_dir / "master.key"
        self.keyring = Keyring(load_or_create_master_key(key_path, settings.master_key))
        self._runtimes: dict[str, tuple[float, WorkspaceRuntime]] = {}
        self._principals: dict[str, Principal] = {}
        self._lock = threading.Lock()

    def close(self) -> None:
        self.db.close()

    # --- workspaces and credentials -------------------------------------------------------

    def create_workspace(self, name: str) -> NewWorkspace:
        if not name or len(name) > 100:
            raise ValidationError("a workspace name must have 1 to 100 characters", code="invalid_name")
        ws = WorkspaceId(self.clock.new_id("ws"))
        write_key, admin_token = new_secret("write_key"), new_secret("admin_token")
        now = self.clock.now_ms()

        def job(conn: Conn) -> None:
            if ws_sql.workspace_by_name(conn, name) is not None:
                from rapport.errors import ConflictError

                raise ConflictError(f"a workspace named {name!r} already exists", code="workspace_exists")
            ws_sql.insert_workspace(conn, ws, name, now, self.keyring.new_workspace_key(ws),
                                    WorkspaceSettings().to_json())
            ws_sql.insert_credential(conn, ws, self.clock.new_id("cred"), "write_key", None,
                                     secret_hash(write_key), "default", now)
            ws_sql.insert_credential(conn, ws, self.clock.new_id("cred"), "admin_token", "admin",
                                     secret_hash(admin_token), "default", now)
            for trait in BUILTIN_TRAITS:
                for key in trait.all_series():
                    profiles_sql.register_series(conn, ws, key.id, orjson.dumps(key.event).decode(), 0, 0, now)
                    profiles_sql.update_series(conn, ws, key.id, "live", 0, now)
            ws_sql.audit(conn, ws, "cli", "workspace.create", ws, {"name": name}, now)

        self.db.write(job)
        return NewWorkspace(ws, write_key, admin_token)

    def create_token(self, ws: WorkspaceId, role: Role | None, label: str | None, actor: str) -> str:
        kind: CredentialKind = "write_key" if role is None else "admin_token"
        secret = new_secret(kind)
        now = self.clock.now_ms()

        def job(conn: Conn) -> None:
            ws_sql.insert_credential(conn, ws, self.clock.new_id("cred"), kind, role, secret_hash(secret), label, now)
            ws_sql.audit(conn, ws, actor, "credential.create", kind, {"role": role, "label": label}, now)

        self.db.write(job)
        return secret

    def authenticate(self, secret: str) -> Principal:
        """The principal a secret stands for; raises ``AuthError`` without saying which part was wrong."""
        if not secret or kind_of(secret) is None:
            raise AuthError("missing or invalid credentials", code="invalid_credentials")
        digest = secret_hash(secret)
        hit = self._principals.get(digest)
        if hit is not None:
            return hit
        row = self.db.read(lambda c: ws_sql.credential_by_hash(c, digest))
        if row is None:
            raise AuthError("missing or invalid credentials", code="invalid_credentials")
        principal = Principal(WorkspaceId(row[0]), row[1], row[2], row[3])
        with self._lock:
            self._principals[digest] = principal
        return principal

    def forget_credentials(self) -> None:
        with self._lock:
            self._principals.clear()

    def workspace_id(self, name_or_id: str | None) -> WorkspaceId:
        """Resolve a workspace by name or id; with None, the only workspace there is."""
        rows = self.db.read(ws_sql.list_workspaces)
        if name_or_id is None:
            if len(rows) == 1:
                return WorkspaceId(rows[0][0])
            names = ", ".join(r[1] for r in rows) or "none yet"
            raise ValidationError(f"choose a workspace with --workspace (known: {names})", code="workspace_required")
        for ws_id, name, _ in rows:
            if name_or_id in (ws_id, name):
                return WorkspaceId(ws_id)
        raise NotFoundError(f"no workspace named {name_or_id!r}", code="workspace_not_found")

    # --- runtime ----------------------------------------------------------------------------

    def runtime(self, ws: WorkspaceId, *, fresh: bool = False) -> WorkspaceRuntime:
        """The workspace's compiled definitions, reloaded when they change (checked twice a second)."""
        now = self.clock.monotonic()
        hit = self._runtimes.get(ws)
        if hit is not None and not fresh and now - hit[0] < REFRESH_SECONDS:
            return hit[1]

        def load(conn: Conn) -> WorkspaceRuntime | None:
            generation = resources_sql.generation(conn, ws)
            row = ws_sql.workspace(conn, ws)
            if row is None:
                return None
            settings_json = row[4]
            if (hit is not None and hit[1].generation == generation
                    and (hit[1].identity_version, hit[1].identity_previous_until) == (row[5], row[6])
                    and hit[1].settings.to_json() == orjson.loads(settings_json)):
                return hit[1]
            specs = [(r[0], orjson.loads(r[3]), int(r[2])) for r in resources_sql.current(conn, ws)]
            return build_runtime(row, generation, specs)

        rt = self.db.read(load)
        if rt is None:
            raise NotFoundError(f"no workspace {ws!r}", code="workspace_not_found")
        with self._lock:
            self._runtimes[ws] = (now, rt)
        return rt

    def invalidate(self, ws: WorkspaceId) -> None:
        with self._lock:
            self._runtimes.pop(ws, None)

    # --- ingestion --------------------------------------------------------------------------

    def ingest(
        self, ws: WorkspaceId, messages: list[Message], quarantined: list[Quarantined] | None = None
    ) -> Future[IngestResult]:
        """Queue a batch for the writer; the future resolves once it is committed."""
        job = BatchJob(self.runtime(ws), self.keyring, self.clock, messages, quarantined or [])
        return self.db.submit(job.run, weight=max(1, len(messages)))

    def event_count(self, ws: WorkspaceId) -> int:
        """Events ingested into the workspace (those Rapport writes itself, like segment entries, apart)."""
        return self.db.read(lambda c: events_sql.ingested_count(c, ws))
