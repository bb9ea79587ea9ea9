"""Reading what the storing channels delivered: a person's in-app inbox (``/v1/inbox``, with the write key as
the tracking API takes it) and the task lists of offline channels (``/api/v1/channels/{name}/tasks``, with an
admin token).

An inbox call names the person by ``user_id`` (with its ``user_hash``, ``rapport.workspaces.verification``) or
``anonymous_id``; it sees the messages of the unified profile holding that identifier and of every profile merged
into it, and nothing of anyone else.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api.admin import admin_scopes
from rapport.api.json import json_response
from rapport.api.tracking import ingest_principal, write_key_from
from rapport.channels.inapp import InboxMessage, Sealer
from rapport.channels.offline import Task, tasks_csv
from rapport.core import Rapport
from rapport.errors import NotFoundError, ValidationError
from rapport.profiles.service import ProfileReader
from rapport.storage.base import Conn
from rapport.storage.sql import identity as identity_sql
from rapport.storage.sql import inbox as inbox_sql
from rapport.storage.sql import resources as resources_sql
from rapport.types import Json, JsonObject
from rapport.workspaces import verification
from rapport.workspaces.model import Principal
from rapport.workspaces.runtime import WorkspaceRuntime

PERSON_TYPES: Final = ("user_id", "anonymous_id")
"""The identifiers an app knows its user by, and so the ones an inbox call may name."""
INBOX_QUERY: Final = frozenset({*PERSON_TYPES, "user_hash", "limit", "before"})
TASKS_PAGE: Final = 1000
"""Tasks per read when a whole list is exported."""
FILENAME_UNSAFE: Final = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True, slots=True)
class Person:
    """Whose inbox a call reads: the write key's workspace and the identifier the call names."""

    rt: WorkspaceRuntime
    id_type: str
    value: str


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter()

    # --- the person's inbox, with the write key ------------------------------------------------------------

    def person(request: Request,
               user_id: str | None = Query(None, description="the person's user id, as the app identifies them"),
               anonymous_id: str | None = Query(None, description="the person's anonymous id, before they sign in"),
               ) -> Person:
        """The workspace of the write key and the identifier the call names the person by (exactly one)."""
        principal = ingest_principal(rapport, write_key_from(request, None))
        unknown = sorted(k for k in request.query_params if k not in INBOX_QUERY)
        # From the raw query, not the parsed parameters: a repeated identifier is ambiguous, not 'the last one'.
        given = [(k, v) for k, v in request.query_params.multi_items() if k in PERSON_TYPES]
        if unknown or len(given) != 1:
            raise ValidationError(f"name the person with exactly one of {', '.join(PERSON_TYPES)}",
                                  code="invalid_person", details=[{"unknown": unknown}] if unknown else [])
        rt = rapport.runtime(principal.workspace_id)
        id_type, value = given[0]
        if id_type == "user_id" and not verification.verified(rapport.keyring, rt, value,
                                                              request.query_params.get("user_hash"),
                                                              rapport.clock.now_ms()):
            raise verification.refused("'&user_hash='")
        return Person(rt, id_type, value)

    def profile_ids(conn: Conn, who: Person) -> list[str] | None:
        """The live profile holding the person's identifier and every profile merged into it; ``None`` when no
        profile holds it."""
        try:
            root = ProfileReader(conn, who.rt, rapport.keyring).find(who.id_type, who.value)
        except NotFoundError:
            return None
        return identity_sql.subtree(conn, who.rt.id, root)

    @api.get("/v1/inbox", tags=["inbox"])
    def inbox(limit: int = Query(50, ge=1, le=100),
              before: str | None = Query(None, description="the id of the last message of the previous page"),
              who: Person = Depends(person)) -> Response:  # noqa: B008
        """The person's in-app messages, newest first: `?user_id=` or `?anonymous_id=`, with HTTP Basic auth
        (the write key as user name). `unread` counts all their unread messages; `next` is the `before` of the
        next page (null on the last)."""
        ws = who.rt.id

        def fn(conn: Conn) -> JsonObject:
            ids = profile_ids(conn, who)
            if ids is None:
                return {"messages": [], "unread": 0, "next": None}
            position = None
            if before is not None:
                anchor = inbox_sql.message(conn, ws, ids, before)
                if anchor is None:
                    raise ValidationError(f"'before' names no message of this person: {before[:80]!r}; expected "
                                          "the id of a message of an earlier page", code="invalid_cursor")
                position = (int(anchor[6]), str(anchor[0]))
            rows = inbox_sql.messages(conn, ws, ids, limit + 1, position)
            sealer = Sealer(conn, ws, rapport.keyring)
            page = [InboxMessage.from_row(r, sealer) for r in rows[:limit]]
            return {"messages": [m.to_json() for m in page], "unread": inbox_sql.unread(conn, ws, ids),
                    "next": page[-1].id if len(rows) > limit else None}
        return json_response(rapport.db.read(fn))

    @api.post("/v1/inbox/{message_id}/read", tags=["inbox"])
    async def read(message_id: str, who: Person = Depends(person)) -> Response:  # noqa: B008
        """Mark one of the person's messages read (`?user_id=` or `?anonymous_id=`); marking it again keeps
        the first read time. 404 for a message that is not theirs."""
        ws = who.rt.id
        now = rapport.clock.now_ms()

        def job(conn: Conn) -> JsonObject:
            ids = profile_ids(conn, who)
            row = None if ids is None else inbox_sql.mark_read(conn, ws, ids, message_id, now)
            if ids is None or row is None:
                raise NotFoundError(f"no message {message_id[:80]!r} in this person's inbox",
                                    code="message_not_found")
            return {"message": InboxMessage.from_row(row, Sealer(conn, ws, rapport.keyring)).to_json(),
                    "unread": inbox_sql.unread(conn, ws, ids)}
        return json_response(await run_in_threadpool(rapport.db.write, job))

    # --- offline task lists, with an admin token ------------------------------------------------------------

    scoped = admin_scopes(rapport)

    def offline_channel(conn: Conn, ws: str, name: str) -> None:
        """Raise unless ``name`` is an offline Channel of the workspace (a deleted one keeps its tasks)."""
        specs = [orjson.loads(r[1]) for r in resources_sql.history(conn, ws, "Channel", name) if not r[3]]
        if not specs:
            raise NotFoundError(f"no channel {name[:80]!r} in this workspace", code="channel_not_found")
        kind = specs[-1].get("type")
        if kind != "offline":
            raise ValidationError(f"channel {name!r} is of type {kind!r}; only 'offline' channels have tasks",
                                  code="not_offline_channel")

    @api.get("/api/v1/channels/{name}/tasks", tags=["channels"])
    def tasks(name: str, open_only: bool = Query(False, alias="open", description="only tasks not done yet"),
              limit: int = Query(100, ge=1, le=TASKS_PAGE),
              after: str | None = Query(None, description="the id of the last task of the previous page"),
              who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """The tasks of an offline channel, oldest first; `next` is the `after` of the next page."""
        ws = who.workspace_id

        def fn(conn: Conn) -> JsonObject:
            offline_channel(conn, ws, name)
            position = None
            if after is not None:
                anchor = inbox_sql.task(conn, ws, name, after)
                if anchor is None:
                    raise ValidationError(f"'after' names no task of channel {name!r}: {after[:80]!r}",
                                          code="invalid_cursor")
                position = (int(anchor[6]), str(anchor[0]))
            rows = inbox_sql.tasks(conn, ws, name, open_only=open_only, limit=limit + 1, after=position)
            sealer = Sealer(conn, ws, rapport.keyring)
            page = [Task.from_row(r, sealer) for r in rows[:limit]]
            out: list[Json] = [t.to_json() for t in page]
            return {"tasks": out, "next": page[-1].id if len(rows) > limit else None}
        return json_response(rapport.db.read(fn))

    @api.get("/api/v1/channels/{name}/tasks.csv", tags=["channels"])
    def tasks_export(name: str, open_only: bool = Query(False, alias="open", description="only tasks not done yet"),
                     who: Principal = Depends(scoped("resources:read"))) -> Response:  # noqa: B008
        """Every task of an offline channel as CSV, oldest first: id, profile_id, title, body, data, created_at,
        done_at. A cell that a spreadsheet would run as a formula starts with `'`."""
        ws = who.workspace_id

        def fn(conn: Conn) -> list[Task]:
            offline_channel(conn, ws, name)
            found: list[Task] = []
            position = None
            sealer = Sealer(conn, ws, rapport.keyring)
            while True:
                rows = inbox_sql.tasks(conn, ws, name, open_only=open_only, limit=TASKS_PAGE, after=position)
                found.extend(Task.from_row(r, sealer) for r in rows)
                if len(rows) < TASKS_PAGE:
                    return found
                position = (found[-1].created_at, found[-1].id)
        text = tasks_csv(rapport.db.read(fn))
        filename = FILENAME_UNSAFE.sub("_", name) + "-tasks.csv"
        return Response(text, media_type="text/csv; charset=utf-8",
                         headers={"Content-Disposition": f'attachment; filename="{filename}"'})

    @api.post("/api/v1/channels/{name}/tasks/{task_id}/done", tags=["channels"])
    async def done(name: str, task_id: str,
                   who: Principal = Depends(scoped("resources:write"))) -> Response:  # noqa: B008
        """Mark a task of an offline channel done; marking it again keeps the first completion."""
        ws = who.workspace_id
        now = rapport.clock.now_ms()

        def job(conn: Conn) -> JsonObject:
            offline_channel(conn, ws, name)
            row = inbox_sql.mark_done(conn, ws, name, task_id, now, who.actor)
            if row is None:
                raise NotFoundError(f"no task {task_id[:80]!r} in channel {name!r}", code="task_not_found")
            return Task.from_row(row, Sealer(conn, ws, rapport.keyring)).to_json()
        return json_response(await run_in_threadpool(rapport.db.write, job))

    return api
