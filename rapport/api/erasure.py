"""Erasure through the admin API: ``DELETE /api/v1/profiles/{id}`` erases the person holding that profile."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rapport.api.admin import admin_scopes
from rapport.api.json import json_response
from rapport.core import Rapport
from rapport.privacy import erasure
from rapport.storage.base import Conn
from rapport.types import JsonObject
from rapport.workspaces.model import Principal


def router(rapport: Rapport) -> APIRouter:
    api = APIRouter(prefix="/api/v1", tags=["admin"])
    scoped = admin_scopes(rapport)

    @api.delete("/profiles/{profile_id}")
    async def erase(profile_id: str, who: Principal = Depends(scoped("profiles:write"))) -> Response:  # noqa: B008
        """Erase a person: the profile (a merged id names the profile it was merged into) and every profile
        merged into it, with their events, traits, consent, journeys, messages and tasks. Kept, naming nobody:
        send-log counts and bounce and complaint suppressions of their addresses. 404 for an unknown (or
        already erased) profile."""
        rt = rapport.runtime(who.workspace_id)
        now = rapport.clock.now_ms()

        def job(conn: Conn) -> JsonObject:
            done = erasure.erase(conn, rt.id, rt.wrapped_key, rapport.keyring, profile_id, who.actor, now)
            return {"erased": done.to_json()}
        return json_response(await run_in_threadpool(rapport.db.write, job))

    return api
